#!/usr/bin/env bash
# Builds the C ABI shim (native/shim) that the Rust program loads with dlopen. `cargo build` never
# needs this script; the native SDK backend and its tests do.
#
#   native/build.sh                      shim + stub vendor SDK (tests, CI) into native/build/
#   native/build.sh --check              also build both with AddressSanitizer/UBSan and run the
#                                        leak and memory check driver (native/tests/shim_check.cpp)
#   native/build.sh --sdk-dir DIR [--out DIR2]
#                                        shim against the REAL vendor SDK: DIR holds cpp_sdk.h and
#                                        libWeWorkSpecSDK.so; the shim goes to DIR2 (default
#                                        native/build/vendor) and finds the vendor library beside
#                                        itself ($ORIGIN) or in DIR at run time.
#
# Needs g++ (C++17) and, for the stub, OpenSSL 3 headers (Debian: apt-get install g++ libssl-dev).
# Rebuilds only when a source is newer than its output.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/build"
sdk_dir=""
out=""
check=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sdk-dir) sdk_dir="$(cd "$2" && pwd)"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "native/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

CXX="${CXX:-g++}"
command -v "$CXX" >/dev/null ||
  { echo "native/build.sh: $CXX not found (Debian/Ubuntu: apt-get install g++ libssl-dev)" >&2; exit 1; }
CXXFLAGS=(-std=c++17 -O2 -g -fPIC -Wall -Wextra -Werror)
# The shim exports only its C ABI (zone_shim.cpp marks it visible).
SHIMFLAGS=(-fvisibility=hidden -fvisibility-inlines-hidden)
LDFLAGS=(-shared -Wl,--no-undefined -Wl,-z,defs)
stub_src=("$here"/stub-sdk/stub_sdk.cpp "$here"/stub-sdk/stub_codec.cpp "$here"/stub-sdk/stub_json.cpp "$here"/stub-sdk/stub_http.cpp)
stub_hdr=("$here"/stub-sdk/cpp_sdk.h "$here"/stub-sdk/stub_internal.h)
shim_src=("$here"/shim/zone_shim.cpp "$here"/shim/zone_shim.h)

# up_to_date OUTPUT INPUT... : true when OUTPUT exists and is newer than every INPUT.
up_to_date() {
  local target="$1"; shift
  [[ -e "$target" ]] || return 1
  local f
  for f in "$@" "$0"; do [[ "$f" -nt "$target" ]] && return 1; done
  return 0
}

# build_stub_and_shim DIR EXTRA_FLAGS... : the stub SDK in DIR/stub, the shim against it in DIR.
build_stub_and_shim() {
  local dir="$1"; shift
  mkdir -p "$dir/stub"
  if ! up_to_date "$dir/stub/libWeWorkSpecSDK.so" "${stub_src[@]}" "${stub_hdr[@]}"; then
    echo "native/build.sh: building the stub SDK -> ${dir#"$here"/}/stub/libWeWorkSpecSDK.so"
    "$CXX" "${CXXFLAGS[@]}" "$@" "${LDFLAGS[@]}" -Wl,-soname,libWeWorkSpecSDK.so \
      -o "$dir/stub/libWeWorkSpecSDK.so" "${stub_src[@]}" -lcrypto -lpthread
  fi
  if ! up_to_date "$dir/libzone_shim.so" "${shim_src[@]}" "${stub_hdr[@]}" "$dir/stub/libWeWorkSpecSDK.so"; then
    echo "native/build.sh: building the shim (stub SDK) -> ${dir#"$here"/}/libzone_shim.so"
    "$CXX" "${CXXFLAGS[@]}" "${SHIMFLAGS[@]}" "$@" -DZONE_SHIM_STUB_SDK -I"$here/stub-sdk" "${LDFLAGS[@]}" \
      -o "$dir/libzone_shim.so" "$here/shim/zone_shim.cpp" \
      -L"$dir/stub" -lWeWorkSpecSDK -Wl,-rpath,'$ORIGIN/stub'
  fi
}

if [[ -n "$sdk_dir" ]]; then
  [[ -f "$sdk_dir/cpp_sdk.h" && -f "$sdk_dir/libWeWorkSpecSDK.so" ]] ||
    { echo "native/build.sh: $sdk_dir must contain cpp_sdk.h and libWeWorkSpecSDK.so" >&2; exit 1; }
  out="${out:-$build/vendor}"
  mkdir -p "$out"
  # The stub SDK's header and library standing in for the vendor's (the image test in CI): the shim
  # then passes its init options on to the stub, as the stub build above does.
  vendor_flags=()
  if grep -q WWSPEC_STUB_CPP_SDK_H "$sdk_dir/cpp_sdk.h"; then vendor_flags=(-DZONE_SHIM_STUB_SDK); fi
  echo "native/build.sh: building the shim against the ${vendor_flags:+stub (stand-in) }vendor SDK in $sdk_dir -> $out/libzone_shim.so"
  "$CXX" "${CXXFLAGS[@]}" "${SHIMFLAGS[@]}" "${vendor_flags[@]}" -I"$sdk_dir" "${LDFLAGS[@]}" -o "$out/libzone_shim.so" "$here/shim/zone_shim.cpp" \
    -L"$sdk_dir" -lWeWorkSpecSDK -Wl,-rpath,"\$ORIGIN:$sdk_dir"
  exit 0
fi

[[ -f /usr/include/openssl/evp.h ]] || echo "#include <openssl/evp.h>" | "$CXX" -E -x c++ - >/dev/null 2>&1 ||
  { echo "native/build.sh: OpenSSL 3 headers not found (Debian/Ubuntu: apt-get install libssl-dev)" >&2; exit 1; }
build_stub_and_shim "$build"

if [[ "$check" == 1 ]]; then
  san=(-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  build_stub_and_shim "$build/asan" "${san[@]}"
  echo "native/build.sh: checking that zone_shim.h is valid C"
  "${CC:-gcc}" -std=c11 -Wall -Wextra -Werror -fsyntax-only -x c "$here/shim/zone_shim.h"
  driver="$build/asan/shim_check"
  if ! up_to_date "$driver" "$here/tests/shim_check.cpp" "$build/asan/libzone_shim.so" "${stub_src[@]}"; then
    "$CXX" -std=c++17 -O1 -g "${san[@]}" -Wall -Wextra -Werror -I"$here/shim" -I"$here/stub-sdk" \
      -o "$driver" "$here/tests/shim_check.cpp" "$here/stub-sdk/stub_codec.cpp" "$here/stub-sdk/stub_json.cpp" \
      -L"$build/asan" -lzone_shim -Wl,-rpath,"$build/asan" -lcrypto -lpthread
  fi
  echo "native/build.sh: running the shim check under AddressSanitizer, LeakSanitizer and UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 "$driver"
fi
