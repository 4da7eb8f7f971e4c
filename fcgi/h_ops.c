#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "jobkinds.h"
#include "jobstats.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "platforms.h"
#include "queue.h"

#define METRICS_MAX (4 * 1024 * 1024)
#define GAUGE_QUEUES 64               /* queues the SQL gauges list */

/* Liveness: the process answers.  No dependency is consulted, so a
 * database outage never gets healthy API processes restarted. */
void h_healthz(struct request *req)
{
    static const char body[] = "{\"status\":\"ok\"}";

    reply_json(req, 200, body, sizeof body - 1);
}

/* sandbox: the platforms are the simulators of tests/sim, so nobody
 * mistakes a sandbox for the real thing. */
void h_version(struct request *req)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"name\":\"" PACKAGE_NAME "\",\"version\":\"" PACKAGE_VERSION "\","
                     "\"api\":\"v1\",\"sandbox\":%s}",
                     req->app->conf->sandbox ? "true" : "false");

    reply_json(req, 200, body, (size_t)n);
}

/* The states crosspost_queue_jobs counts: unfinished work and the
 * dead-letter queue. */
static const enum job_state gauge_states[] = {
    JOB_SCHEDULED, JOB_READY, JOB_RUNNING, JOB_FAILED, JOB_DEAD,
};
#define NGAUGE_STATES (sizeof gauge_states / sizeof gauge_states[0])

struct queue_gauges {
    char name[JOB_QUEUE_MAX + 1];
    long long jobs[NGAUGE_STATES];
    double oldest_ready_s;
};

/* The queue called name in the table, added if new; NULL when full. */
static struct queue_gauges *gauge_queue(struct queue_gauges *q, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(q[i].name, name) == 0)
            return &q[i];
    if (*n == GAUGE_QUEUES || !job_queue_name_ok(name))
        return NULL;
    memset(&q[*n], 0, sizeof q[*n]);
    snprintf(q[*n].name, sizeof q[*n].name, "%s", name);
    return &q[(*n)++];
}

/* Counters of the live supervisors, summed and rendered. */
static int render_jobstats(struct db *db, long long stale_ms, struct buf *out)
{
    struct db_param p[] = { DB_I64(stale_ms * 1000) };
    struct jobstats_sum *sum = NULL;
    struct db_result *r = NULL;
    int rc;

    rc = db_query(db, "SELECT id, metrics FROM workers WHERE role = 'supervisor' AND "
                      "state <> 'stopped' AND last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND "
                      "AND metrics IS NOT NULL", p, 1, &r);
    rc = rc ? rc : jobstats_sum_new(&sum);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++)
        if (jobstats_sum_add_json(sum, db_result_get(r, i, 1)))
            log_warn("the metrics of supervisor %s are not a snapshot; left out",
                     db_result_get(r, i, 0));
    rc = rc ? rc : jobstats_sum_render(sum, out);
    jobstats_sum_free(sum);
    db_result_free(r);
    return rc;
}

/* Gauges read from the jobs and workers tables at scrape time. */
static int render_job_gauges(struct db *db, long long stale_ms, struct buf *out)
{
    static const char *const roles[] = { "supervisor", "scheduler", "worker" };
    struct queue_gauges queues[GAUGE_QUEUES];
    struct db_result *r = NULL;
    long long dead = 0, live[3] = { 0 }, stale = 0, v;
    size_t nq = 0;
    int rc;

    /* The queues of the known kinds are always listed, so their series
     * exist (at 0) before any job ran. */
    for (size_t k = 0; k < job_nkinds; k++)
        gauge_queue(queues, &nq, job_kinds[k].queue);

    rc = db_query(db, "SELECT queue, state, COUNT(*) FROM jobs WHERE state IN "
                      "('scheduled','ready','running','failed','dead') GROUP BY queue, state",
                  NULL, 0, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        struct queue_gauges *q = gauge_queue(queues, &nq, db_result_get(r, i, 0));
        enum job_state st;
        if (!q || job_state_parse(db_result_get(r, i, 1), &st) || db_result_i64(r, i, 2, &v))
            continue;
        for (size_t s = 0; s < NGAUGE_STATES; s++)
            if (gauge_states[s] == st)
                q->jobs[s] = v;
        if (st == JOB_DEAD)
            dead += v;
    }
    db_result_free(r);
    r = NULL;

    /* The oldest due job of each queue with ready work: the due index
     * read from its start, stopping at the queue's first row. */
    for (size_t i = 0; !rc && i < nq; i++) {
        struct db_param p[] = { DB_STR(queues[i].name) };
        if (!queues[i].jobs[1])         /* gauge_states[1]: ready */
            continue;
        rc = db_query(db, "SELECT GREATEST(0, TIMESTAMPDIFF(MICROSECOND, run_at, NOW(3))) "
                          "FROM jobs FORCE INDEX (ix_jobs_due) WHERE state = 'ready' AND queue = ? "
                          "ORDER BY run_at, id LIMIT 1", p, 1, &r);
        if (!rc && db_result_i64(r, 0, 0, &v) == 0)
            queues[i].oldest_ready_s = (double)v / 1e6;
        db_result_free(r);
        r = NULL;
    }

    struct db_param sp[] = { DB_I64(stale_ms * 1000) };
    rc = rc ? rc : db_query(db, "SELECT role, last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND, "
                                "COUNT(*) FROM workers WHERE state <> 'stopped' GROUP BY 1, 2",
                            sp, 1, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        long long fresh = 0;
        if (db_result_i64(r, i, 1, &fresh) || db_result_i64(r, i, 2, &v))
            continue;
        if (!fresh) {
            stale += v;
            continue;
        }
        for (size_t k = 0; k < 3; k++)
            if (db_result_get(r, i, 0) && strcmp(db_result_get(r, i, 0), roles[k]) == 0)
                live[k] += v;
    }
    db_result_free(r);
    if (rc)
        return rc;

    rc = buf_adds(out, "# HELP crosspost_queue_jobs Jobs by queue and state: unfinished work and the dead-letter queue.\n"
                       "# TYPE crosspost_queue_jobs gauge\n");
    for (size_t i = 0; i < nq && !rc; i++)
        for (size_t s = 0; s < NGAUGE_STATES && !rc; s++)
            rc = buf_printf(out, "crosspost_queue_jobs{queue=\"%s\",state=\"%s\"} %lld\n",
                            queues[i].name, job_state_name(gauge_states[s]), queues[i].jobs[s]);
    rc = rc ? rc : buf_adds(out, "# HELP crosspost_queue_oldest_ready_seconds How long the oldest ready job of a queue has been due.\n"
                                 "# TYPE crosspost_queue_oldest_ready_seconds gauge\n");
    for (size_t i = 0; i < nq && !rc; i++)
        rc = buf_printf(out, "crosspost_queue_oldest_ready_seconds{queue=\"%s\"} %.3f\n",
                        queues[i].name, queues[i].oldest_ready_s);
    rc = rc ? rc : buf_printf(out,
        "# HELP crosspost_dead_letter_jobs Jobs in the dead-letter queue.\n"
        "# TYPE crosspost_dead_letter_jobs gauge\n"
        "crosspost_dead_letter_jobs %lld\n"
        "# HELP crosspost_workers_live Processes of crosspost-worker with a fresh heartbeat, by role.\n"
        "# TYPE crosspost_workers_live gauge\n", dead);
    for (size_t k = 0; k < 3 && !rc; k++)
        rc = buf_printf(out, "crosspost_workers_live{role=\"%s\"} %lld\n", roles[k], live[k]);
    return rc ? rc : buf_printf(out,
        "# HELP crosspost_workers_stale Processes not stopped whose heartbeat is older than worker_stale_after.\n"
        "# TYPE crosspost_workers_stale gauge\n"
        "crosspost_workers_stale %lld\n", stale);
}

/* Connections by platform and status (as stored: "expiring" is counted
 * under active), every series present at 0, so dashboards and alert rules
 * see accounts that need connecting again. */
static int render_connection_gauges(struct db *db, struct buf *out)
{
    static const char *const statuses[] = { "active", "needs_reauth", "error", "disabled" };
    long long counts[PLATFORM_COUNT][4] = { { 0 } };
    struct db_result *r = NULL;
    long long v;
    int rc;

    rc = db_query(db, "SELECT platform, IF(enabled = 0, 'disabled', status), COUNT(*) "
                      "FROM connections GROUP BY 1, 2", NULL, 0, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        const struct platform *p = platform_find(db_result_get(r, i, 0));
        const char *st = db_result_get(r, i, 1);

        if (!p || !st || db_result_i64(r, i, 2, &v))
            continue;
        for (size_t s = 0; s < 4; s++)
            if (strcmp(st, statuses[s]) == 0)
                counts[p->id][s] = v;
    }
    db_result_free(r);
    if (rc)
        return rc;
    rc = buf_adds(out, "# HELP crosspost_connections Connected accounts by platform and status.\n"
                       "# TYPE crosspost_connections gauge\n");
    for (size_t p = 0; p < PLATFORM_COUNT && !rc; p++)
        for (size_t s = 0; s < 4 && !rc; s++)
            rc = buf_printf(out, "crosspost_connections{platform=\"%s\",status=\"%s\"} %lld\n",
                            platforms[p].name, statuses[s], counts[p][s]);
    return rc;
}

/* Publications by destination platform and state, every series present
 * at 0: deferred and failed posts are what an operator alerts on. */
static int render_publication_gauges(struct db *db, struct buf *out)
{
    static const char *const states[] = { "pending", "preparing", "uploading", "processing",
                                          "publishing", "deferred", "published", "failed",
                                          "cancelled" };
    enum { NSTATES = sizeof states / sizeof states[0] };
    long long counts[PLATFORM_COUNT][NSTATES] = { { 0 } };
    struct db_result *r = NULL;
    long long v;
    int rc;

    rc = db_query(db, "SELECT platform, state, COUNT(*) FROM publications GROUP BY 1, 2", NULL, 0, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        const struct platform *p = platform_find(db_result_get(r, i, 0));
        const char *st = db_result_get(r, i, 1);

        if (!p || !st || db_result_i64(r, i, 2, &v))
            continue;
        for (size_t s = 0; s < NSTATES; s++)
            if (strcmp(st, states[s]) == 0)
                counts[p->id][s] = v;
    }
    db_result_free(r);
    if (rc)
        return rc;
    rc = buf_adds(out, "# HELP crosspost_publications Publications of videos by destination platform and state.\n"
                       "# TYPE crosspost_publications gauge\n");
    for (size_t p = 0; p < PLATFORM_COUNT && !rc; p++) {
        if (p == PLATFORM_TIKTOK)
            continue;                   /* a source, never a destination */
        for (size_t s = 0; s < NSTATES && !rc; s++)
            rc = buf_printf(out, "crosspost_publications{platform=\"%s\",state=\"%s\"} %lld\n",
                            platforms[p].name, states[s], counts[p][s]);
    }
    return rc;
}

/*
 * The pool's own metrics always; the job metrics when the database
 * answers (crosspost_jobs_metrics_up says which), so a database outage
 * never costs the pool's metrics.
 */
void h_metrics(struct request *req)
{
    long long stale_ms = req->app->conf->worker_stale_after;
    struct buf out, jobs;
    struct db *db;
    int up;

    /* Room for both parts, so adding the jobs' never drops the pool's. */
    buf_init(&out, 2 * METRICS_MAX + 4096);
    if (metrics_render(req->app->metrics, api_routes, api_nroutes, &out)) {
        buf_free(&out);
        reply_error(req, 500, "internal", "The metrics could not be rendered.");
        return;
    }
    buf_init(&jobs, METRICS_MAX);
    up = app_db(req->app, &db) == 0 && render_jobstats(db, stale_ms, &jobs) == 0 &&
         render_job_gauges(db, stale_ms, &jobs) == 0 && render_connection_gauges(db, &jobs) == 0 &&
         render_publication_gauges(db, &jobs) == 0;
    if (up && buf_add(&out, jobs.data, jobs.len) != 0)
        up = 0;
    buf_free(&jobs);
    if (buf_printf(&out, "# HELP crosspost_jobs_metrics_up 1 when the job metrics could be read from the database, else 0.\n"
                         "# TYPE crosspost_jobs_metrics_up gauge\n"
                         "crosspost_jobs_metrics_up %d\n", up)) {
        buf_free(&out);
        reply_error(req, 500, "internal", "The metrics could not be rendered.");
        return;
    }
    reply_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    buf_free(&out);
}

struct readiness {
    const char *database;
    const char *migrations;
    const char *memcached;
    char instance_id[40];
    char detail[256];
    char workers[64];           /* the "workers" member's value */
};

/* Processes of crosspost-worker, live and stale: for people reading
 * /readyz, never a reason to be unready (the API serves without them). */
static void count_workers(struct app *app, struct db *db, struct readiness *r)
{
    struct db_param p[] = { DB_I64(app->conf->worker_stale_after * 1000) };
    struct db_result *res = NULL;
    long long live = 0, stale = 0;

    if (db_query(db, "SELECT COALESCE(SUM(last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND), 0), "
                     "COUNT(*) FROM workers WHERE state <> 'stopped'", p, 1, &res) == 0 &&
        db_result_rows(res) == 1 && db_result_i64(res, 0, 0, &live) == 0 &&
        db_result_i64(res, 0, 1, &stale) == 0)
        snprintf(r->workers, sizeof r->workers, "{\"live\":%lld,\"stale\":%lld}", live,
                 stale - live);
    db_result_free(res);
}

static void check_database(struct app *app, struct readiness *r)
{
    struct db_result *res = NULL;
    struct db *db;
    struct buf why;
    int rc;

    if (app_db(app, &db) || db_ping(db)) {
        r->database = "unavailable";
        r->migrations = "unknown";
        return;
    }
    r->database = "ok";
    if (!app->migrations) {
        r->migrations = "unknown";
        snprintf(r->detail, sizeof r->detail, "the schema files could not be read");
        return;
    }
    buf_init(&why, 256);
    rc = migrate_check_current(db, app->migrations, &why);
    if (rc) {
        r->migrations = rc == CP_ECHANGED ? "changed" : rc == CP_ENOTFOUND ? "pending" : "unknown";
        if (rc == CP_EUNAVAIL)
            r->database = "unavailable";
        snprintf(r->detail, sizeof r->detail, "%s", buf_str(&why));
        buf_free(&why);
        return;
    }
    buf_free(&why);
    r->migrations = "ok";
    if (db_query(db, "SELECT instance_id FROM instance WHERE id = 1", NULL, 0, &res) == 0 &&
        db_result_rows(res) == 1 && db_result_get(res, 0, 0))
        snprintf(r->instance_id, sizeof r->instance_id, "%s", db_result_get(res, 0, 0));
    db_result_free(res);
    count_workers(app, db, r);
}

/* Readiness: MariaDB and memcached answer and the schema is current.
 * Each call checks again, so readiness comes back by itself once the
 * dependency does. */
void h_readyz(struct request *req)
{
    struct readiness r = { "unknown", "unknown", "unknown", "", "", "null" };
    struct cache *cache;
    char checks[512], failing[256] = "";

    check_database(req->app, &r);
    r.memcached = (app_cache(req->app, &cache) || cache_ping(cache)) ? "unavailable" : "ok";

    snprintf(checks, sizeof checks,
             "\"checks\":{\"database\":\"%s\",\"migrations\":\"%s\",\"memcached\":\"%s\"},"
             "\"workers\":%s,\"sandbox\":%s",
             r.database, r.migrations, r.memcached, r.workers,
             req->app->conf->sandbox ? "true" : "false");
    if (strcmp(r.database, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "database %s", r.database);
    if (strcmp(r.migrations, "ok") && !strcmp(r.database, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "%smigrations %s%s%s",
                 failing[0] ? ", " : "", r.migrations, r.detail[0] ? " (" : "", r.detail[0] ? ")" : "");
    if (strcmp(r.memcached, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "%smemcached %s",
                 failing[0] ? ", " : "", r.memcached);

    if (failing[0]) {
        log_warn("not ready: %s", failing);
        reply_error_extra(req, 503, "not_ready", checks, "Not ready: %s.", failing);
        return;
    }
    char body[768];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"ready\",%s,\"instance_id\":\"%s\",\"version\":\"%s\"}",
                     checks, r.instance_id, PACKAGE_VERSION);
    reply_json(req, 200, body, (size_t)n);
}
