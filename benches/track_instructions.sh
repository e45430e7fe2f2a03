#!/usr/bin/env bash
# Instructions per `track` call, counted by callgrind: each variant runs N and 2N calls and the
# difference is divided by N, so process start-up and client set-up cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
n="${1:-20000}"
cargo build --release --locked -p opentally --bench track_loop >&2 2>/dev/null || cargo bench --no-run --locked -p opentally --bench track_loop >&2
bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/track_loop-* | grep -v '\.d$' | head -1)
count() {
  local out
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"
  rm -f "$out"
}
for variant in on-props on-bare off-props off-bare; do
  a=$(count "$variant" "$n")
  b=$(count "$variant" "$((2 * n))")
  echo "$variant: $(( (b - a) / n )) instructions per call"
done
