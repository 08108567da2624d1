#!/usr/bin/python3
"""Random differential test: random expressions (literals, operators, filters,
tests, inline if over a fixed context) rendered by Jinja2 and by vial-render.

Usage: random_diff.py VIAL_RENDER SEED [COUNT]
Prints each difference (or a Jinja2 error vial did not raise) and a count.
Not part of ctest (it finds new cases; put them in cases/ once fixed).
"""
import random, json, subprocess, os, sys, tempfile, signal, jinja2
TOOL = sys.argv[1]
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
WORK = tempfile.mkdtemp()
ctx = {"n": 7, "m": -3, "f": 2.5, "g": 0.1, "s": "Hello <World> & 'x'", "e": "", "l": [3, 1, 2], "w": ["b", "A", "c"],
       "d": {"b": 2, "a": 1}, "u": [{"name": "x", "age": 3}, {"name": "y", "age": 1}], "t": True, "z": None, "big": 12345678901234567890}
atoms = ["n", "m", "f", "g", "s", "e", "l", "w", "d", "u", "t", "z", "big", "1", "0", "-2", "2.0", "0.5", "'ab'", "'A b'", "[1, 2]", "(1,)", "{'k': 1}", "none", "true", "nope", "u[0]", "l[1:]", "s[2]", "d.a", "u[1].name"]
filters = ["upper", "lower", "length", "first", "last", "sort", "reverse|list", "list", "string", "int", "float", "abs", "round", "round(1)", "trim", "title", "capitalize", "e", "safe", "join(',')", "default('D')", "sum", "min", "max", "unique|list", "tojson", "count", "wordcount", "center(9)", "truncate(5, true, '', 0)", "batch(2)|list", "slice(2)|list", "dictsort", "items|list", "map('string')|list", "select('odd')|list", "reject|list", "format(1)", "replace('l', 'L')", "striptags", "urlencode", "indent(2)", "filesizeformat", "int(5)", "float(1.5)"]
binops = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
tests = ["defined", "none", "number", "string", "even", "odd", "iterable", "mapping", "lower", "upper", "divisibleby 2", "sameas none"]
def expr(d=0):
    r = random.random()
    if d > 2 or r < 0.3: return random.choice(atoms)
    if r < 0.55: return "(%s %s %s)" % (expr(d+1), random.choice(binops), expr(d+1))
    if r < 0.8: return "%s|%s" % (expr(d+1), random.choice(filters))
    if r < 0.9: return "(%s is %s%s)" % (expr(d+1), random.choice(["", "not "]), random.choice(tests))
    return "(%s if %s else %s)" % (expr(d+1), expr(d+1), expr(d+1))
bad = 0
N = int(sys.argv[3]) if len(sys.argv) > 3 else 300
for i in range(N):
    name = random.choice(["x.html", "x.txt"])
    src = "{{ %s }}" % expr()
    open(os.path.join(WORK, name), "w").write(src)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(WORK), autoescape=jinja2.select_autoescape(["html"]), cache_size=0)
    def _alarm(*a): raise TimeoutError()
    signal.signal(signal.SIGALRM, _alarm); signal.alarm(3)
    try:
        want = env.get_template(name).render(ctx).encode(); ok = True
        signal.alarm(0)
    except TimeoutError:
        continue
    except Exception as ex:
        signal.alarm(0)
        ok = False; want = repr(ex).encode()
    p = subprocess.run(["timeout", "10", TOOL, "--dir", WORK, name], input=json.dumps(ctx).encode(), capture_output=True)
    if ok and (p.returncode != 0 or p.stdout != want):
        bad += 1; print("DIFF", name, src, "\n  jinja:", want[:200], "\n  vial: ", p.stdout[:200], p.stderr[:200])
    elif not ok and p.returncode != 1:
        bad += 1; print("NOERR", name, src, "\n  jinja:", want[:200], "\n  vial: ", p.stdout[:200])
print("bad", bad, "of", N)
