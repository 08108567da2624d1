#!/usr/bin/env bash
# Runs the whole test suite:
#   1. release build: C unit tests (ctest), llhttp differential test,
#      black-box protocol tests over real sockets (pytest);
#   2. ASan+UBSan build: the same unit and black-box tests;
#   3. TSan build: the loop, coroutine and pool unit tests;
#   4. libFuzzer: the parser target for a bounded time on its seed corpus.
# Options (environment): FUZZ_SECONDS (default 60), SKIP_SANITIZERS=1, SKIP_FUZZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
PY=/usr/bin/python3
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
fail=0
step() { printf '\n=== %s ===\n' "$*"; }

# Throwaway servers for the client tests (loopback, free ports, temp dirs),
# stopped on exit whatever happens.
SERVICES=()
cleanup() {
  for svc in "${SERVICES[@]}"; do
    tests/services/${svc%%:*}.sh stop "${svc#*:}" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
if [ -x tests/services/redis.sh ]; then
  REDIS_DIR=$(mktemp -d /tmp/vial-redis.XXXXXX)
  SERVICES+=("redis:$REDIS_DIR")
  REDIS_PORT=$(tests/services/redis.sh start "$REDIS_DIR")
  export VIAL_TEST_REDIS=127.0.0.1:$REDIS_PORT
fi

step "build (release)"
./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo

step "unit tests (release)"
ctest --test-dir build --output-on-failure -j2 || fail=1

step "black-box tests (release)"
VIAL_BUILD_DIR=$PWD/build $PY -m pytest -q tests/blackbox -p no:cacheprovider || fail=1

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  step "build (ASan+UBSan)"
  ./scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      "-DVIAL_SANITIZE=address,undefined"
  step "unit tests (ASan+UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --test-dir build-asan --output-on-failure -j2 || fail=1
  step "black-box tests (ASan+UBSan)"
  ASAN_OPTIONS=detect_leaks=1 VIAL_BUILD_DIR=$PWD/build-asan VIAL_SANITIZED=1 \
      $PY -m pytest -q tests/blackbox -p no:cacheprovider -m "not slow" || fail=1

  step "build (TSan)"
  ./scripts/build.sh build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      -DVIAL_SANITIZE=thread
  step "loop/coroutine/pool tests (TSan)"
  TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -R 'test_(loop|coro|pool|timer|tasks|app)' || fail=1
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz parser (${FUZZ_SECONDS}s)"
  ./scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DVIAL_FUZZ=ON -DVIAL_TESTS=OFF
  work=$(mktemp -d)
  cp -r fuzz/corpus/parser/. "$work/"
  (cd "$work" && "$OLDPWD/build-fuzz/fuzz_parser" -max_total_time="$FUZZ_SECONDS" \
      -max_len=4096 -print_final_stats=1 . "$OLDPWD/fuzz/corpus/parser" 2>&1 | tail -n 15) || fail=1
  rm -rf "$work"
fi

if [ $fail -ne 0 ]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all suites passed"
