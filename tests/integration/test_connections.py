"""Connections end to end, as a browser and the platforms see them.

Every flow goes through nginx with a cookie jar (stack.Browser): sign in,
POST /api/v1/connections/{platform}/authorize, the platform simulator's
consent page (tests/sim), its redirect to /oauth/{platform}/callback and
the outcome in the redirect to the UI.  The simulators are shared by the
whole session; each test makes its own platform accounts with unique
names through /__control/accounts.
"""
import datetime
import json
import os
import re
import subprocess
import time
import urllib.parse
import uuid

import pytest

from authlib import add_user, audit_rows, quote, sql

PLATFORMS = ("tiktok", "instagram", "youtube", "x")

# Sandbox defaults the tests change and put back.
TIKTOK_DEFAULT_TTL = 7200


# -- helpers ---------------------------------------------------------------

def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


def new_browser(stack, role=None):
    email, password, _ = add_user(stack, role=role)
    return stack.browser().sign_in(email, password)


def new_account(stack, platform, **extra):
    """A fresh account on a simulator; (the value its consent page lists,
    the account as the simulator returned it).  extra: the simulator's
    account fields (Instagram "with_instagram", YouTube "channel")."""
    name = unique("cp" + platform[:2])
    body = {"login": name} if platform == "instagram" else {"username": name}
    body.update(extra)
    acct = stack.sim(platform, "POST", "/__control/accounts", body)
    return name, acct


def connect(stack, browser, platform, **extra):
    """Connect a fresh account; (connection JSON, account key, outcome)."""
    key, _ = new_account(stack, platform, **extra)
    out = browser.connect(platform, key)
    assert out.get("result") == "connected", out
    return get_conn(browser, int(out["connection_id"])), key, out


def get_conn(browser, cid):
    r = browser.api("GET", "/api/v1/connections/%d" % cid)
    assert r.status == 200, r
    return r.json()


def listing(body):
    """The rows of a list answer ({"data": [...], ...})."""
    return body["data"] if isinstance(body, dict) else body


def iso_ms(text):
    """Epoch ms of "2026-11-22T10:00:00.000Z"."""
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", text), text
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return dt.timestamp() * 1000


def sim_tokens(stack, platform, account=None):
    """Token records of a simulator ({"value","kind","account","revoked",...})."""
    toks = stack.sim(platform, "GET", "/__control/state")["tokens"]
    return [t for t in toks if account is None or t.get("account") == account]


def live_tokens(stack, platform, account, kind):
    now = stack.sim(platform, "GET", "/__control/state")["now"]
    return [t for t in sim_tokens(stack, platform, account)
            if t["kind"] == kind and not t["revoked"]
            and (t["expires_at"] is None or t["expires_at"] > now)]


def connection_audit(stack, user_id, action="connection.connect"):
    return audit_rows(stack, "action = %s AND (actor_id = %d OR owner_id = %d)"
                      % (quote(action), user_id, user_id))


def error_outcome(out, platform, code):
    assert out.get("result") == "error", out
    assert out.get("platform") == platform, out
    assert out.get("error") == code, out
    assert "connection_id" not in out, out
    # Only crosspost's own words reach the UI's URL.
    assert set(out) - {"_location", "_set_cookie"} <= {"platform", "result", "error"}, out


def ui_location(stack, out):
    u = urllib.parse.urlsplit(out["_location"])
    assert "%s://%s" % (u.scheme, u.netloc) == stack.url, out
    assert u.path == "/connections", out


def wait_job(stack, browser, job_id, timeout=40):
    def done():
        r = browser.api("GET", "/api/v1/jobs/%d" % job_id)
        assert r.status == 200, r
        j = r.json()
        return j if j["state"] in ("succeeded", "dead", "cancelled") else None
    return stack.wait_for("job %d to finish" % job_id, done, timeout=timeout, interval=0.2)


def force_refresh(stack, browser, cid, expect_state="succeeded"):
    r = browser.api("POST", "/api/v1/connections/%d/refresh" % cid)
    assert r.status == 202, r
    job = wait_job(stack, browser, r.json()["job_id"])
    assert job["state"] == expect_state, job
    return job


def sim_requests(stack, platform, since=0):
    r = stack.sim(platform, "GET", "/__control/requests?since=%d" % since)
    return r["requests"], r["next"]


def sim_seq(stack, platform):
    return sim_requests(stack, platform, 10 ** 12)[1]


def alerts(stack, user_id, kind="connection.needs_reauth"):
    return sql(stack, "SELECT id, subject_type, subject_id, severity, message FROM alert_events "
                      "WHERE user_id = %d AND kind = %s ORDER BY id" % (user_id, quote(kind)))


@pytest.fixture(scope="module")
def alice(stack):
    return new_browser(stack)


@pytest.fixture(scope="module")
def bob(stack):
    return new_browser(stack)


@pytest.fixture(autouse=True)
def no_faults_left(stack):
    yield
    for p in PLATFORMS:
        stack.sim_request(p, "DELETE", "/__control/faults")


@pytest.fixture(scope="module")
def fast_worker(stack):
    """The worker with a scan every second, a 30 s refresh margin and
    quick retries, for the module's remaining tests; the session's
    default worker again afterwards."""
    env = {"CROSSPOST_CONNECTION_SCAN_INTERVAL": "1s",
           "CROSSPOST_TOKEN_REFRESH_MARGIN": "30s",
           "CROSSPOST_JOB_RETRY_BASE": "200ms",
           "CROSSPOST_JOB_RETRY_CAP": "1s"}
    stack.stop_worker()
    stack.start_worker(env=env)
    # A shortened interval takes effect at once: the next scan is due
    # within one new interval, not at the old (one minute) due time.
    stack.wait_for("connections.plan registered", lambda: sql(
        stack, "SELECT 1 FROM recurring_tasks WHERE name = 'connections.plan' "
               "AND interval_ms = 1000 AND next_run_at <= NOW(3) + INTERVAL 1 SECOND"))
    yield env
    stack.stop_worker()
    stack.start_worker()


# -- sandbox mode ----------------------------------------------------------

def test_readyz_and_platforms_say_sandbox(stack, alice):
    r = stack.get("/readyz")
    assert r.status == 200, r
    assert r.json()["sandbox"] is True, r
    r = stack.get("/api/v1/version")
    assert r.json()["sandbox"] is True, r
    r = alice.api("GET", "/api/v1/platforms")
    assert r.status == 200, r
    body = r.json()
    rows = body["data"] if isinstance(body, dict) else body
    by_name = {p["platform"]: p for p in rows}
    assert set(by_name) == set(PLATFORMS), body
    for name, p in by_name.items():
        assert p["sandbox"] is True and p["configured"] is True, p
        assert p["label"], p
    assert by_name["tiktok"]["cookie_connections"] is True
    assert by_name["x"]["auth_kind"] == "oauth1"
    assert stack.get("/api/v1/platforms").status == 401


def test_stack_registered_its_sandbox_apps(stack):
    apps = stack.sim_apps()
    with open(stack.conf) as f:
        conf = f.read()
    assert "# --- sandbox: rewritten by scripts/stack ---" in conf
    assert re.search(r"^sandbox = yes$", conf, re.M)
    assert "tiktok_client_key = %s" % apps["tiktok"]["client_key"] in conf
    assert apps["tiktok"]["redirect_uris"] == [stack.url + "/oauth/tiktok/callback"]
    assert apps["tiktok"]["webhook_url"] == stack.url + "/api/v1/webhooks/tiktok"
    assert apps["x"]["callback_urls"] == [stack.url + "/oauth/x/callback"]
    urls = stack.sim_urls()
    assert "tiktok_api_url = %s" % urls["tiktok"] in conf
    assert "google_token_url = %s/token" % urls["youtube"] in conf
    # Running `up` again changes nothing and starts no second simulator.
    pid = stack.pid("sim")
    stack.run_stack("up")
    with open(stack.conf) as f:
        assert f.read() == conf
    assert stack.pid("sim") == pid
    # The key ring exists and is private.
    st = os.stat(os.path.join(stack.var, "secrets.keys"))
    assert st.st_mode & 0o077 == 0


# -- the OAuth flows -------------------------------------------------------

def check_no_token_in(conn_json, tokens):
    text = json.dumps(conn_json)
    for t in tokens:
        assert t["value"] not in text, t["kind"]


def test_tiktok_flow_with_pkce(stack, alice):
    key, _ = new_account(stack, "tiktok")
    url = alice.authorize("tiktok")
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    assert url.startswith(stack.sim_url("tiktok") + "/v2/auth/authorize/"), url
    assert q["client_key"] == stack.sim_apps()["tiktok"]["client_key"]
    assert q["redirect_uri"] == stack.url + "/oauth/tiktok/callback"
    assert q["response_type"] == "code" and q["state"] and q["code_challenge"], q
    assert q["code_challenge_method"] == "S256"
    assert alice.cookie("cp_oauth"), "the authorize call sets the binding cookie"
    rid, accounts = alice.consent_page(url)
    assert key in accounts
    out = alice.callback(alice.consent(url, key))
    assert out["result"] == "connected" and out["platform"] == "tiktok", out
    ui_location(stack, out)
    assert "cp_oauth=" in out["_set_cookie"], "the callback clears the binding cookie"
    c = get_conn(alice, int(out["connection_id"]))
    assert c["platform"] == "tiktok" and c["auth_kind"] == "oauth2", c
    assert c["user_id"] == alice.user["id"]
    assert c["status"] == "active" and c["enabled"] is True, c
    assert c["has_refresh_token"] is True and c["token_expires_at"], c
    assert c["refresh_token_expires_at"] and c["next_refresh_at"], c
    assert c["username"] == key and c["remote_id"], c
    assert c["sandbox"] is True
    assert c["sync_interval"] is None and c["effective_sync_interval"] == 300, c
    toks = sim_tokens(stack, "tiktok", key)
    assert {t["kind"] for t in toks} >= {"access", "refresh"}, toks
    check_no_token_in(c, toks)
    ok = [a for a in connection_audit(stack, alice.user["id"]) if a["outcome"] == "success"]
    assert any(a["target_id"] == out["connection_id"] for a in ok), ok
    assert connection_audit(stack, alice.user["id"], "connection.authorize")


def test_instagram_flow_long_lived_and_business_account(stack, alice):
    key, acct = new_account(stack, "instagram")
    url = alice.authorize("instagram")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert re.match(re.escape(stack.sim_url("instagram")) + r"/v\d+\.\d+/dialog/oauth\?", url), url
    assert q["client_id"] == stack.sim_apps()["instagram"]["app_id"] and q["state"], q
    out = alice.callback(alice.consent(url, key))
    assert out["result"] == "connected", out
    c = get_conn(alice, int(out["connection_id"]))
    assert c["platform"] == "instagram" and c["auth_kind"] == "oauth2", c
    # The long-lived token (60 days), not the short one (1 hour).
    expires = iso_ms(c["token_expires_at"])
    assert expires - time.time() * 1000 > 50 * 86400 * 1000, c
    assert c["remote_id"] == acct["instagram"]["id"], (c, acct)
    assert c["username"] == acct["instagram"]["username"], (c, acct)
    check_no_token_in(c, sim_tokens(stack, "instagram", key))


def test_youtube_flow_offline_and_channel(stack, alice):
    key, acct = new_account(stack, "youtube")
    url = alice.authorize("youtube")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["access_type"] == "offline" and q["code_challenge_method"] == "S256", q
    assert q["client_id"] == stack.sim_apps()["youtube"]["client_id"], q
    out = alice.callback(alice.consent(url, key))
    assert out["result"] == "connected", out
    c = get_conn(alice, int(out["connection_id"]))
    assert c["platform"] == "youtube" and c["has_refresh_token"] is True, c
    assert c["remote_id"] == acct["channel"]["id"], (c, acct)
    assert c["display_name"] == acct["channel"]["title"], (c, acct)
    check_no_token_in(c, sim_tokens(stack, "youtube", key))


def test_x_oauth1_flow(stack, alice):
    key, _ = new_account(stack, "x")
    url = alice.authorize("x")
    assert url.startswith(stack.sim_url("x") + "/oauth/authorize?oauth_token="), url
    cb = alice.consent(url, key)
    cq = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(cb).query))
    assert cq["oauth_token"] and cq["oauth_verifier"], cq
    out = alice.callback(cb)
    assert out["result"] == "connected", out
    c = get_conn(alice, int(out["connection_id"]))
    assert c["platform"] == "x" and c["auth_kind"] == "oauth1", c
    assert c["token_expires_at"] is None and c["has_refresh_token"] is False, c
    assert c["username"] == key, c
    check_no_token_in(c, sim_tokens(stack, "x", key))


def test_x_oauth2_flow(stack):
    try:
        stack.restart_api(env={"CROSSPOST_X_AUTH_MODE": "oauth2"})
        b = new_browser(stack)
        key, _ = new_account(stack, "x")
        url = b.authorize("x")
        assert url.startswith(stack.sim_url("x") + "/i/oauth2/authorize?"), url
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["code_challenge_method"] == "S256" and q["client_id"], q
        assert "offline.access" in q["scope"].split(), q
        out = b.callback(b.consent(url, key))
        assert out["result"] == "connected", out
        c = get_conn(b, int(out["connection_id"]))
        assert c["auth_kind"] == "oauth2" and c["has_refresh_token"] is True, c
        assert c["token_expires_at"], c
        plats = {p["platform"]: p for p in listing(b.api("GET", "/api/v1/platforms").json())}
        assert plats["x"]["auth_kind"] == "oauth2"
    finally:
        stack.restart_api()


# -- outcomes that are not a connection ------------------------------------

@pytest.mark.parametrize("platform", PLATFORMS)
def test_denied_consent(stack, platform):
    b = new_browser(stack)
    key, _ = new_account(stack, platform)
    out = b.connect(platform, key, decision="deny")
    error_outcome(out, platform, "access_denied")
    ui_location(stack, out)
    assert listing(b.api("GET", "/api/v1/connections").json()) == []
    failed = [a for a in connection_audit(stack, b.user["id"]) if a["outcome"] == "failure"]
    assert failed and "access_denied" in failed[-1]["detail"], failed


def state_invalid_audits(stack):
    """Failed callbacks without a known state have no actor (0)."""
    return len([a for a in audit_rows(stack, "action = 'connection.connect' AND outcome = 'failure'")
                if "state_invalid" in a["detail"]])


def test_replayed_state_is_refused(stack):
    b = new_browser(stack)
    audits = state_invalid_audits(stack)
    key, _ = new_account(stack, "tiktok")
    cb = b.consent(b.authorize("tiktok"), key)
    first = b.callback(cb)
    assert first["result"] == "connected", first
    # The same callback again, from the same browser holding a binding
    # cookie of a newer authorization.
    b.authorize("tiktok")
    again = b.callback(cb)
    error_outcome(again, "tiktok", "state_invalid")
    # A made-up state, and none at all.
    error_outcome(b.callback(stack.url + "/oauth/tiktok/callback?code=x&state=" + "A" * 43),
                  "tiktok", "state_invalid")
    error_outcome(b.callback(stack.url + "/oauth/tiktok/callback?code=x"), "tiktok",
                  "state_invalid")
    assert state_invalid_audits(stack) == audits + 3
    assert len(listing(b.api("GET", "/api/v1/connections").json())) == 1


def test_state_of_one_platform_does_not_finish_another(stack):
    b = new_browser(stack)
    key, _ = new_account(stack, "tiktok")
    cb = b.consent(b.authorize("tiktok"), key)
    wrong = cb.replace("/oauth/tiktok/callback", "/oauth/youtube/callback")
    out = b.callback(wrong)
    assert out["result"] == "error" and out["error"] == "state_invalid", out
    assert listing(b.api("GET", "/api/v1/connections").json()) == []


def test_callback_in_another_browser_is_refused(stack):
    victim = new_browser(stack)
    attacker = new_browser(stack)
    # The attacker starts a flow and lures the victim to its callback: the
    # victim's browser does not hold the attacker's binding cookie.
    key, _ = new_account(stack, "youtube")
    cb = attacker.consent(attacker.authorize("youtube"), key)
    out = victim.callback(cb)
    error_outcome(out, "youtube", "session_mismatch")
    # The state was spent: the attacker cannot finish it either.
    error_outcome(attacker.callback(cb), "youtube", "state_invalid")
    for who in (victim, attacker):
        assert listing(who.api("GET", "/api/v1/connections").json()) == []
    # No cookie at all.
    cb = attacker.consent(attacker.authorize("youtube"), key)
    out = stack.browser().callback(cb)
    error_outcome(out, "youtube", "session_mismatch")
    failed = [a for a in connection_audit(stack, attacker.user["id"]) if a["outcome"] == "failure"]
    assert sum("session_mismatch" in a["detail"] for a in failed) == 2, failed


def test_failed_token_exchange(stack):
    b = new_browser(stack)
    key, _ = new_account(stack, "tiktok")
    cb = b.consent(b.authorize("tiktok"), key)
    stack.sim("tiktok", "POST", "/__control/faults",
              {"match": "/v2/oauth/token/", "method": "POST", "action": "status",
               "status": 500, "count": 10})
    out = b.callback(cb)
    error_outcome(out, "tiktok", "platform_unavailable")
    assert listing(b.api("GET", "/api/v1/connections").json()) == []
    failed = [a for a in connection_audit(stack, b.user["id"]) if a["outcome"] == "failure"]
    assert failed and out["error"] in failed[-1]["detail"], failed


def test_refused_code_is_exchange_failed(stack):
    b = new_browser(stack)
    key, _ = new_account(stack, "youtube")
    cb = b.consent(b.authorize("youtube"), key)
    # The platform refuses the code (as when it was used or expired).
    stack.sim("youtube", "POST", "/__control/faults",
              {"match": "/token", "method": "POST", "action": "status", "status": 400, "count": 1})
    out = b.callback(cb)
    error_outcome(out, "youtube", "exchange_failed")


def test_instagram_user_without_business_account(stack):
    b = new_browser(stack)
    key, _ = new_account(stack, "instagram", with_instagram=False)
    out = b.connect("instagram", key)
    error_outcome(out, "instagram", "no_instagram_account")
    failed = [a for a in connection_audit(stack, b.user["id"]) if a["outcome"] == "failure"]
    assert failed and "no_instagram_account" in failed[-1]["detail"], failed


def test_google_account_without_channel(stack):
    b = new_browser(stack)
    key, _ = new_account(stack, "youtube", channel=False)
    out = b.connect("youtube", key)
    error_outcome(out, "youtube", "no_youtube_channel")
    failed = [a for a in connection_audit(stack, b.user["id"]) if a["outcome"] == "failure"]
    assert failed and "no_youtube_channel" in failed[-1]["detail"], failed


def test_seed_accounts_connect(stack):
    """The accounts a new sandbox user sees on first run."""
    b = new_browser(stack)
    for platform, account in (("tiktok", "sandbox_creator"), ("instagram", "sandbox_user"),
                              ("youtube", "sandbox"), ("x", "sandbox_x")):
        url = b.authorize(platform)
        _, accounts = b.consent_page(url)
        assert account in accounts, (platform, accounts)
        out = b.callback(b.consent(url, account))
        assert out["result"] == "connected", (platform, out)
    error_outcome(b.connect("instagram", "no_business"), "instagram", "no_instagram_account")
    error_outcome(b.connect("youtube", "no_channel"), "youtube", "no_youtube_channel")


# -- secrets at rest -------------------------------------------------------

def test_tokens_in_mariadb_are_ciphertext(stack, alice):
    connect(stack, alice, "tiktok")
    connect(stack, alice, "x")
    values = [t["value"] for p in PLATFORMS for t in sim_tokens(stack, p)]
    assert len(values) >= 4
    rows = sql(stack, "SELECT id, HEX(access_token), HEX(refresh_token), HEX(token_secret), "
                      "secrets_key_id FROM connections WHERE access_token IS NOT NULL")
    assert rows
    for r in rows:
        assert r[1].startswith("01"), r          # version 1 of the sealed format
        assert int(r[4]) >= 1, r
        assert int(r[1][2:10], 16) == int(r[4]), r  # the key id in the header
    dump = subprocess.run(["mariadb-dump", "--no-defaults", "--socket",
                           os.path.join(stack.var, "run", "mysqld.sock"),
                           "-u", current_user(), "crosspost"], capture_output=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert b"INSERT INTO `connections`" in dump.stdout
    for v in values:
        assert v.encode() not in dump.stdout, "a platform token is stored in the clear"
    # Nor in any log of the stack.
    for name in ("api.log", "worker.log", "nginx-access.log", "nginx-error.log", "sim.log"):
        text = stack.log(name)
        for v in values:
            assert v not in text, (name, "a platform token is logged")


def current_user():
    return os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                    text=True).stdout.strip()


# -- reconnecting ------------------------------------------------------------

def test_reconnect_updates_the_same_row(stack):
    b = new_browser(stack)
    c, key, out = connect(stack, b, "tiktok")
    b.api("PATCH", "/api/v1/connections/%d" % c["id"], {"display_name": "mine", "enabled": False})
    again = b.connect("tiktok", key)
    assert again["result"] == "connected", again
    assert int(again["connection_id"]) == c["id"]
    assert again.get("reconnected") == "1", again
    rows = listing(b.api("GET", "/api/v1/connections").json())
    assert [r["id"] for r in rows] == [c["id"]]
    c2 = get_conn(b, c["id"])
    assert c2["enabled"] is False, "reconnecting keeps what the user switched off"
    assert c2["created_at"] == c["created_at"]


def test_youtube_reconnect_without_refresh_token_keeps_the_stored_one(stack, fast_worker):
    b = new_browser(stack)
    c, key, _ = connect(stack, b, "youtube")
    first_refresh = live_tokens(stack, "youtube", key, "refresh")
    assert len(first_refresh) == 1
    # Google sends no refresh token for a consent it has seen before unless
    # asked with prompt=consent: the browser drops that parameter.
    url = b.authorize("youtube")
    u = urllib.parse.urlsplit(url)
    q = [(k, v) for k, v in urllib.parse.parse_qsl(u.query) if k != "prompt"]
    url = urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q)))
    again = b.callback(b.consent(url, key))
    assert again["result"] == "connected" and int(again["connection_id"]) == c["id"], again
    assert [t["value"] for t in live_tokens(stack, "youtube", key, "refresh")] == \
        [first_refresh[0]["value"]], "the simulator issued no second refresh token"
    assert get_conn(b, c["id"])["has_refresh_token"] is True
    # The stored refresh token still works.
    since = sim_seq(stack, "youtube")
    force_refresh(stack, b, c["id"])
    reqs, _ = sim_requests(stack, "youtube", since)
    assert any(r["path"] == "/token" and r["status"] == 200 for r in reqs), reqs
    c3 = get_conn(b, c["id"])
    assert c3["status"] == "active" and c3["last_refreshed_at"], c3


# -- reading and changing connections ----------------------------------------

def test_patch_get_delete_and_list(stack):
    b = new_browser(stack)
    t, _, _ = connect(stack, b, "tiktok")
    x, _, _ = connect(stack, b, "x")
    path = "/api/v1/connections/%d" % t["id"]
    r = b.api("PATCH", path, {"display_name": "Main TikTok", "sync_interval": 600})
    assert r.status == 200, r
    assert r.json()["display_name"] == "Main TikTok"
    assert r.json()["sync_interval"] == 600 and r.json()["effective_sync_interval"] == 600
    r = b.api("PATCH", path, {"sync_interval": None})
    assert r.json()["sync_interval"] is None and r.json()["effective_sync_interval"] == 300, r
    for bad in ({"sync_interval": 59}, {"sync_interval": 86401}, {"display_name": "x" * 256},
                {"enabled": "no"}, {"display_name": 5}, {"status": "active"}):
        r = b.api("PATCH", path, bad)
        assert r.status in (400, 422), (bad, r)
    assert get_conn(b, t["id"])["display_name"] == "Main TikTok"
    r = b.api("PATCH", path, {"enabled": False})
    assert r.status == 200 and r.json()["status"] == "disabled", r
    r = b.api("POST", path + "/refresh")
    assert r.status == 409, r
    # Listing and its filters.
    ids = [c["id"] for c in listing(b.api("GET", "/api/v1/connections").json())]
    assert ids == sorted([t["id"], x["id"]])
    only = listing(b.api("GET", "/api/v1/connections?platform=x").json())
    assert [c["id"] for c in only] == [x["id"]]
    only = listing(b.api("GET", "/api/v1/connections?status=disabled").json())
    assert [c["id"] for c in only] == [t["id"]]
    only = listing(b.api("GET", "/api/v1/connections?status=active").json())
    assert [c["id"] for c in only] == [x["id"]]
    assert b.api("GET", "/api/v1/connections?platform=myspace").status in (400, 422)
    assert b.api("GET", "/api/v1/connections?status=sleepy").status in (400, 422)
    page = b.api("GET", "/api/v1/connections?limit=1").json()
    assert [c["id"] for c in page["data"]] == [ids[0]]
    cursor = page.get("next_cursor") or page.get("cursor")
    assert cursor, page
    page2 = b.api("GET", "/api/v1/connections?limit=1&cursor=" + urllib.parse.quote(cursor)).json()
    assert [c["id"] for c in page2["data"]] == [ids[1]]
    # Enabled again; then deleted.
    assert b.api("PATCH", path, {"enabled": True}).json()["status"] == "active"
    r = b.api("DELETE", path)
    assert r.status in (200, 204), r
    assert b.api("GET", path).status == 404
    assert b.api("DELETE", path).status == 404
    assert int(sql(stack, "SELECT COUNT(*) FROM connections WHERE id = %d" % t["id"])[0][0]) == 0
    assert audit_rows(stack, "action LIKE 'connection.%%' AND target_id = %s AND action <> "
                             "'connection.connect'" % quote(t["id"]))


def test_users_cannot_see_each_others_connections(stack, alice, bob):
    c, _, _ = connect(stack, alice, "tiktok")
    path = "/api/v1/connections/%d" % c["id"]
    for method, body in (("GET", None), ("PATCH", {"display_name": "stolen"}), ("DELETE", None)):
        r = bob.api(method, path, body)
        assert r.status == 404, (method, r)
        assert r.json()["error"]["code"] == "not_found"
    r = bob.api("POST", path + "/refresh")
    assert r.status == 404, r
    assert c["id"] not in [x["id"] for x in listing(bob.api("GET", "/api/v1/connections").json())]
    r = bob.api("GET", "/api/v1/connections?user=%d" % alice.user["id"])
    if r.status == 200:
        assert c["id"] not in [x["id"] for x in listing(r.json())]
    else:
        assert r.status in (403, 404), r
    assert get_conn(alice, c["id"])["display_name"] != "stolen"
    # Operators (and admins) see everyone's.
    admin = new_browser(stack, role="operator")
    assert admin.api("GET", path).status == 200
    mine = listing(admin.api("GET", "/api/v1/connections?user=%d" % alice.user["id"]).json())
    assert c["id"] in [x["id"] for x in mine]
    assert all(x["user_id"] == alice.user["id"] for x in mine)


# -- refresh -----------------------------------------------------------------

def test_refresh_ahead_of_expiry_with_tiktok_rotation(stack, fast_worker):
    b = new_browser(stack)
    # Access tokens of 12 s.
    stack.sim("tiktok", "POST", "/__control/config", {"access_ttl": 12})
    try:
        c, key, _ = connect(stack, b, "tiktok")
    finally:
        stack.sim("tiktok", "POST", "/__control/config", {"access_ttl": TIKTOK_DEFAULT_TTL})
    old_refresh = live_tokens(stack, "tiktok", key, "refresh")
    assert len(old_refresh) == 1, old_refresh
    old_refresh = old_refresh[0]["value"]
    # Due the refresh margin before expiry; a margin (the API's default
    # 10 min) longer than the token lives makes it half-way, 6 s before.
    due = iso_ms(c["next_refresh_at"])
    assert due - iso_ms(c["token_expires_at"]) == pytest.approx(-6000, abs=1500), c

    def refreshed():
        x = get_conn(b, c["id"])
        return x if x["last_refreshed_at"] else None
    c2 = stack.wait_for("the scheduled refresh", refreshed, timeout=40, interval=0.5)
    assert c2["status"] == "active" and c2["token_expires_at"] != c["token_expires_at"], c2
    # TikTok rotated the refresh token: the old one is dead at the
    # platform, the new one is what crosspost holds.
    new_refresh = live_tokens(stack, "tiktok", key, "refresh")
    assert len(new_refresh) == 1 and new_refresh[0]["value"] != old_refresh, new_refresh
    # The new refresh token works: another refresh (forced) succeeds.
    stamp = c2["last_refreshed_at"]
    force_refresh(stack, b, c["id"])
    c3 = get_conn(b, c["id"])
    assert c3["status"] == "active" and c3["last_refreshed_at"] != stamp, c3
    # The old one is dead at the platform.
    apps = stack.sim_apps()["tiktok"]
    r = stack.sim_request("tiktok", "POST", "/v2/oauth/token/", body=urllib.parse.urlencode({
        "client_key": apps["client_key"], "client_secret": apps["client_secret"],
        "grant_type": "refresh_token", "refresh_token": old_refresh}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status != 200 or r.json().get("error") not in (None, "", "ok"), r
    assert "access_token" not in r.json(), r


def test_forced_refresh(stack, alice, fast_worker):
    c, key, _ = connect(stack, alice, "instagram")
    since = sim_seq(stack, "instagram")
    job = force_refresh(stack, alice, c["id"])
    assert job["kind"] == "connection.refresh", job
    reqs, _ = sim_requests(stack, "instagram", since)
    assert any("/oauth/access_token" in r["path"] and r["status"] == 200 for r in reqs), reqs
    c2 = get_conn(alice, c["id"])
    assert c2["last_refreshed_at"] and c2["status"] == "active", c2
    assert iso_ms(c2["token_expires_at"]) >= iso_ms(c["token_expires_at"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_revoked_tokens_need_reauth(stack, platform, fast_worker):
    b = new_browser(stack)
    c, key, _ = connect(stack, b, platform)
    before = alerts(stack, b.user["id"])
    stack.sim(platform, "POST", "/__control/tokens/revoke", {"account": key})
    force_refresh(stack, b, c["id"])
    c2 = get_conn(b, c["id"])
    assert c2["status"] == "needs_reauth", c2
    assert c2["last_error"] and c2["last_error_at"], c2
    assert c2["next_refresh_at"] is None, c2
    after = alerts(stack, b.user["id"])
    assert len(after) == len(before) + 1, after
    assert after[-1][1] == "connection" and int(after[-1][2]) == c["id"], after
    r = b.api("POST", "/api/v1/connections/%d/refresh" % c["id"])
    assert r.status == 409 and r.json()["error"]["code"] == "needs_reauth", r
    # /metrics counts it among the accounts that need connecting again.
    assert stack.metric("crosspost_connections", platform=platform, status="needs_reauth") >= 1
    # Reconnecting makes it active again, in the same row.
    out = b.connect(platform, key)
    assert out["result"] == "connected" and int(out["connection_id"]) == c["id"], out
    assert get_conn(b, c["id"])["status"] == "active"


def test_transient_failure_is_retried(stack, fast_worker):
    b = new_browser(stack)
    c, key, _ = connect(stack, b, "tiktok")
    stack.sim("tiktok", "POST", "/__control/faults",
              {"match": "/v2/oauth/token/", "method": "POST", "action": "status",
               "status": 500, "count": 1})
    job = force_refresh(stack, b, c["id"])
    assert job["attempts"] == 2, job
    c2 = get_conn(b, c["id"])
    assert c2["status"] == "active" and c2["last_refreshed_at"] and not c2["last_error"], c2
    assert alerts(stack, b.user["id"]) == []


# -- TikTok cookie connections -----------------------------------------------

def cookie_text(acct):
    """Cookies as a user copies them from the browser's developer tools."""
    return acct["cookies"] + "; msToken=xyz"


def test_tiktok_cookie_connection(stack, fast_worker):
    b = new_browser(stack)
    key, acct = new_account(stack, "tiktok")
    r = b.api("POST", "/api/v1/connections/tiktok/cookie", {"cookies": cookie_text(acct)})
    assert r.status == 201, r
    c = r.json()
    assert c["auth_kind"] == "cookie" and c["status"] == "active", c
    assert c["username"] == key, c
    assert acct["sessionid"] not in json.dumps(c)
    # Adding the same account again updates it.
    r = b.api("POST", "/api/v1/connections/tiktok/cookie",
              {"cookies": cookie_text(acct), "display_name": "by cookie"})
    assert r.status == 200 and r.json()["id"] == c["id"], r
    assert r.json()["display_name"] == "by cookie"
    # Text that is not cookies; cookies TikTok does not know.
    r = b.api("POST", "/api/v1/connections/tiktok/cookie", {"cookies": "hello world"})
    assert r.status == 422 and r.json()["error"]["code"] == "cookies_invalid", r
    r = b.api("POST", "/api/v1/connections/tiktok/cookie",
              {"cookies": "sessionid=" + uuid.uuid4().hex})
    assert r.status == 422 and r.json()["error"]["code"] == "cookies_rejected", r
    assert "session expired" in r.json()["error"]["message"]
    r = b.api("POST", "/api/v1/connections/instagram/cookie", {"cookies": cookie_text(acct)})
    assert r.status in (404, 409, 422), r
    # The health check passes while the session lives...
    force_refresh(stack, b, c["id"])
    c2 = get_conn(b, c["id"])
    assert c2["status"] == "active" and c2["last_checked_at"], c2
    # ...and marks the connection when TikTok ends the session.
    stack.sim("tiktok", "POST", "/__control/cookies/expire", {"account": key})
    force_refresh(stack, b, c["id"])
    c3 = get_conn(b, c["id"])
    assert c3["status"] == "needs_reauth" and c3["last_error"], c3
    assert len(alerts(stack, b.user["id"])) == 1
    # The sealed cookies are not in the clear in the database.
    sid = acct["sessionid"]
    rows = sql(stack, "SELECT COUNT(*) FROM connections WHERE id = %d AND "
                      "INSTR(cookies, %s) = 0 AND cookies IS NOT NULL" % (c["id"], quote(sid)))
    assert rows[0][0] == "1"


# -- key rotation --------------------------------------------------------------

def ring_ids(stack):
    with open(os.path.join(stack.var, "secrets.keys")) as f:
        return [int(line.split()[0]) for line in f if line.strip() and not line.startswith("#")]


def test_key_rotation(stack, fast_worker):
    b = new_browser(stack)
    t, _, _ = connect(stack, b, "tiktok")
    x, _, _ = connect(stack, b, "x")
    ids = ring_ids(stack)
    old = max(ids)
    r = stack.ctl("rotate-key")
    assert r.returncode == 0, r.stderr
    new = max(ring_ids(stack))
    assert new > old and ring_ids(stack)[:len(ids)] == ids, "old keys stay in the ring"
    total = int(sql(stack, "SELECT COUNT(*) FROM connections")[0][0])
    assert re.search(r"re-sealed \d+ of %d connections" % total, r.stdout + r.stderr), r.stdout
    keys = {int(k) for (k,) in sql(stack, "SELECT DISTINCT secrets_key_id FROM connections")}
    assert keys == {new}, keys
    head = sql(stack, "SELECT DISTINCT SUBSTRING(HEX(access_token), 3, 8) FROM connections "
                      "WHERE access_token IS NOT NULL")
    assert [int(h, 16) for (h,) in head] == [new]
    # The running API and worker follow the ring without a restart.
    assert get_conn(b, t["id"])["status"] == "active"
    force_refresh(stack, b, t["id"])
    force_refresh(stack, b, x["id"])
    assert get_conn(b, t["id"])["status"] == "active"
    assert get_conn(b, x["id"])["status"] == "active"
    out = b.connect("tiktok", new_account(stack, "tiktok")[0])
    assert out["result"] == "connected", out
    # Rows sealed under an older key keep working until they are re-sealed:
    # a key added to the ring by hand seals what is written from now on,
    # and --reseal-only finishes the job.
    ring = os.path.join(stack.var, "secrets.keys")
    with open(ring, "a") as f:
        f.write("%d %s\n" % (new + 1, os.urandom(32).hex()))
    time.sleep(1.2)     # processes look at the ring file at most once a second

    def key_of(cid):
        row = sql(stack, "SELECT secrets_key_id, SUBSTRING(HEX(access_token), 3, 8), "
                         "SUBSTRING(HEX(refresh_token), 3, 8) FROM connections WHERE id = %d" % cid)[0]
        return [int(row[0])] + [int(h, 16) for h in row[1:] if h and h != "NULL"]
    force_refresh(stack, b, t["id"])            # new tokens: sealed under the newest key
    assert key_of(t["id"]) == [new + 1] * 3
    force_refresh(stack, b, x["id"])            # a check: still under the older key, and working
    assert key_of(x["id"]) == [new, new]
    assert get_conn(b, x["id"])["status"] == "active"
    r = stack.ctl("rotate-key", "--reseal-only")
    assert r.returncode == 0, r.stderr
    keys = {int(k) for (k,) in sql(stack, "SELECT DISTINCT secrets_key_id FROM connections")}
    assert keys == {new + 1}, keys
    force_refresh(stack, b, x["id"])
    assert get_conn(b, x["id"])["status"] == "active"


def test_config_names_the_ring_and_hides_the_sandbox_secrets(stack):
    r = stack.ctl("config")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^secrets_key_file\s+= %s\s" % re.escape(os.path.join(stack.var, "secrets.keys")),
                     r.stdout, re.M), r.stdout
    assert re.search(r"^sandbox\s+= yes\s", r.stdout, re.M), r.stdout
    apps = stack.sim_apps()
    for secret in (apps["tiktok"]["client_secret"], apps["instagram"]["app_secret"],
                   apps["youtube"]["client_secret"], apps["x"]["consumer_secret"]):
        assert secret not in r.stdout
