#!/usr/bin/env bash
# Checks the layout of an exported zone image tar (what `docker/podman export` wrote) before it is
# uploaded: every problem is printed, then the exit code says whether there was any.
#
# Usage: scripts/check-image-tar.sh [--no-sdk] TAR
#   --no-sdk   the image was built without the vendor SDK: lib/ is not required
# Checks:
#   - member names are relative to the filesystem root: no absolute name, no `..`, no folder
#     around the tree (opt/zone-program/... must be at the top)
#   - /bin/sh exists (the upload form's start command), directly or through the merged-/usr link
#   - /opt/zone-program: bin/zone-programd (an x86-64 ELF executable), bin/start.sh, config.toml
#     (not group/other-writable), lib/libzone_shim.so and lib/libWeWorkSpecSDK.so, keys/ (0700, every
#     file in it 0600), data/ (0700); all of it owned by root
#   - the system libraries the program and the SDK load: libstdc++.so.6, libcrypto.so.3
#   - the binary carries no emulator, benchmark or app-side code (the developer CLI is not the image's
#     binary): none of their crate paths or symbols appears in it
# Exit codes: 0 the layout is right, 1 a problem was found, 2 usage.
set -euo pipefail

no_sdk=0 tar_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-sdk) no_sdk=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "check-image-tar: unknown option $1" >&2; exit 2 ;;
    *) [[ -z "$tar_file" ]] || { echo "check-image-tar: one TAR only" >&2; exit 2; }; tar_file="$1"; shift ;;
  esac
done
[[ -n "$tar_file" ]] || { echo "usage: scripts/check-image-tar.sh [--no-sdk] TAR" >&2; exit 2; }
[[ -f "$tar_file" ]] || { echo "check-image-tar: $tar_file does not exist" >&2; exit 1; }

problems=0
problem() { echo "check-image-tar: $tar_file: $*" >&2; problems=$((problems + 1)); }

# One pass over the listing (awk: one process for thousands of members), then one line per member:
# type, octal mode ("-rwxr-x---" -> 750), owner, name as stored, link target.
declare -A type mode owner link stored
count=0 absolute=0
listing="$(tar --numeric-owner -tvPf "$tar_file" 2>&1)" || { problem "not a readable tar: ${listing##*$'\n'}"; exit 1; }
while IFS=$'\t' read -r t m ids name target; do
  if [[ "$name" == /* ]]; then
    absolute=$((absolute + 1))
    [[ $absolute -gt 1 ]] || problem "absolute member name $name (pack the tree with names relative to its root: tar -C ROOT -c .)"
  fi
  if [[ "/$name/" == */../* ]]; then
    problem "member name with .. : $name"
  fi
  raw="$name"
  name="${name#./}"
  name="${name%/}"
  [[ -n "$name" && "$name" != "." ]] || continue
  stored[$name]="$raw"
  type[$name]="$t"
  mode[$name]="$m"
  owner[$name]="$ids"
  link[$name]="$target"
  count=$((count + 1))
done < <(awk '{
  perms = $1; n = 0
  for (i = 2; i <= 10; i++) { c = substr(perms, i, 1); n = n * 2 + (c != "-" && c != "S" && c != "T") }
  line = $0
  for (f = 1; f <= 5; f++) { sub(/^[ \t]*[^ \t]+[ \t]+/, "", line) }
  name = line; target = ""
  t = substr(perms, 1, 1)
  if (t == "l") { k = index(name, " -> "); target = substr(name, k + 4); name = substr(name, 1, k - 1) }
  else if (t == "h") { k = index(name, " link to "); target = substr(name, k + 9); name = substr(name, 1, k - 1) }
  printf "%s\t%03o\t%s\t%s\t%s\n", t, n, $2, name, target
}' <<<"$listing")
[[ $absolute -le 1 ]] || problem "$absolute members in all have an absolute name"

z=opt/zone-program
if [[ -z "${type[$z]:-}${type[$z/bin/start.sh]:-}" ]]; then
  wrapped="$(printf '%s\n' "${!type[@]}" | grep -m1 -E '^[^/]+/(.+/)?opt/zone-program/bin/start\.sh$' || true)"
  if [[ -n "$wrapped" ]]; then
    problem "the tree sits in a folder (${wrapped%%/opt/zone-program/*}/): the image's root must be the tar's root"
  fi
fi

# need NAME TYPE WHAT: NAME must be a member of TYPE (f regular, d directory).
need() {
  local t="${type[$1]:-}"
  if [[ -z "$t" ]]; then
    problem "lacks /$1 ($3)"
    return 1
  fi
  local want="$2"
  [[ "$want" == f ]] && want="-"
  if [[ "$t" != "$want" ]]; then
    problem "/$1 is not a $([[ $2 == d ]] && echo directory || echo regular file) ($3)"
    return 1
  fi
}

# /bin/sh, directly or through a symlinked /bin (Debian's merged /usr: bin -> usr/bin).
sh_ok=0
for candidate in bin/sh usr/bin/sh; do
  if [[ -n "${type[$candidate]:-}" ]]; then
    if [[ "$candidate" == bin/sh ]] || [[ "${type[bin]:-}" == l && "${link[bin]}" =~ ^/?usr/bin/?$ ]]; then
      sh_ok=1
    fi
  fi
done
[[ $sh_ok -eq 1 ]] || problem "lacks /bin/sh (the start command of the upload form)"

need "$z/bin/start.sh" f "the start arguments of the upload form" || true
if need "$z/config.toml" f "the configuration start.sh passes"; then
  (( (8#${mode[$z/config.toml]} & 8#022) == 0 )) ||
    problem "/$z/config.toml is ${mode[$z/config.toml]}: group or others may write it (chmod 644)"
fi
if need "$z/bin/zone-programd" f "the program"; then
  (( (8#${mode[$z/bin/zone-programd]} & 8#100) != 0 )) || problem "/$z/bin/zone-programd is ${mode[$z/bin/zone-programd]}: not executable (chmod 755)"
fi
if [[ $no_sdk -eq 0 ]]; then
  need "$z/lib/libzone_shim.so" f "the native SDK shim" || true
  need "$z/lib/libWeWorkSpecSDK.so" f "the vendor SDK" || true
fi
for dir in keys data; do
  if need "$z/$dir" d "created 0700 by the image build"; then
    [[ "${mode[$z/$dir]}" == 700 ]] || problem "/$z/$dir is ${mode[$z/$dir]}; expected 0700 (owner only)"
  fi
done
for name in "${!type[@]}"; do
  case "$name" in
    "$z"/keys/*)
      if [[ "${type[$name]}" == "-" && "${mode[$name]}" != 600 && "${mode[$name]}" != 400 ]]; then
        problem "/$name is ${mode[$name]}; a key file must be 0600 (owner only)"
      fi ;;
  esac
  case "$name" in
    "$z"|"$z"/*)
      [[ "${owner[$name]}" == 0/0 ]] || problem "/$name is owned by ${owner[$name]}; expected root (0/0)" ;;
  esac
done

for lib in libstdc++.so.6 libcrypto.so.3; do
  if [[ -z "${type[usr/lib/x86_64-linux-gnu/$lib]:-}${type[lib/x86_64-linux-gnu/$lib]:-}" ]]; then
    problem "lacks /usr/lib/x86_64-linux-gnu/$lib (the runtime stage installs libstdc++6 and libssl3)"
  fi
done

# The binary: an x86-64 ELF, without the emulator, the bench or the app side.
if [[ "${type[$z/bin/zone-programd]:-}" == "-" ]]; then
  binary="$(mktemp)"
  trap 'rm -f "$binary"' EXIT
  tar -xOf "$tar_file" "${stored[$z/bin/zone-programd]}" >"$binary"
  header="$(head -c 20 "$binary" | od -An -tx1 | tr -d ' \n')"
  # \x7fELF, 64-bit, little-endian ... e_machine (bytes 18-19) 0x3e00 = x86-64.
  [[ "${header:0:10}" == 7f454c4602 && "${header:36:4}" == 3e00 ]] ||
    problem "/$z/bin/zone-programd is not an x86-64 ELF executable (header ${header:0:40})"
  markers='crates/zone-local/|zone_local::|crates/zone-bench/|zone_bench::|crates/zone-app/|zone_app::|crates/zone-testkit/|zone_testkit::'
  found="$(grep -a -o -m1 -E "$markers" "$binary" | head -n 1 || true)"
  [[ -z "$found" ]] ||
    problem "/$z/bin/zone-programd carries emulator, bench or app code (\"$found\"): ship zone-programd, not the developer CLI"
fi

if [[ $problems -gt 0 ]]; then
  echo "check-image-tar: $tar_file: $problems problem(s)" >&2
  exit 1
fi
echo "check-image-tar: $tar_file: layout ok ($count members)"
