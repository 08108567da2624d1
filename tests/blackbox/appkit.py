"""Helpers for the application-level black-box tests (test_app_*.py).

Spec: shared/spec/conformance-app.md §2-§4. Builds on httpkit's raw-socket
client; every read has a deadline and every loop is bounded.
"""

import json
import threading
import time
import uuid

from httpkit import check_common, connect, req

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
TEARDOWN_VISIBLE_WITHIN = 1.0


def call(server, method, target, headers=(), body=b"", version="HTTP/1.1", host="localhost",
         content_length="auto", timeout=5.0):
    """One request on a fresh connection; returns the final response."""
    with connect(server, timeout) as c:
        c.send(req(method, target, headers=headers, body=body, version=version, host=host,
                   content_length=content_length))
        return c.read_final(method, timeout=timeout)


def get(server, target, headers=(), **kw):
    return call(server, "GET", target, headers=headers, **kw)


def only(r, name):
    """The single value of header `name` (asserts it appears exactly once)."""
    vals = r.header_list(name)
    assert len(vals) == 1, "expected exactly one %s header, got %r in %r" % (name, vals, r)
    return vals[0]


def assert_text(r, status, body, method="GET"):
    assert r.status == status, r
    assert only(r, "content-type") == TEXT, r
    if method != "HEAD":
        assert r.body == (body.encode("utf-8") if isinstance(body, str) else body), r
    check_common(r, method)


def assert_json(r, status, expected, method="GET"):
    assert r.status == status, r
    assert only(r, "content-type") == JSON, r
    if method != "HEAD":
        assert r.json() == expected, r
    check_common(r, method)


def assert_json_ct(r):
    assert only(r, "content-type") == JSON, r


def assert_hooks(r, bp=False):
    """The app's after hooks (and the blueprint's when bp) ran exactly once on `r`."""
    assert only(r, "x-after") == "1", r
    assert only(r, "x-after-order") == ("bp,async,sync" if bp else "async,sync"), r
    if bp:
        assert only(r, "x-api-version") == "1", r
    else:
        assert not r.has("x-api-version"), "X-Api-Version on a non-blueprint response: %r" % r


def assert_no_hooks(r):
    for h in ("x-after", "x-after-order", "x-api-version"):
        assert not r.has(h), "HTTP-layer rejection carries %s (hooks ran): %r" % (h, r)


def new_rid(tag="t"):
    return "%s-%s" % (tag, uuid.uuid4().hex)


def teardown_log(server, rid=None):
    target = "/teardown-log" if rid is None else "/teardown-log?rid=" + rid
    r = get(server, target)
    assert r.status == 200, r
    assert_json_ct(r)
    data = r.json()
    assert set(data) == {"entries"}, data
    assert isinstance(data["entries"], list), data
    return data["entries"]


def wait_teardown(server, rid, count=2, within=TEARDOWN_VISIBLE_WITHIN):
    """Poll the log until `count` entries for rid are present, at most `within` s
    (+ a small allowance for the poll itself). Returns the entries seen last."""
    deadline = time.monotonic() + within + 0.2
    entries = teardown_log(server, rid)
    for _ in range(200):
        if len(entries) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        entries = teardown_log(server, rid)
    return entries


def expected_teardown(rid, method, path, error=None):
    return [
        {"fn": "teardown_async", "rid": rid, "method": method, "path": path, "error": error},
        {"fn": "teardown_sync", "rid": rid, "method": method, "path": path, "error": error},
    ]


def run_parallel(fns, timeout=15.0):
    """Run callables in threads, all released at once; returns their results in order
    (an exception is returned as the result)."""
    out = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def worker(i, fn):
        try:
            barrier.wait(timeout)
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[i] = e

    threads = [threading.Thread(target=worker, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "parallel requests did not finish within %.0f s" % timeout
    for i, res in enumerate(out):
        if isinstance(res, BaseException):
            raise AssertionError("parallel call %d failed: %r" % (i, res))
    return out


def timed(fn):
    t0 = time.monotonic()
    res = fn()
    return res, time.monotonic() - t0


def multipart(parts, boundary="vialBoundary7MA4YWxkTrZu0gW", close=True):
    """parts: (headers_dict_or_list, body_bytes). Returns the body bytes."""
    out = bytearray()
    for headers, data in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        items = headers.items() if isinstance(headers, dict) else headers
        for k, v in items:
            out += k.encode() + b": " + (v if isinstance(v, bytes) else v.encode("utf-8")) + b"\r\n"
        out += b"\r\n" + (data if isinstance(data, bytes) else data.encode("utf-8")) + b"\r\n"
    if close:
        out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out)


def field(name, value):
    return ({"Content-Disposition": 'form-data; name="%s"' % name}, value)


def file_part(name, filename, data, ctype="application/octet-stream"):
    fn = filename.encode("utf-8") if isinstance(filename, str) else filename
    return ([("Content-Disposition", b'form-data; name="' + name.encode() + b'"; filename="' + fn + b'"'),
             ("Content-Type", ctype)], data)


def dumps(v):
    return json.dumps(v, ensure_ascii=False)


def each_in_parallel(check, cases, timeout=15.0):
    """Run check(case) for every case at once (one thread each); fail listing every case
    whose check raised, so one slow/hung case costs its own timeout only once."""
    def wrap(case):
        def fn():
            try:
                check(case)
                return None
            except Exception as e:  # noqa: BLE001 - collected below
                return "%r: %s" % (case, str(e)[:300])
        return fn

    errors = [e for e in run_parallel([wrap(c) for c in cases], timeout=timeout) if e]
    assert not errors, "%d of %d cases failed:\n  %s" % (len(errors), len(cases), "\n  ".join(errors))
