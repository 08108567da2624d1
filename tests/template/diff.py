#!/usr/bin/python3
"""Differential test of vial's template engine against Jinja2.

Usage: diff.py PATH/TO/vial-render [CASE-NAME-SUBSTRING...]

Every tests/template/cases/*.cases file holds cases:

    #### name of the case
    -- ctx
    {"json": "object"}          (optional; {} when absent)
    -- page.html                (the first template is the one rendered)
    ...
    -- base.html                (more templates: extends/include/import)
    ...

A section's text runs to the line before the next "-- " or "####" line (its
last newline is not part of it: leave an empty line to end a template with a
newline). Each case's templates are written to a scratch directory; Jinja2
renders the first one with Flask's settings (FileSystemLoader, autoescape for
.html/.htm/.xml, otherwise defaults) and so does vial-render. The bytes must
match; when Jinja2 raises, vial-render must exit 1 and print NAME:LINE: ... on
stderr (for syntax errors, with Jinja's line).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

try:
    import jinja2
except ImportError:
    print("python3-jinja2 is not installed: skipped")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_cases(path):
    cases = []
    cur = None
    sec = None
    buf = []

    def flush():
        if cur is not None and sec is not None:
            cur["sections"].append((sec, "\n".join(buf)))

    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    for line in lines:
        if line.startswith("#### "):
            flush()
            sec, buf = None, []
            cur = {"name": line[5:].strip(), "sections": [], "file": os.path.basename(path)}
            cases.append(cur)
        elif line.startswith("-- ") and cur is not None:
            flush()
            sec, buf = line[3:].strip(), []
        elif sec is not None:
            buf.append(line)
    flush()
    return cases


def jinja_render(d, name, ctx):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(d),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"]),
    )
    try:
        return True, env.get_template(name).render(ctx).encode("utf-8"), None
    except jinja2.TemplateSyntaxError as e:
        return False, None, ("syntax", e.name, e.lineno, str(e))
    except Exception as e:  # noqa: BLE001 - any failure of Jinja's counts
        return False, None, ("render", None, None, "%s: %s" % (type(e).__name__, e))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    only = sys.argv[2:]
    files = sorted(
        os.path.join(HERE, "cases", f) for f in os.listdir(os.path.join(HERE, "cases")) if f.endswith(".cases")
    )
    total = passed = 0
    failures = []
    for path in files:
        for case in parse_cases(path):
            if only and not any(o in case["name"] for o in only):
                continue
            total += 1
            ctx_text = "{}"
            templates = []
            for sec, text in case["sections"]:
                if sec == "ctx":
                    ctx_text = text
                else:
                    templates.append((sec, text))
            label = "%s: %s" % (case["file"], case["name"])
            if not templates:
                failures.append((label, "no template in case"))
                continue
            with tempfile.TemporaryDirectory() as d:
                for name, text in templates:
                    p = os.path.join(d, name)
                    os.makedirs(os.path.dirname(p), exist_ok=True)
                    with open(p, "w", encoding="utf-8", newline="") as f:
                        f.write(text)
                main_name = templates[0][0]
                ok, want, err = jinja_render(d, main_name, json.loads(ctx_text))
                proc = subprocess.run(
                    [tool, "--dir", d, main_name], input=ctx_text.encode("utf-8"), capture_output=True, timeout=20
                )
            stderr = proc.stderr.decode("utf-8", "replace").strip()
            if ok:
                if proc.returncode != 0:
                    failures.append((label, "vial failed, Jinja rendered %r\n  vial: %s" % (want, stderr)))
                elif proc.stdout != want:
                    failures.append((label, "output differs\n  jinja: %r\n  vial:  %r" % (want, proc.stdout)))
                else:
                    passed += 1
                continue
            kind, ename, eline, emsg = err
            m = re.match(r"^([^:\n]+):(\d+): .+", stderr)
            names = [t[0] for t in templates]
            if proc.returncode != 1:
                failures.append((label, "Jinja failed (%s), vial exit %d\n  vial stdout: %r" % (emsg, proc.returncode, proc.stdout)))
            elif not m or m.group(1) not in names:
                failures.append((label, "vial's error is not NAME:LINE: message: %r" % stderr))
            elif kind == "syntax" and (not (ename or "").endswith(m.group(1)) or int(m.group(2)) != eline):
                failures.append((label, "syntax error place differs: Jinja %s:%s (%s), vial %s" % (ename, eline, emsg, stderr)))
            else:
                passed += 1
    for label, msg in failures:
        print("FAIL %s\n  %s" % (label, msg))
    print("%d cases: %d passed, %d failed" % (total, passed, len(failures)))
    return 0 if not failures and total else 1


if __name__ == "__main__":
    sys.exit(main())
