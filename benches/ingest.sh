#!/usr/bin/env bash
# Whole-system ingest benchmark on this machine, all traffic on 127.0.0.1.
#
# Runs `opentally serve` (release build) and `opentally bench ingest` against it, batches of 100
# track events over 100,000 installs, each batch from one install as an SDK's batch is:
#   1. durable acks (fsync on), as fast as the answers come back: events/s and ack latency;
#   2. the same with fsync off: the baseline that shows what durability costs (ratio 1 / 2);
#   3. durable acks at half the rate of run 1 (open loop): ack latency p99;
#   4. run 1 again with each event of a batch from a different install: the worst case for the
#      work the collector does per install (keyed hash, rate limiter), once per event here;
# and reports the server's peak RSS for each. Results go to stdout as one JSON object a run.
#
# Usage: bash benches/ingest.sh [EVENTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
events="${1:-1000000}"
concurrency="${2:-64}"
cargo build --release --locked -p opentally-cli >&2
bin="$CARGO_TARGET_DIR/release/opentally"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # name, extra serve flags, extra bench flags
  local name=$1 serve_flags=$2 bench_flags=$3 data="$work/$1" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  key=$("$bin" project create bench --json --data "$data" | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
  # Rate limits far above the offered load: this measures the write path, not the limiter.
  OPENTALLY_KEY_REQUESTS_PER_SEC=1000000 OPENTALLY_INSTALL_EVENTS_BURST=1000000 \
    "$bin" serve --data "$data" --listen "127.0.0.1:$port" $serve_flags >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local report
  report=$("$bin" bench ingest --url "http://127.0.0.1:$port/v1/batch" --write-key "$key" \
    --events "$events" --batch 100 --concurrency "$concurrency" --installs 100000 --json $bench_flags)
  local rss_kb
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  # Each run starts on a quiet disk: without this, the fsync-off run's unsynced log (~400 MB at
  # 1M events) was written back by the kernel during the next run, against its fsyncs.
  rm -rf "$data"; sync
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["run"]=sys.argv[2]; r["server_peak_rss_mb"]=round(int(sys.argv[3])/1024,1); print(json.dumps(r))' \
    "$report" "$name" "$rss_kb"
}

durable=$(run durable "" "")
echo "$durable"
echo "$(run no-fsync "--no-fsync" "")"
half=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["events_per_sec"]/2))' "$durable")
echo "$(run durable-half-rate "" "--rate $half")"
echo "$(run durable-install-per-event "" "--install-per-event")"
