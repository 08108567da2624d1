#!/usr/bin/env python3
"""ctest migrate: scripts/migrate-0.2.py turns old.c.in into expected.c.out,
reports what it cannot convert, and changes nothing when run again."""
import os
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
script = os.path.join(here, "..", "..", "scripts", "migrate-0.2.py")
with tempfile.TemporaryDirectory() as d:
    src = os.path.join(d, "app.c")
    shutil.copy(os.path.join(here, "old.c.in"), src)
    # a changelog quoting old names is left alone
    log = os.path.join(d, "CHANGES.md")
    with open(log, "w") as f:
        f.write("<!-- migrate-0.2: skip -->\nvial_client_new(app)\n")
    p = subprocess.run([sys.executable, script, d], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("migrate-0.2.py failed: " + p.stderr)
    got = open(src).read()
    want = open(os.path.join(here, "expected.c.out")).read()
    if got != want:
        sys.stdout.writelines(__import__("difflib").unified_diff(
            want.splitlines(True), got.splitlines(True), "expected.c.out", "migrated"))
        sys.exit("migrated output differs from expected.c.out")
    if "vial_client_new" not in open(log).read():
        sys.exit("a file marked 'migrate-0.2: skip' was rewritten")
    for what in ("vial_errorhandler: flags argument 'flags_from_somewhere'",
                 "vial_redis_new: host or port is not a literal",
                 "vial_route_as: last argument 't->flags' looks like flags"):
        if what not in p.stderr:
            sys.exit("not reported: " + what + "\nstderr: " + p.stderr)
    p = subprocess.run([sys.executable, script, "--check", d], capture_output=True, text=True)
    if p.returncode != 0 or open(src).read() != want:
        sys.exit("a second run changes the file: " + p.stdout)
print("ok")
