#!/usr/bin/env bash
# The library as a user meets it: vial is installed into a temporary prefix
# and examples/hello is built outside the tree against it, four ways,
#   1. cc hello.c $(pkg-config --cflags --libs vial)         (libvial.so)
#   2. cc hello.c ... $(pkg-config --static --libs vial)     (libvial.a)
#   3. a CMake project: find_package(vial) -> vial::vial, vial::vial_static
#   4. a CMake project that has vial as a subdirectory (add_subdirectory)
# and each binary is started on a free loopback port and must answer
# GET /hello/vial with "Hello, vial!".
#   tests/install/run.sh [BUILD_DIR]
# With BUILD_DIR (a configured vial build, e.g. build/), that build is brought
# up to date and installed; without, vial is configured and built afresh in
# a temporary directory. Everything it creates is under one temporary
# directory, removed at the end, and it stops only the servers it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/scripts/deps.sh" test # cmake, a compiler, pkg-config, curl, python3
tmp=$(mktemp -d /tmp/vial-install.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
prefix=$tmp/prefix
log=$tmp/log
start=$SECONDS
fail() {
  echo "install test: FAIL: $*" >&2
  [ -s "$log" ] && tail -n 40 "$log" >&2
  exit 1
}
run() { # quiet unless the command fails
  "$@" >"$log" 2>&1 || fail "$*"
}

# 1. Build and install.
if [ -n "${1:-}" ]; then
  bld=$(cd "$1" && pwd)
  run cmake --build "$bld"
else
  bld=$tmp/build
  run cmake -S "$root" -B "$bld" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DVIAL_TESTS=OFF -DVIAL_EXAMPLES=OFF
  run cmake --build "$bld"
fi
run cmake --install "$bld" --prefix "$prefix"
libdir=$(dirname "$(find "$prefix" -name vial.pc -path '*/pkgconfig/*' | head -n 1)")
[ -n "$libdir" ] && [ "$libdir" != . ] || fail "no vial.pc installed"
libdir=$(dirname "$libdir")
for f in "$prefix/include/vial.h" "$prefix/include/vial/config.h" "$libdir/libvial.a" \
         "$libdir/libvial.so" "$libdir/cmake/vial/vialConfig.cmake"; do
  [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
soname=$(readelf -d "$libdir/libvial.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libvial.so.0 ] || fail "SONAME is '$soname', not libvial.so.0"
export PKG_CONFIG_PATH=$libdir/pkgconfig
version=$(pkg-config --modversion vial)
grep -q "#define VIAL_VERSION \"$version\"" "$prefix/include/vial/config.h" ||
  fail "vial.pc says $version, vial/config.h does not"

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# check NAME BINARY [ENV...]: starts it, asks it once, stops it.
check() {
  local name=$1 bin=$2 port pid body i
  shift 2
  port=$(free_port)
  env "$@" "$bin" --host 127.0.0.1 --port "$port" --threads 1 --workers 1 >"$tmp/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  body=""
  for i in $(seq 1 50); do
    body=$(curl -s --max-time 2 "http://127.0.0.1:$port/hello/vial") && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$body" != "Hello, vial!" ]; then
    cp "$tmp/$name.out" "$log"
    fail "$name: GET /hello/vial answered '$body'"
  fi
  echo "install test: $name: ok"
}
needs_libvial() { readelf -d "$1" | grep -q 'NEEDED.*libvial\.so\.0'; }

hello=$root/examples/hello/main.c
mkdir -p "$tmp/pc"
# 2. pkg-config, shared.
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
run cc -o "$tmp/pc/hello" "$hello" $(pkg-config --cflags --libs vial)
needs_libvial "$tmp/pc/hello" || fail "pkg-config build does not use libvial.so"
check pkg-config "$tmp/pc/hello" LD_LIBRARY_PATH="$libdir"
# 3. pkg-config, static: libvial.a by name, its dependencies from --static.
# shellcheck disable=SC2046
run cc -o "$tmp/pc/hello_static" "$hello" $(pkg-config --cflags vial) \
    $(pkg-config --static --libs vial | sed 's/-lvial\b/-l:libvial.a/')
! needs_libvial "$tmp/pc/hello_static" || fail "static build still needs libvial.so"
check pkg-config-static "$tmp/pc/hello_static"

# 4. find_package(vial).
mkdir -p "$tmp/fp"
cp "$hello" "$tmp/fp/hello.c"
cat > "$tmp/fp/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(hello_fp C)
find_package(vial 0.2 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE vial::vial)
add_executable(hello_static hello.c)
target_link_libraries(hello_static PRIVATE vial::vial_static)
CM
run cmake -S "$tmp/fp" -B "$tmp/fp/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix"
run cmake --build "$tmp/fp/build"
needs_libvial "$tmp/fp/build/hello" || fail "vial::vial is not libvial.so"
! needs_libvial "$tmp/fp/build/hello_static" || fail "vial::vial_static needs libvial.so"
check find_package "$tmp/fp/build/hello"
check find_package-static "$tmp/fp/build/hello_static"

# 5. add_subdirectory: vial's own tests, examples and install rules stay off.
mkdir -p "$tmp/sub"
cp "$hello" "$tmp/sub/hello.c"
cat > "$tmp/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(hello_sub C)
add_subdirectory("$root" vial)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE vial::vial)
CM
run cmake -S "$tmp/sub" -B "$tmp/sub/build" -G Ninja -DCMAKE_BUILD_TYPE=Release
run cmake --build "$tmp/sub/build" --target hello
if ninja -C "$tmp/sub/build" -t targets all | grep -qE '^(conformance|test_app|install)\b'; then
  fail "vial as a subdirectory defines its examples, tests or install rules"
fi
check add_subdirectory "$tmp/sub/build/hello"

echo "install test: all ok ($((SECONDS - start)) s)"
