#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connections.h"
#include "audit.h"
#include "err.h"
#include "json.h"
#include "keyring.h"
#include "log.h"

#define TX_ATTEMPTS 5
#define DAY_MS (24LL * 3600 * 1000)
#define LIST_LIMIT_MAX 200
#define ALERT_MESSAGE_MAX 1024

/* Times travel as epoch milliseconds; NULL reads as 0. */
#define MS(col) "COALESCE(CAST(UNIX_TIMESTAMP(" col ") * 1000 AS SIGNED), 0)"
#define FROM_MS "FROM_UNIXTIME(? / 1000)"
#define NOW_MS "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"

/* The sealed columns, in the order of struct conn_secrets. */
enum secret_col { SEC_ACCESS, SEC_REFRESH, SEC_TOKEN_SECRET, SEC_COOKIES, SEC_COUNT };

static const struct {
    const char *aad;              /* table.column, for keyring_aad() */
    size_t column_max;            /* bytes the column holds */
} secret_cols[SEC_COUNT] = {
    { "connections.access_token", 8192 },
    { "connections.refresh_token", 8192 },
    { "connections.token_secret", 1024 },
    { "connections.cookies", 65535 },
};

static size_t plain_max(enum secret_col col)
{
    return secret_cols[col].column_max - KEYRING_OVERHEAD;
}

/* ------------------------------------------------------------ status -- */

static const char *const status_names[] = {
    [CONN_ACTIVE] = "active",
    [CONN_EXPIRING] = "expiring",
    [CONN_NEEDS_REAUTH] = "needs_reauth",
    [CONN_ERROR] = "error",
    [CONN_DISABLED] = "disabled",
};
#define NSTATUS (sizeof status_names / sizeof status_names[0])

const char *conn_status_name(enum conn_status s)
{
    return (size_t)s < NSTATUS ? status_names[s] : "unknown";
}

int conn_status_parse(const char *name, enum conn_status *out)
{
    for (size_t i = 0; name && i < NSTATUS; i++)
        if (strcmp(status_names[i], name) == 0) {
            *out = (enum conn_status)i;
            return 0;
        }
    return CP_EINVAL;
}

/* ------------------------------------------------------------ timing -- */

long long conn_refresh_due(const struct conf *c, int refreshable, long long access_expires_at,
                           long long access_lifetime_ms, long long now_ms)
{
    long long due;

    if (refreshable && access_expires_at > 0) {
        long long margin = access_lifetime_ms >= DAY_MS ? c->token_refresh_margin_long
                                                        : c->token_refresh_margin;

        /* A token issued for no longer than the margin would be due
         * again as soon as it was renewed: refresh it half-way instead. */
        if (access_lifetime_ms > 0 && margin >= access_lifetime_ms)
            margin = access_lifetime_ms / 2;
        due = access_expires_at - margin;
    } else {
        due = now_ms + c->connection_check_interval;
        /* Checked when it runs out, so an expired credential is noticed;
         * one already past its expiry that still works is checked at the
         * usual pace rather than at every scan. */
        if (access_expires_at > now_ms && access_expires_at < due)
            due = access_expires_at;
    }
    return due < now_ms ? now_ms : due;
}

enum conn_status conn_shown_status(const struct conf *c, enum conn_status stored, int enabled,
                                   int has_refresh_token, long long access_expires_at,
                                   long long refresh_expires_at, long long now_ms)
{
    long long ends = has_refresh_token ? refresh_expires_at : access_expires_at;

    if (!enabled)
        return CONN_DISABLED;
    if (stored != CONN_ACTIVE)
        return stored;
    if (ends > 0 && ends - now_ms <= c->connection_expiring_window)
        return CONN_EXPIRING;
    return CONN_ACTIVE;
}

/* OAuth 2 credentials the platform's client can renew unattended. */
static int is_refreshable(enum platform_id platform, enum auth_kind kind)
{
    const struct platform *p = platform_get(platform);

    return kind == AUTH_OAUTH2 && p && p->refresh;
}

/* ----------------------------------------------------------- secrets -- */

void conn_secrets_init(struct conn_secrets *s)
{
    buf_init(&s->access_token, plain_max(SEC_ACCESS));
    buf_init(&s->refresh_token, plain_max(SEC_REFRESH));
    buf_init(&s->token_secret, plain_max(SEC_TOKEN_SECRET));
    buf_init(&s->cookies, plain_max(SEC_COOKIES));
}

void conn_secrets_clear(struct conn_secrets *s)
{
    secretbox_wipe(&s->access_token);
    secretbox_wipe(&s->refresh_token);
    secretbox_wipe(&s->token_secret);
    secretbox_wipe(&s->cookies);
}

struct plat_creds conn_creds(const struct connection *c, const struct conn_secrets *s)
{
    return (struct plat_creds){
        .kind = c->auth_kind,
        .access_token = buf_str(&s->access_token),
        .refresh_token = buf_str(&s->refresh_token),
        .token_secret = buf_str(&s->token_secret),
        .cookies = buf_str(&s->cookies),
    };
}

static struct buf *secret_slot(struct conn_secrets *s, enum secret_col col)
{
    switch (col) {
    case SEC_ACCESS:
        return &s->access_token;
    case SEC_REFRESH:
        return &s->refresh_token;
    case SEC_TOKEN_SECRET:
        return &s->token_secret;
    case SEC_COOKIES:
    case SEC_COUNT:
        break;
    }
    return &s->cookies;
}

/* Sealed values of one row on their way to the database; an empty one
 * is written as NULL. */
struct sealed_row {
    struct buf col[SEC_COUNT];
};

static void sealed_init(struct sealed_row *s)
{
    for (int i = 0; i < SEC_COUNT; i++)
        buf_init(&s->col[i], secret_cols[i].column_max);
}

static void sealed_free(struct sealed_row *s)
{
    for (int i = 0; i < SEC_COUNT; i++)
        buf_free(&s->col[i]);
}

static struct db_param sealed_param(const struct sealed_row *s, enum secret_col col)
{
    return s->col[col].len ? DB_BYTES(s->col[col].data, s->col[col].len) : DB_NULL;
}

/* The oldest key id among the sealed values (the current one when there
 * are none), so rotate-key finds the row while any value needs it. */
static unsigned sealed_key_id(struct secretbox *sb, const struct sealed_row *s)
{
    unsigned id = secretbox_current_id(sb), kid;

    for (int i = 0; i < SEC_COUNT; i++)
        if (s->col[i].len && keyring_sealed_id((const unsigned char *)s->col[i].data, s->col[i].len, &kid) == 0 &&
            kid < id)
            id = kid;
    return id;
}

static int seal_text(struct secretbox *sb, enum secret_col col, long long id, long long owner,
                     const char *text, struct sealed_row *out)
{
    size_t n = text ? strlen(text) : 0;

    if (n == 0)
        return 0;
    if (n > plain_max(col))
        return CP_ETOOBIG;
    return secretbox_seal(sb, secret_cols[col].aad, id, owner, text, n, &out->col[col]);
}

/* Seal again, under the current key, a value stored in the row. */
static int reseal_stored(struct secretbox *sb, enum secret_col col, long long id, long long owner,
                         const struct db_result *r, size_t rc_col, struct sealed_row *out)
{
    const char *stored = db_result_get(r, 0, rc_col);
    size_t len = db_result_len(r, 0, rc_col);
    struct buf plain;
    int rc;

    if (!stored || len == 0)
        return 0;
    buf_init(&plain, plain_max(col));
    rc = secretbox_open(sb, secret_cols[col].aad, id, owner, stored, len, &plain);
    if (rc)
        log_error("connection %lld: the stored %s does not open: %s", id, secret_cols[col].aad,
                  cp_strerror(rc));
    if (!rc)
        rc = secretbox_seal(sb, secret_cols[col].aad, id, owner, plain.data, plain.len, &out->col[col]);
    secretbox_wipe(&plain);
    return rc;
}

/* ----------------------------------------------------------- helpers -- */

/* The platform and auth kind stored in columns col and col + 1 of a
 * locked row; CP_EDB when either is not one this build knows. */
static int row_platform(const struct db_result *r, size_t col, const struct platform **p,
                        enum auth_kind *kind)
{
    const char *name = db_result_get(r, 0, col);

    *p = platform_find(name ? name : "");
    if (!*p || auth_kind_parse(db_result_get(r, 0, col + 1), kind))
        return CP_EDB;
    return 0;
}

static int db_now_ms(struct db *db, long long *now)
{
    struct db_result *r = NULL;
    int rc;

    *now = 0;
    rc = db_query(db, "SELECT " NOW_MS, NULL, 0, &r);
    if (!rc && (db_result_rows(r) != 1 || db_result_i64(r, 0, 0, now)))
        rc = CP_EDB;
    db_result_free(r);
    return rc;
}

static struct db_param time_param(long long ms)
{
    return ms > 0 ? DB_I64(ms) : DB_NULL;
}

/* why cut to cap bytes without splitting a character; text that is not
 * UTF-8 is not stored. */
static void clip_text(const char *why, char *out, size_t cap)
{
    json_utf8_clip(out, cap, why, "(the error message was not readable text)");
}

/* Characters (not bytes) of UTF-8 text. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

int conn_scope_all(const struct conn_scope *scope)
{
    return !scope || scope->see_all;
}

long long conn_scope_user(const struct conn_scope *scope)
{
    return scope ? scope->user_id : 0;
}

/* ---------------------------------------------------------- reading -- */

#define CONN_COLS \
    "id, user_id, platform, auth_kind, remote_id, username, display_name, avatar_url," \
    " COALESCE(remote_meta, '{}'), status, enabled, COALESCE(sync_interval_s, 0), scopes," \
    " refresh_token IS NOT NULL, secrets_key_id, " MS("access_expires_at") ", " \
    MS("refresh_expires_at") ", " MS("refresh_due_at") ", " MS("token_refreshed_at") ", " \
    MS("last_checked_at") ", last_error, " MS("last_error_at") ", " MS("created_at") ", " \
    MS("updated_at") ", " NOW_MS ", " MS("last_sync_at") ", " MS("next_sync_at") "," \
    " last_sync_error, " MS("last_video_at") ", videos_seen, initial_sync_done, backfill"
#define CONN_NCOLS 32

/* c NULL: the shown status is not derived from expiries (no window). */
static int row_to_conn(const struct db_result *r, size_t i, const struct conf *c,
                       struct connection *out)
{
    const struct platform *p = platform_find(db_result_get(r, i, 2) ? db_result_get(r, i, 2) : "");
    long long now;

    memset(out, 0, sizeof *out);
    if (!p || auth_kind_parse(db_result_get(r, i, 3), &out->auth_kind) ||
        conn_status_parse(db_result_get(r, i, 9), &out->stored_status))
        return CP_EDB;
    out->id = db_result_int(r, i, 0);
    out->user_id = db_result_int(r, i, 1);
    out->platform = p->id;
    db_result_text(r, i, 4, out->remote_id, sizeof out->remote_id);
    db_result_text(r, i, 5, out->username, sizeof out->username);
    db_result_text(r, i, 6, out->display_name, sizeof out->display_name);
    db_result_text(r, i, 7, out->avatar_url, sizeof out->avatar_url);
    db_result_text(r, i, 8, out->remote_meta, sizeof out->remote_meta);
    out->enabled = db_result_int(r, i, 10) != 0;
    out->sync_interval_s = db_result_int(r, i, 11);
    db_result_text(r, i, 12, out->scopes, sizeof out->scopes);
    out->has_refresh_token = db_result_int(r, i, 13) != 0;
    out->secrets_key_id = (unsigned)db_result_int(r, i, 14);
    out->access_expires_at = db_result_int(r, i, 15);
    out->refresh_expires_at = db_result_int(r, i, 16);
    out->refresh_due_at = db_result_int(r, i, 17);
    out->token_refreshed_at = db_result_int(r, i, 18);
    out->last_checked_at = db_result_int(r, i, 19);
    db_result_text(r, i, 20, out->last_error, sizeof out->last_error);
    out->last_error_at = db_result_int(r, i, 21);
    out->created_at = db_result_int(r, i, 22);
    out->updated_at = db_result_int(r, i, 23);
    now = db_result_int(r, i, 24);
    out->last_sync_at = db_result_int(r, i, 25);
    out->next_sync_at = db_result_int(r, i, 26);
    db_result_text(r, i, 27, out->last_sync_error, sizeof out->last_sync_error);
    out->last_video_at = db_result_int(r, i, 28);
    out->videos_seen = db_result_int(r, i, 29);
    out->initial_sync_done = db_result_int(r, i, 30) != 0;
    out->backfill = db_result_int(r, i, 31) != 0;
    if (c)
        out->status = conn_shown_status(c, out->stored_status, out->enabled, out->has_refresh_token,
                                        out->access_expires_at, out->refresh_expires_at, now);
    else
        out->status = out->enabled ? out->stored_status : CONN_DISABLED;
    return 0;
}

static const char sql_get[] =
    "SELECT " CONN_COLS " FROM connections WHERE id = ? AND (? = 1 OR user_id = ?)";

int conn_get(struct db *db, const struct conf *c, const struct conn_scope *scope, long long id,
             struct connection *out)
{
    struct db_param p[] = { DB_I64(id), DB_I64(conn_scope_all(scope)), DB_I64(conn_scope_user(scope)) };
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (id <= 0)
        return CP_ENOTFOUND;
    rc = db_query_row(db, sql_get, p, 3, &r);
    if (!rc)
        rc = row_to_conn(r, 0, c, out);
    db_result_free(r);
    return rc;
}

/* The worker's read: it goes by stored_status, so the shown status is
 * not derived from expiries here (there is no configuration to hand). */
static const char sql_get_secrets[] =
    "SELECT " CONN_COLS ", access_token, refresh_token, token_secret, cookies"
    " FROM connections WHERE id = ?";

int conn_open_secrets(struct db *db, struct secretbox *sb, long long id, struct connection *out,
                      struct conn_secrets *secrets)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    rc = db_query_row(db, sql_get_secrets, p, 1, &r);
    if (!rc)
        rc = row_to_conn(r, 0, NULL, out);
    for (int col = 0; !rc && col < SEC_COUNT; col++) {
        const char *sealed = db_result_get(r, 0, CONN_NCOLS + (size_t)col);
        size_t len = db_result_len(r, 0, CONN_NCOLS + (size_t)col);
        struct buf *slot = secret_slot(secrets, (enum secret_col)col);

        secretbox_wipe(slot);
        if (!sealed || len == 0)
            continue;
        rc = secretbox_open(sb, secret_cols[col].aad, out->id, out->user_id, sealed, len, slot);
        if (rc) {
            log_error("connection %lld: the stored %s does not open: %s", id, secret_cols[col].aad,
                      rc == CP_ENOTFOUND ? "its key is not in the key ring" : cp_strerror(rc));
            rc = CP_EINVAL;
        }
    }
    if (rc) {
        conn_secrets_clear(secrets);
        if (rc != CP_ENOTFOUND)
            memset(out, 0, sizeof *out);
    }
    db_result_free(r);
    return rc;
}

int conn_list(struct db *db, const struct conf *c, const struct conn_scope *scope,
              const struct conn_filter *f, struct connection *out, size_t *n, int *more)
{
    struct db_param p[8];
    struct db_result *r = NULL;
    struct buf sql;
    size_t np = 0, rows;
    long long user = f->user_id;
    int rc;

    *n = 0;
    *more = 0;
    if (f->limit < 1 || f->limit > LIST_LIMIT_MAX || f->after_id < 0)
        return CP_EINVAL;
    if (!conn_scope_all(scope)) {
        if (user && user != scope->user_id)
            return 0;
        user = scope->user_id;
    }
    buf_init(&sql, 4096);
    rc = buf_adds(&sql, "SELECT " CONN_COLS " FROM connections WHERE id > ?");
    p[np++] = DB_I64(f->after_id);
    if (!rc && user) {
        rc = buf_adds(&sql, " AND user_id = ?");
        p[np++] = DB_I64(user);
    }
    if (!rc && f->have_platform) {
        const struct platform *pl = platform_get(f->platform);

        if (!pl)
            rc = CP_EINVAL;
        else {
            rc = buf_adds(&sql, " AND platform = ?");
            p[np++] = DB_STR(pl->name);
        }
    }
    if (!rc && f->have_status) {
        /* The same rules as conn_shown_status(), in SQL. */
        /* Spelled so that no part is NULL: NOT (NULL) would drop rows
         * whose credentials do not expire from "active". */
        static const char expiring[] =
            "((refresh_token IS NOT NULL AND refresh_expires_at IS NOT NULL"
            " AND refresh_expires_at <= NOW(3) + INTERVAL ? MICROSECOND)"
            " OR (refresh_token IS NULL AND access_expires_at IS NOT NULL"
            " AND access_expires_at <= NOW(3) + INTERVAL ? MICROSECOND))";

        switch (f->status) {
        case CONN_DISABLED:
            rc = buf_adds(&sql, " AND enabled = 0");
            break;
        case CONN_NEEDS_REAUTH:
        case CONN_ERROR:
            rc = buf_adds(&sql, " AND enabled = 1 AND status = ?");
            p[np++] = DB_STR(conn_status_name(f->status));
            break;
        case CONN_ACTIVE:
        case CONN_EXPIRING:
            rc = buf_printf(&sql, " AND enabled = 1 AND status = 'active' AND %s%s",
                            f->status == CONN_ACTIVE ? "NOT " : "", expiring);
            p[np++] = DB_I64(c->connection_expiring_window * 1000);
            p[np++] = DB_I64(c->connection_expiring_window * 1000);
            break;
        default:
            rc = CP_EINVAL;
        }
    }
    if (!rc)
        rc = buf_adds(&sql, " ORDER BY id LIMIT ?");
    p[np++] = DB_I64(f->limit + 1);
    if (!rc)
        rc = db_query(db, buf_str(&sql), p, np, &r);
    buf_free(&sql);
    if (rc)
        goto out;
    rows = db_result_page(r, f->limit, more);
    for (size_t i = 0; i < rows && !rc; i++)
        rc = row_to_conn(r, i, c, &out[i]);
    if (!rc)
        *n = rows;
    else
        *more = 0;
out:
    db_result_free(r);
    return rc;
}

/* ------------------------------------------------------------- JSON -- */

/* ISO 8601 UTC with milliseconds, or null for 0. */
int conn_to_json(const struct connection *conn, const struct conf *c, struct buf *out)
{
    const struct platform *p = platform_get(conn->platform);
    long long effective = conn->sync_interval_s ? conn->sync_interval_s : c->sync_interval / 1000;
    int rc;

    if (!p)
        return CP_EINVAL;
    rc = buf_printf(out, "{\"id\":%lld,\"user_id\":%lld", conn->id, conn->user_id);
    if (!rc)
        rc = json_member_str(out, "platform", p->name);
    if (!rc)
        rc = json_member_str(out, "auth_kind", auth_kind_name(conn->auth_kind));
    if (!rc)
        rc = json_member_str(out, "remote_id", conn->remote_id);
    if (!rc)
        rc = json_member_str(out, "username", conn->username);
    if (!rc)
        rc = json_member_str(out, "display_name", conn->display_name);
    if (!rc)
        rc = json_member_str(out, "avatar_url", conn->avatar_url);
    if (!rc)
        rc = json_member_str(out, "status", conn_status_name(conn->status));
    if (!rc)
        rc = buf_printf(out, ",\"enabled\":%s", conn->enabled ? "true" : "false");
    if (!rc)
        rc = conn->sync_interval_s ? buf_printf(out, ",\"sync_interval\":%lld", conn->sync_interval_s)
                                   : buf_adds(out, ",\"sync_interval\":null");
    if (!rc)
        rc = buf_printf(out, ",\"effective_sync_interval\":%lld", effective);
    if (!rc)
        rc = json_member_str(out, "scopes", conn->scopes);
    if (!rc)
        rc = buf_printf(out, ",\"has_refresh_token\":%s", conn->has_refresh_token ? "true" : "false");
    if (!rc)
        rc = json_member_time(out, "token_expires_at", conn->access_expires_at);
    if (!rc)
        rc = json_member_time(out, "refresh_token_expires_at", conn->refresh_expires_at);
    if (!rc)
        rc = json_member_time(out, "next_refresh_at", conn->refresh_due_at);
    if (!rc)
        rc = json_member_time(out, "last_refreshed_at", conn->token_refreshed_at);
    if (!rc)
        rc = json_member_time(out, "last_checked_at", conn->last_checked_at);
    if (!rc)
        rc = conn->last_error[0] ? json_member_str(out, "last_error", conn->last_error)
                                 : buf_adds(out, ",\"last_error\":null");
    if (!rc)
        rc = json_member_time(out, "last_error_at", conn->last_error_at);
    if (!rc)
        rc = json_member_time(out, "last_sync_at", conn->last_sync_at);
    if (!rc)
        rc = json_member_time(out, "next_sync_at", conn->next_sync_at);
    if (!rc)
        rc = conn->last_sync_error[0] ? json_member_str(out, "last_sync_error", conn->last_sync_error)
                                      : buf_adds(out, ",\"last_sync_error\":null");
    if (!rc)
        rc = json_member_time(out, "last_video_at", conn->last_video_at);
    if (!rc)
        rc = buf_printf(out, ",\"videos_seen\":%lld", conn->videos_seen);
    if (!rc)
        rc = json_member_time(out, "created_at", conn->created_at);
    if (!rc)
        rc = json_member_time(out, "updated_at", conn->updated_at);
    if (!rc)
        rc = buf_printf(out, ",\"sandbox\":%s}", c->sandbox ? "true" : "false");
    return rc;
}

/* ---------------------------------------------------------- writing -- */

static const char sql_find_account[] =
    "SELECT id, auth_kind, refresh_token, token_secret, cookies, " MS("refresh_expires_at") ", scopes"
    " FROM connections WHERE user_id = ? AND platform = ? AND remote_id = ? FOR UPDATE";

static const char sql_insert[] =
    "INSERT INTO connections (user_id, platform, auth_kind, remote_id) VALUES (?, ?, ?, ?)";

static const char sql_write_grant[] =
    "UPDATE connections SET auth_kind = ?, username = ?, display_name = ?, avatar_url = ?,"
    " remote_meta = ?, status = 'active', scopes = ?, access_token = ?, refresh_token = ?,"
    " token_secret = ?, cookies = ?, secrets_key_id = ?, access_expires_at = " FROM_MS ","
    " refresh_expires_at = " FROM_MS ", refresh_due_at = " FROM_MS ", last_checked_at = NOW(3),"
    " last_error = '', last_error_at = NULL,"
    " next_sync_at = IF(platform = 'tiktok', NOW(3), NULL) WHERE id = ?";

struct upsert {
    struct secretbox *sb;
    const struct conf *c;
    const struct conn_grant *g;
    long long id;
    int created;
};

static int upsert_tx(struct db *db, void *arg)
{
    struct upsert *u = arg;
    const struct conn_grant *g = u->g;
    const struct plat_tokens *tok = g->tokens;
    const struct platform *p = platform_get(g->platform);
    struct db_result *r = NULL;
    struct sealed_row s;
    const char *scopes = "";
    long long id = 0, now, access_exp = 0, refresh_exp = 0, due;
    int keep = 0, rc;

    u->id = 0;
    u->created = 0;
    sealed_init(&s);
    rc = db_now_ms(db, &now);
    if (rc)
        goto out;
    {
        struct db_param q[] = { DB_I64(g->user_id), DB_STR(p->name), DB_STR(g->account->remote_id) };
        rc = db_query(db, sql_find_account, q, 3, &r);
    }
    if (rc)
        goto out;
    if (db_result_rows(r) == 1) {
        enum auth_kind stored_kind;

        id = db_result_int(r, 0, 0);
        /* Secrets of another kind of authorisation are not kept. */
        keep = auth_kind_parse(db_result_get(r, 0, 1), &stored_kind) == 0 && stored_kind == g->auth_kind;
    } else {
        struct db_param q[] = { DB_I64(g->user_id), DB_STR(p->name), DB_STR(auth_kind_name(g->auth_kind)),
                                DB_STR(g->account->remote_id) };
        unsigned long long new_id = 0;

        rc = db_exec(db, sql_insert, q, 4, NULL, &new_id);
        /* Inserted by a concurrent callback: read it again. */
        if (rc == CP_ECONFLICT)
            rc = CP_ERETRY;
        if (rc)
            goto out;
        id = (long long)new_id;
        u->created = 1;
    }

    if (tok) {
        rc = seal_text(u->sb, SEC_ACCESS, id, g->user_id, tok->access_token, &s);
        if (!rc && tok->refresh_token && *tok->refresh_token)
            rc = seal_text(u->sb, SEC_REFRESH, id, g->user_id, tok->refresh_token, &s);
        if (!rc)
            rc = seal_text(u->sb, SEC_TOKEN_SECRET, id, g->user_id, tok->token_secret, &s);
        if (tok->access_expires_in_s > 0)
            access_exp = now + tok->access_expires_in_s * 1000;
        if (tok->refresh_token && *tok->refresh_token && tok->refresh_expires_in_s > 0)
            refresh_exp = now + tok->refresh_expires_in_s * 1000;
        scopes = tok->scopes;
    }
    if (!rc && g->cookies)
        rc = seal_text(u->sb, SEC_COOKIES, id, g->user_id, g->cookies, &s);
    if (!rc && keep) {
        /* A refresh token, secret or cookies that did not come back are
         * kept: platforms give a refresh token on first consent only. */
        if (!s.col[SEC_REFRESH].len) {
            rc = reseal_stored(u->sb, SEC_REFRESH, id, g->user_id, r, 2, &s);
            if (s.col[SEC_REFRESH].len)
                refresh_exp = db_result_int(r, 0, 5);
        }
        if (!rc && !s.col[SEC_TOKEN_SECRET].len)
            rc = reseal_stored(u->sb, SEC_TOKEN_SECRET, id, g->user_id, r, 3, &s);
        if (!rc && !s.col[SEC_COOKIES].len)
            rc = reseal_stored(u->sb, SEC_COOKIES, id, g->user_id, r, 4, &s);
        if (!*scopes)
            scopes = db_result_get(r, 0, 6) ? db_result_get(r, 0, 6) : "";
    }
    if (rc)
        goto out;

    due = conn_refresh_due(u->c, is_refreshable(g->platform, g->auth_kind), access_exp,
                           tok ? tok->access_expires_in_s * 1000 : 0, now);
    {
        const struct plat_account *a = g->account;
        struct db_param q[] = {
            DB_STR(auth_kind_name(g->auth_kind)), DB_STR(a->username), DB_STR(a->display_name),
            DB_STR(a->avatar_url), a->meta[0] ? DB_STR(a->meta) : DB_NULL, DB_STR(scopes),
            sealed_param(&s, SEC_ACCESS), sealed_param(&s, SEC_REFRESH),
            sealed_param(&s, SEC_TOKEN_SECRET), sealed_param(&s, SEC_COOKIES),
            DB_I64(sealed_key_id(u->sb, &s)), time_param(access_exp), time_param(refresh_exp),
            time_param(due), DB_I64(id),
        };
        rc = db_exec(db, sql_write_grant, q, sizeof q / sizeof q[0], NULL, NULL);
    }
    if (!rc)
        u->id = id;
out:
    db_result_free(r);
    sealed_free(&s);
    return rc;
}

int conn_upsert(struct db *db, struct secretbox *sb, const struct conf *c,
                const struct conn_grant *g, long long *id_out, int *created)
{
    struct upsert u = { .sb = sb, .c = c, .g = g };
    int rc;

    *id_out = 0;
    *created = 0;
    if (!sb || !g || g->user_id <= 0 || !platform_get(g->platform) || !g->account ||
        !g->account->remote_id[0])
        return CP_EINVAL;
    if (g->auth_kind == AUTH_COOKIE ? !g->cookies || !*g->cookies
                                    : !g->tokens || !g->tokens->access_token || !*g->tokens->access_token)
        return CP_EINVAL;
    if (g->auth_kind == AUTH_OAUTH1 && (!g->tokens->token_secret || !*g->tokens->token_secret))
        return CP_EINVAL;
    rc = db_transaction(db, upsert_tx, &u, TX_ATTEMPTS);
    if (rc)
        return rc;
    *id_out = u.id;
    *created = u.created;
    return 0;
}

static const char sql_lock_secrets[] =
    "SELECT user_id, platform, auth_kind, refresh_token, token_secret, cookies, "
    MS("refresh_expires_at") ", " NOW_MS " FROM connections WHERE id = ? FOR UPDATE";

static const char sql_write_refresh[] =
    "UPDATE connections SET access_token = ?, refresh_token = ?, token_secret = ?, cookies = ?,"
    " secrets_key_id = ?, access_expires_at = " FROM_MS ", refresh_expires_at = " FROM_MS ","
    " refresh_due_at = " FROM_MS ", token_refreshed_at = NOW(3), last_checked_at = NOW(3),"
    " status = 'active', last_error = '', last_error_at = NULL, scopes = IF(? = '', scopes, ?)"
    " WHERE id = ?";

struct refresh_store {
    struct secretbox *sb;
    const struct conf *c;
    long long id;
    const struct plat_tokens *tok;
};

static int store_refresh_tx(struct db *db, void *arg)
{
    struct refresh_store *t = arg;
    const struct plat_tokens *tok = t->tok;
    const struct platform *p;
    struct db_param q[] = { DB_I64(t->id) };
    struct db_result *r = NULL;
    struct sealed_row s;
    enum auth_kind kind = AUTH_OAUTH2;
    long long owner, now, access_exp = 0, refresh_exp = 0, due;
    int rc;

    sealed_init(&s);
    rc = db_query_row(db, sql_lock_secrets, q, 1, &r);
    if (rc)
        goto out;
    owner = db_result_int(r, 0, 0);
    now = db_result_int(r, 0, 7);
    rc = row_platform(r, 1, &p, &kind);
    if (rc)
        goto out;
    rc = seal_text(t->sb, SEC_ACCESS, t->id, owner, tok->access_token, &s);
    if (!rc && tok->refresh_token && *tok->refresh_token) {
        rc = seal_text(t->sb, SEC_REFRESH, t->id, owner, tok->refresh_token, &s);
        if (tok->refresh_expires_in_s > 0)
            refresh_exp = now + tok->refresh_expires_in_s * 1000;
    } else if (!rc) {
        rc = reseal_stored(t->sb, SEC_REFRESH, t->id, owner, r, 3, &s);
        refresh_exp = db_result_int(r, 0, 6);
    }
    if (!rc && tok->token_secret && *tok->token_secret)
        rc = seal_text(t->sb, SEC_TOKEN_SECRET, t->id, owner, tok->token_secret, &s);
    else if (!rc)
        rc = reseal_stored(t->sb, SEC_TOKEN_SECRET, t->id, owner, r, 4, &s);
    if (!rc)
        rc = reseal_stored(t->sb, SEC_COOKIES, t->id, owner, r, 5, &s);
    if (rc)
        goto out;
    if (tok->access_expires_in_s > 0)
        access_exp = now + tok->access_expires_in_s * 1000;
    due = conn_refresh_due(t->c, is_refreshable(p->id, kind), access_exp,
                           tok->access_expires_in_s * 1000, now);
    {
        struct db_param w[] = {
            sealed_param(&s, SEC_ACCESS), sealed_param(&s, SEC_REFRESH),
            sealed_param(&s, SEC_TOKEN_SECRET), sealed_param(&s, SEC_COOKIES),
            DB_I64(sealed_key_id(t->sb, &s)), time_param(access_exp), time_param(refresh_exp),
            time_param(due), DB_STR(tok->scopes), DB_STR(tok->scopes), DB_I64(t->id),
        };
        rc = db_exec(db, sql_write_refresh, w, sizeof w / sizeof w[0], NULL, NULL);
    }
out:
    db_result_free(r);
    sealed_free(&s);
    return rc;
}

int conn_store_refresh(struct db *db, struct secretbox *sb, const struct conf *c, long long id,
                       const struct plat_tokens *tok)
{
    struct refresh_store t = { sb, c, id, tok };

    if (!sb || !tok || !tok->access_token || !*tok->access_token)
        return CP_EINVAL;
    return db_transaction(db, store_refresh_tx, &t, TX_ATTEMPTS);
}

static const char sql_lock_timing[] =
    "SELECT platform, auth_kind, " MS("access_expires_at") ", " NOW_MS
    " FROM connections WHERE id = ? FOR UPDATE";

static const char sql_checked[] =
    "UPDATE connections SET last_checked_at = NOW(3), status = 'active', last_error = '',"
    " last_error_at = NULL, refresh_due_at = " FROM_MS " WHERE id = ?";

struct checked {
    const struct conf *c;
    long long id;
};

static int checked_tx(struct db *db, void *arg)
{
    struct checked *t = arg;
    struct db_param q[] = { DB_I64(t->id) };
    struct db_result *r = NULL;
    const struct platform *p;
    enum auth_kind kind;
    long long exp, now, due;
    int rc;

    rc = db_query_row(db, sql_lock_timing, q, 1, &r);
    if (rc)
        goto out;
    rc = row_platform(r, 0, &p, &kind);
    if (rc)
        goto out;
    exp = db_result_int(r, 0, 2);
    now = db_result_int(r, 0, 3);
    /* How long the token was issued for is not stored; what is left of
     * it can only make the margin shorter, never the refresh too late. */
    due = conn_refresh_due(t->c, is_refreshable(p->id, kind), exp, exp > now ? exp - now : 0, now);
    {
        struct db_param w[] = { time_param(due), DB_I64(t->id) };
        rc = db_exec(db, sql_checked, w, 2, NULL, NULL);
    }
out:
    db_result_free(r);
    return rc;
}

int conn_mark_checked(struct db *db, const struct conf *c, long long id)
{
    struct checked t = { c, id };

    return db_transaction(db, checked_tx, &t, TX_ATTEMPTS);
}

static const char sql_lock_status[] =
    "SELECT user_id, platform, username, remote_id, status FROM connections WHERE id = ? FOR UPDATE";

static const char sql_needs_reauth[] =
    "UPDATE connections SET status = 'needs_reauth', refresh_due_at = NULL, next_sync_at = NULL,"
    " last_error = ?,"
    " last_error_at = NOW(3) WHERE id = ?";

struct mark {
    long long id;
    const char *why;
    int final;
    long long retry_at_ms;
};

static int needs_reauth_tx(struct db *db, void *arg)
{
    struct mark *m = arg;
    struct db_param q[] = { DB_I64(m->id) };
    struct db_result *r = NULL;
    const struct platform *p;
    char why[CONN_ERROR_MAX + 1], message[ALERT_MESSAGE_MAX + 1], full[ALERT_MESSAGE_MAX * 2];
    const char *status, *name;
    long long owner;
    int rc;

    rc = db_query_row(db, sql_lock_status, q, 1, &r);
    if (rc)
        goto out;
    status = db_result_get(r, 0, 4);
    if (status && strcmp(status, "needs_reauth") == 0)
        goto out;                       /* already said; no second alert */
    owner = db_result_int(r, 0, 0);
    p = platform_find(db_result_get(r, 0, 1) ? db_result_get(r, 0, 1) : "");
    name = db_result_get(r, 0, 2) && *db_result_get(r, 0, 2) ? db_result_get(r, 0, 2)
                                                             : db_result_get(r, 0, 3);
    clip_text(m->why, why, sizeof why);
    snprintf(full, sizeof full, "%s connection %s%s (%lld) needs to be connected again: %s",
             p ? p->label : "platform", db_result_get(r, 0, 2) && *db_result_get(r, 0, 2) ? "@" : "",
             name ? name : "", m->id, why);
    clip_text(full, message, sizeof message);
    {
        struct db_param w[] = { DB_STR(why), DB_I64(m->id) };
        rc = db_exec(db, sql_needs_reauth, w, 2, NULL, NULL);
    }
    if (!rc)
        rc = alert_write(db, "connection.needs_reauth", "connection", m->id, owner, message);
out:
    db_result_free(r);
    return rc;
}

int conn_mark_needs_reauth(struct db *db, long long id, const char *why)
{
    struct mark m = { id, why ? why : "", 1, 0 };
    int rc = db_transaction(db, needs_reauth_tx, &m, TX_ATTEMPTS);

    if (!rc)
        log_info("connection %lld needs to be connected again", id);
    return rc;
}

static const char sql_failed[] =
    "UPDATE connections SET last_error = ?, last_error_at = NOW(3), status = ?,"
    " refresh_due_at = IF(? = 0, refresh_due_at, " FROM_MS ") WHERE id = ?";

static int failed_tx(struct db *db, void *arg)
{
    struct mark *m = arg;
    struct db_param q[] = { DB_I64(m->id) };
    struct db_result *r = NULL;
    char why[CONN_ERROR_MAX + 1], status[32];
    int rc;

    rc = db_query_row(db, sql_lock_status, q, 1, &r);
    if (rc)
        goto out;
    db_result_text(r, 0, 4, status, sizeof status);
    /* A connection that needs reconnecting says so rather than "error". */
    if (m->final && strcmp(status, "needs_reauth") != 0)
        snprintf(status, sizeof status, "%s", "error");
    clip_text(m->why, why, sizeof why);
    {
        struct db_param w[] = { DB_STR(why), DB_STR(status), DB_I64(m->retry_at_ms),
                                DB_I64(m->retry_at_ms), DB_I64(m->id) };
        rc = db_exec(db, sql_failed, w, 5, NULL, NULL);
    }
out:
    db_result_free(r);
    return rc;
}

int conn_mark_failed(struct db *db, long long id, const char *why, int final,
                     long long retry_at_ms)
{
    struct mark m = { id, why ? why : "", final, retry_at_ms > 0 ? retry_at_ms : 0 };

    return db_transaction(db, failed_tx, &m, TX_ATTEMPTS);
}

static const char sql_lock_scoped[] =
    "SELECT id FROM connections WHERE id = ? AND (? = 1 OR user_id = ?) FOR UPDATE";

struct update {
    const struct conn_scope *scope;
    long long id;
    const struct conn_update *u;
};

static int update_tx(struct db *db, void *arg)
{
    struct update *t = arg;
    const struct conn_update *u = t->u;
    struct db_param q[] = { DB_I64(t->id), DB_I64(conn_scope_all(t->scope)), DB_I64(conn_scope_user(t->scope)) };
    struct db_param id[] = { DB_I64(t->id) };
    struct db_result *r = NULL;
    int rc;

    rc = db_query_row(db, sql_lock_scoped, q, 3, &r);
    db_result_free(r);
    if (!rc && u->have_display_name) {
        struct db_param w[] = { DB_STR(u->display_name), DB_I64(t->id) };
        rc = db_exec(db, "UPDATE connections SET display_name = ? WHERE id = ?", w, 2, NULL, NULL);
    }
    /* Nothing is due while disabled; enabled again, it is checked at
     * the next scan, unless it needs reconnecting. */
    if (!rc && u->have_enabled && !u->enabled)
        rc = db_exec(db, "UPDATE connections SET enabled = 0, refresh_due_at = NULL,"
                         " next_sync_at = NULL WHERE id = ?", id, 1, NULL, NULL);
    if (!rc && u->have_enabled && u->enabled)
        rc = db_exec(db, "UPDATE connections SET enabled = 1,"
                         " refresh_due_at = IF(status = 'needs_reauth', NULL, NOW(3)),"
                         " next_sync_at = IF(platform = 'tiktok' AND status <> 'needs_reauth',"
                         " NOW(3), NULL) WHERE id = ? AND enabled = 0", id, 1, NULL, NULL);
    if (!rc && u->have_sync_interval) {
        struct db_param w[] = { u->sync_interval_s ? DB_I64(u->sync_interval_s) : DB_NULL, DB_I64(t->id) };
        rc = db_exec(db, "UPDATE connections SET sync_interval_s = ? WHERE id = ?", w, 2, NULL, NULL);
    }
    /* A shorter interval takes effect within one new interval. */
    if (!rc && u->have_sync_interval && u->sync_interval_s) {
        struct db_param w[] = { DB_I64(u->sync_interval_s), DB_I64(t->id) };
        rc = db_exec(db, "UPDATE connections SET next_sync_at = LEAST(next_sync_at,"
                         " NOW(3) + INTERVAL ? SECOND) WHERE id = ? AND next_sync_at IS NOT NULL",
                     w, 2, NULL, NULL);
    }
    return rc;
}

int conn_update(struct db *db, const struct conf *c, const struct conn_scope *scope, long long id,
                const struct conn_update *u)
{
    struct update t = { scope, id, u };

    if (u->have_display_name &&
        (!u->display_name || !json_utf8_valid(u->display_name, strlen(u->display_name)) ||
         utf8_chars(u->display_name) > CONN_DISPLAY_NAME_MAX))
        return CP_EINVAL;
    if (u->have_sync_interval && u->sync_interval_s &&
        (u->sync_interval_s < CONN_SYNC_INTERVAL_MIN || u->sync_interval_s > CONN_SYNC_INTERVAL_MAX))
        return CP_EINVAL;
    if (id <= 0)
        return CP_ENOTFOUND;
    return db_transaction(db, update_tx, &t, TX_ATTEMPTS);
}

int conn_delete(struct db *db, const struct conn_scope *scope, long long id)
{
    struct db_param q[] = { DB_I64(id), DB_I64(conn_scope_all(scope)), DB_I64(conn_scope_user(scope)) };
    unsigned long long affected = 0;
    int rc;

    rc = db_exec(db, "DELETE FROM connections WHERE id = ? AND (? = 1 OR user_id = ?)", q, 3,
                 &affected, NULL);
    if (!rc && affected == 0)
        rc = CP_ENOTFOUND;
    return rc;
}

/* ------------------------------------------------------- scheduling -- */

static const char sql_due[] =
    "SELECT id FROM connections WHERE refresh_due_at <= NOW(3) AND enabled = 1"
    " AND status IN ('active', 'error') ORDER BY refresh_due_at, id LIMIT ?";

int conn_due(struct db *db, int limit, long long *ids, size_t *n)
{
    struct db_param q[] = { DB_I64(limit) };
    struct db_result *r = NULL;
    size_t rows;
    int rc;

    *n = 0;
    if (limit < 1)
        return CP_EINVAL;
    rc = db_query(db, sql_due, q, 1, &r);
    if (rc)
        return rc;
    rows = db_result_rows(r);
    for (size_t i = 0; i < rows && i < (size_t)limit; i++)
        ids[i] = db_result_int(r, i, 0);
    *n = rows < (size_t)limit ? rows : (size_t)limit;
    db_result_free(r);
    return 0;
}

/* ------------------------------------------------------ key rotation -- */

static const char sql_stale_ids[] =
    "SELECT id FROM connections WHERE secrets_key_id < ? ORDER BY secrets_key_id, id LIMIT ?";
static const char sql_stale_count[] = "SELECT COUNT(*) FROM connections WHERE secrets_key_id < ?";
static const char sql_lock_row_secrets[] =
    "SELECT user_id, secrets_key_id, access_token, refresh_token, token_secret, cookies"
    " FROM connections WHERE id = ? FOR UPDATE";
/* Re-sealing changes nothing a person sees: updated_at stays. */
static const char sql_write_sealed[] =
    "UPDATE connections SET access_token = ?, refresh_token = ?, token_secret = ?, cookies = ?,"
    " secrets_key_id = ?, updated_at = updated_at WHERE id = ?";

struct reseal {
    struct secretbox *sb;
    long long id;
    unsigned current;
    int done;
};

static int reseal_tx(struct db *db, void *arg)
{
    struct reseal *t = arg;
    struct db_param q[] = { DB_I64(t->id) };
    struct db_result *r = NULL;
    struct sealed_row s;
    long long owner;
    int rc;

    t->done = 0;
    sealed_init(&s);
    rc = db_query(db, sql_lock_row_secrets, q, 1, &r);
    if (rc || db_result_rows(r) != 1)
        goto out;                       /* deleted meanwhile: nothing to do */
    if (db_result_int(r, 0, 1) >= (long long)t->current)
        goto out;                       /* re-sealed by someone else */
    owner = db_result_int(r, 0, 0);
    for (int col = 0; !rc && col < SEC_COUNT; col++)
        rc = reseal_stored(t->sb, (enum secret_col)col, t->id, owner, r, 2 + (size_t)col, &s);
    if (!rc) {
        struct db_param w[] = {
            sealed_param(&s, SEC_ACCESS), sealed_param(&s, SEC_REFRESH),
            sealed_param(&s, SEC_TOKEN_SECRET), sealed_param(&s, SEC_COOKIES),
            DB_I64(sealed_key_id(t->sb, &s)), DB_I64(t->id),
        };
        rc = db_exec(db, sql_write_sealed, w, sizeof w / sizeof w[0], NULL, NULL);
        t->done = !rc;
    }
out:
    db_result_free(r);
    sealed_free(&s);
    return rc;
}

int conn_reseal_batch(struct db *db, struct secretbox *sb, int batch, size_t *done, size_t *left)
{
    struct db_result *r = NULL;
    unsigned current;
    long long count = 0;
    int rc;

    *done = 0;
    *left = 0;
    if (!sb || batch < 1)
        return CP_EINVAL;
    current = secretbox_current_id(sb);
    {
        struct db_param q[] = { DB_I64(current), DB_I64(batch) };
        rc = db_query(db, sql_stale_ids, q, 2, &r);
    }
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        struct reseal t = { sb, db_result_int(r, i, 0), current, 0 };

        rc = db_transaction(db, reseal_tx, &t, TX_ATTEMPTS);
        if (!rc && t.done)
            (*done)++;
    }
    db_result_free(r);
    r = NULL;
    if (rc)
        return rc;
    {
        struct db_param q[] = { DB_I64(current) };
        rc = db_query(db, sql_stale_count, q, 1, &r);
    }
    if (!rc && db_result_i64(r, 0, 0, &count))
        rc = CP_EDB;
    db_result_free(r);
    if (!rc)
        *left = (size_t)count;
    return rc;
}

int conn_refresh_lock(struct db *db, long long id, int timeout_s)
{
    char name[64];
    struct db_result *r = NULL;
    long long got = 0;
    int rc;

    snprintf(name, sizeof name, "crosspost.refresh.%lld", id);
    {
        struct db_param p[] = { DB_STR(name), DB_I64(timeout_s) };

        rc = db_query(db, "SELECT GET_LOCK(?, ?)", p, 2, &r);
    }
    if (rc)
        return rc;
    rc = db_result_i64(r, 0, 0, &got);
    db_result_free(r);
    if (rc)
        return rc == CP_ENOTFOUND ? CP_EIO : rc;
    return got == 1 ? 0 : CP_EBUSY;
}

void conn_refresh_unlock(struct db *db, long long id)
{
    char name[64];

    snprintf(name, sizeof name, "crosspost.refresh.%lld", id);
    {
        struct db_param p[] = { DB_STR(name) };
        struct db_result *r = NULL;

        if (db_query(db, "SELECT RELEASE_LOCK(?)", p, 1, &r) == 0)
            db_result_free(r);
    }
}
