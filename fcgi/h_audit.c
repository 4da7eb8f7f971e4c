/*
 * Reading the audit log: GET /api/v1/audit.
 *
 * Newest first, paged by id.  Admins read every row; anyone else reads
 * their own trail only: rows they caused (actor_id) and rows about them
 * (owner_id).  The filters narrow either view; they never widen one.
 *
 * The statement is assembled from a fixed set of clauses and every value
 * is bound.  A user's trail is read as the union of two index range
 * scans, (owner_id, id) and (actor_id, id), each stopped after one page,
 * so it costs the same on a large log as on a small one.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "err.h"
#include "handlers.h"
#include "query.h"

#define AUDIT_JSON_MAX (8u << 20)
#define ACTION_MAX 64
#define TARGET_TYPE_MAX 32
#define TARGET_ID_MAX 64
#define PARAMS_MAX 24

struct audit_filter {
    long long actor;                        /* 0: any */
    char action[ACTION_MAX + 1];            /* "": any */
    char action_like[2 * ACTION_MAX + 2];   /* prefix pattern when action ends in '.' */
    char target_type[TARGET_TYPE_MAX + 1];  /* "": any */
    char target_id[TARGET_ID_MAX + 1];
    char from[QUERY_TIME_MAX], to[QUERY_TIME_MAX];  /* DATETIME literals, or "" */
};

/* Action names are lower-case words joined by '.' ("auth.refresh_reuse"). */
static int action_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_' && *s != '.')
            return 0;
    return 1;
}

/* The filters of the query string; 0, or 1 after replying 400. */
static int read_filter(struct request *req, struct audit_filter *f)
{
    char text[TARGET_TYPE_MAX + TARGET_ID_MAX + 2];
    size_t n;
    int rc;

    memset(f, 0, sizeof *f);
    rc = req_query(req, "actor", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0 && parse_id(text, &f->actor)) {
        reply_bad_parameter(req, "actor", "a user id");
        return 1;
    }

    rc = req_query(req, "action", f->action, sizeof f->action);
    if (rc == 1)
        return 1;
    if (rc == 0 && !action_ok(f->action)) {
        reply_bad_parameter(req, "action", "an action such as auth.login, or a prefix ending in '.'");
        return 1;
    }
    n = strlen(f->action);
    if (n && f->action[n - 1] == '.') {
        /* A prefix: '_' is a wildcard in LIKE and common in action names. */
        char *o = f->action_like;
        for (size_t i = 0; i < n; i++) {
            if (f->action[i] == '_')
                *o++ = '!';
            *o++ = f->action[i];
        }
        *o++ = '%';
        *o = '\0';
    }

    rc = req_query(req, "target", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        char *colon = strchr(text, ':');
        size_t type_len = colon ? (size_t)(colon - text) : 0;
        if (!colon || type_len == 0 || type_len > TARGET_TYPE_MAX || !colon[1] ||
            strlen(colon + 1) > TARGET_ID_MAX) {
            reply_bad_parameter(req, "target", "type:id, such as user:42");
            return 1;
        }
        memcpy(f->target_type, text, type_len);
        f->target_type[type_len] = '\0';
        snprintf(f->target_id, sizeof f->target_id, "%s", colon + 1);
    }

    if (req_query_time(req, "from", f->from, sizeof f->from) == 1 ||
        req_query_time(req, "to", f->to, sizeof f->to) == 1)
        return 1;
    return 0;
}

/* Append " AND ..." for each filter in use, binding its values. */
static int append_filter(struct buf *sql, struct db_param *p, size_t *n, const struct audit_filter *f)
{
    int rc = 0;

    if (f->actor) {
        rc = rc ? rc : buf_adds(sql, " AND a.actor_id = ?");
        p[(*n)++] = DB_I64(f->actor);
    }
    if (f->action_like[0]) {
        rc = rc ? rc : buf_adds(sql, " AND a.action LIKE ? ESCAPE '!'");
        p[(*n)++] = DB_STR(f->action_like);
    } else if (f->action[0]) {
        rc = rc ? rc : buf_adds(sql, " AND a.action = ?");
        p[(*n)++] = DB_STR(f->action);
    }
    if (f->target_type[0]) {
        rc = rc ? rc : buf_adds(sql, " AND a.target_type = ? AND a.target_id = ?");
        p[(*n)++] = DB_STR(f->target_type);
        p[(*n)++] = DB_STR(f->target_id);
    }
    if (f->from[0]) {
        rc = rc ? rc : buf_adds(sql, " AND a.at >= ?");
        p[(*n)++] = DB_STR(f->from);
    }
    if (f->to[0]) {
        rc = rc ? rc : buf_adds(sql, " AND a.at < ?");
        p[(*n)++] = DB_STR(f->to);
    }
    return rc;
}

#define AUDIT_COLUMNS \
    "a.id, DATE_FORMAT(a.at, '%Y-%m-%dT%H:%i:%s.%f'), a.actor_id, " \
    "COALESCE(u.email, a.actor_label), a.action, a.outcome, a.target_type, a.target_id, " \
    "a.client_addr, a.request_id, a.detail"

/* The page's statement: every row for admins, the caller's trail for
 * anyone else. */
static int build_query(const struct request *req, const struct audit_filter *f, long long cursor,
                       int limit, struct buf *sql, struct db_param *p, size_t *n)
{
    long long before = cursor ? cursor : LLONG_MAX;
    int rc;

    *n = 0;
    if (req->user_role == USER_ROLE_ADMIN) {
        rc = buf_adds(sql, "SELECT " AUDIT_COLUMNS " FROM audit_log a "
                           "LEFT JOIN users u ON u.id = a.actor_id WHERE a.id < ?");
        p[(*n)++] = DB_I64(before);
        rc = rc ? rc : append_filter(sql, p, n, f);
        rc = rc ? rc : buf_adds(sql, " ORDER BY a.id DESC LIMIT ?");
        p[(*n)++] = DB_I64(limit + 1);
        return rc;
    }
    static const char *const branches[] = {
        "(SELECT a.id FROM audit_log a WHERE a.owner_id = ? AND a.id < ?",
        "(SELECT a.id FROM audit_log a WHERE a.actor_id = ? AND a.id < ?",
    };
    rc = buf_adds(sql, "SELECT " AUDIT_COLUMNS " FROM audit_log a JOIN (");
    for (int i = 0; i < 2; i++) {
        rc = rc ? rc : buf_adds(sql, i ? " UNION " : "");
        rc = rc ? rc : buf_adds(sql, branches[i]);
        p[(*n)++] = DB_I64(req->user_id);
        p[(*n)++] = DB_I64(before);
        rc = rc ? rc : append_filter(sql, p, n, f);
        rc = rc ? rc : buf_adds(sql, " ORDER BY a.id DESC LIMIT ?)");
        p[(*n)++] = DB_I64(limit + 1);
    }
    rc = rc ? rc : buf_adds(sql, ") mine ON mine.id = a.id LEFT JOIN users u ON u.id = a.actor_id "
                                 "ORDER BY a.id DESC LIMIT ?");
    p[(*n)++] = DB_I64(limit + 1);
    return rc;
}

/* A text column as a JSON string, or null when empty and nullable. */
static int add_text(struct buf *b, const char *name, const char *v, int empty_is_null)
{
    int rc = buf_printf(b, ",\"%s\":", name);

    if (rc)
        return rc;
    if ((!v || !*v) && empty_is_null)
        return buf_adds(b, "null");
    if ((rc = buf_addc(b, '"')) || (rc = buf_add_json_escaped(b, v ? v : "", v ? strlen(v) : 0)))
        return rc;
    return buf_addc(b, '"');
}

static int page_json(const struct db_result *r, int limit, struct buf *b)
{
    size_t rows = db_result_rows(r), shown = rows > (size_t)limit ? (size_t)limit : rows;
    long long id = 0, actor;
    int rc = buf_adds(b, "{\"data\":[");

    for (size_t i = 0; i < shown && !rc; i++) {
        const char *at = db_result_get(r, i, 1);
        db_result_i64(r, i, 0, &id);
        /* DATETIME(3) comes with six fraction digits; show milliseconds. */
        rc = buf_printf(b, "%s{\"id\":%lld,\"at\":\"%.23sZ\",\"actor_id\":", i ? "," : "", id,
                        at ? at : "");
        if (!rc)
            rc = db_result_i64(r, i, 2, &actor) == 0 ? buf_printf(b, "%lld", actor) : buf_adds(b, "null");
        rc = rc ? rc : add_text(b, "actor", db_result_get(r, i, 3), 0);
        rc = rc ? rc : add_text(b, "action", db_result_get(r, i, 4), 0);
        rc = rc ? rc : add_text(b, "outcome", db_result_get(r, i, 5), 0);
        rc = rc ? rc : add_text(b, "target_type", db_result_get(r, i, 6), 1);
        rc = rc ? rc : add_text(b, "target_id", db_result_get(r, i, 7), 1);
        rc = rc ? rc : add_text(b, "client_addr", db_result_get(r, i, 8), 0);
        rc = rc ? rc : add_text(b, "request_id", db_result_get(r, i, 9), 0);
        rc = rc ? rc : add_text(b, "detail", db_result_get(r, i, 10), 0);
        rc = rc ? rc : buf_addc(b, '}');
    }
    if (rc)
        return rc;
    /* One row more than asked for says there is a next page. */
    if (rows > shown)
        return buf_printf(b, "],\"next_cursor\":\"%lld\"}", id);
    return buf_adds(b, "],\"next_cursor\":null}");
}

void h_audit_list(struct request *req)
{
    struct audit_filter f;
    struct db_param p[PARAMS_MAX];
    struct buf sql;
    long long cursor;
    size_t n;
    int limit, rc;

    if (req_paging(req, &limit, &cursor) || read_filter(req, &f))
        return;
    buf_init(&sql, 4096);
    rc = build_query(req, &f, cursor, limit, &sql, p, &n);
    reply_list_query(req, rc, &sql, p, n, limit, page_json, AUDIT_JSON_MAX);
}
