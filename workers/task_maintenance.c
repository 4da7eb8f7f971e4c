/*
 * Housekeeping kinds, run by the recurring tasks the scheduler registers
 * (workers/scheduler.c).  Each deletes in small batches by primary key,
 * so no statement holds many locks or runs long, and reports progress
 * (rows deleted so far) between batches.  Deleting what is already gone
 * does nothing, so a run that is repeated or cut short is harmless.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "buf.h"
#include "err.h"
#include "log.h"
#include "tasks.h"

#define PRUNE_BATCH 500
/* Stopped worker rows and expired sessions are kept this long, for people
 * looking into what happened. */
#define STOPPED_WORKERS_KEEP "INTERVAL 7 DAY"
#define EXPIRED_SESSIONS_KEEP "INTERVAL 1 DAY"

/* One batch: fill *deleted, 0 or a CP_E* code. */
typedef int (*prune_batch_fn)(struct task_ctx *ctx, size_t *deleted);

static int prune_loop(struct task_ctx *ctx, const char *what, prune_batch_fn fn)
{
    size_t n, total = 0;
    int rc;

    do {
        if (task_should_stop(ctx))
            return TASK_STOPPED;
        rc = fn(ctx, &n);
        if (rc)
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "pruning %s: %s", what, cp_strerror(rc));
        total += n;
        task_progress(ctx, (long long)total, 0);
    } while (n == PRUNE_BATCH);
    if (total)
        log_info("pruned %zu %s", total, what);
    return TASK_OK;
}

/*
 * Delete by primary key up to PRUNE_BATCH rows of table that match cond:
 * read their ids with a plain (non-locking) read, then delete those ids,
 * checking cond again.  The IN list is padded to a power of two by
 * repeating the last id, so the statement cache holds a few shapes.
 */
static int delete_where(struct db *db, const char *table, const char *cond, size_t *deleted)
{
    struct db_result *r = NULL;
    struct db_param *p = NULL;
    unsigned long long affected = 0;
    struct buf sql;
    size_t rows, slots = 1;
    int rc;

    *deleted = 0;
    buf_init(&sql, 16384);
    rc = buf_printf(&sql, "SELECT id FROM %s WHERE %s ORDER BY id LIMIT %d", table, cond, PRUNE_BATCH);
    if (!rc)
        rc = db_query(db, buf_str(&sql), NULL, 0, &r);
    if (rc)
        goto out;
    rows = db_result_rows(r);
    if (rows == 0)
        goto out;
    while (slots < rows)
        slots *= 2;
    p = calloc(slots, sizeof *p);
    if (!p) {
        rc = CP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < slots; i++) {
        long long id = 0;

        if (i < rows) {
            rc = db_result_i64(r, i, 0, &id);
            if (rc)
                goto out;
            p[i] = DB_I64(id);
        } else {
            p[i] = p[rows - 1];
        }
    }
    buf_reset(&sql);
    rc = buf_printf(&sql, "DELETE FROM %s WHERE id IN (", table);
    for (size_t i = 0; !rc && i < slots; i++)
        rc = buf_adds(&sql, i ? ",?" : "?");
    if (!rc)
        rc = buf_printf(&sql, ") AND %s", cond);
    if (!rc)
        rc = db_exec(db, buf_str(&sql), p, slots, &affected, NULL);
    if (!rc)
        *deleted = (size_t)affected;
out:
    free(p);
    db_result_free(r);
    buf_free(&sql);
    return rc;
}

/* --------------------------------------------------------- the kinds -- */

static int jobs_batch(struct task_ctx *ctx, size_t *deleted)
{
    return queue_prune(ctx->db, ctx->conf->job_retention, ctx->conf->dead_job_retention, PRUNE_BATCH,
                       deleted);
}

int task_prune_jobs(struct task_ctx *ctx)
{
    return prune_loop(ctx, "finished jobs", jobs_batch);
}

static int workers_batch(struct task_ctx *ctx, size_t *deleted)
{
    return delete_where(ctx->db, "workers",
                        "state = 'stopped' AND stopped_at < NOW(3) - " STOPPED_WORKERS_KEEP, deleted);
}

int task_prune_workers(struct task_ctx *ctx)
{
    return prune_loop(ctx, "stopped worker rows", workers_batch);
}

static int audit_batch(struct task_ctx *ctx, size_t *deleted)
{
    return audit_prune(ctx->db, ctx->conf->audit_retention, PRUNE_BATCH, deleted);
}

int task_prune_audit(struct task_ctx *ctx)
{
    return prune_loop(ctx, "audit events", audit_batch);
}

static int sessions_batch(struct task_ctx *ctx, size_t *deleted)
{
    /* Their refresh tokens go with them (ON DELETE CASCADE). */
    return delete_where(ctx->db, "sessions", "expires_at < NOW(3) - " EXPIRED_SESSIONS_KEEP, deleted);
}

int task_prune_sessions(struct task_ctx *ctx)
{
    return prune_loop(ctx, "expired sessions", sessions_batch);
}
