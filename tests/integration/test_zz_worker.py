"""The worker supervisor (crosspost-worker) at work and under failure:
many jobs on many processes, kill -9 of a child and of the whole
supervisor, a MariaDB restart, graceful and fast stops, two supervisors
on one database, retries and the dead-letter queue, heartbeats and a
stalled child, and the job metrics.

Every test starts the supervisor with short settings of its own (FAST)
and stops it afterwards; the module puts the stack's default worker
back when it is done.  Each test looks only at the noop and sleep jobs
it enqueued (ids above a watermark), and deletes whatever of them is
left unfinished."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from authlib import ADMIN, admin_password, post_json, sign_in
from stack import BUILDDIR, metric_key, process_alive, stack_sql

# Leases, heartbeats and retries in hundreds of milliseconds, so that
# failures are noticed and healed within a test's patience.
FAST = {
    "CROSSPOST_JOB_LEASE": "4s",
    "CROSSPOST_WORKER_HEARTBEAT_INTERVAL": "500ms",
    "CROSSPOST_WORKER_STALE_AFTER": "2s",
    "CROSSPOST_WORKER_POLL_INTERVAL": "200ms",
    "CROSSPOST_WORKER_GRACEFUL_TIMEOUT": "5s",
    "CROSSPOST_SCHEDULER_INTERVAL": "50ms",
    "CROSSPOST_JOB_RETRY_BASE": "200ms",
    "CROSSPOST_JOB_RETRY_CAP": "1s",
}
TEST_KINDS = "kind IN ('noop','sleep')"


# -- SQL ------------------------------------------------------------------
def sql(stack, query):
    return stack_sql(stack, query)


def value(text):
    return None if text == "NULL" else text


def scalar(stack, query):
    rows = sql(stack, query)
    return value(rows[0][0]) if rows else None


def records(stack, query, cols):
    """Rows of query as dicts named by cols (NULL -> None)."""
    return [dict(zip(cols, (value(v) for v in row))) for row in sql(stack, query)]


def id_list(ids):
    return ",".join(str(int(i)) for i in ids)


def db_now(stack):
    return scalar(stack, "SELECT NOW(3)")


def seconds_since(stack, db_time, column="NOW(3)"):
    return float(scalar(stack, "SELECT TIMESTAMPDIFF(MICROSECOND, '%s', %s) / 1e6" % (db_time, column)))


# -- jobs -----------------------------------------------------------------
def enqueue(stack, kind, count=None, payload=None, queue=None):
    """crosspostctl jobs enqueue; the new id for a single job."""
    args = ["jobs", "enqueue", kind]
    if payload is not None:
        args += ["--payload", json.dumps(payload)]
    if count:
        args += ["--count", str(count)]
    if queue:
        args += ["--queue", queue]
    r = stack.ctl(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    if count:
        assert "enqueued %d jobs" % count in r.stdout, r.stdout
        return None
    numbers = re.findall(r"\d+", r.stdout)
    assert numbers, r.stdout
    return int(numbers[-1])


def job(stack, job_id):
    cols = ["id", "state", "attempts", "max_attempts", "last_error_class", "last_error",
            "owner", "claimed_at", "finished_at", "run_at"]
    rows = records(stack, "SELECT %s FROM jobs WHERE id = %d" % (",".join(cols), job_id), cols)
    assert len(rows) == 1, job_id
    j = rows[0]
    j["attempts"] = int(j["attempts"])
    return j


def attempts_of(stack, job_id):
    cols = ["attempt", "at", "outcome", "error_class", "error", "worker_pid"]
    return records(stack, "SELECT attempt, at, outcome, error_class, error, worker_pid FROM job_attempts "
                          "WHERE job_id = %d ORDER BY id" % job_id, cols)


# -- worker processes -----------------------------------------------------
PROC_COLS = ["id", "role", "pid", "state", "jobs_done", "heartbeat_age_s", "current_job_id"]


def supervisor_id(stack, master):
    v = scalar(stack, "SELECT id FROM workers WHERE role = 'supervisor' AND pid = %d "
                      "AND state <> 'stopped' ORDER BY id DESC LIMIT 1" % master)
    return int(v) if v else None


def processes(stack, sup_id, with_self=False):
    """Live (not stopped) rows of a supervisor's processes, from worker_status."""
    cond = "supervisor_id = %d" % sup_id
    if with_self:
        cond = "(%s OR id = %d)" % (cond, sup_id)
    rows = records(stack, "SELECT %s FROM worker_status WHERE %s ORDER BY id"
                          % (",".join(PROC_COLS), cond), PROC_COLS)
    for r in rows:
        r["pid"] = int(r["pid"])
        r["jobs_done"] = int(r["jobs_done"])
        r["heartbeat_age_s"] = float(r["heartbeat_age_s"])
    return rows


def worker_pids(stack, sup_id):
    return sorted(p["pid"] for p in processes(stack, sup_id) if p["role"] == "worker")


def wait_supervisor(stack, master, workers, timeout=30):
    """Wait until master's row and its scheduler and workers rows are up,
    each one a live process; the supervisor's workers.id."""
    def ready():
        if not process_alive(master):
            raise AssertionError("crosspost-worker %d exited; worker log:\n%s"
                                 % (master, stack.log("worker.log")[-3000:]))
        sid = supervisor_id(stack, master)
        if not sid:
            return None
        procs = processes(stack, sid)
        w = [p for p in procs if p["role"] == "worker" and process_alive(p["pid"])]
        s = [p for p in procs if p["role"] == "scheduler" and process_alive(p["pid"])]
        return sid if len(w) == workers and len(s) == 1 else None
    return stack.wait_for("%d workers of supervisor %d" % (workers, master), ready, timeout=timeout)


def queue_total(queues):
    return sum(int(part.split(":")[1]) for part in queues.split(","))


def wait_gone(pids, timeout):
    deadline = time.time() + timeout
    alive = pids
    while time.time() < deadline:
        alive = [p for p in pids if process_alive(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError("still running after %ss: %r" % (timeout, alive))


def wait_reaped(pids, timeout):
    """Wait until pids are gone from /proc, zombies included: scripts/stack
    takes a pid that still answers kill -0 for a running service."""
    deadline = time.time() + timeout
    left = pids
    while time.time() < deadline:
        left = [p for p in pids if os.path.exists("/proc/%d" % p)]
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError("not reaped after %ss: %r" % (timeout, left))


def mariadb_alive(stack):
    try:
        return process_alive(stack.pid("mysqld"))
    except (OSError, ValueError):
        return False


class Run:
    """One test's view: the jobs it enqueued (ids above a watermark), the
    supervisors it started; cleanup() stops them and drops leftovers."""

    def __init__(self, stack):
        self.stack = stack
        self.wm = int(scalar(stack, "SELECT COALESCE(MAX(id), 0) FROM jobs"))
        self.direct = []             # supervisors started without scripts/stack
        self.frozen = []             # processes the test stopped with SIGSTOP

    def where(self, extra=None):
        w = "id > %d AND %s" % (self.wm, TEST_KINDS)
        return w + (" AND (%s)" % extra if extra else "")

    def states(self, extra=None):
        return self.stack.jobs_by_state(self.where(extra))

    def ids(self, extra=None):
        return [int(r[0]) for r in sql(self.stack, "SELECT id FROM jobs WHERE %s ORDER BY id" % self.where(extra))]

    def wait_states(self, expected, timeout, extra=None):
        """Wait until the jobs (matching extra) are exactly in expected."""
        def done():
            return self.states(extra) == expected
        try:
            self.stack.wait_for("jobs %r" % (expected,), done, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError("jobs %s are %r, not %r after %ss; worker log tail:\n%s" % (
                extra or "", self.states(extra), expected, timeout,
                self.stack.log("worker.log")[-3000:]))

    def start(self, queues="default:2", **settings):
        env = dict(FAST)
        env["CROSSPOST_WORKER_QUEUES"] = queues
        env.update(settings)
        self.stack.start_worker(env=env)
        master = self.stack.worker_master()
        return master, wait_supervisor(self.stack, master, queue_total(queues))

    def start_direct(self, name, queues="default:2", **settings):
        """A second supervisor, as another host would run one: its own pid
        file and log, the same database."""
        env = dict(self.stack.env)
        env.update(FAST)
        env["CROSSPOST_WORKER_QUEUES"] = queues
        env["CROSSPOST_WORKER_PID_FILE"] = os.path.join(self.stack.var, "run", name + ".pid")
        env.update(settings)
        log = open(os.path.join(self.stack.var, "log", name + ".log"), "ab")
        try:
            p = subprocess.Popen([os.path.join(BUILDDIR, "crosspost-worker"), "--config", self.stack.conf],
                                 env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        finally:
            log.close()
        self.direct.append(p)
        return p.pid, wait_supervisor(self.stack, p.pid, queue_total(queues))

    def cleanup(self):
        for pid in self.frozen:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for p in self.direct:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        if not mariadb_alive(self.stack):
            self.stack.start("mariadb")
        self.stack.stop_worker()
        sql(self.stack, "DELETE FROM recurring_tasks WHERE name LIKE 'test.%%'")
        sql(self.stack, "DELETE FROM jobs WHERE %s AND state NOT IN ('succeeded','dead','cancelled')"
            % self.where())


@pytest.fixture(scope="module", autouse=True)
def own_worker(stack):
    """The tests run their own supervisors: stop the stack's, and start it
    again (default settings) at the end."""
    try:
        stack.stop_worker()
    except subprocess.CalledProcessError:
        pytest.fail("scripts/stack cannot stop the worker service")
    yield
    if not mariadb_alive(stack):
        stack.start("mariadb")
    stack.stop_worker()
    stack.start_worker()
    wait_supervisor(stack, stack.worker_master(), queue_total(configured_queues(stack)))


def configured_queues(stack):
    """worker_queues of the stack's configuration file, or the default."""
    with open(stack.conf) as f:
        for line in f:
            m = re.match(r'\s*worker_queues\s*=\s*"?([^"#\s]+)', line)
            if m:
                return m.group(1)
    return "default:2,media:2,publish:2,maintenance:1"


@pytest.fixture
def run(stack):
    r = Run(stack)
    yield r
    r.cleanup()


# -- 1. many jobs, many processes -------------------------------------------
def test_many_jobs_on_many_workers_each_run_once(stack, run):
    master, sid = run.start("default:4")
    t0 = time.time()
    enqueue(stack, "noop", count=2000)
    enqueue(stack, "sleep", count=200, payload={"ms": 20})
    run.wait_states({"succeeded": 2200}, timeout=90)
    elapsed = time.time() - t0
    n, total, low, high, bad_times = sql(stack, (
        "SELECT COUNT(*), SUM(attempts), MIN(attempts), MAX(attempts), "
        "SUM(claimed_at IS NULL OR finished_at IS NULL OR finished_at < claimed_at) "
        "FROM jobs WHERE %s") % run.where())[0]
    # One claim per job: none ran twice, at the same time or otherwise.
    assert (int(n), int(total), int(low), int(high), int(bad_times)) == (2200, 2200, 1, 1, 0)
    assert int(scalar(stack, "SELECT COUNT(*) FROM job_attempts WHERE job_id > %d" % run.wm)) == 0, \
        sql(stack, "SELECT job_id, outcome, error FROM job_attempts WHERE job_id > %d LIMIT 10" % run.wm)
    # The workers' own count, written with the heartbeats, adds up.
    stack.wait_for("jobs_done to add up to 2200",
                   lambda: sum(p["jobs_done"] for p in processes(stack, sid) if p["role"] == "worker") == 2200,
                   timeout=10)
    busy = [p for p in processes(stack, sid) if p["role"] == "worker" and p["jobs_done"] > 0]
    assert len(busy) >= 2, processes(stack, sid)
    assert stack.worker_master() == master
    print("2200 jobs on 4 workers in %.1fs" % elapsed)


# -- 2. kill -9 of a child mid-job ----------------------------------------------
def test_killed_child_job_runs_again(stack, run):
    master, sid = run.start("default:2")
    ids = [enqueue(stack, "sleep", payload={"ms": 3000}) for _ in range(2)]

    def held():
        rows = sql(stack, "SELECT id, pid FROM running_jobs WHERE id IN (%s) AND pid IS NOT NULL ORDER BY id"
                   % id_list(ids))
        return rows if len(rows) == 2 else None
    rows = stack.wait_for("both sleep jobs running", held, timeout=15)
    victim_job, victim = int(rows[0][0]), int(rows[0][1])
    other_job = int(rows[1][0])
    assert victim in stack.worker_children()
    os.kill(victim, signal.SIGKILL)
    killed_at = db_now(stack)
    wait_gone([victim], 5)

    run.wait_states({"succeeded": 2}, timeout=25)
    j = job(stack, victim_job)
    assert j["attempts"] == 2, j
    tries = attempts_of(stack, victim_job)
    assert len(tries) == 1, tries
    assert (tries[0]["attempt"], tries[0]["outcome"], tries[0]["error_class"]) == ("1", "lost", "lost"), tries
    assert int(tries[0]["worker_pid"]) == victim, tries
    assert "signal 9" in tries[0]["error"], tries
    # Released by the supervisor when it reaped the child, not when the
    # lease (4 s) ran out.
    assert seconds_since(stack, killed_at, "'%s'" % tries[0]["at"]) < 2.0, (killed_at, tries)
    assert job(stack, other_job)["attempts"] == 1
    assert attempts_of(stack, other_job) == []
    # The child was replaced, its row closed; the supervisor stayed.
    assert stack.worker_master() == master
    wait_supervisor(stack, master, 2)
    assert victim not in worker_pids(stack, sid)
    assert scalar(stack, "SELECT state FROM workers WHERE supervisor_id = %d AND pid = %d ORDER BY id DESC LIMIT 1"
                  % (sid, victim)) == "stopped"


# -- 3. kill -9 of the whole supervisor ---------------------------------------
def test_whole_supervisor_killed_then_started_again(stack, run):
    master, sid = run.start("default:2")
    sleepers = [enqueue(stack, "sleep", payload={"ms": 1500}) for _ in range(4)]
    enqueue(stack, "noop", count=200)

    def two_running():
        return len(sql(stack, "SELECT id FROM jobs WHERE id IN (%s) AND state = 'running'"
                       % id_list(sleepers))) == 2
    stack.wait_for("two sleep jobs running", two_running, timeout=15)
    kids = stack.worker_children()
    # All at once, as a machine crash would: the supervisor cannot react
    # to its children's deaths while it is stopped.
    os.kill(master, signal.SIGSTOP)
    for k in kids:
        os.kill(k, signal.SIGKILL)
    os.kill(master, signal.SIGKILL)
    wait_gone([master] + kids, 5)
    wait_reaped([master], 20)
    held = [int(r[0]) for r in sql(stack, "SELECT id FROM jobs WHERE %s" % run.where("state = 'running'"))]
    assert len(held) >= 2, run.states()

    master2, sid2 = run.start("default:2")
    assert master2 != master
    run.wait_states({"succeeded": 204}, timeout=40)
    for job_id in held:
        j = job(stack, job_id)
        assert j["attempts"] == 2, j
        tries = attempts_of(stack, job_id)
        assert [(t["outcome"], t["error_class"]) for t in tries] == [("lost", "lost")], tries
    others = [i for i in run.ids() if i not in held]
    assert int(scalar(stack, "SELECT MAX(attempts) FROM jobs WHERE id IN (%s)" % id_list(others))) == 1
    # The dead processes' rows were closed by the new supervisor.
    dead_pids = id_list([master] + kids)
    left = sql(stack, "SELECT id, role, pid, state FROM workers WHERE (id = %d OR supervisor_id = %d) "
                      "AND pid IN (%s) AND state <> 'stopped'" % (sid, sid, dead_pids))
    assert left == [], left


# -- 4. MariaDB restarted under the workers -----------------------------------
def test_workers_ride_out_a_mariadb_restart(stack, run):
    # A lease long enough to outlast the outage: nothing should be lost.
    master, sid = run.start("default:2", CROSSPOST_JOB_LEASE="20s")
    kids = stack.worker_children()
    enqueue(stack, "sleep", count=60, payload={"ms": 100})
    enqueue(stack, "noop", count=500)

    def some_done():
        return run.states().get("succeeded", 0) >= 5
    stack.wait_for("the first jobs done", some_done, timeout=15)
    stack.stop("mariadb")
    try:
        time.sleep(1.0)
    finally:
        stack.start("mariadb")
    run.wait_states({"succeeded": 560}, timeout=60)
    n, total, high = sql(stack, "SELECT COUNT(*), SUM(attempts), MAX(attempts) FROM jobs WHERE %s" % run.where())[0]
    assert (int(n), int(total), int(high)) == (560, 560, 1)
    assert int(scalar(stack, "SELECT COUNT(*) FROM job_attempts WHERE job_id > %d" % run.wm)) == 0
    # Every process reconnected by itself.
    assert stack.worker_master() == master and process_alive(master)
    assert stack.worker_children() == kids, stack.log("worker.log")[-3000:]
    stack.wait_for("fresh heartbeats after the restart",
                   lambda: all(p["heartbeat_age_s"] < 2 for p in processes(stack, sid, with_self=True)),
                   timeout=10)


# -- 5. graceful and fast stops ---------------------------------------------
def running_ids(stack, ids):
    return [int(r[0]) for r in sql(stack, "SELECT id FROM jobs WHERE id IN (%s) AND state = 'running' "
                                          "ORDER BY id" % id_list(ids))]


def wait_running(stack, ids, n, timeout=15):
    """Wait until n of ids are running; their ids."""
    def check():
        r = running_ids(stack, ids)
        return r if len(r) == n else None
    return stack.wait_for("%d jobs running" % n, check, timeout=timeout, interval=0.05)


def test_graceful_stop_then_fast_stop(stack, run):
    master, sid = run.start("default:2", CROSSPOST_WORKER_GRACEFUL_TIMEOUT="10s")
    ids = [enqueue(stack, "sleep", payload={"ms": 1500}) for _ in range(6)]
    running = wait_running(stack, ids, 2)
    kids = stack.worker_children()
    t0 = time.time()
    stack.signal_worker(signal.SIGTERM)
    wait_gone([master] + kids, 15)
    took = time.time() - t0
    assert took < 8, took
    for i in ids:
        j = job(stack, i)
        if i in running:
            # Finished, not cut short.
            assert (j["state"], j["attempts"]) == ("succeeded", 1), j
        else:
            assert (j["state"], j["attempts"]) == ("ready", 0), j
        assert [t for t in attempts_of(stack, i) if t["outcome"] != "released"] == [], attempts_of(stack, i)
    assert sql(stack, "SELECT id, role, state FROM workers WHERE (id = %d OR supervisor_id = %d) "
                      "AND state <> 'stopped'" % (sid, sid)) == []

    # Fast stop: long jobs are interrupted and handed back at once.
    sql(stack, "DELETE FROM jobs WHERE id IN (%s) AND state = 'ready'" % id_list(ids))
    longs = [enqueue(stack, "sleep", payload={"ms": 20000}) for _ in range(3)]
    master, sid = run.start("default:2")
    wait_running(stack, longs, 2)
    time.sleep(0.3)
    kids = stack.worker_children()
    t0 = time.time()
    stack.signal_worker(signal.SIGINT)
    wait_gone([master] + kids, 10)
    took = time.time() - t0
    assert took < 3, "fast stop took %.1fs" % took
    for i in longs:
        j = job(stack, i)
        assert (j["state"], j["attempts"]) == ("ready", 0), j
        assert [t for t in attempts_of(stack, i) if t["outcome"] != "released"] == [], attempts_of(stack, i)


# -- 6. two supervisors on one database --------------------------------------
def test_two_supervisors_share_the_queue(stack, run):
    master1, sid1 = run.start("default:2")
    master2, sid2 = run.start_direct("worker2", "default:2")
    interval_s = 1.0
    enqueue(stack, "noop", count=3000)
    registered = db_now(stack)
    sql(stack, "INSERT INTO recurring_tasks (name, kind, queue, interval_ms, payload, enabled, next_run_at) "
               "VALUES ('test.tick', 'noop', 'default', %d, '{}', 1, '%s')" % (interval_s * 1000, registered))
    run.wait_states({"succeeded": 3000}, timeout=90, extra="unique_key IS NULL")
    if seconds_since(stack, registered) < 5:
        time.sleep(5 - seconds_since(stack, registered))
    sql(stack, "UPDATE recurring_tasks SET enabled = 0 WHERE name = 'test.tick'")
    elapsed = seconds_since(stack, registered)
    time.sleep(0.3)          # a run of recurring_run_due begun before the update ends

    ticks = records(stack, "SELECT id, unique_key, TIMESTAMPDIFF(MICROSECOND, '%s', created_at) / 1e6 "
                           "FROM jobs WHERE %s ORDER BY created_at" % (
                               registered, run.where("unique_key LIKE 'recurring:test.tick%'")),
                    ["id", "unique_key", "t"])
    assert ticks, "the recurring task never ran"
    assert all(t["unique_key"].startswith("recurring:test.tick") for t in ticks)
    # One job per due time, not one per scheduler.  (Fewer is allowed: a
    # run is skipped while the previous tick waits behind the noops.)
    assert len(ticks) <= int(elapsed / interval_s) + 1, (elapsed, ticks)
    assert len(ticks) >= 2, (elapsed, ticks)
    times = [float(t["t"]) for t in ticks]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= interval_s / 2 for g in gaps), times

    total = 3000 + len(ticks)
    run.wait_states({"succeeded": total}, timeout=15)
    n, spent, high = sql(stack, "SELECT COUNT(*), SUM(attempts), MAX(attempts) FROM jobs WHERE %s" % run.where())[0]
    assert (int(n), int(spent), int(high)) == (total, total, 1)
    assert int(scalar(stack, "SELECT COUNT(*) FROM job_attempts WHERE job_id > %d" % run.wm)) == 0

    def done_by(sid):
        return sum(p["jobs_done"] for p in processes(stack, sid) if p["role"] == "worker")
    stack.wait_for("jobs_done of both supervisors to add up to %d" % total,
                   lambda: done_by(sid1) + done_by(sid2) == total, timeout=10)
    assert done_by(sid1) > 0 and done_by(sid2) > 0, (done_by(sid1), done_by(sid2))
    # Neither supervisor took the other's live processes for dead.
    for master, sid in ((master1, sid1), (master2, sid2)):
        assert process_alive(master)
        assert len(worker_pids(stack, sid)) == 2


# -- 7. retries, the dead-letter queue and manual retry -------------------------
def admin_headers(stack):
    s = sign_in(stack, ADMIN, admin_password(stack))
    return {"Authorization": "Bearer %s" % s.access}


def dead_list(stack, headers):
    """Every dead noop job the API lists (following the cursor)."""
    seen, path = [], "/api/v1/jobs/dead?queue=default&kind=noop&limit=100"
    for _ in range(20):
        r = stack.get(path, headers=headers)
        assert r.status == 200, r
        body = r.json()
        seen += body["data"]
        if not body.get("next_cursor"):
            break
        path = "/api/v1/jobs/dead?queue=default&kind=noop&limit=100&cursor=%s" % body["next_cursor"]
    return seen


def test_retries_backoff_dead_letter_and_manual_retry(stack, run):
    # Enqueued before the worker starts, so max_attempts can be set first.
    transient = [enqueue(stack, "noop", payload={"fail": "transient", "message": "boom %d" % i})
                 for i in range(8)]
    sql(stack, "UPDATE jobs SET max_attempts = 4 WHERE id IN (%s)" % id_list(transient))
    permanent = enqueue(stack, "noop", payload={"fail": "permanent", "message": "never"})
    limited = enqueue(stack, "noop", payload={"fail": "rate_limited", "retry_after_ms": 600000})
    limited_short = enqueue(stack, "noop", payload={"fail": "rate_limited", "retry_after_ms": 300})
    recovering = enqueue(stack, "noop", payload={"fail": "transient", "fail_attempts": 2})
    run.start("default:2")

    def settled():
        return (run.states("id IN (%s)" % id_list(transient + [permanent])) == {"dead": 9}
                and job(stack, recovering)["state"] == "succeeded"
                and job(stack, limited)["state"] == "scheduled"
                and len(attempts_of(stack, limited_short)) >= 3)
    stack.wait_for("retries to settle", settled, timeout=30)

    # Transient: four attempts, the last one dead, gaps that follow the
    # full-jitter backoff (base 200 ms, cap 1 s: at most 0.2, 0.4, 0.8 s,
    # plus up to a scheduler tick and a claim).
    slack = 0.5
    gaps = {1: [], 2: [], 3: []}
    for i in transient:
        j = job(stack, i)
        assert (j["state"], j["attempts"], j["last_error_class"]) == ("dead", 4, "transient"), j
        assert j["last_error"] and "boom" in j["last_error"], j
        assert j["finished_at"], j
        tries = attempts_of(stack, i)
        assert [(t["attempt"], t["outcome"], t["error_class"]) for t in tries] == [
            ("1", "failed", "transient"), ("2", "failed", "transient"),
            ("3", "failed", "transient"), ("4", "dead", "transient")], tries
        at = [float(r[0]) for r in sql(stack, "SELECT UNIX_TIMESTAMP(at) FROM job_attempts WHERE job_id = %d "
                                              "ORDER BY id" % i)]
        for n in (1, 2, 3):
            gap = at[n] - at[n - 1]
            bound = min(1.0, 0.2 * 2 ** (n - 1))
            assert 0 <= gap <= bound + slack, (i, n, gap, at)
            gaps[n].append(gap)
    mean = {n: sum(g) / len(g) for n, g in gaps.items()}
    assert mean[3] > mean[1], gaps                              # growing
    assert max(gaps[3]) - min(gaps[3]) > 0.05, gaps               # jittered, not lock-step
    # Each death raised one alert.
    for i in transient + [permanent]:
        assert int(scalar(stack, "SELECT COUNT(*) FROM alert_events WHERE kind = 'job.dead' AND subject_id = %d"
                                 % i)) == 1, i
    dead_view = {int(r[0]) for r in sql(stack, "SELECT id FROM dead_jobs WHERE id > %d" % run.wm)}
    assert dead_view == set(transient + [permanent])

    # Permanent: dead at once.
    j = job(stack, permanent)
    assert (j["state"], j["attempts"], j["last_error_class"]) == ("dead", 1, "permanent"), j
    assert [(t["outcome"], t["error_class"]) for t in attempts_of(stack, permanent)] == [("dead", "permanent")]

    # Rate limited: deferred to the reset time, no attempt spent.
    j = job(stack, limited)
    assert j["attempts"] == 0, j
    tries = attempts_of(stack, limited)
    assert [(t["outcome"], t["error_class"]) for t in tries] == [("deferred", "rate_limited")], tries
    wait = float(scalar(stack, "SELECT TIMESTAMPDIFF(MICROSECOND, '%s', run_at) / 1e6 FROM jobs WHERE id = %d"
                               % (tries[0]["at"], limited)))
    assert 599 <= wait <= 601, wait
    j = job(stack, limited_short)
    assert j["attempts"] <= 1 and j["state"] in ("scheduled", "ready", "running"), j
    assert {(t["outcome"], t["error_class"]) for t in attempts_of(stack, limited_short)} == \
        {("deferred", "rate_limited")}

    # Transient that recovers: succeeded on its third attempt.
    j = job(stack, recovering)
    assert (j["state"], j["attempts"]) == ("succeeded", 3), j
    assert [t["outcome"] for t in attempts_of(stack, recovering)] == ["failed", "failed"]

    # The API shows the dead-letter queue and brings a job back.
    run.stack.stop_worker()
    headers = admin_headers(stack)
    listed = {j["id"]: j for j in dead_list(stack, headers)}
    for i in transient + [permanent]:
        key = i if i in listed else str(i)
        assert key in listed, (i, sorted(listed)[:20])
        assert listed[key]["state"] == "dead"
    one = listed[transient[0] if transient[0] in listed else str(transient[0])]
    assert one["attempts"] == 4 and one["last_error_class"] == "transient", one
    r = stack.get("/api/v1/jobs/%d" % transient[0], headers=headers)
    assert r.status == 200, r
    detail = r.json()
    # The attempt count is "attempts"; the list of failed attempts is
    # "history" (the design named both "attempts").
    history = detail["attempts"] if isinstance(detail["attempts"], list) else detail["history"]
    assert [a["outcome"] for a in history] == ["failed", "failed", "failed", "dead"], detail
    assert all(a["worker"]["pid"] for a in history), history
    r = post_json(stack, "/api/v1/jobs/%d/retry" % transient[0], {}, headers=headers)
    assert r.status == 200, r
    assert (r.json()["state"], r.json()["attempts"]) == ("ready", 0), r.json()
    j = job(stack, transient[0])
    assert (j["state"], j["attempts"], j["finished_at"]) == ("ready", 0, None), j
    r = post_json(stack, "/api/v1/jobs/%d/retry" % recovering, {}, headers=headers)
    assert r.status == 409 and r.json()["error"]["code"] == "job_state", r


# -- 8. heartbeats and a hung child ----------------------------------------------
def test_heartbeats_and_a_stalled_child(stack, run):
    # A child whose liveness tick is older than worker_stale_after gets no
    # more heartbeats; one silent for worker_stall_timeout is killed.
    master, sid = run.start("default:2", CROSSPOST_WORKER_STALE_AFTER="1s",
                            CROSSPOST_WORKER_STALL_TIMEOUT="3s")
    # Every live process heartbeats (500 ms), the supervisor too.
    first = {p["id"]: p for p in processes(stack, sid, with_self=True)}
    assert {p["role"] for p in first.values()} == {"supervisor", "scheduler", "worker"}, first
    stack.wait_for("fresh heartbeats",
                   lambda: all(p["heartbeat_age_s"] < 0.9 for p in processes(stack, sid, with_self=True)),
                   timeout=5)
    stamps = dict(sql(stack, "SELECT id, last_heartbeat_at FROM workers WHERE id = %d OR supervisor_id = %d"
                             % (sid, sid)))
    time.sleep(1.2)
    later = dict(sql(stack, "SELECT id, last_heartbeat_at FROM workers WHERE id = %d OR supervisor_id = %d"
                            % (sid, sid)))
    assert all(later[k] > stamps[k] for k in stamps), (stamps, later)

    # A hung child (SIGSTOP) goes stale, then is killed and replaced.
    victim = worker_pids(stack, sid)[0]
    run.frozen.append(victim)
    os.kill(victim, signal.SIGSTOP)
    t0 = time.time()

    oldest = 0.0                     # the stopped child's heartbeat age, at most
    deadline = t0 + 15
    while process_alive(victim) and time.time() < deadline:
        for p in processes(stack, sid):
            if p["pid"] == victim:
                oldest = max(oldest, p["heartbeat_age_s"])
        time.sleep(0.1)
    took = time.time() - t0
    assert not process_alive(victim), "the stopped child was not killed in 15s"
    # Its row stopped being refreshed (the interval is 0.5 s) before it was killed.
    assert oldest > 1.0, oldest
    assert took >= 2.5, "killed %.1fs after it stopped; the stall timeout is 3s" % took
    wait_supervisor(stack, master, 2)
    assert victim not in worker_pids(stack, sid)
    assert scalar(stack, "SELECT state FROM workers WHERE supervisor_id = %d AND pid = %d ORDER BY id DESC LIMIT 1"
                  % (sid, victim)) == "stopped"
    assert stack.worker_master() == master
    # And work goes on.
    enqueue(stack, "noop", count=50)
    run.wait_states({"succeeded": 50}, timeout=15)


# -- 9. metrics ---------------------------------------------------------------------
def test_metrics_count_the_supervisors_work(stack, run):
    master, sid = run.start("default:2")
    enqueue(stack, "noop", count=300)
    enqueue(stack, "sleep", count=20, payload={"ms": 5})
    run.wait_states({"succeeded": 320}, timeout=30)
    noop = metric_key("crosspost_jobs_finished_total", queue="default", kind="noop", outcome="succeeded")
    sleep = metric_key("crosspost_jobs_finished_total", queue="default", kind="sleep", outcome="succeeded")

    def counted():
        m = stack.metrics()
        return m if (m.get(noop), m.get(sleep)) == (300, 20) else None
    try:
        m = stack.wait_for("the finished counters", counted, timeout=10)
    except AssertionError:
        m = stack.metrics()
        raise AssertionError("finished_total noop %r sleep %r, expected 300 and 20"
                             % (m.get(noop), m.get(sleep)))
    assert m[metric_key("crosspost_workers_live", role="worker")] == 2, m
    assert m[metric_key("crosspost_workers_live", role="scheduler")] == 1, m
    assert m[metric_key("crosspost_workers_live", role="supervisor")] == 1, m
    assert m[metric_key("crosspost_jobs_claimed_total")] >= 320
    assert m.get(metric_key("crosspost_job_duration_seconds_count", queue="default", kind="noop")) == 300
    assert m.get(metric_key("crosspost_job_duration_seconds_bucket", queue="default", kind="sleep",
                            le="+Inf")) == 20
