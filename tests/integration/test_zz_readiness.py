"""Readiness follows the dependencies: /readyz turns 503 when MariaDB or
memcached goes away and 200 again when it is back, without restarting the
pool; liveness (/healthz) never depends on them."""
import time

import pytest


@pytest.fixture(autouse=True)
def healthy_after(stack):
    stack.wait_for("/readyz 200", stack.ready, timeout=20)
    yield
    stack.heal()


def not_ready(stack, code_word):
    t0 = time.time()
    r = stack.get("/readyz", timeout=10)
    elapsed = time.time() - t0
    assert r.status == 503, r
    assert elapsed < 3, "readyz took %.1fs" % elapsed
    body = r.json()
    err = body["error"]
    assert err["code"] == "not_ready"
    assert code_word in err["message"], err
    assert err["request_id"] == r.headers["x-request-id"]
    return body


def ready_again(stack, timeout):
    """Wait until /readyz is 200 from every child (several in a row)."""
    def ok():
        return all(stack.get("/readyz", timeout=5).status == 200 for _ in range(6))
    stack.wait_for("/readyz 200 again", ok, timeout=timeout, interval=0.2)


def test_database_outage(stack):
    master = stack.api_master()
    kids = stack.api_children()
    stack.stop("mariadb")
    try:
        # Every child notices (each has its own connection).
        for _ in range(6):
            body = not_ready(stack, "database")
            assert body["checks"]["database"] == "unavailable", body
            assert body["checks"]["memcached"] == "ok", body
        assert stack.get("/healthz").status == 200
        assert stack.get("/api/v1/version").status == 200
    finally:
        stack.start("mariadb")
    ready_again(stack, 20)
    assert stack.api_master() == master
    assert stack.api_children() == kids


def test_memcached_outage(stack):
    master = stack.api_master()
    kids = stack.api_children()
    stack.stop("memcached")
    try:
        for _ in range(6):
            body = not_ready(stack, "memcached")
            assert body["checks"]["memcached"] == "unavailable", body
            assert body["checks"]["database"] == "ok", body
        assert stack.get("/healthz").status == 200
    finally:
        stack.start("memcached")
    ready_again(stack, 10)
    assert stack.api_master() == master
    assert stack.api_children() == kids
