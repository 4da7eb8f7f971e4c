/*
 * conn_layer.c - connections (src/connections.c), their sealed secrets
 * (src/secretbox.c), the OAuth state in memcached (src/oauthstate.c) and
 * the connection job handlers (workers/task_connections.c) against the
 * real MariaDB, memcached and platform simulators of the integration
 * stack.
 *
 * The configuration comes from conf_load() (CROSSPOST_CONFIG names the
 * stack's file); secrets are sealed with the stack's key ring.  Every
 * user made here has an email zz-cl-*@example.test; they (and with them
 * their connections, alerts and refresh jobs) are deleted before and
 * after the run.  test_rows_for_rotate_key leaves the connections of
 * zz-cr-rotate@example.test for test_conn_layer.py, which runs
 * `crosspostctl rotate-key` and then this program with the argument
 * "verify-rotated" to check them and delete them.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "cache.h"
#include "conf.h"
#include "connections.h"
#include "crypto.h"
#include "db.h"
#include "err.h"
#include "json.h"
#include "keyring.h"
#include "log.h"
#include "oauthstate.h"
#include "queue.h"
#include "secretbox.h"
#include "stackdb.h"
#include "tasks.h"

#define SEC 1000LL
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define ROTATE_USER "zz-cr-rotate@example.test"
#define ROTATE_ROWS 3
#define THREADS 4

static struct conf *stack_conf;

struct fixture {
    struct db *db;
    struct secretbox *sb;
    long long alice, bob;              /* users zz-cl-alice, zz-cl-bob */
};

/* ------------------------------------------------------------ helpers -- */

static long long conn_i64(struct db *db, const char *sql, long long id)
{
    struct db_param p[] = { DB_I64(id) };

    return stackdb_i64(db, sql, p, 1);
}

static long long db_now(struct db *db)
{
    return stackdb_i64(db, "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)", NULL, 0);
}

/* The raw bytes of a sealed column of connection id (column is one of
 * this file's constants, never input). */
static void raw_column(struct db *db, long long id, const char *column, struct buf *out)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    char sql[160];
    int rc;

    snprintf(sql, sizeof sql, "SELECT %s FROM connections WHERE id = ?", column);
    rc = db_query(db, sql, p, 1, &r);
    if (rc || db_result_rows(r) != 1)
        fail_msg("%s of connection %lld: %s", column, id, cp_strerror(rc));
    buf_reset(out);
    if (db_result_get(r, 0, 0))
        assert_int_equal(buf_add(out, db_result_get(r, 0, 0), db_result_len(r, 0, 0)), 0);
    db_result_free(r);
}

static long long make_user(struct db *db, const char *email)
{
    struct db_param p[] = { DB_STR(email) };
    unsigned long long id = 0;
    int rc = db_exec(db, "INSERT INTO users (email, password_hash) VALUES (?, 'x')", p, 1, NULL, &id);

    if (rc)
        fail_msg("user %s: %s (%s)", email, cp_strerror(rc), db_error(db));
    return (long long)id;
}

static void cleanup_rows(struct db *db, const char *email_like)
{
    struct db_param p[] = { DB_STR(email_like) };
    static const char *const sql[] = {
        "DELETE j FROM jobs j JOIN connections c ON j.unique_key = CONCAT('connection.refresh:', c.id)"
        " JOIN users u ON u.id = c.user_id WHERE u.email LIKE ?",
        "DELETE e FROM alert_events e JOIN users u ON u.id = e.user_id"
        " WHERE e.subject_type = 'connection' AND u.email LIKE ?",
        "DELETE FROM users WHERE email LIKE ?",
    };

    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        db_exec(db, sql[i], p, 1, NULL, NULL);
}

struct grant_opts {
    long long user;
    enum platform_id platform;
    enum auth_kind kind;
    const char *remote_id;
    const char *username;
    const char *access, *refresh, *secret, *cookies;
    long long access_s, refresh_s;
    const char *scopes;
};

static long long upsert(struct fixture *fx, struct grant_opts o, int *created)
{
    struct plat_account acct;
    struct plat_tokens tok;
    struct conn_grant g = { o.user, o.platform, o.kind, &acct, NULL, o.cookies };
    long long id = 0;
    int made = -1, rc;

    memset(&acct, 0, sizeof acct);
    memset(&tok, 0, sizeof tok);
    snprintf(acct.remote_id, sizeof acct.remote_id, "%s", o.remote_id);
    snprintf(acct.username, sizeof acct.username, "%s", o.username ? o.username : "");
    snprintf(acct.display_name, sizeof acct.display_name, "Display %s", o.remote_id);
    snprintf(acct.meta, sizeof acct.meta, "{\"page_id\":\"17\"}");
    tok.access_token = (char *)o.access;
    tok.refresh_token = (char *)o.refresh;
    tok.token_secret = (char *)o.secret;
    tok.access_expires_in_s = o.access_s;
    tok.refresh_expires_in_s = o.refresh_s;
    snprintf(tok.scopes, sizeof tok.scopes, "%s", o.scopes ? o.scopes : "");
    if (o.kind != AUTH_COOKIE)
        g.tokens = &tok;
    rc = conn_upsert(fx->db, fx->sb, stack_conf, &g, &id, &made);
    if (rc)
        fail_msg("upsert %s: %s (%s)", o.remote_id, cp_strerror(rc), db_error(fx->db));
    assert_true(id > 0);
    if (created)
        *created = made;
    return id;
}

#define UPSERT(fx, created, ...) upsert((fx), (struct grant_opts){ __VA_ARGS__ }, (created))

/* A TikTok OAuth connection of user with these tokens. */
static long long tiktok(struct fixture *fx, long long user, const char *remote, const char *access,
                        const char *refresh, int *created)
{
    return UPSERT(fx, created, .user = user, .platform = PLATFORM_TIKTOK, .kind = AUTH_OAUTH2,
                  .remote_id = remote, .username = remote, .access = access, .refresh = refresh,
                  .access_s = 7200, .refresh_s = 180 * 86400, .scopes = "user.info.basic,video.list");
}

static void open_ok(struct fixture *fx, long long id, struct connection *c, struct conn_secrets *s)
{
    int rc = conn_open_secrets(fx->db, fx->sb, id, c, s);

    if (rc)
        fail_msg("open connection %lld: %s", id, cp_strerror(rc));
}

static void assert_secret(const struct buf *b, const char *want)
{
    if (strcmp(buf_str(b), want) != 0)
        fail_msg("secret is \"%s\", expected \"%s\"", buf_str(b), want);
}

static long long alerts_of(struct db *db, long long id)
{
    return conn_i64(db, "SELECT COUNT(*) FROM alert_events WHERE kind = 'connection.needs_reauth'"
                        " AND subject_type = 'connection' AND subject_id = ?", id);
}

/* -------------------------------------------------- setup, teardown -- */

static int group_setup(void **state)
{
    struct db *db = NULL;

    if (stackdb_open("conn_layer", CP_LOG_ERROR, &stack_conf, &db))
        return -1;
    cleanup_rows(db, "zz-cl-%");
    cleanup_rows(db, ROTATE_USER);
    db_close(db);
    return 0;
}

/* verify-rotated: the rows test_rows_for_rotate_key left are kept. */
static int group_setup_keep(void **state)
{
    struct db *db = NULL;

    if (stackdb_open("conn_layer", CP_LOG_ERROR, &stack_conf, &db))
        return -1;
    db_close(db);
    return 0;
}

static int group_teardown(void **state)
{
    struct db *db = NULL;

    if (getenv("CONN_LAYER_KEEP") == NULL && db_open(stack_conf, &db) == 0)
        cleanup_rows(db, "zz-cl-%");
    db_close(db);
    conf_free(stack_conf);
    stack_conf = NULL;
    return 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    struct buf err;
    int rc;

    if (!fx)
        return -1;
    if (db_open(stack_conf, &fx->db))
        return -1;
    buf_init(&err, 1024);
    rc = secretbox_open_conf(stack_conf, &fx->sb, &err);
    if (rc) {
        fprintf(stderr, "# the stack's key ring: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
        buf_free(&err);
        return -1;
    }
    buf_free(&err);
    cleanup_rows(fx->db, "zz-cl-%");
    fx->alice = make_user(fx->db, "zz-cl-alice@example.test");
    fx->bob = make_user(fx->db, "zz-cl-bob@example.test");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    secretbox_free(fx->sb);
    db_close(fx->db);
    free(fx);
    return 0;
}

/* -------------------------------------------------------------- tests -- */

static void test_upsert_insert_and_reconnect(void **state)
{
    struct fixture *fx = *state;
    struct conn_secrets s;
    struct connection c;
    struct conn_update off = { .have_enabled = 1, .enabled = 0 };
    long long id, again, refresh_exp;
    int created = -1;

    conn_secrets_init(&s);
    id = tiktok(fx, fx->alice, "zz-open-1", "act.first", "rft.first", &created);
    assert_int_equal(created, 1);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.access_token, "act.first");
    assert_secret(&s.refresh_token, "rft.first");
    assert_int_equal(s.token_secret.len, 0);
    assert_int_equal(c.user_id, fx->alice);
    assert_int_equal(c.platform, PLATFORM_TIKTOK);
    assert_int_equal(c.auth_kind, AUTH_OAUTH2);
    assert_int_equal(c.stored_status, CONN_ACTIVE);
    assert_true(c.has_refresh_token);
    assert_string_equal(c.remote_meta, "{\"page_id\":\"17\"}");
    assert_string_equal(c.scopes, "user.info.basic,video.list");
    assert_int_equal(c.secrets_key_id, secretbox_current_id(fx->sb));
    /* Refreshed 10 minutes (token_refresh_margin) before a 2-hour token ends. */
    assert_true(c.access_expires_at > 0 && c.refresh_expires_at > c.access_expires_at);
    assert_true(c.refresh_due_at == conn_refresh_due(stack_conf, 1, c.access_expires_at, 7200 * SEC,
                                                     c.refresh_due_at));
    assert_true(c.refresh_due_at < c.access_expires_at);
    refresh_exp = c.refresh_expires_at;

    /* A failure, then switched off by its owner. */
    assert_int_equal(conn_mark_failed(fx->db, id, "the platform was away", 1, 0), 0);
    assert_int_equal(conn_update(fx->db, stack_conf, NULL, id, &off), 0);

    /* Reconnected without a refresh token (Google gives one on first
     * consent only): the stored one stays, the rest is renewed. */
    again = UPSERT(fx, &created, .user = fx->alice, .platform = PLATFORM_TIKTOK, .kind = AUTH_OAUTH2,
                   .remote_id = "zz-open-1", .username = "renamed", .access = "act.second", .refresh = "",
                   .access_s = 7200);
    assert_int_equal(again, id);
    assert_int_equal(created, 0);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.access_token, "act.second");
    assert_secret(&s.refresh_token, "rft.first");
    assert_true(c.refresh_expires_at == refresh_exp);
    assert_string_equal(c.username, "renamed");
    assert_string_equal(c.scopes, "user.info.basic,video.list");   /* none said: kept */
    assert_int_equal(c.stored_status, CONN_ACTIVE);
    assert_string_equal(c.last_error, "");
    assert_true(c.last_error_at == 0);
    assert_int_equal(c.enabled, 0);                                 /* kept as it was */
    assert_int_equal(c.status, CONN_DISABLED);

    /* A NULL refresh token keeps it too; a new one replaces it. */
    UPSERT(fx, NULL, .user = fx->alice, .platform = PLATFORM_TIKTOK, .kind = AUTH_OAUTH2,
           .remote_id = "zz-open-1", .access = "act.third", .access_s = 7200);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.refresh_token, "rft.first");
    tiktok(fx, fx->alice, "zz-open-1", "act.fourth", "rft.fourth", &created);
    assert_int_equal(created, 0);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.access_token, "act.fourth");
    assert_secret(&s.refresh_token, "rft.fourth");
    assert_int_equal(conn_i64(fx->db, "SELECT COUNT(*) FROM connections WHERE user_id = ?", fx->alice), 1);
    conn_secrets_clear(&s);
}

static void test_upsert_other_user_is_another_row(void **state)
{
    struct fixture *fx = *state;
    struct conn_secrets s;
    struct connection c;
    long long a, b, cookie;
    int created = 0;

    conn_secrets_init(&s);
    a = tiktok(fx, fx->alice, "zz-shared", "act.alice", "rft.alice", &created);
    assert_int_equal(created, 1);
    b = tiktok(fx, fx->bob, "zz-shared", "act.bob", "rft.bob", &created);
    assert_int_equal(created, 1);
    assert_true(a != b);
    open_ok(fx, a, &c, &s);
    assert_secret(&s.access_token, "act.alice");
    open_ok(fx, b, &c, &s);
    assert_secret(&s.access_token, "act.bob");
    assert_int_equal(c.user_id, fx->bob);

    /* Cookies, and OAuth 1.0a with its secret and no expiry. */
    cookie = UPSERT(fx, &created, .user = fx->alice, .platform = PLATFORM_TIKTOK, .kind = AUTH_COOKIE,
                    .remote_id = "zz-cookie", .cookies = ".tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\tzz-sess\n");
    assert_int_equal(created, 1);
    open_ok(fx, cookie, &c, &s);
    assert_int_equal(c.auth_kind, AUTH_COOKIE);
    assert_int_equal(s.access_token.len, 0);
    assert_non_null(strstr(buf_str(&s.cookies), "zz-sess"));
    assert_false(c.has_refresh_token);
    assert_true(c.access_expires_at == 0);
    a = UPSERT(fx, &created, .user = fx->alice, .platform = PLATFORM_X, .kind = AUTH_OAUTH1,
               .remote_id = "zz-x", .access = "x-token", .secret = "x-secret");
    open_ok(fx, a, &c, &s);
    assert_secret(&s.token_secret, "x-secret");
    assert_true(c.access_expires_at == 0);
    /* Checked every connection_check_interval. */
    assert_true(c.refresh_due_at > db_now(fx->db) + stack_conf->connection_check_interval - 60 * SEC);

    /* What is refused before anything is written. */
    {
        struct plat_account acct = { .remote_id = "zz-bad" };
        struct conn_grant g = { fx->alice, PLATFORM_TIKTOK, AUTH_COOKIE, &acct, NULL, "" };
        long long id = 0;

        assert_int_equal(conn_upsert(fx->db, fx->sb, stack_conf, &g, &id, &created), CP_EINVAL);
        g.auth_kind = AUTH_OAUTH2;
        assert_int_equal(conn_upsert(fx->db, fx->sb, stack_conf, &g, &id, &created), CP_EINVAL);
        assert_true(id == 0);
    }
    conn_secrets_clear(&s);
}

static void test_sealed_columns_are_ciphertext(void **state)
{
    struct fixture *fx = *state;
    static const char access[] = "act.PLAINTEXT-ACCESS-zz-0123456789";
    static const char refresh[] = "rft.PLAINTEXT-REFRESH-zz-0123456789";
    static const char *const columns[] = { "access_token", "refresh_token" };
    struct buf raw;
    unsigned kid = 0;
    long long id;

    buf_init(&raw, 65536);
    id = tiktok(fx, fx->alice, "zz-cipher", access, refresh, NULL);
    for (size_t i = 0; i < 2; i++) {
        const char *plain = i ? refresh : access;

        raw_column(fx->db, id, columns[i], &raw);
        assert_int_equal(raw.len, strlen(plain) + KEYRING_OVERHEAD);
        assert_null(memmem(raw.data, raw.len, plain, strlen(plain)));
        assert_null(memmem(raw.data, raw.len, "PLAINTEXT", 9));
        assert_int_equal(keyring_sealed_id((unsigned char *)raw.data, raw.len, &kid), 0);
        assert_int_equal(kid, secretbox_current_id(fx->sb));
    }
    raw_column(fx->db, id, "token_secret", &raw);
    assert_int_equal(raw.len, 0);                    /* NULL */
    raw_column(fx->db, id, "cookies", &raw);
    assert_int_equal(raw.len, 0);
    assert_int_equal(conn_i64(fx->db, "SELECT secrets_key_id FROM connections WHERE id = ?", id),
                     secretbox_current_id(fx->sb));
    /* Nor does the view show anything sealed. */
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM information_schema.columns WHERE"
                                       " table_schema = DATABASE() AND table_name = 'connection_status'"
                                       " AND column_name IN ('access_token', 'refresh_token',"
                                       " 'token_secret', 'cookies')", NULL, 0), 0);
    buf_free(&raw);
}

static void test_moved_sealed_value_does_not_open(void **state)
{
    struct fixture *fx = *state;
    struct conn_secrets s;
    struct connection c;
    struct buf raw;
    long long a, same_owner, other_owner;

    buf_init(&raw, 65536);
    conn_secrets_init(&s);
    a = tiktok(fx, fx->alice, "zz-move-a", "act.victim", "rft.victim", NULL);
    same_owner = tiktok(fx, fx->alice, "zz-move-b", "act.mine", "rft.mine", NULL);
    other_owner = tiktok(fx, fx->bob, "zz-move-c", "act.attacker", "rft.attacker", NULL);
    raw_column(fx->db, a, "access_token", &raw);
    {
        struct db_param p[] = { DB_BYTES(raw.data, raw.len), DB_I64(same_owner) };
        stackdb_exec(fx->db, "UPDATE connections SET access_token = ? WHERE id = ?", p, 2);
        p[1] = DB_I64(other_owner);
        stackdb_exec(fx->db, "UPDATE connections SET access_token = ? WHERE id = ?", p, 2);
        /* Into another column of its own row. */
        p[1] = DB_I64(a);
        stackdb_exec(fx->db, "UPDATE connections SET refresh_token = ? WHERE id = ?", p, 2);
    }
    assert_int_equal(conn_open_secrets(fx->db, fx->sb, same_owner, &c, &s), CP_EINVAL);
    assert_int_equal(s.access_token.len, 0);
    assert_int_equal(conn_open_secrets(fx->db, fx->sb, other_owner, &c, &s), CP_EINVAL);
    assert_int_equal(conn_open_secrets(fx->db, fx->sb, a, &c, &s), CP_EINVAL);
    assert_int_equal(s.access_token.len, 0);
    assert_int_equal(s.refresh_token.len, 0);
    /* A row whose owner changed does not open either. */
    {
        struct db_param p[] = { DB_I64(fx->bob), DB_I64(same_owner) };

        tiktok(fx, fx->alice, "zz-move-b", "act.mine", "rft.mine", NULL);
        stackdb_exec(fx->db, "UPDATE connections SET user_id = ? WHERE id = ?", p, 2);
        assert_int_equal(conn_open_secrets(fx->db, fx->sb, same_owner, &c, &s), CP_EINVAL);
    }
    /* Rows that do not open must not stay for rotate-key. */
    {
        struct db_param p[] = { DB_I64(a), DB_I64(same_owner), DB_I64(other_owner) };
        stackdb_exec(fx->db, "DELETE FROM connections WHERE id IN (?, ?, ?)", p, 3);
    }
    conn_secrets_clear(&s);
    buf_free(&raw);
}

static void test_store_refresh(void **state)
{
    struct fixture *fx = *state;
    struct plat_tokens tok = { 0 };
    struct conn_secrets s;
    struct connection c, before;
    long long id, now;

    conn_secrets_init(&s);
    id = tiktok(fx, fx->alice, "zz-refresh", "act.one", "rft.one", NULL);
    open_ok(fx, id, &before, &s);
    assert_true(before.token_refreshed_at == 0);

    /* Google: a new access token, no refresh token. */
    tok.access_token = "act.two";
    tok.access_expires_in_s = 3599;
    assert_int_equal(conn_store_refresh(fx->db, fx->sb, stack_conf, id, &tok), 0);
    now = db_now(fx->db);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.access_token, "act.two");
    assert_secret(&s.refresh_token, "rft.one");
    assert_true(c.refresh_expires_at == before.refresh_expires_at);
    assert_true(c.token_refreshed_at > 0 && c.token_refreshed_at <= now);
    assert_true(c.access_expires_at > now + 3500 * SEC && c.access_expires_at <= now + 3599 * SEC);
    assert_true(c.refresh_due_at == c.access_expires_at - stack_conf->token_refresh_margin ||
                c.refresh_due_at == c.access_expires_at - 3599 * SEC / 2);
    assert_string_equal(c.scopes, "user.info.basic,video.list");

    /* TikTok: the refresh token rotates; a 60-day token takes the long margin. */
    tok.access_token = "act.three";
    tok.refresh_token = "rft.three";
    tok.access_expires_in_s = 60 * 86400;
    tok.refresh_expires_in_s = 86400;
    snprintf(tok.scopes, sizeof tok.scopes, "video.upload");
    assert_int_equal(conn_store_refresh(fx->db, fx->sb, stack_conf, id, &tok), 0);
    open_ok(fx, id, &c, &s);
    assert_secret(&s.access_token, "act.three");
    assert_secret(&s.refresh_token, "rft.three");
    assert_true(c.refresh_due_at == c.access_expires_at - stack_conf->token_refresh_margin_long);
    assert_true(c.refresh_expires_at < c.access_expires_at);
    assert_string_equal(c.scopes, "video.upload");

    tok.access_token = "";
    assert_int_equal(conn_store_refresh(fx->db, fx->sb, stack_conf, id, &tok), CP_EINVAL);
    tok.access_token = "x";
    assert_int_equal(conn_store_refresh(fx->db, fx->sb, stack_conf, 999999999999LL, &tok), CP_ENOTFOUND);
    conn_secrets_clear(&s);
}

static void test_mark_failed_and_checked(void **state)
{
    struct fixture *fx = *state;
    struct connection c;
    long long id, now, retry_at;
    char long_why[3000];

    id = tiktok(fx, fx->alice, "zz-fail", "act", "rft", NULL);
    assert_int_equal(conn_mark_failed(fx->db, id, "HTTP 503 from TikTok", 0, 0), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.stored_status, CONN_ACTIVE);
    assert_string_equal(c.last_error, "HTTP 503 from TikTok");
    assert_true(c.last_error_at > 0);

    now = db_now(fx->db);
    retry_at = now + HOUR;
    memset(long_why, 'e', sizeof long_why - 1);
    long_why[sizeof long_why - 1] = '\0';
    assert_int_equal(conn_mark_failed(fx->db, id, long_why, 1, retry_at), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.stored_status, CONN_ERROR);
    assert_int_equal(c.status, CONN_ERROR);
    assert_int_equal(strlen(c.last_error), CONN_ERROR_MAX);
    assert_true(c.refresh_due_at == retry_at);

    /* A check that works makes it active again. */
    assert_int_equal(conn_mark_checked(fx->db, stack_conf, id), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.stored_status, CONN_ACTIVE);
    assert_string_equal(c.last_error, "");
    assert_true(c.last_checked_at >= now);
    assert_true(c.refresh_due_at <= c.access_expires_at);
    assert_int_equal(conn_mark_failed(fx->db, 999999999999LL, "x", 1, 0), CP_ENOTFOUND);
    assert_int_equal(conn_mark_checked(fx->db, stack_conf, 999999999999LL), CP_ENOTFOUND);
}

static void test_needs_reauth_alerts_once(void **state)
{
    struct fixture *fx = *state;
    struct connection c;
    long long id, due[1000];
    size_t n = 0;

    id = tiktok(fx, fx->alice, "zz-revoked", "act", "rft", NULL);
    stackdb_exec(fx->db, "UPDATE connections SET refresh_due_at = NOW(3) - INTERVAL 1 MINUTE WHERE id = ?",
            (struct db_param[]){ DB_I64(id) }, 1);
    assert_int_equal(conn_mark_needs_reauth(fx->db, id, "invalid_grant: Refresh token is invalid"), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.status, CONN_NEEDS_REAUTH);
    assert_true(c.refresh_due_at == 0);
    assert_string_equal(c.last_error, "invalid_grant: Refresh token is invalid");
    assert_int_equal(alerts_of(fx->db, id), 1);
    assert_int_equal(conn_i64(fx->db, "SELECT COUNT(*) FROM alert_events WHERE subject_id = ?"
                                      " AND subject_type = 'connection' AND severity = 'warning'"
                                      " AND user_id = (SELECT user_id FROM connections WHERE id = subject_id)"
                                      " AND message LIKE '%needs to be connected again%'", id), 1);

    /* Said once: a second refusal adds no alert. */
    assert_int_equal(conn_mark_needs_reauth(fx->db, id, "again"), 0);
    assert_int_equal(alerts_of(fx->db, id), 1);
    /* A failure after it does not hide it as "error". */
    assert_int_equal(conn_mark_failed(fx->db, id, "timeout", 1, 0), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.status, CONN_NEEDS_REAUTH);
    /* Nothing is due for it. */
    assert_int_equal(conn_due(fx->db, 1000, due, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_true(due[i] != id);

    /* Reconnecting makes it active; a later refusal alerts again. */
    tiktok(fx, fx->alice, "zz-revoked", "act.new", "rft.new", NULL);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_int_equal(c.status, CONN_ACTIVE);
    assert_true(c.refresh_due_at > 0);
    assert_int_equal(conn_mark_needs_reauth(fx->db, id, "revoked"), 0);
    assert_int_equal(alerts_of(fx->db, id), 2);
    assert_int_equal(conn_mark_needs_reauth(fx->db, 999999999999LL, "x"), CP_ENOTFOUND);
}

static void test_due_order(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *remote;
        int minutes_ago;               /* < 0: in the future */
        const char *tweak;             /* SQL applied to it, or NULL */
    } rows[] = {
        { "zz-due-b", 30, NULL },
        { "zz-due-d", -30, NULL },
        { "zz-due-a", 90, NULL },
        { "zz-due-e", 100, "UPDATE connections SET enabled = 0 WHERE id = ?" },
        { "zz-due-f", 110, "UPDATE connections SET status = 'needs_reauth' WHERE id = ?" },
        { "zz-due-c", 10, "UPDATE connections SET status = 'error' WHERE id = ?" },
        { "zz-due-g", 120, "UPDATE connections SET refresh_due_at = NULL WHERE id = ?" },
    };
    long long ids[7], due[1000], want[3];
    size_t n = 0, k = 0;

    for (size_t i = 0; i < 7; i++) {
        struct db_param p[] = { DB_I64(rows[i].minutes_ago * 60000000LL), DB_I64(0) };

        ids[i] = tiktok(fx, fx->alice, rows[i].remote, "act", "rft", NULL);
        p[1] = DB_I64(ids[i]);
        stackdb_exec(fx->db, "UPDATE connections SET refresh_due_at = NOW(3) - INTERVAL ? MICROSECOND WHERE id = ?",
                p, 2);
        if (rows[i].tweak)
            stackdb_exec(fx->db, rows[i].tweak, &p[1], 1);
    }
    /* Oldest due first: a (90 min), b (30), c (10, in error); not the
     * future one, the disabled one, the one needing reconnection, nor the
     * one with nothing due. */
    want[0] = ids[2];
    want[1] = ids[0];
    want[2] = ids[5];
    assert_int_equal(conn_due(fx->db, 1000, due, &n), 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 7; j++)
            if (due[i] == ids[j]) {
                if (k >= 3 || due[i] != want[k])
                    fail_msg("connection %s came due at place %zu", rows[j].remote, k);
                k++;
            }
    assert_int_equal(k, 3);
    assert_int_equal(conn_due(fx->db, 1, due, &n), 0);
    assert_true(n <= 1);
    assert_int_equal(conn_due(fx->db, 0, due, &n), CP_EINVAL);
}

static void test_list_scope_and_update(void **state)
{
    struct fixture *fx = *state;
    struct conn_scope alice = { fx->alice, 0 }, bob = { fx->bob, 0 }, operator = { fx->bob, 1 };
    struct conn_filter f = { .limit = 2 };
    struct connection rows[10], c;
    struct conn_update u = { 0 };
    long long a[5], b, x;
    size_t n = 0;
    int more = 0;
    char name[300];

    for (int i = 0; i < 5; i++) {
        char remote[32];

        snprintf(remote, sizeof remote, "zz-list-%d", i);
        a[i] = tiktok(fx, fx->alice, remote, "act", "rft", NULL);
    }
    b = UPSERT(fx, NULL, .user = fx->bob, .platform = PLATFORM_YOUTUBE, .kind = AUTH_OAUTH2,
               .remote_id = "zz-list-bob", .access = "act", .refresh = "rft", .access_s = 3599);
    /* Credentials that never expire are active, not expiring. */
    x = UPSERT(fx, NULL, .user = fx->alice, .platform = PLATFORM_X, .kind = AUTH_OAUTH1,
               .remote_id = "zz-list-x", .access = "x-token", .secret = "x-secret");

    /* Pages of two, in id order, for alice alone. */
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_int_equal(n, 2);
    assert_true(more);
    assert_true(rows[0].id == a[0] && rows[1].id == a[1]);
    f.after_id = rows[1].id;
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_true(n == 2 && more && rows[0].id == a[2]);
    f.after_id = rows[1].id;
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_true(n == 2 && !more && rows[0].id == a[4] && rows[1].id == x);

    /* A user asking for another user's rows gets none; an operator does. */
    f = (struct conn_filter){ .limit = 10, .user_id = fx->bob };
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_int_equal(n, 0);
    assert_int_equal(conn_list(fx->db, stack_conf, &operator, &f, rows, &n, &more), 0);
    assert_true(n == 1 && rows[0].id == b && rows[0].platform == PLATFORM_YOUTUBE);
    f = (struct conn_filter){ .limit = 10, .user_id = fx->alice, .have_platform = 1,
                              .platform = PLATFORM_YOUTUBE };
    assert_int_equal(conn_list(fx->db, stack_conf, &operator, &f, rows, &n, &more), 0);
    assert_int_equal(n, 0);

    /* Another user's connection is not found, whatever is asked. */
    assert_int_equal(conn_get(fx->db, stack_conf, &bob, a[0], &c), CP_ENOTFOUND);
    u.have_display_name = 1;
    u.display_name = "mine now";
    assert_int_equal(conn_update(fx->db, stack_conf, &bob, a[0], &u), CP_ENOTFOUND);
    assert_int_equal(conn_delete(fx->db, &bob, a[0]), CP_ENOTFOUND);
    assert_int_equal(conn_get(fx->db, stack_conf, &operator, a[0], &c), 0);
    assert_string_equal(c.display_name, "Display zz-list-0");

    /* PATCH: display name, sync interval, enabled; limits refused. */
    u = (struct conn_update){ .have_display_name = 1, .display_name = "Ünïcode name",
                              .have_sync_interval = 1, .sync_interval_s = 900 };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, &alice, a[0], &c), 0);
    assert_string_equal(c.display_name, "Ünïcode name");
    assert_true(c.sync_interval_s == 900);
    memset(name, 'n', 256);
    name[256] = '\0';
    u = (struct conn_update){ .have_display_name = 1, .display_name = name };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), CP_EINVAL);
    u = (struct conn_update){ .have_display_name = 1, .display_name = "bad \xff" };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), CP_EINVAL);
    u = (struct conn_update){ .have_sync_interval = 1, .sync_interval_s = 59 };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), CP_EINVAL);
    u = (struct conn_update){ .have_sync_interval = 1, .sync_interval_s = 86401 };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), CP_EINVAL);
    u = (struct conn_update){ .have_sync_interval = 1, .sync_interval_s = 0 };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[0], &u), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, &alice, a[0], &c), 0);
    assert_true(c.sync_interval_s == 0);

    u = (struct conn_update){ .have_enabled = 1, .enabled = 0 };
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[1], &u), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, &alice, a[1], &c), 0);
    assert_true(c.status == CONN_DISABLED && c.refresh_due_at == 0);
    /* Filters by the status shown. */
    f = (struct conn_filter){ .limit = 10, .have_status = 1, .status = CONN_DISABLED };
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_true(n == 1 && rows[0].id == a[1]);
    stackdb_exec(fx->db, "UPDATE connections SET refresh_expires_at = NOW(3) + INTERVAL 1 DAY WHERE id = ?",
            (struct db_param[]){ DB_I64(a[2]) }, 1);
    f.status = CONN_EXPIRING;
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_true(n == 1 && rows[0].id == a[2] && rows[0].status == CONN_EXPIRING);
    f.status = CONN_ACTIVE;
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), 0);
    assert_int_equal(n, 4);
    assert_true(rows[3].id == x);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows[i].status, CONN_ACTIVE);

    /* Enabled again: due at once; a needs_reauth one stays so. */
    u.enabled = 1;
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[1], &u), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, &alice, a[1], &c), 0);
    assert_true(c.status == CONN_ACTIVE && c.refresh_due_at > 0);
    assert_int_equal(conn_mark_needs_reauth(fx->db, a[3], "revoked"), 0);
    u.enabled = 0;
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[3], &u), 0);
    u.enabled = 1;
    assert_int_equal(conn_update(fx->db, stack_conf, &alice, a[3], &u), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, &alice, a[3], &c), 0);
    assert_true(c.status == CONN_NEEDS_REAUTH && c.refresh_due_at == 0);

    assert_int_equal(conn_delete(fx->db, &alice, a[4]), 0);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, a[4], &c), CP_ENOTFOUND);
    assert_int_equal(conn_delete(fx->db, &alice, a[4]), CP_ENOTFOUND);
    f = (struct conn_filter){ .limit = 0 };
    assert_int_equal(conn_list(fx->db, stack_conf, &alice, &f, rows, &n, &more), CP_EINVAL);
}

/* A job of kind for the handlers, on its first of max attempts. */
static int run_task(struct db *db, int (*run)(struct task_ctx *), const char *kind, const char *payload,
                    int attempt, struct task_ctx *ctx)
{
    static struct job job;
    struct json_object *obj = NULL;
    int rc;

    memset(&job, 0, sizeof job);
    snprintf(job.kind, sizeof job.kind, "%s", kind);
    job.attempts = attempt;
    job.max_attempts = 5;
    assert_int_equal(json_parse(payload, strlen(payload), &json_default_limits, &obj, NULL), 0);
    task_ctx_init(ctx, &job, obj, db, stack_conf, NULL, NULL, NULL);
    rc = run(ctx);
    json_object_put(obj);
    return rc;
}

static void test_plan_enqueues_due(void **state)
{
    struct fixture *fx = *state;
    struct task_ctx ctx;
    long long due_id, later_id;
    char key[64];

    due_id = tiktok(fx, fx->bob, "zz-plan-due", "act", "rft", NULL);
    later_id = tiktok(fx, fx->bob, "zz-plan-later", "act", "rft", NULL);
    stackdb_exec(fx->db, "UPDATE connections SET refresh_due_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (struct db_param[]){ DB_I64(due_id) }, 1);
    assert_int_equal(run_task(fx->db, task_connections_plan, "connections.plan", "{}", 1, &ctx), TASK_OK);
    snprintf(key, sizeof key, "connection.refresh:%lld", due_id);
    {
        struct db_param p[] = { DB_STR(key), DB_I64(fx->bob) };

        assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM jobs WHERE unique_key = ? AND kind ="
                                           " 'connection.refresh' AND state = 'ready' AND user_id = ?",
                                   p, 2), 1);
        assert_int_equal(stackdb_i64(fx->db, "SELECT JSON_VALUE(payload, '$.connection_id') FROM jobs"
                                           " WHERE unique_key = ?", p, 1), due_id);
    }
    snprintf(key, sizeof key, "connection.refresh:%lld", later_id);
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM jobs WHERE unique_key = ?",
                               (struct db_param[]){ DB_STR(key) }, 1), 0);
    /* Planned again while its job waits: no second job. */
    assert_int_equal(run_task(fx->db, task_connections_plan, "connections.plan", "{}", 1, &ctx), TASK_OK);
    snprintf(key, sizeof key, "connection.refresh:%lld", due_id);
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM jobs WHERE unique_key = ?",
                               (struct db_param[]){ DB_STR(key) }, 1), 1);
}

static void test_refresh_task(void **state)
{
    struct fixture *fx = *state;
    struct task_ctx ctx;
    struct connection c;
    char payload[96];
    long long id, refreshed_at;
    int rc;

    /* Not due (and not forced): nothing is sent, nothing changes. */
    id = tiktok(fx, fx->alice, "zz-task", "act.not-a-real-token", "rft.not-a-real-token", NULL);
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"force\":false}", id);
    assert_int_equal(run_task(fx->db, task_connection_refresh, "connection.refresh", payload, 1, &ctx),
                     TASK_OK);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    assert_true(c.status == CONN_ACTIVE && c.last_error[0] == '\0');
    refreshed_at = c.token_refreshed_at;

    /* Forced: the TikTok simulator refuses a refresh token it never
     * issued, so the connection needs reconnecting, with one alert, and
     * the job itself is done. */
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"force\":true}", id);
    rc = run_task(fx->db, task_connection_refresh, "connection.refresh", payload, 1, &ctx);
    if (rc != TASK_OK)
        fail_msg("refresh task: %d (%s)", rc, ctx.message);
    assert_int_equal(conn_get(fx->db, stack_conf, NULL, id, &c), 0);
    if (c.status != CONN_NEEDS_REAUTH)
        fail_msg("connection is %s (%s)", conn_status_name(c.status), c.last_error);
    assert_true(c.token_refreshed_at == refreshed_at);
    assert_int_equal(alerts_of(fx->db, id), 1);
    assert_null(strstr(c.last_error, "not-a-real-token"));
    /* Run again (at least once delivery): nothing more happens. */
    assert_int_equal(run_task(fx->db, task_connection_refresh, "connection.refresh", payload, 2, &ctx),
                     TASK_OK);
    assert_int_equal(alerts_of(fx->db, id), 1);

    /* Gone, or a payload without an id. */
    assert_int_equal(run_task(fx->db, task_connection_refresh, "connection.refresh",
                              "{\"connection_id\":999999999999}", 1, &ctx), TASK_OK);
    assert_int_equal(run_task(fx->db, task_connection_refresh, "connection.refresh", "{}", 1, &ctx),
                     TASK_FAILED);
    assert_int_equal(ctx.fail_class, JOB_ERR_PERMANENT);
}

static void test_reseal_after_key_added(void **state)
{
    struct fixture *fx = *state;
    struct secretbox *fresh = NULL;
    struct conn_secrets s;
    struct connection c;
    struct buf raw, err;
    long long ids[5], updated[5];
    unsigned old_id, new_id = 0, kid = 0;
    size_t done = 0, left = 0, total = 0;
    int rounds = 0;

    conn_secrets_init(&s);
    buf_init(&raw, 65536);
    buf_init(&err, 1024);
    old_id = secretbox_current_id(fx->sb);
    for (int i = 0; i < 5; i++) {
        char remote[32], access[32];

        snprintf(remote, sizeof remote, "zz-reseal-%d", i);
        snprintf(access, sizeof access, "act.reseal.%d", i);
        ids[i] = i == 4 ? UPSERT(fx, NULL, .user = fx->bob, .platform = PLATFORM_X, .kind = AUTH_OAUTH1,
                                 .remote_id = remote, .access = access, .secret = "x-secret")
                        : tiktok(fx, fx->alice, remote, access, "rft.reseal", NULL);
        updated[i] = conn_i64(fx->db, "SELECT CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED)"
                                      " FROM connections WHERE id = ?", ids[i]);
    }
    assert_int_equal(keyring_add_key(stack_conf->secrets_key_file, &new_id, &err), 0);
    assert_int_equal(new_id, old_id + 1);

    /* Before re-sealing: still under the old key, and readable. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(conn_i64(fx->db, "SELECT secrets_key_id FROM connections WHERE id = ?", ids[i]),
                         old_id);
        open_ok(fx, ids[i], &c, &s);
    }
    /* A process that has not looked at the file yet opens what the new
     * key sealed. */
    assert_int_equal(secretbox_open_path(stack_conf->secrets_key_file, &fresh, &err), 0);
    assert_int_equal(secretbox_current_id(fresh), new_id);
    {
        struct plat_tokens tok = { .access_token = "act.new-key", .access_expires_in_s = 7200 };

        assert_int_equal(conn_store_refresh(fx->db, fresh, stack_conf, ids[0], &tok), 0);
        open_ok(fx, ids[0], &c, &s);
        assert_secret(&s.access_token, "act.new-key");
        assert_secret(&s.refresh_token, "rft.reseal");
        assert_int_equal(c.secrets_key_id, new_id);
        updated[0] = conn_i64(fx->db, "SELECT CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED)"
                                      " FROM connections WHERE id = ?", ids[0]);
    }

    /* Re-sealed in small batches until none is left under older keys. */
    do {
        assert_int_equal(conn_reseal_batch(fx->db, fresh, 2, &done, &left), 0);
        assert_true(done <= 2);
        total += done;
        assert_true(++rounds < 1000);
    } while (left > 0);
    assert_true(total >= 4);
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM connections WHERE secrets_key_id < ?",
                               (struct db_param[]){ DB_I64(new_id) }, 1), 0);
    for (int i = 0; i < 5; i++) {
        static const char *const columns[] = { "access_token", "refresh_token", "token_secret" };
        char access[32];

        assert_int_equal(conn_i64(fx->db, "SELECT secrets_key_id FROM connections WHERE id = ?", ids[i]),
                         new_id);
        for (int k = 0; k < 3; k++) {
            raw_column(fx->db, ids[i], columns[k], &raw);
            if (!raw.len)
                continue;
            assert_int_equal(keyring_sealed_id((unsigned char *)raw.data, raw.len, &kid), 0);
            assert_int_equal(kid, new_id);
        }
        open_ok(fx, ids[i], &c, &s);
        snprintf(access, sizeof access, "act.reseal.%d", i);
        assert_secret(&s.access_token, i == 0 ? "act.new-key" : access);
        if (i == 4)
            assert_secret(&s.token_secret, "x-secret");
        else
            assert_secret(&s.refresh_token, "rft.reseal");
        /* Re-sealing is not a change anyone sees. */
        assert_true(conn_i64(fx->db, "SELECT CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED)"
                                     " FROM connections WHERE id = ?", ids[i]) == updated[i]);
    }
    assert_int_equal(conn_reseal_batch(fx->db, fresh, 2, &done, &left), 0);
    assert_true(done == 0 && left == 0);
    assert_int_equal(conn_reseal_batch(fx->db, fresh, 0, &done, &left), CP_EINVAL);
    secretbox_free(fresh);
    conn_secrets_clear(&s);
    buf_free(&raw);
    buf_free(&err);
}

struct taker {
    const char *key;
    int rc;
    struct oauth_state st;
};

static void *take_thread(void *arg)
{
    struct taker *t = arg;
    struct cache *cache = NULL;

    t->rc = cache_open(stack_conf, &cache);
    if (!t->rc)
        t->rc = oauth_state_take(cache, t->key, &t->st);
    cache_close(cache);
    return NULL;
}

static void test_oauth_state_single_use(void **state)
{
    struct fixture *fx = *state;
    struct oauth_state st = { 0 }, got;
    struct cache *cache = NULL;
    char key[OAUTH_STATE_LEN + 1], cookie[OAUTH_BINDING_LEN + 1], other[OAUTH_BINDING_LEN + 1];
    char hashed[80], hex[65];
    unsigned char sum[SHA256_LEN];
    struct taker takers[THREADS];
    pthread_t threads[THREADS];
    struct buf b;
    int winners = 0;

    assert_int_equal(cache_open(stack_conf, &cache), 0);
    assert_int_equal(oauth_state_random(key, sizeof key), 0);
    assert_int_equal(strlen(key), OAUTH_STATE_LEN);
    assert_int_equal(oauth_state_random(cookie, sizeof cookie), 0);
    assert_int_equal(oauth_state_random(other, sizeof other), 0);
    st.user_id = fx->alice;
    st.platform = PLATFORM_YOUTUBE;
    st.created_ms = db_now(fx->db);
    oauth_binding_hash(cookie, st.binding_sha256);
    snprintf(st.verifier, sizeof st.verifier, "verifier-\"quoted\"-\\");
    snprintf(st.redirect_uri, sizeof st.redirect_uri, "http://127.0.0.1:1/oauth/youtube/callback");
    assert_int_equal(oauth_state_put(cache, key, &st, 60), 0);

    /* Kept under the hash of the key, never the key itself. */
    buf_init(&b, 65536);
    assert_int_equal(cache_get(cache, key, &b), CP_ENOTFOUND);
    crypto_sha256(key, strlen(key), sum);
    crypto_hex(sum, sizeof sum, hex);
    snprintf(hashed, sizeof hashed, "oauth:%s", hex);
    assert_int_equal(cache_get(cache, hashed, &b), 0);
    assert_null(strstr(buf_str(&b), cookie));
    buf_free(&b);

    assert_int_equal(oauth_state_take(cache, key, &got), 0);
    assert_true(got.user_id == fx->alice);
    assert_int_equal(got.platform, PLATFORM_YOUTUBE);
    assert_true(got.created_ms == st.created_ms);
    assert_string_equal(got.verifier, st.verifier);
    assert_string_equal(got.request_secret, "");
    assert_string_equal(got.redirect_uri, st.redirect_uri);
    assert_true(oauth_binding_ok(&got, cookie));
    assert_false(oauth_binding_ok(&got, other));
    assert_false(oauth_binding_ok(&got, ""));
    /* Taken once. */
    assert_int_equal(oauth_state_take(cache, key, &got), CP_ENOTFOUND);
    assert_int_equal(oauth_state_take(cache, "never-made", &got), CP_ENOTFOUND);

    /* Raced callbacks: exactly one gets it. */
    assert_int_equal(oauth_state_put(cache, key, &st, 60), 0);
    for (int i = 0; i < THREADS; i++) {
        takers[i] = (struct taker){ .key = key };
        assert_int_equal(pthread_create(&threads[i], NULL, take_thread, &takers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        if (takers[i].rc == 0) {
            winners++;
            assert_string_equal(takers[i].st.verifier, st.verifier);
        } else {
            assert_int_equal(takers[i].rc, CP_ENOTFOUND);
        }
    }
    assert_int_equal(winners, 1);

    /* Something that is not a state record is refused, and gone. */
    assert_int_equal(cache_set(cache, hashed, "{\"user_id\":\"x\"}", 15, 60), 0);
    assert_int_equal(oauth_state_take(cache, key, &got), CP_EINVAL);
    assert_int_equal(oauth_state_take(cache, key, &got), CP_ENOTFOUND);
    cache_close(cache);
}

/* Left for test_conn_layer.py: crosspostctl rotate-key, then
 * "verify-rotated". */
static void test_rows_for_rotate_key(void **state)
{
    struct fixture *fx = *state;
    long long user;

    cleanup_rows(fx->db, ROTATE_USER);
    user = make_user(fx->db, ROTATE_USER);
    for (int i = 0; i < ROTATE_ROWS; i++) {
        char remote[32], access[48], refresh[48];

        snprintf(remote, sizeof remote, "zz-rotate-%d", i);
        snprintf(access, sizeof access, "act.ROTATE-PLAINTEXT-%d", i);
        snprintf(refresh, sizeof refresh, "rft.ROTATE-PLAINTEXT-%d", i);
        tiktok(fx, user, remote, access, refresh, NULL);
    }
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM connections c JOIN users u ON u.id = c.user_id"
                                       " WHERE u.email = ?", (struct db_param[]){ DB_STR(ROTATE_USER) }, 1),
                     ROTATE_ROWS);
}

static void test_rotated_rows_open(void **state)
{
    struct fixture *fx = *state;
    struct db_result *r = NULL;
    struct conn_secrets s;
    struct connection c;
    struct db_param p[] = { DB_STR(ROTATE_USER) };

    conn_secrets_init(&s);
    assert_int_equal(db_query(fx->db, "SELECT c.id, c.remote_id FROM connections c JOIN users u"
                                      " ON u.id = c.user_id WHERE u.email = ? ORDER BY c.id", p, 1, &r), 0);
    assert_int_equal(db_result_rows(r), ROTATE_ROWS);
    for (size_t i = 0; i < ROTATE_ROWS; i++) {
        long long id = 0;
        char want[48];

        assert_int_equal(db_result_i64(r, i, 0, &id), 0);
        open_ok(fx, id, &c, &s);
        assert_int_equal(c.secrets_key_id, secretbox_current_id(fx->sb));
        snprintf(want, sizeof want, "act.ROTATE-PLAINTEXT-%s", db_result_get(r, i, 1) + strlen("zz-rotate-"));
        assert_secret(&s.access_token, want);
        snprintf(want, sizeof want, "rft.ROTATE-PLAINTEXT-%s", db_result_get(r, i, 1) + strlen("zz-rotate-"));
        assert_secret(&s.refresh_token, want);
    }
    db_result_free(r);
    conn_secrets_clear(&s);
    cleanup_rows(fx->db, ROTATE_USER);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upsert_insert_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_other_user_is_another_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_columns_are_ciphertext, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_sealed_value_does_not_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_failed_and_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_reauth_alerts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_scope_and_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_enqueues_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reseal_after_key_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oauth_state_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows_for_rotate_key, setup, teardown),
    };
    const struct CMUnitTest verify[] = {
        cmocka_unit_test_setup_teardown(test_rotated_rows_open, setup, teardown),
    };

    if (argc == 2 && strcmp(argv[1], "verify-rotated") == 0)
        return cmocka_run_group_tests_name("conn_layer_rotated", verify, group_setup_keep, group_teardown);
    return cmocka_run_group_tests_name("conn_layer", tests, group_setup, group_teardown);
}
