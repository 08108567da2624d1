#!/usr/bin/env python3
"""Rewrites C sources and Markdown from vial 0.1's names to 0.2's public surface.

    scripts/migrate-0.2.py [--check] PATH...

PATH is a file (rewritten whatever its name) or a directory (its *.c, *.h and
*.md files, recursively). Files are rewritten in place; running it twice
changes nothing the second time. A file holding the text "migrate-0.2: skip"
is left alone (a changelog that quotes the old names). --check rewrites
nothing and exits 1 when some file would change.

What it cannot convert it leaves as it was and reports as
"file:line: ..." on stderr (exit status 0 all the same): a sync/async
flags argument that is not a constant, vial_redis_new with a host or port
that is not a literal, vial_sqlite_open with flags that are not constants.
"""
import os
import re
import sys

SKIP_MARK = "migrate-0.2: skip"

# Whole-identifier renames, applied after the structural ones below.
RENAMES = [
    ("vial_res_header", "vial_res_add_header"),
    ("vial_res_status", "vial_res_set_status"),
    ("vial_res_body", "vial_res_set_body"),
    ("vial_res_body_static", "vial_res_set_body_static"),
    ("vial_res_append", "vial_res_append_body"),
    ("vial_app_secret_key", "vial_app_set_secret_key"),
    ("vial_app_data", "vial_app_get_data"),
    ("vial_flashed", "vial_get_flashed_messages"),
    ("vial_view_data", "vial_route_data"),
    ("vial_pg_new", "vial_pg_open"),
    ("vial_pg_free", "vial_pg_close"),
    ("vial_redis_free", "vial_redis_close"),
    ("vial_http_opts", "vial_http_options"),
    ("vial_sqlite_errmsg", "vial_sqlite_error"),
]
# vial_client* -> vial_test_client*, vial_response* -> vial_test_response*
PREFIX_RENAMES = [("vial_client", "vial_test_client"), ("vial_response", "vial_test_response")]

RENAME_RE = re.compile(r"\b(" + "|".join(re.escape(o) for o, _ in RENAMES) + r")\b")
RENAME_MAP = dict(RENAMES)
PREFIX_RE = re.compile(r"\b(vial_client|vial_response)(\w*)")

ASYNC_FLAGS = {"VIAL_ASYNC", "0"}
SYNC_FLAGS = {"VIAL_SYNC", "1"}

# name -> (number of arguments in 0.1, index of the flags argument, kind)
HOOKS = {
    "vial_before_request": (3, 2),
    "vial_after_request": (3, 2),
    "vial_teardown_request": (3, 2),
    "vial_bp_before_request": (3, 2),
    "vial_bp_after_request": (3, 2),
    "vial_bp_teardown_request": (3, 2),
    "vial_errorhandler": (4, 3),
    "vial_bp_errorhandler": (4, 3),
}
ROUTES = {"vial_route_as": 5, "vial_bp_route_as": 5}
STRUCTURAL = list(HOOKS) + list(ROUTES) + ["vial_ws_route", "vial_redis_new", "vial_sqlite_open"]
CALL_RE = re.compile(r"\b(" + "|".join(STRUCTURAL) + r")(\s*)\(")
# "vial_app *app", "const char *rule": a parameter declaration, not a call argument
DECL_RE = re.compile(r"^\s*(?:(?:const|struct|unsigned|signed)\s+)*[A-Za-z_]\w*(?:\s+|\s*\*[\s*]*)[A-Za-z_]\w*\s*$")


def skip_literal(text, i):
    """text[i] opens a string or char literal: the index after it."""
    q = text[i]
    i += 1
    while i < len(text) and text[i] != q:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def split_call(text, open_paren):
    """Arguments of the call whose '(' is at open_paren: (list of (start, end)
    spans, index of the closing ')'), or None when unbalanced."""
    depth = 0
    spans = []
    start = open_paren + 1
    i = open_paren
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = skip_literal(text, i)
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = len(text) if j < 0 else j + 2
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                if text[start:i].strip() or spans:
                    spans.append((start, i))
                return spans, i
        elif c == "," and depth == 1:
            spans.append((start, i))
            start = i + 1
        i += 1
    return None


def strip_parens(s):
    s = s.strip()
    while s.startswith("(") and s.endswith(")") and split_call(s, 0) and split_call(s, 0)[1] == len(s) - 1:
        s = s[1:-1].strip()
    return s


class Migrator:
    def __init__(self, path):
        self.path = path
        self.notes = []

    def note(self, text, pos, msg):
        line = text.count("\n", 0, pos) + 1
        self.notes.append("%s:%d: %s" % (self.path, line, msg))

    def convert_call(self, text, m):
        """The replacement for the call at m, as (start, end, new text), or None."""
        name = m.group(1)
        open_paren = m.end() - 1
        res = split_call(text, open_paren)
        if not res:
            return None
        spans, close = res
        args = [text[a:b] for a, b in spans]
        if args and DECL_RE.match(args[0]):
            return None  # a prototype or definition: converted by hand
        head = text[m.start():open_paren + 1]

        def flag_kind(idx):
            f = strip_parens(args[idx])
            if f in ASYNC_FLAGS:
                return ""
            if f in SYNC_FLAGS:
                return "_sync"
            self.note(text, m.start(), "%s: flags argument '%s' is not VIAL_ASYNC or VIAL_SYNC; "
                      "choose %s or %s_sync by hand" % (name, args[idx].strip(), name, name))
            return None

        if name in HOOKS:
            nargs, idx = HOOKS[name]
            if len(args) != nargs:
                return None
            kind = flag_kind(idx)
            if kind is None:
                return None
            # drop ", flags" (from the comma before it to the end of the argument)
            new = name + kind + text[m.end(1):spans[idx - 1][1]] + ")"
            return m.start(), close + 1, new
        if name in ROUTES:
            if len(args) != ROUTES[name]:
                return None
            f = strip_parens(args[4])
            if f not in ASYNC_FLAGS and f not in SYNC_FLAGS:
                if "flag" in f.lower() or "sync" in f.lower():
                    self.note(text, m.start(), "%s: last argument '%s' looks like flags; 0.2 takes "
                              "data there: call %s or %s_sync by hand" % (name, f, name, name))
                return None  # already 0.2's data argument
            kind = "" if f in ASYNC_FLAGS else "_sync"
            a, b = spans[4]
            lead = re.match(r"\s*", text[a:b]).group(0)
            new = name + kind + text[m.end(1):a] + lead + "NULL)"
            return m.start(), close + 1, new
        if name == "vial_ws_route":
            if len(args) != 4:
                return None
            fn = strip_parens(args[2])
            ep = args[3].strip()
            if ep == '"%s"' % fn:
                return m.start(), close + 1, name + text[m.end(1):spans[2][1]] + ")"
            a, b = spans[3]
            return m.start(), close + 1, "vial_ws_route_as" + text[m.end(1):b] + ", NULL)"
        if name == "vial_redis_new":
            if len(args) != 3:
                return None
            host = args[0].strip()
            port = strip_parens(args[1])
            if host == "NULL":
                host_s = "127.0.0.1"
            elif re.fullmatch(r'"[^"\\:]*"', host):
                host_s = host[1:-1]
            else:
                host_s = None
            if host_s is None or not re.fullmatch(r"\d+", port):
                self.note(text, m.start(), "vial_redis_new: host or port is not a literal; write "
                          "vial_redis_open(\"host:port\", opts) by hand (\"unix:/path\" for a socket)")
                return None
            if host_s.startswith("/"):
                addr = "unix:" + host_s
            else:
                addr = "%s:%s" % (host_s, port if port != "0" else "6379")
            a, b = spans[2]
            return m.start(), close + 1, 'vial_redis_open%s("%s",%s)' % (m.group(2), addr, text[a:b])
        if name == "vial_sqlite_open":
            if len(args) != 2:
                return None
            f = strip_parens(args[1])
            if f == "NULL" or f.startswith("&") or "vial_sqlite_options" in f:
                return None  # 0.2 already
            a, b = spans[1]
            lead = re.match(r"\s*", text[a:b]).group(0)
            if f == "0":
                new_arg = "NULL"
            elif re.fullmatch(r"[\sA-Z0-9_|()]+", f):
                new_arg = "&(vial_sqlite_options){.flags = %s}" % f
            else:
                if "opt" not in f:
                    self.note(text, m.start(), "vial_sqlite_open: flags '%s' are not constants; pass "
                              "&(vial_sqlite_options){.flags = ...} by hand" % f)
                return None
            return m.start(), close + 1, name + text[m.end(1):a] + lead + new_arg + ")"
        return None

    def structural(self, text):
        out = []
        pos = 0
        for m in CALL_RE.finditer(text):
            if m.start() < pos:
                continue
            r = self.convert_call(text, m)
            if not r:
                continue
            a, b, new = r
            out.append(text[pos:a])
            out.append(new)
            pos = b
        out.append(text[pos:])
        return "".join(out)

    def migrate(self, text):
        text = self.structural(text)
        text = RENAME_RE.sub(lambda m: RENAME_MAP[m.group(1)], text)
        text = PREFIX_RE.sub(lambda m: m.group(1).replace("vial_", "vial_test_") + m.group(2), text)
        return text


def files_of(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("build",))
                for n in sorted(names):
                    if n.endswith((".c", ".h", ".md")):
                        yield os.path.join(root, n)
        else:
            yield p


def main(argv):
    check = False
    if argv and argv[0] == "--check":
        check = True
        argv = argv[1:]
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    changed = 0
    for path in files_of(argv):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if SKIP_MARK in text:
            continue
        mig = Migrator(path)
        new = mig.migrate(text)
        for n in mig.notes:
            sys.stderr.write(n + "\n")
        if new != text:
            changed += 1
            if check:
                print("would rewrite " + path)
            else:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
                print("rewrote " + path)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
