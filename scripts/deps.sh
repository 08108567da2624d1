#!/usr/bin/env bash
# Installs the Debian packages vial needs, for one purpose:
#   scripts/deps.sh build   building the library and the examples, running
#                           them (scripts/build.sh, scripts/demo.sh)
#   scripts/deps.sh test    the above, plus everything the test suite and the
#                           benchmarks use (scripts/test.sh)
#   scripts/deps.sh bench   the above (test), plus the peers bench/compare measures
#                           vial against and the profiler (not needed by the tests)
# Without an argument: test. Idempotent and quiet when everything is present:
# it only calls apt-get for packages that dpkg does not already report as
# installed.
set -euo pipefail

# Building: the compiler and build tools, OpenSSL (session signing), yajl
# (request JSON), zlib and brotli (response compression; brotli is optional,
# see CMakeLists.txt), liburing (the io_uring loop backend, --backend; also
# optional: without it the loops run on epoll), and SQLite, the embedded
# database the demo runs on.
# The clients' libraries (libpq, hiredis, libcurl) are optional: the library
# builds without them (CMakeLists.txt, vial_client). libpq is here all the
# same because the demo switches to PostgreSQL when DATABASE_URL is set; its
# client library only, not the server.
BUILD=(
  build-essential cmake ninja-build pkg-config
  libssl-dev zlib1g-dev libbrotli-dev libyajl-dev libsqlite3-dev libpq-dev liburing-dev
)
# The test suite and the benchmarks: unit tests (cmocka), the black-box tests
# (pytest, requests, websockets), the other clients and throwaway servers for
# their tests, the sanitizer and fuzzer builds (clang), locales for the
# locale tests, the llhttp differential test, the AArch64 context switch
# under qemu, curl for the install test, nginx and wrk for the benchmarks,
# headless Chromium and Selenium for the demo's browser test.
TEST=(
  libcmocka-dev python3 clang libclang-rt-14-dev locales
  python3-pytest python3-requests python3-websockets python3-werkzeug python3-jinja2 python3-brotli
  chromium chromium-driver python3-selenium
  curl nginx-light wrk node-llhttp
  postgresql libhiredis-dev redis-server libcurl4-openssl-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)

# bench/compare: wrk, curl and PostgreSQL as for the tests; nginx; h2o; the
# Python peers (Starlette on uvicorn with uvloop and asyncpg, Flask on
# gunicorn with psycopg2, Quart on hypercorn) from Debian; git and the MariaDB
# client headers to fetch and build lwan's TechEmpower sample (its CMake file
# builds it only when they are present); linux-perf for profiles.
BENCH=(
  curl wrk nginx-light postgresql git libmariadb-dev h2o
  python3-starlette python3-uvicorn python3-uvloop python3-asyncpg python3-flask gunicorn
  python3-quart python3-hypercorn python3-psycopg2 python3-jinja2
  linux-perf
)

case "${1:-test}" in
  build) PKGS=("${BUILD[@]}") ;;
  test) PKGS=("${BUILD[@]}" "${TEST[@]}") ;;
  bench) PKGS=("${BUILD[@]}" "${TEST[@]}" "${BENCH[@]}") ;;
  *) echo "usage: scripts/deps.sh [build|test|bench]" >&2; exit 2 ;;
esac

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
# nginx's (and h2o's) package starts a system service on install; vial's benchmark starts its
# own instance with its own config, so stop the packaged one if it came up.
# The same for PostgreSQL and Redis: tests start throwaway instances of their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl stop nginx h2o postgresql redis-server 2>/dev/null || true
fi
