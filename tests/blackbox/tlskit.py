"""TLS material for the black-box suite.

VIAL_TEST_TLS=1 runs the protocol tests over TLS: the server fixtures add
--tls-cert/--tls-key (a throwaway self-signed certificate made here with the
openssl command) and httpkit's Client wraps its socket in TLS, verifying the
server against that certificate. test_tls.py uses the same helpers with
the switch off.
"""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile

ENABLED = os.environ.get("VIAL_TEST_TLS") == "1"

_material = {}


def make_cert(directory, name="server", cn="127.0.0.1", days=2):
    """A self-signed EC certificate for 127.0.0.1 (IP SAN) and its key: (cert, key) paths."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", str(days), "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def material():
    """This process's certificate and key, made once: (cert, key). With the
    switch on, the default trust of ssl, requests and websockets is this
    certificate, so https:// and wss:// URLs verify against it."""
    if "cert" not in _material:
        d = tempfile.mkdtemp(prefix="vial-tls-")
        _material["dir"] = d
        _material["cert"], _material["key"] = make_cert(d)
        if ENABLED:
            os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = _material["cert"]
    return _material["cert"], _material["key"]


def scheme(ws=False):
    """The URL scheme the servers of this run speak."""
    return ("wss" if ws else "https") if ENABLED else ("ws" if ws else "http")


def cleanup():
    d = _material.pop("dir", None)
    _material.clear()
    if d:
        shutil.rmtree(d, ignore_errors=True)


def server_args():
    cert, key = material()
    return ["--tls-cert", cert, "--tls-key", key]


def client_context(cafile=None, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=cafile or material()[0])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def wrap(sock, ctx=None):
    """sock, after a TLS handshake that verified the server as 127.0.0.1."""
    return (ctx or client_context()).wrap_socket(sock, server_hostname="127.0.0.1")


def connect(addr, timeout=5.0, ctx=None):
    s = socket.create_connection(addr, timeout=timeout)
    try:
        return wrap(s, ctx)
    except BaseException:
        s.close()
        raise
