"""The `websec` example app (examples/websec) as a black-box fixture for
test_csrf.py and test_cors.py, with helpers for its session cookie and CSRF
tokens.

VIAL_WEBSEC_ARGS adds options to its command line: `--no-csrf` or
`--no-cors` turn a feature off, to see the tests fail without it.
"""

import base64
import hashlib
import hmac
import html
import os
import re

import pytest

from conftest import ServerProcess, conformance_binary

SECRET = b"websec example secret: change me"  # the app's default --secret


def websec_binary():
    return conformance_binary().parent / "websec"


@pytest.fixture(scope="module")
def websec(server_logdir):
    args = os.environ.get("VIAL_WEBSEC_ARGS", "").split()
    srv = ServerProcess(server_logdir, args, binary=websec_binary()).start()
    yield srv.addr
    rc, _ = srv.stop()
    assert rc == 0, "websec app on SIGTERM: status %s\n%s" % (rc, srv.log_text())


def session_cookie(r):
    """'session=...' from a response's Set-Cookie, or None."""
    for v in r.header_list("set-cookie"):
        if v.startswith("session="):
            return v.split(";", 1)[0]
    return None


TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def form_token(r):
    m = TOKEN_FIELD.search(r.text())
    assert m, "no csrf_token field in %r" % r
    return html.unescape(m.group(1))


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def restamp(token, when):
    """The token signed again with time stamp `when`, by the documented scheme
    (src/app/csrf.c): K = HMAC(HMAC(secret, "vial.session.v1"), "vial.csrf.v1")."""
    skey = hmac.new(SECRET, b"vial.session.v1", hashlib.sha256).digest()
    ckey = hmac.new(skey, b"vial.csrf.v1", hashlib.sha256).digest()
    signed = "%s.%d" % (token.split(".")[0], when)
    return signed + "." + b64url(hmac.new(ckey, signed.encode(), hashlib.sha256).digest())
