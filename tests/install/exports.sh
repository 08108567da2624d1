#!/usr/bin/env bash
# Checks that libvial.so exports exactly the public API: every defined
# dynamic symbol must be declared in the public headers (include/vial.h,
# include/vial/*.h), and every function they declare must be exported
# (a header without the visibility pragma would leave its functions hidden),
# except those of the optional clients not compiled in (vial/config.h).
# Internal functions are vial_-prefixed too, so the prefix proves nothing;
# the list of declared names does.
#   tests/install/exports.sh LIBVIAL_SO INCLUDE_DIR [GENERATED_INCLUDE_DIR]
set -euo pipefail
so=$(realpath "$1")
inc=$(realpath "$2")
gen=$(realpath "${3:-$2}")
work=$(mktemp -d /tmp/vial-exports.XXXXXX)
trap 'rm -rf "$work"' EXIT

# declared OUT HEADER...: the vial_ names the headers declare at file scope,
# from their preprocessed text (comments gone, every client enabled): a name
# before '(' (a function) or ending an extern declaration (a variable).
# Bodies (of structs and of static inline helpers) are skipped, and so are the
# static inline helpers themselves: they are not in the library.
declared() {
  local out=$1 h
  shift
  for h in "$@"; do
    echo "#include \"$h\""
  done > "$work/all.c"
  cc -E -P -I"$inc" -I"$gen" -DVIAL_HAVE_PG=1 -DVIAL_HAVE_REDIS=1 -DVIAL_HAVE_HTTP=1 \
     -DVIAL_HAVE_SQLITE=1 "$work/all.c" > "$work/all.i"
  /usr/bin/python3 - "$work/all.i" > "$out" <<'PY'
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
}

# Every header may be exported from; the headers of the clients compiled in
# (and all the others) must be.
required=("$inc/vial.h")
for h in "$inc"/vial/*.h; do
  client=$(basename "$h" .h)
  client=${client%_client}
  case $client in
    pg|redis|http|sqlite)
      grep -q "^#define VIAL_HAVE_${client^^} " "$gen/vial/config.h" || continue ;;
    config) continue ;;
  esac
  required+=("$h")
done
declared "$work/declared" "$inc"/vial.h "$inc"/vial/*.h
declared "$work/required" "${required[@]}"

# The exported names. Names starting with "__" or "_" + capital belong to the
# toolchain (sanitizer runtimes' hooks, _init/_fini), not to vial.
nm -D --defined-only "$so" | awk '{print $NF}' | sed 's/@.*//' |
  grep -vE '^(_[_A-Z]|_init$|_fini$|_edata$|_end$)' | sort -u > "$work/exported"

extra=$(comm -13 "$work/declared" "$work/exported")
missing=$(comm -23 "$work/required" "$work/exported")
nexp=$(wc -l < "$work/exported")
nreq=$(wc -l < "$work/required")
fail=0
if [ -n "$missing" ]; then
  echo "exports: FAIL: $(echo "$missing" | wc -l) functions declared in include/ are not exported by $(basename "$so") (hidden, or not defined):"
  echo "$missing" | sed 's/^/  /'
  fail=1
fi
if [ -n "$extra" ]; then
  echo "exports: FAIL: $(echo "$extra" | wc -l) symbols exported by $(basename "$so") are not declared in include/:"
  echo "$extra" | sed 's/^/  /'
  fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "exports: ok: $nexp symbols exported, exactly the $nreq declared in include/ for this build"
