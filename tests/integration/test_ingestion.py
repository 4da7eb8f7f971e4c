"""Ingestion against the TikTok simulator: syncs over short pages record
each video once, the back catalogue is not fetched without a backfill, new
videos arrive by polling and at once by a signed webhook, replayed and
forged webhooks change nothing, and authorization.removed stops syncs.

Fetching and probing are other tasks: a recorded video is asserted to be
"new" with its video.fetch job (or further along, if a media worker ran)."""
import json
import time
import uuid

import pytest

from authlib import add_user, sql

FURTHER = ("new", "fetching", "stored", "ready")


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def worker(stack):
    """A worker for the default and maintenance queues, with a short
    minimum interval so that polling shows within a test."""
    env = {"CROSSPOST_SYNC_INTERVAL_MIN": "10s", "CROSSPOST_WORKER_QUEUES": "default:2,maintenance:1"}
    stack.stop_worker()
    stack.start_worker(env=env)
    yield env
    stack.sim("tiktok", "POST", "/__control/config", {"page_limit": 0})


def browser_for(stack):
    email, password, _ = add_user(stack)
    return stack.browser().sign_in(email, password)


def new_account(stack, videos=0):
    name = unique("cping")
    stack.sim("tiktok", "POST", "/__control/accounts", {"username": name, "videos": videos})
    return name


def connect(stack, browser, name):
    out = browser.connect("tiktok", name)
    assert out.get("result") == "connected", out
    return int(out["connection_id"])


def videos_of(browser, cid):
    r = browser.api("GET", "/api/v1/videos?connection_id=%d&limit=200" % cid)
    assert r.status == 200, r
    return r.json()["data"]


def sim_videos(stack, name):
    state = stack.sim("tiktok", "GET", "/__control/state")
    return {vid for vid, v in state["videos"].items() if v["account"] == name}


def sync_jobs_done(stack, cid):
    return stack.jobs_by_state("kind = 'tiktok.sync' AND payload LIKE '%%\"connection_id\":%d%%'"
                               % cid).get("succeeded", 0)


def wait_synced(stack, browser, cid, since=None, timeout=60):
    def done():
        c = browser.api("GET", "/api/v1/connections/%d" % cid).json()
        return c if c["last_sync_at"] and (since is None or c["last_sync_at"] > since) else None
    return stack.wait_for("sync of connection %d" % cid, done, timeout=timeout, interval=0.3)


def test_backfill_over_short_pages_records_each_video_once(stack, worker):
    stack.sim("tiktok", "POST", "/__control/config", {"page_limit": 7})
    browser = browser_for(stack)
    name = new_account(stack, videos=45)
    stack.stop_worker()                 # the backfill is asked before the first sync runs
    try:
        cid = connect(stack, browser, name)
        conn = browser.api("GET", "/api/v1/connections/%d" % cid).json()
        assert conn["next_sync_at"] is not None       # a new connection syncs soon
        r = browser.api("POST", "/api/v1/connections/%d/sync" % cid, {"backfill": True})
        assert r.status == 202, r
        job = r.json()["job_id"]
        again = browser.api("POST", "/api/v1/connections/%d/sync" % cid, {"backfill": True})
        assert again.status == 202 and again.json()["job_id"] == job
    finally:
        stack.start_worker(env=worker)
    conn = wait_synced(stack, browser, cid)
    assert conn["last_sync_error"] is None
    vids = videos_of(browser, cid)
    assert len(vids) == 45
    assert {v["remote_id"] for v in vids} == sim_videos(stack, name)
    assert all(v["state"] in FURTHER for v in vids)
    rows = sql(stack, "SELECT COUNT(*), COUNT(DISTINCT remote_id) FROM videos WHERE connection_id = %d" % cid)
    assert rows[0] == ["45", "45"]
    fetch = sql(stack, "SELECT COUNT(*) FROM jobs j JOIN videos v ON j.unique_key = CONCAT('video.fetch:', v.id)"
                       " WHERE v.connection_id = %d" % cid)
    assert int(fetch[0][0]) == 45
    assert conn["videos_seen"] == 45

    # A second sync finds nothing new.
    r = browser.api("POST", "/api/v1/connections/%d/sync" % cid, {})
    assert r.status == 202
    wait_synced(stack, browser, cid, since=conn["last_sync_at"])
    assert len(videos_of(browser, cid)) == 45


def test_first_sync_records_back_catalogue_as_known(stack, worker):
    stack.sim("tiktok", "POST", "/__control/config", {"page_limit": 5})
    browser = browser_for(stack)
    name = new_account(stack, videos=12)
    cid = connect(stack, browser, name)          # the scheduler runs the first sync
    conn = wait_synced(stack, browser, cid)
    vids = videos_of(browser, cid)
    assert len(vids) == 12 and all(v["state"] == "known" for v in vids)
    jobs = sql(stack, "SELECT COUNT(*) FROM jobs j JOIN videos v ON j.unique_key = CONCAT('video.fetch:', v.id)"
                      " WHERE v.connection_id = %d" % cid)
    assert jobs[0] == ["0"]
    assert conn["next_sync_at"] is not None

    # A new video is picked up within one interval (60 s, quartered by
    # the recent activity, at least sync_interval_min).
    r = browser.api("PATCH", "/api/v1/connections/%d" % cid, {"sync_interval": 60})
    assert r.status == 200, r
    new = stack.sim("tiktok", "POST", "/__control/videos", {"account": name, "description": "polled"})

    def found():
        return [v for v in videos_of(browser, cid) if v["remote_id"] == new["id"]]
    got = stack.wait_for("the polled video", found, timeout=90, interval=1)
    assert got[0]["state"] in FURTHER
    assert len(videos_of(browser, cid)) == 13


def test_webhook_syncs_at_once_and_replays_change_nothing(stack, worker):
    browser = browser_for(stack)
    name = new_account(stack, videos=2)
    cid = connect(stack, browser, name)
    conn = wait_synced(stack, browser, cid)
    # Far from the next poll: only the webhook can bring the video in time.
    sql(stack, "UPDATE connections SET next_sync_at = NOW() + INTERVAL 1 HOUR WHERE id = %d" % cid)
    new = stack.sim("tiktok", "POST", "/__control/videos", {"account": name, "description": "hooked"})
    out = stack.sim("tiktok", "POST", "/__control/webhook",
                    {"event": "video.publish.completed", "account": name,
                     "content": {"share_id": new["id"]}})
    assert out["status"] == 200, out

    def found():
        return [v for v in videos_of(browser, cid) if v["remote_id"] == new["id"]]
    got = stack.wait_for("the webhook's video", found, timeout=20, interval=0.3)
    assert got[0]["state"] in FURTHER

    # A forged delivery (wrong secret) is refused, audited, and changes nothing.
    before = sql(stack, "SELECT COUNT(*) FROM webhook_events")[0][0]
    out = stack.sim("tiktok", "POST", "/__control/webhook",
                    {"event": "authorization.removed", "account": name, "bad_signature": True})
    assert out["status"] == 401, out
    assert sql(stack, "SELECT COUNT(*) FROM webhook_events")[0][0] == before
    assert browser.api("GET", "/api/v1/connections/%d" % cid).json()["status"] == "active"
    assert int(sql(stack, "SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.rejected'")[0][0]) >= 1

    # A stale one is refused too.
    out = stack.sim("tiktok", "POST", "/__control/webhook",
                    {"event": "authorization.removed", "account": name,
                     "timestamp": int(time.time()) - 3600})
    assert out["status"] == 401, out
    assert browser.api("GET", "/api/v1/connections/%d" % cid).json()["status"] == "active"

    # The signature is checked over the raw bytes before any parsing: a
    # body that is not even JSON, with no valid signature, is 401, not 400.
    junk = stack.request("POST", "/api/v1/webhooks/tiktok", body=b"{not json",
                         headers={"Content-Type": "application/json",
                                  "TikTok-Signature": "t=%d,s=%s" % (int(time.time()), "0" * 64)})
    assert junk.status == 401 and junk.json()["error"]["code"] == "bad_signature", junk
    # Signed but not JSON: the body is judged after the signature.
    junk = b"{not json"
    bad = stack.request("POST", "/api/v1/webhooks/tiktok", body=junk,
                        headers={"Content-Type": "application/json",
                                 "TikTok-Signature": signature(stack, junk)})
    assert bad.status == 400 and bad.json()["error"]["code"] == "invalid_json", bad

    # A replayed delivery: the same raw body and signature, sent again.
    body = json.dumps({"client_key": "k", "event": "video.publish.completed",
                       "create_time": int(time.time()), "user_openid": conn["remote_id"],
                       "content": "{}"}).encode()
    sig = signature(stack, body)
    headers = {"Content-Type": "application/json", "TikTok-Signature": sig}
    first = stack.request("POST", "/api/v1/webhooks/tiktok", body=body, headers=headers)
    assert first.status == 200 and first.json()["result"] == "accepted", first
    replay = stack.request("POST", "/api/v1/webhooks/tiktok", body=body, headers=headers)
    assert replay.status == 200 and replay.json()["result"] == "duplicate", replay
    import hashlib
    key = hashlib.sha256(body).hexdigest()
    assert sql(stack, "SELECT COUNT(*) FROM webhook_events WHERE dedupe_key = '%s'" % key) == [["1"]]


def signature(stack, body):
    """TikTok-Signature for body with the app's secret, as TikTok makes it."""
    import hashlib
    import hmac
    secret = stack.sim_apps()["tiktok"]["client_secret"]
    t = int(time.time())
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,s=%s" % (t, mac)


def test_authorization_removed_marks_needs_reauth(stack, worker):
    browser = browser_for(stack)
    name = new_account(stack, videos=1)
    cid = connect(stack, browser, name)
    wait_synced(stack, browser, cid)
    out = stack.sim("tiktok", "POST", "/__control/webhook",
                    {"event": "authorization.removed", "account": name})
    assert out["status"] == 200, out
    conn = browser.api("GET", "/api/v1/connections/%d" % cid).json()
    assert conn["status"] == "needs_reauth"
    assert conn["next_sync_at"] is None
    r = browser.api("POST", "/api/v1/connections/%d/sync" % cid, {})
    assert r.status == 409 and r.json()["error"]["code"] == "needs_reauth"
