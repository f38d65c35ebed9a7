#!/usr/bin/env bash
# Installs what `zone-program bench`'s Netty peer needs (crates/zone-bench/src/netty.rs): a JDK
# (javac and java, OpenJDK 17) and Debian's Netty jars (libnetty-java, /usr/share/java/netty-*.jar),
# with apt-get as root. Not part of CI or scripts/test.sh: the bench is not run there, and its smoke
# test skips the Netty peer (saying why) where these are missing. Without them `bench` skips the
# peer too, unless `--netty require`.
set -euo pipefail
missing=()
command -v javac >/dev/null && command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
for module in common buffer transport resolver codec codec-http handler; do
  if [[ ! -e /usr/share/java/netty-$module.jar ]]; then
    missing+=(libnetty-java)
    break
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "scripts/bench-deps.sh: java, javac and the Netty jars are installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "scripts/bench-deps.sh: missing ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
