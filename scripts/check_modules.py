#!/usr/bin/env python3
"""Checks the shape of every crate's modules; exits non-zero when one is broken.

- No import cycle between modules of a crate. Module A depends on module B when A names an item
  of B (`use crate::b::X`, `super::b::X`, `b::X` for a child `b`, or a path in code). A module's
  use of its own ancestors does not count: a child implements part of what its parent declares
  (an `impl Store` block in `store/load.rs`, say), so that edge is the module tree itself.
- No file of the store (`crates/opentally-store/src`) over 700 lines: a maintainer reads the
  pipeline a file at a time.

Run: python3 scripts/check_modules.py
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_STORE_LINES = 700


def module_files(src: Path):
    """Maps each module path (a tuple of names; () for the crate root) to its file."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        mods[tuple(parts)] = f
    return mods


def strip_comments_and_strings(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use(tree: str):
    """Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix = tree[:i].rstrip(":").strip()
                inner = tree[i + 1 : tree.rindex("}")]
                out = []
                for part in split_top(inner):
                    for p in expand_use(part):
                        out.append(f"{prefix}::{p}" if prefix else p)
                return out
            depth += 1
        elif ch == "}":
            depth -= 1
    return [re.sub(r"\s+as\s+\w+$", "", tree)] if tree else []


def split_top(s: str):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def references(text: str):
    """Every path the file names: from its `use` trees and from paths in its code."""
    text = strip_comments_and_strings(text)
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use(m.group(1)))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    paths.extend(m.group(0) for m in re.finditer(r"\b(?:crate|super|self)(?:::\w+)+", body))
    paths.extend(m.group(0) for m in re.finditer(r"\b[a-z_][a-z0-9_]*(?:::\w+)+", body))
    return paths


def resolve(path: str, here: tuple, mods: set):
    """The module a path names (its longest module prefix), or None if outside the crate."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif here + (segs[0],) in mods:
        base = here  # a child module named directly
    else:
        return None
    best = base
    cur = base
    for s in segs:
        cur = cur + (s,)
        if cur in mods:
            best = cur
        else:
            break
    return best


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(("crate",) + m)


def main():
    failed = False
    crates = sorted(p for p in (ROOT / "crates").iterdir() if (p / "src").is_dir())
    for crate in crates:
        src = crate / "src"
        mods = module_files(src)
        modset = set(mods)
        edges = {}
        for here, f in mods.items():
            deps = set()
            for p in references(f.read_text()):
                target = resolve(p, here, modset)
                if target is None or target == here or here[: len(target)] == target:
                    continue  # itself, or one of its ancestors
                deps.add(target)
            edges[here] = deps
        for comp in cycles(edges):
            failed = True
            members = sorted(comp)
            detail = "; ".join(
                f"{name(a)} -> {name(b)}" for a in members for b in sorted(edges[a]) if b in comp
            )
            print(f"{crate.name}: import cycle between {', '.join(map(name, members))} ({detail})")
    store = ROOT / "crates" / "opentally-store" / "src"
    for f in sorted(store.rglob("*.rs")):
        n = sum(1 for _ in f.open())
        if n > MAX_STORE_LINES:
            failed = True
            print(f"{f.relative_to(ROOT)}: {n} lines (at most {MAX_STORE_LINES})")
    if failed:
        sys.exit(1)
    print(f"modules: no import cycle in {len(crates)} crates; no store file over {MAX_STORE_LINES} lines")


if __name__ == "__main__":
    main()
