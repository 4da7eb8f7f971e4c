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


# service stopped, name in the 503, the check that must stay ok, seconds to
# recover, endpoint that must keep answering 200 meanwhile
OUTAGES = [
    ("mariadb", "database", "memcached", 20, "/api/v1/version"),
    ("memcached", "memcached", "database", 10, "/healthz"),
]


@pytest.mark.parametrize("service,check,other,recovery,still_up", OUTAGES,
                         ids=[o[0] for o in OUTAGES])
def test_dependency_outage(stack, service, check, other, recovery, still_up):
    master = stack.api_master()
    kids = stack.api_children()
    stack.stop(service)
    try:
        # Every child notices (each has its own connection).
        for _ in range(6):
            body = not_ready(stack, check)
            assert body["checks"][check] == "unavailable", body
            assert body["checks"][other] == "ok", body
        assert stack.get("/healthz").status == 200
        assert stack.get(still_up).status == 200
    finally:
        stack.start(service)
    ready_again(stack, recovery)
    assert stack.api_master() == master
    assert stack.api_children() == kids
