#!/usr/bin/python3
"""vial_password_* against Werkzeug's formats, both ways.

Werkzeug's own check_password_hash/generate_password_hash are used where the
installed Werkzeug has them (Debian 12's 2.2 knows pbkdf2, not scrypt); the
scrypt format is checked against hashlib with Werkzeug 3's exact recipe
(hashlib.scrypt(pw, salt=salt, n, r, p, maxmem=132*n*r*p), dklen 64, hex).
    interop.py build/tests/password_tool"""

import hashlib
import hmac
import subprocess
import sys

TOOL = sys.argv[1]


def tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, check=True).stdout.strip()


def werkzeug3_check(pwhash, password):
    method, salt, hashval = pwhash.split("$", 2)
    name, *args = method.split(":")
    pw, s = password.encode(), salt.encode()
    if name == "scrypt":
        n, r, p = map(int, args) if args else (2 ** 15, 8, 1)
        h = hashlib.scrypt(pw, salt=s, n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    else:
        hash_name, iterations = args[0], int(args[1])
        h = hashlib.pbkdf2_hmac(hash_name, pw, s, iterations).hex()
    return hmac.compare_digest(h, hashval)


failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


pw = "correct horse battery staple é"
# vial -> Werkzeug
h = tool("hash", pw)
check(h.startswith("scrypt:32768:8:1$") and len(h.split("$")[1]) == 16 and len(h.split("$")[2]) == 128, h)
check(werkzeug3_check(h, pw), "scrypt hash made by vial verifies with Werkzeug's recipe")
check(not werkzeug3_check(h, pw + "x"), "and a wrong password does not")
for method in ("pbkdf2:sha256:260000", "pbkdf2:sha512:1000", "pbkdf2:sha1:1000", "scrypt:16384:8:2"):
    h = tool("hash", pw, method)
    check(h.startswith(method + "$") and werkzeug3_check(h, pw), "vial %s -> %s" % (method, h))
# Werkzeug -> vial (recipe-made hashes, salt of Werkzeug's alphabet)
for method, salt in (("scrypt:32768:8:1", "ZkK3mQ9xTqLr2vBn"), ("pbkdf2:sha256:600000", "a1B2c3D4e5F6g7H8"),
                     ("pbkdf2:sha256:1", "s")):
    name, *args = method.split(":")
    if name == "scrypt":
        n, r, p = map(int, args)
        hv = hashlib.scrypt(pw.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    else:
        hv = hashlib.pbkdf2_hmac(args[0], pw.encode(), salt.encode(), int(args[1])).hex()
    stored = "%s$%s$%s" % (method, salt, hv)
    check(tool("verify", stored, pw) == "1", "vial verifies " + method)
    check(tool("verify", stored, pw[:-1]) == "0", "vial refuses a wrong password for " + method)
# the real Werkzeug, where installed
try:
    from werkzeug.security import check_password_hash, generate_password_hash
except ImportError:
    check_password_hash = None
if check_password_hash:
    wh = generate_password_hash(pw, method="pbkdf2:sha256")
    check(tool("verify", wh, pw) == "1", "vial verifies Werkzeug's own " + wh.split("$")[0])
    vh = tool("hash", pw, "pbkdf2:sha256:260000")
    check(check_password_hash(vh, pw), "Werkzeug verifies vial's pbkdf2 hash")
    check(not check_password_hash(vh, "nope"), "and refuses a wrong password")
else:
    check(False, "werkzeug is not installed (python3-werkzeug; scripts/deps.sh test)")
# malformed and hostile hashes: errors, quickly
for bad, want in (("scrypt$salt", "-22"), ("nodollars", "-22"), ("md5$s$00", "-95"),
                  ("scrypt:1073741824:8:1$s$00", "-22"), ("scrypt:3:8:1$s$00", "-22"),
                  ("pbkdf2:sha256:99999999999$s$00", "-22"), ("pbkdf2:whirlpool:1$s$00", "-95"),
                  ("pbkdf2:sha256:-1$s$00", "-22"), ("pbkdf2:sha256:1$s$ZZ", "0")):
    check(tool("verify", bad, pw) == want, "verify(%r) = %s, want %s" % (bad, tool("verify", bad, pw), want))
print("password interop: %s" % ("ok" if not failures else "%d FAILED" % failures))
sys.exit(1 if failures else 0)
