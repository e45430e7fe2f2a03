#!/usr/bin/env bash
# Two builds of `opentally` compared in one run, their runs alternating (old, new, old, new…) so
# that the shared machine's noise falls on both alike. For a change that should change no speed
# (a reorganisation, a dependency bump):
#   - ingest: durable acks, batches of 100 from 100,000 installs, one load generator (the new
#     build's `bench ingest`) against each build's `opentally serve`: events/s, p99 ack latency;
#   - insights: each dashboard insight's warm time on one generated project (the new build
#     generates it), as `benches/store_vs_duckdb.py` asks them from each build's server (PEER=0).
# Prints one JSON line a run, then the ratios new / old of the medians.
#
# Usage: bash benches/compare.sh OLD_BIN NEW_BIN [ROUNDS] ; EVENTS (ingest, 300000) and
# STORE_EVENTS (insights, 1000000) set the sizes. All traffic on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3}
events="${EVENTS:-300000}"
store_events="${STORE_EVENTS:-1000000}"
venv="$HOME/.cache/opentally/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check duckdb==1.4.2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
results="$work/results.jsonl"

ingest() { # label, serve binary
  local label=$1 bin=$2 data="$work/ingest" port key pid report
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  key=$("$bin" project create bench --json --data "$data" | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
  OPENTALLY_KEY_REQUESTS_PER_SEC=1000000 OPENTALLY_INSTALL_EVENTS_BURST=1000000 \
    "$bin" serve --data "$data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  report=$("$new" bench ingest --url "http://127.0.0.1:$port/v1/batch" --write-key "$key" \
    --events "$events" --batch 100 --concurrency 64 --installs 100000 --json)
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$data"; sync
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(json.dumps({"bench": "ingest", "build": sys.argv[2], "events_per_sec": r["events_per_sec"], "p99_ms": r["ack_ms"]["p99"]}))' \
    "$report" "$label" | tee -a "$results"
}

insights() { # label, binary
  local label=$1 bin=$2
  PEER=0 RUNS=4 "$venv/bin/python" benches/store_vs_duckdb.py "$bin" "$store" |
    python3 -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line)
    if "opentally_ms" in r:
        print(json.dumps({"bench": "insight", "build": sys.argv[1], "insight": r["insight"], "ms": r["opentally_ms"]}))' "$label" |
    tee -a "$results"
}

store="$HOME/.cache/opentally/bench-store-$store_events"
if [ ! -f "$store/store/MANIFEST.json" ]; then
  rm -rf "$store"
  "$new" demo generate --events "$store_events" --data "$store" --quiet
fi
for _ in $(seq "$rounds"); do
  ingest old "$old"; ingest new "$new"
  insights old "$old"; insights new "$new"
done
python3 - "$results" <<'EOF'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["bench"] == "ingest":
        runs[("ingest events/s", r["build"])].append(r["events_per_sec"])
        runs[("ingest p99 ms", r["build"])].append(r["p99_ms"])
    else:
        runs[("insight " + r["insight"] + " ms", r["build"])].append(r["ms"])
for name in sorted({k for k, _ in runs}):
    o, n = statistics.median(runs[(name, "old")]), statistics.median(runs[(name, "new")])
    print(json.dumps({"measure": name, "old": o, "new": n, "new_over_old": round(n / o, 3) if o else None}))
EOF
