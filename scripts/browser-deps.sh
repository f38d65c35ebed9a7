#!/usr/bin/env bash
# Installs what the console's browser test needs (tests/e2e/console.rs): headless Chromium, its
# WebDriver (chromedriver) and a CJK font (the demo world's names are Chinese), all from Debian's
# packages, with apt-get as root. Called by scripts/test.sh (and so by .ci/run). When they cannot be
# installed it says so and exits 0: the browser test then skips with that reason, unless
# ZONE_TEST_REQUIRE_BROWSER=1 (which scripts/test.sh sets only when the install succeeded).
set -euo pipefail
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]] || missing+=(fonts-wqy-zenhei)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; }; then
    echo "scripts/browser-deps.sh: could not install ${missing[*]}; the console's browser test will be skipped" >&2
  fi
else
  echo "scripts/browser-deps.sh: missing ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]}); the console's browser test will be skipped" >&2
fi
