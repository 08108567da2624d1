#!/usr/bin/env bash
# Checks that libvial.so exports exactly the public API: every defined
# dynamic symbol must be declared in the public headers (include/vial.h,
# include/vial/*.h). Internal functions are vial_-prefixed too, so the prefix
# proves nothing; the list of declared names does.
#   tests/install/exports.sh LIBVIAL_SO INCLUDE_DIR [GENERATED_INCLUDE_DIR]
set -euo pipefail
so=$(realpath "$1")
inc=$(realpath "$2")
gen=$(realpath "${3:-$2}")
work=$(mktemp -d /tmp/vial-exports.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The declared names: preprocess every public header (comments gone, every
# client enabled) and keep the vial_ names declared at file scope: a name
# before '(' (a function) or ending an extern declaration (a variable).
# Bodies (of structs and of static inline helpers) are skipped, and so are the
# static inline helpers themselves: they are not in the library.
for h in "$inc"/vial.h "$inc"/vial/*.h; do
  echo "#include \"$h\""
done > "$work/all.c"
cc -E -P -I"$inc" -I"$gen" -DVIAL_HAVE_PG=1 -DVIAL_HAVE_REDIS=1 -DVIAL_HAVE_HTTP=1 \
   -DVIAL_HAVE_SQLITE=1 "$work/all.c" > "$work/all.i"
/usr/bin/python3 - "$work/all.i" > "$work/declared" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# File-scope text only, cut into declarations at ';' and at closing braces.
decls, cur, depth = [], [], 0
for ch in text:
    if ch == '{':
        depth += 1
        cur.append(' { } ')
    elif ch == '}':
        depth -= 1
        if depth == 0 and not re.search(r'\btypedef\b|\b(struct|union|enum)\b[^()]*\{ \}\s*$', ''.join(cur)):
            decls.append(''.join(cur)); cur = []   # a function body ended
    elif depth == 0:
        if ch == ';':
            decls.append(''.join(cur)); cur = []
        else:
            cur.append(ch)
names = set()
for d in decls:
    d = ' '.join(d.split())
    if re.match(r'(typedef|static)\b', d):
        continue
    m = re.search(r'\b(vial_\w+)\s*\(', d)            # a function
    if m and not re.search(r'\(\s*\*\s*vial_\w+\s*\)\s*\(', d):
        names.add(m.group(1))
    elif d.startswith('extern '):                      # a variable
        m = re.search(r'\b(vial_\w+)\s*(\[[^]]*\])?\s*$', d)
        if m:
            names.add(m.group(1))
print('\n'.join(sorted(names)))
PY

# The exported names. Names starting with "__" or "_" + capital belong to the
# toolchain (sanitizer runtimes' hooks, _init/_fini), not to vial.
nm -D --defined-only "$so" | awk '{print $NF}' | sed 's/@.*//' |
  grep -vE '^(_[_A-Z]|_init$|_fini$|_edata$|_end$)' | sort -u > "$work/exported"

extra=$(comm -13 "$work/declared" "$work/exported")
missing=$(comm -23 "$work/declared" "$work/exported")
ndecl=$(wc -l < "$work/declared")
nexp=$(wc -l < "$work/exported")
if [ -n "$missing" ]; then
  # Declared but not in this build: the clients that were not compiled in, or
  # a declaration without a definition.
  echo "exports: declared in include/ but not defined in $(basename "$so") ($(echo "$missing" | wc -l)):"
  echo "$missing" | sed 's/^/  /' | head -n 40
fi
if [ -n "$extra" ]; then
  echo "exports: FAIL: $(echo "$extra" | wc -l) symbols exported by $(basename "$so") are not declared in include/:"
  echo "$extra" | sed 's/^/  /'
  exit 1
fi
echo "exports: ok: $nexp symbols exported, all declared in include/ ($ndecl declared)"
