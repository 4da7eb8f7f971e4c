"""Ops endpoints through nginx: liveness, readiness, version, metrics."""
import re
from concurrent.futures import ThreadPoolExecutor

from stack import metric_key

HEX32 = re.compile(r"^[0-9a-f]{32}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION_ROUTE = "/api/v1/version"


def test_healthz(stack):
    r = stack.get("/healthz")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "ok"}


def test_readyz(stack):
    r = stack.get("/readyz")
    assert r.status == 200, r
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "memcached": "ok"}
    assert UUID.match(body["instance_id"]), body
    assert isinstance(body["sandbox"], bool), body
    # The identity of the installation does not change between calls.
    assert stack.get("/readyz").json()["instance_id"] == body["instance_id"]


def test_version(stack):
    r = stack.get(VERSION_ROUTE)
    assert r.status == 200
    body = r.json()
    assert body["name"] == "crosspost"
    assert body["api"] == "v1"
    assert re.match(r"^\d+\.\d+\.\d+", body["version"]), body
    assert isinstance(body["sandbox"], bool), body


def test_head_version_has_no_body(stack):
    r = stack.request("HEAD", VERSION_ROUTE)
    assert r.status == 200
    assert r.body == b""
    assert r.headers["content-type"] == "application/json"


def test_request_id_header(stack):
    seen = set()
    for path in ("/healthz", VERSION_ROUTE, "/no/such/path"):
        r = stack.get(path)
        rid = r.headers.get("x-request-id", "")
        assert HEX32.match(rid), (path, r.headers)
        seen.add(rid)
    assert len(seen) == 3, "request ids repeat: %r" % seen
    # The API's own answer carries the same id nginx made (one header, not two).
    r = stack.get("/nope")
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_metrics_format(stack):
    r = stack.get("/metrics")
    assert r.status == 200
    ctype = r.headers["content-type"]
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    text = r.body.decode()
    assert "# TYPE crosspost_http_requests_total counter" in text
    assert "# TYPE crosspost_http_request_duration_seconds histogram" in text
    m = stack.metrics()
    assert m[metric_key("crosspost_api_children")] == 3
    assert metric_key("crosspost_api_child_exits_total", reason="crashed") in m


def test_metrics_aggregate_all_children(stack):
    children = stack.api_children()
    assert len(children) > 1, children
    key = metric_key("crosspost_http_requests_total", route=VERSION_ROUTE, status="200")
    before = stack.metrics().get(key, 0)

    # Concurrent clients, so several children are busy at once.
    def one(_):
        return stack.get(VERSION_ROUTE).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(one, range(60)))
    assert statuses == [200] * 60
    after = stack.metrics().get(key, 0)
    assert after - before >= 60, (before, after)


def test_metrics_duration_histogram(stack):
    for _ in range(5):
        assert stack.get(VERSION_ROUTE).status == 200
    m = stack.metrics()
    buckets = {dict(labels)["le"]: v for (name, labels), v in m.items()
               if name == "crosspost_http_request_duration_seconds_bucket"
               and dict(labels)["route"] == VERSION_ROUTE}
    assert "+Inf" in buckets, buckets
    count = m[metric_key("crosspost_http_request_duration_seconds_count", route=VERSION_ROUTE)]
    total = m[metric_key("crosspost_http_request_duration_seconds_sum", route=VERSION_ROUTE)]
    assert count >= 5
    assert buckets["+Inf"] == count
    assert total > 0
    # Buckets are cumulative: never decreasing with the bound.
    finite = sorted((float(le), v) for le, v in buckets.items() if le != "+Inf")
    assert len(finite) >= 5
    values = [v for _, v in finite] + [buckets["+Inf"]]
    assert values == sorted(values), finite


def test_metrics_forbidden_from_other_address(stack):
    r = stack.request("GET", "/metrics", source="127.0.0.2")
    assert r.status == 403
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == "forbidden"
    assert err["request_id"] == r.headers["x-request-id"]
    assert b"crosspost_" not in r.body
    # The same address reaches the rest of the API.
    assert stack.request("GET", "/healthz", source="127.0.0.2").status == 200


def test_unmatched_route_counted(stack):
    key = metric_key("crosspost_http_requests_total", route="unmatched", status="404")
    before = stack.metrics().get(key, 0)
    for i in range(3):
        assert stack.get("/api/v1/does-not-exist-%d" % i).status == 404
    after = stack.metrics().get(key, 0)
    assert after - before == 3, (before, after)
