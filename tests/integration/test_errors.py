"""Error answers through nginx: one JSON shape everywhere, the right status
for each kind of bad input, security headers on all of them, and no child
crashing on any of it."""
import json

import pytest

from stack import parse_raw_response

VERSION = "/api/v1/version"
JSON = {"Content-Type": "application/json"}
MAX_BODY = 1024 * 1024          # api_max_body default

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=",
    "x-content-type-options": "nosniff",
    "referrer-policy": "",
    "cache-control": "no-store",
}



pytestmark = pytest.mark.usefixtures("nothing_crashes")


def assert_error(r, status, code=None):
    """r is an error answer of exactly the documented shape."""
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = json.loads(r.body)
    assert list(body) == ["error"], body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id"}, err
    assert all(isinstance(v, str) and v for v in err.values()), err
    assert err["request_id"] == r.headers["x-request-id"], (err, r.headers)
    if code:
        assert err["code"] == code, err
    assert_security_headers(r)
    return err


def assert_security_headers(r, api=True):
    for name, part in SECURITY_HEADERS.items():
        if name == "cache-control" and not api:
            continue
        assert name in r.headers, (name, r.status, r.headers)
        assert part in r.headers[name], (name, r.headers[name])
    if api:
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def raw_request(stack, head, body=b""):
    """A hand-written request; the answer parsed."""
    data = stack.raw(head.encode("latin-1") + body, half_close=False)
    return parse_raw_response(data)


def test_security_headers_on_success(stack):
    r = stack.get(VERSION)
    assert r.status == 200
    assert_security_headers(r)


def test_unknown_path(stack):
    assert_error(stack.get("/api/v1/nothing-here"), 404, "not_found")
    # Outside /api/ the answer comes from nginx, in the same shape.
    # The requested file's extension must not set the error's Content-Type.
    for path in ("/no-such-file.html", "/missing.js", "/gone.css"):
        assert_error(stack.get(path), 404, "not_found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "FOO"])
def test_method_not_allowed(stack, method):
    r = stack.request(method, VERSION)
    err = assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, HEAD"
    assert "GET" in err["message"]


def test_post_without_length(stack):
    r = raw_request(stack, "POST %s HTTP/1.1\r\nHost: localhost\r\n"
                           "Content-Type: application/json\r\nConnection: close\r\n\r\n" % VERSION)
    assert_error(r, 411, "length_required")


def test_body_over_api_limit(stack):
    r = stack.request("POST", VERSION, body=b" " * (MAX_BODY + 1), headers=JSON, timeout=30)
    err = assert_error(r, 413, "payload_too_large")
    # The message names the limit, so a client knows what to send instead.
    assert str(MAX_BODY) in err["message"], err


def test_body_over_nginx_limit(stack):
    r = stack.request("POST", VERSION, body=b" " * (9 * 1024 * 1024), headers=JSON, timeout=30)
    assert_error(r, 413, "payload_too_large")
    # nginx answered: the app would say how large the body was.
    assert str(9 * 1024 * 1024) not in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    b'{"a": ',
    b'{"a": 1} trailing',
    b'{"a": 1}{"b": 2}',
    b'[' * 100 + b']' * 100,
    b'{"a": "\xff\xfe"}',
    b'{"a": "\xc3\x28"}',
    b'{"a": "x\\u0000y"}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b"{'a': 1}",
], ids=["unterminated", "trailing-garbage", "two-documents", "nested-100",
        "bad-utf8", "bad-utf8-seq", "nul-escape", "nan", "infinity", "single-quotes"])
def test_invalid_json(stack, body):
    r = stack.request("POST", VERSION, body=body, headers=JSON)
    assert_error(r, 400, "invalid_json")


def test_empty_body_is_not_judged(stack):
    # Content-Length: 0 is no JSON to judge: the route decides (405).
    r = stack.request("POST", VERSION, body=b"", headers=JSON)
    assert_error(r, 405, "method_not_allowed")


def test_valid_json_reaches_router(stack):
    # Acceptable JSON passes the body checks and meets the router's 405.
    r = stack.request("POST", VERSION, body=b'{"a": [1, 2, {"b": null}], "c": "\\u00e9"}', headers=JSON)
    assert_error(r, 405, "method_not_allowed")


def test_wrong_content_type(stack):
    r = stack.request("POST", VERSION, body=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    assert_error(r, 415)


def test_trace_refused_by_nginx(stack):
    r = stack.request("TRACE", VERSION)
    assert_error(r, 405, "method_not_allowed")
    assert "allow" not in r.headers      # nginx's answer, not the app's


def test_header_too_large(stack):
    r = stack.get("/healthz", headers={"X-Big": "a" * 10240})
    assert_error(r, 400, "bad_request")


def test_uri_too_long(stack):
    r = stack.get("/api/" + "a" * 20480)
    assert r.status in (400, 414), r
    assert_error(r, r.status)


def test_malformed_request_line(stack):
    r = parse_raw_response(stack.raw(b"GARBAGE\r\n\r\n"))
    assert_error(r, 400, "bad_request")
    r = parse_raw_response(stack.raw(b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert_error(r, 400, "bad_request")


def test_ui_page_headers(stack):
    r = stack.get("/")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert_security_headers(r, api=False)
