"""The job queue through the API and crosspostctl, without depending on
worker processes: jobs are enqueued on queues no worker serves (or with a
delay), and SQL puts them in the states a test needs.  Users see and
touch only their own jobs; retry and cancel keep the state rules (409
job_state / unique_key_taken); the dead-letter list and its bulk retry
filter; every manual action is audited; bad input is a clear 400; the
workers list is for operators; /readyz counts workers and /metrics has
the job metric families, also while the database is down."""
import json
import re
import urllib.parse
import uuid

import pytest

from authlib import (ADMIN, admin_password, add_user, assert_error, audit_rows, quote, sign_in,
                     sql)
from stack import metric_key

JOBS = "/api/v1/jobs"
AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOB_KEYS = {"id", "queue", "kind", "state", "priority", "attempts", "max_attempts", "run_at",
            "created_at", "claimed_at", "finished_at", "unique_key", "payload", "last_error",
            "last_error_class", "progress", "user_id", "owner"}
WORKER_KEYS = {"id", "supervisor_id", "role", "host", "pid", "queues", "state", "started_at",
               "last_heartbeat_at", "heartbeat_age_s", "alive", "jobs_done", "current_job_id"}
# Rows this module writes into workers carry this host, so no supervisor
# of the stack takes them for its own processes.
FAKE_HOST = "jobs-api-test.invalid"


def fresh_queue(tag):
    """A queue no worker serves, new for each caller."""
    return ("t%s-%s" % (tag, uuid.uuid4().hex[:8]))[:32]


def call(stack, token, method, path, obj=None, raw=None):
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    body = raw
    if obj is not None:
        body = json.dumps(obj).encode()
    if body is not None or method == "POST":
        headers["Content-Type"] = "application/json"
        body = body if body is not None else b""
    return stack.request(method, path, body=body, headers=headers)


def get(stack, token, path, **query):
    return call(stack, token, "GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))


def page(stack, token, path=JOBS, **query):
    r = get(stack, token, path, **query)
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"data", "next_cursor"}, body
    for job in body["data"]:
        check_job(job)
    return body


def every(stack, token, path=JOBS, **query):
    items, cursor = [], None
    for _ in range(1000):
        q = dict(query)
        if cursor:
            q["cursor"] = cursor
        body = page(stack, token, path, **q)
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def check_job(job):
    assert set(job) == JOB_KEYS, job
    for key in ("run_at", "created_at"):
        assert AT.match(job[key]), job
    for key in ("claimed_at", "finished_at"):
        assert job[key] is None or AT.match(job[key]), job
    assert isinstance(job["payload"], dict), job


def ctl_ok(stack, *args):
    r = stack.ctl(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def enqueue(stack, kind="noop", user=None, queue=None, delay="1h", payload=None,
            unique_key=None, count=None):
    """crosspostctl jobs enqueue: the id (one job) or the output."""
    args = ["jobs", "enqueue", kind]
    if user:
        args += ["--user", str(user)]
    if queue:
        args += ["--queue", queue]
    if delay:
        args += ["--delay", delay]
    if payload is not None:
        args += ["--payload", json.dumps(payload)]
    if unique_key:
        args += ["--unique-key", unique_key]
    if count:
        args += ["--count", str(count)]
    out = ctl_ok(stack, *args).strip()
    return out if count else int(out)


def set_state(stack, job_id, state, error_class=None, error=None):
    """Put a job in state as queue.c would leave it."""
    finished = state in ("succeeded", "dead", "cancelled")
    sets = ["state = %s" % quote(state),
            "finished_at = %s" % ("NOW(3)" if finished else "NULL"),
            "active_key = %s" % ("NULL" if finished else "unique_key")]
    if error_class:
        sets.append("last_error_class = %s" % quote(error_class))
        sets.append("last_error = %s" % quote(error or "it failed"))
    if state == "dead":
        sets.append("attempts = max_attempts")
    if state in ("scheduled", "failed"):
        # Not due, so a scheduler never makes it ready under the test.
        sets.append("run_at = NOW(3) + INTERVAL 1 HOUR")
    sql(stack, "UPDATE jobs SET %s WHERE id = %d" % (", ".join(sets), job_id))


def job_state(stack, job_id):
    rows = sql(stack, "SELECT state FROM jobs WHERE id = %d" % job_id)
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def people(stack):
    """Sessions of the admin, an operator and two users A and B."""
    out = {"admin": sign_in(stack, ADMIN, admin_password(stack))}
    for name, role in (("operator", "operator"), ("a", None), ("b", None)):
        email, password, uid = add_user(stack, role=role)
        out[name] = sign_in(stack, email, password)
        out[name].email, out[name].id = email, uid
    yield out
    sql(stack, "DELETE FROM workers WHERE host = %s" % quote(FAKE_HOST))


def tok(people, who):
    return people[who].access


# -- one job --------------------------------------------------------------
def test_job_object_and_history(stack, people):
    a = people["a"]
    q = fresh_queue("obj")
    key = "obj-" + uuid.uuid4().hex
    job_id = enqueue(stack, user=a.email, queue=q, payload={"x": 1, "s": "é"}, unique_key=key)
    r = get(stack, a.access, "%s/%d" % (JOBS, job_id))
    assert r.status == 200, r
    job = r.json()
    history = job.pop("history")
    check_job(job)
    assert history == []
    assert (job["id"], job["queue"], job["kind"], job["state"]) == (job_id, q, "noop", "scheduled")
    assert (job["priority"], job["attempts"], job["max_attempts"]) == (0, 0, 5)
    assert job["payload"] == {"x": 1, "s": "é"} and job["unique_key"] == key
    assert job["user_id"] == a.id and job["owner"] is None and job["progress"] is None
    assert job["last_error"] is None and job["last_error_class"] is None
    assert job["run_at"] > job["created_at"]

    # Failed attempts, oldest first, with the worker that ran them.
    sql(stack, "INSERT INTO job_attempts (job_id, attempt, outcome, error_class, error, worker_host, "
               "worker_pid) VALUES (%d, 1, 'failed', 'transient', 'timed out', 'h1', 11), "
               "(%d, 2, 'lost', 'lost', 'worker process 12 killed by signal 9', 'h1', 12), "
               "(%d, 2, 'deferred', 'rate_limited', '', '', NULL)" % (job_id, job_id, job_id))
    history = get(stack, a.access, "%s/%d" % (JOBS, job_id)).json()["history"]
    assert [(h["attempt"], h["outcome"], h["error_class"]) for h in history] == \
        [(1, "failed", "transient"), (2, "lost", "lost"), (2, "deferred", "rate_limited")]
    assert history[0]["worker"] == {"host": "h1", "pid": 11} and history[0]["error"] == "timed out"
    assert history[2]["worker"] is None
    assert all(set(h) == {"attempt", "at", "outcome", "error_class", "error", "worker"} and
               AT.match(h["at"]) for h in history)


def test_running_job_names_its_owner(stack, people):
    q = fresh_queue("own")
    job_id = enqueue(stack, queue=q)
    sql(stack, "INSERT INTO workers (role, host, pid, queues) VALUES ('worker', %s, 4242, %s)"
        % (quote(FAKE_HOST), quote(q)))
    wid = int(sql(stack, "SELECT MAX(id) FROM workers WHERE host = %s" % quote(FAKE_HOST))[0][0])
    sql(stack, "UPDATE jobs SET state = 'running', owner = %d, lease_token = 1, attempts = 1, "
               "claimed_at = NOW(3), lease_expires_at = NOW(3) + INTERVAL 30 SECOND, "
               "progress_done = 5, progress_total = 10 WHERE id = %d" % (wid, job_id))
    job = get(stack, tok(people, "operator"), "%s/%d" % (JOBS, job_id)).json()
    assert job["state"] == "running" and AT.match(job["claimed_at"])
    assert job["progress"] == {"done": 5, "total": 10}
    owner = job["owner"]
    assert set(owner) == {"worker_id", "host", "pid", "lease_expires_at"}
    assert (owner["worker_id"], owner["host"], owner["pid"]) == (wid, FAKE_HOST, 4242)
    assert AT.match(owner["lease_expires_at"])
    # Running jobs can be neither cancelled nor retried.
    r = call(stack, tok(people, "operator"), "POST", "%s/%d/cancel" % (JOBS, job_id))
    assert_error(r, 409, "job_state")
    r = call(stack, tok(people, "operator"), "POST", "%s/%d/retry" % (JOBS, job_id))
    assert_error(r, 409, "job_state")
    assert job_state(stack, job_id) == "running"
    sql(stack, "DELETE FROM jobs WHERE id = %d" % job_id)


def test_unknown_and_malformed_ids_are_not_found(stack, people):
    for path in ("/999999999999", "/0", "/abc", "/-1", "/01"):
        assert_error(get(stack, tok(people, "admin"), JOBS + path), 404, "not_found")
    for action in ("retry", "cancel"):
        assert_error(call(stack, tok(people, "admin"), "POST", "%s/999999999999/%s" % (JOBS, action)),
                     404, "not_found")


# -- scoping --------------------------------------------------------------
def test_users_see_only_their_jobs(stack, people):
    a, b = people["a"], people["b"]
    q = fresh_queue("scope")
    mine = [enqueue(stack, user=a.email, queue=q) for _ in range(2)]
    theirs = enqueue(stack, user=b.email, queue=q)
    system = enqueue(stack, queue=q)

    seen = [j["id"] for j in every(stack, a.access, queue=q)]
    assert seen == sorted(mine, reverse=True)
    assert all(j["user_id"] == a.id for j in every(stack, a.access))
    # Another user's job does not exist for them, whatever they try.
    for job_id in (theirs, system):
        assert_error(get(stack, a.access, "%s/%d" % (JOBS, job_id)), 404, "not_found")
        for action in ("retry", "cancel"):
            assert_error(call(stack, a.access, "POST", "%s/%d/%s" % (JOBS, job_id, action)),
                         404, "not_found")
    assert job_state(stack, theirs) == "scheduled"
    # Users may not filter by user, not even by themselves.
    for who in (b.id, a.id):
        assert_error(get(stack, a.access, JOBS, user=who), 403, "forbidden")

    # Operators and admins see every job and may filter by user.
    for staff in ("operator", "admin"):
        everyone = [j["id"] for j in every(stack, tok(people, staff), queue=q)]
        assert everyone == sorted(mine + [theirs, system], reverse=True)
        only_b = every(stack, tok(people, staff), queue=q, user=b.id)
        assert [j["id"] for j in only_b] == [theirs]


def test_unauthenticated_is_refused(stack):
    assert_error(stack.get(JOBS), 401, "unauthenticated")
    assert_error(stack.get("/api/v1/workers"), 401, "unauthenticated")


# -- lists ----------------------------------------------------------------
def test_filters_and_paging(stack, people):
    admin = tok(people, "admin")
    q = fresh_queue("filt")
    ids = [enqueue(stack, queue=q) for _ in range(3)]
    sleeper = enqueue(stack, kind="sleep", queue=q, payload={"ms": 1})
    set_state(stack, ids[0], "cancelled")
    set_state(stack, ids[1], "dead", "permanent", "no such video")

    assert [j["id"] for j in every(stack, admin, queue=q)] == sorted(ids + [sleeper], reverse=True)
    assert [j["id"] for j in every(stack, admin, queue=q, state="scheduled")] == [sleeper, ids[2]]
    assert [j["id"] for j in every(stack, admin, queue=q, kind="sleep")] == [sleeper]
    assert [j["id"] for j in every(stack, admin, queue=q, kind="noop", state="dead")] == [ids[1]]
    assert every(stack, admin, queue=q, kind="no.such_kind") == []
    assert [j["id"] for j in every(stack, admin, queue=q, error_class="permanent")] == [ids[1]]
    dead = every(stack, admin, queue=q, state="dead")[0]
    assert (dead["last_error_class"], dead["last_error"]) == ("permanent", "no such video")
    assert dead["finished_at"] is not None

    # from <= created_at < to, in UTC.
    created = sql(stack, "SELECT DATE_FORMAT(created_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ') FROM jobs "
                         "WHERE id = %d" % ids[2])[0][0]
    after = [j["id"] for j in every(stack, admin, queue=q, **{"from": created})]
    assert ids[2] in after and sleeper in after
    assert ids[2] not in [j["id"] for j in every(stack, admin, queue=q, to=created)]
    assert every(stack, admin, queue=q, **{"from": "9999-01-01T00:00:00Z"}) == []
    assert len(every(stack, admin, queue=q, **{"from": "2000-01-01T00:00:00Z",
                                                "to": "9999-01-01T00:00:00Z"})) == 4

    # Newest first, one page at a time, nothing twice.
    first = page(stack, admin, queue=q, limit=3)
    assert [j["id"] for j in first["data"]] == sorted(ids + [sleeper], reverse=True)[:3]
    assert first["next_cursor"] == str(first["data"][-1]["id"])
    rest = page(stack, admin, queue=q, limit=3, cursor=first["next_cursor"])
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    assert [j["id"] for j in every(stack, admin, queue=q, limit=1)] == sorted(ids + [sleeper],
                                                                             reverse=True)


BAD_QUERIES = [
    "state=bogus", "state=DEAD", "state=", "state=ready&state=dead", "queue=Bad", "queue=a%20b",
    "queue=" + "q" * 33, "kind=a%20b", "kind=" + "k" * 65, "kind=", "error_class=oops",
    "user=abc", "user=0", "user=-1", "from=yesterday", "from=2026-11-22T05:00:00",
    "to=2026-02-30T00:00:00Z", "from=2026-11-22T05:00:00%2B01:00", "limit=0", "limit=201",
    "limit=x", "cursor=abc", "cursor=0", "queue=%FF",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_filters_are_400(stack, people, query):
    for path in (JOBS, JOBS + "/dead"):
        if path.endswith("dead") and query.startswith("state="):
            continue
        r = call(stack, tok(people, "admin"), "GET", path + "?" + query)
        err = assert_error(r, 400, "invalid_parameter")
        name = query.split("=")[0]
        assert '"%s"' % name in err["message"], err


# -- cancel and retry -----------------------------------------------------
def audits(stack, action, job_id):
    return audit_rows(stack, "action = %s AND target_type = 'job' AND target_id = %s"
                      % (quote(action), quote(job_id)))


def test_cancel_rules(stack, people):
    a = people["a"]
    q = fresh_queue("cancel")
    job_id = enqueue(stack, user=a.email, queue=q)
    r = call(stack, a.access, "POST", "%s/%d/cancel" % (JOBS, job_id))
    assert r.status == 200, r
    job = r.json()
    check_job(job)
    assert job["state"] == "cancelled" and AT.match(job["finished_at"])
    # Succeeded and cancelled (and running, above) jobs cannot be cancelled.
    for state in ("cancelled", "succeeded"):
        set_state(stack, job_id, state)
        err = assert_error(call(stack, a.access, "POST", "%s/%d/cancel" % (JOBS, job_id)), 409, "job_state")
        assert state in err["message"]
    # Ready and failed jobs can be, and a dead one is discarded.
    for state in ("ready", "failed", "dead"):
        set_state(stack, job_id, state)
        assert call(stack, a.access, "POST", "%s/%d/cancel" % (JOBS, job_id)).status == 200

    rows = audits(stack, "job.cancel", job_id)
    assert [row["outcome"] for row in rows] == ["success", "failure", "failure",
                                                "success", "success", "success"]
    assert all(row["actor_id"] == str(a.id) and row["owner_id"] == str(a.id) for row in rows)
    assert rows[0]["detail"] == "scheduled -> cancelled" and rows[0]["request_id"]
    assert rows[1]["detail"] == "refused: cancelled"


def test_retry_rules(stack, people):
    op = tok(people, "operator")
    b = people["b"]
    q = fresh_queue("retry")
    job_id = enqueue(stack, user=b.email, queue=q)
    err = assert_error(call(stack, op, "POST", "%s/%d/retry" % (JOBS, job_id)), 409, "job_state")
    assert "scheduled" in err["message"]
    for state in ("dead", "failed", "cancelled"):
        set_state(stack, job_id, state, "transient")
        r = call(stack, op, "POST", "%s/%d/retry" % (JOBS, job_id))
        assert r.status == 200, r
        job = r.json()
        check_job(job)
        assert (job["state"], job["attempts"], job["finished_at"]) == ("ready", 0, None)
        # Ready, succeeded: not retryable.
        err = assert_error(call(stack, op, "POST", "%s/%d/retry" % (JOBS, job_id)), 409, "job_state")
        assert "ready" in err["message"]
    set_state(stack, job_id, "succeeded")
    assert_error(call(stack, op, "POST", "%s/%d/retry" % (JOBS, job_id)), 409, "job_state")

    rows = audits(stack, "job.retry", job_id)
    assert [row["outcome"] for row in rows].count("success") == 3
    assert all(row["owner_id"] == str(b.id) and row["actor_id"] == str(people["operator"].id)
               for row in rows)
    assert {row["detail"] for row in rows if row["outcome"] == "success"} == \
        {"dead -> ready", "failed -> ready", "cancelled -> ready"}


def test_retry_refused_when_the_unique_key_is_taken(stack, people):
    admin = tok(people, "admin")
    q = fresh_queue("key")
    key = "sync:" + uuid.uuid4().hex
    old = enqueue(stack, queue=q, unique_key=key)
    set_state(stack, old, "dead", "permanent")
    new = enqueue(stack, queue=q, unique_key=key)
    err = assert_error(call(stack, admin, "POST", "%s/%d/retry" % (JOBS, old)), 409, "unique_key_taken")
    assert str(old) in err["message"]
    assert job_state(stack, old) == "dead"
    assert audits(stack, "job.retry", old)[-1]["outcome"] == "failure"
    # Once the holder is finished, the old job can run again.
    set_state(stack, new, "cancelled")
    assert call(stack, admin, "POST", "%s/%d/retry" % (JOBS, old)).status == 200
    # crosspostctl refuses an enqueue with a held key, naming the holder.
    r = stack.ctl("jobs", "enqueue", "noop", "--queue", q, "--delay", "1h", "--unique-key", key)
    assert r.returncode == 1 and str(old) in r.stderr, r


# -- dead letters ---------------------------------------------------------
def test_dead_list_and_bulk_retry(stack, people):
    a, b = people["a"], people["b"]
    admin = tok(people, "admin")
    q = fresh_queue("dead")
    jobs = {}
    for name, user, cls in (("a_perm", a, "permanent"), ("a_auth", a, "auth"),
                            ("b_perm", b, "permanent"), ("sys_trans", None, "transient")):
        jobs[name] = enqueue(stack, user=user.email if user else None, queue=q,
                             kind="sleep" if name == "sys_trans" else "noop",
                             payload={"ms": 1} if name == "sys_trans" else None)
        set_state(stack, jobs[name], "dead", cls)
    alive = enqueue(stack, user=a.email, queue=q)

    dead = every(stack, admin, JOBS + "/dead", queue=q)
    assert [j["id"] for j in dead] == sorted(jobs.values(), reverse=True)
    assert all(j["state"] == "dead" for j in dead)
    assert [j["id"] for j in every(stack, admin, JOBS + "/dead", queue=q, error_class="permanent")] == \
        sorted([jobs["a_perm"], jobs["b_perm"]], reverse=True)
    assert [j["id"] for j in every(stack, admin, JOBS + "/dead", queue=q, kind="sleep")] == [jobs["sys_trans"]]
    # A user's dead letters are their own.
    assert [j["id"] for j in every(stack, a.access, JOBS + "/dead", queue=q)] == \
        sorted([jobs["a_perm"], jobs["a_auth"]], reverse=True)

    # A user's bulk retry touches their own dead jobs only.
    r = call(stack, a.access, "POST", JOBS + "/dead/retry", {"queue": q, "error_class": "permanent"})
    assert r.status == 200 and r.json() == {"retried": 1}, r
    assert job_state(stack, jobs["a_perm"]) == "ready"
    assert job_state(stack, jobs["a_auth"]) == "dead" and job_state(stack, jobs["b_perm"]) == "dead"
    # An operator's, everyone's that match, at most limit.
    r = call(stack, tok(people, "operator"), "POST", JOBS + "/dead/retry", {"queue": q, "limit": 2})
    assert r.json() == {"retried": 2}, r
    assert sum(job_state(stack, jobs[n]) == "dead" for n in ("a_auth", "b_perm", "sys_trans")) == 1
    r = call(stack, admin, "POST", JOBS + "/dead/retry", {"queue": q})
    assert r.json() == {"retried": 1}, r
    assert every(stack, admin, JOBS + "/dead", queue=q) == []
    assert job_state(stack, alive) == "scheduled"
    # No body is no filter, like {} (a user's own dead jobs).
    set_state(stack, jobs["a_auth"], "dead", "auth")
    r = call(stack, a.access, "POST", JOBS + "/dead/retry")
    assert r.status == 200 and r.json()["retried"] >= 1, r
    assert job_state(stack, jobs["a_auth"]) == "ready"

    rows = audit_rows(stack, "action = 'job.dead_retry' AND detail LIKE %s" % quote("%queue=" + q + "%"))
    assert len(rows) == 3
    assert rows[0]["actor_id"] == str(a.id) and rows[0]["owner_id"] == str(a.id)
    assert rows[0]["detail"].startswith("retried 1;") and "error_class=permanent" in rows[0]["detail"]
    assert rows[1]["owner_id"] == "NULL"


@pytest.mark.parametrize("body,status,code", [
    ({"limit": 0}, 400, "invalid_field"),
    ({"limit": 1001}, 400, "invalid_field"),
    ({"limit": "5"}, 400, "invalid_field"),
    ({"limit": 1.5}, 400, "invalid_field"),
    ({"queue": "Bad"}, 400, "invalid_field"),
    ({"queue": 7}, 400, "invalid_field"),
    ({"kind": "no spaces"}, 400, "invalid_field"),
    ({"error_class": "oops"}, 400, "invalid_field"),
    ({"state": "dead"}, 422, "unknown_field"),
    ([], 400, "invalid_body"),
    ("dead", 400, "invalid_body"),
])
def test_bad_dead_retry_bodies(stack, people, body, status, code):
    before = int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'")[0][0])
    r = call(stack, tok(people, "admin"), "POST", JOBS + "/dead/retry", body)
    assert_error(r, status, code)
    assert int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE state = 'dead'")[0][0]) == before


def test_routes_dead_is_not_an_id(stack, people):
    admin = tok(people, "admin")
    assert get(stack, admin, JOBS + "/dead").status == 200
    r = call(stack, admin, "DELETE", JOBS + "/dead")
    assert r.status == 405 and "GET" in r.headers.get("allow", ""), r
    r = call(stack, admin, "GET", JOBS + "/dead/retry")
    assert r.status == 405 and r.headers.get("allow") == "POST", r


# -- workers, readiness, metrics ------------------------------------------
def add_worker(stack, role, state="running", age_s=0, metrics=None, supervisor=None):
    sql(stack, "INSERT INTO workers (supervisor_id, role, host, pid, queues, state, last_heartbeat_at, "
               "stopped_at, metrics) VALUES (%s, %s, %s, %d, 'default', %s, NOW(3) - INTERVAL %d SECOND, "
               "%s, %s)" % (supervisor or "NULL", quote(role), quote(FAKE_HOST), 30000 + age_s,
                            quote(state), age_s, "NOW(3)" if state == "stopped" else "NULL",
                            quote(metrics) if metrics is not None else "NULL"))
    return int(sql(stack, "SELECT MAX(id) FROM workers WHERE host = %s" % quote(FAKE_HOST))[0][0])


def worker_rows(stack, token, **query):
    items, cursor = [], None
    while True:
        q = dict(query)
        if cursor:
            q["cursor"] = cursor
        r = get(stack, token, "/api/v1/workers", **q)
        assert r.status == 200, r
        body = r.json()
        assert set(body) == {"data", "next_cursor"}
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_workers_list_shapes_and_liveness(stack, people):
    op = tok(people, "operator")
    sup = add_worker(stack, "supervisor")
    live = add_worker(stack, "worker", supervisor=sup)
    stale = add_worker(stack, "worker", age_s=3600, supervisor=sup)
    stopped = add_worker(stack, "scheduler", state="stopped", supervisor=sup)

    assert_error(get(stack, tok(people, "a"), "/api/v1/workers"), 403, "forbidden")
    shown = {w["id"]: w for w in worker_rows(stack, op, limit=2)}
    for w in shown.values():
        assert set(w) == WORKER_KEYS, w
        assert AT.match(w["started_at"]) and AT.match(w["last_heartbeat_at"])
    assert {sup, live, stale} <= set(shown) and stopped not in shown
    assert shown[live]["alive"] is True and shown[stale]["alive"] is False
    assert shown[stale]["heartbeat_age_s"] >= 3599
    assert shown[live]["supervisor_id"] == sup and shown[sup]["supervisor_id"] is None
    assert (shown[live]["role"], shown[live]["host"], shown[live]["state"]) == ("worker", FAKE_HOST, "running")
    assert shown[live]["jobs_done"] == 0 and shown[live]["current_job_id"] is None
    ids = [w["id"] for w in worker_rows(stack, op)]
    assert ids == sorted(ids, reverse=True)

    everything = {w["id"]: w for w in worker_rows(stack, op, all=1)}
    assert stopped in everything and everything[stopped]["alive"] is False
    assert everything[stopped]["state"] == "stopped"
    assert_error(get(stack, op, "/api/v1/workers", all="yes"), 400, "invalid_parameter")

    # /readyz counts them and stays ready whatever they are.
    r = stack.get("/readyz")
    assert r.status == 200, r
    workers = r.json()["workers"]
    assert set(workers) == {"live", "stale"} and workers["live"] >= 2 and workers["stale"] >= 1

    out = ctl_ok(stack, "workers")
    assert FAKE_HOST in out and re.search(r"^%d\s" % stale, out, re.M) and \
        not re.search(r"^%d\s" % stopped, out, re.M)
    assert re.search(r"^%d\s" % stopped, ctl_ok(stack, "workers", "--all"), re.M)
    sql(stack, "DELETE FROM workers WHERE id IN (%d, %d, %d, %d)" % (sup, live, stale, stopped))


SNAPSHOT = {
    "v": 1,
    "finished": [{"queue": "QUEUE", "kind": "noop", "outcome": "succeeded", "n": 7}],
    "duration": [{"queue": "QUEUE", "kind": "noop",
                  "buckets": [7] + [0] * 16, "sum": 0.002, "count": 7}],
    "claim": {"buckets": [0, 3] + [0] * 15, "sum": 0.003, "count": 3, "jobs": 7},
    "counters": {"leases_reaped": 1, "jobs_promoted": 2, "released_on_exit": 3, "db_retries": 4},
}

FAMILIES = [
    "crosspost_jobs_finished_total counter", "crosspost_job_duration_seconds histogram",
    "crosspost_job_claim_seconds histogram", "crosspost_jobs_claimed_total counter",
    "crosspost_job_leases_reaped_total counter", "crosspost_jobs_promoted_total counter",
    "crosspost_job_claims_released_on_exit_total counter", "crosspost_job_db_retries_total counter",
    "crosspost_queue_jobs gauge", "crosspost_queue_oldest_ready_seconds gauge",
    "crosspost_dead_letter_jobs gauge", "crosspost_workers_live gauge",
    "crosspost_workers_stale gauge", "crosspost_jobs_metrics_up gauge",
]


def test_metrics(stack, people):
    q = fresh_queue("met")
    snap = json.loads(json.dumps(SNAPSHOT).replace("QUEUE", q))
    live = add_worker(stack, "supervisor", metrics=json.dumps(snap))
    twin = add_worker(stack, "supervisor", metrics=json.dumps(snap))
    stale = add_worker(stack, "supervisor", age_s=3600, metrics=json.dumps(snap))
    broken = add_worker(stack, "supervisor", metrics='{"v":1,"finished":"nope"}')
    for _ in range(3):
        enqueue(stack, queue=q)
    ready = enqueue(stack, queue=q)
    sql(stack, "UPDATE jobs SET state = 'ready', run_at = NOW(3) - INTERVAL 90 SECOND WHERE id = %d" % ready)
    dead = enqueue(stack, queue=q)
    set_state(stack, dead, "dead", "permanent")
    try:
        text = stack.get("/metrics").body.decode()
        for family in FAMILIES:
            assert "# TYPE %s\n" % family in text, family
        m = stack.metrics()
        # The two live supervisors' snapshots are summed; stale and broken ones are left out.
        assert m[metric_key("crosspost_jobs_finished_total", queue=q, kind="noop", outcome="succeeded")] == 14
        assert m[metric_key("crosspost_job_duration_seconds_bucket", queue=q, kind="noop", le="0.0005")] == 14
        assert m[metric_key("crosspost_job_duration_seconds_count", queue=q, kind="noop")] == 14
        assert m[metric_key("crosspost_jobs_claimed_total")] >= 14
        assert m[metric_key("crosspost_job_db_retries_total")] >= 8
        assert m[metric_key("crosspost_queue_jobs", queue=q, state="scheduled")] == 3
        assert m[metric_key("crosspost_queue_jobs", queue=q, state="ready")] == 1
        assert m[metric_key("crosspost_queue_jobs", queue=q, state="running")] == 0
        assert m[metric_key("crosspost_queue_jobs", queue=q, state="dead")] == 1
        assert m[metric_key("crosspost_queue_jobs", queue="default", state="ready")] >= 0
        assert m[metric_key("crosspost_queue_oldest_ready_seconds", queue=q)] >= 89
        assert m[metric_key("crosspost_dead_letter_jobs")] >= 1
        assert m[metric_key("crosspost_workers_live", role="supervisor")] >= 3
        assert m[metric_key("crosspost_workers_stale")] >= 1
        assert m[metric_key("crosspost_jobs_metrics_up")] == 1
    finally:
        sql(stack, "DELETE FROM workers WHERE id IN (%d, %d, %d, %d)" % (live, twin, stale, broken))
        sql(stack, "DELETE FROM jobs WHERE queue = %s" % quote(q))


# -- crosspostctl ---------------------------------------------------------
def test_ctl_jobs(stack, people):
    q = fresh_queue("ctl")
    a = people["a"]
    job_id = enqueue(stack, queue=q, user=a.id, payload={"k": "v"}, unique_key="ctl-" + q)
    assert enqueue(stack, queue=q, count=3) == "enqueued 3 jobs"
    assert int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE queue = %s" % quote(q))[0][0]) == 4

    listing = ctl_ok(stack, "jobs", "list", "--queue", q)
    lines = listing.strip().splitlines()
    assert lines[0].split()[:4] == ["id", "queue", "kind", "state"] and len(lines) == 5
    assert int(lines[-1].split()[0]) == job_id       # newest first
    assert len(ctl_ok(stack, "jobs", "list", "--queue", q, "--limit", "2").strip().splitlines()) == 3
    mine = ctl_ok(stack, "jobs", "list", "--user", a.email, "--queue", q).strip().splitlines()
    assert len(mine) == 2 and mine[1].split()[0] == str(job_id)
    assert len(ctl_ok(stack, "jobs", "list", "--queue", q, "--state", "dead").strip().splitlines()) == 1

    shown = ctl_ok(stack, "jobs", "show", str(job_id))
    assert re.search(r"^state\s+scheduled$", shown, re.M) and re.search(r"^user_id\s+%d$" % a.id, shown, re.M)
    assert '{"k":"v"}' in shown.replace(" ", "")

    assert "scheduled -> cancelled" in ctl_ok(stack, "jobs", "cancel", str(job_id))
    r = stack.ctl("jobs", "cancel", str(job_id))
    assert r.returncode == 1 and "cancelled" in r.stderr, r
    assert "cancelled -> ready" in ctl_ok(stack, "jobs", "retry", str(job_id))
    set_state(stack, job_id, "dead", "auth")
    assert ctl_ok(stack, "jobs", "retry", "--dead", "--queue", q, "--error-class", "auth").strip() == \
        "retried 1 dead job"
    assert job_state(stack, job_id) == "ready"
    r = stack.ctl("jobs", "show", "999999999999")
    assert r.returncode == 1 and "no job" in r.stderr

    rows = audits(stack, "job.cancel", job_id) + audits(stack, "job.retry", job_id)
    assert {(row["actor_label"], row["actor_id"], row["owner_id"], row["outcome"]) for row in rows} == \
        {("crosspostctl", "NULL", str(a.id), "success"), ("crosspostctl", "NULL", str(a.id), "failure")}
    assert audit_rows(stack, "action = 'job.dead_retry' AND actor_label = 'crosspostctl' AND detail LIKE %s"
                      % quote("%queue=" + q + "%"))
    assert audits(stack, "job.enqueue", job_id)[0]["actor_label"] == "crosspostctl"

    kinds = ctl_ok(stack, "jobs", "kinds")
    for kind in ("maintenance.prune_jobs", "maintenance.prune_workers", "maintenance.prune_audit",
                 "maintenance.prune_sessions", "noop", "sleep"):
        assert re.search(r"^%s\s" % re.escape(kind), kinds, re.M), kinds
    sql(stack, "DELETE FROM jobs WHERE queue = %s" % quote(q))


@pytest.mark.parametrize("args", [
    ["jobs"], ["jobs", "bogus"], ["jobs", "enqueue"], ["jobs", "enqueue", "no.such_kind"],
    ["jobs", "enqueue", "noop", "--delay", "soon"], ["jobs", "enqueue", "noop", "--count", "0"],
    ["jobs", "enqueue", "noop", "--payload", "[1]"], ["jobs", "enqueue", "noop", "--payload", "{"],
    ["jobs", "enqueue", "noop", "--queue", "Bad"], ["jobs", "enqueue", "noop", "--priority", "5000"],
    ["jobs", "enqueue", "noop", "--count", "2", "--unique-key", "k"],
    ["jobs", "enqueue", "noop", "--delay"], ["jobs", "list", "--state", "bogus"],
    ["jobs", "list", "--limit", "0"], ["jobs", "show"], ["jobs", "show", "x"],
    ["jobs", "retry", "--dead", "--error-class", "oops"], ["jobs", "cancel", "1", "2"],
    ["jobs", "kinds", "extra"], ["workers", "--bogus"],
])
def test_ctl_usage_errors(stack, args):
    before = int(sql(stack, "SELECT COUNT(*) FROM jobs")[0][0])
    r = stack.ctl(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stderr.startswith("crosspostctl: ") or r.stderr.startswith("usage:"), r.stderr
    assert int(sql(stack, "SELECT COUNT(*) FROM jobs")[0][0]) == before


def test_ctl_unknown_user(stack):
    r = stack.ctl("jobs", "enqueue", "noop", "--user", "nobody-%s@example.com" % uuid.uuid4().hex)
    assert r.returncode == 1 and "no user" in r.stderr, r


# -- the database away (last: it disturbs the stack) ----------------------
def test_zz_database_down(stack, people):
    admin = tok(people, "admin")
    stack.stop("mariadb")
    try:
        for path in (JOBS, JOBS + "/1", JOBS + "/dead", "/api/v1/workers"):
            assert_error(get(stack, admin, path), 503, "unavailable")
        for path in (JOBS + "/1/retry", JOBS + "/1/cancel", JOBS + "/dead/retry"):
            assert_error(call(stack, admin, "POST", path, {}), 503, "unavailable")
        r = stack.get("/metrics")
        assert r.status == 200, r
        text = r.body.decode()
        assert "crosspost_jobs_metrics_up 0\n" in text
        assert "crosspost_http_requests_total{" in text and "crosspost_queue_jobs{" not in text
    finally:
        stack.heal()
