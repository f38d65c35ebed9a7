#!/usr/bin/env bash
# The crates' edges point one way (README "Layout"): the program (and so the image's binary
# `zone-programd`) never depends on the local zone, the app side, the test kit or the benchmark, and
# the local zone never depends on the program. Cargo enforces the edges that exist; this checks that
# no forbidden one is added, in the dependency graph and in the built binary's symbols.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
forbidden_in() { # crate, forbidden crates...
  local crate=$1; shift
  local tree; tree=$(cargo tree -p "$crate" -e normal,build --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  for f in "$@"; do
    if grep -qx "$f" <<<"$tree"; then echo "layering: $crate depends on $f" >&2; fail=1; fi
  done
}
forbidden_in zone-program zone-local zone-app zone-bench zone-testkit zone-cli
forbidden_in zone-local zone-program zone-app zone-bench zone-testkit zone-cli
forbidden_in zone-app zone-program zone-local zone-bench zone-testkit zone-cli
forbidden_in zone-crypto zone-program zone-local zone-app zone-bench zone-testkit zone-cli
# The image's binary: no symbol of the emulator, the app side or the benchmark.
cargo build --quiet -p zone-program --bin zone-programd
bin="${CARGO_TARGET_DIR:-target}/debug/zone-programd"
count() { nm -C "$1" | grep -cE " ($2)::" || true; }
n=$(count "$bin" 'zone_local|zone_app|zone_bench|zone_testkit')
if [[ $n != 0 ]]; then
  echo "layering: $bin carries $n symbols of the local zone, the app side, the test kit or the benchmark" >&2
  fail=1
fi
# Sanity of the check itself: the developer CLI does carry the local zone.
cargo build --quiet -p zone-cli --bin zone-program
if [[ $(count "${CARGO_TARGET_DIR:-target}/debug/zone-program" zone_local) == 0 ]]; then
  echo "layering: the symbol check finds nothing even in the developer CLI (is nm working?)" >&2
  fail=1
fi
[[ $fail == 0 ]] && echo "layering ok: zone-program, zone-local, zone-app and zone-crypto keep to their edges; zone-programd carries no zone_local/zone_app/zone_bench code"
exit $fail
