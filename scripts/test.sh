#!/usr/bin/env bash
# Runs the whole test suite:
#   1. release build: C unit tests (ctest), llhttp differential test,
#      black-box protocol tests over real sockets (pytest) on the default
#      backend (io_uring), again with the loops on epoll
#      (VIAL_BACKEND=epoll), and again over TLS, the realtime suites with
#      io_uring refused (tests/blackbox/no_uring.py),
#      with the deployment test beside them (nginx in front of two instances,
#      tests/deploy), the demo in headless Chromium (tests/browser/run.sh);
#   2. ASan+UBSan build: the same unit and black-box tests;
#   3. TSan build: the loop, coroutine and pool unit tests;
#   4. libFuzzer: the parser target for a bounded time on its seed corpus.
# Options (environment): FUZZ_SECONDS (default 60), SKIP_SANITIZERS=1, SKIP_FUZZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh test
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
if [ -x tests/services/pg.sh ]; then
  VIAL_TEST_PG=$(tests/services/pg.sh start)
  SERVICES+=("pg:$VIAL_TEST_PG")
  export VIAL_TEST_PG
fi

step "build (release)"
./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo

step "unit tests (release)"
ctest --test-dir build --output-on-failure -j2 || fail=1

step "install: hello built against an installed libvial (pkg-config, static, find_package, add_subdirectory)"
tests/install/run.sh build || fail=1

step "context switches (x86-64, ucontext, AArch64 under qemu-user)"
./scripts/test-switches.sh || fail=1

# The deployment test (nginx, two instances, its own Redis and PostgreSQL;
# bounded, < 2 min) runs beside the black-box tests; its output follows theirs.
deploy_pid=""
if [ -x build/examples/cluster ]; then
  tests/deploy/run.sh build >build/deploy.log 2>&1 &
  deploy_pid=$!
fi

# Every step without VIAL_BACKEND runs the default, io_uring (epoll where
# the kernel refuses it: test_backend.py checks which one a server says).
step "black-box tests (release, io_uring: the default)"
VIAL_BUILD_DIR=$PWD/build $PY -m pytest -q tests/blackbox -p no:cacheprovider || fail=1

# The whole suite again with every server's loops on epoll, the fallback
# (the test servers inherit VIAL_BACKEND). Its own step: the lead decides
# on parallelism.
step "black-box tests on epoll (release)"
VIAL_BACKEND=epoll VIAL_BUILD_DIR=$PWD/build $PY -m pytest -q tests/blackbox -p no:cacheprovider || fail=1

# The protocol, app, websocket and realtime suites again, every server with
# --tls-cert and every client over TLS (tests/blackbox/tlskit.py). Not in
# parallel with the plain pass: their timing tests share two cores.
step "black-box tests over TLS (release, io_uring)"
VIAL_TEST_TLS=1 VIAL_BUILD_DIR=$PWD/build $PY -m pytest -q -p no:cacheprovider \
    tests/blackbox/test_http_*.py tests/blackbox/test_app_*.py tests/blackbox/test_websocket.py \
    tests/blackbox/test_ws_deflate.py tests/blackbox/test_sse.py tests/blackbox/test_hub.py \
    tests/blackbox/test_compress.py tests/blackbox/test_templates.py || fail=1

# Where a container's seccomp profile refuses io_uring, the default falls
# back: the realtime suites (the hub's batched sends have a ring of their
# own, then send(2) each) with every server refused io_uring_setup.
step "black-box tests with io_uring refused by seccomp (release, ~20 s)"
VIAL_BUILD_DIR=$PWD/build $PY tests/blackbox/no_uring.py $PY -m pytest -q -p no:cacheprovider \
    tests/blackbox/test_backend.py tests/blackbox/test_hub.py tests/blackbox/test_hub_limits.py \
    tests/blackbox/test_hub_redis.py tests/blackbox/test_sse.py tests/blackbox/test_websocket.py || fail=1

step "deploy: nginx in front of two cluster instances, Redis, PostgreSQL (tests/deploy/run.sh)"
if [ -n "$deploy_pid" ]; then
  wait "$deploy_pid" || { echo "deploy: FAILED"; fail=1; }
  cat build/deploy.log
else
  # scripts/deps.sh test installs both clients: a missing cluster app is a
  # broken build, never a silent skip.
  echo "deploy: FAILED: build/examples/cluster was not built (it needs the PostgreSQL and Redis clients)"
  fail=1
fi

step "browser test: the demo in two headless Chromium windows (screenshots in build/browser)"
VIAL_BUILD_DIR=$PWD/build tests/browser/run.sh build/browser || fail=1

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  step "build (ASan+UBSan)"
  ./scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      "-DVIAL_SANITIZE=address,undefined"
  step "unit tests (ASan+UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --test-dir build-asan --output-on-failure -j2 || fail=1
  step "black-box tests (ASan+UBSan, io_uring)"
  ASAN_OPTIONS=detect_leaks=1 VIAL_BUILD_DIR=$PWD/build-asan VIAL_SANITIZED=1 \
      $PY -m pytest -q tests/blackbox -p no:cacheprovider -m "not slow" || fail=1

  step "build (TSan)"
  ./scripts/build.sh build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      -DVIAL_SANITIZE=thread
  step "loop/coroutine/pool tests (TSan)"
  TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -R 'test_(loop|coro|pool|timer|tasks|app)' || fail=1
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz: every parser, bounded (${FUZZ_SECONDS}s for the HTTP parser, half that for the others)"
  ./scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DVIAL_FUZZ=ON -DVIAL_TESTS=OFF
  fuzz_one() { # name seconds
    local work
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$1/." "$work/"
    if ! "build-fuzz/fuzz_$1" -max_total_time="$2" -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$work/" "$work" > "$work.log" 2>&1; then
      echo "fuzz_$1: FAILED"; tail -n 40 "$work.log"; rm -rf "$work" "$work.log"; return 1
    fi
    echo "fuzz_$1: $(grep -E 'stat::number_of_executed_units' "$work.log" | awk '{print $2}') runs, no crash"
    rm -rf "$work" "$work.log"
  }
  fuzz_one parser "$FUZZ_SECONDS" & p1=$!
  fuzz_one multipart $((FUZZ_SECONDS / 2)) || fail=1
  fuzz_one json $((FUZZ_SECONDS / 2)) || fail=1
  fuzz_one cookies $((FUZZ_SECONDS / 4)) || fail=1
  fuzz_one accept_encoding $((FUZZ_SECONDS / 4)) || fail=1
  fuzz_one proxy $((FUZZ_SECONDS / 4)) || fail=1
  fuzz_one websocket $((FUZZ_SECONDS / 2)) || fail=1
  fuzz_one ws_inflate $((FUZZ_SECONDS / 2)) || fail=1
  fuzz_one template $((FUZZ_SECONDS / 2)) || fail=1
  wait $p1 || fail=1
fi

if [ $fail -ne 0 ]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all suites passed"
