"""Rate limits through nginx: failed sign-ins throttled per account and per
client address with growing, bounded delays (429 + Retry-After); the
request budget per user with RateLimit-* headers; nginx's limit_req on the
sign-in endpoints; and what happens while memcached is down (fail open).

Each test sends from its own loopback address (127.0.0.x), so its failures
neither count against nor depend on other tests, and it forgets its
counters in memcached when it is done."""
import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import time
import uuid

from stack import stack_sql

JSON = {"Content-Type": "application/json"}
ACCOUNT_DELAY_MAX_S = 300       # RATELIMIT_ACCOUNT_DELAY_MAX_S


class Reply:
    def __init__(self, status, header_list, body):
        self.status = status
        self.header_list = header_list
        self.headers = {k.lower(): v for k, v in header_list}
        self.body = body

    def all(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Reply %d %r %r>" % (self.status, self.header_list, self.body[:300])


def send(stack, method, path, source, obj=None, headers=None, body=None):
    """One request from a given loopback address; every header line kept."""
    h = dict(headers or {})
    if obj is not None or body is not None:
        h.update(JSON)
        body = body if body is not None else json.dumps(obj).encode()
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Reply(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def login(stack, email, password, source):
    return send(stack, "POST", "/api/v1/auth/login", source, {"email": email, "password": password})


def me(stack, token, source):
    return send(stack, "GET", "/api/v1/me", source, headers={"Authorization": "Bearer " + token})


def add_user(stack, tag):
    email = "%s-%s@example.com" % (tag, uuid.uuid4().hex[:10])
    password = "pw-" + uuid.uuid4().hex
    r = stack.ctl("user", "add", email, "--password-stdin", input_text=password)
    assert r.returncode == 0, r.stderr
    return email, password


def error_code(reply):
    body = reply.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["request_id"] == reply.headers["x-request-id"]
    return body["error"]["code"]


def retry_after(reply):
    values = reply.all("Retry-After")
    assert len(values) == 1, reply          # never doubled by nginx
    assert values[0].isdigit(), values
    return int(values[0])


def assert_throttled(reply, most=ACCOUNT_DELAY_MAX_S):
    assert reply.status == 429, reply
    assert error_code(reply) == "too_many_attempts", reply
    wait = retry_after(reply)
    assert 1 <= wait <= most, reply
    return wait


def memcached(stack, command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(os.path.join(stack.var, "run", "memcached.sock"))
        s.sendall(command.encode() + b"\r\n")
        return s.recv(4096).decode()


def forget(stack, emails=(), sources=()):
    """Drop the sign-in counters of these accounts and addresses."""
    names = ["acct:" + hashlib.sha256(e.lower().encode()).hexdigest() for e in emails]
    names += ["addr:" + a for a in sources]
    for name in names:
        for part in ("n", "t"):
            memcached(stack, "delete cp:rl:login:%s:%s" % (name, part))


def audit_rows(stack, action, label):
    return stack_sql(stack, "SELECT a.outcome, a.client_addr, u.email FROM audit_log a "
                            "LEFT JOIN users u ON u.id = a.owner_id "
                            "WHERE a.action = '%s' AND a.actor_label = '%s'" % (action, label))


def test_failed_logins_of_one_account_are_throttled(stack):
    src = "127.0.0.3"
    email, password = add_user(stack, "rl-acct")
    try:
        for _ in range(5):
            r = login(stack, email, "wrong-" + password, src)
            assert r.status == 401 and error_code(r) == "invalid_credentials", r
        # The sixth attempt, straight after the fifth failure, must wait.
        r = login(stack, email, "wrong-" + password, src)
        wait = assert_throttled(r)
        assert wait == 1, r
        assert audit_rows(stack, "auth.login_throttled", email) == [["failure", src, email]]
        # Once the wait is over a failure counts again, and the delay doubles.
        time.sleep(wait)
        assert login(stack, email, "wrong-" + password, src).status == 401
        r = login(stack, email, password, src)
        wait = assert_throttled(r)              # the real password waits too
        assert wait == 2, r
        time.sleep(wait)
        r = login(stack, email, password, src)
        assert r.status == 200, r
        assert "access_token" in r.json()
        # The success forgot the account's failures.
        r = login(stack, email, "wrong-" + password, src)
        assert r.status == 401, r
    finally:
        forget(stack, [email], [src])


def test_another_address_slows_but_never_locks_a_user_out(stack):
    attacker, user = "127.0.0.4", "127.0.0.5"
    email, password = add_user(stack, "rl-victim")
    other, other_password = add_user(stack, "rl-other")
    try:
        for _ in range(5):
            assert login(stack, email, "guess-" + uuid.uuid4().hex, attacker).status == 401
        # Hammering while throttled is refused without being counted, so
        # it never stretches the delay.
        for _ in range(10):
            assert assert_throttled(login(stack, email, "guess", attacker)) == 1
        # The account is throttled from every address, by a bounded delay ...
        wait = assert_throttled(login(stack, email, password, user))
        assert wait == 1
        time.sleep(wait)
        # ... after which the real user gets in from their own address.
        assert login(stack, email, password, user).status == 200
        # Five failures are far below the per-address threshold: the
        # attacker's address still signs other accounts in.
        assert login(stack, other, other_password, attacker).status == 200
    finally:
        forget(stack, [email, other], [attacker, user])


def test_failures_from_one_address_are_throttled(stack):
    src, elsewhere = "127.0.0.6", "127.0.0.7"
    email, password = add_user(stack, "rl-addr")
    unknown = ["rl-nobody-%d-%s@example.com" % (i, uuid.uuid4().hex[:8]) for i in range(3)]
    stack.restart_api(env={"CROSSPOST_LOGIN_THROTTLE_ADDR_AFTER": "3"})
    try:
        # Unknown emails count like wrong passwords: throttling reveals no
        # account's existence.
        for e in unknown:
            r = login(stack, e, "whatever-password", src)
            assert r.status == 401 and error_code(r) == "invalid_credentials", r
        known = login(stack, email, password, src)
        nobody = login(stack, "rl-never-%s@example.com" % uuid.uuid4().hex[:8], "x" * 12, src)
        for r in (known, nobody):
            assert assert_throttled(r, most=900) == 1
        assert known.json()["error"]["message"] == nobody.json()["error"]["message"]
        # The account itself is not throttled from another address.
        assert login(stack, email, password, elsewhere).status == 200
    finally:
        stack.restart_api()
        forget(stack, unknown + [email], [src, elsewhere])


def wait_for_window_start(window_s, room_s):
    """Sleep until a fixed window (aligned on the epoch) has room_s left."""
    into = time.time() % window_s
    if window_s - into < room_s:
        time.sleep(window_s - into + 0.05)


def test_request_budget_per_user(stack):
    src = "127.0.0.8"
    email, password = add_user(stack, "rl-budget")
    stack.restart_api(env={"CROSSPOST_API_RATE_LIMIT": "5", "CROSSPOST_API_RATE_WINDOW": "10s"})
    try:
        r = login(stack, email, password, src)
        assert r.status == 200, r
        token = r.json()["access_token"]
        wait_for_window_start(10, 6)
        for left in (4, 3, 2, 1, 0):
            r = me(stack, token, src)
            assert r.status == 200, r
            assert r.headers["ratelimit-limit"] == "5", r
            assert r.headers["ratelimit-remaining"] == str(left), r
            assert 1 <= int(r.headers["ratelimit-reset"]) <= 10, r
            assert "retry-after" not in r.headers
        r = me(stack, token, src)
        assert r.status == 429, r
        assert error_code(r) == "rate_limited"
        wait = retry_after(r)
        assert 1 <= wait <= 10, r
        assert r.headers["ratelimit-remaining"] == "0"
        # Public routes spend no budget; the next window starts afresh.
        assert send(stack, "GET", "/api/v1/version", src).status == 200
        time.sleep(wait)
        r = me(stack, token, src)
        assert r.status == 200, r
        assert r.headers["ratelimit-remaining"] == "4", r
    finally:
        stack.restart_api()
    r = me(stack, token, src)
    assert r.status == 200 and r.headers["ratelimit-limit"] == "600", r


def test_nginx_limits_the_sign_in_endpoints(stack):
    src = "127.0.0.9"

    def post(_):
        # An empty object is refused by the API at once (400): only nginx's
        # limit is measured, no password work and no failure counted.
        return send(stack, "POST", "/api/v1/auth/login", src, body=b"{}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(post, range(60)))
    statuses = sorted({r.status for r in replies})
    limited = [r for r in replies if r.status == 429]
    assert limited, statuses
    assert set(statuses) <= {400, 429}, statuses
    for r in limited:
        assert r.headers["content-type"] == "application/json", r
        assert error_code(r) == "rate_limited", r
        assert retry_after(r) == 1
        assert r.headers["cache-control"] == "no-store"
    # Other API paths are not under this limit.
    time.sleep(3)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        others = list(pool.map(lambda _: send(stack, "GET", "/api/v1/version", src), range(60)))
    assert {r.status for r in others} == {200}


def test_memcached_down_fails_open(stack):
    src = "127.0.0.10"
    email, password = add_user(stack, "rl-down")
    stack.stop("memcached")
    try:
        # No counters: failures are never throttled, sign-ins go on.
        for _ in range(7):
            r = login(stack, email, "wrong-" + password, src)
            assert r.status == 401, r
        r = login(stack, email, password, src)
        assert r.status == 200, r
        # No budget either: requests pass without RateLimit-* headers.
        r = me(stack, r.json()["access_token"], src)
        assert r.status == 200, r
        assert "ratelimit-limit" not in r.headers
        r = stack.get("/readyz")
        assert r.status == 503
        assert "memcached" in r.json()["error"]["message"]
        assert "rate limits not enforced" in stack.log("api.log")
    finally:
        stack.start("memcached")
        stack.wait_for("/readyz 200", stack.ready, timeout=30)
    forget(stack, [email], [src])
