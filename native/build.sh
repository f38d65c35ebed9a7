#!/usr/bin/env bash
# Builds the C ABI shim (native/shim) that the Rust program loads with dlopen. `cargo build` never
# needs this script; the native SDK backend and its tests do.
#
#   native/build.sh                      shim + stub vendor SDK (tests, CI) into native/build/
#   native/build.sh --check              also build the stub and the shim in BOTH vendor shapes (below)
#                                        with AddressSanitizer/UBSan and run the leak and memory check
#                                        driver (native/tests/shim_check.cpp) against each
#   native/build.sh --sdk-dir DIR [--out DIR2]
#                                        shim against the REAL vendor SDK: DIR holds cpp_sdk.h and
#                                        libWeWorkSpecSDK.so; the shim goes to DIR2 (default
#                                        native/build/vendor) and finds the vendor library beside
#                                        itself ($ORIGIN) or in DIR at run time.
#   --invoke-shape set-request|request-arg   sdk.SetRequest(r); sdk.Invoke(api)  |  Invoke(&sdk, api, r)
#   --log-shape string|printf                WWSpecLogInfo(reqid, text)  |  WWSpecLogInfoWithReqId(reqid, "%s", text)
#                                        the vendor names' two plausible shapes (docs/vendor-sdk.md);
#                                        default set-request and string
#
# Vendor headers are included with -isystem (their warnings never fail the build); CXXFLAGS and
# LDFLAGS from the environment are appended to the script's own (e.g. CXXFLAGS=-Wno-error).
# Needs g++ (C++17) and, for the stub, OpenSSL 3 headers (Debian: apt-get install g++ libssl-dev).
# Rebuilds only when a source or a flag is newer than its output.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/build"
sdk_dir=""
out=""
check=0
invoke_shape=1
log_shape=1
shape_of() {
  case "$1" in
    set-request|string) echo 1 ;;
    request-arg|printf) echo 2 ;;
    *) echo "native/build.sh: unknown shape $1 (set-request | request-arg, string | printf)" >&2; exit 2 ;;
  esac
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sdk-dir) sdk_dir="$(cd "$2" && pwd)"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --check) check=1; shift ;;
    --invoke-shape) invoke_shape="$(shape_of "$2")"; shift 2 ;;
    --log-shape) log_shape="$(shape_of "$2")"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "native/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

CXX="${CXX:-g++}"
command -v "$CXX" >/dev/null ||
  { echo "native/build.sh: $CXX not found (Debian/Ubuntu: apt-get install g++ libssl-dev)" >&2; exit 1; }
read -r -a user_cxxflags <<<"${CXXFLAGS:-}"
read -r -a user_ldflags <<<"${LDFLAGS:-}"
# -Wformat=2 includes -Wformat-security: a non-literal format string fails the build.
CXXFLAGS=(-std=c++17 -O2 -g -fPIC -Wall -Wextra -Wformat=2 -Werror)
# The shim exports only its C ABI (zone_shim.cpp marks it visible).
SHIMFLAGS=(-fvisibility=hidden -fvisibility-inlines-hidden)
LDFLAGS=(-shared -Wl,--no-undefined -Wl,-z,defs)
shape_flags() { echo "-DZONE_SHIM_INVOKE_SHAPE=$1 -DZONE_SHIM_LOG_SHAPE=$2"; }
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

# flags_stamp DIR WORDS... : a file under DIR whose content is WORDS, touched only when they change,
# so that a change of flags or shapes rebuilds.
flags_stamp() {
  local stamp="$1/.flags"; shift
  mkdir -p "$(dirname "$stamp")"
  local want="$*"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || printf '%s' "$want" >"$stamp"
  echo "$stamp"
}

# build_stub_and_shim DIR INVOKE_SHAPE LOG_SHAPE EXTRA_FLAGS... : the stub SDK in DIR/stub, the shim
# against it (in those shapes) in DIR.
build_stub_and_shim() {
  local dir="$1" ishape="$2" lshape="$3"; shift 3
  mkdir -p "$dir/stub"
  local stamp
  # shellcheck disable=SC2046
  stamp="$(flags_stamp "$dir" "${CXXFLAGS[@]}" "$@" "${user_cxxflags[@]}" "${user_ldflags[@]}" $(shape_flags "$ishape" "$lshape"))"
  if ! up_to_date "$dir/stub/libWeWorkSpecSDK.so" "${stub_src[@]}" "${stub_hdr[@]}" "$stamp"; then
    echo "native/build.sh: building the stub SDK -> ${dir#"$here"/}/stub/libWeWorkSpecSDK.so"
    "$CXX" "${CXXFLAGS[@]}" "$@" "${user_cxxflags[@]}" "${LDFLAGS[@]}" "${user_ldflags[@]}" -DWWSPEC_STUB_IMPLEMENTATION -Wl,-soname,libWeWorkSpecSDK.so \
      -o "$dir/stub/libWeWorkSpecSDK.so" "${stub_src[@]}" -lcrypto -lpthread
  fi
  if ! up_to_date "$dir/libzone_shim.so" "${shim_src[@]}" "${stub_hdr[@]}" "$dir/stub/libWeWorkSpecSDK.so" "$stamp"; then
    echo "native/build.sh: building the shim (stub SDK, invoke shape $ishape, log shape $lshape) -> ${dir#"$here"/}/libzone_shim.so"
    # shellcheck disable=SC2046
    "$CXX" "${CXXFLAGS[@]}" "${SHIMFLAGS[@]}" "$@" "${user_cxxflags[@]}" $(shape_flags "$ishape" "$lshape") \
      -DZONE_SHIM_STUB_SDK -isystem "$here/stub-sdk" "${LDFLAGS[@]}" "${user_ldflags[@]}" \
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
  echo "native/build.sh: building the shim against the ${vendor_flags:+stub (stand-in) }vendor SDK in $sdk_dir (invoke shape $invoke_shape, log shape $log_shape) -> $out/libzone_shim.so"
  # shellcheck disable=SC2046
  "$CXX" "${CXXFLAGS[@]}" "${SHIMFLAGS[@]}" "${user_cxxflags[@]}" "${vendor_flags[@]}" $(shape_flags "$invoke_shape" "$log_shape") \
    -isystem "$sdk_dir" "${LDFLAGS[@]}" "${user_ldflags[@]}" -o "$out/libzone_shim.so" "$here/shim/zone_shim.cpp" \
    -L"$sdk_dir" -lWeWorkSpecSDK -Wl,-rpath,"\$ORIGIN:$sdk_dir"
  exit 0
fi

[[ -f /usr/include/openssl/evp.h ]] || echo "#include <openssl/evp.h>" | "$CXX" -E -x c++ - >/dev/null 2>&1 ||
  { echo "native/build.sh: OpenSSL 3 headers not found (Debian/Ubuntu: apt-get install libssl-dev)" >&2; exit 1; }
build_stub_and_shim "$build" "$invoke_shape" "$log_shape"

if [[ "$check" == 1 ]]; then
  san=(-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  echo "native/build.sh: checking that zone_shim.h is valid C"
  "${CC:-gcc}" -std=c11 -Wall -Wextra -Werror -fsyntax-only -x c "$here/shim/zone_shim.h"
  # Both vendor shapes: (set-request, string) and (request-arg, printf).
  for shapes in "1 1" "2 2"; do
    read -r ishape lshape <<<"$shapes"
    dir="$build/asan-shape$ishape"
    build_stub_and_shim "$dir" "$ishape" "$lshape" "${san[@]}"
    driver="$dir/shim_check"
    if ! up_to_date "$driver" "$here/tests/shim_check.cpp" "$dir/libzone_shim.so" "${stub_src[@]}"; then
      "$CXX" -std=c++17 -O1 -g "${san[@]}" -Wall -Wextra -Werror -I"$here/shim" -isystem "$here/stub-sdk" -DWWSPEC_STUB_IMPLEMENTATION \
        -o "$driver" "$here/tests/shim_check.cpp" "$here/stub-sdk/stub_codec.cpp" "$here/stub-sdk/stub_json.cpp" \
        -L"$dir" -lzone_shim -L"$dir/stub" -lWeWorkSpecSDK -Wl,-rpath,"$dir:$dir/stub" -lcrypto -lpthread
    fi
    echo "native/build.sh: running the shim check (invoke shape $ishape, log shape $lshape) under AddressSanitizer, LeakSanitizer and UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ZONE_SHIM_CHECK_SHAPES="$ishape $lshape" ZONE_SHIM_CHECK_DIR="$dir" "$driver"
  done
fi
