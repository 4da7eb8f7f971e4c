#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "jobkinds.h"
#include "jobstats.h"
#include "json.h"
#include "log.h"
#include "queue.h"
#include "retry.h"
#include "runner.h"
#include "tasks.h"

#define GROW_BELOW_MS 50      /* a whole batch faster than this: claim more next time */
#define SLOW_JOB_MS 50        /* one job this slow: claim one at a time */
#define FLUSH_AFTER_MS 20     /* the oldest waiting completion is recorded by then */
#define IDLE_TICK_MS 1000     /* an idle process shows a sign of life this often */
#define PAUSE_STEP_MS 100     /* child_pause looks at stop requests this often */
#define WORKERS_QUEUES_MAX 255

static const struct json_limits payload_limits = {
    .max_size = JOB_PAYLOAD_MAX,
    .max_depth = 32,
    .max_string = JOB_PAYLOAD_MAX,
};

/* ------------------------------------ every crosspost-worker process -- */

static volatile sig_atomic_t stop_graceful, stop_fast, reopen_log;

static void child_on_signal(int sig)
{
    switch (sig) {
    case SIGTERM:
    case SIGQUIT: stop_graceful = 1; break;
    case SIGINT: stop_fast = 1; break;
    case SIGUSR1: reopen_log = 1; break;
    }
}

void child_signals_install(pid_t supervisor_pid)
{
    static const int sigs[] = { SIGTERM, SIGQUIT, SIGINT, SIGUSR1 };
    struct sigaction sa;
    sigset_t none;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_on_signal;
    /* Database I/O restarts after a handler; sleeps and futex waits
     * return early, so a stop is seen at once. */
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* The supervisor may have died before the line above. */
    if (getppid() != supervisor_pid)
        stop_graceful = 1;
}

enum slot_stop child_stop_asked(const struct worker_slot *slot)
{
    enum slot_stop asked = slot ? slot_stop_requested(slot) : SLOT_RUN;

    if (stop_fast)
        return SLOT_STOP_FAST;
    if (stop_graceful && asked < SLOT_STOP_GRACEFUL)
        return SLOT_STOP_GRACEFUL;
    return asked;
}

const volatile sig_atomic_t *child_fast_stop_flag(void)
{
    return &stop_fast;
}

void child_reopen_log(const struct conf *c)
{
    if (!reopen_log)
        return;
    reopen_log = 0;
    if (c->log_file[0] && log_open_file(c->log_file))
        log_syserr("cannot reopen log_file %s", c->log_file);
}

const char *worker_host(void)
{
    static char host[256];

    if (!host[0] && (gethostname(host, sizeof host - 1) < 0 || !host[0]))
        snprintf(host, sizeof host, "localhost");
    return host;
}

int workers_row_insert(struct db *db, long long supervisor_id, const char *role, const char *queues,
                       long long *id_out)
{
    unsigned long long id = 0;
    size_t qlen = queues ? strlen(queues) : 0;
    int rc;

    *id_out = 0;
    /* The column holds 255 characters; the list is ASCII. */
    if (qlen > WORKERS_QUEUES_MAX)
        qlen = WORKERS_QUEUES_MAX;
    struct db_param p[] = {
        supervisor_id ? DB_I64(supervisor_id) : DB_NULL,
        DB_STR(role),
        DB_STR(worker_host()),
        DB_I64((long long)getpid()),
        DB_BYTES(queues ? queues : "", qlen),
        DB_STR(PACKAGE_VERSION),
    };
    rc = db_exec(db, "INSERT INTO workers (supervisor_id, role, host, pid, queues, state, version) "
                     "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                 p, sizeof p / sizeof p[0], NULL, &id);
    if (rc)
        return rc;
    *id_out = (long long)id;
    return 0;
}

int workers_row_stop(struct db *db, long long id)
{
    struct db_param p[] = { DB_I64(id) };

    return db_exec(db, "UPDATE workers SET state = 'stopped', stopped_at = NOW(3), "
                       "current_job_id = NULL WHERE id = ?", p, 1, NULL, NULL);
}

static void sleep_ms(long long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

void child_pause(struct worker_slot *slot, long long ms)
{
    long long end = shared_now_ms() + ms, left;

    while ((left = end - shared_now_ms()) > 0 && child_stop_asked(slot) == SLOT_RUN) {
        slot_tick(slot);
        sleep_ms(left < PAUSE_STEP_MS ? left : PAUSE_STEP_MS);
    }
    slot_tick(slot);
}

int child_register(struct db *db, const struct conf *c, struct shared *sh, struct worker_slot *slot,
                   const char *role, const char *queues, long long *id_out)
{
    int rc, logged = 0;

    *id_out = 0;
    for (;;) {
        long long id = 0;

        if (child_stop_asked(slot) != SLOT_RUN)
            return CP_ETIMEDOUT;
        slot_tick(slot);
        rc = workers_row_insert(db, shared_supervisor_id(sh), role, queues, &id);
        if (!rc) {
            if (logged)
                log_info("database reachable again");
            slot_set_worker_id(slot, id);
            *id_out = id;
            return 0;
        }
        if (!logged)
            log_error("%s process cannot register: %s; retrying every %lld ms", role, cp_strerror(rc),
                      c->worker_poll_interval);
        logged = 1;
        child_pause(slot, c->worker_poll_interval);
    }
}

void child_exit_row(struct db *db, long long id, pid_t supervisor_pid)
{
    if (id && getppid() != supervisor_pid && workers_row_stop(db, id) == 0)
        log_info("supervisor gone: marked this process stopped");
}

/* ------------------------------------------------------------ worker -- */

/* A success waiting to be recorded. */
struct pending {
    long long id;
    int kind;                 /* index into job_kinds; -1 when unknown */
    double seconds;
};

struct runner {
    const struct runner_opts *o;
    const struct conf *c;
    struct db *db;
    struct jobstats *stats;
    struct worker_slot *slot;
    struct retry_policy policy;
    long long worker_id;
    int qi;                   /* this queue in jobstats; -1 when the table is full */
    int batch;                /* how many to claim next */
    int slow;                 /* a job of this batch took SLOW_JOB_MS or more */
    unsigned long long rng;
    unsigned long long db_retries_seen;
    struct job_batch b;
    long long held[QUEUE_BATCH_MAX];   /* ids of b not yet given up */
    size_t nheld;
    struct pending pending[QUEUE_BATCH_MAX];
    size_t npending;
    long long pending_since;
};

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* splitmix64: jitter for the retry policy, seeded from the kernel. */
static unsigned long long next_random(struct runner *r)
{
    unsigned long long z = (r->rng += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void count_db_retries(struct runner *r)
{
    unsigned long long n = db_tx_retries(r->db);

    if (n > r->db_retries_seen)
        jobstats_add(r->stats, JOBSTATS_DB_RETRIES, n - r->db_retries_seen);
    r->db_retries_seen = n;
}

static void count_finish(struct runner *r, int kind, enum jobstats_outcome outcome, double seconds)
{
    if (r->qi >= 0 && kind >= 0)
        jobstats_finish(r->stats, r->qi, (size_t)kind, outcome, seconds);
}

static void publish(struct runner *r, long long job_id, long long started_ms, long long deadline_ms)
{
    slot_publish(r->slot, r->held, r->nheld, job_id, started_ms, deadline_ms);
}

static void drop_held(struct runner *r, long long id)
{
    for (size_t i = 0; i < r->nheld; i++)
        if (r->held[i] == id) {
            r->held[i] = r->held[--r->nheld];
            return;
        }
}

/*
 * Record an outcome, trying again while the database is away, for up to
 * job_lease / 2: long enough to ride out a restart, short enough that
 * the supervisor can still give the claims back before their leases run
 * out.  0 or CP_ECONFLICT (the lease was lost) from fn; CP_EUNAVAIL when
 * the process must exit.
 */
typedef int (*record_fn)(struct runner *r, void *arg);

static int record(struct runner *r, const char *what, record_fn fn, void *arg)
{
    long long give_up = shared_now_ms() + r->c->job_lease / 2, pause = 50;
    int rc, logged = 0;

    for (;;) {
        rc = fn(r, arg);
        count_db_retries(r);
        if (rc == 0 || rc == CP_ECONFLICT) {
            if (logged)
                log_info("recorded %s after retrying", what);
            return rc;
        }
        if (shared_now_ms() >= give_up) {
            log_error("cannot record %s: %s; exiting so the supervisor gives the claims back", what,
                      cp_strerror(rc));
            return CP_EUNAVAIL;
        }
        if (!logged)
            log_warn("cannot record %s yet: %s; retrying for up to %lld ms", what, cp_strerror(rc),
                     r->c->job_lease / 2);
        logged = 1;
        slot_tick(r->slot);
        sleep_ms(pause);
        pause = pause * 2 > 1000 ? 1000 : pause * 2;
    }
}

struct complete_arg {
    long long ids[QUEUE_BATCH_MAX];
    size_t n, done;
};

static int do_complete(struct runner *r, void *arg)
{
    struct complete_arg *a = arg;

    return queue_complete(r->db, &r->b.lease, a->ids, a->n, &a->done);
}

/* Record the waiting successes. */
static int flush(struct runner *r)
{
    struct complete_arg a;
    int rc;

    if (!r->npending)
        return 0;
    memset(&a, 0, sizeof a);
    for (size_t i = 0; i < r->npending; i++)
        a.ids[i] = r->pending[i].id;
    a.n = r->npending;
    rc = record(r, "completions", do_complete, &a);
    if (rc == CP_EUNAVAIL)
        return rc;
    if (rc)
        a.done = 0;
    /* Which ones lost their lease is not known: the count is what matters. */
    for (size_t i = 0; i < r->npending; i++) {
        count_finish(r, r->pending[i].kind, i < a.done ? JOBSTATS_SUCCEEDED : JOBSTATS_LEASE_LOST,
                     r->pending[i].seconds);
        drop_held(r, r->pending[i].id);
    }
    if (a.done < a.n)
        log_warn("%zu of %zu finished jobs had lost their lease; their completion was not recorded",
                 a.n - a.done, a.n);
    slot_add_done(r->slot, a.n);
    r->npending = 0;
    publish(r, 0, 0, 0);
    return 0;
}

struct fail_arg {
    const struct job *job;
    struct job_failure f;
    enum job_state state;
};

static int do_fail(struct runner *r, void *arg)
{
    struct fail_arg *a = arg;

    return queue_fail(r->db, &r->b.lease, a->job, &a->f, &r->policy, next_random(r), &a->state);
}

static int record_failure(struct runner *r, const struct job *job, const struct task_ctx *ctx, int kind,
                          double seconds)
{
    struct fail_arg a = {
        .job = job,
        .f = { .cls = ctx->fail_class, .message = ctx->message, .retry_after_ms = ctx->retry_after_ms },
        .state = JOB_FAILED,
    };
    enum jobstats_outcome outcome;
    int rc;

    rc = record(r, "a failed attempt", do_fail, &a);
    if (rc == CP_EUNAVAIL)
        return rc;
    drop_held(r, job->id);
    if (rc == CP_ECONFLICT) {
        log_warn("attempt %d failed after its lease was lost (%s): %s", job->attempts,
                 job_error_class_name(ctx->fail_class), ctx->message);
        count_finish(r, kind, JOBSTATS_LEASE_LOST, seconds);
        return 0;
    }
    switch (a.state) {
    case JOB_DEAD:
        outcome = JOBSTATS_DEAD;
        log_error("attempt %d of %d failed (%s): %s; the job is dead", job->attempts, job->max_attempts,
                  job_error_class_name(ctx->fail_class), ctx->message);
        break;
    case JOB_SCHEDULED:
        outcome = JOBSTATS_DEFERRED;
        log_info("deferred (%s): %s", job_error_class_name(ctx->fail_class), ctx->message);
        break;
    default:
        outcome = JOBSTATS_RETRIED;
        log_warn("attempt %d of %d failed (%s): %s; it will be retried", job->attempts,
                 job->max_attempts, job_error_class_name(ctx->fail_class), ctx->message);
        break;
    }
    count_finish(r, kind, outcome, seconds);
    slot_add_done(r->slot, 1);
    return 0;
}

struct defer_arg {
    const struct job *job;
    long long delay_ms;
    const char *reason;
};

static int do_defer(struct runner *r, void *arg)
{
    struct defer_arg *a = arg;

    return queue_defer(r->db, &r->b.lease, a->job, a->delay_ms, a->reason);
}

static int record_deferral(struct runner *r, const struct job *job, const struct task_ctx *ctx, int kind,
                           double seconds)
{
    struct defer_arg a = { job, ctx->defer_ms, ctx->message };
    int rc;

    rc = record(r, "a deferral", do_defer, &a);
    if (rc == CP_EUNAVAIL)
        return rc;
    drop_held(r, job->id);
    count_finish(r, kind, rc ? JOBSTATS_LEASE_LOST : JOBSTATS_DEFERRED, seconds);
    if (!rc) {
        log_info("deferred for %lld ms: %s", ctx->defer_ms, ctx->message);
        slot_add_done(r->slot, 1);
    }
    return 0;
}

struct release_arg {
    size_t released;
};

static int do_release(struct runner *r, void *arg)
{
    struct release_arg *a = arg;

    return queue_release(r->db, &r->b.lease, r->held, r->nheld, &a->released);
}

/* Give back every job still held (a stop): ready again, attempt refunded. */
static int release_held(struct runner *r)
{
    struct release_arg a = { 0 };
    int rc;

    if (!r->nheld)
        return 0;
    rc = record(r, "released claims", do_release, &a);
    if (rc == CP_EUNAVAIL)
        return rc;
    log_info("gave back %zu claimed jobs", rc ? 0 : a.released);
    r->nheld = 0;
    publish(r, 0, 0, 0);
    return 0;
}

static int run_job(struct runner *r, const struct job *job)
{
    const struct job_kind *kind = job_kind_find(job->kind);
    const struct task *t = task_find(job->kind);
    int ki = kind ? (int)(kind - job_kinds) : -1;
    const char *text = job->payload ? job->payload : "{}";
    long long started = shared_now_ms(), took;
    struct json_object *payload = NULL;
    struct task_ctx ctx;
    struct buf why;
    double t0 = now_seconds(), seconds;
    int res, rc = 0;

    publish(r, job->id, started, kind ? started + kind->timeout_ms : 0);
    log_set_job_id(job->id);
    task_ctx_init(&ctx, job, NULL, r->db, r->c, &r->b.lease, r->slot, child_fast_stop_flag());
    buf_init(&why, 256);
    if (!t)
        res = task_fail(&ctx, JOB_ERR_PERMANENT, 0, "no handler for job kind %s", job->kind);
    else if (json_parse(text, strlen(text), &payload_limits, &payload, &why))
        res = task_fail(&ctx, JOB_ERR_PERMANENT, 0, "payload: %s", buf_str(&why));
    else if (!json_object_is_type(payload, json_type_object))
        res = task_fail(&ctx, JOB_ERR_PERMANENT, 0, "payload: not a JSON object");
    else {
        ctx.payload = payload;
        res = t->run(&ctx);
    }
    seconds = now_seconds() - t0;
    took = shared_now_ms() - started;
    if (took >= SLOW_JOB_MS)
        r->slow = 1;

    switch (res) {
    case TASK_OK:
        if (!r->npending)
            r->pending_since = shared_now_ms();
        r->pending[r->npending++] = (struct pending){ job->id, ki, seconds };
        break;
    case TASK_FAILED:
        rc = record_failure(r, job, &ctx, ki, seconds);
        break;
    case TASK_DEFERRED:
        rc = record_deferral(r, job, &ctx, ki, seconds);
        break;
    case TASK_STOPPED:
        if (ctx.lease_lost) {
            /* Someone else may run it now: leave it alone. */
            drop_held(r, job->id);
            count_finish(r, ki, JOBSTATS_LEASE_LOST, seconds);
        } else {
            /* Still held: given back with the rest of the batch. */
            log_info("stopped after %lld ms; giving it back", took);
            count_finish(r, ki, JOBSTATS_RELEASED, seconds);
        }
        break;
    default:
        task_fail(&ctx, JOB_ERR_TRANSIENT, 0, "handler of %s returned %d", job->kind, res);
        rc = record_failure(r, job, &ctx, ki, seconds);
        break;
    }
    json_object_put(payload);
    buf_free(&why);
    log_set_job_id(0);
    publish(r, 0, 0, 0);
    return rc;
}

/* Run the claimed batch; CP_EUNAVAIL when an outcome could not be recorded. */
static int run_batch(struct runner *r)
{
    int rc;

    for (size_t i = 0; i < r->b.n; i++) {
        if (child_stop_asked(r->slot) != SLOT_RUN)
            break;
        /* In a batch with slow jobs the next one may be slow too: record
         * what is done before starting it. */
        if (r->npending && (r->slow || shared_now_ms() - r->pending_since > FLUSH_AFTER_MS)) {
            rc = flush(r);
            if (rc)
                return rc;
        }
        rc = run_job(r, &r->b.jobs[i]);
        if (rc)
            return rc;
    }
    rc = flush(r);
    if (!rc)
        rc = release_held(r);
    return rc;
}

/* Sleep until woken (new work), a stop, or worker_poll_interval. */
static void wait_for_work(struct runner *r, unsigned seen)
{
    long long end = shared_now_ms() + r->c->worker_poll_interval, left;

    while ((left = end - shared_now_ms()) > 0 && child_stop_asked(r->slot) == SLOT_RUN) {
        slot_tick(r->slot);
        shared_wait(r->o->sh, seen, left < IDLE_TICK_MS ? left : IDLE_TICK_MS);
        if (shared_wake_seq(r->o->sh) != seen)
            break;
    }
    slot_tick(r->slot);
}

static void adapt_batch(struct runner *r, int asked, size_t got, long long took_ms)
{
    int most = (int)r->c->worker_claim_batch;

    if (most > QUEUE_BATCH_MAX)
        most = QUEUE_BATCH_MAX;
    /* A queue that ran dry starts again at 1: the next jobs may be slow. */
    if (r->slow || (int)got < asked)
        r->batch = 1;
    else if ((int)got == asked && took_ms < GROW_BELOW_MS)
        r->batch = asked * 2 < most ? asked * 2 : most;
    else if (took_ms >= GROW_BELOW_MS)
        r->batch = asked / 2 > 1 ? asked / 2 : 1;
}

int runner_main(const struct runner_opts *o)
{
    struct runner *r = calloc(1, sizeof *r);
    int rc, status = RUNNER_EXIT_OK, db_trouble = 0;

    child_signals_install(o->supervisor_pid);
    if (!r) {
        log_error("worker process: out of memory");
        return RUNNER_EXIT_FAILED;
    }
    r->o = o;
    r->c = o->conf;
    r->slot = o->slot;
    r->stats = shared_jobstats(o->sh);
    r->policy = (struct retry_policy){ o->conf->job_retry_base, o->conf->job_retry_cap };
    r->batch = 1;
    r->qi = jobstats_queue(r->stats, o->queue);
    if (r->qi < 0)
        r->qi = -1;
    if (getrandom(&r->rng, sizeof r->rng, 0) != (ssize_t)sizeof r->rng)
        r->rng = (unsigned long long)getpid() * 0x9E3779B97F4A7C15ULL ^ (unsigned long long)shared_now_ms();

    rc = db_open(r->c, &r->db);
    if (!r->db) {
        log_error("worker process: cannot create a database handle: %s", cp_strerror(rc));
        free(r);
        return RUNNER_EXIT_FAILED;
    }
    db_set_read_committed(r->db);
    if (child_register(r->db, r->c, o->sh, r->slot, "worker", o->queue, &r->worker_id))
        goto out;
    log_info("worker process started: queue %s, worker id %lld", o->queue, r->worker_id);

    while (child_stop_asked(r->slot) == SLOT_RUN) {
        unsigned seen;
        int asked = r->batch;
        size_t got;
        double t0;
        long long started = 0;

        child_reopen_log(r->c);
        slot_tick(r->slot);
        /* Read before claiming: a wake after this point is not missed. */
        seen = shared_wake_seq(o->sh);
        t0 = now_seconds();
        rc = queue_claim(r->db, o->queue, r->worker_id, asked, r->c->job_lease, &r->b);
        count_db_retries(r);
        if (rc) {
            if (!db_trouble)
                log_error("cannot claim jobs: %s; retrying every %lld ms", cp_strerror(rc),
                          r->c->worker_poll_interval);
            db_trouble = 1;
            child_pause(r->slot, r->c->worker_poll_interval);
            continue;
        }
        if (db_trouble)
            log_info("claiming jobs again");
        db_trouble = 0;
        jobstats_claim(r->stats, now_seconds() - t0, r->b.n);
        got = r->b.n;
        r->slow = 0;
        if (got) {
            for (size_t i = 0; i < got; i++)
                r->held[i] = r->b.jobs[i].id;
            r->nheld = got;
            publish(r, 0, 0, 0);
            started = shared_now_ms();
            rc = run_batch(r);
            job_batch_free(&r->b);
            if (rc) {
                status = RUNNER_EXIT_UNRECORDED;
                break;
            }
        }
        adapt_batch(r, asked, got, got ? shared_now_ms() - started : 0);
        if ((int)got < asked)
            wait_for_work(r, seen);
    }
    log_info("worker process stopping (queue %s)", o->queue);
out:
    child_exit_row(r->db, r->worker_id, o->supervisor_pid);
    job_batch_free(&r->b);
    db_close(r->db);
    free(r);
    return status;
}
