#!/usr/bin/env python3
"""Compiles every ```c block of the guide, so an example that rots fails ctest.

    extract.py --root SRC --out DIR [--cc CC] [--cflags FLAGS] [-I DIR]...
               [--lib LIBVIAL_SO] PAGE.md...
    extract.py --selftest [same options]

Each block is one of:
  program   it defines main(): compiled with -Wall -Werror and linked against
            libvial.so (--lib; without it, or when the block needs a client
            that vial/config.h says is not compiled in, it is only compiled);
            one that handles "--test" is then run with --test.
  fragment  anything else: its top-level definitions (functions, statics,
            types, #includes) are kept at file scope and its statements are
            put in a function whose parameters are the names a fragment may
            take for granted: `app`, `rq`, `rs`, `argc`, `argv`. It is
            compiled (not linked) with -Wall -Werror -Wno-unused after
            <vial.h> and the usual libc headers. Lines that are only `...`
            are elisions and dropped.
  skip      a block that cannot compile (shell output shown as C): say why.

An HTML comment right before a block (invisible on the rendered page) tells
what a fragment needs:

    <!-- compile: fragment
         needs: vial/pg.h
         given: static vial_pg *db; int load_user(vial_req *rq, vial_res *rs); -->
    <!-- compile: skip (why it cannot compile) -->

`needs` lists headers to include, `given` is C placed at file scope before
the fragment: the declarations the surrounding text implies. The generated
file carries #line directives, so a compiler error points at the page and
line of the guide itself. The page's relative links are checked too: the
file must exist, and an anchor must be one of its headings. Output: one line per block; failures with the
compiler's messages. Exit status 1 when any block fails.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

LIBC_HEADERS = ["assert.h", "errno.h", "stdbool.h", "stddef.h", "stdint.h", "stdio.h",
                "stdlib.h", "string.h"]
FRAGMENT_PARAMS = "vial_app *app, vial_req *rq, vial_res *rs, int argc, char **argv"
CLIENT_HEADERS = {"vial/pg.h": "VIAL_HAVE_PG", "vial/redis.h": "VIAL_HAVE_REDIS",
                  "vial/http_client.h": "VIAL_HAVE_HTTP", "vial/sqlite.h": "VIAL_HAVE_SQLITE"}
CONTROL = ("if", "else", "for", "while", "do", "switch", "return", "case", "default", "goto")


class Block:
    def __init__(self, page, line, code, hint, hint_line):
        self.page = page          # path relative to the root, as printed
        self.line = line          # line of the first code line (after the fence)
        self.code = code          # list of lines
        self.hint = hint          # dict or None
        self.hint_line = hint_line

    def where(self):
        return "%s:%d" % (self.page, self.line)


class PageError(Exception):
    pass


def parse_hint(text, where):
    """'compile: fragment needs: a.h given: ...' -> dict(kind, reason, needs, given)."""
    body = text.strip()[len("compile:"):]
    parts = re.split(r"(?:^|[,\s])\s*(needs|given):", body)
    head = parts[0].strip().rstrip(",").strip()
    m = re.fullmatch(r"(fragment|program|skip)\s*(?:\((.*)\))?", head, re.S)
    if not m:
        raise PageError("%s: unknown compile hint %r (fragment, program or skip (reason))"
                        % (where, head))
    hint = {"kind": m.group(1), "reason": (m.group(2) or "").strip(), "needs": [], "given": ""}
    if hint["kind"] == "skip" and not hint["reason"]:
        raise PageError("%s: a skip needs its reason: <!-- compile: skip (why) -->" % where)
    for key, value in zip(parts[1::2], parts[2::2]):
        if key == "needs":
            hint["needs"] += [h for h in re.split(r"[\s,]+", value.strip()) if h]
        else:
            hint["given"] += value.strip() + "\n"
    return hint


def read_blocks(root, page):
    """The ```c blocks of a markdown page, each with the compile hint before it."""
    rel = os.path.relpath(page, root)
    with open(page, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    hints = {}      # line index of a hint's end -> (hint, first line number)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("<!--") and re.match(r"\s*<!--\s*compile:", line):
            start = i
            text = line.split("<!--", 1)[1]
            while "-->" not in text and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]
            if "-->" not in text:
                raise PageError("%s:%d: unterminated compile hint" % (rel, start + 1))
            text = text.split("-->", 1)[0]
            hints[i] = (parse_hint(text, "%s:%d" % (rel, start + 1)), start + 1)
            i += 1
            continue
        m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", line)
        if m:
            fence, lang = m.group(1), m.group(2)
            j = i + 1
            while j < len(lines) and not lines[j].startswith(fence):
                j += 1
            if j == len(lines):
                raise PageError("%s:%d: unterminated code block" % (rel, i + 1))
            if lang == "c":
                hint, hint_line = None, None
                k = i - 1
                while k >= 0 and not lines[k].strip():
                    k -= 1
                if k in hints:
                    hint, hint_line = hints.pop(k)
                blocks.append(Block(rel, i + 2, lines[i + 1:j], hint, hint_line))
            i = j + 1
            continue
        i += 1
    for hint, n in hints.values():
        raise PageError("%s:%d: compile hint not followed by a ```c block" % (rel, n))
    return blocks


def scan(code):
    """Per line: (brace depth, paren depth) at its end, and its text with
    comments and string contents blanked (for classification)."""
    out = []
    depth = paren = 0
    in_comment = False
    for line in code:
        clean = []
        i = 0
        while i < len(line):
            c = line[i]
            if in_comment:
                if line.startswith("*/", i):
                    in_comment = False
                    i += 2
                else:
                    i += 1
                continue
            if line.startswith("/*", i):
                in_comment = True
                i += 2
                continue
            if line.startswith("//", i):
                break
            if c in "\"'":
                j = i + 1
                while j < len(line) and line[j] != c:
                    j += 2 if line[j] == "\\" else 1
                clean.append(c + c)
                i = j + 1
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "(":
                paren += 1
            elif c == ")":
                paren -= 1
            clean.append(c)
            i += 1
        out.append((depth, paren, "".join(clean).strip()))
    return out


def is_toplevel(text):
    """Does a chunk (comments and strings blanked, joined) belong at file scope?"""
    if text.startswith("#"):
        return True
    first = re.match(r"[A-Za-z_]\w*", text)
    if not first:
        return False
    word = first.group(0)
    if word in CONTROL:
        return False
    if word in ("static", "typedef", "extern"):
        return True
    if word in ("struct", "union", "enum") and re.match(r"(struct|union|enum)\s*\w*\s*\{", text):
        return True
    # A function definition: a '{' at depth 0 after ')' and before any ';'.
    brace = text.find("{")
    semi = text.find(";")
    if brace > 0 and (semi < 0 or brace < semi) and text[:brace].rstrip().endswith(")"):
        return "=" not in text[:brace] or text[:brace].index("=") > text[:brace].index("(")
    return False


def split_fragment(code):
    """Splits a fragment into top-level chunks and statement chunks, each a
    list of (line index, text) so that #line can place it."""
    info = scan(code)
    top, stmts = [], []
    chunk, pending = [], []
    prev_depth = prev_paren = 0
    for idx, line in enumerate(code):
        depth, paren, clean = info[idx]
        if not chunk and prev_depth == 0 and prev_paren == 0 and not clean:
            pending.append(idx)      # comment-only or blank: goes with the next chunk
        else:
            chunk.append(idx)
            if depth == 0 and paren == 0 and (clean.endswith(";") or clean.endswith("}")):
                text = " ".join(info[k][2] for k in chunk)
                (top if is_toplevel(text) else stmts).append(pending + chunk)
                chunk, pending = [], []
        prev_depth, prev_paren = depth, paren
    if chunk:
        text = " ".join(info[k][2] for k in chunk)
        (top if is_toplevel(text) else stmts).append(pending + chunk)
        pending = []
    if pending:
        stmts.append(pending)
    return top, stmts


def defines_main(code):
    info = scan(code)
    prev = 0
    for idx, line in enumerate(code):
        if prev == 0 and re.match(r"\s*int\s+main\s*\(", line):
            return True
        prev = info[idx][0]
    return False


def line_directive(n, page):
    return '#line %d "%s"' % (n, page)


def generate(block, kind, out_c):
    """Writes the translation unit of a block; returns its text."""
    code = ["" if l.strip() == "..." else l for l in block.code]
    gen = []
    here = lambda: line_directive(len(gen) + 2, out_c)  # noqa: E731 (line after the directive)
    gen.append("/* %s, generated by tests/guide/extract.py */" % block.where())
    if kind == "program":
        gen.append(line_directive(block.line, block.page))
        gen += code
        return "\n".join(gen) + "\n"
    hint = block.hint or {"needs": [], "given": ""}
    gen += ["#include <%s>" % h for h in LIBC_HEADERS]
    gen.append("#include <vial.h>")
    gen += ["#include <%s>" % h for h in hint["needs"]]
    if hint["given"]:
        gen.append(line_directive(block.hint_line, block.page))
        gen += hint["given"].rstrip("\n").split("\n")
        gen.append(here())
    top, stmts = split_fragment(code)
    for chunk in top:
        gen.append(line_directive(block.line + chunk[0], block.page))
        gen += [code[k] for k in range(chunk[0], chunk[-1] + 1)]
    if stmts:
        gen.append(here())
        gen.append("int guide_fragment(%s);" % FRAGMENT_PARAMS)
        gen.append("int guide_fragment(%s)" % FRAGMENT_PARAMS)
        gen.append("{")
        for chunk in stmts:
            gen.append(line_directive(block.line + chunk[0], block.page))
            gen += [code[k] for k in range(chunk[0], chunk[-1] + 1)]
        gen.append(here())
        gen.append("    return 0;")
        gen.append("}")
    return "\n".join(gen) + "\n"


def clients_built(includes):
    """The VIAL_HAVE_* macros vial/config.h defines (None: no config.h found)."""
    for d in includes:
        path = os.path.join(d, "vial", "config.h")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return set(re.findall(r"^#define (VIAL_HAVE_\w+)", f.read(), re.M))
    return None


def run(cmd, cwd, timeout=120):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, "timed out after %d s: %s" % (timeout, " ".join(cmd))
    return p.returncode, p.stdout.decode("utf-8", "replace")


def check_block(block, args, outdir, built):
    """Compiles (and maybe links and runs) one block: (ok, kind, message)."""
    kind = block.hint["kind"] if block.hint else None
    if kind == "skip":
        return True, "skip", block.hint["reason"]
    main = defines_main(block.code)
    if kind is None:
        kind = "program" if main else "fragment"
    elif kind == "program" and not main:
        return False, kind, "marked program but defines no main()"
    elif kind == "fragment" and main:
        return False, kind, "defines main(): it is a program, not a fragment"
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(block.page))[0])
    base = os.path.join(outdir, "%s_%d" % (stem, block.line))
    src = base + ".c"
    with open(src, "w", encoding="utf-8") as f:
        f.write(generate(block, kind, src))
    cc = shlex.split(args.cc) + ["-std=gnu11", "-Wall", "-Werror"] + shlex.split(args.cflags)
    cc += ["-I" + d for d in args.include]
    if kind == "fragment":
        status, out = run(cc + ["-Wno-unused", "-c", src, "-o", base + ".o"], args.root)
        return status == 0, kind, out
    text = "\n".join(block.code)
    missing = [m for h, m in CLIENT_HEADERS.items()
               if "<%s>" % h in text and built is not None and m not in built]
    if not args.lib or missing:
        status, out = run(cc + ["-c", src, "-o", base + ".o"], args.root)
        why = "no libvial.so given" if not args.lib else "%s not built" % ", ".join(missing)
        return status == 0, kind + " (compiled only: %s)" % why, out
    libdir = os.path.dirname(os.path.abspath(args.lib))
    status, out = run(cc + [src, "-o", base, os.path.abspath(args.lib), "-Wl,-rpath," + libdir,
                            "-lpthread"], args.root)
    if status != 0 or '"--test"' not in text:
        return status == 0, kind, out
    status, out = run([base, "--test"], outdir, timeout=60)
    return status == 0, kind + " (ran --test)", out


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def prose_lines(path):
    """(line number, text) of a markdown file outside its code blocks."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    fence = None
    for n, line in enumerate(lines, 1):
        m = re.match(r"^(`{3,}|~{3,})", line)
        if fence:
            if line.startswith(fence):
                fence = None
        elif m:
            fence = m.group(1)
        elif not line.startswith("    "):
            yield n, line


def check_links(root, page):
    """Relative links of a page must name a file that exists, and an anchor
    in a markdown file one of its headings: a renamed page or section would
    leave the guide pointing nowhere."""
    bad = []
    rel = os.path.relpath(page, root)
    for n, line in prose_lines(page):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(dest):
                bad.append("%s:%d: broken link %s" % (rel, n, target))
            elif anchor and dest.endswith(".md"):
                heads = {slug(l.lstrip("#")) for _, l in prose_lines(dest) if l.startswith("#")}
                if anchor not in heads:
                    bad.append("%s:%d: no heading #%s in %s" % (rel, n, anchor, path or rel))
    return bad


def check_pages(pages, args):
    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    built = clients_built(args.include)
    failed = 0
    count = 0
    for page in pages:
        try:
            blocks = read_blocks(args.root, os.path.abspath(page))
        except PageError as e:
            print("FAIL %s" % e)
            failed += 1
            continue
        for msg in check_links(args.root, os.path.abspath(page)):
            print("FAIL " + msg)
            failed += 1
        if not blocks:
            print("%s: no C blocks" % os.path.relpath(page, args.root))
        for block in blocks:
            count += 1
            ok, kind, msg = check_block(block, args, outdir, built)
            if ok:
                print("ok   %s: %s%s" % (block.where(), kind,
                                         " (%s)" % msg if kind == "skip" else ""))
            else:
                failed += 1
                print("FAIL %s: %s" % (block.where(), kind))
                print("     " + msg.rstrip().replace("\n", "\n     "))
    print("%d blocks, %d failed" % (count, failed))
    return failed


SELFTEST = {
    # page text -> the failure it must report (None: must pass)
    "good.md": ("""# good
<!-- compile: fragment
     needs: vial/sqlite.h
     given: static vial_sqlite *db; int show(vial_req *rq, vial_res *rs); -->
```c
static int count(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    if (vial_sqlite_query(rq, db, &r, "SELECT 1", 0, NULL) < 0)
        return vial_abort(rs, 500);
    return vial_text(rs, 200, "%lld", (long long)vial_sqlite_int64(r, 0, 0));
}
...
vial_route(app, "GET /count", count);
vial_route(app, "GET /show", show);
```

<!-- compile: skip (shell output) -->
```c
$ ./app --help
```

```c
#include <string.h>
#include <vial.h>

static int hi(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "hi"); }

int main(int argc, char **argv)
{
    vial_app *app = vial_app_new();
    vial_route(app, "GET /", hi);
    if (argc > 1 && strcmp(argv[1], "--test") == 0) {
        vial_test_client *c = vial_test_client_new(app);
        vial_test_response *r = vial_test_client_get(c, "/");
        int ok = vial_test_response_status(r) == 200;
        vial_test_response_free(r);
        vial_test_client_free(c);
        vial_app_free(app);
        return ok ? 0 : 1;
    }
    vial_app_free(app);
    return 0;
}
```
""", None),
    "bad.md": ("""# bad

```c
vial_route(app, "GET /", index_page);
```
""", "bad.md:4"),
    "failing.md": ("""# a program whose --test fails

```c
#include <vial.h>
int main(int argc, char **argv)
{
    return argc > 1 && argv[1][0] == '-' ? 3 /* "--test" fails */ : 0;
}
```
""", "failing.md:4"),
    "stale.md": ("""# a hint without its block
<!-- compile: fragment needs: vial/pg.h -->

Text.
""", "stale.md:2: compile hint not followed"),
    "links.md": ("""# Links
See [the other page](nowhere.md) and [this one](#links).
""", "links.md:2: broken link nowhere.md"),
    "anchors.md": ("""# Anchors
See [a section](#no-such-section), not [this one](#anchors).
""", "anchors.md:2: no heading #no-such-section"),
    "reasonless.md": ("""<!-- compile: skip -->
```c
nothing
```
""", "reasonless.md:1: a skip needs its reason"),
}


def selftest(args):
    """The checker must pass good blocks and fail bad ones at the right line."""
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, expect) in SELFTEST.items():
            page = os.path.join(tmp, name)
            with open(page, "w", encoding="utf-8") as f:
                f.write(text)
            p = subprocess.run([sys.executable, __file__, "--root", tmp,
                                "--out", os.path.join(tmp, "out"),
                                "--cc", args.cc, "--cflags=" + args.cflags]
                               + ["-I" + d for d in args.include]
                               + (["--lib", args.lib] if args.lib else []) + [page],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = p.stdout.decode("utf-8", "replace")
            if expect is None:
                good = p.returncode == 0 and ("(ran --test)" in out or not args.lib)
            else:
                good = p.returncode != 0 and expect in out
            print("%s selftest %s" % ("ok  " if good else "FAIL", name))
            if not good:
                bad += 1
                print("     " + out.rstrip().replace("\n", "\n     "))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".", help="source tree (paths are printed relative to it)")
    ap.add_argument("--out", default="guide-blocks", help="where the generated files go")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--cflags", default="", help="extra flags (e.g. -fsanitize=...)")
    ap.add_argument("-I", "--include", action="append", default=[])
    ap.add_argument("--lib", help="libvial.so to link programs against")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("pages", nargs="*")
    args = ap.parse_args()
    args.root = os.path.abspath(args.root)
    args.include = [os.path.abspath(d) for d in args.include]
    if args.selftest:
        return 1 if selftest(args) else 0
    if not args.pages:
        ap.error("no pages")
    return 1 if check_pages(args.pages, args) else 0


if __name__ == "__main__":
    sys.exit(main())
