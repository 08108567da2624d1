#!/usr/bin/env bash
# The real-browser test of examples/demo: headless Chromium (Debian's
# chromium + chromium-driver) driven by python3-selenium.
#   tests/browser/run.sh [OUTDIR]     screenshots (PNG) go to OUTDIR
# Uses the demo in $VIAL_BUILD_DIR (default build/), building only that
# target when it is missing. Fails, never skips, when a piece is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${VIAL_BUILD_DIR:-$root/build}
out=${1:-$(mktemp -d /tmp/vial-browser.XXXXXX)}
mkdir -p "$out"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
/usr/bin/python3 -c 'import selenium' 2>/dev/null || missing+=(python3-selenium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser test: FAILED: missing ${missing[*]} (install: scripts/deps.sh test)" >&2
  exit 1
fi
if [ ! -x "$build/examples/demo" ]; then
  if [ -f "$build/build.ninja" ]; then
    ninja -C "$build" demo >/dev/null
  else
    "$root/scripts/build.sh" "$build" >/dev/null
  fi
fi
echo "browser test: screenshots in $out"
exec timeout -k 10 300 /usr/bin/python3 "$root/tests/browser/board.py" \
  --demo "$build/examples/demo" --out "$out"
