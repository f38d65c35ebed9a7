#!/usr/bin/env bash
# The project's test command (the README's and CI's): builds what the tests need, then runs them.
# Long property/fuzz runs: PROPTEST_CASES=100000 scripts/test.sh
# Long reliability runs (README "Reliability and security"): ZONE_FUZZ_CASES=5000000 (decoder fuzzing,
# default 100000 per decoder) and ZONE_LOAD_ROUNDS=20 (the fault load test, default 5 rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x native/build.sh ]]; then
  native/build.sh
fi
cargo test --all-targets "$@"
