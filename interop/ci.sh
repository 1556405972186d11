#!/usr/bin/env bash
# CI entry for the strongSwan interop (root, clean Debian 12 machine):
# install, prove the harness (selftest), build latchkey, run the scenarios.
# Exit status: non-zero if anything failed. Last line: `interop: N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== interop: setup"
interop/setup.sh
echo "== interop: selftest (charon <-> charon, and basic.sh against a mock)"
interop/selftest.sh
echo "== interop: build latchkey"
cargo build -p latchkey
echo "== interop: basic.sh"
interop/basic.sh target/debug/latchkey
