#!/usr/bin/env bash
# Python package benchmarks: @log_usage overhead against a bare call and against
# segment-analytics-python (same process, same collector), and `import opentally` time.
# Builds the package in release mode into its own venv, so the test venv keeps its debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
venv="$HOME/.cache/opentally/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.7,<2" segment-analytics-python==2.4.0
(cd crates/opentally-py && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --locked --quiet)
cargo build --release --locked -p opentally-cli >&2
bin="$CARGO_TARGET_DIR/release/opentally"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
key=$("$bin" project create bench --json --data "$work/data" | python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OPENTALLY_KEY_REQUESTS_PER_SEC=1000000 OPENTALLY_INSTALL_EVENTS_BURST=10000000 OPENTALLY_INSTALL_EVENTS_PER_SEC=1000000 \
  "$bin" serve --data "$work/data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
HOME="$work" XDG_STATE_HOME="$work/state" XDG_CONFIG_HOME="$work/config" \
  "$venv/bin/python" benches/python_overhead.py "http://127.0.0.1:$port" "$key"

# Import time, with bytecode compiled (the first import writes it), median of 11 fresh interpreters.
unset PYTHONDONTWRITEBYTECODE
"$venv/bin/python" -c "import opentally" 
for _ in $(seq 11); do
  "$venv/bin/python" -X importtime -c "import opentally" 2>&1 | awk -F'|' '$3 ~ /^ *opentally$/ {gsub(/ /,"",$2); print $2}'
done | sort -n | awk '{a[NR]=$1} END {printf "{\"import_opentally_us_median\": %d, \"runs\": %d}\n", a[int((NR+1)/2)], NR}'
# The baseline for import time: an empty interpreter start.
for _ in $(seq 11); do
  s=$(date +%s%N); "$venv/bin/python" -c "pass"; e=$(date +%s%N); echo $(( (e - s) / 1000 ))
done | sort -n | awk '{a[NR]=$1} END {printf "{\"python_start_us_median\": %d}\n", a[int((NR+1)/2)]}'
