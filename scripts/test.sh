#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need, then runs them.
# This is the test command the README gives; .ci/run calls it after the format and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# One build cache outside the clone, shared by every run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/opentally/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed" >&2
  echo "  hint: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The shape of the code: no import cycle between the modules of a crate, no store file over
# 700 lines (see the script).
python3 scripts/check_modules.py 2>&1 | tee -a "$log"

# Rust: doc tests, then unit, integration and property tests of every crate.
cargo test --workspace --locked --doc 2>&1 | tee -a "$log"
# The SDK's tests run its examples as real host programs: `cargo test` compiles examples but
# only `cargo build` puts them where the tests find them (target/debug/examples/NAME). The
# end-to-end tests below run the CLI binary. Both are built for the whole workspace at once:
# building one package alone resolves its dependencies' features differently and compiles
# DataFusion a second time.
cargo build --workspace --locked --bins --examples
cargo test --workspace --locked --all-targets 2>&1 | tee -a "$log"

# End-to-end: the real binary on loopback, driven by real clients (segment-analytics-python)
# and by crash and abuse tests, from a venv kept beside the build cache.
venv="${OPENTALLY_VENV:-$HOME/.cache/opentally/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -r tests/e2e/requirements.txt -r crates/opentally-py/tests/requirements.txt
export OPENTALLY_BIN="$CARGO_TARGET_DIR/debug/opentally"
"$venv/bin/python" -m pytest tests/e2e -q -rA -p no:cacheprovider 2>&1 | tee -a "$log"

# The Python package, built from crates/opentally-py into the venv, and its own tests (a separate
# pytest run: each suite has its own conftest).
(cd crates/opentally-py && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --locked --quiet)
"$venv/bin/python" -m pytest crates/opentally-py/tests -q -rA -p no:cacheprovider 2>&1 | tee -a "$log"

# The Node SDK (sdks/node): compiled by `npm test`, then its tests with Node's own runner, against
# the CLI binary built above.
if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not installed" >&2
  echo "  hint: install Node.js 20 or newer (with npm), then run this again" >&2
  exit 1
fi
(cd sdks/node && npm ci --silent --no-audit --no-fund && OPENTALLY_BIN="$CARGO_TARGET_DIR/debug/opentally" npm test 2>&1) | tee -a "$log"

# The dashboard in a real browser: Debian's chromium, driven by Playwright (playwright-core, which
# downloads no browser of its own), against the CLI binary built above.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "error: /usr/bin/chromium is missing" >&2
    echo "  hint: sudo apt-get install chromium, then run this again" >&2
    exit 1
  fi
fi
(cd tests/browser && npm ci --silent --no-audit --no-fund && OPENTALLY_BIN="$CARGO_TARGET_DIR/debug/opentally" npm test 2>&1) | tee -a "$log"

# One closing line for the whole run, summed over every cargo test binary, pytest and node --test.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /^# pass [0-9]+$/ { p += $3 } /^# fail [0-9]+$/ { f += $3 } /^# skipped [0-9]+$/ { i += $3 }
     /^(=+ )?[0-9]+ (passed|failed|skipped).* in [0-9.]+s/ {
       for (n = 1; n <= NF; n++) {
         if ($n ~ /^passed/) p += $(n-1); if ($n ~ /^failed/) f += $(n-1); if ($n ~ /^skipped/) i += $(n-1)
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
