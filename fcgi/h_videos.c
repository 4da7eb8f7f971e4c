/*
 * Videos found on source accounts: GET /api/v1/videos, GET
 * /api/v1/videos/{id}, and POST /api/v1/connections/{id}/sync, which
 * queues a sync of one TikTok connection now.
 *
 * GET /api/v1/videos/{id} also lists the video's publications
 * ("destinations"); lists leave them out to stay one query per page.
 *
 * Users see their own videos and connections; operators and admins all.
 * Another user's video or connection is 404, as if it did not exist.
 * Storage keys stay inside: a video shows its thumbnail as a signed,
 * expiring URL only.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "conf.h"
#include "connections.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "json.h"
#include "log.h"
#include "publications.h"
#include "query.h"
#include "queue.h"
#include "storage.h"
#include "videos.h"

#define VIDEO_JSON_MAX (64u << 10)
#define DESTINATIONS_JSON_MAX (4u << 20)
#define LIST_JSON_MAX (16u << 20)
#define STORAGE_ERROR_MAX 512
#define DETAIL_MAX 256

/* The media store of this process, for signing thumbnail URLs. */
static struct storage *media_store;

static struct conn_scope scope_of(const struct request *req)
{
    struct conn_scope s = { .user_id = req->user_id, .see_all = req->user_role != USER_ROLE_USER };

    return s;
}

static int sign_key(void *arg, const char *key, struct buf *out)
{
    const struct conf *c = arg;

    return storage_signed_url(media_store, key, c->media_url_ttl, out);
}

/* The signer when the store opens; NULL (no thumbnail URLs) otherwise. */
static video_url_signer signer_of(const struct conf *c)
{
    struct buf err;
    int rc;

    if (media_store)
        return sign_key;
    buf_init(&err, STORAGE_ERROR_MAX);
    rc = storage_open(c, &media_store, &err);
    if (rc) {
        log_warn("media storage cannot be opened; thumbnails are shown without URLs: %s",
                 err.len ? buf_str(&err) : cp_strerror(rc));
        media_store = NULL;
    }
    buf_free(&err);
    return media_store ? sign_key : NULL;
}

void h_video_get(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct video *v;
    struct db *db;
    struct buf b;
    long long id;
    int rc;

    if (req_path_id(req, "id", &id))
        return;
    if (req_db(req, &db))
        return;
    v = calloc(1, sizeof *v);
    if (!v) {
        reply_error(req, 500, "internal", "Out of memory.");
        return;
    }
    rc = video_get(db, &scope, id, v);
    if (rc == CP_ENOTFOUND) {
        reply_error(req, 404, "not_found", "No video has id %lld.", id);
    } else if (rc) {
        reply_unavailable(req);
    } else {
        buf_init(&b, VIDEO_JSON_MAX + DESTINATIONS_JSON_MAX);
        rc = video_to_json(v, signer_of(req->app->conf), (void *)req->app->conf, &b);
        if (!rc) {
            /* The single video also shows where it went: reopen the
             * object to add its publications. */
            b.data[--b.len] = '\0';
            rc = buf_adds(&b, ",\"destinations\":");
            rc = rc ? rc : pub_video_destinations_json(db, v->id, &b);
            rc = rc ? rc : buf_addc(&b, '}');
        }
        if (rc == CP_EUNAVAIL || rc == CP_ERETRY || rc == CP_EDB)
            reply_unavailable(req);
        else if (rc)
            reply_error(req, 500, "internal", "The answer could not be built.");
        else
            reply_json(req, 200, buf_str(&b), b.len);
        buf_free(&b);
    }
    free(v);
}

static int read_filter(struct request *req, struct video_filter *f)
{
    char text[64], lit[QUERY_TIME_MAX];
    int rc;

    memset(f, 0, sizeof *f);
    if (req_paging(req, &f->limit, &f->after_id))
        return 1;
    if (req_query_id(req, "connection_id", "a connection id", &f->connection_id))
        return 1;
    rc = req_query(req, "state", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (video_state_parse(text, &f->state))
            return reply_bad_parameter(req, "state",
                                       "one of known, new, fetching, stored, ready, failed");
        f->have_state = 1;
    }
    rc = req_query_time(req, "from", lit, sizeof lit);
    if (rc == 1)
        return 1;
    if (rc == 0 && utc_literal_ms(lit, &f->from_ms))
        return reply_bad_parameter(req, "from", "a UTC time after 1970");
    rc = req_query_time(req, "to", lit, sizeof lit);
    if (rc == 1)
        return 1;
    if (rc == 0 && utc_literal_ms(lit, &f->to_ms))
        return reply_bad_parameter(req, "to", "a UTC time after 1970");
    return 0;
}

void h_videos_list(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct video_filter f;
    struct video *rows = NULL;
    video_url_signer signer;
    struct db *db;
    struct buf b;
    size_t n = 0;
    int more = 0, rc;

    if (read_filter(req, &f))
        return;
    if (req_db(req, &db))
        return;
    rows = calloc((size_t)f.limit, sizeof *rows);
    if (!rows) {
        reply_error(req, 500, "internal", "Out of memory.");
        return;
    }
    rc = video_list(db, &scope, &f, rows, &n, &more);
    if (rc) {
        free(rows);
        reply_unavailable(req);
        return;
    }
    signer = signer_of(req->app->conf);
    buf_init(&b, LIST_JSON_MAX);
    rc = buf_adds(&b, "{\"data\":[");
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = buf_addc(&b, ',');
        if (!rc)
            rc = video_to_json(&rows[i], signer, (void *)req->app->conf, &b);
    }
    if (!rc)
        rc = more && n ? buf_printf(&b, "],\"next_cursor\":\"%lld\"}", rows[n - 1].id)
                       : buf_adds(&b, "],\"next_cursor\":null}");
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
    free(rows);
}

static void audit_sync(struct request *req, int failed, long long id, long long owner,
                       const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email,
        .action = "connection.sync_requested", .failed = failed, .target_type = "connection",
        .target_id = id, .owner_id = owner, .client_addr = req_client_addr(req),
        .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

void h_connection_sync(struct request *req)
{
    static const char *const members[] = { "backfill", NULL };
    struct conn_scope scope = scope_of(req);
    struct connection *conn;
    char payload[96], key[64], detail[DETAIL_MAX], body[64];
    struct db *db;
    long long id, job = 0;
    int backfill = 0, rc, n;

    if (req->json && body_members(req, members))
        return;
    if (req->json) {
        rc = json_get_bool(req->json, "backfill", &backfill);
        if (rc && rc != CP_ENOTFOUND) {
            reply_error(req, 400, "invalid_body", "\"backfill\" must be true or false.");
            return;
        }
    }
    if (req_path_id(req, "id", &id))
        return;
    if (req_db(req, &db))
        return;
    conn = calloc(1, sizeof *conn);
    if (!conn) {
        reply_error(req, 500, "internal", "Out of memory.");
        return;
    }
    rc = conn_get(db, req->app->conf, &scope, id, conn);
    if (rc == CP_ENOTFOUND) {
        reply_error(req, 404, "not_found", "No connection has id %lld.", id);
        goto out;
    }
    if (rc) {
        reply_unavailable(req);
        goto out;
    }
    if (conn->platform != PLATFORM_TIKTOK) {
        audit_sync(req, 1, id, conn->user_id, "refused: not a source");
        reply_error(req, 409, "not_a_source", "Only TikTok connections are synced.");
        goto out;
    }
    if (conn->stored_status == CONN_NEEDS_REAUTH) {
        audit_sync(req, 1, id, conn->user_id, "refused: needs_reauth");
        reply_error(req, 409, "needs_reauth",
                    "The platform refused this connection's credentials: reconnect this account.");
        goto out;
    }
    if (!conn->enabled) {
        audit_sync(req, 1, id, conn->user_id, "refused: disabled");
        reply_error(req, 409, "disabled", "This connection is disabled; enable it first.");
        goto out;
    }
    /* A backfill asked before the first sync holds for it, whichever job
     * runs it first. */
    if (backfill && !conn->initial_sync_done) {
        struct db_param p[] = { DB_I64(id) };

        if (db_exec(db, "UPDATE connections SET backfill = 1 WHERE id = ? AND initial_sync_done = 0",
                    p, 1, NULL, NULL)) {
            reply_unavailable(req);
            goto out;
        }
    }
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"backfill\":%s}", id,
             backfill ? "true" : "false");
    snprintf(key, sizeof key, "tiktok.sync:%lld", id);
    {
        struct job_spec spec = { .kind = "tiktok.sync", .payload = payload, .unique_key = key,
                                 .user_id = conn->user_id };

        rc = queue_enqueue(db, &spec, &job);
    }
    if (rc && rc != CP_ECONFLICT) {
        if (rc == CP_EINVAL) {
            log_error("tiktok.sync could not be enqueued: %s", cp_strerror(rc));
            reply_error(req, 500, "internal", "The sync could not be queued.");
        } else {
            reply_unavailable(req);
        }
        goto out;
    }
    if (job)
        snprintf(detail, sizeof detail, "job %lld%s%s", job, rc ? " (already queued)" : "",
                 backfill ? ", backfill" : "");
    else
        snprintf(detail, sizeof detail, "already queued");
    audit_sync(req, 0, id, conn->user_id, detail);
    n = job ? snprintf(body, sizeof body, "{\"job_id\":%lld}", job)
            : snprintf(body, sizeof body, "{\"job_id\":null}");
    reply_json(req, 202, body, (size_t)n);
out:
    free(conn);
}
