"""Spec §4.2: /args, /form, /upload, /json, /headers, /header/<name>, cookies, /echo/body."""

import hashlib
import json
import math
import os

import pytest

from appkit import (assert_hooks, assert_json, assert_no_hooks, call, each_in_parallel, field, file_part,
                    get, multipart, only)
from httpkit import check_common, connect, req

FORM_CT = "application/x-www-form-urlencoded"
BOUNDARY = "vialBoundary7MA4YWxkTrZu0gW"
MP_CT = "multipart/form-data; boundary=" + BOUNDARY
BAD = {"error": "bad request", "code": 400}
UNSUPPORTED = {"error": "unsupported media type", "code": 415}


def post(server, target, body, ctype=None, extra=(), method="POST", timeout=4):
    headers = list(extra)
    if ctype is not None:
        headers.insert(0, ("Content-Type", ctype))
    return call(server, method, target, headers=headers, body=body, timeout=timeout)


# --- /args -------------------------------------------------------------------------------------

def test_args_exact(server):
    r = get(server, "/args?b=2&a=1&b=3&c")
    assert_json(r, 200, {"args": {"b": ["2", "3"], "a": ["1"], "c": [""]}})
    assert_hooks(r)


# --- /form -------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,form", [
    (b"a=1", {"a": ["1"]}),
    (b"a=1&&b=2&a=3&", {"a": ["1", "3"], "b": ["2"]}),
    (b"c", {"c": [""]}),
    (b"=v", {"": ["v"]}),
    (b"d+e=f+g", {"d e": ["f g"]}),
    (b"h=%2B%20%FF&i=%zz", {"h": ["+ \ufffd"], "i": ["%zz"]}),
    (b"k=%C3%A9&k=%E2%82%AC", {"k": ["\u00e9", "\u20ac"]}),
    (b"a=b=c", {"a": ["b=c"]}),
    (b"", {}),
    (b"&&", {}),
])
def test_form_urlencoded(server, body, form):
    r = post(server, "/form", body, FORM_CT)
    assert_json(r, 200, {"form": form})
    assert_hooks(r)


@pytest.mark.parametrize("ctype", [FORM_CT + "; charset=utf-8", FORM_CT + ";charset=UTF-8"])
def test_form_urlencoded_with_parameters(server, ctype):
    assert_json(post(server, "/form", b"x=1&y=2", ctype), 200, {"form": {"x": ["1"], "y": ["2"]}})


def test_form_multipart_non_file_fields(server):
    body = multipart([field("a", "1"), field("b", "x y"), file_part("f", "f.txt", b"a=2"),
                      field("a", "2"), field("u", "\u00e9t\u00e9")])
    r = post(server, "/form", body, MP_CT)
    assert_json(r, 200, {"form": {"a": ["1", "2"], "b": ["x y"], "u": ["\u00e9t\u00e9"]}})


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/json", "application/octet-stream",
                                   "multipart/mixed; boundary=" + BOUNDARY])
def test_form_other_content_types_give_empty(server, ctype):
    r = post(server, "/form", b"a=1&b=2", ctype)
    assert_json(r, 200, {"form": {}})


BODY_SIZES = [20000, 33000, 50000, 70000, 100000, 127000, 200000]


def test_form_ignores_unread_body_of_any_size(server):
    def check(size):
        assert_json(post(server, "/form", b"x" * size, "text/plain", timeout=3), 200, {"form": {}})
    each_in_parallel(check, BODY_SIZES)


def test_form_no_body(server):
    assert_json(call(server, "POST", "/form", content_length=0), 200, {"form": {}})


# --- /upload -----------------------------------------------------------------------------------

def _file_entry(fieldname, filename, data):
    return {"field": fieldname, "filename": filename, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _upload_json(r):
    assert r.status == 200, r
    assert only(r, "content-type") == "application/json", r
    d = r.json()
    assert set(d) == {"files", "form"}, d
    return sorted(d["files"], key=lambda f: (f["field"], f["filename"])), d["form"]


def test_upload_text_file(server):
    data = b"hello, vial\n"
    r = post(server, "/upload", multipart([file_part("doc", "hello.txt", data, "text/plain")]), MP_CT)
    files, form = _upload_json(r)
    assert files == [_file_entry("doc", "hello.txt", data)]
    assert form == {}
    check_common(r)
    assert_hooks(r)


def test_upload_binary_file_with_delimiter_like_bytes(server):
    data = bytes(range(256)) * 8 + b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n\r\n--\r\n" + bytes(range(255, -1, -1))
    r = post(server, "/upload", multipart([file_part("bin", "data.bin", data)]), MP_CT)
    files, form = _upload_json(r)
    assert files == [_file_entry("bin", "data.bin", data)]


def test_upload_large_file(server):
    data = os.urandom(300 * 1024 + 17)
    r = post(server, "/upload", multipart([file_part("big", "big.bin", data)]), MP_CT)
    files, _ = _upload_json(r)
    assert files == [_file_entry("big", "big.bin", data)]


def test_upload_empty_file(server):
    r = post(server, "/upload", multipart([file_part("e", "empty.txt", b"")]), MP_CT)
    files, _ = _upload_json(r)
    assert files == [_file_entry("e", "empty.txt", b"")]
    assert files[0]["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_upload_utf8_filename(server):
    name = "r\u00e9sum\u00e9 \u6587\u4ef6 \U0001F4C4.txt"
    data = "contenu \u00e9".encode("utf-8")
    r = post(server, "/upload", multipart([file_part("cv", name, data)]), MP_CT)
    files, _ = _upload_json(r)
    assert files == [_file_entry("cv", name, data)]


def test_upload_several_files_and_fields(server):
    f1, f2, f3 = b"one", os.urandom(70000), b"\x00" * 1000
    body = multipart([field("note", "hi"), file_part("a", "1.txt", f1), field("note", "there"),
                      file_part("a", "2.bin", f2), file_part("b", "3.bin", f3), field("x", "")])
    r = post(server, "/upload", body, MP_CT)
    files, form = _upload_json(r)
    want = sorted([_file_entry("a", "1.txt", f1), _file_entry("a", "2.bin", f2), _file_entry("b", "3.bin", f3)],
                  key=lambda f: (f["field"], f["filename"]))
    assert files == want
    assert form == {"note": ["hi", "there"], "x": [""]}


def test_upload_fields_only(server):
    r = post(server, "/upload", multipart([field("k", "v")]), MP_CT)
    files, form = _upload_json(r)
    assert files == [] and form == {"k": ["v"]}


@pytest.mark.parametrize("ctype", ['multipart/form-data; boundary="%s"' % BOUNDARY,
                                   "Multipart/Form-Data; boundary=" + BOUNDARY,
                                   "multipart/form-data; charset=utf-8; boundary=" + BOUNDARY])
def test_upload_content_type_variants(server, ctype):
    data = b"abc"
    r = post(server, "/upload", multipart([file_part("f", "a.txt", data)]), ctype)
    files, _ = _upload_json(r)
    assert files == [_file_entry("f", "a.txt", data)]


@pytest.mark.parametrize("ctype", [None, "text/plain", FORM_CT, "application/json", "multipart/form-data",
                                   "multipart/form-data; charset=utf-8", "multipart/mixed; boundary=" + BOUNDARY])
def test_upload_requires_multipart_with_boundary(server, ctype):
    body = multipart([file_part("f", "a.txt", b"abc")])
    r = post(server, "/upload", body, ctype)
    assert_json(r, 400, BAD)
    assert_hooks(r)


@pytest.mark.parametrize("body", [
    multipart([file_part("f", "a.txt", b"abc")], close=False),
    multipart([file_part("f", "a.txt", b"abc")])[:-20],
    b"no delimiter at all",
    b"",
    ("--" + BOUNDARY + "\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nabc").encode(),
])
def test_upload_invalid_multipart_is_400(server, body):
    r = post(server, "/upload", body, MP_CT)
    assert_json(r, 400, BAD)


# --- /json -------------------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", [
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
    "Application/JSON", "APPLICATION/JSON; CHARSET=UTF-8", "application/vnd.x+json",
    "application/ld+json", "application/vnd.api+json; charset=utf-8", "APPLICATION/VND.X+JSON",
    "application/problem+json",
])
def test_json_accepted_media_types(server, ctype):
    r = post(server, "/json", b'{"a": 1}', ctype)
    assert_json(r, 200, {"json": {"a": 1}})
    assert_hooks(r)


@pytest.mark.parametrize("ctype", [
    None, "text/plain", "text/json", "application/x-www-form-urlencoded", "application/jsonx",
    "application/json-patch", "application/xjson", "application/vnd.x+jsonx", "application/vnd.x+xml",
    "multipart/form-data; boundary=x", "application/octet-stream", "json", "application/",
])
def test_json_wrong_media_type_is_415(server, ctype):
    r = post(server, "/json", b'{"a": 1}', ctype)
    assert_json(r, 415, UNSUPPORTED)
    assert_hooks(r)


def test_json_415_with_large_body(server):
    def check(size):
        assert_json(post(server, "/json", b"x" * size, "text/plain", timeout=3), 415, UNSUPPORTED)
    each_in_parallel(check, BODY_SIZES)


def test_json_400_with_large_body(server):
    def check(size):
        assert_json(post(server, "/json", b"[" + b"1," * (size // 2), "application/json", timeout=3), 400, BAD)
    each_in_parallel(check, BODY_SIZES)


def test_upload_file_sizes(server):
    def check(size):
        data = os.urandom(size)
        r = post(server, "/upload", multipart([file_part("f", "s.bin", data)]), MP_CT, timeout=3)
        files, _ = _upload_json(r)
        assert files == [_file_entry("f", "s.bin", data)]
    each_in_parallel(check, BODY_SIZES + [1000, 65536, 65537])


def test_json_415_checked_before_body(server):
    assert_json(post(server, "/json", b"not json", "text/plain"), 415, UNSUPPORTED)


@pytest.mark.parametrize("body", [
    b"", b"   ", b"\r\n", b'{"a":', b"[1, 2", b'"abc', b"tru", b"{} {}", b"1 2", b"{}x", b"[]]",
    b'{"a": 1 /* c */}', b"// c\n{}", b"/* c */ 1", b"# c\n1", b"{'a': 1}", b"'s'", b"[1, 2,]", b'{"a": 1,}',
    b"NaN", b"Infinity", b"-Infinity", b"[NaN]", b'{"a": Infinity}', b'"\xff"', b'"\xc3"', b'"\xc3\x28"',
    b'"\xed\xa0\x80"', b'"\xc0\xaf"', b"01", b"+1", b".5", b"1.", b"0x10", b'{"a" 1}',
    b"{a: 1}", b'"a\tb"', b'"\\x41"', b'"\\u12"', b"[1 2]", b'{"a":1 "b":2}', b"undefined", b"None",
    b"True", b"nul", b"\x00", b'"abc\x00"', b"{}\x00",
], ids=lambda b: repr(b)[:40])
def test_json_malformed_is_400(server, body):
    r = post(server, "/json", body, "application/json")
    assert_json(r, 400, BAD)
    assert_hooks(r)


ROUNDTRIP = [
    '{"a": 1}', "[]", "{}", "null", "true", "false", "0", "-1", '"s"',
    '  \r\n\t{"a": [1, 2, {"b": null, "c": true, "d": false}], "e": {}}\n ',
    '"h\\u00e9llo \\ud83d\\ude00 \\n\\t\\r\\b\\f\\"\\\\ \\/"',
    '"\u00e9\u20ac\U0001F600 raw utf-8"',
    '"\\u0000 nul and \\u001f"',
    '"a\\u0000b"',
    "9007199254740992", "-9007199254740992", "9007199254740991", "-9007199254740991",
    "1234567890123",
    "1.5", "-2.25e-10", "1e300", "0.1", "3.141592653589793", "-0.0", "1E+2", "2.5E-3",
    "5e-324", "1.7976931348623157e308", "123456.789",
    '[1, -1, 0.5, "x", [], {}, null, [[["deep"]]]]',
    '{"": "empty key", "k\\u00e9y": "v", "n": {"m": {"o": [1]}}}',
]


@pytest.mark.parametrize("text", ROUNDTRIP, ids=lambda t: t[:30])
def test_json_round_trip(server, text):
    want = json.loads(text)
    r = post(server, "/json", text.encode("utf-8"), "application/json")
    assert r.status == 200, r
    # "-0" is the double -0.0 written as an integer: keep its sign.
    got = json.loads(r.body.decode("utf-8"), parse_int=lambda s: -0.0 if s == "-0" else int(s))
    assert only(r, "content-type") == "application/json", r
    assert set(got) == {"json"}, got
    _same(got["json"], want)


def _same(got, want):
    """Exact equality, with numbers compared as int-vs-int or as the same double."""
    if isinstance(want, bool) or want is None:
        assert got is want, (got, want)
    elif isinstance(want, int):
        assert isinstance(got, int) and not isinstance(got, bool) and got == want, (got, want)
    elif isinstance(want, float):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), (got, want)
        assert float(got) == want and math.copysign(1, float(got)) == math.copysign(1, want), (got, want)
    elif isinstance(want, str):
        assert got == want, (got, want)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for a, b in zip(got, want):
            _same(a, b)
    else:
        assert isinstance(got, dict) and set(got) == set(want), (got, want)
        for k in want:
            _same(got[k], want[k])


def test_json_large_document(server):
    doc = {"items": [{"i": i, "s": "x" * (i % 50), "f": i / 7} for i in range(3000)]}
    text = json.dumps(doc).encode()
    assert len(text) < 1048576
    r = post(server, "/json", text, "application/json")
    assert r.status == 200, r
    _same(r.json()["json"], json.loads(text))


# --- /headers and /header/<name> -----------------------------------------------------------

def test_headers_exact(server):
    r = get(server, "/headers", [("X-One", "1"), ("X-Mixed-CASE", "Value Kept")])
    assert_json(r, 200, {"headers": {"host": "localhost", "x-one": "1", "x-mixed-case": "Value Kept"}})
    assert_hooks(r)


def test_headers_trimmed_and_joined(server):
    raw = (b"GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Rep: a\r\nx-trim:   padded \t \r\n"
           b"X-REP: b\r\nx-rep:c, d\r\nX-Empty:\r\nX-Inner:  a  b  \r\n\r\n")
    with connect(server) as c:
        r = c.request(raw)
    assert_json(r, 200, {"headers": {"host": "localhost", "x-rep": "a, b, c, d", "x-trim": "padded",
                                     "x-empty": "", "x-inner": "a  b"}})


def test_headers_keys_lower_case(server):
    r = get(server, "/headers", [("Content-Type", "text/plain"), ("ACCEPT", "*/*"), ("User-Agent", "t")])
    d = r.json()["headers"]
    assert d == {"host": "localhost", "content-type": "text/plain", "accept": "*/*", "user-agent": "t"}


@pytest.mark.parametrize("name,headers,value", [
    ("X-Foo", [("x-foo", "v")], "v"),
    ("x-foo", [("X-FOO", "v")], "v"),
    ("X-FoO", [("x-fOo", "  spaced  ")], "spaced"),
    ("Host", [], "localhost"),
    ("X-Missing", [("X-Other", "1")], None),
    ("X-Rep", [("X-Rep", "1"), ("x-rep", "2"), ("X-REP", "3")], "1, 2, 3"),
    ("x-empty", [("X-Empty", "")], ""),
])
def test_header_lookup(server, name, headers, value):
    r = get(server, "/header/" + name, headers)
    assert_json(r, 200, {"name": name, "value": value})
    assert_hooks(r)


# --- cookies --------------------------------------------------------------------------------

@pytest.mark.parametrize("cookie,cookies", [
    ("a=1", {"a": "1"}),
    ("a=1; b=2", {"a": "1", "b": "2"}),
    ("a=1;b=2;c=3", {"a": "1", "b": "2", "c": "3"}),
    ("a=1;   b=2", {"a": "1", "b": "2"}),
    ("a=1; a=2", {"a": "1"}),
    ("b=x; a=1; b=y", {"b": "x", "a": "1"}),
    ('q="quoted"', {"q": "quoted"}),
    ('q=""', {"q": ""}),
    ("e=", {"e": ""}),
    ("e=x=y", {"e": "x=y"}),
    ("tok=abc.DEF_123-~", {"tok": "abc.DEF_123-~"}),
    ("a=1;", {"a": "1"}),
])
def test_cookies_parsing(server, cookie, cookies):
    r = get(server, "/cookies", [("Cookie", cookie)])
    assert_json(r, 200, {"cookies": cookies})
    assert_hooks(r)


def test_cookies_none(server):
    assert_json(get(server, "/cookies"), 200, {"cookies": {}})


@pytest.mark.parametrize("query,pairs", [
    ("a=1", [("a", "1")]),
    ("a=1&b=two", [("a", "1"), ("b", "two")]),
    ("zz=1&aa=2&mm=3", [("zz", "1"), ("aa", "2"), ("mm", "3")]),
    ("e=", [("e", "")]),
    ("e", [("e", "")]),
    ("Tok.en_~-9=v.A_~-0", [("Tok.en_~-9", "v.A_~-0")]),
    ("%61=%62", [("a", "b")]),
])
def test_cookies_set(server, query, pairs):
    r = get(server, "/cookies/set?" + query)
    assert_json(r, 200, {"set": dict(pairs)})
    assert r.header_list("set-cookie") == ["%s=%s; Path=/" % p for p in pairs], r
    assert_hooks(r)


def test_cookies_set_nothing(server):
    r = get(server, "/cookies/set")
    assert_json(r, 200, {"set": {}})
    assert not r.has("set-cookie"), r


@pytest.mark.parametrize("query", [
    "a=x%3By", "a=b=c", "a=x+y", "a=%22q%22", "a=%C3%A9", "a=x,y", "a+b=1", "=v", "a%3Db=1", "%C3%A9=1",
    "a=1&b=%20", "ok=1&bad%2F=2&ok2=3", "a=x%00", "a=x/y", "a=(x)",
])
def test_cookies_set_invalid_is_400_without_cookies(server, query):
    r = get(server, "/cookies/set?" + query)
    assert_json(r, 400, BAD)
    assert not r.has("set-cookie"), r
    assert_hooks(r)


@pytest.mark.parametrize("name", ["sid", "a.b_c~d-e", "X9"])
def test_cookies_delete(server, name):
    r = get(server, "/cookies/delete?name=" + name)
    assert_json(r, 200, {"deleted": name})
    assert r.header_list("set-cookie") == [
        "%s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/" % name], r


@pytest.mark.parametrize("query", ["", "?name=", "?name", "?other=x", "?name=a%20b", "?name=a;b", "?name=a=b",
                                   "?name=%C3%A9", "?name=a,b"])
def test_cookies_delete_invalid_is_400(server, query):
    r = get(server, "/cookies/delete" + query)
    assert_json(r, 400, BAD)
    assert not r.has("set-cookie"), r


# --- /echo/body ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("size", [1, 255, 4096, 65537, 500000])
def test_echo_body_binary(server, method, size):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    r = call(server, method, "/echo/body", body=data, timeout=10)
    assert r.status == 200, r
    assert only(r, "content-type") == "application/octet-stream", r
    assert r.body == data
    check_common(r)
    assert_hooks(r)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_echo_body_chunked(server, method):
    from httpkit import chunked
    data = b"\x00\r\n0\r\n\r\n" + os.urandom(3000)
    raw = req(method, "/echo/body", headers=[("Transfer-Encoding", "chunked")], body=b"",
              content_length=None) + chunked(data[:5], data[5:100], data[100:])
    with connect(server) as c:
        r = c.request(raw)
    assert r.status == 200 and r.body == data, r


def test_echo_body_empty(server):
    r = call(server, "POST", "/echo/body", content_length=0)
    assert r.status == 200 and r.body == b"", r
    assert only(r, "content-length") == "0", r


def test_echo_body_limit(server):
    data = os.urandom(1048576)
    r = call(server, "PUT", "/echo/body", body=data, timeout=15)
    assert r.status == 200 and r.body == data, r
    with connect(server, timeout=10) as c:
        c.send(req("PUT", "/echo/body", content_length=1048577), ignore_errors=True)
        r = c.read_final(timeout=10)
    assert r.status == 413, r
    assert r.closes, r
    assert_no_hooks(r)
