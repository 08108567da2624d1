#!/usr/bin/env bash
# Installs the Debian packages vial needs to build, test and benchmark.
# Idempotent and quiet when everything is present: it only calls apt-get for
# packages that dpkg does not already report as installed.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libssl-dev zlib1g-dev
  libcmocka-dev libyajl-dev
  python3-jinja2
  python3-pytest python3-requests python3-websockets
  curl nginx-light wrk node-llhttp
  libpq-dev postgresql libhiredis-dev redis-server libcurl4-openssl-dev libsqlite3-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx's package starts a system service on install; vial's benchmark starts its
# own instance with its own config, so stop the packaged one if it came up.
# The same for PostgreSQL and Redis: tests start throwaway instances of their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl stop nginx postgresql redis-server 2>/dev/null || true
fi
