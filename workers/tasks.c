#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "log.h"
#include "secretbox.h"
#include "storage.h"
#include "tasks.h"

/* Progress is written to the job row at most this often. */
#define PROGRESS_WRITE_MS 1000

const struct task tasks[] = {
    { "connection.refresh", task_connection_refresh },
    { "connections.plan", task_connections_plan },
    { "maintenance.prune_jobs", task_prune_jobs },
    { "maintenance.prune_workers", task_prune_workers },
    { "maintenance.prune_audit", task_prune_audit },
    { "maintenance.prune_sessions", task_prune_sessions },
    { "noop", task_noop },
    { "publications.sweep", task_publications_sweep },
    { "publish.post", task_publish_post },
    { "sleep", task_sleep },
    { "sync.plan", task_sync_plan },
    { "tiktok.sync", task_tiktok_sync },
    { "video.fetch", task_video_fetch },
    { "video.probe", task_video_probe },
};
const size_t ntasks = sizeof tasks / sizeof tasks[0];

const struct task *task_find(const char *kind)
{
    for (size_t i = 0; i < ntasks; i++)
        if (!strcmp(tasks[i].kind, kind))
            return &tasks[i];
    return NULL;
}

void task_ctx_init(struct task_ctx *ctx, const struct job *job, struct json_object *payload,
                   struct db *db, const struct conf *conf, const struct lease *lease,
                   struct worker_slot *slot, const volatile sig_atomic_t *fast_stop)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->job = job;
    ctx->payload = payload;
    ctx->db = db;
    ctx->conf = conf;
    ctx->lease = lease;
    ctx->slot = slot;
    ctx->fast_stop = fast_stop;
    ctx->progress_written_ms = shared_now_ms();
    ctx->result = TASK_OK;
}

/* Cut at JOB_ERROR_MAX without splitting a UTF-8 sequence. */
static void set_message(struct task_ctx *ctx, const char *fmt, va_list ap)
{
    unsigned char *m = (unsigned char *)ctx->message;
    int full = vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    size_t n, lead, need;

    if (full < (int)sizeof ctx->message)
        return;
    n = strlen(ctx->message);
    if (n == 0)
        return;
    lead = n - 1;
    while (lead > 0 && (m[lead] & 0xC0) == 0x80)
        lead--;
    need = m[lead] < 0x80 ? 1 : m[lead] >= 0xF0 ? 4 : m[lead] >= 0xE0 ? 3 : 2;
    if (lead + need > n)
        m[lead] = '\0';
}

int task_fail(struct task_ctx *ctx, enum job_error_class cls, long long retry_after_ms,
              const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_message(ctx, fmt, ap);
    va_end(ap);
    ctx->fail_class = cls;
    ctx->retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
    ctx->result = TASK_FAILED;
    return TASK_FAILED;
}

int task_defer(struct task_ctx *ctx, long long delay_ms, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_message(ctx, fmt, ap);
    va_end(ap);
    ctx->defer_ms = delay_ms > 0 ? delay_ms : 0;
    ctx->result = TASK_DEFERRED;
    return TASK_DEFERRED;
}

void task_alive(struct task_ctx *ctx)
{
    if (ctx->slot)
        slot_tick(ctx->slot);
}

int task_progress(struct task_ctx *ctx, long long done, long long total)
{
    long long now = shared_now_ms();
    int rc;

    task_alive(ctx);
    if (ctx->lease_lost)
        return CP_ECONFLICT;
    if (!ctx->db || !ctx->lease)
        return 0;
    /* At most once a second; and the last step of work whose progress
     * was shown, so it does not stay at the last second's figure. */
    if (now - ctx->progress_written_ms < PROGRESS_WRITE_MS &&
        !(ctx->progress_shown && total > 0 && done >= total))
        return 0;
    ctx->progress_written_ms = now;
    ctx->progress_shown = 1;
    rc = queue_progress(ctx->db, ctx->lease, ctx->job->id, done < 0 ? 0 : done, total < 0 ? 0 : total);
    if (rc == CP_ECONFLICT) {
        log_warn("job %lld: lease lost while running; giving it up", ctx->job->id);
        ctx->lease_lost = 1;
        return CP_ECONFLICT;
    }
    /* Progress is informational: a write that failed for another reason
     * (the database is away) is tried again a second later. */
    if (rc)
        log_debug("job %lld: progress not recorded: %s", ctx->job->id, cp_strerror(rc));
    return 0;
}

int task_should_stop(const struct task_ctx *ctx)
{
    if (ctx->lease_lost)
        return 1;
    if (ctx->fast_stop && *ctx->fast_stop)
        return 1;
    return ctx->slot && slot_stop_requested(ctx->slot) == SLOT_STOP_FAST;
}

/* Per worker process: the key ring follows its file by itself, and the
 * HTTP client keeps connections to the platforms open between jobs. */
#define TOOL_ERROR_MAX 1024
static struct secretbox *process_box;
static struct http_client *process_http;
static struct storage *process_storage;

int task_secretbox(struct task_ctx *ctx, struct secretbox **out)
{
    struct buf err;
    int rc;

    *out = NULL;
    if (process_box) {
        *out = process_box;
        return TASK_OK;
    }
    if (!ctx->conf->secrets_key_file || !ctx->conf->secrets_key_file[0])
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "secrets key ring is not configured");
    buf_init(&err, TOOL_ERROR_MAX);
    rc = secretbox_open_conf(ctx->conf, &process_box, &err);
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot read the secrets key ring: %s",
                       err.len ? buf_str(&err) : cp_strerror(rc));
        buf_free(&err);
        return rc;
    }
    buf_free(&err);
    *out = process_box;
    return TASK_OK;
}

int task_storage(struct task_ctx *ctx, struct storage **out)
{
    struct buf err;
    int rc;

    *out = NULL;
    if (!process_storage) {
        buf_init(&err, TOOL_ERROR_MAX);
        rc = storage_open(ctx->conf, &process_storage, &err);
        if (rc) {
            rc = task_fail(ctx, rc == CP_EINVAL ? JOB_ERR_PERMANENT : JOB_ERR_TRANSIENT, 0,
                           "cannot open the media storage: %s",
                           err.len ? buf_str(&err) : cp_strerror(rc));
            buf_free(&err);
            return rc;
        }
        buf_free(&err);
    }
    *out = process_storage;
    return TASK_OK;
}

int task_http(struct task_ctx *ctx, struct http_client **out)
{
    int rc;

    *out = NULL;
    if (!process_http) {
        rc = http_client_new(ctx->conf, &process_http);
        if (rc)
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot make an HTTP client: %s", cp_strerror(rc));
    }
    *out = process_http;
    return TASK_OK;
}
