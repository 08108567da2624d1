#!/usr/bin/python3
"""Splits a perf profile of bench/techempower into where its CPU goes.

    perf script -i perf-db.data -F ip,sym,dso | bench/pg-split.py

Reads perf script's call chains (leaf first; record with --call-graph dwarf,
as bench/pg-perf.sh does) and prints each bucket's share of the samples,
kernel (the leaf is in the kernel) and user apart:

  pg      the PostgreSQL client: any frame in libpq or in src/clients/pg.c's
          entry points (the sends to PostgreSQL, reading and parsing its
          answers, waking the coroutines)
  render  the /fortunes page: sort, template values, vial_render
  app     the handler's own work (id formatting, JSON, the row copy out)
  http    everything else: the HTTP connection (recv, parse, route,
          response, send), the loop, coroutines

The first bucket whose marker appears anywhere in the chain wins, in that
order: a send to PostgreSQL made from inside a handler counts as pg.
"""
import sys

PG = ("conn_io_cb", "kick_cb", "vial_pg_", "pg_exec_prepared", "run_statement", "op_exec",
      "op_result", "op_await", "op_new", "result_new", "rows_from", "conn_dispatch", "PQ")
RENDER = ("vial_render", "vial_tmpl_", "te_fortunes_", "render_into", "qsort")
APP = ("db_view", "fortunes_view", "queries_view", "world_from", "te_world_json", "vial_json_",
       "te_random_id")


def bucket(frames):
    for name, marks in (("pg", PG), ("render", RENDER), ("app", APP)):
        for sym, dso in frames:
            if "libpq" in dso or sym.startswith(marks):
                return name
    return "http"


def main():
    counts = {}
    frames = []
    total = 0

    def flush():
        nonlocal total
        if not frames:
            return
        side = "kernel" if "kernel" in frames[0][1] else "user"
        key = (bucket(frames), side)
        counts[key] = counts.get(key, 0) + 1
        total += 1
        frames.clear()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            flush()
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        sym, _, dso = rest.rpartition(" (")
        frames.append((sym, dso.rstrip(")")))
    flush()
    if not total:
        sys.exit("pg-split: no samples")
    print("bucket\tuser%\tkernel%\ttotal%")
    for b in ("http", "app", "render", "pg"):
        u = counts.get((b, "user"), 0) * 100.0 / total
        k = counts.get((b, "kernel"), 0) * 100.0 / total
        print(f"{b}\t{u:.1f}\t{k:.1f}\t{u + k:.1f}")
    print(f"samples\t{total}")


main()
