#!/usr/bin/env bash
# The embedded store on generated events: generation and sealing rate, bytes per event on disk,
# and each dashboard insight's warm time against DuckDB (the PyPI wheel) running the same SQL on
# the same Parquet files, in the same run, both on 2 threads.
#   EVENTS=10000000 bash benches/store.sh
# ONLY=trend,active runs only those insights; PEER=0 skips DuckDB (for the 100M one-off).
# The generated data dir is kept (keyed by the event count) so later runs skip generation.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
events="${EVENTS:-10000000}"
venv="$HOME/.cache/opentally/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check duckdb==1.4.2
cargo build --release --locked -p opentally-cli >&2
bin="$CARGO_TARGET_DIR/release/opentally"
data="${DATA:-$HOME/.cache/opentally/bench-store-$events}"
if [ ! -f "$data/store/MANIFEST.json" ]; then
  rm -rf "$data"
  /usr/bin/time -f '{"generate_max_rss_kb": %M, "generate_wall_s": %e}' \
    "$bin" demo generate --events "$events" --data "$data" --quiet
fi
"$venv/bin/python" benches/store_vs_duckdb.py "$bin" "$data"
