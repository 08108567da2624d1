"""Limits on parsed structure (the abuse issue, item 5), in Werkzeug's spirit
(max_form_parts): at most vial_config.max_fields (1000) query arguments,
urlencoded fields or multipart parts per request, 413 beyond; and handling
that stays linear in the number of fields, in vial's lookups and in the
conformance app's own grouping (40,000 fields took 10 s when it was
quadratic)."""

import time

from appkit import call, get, multipart

FORM = [("Content-Type", "application/x-www-form-urlencoded")]
BOUNDARY = "vialBoundary7MA4YWxkTrZu0gW"


def fields(n, prefix="f"):
    return "&".join("%s%d=v%d" % (prefix, i, i) for i in range(n)).encode()


def test_form_fields_up_to_the_limit(server):
    r = call(server, "POST", "/form", headers=FORM, body=fields(1000))
    assert r.status == 200, r
    form = r.json()["form"]
    assert len(form) == 1000 and form["f999"] == ["v999"], len(form)


def test_too_many_form_fields_is_413_and_fast(server):
    t0 = time.monotonic()
    r = call(server, "POST", "/form", headers=FORM, body=fields(40000), timeout=30)
    took = time.monotonic() - t0
    assert r.status == 413, r
    assert r.json() == {"error": "content too large", "code": 413}, r.body
    assert took < 2.0, took


def test_too_many_query_arguments_is_413(server):
    # short pieces, so the target stays under its 8 KiB limit
    r = get(server, "/args?" + "&".join(["a"] * 1000))
    assert r.status == 200 and len(r.json()["args"]["a"]) == 1000, r
    r = get(server, "/args?" + "&".join(["a"] * 1001))
    assert r.status == 413, r


def test_too_many_multipart_parts_is_413(server):
    body = multipart([({"Content-Disposition": 'form-data; name="p%d"' % i}, b"x") for i in range(1001)])
    r = call(server, "POST", "/form", headers=[("Content-Type", "multipart/form-data; boundary=" + BOUNDARY)],
             body=body, timeout=30)
    assert r.status == 413, r


def test_many_fields_are_handled_in_linear_time(spawn_server):
    # With the limit raised, 40,000 distinct fields (and as many repeats of
    # one key) are grouped in well under the 10 s the quadratic code took.
    srv = spawn_server(["--max-fields", "100000", "--max-body", "4M"])
    for body in (fields(40000), b"&".join(b"k=%d" % i for i in range(40000))):
        t0 = time.monotonic()
        r = call(srv.addr, "POST", "/form", headers=FORM, body=body, timeout=60)
        took = time.monotonic() - t0
        assert r.status == 200, r
        assert took < 2.0, "40,000 fields took %.2f s" % took
    assert r.json()["form"]["k"][39999] == "39999"
