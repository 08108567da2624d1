"""Spec §2 (conventions: responses, integer parameters, path decoding, query strings)
and §4.1 (routing, converters, strict slashes, url_for)."""

import pytest

from appkit import JSON, TEXT, assert_hooks, assert_json, assert_text, call, each_in_parallel, get, only
from httpkit import check_common, connect, req
import tlskit

# --- §2 response conventions ------------------------------------------------------------------


@pytest.mark.parametrize("target,status,kind", [
    ("/", 200, "text"), ("/hello/a", 200, "text"), ("/dir/", 200, "text"), ("/status/418", 418, "text"),
    ("/users/1", 200, "json"), ("/args?a=1", 200, "json"), ("/no/such", 404, "json"),
    ("/forbidden", 403, "json"), ("/fail", 500, "json"), ("/counter", 200, "json"),
])
def test_content_type_date_length_and_version(server, target, status, kind):
    r = get(server, target)
    assert r.status == status, r
    assert only(r, "content-type") == (TEXT if kind == "text" else JSON), r
    check_common(r)  # HTTP/1.1 status line, one IMF-fixdate Date, Content-Length == body size
    assert not r.body.endswith(b"\n"), "text without trailing newline: %r" % r


@pytest.mark.parametrize("target", ["/", "/users/1", "/no/such", "/forbidden"])
def test_http10_request_gets_http11_status_line(server, target):
    r = call(server, "GET", target, version="HTTP/1.0", host=None)
    assert r.version == "HTTP/1.1", r.status_line
    check_common(r)


def test_json_body_is_one_object(server):
    r = get(server, "/url-for")
    assert r.body.lstrip()[:1] == b"{" and r.body.rstrip()[-1:] == b"}", r
    assert isinstance(r.json(), dict)


# --- §2 integer parameters ------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/lifecycle?ms=", "/lifecycle?ms=x", "/lifecycle?ms=-0", "/lifecycle?ms=+1", "/lifecycle?ms=1e2",
    "/lifecycle?ms=10001", "/lifecycle?ms=%D9%A3", "/lifecycle?ms=%EF%BC%91", "/lifecycle?ms=1%00",
    "/lifecycle?ms=18446744073709551617", "/lifecycle?ms=18446744073709551616",
    "/async/sleep?ms=18446744073709551617", "/lifecycle?ms=%201", "/async/sleep?ms=2%003",
    "/stream?n=", "/stream?n=10001", "/stream?ms=10001", "/stream?n=1.0",
    "/sse?n=", "/sse?n=10001", "/sse?ms=10001", "/sse?n=-3", "/sse?ms=abc",
    "/async/sleep?ms=60001", "/async/sleep?ms=", "/sync/block?ms=60001", "/async/offload?ms=60001",
    "/async/offload?ms=-1", "/async/offload?ms=",
    "/async/gather?n=0", "/async/gather?n=1001", "/async/gather?ms=60001", "/async/gather?n=",
    "/async/gather?n=-1", "/async/timeout?ms=60001", "/async/timeout?limit=60001",
    "/async/timeout?limit=", "/async/timeout?limit=-5", "/async/timeout?ms=x",
    "/async/disconnect-probe?ms=60001", "/async/disconnect-probe?ms=", "/redirect?to=/x&code=",
])
def test_bad_integer_parameter_is_400(server, target):
    r = get(server, target)
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert_hooks(r)


@pytest.mark.parametrize("target,expected", [
    ("/async/sleep?ms=00", {"slept_ms": 0}),
    ("/async/sleep?ms=0012", {"slept_ms": 12}),
    ("/async/sleep?ms=%32", {"slept_ms": 2}),
    ("/sync/block?ms=000", {"blocked_ms": 0}),
    ("/async/offload?ms=0", {"offloaded_ms": 0}),
    ("/async/offload", {"offloaded_ms": 100}),
    ("/async/gather?n=1&ms=0", None),
    ("/async/timeout?ms=0&limit=60000", {"slept_ms": 0}),
])
def test_integer_parameter_defaults_and_leading_zeros(server, target, expected):
    r = get(server, target)
    assert r.status == 200, r
    if expected is not None:
        assert_json(r, 200, expected)
    else:
        assert {k: v for k, v in r.json().items() if k != "elapsed_ms"} == {"n": 1, "ms": 0}, r


@pytest.mark.parametrize("target,body", [
    ("/stream?n=10000&ms=0", b"".join(b"chunk %d\n" % i for i in range(1, 10001))),
    ("/stream?n=0002", b"chunk 1\nchunk 2\n"),
    ("/sse?n=0", b""),
])
def test_integer_parameter_range_limits_inclusive(server, target, body):
    r = get(server, target, timeout=10)
    assert r.status == 200, r
    assert r.body == body


# --- §2 path decoding ----------------------------------------------------------------------

@pytest.mark.parametrize("target,text", [
    ("/hello/w%C3%B6rld", "Hello, w\u00f6rld!"),
    ("/hello/%F0%9F%98%80", "Hello, \U0001F600!"),
    ("/hello/a%20b", "Hello, a b!"),
    ("/hello/a+b", "Hello, a+b!"),
    ("/hello/%2B", "Hello, +!"),
    ("/hello/100%", "Hello, 100%!"),
    ("/hello/%zz", "Hello, %zz!"),
    ("/hello/%4", "Hello, %4!"),
    ("/hello/%4g1", "Hello, %4g1!"),
    ("/hello/%%41", "Hello, %A!"),
    ("/hello/%25", "Hello, %!"),
    ("/hello/%2541", "Hello, %41!"),
    ("/hello/%FF", "Hello, \ufffd!"),
    ("/hello/a%FFb", "Hello, a\ufffdb!"),
    ("/hello/%C3%28", "Hello, \ufffd(!"),
    ("/hello/%C3", "Hello, \ufffd!"),
    ("/hello/%e2%82%ac", "Hello, \u20ac!"),
    ("/hello/%3F", "Hello, ?!"),
    ("/hello/a%00b", "Hello, a\x00b!"),
    ("/hello/%23x", "Hello, #x!"),
    ("/hello/x?name=y", "Hello, x!"),
    ("/hello/x?", "Hello, x!"),
    ("/hello/%C3%A9?a=%2F", "Hello, \u00e9!"),
])
def test_path_decoding(server, target, text):
    r = get(server, target)
    assert_text(r, 200, text)


@pytest.mark.parametrize("target,path", [
    ("/hello/a%2Fb", "/hello/a/b"),     # %2F separates segments before matching
    ("/hello/a%2f", "/hello/a/"),
    ("/users/1%2F2", "/users/1/2"),
])
def test_encoded_slash_separates_segments(server, target, path):
    r = get(server, target)
    assert_json(r, 404, {"error": "not found", "path": path})


@pytest.mark.parametrize("target,expected", [
    ("/files/a%2Fb", {"path": "a/b"}),
    ("/users/%34%32", {"id": 42}),
    ("/files/%E2%82%AC%20x", {"path": "\u20ac x"}),
    ("/files/bad%FF/%C3", {"path": "bad\ufffd/\ufffd"}),
    ("/files/a%00b", {"path": "a\u0000b"}),
])
def test_decoded_path_is_matched(server, target, expected):
    assert_json(get(server, target), 200, expected)


def test_decoded_path_matches_static_route(server):
    assert_text(get(server, "/%64ir/"), 200, "dir")
    assert_text(get(server, "/dir%2F"), 200, "dir")


# --- §2 query strings -----------------------------------------------------------------------

@pytest.mark.parametrize("query,args", [
    ("", {}),
    ("?", {}),
    ("?a=1", {"a": ["1"]}),
    ("?a=1&b=2", {"a": ["1"], "b": ["2"]}),
    ("?&&a=1&&&b=2&", {"a": ["1"], "b": ["2"]}),
    ("?&", {}),
    ("?a", {"a": [""]}),
    ("?a&b", {"a": [""], "b": [""]}),
    ("?a=", {"a": [""]}),
    ("?=v", {"": ["v"]}),
    ("?=", {"": [""]}),
    ("?a=b=c", {"a": ["b=c"]}),
    ("?a==", {"a": ["="]}),
    ("?a+b=c+d", {"a b": ["c d"]}),
    ("?a=%2B", {"a": ["+"]}),
    ("?a=%20+%20", {"a": ["   "]}),
    ("?a=1&a=2&b=3&a=4", {"a": ["1", "2", "4"], "b": ["3"]}),
    ("?k=%C3%A9&k=%E2%82%AC", {"k": ["\u00e9", "\u20ac"]}),
    ("?a=%FF", {"a": ["\ufffd"]}),
    ("?a=100%", {"a": ["100%"]}),
    ("?a=%zz&b=%4", {"a": ["%zz"], "b": ["%4"]}),
    ("?a=%26&b=%3D", {"a": ["&"], "b": ["="]}),
    ("?%61=1", {"a": ["1"]}),
    ("?a%3Db=c", {"a=b": ["c"]}),
    ("?a=x%26y=z", {"a": ["x&y=z"]}),
    ("?a;b=c", {"a;b": ["c"]}),
    ("?a=/b/c?d", {"a": ["/b/c?d"]}),
    ("?a=x%00y", {"a": ["x\u0000y"]}),
    ("?b%00c=1", {"b\u0000c": ["1"]}),
])
def test_query_parsing(server, query, args):
    r = get(server, "/args" + query)
    assert_json(r, 200, {"args": args})


def test_query_order_of_values_kept(server):
    vals = ["v%d" % i for i in range(20)]
    r = get(server, "/args?" + "&".join("k=" + v for v in vals))
    assert_json(r, 200, {"args": {"k": vals}})


def test_query_not_part_of_path(server):
    assert_json(get(server, "/users/5?x=/6"), 200, {"id": 5})
    assert_json(get(server, "/files/a?b=c"), 200, {"path": "a"})


# --- §4.1 routing ---------------------------------------------------------------------------

def test_index(server):
    r = get(server, "/")
    assert_text(r, 200, "vial conformance")
    assert_hooks(r)


@pytest.mark.parametrize("name", ["world", "x", "a.b-c_d~e", "%C3%A9t%C3%A9", "123", "a%20b"])
def test_hello(server, name):
    from urllib.parse import unquote
    assert_text(get(server, "/hello/" + name), 200, "Hello, %s!" % unquote(name, errors="replace"))


@pytest.mark.parametrize("target", ["/hello", "/hello/", "/hello/a/", "/hello/a/b", "/hello//"])
def test_string_converter_no_slash_nonempty(server, target):
    r = get(server, target)
    assert r.status == 404, r


@pytest.mark.parametrize("seg,value", [
    ("0", 0), ("7", 7), ("007", 7), ("42", 42), ("0000000000000000000000001", 1),
    ("9223372036854775807", 9223372036854775807), ("09223372036854775807", 9223372036854775807),
])
def test_int_converter_accepts(server, seg, value):
    assert_json(get(server, "/users/" + seg), 200, {"id": value})


@pytest.mark.parametrize("seg", [
    "9223372036854775808", "18446744073709551616", "99999999999999999999999999",
    "-1", "+1", "-0", "+0", "1.0", "1e3", "0x10", "abc", "1a", "%201", "1%00", "1%002", "1%20",
    "%D9%A3", "%EF%BC%91", "%C2%B2", "%E0%A5%A7",  # non-ASCII digits
    "", "1/",
])
def test_int_converter_rejects(server, seg):
    r = get(server, "/users/" + seg)
    assert r.status == 404, r
    assert r.json()["error"] == "not found", r


@pytest.mark.parametrize("seg", ["199", "600", "0", "1000", "-200"])
def test_status_converter_range(server, seg):
    assert get(server, "/status/" + seg).status == 404


@pytest.mark.parametrize("code", [200, 599])
def test_status_converter_bounds_inclusive(server, code):
    assert_text(get(server, "/status/%d" % code), code, "status %d" % code)


@pytest.mark.parametrize("target,path", [
    ("/files/a", "a"), ("/files/a/b/c.txt", "a/b/c.txt"), ("/files/dir/", "dir/"),
    ("/files/a//b", "a//b"), ("/files/a/b//", "a/b//"), ("/files/.hidden", ".hidden"),
    ("/files/%C3%A9/x", "\u00e9/x"),
])
def test_path_converter(server, target, path):
    assert_json(get(server, target), 200, {"path": path})


@pytest.mark.parametrize("target", ["/files", "/files/"])
def test_path_converter_needs_one_char(server, target):
    assert get(server, target).status == 404


def test_dir_canonical(server):
    r = get(server, "/dir/")
    assert_text(r, 200, "dir")
    assert_hooks(r)


@pytest.mark.parametrize("method,target,location", [
    ("GET", "/dir", "/dir/"),
    ("GET", "/dir?a=1", "/dir/?a=1"),
    ("GET", "/dir?a=1&b=%20x", "/dir/?a=1&b=%20x"),
    ("HEAD", "/dir", "/dir/"),
    ("HEAD", "/dir?q", "/dir/?q"),
])
def test_strict_slash_redirect(server, method, target, location):
    from urllib.parse import urljoin
    r = call(server, method, target)
    assert r.status == 308, r
    loc = only(r, "location")
    resolved = urljoin("http://localhost" + target, loc)
    assert resolved == "http://localhost" + location, (loc, resolved)
    check_common(r, method)
    assert_hooks(r)


@pytest.mark.parametrize("target", ["/methods/", "/users/1/", "/hello/x/", "/url-for/", "/counter/",
                                    "/api/v1/items/1/", "//"])
def test_no_match_with_extra_trailing_slash(server, target):
    assert get(server, target).status == 404


@pytest.mark.parametrize("method,body", [("GET", b""), ("POST", b""), ("POST", b'{"method":"PUT"}'),
                                         ("POST", b"\x00\xff" * 1000)], ids=lambda v: v if isinstance(v, str) else len(v))
def test_methods(server, method, body):
    """A POST body is ignored (and consumed: the next request on the connection is answered)."""
    with connect(server, timeout=3) as c:
        r = c.request(req(method, "/methods", body=body), timeout=3)
        assert_json(r, 200, {"method": method})
        assert_hooks(r)
        assert c.request(req("GET", "/")).body == b"vial conformance"


def test_methods_post_body_of_any_size_ignored(server):
    def check(size):
        with connect(server, timeout=3) as c:
            r = c.request(req("POST", "/methods", body=b"x" * size), timeout=3)
            assert_json(r, 200, {"method": "POST"})
            assert c.request(req("GET", "/")).body == b"vial conformance"
    each_in_parallel(check, [20000, 33000, 50000, 70000, 100000, 127000, 200000, 1048576])


@pytest.mark.parametrize("code", [200, 201, 202, 226, 302, 400, 404, 418, 451, 500, 503, 599])
def test_status(server, code):
    r = get(server, "/status/%d" % code)
    assert_text(r, code, "status %d" % code)


def test_status_204(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/204"))
        assert r.status == 204 and r.body == b"", r
        assert not r.has("content-length"), r
        check_common(r)
        assert c.request(req("GET", "/")).body == b"vial conformance"  # nothing stray on the wire


def test_status_205(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/205"))
        assert r.status == 205 and r.body == b"", r
        assert only(r, "content-length") == "0", r
        assert c.request(req("GET", "/")).body == b"vial conformance"


def test_status_304(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/304"))
        assert r.status == 304 and r.body == b"", r
        assert c.request(req("GET", "/")).body == b"vial conformance"


# --- url_for ----------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "example.com:8080", "127.0.0.1", "[::1]:80"])
def test_url_for(server, host):
    r = get(server, "/url-for", host=host)
    assert_json(r, 200, {
        "index": "/", "hello": "/hello/w%C3%B6rld%20x", "user": "/users/42",
        "files": "/files/docs/read%20me.txt", "dir": "/dir/", "args": "/args?q=vial&page=2",
        "api_item": "/api/v1/items/7", "external": "%s://%s/users/42" % ("https" if tlskit.ENABLED else "http", host),
    })
    assert_hooks(r)
