/**
 * The part of TOML that OpenTally's two settings files use: tables, dotted and quoted keys,
 * strings, booleans, numbers, dates (kept as text), arrays and inline tables. A file this reader
 * does not understand is reported as invalid, which the consent code reads as a refusal: a file
 * that was meant to say something is never read as silence.
 *
 * The writer produces what `opentally opt-out` writes, so that either program can read and
 * rewrite the other's file.
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

export class TomlError extends Error {}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

function isTable(v: unknown): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class Parser {
  private i = 0;
  /** Tables defined by a header or as values, which may not be defined twice. */
  private readonly defined = new Set<TomlTable>();
  /** Tables made implicitly by dotted keys or headers, which a later header may still define. */
  private readonly implicit = new Set<TomlTable>();
  /** Inline tables and arrays of values are closed: nothing may be added to them later. */
  private readonly closed = new Set<TomlValue>();

  constructor(private readonly s: string) {}

  parse(): TomlTable {
    const root: TomlTable = Object.create(null) as TomlTable;
    let current = root;
    for (;;) {
      this.skipBlankAndComments();
      if (this.i >= this.s.length) return root;
      if (this.s[this.i] === "[") {
        current = this.header(root);
      } else {
        this.keyValue(current);
      }
      this.endOfLine();
    }
  }

  private fail(what: string): never {
    const line = this.s.slice(0, this.i).split("\n").length;
    throw new TomlError(`line ${line}: ${what}`);
  }

  private skipSpaces(): void {
    while (this.s[this.i] === " " || this.s[this.i] === "\t") this.i++;
  }

  private skipBlankAndComments(): void {
    for (;;) {
      this.skipSpaces();
      const c = this.s[this.i];
      if (c === "\n" || c === "\r") {
        this.i++;
      } else if (c === "#") {
        while (this.i < this.s.length && this.s[this.i] !== "\n") this.i++;
      } else {
        return;
      }
    }
  }

  private endOfLine(): void {
    this.skipSpaces();
    if (this.s[this.i] === "#") {
      while (this.i < this.s.length && this.s[this.i] !== "\n") this.i++;
    }
    if (this.i >= this.s.length) return;
    if (this.s[this.i] === "\r" && this.s[this.i + 1] === "\n") this.i++;
    if (this.s[this.i] !== "\n") this.fail("expected the end of the line");
    this.i++;
  }

  private header(root: TomlTable): TomlTable {
    const arrayOfTables = this.s.startsWith("[[", this.i);
    this.i += arrayOfTables ? 2 : 1;
    const keys = this.keyPath();
    this.skipSpaces();
    if (!this.s.startsWith(arrayOfTables ? "]]" : "]", this.i)) this.fail("unclosed table header");
    this.i += arrayOfTables ? 2 : 1;
    const parent = this.walk(root, keys.slice(0, -1));
    const last = keys[keys.length - 1]!;
    if (arrayOfTables) {
      let arr = parent[last];
      if (arr === undefined) {
        arr = [];
        parent[last] = arr;
      } else if (!Array.isArray(arr) || this.closed.has(arr)) {
        this.fail(`${last} is not an array of tables`);
      }
      const t: TomlTable = Object.create(null) as TomlTable;
      arr.push(t);
      this.defined.add(t);
      return t;
    }
    const existing = parent[last];
    if (existing === undefined) {
      const t: TomlTable = Object.create(null) as TomlTable;
      parent[last] = t;
      this.defined.add(t);
      return t;
    }
    if (!isTable(existing) || this.defined.has(existing) || this.closed.has(existing)) {
      this.fail(`table ${keys.join(".")} defined twice`);
    }
    this.implicit.delete(existing);
    this.defined.add(existing);
    return existing;
  }

  /** Descends through `keys`, creating implicit tables; the last element of an array of tables. */
  private walk(from: TomlTable, keys: string[]): TomlTable {
    let t = from;
    for (const k of keys) {
      let next = t[k];
      if (next === undefined) {
        next = Object.create(null) as TomlTable;
        t[k] = next;
        this.implicit.add(next);
      }
      if (Array.isArray(next) && !this.closed.has(next)) {
        next = next[next.length - 1]!;
      }
      if (!isTable(next) || this.closed.has(next)) this.fail(`${k} is not a table`);
      t = next;
    }
    return t;
  }

  private keyValue(table: TomlTable): void {
    const keys = this.keyPath();
    this.skipSpaces();
    if (this.s[this.i] !== "=") this.fail("expected `=` after a key");
    this.i++;
    this.skipSpaces();
    const value = this.value();
    const parent = this.walkDotted(table, keys.slice(0, -1));
    const last = keys[keys.length - 1]!;
    if (last in parent) this.fail(`key ${keys.join(".")} defined twice`);
    parent[last] = value;
  }

  /** Dotted keys may extend tables they created themselves, never a table defined elsewhere. */
  private walkDotted(from: TomlTable, keys: string[]): TomlTable {
    let t = from;
    for (const k of keys) {
      let next = t[k];
      if (next === undefined) {
        next = Object.create(null) as TomlTable;
        t[k] = next;
      } else if (!isTable(next) || this.closed.has(next) || this.defined.has(next)) {
        this.fail(`${k} is not a table that a dotted key may extend`);
      }
      t = next;
    }
    return t;
  }

  private keyPath(): string[] {
    const keys: string[] = [];
    for (;;) {
      this.skipSpaces();
      keys.push(this.key());
      this.skipSpaces();
      if (this.s[this.i] !== ".") return keys;
      this.i++;
    }
  }

  private key(): string {
    const c = this.s[this.i];
    if (c === '"') return this.basicString();
    if (c === "'") return this.literalString();
    const start = this.i;
    while (this.i < this.s.length && /[A-Za-z0-9_-]/.test(this.s[this.i]!)) this.i++;
    if (this.i === start) this.fail("expected a key");
    return this.s.slice(start, this.i);
  }

  private value(): TomlValue {
    const c = this.s[this.i];
    if (c === '"') {
      if (this.s.startsWith('"""', this.i)) return this.multiline('"""');
      return this.basicString();
    }
    if (c === "'") {
      if (this.s.startsWith("'''", this.i)) return this.multiline("'''");
      return this.literalString();
    }
    if (c === "[") return this.array();
    if (c === "{") return this.inlineTable();
    return this.scalar();
  }

  private basicString(): string {
    this.i++;
    let out = "";
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined || c === "\n") this.fail("unclosed string");
      this.i++;
      if (c === '"') return out;
      if (c === "\\") {
        out += this.escape();
      } else {
        out += c;
      }
    }
  }

  private escape(): string {
    const e = this.s[this.i++];
    const simple: Record<string, string> = {
      b: "\b",
      t: "\t",
      n: "\n",
      f: "\f",
      r: "\r",
      '"': '"',
      "\\": "\\",
      e: "\x1b",
    };
    if (e !== undefined && e in simple) return simple[e]!;
    if (e === "u" || e === "U") {
      const n = e === "u" ? 4 : 8;
      const hex = this.s.slice(this.i, this.i + n);
      if (!/^[0-9A-Fa-f]+$/.test(hex) || hex.length !== n) this.fail("bad unicode escape");
      this.i += n;
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) this.fail("bad unicode escape");
      return String.fromCodePoint(cp);
    }
    return this.fail("bad escape");
  }

  private literalString(): string {
    this.i++;
    const end = this.s.indexOf("'", this.i);
    const nl = this.s.indexOf("\n", this.i);
    if (end < 0 || (nl >= 0 && nl < end)) this.fail("unclosed string");
    const out = this.s.slice(this.i, end);
    this.i = end + 1;
    return out;
  }

  private multiline(delim: string): string {
    this.i += 3;
    if (this.s[this.i] === "\r" && this.s[this.i + 1] === "\n") this.i += 2;
    else if (this.s[this.i] === "\n") this.i++;
    let out = "";
    for (;;) {
      if (this.i >= this.s.length) this.fail("unclosed string");
      if (this.s.startsWith(delim, this.i)) {
        // Up to two quotes may close the content right before the delimiter.
        let extra = 0;
        while (extra < 2 && this.s[this.i + 3 + extra] === delim[0]) extra++;
        out += delim[0]!.repeat(extra);
        this.i += 3 + extra;
        return out;
      }
      const c = this.s[this.i++]!;
      if (c === "\\" && delim === '"""') {
        if (/^[ \t]*\r?\n/.test(this.s.slice(this.i, this.i + 64))) {
          while (/[ \t\r\n]/.test(this.s[this.i] ?? "")) this.i++;
        } else {
          out += this.escape();
        }
      } else {
        out += c;
      }
    }
  }

  private array(): TomlValue[] {
    this.i++;
    const out: TomlValue[] = [];
    for (;;) {
      this.skipBlankAndComments();
      if (this.s[this.i] === "]") {
        this.i++;
        this.closed.add(out);
        return out;
      }
      out.push(this.value());
      this.skipBlankAndComments();
      if (this.s[this.i] === ",") {
        this.i++;
      } else if (this.s[this.i] !== "]") {
        this.fail("expected `,` or `]` in an array");
      }
    }
  }

  private inlineTable(): TomlTable {
    this.i++;
    const t: TomlTable = Object.create(null) as TomlTable;
    this.skipSpaces();
    if (this.s[this.i] === "}") {
      this.i++;
      this.closed.add(t);
      return t;
    }
    for (;;) {
      this.keyValue(t);
      this.skipSpaces();
      if (this.s[this.i] === "}") {
        this.i++;
        this.closed.add(t);
        return t;
      }
      if (this.s[this.i] !== ",") this.fail("expected `,` or `}` in an inline table");
      this.i++;
      this.skipSpaces();
    }
  }

  private scalar(): TomlValue {
    const m = /^[^\s,\]}#]+(?: [0-9:.+Z-]+(?=[\s,\]}#]|$))?/.exec(this.s.slice(this.i, this.i + 128));
    if (!m) this.fail("expected a value");
    const text = m[0];
    this.i += text.length;
    if (text === "true") return true;
    if (text === "false") return false;
    if (/^[+-]?(0|[1-9](_?[0-9])*)$/.test(text)) return Number(text.replace(/_/g, ""));
    if (/^0x[0-9A-Fa-f](_?[0-9A-Fa-f])*$/.test(text)) return parseInt(text.slice(2).replace(/_/g, ""), 16);
    if (/^0o[0-7](_?[0-7])*$/.test(text)) return parseInt(text.slice(2).replace(/_/g, ""), 8);
    if (/^0b[01](_?[01])*$/.test(text)) return parseInt(text.slice(2).replace(/_/g, ""), 2);
    if (/^[+-]?(inf|nan)$/.test(text)) return text.endsWith("inf") ? (text.startsWith("-") ? -Infinity : Infinity) : NaN;
    if (/^[+-]?(0|[1-9](_?[0-9])*)(\.[0-9](_?[0-9])*)?([eE][+-]?[0-9](_?[0-9])*)?$/.test(text)) {
      return Number(text.replace(/_/g, ""));
    }
    // Dates and times are kept as their text: nothing OpenTally reads is a date.
    if (/^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?)?$/.test(text)) return text;
    if (/^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) return text;
    return this.fail(`not a TOML value: ${text}`);
  }
}

/** Parses a TOML document; throws {@link TomlError} when it is not one this reader understands. */
export function parseToml(text: string): TomlTable {
  return new Parser(text).parse();
}

function quoteKey(k: string): string {
  return BARE_KEY.test(k) ? k : quoteString(k);
}

function quoteString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += `\\u${cp.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out + '"';
}

function inlineValue(v: TomlValue): string {
  if (typeof v === "string") return quoteString(v);
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    return String(v);
  }
  if (Array.isArray(v)) return `[${v.map(inlineValue).join(", ")}]`;
  const parts = Object.keys(v).map((k) => `${quoteKey(k)} = ${inlineValue(v[k]!)}`);
  return parts.length ? `{ ${parts.join(", ")} }` : "{}";
}

/** Writes a table as TOML: plain values first, then each sub-table under its own header. */
export function stringifyToml(table: TomlTable): string {
  const sections: string[] = [];
  const emit = (t: TomlTable, path: string[]): void => {
    const lines: string[] = [];
    const subtables: string[] = [];
    for (const k of Object.keys(t)) {
      const v = t[k]!;
      if (isTable(v)) subtables.push(k);
      else lines.push(`${quoteKey(k)} = ${inlineValue(v)}`);
    }
    const hasOnlyTables = lines.length === 0 && subtables.length > 0;
    if (path.length === 0) {
      if (lines.length) sections.push(lines.join("\n") + "\n");
    } else if (!hasOnlyTables) {
      sections.push(`[${path.map(quoteKey).join(".")}]\n` + lines.map((l) => l + "\n").join(""));
    }
    for (const k of subtables) emit(t[k] as TomlTable, [...path, k]);
  };
  emit(table, []);
  return sections.join("\n");
}
