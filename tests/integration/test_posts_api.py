"""Publications: fan-out of a ready video to its rules' destinations, the
posts API, retry, and the sweeper.

One module fixture builds the scene once: a user with a TikTok source
(cookie connection, kept out of the sync schedule) and sandbox Instagram,
YouTube and X accounts; rules and destinations written with SQL; three
TikTok videos made on the simulator, recorded and carried to ready by
the real media worker (fetch, probe), which fans them out as they become
ready.  The worker serves no "publish" queue, so every publish.post job
stays queued and every publication pending until a test moves it with
SQL (retry and sweeper tests).

Rules (source: the TikTok account):
  r1  all videos, to IG, YT and X, delayed an hour
  r2  all videos, to IG again: a second rule to one account adds nothing
  r3  include "zebra", exclude "spoiler", backfill, to a second X account
  r4  at least an hour long, to a second YouTube account: nothing is
  r5  disabled, to a second Instagram account: nothing
Videos: v1 "A Zebra crossing" (new), v2 "zebra spoiler" (new), v3 "old
zebra" created a day before the rules.
"""
import json
import time
import uuid

import pytest

from authlib import add_user, quote, sql


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


def new_browser(stack, role=None):
    email, password, uid = add_user(stack, role=role)
    b = stack.browser().sign_in(email, password)
    return b, uid


def connect(stack, browser, platform):
    name = unique("cp" + platform[:2])
    body = {"login": name} if platform == "instagram" else {"username": name}
    stack.sim(platform, "POST", "/__control/accounts", body)
    out = browser.connect(platform, name)
    assert out.get("result") == "connected", (platform, out)
    return int(out["connection_id"])


def tiktok_source(stack, browser):
    """A cookie connection (the media fetch needs cookies); (id, account)."""
    name = unique("cppost")
    acct = stack.sim("tiktok", "POST", "/__control/accounts", {"username": name})
    r = browser.api("POST", "/api/v1/connections/tiktok/cookie",
                    {"cookies": acct["cookies"] + "; msToken=xyz"})
    assert r.status == 201, r
    cid = int(r.json()["id"])
    sql(stack, "UPDATE connections SET next_sync_at = NULL WHERE id = %d" % cid)
    return cid, name


def add_rule(stack, uid, source, dests, enabled=1, min_s=None, include=None, exclude=None,
             backfill=0, delay_s=0):
    def opt(v):
        return "NULL" if v is None else quote(v) if isinstance(v, str) else str(v)
    sql(stack, "INSERT INTO rules (user_id, name, source_connection_id, enabled, min_duration_s,"
               " include_words, exclude_words, backfill, delay_s) VALUES (%d, %s, %d, %d, %s, %s, %s,"
               " %d, %d)" % (uid, quote(unique("rule")), source, enabled, opt(min_s),
                             opt(json.dumps(include) if include else None),
                             opt(json.dumps(exclude) if exclude else None), backfill, delay_s))
    rid = int(sql(stack, "SELECT MAX(id) FROM rules WHERE user_id = %d" % uid)[0][0])
    for pos, (conn, settings) in enumerate(dests):
        sql(stack, "INSERT INTO rule_destinations (rule_id, connection_id, position, settings)"
                   " VALUES (%d, %d, %d, %s)" % (rid, conn, pos, quote(json.dumps(settings))))
    return rid


def record_video(stack, uid, source, account, description, age_s=0):
    """A new video of the simulator, recorded with its fetch job; row id."""
    v = stack.sim("tiktok", "POST", "/__control/videos", {"account": account,
                                                          "description": description})
    remote = "p" + v["id"]
    sql(stack, "INSERT INTO videos (user_id, connection_id, remote_id, state, share_url, title,"
               " description, remote_created_at) VALUES (%d, %d, %s, 'new', %s, %s, %s,"
               " NOW() - INTERVAL %d SECOND)" % (uid, source, quote(remote), quote(v["share_url"]),
                                                 quote(description[:60]), quote(description), age_s))
    vid = int(sql(stack, "SELECT id FROM videos WHERE connection_id = %d AND remote_id = %s"
                         % (source, quote(remote)))[0][0])
    r = stack.ctl("jobs", "enqueue", "video.fetch", "--payload", json.dumps({"video_id": vid}))
    assert r.returncode == 0, r.stderr
    return vid


def wait_ready(stack, vids, timeout=120):
    def check():
        rows = sql(stack, "SELECT id, state FROM videos WHERE id IN (%s)" % ",".join(map(str, vids)))
        states = {int(i): s for i, s in rows}
        assert "failed" not in states.values(), (states, stack.log("worker.log")[-3000:])
        return all(s == "ready" for s in states.values())
    stack.wait_for("videos %s ready" % vids, check, timeout=timeout, interval=0.5)


def pubs_of(stack, vid):
    """{connection_id: (publication id, rule_id, state, platform, job_id, settings)}."""
    rows = sql(stack, "SELECT id, connection_id, COALESCE(rule_id, 0), state, platform,"
                      " COALESCE(job_id, 0), settings FROM publications WHERE video_id = %d" % vid)
    return {int(r[1]): (int(r[0]), int(r[2]), r[3], r[4], int(r[5]), json.loads(r[6])) for r in rows}


class Scene:
    pass


@pytest.fixture(scope="module")
def scene(stack):
    env = {"CROSSPOST_WORKER_QUEUES": "default:1,maintenance:1,media:1",
           "CROSSPOST_JOB_RETRY_BASE": "200ms", "CROSSPOST_JOB_RETRY_CAP": "1s"}
    stack.stop_worker()
    stack.start_worker(env=env)
    s = Scene()
    s.browser, s.uid = new_browser(stack)
    s.source, account = tiktok_source(stack, s.browser)
    s.ig, s.yt, s.x = (connect(stack, s.browser, p) for p in ("instagram", "youtube", "x"))
    s.x2, s.yt2, s.ig2 = (connect(stack, s.browser, p) for p in ("x", "youtube", "instagram"))
    s.r1 = add_rule(stack, s.uid, s.source, [(s.ig, {"caption_template": "r1 {description}"}),
                                             (s.yt, {"privacy": "private"}), (s.x, {})],
                    delay_s=3600)
    s.r2 = add_rule(stack, s.uid, s.source, [(s.ig, {"caption_template": "r2"})])
    s.r3 = add_rule(stack, s.uid, s.source, [(s.x2, {"hashtags": ["zebra"]})],
                    include=["zebra"], exclude=["SPOILER"], backfill=1)
    s.r4 = add_rule(stack, s.uid, s.source, [(s.yt2, {})], min_s=3600)
    s.r5 = add_rule(stack, s.uid, s.source, [(s.ig2, {})], enabled=0)
    s.v1 = record_video(stack, s.uid, s.source, account, "A Zebra crossing")
    s.v2 = record_video(stack, s.uid, s.source, account, "zebra spoiler")
    s.v3 = record_video(stack, s.uid, s.source, account, "old zebra", age_s=86400)
    wait_ready(stack, [s.v1, s.v2, s.v3])
    yield s
    stack.stop_worker()
    stack.start_worker()


def test_fanout_one_publication_per_destination(stack, scene):
    s = scene
    p1 = pubs_of(stack, s.v1)
    assert set(p1) == {s.ig, s.yt, s.x, s.x2}, p1
    assert p1[s.ig][1] == s.r1 and p1[s.ig][5] == {"caption_template": "r1 {description}"}
    assert p1[s.yt][3] == "youtube" and p1[s.x][3] == "x" and p1[s.x2][1] == s.r3
    assert all(p[2] == "pending" for p in p1.values())
    # r3 excludes the spoiler without case; r4 and r5 take nothing.
    assert set(pubs_of(stack, s.v2)) == {s.ig, s.yt, s.x}
    # The old video: only the backfilling rule takes it.
    assert set(pubs_of(stack, s.v3)) == {s.x2}
    owner = sql(stack, "SELECT DISTINCT user_id FROM publications WHERE video_id IN (%d, %d, %d)"
                % (s.v1, s.v2, s.v3))
    assert owner == [[str(s.uid)]]


def test_each_publication_has_its_publish_job(stack, scene):
    s = scene
    for vid in (s.v1, s.v2, s.v3):
        for conn, (pid, rule, _, _, job, _) in pubs_of(stack, vid).items():
            rows = sql(stack, "SELECT kind, unique_key, state, payload, user_id FROM jobs WHERE id = %d"
                       % job)
            assert rows, (pid, job)
            kind, key, state, payload, user = rows[0]
            assert kind == "publish.post" and key == "publish:%d" % pid
            assert json.loads(payload) == {"publication_id": pid}
            assert int(user) == s.uid
            # r1 waits an hour; r3 is due now.
            assert state == ("scheduled" if rule == s.r1 else "ready"), (rule, state)
            n = sql(stack, "SELECT COUNT(*) FROM jobs WHERE unique_key = 'publish:%d'" % pid)
            assert n == [["1"]]


def test_fanout_again_adds_nothing(stack, scene):
    s = scene
    before = pubs_of(stack, s.v1)
    jobs = int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE kind = 'publish.post'")[0][0])
    # Probe again: the video becomes ready a second time and fans out again.
    sql(stack, "UPDATE videos SET state = 'stored' WHERE id = %d" % s.v1)
    r = stack.ctl("jobs", "enqueue", "video.probe", "--payload", json.dumps({"video_id": s.v1}))
    assert r.returncode == 0, r.stderr
    wait_ready(stack, [s.v1])
    assert pubs_of(stack, s.v1) == before
    assert int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE kind = 'publish.post'")[0][0]) == jobs


def listing(browser, query):
    r = browser.api("GET", "/api/v1/posts" + query)
    assert r.status == 200, r
    return r.json()


def test_list_filters(stack, scene):
    s = scene
    mine = {p[0] for vid in (s.v1, s.v2, s.v3) for p in pubs_of(stack, vid).values()}
    assert len(mine) == 8
    every = listing(s.browser, "?limit=200")["data"]
    assert {p["id"] for p in every} == mine
    assert [p["id"] for p in every] == sorted(mine, reverse=True)

    def ids(query):
        return {p["id"] for p in listing(s.browser, query)["data"]}
    x = ids("?platform=x")
    assert len(x) == 4 and all(p["platform"] == "x" for p in every if p["id"] in x)
    assert ids("?video_id=%d" % s.v1) == {p[0] for p in pubs_of(stack, s.v1).values()}
    assert ids("?rule_id=%d" % s.r3) == {pubs_of(stack, s.v1)[s.x2][0], pubs_of(stack, s.v3)[s.x2][0]}
    assert ids("?connection_id=%d&platform=instagram" % s.ig) == {
        pubs_of(stack, s.v1)[s.ig][0], pubs_of(stack, s.v2)[s.ig][0]}
    assert ids("?state=pending") == mine
    assert ids("?state=published") == set()
    now_ms = int(time.time() * 1000)
    assert ids("?from=%d" % (now_ms + 3600000)) == set()
    assert ids("?to=%d" % (now_ms + 3600000)) == mine
    assert ids("?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z") == mine
    assert ids("?from=2100-01-01T00:00:00Z") == set()
    # Videos share the time filter: bounds past 2038 still work.
    vids = {v["id"] for v in s.browser.api(
        "GET", "/api/v1/videos?limit=200&to=2100-01-01T00:00:00Z").json()["data"]}
    assert {s.v1, s.v2, s.v3} <= vids
    assert s.browser.api("GET", "/api/v1/videos?from=2100-01-01T00:00:00Z").json()["data"] == []

    # Pages of three: disjoint, complete, the last without a cursor.
    seen, cursor = [], None
    while True:
        page = listing(s.browser, "?limit=3" + ("&cursor=" + cursor if cursor else ""))
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(mine, reverse=True)

    for bad in ("platform=myspace", "platform=tiktok", "state=done", "connection_id=abc",
                "rule_id=0", "video_id=-1", "from=yesterday", "to=2026-13-01T00:00:00Z",
                "limit=0", "cursor=x"):
        r = s.browser.api("GET", "/api/v1/posts?" + bad)
        assert r.status == 400, (bad, r)
        assert r.json()["error"]["code"] == "invalid_parameter"


def test_get_one_post(stack, scene):
    s = scene
    pid, rule, _, _, job, _ = pubs_of(stack, s.v1)[s.ig]
    r = s.browser.api("GET", "/api/v1/posts/%d" % pid)
    assert r.status == 200, r
    p = r.json()
    assert p["id"] == pid and p["video_id"] == s.v1 and p["rule_id"] == rule
    assert p["connection_id"] == s.ig and p["platform"] == "instagram" and p["state"] == "pending"
    assert p["settings"] == {"caption_template": "r1 {description}"}
    assert p["progress"] == {"sent": 0, "total": 0} and p["attempts"] == 0
    assert p["job_id"] == job and p["job"]["id"] == job and p["job"]["state"] == "scheduled"
    for key in ("caption", "title", "media_profile", "remote_id", "remote_url", "error_code",
                "last_error", "deferred_until", "started_at", "published_at"):
        assert p[key] is None, (key, p[key])
    assert p["created_at"].endswith("Z") and p["updated_at"].endswith("Z")
    assert "remote_state" not in p
    assert s.browser.api("GET", "/api/v1/posts/999999999").status == 404
    # A deleted rule shows as null.
    sql(stack, "UPDATE publications SET rule_id = NULL WHERE id = %d" % pubs_of(stack, s.v3)[s.x2][0])
    r = s.browser.api("GET", "/api/v1/posts/%d" % pubs_of(stack, s.v3)[s.x2][0])
    assert r.json()["rule_id"] is None


def test_video_shows_its_destinations(stack, scene):
    s = scene
    r = s.browser.api("GET", "/api/v1/videos/%d" % s.v1)
    assert r.status == 200, r
    dests = r.json()["destinations"]
    assert {d["connection_id"] for d in dests} == {s.ig, s.yt, s.x, s.x2}
    assert all(d["video_id"] == s.v1 and d["state"] == "pending" for d in dests)
    lst = s.browser.api("GET", "/api/v1/videos?connection_id=%d" % s.source).json()["data"]
    assert lst and all("destinations" not in v for v in lst)


def cancel_job(stack, job):
    sql(stack, "UPDATE jobs SET state = 'cancelled', active_key = NULL, finished_at = NOW(3)"
               " WHERE id = %d" % job)


def retry_audit(stack, pid):
    return sql(stack, "SELECT outcome FROM audit_log WHERE action = 'post.retry'"
                      " AND target_id = '%d' ORDER BY id" % pid)


def test_retry_rules(stack, scene):
    s = scene
    pid, _, _, _, job, _ = pubs_of(stack, s.v2)[s.x]
    # Its job is still queued.
    r = s.browser.api("POST", "/api/v1/posts/%d/retry" % pid, {})
    assert r.status == 409, r
    # Failed, its job gone: back to pending with a job due now.
    cancel_job(stack, job)
    sql(stack, "UPDATE publications SET state = 'failed', error_code = 'boom', last_error = 'boom'"
               " WHERE id = %d" % pid)
    r = s.browser.api("POST", "/api/v1/posts/%d/retry" % pid, {})
    assert r.status == 202, r
    body = r.json()
    new_job = body["job_id"]
    assert new_job != job and body["publication"]["state"] == "pending"
    assert body["publication"]["job_id"] == new_job and body["publication"]["error_code"] == "boom"
    rows = sql(stack, "SELECT state, unique_key FROM jobs WHERE id = %d" % new_job)
    assert rows == [["ready", "publish:%d" % pid]]
    # Now its new job is queued: a second retry conflicts.
    assert s.browser.api("POST", "/api/v1/posts/%d/retry" % pid, {}).status == 409
    # Published is final.
    cancel_job(stack, new_job)
    sql(stack, "UPDATE publications SET state = 'published', remote_id = 'r1' WHERE id = %d" % pid)
    r = s.browser.api("POST", "/api/v1/posts/%d/retry" % pid, {})
    assert r.status == 409, r
    assert sql(stack, "SELECT state FROM publications WHERE id = %d" % pid) == [["published"]]
    outcomes = [o[0] for o in retry_audit(stack, pid)]
    assert len(outcomes) == 4 and outcomes[1] != outcomes[0] and outcomes[0] == outcomes[2]
    assert s.browser.api("POST", "/api/v1/posts/999999999/retry", {}).status == 404


def test_another_user_sees_nothing(stack, scene):
    s = scene
    other, _ = new_browser(stack)
    pid = pubs_of(stack, s.v1)[s.yt][0]
    state = sql(stack, "SELECT state, job_id FROM publications WHERE id = %d" % pid)
    assert other.api("GET", "/api/v1/posts/%d" % pid).status == 404
    assert other.api("POST", "/api/v1/posts/%d/retry" % pid, {}).status == 404
    assert other.api("GET", "/api/v1/posts?limit=200").json()["data"] == []
    assert other.api("GET", "/api/v1/posts?video_id=%d" % s.v1).json()["data"] == []
    assert sql(stack, "SELECT state, job_id FROM publications WHERE id = %d" % pid) == state
    admin, _ = new_browser(stack, role="operator")
    assert admin.api("GET", "/api/v1/posts/%d" % pid).status == 200
    assert pid in {p["id"] for p in admin.api("GET", "/api/v1/posts?video_id=%d" % s.v1).json()["data"]}


def run_sweep(stack):
    r = stack.ctl("jobs", "enqueue", "publications.sweep")
    assert r.returncode == 0, r.stderr
    job = int(r.stdout.strip())

    def done():
        rows = sql(stack, "SELECT state, COALESCE(last_error, '') FROM jobs WHERE id = %d" % job)
        return rows[0] if rows[0][0] in ("succeeded", "dead", "failed") else None
    state, error = stack.wait_for("sweep job %d" % job, done, timeout=30, interval=0.3)
    assert state == "succeeded", (state, error)


def test_sweeper_fails_dead_and_requeues_orphans(stack, scene):
    s = scene
    dead_pid, _, _, _, dead_job, _ = pubs_of(stack, s.v2)[s.ig]
    orphan_pid, _, _, _, orphan_job, _ = pubs_of(stack, s.v2)[s.yt]
    sql(stack, "UPDATE jobs SET state = 'dead', active_key = NULL, finished_at = NOW(3), attempts = 8,"
               " last_error = 'the platform said no' WHERE id = %d" % dead_job)
    sql(stack, "DELETE FROM jobs WHERE id = %d" % orphan_job)
    run_sweep(stack)
    row = sql(stack, "SELECT state, error_code, last_error FROM publications WHERE id = %d" % dead_pid)
    assert row[0][0] == "failed" and row[0][1] == "gave_up", row
    assert "8 attempts" in row[0][2] and "the platform said no" in row[0][2], row
    alerts = sql(stack, "SELECT user_id, message FROM alert_events WHERE kind = 'publication.failed'"
                        " AND subject_id = %d" % dead_pid)
    assert len(alerts) == 1 and int(alerts[0][0]) == s.uid
    msg = json.loads(alerts[0][1])
    assert msg["publication_id"] == dead_pid and msg["video_id"] == s.v2
    assert msg["platform"] == "instagram" and msg["connection_id"] == s.ig
    assert msg["error_code"] == "gave_up"

    row = sql(stack, "SELECT state, job_id FROM publications WHERE id = %d" % orphan_pid)
    assert row[0][0] == "pending" and int(row[0][1]) != orphan_job
    job = sql(stack, "SELECT state, unique_key FROM jobs WHERE id = %s" % row[0][1])
    assert job == [["ready", "publish:%d" % orphan_pid]]

    # Nothing more to do: a second sweep changes neither.
    run_sweep(stack)
    assert sql(stack, "SELECT state, job_id FROM publications WHERE id = %d" % orphan_pid) == row
    assert len(sql(stack, "SELECT id FROM alert_events WHERE kind = 'publication.failed'"
                          " AND subject_id = %d" % dead_pid)) == 1
