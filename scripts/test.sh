#!/usr/bin/env bash
# Runs ODIN's whole test suite on a fresh Debian machine: installs what the tests need
# (Debian's `prometheus` package, for promtool and Prometheus 2.42), then runs every
# unit and integration test. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Debian's prometheus package (promtool, prometheus)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# A target directory outside the clone spares CI a full rebuild each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/odin-target}"
# The criterion benches run once each in test mode (so they cannot rot), then the unit
# and integration tests.
cargo test --locked --benches
cargo test --locked --lib --bins --tests
