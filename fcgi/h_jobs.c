/*
 * The job queue through the API: /api/v1/jobs...
 *
 * Users see and act on their own jobs only (user_id = theirs): another
 * user's job is 404, as if it did not exist, and the user= filter is
 * refused.  Operators and admins see every job.  Lists are newest first,
 * paged by id; a user's list reads ix_jobs_user (user_id, id), one index
 * range whatever the size of the table.  Retry, cancel and dead-letter
 * retry go through queue.c, which keeps the rules of the job's states,
 * and each is written to the audit log, refusals included.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "jobkinds.h"
#include "json.h"
#include "query.h"
#include "queue.h"
#include "retry.h"

#define JOB_JSON_MAX (2u << 20)        /* one job with its history */
#define LIST_JSON_MAX (16u << 20)      /* a page of jobs with their payloads */
#define HISTORY_MAX 100                /* latest attempts shown with one job */
#define DEAD_RETRY_MAX 1000
#define PARAMS_MAX 16
#define ERROR_CLASS_MAX 16

#define TIME_COL(c) "DATE_FORMAT(" c ", '%Y-%m-%dT%H:%i:%s.%f')"

/* Every job column a reply shows, with the claimant's worker row. */
#define JOB_COLUMNS \
    "j.id, j.queue, j.kind, j.state, j.priority, j.attempts, j.max_attempts, " \
    TIME_COL("j.run_at") ", " TIME_COL("j.created_at") ", " TIME_COL("j.claimed_at") ", " \
    TIME_COL("j.finished_at") ", j.unique_key, j.payload, j.last_error, j.last_error_class, " \
    "j.progress_done, j.progress_total, j.user_id, j.owner, w.host, w.pid, " \
    TIME_COL("j.lease_expires_at")

enum {
    C_ID, C_QUEUE, C_KIND, C_STATE, C_PRIORITY, C_ATTEMPTS, C_MAX_ATTEMPTS, C_RUN_AT,
    C_CREATED_AT, C_CLAIMED_AT, C_FINISHED_AT, C_UNIQUE_KEY, C_PAYLOAD, C_LAST_ERROR,
    C_LAST_ERROR_CLASS, C_PROGRESS_DONE, C_PROGRESS_TOTAL, C_USER_ID, C_OWNER, C_HOST, C_PID,
    C_LEASE_EXPIRES_AT,
};

struct job_filter {
    int dead_only;                          /* GET /jobs/dead */
    int has_state;
    enum job_state state;
    char queue[JOB_QUEUE_MAX + 1];          /* "": any */
    char kind[JOB_KIND_MAX + 1];
    char error_class[ERROR_CLASS_MAX + 1];
    long long user;                         /* 0: any */
    char from[QUERY_TIME_MAX], to[QUERY_TIME_MAX];
};

static void reply_no_job(struct request *req, long long id)
{
    reply_error(req, 404, "not_found", "No job has id %lld.", id);
}

/* Whose jobs the caller may see and touch: their own, unless they are an
 * operator or admin (0 = anyone's). */
static long long user_scope(const struct request *req)
{
    return req->user_role == USER_ROLE_USER ? req->user_id : 0;
}

static int error_class_ok(const char *s)
{
    enum job_error_class c;

    return job_error_class_parse(s, &c) == 0;
}

/* ------------------------------------------------------------ output -- */

static int add_null_or(struct buf *b, const char *name, const char *v, int quoted)
{
    int rc = buf_printf(b, ",\"%s\":", name);

    if (rc)
        return rc;
    if (!v)
        return buf_adds(b, "null");
    if (!quoted)
        return buf_adds(b, v);
    if ((rc = buf_addc(b, '"')) || (rc = buf_add_json_escaped(b, v, strlen(v))))
        return rc;
    return buf_addc(b, '"');
}

static int add_text(struct buf *b, const char *name, const char *v)
{
    return add_null_or(b, name, v, 1);
}

/* DATETIME(3) comes with six fraction digits; show milliseconds. */
static int add_time(struct buf *b, const char *name, const char *v)
{
    return v ? buf_printf(b, ",\"%s\":\"%.23sZ\"", name, v) : buf_printf(b, ",\"%s\":null", name);
}

static int add_number(struct buf *b, const char *name, const struct db_result *r, size_t row,
                      size_t col)
{
    long long v;

    if (db_result_i64(r, row, col, &v))
        return buf_printf(b, ",\"%s\":null", name);
    return buf_printf(b, ",\"%s\":%lld", name, v);
}

/* The payload as JSON: the stored text is re-read, so a row that is not
 * a JSON object can never break the answer (it shows as null). */
static int add_payload(struct buf *b, const char *text)
{
    static const struct json_limits lim = {
        .max_size = 4 * JOB_PAYLOAD_MAX, .max_depth = 64, .max_string = 4 * JOB_PAYLOAD_MAX,
    };
    struct json_object *obj = NULL;
    int rc = buf_adds(b, ",\"payload\":");

    if (rc)
        return rc;
    if (!text || json_parse(text, strlen(text), &lim, &obj, NULL) ||
        !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return buf_adds(b, "null");
    }
    rc = json_to_buf(obj, b);
    json_object_put(obj);
    return rc;
}

/* One job object of a JOB_COLUMNS row, without its closing brace. */
static int job_members(struct buf *b, const struct db_result *r, size_t row)
{
    const char *state = db_result_get(r, row, C_STATE);
    long long id = 0, done;
    int rc;

    db_result_i64(r, row, C_ID, &id);
    rc = buf_printf(b, "{\"id\":%lld", id);
    rc = rc ? rc : add_text(b, "queue", db_result_get(r, row, C_QUEUE));
    rc = rc ? rc : add_text(b, "kind", db_result_get(r, row, C_KIND));
    rc = rc ? rc : add_text(b, "state", state);
    rc = rc ? rc : add_number(b, "priority", r, row, C_PRIORITY);
    rc = rc ? rc : add_number(b, "attempts", r, row, C_ATTEMPTS);
    rc = rc ? rc : add_number(b, "max_attempts", r, row, C_MAX_ATTEMPTS);
    rc = rc ? rc : add_time(b, "run_at", db_result_get(r, row, C_RUN_AT));
    rc = rc ? rc : add_time(b, "created_at", db_result_get(r, row, C_CREATED_AT));
    rc = rc ? rc : add_time(b, "claimed_at", db_result_get(r, row, C_CLAIMED_AT));
    rc = rc ? rc : add_time(b, "finished_at", db_result_get(r, row, C_FINISHED_AT));
    rc = rc ? rc : add_text(b, "unique_key", db_result_get(r, row, C_UNIQUE_KEY));
    rc = rc ? rc : add_payload(b, db_result_get(r, row, C_PAYLOAD));
    rc = rc ? rc : add_text(b, "last_error", db_result_get(r, row, C_LAST_ERROR));
    rc = rc ? rc : add_text(b, "last_error_class", db_result_get(r, row, C_LAST_ERROR_CLASS));
    if (rc)
        return rc;
    if (db_result_i64(r, row, C_PROGRESS_DONE, &done) == 0) {
        rc = buf_printf(b, ",\"progress\":{\"done\":%lld", done);
        rc = rc ? rc : add_number(b, "total", r, row, C_PROGRESS_TOTAL);
        rc = rc ? rc : buf_addc(b, '}');
    } else {
        rc = buf_adds(b, ",\"progress\":null");
    }
    rc = rc ? rc : add_number(b, "user_id", r, row, C_USER_ID);
    if (rc)
        return rc;
    /* The owner columns keep the last claimant; they name one only while
     * the job runs. */
    if (state && strcmp(state, "running") == 0 && db_result_get(r, row, C_OWNER)) {
        rc = buf_adds(b, ",\"owner\":{\"worker_id\":");
        rc = rc ? rc : buf_adds(b, db_result_get(r, row, C_OWNER));
        rc = rc ? rc : add_text(b, "host", db_result_get(r, row, C_HOST));
        rc = rc ? rc : add_number(b, "pid", r, row, C_PID);
        rc = rc ? rc : add_time(b, "lease_expires_at", db_result_get(r, row, C_LEASE_EXPIRES_AT));
        return rc ? rc : buf_addc(b, '}');
    }
    return buf_adds(b, ",\"owner\":null");
}

static int page_json(const struct db_result *r, int limit, struct buf *b)
{
    size_t rows = db_result_rows(r), shown = rows > (size_t)limit ? (size_t)limit : rows;
    long long id = 0;
    int rc = buf_adds(b, "{\"data\":[");

    for (size_t i = 0; i < shown && !rc; i++) {
        db_result_i64(r, i, C_ID, &id);
        rc = i ? buf_addc(b, ',') : 0;
        rc = rc ? rc : job_members(b, r, i);
        rc = rc ? rc : buf_addc(b, '}');
    }
    if (rc)
        return rc;
    /* One row more than asked for says there is a next page. */
    if (rows > shown)
        return buf_printf(b, "],\"next_cursor\":\"%lld\"}", id);
    return buf_adds(b, "],\"next_cursor\":null}");
}

/* ------------------------------------------------------------- lists -- */

/* Query parameter name checked by ok(); 0 (present or absent), or 1
 * after replying 400. */
static int read_name(struct request *req, const char *name, char *out, size_t cap,
                     int (*ok)(const char *), const char *expected)
{
    int rc = req_query(req, name, out, cap);

    if (rc == 1)
        return 1;
    if (rc == CP_ENOTFOUND) {
        out[0] = '\0';
        return 0;
    }
    if (!ok(out))
        return reply_bad_parameter(req, name, expected);
    return 0;
}

static int read_filter(struct request *req, struct job_filter *f)
{
    char text[24];
    int rc;

    if (!f->dead_only) {
        rc = req_query(req, "state", text, sizeof text);
        if (rc == 1)
            return 1;
        if (rc == 0) {
            if (job_state_parse(text, &f->state))
                return reply_bad_parameter(req, "state",
                                           "one of scheduled, ready, running, failed, "
                                           "succeeded, dead, cancelled");
            f->has_state = 1;
        }
    }
    if (read_name(req, "queue", f->queue, sizeof f->queue, job_queue_name_ok,
                  "a queue name (1 to 32 of a-z, 0-9, _ and -)") ||
        read_name(req, "kind", f->kind, sizeof f->kind, job_kind_name_ok,
                  "a job kind such as maintenance.prune_jobs") ||
        read_name(req, "error_class", f->error_class, sizeof f->error_class, error_class_ok,
                  "one of transient, rate_limited, auth, permanent, lost, released"))
        return 1;

    rc = req_query(req, "user", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (user_scope(req)) {
            reply_error(req, 403, "forbidden",
                        "Only operators and admins filter jobs by user; you see your own jobs.");
            return 1;
        }
        if (parse_id(text, &f->user))
            return reply_bad_parameter(req, "user", "a user id");
    }
    if (req_query_time(req, "from", f->from, sizeof f->from) == 1 ||
        req_query_time(req, "to", f->to, sizeof f->to) == 1)
        return 1;
    return 0;
}

/* The page's statement.  Values are bound; clauses are fixed text. */
static int build_query(const struct request *req, const struct job_filter *f, long long cursor,
                       int limit, struct buf *sql, struct db_param *p, size_t *n)
{
    long long scope = user_scope(req), user = scope ? scope : f->user;
    int rc;

    *n = 0;
    rc = buf_adds(sql, "SELECT " JOB_COLUMNS " FROM jobs j");
    /* Newest first within one user's jobs is one range of (user_id, id). */
    if (!rc && user)
        rc = buf_adds(sql, " FORCE INDEX (ix_jobs_user)");
    rc = rc ? rc : buf_adds(sql, " LEFT JOIN workers w ON w.id = j.owner WHERE j.id < ?");
    p[(*n)++] = DB_I64(cursor ? cursor : LLONG_MAX);
    if (user) {
        rc = rc ? rc : buf_adds(sql, " AND j.user_id = ?");
        p[(*n)++] = DB_I64(user);
    }
    if (f->dead_only || f->has_state) {
        rc = rc ? rc : buf_adds(sql, " AND j.state = ?");
        p[(*n)++] = DB_STR(job_state_name(f->dead_only ? JOB_DEAD : f->state));
    }
    if (f->queue[0]) {
        rc = rc ? rc : buf_adds(sql, " AND j.queue = ?");
        p[(*n)++] = DB_STR(f->queue);
    }
    if (f->kind[0]) {
        rc = rc ? rc : buf_adds(sql, " AND j.kind = ?");
        p[(*n)++] = DB_STR(f->kind);
    }
    if (f->error_class[0]) {
        rc = rc ? rc : buf_adds(sql, " AND j.last_error_class = ?");
        p[(*n)++] = DB_STR(f->error_class);
    }
    if (f->from[0]) {
        rc = rc ? rc : buf_adds(sql, " AND j.created_at >= ?");
        p[(*n)++] = DB_STR(f->from);
    }
    if (f->to[0]) {
        rc = rc ? rc : buf_adds(sql, " AND j.created_at < ?");
        p[(*n)++] = DB_STR(f->to);
    }
    rc = rc ? rc : buf_adds(sql, " ORDER BY j.id DESC LIMIT ?");
    p[(*n)++] = DB_I64(limit + 1);
    return rc;
}

static void list_jobs(struct request *req, int dead_only)
{
    struct job_filter f = { .dead_only = dead_only };
    struct db_param p[PARAMS_MAX];
    struct buf sql;
    long long cursor;
    size_t n;
    int limit, rc;

    if (req_paging(req, &limit, &cursor) || read_filter(req, &f))
        return;
    buf_init(&sql, 4096);
    rc = build_query(req, &f, cursor, limit, &sql, p, &n);
    reply_list_query(req, rc, &sql, p, n, limit, page_json, LIST_JSON_MAX);
}

void h_jobs_list(struct request *req)
{
    list_jobs(req, 0);
}

void h_jobs_dead_list(struct request *req)
{
    list_jobs(req, 1);
}

/* ----------------------------------------------------------- one job -- */

/* The job row (JOB_COLUMNS) if the caller may see it: 0, CP_ENOTFOUND,
 * or a database error. */
static int load_job(struct request *req, struct db *db, long long id, struct db_result **out)
{
    long long scope = user_scope(req);
    struct db_param p[] = { DB_I64(id), DB_I64(scope) };
    struct db_result *r = NULL;
    int rc;

    *out = NULL;
    rc = db_query(db, scope ? "SELECT " JOB_COLUMNS " FROM jobs j LEFT JOIN workers w ON w.id = j.owner "
                              "WHERE j.id = ? AND j.user_id = ?"
                            : "SELECT " JOB_COLUMNS " FROM jobs j LEFT JOIN workers w ON w.id = j.owner "
                              "WHERE j.id = ?",
                  p, scope ? 2 : 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        return CP_ENOTFOUND;
    }
    *out = r;
    return 0;
}

/* The attempts of a job that did not succeed, oldest first (the latest
 * HISTORY_MAX), as the "history" member. */
static int add_history(struct buf *b, struct db *db, long long id)
{
    struct db_param p[] = { DB_I64(id), DB_I64(HISTORY_MAX) };
    struct db_result *r = NULL;
    size_t rows;
    int rc;

    rc = db_query(db, "SELECT attempt, " TIME_COL("at") ", outcome, error_class, error, "
                      "worker_host, worker_pid FROM job_attempts WHERE job_id = ? "
                      "ORDER BY id DESC LIMIT ?", p, 2, &r);
    if (rc)
        return rc;
    rows = db_result_rows(r);
    rc = buf_adds(b, ",\"history\":[");
    for (size_t k = 0; k < rows && !rc; k++) {
        size_t i = rows - 1 - k;
        const char *host = db_result_get(r, i, 5);
        long long pid;

        rc = buf_adds(b, k ? ",{\"attempt\":" : "{\"attempt\":");
        rc = rc ? rc : buf_adds(b, db_result_get(r, i, 0) ? db_result_get(r, i, 0) : "0");
        rc = rc ? rc : add_time(b, "at", db_result_get(r, i, 1));
        rc = rc ? rc : add_text(b, "outcome", db_result_get(r, i, 2));
        rc = rc ? rc : add_text(b, "error_class", db_result_get(r, i, 3));
        rc = rc ? rc : add_text(b, "error", db_result_get(r, i, 4));
        if (rc)
            break;
        if ((host && *host) || db_result_i64(r, i, 6, &pid) == 0) {
            rc = buf_adds(b, ",\"worker\":{\"host\":");
            rc = rc ? rc : buf_addc(b, '"');
            rc = rc ? rc : buf_add_json_escaped(b, host ? host : "", host ? strlen(host) : 0);
            rc = rc ? rc : buf_addc(b, '"');
            rc = rc ? rc : add_number(b, "pid", r, i, 6);
            rc = rc ? rc : buf_adds(b, "}}");
        } else {
            rc = buf_adds(b, ",\"worker\":null}");
        }
    }
    db_result_free(r);
    return rc ? rc : buf_addc(b, ']');
}

/* Reply with a job row, with its history when asked. */
static void reply_job(struct request *req, struct db *db, const struct db_result *r,
                      int with_history)
{
    long long id = 0;
    struct buf b;
    int rc;

    db_result_i64(r, 0, C_ID, &id);
    buf_init(&b, JOB_JSON_MAX);
    rc = job_members(&b, r, 0);
    if (!rc && with_history) {
        rc = add_history(&b, db, id);
        if (rc && rc != CP_ETOOBIG && rc != CP_ENOMEM) {
            buf_free(&b);
            reply_unavailable(req);
            return;
        }
    }
    rc = rc ? rc : buf_addc(&b, '}');
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}

/* The database and the id of the path; 0, or 1 after a reply. */
static int open_target(struct request *req, struct db **db, long long *id)
{
    if (req_path_id(req, "id", id))
        return 1;
    if (app_db(req->app, db)) {
        reply_unavailable(req);
        return 1;
    }
    return 0;
}

void h_job_get(struct request *req)
{
    struct db_result *r = NULL;
    struct db *db;
    long long id;
    int rc;

    if (open_target(req, &db, &id))
        return;
    rc = load_job(req, db, id, &r);
    if (rc == CP_ENOTFOUND)
        reply_no_job(req, id);
    else if (rc)
        reply_unavailable(req);
    else
        reply_job(req, db, r, 1);
    db_result_free(r);
}

static void audit_job(struct request *req, struct db *db, const char *action, int failed,
                      long long id, long long owner, const char *detail)
{
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = action,
        .failed = failed, .target_type = "job", .target_id = id, .owner_id = owner,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    audit_write(db, &ev);
}

static long long job_owner(const struct db_result *r)
{
    long long user = 0;

    if (r)
        db_result_i64(r, 0, C_USER_ID, &user);
    return user;
}

/* POST /jobs/{id}/retry and /jobs/{id}/cancel: the rules are queue.c's;
 * this maps its answers to replies and audits them. */
static void act_on_job(struct request *req, int cancel)
{
    const char *action = cancel ? "job.cancel" : "job.retry";
    struct db_result *r = NULL;
    enum job_state was = JOB_READY;
    char detail[96];
    struct db *db;
    long long id;
    int rc;

    if (open_target(req, &db, &id))
        return;
    rc = cancel ? queue_cancel(db, id, user_scope(req), &was)
                : queue_retry(db, id, user_scope(req), &was);
    if (rc == CP_ENOTFOUND) {
        reply_no_job(req, id);
        return;
    }
    if (rc == CP_ECONFLICT) {
        int key_taken = !cancel && (was == JOB_DEAD || was == JOB_FAILED || was == JOB_CANCELLED);
        load_job(req, db, id, &r);
        snprintf(detail, sizeof detail, "refused: %s",
                 key_taken ? "another unfinished job holds its unique key" : job_state_name(was));
        audit_job(req, db, action, 1, id, job_owner(r), detail);
        db_result_free(r);
        if (key_taken)
            reply_error(req, 409, "unique_key_taken",
                        "Another unfinished job holds the unique key of job %lld.", id);
        else if (cancel)
            reply_error(req, 409, "job_state",
                        "Job %lld is %s; only scheduled, ready or failed jobs can be cancelled.",
                        id, job_state_name(was));
        else
            reply_error(req, 409, "job_state",
                        "Job %lld is %s; only dead, failed or cancelled jobs can be retried.",
                        id, job_state_name(was));
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    rc = load_job(req, db, id, &r);
    snprintf(detail, sizeof detail, "%s -> %s", job_state_name(was),
             cancel ? "cancelled" : "ready");
    audit_job(req, db, action, 0, id, job_owner(r), detail);
    if (rc == CP_ENOTFOUND)
        reply_no_job(req, id);          /* pruned in between */
    else if (rc)
        reply_unavailable(req);
    else
        reply_job(req, db, r, 0);
    db_result_free(r);
}

void h_job_retry(struct request *req)
{
    act_on_job(req, 0);
}

void h_job_cancel(struct request *req)
{
    act_on_job(req, 1);
}

/* ------------------------------------------------ dead-letter retry -- */

/* An optional string member checked by ok(): 0, or 1 after a reply. */
static int body_name(struct request *req, const char *key, char *out, size_t cap,
                     int (*ok)(const char *), const char *expected)
{
    const char *v;
    int rc = json_get_string(req->json, key, &v);

    out[0] = '\0';
    if (rc == CP_ENOTFOUND)
        return 0;
    if (rc || strlen(v) >= cap || !ok(v)) {
        reply_error(req, 400, "invalid_field", "The field \"%s\" must be %s.", key, expected);
        return 1;
    }
    strcpy(out, v);
    return 0;
}

void h_jobs_dead_retry(struct request *req)
{
    static const char *const allowed[] = { "queue", "kind", "error_class", "limit", NULL };
    char queue[JOB_QUEUE_MAX + 1] = "", kind[JOB_KIND_MAX + 1] = "";
    char error_class[ERROR_CLASS_MAX + 1] = "", detail[256], body[64];
    long long limit = DEAD_RETRY_MAX;
    struct db *db;
    size_t n = 0;
    int rc;

    /* No body means no filter, like {}. */
    if (req->json) {
        if (body_members(req, allowed))
            return;
        if (body_name(req, "queue", queue, sizeof queue, job_queue_name_ok,
                      "a queue name (1 to 32 of a-z, 0-9, _ and -)") ||
            body_name(req, "kind", kind, sizeof kind, job_kind_name_ok,
                      "a job kind such as maintenance.prune_jobs") ||
            body_name(req, "error_class", error_class, sizeof error_class, error_class_ok,
                      "one of transient, rate_limited, auth, permanent, lost, released"))
            return;
        rc = json_get_int(req->json, "limit", &limit);
        if (rc == CP_ENOTFOUND) {
            limit = DEAD_RETRY_MAX;
        } else if (rc || limit < 1 || limit > DEAD_RETRY_MAX) {
            reply_error(req, 400, "invalid_field",
                        "The field \"limit\" must be a whole number from 1 to %d.", DEAD_RETRY_MAX);
            return;
        }
    }
    if (req_db(req, &db))
        return;
    struct dead_filter f = {
        .queue = queue[0] ? queue : NULL, .kind = kind[0] ? kind : NULL,
        .error_class = error_class[0] ? error_class : NULL, .user_scope = user_scope(req),
    };
    rc = queue_retry_dead(db, &f, (int)limit, &n);
    if (rc) {
        reply_unavailable(req);
        return;
    }
    snprintf(detail, sizeof detail, "retried %zu; queue=%s kind=%s error_class=%s limit=%lld", n,
             queue[0] ? queue : "*", kind[0] ? kind : "*", error_class[0] ? error_class : "*",
             limit);
    audit_job(req, db, "job.dead_retry", 0, 0, user_scope(req), detail);
    rc = snprintf(body, sizeof body, "{\"retried\":%zu}", n);
    reply_json(req, 200, body, (size_t)rc);
}
