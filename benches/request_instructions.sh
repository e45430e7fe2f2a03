#!/usr/bin/env bash
# Instructions per event of the collector's request path (parse, check, normalise, hash the
# install, serialise), counted by callgrind on the load generator's 100-event batches, each
# event from its own install: `REQUEST_LOOP` runs N and 2N requests and the difference is
# divided by the events of N requests, so process start-up and set-up cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
n="${1:-200}"
cargo bench --no-run --locked -p opentally-server --bench request >&2
bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/request-* | grep -v '\.d$' | head -1)
count() {
  local out
  out=$(mktemp)
  REQUEST_LOOP="$1" valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"
  rm -f "$out"
}
a=$(count "$n")
b=$(count "$((2 * n))")
echo "$(( (b - a) / (n * 100) )) instructions per event"
