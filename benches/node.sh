#!/usr/bin/env bash
# Node SDK benchmarks, all traffic on 127.0.0.1:
#   1. track() cost of opentally against @segment/analytics-node and posthog-node, in one process
#      and one run, each sending to the same loopback collector: the time inside the call, and the
#      whole process's CPU per event until it was handed over;
#   2. exit time of a CLI that tracks one event, against a black-hole collector (accepts, never
#      answers), each client ended as its documentation says, against the same CLI without
#      telemetry (median of 5 runs each; a run is stopped after 20 s).
# Prints one JSON object per part, with the ratios.
#
# Usage: bash benches/node.sh
set -euo pipefail
cd "$(dirname "$0")/.."
(cd sdks/node && npm ci --silent --no-audit --no-fund && npm run --silent build)
(cd benches/node && npm ci --silent --no-audit --no-fund)
work=$(mktemp -d)
sinks=()
trap 'for p in "${sinks[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

start_sink() { # mode → prints the URL
  node benches/node/sink.mjs "$1" >"$work/sink-$1.url" &
  sinks+=($!)
  for _ in $(seq 100); do [ -s "$work/sink-$1.url" ] && break; sleep 0.05; done
  cat "$work/sink-$1.url"
}

accept=$(start_sink accept)
blackhole=$(start_sink blackhole)

# Each process gets its own home: no user state is read or written.
export HOME="$work/home" XDG_STATE_HOME="$work/home/state" XDG_CONFIG_HOME="$work/home/config"
unset DO_NOT_TRACK OPENTALLY_TELEMETRY OPENTALLY_ENDPOINT OPENTALLY_WRITE_KEY CI

node benches/node/track.mjs "$accept"

node benches/node/exit-time.mjs "$blackhole"
