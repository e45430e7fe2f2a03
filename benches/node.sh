#!/usr/bin/env bash
# Node SDK benchmarks, all traffic on 127.0.0.1:
#   1. track() cost of opentally against @segment/analytics-node and posthog-node, in one process
#      and one run, each sending to the same loopback collector: the time inside the call, and the
#      whole process's CPU per event until it was handed over;
#   2. exit time of a CLI that tracks one event, against a black-hole collector (accepts, never
#      answers), each client ended as its documentation says, against the same CLI without
#      telemetry (median of 5 runs each; a run is stopped after 20 s, and `stopped_at_20s` counts
#      those runs: their time is a lower bound).
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

# The collectors run in this shell (not in a subshell) so that the trap stops them.
node benches/node/sink.mjs accept >"$work/accept.url" &
sinks+=($!)
node benches/node/sink.mjs blackhole >"$work/blackhole.url" &
sinks+=($!)
url_of() {
  for _ in $(seq 100); do [ -s "$1" ] && break; sleep 0.05; done
  cat "$1"
}
accept=$(url_of "$work/accept.url")
blackhole=$(url_of "$work/blackhole.url")

# Each process gets its own home: no user state is read or written.
export HOME="$work/home" XDG_STATE_HOME="$work/home/state" XDG_CONFIG_HOME="$work/home/config"
unset DO_NOT_TRACK OPENTALLY_TELEMETRY OPENTALLY_ENDPOINT OPENTALLY_WRITE_KEY CI

node benches/node/track.mjs "$accept"

node benches/node/exit-time.mjs "$blackhole"
