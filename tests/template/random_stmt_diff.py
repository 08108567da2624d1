#!/usr/bin/python3
"""Random differential test of statements (if/for/set/with/macro/filter/
namespace) against Jinja2. Usage: random_stmt_diff.py VIAL_RENDER SEED COUNT.
Not part of ctest: it finds new cases for cases/."""
import random, json, subprocess, os, sys, tempfile, signal, jinja2
TOOL = sys.argv[1]; random.seed(int(sys.argv[2])); N = int(sys.argv[3])
WORK = tempfile.mkdtemp()
ctx = {"l": [3, 1, 2], "w": ["b", "A"], "d": {"b": 2, "a": 1}, "s": "x<y", "n": 2, "e": []}
vals = ["l", "w", "d", "s", "n", "e", "x", "i", "loop.index", "k", "v", "1", "'q'", "ns.c"]
def ex():
    a = random.choice(vals)
    r = random.random()
    if r < 0.2: return a + "|length"
    if r < 0.3: return a + " ~ " + random.choice(vals)
    if r < 0.4: return "(" + a + " is defined)"
    return a
def stmt(d=0):
    r = random.random()
    if d > 2 or r < 0.25: return "{{ %s }}" % ex() + random.choice(["", " ", "\n", "-"])
    if r < 0.4: return "{%% if %s %%}%s{%% else %%}%s{%% endif %%}" % (ex(), body(d+1), body(d+1))
    if r < 0.55: return "{%% for i in %s %%}%s{%% else %%}E{%% endfor %%}" % (random.choice(["l", "w", "e", "s", "d", "range(2)"]), body(d+1))
    if r < 0.62: return "{%% for k, v in d.items() %%}%s{%% endfor %%}" % body(d+1)
    if r < 0.72: return "{%% set x = %s %%}" % ex()
    if r < 0.78: return "{%% set ns.c = %s %%}" % ex()
    if r < 0.85: return "{%% macro mm(a, b=2) %%}%s{%% endmacro %%}{{ mm(%s) }}" % (body(d+1), ex())
    if r < 0.92: return "{%% with x = %s %%}%s{%% endwith %%}" % (ex(), body(d+1))
    return "{%% filter upper %%}%s{%% endfilter %%}" % body(d+1)
def body(d):
    return "".join(stmt(d) for _ in range(random.randint(1, 3)))
bad = 0
for it in range(N):
    name = random.choice(["t.html", "t.txt"])
    src = "{% set ns = namespace(c=0) %}" + body(0) + random.choice(["", "\n", "{{ x }}{{ ns.c }}"])
    open(os.path.join(WORK, name), "w").write(src)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(WORK), autoescape=jinja2.select_autoescape(["html"]), cache_size=0)
    try:
        want = env.get_template(name).render(ctx).encode(); ok = True
    except Exception as e:
        ok = False; want = repr(e).encode()
    p = subprocess.run(["timeout", "10", TOOL, "--dir", WORK, name], input=json.dumps(ctx).encode(), capture_output=True)
    if ok and (p.returncode != 0 or p.stdout != want):
        bad += 1; print("DIFF", repr(src), "\n  jinja:", want[:300], "\n  vial: ", p.stdout[:300], p.stderr[:200])
    elif not ok and p.returncode != 1:
        bad += 1; print("NOERR", repr(src), "\n  jinja:", want[:200], "\n  vial: ", p.stdout[:200])
print("bad", bad, "of", N)
