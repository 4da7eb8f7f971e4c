#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crashloop.h"
#include "db.h"
#include "err.h"
#include "jobstats.h"
#include "log.h"
#include "sigflags.h"
#include "queue.h"
#include "runner.h"
#include "scheduler.h"
#include "shared.h"
#include "supervisor.h"

/* Children of one generation: the scheduler and the workers. */
#define GENERATION_MAX (SUPERVISOR_MAX_PROCESSES + 1)
/* Room for a few generations draining at once (reloads in a row). */
#define MAX_CHILDREN (4 * GENERATION_MAX)
#define FAST_STOP_GRACE_MS 5000         /* after INT, before KILL */
#define KILLED_WAIT_MS 60000            /* after KILL, before trying again */
#define PENDING_RELEASES_MAX 256
#define LOOP_WAIT_MAX_MS 1000
#define CHECK_EVERY_MS 100              /* stalled children and jobs past their timeout */
#define WHY_MAX 256                     /* why a process's jobs run again */

static volatile sig_atomic_t got_stop_graceful, got_stop_fast, got_reload, got_chld, got_reopen;

static void on_signal(int sig)
{
    switch (sig) {
    case SIGTERM:
    case SIGQUIT: got_stop_graceful = 1; break;
    case SIGINT: got_stop_fast = 1; break;
    case SIGHUP: got_reload = 1; break;
    case SIGCHLD: got_chld = 1; break;
    case SIGUSR1: got_reopen = 1; break;
    }
}

/* ------------------------------------------------------ configuration -- */

static int fail_with(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail_with(struct buf *err, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        buf_vprintf(err, fmt, ap);
        va_end(ap);
    }
    return CP_EINVAL;
}

int worker_queues_parse(const char *text, struct queue_processes *out, size_t max, size_t *n,
                        struct buf *err)
{
    const char *p = text;
    size_t count = 0;
    long total = 0;

    *n = 0;
    if (!text || !text[strspn(text, " \t")])
        return fail_with(err, "worker_queues is empty: name at least one queue, as queue:processes");
    for (;;) {
        char name[JOB_QUEUE_MAX + 2], *end;
        size_t len = 0;
        long procs;

        while (*p == ' ' || *p == '\t')
            p++;
        while (p[len] && p[len] != ':' && p[len] != ',' && p[len] != ' ' && p[len] != '\t')
            len++;
        if (len == 0 || len > JOB_QUEUE_MAX)
            return fail_with(err, "worker_queues: expected queue:processes pairs separated by commas, "
                                  "like default:2,maintenance:1");
        memcpy(name, p, len);
        name[len] = '\0';
        if (!job_queue_name_ok(name))
            return fail_with(err, "worker_queues: \"%s\" is not a queue name (a-z, 0-9, _ and -)", name);
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ':')
            return fail_with(err, "worker_queues: queue %s needs a process count, as %s:N", name, name);
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        errno = 0;
        procs = strtol(p, &end, 10);
        if (end == p || errno || procs < 1 || procs > SUPERVISOR_MAX_PROCESSES)
            return fail_with(err, "worker_queues: queue %s: the process count must be 1..%d", name,
                             SUPERVISOR_MAX_PROCESSES);
        p = end;
        for (size_t i = 0; i < count; i++)
            if (!strcmp(out[i].queue, name))
                return fail_with(err, "worker_queues: queue %s is named twice", name);
        if (count == max)
            return fail_with(err, "worker_queues: at most %zu queues", max);
        total += procs;
        if (total > SUPERVISOR_MAX_PROCESSES)
            return fail_with(err, "worker_queues: at most %d worker processes in all",
                             SUPERVISOR_MAX_PROCESSES);
        memcpy(out[count].queue, name, len + 1);
        out[count].processes = (int)procs;
        count++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',')
            return fail_with(err, "worker_queues: expected a comma after %s:%ld", name, procs);
        p++;
    }
    *n = count;
    return 0;
}

int supervisor_check_conf(const struct conf *c, struct buf *err)
{
    struct queue_processes q[SUPERVISOR_MAX_QUEUES];
    size_t n;
    int rc;

    rc = worker_queues_parse(c->worker_queues, q, SUPERVISOR_MAX_QUEUES, &n, err);
    if (rc)
        return rc;
    if (c->job_lease <= 2 * c->worker_heartbeat_interval)
        return fail_with(err, "job_lease (%lld ms) must be more than twice worker_heartbeat_interval "
                              "(%lld ms): leases would run out between heartbeats and jobs would run twice",
                         c->job_lease, c->worker_heartbeat_interval);
    return 0;
}

/* --------------------------------------------------------- the state -- */

enum child_role { CHILD_SCHEDULER, CHILD_WORKER };

enum stop_stage {
    STAGE_RUNNING,
    STAGE_TERM,              /* graceful stop asked */
    STAGE_INT,               /* fast stop asked */
    STAGE_KILL,              /* SIGKILL sent */
};

struct child {
    pid_t pid;
    enum child_role role;
    char queue[JOB_QUEUE_MAX + 1];
    unsigned generation;
    size_t slot;
    enum stop_stage stage;
    long long escalate_at;   /* ms: next stop stage unless it is gone */
    char killed_why[160];    /* why the supervisor killed it; "" = it did not */
};

/* A dead child whose jobs could not be given back yet (database away). */
struct pending_release {
    long long worker_id;
    long long running_id;                  /* see queue_release_owner() */
    char why[WHY_MAX];
};

enum sup_state { SUP_RUNNING, SUP_STOPPING };

struct supervisor {
    const char *config_path;
    struct conf **confp;
    struct db *db;
    struct shared *sh;
    struct jobstats *stats;
    long long id;                          /* this process's workers row */
    enum sup_state state;
    int fast;                              /* the stop is a fast one */
    unsigned generation;
    struct queue_processes queues[SUPERVISOR_MAX_QUEUES];
    size_t nqueues;
    struct child children[MAX_CHILDREN];
    size_t nchildren;
    unsigned char slot_busy[MAX_CHILDREN];
    struct crashloop crashes;
    long long next_heartbeat;
    long long next_check;
    long long next_wake_poll;
    long long max_job_id;                  /* the newest job id seen by the wake-up poll */
    int wake_trouble, heartbeat_trouble;
    struct pending_release pending[PENDING_RELEASES_MAX];
    size_t npending;
    unsigned long long db_retries_seen;
    sigset_t wait_mask;
};

static const struct conf *conf_of(const struct supervisor *s)
{
    return *s->confp;
}

static struct retry_policy policy_of(const struct supervisor *s)
{
    return (struct retry_policy){ conf_of(s)->job_retry_base, conf_of(s)->job_retry_cap };
}

static void count_db_retries(struct supervisor *s)
{
    unsigned long long n = db_tx_retries(s->db);

    if (n > s->db_retries_seen)
        jobstats_add(s->stats, JOBSTATS_DB_RETRIES, n - s->db_retries_seen);
    s->db_retries_seen = n;
}

static const char *role_name(enum child_role r)
{
    return r == CHILD_SCHEDULER ? "scheduler" : "worker";
}

/* ------------------------------------------------- releasing claims -- */

static int release_owner(struct supervisor *s, long long worker_id, long long running_id, const char *why)
{
    struct retry_policy p = policy_of(s);
    size_t n = 0;
    int rc;

    rc = workers_row_stop(s->db, worker_id);
    if (!rc)
        rc = queue_release_owner(s->db, worker_id, running_id, why, &p, &n);
    count_db_retries(s);
    if (rc)
        return rc;
    if (n) {
        jobstats_add(s->stats, JOBSTATS_RELEASED_ON_EXIT, n);
        log_warn("%zu jobs of worker %lld run again: %s", n, worker_id, why);
    }
    return 0;
}

/* Give a dead process's jobs back now, or remember to. */
static void release_or_remember(struct supervisor *s, long long worker_id, long long running_id,
                                const char *why)
{
    int rc = release_owner(s, worker_id, running_id, why);

    if (!rc)
        return;
    log_error("cannot release the jobs of worker %lld yet: %s; trying again every heartbeat", worker_id,
              cp_strerror(rc));
    if (s->npending == PENDING_RELEASES_MAX) {
        /* Their leases run out and the scheduler takes them back. */
        log_error("too many releases waiting; worker %lld's jobs wait for their leases to expire", worker_id);
        return;
    }
    s->pending[s->npending].worker_id = worker_id;
    s->pending[s->npending].running_id = running_id;
    snprintf(s->pending[s->npending].why, sizeof s->pending[s->npending].why, "%s", why);
    s->npending++;
}

static void retry_pending_releases(struct supervisor *s)
{
    size_t keep = 0;

    for (size_t i = 0; i < s->npending; i++) {
        if (release_owner(s, s->pending[i].worker_id, s->pending[i].running_id, s->pending[i].why) == 0)
            continue;
        s->pending[keep++] = s->pending[i];
    }
    s->npending = keep;
}

/* ----------------------------------------------------------- children -- */

static int count_current(const struct supervisor *s, enum child_role role, const char *queue)
{
    int n = 0;

    for (size_t i = 0; i < s->nchildren; i++) {
        const struct child *c = &s->children[i];

        if (c->generation == s->generation && c->role == role && c->stage == STAGE_RUNNING &&
            (!queue || !strcmp(c->queue, queue)))
            n++;
    }
    return n;
}

static void reset_signals_in_child(void)
{
    struct sigaction dfl;
    sigset_t none;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Fork one child; 0, or -1 when it could not (tried again later). */
static int spawn(struct supervisor *s, enum child_role role, const char *queue)
{
    struct worker_slot *slot;
    struct child *c;
    size_t si;
    pid_t pid, me = getpid();

    if (s->nchildren == MAX_CHILDREN)
        return -1;
    for (si = 0; si < MAX_CHILDREN && s->slot_busy[si]; si++)
        ;
    if (si == MAX_CHILDREN)
        return -1;
    slot = shared_slot(s->sh, si);
    slot_prepare(slot);
    pid = fork();
    if (pid < 0) {
        log_syserr("fork");
        crashloop_hold_until(&s->crashes, shared_now_ms() + 1000);
        return -1;
    }
    if (pid == 0) {
        int status;

        reset_signals_in_child();
        /* The supervisor's database connection is left alone: closing it
         * here would end the supervisor's session too. */
        if (role == CHILD_SCHEDULER) {
            struct scheduler_opts o = { conf_of(s), s->sh, slot, me };
            status = scheduler_main(&o);
        } else {
            struct runner_opts o = { conf_of(s), queue, s->sh, slot, me };
            status = runner_main(&o);
        }
        _exit(status);
    }
    slot_set_pid(slot, pid);
    s->slot_busy[si] = 1;
    c = &s->children[s->nchildren++];
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->role = role;
    snprintf(c->queue, sizeof c->queue, "%s", queue ? queue : "");
    c->generation = s->generation;
    c->slot = si;
    log_debug("started %s process %ld%s%s", role_name(role), (long)pid, queue ? " for queue " : "",
              queue ? queue : "");
    return 0;
}

/* Keep the current generation complete, unless a crash loop holds
 * respawns back (then one at a time). */
static void spawn_missing(struct supervisor *s)
{
    if (s->state != SUP_RUNNING || !crashloop_may_spawn(&s->crashes, shared_now_ms()))
        return;
    if (count_current(s, CHILD_SCHEDULER, NULL) < 1) {
        if (spawn(s, CHILD_SCHEDULER, NULL) || crashloop_throttled(&s->crashes))
            return;
    }
    for (size_t q = 0; q < s->nqueues; q++)
        while (count_current(s, CHILD_WORKER, s->queues[q].queue) < s->queues[q].processes) {
            if (spawn(s, CHILD_WORKER, s->queues[q].queue) || crashloop_throttled(&s->crashes))
                return;
        }
}

static void prune_crashes(struct supervisor *s)
{
    if (crashloop_prune(&s->crashes, shared_now_ms(), conf_of(s)->worker_crash_window))
        log_info("crash loop over; respawning at full speed");
}

static void note_crash(struct supervisor *s)
{
    const struct conf *c = conf_of(s);
    int backoff_ms;

    prune_crashes(s);
    backoff_ms = crashloop_note(&s->crashes, shared_now_ms(), c->worker_crash_window, c->worker_crash_limit);
    if (backoff_ms)
        log_error("worker processes are crashing: %d exits in %llds; next respawn in %d ms",
                  crashloop_exits(&s->crashes), c->worker_crash_window / 1000, backoff_ms);
}

/* Move a child to the next stop stage (or straight to `to`). */
static void stop_child(struct supervisor *s, struct child *c, enum stop_stage to)
{
    struct worker_slot *slot = shared_slot(s->sh, c->slot);
    long long t = shared_now_ms();

    if (to <= c->stage)
        return;
    c->stage = to;
    switch (to) {
    case STAGE_TERM:
        slot_request_stop(slot, SLOT_STOP_GRACEFUL);
        kill(c->pid, SIGTERM);
        c->escalate_at = t + conf_of(s)->worker_graceful_timeout;
        break;
    case STAGE_INT:
        slot_request_stop(slot, SLOT_STOP_FAST);
        kill(c->pid, SIGINT);
        c->escalate_at = t + FAST_STOP_GRACE_MS;
        break;
    default:
        kill(c->pid, SIGKILL);
        c->escalate_at = t + KILLED_WAIT_MS;
        break;
    }
}

static void kill_child(struct supervisor *s, struct child *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kill_child(struct supervisor *s, struct child *c, const char *fmt, ...)
{
    va_list ap;

    if (c->stage == STAGE_KILL)
        return;
    va_start(ap, fmt);
    vsnprintf(c->killed_why, sizeof c->killed_why, fmt, ap);
    va_end(ap);
    log_error("killing %s process %ld: %s", role_name(c->role), (long)c->pid, c->killed_why);
    stop_child(s, c, STAGE_KILL);
}

/* Stop children that were asked to and did not in time. */
static void escalate(struct supervisor *s)
{
    long long t = shared_now_ms();

    for (size_t i = 0; i < s->nchildren; i++) {
        struct child *c = &s->children[i];

        if (c->stage == STAGE_RUNNING || t < c->escalate_at)
            continue;
        if (c->stage == STAGE_TERM) {
            log_warn("%s process %ld still busy after %lld ms; asking it to give its jobs back",
                     role_name(c->role), (long)c->pid, conf_of(s)->worker_graceful_timeout);
            stop_child(s, c, STAGE_INT);
        } else if (c->stage == STAGE_INT) {
            log_warn("%s process %ld still running %d ms after a fast stop; killing it",
                     role_name(c->role), (long)c->pid, FAST_STOP_GRACE_MS);
            stop_child(s, c, STAGE_KILL);
        } else {
            /* Killed and still not reaped: say so, and try again. */
            log_error("%s process %ld survives SIGKILL", role_name(c->role), (long)c->pid);
            kill(c->pid, SIGKILL);
            c->escalate_at = t + KILLED_WAIT_MS;
        }
    }
}

static void stop_children(struct supervisor *s, enum stop_stage to, int only_old)
{
    for (size_t i = 0; i < s->nchildren; i++)
        if (!only_old || s->children[i].generation != s->generation)
            stop_child(s, &s->children[i], to);
    /* Idle workers sleep on the wake word: wake them to see the stop. */
    shared_wake_all(s->sh);
}

static void signal_children(struct supervisor *s, int sig)
{
    for (size_t i = 0; i < s->nchildren; i++)
        kill(s->children[i].pid, sig);
}

static void reap(struct supervisor *s)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct worker_slot *slot;
        struct child *c = NULL;
        char why[WHY_MAX];
        long long worker_id;
        int crashed;

        for (size_t i = 0; i < s->nchildren; i++)
            if (s->children[i].pid == pid)
                c = &s->children[i];
        if (!c)
            continue;
        slot = shared_slot(s->sh, c->slot);
        worker_id = slot_worker_id(slot);
        crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (WIFSIGNALED(status))
            snprintf(why, sizeof why, "worker process %ld killed by signal %d%s%s", (long)pid,
                     WTERMSIG(status), c->killed_why[0] ? ": " : "", c->killed_why);
        else
            snprintf(why, sizeof why, "worker process %ld exited with status %d", (long)pid,
                     WEXITSTATUS(status));
        if (crashed)
            log_error("%s (%s%s%s)", why, role_name(c->role), c->queue[0] ? " of queue " : "", c->queue);
        else
            log_info("%s process %ld exited", role_name(c->role), (long)pid);
        /* Marked stopped and its jobs back at once, not after their
         * leases; only the job it was running spends an attempt. */
        if (worker_id) {
            long long running_id = 0, deadline = 0;

            slot_job(slot, &running_id, &deadline);
            release_or_remember(s, worker_id, running_id, why);
        }
        if (crashed && s->state == SUP_RUNNING && c->generation == s->generation)
            note_crash(s);
        slot_set_pid(slot, 0);
        s->slot_busy[c->slot] = 0;
        *c = s->children[--s->nchildren];
    }
}

/* -------------------------------------------------------- heartbeats -- */

static int heartbeat_self(struct supervisor *s)
{
    struct buf metrics;
    int rc;

    buf_init(&metrics, JOBSTATS_JSON_MAX);
    rc = jobstats_to_json(s->stats, &metrics);
    if (rc) {
        buf_free(&metrics);
        return rc;
    }
    struct db_param p[] = {
        DB_STR(s->state == SUP_RUNNING ? "running" : "draining"),
        DB_BYTES(buf_str(&metrics), metrics.len),
        DB_I64(s->id),
    };
    rc = db_exec(s->db, "UPDATE workers SET last_heartbeat_at = NOW(3), state = ?, metrics = ? "
                        "WHERE id = ?", p, 3, NULL, NULL);
    buf_free(&metrics);
    return rc;
}

static int heartbeat_child(struct supervisor *s, struct child *c, const struct slot_view *v)
{
    int rc;
    struct db_param p[] = {
        DB_I64((long long)v->jobs_done),
        v->job_id ? DB_I64(v->job_id) : DB_NULL,
        DB_STR(c->stage == STAGE_RUNNING && c->generation == s->generation && s->state == SUP_RUNNING
                   ? "running" : "draining"),
        DB_I64(v->worker_id),
    };

    rc = db_exec(s->db, "UPDATE workers SET last_heartbeat_at = NOW(3), jobs_done = ?, current_job_id = ?, "
                        "state = ? WHERE id = ?", p, 4, NULL, NULL);
    if (!rc && v->nheld)
        rc = queue_heartbeat(s->db, v->worker_id, v->held, v->nheld, conf_of(s)->job_lease, NULL);
    return rc;
}

/* Kill children that stalled or whose job ran past its timeout. */
static void check_children(struct supervisor *s)
{
    const struct conf *conf = conf_of(s);
    long long t = shared_now_ms();

    for (size_t i = 0; i < s->nchildren; i++) {
        struct child *c = &s->children[i];
        struct worker_slot *slot = shared_slot(s->sh, c->slot);
        long long age, job_id, deadline;

        if (c->stage == STAGE_KILL)
            continue;
        age = t - slot_tick_ms(slot);
        if (age > conf->worker_stall_timeout) {
            kill_child(s, c, "no sign of life for %lld ms (worker_stall_timeout)", age);
            continue;
        }
        slot_job(slot, &job_id, &deadline);
        if (job_id && deadline && t > deadline)
            kill_child(s, c, "job %lld ran past the timeout of its kind", job_id);
    }
}

static void heartbeat(struct supervisor *s)
{
    const struct conf *conf = conf_of(s);
    struct slot_view *v = malloc(sizeof *v);
    long long t = shared_now_ms();
    int rc, failed = 0;

    if (!v)
        return;
    rc = heartbeat_self(s);
    failed |= rc != 0;
    for (size_t i = 0; i < s->nchildren; i++) {
        struct child *c = &s->children[i];

        if (c->stage == STAGE_KILL || slot_read(shared_slot(s->sh, c->slot), v))
            continue;
        /* A child that is not fresh gets no heartbeat: its row goes
         * stale and its leases run out, as they should for a hung one. */
        if (!v->worker_id || t - v->tick_ms > conf->worker_stale_after)
            continue;
        if (heartbeat_child(s, c, v)) {
            failed = 1;
            if (!rc)
                rc = CP_EUNAVAIL;
        }
    }
    free(v);
    if (s->npending)
        retry_pending_releases(s);
    count_db_retries(s);
    if (failed && !s->heartbeat_trouble)
        log_error("heartbeats cannot be recorded: %s; leases are renewed again once they can",
                  cp_strerror(rc));
    else if (!failed && s->heartbeat_trouble)
        log_info("heartbeats recorded again");
    s->heartbeat_trouble = failed;
}

/* ----------------------------------------------------------- wake-up -- */

/* 0 when the check ran (new jobs or not). */
static int wake_poll(struct supervisor *s)
{
    struct db_result *r = NULL;
    long long max_id = 0;
    int rc;

    rc = db_query(s->db, "SELECT MAX(id) FROM jobs", NULL, 0, &r);
    if (rc) {
        if (!s->wake_trouble)
            log_warn("new-job check failed: %s; idle workers poll every %lld ms meanwhile",
                     cp_strerror(rc), conf_of(s)->worker_poll_interval);
        s->wake_trouble = 1;
        return rc;
    }
    if (db_result_rows(r) == 1)
        db_result_i64(r, 0, 0, &max_id);    /* NULL (no jobs) leaves 0 */
    db_result_free(r);
    s->wake_trouble = 0;
    if (max_id > s->max_job_id) {
        s->max_job_id = max_id;
        shared_wake_all(s->sh);
    }
    return 0;
}

/* ------------------------------------------------- start, stop, reload -- */

/* Rows of this host's processes that are gone (their pid is not alive,
 * or they stopped heartbeating): mark them stopped, and run their jobs
 * again. */
static void recover_dead(struct supervisor *s)
{
    const struct conf *conf = conf_of(s);
    struct db_result *r = NULL;
    struct db_param p[] = { DB_STR(worker_host()), DB_I64(s->id) };
    int rc;

    rc = db_query(s->db, "SELECT id, pid, TIMESTAMPDIFF(MICROSECOND, last_heartbeat_at, NOW(3)) DIV 1000 "
                         "FROM workers WHERE host = ? AND state <> 'stopped' AND id <> ?",
                  p, 2, &r);
    if (rc) {
        log_error("cannot look for dead processes of this host: %s", cp_strerror(rc));
        return;
    }
    for (size_t i = 0; i < db_result_rows(r); i++) {
        long long id = 0, pid = 0, age_ms = 0;
        char why[WHY_MAX];
        int alive;

        if (db_result_i64(r, i, 0, &id) || db_result_i64(r, i, 1, &pid))
            continue;
        db_result_i64(r, i, 2, &age_ms);
        alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
        if (alive && age_ms <= conf->worker_stale_after)
            continue;
        if (!alive)
            snprintf(why, sizeof why, "worker process %lld was gone when the supervisor started", pid);
        else
            snprintf(why, sizeof why, "worker process %lld had not sent a heartbeat for %lld s", pid,
                     age_ms / 1000);
        log_warn("recovering worker %lld: %s", id, why);
        /* What it was running is not known: every job it held counts. */
        release_or_remember(s, id, -1, why);
    }
    db_result_free(r);
}

static void begin_stop(struct supervisor *s, int fast)
{
    if (s->state == SUP_STOPPING && (s->fast || !fast))
        return;
    s->state = SUP_STOPPING;
    s->fast |= fast;
    log_info("%s stop: %zu processes", fast ? "fast" : "graceful", s->nchildren);
    stop_children(s, fast ? STAGE_INT : STAGE_TERM, 0);
    s->next_heartbeat = 0;      /* show "draining" at once */
}

static int parse_queues(struct supervisor *s, const struct conf *c)
{
    struct buf err;
    int rc;

    buf_init(&err, 512);
    rc = worker_queues_parse(c->worker_queues, s->queues, SUPERVISOR_MAX_QUEUES, &s->nqueues, &err);
    if (rc)
        log_error("%s", buf_str(&err));
    buf_free(&err);
    return rc;
}

static void do_reload(struct supervisor *s)
{
    struct conf *fresh = NULL;
    struct db *db = NULL;
    struct buf err;
    int rc;

    buf_init(&err, 1024);
    rc = conf_load(&fresh, s->config_path, &err);
    if (!rc)
        rc = supervisor_check_conf(fresh, &err);
    if (rc) {
        log_error("reload failed; keeping the running configuration: %s", buf_str(&err));
        buf_free(&err);
        conf_free(fresh);
        return;
    }
    buf_free(&err);
    /* The database settings may have changed: a new connection for the
     * supervisor (children get theirs when they start). */
    if (db_open(fresh, &db) && !db) {
        log_error("reload failed: no database handle; keeping the running configuration");
        conf_free(fresh);
        return;
    }
    db_set_read_committed(db);
    db_close(s->db);
    s->db = db;
    s->db_retries_seen = 0;
    /* Children still running under the old configuration have their own
     * copy (fork), so the supervisor's can go. */
    conf_free(*s->confp);
    *s->confp = fresh;
    log_set_level((int)fresh->log_level);
    if (fresh->log_file[0] && log_open_file(fresh->log_file))
        log_syserr("cannot open log_file %s", fresh->log_file);
    parse_queues(s, fresh);
    s->generation++;
    crashloop_reset(&s->crashes);
    spawn_missing(s);
    /* The new generation claims now; the old one finishes what it runs. */
    stop_children(s, STAGE_TERM, 1);
    log_info("reloaded: generation %u started (%s)", s->generation, fresh->worker_queues);
}

/* Insert this supervisor's row, waiting for the database if it is away.
 * CP_ETIMEDOUT when a stop was asked meanwhile. */
static int register_self(struct supervisor *s)
{
    int rc, logged = 0;

    for (;;) {
        rc = workers_row_insert(s->db, 0, "supervisor", conf_of(s)->worker_queues, &s->id);
        if (!rc)
            break;
        if (!logged)
            log_error("cannot register in the workers table: %s; retrying every %lld ms", cp_strerror(rc),
                      conf_of(s)->worker_poll_interval);
        logged = 1;
        long long ms = conf_of(s)->worker_poll_interval;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        ppoll(NULL, 0, &ts, &s->wait_mask);
        if (got_stop_graceful || got_stop_fast)
            return CP_ETIMEDOUT;
        if (got_reopen) {
            got_reopen = 0;
            if (conf_of(s)->log_file[0])
                log_open_file(conf_of(s)->log_file);
        }
    }
    if (logged)
        log_info("database reachable again");
    shared_set_supervisor_id(s->sh, s->id);
    return 0;
}

static void install_handlers(struct supervisor *s)
{
    static const int sigs[] = { SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGCHLD, SIGUSR1 };

    /* Signals are only delivered inside ppoll(), so flags are read
     * without races. */
    sigflags_install(sigs, sizeof sigs / sizeof sigs[0], on_signal, &s->wait_mask);
}

static long long earliest(long long a, long long b)
{
    return a < b ? a : b;
}

/* How long the loop may sleep before something is due. */
static long long wait_ms(const struct supervisor *s)
{
    const struct conf *c = conf_of(s);
    long long t = shared_now_ms(), until = t + LOOP_WAIT_MAX_MS;

    until = earliest(until, s->next_heartbeat);
    until = earliest(until, s->next_check);
    if (s->state == SUP_RUNNING && c->worker_wake_interval > 0)
        until = earliest(until, s->next_wake_poll);
    if (s->state == SUP_RUNNING && crashloop_respawn_at(&s->crashes) > t)
        until = earliest(until, crashloop_respawn_at(&s->crashes));
    for (size_t i = 0; i < s->nchildren; i++)
        if (s->children[i].stage != STAGE_RUNNING)
            until = earliest(until, s->children[i].escalate_at);
    return until > t ? until - t : 0;
}

int supervisor_run(const char *config_path, struct conf **confp)
{
    struct supervisor *s = calloc(1, sizeof *s);
    int rc;

    if (!s)
        return CP_ENOMEM;
    s->config_path = config_path;
    s->confp = confp;
    install_handlers(s);
    rc = parse_queues(s, *confp);
    if (rc)
        goto out;
    rc = shared_create(MAX_CHILDREN, &s->sh);
    if (rc) {
        log_error("cannot map the shared region: %s", cp_strerror(rc));
        goto out;
    }
    s->stats = shared_jobstats(s->sh);
    if (db_open(*confp, &s->db) && !s->db) {
        rc = CP_ENOMEM;
        log_error("cannot create a database handle");
        goto out;
    }
    db_set_read_committed(s->db);
    if (register_self(s)) {
        log_info("stopped before starting");
        rc = 0;
        goto out;
    }
    recover_dead(s);
    log_info("supervisor started: worker id %lld, queues %s", s->id, (*confp)->worker_queues);

    for (;;) {
        const struct conf *c;
        struct timespec ts;
        long long t, w;

        if (got_chld) {
            got_chld = 0;
            reap(s);
        }
        if (got_stop_fast) {
            got_stop_fast = 0;
            begin_stop(s, 1);
        }
        if (got_stop_graceful) {
            got_stop_graceful = 0;
            begin_stop(s, 0);
        }
        if (got_reload) {
            got_reload = 0;
            if (s->state == SUP_RUNNING)
                do_reload(s);
        }
        if (got_reopen) {
            got_reopen = 0;
            if ((*confp)->log_file[0] && log_open_file((*confp)->log_file))
                log_syserr("cannot reopen log_file %s", (*confp)->log_file);
            signal_children(s, SIGUSR1);
        }
        c = *confp;
        if (s->state == SUP_STOPPING && s->nchildren == 0)
            break;
        escalate(s);
        if (s->state == SUP_RUNNING) {
            prune_crashes(s);
            spawn_missing(s);
        }
        t = shared_now_ms();
        if (t >= s->next_check) {
            check_children(s);
            s->next_check = t + CHECK_EVERY_MS;
        }
        if (t >= s->next_heartbeat) {
            heartbeat(s);
            s->next_heartbeat = shared_now_ms() + c->worker_heartbeat_interval;
        }
        if (s->state == SUP_RUNNING && c->worker_wake_interval > 0 && t >= s->next_wake_poll) {
            rc = wake_poll(s);
            s->next_wake_poll = shared_now_ms() + (rc ? c->worker_poll_interval : c->worker_wake_interval);
        }
        w = wait_ms(s);
        ts.tv_sec = w / 1000;
        ts.tv_nsec = (w % 1000) * 1000000;
        ppoll(NULL, 0, &ts, &s->wait_mask);
    }
    rc = 0;
    if (s->npending)
        retry_pending_releases(s);
    if (workers_row_stop(s->db, s->id) == 0)
        log_info("supervisor stopped");
    else
        log_error("supervisor stopped, but its workers row could not be marked stopped");
out:
    db_close(s->db);
    shared_destroy(s->sh);
    free(s);
    return rc;
}
