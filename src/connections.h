/*
 * connections.h - connected platform accounts (sql/007_connections.sql).
 *
 * The data layer the API, the workers and crosspostctl share.  Secrets go
 * in and out only through this module, sealed by a secretbox bound to the
 * row (table.column, id, owner); nothing here logs or returns a secret in
 * an error.
 *
 * Rules kept here rather than in callers:
 *  - Reconnecting an account (same user, platform and remote id) updates
 *    the existing row and makes it active again; a refresh token, token
 *    secret or cookies that come back empty never replace stored ones.
 *  - refresh_due_at is computed from the expiries (conn_refresh_due()),
 *    so the scheduler only reads an index.
 *  - Marking a connection needs_reauth records an alert event
 *    (connection.needs_reauth) in the same transaction.
 *  - Ownership: functions taking a struct conn_scope return CP_ENOTFOUND
 *    for a row the caller may not see (another user's, for a user), so an
 *    API can answer 404 without telling whether it exists.
 */
#ifndef CP_CONNECTIONS_H
#define CP_CONNECTIONS_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "db.h"
#include "platforms.h"
#include "secretbox.h"

enum conn_status {
    CONN_ACTIVE,
    CONN_EXPIRING,       /* derived: active, but runs out soon without help */
    CONN_NEEDS_REAUTH,
    CONN_ERROR,
    CONN_DISABLED,       /* derived from enabled = 0 */
};

const char *conn_status_name(enum conn_status s);
int conn_status_parse(const char *name, enum conn_status *out);   /* 0 or CP_EINVAL */

#define CONN_DISPLAY_NAME_MAX 255
#define CONN_ERROR_MAX 1024
#define CONN_SYNC_INTERVAL_MIN 60            /* seconds */
#define CONN_SYNC_INTERVAL_MAX (24 * 3600)

/* One connection as read (no secrets).  Times are epoch milliseconds,
 * 0 = NULL. */
struct connection {
    long long id;
    long long user_id;
    enum platform_id platform;
    enum auth_kind auth_kind;
    char remote_id[PLAT_REMOTE_ID_MAX];
    char username[PLAT_NAME_MAX];
    char display_name[PLAT_NAME_MAX];
    char avatar_url[PLAT_URL_MAX];
    char remote_meta[PLAT_META_MAX];        /* JSON object text, "{}" when none */
    enum conn_status stored_status;         /* as in the row (never EXPIRING/DISABLED) */
    enum conn_status status;                /* as shown: disabled, expiring derived */
    int enabled;
    long long sync_interval_s;              /* 0 = the configured default */
    char scopes[1024];
    int has_refresh_token;
    unsigned secrets_key_id;
    long long access_expires_at;
    long long refresh_expires_at;
    long long refresh_due_at;
    long long token_refreshed_at;
    long long last_checked_at;
    char last_error[CONN_ERROR_MAX + 1];
    long long last_error_at;
    long long created_at;
    long long updated_at;
    /* The sync schedule of a source (sql/008_ingestion.sql). */
    long long last_sync_at;
    long long next_sync_at;                 /* 0: no sync scheduled */
    char last_sync_error[CONN_ERROR_MAX + 1];
    long long last_video_at;
    long long videos_seen;
    int initial_sync_done;
    int backfill;
};

/* Who is asking: a user sees their own rows; operators and admins all. */
struct conn_scope {
    long long user_id;
    int see_all;
};

/* 1 when scope sees every user's rows (NULL: the system's own view). */
int conn_scope_all(const struct conn_scope *scope);
/* The user scope is limited to (0 for NULL). */
long long conn_scope_user(const struct conn_scope *scope);

/* Opened secrets of one connection; conn_secrets_clear() wipes them. */
struct conn_secrets {
    struct buf access_token;
    struct buf refresh_token;
    struct buf token_secret;
    struct buf cookies;
};

void conn_secrets_init(struct conn_secrets *s);
void conn_secrets_clear(struct conn_secrets *s);

/* The opened credentials as the platform clients take them; the strings
 * point into s, valid while s is. */
struct plat_creds conn_creds(const struct connection *c, const struct conn_secrets *s);

/* ---------------------------------------------------------- writing -- */

/* A new or renewed authorisation, from an OAuth callback or cookies. */
struct conn_grant {
    long long user_id;
    enum platform_id platform;
    enum auth_kind auth_kind;
    const struct plat_account *account;
    const struct plat_tokens *tokens;       /* OAuth; NULL for cookies */
    const char *cookies;                    /* AUTH_COOKIE: normalised cookies.txt */
};

/*
 * Insert the connection, or update the user's existing connection to the
 * same remote account (reconnect): account fields, tokens (keeping a
 * stored refresh token, secret or cookies when the new one is empty),
 * expiries, refresh_due_at, status active, last_error cleared, enabled
 * kept as it was.  One transaction.  *id_out is the row id, *created 1
 * when a row was inserted.
 */
int conn_upsert(struct db *db, struct secretbox *sb, const struct conf *c,
                const struct conn_grant *g, long long *id_out, int *created);

/* After a successful refresh: store the new tokens (a missing refresh
 * token keeps the stored one), expiries, token_refreshed_at,
 * last_checked_at, recompute refresh_due_at, status active, clear
 * last_error.  CP_ENOTFOUND when the row is gone. */
int conn_store_refresh(struct db *db, struct secretbox *sb, const struct conf *c, long long id,
                       const struct plat_tokens *tok);

/* After a successful check: last_checked_at = now, status active, error
 * cleared, refresh_due_at recomputed (the next check for credentials
 * that do not expire). */
int conn_mark_checked(struct db *db, const struct conf *c, long long id);

/* The platform refused the credentials: status needs_reauth,
 * refresh_due_at NULL, last_error = why, and an alert event
 * connection.needs_reauth for the owner, in one transaction.  A
 * connection already needing reauth is left as it is (no second alert). */
int conn_mark_needs_reauth(struct db *db, long long id, const char *why);

/* A refresh or check failed: last_error = why; status error when final
 * is set (retries ran out), else unchanged; refresh_due_at = retry_at_ms
 * when not 0. */
int conn_mark_failed(struct db *db, long long id, const char *why, int final,
                     long long retry_at_ms);

/* PATCH: each field is applied when its have_ flag is set.  Enabling a
 * needs_reauth connection keeps it needs_reauth.  CP_ENOTFOUND (not
 * visible to scope). */
struct conn_update {
    int have_display_name;
    const char *display_name;
    int have_enabled;
    int enabled;
    int have_sync_interval;
    long long sync_interval_s;              /* 0 = back to the default */
};
int conn_update(struct db *db, const struct conf *c, const struct conn_scope *scope, long long id,
                const struct conn_update *u);

/* Delete the row (and with it its sealed secrets).  CP_ENOTFOUND. */
int conn_delete(struct db *db, const struct conn_scope *scope, long long id);

/* A per-connection named lock (GET_LOCK) held around a token refresh, so
 * two workers never spend the same rotating refresh token: the second
 * waits, then finds the tokens already renewed.  0 when held; CP_EBUSY
 * after timeout_s.  It belongs to the db session: unlock on the same db. */
int conn_refresh_lock(struct db *db, long long id, int timeout_s);
void conn_refresh_unlock(struct db *db, long long id);

/* ---------------------------------------------------------- reading -- */

/* One connection visible to scope (scope NULL: any). */
int conn_get(struct db *db, const struct conf *c, const struct conn_scope *scope, long long id,
             struct connection *out);

/* Open the secrets of connection id (the worker's side). */
int conn_open_secrets(struct db *db, struct secretbox *sb, long long id, struct connection *out,
                      struct conn_secrets *secrets);

struct conn_filter {
    long long user_id;                      /* 0 = any (when scope allows) */
    int have_platform;
    enum platform_id platform;
    int have_status;
    enum conn_status status;                /* as shown (expiring, disabled work) */
    long long after_id;                     /* cursor: ids greater than this */
    int limit;                              /* 1..200 */
};

/* Visible connections in id order; *n rows into out[limit], *more 1 when
 * there are further rows. */
int conn_list(struct db *db, const struct conf *c, const struct conn_scope *scope,
              const struct conn_filter *f, struct connection *out, size_t *n, int *more);

/* A connection as the API shows it: one JSON object, no secrets. */
int conn_to_json(const struct connection *conn, const struct conf *c, struct buf *out);

/* ---------------------------------------------------------- timing -- */

/* When credentials should next be refreshed or checked, from now_ms
 * (epoch ms).  refreshable: the platform can renew them unattended (a
 * refresh token, or Facebook's long-lived token exchange).  A refreshable
 * access token that expires is refreshed token_refresh_margin before it
 * does (token_refresh_margin_long when it lives a day or more,
 * access_lifetime_ms being how long it was issued for); everything else
 * is checked every connection_check_interval, or at its expiry when that
 * comes first.  Never earlier than now_ms. */
long long conn_refresh_due(const struct conf *c, int refreshable, long long access_expires_at,
                           long long access_lifetime_ms, long long now_ms);

/* The status shown for a row: disabled when not enabled; expiring when
 * active and the credential that cannot renew itself (the refresh token,
 * or an access token without one) ends within connection_expiring_window. */
enum conn_status conn_shown_status(const struct conf *c, enum conn_status stored, int enabled,
                                   int has_refresh_token, long long access_expires_at,
                                   long long refresh_expires_at, long long now_ms);

/* ------------------------------------------------------- scheduling -- */

/* Up to limit connections whose refresh_due_at has come (enabled,
 * active or error), oldest due first, into ids[]. */
int conn_due(struct db *db, int limit, long long *ids, size_t *n);

/* ------------------------------------------------------ key rotation -- */

/* Re-seal every secret of up to batch rows still sealed under a key other
 * than the current one, each row in its own short transaction (SELECT ...
 * FOR UPDATE).  *done rows re-sealed, *left rows still under older keys
 * after this batch. */
int conn_reseal_batch(struct db *db, struct secretbox *sb, int batch, size_t *done, size_t *left);

#endif
