/*
 * Publications through the API: GET /api/v1/posts, GET
 * /api/v1/posts/{id}, POST /api/v1/posts/{id}/retry, and the quota
 * ledger, GET /api/v1/quotas.
 *
 * Users see their own posts; operators and admins all.  Another user's
 * post is 404, as if it did not exist.  Retries are written to the audit
 * log, refusals included.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "connections.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "json.h"
#include "publications.h"
#include "query.h"
#include "quota.h"

#define POST_JSON_MAX (1u << 20)
#define LIST_JSON_MAX (16u << 20)
#define QUOTA_JSON_MAX (4u << 20)
#define DETAIL_MAX 128

static struct conn_scope scope_of(const struct request *req)
{
    struct conn_scope s = { .user_id = req->user_id, .see_all = req->user_role != USER_ROLE_USER };

    return s;
}

/* ------------------------------------------------------------ filters -- */

/* ?from= / ?to=: an RFC 3339 UTC time or epoch milliseconds. */
static int read_time(struct request *req, const char *name, long long *ms)
{
    char text[64], lit[QUERY_TIME_MAX];
    int rc = req_query(req, name, text, sizeof text);

    if (rc == 1)
        return 1;
    if (rc)
        return 0;
    if (parse_id(text, ms) == 0)
        return 0;
    if (parse_utc_time(text, lit, sizeof lit) || utc_literal_ms(lit, ms))
        return reply_bad_parameter(req, name, "a UTC time (2026-11-22T05:00:00Z) or epoch milliseconds");
    return 0;
}

static int read_filter(struct request *req, struct pub_filter *f)
{
    char text[32];
    int rc;

    memset(f, 0, sizeof *f);
    if (req_paging(req, &f->limit, &f->after_id))
        return 1;
    rc = req_query(req, "platform", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        const struct platform *p = platform_find(text);

        if (!p || p->id == PLATFORM_TIKTOK)
            return reply_bad_parameter(req, "platform", "one of instagram, youtube, x");
        f->have_platform = 1;
        f->platform = p->id;
    }
    rc = req_query(req, "state", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (pub_state_parse(text, &f->state))
            return reply_bad_parameter(req, "state",
                                       "one of pending, preparing, uploading, processing,"
                                       " publishing, deferred, published, failed, cancelled");
        f->have_state = 1;
    }
    if (req_query_id(req, "connection_id", "a connection id", &f->connection_id) ||
        req_query_id(req, "rule_id", "a rule id", &f->rule_id) ||
        req_query_id(req, "video_id", "a video id", &f->video_id) ||
        read_time(req, "from", &f->from_ms) || read_time(req, "to", &f->to_ms))
        return 1;
    return 0;
}

/* ------------------------------------------------------------ handlers -- */

void h_posts_list(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct pub_filter f;
    struct publication *rows;
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
    rc = pub_list(db, &scope, &f, rows, &n, &more);
    if (rc) {
        free(rows);
        reply_unavailable(req);
        return;
    }
    buf_init(&b, LIST_JSON_MAX);
    rc = buf_adds(&b, "{\"data\":[");
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = buf_addc(&b, ',');
        rc = rc ? rc : pub_to_json(&rows[i], &b);
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

/* ,"job":{...} of the publish job while its row exists, else null. */
static int add_job(struct db *db, long long job_id, struct buf *b)
{
    struct db_param p[] = { DB_I64(job_id) };
    struct db_result *r = NULL;
    long long total;
    int rc;

    if (job_id <= 0)
        return buf_adds(b, ",\"job\":null");
    rc = db_query(db,
                  "SELECT state, attempts, max_attempts, progress_done, progress_total"
                  " FROM jobs WHERE id = ?",
                  p, 1, &r);
    if (!rc && db_result_rows(r) != 1)
        rc = buf_adds(b, ",\"job\":null");
    else if (!rc) {
        rc = buf_printf(b, ",\"job\":{\"id\":%lld", job_id);
        rc = rc ? rc : json_member_str(b, "state", db_result_get(r, 0, 0));
        rc = rc ? rc : buf_printf(b, ",\"attempts\":%lld,\"max_attempts\":%lld",
                                  db_result_int(r, 0, 1), db_result_int(r, 0, 2));
        if (!rc && db_result_get(r, 0, 3)) {
            rc = buf_printf(b, ",\"progress\":{\"done\":%lld", db_result_int(r, 0, 3));
            rc = rc ? rc
                    : db_result_i64(r, 0, 4, &total) == 0 ? buf_printf(b, ",\"total\":%lld}}", total)
                                                         : buf_adds(b, ",\"total\":null}}");
        } else if (!rc) {
            rc = buf_adds(b, ",\"progress\":null}");
        }
    }
    db_result_free(r);
    return rc;
}

/* The post the path names, in the caller's scope, with *db and *id set;
 * NULL after replying 404, 503 or 500.  The caller frees it. */
static struct publication *path_post(struct request *req, const struct conn_scope *scope,
                                     struct db **db, long long *id)
{
    struct publication *p;
    int rc;

    if (req_path_id(req, "id", id) || req_db(req, db))
        return NULL;
    p = calloc(1, sizeof *p);
    if (!p) {
        reply_error(req, 500, "internal", "Out of memory.");
        return NULL;
    }
    rc = pub_get(*db, scope, *id, p);
    if (rc == CP_ENOTFOUND)
        reply_error(req, 404, "not_found", "No post has id %lld.", *id);
    else if (rc)
        reply_unavailable(req);
    if (rc) {
        free(p);
        return NULL;
    }
    return p;
}

void h_post_get(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct publication *p;
    struct db *db;
    struct buf b;
    long long id;
    int rc;

    p = path_post(req, &scope, &db, &id);
    if (!p)
        return;
    buf_init(&b, POST_JSON_MAX);
    rc = pub_to_json(p, &b);
    if (!rc) {
        b.data[--b.len] = '\0';         /* reopen the object for the job */
        rc = add_job(db, p->job_id, &b);
        rc = rc ? rc : buf_addc(&b, '}');
    }
    if (rc == CP_EUNAVAIL || rc == CP_ERETRY || rc == CP_EDB)
        reply_unavailable(req);
    else if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
    free(p);
}

static void audit_retry(struct request *req, int failed, long long id, long long owner,
                        const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = "post.retry",
        .failed = failed, .target_type = "publication", .target_id = id, .owner_id = owner,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

void h_post_retry(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct publication *p;
    char detail[DETAIL_MAX];
    struct db *db;
    struct buf b;
    long long id, job = 0;
    int rc;

    p = path_post(req, &scope, &db, &id);
    if (!p)
        return;
    rc = pub_retry(db, &scope, id, &job);
    if (rc == CP_ENOTFOUND) {
        reply_error(req, 404, "not_found", "No post has id %lld.", id);
        goto out;
    }
    if (rc == CP_ECONFLICT) {
        audit_retry(req, 1, id, p->user_id,
                    p->state == PUB_PUBLISHED ? "refused: published" : "refused: job unfinished");
        if (p->state == PUB_PUBLISHED)
            reply_error(req, 409, "conflict", "This post is published; it is never posted twice.");
        else
            reply_error(req, 409, "conflict", "This post's job is still queued or running.");
        goto out;
    }
    if (rc) {
        reply_unavailable(req);
        goto out;
    }
    snprintf(detail, sizeof detail, "job %lld (was %s)", job, pub_state_name(p->state));
    audit_retry(req, 0, id, p->user_id, detail);
    rc = pub_get(db, &scope, id, p);
    if (rc) {
        reply_unavailable(req);
        goto out;
    }
    buf_init(&b, POST_JSON_MAX);
    rc = buf_adds(&b, "{\"publication\":");
    rc = rc ? rc : pub_to_json(p, &b);
    rc = rc ? rc : buf_printf(&b, ",\"job_id\":%lld}", job);
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 202, buf_str(&b), b.len);
    buf_free(&b);
out:
    free(p);
}

void h_quotas_list(struct request *req)
{
    struct db *db;
    struct buf b;
    int rc;

    if (req_db(req, &db))
        return;
    buf_init(&b, QUOTA_JSON_MAX);
    rc = quota_list_json(db, req->user_role == USER_ROLE_USER ? req->user_id : 0, &b);
    if (rc == CP_ETOOBIG || rc == CP_ENOMEM || rc == CP_EINVAL)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else if (rc)
        reply_unavailable(req);
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}
