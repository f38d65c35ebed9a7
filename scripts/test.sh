#!/usr/bin/env bash
# The project's test command (the README's and CI's): builds what the tests need, then runs them.
# Long property/fuzz runs: PROPTEST_CASES=100000 scripts/test.sh
# Long reliability runs (README "Reliability and security"): ZONE_FUZZ_CASES=5000000 (decoder fuzzing,
# default 100000 per decoder) and ZONE_LOAD_ROUNDS=20 (the fault load test, default 5 rounds).
#
# The native SDK backend's tests need the shim and the stub SDK (native/build.sh: g++ and OpenSSL 3
# headers). The end-to-end suite runs twice: on the local backend, then on the native backend
# (ZONE_TEST_BACKEND=native, the shim over the stub SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/native-deps.sh
native/build.sh
export ZONE_TEST_REQUIRE_NATIVE=1
cargo test --workspace --all-targets "$@"

echo "== the end-to-end suite again on the native backend (shim + stub SDK)"
# Append the native-only tests' skip to the harness arguments (after "--" if the caller gave one).
args=("$@")
if [[ " ${args[*]-} " == *" -- "* ]]; then args+=(--skip native::); else args+=(-- --skip native::); fi
ZONE_TEST_BACKEND=native cargo test -p zone-cli --test e2e "${args[@]}"
