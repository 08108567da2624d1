"""Response compression over real sockets (vial_compress, --compress).

The conformance app runs with --compress (vial_compress's defaults: gzip level
6, brotli quality 4, 860-byte minimum, text/* and the JSON/JS/XML/SVG types)
and a static directory holding precompressed siblings. Bodies are decoded
with Python's zlib and, when Debian's python3-brotli is installed, brotli.
"""

import gzip
import os
import socket
import time
import zlib

import pytest
import requests

from conftest import ServerProcess
from httpkit import check_common, connect, req
import tlskit

try:
    import brotli
except ImportError:  # python3-brotli missing: the br cases are skipped
    brotli = None

needs_brotli = pytest.mark.skipif(brotli is None, reason="python3-brotli not installed")


def expected_body(n):
    """What /compress/body?n=N sends: numbered lines cut at N bytes."""
    out = bytearray()
    k = 1
    while len(out) < n:
        out += b"line %d of a compressible body\n" % k
        k += 1
    return bytes(out[:n])


STATIC_HTML = b"<!doctype html>\n" + b"<p>precompressed sibling test paragraph</p>\n" * 200
STATIC_CSS = b"body { color: black; }\n" * 100


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("compress-static")
    t = 1700000000
    (d / "page.html").write_bytes(STATIC_HTML)
    # The siblings carry markers so the test can tell which file was sent.
    (d / "page.html.gz").write_bytes(gzip.compress(STATIC_HTML + b"<!-- gz -->"))
    if brotli is not None:
        (d / "page.html.br").write_bytes(brotli.compress(STATIC_HTML + b"<!-- br -->"))
    (d / "style.css").write_bytes(STATIC_CSS)
    (d / "style.css.gz").write_bytes(gzip.compress(b"stale"))
    (d / "only.js").write_bytes(b"console.log(1);\n" * 100)
    (d / "only.js.gz").write_bytes(gzip.compress(b"console.log(1);\n" * 100 + b"// gz"))
    (d / "image.png").write_bytes(b"\x89PNG" + b"\0" * 2000)
    (d / "image.png.gz").write_bytes(gzip.compress(b"not to be served"))
    for name in ("page.html", "page.html.gz", "page.html.br", "only.js", "only.js.gz",
                 "image.png", "image.png.gz"):
        if (d / name).exists():
            os.utime(d / name, (t, t))  # as `gzip -k` leaves them: the same time
    os.utime(d / "style.css", (t, t))
    os.utime(d / "style.css.gz", (t - 60, t - 60))  # older than its original: stale
    return d


@pytest.fixture(scope="module")
def csrv(server_logdir, static_dir):
    env = dict(os.environ, CONFORMANCE_STATIC_DIR=str(static_dir))
    s = ServerProcess(server_logdir, ["--compress"], env=env).start()
    yield s.addr
    alive = s.alive()
    rc, _ = s.stop()
    assert alive, "the compressing server died:\n" + s.log_text()
    assert rc == 0, "exit status %s:\n%s" % (rc, s.log_text())


def get(addr, target, ae=None, method="GET", headers=()):
    h = list(headers)
    if ae is not None:
        h.append(("Accept-Encoding", ae))
    with connect(addr) as c:
        c.send(req(method, target, headers=h))
        return c.read_final(method)


def decode(r):
    ce = r.header("content-encoding")
    if ce is None:
        return r.body
    if ce == "gzip":
        return gzip.decompress(r.body)
    if ce == "br":
        assert brotli is not None, "br sent though the test did not accept it"
        return brotli.decompress(r.body)
    raise AssertionError("unexpected Content-Encoding %r" % ce)


def vary_tokens(r):
    return [t.lower() for t in r.tokens("vary")]


# --- buffered bodies ------------------------------------------------------------


def test_gzip(csrv):
    r = get(csrv, "/compress/body?n=4000", "gzip")
    assert r.status == 200
    assert r.header("content-encoding") == "gzip"
    assert "accept-encoding" in vary_tokens(r)
    check_common(r)  # Content-Length is that of the compressed bytes
    assert len(r.body) < 4000
    assert gzip.decompress(r.body) == expected_body(4000)


@needs_brotli
def test_brotli(csrv):
    r = get(csrv, "/compress/body?n=4000&type=json", "br")
    assert r.header("content-encoding") == "br"
    assert r.header("content-type") == "application/json"
    check_common(r)
    assert brotli.decompress(r.body) == expected_body(4000)


@pytest.mark.parametrize("ae,want", [
    ("gzip, deflate, br", "br"),           # a browser's: br first on equal weight
    ("br, gzip", "br"),
    ("gzip;q=1.0, br;q=0.8", "gzip"),      # weights decide
    ("br;q=0, gzip", "gzip"),              # q=0 refuses
    ("br;q=0.001, gzip;q=0", "br"),
    ("*", "br"),
    ("*;q=0.5, gzip", "gzip"),             # a named coding beats the star
    ("x-gzip", "gzip"),
    ("GZIP", "gzip"),
    ("gzip;q=0", None),
    ("*;q=0", None),                       # nothing acceptable: identity all the same
    ("identity", None),
    ("identity;q=0", None),
    ("gzip;q=0.5, identity", None),        # identity preferred
    ("", None),
    (None, None),                          # no Accept-Encoding at all
    ("deflate, compress, zstd", None),
    ("gzip;q=2, br;level=3", None),        # malformed elements are not acceptance
])
def test_negotiation(csrv, ae, want):
    if brotli is None and want == "br":
        pytest.skip("python3-brotli not installed")
    r = get(csrv, "/compress/body?n=2000", ae)
    assert r.status == 200
    assert r.header("content-encoding") == want, r
    assert "accept-encoding" in vary_tokens(r)
    assert decode(r) == expected_body(2000)
    check_common(r)


@pytest.mark.parametrize("ae", ["gzip", "br"])
def test_large_body(csrv, ae):
    # over 256 KiB: compressed on the worker pool, not the loop
    if ae == "br" and brotli is None:
        pytest.skip("python3-brotli not installed")
    r = get(csrv, "/compress/body?n=600000", ae)
    assert r.header("content-encoding") == ae
    check_common(r)
    assert len(r.body) < 100000
    assert decode(r) == expected_body(600000)


def test_min_size(csrv):
    small = get(csrv, "/compress/body?n=859", "gzip")
    assert small.header("content-encoding") is None
    assert small.body == expected_body(859)
    # Vary all the same: a larger body of the same resource would vary
    assert "accept-encoding" in vary_tokens(small)
    at = get(csrv, "/compress/body?n=860", "gzip")
    assert at.header("content-encoding") == "gzip"
    assert gzip.decompress(at.body) == expected_body(860)


def assert_untouched(r, n):
    """Sent as the app made it: no coding, no Vary."""
    assert r.header("content-encoding") is None
    assert r.header("vary") is None
    assert r.body == expected_body(n)


def test_not_compressible_type(csrv):
    assert_untouched(get(csrv, "/compress/body?n=4000&type=png", "gzip, br"), 4000)


def test_html_compressed(csrv):
    r = get(csrv, "/compress/body?n=3000&type=html", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header("content-type") == "text/html; charset=utf-8"


def test_vary_merged(csrv):
    r = get(csrv, "/compress/body?n=4000&vary=1", "gzip")
    assert r.header_list("vary") == ["Cookie, Accept-Encoding"]


def test_etag_weakened(csrv):
    r = get(csrv, "/compress/body?n=4000&etag=1", "gzip")
    assert r.header("etag") == 'W/"v1"'
    plain = get(csrv, "/compress/body?n=4000&etag=1", "identity")
    assert plain.header("etag") == '"v1"'


def test_already_encoded_untouched(csrv):
    r = get(csrv, "/compress/body?n=4000&encoded=1", "gzip, br")
    assert r.header_list("content-encoding") == ["gzip"]
    assert r.body == expected_body(4000)  # as the app set it: not encoded again
    assert r.header("vary") is None


def test_no_transform_untouched(csrv):
    assert_untouched(get(csrv, "/compress/body?n=4000&notransform=1", "gzip"), 4000)


def test_partial_content_untouched(csrv):
    r = get(csrv, "/compress/body?n=4000&status=206", "gzip")
    assert r.status == 206
    assert_untouched(r, 4000)


def test_error_status_compressed(csrv):
    r = get(csrv, "/compress/body?n=4000&status=404", "gzip")
    assert r.status == 404
    assert r.header("content-encoding") == "gzip"


@pytest.mark.parametrize("ae", ["gzip", "br", "identity"])
def test_head_matches_get(csrv, ae):
    if ae == "br" and brotli is None:
        pytest.skip("python3-brotli not installed")
    g = get(csrv, "/compress/body?n=4000&etag=1", ae)
    h = get(csrv, "/compress/body?n=4000&etag=1", ae, method="HEAD")
    assert h.status == 200 and h.body == b""
    for name in ("content-encoding", "content-length", "vary", "etag", "content-type"):
        assert h.header_list(name) == g.header_list(name), name


def test_requests_decodes(csrv):
    # requests (urllib3) sends "gzip, deflate" (and br with brotli installed)
    # and decodes transparently.
    r = requests.get("%s://%s:%d/compress/body?n=5000&type=json" % ((tlskit.scheme(),) + tuple(csrv)), timeout=5)
    assert r.headers["Content-Encoding"] in ("gzip", "br")
    assert r.content == expected_body(5000)


def test_keepalive_after_compressed(csrv):
    with connect(csrv) as c:
        for n in (4000, 100, 9000):
            c.send(req("GET", "/compress/body?n=%d" % n, headers=[("Accept-Encoding", "gzip")]))
            r = c.read_final()
            assert decode(r) == expected_body(n)


def test_on_from_the_environment(spawn_server):
    s = spawn_server(env=dict(os.environ, VIAL_COMPRESS="1"))
    r = get(s.addr, "/compress/body?n=4000", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == expected_body(4000)


def test_off_without_the_option(server):
    assert_untouched(get(server, "/compress/body?n=4000", "gzip, br"), 4000)


# --- streams ---------------------------------------------------------------------


def stream_lines(n):
    return b"".join(b"chunk %d\n" % i for i in range(1, n + 1))


def test_stream_gzip(csrv):
    r = get(csrv, "/stream?n=500", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.framing == "chunked"
    assert not r.header_list("content-length")
    assert "accept-encoding" in vary_tokens(r)
    assert gzip.decompress(r.body) == stream_lines(500)


@needs_brotli
def test_stream_brotli(csrv):
    r = get(csrv, "/stream?n=500", "br")
    assert r.header("content-encoding") == "br"
    assert brotli.decompress(r.body) == stream_lines(500)


def test_stream_identity(csrv):
    r = get(csrv, "/stream?n=5", "identity")
    assert r.header("content-encoding") is None
    assert r.body == stream_lines(5)


def test_stream_head(csrv):
    g = get(csrv, "/stream?n=5", "gzip")
    h = get(csrv, "/stream?n=5", "gzip", method="HEAD")
    assert h.body == b""
    for name in ("content-encoding", "vary", "transfer-encoding"):
        assert h.header_list(name) == g.header_list(name), name


def _incremental(csrv, ae, make_decoder):
    """Each SSE event decodes on arrival: it is not held in the compressor
    until the next one (the server sleeps 400 ms between events)."""
    dec = make_decoder()
    seen = []  # (time, decoded text so far)
    text = bytearray()

    def on_data(t, piece):
        text.extend(dec(piece))
        seen.append((t, bytes(text)))

    with connect(csrv, timeout=10) as c:
        t0 = time.monotonic()
        c.send(req("GET", "/sse?n=3&ms=400", headers=[("Accept-Encoding", ae)]))
        r = c.read_final(on_data=on_data, timeout=10)
    assert r.header("content-encoding") == ae
    want1 = b"id: 1\ndata: event 1\n\n"
    first = [t for t, s in seen if s.startswith(want1)]
    assert first, "event 1 never decoded: %r" % seen
    assert first[0] - t0 < 0.35, "event 1 decoded only after %.2f s" % (first[0] - t0)
    second = [t for t, s in seen if b"event 2" in s]
    assert second and second[0] - t0 >= 0.35
    assert bytes(text) == want1 + b"id: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n"


def test_sse_gzip_incremental(csrv):
    def make():
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress
    _incremental(csrv, "gzip", make)


@needs_brotli
def test_sse_brotli_incremental(csrv):
    def make():
        d = brotli.Decompressor()
        return d.process
    _incremental(csrv, "br", make)


def test_stream_client_abort(csrv):
    """Clients leaving mid-stream (compressor live) leave a working server
    (the ASan build also checks nothing leaked)."""
    for ae in ("gzip", "br"):
        for _ in range(5):
            s = socket.create_connection(csrv, timeout=5)
            s.sendall(req("GET", "/stream?n=10000&ms=1", headers=[("Accept-Encoding", ae)]))
            s.recv(4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # RST
            s.close()
    time.sleep(0.3)
    r = get(csrv, "/compress/body?n=4000", "gzip")
    assert gzip.decompress(r.body) == expected_body(4000)


# --- precompressed static files ----------------------------------------------------------


@needs_brotli
def test_static_br_sibling(csrv):
    r = get(csrv, "/static/page.html", "gzip, br")
    assert r.status == 200
    assert r.header("content-encoding") == "br"
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert "accept-encoding" in vary_tokens(r)
    assert brotli.decompress(r.body) == STATIC_HTML + b"<!-- br -->"
    check_common(r)


def test_static_gz_sibling(csrv):
    r = get(csrv, "/static/page.html", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert gzip.decompress(r.body) == STATIC_HTML + b"<!-- gz -->"
    ident = get(csrv, "/static/page.html", "identity")
    assert ident.header("content-encoding") is None
    assert ident.body == STATIC_HTML
    assert "accept-encoding" in vary_tokens(ident)
    # another representation, another validator
    assert ident.header("etag") != r.header("etag")


def test_static_missing_best_sibling(csrv):
    # only.js has a .gz but no .br: a client preferring br gets the gz
    r = get(csrv, "/static/only.js", "br, gzip")
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body).endswith(b"// gz")


def test_static_stale_sibling_ignored(csrv):
    r = get(csrv, "/static/style.css", "gzip")
    assert r.header("content-encoding") is None
    assert r.body == STATIC_CSS
    assert "accept-encoding" in vary_tokens(r)


def test_static_not_compressible_type(csrv):
    r = get(csrv, "/static/image.png", "gzip")
    assert r.header("content-encoding") is None
    assert r.header("vary") is None


def test_static_conditional_on_sibling(csrv):
    r = get(csrv, "/static/page.html", "gzip")
    etag = r.header("etag")
    nm = get(csrv, "/static/page.html", "gzip", headers=[("If-None-Match", etag)])
    assert nm.status == 304
    assert nm.header("etag") == etag
    assert "accept-encoding" in vary_tokens(nm)
    # the identity representation does not match the gz's tag
    other = get(csrv, "/static/page.html", "identity", headers=[("If-None-Match", etag)])
    assert other.status == 200 and other.body == STATIC_HTML


def test_static_head_matches_get(csrv):
    g = get(csrv, "/static/page.html", "gzip")
    h = get(csrv, "/static/page.html", "gzip", method="HEAD")
    for name in ("content-encoding", "content-length", "vary", "etag", "content-type"):
        assert h.header_list(name) == g.header_list(name), name


def test_static_range_of_sibling(csrv):
    full = get(csrv, "/static/page.html", "gzip")
    r = get(csrv, "/static/page.html", "gzip", headers=[("Range", "bytes=0-9")])
    assert r.status == 206
    assert r.header("content-encoding") == "gzip"
    assert r.body == full.body[:10]  # a range of the encoded bytes

