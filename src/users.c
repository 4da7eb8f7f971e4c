#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sessions.h"
#include "users.h"

static const char *const role_names[] = { "user", "operator", "admin" };

int user_role_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, role_names[i]) == 0)
            return i;
    return -1;
}

const char *user_role_name(enum user_role role)
{
    return (unsigned)role < 3 ? role_names[role] : "user";
}

int user_email_normalize(const char *in, char *out)
{
    const char *start = in, *end, *at = NULL;
    size_t n = 0;

    out[0] = '\0';
    if (!in)
        return CP_EINVAL;
    while (*start == ' ' || *start == '\t')
        start++;
    end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - start > EMAIL_MAX || end == start)
        return CP_EINVAL;
    for (const char *p = start; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        /* Printable ASCII only: no spaces, quotes or angle brackets that
         * would need escaping anywhere an email is shown. */
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == ',')
            return CP_EINVAL;
        if (c == '@') {
            if (at)
                return CP_EINVAL;
            at = p;
        }
        out[n++] = (char)tolower(c);
    }
    out[n] = '\0';
    if (!at || at == start || at == end - 1)
        return CP_EINVAL;
    return 0;
}

#define USER_COLUMNS \
    "id, email, display_name, password_hash, role, disabled, token_version, " \
    "DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ'), " \
    "COALESCE(DATE_FORMAT(last_login_at, '%Y-%m-%dT%H:%i:%s.%fZ'), '')"

static void copy_col(const struct db_result *r, size_t col, char *dst, size_t cap)
{
    const char *v = db_result_get(r, 0, col);

    snprintf(dst, cap, "%s", v ? v : "");
}

static int user_from_row(const struct db_result *r, struct user *out)
{
    long long v;

    memset(out, 0, sizeof *out);
    if (db_result_i64(r, 0, 0, &out->id))
        return CP_EDB;
    copy_col(r, 1, out->email, sizeof out->email);
    copy_col(r, 2, out->display_name, sizeof out->display_name);
    copy_col(r, 3, out->password_hash, sizeof out->password_hash);
    out->role = (enum user_role)user_role_parse(db_result_get(r, 0, 4));
    if ((int)out->role < 0)
        out->role = USER_ROLE_USER;
    if (db_result_i64(r, 0, 5, &v) == 0)
        out->disabled = v != 0;
    db_result_i64(r, 0, 6, &out->token_version);
    copy_col(r, 7, out->created_at, sizeof out->created_at);
    copy_col(r, 8, out->last_login_at, sizeof out->last_login_at);
    return 0;
}

static int find_one(struct db *db, const char *sql, struct db_param param, struct user *out)
{
    struct db_result *r = NULL;
    int rc = db_query(db, sql, &param, 1, &r);

    if (rc)
        return rc;
    rc = db_result_rows(r) == 1 ? user_from_row(r, out) : CP_ENOTFOUND;
    db_result_free(r);
    return rc;
}

int user_find_by_email(struct db *db, const char *email, struct user *out)
{
    char norm[EMAIL_MAX + 1];

    if (user_email_normalize(email, norm))
        return CP_ENOTFOUND;
    return find_one(db, "SELECT " USER_COLUMNS " FROM users WHERE email = ?", DB_STR(norm), out);
}

int user_find_by_id(struct db *db, long long id, struct user *out)
{
    return find_one(db, "SELECT " USER_COLUMNS " FROM users WHERE id = ?", DB_I64(id), out);
}

int user_find_for_session(struct db *db, long long id, long long session_id,
                          struct user *out, int *session_live)
{
    struct db_param p[] = { DB_I64(session_id), DB_I64(id) };
    struct db_result *r = NULL;
    long long live = 0;
    int rc;

    *session_live = 0;
    /* One round trip: the session's state rides along as a last column,
     * NULL when the user has no such session. */
    rc = db_query(db, "SELECT " USER_COLUMNS ", "
                      "(SELECT s.revoked_at IS NULL AND s.expires_at > NOW(3) FROM sessions s "
                      "WHERE s.id = ? AND s.user_id = users.id) "
                      "FROM users WHERE id = ?", p, 2, &r);
    if (rc)
        return rc;
    rc = db_result_rows(r) == 1 ? user_from_row(r, out) : CP_ENOTFOUND;
    if (!rc && db_result_i64(r, 0, 9, &live) != 0)
        rc = CP_ENOTFOUND;
    *session_live = !rc && live == 1;
    db_result_free(r);
    return rc;
}

int user_create(struct db *db, const char *email, const char *display_name,
                const char *password_hash, enum user_role role, long long *id)
{
    char norm[EMAIL_MAX + 1];
    unsigned long long new_id = 0;
    int rc;

    *id = 0;
    if (user_email_normalize(email, norm) || strlen(display_name) > DISPLAY_NAME_MAX * 4)
        return CP_EINVAL;
    struct db_param p[] = {
        DB_STR(norm), DB_STR(display_name), DB_STR(password_hash), DB_STR(user_role_name(role)),
    };
    rc = db_exec(db, "INSERT INTO users (email, display_name, password_hash, role) VALUES (?, ?, ?, ?)",
                 p, 4, NULL, &new_id);
    if (rc)
        return rc;
    *id = (long long)new_id;
    return 0;
}

static int exec_for_user(struct db *db, const char *sql, struct db_param *p, size_t n)
{
    unsigned long long affected = 0;
    int rc = db_exec(db, sql, p, n, &affected, NULL);

    if (rc)
        return rc;
    return affected == 1 ? 0 : CP_ENOTFOUND;
}

int user_set_password(struct db *db, long long id, const char *password_hash)
{
    struct db_param p[] = { DB_STR(password_hash), DB_I64(id) };
    int rc = exec_for_user(db, "UPDATE users SET password_hash = ?, token_version = token_version + 1 "
                               "WHERE id = ?", p, 2);

    return rc ? rc : session_end_all(db, id, "password");
}

int user_update_hash(struct db *db, long long id, const char *password_hash)
{
    struct db_param p[] = { DB_STR(password_hash), DB_I64(id) };

    return exec_for_user(db, "UPDATE users SET password_hash = ? WHERE id = ?", p, 2);
}

int user_revoke_sessions(struct db *db, long long id)
{
    struct db_param p[] = { DB_I64(id) };
    int rc = exec_for_user(db, "UPDATE users SET token_version = token_version + 1 WHERE id = ?", p, 1);

    return rc ? rc : session_end_all(db, id, "revoked");
}

/*
 * Changes that can take away an admin run in a transaction that first
 * locks every enabled admin row, so two admins demoting each other at the
 * same moment cannot both succeed and leave none.
 */
struct admin_change {
    long long id;
    enum { CHANGE_ROLE, CHANGE_DISABLED, CHANGE_DELETE } kind;
    enum user_role role;
    int disabled;
};

static int admin_change_tx(struct db *db, void *arg)
{
    const struct admin_change *ch = arg;
    struct db_result *r = NULL;
    struct user target;
    long long admins;
    int rc, takes_admin;

    rc = db_query(db, "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 FOR UPDATE",
                  NULL, 0, &r);
    if (rc)
        return rc;
    admins = (long long)db_result_rows(r);
    db_result_free(r);
    rc = user_find_by_id(db, ch->id, &target);
    if (rc)
        return rc;
    takes_admin = target.role == USER_ROLE_ADMIN && !target.disabled &&
                  ((ch->kind == CHANGE_ROLE && ch->role != USER_ROLE_ADMIN) ||
                   (ch->kind == CHANGE_DISABLED && ch->disabled) || ch->kind == CHANGE_DELETE);
    if (takes_admin && admins <= 1)
        return CP_ECONFLICT;

    if (ch->kind == CHANGE_ROLE) {
        struct db_param p[] = { DB_STR(user_role_name(ch->role)), DB_I64(ch->id) };
        rc = exec_for_user(db, "UPDATE users SET role = ?, token_version = token_version + 1 "
                               "WHERE id = ?", p, 2);
        return rc ? rc : session_end_all(db, ch->id, "role");
    }
    if (ch->kind == CHANGE_DISABLED) {
        struct db_param p[] = { DB_I64(ch->disabled ? 1 : 0), DB_I64(ch->id) };
        rc = exec_for_user(db, "UPDATE users SET disabled = ?, token_version = token_version + 1 "
                               "WHERE id = ?", p, 2);
        return rc || !ch->disabled ? rc : session_end_all(db, ch->id, "disabled");
    }
    struct db_param p[] = { DB_I64(ch->id) };
    return exec_for_user(db, "DELETE FROM users WHERE id = ?", p, 1);
}

int user_set_role(struct db *db, long long id, enum user_role role)
{
    struct admin_change ch = { .id = id, .kind = CHANGE_ROLE, .role = role };

    return db_transaction(db, admin_change_tx, &ch, 3);
}

int user_set_disabled(struct db *db, long long id, int disabled)
{
    struct admin_change ch = { .id = id, .kind = CHANGE_DISABLED, .disabled = disabled };

    return db_transaction(db, admin_change_tx, &ch, 3);
}

int user_delete(struct db *db, long long id)
{
    struct admin_change ch = { .id = id, .kind = CHANGE_DELETE };

    return db_transaction(db, admin_change_tx, &ch, 3);
}
