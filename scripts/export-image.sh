#!/usr/bin/env bash
# Builds the zone image and exports its filesystem as the tar the zone's upload form takes
# (`docker create` + `docker export`; never `docker save`, with which the start command may fail to
# run: protocol/program-callbacks.md §9). Then prints what to paste into the form.
#
# Usage: scripts/export-image.sh [options]
#   --sdk-archive FILE  the vendor SDK archive (.tar.gz, .tgz or .zip) holding cpp_sdk.h and
#                       libWeWorkSpecSDK.so; verified against the pinned SHA-256 before use
#   --sdk-sha256 HEX    the pinned SHA-256 (default: the first word of vendor/sdk.sha256)
#   --no-sdk            build without the vendor SDK (such an image cannot serve in the zone)
#   --deploy DIR        config.toml and keys/ for the image (default: deploy)
#   --tag NAME          image tag (default: zone-program:<git commit>)
#   --out FILE          the tar to write (default: dist/<tag with : as ->.tar)
#   -h, --help          this text
# Environment: CONTAINER_ENGINE=docker|podman (default: the first of them that answers).
# Exit codes: 0 done, 1 failed, 2 usage, 3 no container engine.
set -euo pipefail

die() { echo "export-image: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

root="$(cd "$(dirname "$0")/.." && pwd)"
sdk_archive="" sdk_sha256="" no_sdk=0 deploy="deploy" tag="" out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sdk-archive) sdk_archive="${2:?}"; shift 2 ;;
    --sdk-sha256) sdk_sha256="${2:?}"; shift 2 ;;
    --no-sdk) no_sdk=1; shift ;;
    --deploy) deploy="${2:?}"; shift 2 ;;
    --tag) tag="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "export-image: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
cd "$root"

# 1. The deployment files.
[[ -f "$deploy/config.toml" ]] ||
  die "$deploy/config.toml is missing: cp deploy/config.zone.example.toml $deploy/config.toml and edit it"

# 2. The vendor SDK, verified against its pinned SHA-256.
work="$(mktemp -d)"
engine="" cid=""
cleanup() {
  if [[ -n "$cid" ]]; then "$engine" rm "$cid" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
sdk_dir="$work/vendor-sdk"
mkdir -p "$sdk_dir"
if [[ -n "$sdk_archive" ]]; then
  [[ -f "$sdk_archive" ]] || die "$sdk_archive does not exist"
  if [[ -z "$sdk_sha256" && -f vendor/sdk.sha256 ]]; then
    read -r sdk_sha256 _ < vendor/sdk.sha256
  fi
  [[ -n "$sdk_sha256" ]] ||
    die "no pinned SHA-256 for the SDK archive: pass --sdk-sha256 HEX or write it to vendor/sdk.sha256"
  actual="$(sha256sum "$sdk_archive" | cut -d' ' -f1)"
  [[ "${actual,,}" == "${sdk_sha256,,}" ]] ||
    die "SHA-256 mismatch for $sdk_archive: expected $sdk_sha256, got $actual (wrong or tampered archive; nothing was built)"
  unpacked="$work/unpacked"
  mkdir -p "$unpacked"
  case "$sdk_archive" in
    *.tar.gz|*.tgz) tar -xzf "$sdk_archive" -C "$unpacked" ;;
    *.zip) unzip -q "$sdk_archive" -d "$unpacked" ;;
    *) die "$sdk_archive: expected .tar.gz, .tgz or .zip" ;;
  esac
  for f in cpp_sdk.h libWeWorkSpecSDK.so; do
    found="$(find "$unpacked" -type f -name "$f" | head -n 1)"
    [[ -n "$found" ]] || die "$sdk_archive holds no $f (is it the C++ SDK package?)"
    cp "$found" "$sdk_dir/"
  done
  echo "export-image: vendor SDK verified (sha256 $actual)"
elif [[ $no_sdk -eq 0 ]]; then
  die "no --sdk-archive: an image without the vendor SDK cannot serve in the zone (pass --no-sdk to build one anyway)"
fi

# 3. A container engine that answers.
tried=()
for candidate in ${CONTAINER_ENGINE:-docker podman}; do
  if ! command -v "$candidate" >/dev/null 2>&1; then
    tried+=("$candidate: not installed")
  elif ! "$candidate" info >/dev/null 2>&1; then
    tried+=("$candidate: installed, but no engine answers (daemon not running or not reachable)")
  else
    engine="$candidate"
    break
  fi
done
if [[ -z "$engine" ]]; then
  {
    echo "export-image: no container engine answers; nothing was built."
    printf '  %s\n' "${tried[@]}"
    echo "  Building and exporting the image needs a running Docker Engine (with BuildKit) or Podman."
    echo "  Start one, or run this script on a machine that has one (x86_64 Linux, or any host with"
    echo "  linux/amd64 emulation)."
  } >&2
  exit 3
fi

# 4. Build for x86_64.
[[ -n "$tag" ]] || tag="zone-program:$(git rev-parse --short HEAD 2>/dev/null || echo latest)"
[[ -n "$out" ]] || out="dist/${tag//[:\/]/-}.tar"
mkdir -p "$(dirname "$out")"
echo "export-image: building $tag with $engine"
"$engine" build --platform linux/amd64 \
  --build-context "deploy=$deploy" \
  --build-context "vendor-sdk=$sdk_dir" \
  -t "$tag" .

# 5. Check the architecture.
platform="$("$engine" image inspect --format '{{.Os}}/{{.Architecture}}' "$tag")"
[[ "$platform" == "linux/amd64" ]] || die "$tag is $platform; the zone runs linux/amd64 (x86_64)"

# 6. Export the filesystem of a created (never started) container.
cid="$("$engine" create "$tag")"
"$engine" export -o "$out" "$cid"
"$engine" rm "$cid" >/dev/null
cid=""
listing="$work/listing"
tar -tf "$out" | sed 's#^\./##' >"$listing"
for f in opt/zone-program/bin/zone-programd opt/zone-program/bin/start.sh opt/zone-program/config.toml; do
  grep -qx "$f" "$listing" || die "$out lacks $f; the export is incomplete"
done
grep -qxE '(usr/)?bin/sh' "$listing" || die "$out lacks /bin/sh, the start command"
if [[ -n "$sdk_archive" ]]; then
  for f in opt/zone-program/lib/libzone_shim.so opt/zone-program/lib/libWeWorkSpecSDK.so; do
    grep -qx "$f" "$listing" || die "$out lacks $f; the native backend is missing"
  done
fi

# 7. What to paste into the upload form.
size="$(du -h "$out" | cut -f1)"
sum="$(sha256sum "$out" | cut -d' ' -f1)"
cat <<EOF

Image exported: $out ($size, sha256 $sum)
In the zone's upload form (服务商后台 → 应用管理 → 数据专区 → 数据与智能专区 → the program):
  image file:       $out
  start command:    /bin/sh
  start arguments:  /opt/zone-program/bin/start.sh
EOF
