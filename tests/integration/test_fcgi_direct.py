"""FastCGI straight to the pool socket, bypassing nginx: what a process
that can reach the socket could send.  Every answer is a well-formed error
or a success, and no child crashes."""
import json
import re

import pytest

from stack import (FCGI_STDIN, cgi_params, fcgi_begin, fcgi_params_records,
                   fcgi_read_response, fcgi_record)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
VERSION = "/api/v1/version"


pytestmark = pytest.mark.usefixtures("nothing_crashes")


def error_of(r, status, code=None):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json"
    err = json.loads(r.body)["error"]
    assert set(err) == {"code", "message", "request_id"}
    assert err["request_id"] == r.headers["x-request-id"]
    if code:
        assert err["code"] == code, err
    return err


def test_direct_request_works(stack):
    r = stack.fcgi(cgi_params("GET", VERSION, extra={"REQUEST_ID": "abc-123_XYZ"}))
    assert r.status == 200
    assert json.loads(r.body)["name"] == "crosspost"
    # A well-formed id from the proxy is kept.
    assert r.headers["x-request-id"] == "abc-123_XYZ"


def test_truncated_body(stack):
    params = cgi_params("POST", VERSION, b"x" * 100)
    assert params["CONTENT_LENGTH"] == "100"
    data = (fcgi_begin() + fcgi_params_records(params)
            + fcgi_record(FCGI_STDIN, b"{" * 10) + fcgi_record(FCGI_STDIN, b""))
    with stack.fcgi_connect() as s:
        s.sendall(data)
        r = fcgi_read_response(s)
    err = error_of(r, 400, "truncated_body")
    assert "10 of 100" in err["message"], err


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 5", "99999999999999999999999", "0x10"])
def test_bad_content_length(stack, length):
    body = b'{"a":1}'
    r = stack.fcgi(cgi_params("POST", VERSION, body, extra={"CONTENT_LENGTH": length}), body)
    error_of(r, 400, "bad_content_length")


def test_missing_request_id_is_generated(stack):
    params = cgi_params("GET", "/nowhere")
    del params["REQUEST_ID"]
    r = stack.fcgi(params)
    err = error_of(r, 404, "not_found")
    assert HEX32.match(err["request_id"]), err
    other = error_of(stack.fcgi(params), 404)
    assert other["request_id"] != err["request_id"]


@pytest.mark.parametrize("given", ["a\r\nb", "a" * 200, "x y", "id\"quote", "<script>", "\xe9t\xe9"],
                         ids=["crlf", "too-long", "space", "quote", "markup", "non-ascii"])
def test_bad_request_id_is_replaced(stack, given):
    r = stack.fcgi(cgi_params("GET", "/nowhere", extra={"REQUEST_ID": given}))
    err = error_of(r, 404, "not_found")
    assert HEX32.match(err["request_id"]), err
    assert HEX32.match(r.headers["x-request-id"])
    raw = r.body + "".join(r.headers.values()).encode("utf-8", "replace")
    assert given.encode("utf-8") not in raw
    if given == "a\r\nb":
        assert "b" not in r.headers          # no header injected


def test_many_large_params(stack):
    extra = {"HTTP_X_FILL_%d" % i: "v" * 4096 for i in range(200)}
    r = stack.fcgi(cgi_params("GET", VERSION, extra=extra), timeout=20)
    assert r.status == 200


def test_one_huge_param(stack):
    r = stack.fcgi(cgi_params("GET", VERSION, extra={"HTTP_X_HUGE": "h" * 65536}))
    assert r.status == 200


def test_missing_method(stack):
    params = cgi_params("GET", VERSION)
    del params["REQUEST_METHOD"]
    r = stack.fcgi(params)
    assert r.status in (404, 405)
    error_of(r, r.status)


def test_missing_path(stack):
    params = cgi_params("GET", VERSION)
    del params["DOCUMENT_URI"]
    error_of(stack.fcgi(params), 404, "not_found")


def test_no_params_at_all(stack):
    r = stack.fcgi({})
    err = error_of(r, 404, "not_found")
    assert HEX32.match(err["request_id"])


def test_connection_dropped_mid_request(stack):
    # A client that vanishes half-way must cost a child nothing but time.
    with stack.fcgi_connect() as s:
        s.sendall(fcgi_begin() + fcgi_params_records(cgi_params("GET", VERSION))[:20])
    with stack.fcgi_connect() as s:
        body = b'{"a":1}'
        s.sendall(fcgi_begin() + fcgi_params_records(cgi_params("POST", VERSION, b"x" * 50))
                  + fcgi_record(FCGI_STDIN, body))
    for _ in range(6):
        assert stack.fcgi(cgi_params("GET", VERSION)).status == 200
