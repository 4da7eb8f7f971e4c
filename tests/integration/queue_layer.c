/*
 * queue_layer.c - the job queue (src/queue.c) against the real MariaDB of
 * the integration stack.
 *
 * The configuration comes from conf_load() (CROSSPOST_CONFIG names the
 * stack's file).  Every job made here is on a queue named zz_qt_*, every
 * recurring task is named zz-qt-*, every workers row has host
 * zz-qt-host; all of them (and their attempts and alerts) are deleted
 * before and after the run.  The functions that act on the whole table
 * (promote, reap, prune, recurring) are checked on these rows only, so
 * other rows of the stack do not disturb them.
 * tests/integration/test_queue_layer.py runs this program.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "queue.h"
#include "retry.h"
#include "stackdb.h"

#define HOST "zz-qt-host"
#define LONG_WAIT { 60000, 60000 }          /* every retry waits a minute */
#define NO_WAIT { 0, 0 }                    /* every retry is due at once */
#define RND_MAX ULLONG_MAX
#define THREADS 4

static struct conf *stack_conf;
static long long worker_a, worker_b;        /* workers rows of HOST */

struct fixture {
    struct db *db;
    struct db *other;
};

/* ------------------------------------------------------------ helpers -- */

/* A number about job id: sql has one placeholder, the id. */
static long long job_i64(struct db *db, const char *sql, long long id)
{
    struct db_param p[] = { DB_I64(id) };

    return stackdb_i64(db, sql, p, 1);
}

/* A text column of job id (sql selects it, one placeholder). */
static void job_text(struct db *db, const char *sql, long long id, char *out, size_t size)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    int rc;

    rc = db_query(db, sql, p, 1, &r);
    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
    if (db_result_rows(r) != 1)
        fail_msg("%s (%lld): %zu rows", sql, id, db_result_rows(r));
    snprintf(out, size, "%s", db_result_get(r, 0, 0) ? db_result_get(r, 0, 0) : "(null)");
    db_result_free(r);
}

static void assert_state(struct db *db, long long id, const char *state)
{
    char got[32];

    job_text(db, "SELECT state FROM jobs WHERE id = ?", id, got, sizeof got);
    if (strcmp(got, state) != 0)
        fail_msg("job %lld is %s, expected %s", id, got, state);
}

static long long job_exists(struct db *db, long long id)
{
    return job_i64(db, "SELECT COUNT(*) FROM jobs WHERE id = ?", id);
}

struct spec_opts {
    const char *kind;
    const char *payload;
    const char *unique_key;
    int priority;
    long long delay_ms;
    int max_attempts;
    long long user_id;
};

static long long enqueue(struct db *db, const char *queue, struct spec_opts o)
{
    struct job_spec s = {
        .kind = o.kind ? o.kind : "noop", .queue = queue, .payload = o.payload,
        .unique_key = o.unique_key, .priority = o.priority, .delay_ms = o.delay_ms,
        .max_attempts = o.max_attempts, .user_id = o.user_id,
    };
    long long id = 0;
    int rc = queue_enqueue(db, &s, &id);

    if (rc)
        fail_msg("enqueue on %s: %s (%s)", queue, cp_strerror(rc), db_error(db));
    assert_true(id > 0);
    return id;
}

#define ENQ(db, queue, ...) enqueue((db), (queue), (struct spec_opts){ __VA_ARGS__ })

/* Claim exactly n jobs of queue. */
static void claim_n(struct db *db, const char *queue, long long owner, int max, size_t n,
                    long long lease_ms, struct job_batch *b)
{
    int rc = queue_claim(db, queue, owner, max, lease_ms, b);

    if (rc)
        fail_msg("claim on %s: %s (%s)", queue, cp_strerror(rc), db_error(db));
    if (b->n != n)
        fail_msg("claim on %s: %zu jobs, expected %zu", queue, b->n, n);
}

/* Move a job straight into a finished state, finished_at ago_s seconds ago. */
static void force_finished(struct db *db, long long id, const char *state, long long ago_s,
                           const char *error_class)
{
    struct db_param p[] = {
        DB_STR(state), DB_I64(ago_s * 1000000), error_class ? DB_STR(error_class) : DB_NULL,
        DB_I64(id),
    };

    stackdb_exec(db, "UPDATE jobs SET state = ?, finished_at = NOW(3) - INTERVAL ? MICROSECOND,"
                " active_key = NULL, last_error_class = ? WHERE id = ?", p, 4);
}

static void cleanup_rows(struct db *db)
{
    static const char *const sql[] = {
        "DELETE a FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.queue LIKE 'zz\\_qt\\_%'",
        "DELETE e FROM alert_events e JOIN jobs j ON j.id = e.subject_id"
        " WHERE e.subject_type = 'job' AND j.queue LIKE 'zz\\_qt\\_%'",
        "DELETE FROM jobs WHERE queue LIKE 'zz\\_qt\\_%'",
        "DELETE FROM jobs WHERE unique_key LIKE 'recurring:zz-qt-%'",
        "DELETE FROM recurring_tasks WHERE name LIKE 'zz-qt-%'",
        "DELETE FROM workers WHERE host = '" HOST "'",
    };

    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        db_exec(db, sql[i], NULL, 0, NULL, NULL);
}

/* -------------------------------------------------- setup, teardown -- */

static long long add_worker(struct db *db, int pid)
{
    struct db_param p[] = { DB_I64(pid) };
    unsigned long long id = 0;

    if (db_exec(db, "INSERT INTO workers (role, host, pid, queues) VALUES ('worker', '" HOST
                    "', ?, 'zz_qt')", p, 1, NULL, &id))
        return 0;
    return (long long)id;
}

static int group_setup(void **state)
{
    struct db *db = NULL;

    if (stackdb_open("queue_layer", CP_LOG_ERROR, &stack_conf, &db))
        return -1;
    cleanup_rows(db);
    worker_a = add_worker(db, 4242);
    worker_b = add_worker(db, 4343);
    db_close(db);
    return worker_a > 0 && worker_b > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    struct db *db = NULL;

    if (getenv("QUEUE_LAYER_KEEP") == NULL && db_open(stack_conf, &db) == 0)
        cleanup_rows(db);
    db_close(db);
    conf_free(stack_conf);
    stack_conf = NULL;
    return 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    *state = fx;
    if (db_open(stack_conf, &fx->db) || db_open(stack_conf, &fx->other))
        return -1;
    if (db_set_read_committed(fx->db) || db_set_read_committed(fx->other))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    if (!fx)
        return 0;
    if (fx->db)
        db_rollback(fx->db);
    db_close(fx->db);
    db_close(fx->other);
    free(fx);
    return 0;
}

/* ------------------------------------------------------------ enqueue -- */

static void test_enqueue(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    char text[256];
    long long id, delayed;

    id = ENQ(db, "zz_qt_enq", .kind = "sleep", .payload = "{ \"ms\" : 5 }", .priority = -7,
             .user_id = 77);
    assert_state(db, id, "ready");
    job_text(db, "SELECT payload FROM jobs WHERE id = ?", id, text, sizeof text);
    assert_string_equal(text, "{ \"ms\" : 5 }");         /* stored as given */
    job_text(db, "SELECT CONCAT_WS(',', queue, kind, priority, attempts, max_attempts, user_id,"
                 " run_at <= NOW(3), unique_key IS NULL, active_key IS NULL) FROM jobs WHERE id = ?",
             id, text, sizeof text);
    assert_string_equal(text, "zz_qt_enq,sleep,-7,0,5,77,1,1,1");

    /* defaults: the kind's queue and attempts, "{}" */
    struct job_spec plain = { .kind = "maintenance.prune_jobs" };
    long long pid = 0;
    assert_int_equal(queue_enqueue(db, &plain, &pid), 0);
    job_text(db, "SELECT CONCAT_WS(',', queue, max_attempts, payload, user_id IS NULL)"
                 " FROM jobs WHERE id = ?", pid, text, sizeof text);
    assert_string_equal(text, "maintenance,3,{},1");
    stackdb_exec(db, "DELETE FROM jobs WHERE id = ?", (struct db_param[]){ DB_I64(pid) }, 1);

    /* a delay makes it scheduled, due later */
    delayed = ENQ(db, "zz_qt_enq", .delay_ms = 120000, .max_attempts = 9);
    assert_state(db, delayed, "scheduled");
    assert_int_equal(job_i64(db, "SELECT run_at > NOW(3) + INTERVAL 100 SECOND FROM jobs"
                                 " WHERE id = ?", delayed), 1);
    assert_int_equal(job_i64(db, "SELECT max_attempts FROM jobs WHERE id = ?", delayed), 9);
}

struct invalid_case {
    const char *name;
    struct job_spec spec;
};

static void test_enqueue_refusals(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    static char big[JOB_PAYLOAD_MAX + 16], long_key[JOB_UNIQUE_KEY_MAX + 2];
    long long before, id;

    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    memset(long_key, 'k', sizeof long_key - 1);

    const struct invalid_case cases[] = {
        { "no kind", { .queue = "zz_qt_bad" } },
        { "unknown kind", { .kind = "nope", .queue = "zz_qt_bad" } },
        { "bad queue", { .kind = "noop", .queue = "Bad Queue" } },
        { "empty queue", { .kind = "noop", .queue = "" } },
        { "queue too long", { .kind = "noop", .queue = "zz_qt_0123456789012345678901234567" } },
        { "array payload", { .kind = "noop", .queue = "zz_qt_bad", .payload = "[1]" } },
        { "scalar payload", { .kind = "noop", .queue = "zz_qt_bad", .payload = "3" } },
        { "not JSON", { .kind = "noop", .queue = "zz_qt_bad", .payload = "{x}" } },
        { "trailing data", { .kind = "noop", .queue = "zz_qt_bad", .payload = "{} {}" } },
        { "bad UTF-8", { .kind = "noop", .queue = "zz_qt_bad", .payload = "{\"a\":\"\xff\"}" } },
        { "payload too long", { .kind = "noop", .queue = "zz_qt_bad", .payload = big } },
        { "priority too low", { .kind = "noop", .queue = "zz_qt_bad", .priority = -1001 } },
        { "priority too high", { .kind = "noop", .queue = "zz_qt_bad", .priority = 1001 } },
        { "negative delay", { .kind = "noop", .queue = "zz_qt_bad", .delay_ms = -1 } },
        { "delay past ten years", { .kind = "noop", .queue = "zz_qt_bad",
                                    .delay_ms = 11LL * 366 * 24 * 3600 * 1000 } },
        { "negative attempts", { .kind = "noop", .queue = "zz_qt_bad", .max_attempts = -1 } },
        { "101 attempts", { .kind = "noop", .queue = "zz_qt_bad", .max_attempts = 101 } },
        { "empty unique key", { .kind = "noop", .queue = "zz_qt_bad", .unique_key = "" } },
        { "unique key too long", { .kind = "noop", .queue = "zz_qt_bad", .unique_key = long_key } },
        { "negative user", { .kind = "noop", .queue = "zz_qt_bad", .user_id = -4 } },
    };

    before = stackdb_i64(db, "SELECT COUNT(*) FROM jobs", NULL, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        id = 99;
        int rc = queue_enqueue(db, &cases[i].spec, &id);

        if (rc != CP_EINVAL)
            fail_msg("%s: %s, expected CP_EINVAL", cases[i].name, cp_strerror(rc));
        assert_int_equal(id, 0);
    }
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs", NULL, 0), before);

    /* the edges themselves are fine (the payload column is a TEXT) */
    big[65535 - 1] = '}';
    big[65535] = '\0';
    long_key[JOB_UNIQUE_KEY_MAX] = '\0';
    ENQ(db, "zz_qt_bad", .payload = big, .priority = -1000, .max_attempts = 100,
        .unique_key = long_key, .delay_ms = 10LL * 365 * 24 * 3600 * 1000);
    ENQ(db, "zz_qt_01234567890123456789012345", .priority = 1000, .max_attempts = 1);
}

static void test_enqueue_in_transaction(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    long long rolled, kept;

    assert_int_equal(db_begin(db), 0);
    rolled = ENQ(db, "zz_qt_tx");
    assert_int_equal(job_exists(db, rolled), 1);
    assert_int_equal(job_exists(fx->other, rolled), 0);     /* not committed yet */
    assert_int_equal(db_rollback(db), 0);
    assert_int_equal(job_exists(db, rolled), 0);

    assert_int_equal(db_begin(db), 0);
    kept = ENQ(db, "zz_qt_tx");
    assert_int_equal(db_commit(db), 0);
    assert_int_equal(job_exists(fx->other, kept), 1);

    /* many, in a transaction that rolls back: none */
    struct job_spec specs[300];
    memset(specs, 0, sizeof specs);
    for (size_t i = 0; i < 300; i++) {
        specs[i].kind = "noop";
        specs[i].queue = "zz_qt_tx";
    }
    assert_int_equal(db_begin(db), 0);
    assert_int_equal(queue_enqueue_many(db, specs, 300), 0);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_tx'", NULL, 0),
                     301);
    assert_int_equal(db_rollback(db), 0);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_tx'", NULL, 0),
                     1);
}

static void test_enqueue_many(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    static struct job_spec specs[1000];
    const char *q = "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_many'";

    memset(specs, 0, sizeof specs);
    for (size_t i = 0; i < 1000; i++) {
        specs[i].kind = i % 2 ? "noop" : "sleep";
        specs[i].queue = "zz_qt_many";
        specs[i].payload = i % 3 ? "{\"ms\":1}" : NULL;
        specs[i].priority = (int)(i % 5);
        specs[i].delay_ms = i % 7 == 0 ? 60000 : 0;
    }
    /* one bad spec: nothing at all */
    specs[999].payload = "[]";
    assert_int_equal(queue_enqueue_many(db, specs, 1000), CP_EINVAL);
    assert_int_equal(stackdb_i64(db, q, NULL, 0), 0);
    specs[999].payload = NULL;
    specs[500].unique_key = "k";
    assert_int_equal(queue_enqueue_many(db, specs, 1000), CP_EINVAL);
    assert_int_equal(stackdb_i64(db, q, NULL, 0), 0);
    specs[500].unique_key = NULL;

    assert_int_equal(queue_enqueue_many(db, specs, 0), 0);
    assert_int_equal(queue_enqueue_many(db, specs, 1000), 0);
    assert_int_equal(stackdb_i64(db, q, NULL, 0), 1000);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_many'"
                                   " AND state = 'scheduled'", NULL, 0), 143);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_many'"
                                   " AND payload = '{}' AND kind = 'sleep'", NULL, 0), 167);
    assert_int_equal(queue_enqueue_many(db, specs, 3), 0);
    assert_int_equal(stackdb_i64(db, q, NULL, 0), 1003);
}

static void test_unique_key(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct job_spec dup = { .kind = "noop", .queue = "zz_qt_key", .unique_key = "zz-qt:sync:1" };
    struct job_batch b = { 0 };
    size_t done = 0;
    long long first, id = 0, second;

    first = ENQ(db, "zz_qt_key", .unique_key = "zz-qt:sync:1");
    assert_int_equal(queue_enqueue(db, &dup, &id), CP_ECONFLICT);
    assert_int_equal(id, first);
    /* another key is fine, and so is none */
    ENQ(db, "zz_qt_key", .unique_key = "zz-qt:sync:2");
    ENQ(db, "zz_qt_key");

    /* still held while running; free once finished */
    claim_n(db, "zz_qt_key", worker_a, 3, 3, 60000, &b);
    id = 0;
    assert_int_equal(queue_enqueue(db, &dup, &id), CP_ECONFLICT);
    assert_int_equal(id, first);
    assert_int_equal(queue_complete(db, &b.lease, (long long[]){ first }, 1, &done), 0);
    assert_int_equal(done, 1);
    assert_int_equal(job_i64(db, "SELECT active_key IS NULL FROM jobs WHERE id = ?", first), 1);
    second = ENQ(db, "zz_qt_key", .unique_key = "zz-qt:sync:1");
    assert_true(second != first);
    char key[64];
    job_text(db, "SELECT unique_key FROM jobs WHERE id = ?", first, key, sizeof key);
    assert_string_equal(key, "zz-qt:sync:1");              /* kept for the record */
    job_batch_free(&b);
    job_batch_free(&b);                                    /* safe on a zeroed batch */
}

/* -------------------------------------------------------------- claim -- */

static void test_claim_order(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    static const int prio[] = { 5, -3, 0, -3, 5, 0, 1000, -1000 };
    long long ids[8], future, other_queue;
    struct job_batch b = { 0 };
    char text[128];

    for (size_t i = 0; i < 8; i++)
        ids[i] = ENQ(db, "zz_qt_order", .priority = prio[i], .payload = "{\"i\":1}",
                     .user_id = i == 1 ? 5 : 0);
    future = ENQ(db, "zz_qt_order", .priority = -1000, .delay_ms = 60000);
    other_queue = ENQ(db, "zz_qt_order2", .priority = -1000);

    /* (priority, id): -1000, -3, -3, 0, 0, 5, 5, 1000 */
    static const size_t order[] = { 7, 1, 3, 2, 5, 0, 4, 6 };
    claim_n(db, "zz_qt_order", worker_a, 3, 3, 30000, &b);
    assert_true(b.lease.owner == worker_a);
    assert_true(b.lease.token > 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(b.jobs[i].id, ids[order[i]]);
    /* what a claimed job carries */
    const struct job *j = &b.jobs[1];
    assert_string_equal(j->queue, "zz_qt_order");
    assert_string_equal(j->kind, "noop");
    assert_string_equal(j->payload, "{\"i\":1}");
    assert_int_equal(j->attempts, 1);
    assert_int_equal(j->max_attempts, 5);
    assert_int_equal(j->priority, -3);
    assert_int_equal(j->user_id, 5);
    long long now_ms = stackdb_i64(db, "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
                                 NULL, 0);
    assert_true(j->claimed_ms <= now_ms && j->claimed_ms > now_ms - 5000);
    assert_true(j->created_ms <= j->claimed_ms && j->run_at_ms <= j->claimed_ms);
    assert_int_equal(job_i64(db, "SELECT CAST(UNIX_TIMESTAMP(claimed_at) * 1000 AS SIGNED)"
                                 " FROM jobs WHERE id = ?", j->id), j->claimed_ms);
    /* the row: running, owned, fenced, leased */
    snprintf(text, sizeof text, "running,%lld,%llu,1,1", worker_a, b.lease.token);
    char row[128];
    job_text(db, "SELECT CONCAT_WS(',', state, owner, lease_token, attempts,"
                 " lease_expires_at BETWEEN NOW(3) + INTERVAL 25 SECOND AND NOW(3) + INTERVAL 31 SECOND)"
                 " FROM jobs WHERE id = ?", j->id, row, sizeof row);
    assert_string_equal(row, text);
    unsigned long long first_token = b.lease.token;
    job_batch_free(&b);

    claim_n(db, "zz_qt_order", worker_a, 100, 5, 30000, &b);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(b.jobs[i].id, ids[order[3 + i]]);
    assert_true(b.lease.token != first_token);               /* fresh per claim */
    job_batch_free(&b);

    /* nothing left that is due: the scheduled one stays */
    claim_n(db, "zz_qt_order", worker_a, 10, 0, 30000, &b);
    assert_null(b.jobs);
    assert_state(db, future, "scheduled");
    assert_state(db, other_queue, "ready");

    /* refusals */
    assert_int_equal(queue_claim(db, "zz_qt_order", worker_a, 0, 1000, &b), CP_EINVAL);
    assert_int_equal(queue_claim(db, "zz_qt_order", worker_a, QUEUE_BATCH_MAX + 1, 1000, &b),
                     CP_EINVAL);
    assert_int_equal(queue_claim(db, "Bad", worker_a, 1, 1000, &b), CP_EINVAL);
    assert_int_equal(queue_claim(db, "zz_qt_order", 0, 1, 1000, &b), CP_EINVAL);
    assert_int_equal(queue_claim(db, "zz_qt_order", worker_a, 1, 0, &b), CP_EINVAL);
}

struct claimer {
    struct db *db;
    long long owner;
    pthread_barrier_t *start;
    long long *ids;           /* claimed ids, in order */
    size_t n, cap;
    int error;                /* first failure: a CP_E* code */
    int claims;
};

static void *claimer_run(void *arg)
{
    struct claimer *c = arg;

    pthread_barrier_wait(c->start);
    for (;;) {
        struct job_batch b = { 0 };
        long long ids[QUEUE_BATCH_MAX];
        size_t done = 0;
        int rc = queue_claim(c->db, "zz_qt_race", c->owner, 7, 60000, &b);

        if (rc) {
            c->error = rc;
            return NULL;
        }
        c->claims++;
        if (b.n == 0)
            return NULL;
        for (size_t i = 0; i < b.n; i++) {
            if (c->n < c->cap)
                c->ids[c->n++] = b.jobs[i].id;
            ids[i] = b.jobs[i].id;
        }
        rc = queue_complete(c->db, &b.lease, ids, b.n, &done);
        if (rc || done != b.n)
            c->error = rc ? rc : CP_ECONFLICT;
        job_batch_free(&b);
        if (c->error)
            return NULL;
    }
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return (x > y) - (x < y);
}

/* Claimers on separate sessions never get the same job, and between
 * them take every one. */
static void test_concurrent_claims(void **state)
{
    struct fixture *fx = *state;
    enum { JOBS = 600 };
    struct claimer c[THREADS];
    pthread_t t[THREADS];
    pthread_barrier_t start;
    static struct job_spec specs[JOBS];
    long long all[JOBS];
    size_t total = 0;

    memset(specs, 0, sizeof specs);
    for (size_t i = 0; i < JOBS; i++) {
        specs[i].kind = "noop";
        specs[i].queue = "zz_qt_race";
        specs[i].priority = (int)(i % 3);
    }
    assert_int_equal(queue_enqueue_many(fx->db, specs, JOBS), 0);

    pthread_barrier_init(&start, NULL, THREADS);
    memset(c, 0, sizeof c);
    for (int i = 0; i < THREADS; i++) {
        c[i].owner = i % 2 ? worker_b : worker_a;
        c[i].start = &start;
        c[i].cap = JOBS;
        c[i].ids = calloc(JOBS, sizeof *c[i].ids);
        assert_non_null(c[i].ids);
        if (db_open(stack_conf, &c[i].db) || db_set_read_committed(c[i].db))
            fail_msg("cannot open session %d", i);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, claimer_run, &c[i]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);

    for (int i = 0; i < THREADS; i++) {
        if (c[i].error)
            fail_msg("claimer %d: %s (%s)", i, cp_strerror(c[i].error), db_error(c[i].db));
        print_message("# claimer %d: %zu jobs in %d claims\n", i, c[i].n, c[i].claims);
        for (size_t k = 0; k < c[i].n; k++) {
            assert_true(total < JOBS);
            all[total++] = c[i].ids[k];
        }
        free(c[i].ids);
        db_close(c[i].db);
    }
    assert_int_equal(total, JOBS);
    qsort(all, total, sizeof all[0], cmp_ll);
    for (size_t i = 1; i < total; i++)
        if (all[i] == all[i - 1])
            fail_msg("job %lld was claimed twice", all[i]);
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_race'"
                                       " AND state = 'succeeded' AND attempts = 1", NULL, 0),
                     JOBS);
}

/* ------------------------------------------------ the claimant's writes -- */

static void test_fenced_completion(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_failure f = { JOB_ERR_TRANSIENT, "boom", 0 };
    struct job_batch b = { 0 };
    struct lease wrong_token, wrong_owner;
    long long ids[3];
    size_t done = 99;

    for (int i = 0; i < 3; i++)
        ENQ(db, "zz_qt_fence", .unique_key = i == 0 ? "zz-qt:fence" : NULL);
    claim_n(db, "zz_qt_fence", worker_a, 3, 3, 60000, &b);
    for (int i = 0; i < 3; i++)
        ids[i] = b.jobs[i].id;
    wrong_token = b.lease;
    wrong_token.token ^= 1;
    wrong_owner = b.lease;
    wrong_owner.owner = worker_b;

    assert_int_equal(queue_complete(db, &wrong_token, ids, 3, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(queue_complete(db, &wrong_owner, ids, 3, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(queue_fail(db, &wrong_token, &b.jobs[0], &f, &p, RND_MAX, NULL),
                     CP_ECONFLICT);
    assert_int_equal(queue_defer(db, &wrong_owner, &b.jobs[0], 1000, "later"), CP_ECONFLICT);
    assert_int_equal(queue_progress(db, &wrong_token, ids[0], 1, 2), CP_ECONFLICT);
    size_t released = 99;
    assert_int_equal(queue_release(db, &wrong_token, ids, 3, &released), 0);
    assert_int_equal(released, 0);
    for (int i = 0; i < 3; i++)
        assert_state(db, ids[i], "running");
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM job_attempts a JOIN jobs j"
                                   " ON j.id = a.job_id WHERE j.queue = 'zz_qt_fence'", NULL, 0), 0);

    /* progress: written, the same figures again are no conflict */
    assert_int_equal(queue_progress(db, &b.lease, ids[0], 10, 100), 0);
    assert_int_equal(queue_progress(db, &b.lease, ids[0], 10, 100), 0);
    assert_int_equal(job_i64(db, "SELECT progress_done * 1000 + progress_total FROM jobs"
                                 " WHERE id = ?", ids[0]), 10100);
    assert_int_equal(queue_progress(db, &b.lease, ids[0], 11, 0), 0);
    assert_int_equal(job_i64(db, "SELECT progress_total IS NULL AND progress_done = 11"
                                 " FROM jobs WHERE id = ?", ids[0]), 1);
    assert_int_equal(queue_progress(db, &b.lease, ids[0], -1, 0), CP_EINVAL);

    /* the right lease, with one id given twice and one not held */
    long long some[] = { ids[0], ids[1], ids[1], 999999999999LL };
    assert_int_equal(queue_complete(db, &b.lease, some, 4, &done), 0);
    assert_int_equal(done, 2);
    assert_state(db, ids[0], "succeeded");
    assert_state(db, ids[1], "succeeded");
    assert_int_equal(job_i64(db, "SELECT finished_at IS NOT NULL AND active_key IS NULL AND"
                                 " owner IS NULL AND lease_token IS NULL AND"
                                 " lease_expires_at IS NULL FROM jobs WHERE id = ?", ids[0]), 1);
    /* finished: every later write by the claimant is refused */
    assert_int_equal(queue_complete(db, &b.lease, ids, 2, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, RND_MAX, NULL), CP_ECONFLICT);
    assert_int_equal(queue_progress(db, &b.lease, ids[0], 1, 2), CP_ECONFLICT);
    assert_state(db, ids[0], "succeeded");
    assert_int_equal(queue_complete(db, &b.lease, ids + 2, 1, &done), 0);
    assert_int_equal(done, 1);
    assert_int_equal(queue_complete(db, &b.lease, ids, 0, &done), 0);
    assert_int_equal(done, 0);
    job_batch_free(&b);
}

static void test_fail_retries_later(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_batch b = { 0 };
    enum job_state st = JOB_READY;
    char text[256];
    long long id;

    id = ENQ(db, "zz_qt_fail", .max_attempts = 3, .unique_key = "zz-qt:fail");
    claim_n(db, "zz_qt_fail", worker_a, 1, 1, 60000, &b);
    struct job_failure f = { JOB_ERR_TRANSIENT, "upstream said 503", 0 };
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, RND_MAX, &st), 0);
    assert_int_equal(st, JOB_FAILED);
    assert_state(db, id, "failed");
    job_text(db, "SELECT CONCAT_WS(',', attempts, last_error, last_error_class, owner IS NULL,"
                 " lease_token IS NULL, active_key, run_at BETWEEN NOW(3) + INTERVAL 55 SECOND"
                 " AND NOW(3) + INTERVAL 61 SECOND) FROM jobs WHERE id = ?", id, text, sizeof text);
    assert_string_equal(text, "1,upstream said 503,transient,1,1,zz-qt:fail,1");
    job_text(db, "SELECT CONCAT_WS(',', a.attempt, a.outcome, a.error_class, a.error, a.worker_id,"
                 " a.worker_host, a.worker_pid, a.started_at = j.claimed_at)"
                 " FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE a.job_id = ?",
             id, text, sizeof text);
    char expect[256];
    snprintf(expect, sizeof expect, "1,failed,transient,upstream said 503,%lld," HOST ",4242,1",
             worker_a);
    assert_string_equal(text, expect);
    job_batch_free(&b);

    /* not claimable until due; due again once run_at passes (promote) */
    claim_n(db, "zz_qt_fail", worker_a, 1, 0, 60000, &b);
    stackdb_exec(db, "UPDATE jobs SET run_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (struct db_param[]){ DB_I64(id) }, 1);
    size_t n = 0;
    assert_int_equal(queue_promote_due(db, 1000, &n), 0);
    assert_true(n >= 1);
    assert_state(db, id, "ready");

    /* the second attempt: a worker without a workers row */
    claim_n(db, "zz_qt_fail", 987654321, 1, 1, 60000, &b);
    assert_int_equal(b.jobs[0].attempts, 2);
    f.message = "again";
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &(struct retry_policy)NO_WAIT,
                                RND_MAX, &st), 0);
    assert_int_equal(st, JOB_READY);                  /* no wait: due at once */
    assert_state(db, id, "ready");
    job_text(db, "SELECT CONCAT_WS(',', attempt, outcome, worker_id, worker_host = '',"
                 " worker_pid IS NULL) FROM job_attempts WHERE job_id = ? ORDER BY id DESC LIMIT 1",
             id, text, sizeof text);
    assert_string_equal(text, "2,failed,987654321,1,1");
    job_batch_free(&b);
}

static void test_last_attempt_dies(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_batch b = { 0 };
    enum job_state st = JOB_READY;
    char text[2048], expect[512];
    long long id, perm, count;

    id = ENQ(db, "zz_qt_dead", .kind = "sleep", .max_attempts = 1, .unique_key = "zz-qt:dead",
             .user_id = 31);
    perm = ENQ(db, "zz_qt_dead", .max_attempts = 5);
    claim_n(db, "zz_qt_dead", worker_b, 2, 2, 60000, &b);
    struct job_failure f = { JOB_ERR_TRANSIENT, "timed out", 0 };
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, RND_MAX, &st), 0);
    assert_int_equal(st, JOB_DEAD);
    assert_state(db, id, "dead");
    assert_int_equal(job_i64(db, "SELECT finished_at IS NOT NULL AND active_key IS NULL AND"
                                 " owner IS NULL AND attempts = 1 FROM jobs WHERE id = ?", id), 1);
    job_text(db, "SELECT CONCAT_WS(',', outcome, error_class, error) FROM job_attempts"
                 " WHERE job_id = ?", id, text, sizeof text);
    assert_string_equal(text, "dead,transient,timed out");
    job_text(db, "SELECT CONCAT_WS('|', kind, severity, subject_type, user_id, message)"
                 " FROM alert_events WHERE subject_type = 'job' AND subject_id = ?",
             id, text, sizeof text);
    snprintf(expect, sizeof expect, "job.dead|warning|job|31|job %lld (sleep) is dead after 1"
                                    " attempt: transient: timed out", id);
    assert_string_equal(text, expect);

    /* permanent: dead on its first of five attempts */
    f.cls = JOB_ERR_PERMANENT;
    f.message = "HTTP 400: video too long";
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[1], &f, &p, RND_MAX, &st), 0);
    assert_int_equal(st, JOB_DEAD);
    assert_state(db, perm, "dead");
    assert_int_equal(job_i64(db, "SELECT COUNT(*) FROM alert_events WHERE subject_type = 'job'"
                                 " AND subject_id = ? AND user_id IS NULL", perm), 1);
    count = stackdb_i64(db, "SELECT COUNT(*) FROM dead_jobs WHERE queue = 'zz_qt_dead'", NULL, 0);
    assert_int_equal(count, 2);
    job_batch_free(&b);

    /* the dead job's key is free again */
    ENQ(db, "zz_qt_dead", .unique_key = "zz-qt:dead");

    /* long and broken messages are cut at a character boundary */
    char msg[3000];
    memset(msg, 'x', 1023);
    strcpy(msg + 1023, "\xc3\xa9 and more");
    ENQ(db, "zz_qt_dead2", .max_attempts = 1);
    claim_n(db, "zz_qt_dead2", worker_b, 1, 1, 60000, &b);
    f.message = msg;
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, RND_MAX, &st), 0);
    assert_int_equal(job_i64(db, "SELECT LENGTH(last_error) FROM jobs WHERE id = ?",
                             b.jobs[0].id), 1023);
    assert_int_equal(job_i64(db, "SELECT LENGTH(error) FROM job_attempts WHERE job_id = ?",
                             b.jobs[0].id), 1023);
    assert_true(job_i64(db, "SELECT LENGTH(message) FROM alert_events WHERE subject_type = 'job'"
                            " AND subject_id = ?", b.jobs[0].id) <= JOB_ERROR_MAX);
    job_batch_free(&b);

    ENQ(db, "zz_qt_dead3", .max_attempts = 1);
    claim_n(db, "zz_qt_dead3", worker_b, 1, 1, 60000, &b);
    f.message = "bad \xff\xfe bytes \xe2\x82 and\ttab\x01";
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, RND_MAX, &st), 0);
    job_text(db, "SELECT last_error FROM jobs WHERE id = ?", b.jobs[0].id, text, sizeof text);
    assert_string_equal(text, "bad ?? bytes ?? and\ttab ");
    job_batch_free(&b);
}

static void test_defer_refunds(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_batch b = { 0 };
    enum job_state st = JOB_READY;
    char text[256];
    long long id, limited;

    id = ENQ(db, "zz_qt_defer", .max_attempts = 1);
    limited = ENQ(db, "zz_qt_defer", .max_attempts = 1);
    claim_n(db, "zz_qt_defer", worker_a, 2, 2, 60000, &b);
    assert_int_equal(queue_defer(db, &b.lease, &b.jobs[0], 90000, "quota resets at 12:00"), 0);
    job_text(db, "SELECT CONCAT_WS(',', state, attempts, last_error_class, last_error,"
                 " run_at BETWEEN NOW(3) + INTERVAL 85 SECOND AND NOW(3) + INTERVAL 91 SECOND)"
                 " FROM jobs WHERE id = ?", id, text, sizeof text);
    assert_string_equal(text, "scheduled,0,rate_limited,quota resets at 12:00,1");
    job_text(db, "SELECT CONCAT_WS(',', attempt, outcome, error_class) FROM job_attempts"
                 " WHERE job_id = ?", id, text, sizeof text);
    assert_string_equal(text, "1,deferred,rate_limited");

    /* a rate-limited failure on the only attempt defers instead of dying */
    struct job_failure f = { JOB_ERR_RATE_LIMITED, "429", 30000 };
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[1], &f, &p, RND_MAX, &st), 0);
    assert_int_equal(st, JOB_SCHEDULED);
    job_text(db, "SELECT CONCAT_WS(',', state, attempts, run_at BETWEEN NOW(3) + INTERVAL 25 SECOND"
                 " AND NOW(3) + INTERVAL 31 SECOND) FROM jobs WHERE id = ?", limited, text,
             sizeof text);
    assert_string_equal(text, "scheduled,0,1");
    job_batch_free(&b);

    /* once due it is claimed with the same attempt number */
    stackdb_exec(db, "UPDATE jobs SET run_at = NOW(3) WHERE queue = 'zz_qt_defer'", NULL, 0);
    size_t n = 0;
    assert_int_equal(queue_promote_due(db, 1000, &n), 0);
    claim_n(db, "zz_qt_defer", worker_a, 2, 2, 60000, &b);
    assert_int_equal(b.jobs[0].attempts, 1);
    assert_int_equal(b.jobs[1].attempts, 1);
    job_batch_free(&b);
}

static void test_release_refunds(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct job_batch b = { 0 };
    long long ids[3];
    size_t released = 0;

    for (int i = 0; i < 3; i++)
        ENQ(db, "zz_qt_release", .max_attempts = 1);
    claim_n(db, "zz_qt_release", worker_a, 3, 3, 60000, &b);
    for (int i = 0; i < 3; i++)
        ids[i] = b.jobs[i].id;
    assert_int_equal(queue_release(db, &b.lease, ids, 3, &released), 0);
    assert_int_equal(released, 3);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_release'"
                                   " AND state = 'ready' AND attempts = 0 AND owner IS NULL"
                                   " AND lease_token IS NULL", NULL, 0), 3);
    assert_int_equal(queue_release(db, &b.lease, ids, 3, NULL), 0);
    job_batch_free(&b);

    /* released again and again, the attempt is never spent */
    for (int round = 0; round < 3; round++) {
        claim_n(db, "zz_qt_release", worker_a, 3, 3, 60000, &b);
        assert_int_equal(b.jobs[0].attempts, 1);
        assert_int_equal(queue_release(db, &b.lease, ids, 3, &released), 0);
        assert_int_equal(released, 3);
        job_batch_free(&b);
    }
    /* claimed in the same order as before */
    claim_n(db, "zz_qt_release", worker_a, 3, 3, 60000, &b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b.jobs[i].id, ids[i]);
    job_batch_free(&b);
}

static void test_heartbeat(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct job_batch b = { 0 };
    long long ids[4];
    size_t renewed = 0;

    for (int i = 0; i < 3; i++)
        ENQ(db, "zz_qt_beat");
    claim_n(db, "zz_qt_beat", worker_a, 3, 3, 1000, &b);
    for (int i = 0; i < 3; i++)
        ids[i] = b.jobs[i].id;
    ids[3] = 999999999999LL;
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_beat'"
                                   " AND lease_expires_at < NOW(3) + INTERVAL 2 SECOND", NULL, 0), 3);

    assert_int_equal(queue_heartbeat(db, worker_a, ids, 4, 600000, &renewed), 0);
    assert_int_equal(renewed, 3);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_beat'"
                                   " AND lease_expires_at > NOW(3) + INTERVAL 590 SECOND", NULL, 0), 3);
    /* at once again: the same lease, still counted */
    assert_int_equal(queue_heartbeat(db, worker_a, ids, 3, 600000, &renewed), 0);
    assert_int_equal(renewed, 3);
    /* another owner renews nothing */
    assert_int_equal(queue_heartbeat(db, worker_b, ids, 3, 5000, &renewed), 0);
    assert_int_equal(renewed, 0);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_beat'"
                                   " AND lease_expires_at > NOW(3) + INTERVAL 590 SECOND", NULL, 0), 3);
    /* finished jobs are not renewed */
    size_t done = 0;
    assert_int_equal(queue_complete(db, &b.lease, ids, 1, &done), 0);
    assert_int_equal(queue_heartbeat(db, worker_a, ids, 3, 600000, &renewed), 0);
    assert_int_equal(renewed, 2);
    assert_int_equal(queue_heartbeat(db, worker_a, ids, 0, 600000, NULL), 0);
    assert_int_equal(queue_heartbeat(db, worker_a, ids, 3, 0, NULL), CP_EINVAL);
    job_batch_free(&b);
}

/* ------------------------------------------------------------ recovery -- */

static void test_release_owner(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_batch mine = { 0 }, theirs = { 0 };
    size_t n = 99;
    char text[256];
    /* an owner of its own: the other tests' claims stay out of the count */
    long long gone = add_worker(db, 4444);

    assert_true(gone > 0);

    ENQ(db, "zz_qt_owner", .max_attempts = 5);
    ENQ(db, "zz_qt_owner", .max_attempts = 1, .unique_key = "zz-qt:owner");
    ENQ(db, "zz_qt_owner", .max_attempts = 5);
    claim_n(db, "zz_qt_owner", gone, 2, 2, 600000, &mine);
    claim_n(db, "zz_qt_owner", worker_b, 1, 1, 600000, &theirs);

    assert_int_equal(queue_release_owner(db, gone, -1, "worker process 4444 killed by signal 9",
                                         &p, &n), 0);
    assert_int_equal(n, 2);
    job_text(db, "SELECT CONCAT_WS(',', state, attempts, last_error_class, last_error, owner IS NULL)"
                 " FROM jobs WHERE id = ?", mine.jobs[0].id, text, sizeof text);
    assert_string_equal(text, "failed,1,lost,worker process 4444 killed by signal 9,1");
    job_text(db, "SELECT CONCAT_WS(',', outcome, error_class, error, worker_host, worker_pid)"
                 " FROM job_attempts WHERE job_id = ?", mine.jobs[0].id, text, sizeof text);
    assert_string_equal(text, "lost,lost,worker process 4444 killed by signal 9," HOST ",4444");
    /* the one on its last attempt is dead, with an alert */
    assert_state(db, mine.jobs[1].id, "dead");
    assert_int_equal(job_i64(db, "SELECT COUNT(*) FROM alert_events WHERE subject_type = 'job'"
                                 " AND subject_id = ?", mine.jobs[1].id), 1);
    job_text(db, "SELECT outcome FROM job_attempts WHERE job_id = ?", mine.jobs[1].id, text,
             sizeof text);
    assert_string_equal(text, "dead");
    /* another owner's job is untouched; the first owner's late completion is refused */
    assert_state(db, theirs.jobs[0].id, "running");
    size_t done = 9;
    long long first = mine.jobs[0].id;
    assert_int_equal(queue_complete(db, &mine.lease, &first, 1, &done), 0);
    assert_int_equal(done, 0);
    /* nothing more to release */
    assert_int_equal(queue_release_owner(db, gone, -1, "again", &p, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(queue_release_owner(db, 0, -1, "x", &p, &n), CP_EINVAL);
    job_batch_free(&mine);
    job_batch_free(&theirs);
}

/* Only the job in progress spends an attempt; the ones held but not yet
 * started are refunded. */
static void test_release_owner_refunds_unstarted(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_batch held = { 0 };
    size_t n = 99;
    char text[256];
    long long gone = add_worker(db, 4545);

    assert_true(gone > 0);
    ENQ(db, "zz_qt_owner2", .max_attempts = 5);
    ENQ(db, "zz_qt_owner2", .max_attempts = 5);
    ENQ(db, "zz_qt_owner2", .max_attempts = 5);
    claim_n(db, "zz_qt_owner2", gone, 3, 3, 600000, &held);

    assert_int_equal(queue_release_owner(db, gone, held.jobs[1].id, "worker process 4545 killed by signal 9",
                                         &p, &n), 0);
    assert_int_equal(n, 3);
    job_text(db, "SELECT CONCAT_WS(',', state, attempts, last_error_class) FROM jobs WHERE id = ?",
             held.jobs[1].id, text, sizeof text);
    assert_string_equal(text, "failed,1,lost");
    for (int k = 0; k < 3; k += 2) {
        job_text(db, "SELECT CONCAT_WS(',', state, attempts, last_error_class) FROM jobs WHERE id = ?",
                 held.jobs[k].id, text, sizeof text);
        assert_string_equal(text, "ready,0,released");
        job_text(db, "SELECT CONCAT_WS(',', outcome, error) FROM job_attempts WHERE job_id = ?",
                 held.jobs[k].id, text, sizeof text);
        assert_string_equal(text, "released,worker process 4545 killed by signal 9 before the job started");
    }
    job_batch_free(&held);
}

static void test_promote_due(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    long long later, due, failed_due, failed_later;
    size_t n = 0;

    later = ENQ(db, "zz_qt_promote", .delay_ms = 60000);
    due = ENQ(db, "zz_qt_promote", .delay_ms = 60000);
    failed_due = ENQ(db, "zz_qt_promote");
    failed_later = ENQ(db, "zz_qt_promote");
    stackdb_exec(db, "UPDATE jobs SET run_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (struct db_param[]){ DB_I64(due) }, 1);
    stackdb_exec(db, "UPDATE jobs SET state = 'failed', attempts = 1, run_at = NOW(3) - INTERVAL 5 SECOND"
                " WHERE id = ?", (struct db_param[]){ DB_I64(failed_due) }, 1);
    stackdb_exec(db, "UPDATE jobs SET state = 'failed', attempts = 1, run_at = NOW(3) + INTERVAL 1 HOUR"
                " WHERE id = ?", (struct db_param[]){ DB_I64(failed_later) }, 1);

    assert_int_equal(queue_promote_due(db, 1000, &n), 0);
    assert_true(n >= 2);
    assert_state(db, later, "scheduled");
    assert_state(db, due, "ready");
    assert_state(db, failed_due, "ready");
    assert_state(db, failed_later, "failed");
    assert_int_equal(job_i64(db, "SELECT attempts FROM jobs WHERE id = ?", failed_due), 1);
    assert_int_equal(queue_promote_due(db, 0, &n), CP_EINVAL);

    /* a limit is kept, and a full batch says so */
    for (int i = 0; i < 5; i++)
        ENQ(db, "zz_qt_promote2", .delay_ms = 1);
    stackdb_exec(db, "UPDATE jobs SET run_at = NOW(3) - INTERVAL 1 SECOND WHERE queue = 'zz_qt_promote2'",
            NULL, 0);
    assert_int_equal(queue_promote_due(db, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(queue_promote_due(db, 1000, &n), 0);
    assert_int_equal(stackdb_i64(db, "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_promote2'"
                                   " AND state = 'ready'", NULL, 0), 5);
}

static void test_reap_expired(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = NO_WAIT;
    struct job_batch b = { 0 };
    size_t n = 0;
    char text[256];

    ENQ(db, "zz_qt_reap", .max_attempts = 2);
    ENQ(db, "zz_qt_reap", .max_attempts = 2);
    claim_n(db, "zz_qt_reap", worker_b, 2, 2, 600000, &b);
    stackdb_exec(db, "UPDATE jobs SET lease_expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (struct db_param[]){ DB_I64(b.jobs[0].id) }, 1);

    assert_int_equal(queue_reap_expired(db, 1000, &p, &n), 0);
    assert_true(n >= 1);
    assert_state(db, b.jobs[0].id, "ready");              /* no wait in this policy */
    assert_state(db, b.jobs[1].id, "running");            /* its lease is still good */
    job_text(db, "SELECT CONCAT_WS(',', attempt, outcome, error_class, worker_pid, error)"
                 " FROM job_attempts WHERE job_id = ?", b.jobs[0].id, text, sizeof text);
    char expect[128];
    snprintf(expect, sizeof expect, "1,lost,lost,4343,lease expired (worker %lld)", worker_b);
    assert_string_equal(text, expect);
    /* the old claimant can no longer finish it */
    size_t done = 9;
    assert_int_equal(queue_complete(db, &b.lease, &b.jobs[0].id, 1, &done), 0);
    assert_int_equal(done, 0);
    job_batch_free(&b);

    /* second attempt expires too: the last one, dead */
    claim_n(db, "zz_qt_reap", worker_b, 1, 1, 600000, &b);
    assert_int_equal(b.jobs[0].attempts, 2);
    stackdb_exec(db, "UPDATE jobs SET lease_expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (struct db_param[]){ DB_I64(b.jobs[0].id) }, 1);
    assert_int_equal(queue_reap_expired(db, 1000, &p, &n), 0);
    assert_state(db, b.jobs[0].id, "dead");
    assert_int_equal(job_i64(db, "SELECT COUNT(*) FROM alert_events WHERE subject_type = 'job'"
                                 " AND subject_id = ?", b.jobs[0].id), 1);
    job_batch_free(&b);
    assert_int_equal(queue_reap_expired(db, 0, &p, &n), CP_EINVAL);
}

static void test_prune(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const long long day_s = 24 * 3600;
    long long old_ok, new_ok, old_cancelled, dead_young, dead_old, unfinished;
    size_t n = 0;

    old_ok = ENQ(db, "zz_qt_prune");
    new_ok = ENQ(db, "zz_qt_prune");
    old_cancelled = ENQ(db, "zz_qt_prune");
    dead_young = ENQ(db, "zz_qt_prune");
    dead_old = ENQ(db, "zz_qt_prune");
    unfinished = ENQ(db, "zz_qt_prune");
    force_finished(db, old_ok, "succeeded", 2 * day_s, NULL);
    force_finished(db, new_ok, "succeeded", 3600, NULL);
    force_finished(db, old_cancelled, "cancelled", 3 * day_s, NULL);
    force_finished(db, dead_young, "dead", 2 * day_s, "transient");
    force_finished(db, dead_old, "dead", 40 * day_s, "transient");
    stackdb_exec(db, "UPDATE jobs SET finished_at = NOW(3) - INTERVAL 50 DAY WHERE id = ?",
            (struct db_param[]){ DB_I64(unfinished) }, 1);   /* never pruned while unfinished */
    stackdb_exec(db, "INSERT INTO job_attempts (job_id, attempt, outcome, error_class) VALUES"
                " (?, 1, 'failed', 'transient'), (?, 1, 'failed', 'transient')",
            (struct db_param[]){ DB_I64(old_ok), DB_I64(dead_young) }, 2);

    /* one at a time: a full batch */
    assert_int_equal(queue_prune(db, day_s * 1000, 30 * day_s * 1000, 1, &n), 0);
    assert_int_equal(n, 1);
    do
        assert_int_equal(queue_prune(db, day_s * 1000, 30 * day_s * 1000, 500, &n), 0);
    while (n == 500);

    assert_int_equal(job_exists(db, old_ok), 0);
    assert_int_equal(job_exists(db, old_cancelled), 0);
    assert_int_equal(job_exists(db, dead_old), 0);
    assert_int_equal(job_exists(db, new_ok), 1);
    assert_int_equal(job_exists(db, dead_young), 1);
    assert_int_equal(job_exists(db, unfinished), 1);
    assert_int_equal(job_i64(db, "SELECT COUNT(*) FROM job_attempts WHERE job_id = ?", old_ok), 0);
    assert_int_equal(job_i64(db, "SELECT COUNT(*) FROM job_attempts WHERE job_id = ?", dead_young),
                     1);
    assert_int_equal(queue_prune(db, -1, 0, 10, &n), CP_EINVAL);
    assert_int_equal(queue_prune(db, 0, 0, 0, &n), CP_EINVAL);
}

/* --------------------------------------------------------- operators -- */

struct state_case {
    const char *state;
    int cancel_rc;          /* expected of queue_cancel */
    int retry_rc;           /* expected of queue_retry */
};

static const struct state_case state_cases[] = {
    { "scheduled", 0, CP_ECONFLICT },
    { "ready", 0, CP_ECONFLICT },
    { "running", CP_ECONFLICT, CP_ECONFLICT },
    { "failed", 0, 0 },
    { "succeeded", CP_ECONFLICT, CP_ECONFLICT },
    { "dead", 0, 0 },                      /* cancel = discard from the DLQ */
    { "cancelled", CP_ECONFLICT, 0 },
};

static long long job_in_state(struct db *db, const char *state, long long user_id)
{
    long long id = ENQ(db, "zz_qt_ops", .user_id = user_id, .unique_key = NULL);
    int finished = strcmp(state, "succeeded") == 0 || strcmp(state, "dead") == 0 ||
                   strcmp(state, "cancelled") == 0;
    struct db_param p[] = { DB_STR(state), DB_I64(finished), DB_I64(id) };

    stackdb_exec(db, "UPDATE jobs SET state = ?, attempts = 3,"
                " finished_at = IF(?, NOW(3), NULL) WHERE id = ?", p, 3);
    return id;
}

static void test_cancel_and_retry_rules(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;

    for (size_t i = 0; i < sizeof state_cases / sizeof state_cases[0]; i++) {
        const struct state_case *c = &state_cases[i];
        enum job_state was = JOB_CANCELLED, expect;
        long long id;
        int rc;

        assert_int_equal(job_state_parse(c->state, &expect), 0);
        assert_string_equal(job_state_name(expect), c->state);

        id = job_in_state(db, c->state, 0);
        rc = queue_cancel(db, id, 0, &was);
        if (rc != c->cancel_rc)
            fail_msg("cancel %s: %s", c->state, cp_strerror(rc));
        assert_int_equal(was, expect);
        assert_state(db, id, rc ? c->state : "cancelled");
        if (!rc)
            assert_int_equal(job_i64(db, "SELECT finished_at IS NOT NULL FROM jobs WHERE id = ?",
                                     id), 1);

        id = job_in_state(db, c->state, 0);
        was = JOB_SCHEDULED;
        rc = queue_retry(db, id, 0, &was);
        if (rc != c->retry_rc)
            fail_msg("retry %s: %s", c->state, cp_strerror(rc));
        assert_int_equal(was, expect);
        if (rc)
            assert_state(db, id, c->state);
        else
            assert_int_equal(job_i64(db, "SELECT state = 'ready' AND attempts = 0 AND"
                                         " finished_at IS NULL AND run_at <= NOW(3)"
                                         " FROM jobs WHERE id = ?", id), 1);
    }
    assert_int_equal(queue_cancel(db, 999999999999LL, 0, NULL), CP_ENOTFOUND);
    assert_int_equal(queue_retry(db, 999999999999LL, 0, NULL), CP_ENOTFOUND);
}

static void test_user_scope(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    enum job_state was = JOB_SCHEDULED;
    long long mine = job_in_state(db, "ready", 501), dead = job_in_state(db, "dead", 501);
    long long system = job_in_state(db, "ready", 0);

    /* another user's job, or the system's, does not exist for a user */
    assert_int_equal(queue_cancel(db, mine, 502, &was), CP_ENOTFOUND);
    assert_int_equal(queue_cancel(db, system, 502, &was), CP_ENOTFOUND);
    assert_int_equal(queue_retry(db, dead, 502, &was), CP_ENOTFOUND);
    assert_state(db, mine, "ready");
    assert_state(db, dead, "dead");
    /* its owner and the unscoped may */
    assert_int_equal(queue_cancel(db, mine, 501, &was), 0);
    assert_int_equal(was, JOB_READY);
    assert_int_equal(queue_retry(db, dead, 501, &was), 0);
    assert_int_equal(was, JOB_DEAD);
    assert_int_equal(queue_cancel(db, system, 0, &was), 0);
}

static void test_retry_restores_key(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const struct retry_policy p = LONG_WAIT;
    struct job_failure f = { JOB_ERR_PERMANENT, "no", 0 };
    struct job_batch b = { 0 };
    enum job_state was = JOB_READY;
    long long dead, taker;
    char key[64];

    dead = ENQ(db, "zz_qt_rekey", .unique_key = "zz-qt:rekey");
    claim_n(db, "zz_qt_rekey", worker_a, 1, 1, 60000, &b);
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, 0, NULL), 0);
    job_batch_free(&b);
    assert_state(db, dead, "dead");

    /* retried: its key holds again */
    assert_int_equal(queue_retry(db, dead, 0, &was), 0);
    job_text(db, "SELECT active_key FROM jobs WHERE id = ?", dead, key, sizeof key);
    assert_string_equal(key, "zz-qt:rekey");
    struct job_spec dup = { .kind = "noop", .queue = "zz_qt_rekey", .unique_key = "zz-qt:rekey" };
    long long id = 0;
    assert_int_equal(queue_enqueue(db, &dup, &id), CP_ECONFLICT);
    assert_int_equal(id, dead);

    /* dead again, and meanwhile another job took the key: no retry */
    claim_n(db, "zz_qt_rekey", worker_a, 1, 1, 60000, &b);
    assert_int_equal(queue_fail(db, &b.lease, &b.jobs[0], &f, &p, 0, NULL), 0);
    job_batch_free(&b);
    taker = ENQ(db, "zz_qt_rekey", .unique_key = "zz-qt:rekey");
    assert_int_equal(queue_retry(db, dead, 0, &was), CP_ECONFLICT);
    assert_int_equal(was, JOB_DEAD);
    assert_state(db, dead, "dead");
    assert_int_equal(job_i64(db, "SELECT active_key IS NULL FROM jobs WHERE id = ?", dead), 1);
    /* and dead-letter retries skip it */
    size_t n = 9;
    struct dead_filter df = { .queue = "zz_qt_rekey" };
    assert_int_equal(queue_retry_dead(db, &df, 1000, &n), 0);
    assert_int_equal(n, 0);
    assert_state(db, dead, "dead");
    assert_state(db, taker, "ready");
}

static void test_retry_dead(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct dead_filter f = { .queue = "zz_qt_dlq" };
    long long ids[8];
    size_t n = 0;
    const char *count_ready = "SELECT COUNT(*) FROM jobs WHERE queue = 'zz_qt_dlq' AND state = 'ready'";

    /* 0,1: noop transient; 2: sleep transient; 3: noop permanent; 4: user 600's;
     * 5: keyed; 6: ready (not dead); 7: dead on another queue */
    for (int i = 0; i < 8; i++) {
        ids[i] = ENQ(db, i == 7 ? "zz_qt_dlq2" : "zz_qt_dlq", .kind = i == 2 ? "sleep" : "noop",
                     .user_id = i == 4 ? 600 : 0, .unique_key = i == 5 ? "zz-qt:dlq" : NULL);
        if (i != 6)
            force_finished(db, ids[i], "dead", 60, i == 3 ? "permanent" : "transient");
    }

    f.kind = "noop";
    f.error_class = "permanent";
    assert_int_equal(queue_retry_dead(db, &f, 1000, &n), 0);
    assert_int_equal(n, 1);
    assert_state(db, ids[3], "ready");

    f.error_class = NULL;
    f.user_scope = 600;
    assert_int_equal(queue_retry_dead(db, &f, 1000, &n), 0);
    assert_int_equal(n, 1);
    assert_state(db, ids[4], "ready");

    f.user_scope = 0;
    assert_int_equal(queue_retry_dead(db, &f, 1, &n), 0);     /* oldest first */
    assert_int_equal(n, 1);
    assert_state(db, ids[0], "ready");
    assert_state(db, ids[1], "dead");

    f.kind = NULL;
    assert_int_equal(queue_retry_dead(db, &f, 1000, &n), 0);
    assert_int_equal(n, 3);                                   /* 1, 2 and the keyed 5 */
    assert_int_equal(stackdb_i64(db, count_ready, NULL, 0), 7);
    assert_int_equal(job_i64(db, "SELECT active_key = unique_key AND attempts = 0 FROM jobs"
                                 " WHERE id = ?", ids[5]), 1);
    assert_state(db, ids[7], "dead");
    assert_int_equal(queue_retry_dead(db, &f, 1000, &n), 0);
    assert_int_equal(n, 0);

    f.error_class = "bogus";
    assert_int_equal(queue_retry_dead(db, &f, 10, &n), CP_EINVAL);
    assert_int_equal(queue_retry_dead(db, NULL, 0, &n), CP_EINVAL);
}

/* --------------------------------------------------------- recurring -- */

struct runner {
    struct db *db;
    pthread_barrier_t *start;
    size_t enqueued;
    int rc;
};

static void *runner_run(void *arg)
{
    struct runner *r = arg;

    pthread_barrier_wait(r->start);
    r->rc = recurring_run_due(r->db, 100, &r->enqueued);
    return NULL;
}

static long long recurring_jobs(struct db *db, const char *unfinished_only)
{
    char sql[256];

    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM jobs WHERE unique_key = 'recurring:zz-qt-rec'%s",
             unfinished_only ? unfinished_only : "");
    return stackdb_i64(db, sql, NULL, 0);
}

/* Two sessions run the due tasks at the same moment. */
static void race_run_due(struct fixture *fx)
{
    struct runner r[2] = { { fx->db, NULL, 0, 0 }, { fx->other, NULL, 0, 0 } };
    pthread_barrier_t start;
    pthread_t t[2];

    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++) {
        r[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, runner_run, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++)
        if (r[i].rc)
            fail_msg("recurring_run_due %d: %s (%s)", i, cp_strerror(r[i].rc),
                     db_error(i ? fx->other : fx->db));
}

static void test_recurring(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const char *due_now = "UPDATE recurring_tasks SET next_run_at = NOW(3) - INTERVAL 1 SECOND"
                          " WHERE name = 'zz-qt-rec'";
    const char *is_future = "SELECT next_run_at > NOW(3) FROM recurring_tasks WHERE name = 'zz-qt-rec'";
    struct recurring_task t = { "zz-qt-rec", "noop", "zz_qt_rec", "{\"r\":1}", 3600000 };
    char text[256];

    /* registered not due: nothing to run */
    assert_int_equal(recurring_register(db, &t, 0), 0);
    assert_int_equal(stackdb_i64(db, "SELECT next_run_at > NOW(3) + INTERVAL 3590 SECOND"
                                   " FROM recurring_tasks WHERE name = 'zz-qt-rec'", NULL, 0), 1);
    race_run_due(fx);
    assert_int_equal(recurring_jobs(db, NULL), 0);

    /* re-registering updates, keeping the due time when the interval
     * grows ... */
    t.interval_ms = 7200000;
    assert_int_equal(recurring_register(db, &t, 1), 0);
    job_text(db, "SELECT CONCAT_WS(',', kind, queue, interval_ms, payload,"
                 " next_run_at > NOW(3) + INTERVAL 3590 SECOND"
                 " AND next_run_at <= NOW(3) + INTERVAL 3600 SECOND) FROM recurring_tasks"
                 " WHERE name = 'zz-qt-rec' AND 0 = ?", 0, text, sizeof text);
    assert_string_equal(text, "noop,zz_qt_rec,7200000,{\"r\":1},1");
    /* ... and bringing it within one interval when it shrinks */
    t.interval_ms = 60000;
    assert_int_equal(recurring_register(db, &t, 1), 0);
    job_text(db, "SELECT CONCAT_WS(',', kind, queue, interval_ms, payload,"
                 " next_run_at > NOW(3) AND next_run_at <= NOW(3) + INTERVAL 60 SECOND)"
                 " FROM recurring_tasks WHERE name = 'zz-qt-rec' AND 0 = ?", 0, text, sizeof text);
    assert_string_equal(text, "noop,zz_qt_rec,60000,{\"r\":1},1");

    /* due, and two schedulers race: one job */
    for (int round = 1; round <= 5; round++) {
        struct job_batch b = { 0 };
        size_t done = 0;

        stackdb_exec(db, due_now, NULL, 0);
        race_run_due(fx);
        if (recurring_jobs(db, NULL) != round)
            fail_msg("round %d: %lld jobs", round, recurring_jobs(db, NULL));
        assert_int_equal(stackdb_i64(db, is_future, NULL, 0), 1);
        assert_int_equal(stackdb_i64(db, "SELECT last_job_id = (SELECT MAX(id) FROM jobs WHERE"
                                       " unique_key = 'recurring:zz-qt-rec') AND last_enqueued_at"
                                       " IS NOT NULL FROM recurring_tasks WHERE name = 'zz-qt-rec'",
                                   NULL, 0), 1);

        /* due again while its job is unfinished: skipped, not piled up */
        stackdb_exec(db, due_now, NULL, 0);
        race_run_due(fx);
        assert_int_equal(recurring_jobs(db, NULL), round);
        assert_int_equal(stackdb_i64(db, is_future, NULL, 0), 1);

        claim_n(db, "zz_qt_rec", worker_a, 5, 1, 60000, &b);
        assert_string_equal(b.jobs[0].payload, "{\"r\":1}");
        assert_int_equal(queue_complete(db, &b.lease, &b.jobs[0].id, 1, &done), 0);
        assert_int_equal(done, 1);
        job_batch_free(&b);
    }
    assert_int_equal(recurring_jobs(db, " AND state = 'succeeded'"), 5);

    /* a scheduler that was down for many intervals runs the task once,
     * and the next due time stays on the cadence */
    stackdb_exec(db, "UPDATE recurring_tasks SET next_run_at = NOW(3) - INTERVAL 10 MINUTE"
                " - INTERVAL 30 SECOND WHERE name = 'zz-qt-rec'", NULL, 0);
    race_run_due(fx);
    assert_int_equal(recurring_jobs(db, NULL), 6);
    assert_int_equal(stackdb_i64(db, "SELECT next_run_at BETWEEN NOW(3) AND NOW(3) + INTERVAL 31 SECOND"
                                   " FROM recurring_tasks WHERE name = 'zz-qt-rec'", NULL, 0), 1);

    /* refusals */
    struct recurring_task bad = t;
    bad.name = "Bad Name";
    assert_int_equal(recurring_register(db, &bad, 0), CP_EINVAL);
    bad = t;
    bad.kind = "nope";
    assert_int_equal(recurring_register(db, &bad, 0), CP_EINVAL);
    bad = t;
    bad.interval_ms = 0;
    assert_int_equal(recurring_register(db, &bad, 0), CP_EINVAL);
    bad = t;
    bad.payload = "[]";
    assert_int_equal(recurring_register(db, &bad, 0), CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enqueue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_in_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_retries_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_attempt_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_refunds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_refunds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_owner_refunds_unstarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promote_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reap_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_retry_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_restores_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recurring, setup, teardown),
    };

    return cmocka_run_group_tests_name("queue_layer", tests, group_setup, group_teardown);
}
