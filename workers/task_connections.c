/*
 * Connection kinds: connection.refresh renews or checks the credentials
 * of one connection; connections.plan, run by the scheduler every
 * connection_scan_interval, enqueues connection.refresh for each
 * connection whose refresh_due_at has come.
 *
 * A refresh is idempotent as far as crosspost can make it: a connection
 * that is gone, disabled, needs reconnecting or is not due (unless
 * forced) is left alone, and new tokens are stored in one transaction as
 * soon as they arrive.  Platform failures are handled by class
 * (platforms.h): a refusal marks the connection needs_reauth (which
 * raises its own alert) and the job ends; transient failures retry;
 * rate limits defer.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connections.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "platforms.h"
#include "secretbox.h"
#include "tasks.h"

/* After the retries of a refresh ran out, the scheduler comes back to
 * the connection this much later rather than at its next scan. */
#define FAILED_RECHECK_MS (30LL * 60 * 1000)
/* A rate limit that did not say when it ends. */
#define DEFER_DEFAULT_MS (60LL * 1000)
/* How long a refresh waits for another worker's refresh of the same
 * connection before deferring. */
#define REFRESH_LOCK_WAIT_S 30

/* Connections one plan run enqueues; more wait for the next run. */
#define PLAN_BATCH 1000


static long long wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the platform said, as one line for the job and the connection. */
static void describe(const struct plat_error *e, const char *what, char *out, size_t cap)
{
    if (e->message[0])
        snprintf(out, cap, "%s: %s", what, e->message);
    else if (e->code[0])
        snprintf(out, cap, "%s: %s (HTTP %ld)", what, e->code, e->http_status);
    else
        snprintf(out, cap, "%s failed (HTTP %ld)", what, e->http_status);
}

/* A failed refresh or check, by class. */
static int platform_failed(struct task_ctx *ctx, long long id, const struct plat_error *e,
                           const char *what)
{
    char why[CONN_ERROR_MAX + 1];
    int last = ctx->job->attempts >= ctx->job->max_attempts;
    int rc;

    describe(e, what, why, sizeof why);
    switch (e->outcome) {
    case PLAT_REAUTH:
        rc = conn_mark_needs_reauth(ctx->db, id, why);
        if (rc && rc != CP_ENOTFOUND)
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot record that it needs "
                             "connecting again: %s", id, cp_strerror(rc));
        log_warn("connection %lld: %s; it needs to be connected again", id, why);
        return TASK_OK;
    case PLAT_DEFER:
        return task_defer(ctx, e->retry_after_ms > 0 ? e->retry_after_ms : DEFER_DEFAULT_MS, "%s", why);
    case PLAT_RETRY:
        conn_mark_failed(ctx->db, id, why, last, last ? wall_ms() + FAILED_RECHECK_MS : 0);
        return task_fail(ctx, JOB_ERR_TRANSIENT, e->retry_after_ms, "%s", why);
    case PLAT_OK:
    case PLAT_FATAL:
        break;
    }
    conn_mark_failed(ctx->db, id, why, 1, wall_ms() + FAILED_RECHECK_MS);
    return task_fail(ctx, JOB_ERR_PERMANENT, 0, "%s", why);
}

static int refresh_one(struct task_ctx *ctx, const struct platform *p, const struct connection *conn,
                       const struct conn_secrets *s, struct secretbox *sb, struct plat_ctx *pc)
{
    struct plat_creds creds = conn_creds(conn, s);
    struct plat_error err = { 0 };
    struct plat_tokens tok = { 0 };
    struct plat_account acct;
    int rc;

    if (conn->auth_kind == AUTH_OAUTH2 && p->refresh) {
        rc = p->refresh(pc, &creds, &tok, &err);
        if (rc) {
            plat_tokens_clear(&tok);
            return platform_failed(ctx, conn->id, &err, "token refresh");
        }
        rc = conn_store_refresh(ctx->db, sb, ctx->conf, conn->id, &tok);
        plat_tokens_clear(&tok);
        if (rc == CP_ENOTFOUND)
            return TASK_OK;
        if (rc)
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot store the new tokens: %s",
                             conn->id, cp_strerror(rc));
        log_info("connection %lld (%s): tokens refreshed", conn->id, p->name);
        return TASK_OK;
    }
    memset(&acct, 0, sizeof acct);
    rc = p->check(pc, &creds, &acct, &err);
    if (rc)
        return platform_failed(ctx, conn->id, &err, "credential check");
    rc = conn_mark_checked(ctx->db, ctx->conf, conn->id);
    if (rc && rc != CP_ENOTFOUND)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot record the check: %s",
                         conn->id, cp_strerror(rc));
    log_info("connection %lld (%s): credentials checked", conn->id, p->name);
    return TASK_OK;
}

int task_connection_refresh(struct task_ctx *ctx)
{
    struct connection *conn = NULL;
    struct conn_secrets secrets;
    const struct platform *p;
    struct secretbox *sb;
    struct http_client *http;
    long long id = 0;
    int force = 0, rc;

    if (json_get_int(ctx->payload, "connection_id", &id) || id <= 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload needs {\"connection_id\": N}");
    rc = json_get_bool(ctx->payload, "force", &force);
    if (rc && rc != CP_ENOTFOUND)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload \"force\" must be true or false");
    if ((rc = task_secretbox(ctx, &sb)) != TASK_OK || (rc = task_http(ctx, &http)) != TASK_OK)
        return rc;

    /* A publish job refreshing the same tokens holds this lock; read the
     * row only once it is ours, so a refresh done meanwhile is seen. */
    rc = conn_refresh_lock(ctx->db, id, REFRESH_LOCK_WAIT_S);
    if (rc == CP_EBUSY)
        return task_defer(ctx, 5000, "connection %lld: another worker is refreshing it", id);
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot take the refresh lock: %s",
                         id, cp_strerror(rc));
    conn = calloc(1, sizeof *conn);
    if (!conn) {
        conn_refresh_unlock(ctx->db, id);
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
    }
    conn_secrets_init(&secrets);
    rc = conn_open_secrets(ctx->db, sb, id, conn, &secrets);
    if (rc == CP_ENOTFOUND) {
        log_info("connection %lld is gone; nothing to refresh", id);
        rc = TASK_OK;
        goto out;
    }
    if (rc == CP_EINVAL) {
        conn_mark_failed(ctx->db, id, "the stored credentials cannot be decrypted with the key ring", 1,
                         wall_ms() + FAILED_RECHECK_MS);
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "connection %lld: the stored credentials cannot be "
                       "decrypted with the key ring", id);
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: %s", id, cp_strerror(rc));
        goto out;
    }
    p = platform_get(conn->platform);
    if (!conn->enabled || conn->stored_status == CONN_NEEDS_REAUTH || !p) {
        log_info("connection %lld is %s; not refreshed", id,
                 conn->enabled ? conn_status_name(conn->stored_status) : "disabled");
        rc = TASK_OK;
        goto out;
    }
    /* A job enqueued before the last refresh finished finds it done. */
    if (!force && (conn->refresh_due_at == 0 || conn->refresh_due_at > wall_ms())) {
        log_debug("connection %lld is not due; nothing to do", id);
        rc = TASK_OK;
        goto out;
    }
    if (task_should_stop(ctx)) {
        rc = TASK_STOPPED;
        goto out;
    }
    task_alive(ctx);
    {
        struct plat_ctx pc = { ctx->conf, http };
        rc = refresh_one(ctx, p, conn, &secrets, sb, &pc);
    }
out:
    conn_secrets_clear(&secrets);
    free(conn);
    conn_refresh_unlock(ctx->db, id);
    return rc;
}

int task_connections_plan(struct task_ctx *ctx)
{
    long long ids[PLAN_BATCH];
    struct connection *conn;
    size_t n = 0, added = 0, pending = 0;
    int rc;

    rc = conn_due(ctx->db, PLAN_BATCH, ids, &n);
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot read the connections due: %s", cp_strerror(rc));
    conn = calloc(1, sizeof *conn);
    if (!conn)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char payload[96], key[64];
        struct job_spec spec = { .kind = "connection.refresh", .payload = payload, .unique_key = key };
        long long job = 0;

        if (task_should_stop(ctx)) {
            free(conn);
            return TASK_STOPPED;
        }
        rc = conn_get(ctx->db, ctx->conf, NULL, ids[i], conn);
        if (rc == CP_ENOTFOUND)
            continue;
        if (!rc) {
            snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"force\":false}", ids[i]);
            snprintf(key, sizeof key, "connection.refresh:%lld", ids[i]);
            spec.user_id = conn->user_id;
            rc = queue_enqueue(ctx->db, &spec, &job);
        }
        if (rc == CP_ECONFLICT) {
            pending++;                  /* one is waiting or running already */
            continue;
        }
        if (rc) {
            free(conn);
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot enqueue a refresh of connection %lld: %s",
                             ids[i], cp_strerror(rc));
        }
        added++;
        task_progress(ctx, (long long)(i + 1), (long long)n);
    }
    free(conn);
    if (added)
        log_info("enqueued %zu connection refreshes (%zu already pending)", added, pending);
    if (n == PLAN_BATCH)
        log_warn("more than %d connections are due; the rest wait for the next run", PLAN_BATCH);
    return TASK_OK;
}
