#!/usr/bin/env bash
# Installs what native/build.sh needs (g++ and the OpenSSL 3 headers) when it is missing, with
# apt-get as root; otherwise says what to install. Called by .ci/run and scripts/test.sh.
set -euo pipefail
missing=()
command -v g++ >/dev/null || missing+=(g++)
[[ -f /usr/include/openssl/evp.h ]] || missing+=(libssl-dev)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "scripts/native-deps.sh: missing ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
