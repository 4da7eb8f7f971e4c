/*
 * queue_bench.c - the database side of the queue benchmark (tests/bench/queue).
 *
 * Enqueues jobs through the queue module the way the product does
 * (queue_enqueue_many for bulk, queue_enqueue one at a time for latency)
 * and reads the figures back from the jobs table, on the database's
 * clock.  The worker processes that run the jobs are crosspost-worker's;
 * the script starts and stops them.
 *
 *   queue_bench [--config FILE] COMMAND ...
 *     maxid                      the highest job id so far (0 when none)
 *     enqueue N [KIND]           N jobs, multi-row inserts of QUEUE_BATCH_MAX
 *     steady RATE SECONDS [KIND] RATE jobs/s for SECONDS, a multi-row insert every 10 ms
 *     paced RATE SECONDS [KIND]  RATE jobs/s for SECONDS, one insert (and commit) per job
 *     wait AFTER N SECONDS       until N jobs with id > AFTER are finished (exit 1 on timeout)
 *     stats AFTER                throughput and pickup latency of the jobs with id > AFTER
 *
 * wait and stats look at the default queue only (the one the benchmark
 * fills), not at the maintenance jobs the scheduler adds meanwhile.
 *     settings                   the server's durability settings
 *
 * The configuration comes from --config, else CROSSPOST_CONFIG.  stats
 * prints one line of key=value pairs for the script to read.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "queue.h"

#define TICK_MS 10                 /* steady mode: one insert per tick */
#define CHUNK 4096                 /* specs handed to queue_enqueue_many at once */

static double mono_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void sleep_until(double when_s)
{
    struct timespec t;

    t.tv_sec = (time_t)when_s;
    t.tv_nsec = (long)((when_s - (double)t.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

static int parse_num(const char *text, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "queue_bench: '%s' is not a number in [%g, %g]\n", text, min, max);
        return CP_EINVAL;
    }
    *out = v;
    return 0;
}

/* The first column of the first row as an integer (0 for NULL). */
static int query_i64(struct db *db, const char *sql, const struct db_param *params, size_t n,
                     long long *out)
{
    struct db_result *r = NULL;
    int rc;

    *out = 0;
    rc = db_query(db, sql, params, n, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) > 0 && db_result_get(r, 0, 0))
        rc = db_result_i64(r, 0, 0, out);
    db_result_free(r);
    return rc;
}

static int fail(struct db *db, const char *what, int rc)
{
    fprintf(stderr, "queue_bench: %s: %s%s%s\n", what, cp_strerror(rc),
            db && db_errno(db) ? ": " : "", db && db_errno(db) ? db_error(db) : "");
    return 1;
}

/* Enqueue n jobs of kind with queue_enqueue_many, CHUNK at a time. */
static int enqueue_bulk(struct db *db, const char *kind, long long n)
{
    static struct job_spec specs[CHUNK];
    long long done = 0;

    for (size_t i = 0; i < CHUNK; i++)
        specs[i] = (struct job_spec){ .kind = kind };
    while (done < n) {
        size_t k = (size_t)(n - done < CHUNK ? n - done : CHUNK);
        int rc = queue_enqueue_many(db, specs, k);

        if (rc)
            return rc;
        done += (long long)k;
    }
    return 0;
}

static int cmd_maxid(struct db *db)
{
    long long id;
    int rc = query_i64(db, "SELECT COALESCE(MAX(id), 0) FROM jobs", NULL, 0, &id);

    if (rc)
        return fail(db, "reading the highest job id", rc);
    printf("%lld\n", id);
    return 0;
}

static int cmd_enqueue(struct db *db, long long n, const char *kind)
{
    double t0 = mono_s(), secs;
    int rc = enqueue_bulk(db, kind, n);

    if (rc)
        return fail(db, "enqueueing", rc);
    secs = mono_s() - t0;
    printf("enqueued %lld %s jobs in %.2f s (%.0f jobs/s)\n", n, kind, secs, (double)n / secs);
    return 0;
}

static int cmd_steady(struct db *db, double rate, double seconds, const char *kind)
{
    double t0 = mono_s(), next = t0, now;
    long long sent = 0, late_ticks = 0, ticks = 0;

    for (;;) {
        long long due;
        int rc;

        next += TICK_MS / 1e3;
        now = mono_s();
        if (now - t0 >= seconds)
            break;
        due = (long long)(rate * (now - t0)) - sent;
        if (due > 0) {
            rc = enqueue_bulk(db, kind, due);
            if (rc)
                return fail(db, "enqueueing", rc);
            sent += due;
        }
        ticks++;
        if (mono_s() > next)
            late_ticks++;
        else
            sleep_until(next);
    }
    now = mono_s();
    printf("offered %.0f jobs/s for %.1f s: enqueued %lld (%.0f jobs/s), %lld of %lld ticks late\n",
           rate, seconds, sent, (double)sent / (now - t0), late_ticks, ticks);
    return 0;
}

static int cmd_paced(struct db *db, double rate, double seconds, const char *kind)
{
    struct job_spec spec = { .kind = kind };
    double t0 = mono_s(), now;
    long long sent = 0, id;

    for (;;) {
        int rc;

        now = mono_s();
        if (now - t0 >= seconds)
            break;
        rc = queue_enqueue(db, &spec, &id);
        if (rc)
            return fail(db, "enqueueing", rc);
        sent++;
        sleep_until(t0 + (double)sent / rate);
    }
    printf("enqueued %lld %s jobs one at a time at %.0f/s\n", sent, kind, (double)sent / (mono_s() - t0));
    return 0;
}

static int cmd_wait(struct db *db, long long after, long long n, double seconds)
{
    struct db_param p[] = { DB_I64(after) };
    double t0 = mono_s();
    long long finished = 0, unfinished = -1;

    /* Count what is left through the claim index (cheap, and cheaper as
     * the queue drains) rather than what is done (a scan of every
     * finished row, which would compete with the workers for MariaDB). */
    while (mono_s() - t0 < seconds) {
        int rc = query_i64(db, "SELECT COUNT(*) FROM jobs FORCE INDEX (ix_jobs_claim)"
                           " WHERE queue = 'default' AND state IN ('scheduled','ready','running','failed')"
                           " AND id > ?", p, 1, &unfinished);

        if (rc && rc != CP_EUNAVAIL)
            return fail(db, "counting unfinished jobs", rc);
        if (rc == 0 && unfinished == 0) {
            rc = query_i64(db, "SELECT COUNT(*) FROM jobs WHERE id > ? AND queue = 'default'"
                           " AND state IN ('succeeded','dead','cancelled')", p, 1, &finished);
            if (rc && rc != CP_EUNAVAIL)
                return fail(db, "counting finished jobs", rc);
            if (finished >= n) {
                printf("%lld jobs finished after %.2f s\n", finished, mono_s() - t0);
                return 0;
            }
        }
        sleep_until(mono_s() + 0.1);
    }
    fprintf(stderr, "queue_bench: only %lld of %lld jobs finished in %.1f s\n", finished, n, seconds);
    return 1;
}

static int compare_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return (x > y) - (x < y);
}

/* The q-th quantile (nearest rank) of sorted v, in ms. */
static double quantile_ms(const long long *v, size_t n, double q)
{
    size_t rank;

    if (n == 0)
        return 0;
    rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e3;
}

static int cmd_stats(struct db *db, long long after)
{
    struct db_param p[] = { DB_I64(after) };
    struct db_result *r = NULL;
    long long jobs = 0, succeeded = 0, drain_us = 0, e2e_us = 0, *lat = NULL;
    size_t n = 0;
    int rc, status = 1;

    rc = db_query(db,
                  "SELECT COUNT(*), COALESCE(SUM(state = 'succeeded'), 0),"
                  " COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(claimed_at), MAX(finished_at)), 0),"
                  " COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(finished_at)), 0)"
                  " FROM jobs WHERE id > ? AND queue = 'default'", p, 1, &r);
    if (rc) {
        fail(db, "reading the run", rc);
        goto out;
    }
    if (db_result_i64(r, 0, 0, &jobs) || db_result_i64(r, 0, 1, &succeeded) ||
        db_result_i64(r, 0, 2, &drain_us) || db_result_i64(r, 0, 3, &e2e_us)) {
        fprintf(stderr, "queue_bench: unexpected figures from the jobs table\n");
        goto out;
    }
    db_result_free(r);
    r = NULL;
    rc = db_query(db, "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, claimed_at) FROM jobs"
                  " WHERE id > ? AND queue = 'default' AND claimed_at IS NOT NULL", p, 1, &r);
    if (rc) {
        fail(db, "reading pickup times", rc);
        goto out;
    }
    n = db_result_rows(r);
    lat = calloc(n ? n : 1, sizeof *lat);
    if (!lat) {
        fprintf(stderr, "queue_bench: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (db_result_i64(r, i, 0, &lat[i])) {
            fprintf(stderr, "queue_bench: unexpected pickup time\n");
            goto out;
        }
    }
    qsort(lat, n, sizeof *lat, compare_ll);
    printf("jobs=%lld succeeded=%lld drain_s=%.3f drain_rate=%.0f e2e_s=%.3f e2e_rate=%.0f "
           "pickup_p50_ms=%.1f pickup_p99_ms=%.1f pickup_max_ms=%.1f\n",
           jobs, succeeded, drain_us / 1e6, drain_us > 0 ? (double)succeeded * 1e6 / (double)drain_us : 0.0,
           e2e_us / 1e6, e2e_us > 0 ? (double)succeeded * 1e6 / (double)e2e_us : 0.0,
           quantile_ms(lat, n, 0.50), quantile_ms(lat, n, 0.99), n ? (double)lat[n - 1] / 1e3 : 0.0);
    status = 0;
out:
    free(lat);
    db_result_free(r);
    return status;
}

static int cmd_settings(struct db *db)
{
    struct db_result *r = NULL;
    int rc = db_query(db, "SELECT @@version, @@innodb_flush_log_at_trx_commit, @@log_bin, @@sync_binlog,"
                      " @@innodb_buffer_pool_size DIV 1048576", NULL, 0, &r);

    if (rc)
        return fail(db, "reading the server's settings", rc);
    printf("MariaDB %s: innodb_flush_log_at_trx_commit=%s (durable: a log flush per commit), "
           "log_bin=%s, sync_binlog=%s, innodb_buffer_pool_size=%sM\n",
           db_result_get(r, 0, 0), db_result_get(r, 0, 1), db_result_get(r, 0, 2),
           db_result_get(r, 0, 3), db_result_get(r, 0, 4));
    db_result_free(r);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: queue_bench [--config FILE] maxid | enqueue N [KIND] | steady RATE SECONDS [KIND]\n"
            "       | paced RATE SECONDS [KIND] | wait AFTER N SECONDS | stats AFTER | settings\n");
}

int main(int argc, char **argv)
{
    struct conf *conf = NULL;
    struct db *db = NULL;
    struct buf err;
    const char *config = NULL, *cmd;
    double a = 0, b = 0, c = 0;
    int rc, status = 2, i = 1;

    log_init("queue_bench", CP_LOG_WARN);
    buf_init(&err, 1024);
    if (argc > 2 && strcmp(argv[1], "--config") == 0) {
        config = argv[2];
        i = 3;
    }
    if (i >= argc) {
        usage();
        goto out;
    }
    cmd = argv[i++];
    rc = conf_load(&conf, config, &err);
    if (rc) {
        fprintf(stderr, "queue_bench: %.*s\n", (int)err.len, err.data ? err.data : "");
        goto out;
    }
    rc = db_open(conf, &db);
    if (rc) {
        fail(NULL, "connecting to MariaDB", rc);
        status = 1;
        goto out;
    }
    db_set_read_committed(db);

#define KIND_ARG(k) (i + (k) < argc ? argv[i + (k)] : "noop")
    if (strcmp(cmd, "maxid") == 0 && i == argc) {
        status = cmd_maxid(db);
    } else if (strcmp(cmd, "enqueue") == 0 && i < argc && i + 2 >= argc) {
        if (parse_num(argv[i], 1, 1e8, &a) == 0)
            status = cmd_enqueue(db, (long long)a, KIND_ARG(1));
    } else if ((strcmp(cmd, "steady") == 0 || strcmp(cmd, "paced") == 0) && i + 1 < argc && i + 3 >= argc) {
        if (parse_num(argv[i], 1, 1e7, &a) == 0 && parse_num(argv[i + 1], 0.1, 3600, &b) == 0)
            status = cmd[0] == 's' ? cmd_steady(db, a, b, KIND_ARG(2)) : cmd_paced(db, a, b, KIND_ARG(2));
    } else if (strcmp(cmd, "wait") == 0 && i + 3 == argc) {
        if (parse_num(argv[i], 0, 9e18, &a) == 0 && parse_num(argv[i + 1], 0, 1e9, &b) == 0 &&
            parse_num(argv[i + 2], 0.1, 86400, &c) == 0)
            status = cmd_wait(db, (long long)a, (long long)b, c);
    } else if (strcmp(cmd, "stats") == 0 && i + 1 == argc) {
        if (parse_num(argv[i], 0, 9e18, &a) == 0)
            status = cmd_stats(db, (long long)a);
    } else if (strcmp(cmd, "settings") == 0 && i == argc) {
        status = cmd_settings(db);
    } else {
        usage();
    }
#undef KIND_ARG
out:
    db_close(db);
    conf_free(conf);
    buf_free(&err);
    return status;
}
