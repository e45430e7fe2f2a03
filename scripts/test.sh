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

# Rust: unit, integration and property tests of every crate, then the doc tests.
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
