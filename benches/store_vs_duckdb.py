"""Each dashboard insight over a generated project, as the dashboard asks it: from the API of a
running `opentally serve` (warm: the median of the runs after the first, as the server reports
its query time), against DuckDB running the same SQL on the same Parquet parts in the same run
(its timestamps read as plain UTC timestamps, its fastest form). Also checks that both engines
give the same answer."""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import duckdb

BIN, DATA = sys.argv[1], sys.argv[2]
RUNS = int(os.environ.get("RUNS", "4"))
ONLY = [k for k in os.environ.get("ONLY", "").split(",") if k]
# PEER=0 times OpenTally alone (the 100M one-off, where DuckDB's scans would take many minutes).
PEER = os.environ.get("PEER", "1") != "0"
PROJECT = "demo"

INSIGHTS = [
    ("trend", {"interval": "day"}),
    ("trend", {"interval": "week", "by": "app.version"}),
    ("trend", {"event": "estimate", "by": "os.name", "since": "30d"}),
    ("active", {"since": "30d"}),
    ("versions", {"interval": "week"}),
    ("durations", {}),
    ("errors", {"by": "app.version"}),
    ("new-returning", {"interval": "week"}),
    ("retention", {}),
    ("funnel", {"steps": "fit,estimate,plot", "window": "1h"}),
    ("paths", {"event": "fit"}),
    ("friction", {}),
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


def serve():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([BIN, "serve", "--demo", "--data", DATA, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    token = None
    for line in proc.stdout:
        m = re.search(r"admin token:\s+(ota_\w+)", line)
        if m:
            token = m.group(1)
            break
    url = f"http://127.0.0.1:{port}"
    return proc, url, token


def api(url, token, kind, params):
    q = urllib.parse.urlencode(params)
    req = urllib.request.Request(f"{url}/api/v1/projects/{PROJECT}/insights/{kind}?{q}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def flags(params):
    out = []
    for k, v in params.items():
        out += [f"--{k}", v]
    return out


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
    con.execute("CREATE VIEW events AS SELECT * REPLACE (make_timestamp(epoch_us(ts)) AS ts) "
                f"FROM read_parquet('{parts}')")
    proc, url, token = serve()
    results = []
    for kind, params in INSIGHTS:
        label = " ".join([kind, *flags(params)])
        statements = [line.split("\t", 1) for line in run("query", kind, "--project", PROJECT,
                                                            *flags(params), "--print-sql").splitlines()]
        if ONLY and kind not in ONLY:
            continue
        ours, answer, source, distinct = [], None, None, None
        try:
            api(url, token, kind, params)
        except urllib.error.HTTPError as e:
            print(json.dumps({"insight": label, "opentally_error": json.loads(e.read())}), flush=True)
            continue
        for _ in range(RUNS):
            out = api(url, token, kind, params)
            ours.append(out["query_ms"])
            answer, source, distinct = out["tables"], out["source"], out["distinct"]
        if not PEER:
            results.append({"insight": label, "opentally_ms": round(statistics.median(ours[1:]), 1),
                            "source": source, "distinct": distinct.split(":")[0]})
            print(json.dumps(results[-1]), flush=True)
            continue
        theirs = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            got = {name: con.execute(to_duckdb(sql)).fetchall() for name, sql in statements}
            theirs.append((time.perf_counter() - t0) * 1000)
        exact = all(same(answer[name]["rows"], [list(r) for r in got[name]], 0) for name, _ in statements)
        close = all(same(answer[name]["rows"], [list(r) for r in got[name]], 0.05) for name, _ in statements)
        warm_ours = statistics.median(ours[1:])
        warm_theirs = statistics.median(theirs[1:])
        results.append({"insight": label, "opentally_ms": round(warm_ours, 1),
                        "duckdb_ms": round(warm_theirs, 1), "ratio": round(warm_ours / warm_theirs, 2),
                        "source": source, "distinct": distinct.split(":")[0],
                        "answer": "same" if exact else ("within 5%" if close else "DIFFERENT")})
        print(json.dumps(results[-1]), flush=True)
        if not close:
            for name, _ in statements:
                a, b = answer[name]["rows"], [list(r) for r in got[name]]
                diff = next((i for i, (r, t) in enumerate(zip(a, b)) if not same([r], [t], 0.05)), None)
                print(f"  {name}: {len(a)} vs {len(b)} rows; first difference at {diff}: "
                      f"{a[diff] if diff is not None else ''} vs {b[diff] if diff is not None else ''}")
    with open(f"/proc/{proc.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"server_peak_rss_kb_after_all_insights": rss}))
    proc.terminate()
    proc.wait(timeout=60)


main()
