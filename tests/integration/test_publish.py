"""Publishing end to end: a video posted on a sandbox TikTok account goes,
through a rule, to the Instagram, YouTube and X simulators exactly once
each, with the rendered texts, whatever fails on the way.

Each test makes a fresh user with fresh simulator accounts on all four
platforms, a rule from the TikTok account to the three destinations, and
a new video on the TikTok simulator; the worker syncs it, fetches it,
probes it, fans it out and publishes it.  Faults are injected with the
simulators' control path: error statuses, dropped connections, answers
lost after the platform did the work, expired tokens, exhausted quotas,
and the worker killed in the middle of an upload.  Every test ends by
checking that each destination holds the video exactly once (or that the
publication failed visibly, with its reason)."""
import datetime
import os
import signal
import time
import uuid

import pytest

from authlib import add_user, sql

DESTINATIONS = ("instagram", "youtube", "x")
DONE = ("published", "failed", "cancelled")


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def pubworker(stack):
    """A worker for every queue with quick retries, a short lease (so a
    killed worker's job runs again soon) and a short HTTP timeout (so a
    held answer is a local timeout)."""
    env = {"CROSSPOST_WORKER_QUEUES": "default:2,media:2,publish:2,maintenance:1",
           "CROSSPOST_SYNC_INTERVAL_MIN": "10s",
           "CROSSPOST_JOB_LEASE": "6s",
           "CROSSPOST_JOB_RETRY_BASE": "300ms",
           "CROSSPOST_JOB_RETRY_CAP": "2s",
           "CROSSPOST_HTTP_TIMEOUT": "5s",
           "CROSSPOST_YOUTUBE_CHUNK_SIZE": "256K",
           "CROSSPOST_X_CHUNK_SIZE": "64K",
           "CROSSPOST_INSTAGRAM_QUOTA_RECHECK": "2s",
           "CROSSPOST_PUBLISH_POLL_MAX": "20s",
           "CROSSPOST_PUBLICATION_SWEEP_INTERVAL": "2s",
           # Every test uploads to YouTube: the suite must not run out of
           # the project's daily units (one test exhausts them on purpose).
           "CROSSPOST_YOUTUBE_DAILY_UNITS": "100000000"}
    units = stack.sim("youtube", "GET", "/__control/state")["config"]["daily_units"]
    stack.sim("youtube", "POST", "/__control/config", {"daily_units": 100000000})
    stack.stop_worker()
    stack.start_worker(env=env)
    yield env
    stack.sim("youtube", "POST", "/__control/config", {"daily_units": units})
    for p in ("tiktok",) + DESTINATIONS:
        stack.sim_request(p, "DELETE", "/__control/faults")
    stack.stop_worker()
    stack.start_worker()


class Creator:
    """A user with a TikTok source, three destination accounts and a rule."""

    def __init__(self, stack, settings=None):
        self.stack = stack
        email, password, self.user_id = add_user(stack)
        self.browser = stack.browser().sign_in(email, password)
        self.names = {}
        self.conn = {}
        for p in ("tiktok",) + DESTINATIONS:
            name = unique("pub" + p[:2])
            if p == "instagram":
                acct = stack.sim(p, "POST", "/__control/accounts",
                                 {"login": name, "with_instagram": True})
                self.names[p] = acct["instagram"]["username"]
            else:
                stack.sim(p, "POST", "/__control/accounts", {"username": name})
                self.names[p] = name
            out = self.browser.connect(p, name)
            assert out.get("result") == "connected", (p, out)
            self.conn[p] = int(out["connection_id"])
        # The first sync records the (empty) back catalogue; later videos are new.
        self.wait_synced()
        dests = []
        for p in DESTINATIONS:
            s = dict((settings or {}).get(p, {}))
            dests.append({"connection_id": self.conn[p], "settings": s})
        r = self.browser.api("POST", "/api/v1/rules", {
            "name": "everywhere", "source_connection_id": self.conn["tiktok"],
            "destinations": dests})
        assert r.status == 201, r
        self.rule = r.json()

    def wait_synced(self, since=None):
        def done():
            c = self.browser.api("GET", "/api/v1/connections/%d" % self.conn["tiktok"]).json()
            return c if c["last_sync_at"] and (since is None or c["last_sync_at"] > since) else None
        return self.stack.wait_for("sync", done, timeout=60, interval=0.3)

    def post(self, description, stock=None, title=None):
        """A new TikTok video, synced now; its video row id once recorded."""
        body = {"account": self.names["tiktok"], "description": description}
        if stock:
            body["stock"] = stock
        if title:
            body["title"] = title
        v = self.stack.sim("tiktok", "POST", "/__control/videos", body)
        remote = v["id"]
        r = self.browser.api("POST", "/api/v1/connections/%d/sync" % self.conn["tiktok"])
        assert r.status in (200, 202), r

        def recorded():
            rows = sql(self.stack, "SELECT id FROM videos WHERE connection_id = %d AND remote_id = '%s'"
                       % (self.conn["tiktok"], remote))
            return int(rows[0][0]) if rows else None
        return self.stack.wait_for("video %s recorded" % remote, recorded, timeout=60, interval=0.3)

    def posts(self, video_id):
        r = self.browser.api("GET", "/api/v1/posts?video_id=%d&limit=50" % video_id)
        assert r.status == 200, r
        return {p["platform"]: p for p in r.json()["data"]}

    def wait_done(self, video_id, timeout=150, platforms=DESTINATIONS):
        def done():
            posts = self.posts(video_id)
            if all(p in posts and posts[p]["state"] in DONE for p in platforms):
                return posts
            return None
        try:
            return self.stack.wait_for("publications of video %d" % video_id, done,
                                       timeout=timeout, interval=0.5)
        except AssertionError:
            raise AssertionError("not done: %r" % (self.posts(video_id),))

    def wait_state(self, video_id, platform, states, timeout=60):
        def reached():
            p = self.posts(video_id).get(platform)
            return p if p and p["state"] in states else None
        return self.stack.wait_for("%s in %s" % (platform, states), reached, timeout=timeout,
                                   interval=0.2)

    def published_on(self, platform):
        recs = self.stack.sim(platform, "GET", "/__control/published")["published"]
        return [r for r in recs if r.get("account") == self.names[platform]]


def assert_once_each(c, video_id, posts=None):
    posts = posts or c.wait_done(video_id)
    for p in DESTINATIONS:
        assert posts[p]["state"] == "published", (p, posts[p])
        got = c.published_on(p)
        assert len(got) == 1, (p, got)
        assert got[0]["remote_id"] == posts[p]["remote_id"], (p, got, posts[p])
        assert posts[p]["remote_url"], posts[p]
    return posts


# -- 1. the headline scenario ---------------------------------------------
def test_new_video_reaches_every_destination_once_with_rendered_texts(stack, pubworker):
    settings = {
        "instagram": {"caption_template": "{description} {hashtags}", "hashtags_add": ["crosspost"],
                      "share_to_feed": True},
        "youtube": {"title_template": "New: {title}", "caption_template": "{description}\n{share_url}",
                    "privacy": "unlisted", "tags": ["shorts", "demo"]},
        "x": {"text_template": "{description} {hashtags} {share_url}"},
    }
    c = Creator(stack, settings)
    t0 = time.time()
    vid = c.post("Morning swim #ocean #summer", title="Swim")
    posts = assert_once_each(c, vid)
    elapsed = time.time() - t0
    share = sql(stack, "SELECT share_url FROM videos WHERE id = %d" % vid)[0][0]

    ig = c.published_on("instagram")[0]
    assert ig["caption"] == "Morning swim #ocean #summer #crosspost", ig
    assert posts["instagram"]["caption"] == ig["caption"]
    yt = c.published_on("youtube")[0]
    assert yt["title"] == "New: Swim", yt
    assert yt["description"] == "Morning swim\n" + share, yt
    assert yt["privacy"] == "unlisted" and yt["tags"] == ["shorts", "demo"], yt
    x = c.published_on("x")[0]
    assert x["text"] == "Morning swim #ocean #summer " + share, x
    # The vertical 720x1280 clip is over X's 1280x1024: scaled once for X;
    # Instagram and YouTube take the stored file as it is.
    src = sql(stack, "SELECT media_sha256 FROM videos WHERE id = %d" % vid)[0][0]
    assert ig["media_sha256"] == src and yt["sha256"] == src
    assert x["media"][0]["sha256"] != src
    assert posts["x"]["media_profile"].startswith("scale-"), posts["x"]
    assert posts["instagram"]["media_profile"] == "original"
    variants = sql(stack, "SELECT profile, height FROM media_variants WHERE video_id = %d" % vid)
    assert len(variants) == 1 and int(variants[0][1]) <= 1024, variants
    # Progress is shown on the publication.
    assert posts["youtube"]["progress"]["sent"] == posts["youtube"]["progress"]["total"] > 0
    # /videos/{id} shows each destination's state.
    v = c.browser.api("GET", "/api/v1/videos/%d" % vid).json()
    assert sorted(d["platform"] for d in v["destinations"]) == sorted(DESTINATIONS), v
    # Within one sync interval plus processing time.
    assert elapsed < 120, elapsed
    # A repeated fan-out or job run changes nothing.
    sql(stack, "UPDATE jobs SET state = 'ready', run_at = NOW(3) WHERE unique_key LIKE 'publish:%%' AND"
               " JSON_VALUE(payload, '$.publication_id') IN (%s)"
               % ",".join(str(p["id"]) for p in posts.values()))
    time.sleep(3)
    assert_once_each(c, vid)


# -- 2. faults at every step ----------------------------------------------
def fault(stack, platform, match, action, **kw):
    body = {"match": match, "action": action}
    body.update(kw)
    r = stack.sim_request(platform, "POST", "/__control/faults", body)
    assert r.status == 200, r


def test_errors_drops_and_lost_answers_still_publish_once(stack, pubworker):
    c = Creator(stack)
    # Instagram: a 500 making the container, a 429 on its status, and the
    # publish done but its answer lost.
    fault(stack, "instagram", "/v", "status", method="POST", status=500, count=1)
    fault(stack, "instagram", "/ig-api-upload/", "drop", count=1)
    fault(stack, "instagram", "/v", "status", method="GET", status=429, count=1, retry_after=1)
    # YouTube: the session start fails, a chunk is dropped, and the last
    # chunk's answer is lost after the video was made.
    fault(stack, "youtube", "/upload/youtube/v3/videos", "status", method="POST", status=503, count=1)
    fault(stack, "youtube", "/upload/youtube/v3/videos", "drop", method="PUT", count=1)
    # X: an append fails, and the post is made but its answer times out.
    fault(stack, "x", "/2/media/upload", "status", method="POST", status=500, count=1)
    fault(stack, "x", "/2/tweets", "timeout_after", method="POST", seconds=8, count=1)
    vid = c.post("Faults everywhere #resilience")
    posts = assert_once_each(c, vid)
    assert posts["x"]["attempts"] >= 1


def test_lost_publish_answers_are_checked_before_any_resend(stack, pubworker):
    c = Creator(stack)
    fault(stack, "instagram", "/v", "drop_after", method="POST", count=3)
    fault(stack, "youtube", "/upload/youtube/v3/videos", "timeout_after", method="PUT", seconds=8,
          count=1)
    fault(stack, "x", "/2/tweets", "drop_after", method="POST", count=1)
    vid = c.post("Lost answers")
    assert_once_each(c, vid)


def test_expired_access_token_is_refreshed_and_the_post_goes_once(stack, pubworker):
    c = Creator(stack)
    r = stack.sim_request("youtube", "POST", "/__control/tokens/expire",
                          {"account": c.names["youtube"], "which": "access"})
    assert r.status == 200 and r.json()["expired"] >= 1, r
    vid = c.post("Token expired on the way")
    assert_once_each(c, vid)
    conn = c.browser.api("GET", "/api/v1/connections/%d" % c.conn["youtube"]).json()
    assert conn["status"] == "active", conn


def test_revoked_destination_fails_visibly_and_asks_to_reconnect(stack, pubworker):
    c = Creator(stack)
    stack.sim_request("x", "POST", "/__control/tokens/revoke", {"account": c.names["x"]})
    vid = c.post("Revoked on X")
    posts = c.wait_done(vid)
    assert posts["x"]["state"] == "failed" and posts["x"]["error_code"] == "needs_reauth", posts["x"]
    assert "connected again" in posts["x"]["last_error"], posts["x"]
    assert c.published_on("x") == []
    conn = c.browser.api("GET", "/api/v1/connections/%d" % c.conn["x"]).json()
    assert conn["status"] == "needs_reauth", conn
    for p in ("instagram", "youtube"):
        assert posts[p]["state"] == "published" and len(c.published_on(p)) == 1


def worker_pid_running(stack, job_id):
    rows = sql(stack, "SELECT w.pid FROM jobs j JOIN workers w ON w.id = j.owner"
                      " WHERE j.id = %d AND j.state = 'running'" % job_id)
    return int(rows[0][0]) if rows and rows[0][0] else None


def test_worker_killed_mid_upload_resumes_and_posts_once(stack, pubworker):
    c = Creator(stack)
    # A chunk PUT hangs: the worker is in the middle of the upload.
    fault(stack, "youtube", "/upload/youtube/v3/videos", "timeout", method="PUT", seconds=15, count=1)
    vid = c.post("Killed mid upload")
    pub = c.wait_state(vid, "youtube", ("uploading", "processing"), timeout=90)
    job = int(pub["job_id"])
    pid = stack.wait_for("a worker running the upload", lambda: worker_pid_running(stack, job),
                         timeout=30, interval=0.2)
    os.kill(pid, signal.SIGKILL)
    posts = assert_once_each(c, vid, c.wait_done(vid, timeout=180))
    # The killed run is a lost attempt; the next one finished the upload.
    lost = int(sql(stack, "SELECT COUNT(*) FROM job_attempts WHERE job_id = %d AND error_class = 'lost'"
                   % job)[0][0])
    assert lost >= 1, lost
    assert int(sql(stack, "SELECT attempts FROM jobs WHERE id = %d" % job)[0][0]) >= 2
    assert posts["youtube"]["progress"]["sent"] == posts["youtube"]["progress"]["total"]


# -- 3. quotas ---------------------------------------------------------------
def test_publishing_limit_defers_until_the_window_frees(stack, pubworker):
    c = Creator(stack)
    old = stack.sim("instagram", "GET", "/__control/state")["config"]["publish_limit"]
    stack.sim("instagram", "POST", "/__control/config", {"publish_limit": 0})
    try:
        vid = c.post("Waiting for Instagram's window")
        p = c.wait_state(vid, "instagram", ("deferred",), timeout=90)
        assert p["deferred_until"], p
        assert p["state"] == "deferred" and "limit" in p["last_error"].lower(), p
        assert c.published_on("instagram") == []
    finally:
        stack.sim("instagram", "POST", "/__control/config", {"publish_limit": old})
    posts = assert_once_each(c, vid)
    assert posts["instagram"]["deferred_until"] is None


def pacific_midnight_after(ts):
    from zoneinfo import ZoneInfo
    la = ZoneInfo("America/Los_Angeles")
    local = datetime.datetime.fromtimestamp(ts, la)
    nxt = (local + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return nxt.timestamp()


def test_youtube_quota_exceeded_defers_to_midnight_pacific(stack, pubworker):
    c = Creator(stack)
    units = stack.sim("youtube", "GET", "/__control/state")["config"]["daily_units"]
    stack.sim("youtube", "POST", "/__control/quota", {"units_used": units})
    try:
        vid = c.post("Out of YouTube units")
        p = c.wait_state(vid, "youtube", ("deferred",), timeout=90)
        until = datetime.datetime.fromisoformat(p["deferred_until"].replace("Z", "+00:00")).timestamp()
        assert abs(until - pacific_midnight_after(time.time())) < 5, (p, until)
        assert "quota" in p["last_error"].lower(), p
        job = sql(stack, "SELECT state, attempts FROM jobs WHERE id = %d" % int(p["job_id"]))[0]
        assert job[0] == "scheduled", job
        q = c.browser.api("GET", "/api/v1/quotas").json()["data"]
        assert any(r["platform"] == "youtube" and r["blocked_until"] for r in q), q
    finally:
        stack.sim("youtube", "POST", "/__control/quota", {"reset": True})
        sql(stack, "DELETE FROM quota_ledger WHERE platform = 'youtube'")
    # Instagram and X are not held up by YouTube's quota.
    posts = c.wait_done(vid, platforms=("instagram", "x"))
    assert posts["instagram"]["state"] == posts["x"]["state"] == "published"


# -- 4. media limits -----------------------------------------------------------
def test_media_fixed_or_refused_with_the_limit_named(stack, pubworker):
    c = Creator(stack)
    vid = c.post("A long one", stock="long_150s")
    posts = c.wait_done(vid, timeout=240)
    assert posts["x"]["state"] == "failed" and posts["x"]["error_code"] == "media_limit", posts["x"]
    assert "140" in posts["x"]["last_error"], posts["x"]
    assert c.published_on("x") == []
    for p in ("instagram", "youtube"):
        assert posts[p]["state"] == "published", posts[p]

    vid = c.post("Moov at the end", stock="moov_end")
    posts = c.wait_done(vid)
    assert posts["instagram"]["state"] == "published", posts["instagram"]
    assert posts["instagram"]["media_profile"] == "faststart", posts["instagram"]
    assert posts["youtube"]["media_profile"] == "original", posts["youtube"]
    assert "faststart" in posts["x"]["media_profile"], posts["x"]
    profiles = {r[0] for r in sql(stack, "SELECT profile FROM media_variants WHERE video_id = %d" % vid)}
    assert "faststart" in profiles, profiles


# -- 5. retry from the API ------------------------------------------------------
def test_failed_post_is_retried_from_the_api(stack, pubworker):
    c = Creator(stack)
    stack.sim_request("x", "POST", "/__control/tokens/revoke", {"account": c.names["x"]})
    vid = c.post("Retry me")
    posts = c.wait_done(vid)
    assert posts["x"]["state"] == "failed", posts["x"]
    # Reconnect the account, then retry the post.
    out = c.browser.connect("x", c.names["x"])
    assert out.get("result") == "connected", out
    r = c.browser.api("POST", "/api/v1/posts/%d/retry" % posts["x"]["id"])
    assert r.status == 202, r
    posts = assert_once_each(c, vid)
    r = c.browser.api("POST", "/api/v1/posts/%d/retry" % posts["x"]["id"])
    assert r.status == 409, r


# -- 6. a rule made later, with backfill --------------------------------------
def test_rule_made_later_with_backfill_publishes_ready_videos(stack, pubworker):
    c = Creator(stack)
    vid = c.post("Before the second rule")
    assert_once_each(c, vid)
    # A second X account and a rule to it that asks for the back catalogue.
    name = unique("pubx2")
    stack.sim("x", "POST", "/__control/accounts", {"username": name})
    out = c.browser.connect("x", name)
    assert out.get("result") == "connected", out
    second = int(out["connection_id"])
    r = c.browser.api("POST", "/api/v1/rules", {
        "name": "backfill", "source_connection_id": c.conn["tiktok"], "backfill": True,
        "destinations": [{"connection_id": second, "settings": {"text_template": "again: {description}"}}]})
    assert r.status == 201, r

    def published():
        r = c.browser.api("GET", "/api/v1/posts?connection_id=%d" % second).json()["data"]
        return r if r and r[0]["state"] in DONE else None
    posts = stack.wait_for("backfilled post", published, timeout=90, interval=0.5)
    assert len(posts) == 1 and posts[0]["state"] == "published", posts
    recs = [p for p in stack.sim("x", "GET", "/__control/published")["published"]
            if p.get("account") == name]
    assert len(recs) == 1 and recs[0]["text"] == "again: Before the second rule", recs
    # The first rule's destinations are untouched: still once each.
    assert_once_each(c, vid)
