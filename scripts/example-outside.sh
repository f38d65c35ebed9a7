#!/usr/bin/env bash
# Proves that examples/provider-ability builds and passes its tests as a provider's own crate would:
# copies it to a fresh directory outside the repository, rewrites its path dependencies to absolute
# paths of this checkout, and runs its tests there. The build shares the workspace's target
# directory (CARGO_TARGET_DIR, default ./target) so it costs little after the workspace's build.
# Extra arguments go to `cargo test`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cp -R "$repo/examples/provider-ability" "$out/provider-ability"
crate="$out/provider-ability"
# Every path dependency points into ../../crates; make each absolute.
sed -i.bak "s#path = \"\.\./\.\./crates/#path = \"$repo/crates/#g" "$crate/Cargo.toml"
rm -f "$crate/Cargo.toml.bak"
if grep -q '\.\./' "$crate/Cargo.toml"; then
    echo "a relative path is left in the copied Cargo.toml" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
echo "== examples/provider-ability, copied to $crate"
cargo test --manifest-path "$crate/Cargo.toml" "$@"
