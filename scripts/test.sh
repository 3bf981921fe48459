#!/usr/bin/env bash
# Runs ODIN's whole test suite on a fresh Debian machine (as root: the cluster tests
# make network namespaces): installs what the tests need (Debian's `prometheus`
# package, for promtool and Prometheus 2.42, `prometheus-node-exporter` 1.5, which
# tests/it/node_exporter.rs compares the node collector with, and
# `prometheus-alertmanager` 0.25, which the alerting tests notify; iproute2 for the
# partition tests, openssl and curl for the TLS tests, plus python3-venv where moto
# needs it), installs moto's S3 server
# from PyPI into ~/.cache/odin-moto (tests/it/shipper.rs ships blocks to it), then
# runs every unit and integration test. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  packages+=(prometheus)
fi
if ! command -v prometheus-node-exporter >/dev/null 2>&1; then
  packages+=(prometheus-node-exporter)
fi
# tests/it/alerting.rs sends alerts to Alertmanager 0.25 and reads its notifications.
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  packages+=(prometheus-alertmanager)
fi
# tests/it/cluster.rs partitions a cluster with network namespaces and veth pairs.
if ! command -v ip >/dev/null 2>&1; then
  packages+=(iproute2)
fi
# tests/it/security.rs makes certificates with openssl and talks TLS through curl
# and `openssl s_client`.
if ! command -v openssl >/dev/null 2>&1; then
  packages+=(openssl)
fi
if ! command -v curl >/dev/null 2>&1; then
  packages+=(curl ca-certificates)
fi
moto_venv="$HOME/.cache/odin-moto"
need_moto=
if ! command -v moto_server >/dev/null 2>&1 && [ ! -x "$moto_venv/bin/moto_server" ]; then
  need_moto=1
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    packages+=(python3 python3-venv)
  fi
fi
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing Debian's ${packages[*]} package(s)…"
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own instances on free loopback ports: a policy-rc.d that
  # refuses keeps the packages' init scripts from starting system services (unless
  # the machine already has one of its own).
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  if [ -n "$own_policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

if [ -n "$need_moto" ]; then
  echo "installing moto[server] (S3-compatible test server) into $moto_venv…"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q 'moto[server]>=5,<6'
fi

# A target directory outside the clone spares CI a full rebuild each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/odin-target}"
# Incremental caches pile up there build after build (28 GB once filled the disk and
# a link failed): past 8 GB they are dropped, at the cost of one slower build.
incremental="$CARGO_TARGET_DIR/debug/incremental"
if [ -d "$incremental" ] && [ "$(du -sm "$incremental" | cut -f1)" -gt 8192 ]; then
  echo "dropping $incremental (over 8 GB)"
  rm -rf "$incremental"
fi
# So do ODIN's own test and bench executables and rlibs of earlier builds (hashed
# names, one set per dependency or flag change: 40 GB of them filled the disk once).
# One over 100 MB that no build has rewritten for 12 hours is stale; if a build still
# wants it, it is linked again. Dependencies' rlibs (built once, never rewritten) stay.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -size +100M -mmin +720 \
  \( -name 'libodin-*' -o ! -name 'lib*' \) -delete 2>/dev/null || true
# The criterion benches run once each in test mode (so they cannot rot), then the unit
# and integration tests.
cargo test --locked --benches
cargo test --locked --lib --bins --tests
