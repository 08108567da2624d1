#!/usr/bin/env bash
# Exercises every coroutine context switch vial ships with the dependency-free
# smoke test tests/arch/coro_smoke.c: the x86-64 and ucontext switches
# natively, and the AArch64 switch cross-compiled (Debian's
# gcc-aarch64-linux-gnu) and run under qemu-user. (The full unit suite runs
# on the native switch; this proves the others are not dead code.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
SRC="tests/arch/coro_smoke.c src/runtime/coro.c src/runtime/loop.c src/runtime/backend_epoll.c src/runtime/log.c src/runtime/numfmt.c src/runtime/crash.c src/runtime/pool.c"
FLAGS="-std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Iinclude -Isrc"
fail=0
run() { # name compiler defs switch-source [runner...]
  local name=$1 cc=$2 defs=$3 sw=$4
  shift 4
  # shellcheck disable=SC2086
  if ! $cc $FLAGS $defs -o "$out/$name" $SRC "$sw" -lpthread; then
    echo "switch $name: build FAILED"; fail=1; return
  fi
  printf 'switch %-9s ' "$name"
  "$@" "$out/$name" || { echo "switch $name: FAILED"; fail=1; }
}
case "$(uname -m)" in
  x86_64) run x86_64 cc -DVIAL_CORO_ASM=1 src/runtime/arch/switch_x86_64.S ;;
  aarch64) run aarch64 cc -DVIAL_CORO_ASM=1 src/runtime/arch/switch_aarch64.S ;;
esac
run ucontext cc -DVIAL_CORO_UCONTEXT=1 src/runtime/arch/switch_ucontext.c
if [ "$(uname -m)" != aarch64 ]; then
  run aarch64 aarch64-linux-gnu-gcc -DVIAL_CORO_ASM=1 src/runtime/arch/switch_aarch64.S \
      qemu-aarch64 -L /usr/aarch64-linux-gnu
fi
exit $fail
