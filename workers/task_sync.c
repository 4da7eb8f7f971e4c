/*
 * Sync kinds: tiktok.sync lists one TikTok connection's videos and
 * records the new ones; sync.plan, run by the scheduler every 15 s,
 * enqueues tiktok.sync for each connection whose next_sync_at has come.
 *
 * A sync pages through the list, newest first, until it reaches a video
 * already recorded or the list ends (pages may be short while has_more
 * is set), at most ROUTINE_PAGES pages.  The new videos of a routine
 * sync are recorded together at the end, so a sync that dies half way
 * records nothing and the next one finds them all again.  The first sync
 * of a connection lists the whole back catalogue (at most FIRST_PAGES
 * pages) and records each page as it comes, as known (not reposted)
 * unless a backfill was asked for.  Recording is idempotent (one row per
 * connection and remote id), and the job's unique key keeps two syncs
 * of one connection from running at once.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connections.h"
#include "crypto.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "platforms.h"
#include "secretbox.h"
#include "tasks.h"
#include "videos.h"

#define ROUTINE_PAGES 10
#define FIRST_PAGES 100
#define PAGE_SIZE TIKTOK_LIST_PAGE_MAX
/* A rate limit that did not say when it ends. */
#define DEFER_DEFAULT_MS (60LL * 1000)
#define PLAN_BATCH 1000

/* Per worker process, as for the connection tasks. */
static struct secretbox *sync_box;
static struct http_client *sync_http;

static long long wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -1..1, for the jitter of the next sync. */
static double jitter_unit(void)
{
    unsigned int r = 0;

    if (crypto_random(&r, sizeof r))
        r = (unsigned int)wall_ms();
    return (double)r / (double)0xFFFFFFFFu * 2.0 - 1.0;
}

/* The worker process's key ring and HTTP client (tasks.h). */
static int open_tools(struct task_ctx *ctx)
{
    int rc = task_secretbox(ctx, &sync_box);

    return rc != TASK_OK ? rc : task_http(ctx, &sync_http);
}

/* The schedule after a sync: next_sync_at from the adaptive interval
 * (only while the connection may sync), the error (or none), and what
 * was found.  A sync that found nothing keeps last_video_at. */
static int write_schedule(struct task_ctx *ctx, const struct connection *conn, const char *error,
                          long long newest_ms, size_t added, int first_done)
{
    long long now = wall_ms();
    long long last_video = newest_ms > conn->last_video_at ? newest_ms : conn->last_video_at;
    long long next = now + video_sync_interval_ms(ctx->conf, conn->sync_interval_s, last_video,
                                                  now, jitter_unit());
    struct db_param p[] = {
        DB_I64(next), DB_STR(error ? error : ""), last_video > 0 ? DB_I64(last_video) : DB_NULL,
        DB_I64((long long)added), DB_I64(first_done), DB_I64(conn->id),
    };
    int rc;

    rc = db_exec(ctx->db,
                 "UPDATE connections SET last_sync_at = NOW(3),"
                 " next_sync_at = IF(enabled = 1 AND status IN ('active', 'error'),"
                 " FROM_UNIXTIME(? / 1000), NULL), last_sync_error = ?,"
                 " last_video_at = FROM_UNIXTIME(? / 1000),"
                 " videos_seen = videos_seen + ?,"
                 " initial_sync_done = GREATEST(initial_sync_done, ?) WHERE id = ?",
                 p, sizeof p / sizeof p[0], NULL, NULL);
    if (rc)
        log_warn("connection %lld: cannot record the sync: %s", conn->id, cp_strerror(rc));
    return rc;
}

/* What the platform said, as one line for the job and the connection. */
static void describe(const struct plat_error *e, char *out, size_t cap)
{
    if (e->message[0])
        snprintf(out, cap, "video list: %s", e->message);
    else if (e->code[0])
        snprintf(out, cap, "video list: %s (HTTP %ld)", e->code, e->http_status);
    else
        snprintf(out, cap, "video list failed (HTTP %ld)", e->http_status);
}

static int list_failed(struct task_ctx *ctx, const struct connection *conn,
                       const struct plat_error *e)
{
    char why[CONN_ERROR_MAX + 1];
    int last = ctx->job->attempts >= ctx->job->max_attempts;
    int rc;

    describe(e, why, sizeof why);
    switch (e->outcome) {
    case PLAT_REAUTH:
        rc = conn_mark_needs_reauth(ctx->db, conn->id, why);
        if (rc && rc != CP_ENOTFOUND)
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot record that it "
                             "needs connecting again: %s", conn->id, cp_strerror(rc));
        write_schedule(ctx, conn, why, 0, 0, 0);
        log_warn("connection %lld: %s; it needs to be connected again", conn->id, why);
        return TASK_OK;
    case PLAT_DEFER:
        return task_defer(ctx, e->retry_after_ms > 0 ? e->retry_after_ms : DEFER_DEFAULT_MS, "%s",
                          why);
    case PLAT_RETRY:
        if (last)
            write_schedule(ctx, conn, why, 0, 0, 0);
        return task_fail(ctx, JOB_ERR_TRANSIENT, e->retry_after_ms, "%s", why);
    case PLAT_OK:
    case PLAT_FATAL:
        break;
    }
    write_schedule(ctx, conn, why, 0, 0, 0);
    return task_fail(ctx, JOB_ERR_PERMANENT, 0, "%s", why);
}

/* 1 when any listing of the page is recorded for the connection already. */
static int page_reaches_known(struct db *db, long long conn_id, const struct video_listing *v,
                              size_t n, int *known)
{
    struct db_param p[PAGE_SIZE + 1];
    struct db_result *r = NULL;
    struct buf sql;
    int rc;

    *known = 0;
    if (n == 0)
        return 0;
    buf_init(&sql, 1024);
    rc = buf_adds(&sql, "SELECT COUNT(*) FROM videos WHERE connection_id = ? AND remote_id IN (");
    p[0] = DB_I64(conn_id);
    for (size_t i = 0; !rc && i < n && i < PAGE_SIZE; i++) {
        rc = buf_adds(&sql, i ? ", ?" : "?");
        p[i + 1] = DB_STR(v[i].remote_id);
    }
    if (!rc)
        rc = buf_addc(&sql, ')');
    if (!rc)
        rc = db_query(db, buf_str(&sql), p, (n < PAGE_SIZE ? n : PAGE_SIZE) + 1, &r);
    buf_free(&sql);
    if (!rc) {
        long long count = 0;

        if (db_result_rows(r) != 1 || db_result_i64(r, 0, 0, &count))
            rc = CP_EDB;
        *known = count > 0;
    }
    db_result_free(r);
    return rc;
}

struct sync_run {
    struct task_ctx *ctx;
    const struct connection *conn;
    struct plat_ctx pc;
    struct plat_creds creds;
    int first;                        /* the back catalogue is being listed */
    int fetch;                        /* record as new with a fetch job */
    struct video_listing *found;      /* routine: new listings, newest first */
    size_t nfound;
    size_t added;
    long long newest_ms;
};

static int sync_pages(struct sync_run *s)
{
    struct task_ctx *ctx = s->ctx;
    int max_pages = s->first ? FIRST_PAGES : ROUTINE_PAGES;
    long long cursor = 0;
    struct plat_error err;
    struct video_listing *page = s->found;
    int rc;

    for (int pageno = 0; pageno < max_pages; pageno++) {
        size_t n = 0, added = 0;
        long long next = 0;
        int more = 0, known = 0;

        if (task_should_stop(ctx))
            return TASK_STOPPED;
        task_progress(ctx, pageno, 0);
        if (!s->first)
            page = s->found + s->nfound;
        rc = tiktok_list_videos(&s->pc, &s->creds, cursor, page, PAGE_SIZE, &n, &next, &more,
                                &err);
        if (rc)
            return list_failed(ctx, s->conn, &err);
        for (size_t i = 0; i < n; i++)
            if (page[i].create_time_s * 1000 > s->newest_ms)
                s->newest_ms = page[i].create_time_s * 1000;
        if (s->first) {
            rc = video_record(ctx->db, s->conn->id, s->conn->user_id, page, n, s->fetch, &added);
            if (rc)
                return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot record "
                                 "videos: %s", s->conn->id, cp_strerror(rc));
            s->added += added;
        } else {
            rc = page_reaches_known(ctx->db, s->conn->id, page, n, &known);
            if (rc)
                return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot read its "
                                 "videos: %s", s->conn->id, cp_strerror(rc));
            s->nfound += n;
        }
        if (known || !more || n == 0)
            return TASK_OK;
        if (next <= 0 || (cursor > 0 && next >= cursor)) {
            log_warn("connection %lld: TikTok's cursor did not move back; sync ends here",
                     s->conn->id);
            return TASK_OK;
        }
        cursor = next;
    }
    log_warn("connection %lld: the video list goes on past %d pages; the rest waits",
             s->conn->id, max_pages);
    return TASK_OK;
}

static int sync_connection(struct task_ctx *ctx, const struct connection *conn,
                           const struct conn_secrets *secrets, int backfill)
{
    struct sync_run s = {
        .ctx = ctx, .conn = conn, .pc = { ctx->conf, sync_http },
        .creds = conn_creds(conn, secrets),
        .first = !conn->initial_sync_done,
    };
    size_t cap;
    int rc;

    s.fetch = !s.first || backfill || conn->backfill;
    cap = s.first ? PAGE_SIZE : (size_t)PAGE_SIZE * ROUTINE_PAGES;
    s.found = calloc(cap, sizeof *s.found);
    if (!s.found)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
    rc = sync_pages(&s);
    if (rc == TASK_OK && !s.first && s.nfound) {
        rc = video_record(ctx->db, conn->id, conn->user_id, s.found, s.nfound, 1, &s.added);
        if (rc)
            rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: cannot record videos: %s",
                           conn->id, cp_strerror(rc));
    }
    if (rc == TASK_OK) {
        write_schedule(ctx, conn, NULL, s.newest_ms, s.added, 1);
        log_info("connection %lld: %zu new video%s recorded%s", conn->id, s.added,
                 s.added == 1 ? "" : "s", s.first && !s.fetch ? " as known (back catalogue)" : "");
    }
    free(s.found);
    return rc;
}

int task_tiktok_sync(struct task_ctx *ctx)
{
    struct connection *conn = NULL;
    struct conn_secrets secrets;
    long long id = 0;
    int backfill = 0, rc;

    if (json_get_int(ctx->payload, "connection_id", &id) || id <= 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload needs {\"connection_id\": N}");
    rc = json_get_bool(ctx->payload, "backfill", &backfill);
    if (rc && rc != CP_ENOTFOUND)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload \"backfill\" must be true or false");
    if ((rc = open_tools(ctx)) != TASK_OK)
        return rc;
    conn = calloc(1, sizeof *conn);
    if (!conn)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
    conn_secrets_init(&secrets);
    rc = conn_open_secrets(ctx->db, sync_box, id, conn, &secrets);
    if (rc == CP_ENOTFOUND) {
        log_info("connection %lld is gone; nothing to sync", id);
        rc = TASK_OK;
        goto out;
    }
    if (rc == CP_EINVAL) {
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "connection %lld: the stored credentials cannot "
                       "be decrypted with the key ring", id);
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: %s", id, cp_strerror(rc));
        goto out;
    }
    if (conn->platform != PLATFORM_TIKTOK || !conn->enabled ||
        conn->stored_status == CONN_NEEDS_REAUTH) {
        log_info("connection %lld is not a TikTok source that may sync now; not synced", id);
        rc = TASK_OK;
        goto out;
    }
    if (conn->auth_kind != AUTH_OAUTH2) {
        static const char why[] = "listing videos needs an OAuth connection: connect the "
                                  "account through TikTok's login rather than cookies";

        db_exec(ctx->db, "UPDATE connections SET last_sync_at = NOW(3), next_sync_at = NULL,"
                         " last_sync_error = ? WHERE id = ?",
                (struct db_param[]){ DB_STR(why), DB_I64(id) }, 2, NULL, NULL);
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "connection %lld: %s", id, why);
        goto out;
    }
    rc = sync_connection(ctx, conn, &secrets, backfill);
out:
    conn_secrets_clear(&secrets);
    free(conn);
    return rc;
}

/* Enabled TikTok connections that may sync and are due: next_sync_at
 * has come, or a connection that never synced has none yet. */
static const char sql_sync_due[] =
    "SELECT id, user_id FROM connections WHERE platform = 'tiktok' AND enabled = 1"
    " AND status IN ('active', 'error') AND auth_kind = 'oauth2'"
    " AND (next_sync_at <= NOW(3) OR (next_sync_at IS NULL AND initial_sync_done = 0))"
    " ORDER BY next_sync_at, id LIMIT ?";

int task_sync_plan(struct task_ctx *ctx)
{
    struct db_param p[] = { DB_I64(PLAN_BATCH) };
    struct db_result *r = NULL;
    size_t n, added = 0, pending = 0;
    int rc;

    rc = db_query(ctx->db, sql_sync_due, p, 1, &r);
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot read the connections due a sync: %s",
                         cp_strerror(rc));
    n = db_result_rows(r);
    for (size_t i = 0; i < n; i++) {
        long long id = 0, user = 0, job = 0;
        char payload[96], key[64];
        struct job_spec spec = { .kind = "tiktok.sync", .payload = payload, .unique_key = key };

        if (task_should_stop(ctx)) {
            db_result_free(r);
            return TASK_STOPPED;
        }
        if (db_result_i64(r, i, 0, &id) || db_result_i64(r, i, 1, &user))
            continue;
        snprintf(payload, sizeof payload, "{\"connection_id\":%lld}", id);
        snprintf(key, sizeof key, "tiktok.sync:%lld", id);
        spec.user_id = user;
        rc = queue_enqueue(ctx->db, &spec, &job);
        if (rc == CP_ECONFLICT) {
            pending++;                  /* one is waiting or running already */
            continue;
        }
        if (rc) {
            db_result_free(r);
            return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot enqueue a sync of connection "
                             "%lld: %s", id, cp_strerror(rc));
        }
        added++;
        task_progress(ctx, (long long)(i + 1), (long long)n);
    }
    db_result_free(r);
    if (added)
        log_info("enqueued %zu TikTok syncs (%zu already pending)", added, pending);
    return TASK_OK;
}
