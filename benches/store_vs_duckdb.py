"""Each dashboard insight over a generated project: OpenTally's own query time (warm, median of
the runs after the first, as the insight reports it) against DuckDB running the same SQL on the
same Parquet parts in the same run. Also checks that both engines give the same answer."""

import json
import os
import re
import statistics
import subprocess
import sys
import time

import duckdb

BIN, DATA = sys.argv[1], sys.argv[2]
RUNS = int(os.environ.get("RUNS", "6"))
PROJECT = "demo"

INSIGHTS = [
    ("trend", ["--interval", "day"]),
    ("trend", ["--interval", "week", "--by", "app.version"]),
    ("active", ["--since", "30d"]),
    ("new-returning", ["--interval", "week"]),
    ("versions", ["--interval", "week"]),
    ("durations", []),
    ("errors", ["--by", "app.version"]),
    ("retention", []),
    ("funnel", ["--steps", "fit,estimate,plot", "--window", "1h"]),
    ("paths", ["--event", "fit"]),
    ("friction", []),
]


def run(*args):
    out = subprocess.run([BIN, *args, "--data", DATA], capture_output=True, text=True, check=True)
    return out.stdout


def to_duckdb(sql):
    # DataFusion casts a DATE to its day number with CAST(d AS INT); DuckDB subtracts dates.
    sql = re.sub(r"CAST\(([\w.]+) AS INT\)", r"(\1 - DATE '1970-01-01')", sql)
    return sql.replace("array_element(", "list_element(")


def same(a, b, tolerance):
    """Same rows, numbers within `tolerance` (relative): sketches estimate beyond their exact range."""
    def close(x, y):
        if hasattr(y, "isoformat"):
            y = y.isoformat()[:10]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            return abs(x - y) <= tolerance * max(abs(x), abs(y), 1)
        return x == y
    return len(a) == len(b) and all(len(r) == len(s) and all(close(x, y) for x, y in zip(r, s))
                                    for r, s in zip(a, b))


def main():
    manifest = json.load(open(os.path.join(DATA, "store", "MANIFEST.json")))
    rows = sum(p["rows"] for p in manifest["parts"])
    size = sum(p["bytes"] for p in manifest["parts"])
    print(json.dumps({"events": rows, "parts": len(manifest["parts"]), "bytes_on_disk": size,
                      "bytes_per_event": round(size / rows, 1)}))
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    parts = os.path.join(DATA, "store", "parts", PROJECT, "*.parquet")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{parts}')")
    results = []
    for kind, params in INSIGHTS:
        label = " ".join([kind, *params])
        statements = [line.split("\t", 1) for line in run("query", kind, "--project", PROJECT, *params,
                                                            "--print-sql").splitlines()]
        ours, answer, source, distinct = [], None, None, None
        for _ in range(RUNS):
            out = json.loads(run("query", kind, "--project", PROJECT, *params, "--json"))
            ours.append(out["query_ms"])
            answer, source, distinct = out["tables"], out["source"], out["distinct"]
        theirs = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            got = {name: con.execute(to_duckdb(sql)).fetchall() for name, sql in statements}
            theirs.append((time.perf_counter() - t0) * 1000)
        exact = all(same(answer[name]["rows"], [list(r) for r in got[name]], 0) for name, _ in statements)
        close = all(same(answer[name]["rows"], [list(r) for r in got[name]], 0.03) for name, _ in statements)
        warm_ours = statistics.median(ours[1:])
        warm_theirs = statistics.median(theirs[1:])
        results.append({"insight": label, "opentally_ms": round(warm_ours, 1),
                        "duckdb_ms": round(warm_theirs, 1), "ratio": round(warm_ours / warm_theirs, 2),
                        "source": source, "distinct": distinct.split(":")[0],
                        "answer": "same" if exact else ("within 3%" if close else "DIFFERENT")})
        print(json.dumps(results[-1]), flush=True)
    # Peak memory of one query process, on the heaviest insight.
    heaviest = max(results, key=lambda r: r["opentally_ms"])["insight"].split()
    rss = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, "query", heaviest[0], "--project", PROJECT,
                          *heaviest[1:], "--json", "--data", DATA], capture_output=True, text=True, check=True)
    print(json.dumps({"heaviest": " ".join(heaviest), "query_process_max_rss_kb": int(rss.stderr.split()[-1])}))


main()
