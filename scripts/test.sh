#!/usr/bin/env bash
# The project's test command (the README's and CI's): builds what the tests need, then runs them.
# Long property/fuzz runs: PROPTEST_CASES=100000 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x native/build.sh ]]; then
  native/build.sh
fi
cargo test --all-targets "$@"
