"""The result contract (include/vial.h "results", issue 8 items 1 and 6), over real
sockets: helpers' failures passed on with `if (st) return st;` become their HTTP error
through the app's handlers; abort and fail are sticky; a view that builds nothing is a
500 with a log line; a body over the limit is rendered by the app's 413 handler alone.

The /contract/ routes are the conformance app's additions beyond the spec; its
fallback handler puts vial_error_message in X-Error-Message for them."""

import time

import pytest

from appkit import (JSON, assert_hooks, assert_json, assert_no_hooks, call, expected_teardown,
                    field, get, multipart, new_rid, only, wait_teardown)
from httpkit import assert_rejected, chunked, connect, req

CT_JSON = [("Content-Type", "application/json")]


def post(server, target, body, ctype=None, rid=None):
    headers = []
    if ctype:
        headers.append(("Content-Type", ctype))
    if rid:
        headers.append(("X-Request-Id", rid))
    return call(server, "POST", target, headers=headers, body=body)


def wait_log(srv, start, needle, within=2.0):
    deadline = time.monotonic() + within
    while True:
        text = srv.log_text(start)
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


# --- vial_req_json: `if (st) return st;` ---------------------------------------------------

@pytest.mark.parametrize("body", [b"{", b"", b"[1,]", b"{} x", b"NaN", b"[" * 600 + b"]" * 600])
def test_malformed_json_is_400_through_the_handler(server, body):
    rid = new_rid("json400")
    r = post(server, "/contract/json", body, "application/json", rid)
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert_hooks(r)
    # the parser's reason reached the error handler as vial_error_message
    assert r.has("x-error-message"), r
    assert only(r, "x-error-message"), r
    # a handled HTTP error: teardown sees no unhandled error
    assert wait_teardown(server, rid) == expected_teardown(rid, "POST", "/contract/json")


def test_malformed_json_message_names_the_problem(server):
    r = post(server, "/contract/json", b"{} x", "application/json")
    assert r.status == 400, r
    assert "trailing" in only(r, "x-error-message"), r


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_of_wrong_type_is_415_through_the_handler(server, ctype):
    r = post(server, "/contract/json", b"{}", ctype)
    assert_json(r, 415, {"error": "unsupported media type", "code": 415})
    assert_hooks(r)
    assert "application/json" in only(r, "x-error-message"), r


def test_spec_json_route_still_answers_400_and_415(server):
    assert_json(post(server, "/json", b"[1,", "application/json"), 400, {"error": "bad request", "code": 400})
    assert_json(post(server, "/json", b"{}", "text/plain"), 415,
                {"error": "unsupported media type", "code": 415})
    assert_json(post(server, "/json", b"[1]", "application/json"), 200, {"json": [1]})


# --- vial_req_parse_form ---------------------------------------------------------------------

def test_form_not_a_form_is_415(server):
    r = post(server, "/contract/form", b"{}", "application/json")
    assert_json(r, 415, {"error": "unsupported media type", "code": 415})
    assert_hooks(r)
    assert "form" in only(r, "x-error-message"), r


def test_form_malformed_multipart_is_400(server):
    r = post(server, "/contract/form", b"--x\r\nno closing delimiter", "multipart/form-data; boundary=x")
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert r.has("x-error-message"), r
    r = post(server, "/contract/form", b"a=1", "multipart/form-data")
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert "boundary" in only(r, "x-error-message"), r


def test_form_too_many_parts_is_413(server):
    body = multipart([field("f", "x")] * 1001)
    r = post(server, "/contract/form", body, "multipart/form-data; boundary=vialBoundary7MA4YWxkTrZu0gW")
    assert_json(r, 413, {"error": "content too large", "code": 413})
    assert "parts" in only(r, "x-error-message"), r


def test_form_ok_and_empty(server):
    r = post(server, "/contract/form", b"a=1&b=2", "application/x-www-form-urlencoded")
    assert r.status == 200 and r.body == b"2 fields", r
    r = post(server, "/contract/form", b"", None)
    assert r.status == 200 and r.body == b"0 fields", r


def test_helper_failure_alone_aborts_nothing(server):
    # The view looks at the failure and answers: no error, no sticky abort.
    r = post(server, "/contract/form-recover", b"{}", "application/json")
    assert r.status == 200 and r.body == b"recovered from 415", r
    assert_hooks(r)


def test_upload_still_400_for_bad_multipart(server):
    r = post(server, "/upload", b"--x\r\nno end", "multipart/form-data; boundary=x")
    assert_json(r, 400, {"error": "bad request", "code": 400})


# --- views that drop or misuse results ----------------------------------------------------------

def test_view_returning_0_without_response_is_500_with_log(server, server_instance):
    rid = new_rid("unbuilt")
    start = server_instance.log_size()
    r = get(server, "/contract/unbuilt", [("X-Request-Id", rid)])
    assert_json(r, 500, {"error": "internal server error"})
    assert_hooks(r)
    msg = "view 'contract_unbuilt' returned 0 without building a response"
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/contract/unbuilt", msg)
    log = wait_log(server_instance, start, msg)
    assert log.count(msg) == 1, log


def test_dropped_vial_fail_is_500(server):
    rid = new_rid("faildrop")
    r = get(server, "/contract/fail-dropped", [("X-Request-Id", rid)])
    assert_json(r, 500, {"error": "internal server error"})
    assert_hooks(r)
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/contract/fail-dropped",
                                                           "dropped failure")


def test_dropped_abort_is_still_the_error(server):
    rid = new_rid("abortdrop")
    r = get(server, "/contract/abort-dropped", [("X-Request-Id", rid)])
    assert_json(r, 409, {"error": "conflict", "code": 409})
    assert_hooks(r)
    assert only(r, "x-error-message") == "dropped abort", r
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/contract/abort-dropped")


def test_errno_from_view_is_500_named_by_strerror(server, server_instance):
    rid = new_rid("errno")
    start = server_instance.log_size()
    r = get(server, "/contract/errno", [("X-Request-Id", rid)])
    assert_json(r, 500, {"error": "internal server error"})
    msg = "ENOENT: No such file or directory"
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/contract/errno", msg)
    assert msg in wait_log(server_instance, start, msg)


def test_positive_return_is_not_a_result(server):
    r = get(server, "/contract/positive")
    assert_json(r, 500, {"error": "internal server error"})


def test_head_of_a_view_that_builds_is_not_500(server):
    r = call(server, "HEAD", "/hello/x")
    assert r.status == 200, r


# --- 413: the app's handler alone ----------------------------------------------------------------

def test_content_length_over_limit_rendered_by_app_handler(server):
    rid = new_rid("big413")
    with connect(server) as c:
        c.send(req("POST", "/echo/body", headers=[("X-Request-Id", rid)], content_length=1048577),
               ignore_errors=True)
        r = c.read_final()
    assert_json(r, 413, {"error": "content too large", "code": 413})
    assert_no_hooks(r)
    assert r.closes, r
    time.sleep(0.3)
    assert get(server, "/teardown-log?rid=" + rid).json() == {"entries": []}


def test_chunked_over_limit_rendered_by_app_handler(server):
    body = chunked(b"a" * 600000, b"b" * 600000)
    with connect(server, timeout=10) as c:
        c.send(req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")], body=body,
                   content_length=None), ignore_errors=True)
        r = c.read_final(timeout=10)
    assert_json(r, 413, {"error": "content too large", "code": 413})
    assert_no_hooks(r)
    assert r.closes, r


def test_head_request_over_limit_has_no_body(server):
    with connect(server) as c:
        c.send(req("HEAD", "/", content_length=1048577), ignore_errors=True)
        r = c.read_final("HEAD")
    assert r.status == 413, r
    assert r.body == b"", r
    assert_no_hooks(r)


# --- item 6: spec duties -------------------------------------------------------------------------

TE = b"POST /echo/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("size_line", [b"10000000000000000", b"fffffffffffffffff", b"00000000000100001",
                                       b"ffffffffffffffffffffffff"])
def test_chunk_size_over_16_digits_is_400_whatever_its_value(server, size_line):
    assert_rejected(server, TE + size_line + b"\r\n", 400, send_follow=False, timeout=3.0)


@pytest.mark.parametrize("to", ["/a%20b", "/a%09b", "/a%7Fb", "/%C3%A9", "/a%00b", "/a+b"])
def test_redirect_refuses_bytes_outside_visible_ascii(server, to):
    r = get(server, "/redirect?to=" + to)
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert not r.has("location"), r


def test_redirect_keeps_visible_ascii(server):
    r = get(server, "/redirect?to=/a~b!c")
    assert r.status == 302 and only(r, "location") == "/a~b!c", r
