"""The connections API at its edges: what each endpoint refuses, and how.

test_connections.py follows the flows end to end; this file pins down the
input checks, the error codes of docs/API.md, the headers of the OAuth
callback's redirect, and the answers when a dependency (the key ring,
memcached, a platform's app credentials) is missing.
"""
import json
import urllib.parse
import uuid

import pytest

from authlib import add_user, assert_error, audit_rows, cookie_attrs, quote


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def carol(stack):
    email, password, _ = add_user(stack)
    return stack.browser().sign_in(email, password)


@pytest.fixture(scope="module")
def carols_connection(stack, carol):
    return connect_tiktok(stack, carol)[0]


def connect_tiktok(stack, browser):
    name = unique("cpapi")
    stack.sim("tiktok", "POST", "/__control/accounts", {"username": name})
    out = browser.connect("tiktok", name)
    assert out.get("result") == "connected", out
    return int(out["connection_id"]), name


# -- authorize ---------------------------------------------------------------

def test_authorize_answer_cookie_and_audit(stack, carol):
    r = carol.api("POST", "/api/v1/connections/youtube/authorize")
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"authorize_url", "expires_in"}, body
    assert body["expires_in"] == 600
    assert body["authorize_url"].startswith(stack.sim_url("youtube")), body
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["authorize_url"]).query))
    assert query["redirect_uri"] == stack.url + "/oauth/youtube/callback", query
    name, value, attrs = cookie_attrs(r)
    assert name == "cp_oauth" and len(value) == 43, r.headers
    assert attrs.get("path") == "/oauth" and attrs.get("httponly") is True, attrs
    assert attrs.get("samesite") == "Lax" and attrs.get("max-age") == "600", attrs
    assert r.headers.get("cache-control") == "no-store"
    events = audit_rows(stack, "action = 'connection.authorize' AND actor_id = %d"
                               % carol.user["id"])
    assert events and events[-1]["outcome"] == "success", events
    assert events[-1]["detail"] == "youtube", events
    assert query["state"] not in json.dumps(events)


@pytest.mark.parametrize("path,body,status,code", [
    ("/api/v1/connections/myspace/authorize", None, 404, "not_found"),
    ("/api/v1/connections/tiktok/authorize", {"scope": "all"}, 422, "unknown_field"),
    ("/api/v1/connections/tiktok/authorize", [], 400, "invalid_body"),
])
def test_authorize_refusals(stack, carol, path, body, status, code):
    r = carol.api("POST", path, body)
    assert_error(r, status, code)
    assert "set-cookie" not in r.headers


def test_authorize_needs_credentials(stack):
    r = stack.request("POST", "/api/v1/connections/tiktok/authorize", body=b"{}",
                      headers={"Content-Type": "application/json"})
    assert_error(r, 401, "unauthenticated")


def test_without_app_credentials_or_key_ring(stack, carol):
    """YouTube without its app is 409 naming the keys; without a key ring,
    whatever would store a secret is 503 secrets_unavailable, and the rest
    of the API goes on."""
    stack.restart_api(env={"CROSSPOST_GOOGLE_CLIENT_ID": "", "CROSSPOST_SECRETS_KEY_FILE": ""})
    try:
        err = assert_error(carol.api("POST", "/api/v1/connections/youtube/authorize"), 409,
                           "platform_not_configured")
        assert "google_client_id" in err["message"], err
        rows = carol.api("GET", "/api/v1/platforms").json()["data"]
        assert {p["platform"]: p["configured"] for p in rows}["youtube"] is False, rows
        err = assert_error(carol.api("POST", "/api/v1/connections/tiktok/authorize"), 503,
                           "secrets_unavailable")
        assert "secrets_key_file" in err["message"], err
        assert_error(carol.api("POST", "/api/v1/connections/tiktok/cookie",
                               {"cookies": "sessionid=abc"}), 503, "secrets_unavailable")
        assert carol.api("GET", "/api/v1/connections").status == 200
    finally:
        stack.restart_api()


def test_authorize_without_memcached(stack, carol):
    stack.stop("memcached")
    try:
        r = carol.api("POST", "/api/v1/connections/tiktok/authorize")
        assert_error(r, 503, "unavailable")
        assert "memcached" in r.json()["error"]["message"]
        assert "set-cookie" not in r.headers
    finally:
        stack.start("memcached")
        stack.wait_for("/readyz 200", stack.ready, timeout=30)


# -- the callback ------------------------------------------------------------

def test_callback_redirect_headers_and_no_echo(stack):
    b = stack.browser()
    b.jar.clear()
    r = b.open("GET", "/oauth/tiktok/callback?code=c0de&state=%s&error_description=%s"
               % ("S" * 43, urllib.parse.quote("<script>alert(1)</script>")))
    assert r.status == 302, r
    assert r.headers["location"] == (stack.url + "/connections?platform=tiktok&result=error"
                                     "&error=state_invalid"), r.headers
    assert r.headers.get("cache-control") == "no-store"
    assert r.headers.get("referrer-policy") == "no-referrer"
    name, value, attrs = cookie_attrs(r)
    assert (name, value, attrs.get("max-age"), attrs.get("path")) == ("cp_oauth", "", "0", "/oauth")
    # Unknown and replayed states have no user to name.
    rid = r.headers["x-request-id"]
    rows = audit_rows(stack, "request_id = %s" % quote(rid))
    assert [(e["action"], e["outcome"], e["actor_id"], e["detail"]) for e in rows] == \
        [("connection.connect", "failure", "NULL", "tiktok state_invalid")], rows


def test_callback_of_an_unknown_platform_is_404(stack):
    r = stack.get("/oauth/myspace/callback?code=x&state=y")
    assert_error(r, 404, "not_found")
    assert stack.get("/oauth/tiktok").status == 404


def test_callback_queries_stay_out_of_the_access_log(stack):
    marker = uuid.uuid4().hex
    stack.get("/oauth/tiktok/callback?code=%s&state=%s" % (marker, marker))
    stack.wait_for("the callback in the access log",
                   lambda: "/oauth/tiktok/callback" in stack.log("nginx-access.log"), timeout=5)
    assert marker not in stack.log("nginx-access.log")
    assert marker not in stack.log("api.log")


# -- one connection ----------------------------------------------------------

@pytest.mark.parametrize("body,status,code", [
    ({}, 422, "nothing_to_change"),
    ([], 400, "invalid_body"),
    ({"status": "active"}, 422, "unknown_field"),
    ({"display_name": None}, 400, "invalid_field"),
    ({"display_name": "a\nb"}, 422, "invalid_field"),
    ({"display_name": "x" * 256}, 422, "invalid_field"),
    ({"enabled": 1}, 400, "invalid_field"),
    ({"sync_interval": "600"}, 400, "invalid_field"),
    ({"sync_interval": 600.5}, 400, "invalid_field"),
    ({"sync_interval": 59}, 422, "invalid_field"),
    ({"sync_interval": 86401}, 422, "invalid_field"),
])
def test_patch_refusals(stack, carol, carols_connection, body, status, code):
    path = "/api/v1/connections/%d" % carols_connection
    before = carol.api("GET", path).json()
    assert_error(carol.api("PATCH", path, body), status, code)
    assert carol.api("GET", path).json()["updated_at"] == before["updated_at"]


def test_patch_is_audited_by_field(stack, carol):
    cid, _ = connect_tiktok(stack, carol)
    r = carol.api("PATCH", "/api/v1/connections/%d" % cid,
                  {"display_name": "é" * 120, "enabled": False, "sync_interval": 900})
    assert r.status == 200, r
    assert r.json()["display_name"] == "é" * 120 and r.json()["status"] == "disabled"
    rows = audit_rows(stack, "action = 'connection.update' AND target_id = %s" % quote(cid))
    assert rows[-1]["detail"] == "display_name enabled=false sync_interval=900", rows
    assert rows[-1]["owner_id"] == str(carol.user["id"]), rows


@pytest.mark.parametrize("path", ["/api/v1/connections/0", "/api/v1/connections/abc",
                                  "/api/v1/connections/99999999999/refresh"])
def test_ids_that_name_nothing(stack, carol, path):
    method = "POST" if path.endswith("/refresh") else "GET"
    assert_error(carol.api(method, path), 404, "not_found")


def test_list_refusals(stack, carol):
    for q in ("platform=myspace", "status=sleepy", "limit=0", "limit=201", "cursor=-1",
              "platform=x&platform=x", "user=abc"):
        r = carol.api("GET", "/api/v1/connections?" + q)
        assert r.status in (400, 403), (q, r)
    assert_error(carol.api("GET", "/api/v1/connections?user=1"), 403, "forbidden")


# -- refresh -----------------------------------------------------------------

def test_refresh_is_one_job_at_a_time(stack, carol):
    cid, _ = connect_tiktok(stack, carol)
    stack.stop_worker()
    try:
        first = carol.api("POST", "/api/v1/connections/%d/refresh" % cid)
        assert first.status == 202, first
        job = first.json()["job_id"]
        again = carol.api("POST", "/api/v1/connections/%d/refresh" % cid)
        assert again.status == 202 and again.json() == {"job_id": job}, again
        j = carol.api("GET", "/api/v1/jobs/%d" % job).json()
        assert j["kind"] == "connection.refresh" and j["unique_key"] == "connection.refresh:%d" % cid
        assert j["payload"] == {"connection_id": cid, "force": True}, j
        assert j["user_id"] == carol.user["id"], j
        assert_error(carol.api("POST", "/api/v1/connections/%d/refresh" % cid, {"now": True}),
                     422, "unknown_field")
        assert carol.api("PATCH", "/api/v1/connections/%d" % cid, {"enabled": False}).status == 200
        assert_error(carol.api("POST", "/api/v1/connections/%d/refresh" % cid), 409, "disabled")
    finally:
        stack.start_worker()
    rows = audit_rows(stack, "action = 'connection.refresh_requested' AND target_id = %s"
                             % quote(cid))
    assert [(e["outcome"], e["detail"]) for e in rows] == [
        ("success", "job %d" % job), ("success", "job %d (already queued)" % job),
        ("failure", "refused: disabled")], rows


# -- TikTok cookies ----------------------------------------------------------

@pytest.mark.parametrize("body,status,code", [
    (None, 400, "invalid_body"),
    ({}, 400, "missing_field"),
    ({"cookies": 5}, 400, "invalid_field"),
    ({"cookies": "sessionid=a", "remember": True}, 422, "unknown_field"),
    ({"cookies": "sessionid=a", "display_name": 7}, 400, "invalid_field"),
    ({"cookies": "sessionid=a", "display_name": "x" * 256}, 422, "invalid_field"),
    ({"cookies": "this is not a cookie"}, 422, "cookies_invalid"),
    ({"cookies": "tt_csrf_token=abc"}, 422, "cookies_invalid"),
    ({"cookies": "sessionid=not-a-live-session"}, 422, "cookies_rejected"),
])
def test_cookie_refusals(stack, carol, body, status, code):
    r = carol.open("POST", "/api/v1/connections/tiktok/cookie",
                   body if body is not None else b"",
                   {"Authorization": "Bearer " + carol.token, "Content-Type": "application/json"})
    err = assert_error(r, status, code)
    if isinstance(body, dict) and isinstance(body.get("cookies"), str):
        assert body["cookies"] not in err["message"]


def test_cookie_connection_audit_has_no_cookie(stack, carol):
    name = unique("cpapi")
    acct = stack.sim("tiktok", "POST", "/__control/accounts", {"username": name})
    session = acct["sessionid"]
    r = carol.api("POST", "/api/v1/connections/tiktok/cookie", {"cookies": "sessionid=" + session})
    assert r.status == 201, r
    assert r.json()["auth_kind"] == "cookie" and session not in r.body.decode()
    rows = audit_rows(stack, "action = 'connection.cookie_add' AND target_id = %s"
                             % quote(r.json()["id"]))
    assert rows and rows[-1]["detail"] == "added tiktok " + name, rows
    assert session not in json.dumps(rows)
    assert session not in stack.log("api.log")
