/*
 * Account administration: /api/v1/admin/users...
 *
 * The route table lets only admins in.  The rules that protect the
 * installation (never leave it without an enabled admin; end a user's
 * sessions when their role or access changes) live in users.c, so the
 * API and crosspostctl cannot disagree about them.  Every change, and
 * every change refused for the last admin, is written to the audit log
 * with the admin as actor and the account as target and owner, so the
 * account's holder sees it in their own trail.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "crypto.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "password.h"
#include "query.h"
#include "users.h"
#include "userjson.h"

#define PASSWORD_BYTES_MAX 512       /* 128 code points of 4 bytes */
#define LIST_JSON_MAX (4u << 20)
#define USER_JSON_MAX 16384

/* The user columns as users.c formats them, without the secrets. */
#define LIST_COLUMNS \
    "id, email, display_name, role, disabled, " \
    "DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ'), " \
    "COALESCE(DATE_FORMAT(last_login_at, '%Y-%m-%dT%H:%i:%s.%fZ'), '')"

static void reply_no_user(struct request *req, long long id)
{
    reply_error(req, 404, "not_found", "No user has id %lld.", id);
}

static void reply_last_admin(struct request *req)
{
    reply_error(req, 409, "last_admin",
                "This is the last enabled admin; make another admin first.");
}

static void audit_admin(struct request *req, struct db *db, const char *action, int failed,
                        long long target, const char *detail)
{
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = action,
        .failed = failed, .target_type = "user", .target_id = target, .owner_id = target,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    audit_write(db, &ev);
}

static void reply_user(struct request *req, int status, const struct user *u)
{
    struct buf b;

    buf_init(&b, USER_JSON_MAX);
    if (user_json_append(&b, u))
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, status, buf_str(&b), b.len);
    buf_free(&b);
}

/* A display name: at most DISPLAY_NAME_MAX characters, no control
 * characters (it is shown in lists and logs).  The body is already known
 * to be valid UTF-8, so characters are the bytes that start one. */
static int display_name_ok(const char *s)
{
    size_t chars = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
        if ((*p & 0xc0) != 0x80)
            chars++;
    }
    return chars <= DISPLAY_NAME_MAX;
}

/* An optional string member: 0 with *out (NULL when absent), or 1 after
 * replying 400 when it has another JSON type (null included). */
static int optional_string(struct request *req, const char *key, const char **out)
{
    struct json_object *v;

    *out = NULL;
    if (!json_object_object_get_ex(req->json, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        reply_error(req, 400, "invalid_field", "The field \"%s\" must be a string.", key);
        return 1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static int check_role(struct request *req, const char *name, enum user_role *out)
{
    int role = user_role_parse(name);

    if (role < 0) {
        reply_error(req, 422, "invalid_role", "\"role\" must be one of user, operator, admin.");
        return 1;
    }
    *out = (enum user_role)role;
    return 0;
}

static int check_display_name(struct request *req, const char *name)
{
    if (display_name_ok(name))
        return 0;
    reply_error(req, 422, "invalid_field",
                "The field \"display_name\" must be at most %d characters without control characters.",
                DISPLAY_NAME_MAX);
    return 1;
}

/* One row of a LIST_COLUMNS query as a struct user. */
static void user_from_list_row(const struct db_result *r, size_t row, struct user *u)
{
    const char *v;
    long long n = 0;
    int role;

    memset(u, 0, sizeof *u);
    db_result_i64(r, row, 0, &u->id);
    v = db_result_get(r, row, 1);
    snprintf(u->email, sizeof u->email, "%s", v ? v : "");
    v = db_result_get(r, row, 2);
    snprintf(u->display_name, sizeof u->display_name, "%s", v ? v : "");
    role = user_role_parse(db_result_get(r, row, 3));
    u->role = role < 0 ? USER_ROLE_USER : (enum user_role)role;
    if (db_result_i64(r, row, 4, &n) == 0)
        u->disabled = n != 0;
    v = db_result_get(r, row, 5);
    snprintf(u->created_at, sizeof u->created_at, "%s", v ? v : "");
    v = db_result_get(r, row, 6);
    snprintf(u->last_login_at, sizeof u->last_login_at, "%s", v ? v : "");
}

/* s inside a LIKE pattern that matches it anywhere, with '!' as the
 * escape character (so the SQL mode's treatment of backslashes does not
 * matter): out holds 2*strlen(s)+3 bytes. */
static void like_contains(const char *s, char *out)
{
    size_t n = 0;

    out[n++] = '%';
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '!')
            out[n++] = '!';
        out[n++] = *s;
    }
    out[n++] = '%';
    out[n] = '\0';
}

static int list_page_json(const struct db_result *r, int limit, struct buf *b)
{
    size_t rows = db_result_rows(r), shown = rows > (size_t)limit ? (size_t)limit : rows;
    struct user u;
    int rc = buf_adds(b, "{\"data\":[");

    for (size_t i = 0; i < shown && !rc; i++) {
        user_from_list_row(r, i, &u);
        if (i)
            rc = buf_addc(b, ',');
        if (!rc)
            rc = user_json_append(b, &u);
    }
    if (rc)
        return rc;
    /* One row more than asked for says there is a next page. */
    if (rows > shown)
        return buf_printf(b, "],\"next_cursor\":\"%lld\"}", u.id);
    return buf_adds(b, "],\"next_cursor\":null}");
}

void h_admin_users_list(struct request *req)
{
    char q[EMAIL_MAX + 1], pattern[2 * EMAIL_MAX + 3], role_text[16], disabled_text[8];
    struct db_param p[5];
    struct buf sql;
    long long cursor;
    size_t n = 0;
    int limit, rc, role = -1, disabled = -1;

    if (req_paging(req, &limit, &cursor))
        return;
    rc = req_query(req, "q", q, sizeof q);
    if (rc == 1)
        return;
    if (rc)
        q[0] = '\0';
    rc = req_query(req, "role", role_text, sizeof role_text);
    if (rc == 1)
        return;
    if (rc == 0 && (role = user_role_parse(role_text)) < 0) {
        reply_error(req, 400, "invalid_parameter",
                    "The query parameter \"role\" must be one of user, operator, admin.");
        return;
    }
    rc = req_query(req, "disabled", disabled_text, sizeof disabled_text);
    if (rc == 1)
        return;
    if (rc == 0) {
        disabled = strcmp(disabled_text, "true") == 0 ? 1 : strcmp(disabled_text, "false") == 0 ? 0 : -1;
        if (disabled < 0) {
            reply_error(req, 400, "invalid_parameter",
                        "The query parameter \"disabled\" must be true or false.");
            return;
        }
    }

    /* The statement is built from fixed clauses only; values are bound. */
    buf_init(&sql, 1024);
    buf_adds(&sql, "SELECT " LIST_COLUMNS " FROM users WHERE id > ?");
    p[n++] = DB_I64(cursor);
    if (q[0]) {
        like_contains(q, pattern);
        buf_adds(&sql, " AND email LIKE ? ESCAPE '!'");
        p[n++] = DB_STR(pattern);
    }
    if (role >= 0) {
        buf_adds(&sql, " AND role = ?");
        p[n++] = DB_STR(user_role_name((enum user_role)role));
    }
    if (disabled >= 0) {
        buf_adds(&sql, " AND disabled = ?");
        p[n++] = DB_I64(disabled);
    }
    rc = buf_adds(&sql, " ORDER BY id LIMIT ?");
    p[n++] = DB_I64(limit + 1);

    reply_list_query(req, rc, &sql, p, n, limit, list_page_json, LIST_JSON_MAX);
}

void h_admin_user_create(struct request *req)
{
    static const char *const allowed[] = { "email", "role", "display_name", "password", NULL };
    const char *email, *role_name, *name, *password;
    char norm[EMAIL_MAX + 1], hash[PASSWORD_HASH_MAX], generated[64];
    enum user_role role = USER_ROLE_USER;
    enum password_verdict v;
    struct user u;
    struct db *db;
    struct buf b;
    long long id;
    int rc;

    generated[0] = '\0';
    if (body_members(req, allowed) || body_string(req, "email", 1024, &email) ||
        optional_string(req, "role", &role_name) || optional_string(req, "display_name", &name) ||
        optional_string(req, "password", &password))
        return;
    if (user_email_normalize(email, norm)) {
        reply_error(req, 422, "invalid_email", "\"email\" is not an email address.");
        return;
    }
    if (role_name && check_role(req, role_name, &role))
        return;
    if (name && check_display_name(req, name))
        return;
    if (password) {
        size_t len = strnlen(password, PASSWORD_BYTES_MAX + 1);
        v = password_check(password, len, norm);
        if (v != PASSWORD_OK) {
            reply_error(req, 422, "weak_password", "%s", password_verdict_text(v));
            return;
        }
    } else if (crypto_token("", generated, sizeof generated)) {
        reply_error(req, 500, "internal", "A password could not be generated.");
        return;
    }
    if (password_hash(password ? password : generated, strlen(password ? password : generated),
                      &password_default_params, hash, sizeof hash)) {
        reply_error(req, 500, "internal", "The password could not be hashed.");
        return;
    }
    if (req_db(req, &db))
        return;
    rc = user_create(db, norm, name ? name : "", hash, role, &id);
    if (rc == CP_ECONFLICT) {
        reply_error(req, 409, "email_taken", "An account with this email exists.");
        return;
    }
    if (rc || user_find_by_id(db, id, &u)) {
        reply_unavailable(req);
        return;
    }
    audit_admin(req, db, "user.create", 0, id, user_role_name(role));

    buf_init(&b, USER_JSON_MAX);
    buf_addc(&b, '{');
    rc = user_json_members(&b, &u);
    /* A generated password is shown this once; only its hash is kept. */
    if (!rc && !password)
        rc = buf_printf(&b, ",\"password\":\"%s\"", generated);
    if (!rc)
        rc = buf_addc(&b, '}');
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 201, buf_str(&b), b.len);
    buf_free(&b);
}

/* The database and the user named by the path; 0, or 1 after a reply. */
static int load_target(struct request *req, struct db **db, struct user *u)
{
    long long id;
    int rc;

    if (req_path_id(req, "id", &id))
        return 1;
    if (app_db(req->app, db)) {
        reply_unavailable(req);
        return 1;
    }
    rc = user_find_by_id(*db, id, u);
    if (rc == CP_ENOTFOUND) {
        reply_no_user(req, id);
        return 1;
    }
    if (rc) {
        reply_unavailable(req);
        return 1;
    }
    return 0;
}

void h_admin_user_get(struct request *req)
{
    struct user u;
    struct db *db;

    if (load_target(req, &db, &u))
        return;
    reply_user(req, 200, &u);
}

/* Map a users.c result of a change to a reply; 0 when it succeeded. */
static int change_failed(struct request *req, struct db *db, int rc, const char *action,
                         long long id)
{
    if (rc == 0)
        return 0;
    if (rc == CP_ECONFLICT) {
        audit_admin(req, db, action, 1, id, "refused: last enabled admin");
        reply_last_admin(req);
    } else if (rc == CP_ENOTFOUND) {
        reply_no_user(req, id);
    } else {
        reply_unavailable(req);
    }
    return 1;
}

void h_admin_user_update(struct request *req)
{
    const char *name = NULL;
    enum user_role role = USER_ROLE_USER;
    int has_role = 0, disabled = -1, rc;
    char detail[64];
    struct user u;
    struct db *db;

    if (!req->json || !json_object_is_type(req->json, json_type_object)) {
        reply_error(req, 400, "invalid_body", "The request body must be a JSON object.");
        return;
    }
    if (json_object_object_length(req->json) == 0) {
        reply_error(req, 422, "nothing_to_change",
                    "Name at least one of role, disabled, display_name.");
        return;
    }
    json_object_object_foreach(req->json, key, val) {
        if (strcmp(key, "role") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                reply_error(req, 400, "invalid_field", "The field \"role\" must be a string.");
                return;
            }
            if (check_role(req, json_object_get_string(val), &role))
                return;
            has_role = 1;
        } else if (strcmp(key, "disabled") == 0) {
            if (!json_object_is_type(val, json_type_boolean)) {
                reply_error(req, 400, "invalid_field", "The field \"disabled\" must be true or false.");
                return;
            }
            disabled = json_object_get_boolean(val) ? 1 : 0;
        } else if (strcmp(key, "display_name") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                reply_error(req, 400, "invalid_field", "The field \"display_name\" must be a string.");
                return;
            }
            name = json_object_get_string(val);
            if (check_display_name(req, name))
                return;
        } else {
            reply_error(req, 422, "unknown_field", "The field \"%.64s\" is not known here.", key);
            return;
        }
    }
    if (load_target(req, &db, &u))
        return;

    /* The changes that can be refused for the last admin come first, so
     * a refusal leaves the account as it was. */
    if (has_role && role != u.role) {
        snprintf(detail, sizeof detail, "%s -> %s", user_role_name(u.role), user_role_name(role));
        if (change_failed(req, db, user_set_role(db, u.id, role), "user.role", u.id))
            return;
        audit_admin(req, db, "user.role", 0, u.id, detail);
    }
    if (disabled >= 0 && disabled != u.disabled) {
        const char *action = disabled ? "user.disable" : "user.enable";
        if (change_failed(req, db, user_set_disabled(db, u.id, disabled), action, u.id))
            return;
        audit_admin(req, db, action, 0, u.id, disabled ? "sessions ended" : NULL);
    }
    if (name && strcmp(name, u.display_name) != 0) {
        struct db_param p[] = { DB_STR(name), DB_I64(u.id) };
        if (db_exec(db, "UPDATE users SET display_name = ? WHERE id = ?", p, 2, NULL, NULL)) {
            reply_unavailable(req);
            return;
        }
        audit_admin(req, db, "user.update", 0, u.id, "display_name changed");
    }
    rc = user_find_by_id(db, u.id, &u);
    if (rc == CP_ENOTFOUND)
        reply_no_user(req, u.id);
    else if (rc)
        reply_unavailable(req);
    else
        reply_user(req, 200, &u);
}

void h_admin_user_delete(struct request *req)
{
    struct user u;
    struct db *db;

    if (load_target(req, &db, &u))
        return;
    if (change_failed(req, db, user_delete(db, u.id), "user.delete", u.id))
        return;
    /* The account is gone; its email keeps the event readable. */
    audit_admin(req, db, "user.delete", 0, u.id, u.email);
    reply_body(req, 204, "application/json", "", 0);
}

void h_admin_user_revoke_sessions(struct request *req)
{
    struct user u;
    struct db *db;

    if (load_target(req, &db, &u))
        return;
    if (change_failed(req, db, user_revoke_sessions(db, u.id), "user.revoke_sessions", u.id))
        return;
    audit_admin(req, db, "user.revoke_sessions", 0, u.id, "every session ended");
    reply_body(req, 204, "application/json", "", 0);
}
