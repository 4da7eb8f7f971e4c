/*
 * quota_layer.c - the quota ledger (src/quota.c) against the real MariaDB
 * of the integration stack: reservations until a budget is used up, all
 * or nothing across budgets, giving back, blocks, windows that roll,
 * concurrent reservations and the listing for GET /api/v1/quotas.
 *
 * The configuration comes from conf_load() (CROSSPOST_CONFIG names the
 * stack's file); each test makes its own copy with the budgets it needs.
 * Users made here have an email zz-ql-*@example.test, project and app
 * keys start with zz-ql-; their ledger rows are deleted before and after
 * every test.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "quota.h"
#include "stackdb.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define THREADS 4
#define CONCURRENT_QUOTA 37

static struct conf *stack_conf;
static char project_key[] = "zz-ql-project";
static char app_key[] = "zz-ql-app";

struct fixture {
    struct db *db;
    struct conf conf;                  /* a copy of the stack's, budgets per test */
    long long alice, bob;              /* users zz-ql-alice, zz-ql-bob */
    long long alice_yt, alice_x, bob_x; /* their connections */
};

/* ------------------------------------------------------------ helpers -- */

static long long db_now(struct db *db)
{
    return stackdb_i64(db, "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)", NULL, 0);
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

/* A switched-off connection, so the stack's worker leaves it alone. */
static long long make_connection(struct db *db, long long user, const char *platform,
                                 const char *remote_id)
{
    struct db_param p[] = { DB_I64(user), DB_STR(platform), DB_STR(remote_id) };
    unsigned long long id = 0;
    int rc = db_exec(db, "INSERT INTO connections (user_id, platform, auth_kind, remote_id, status, enabled)"
                         " VALUES (?, ?, 'oauth2', ?, 'disabled', 0)", p, 3, NULL, &id);

    if (rc)
        fail_msg("connection %s: %s (%s)", remote_id, cp_strerror(rc), db_error(db));
    return (long long)id;
}

static void cleanup_rows(struct db *db)
{
    static const char *const sql[] = {
        "DELETE FROM quota_ledger WHERE scope_key LIKE 'zz-ql-%' OR scope_key IN"
        " (SELECT CAST(c.id AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_unicode_ci"
        " FROM connections c JOIN users u ON u.id = c.user_id"
        " WHERE u.email LIKE 'zz-ql-%')",
        "DELETE FROM users WHERE email LIKE 'zz-ql-%'",
    };

    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        stackdb_exec(db, sql[i], NULL, 0);
}

/* One column (an integer expression over the row) of ch's ledger row;
 * -1 for NULL.  column is one of this file's constants, never input. */
static long long ledger(struct db *db, const struct quota_charge *ch, const char *column)
{
    static const char *const names[] = { "tiktok", "instagram", "youtube", "x" };
    struct db_param p[] = { DB_STR(names[ch->platform]), DB_STR(ch->scope), DB_STR(ch->scope_key),
                            DB_STR(ch->bucket) };
    char sql[400];

    snprintf(sql, sizeof sql, "SELECT %s FROM quota_ledger WHERE platform = ? AND scope = ?"
                              " AND scope_key = ? AND bucket = ?", column);
    return stackdb_i64(db, sql, p, 4);
}

#define USED "used"
#define WINDOW_START "CAST(UNIX_TIMESTAMP(window_start) * 1000 AS SIGNED)"
#define WINDOW_END "CAST(UNIX_TIMESTAMP(window_end) * 1000 AS SIGNED)"
#define BLOCKED_UNTIL "CAST(UNIX_TIMESTAMP(blocked_until) * 1000 AS SIGNED)"

static size_t charges(struct fixture *fx, enum platform_id platform, long long conn,
                      struct quota_charge *out)
{
    size_t n = 0;
    int rc = quota_charges_for(&fx->conf, platform, conn, out, QUOTA_CHARGES_MAX, &n);

    if (rc)
        fail_msg("charges for %d: %s", (int)platform, cp_strerror(rc));
    return n;
}

static void reserve_ok(struct fixture *fx, const struct quota_charge *ch, size_t n)
{
    long long until = -1;
    char why[256];
    int rc = quota_reserve(fx->db, ch, n, &until, why, sizeof why);

    if (rc)
        fail_msg("reserve: %s (until %lld, %s)", cp_strerror(rc), until, why);
    assert_int_equal(until, 0);
    assert_string_equal(why, "");
}

static long long reserve_busy(struct fixture *fx, const struct quota_charge *ch, size_t n,
                              char *why, size_t why_cap)
{
    long long until = -1;
    int rc = quota_reserve(fx->db, ch, n, &until, why, why_cap);

    if (rc != CP_EBUSY)
        fail_msg("reserve: %s, want busy", cp_strerror(rc));
    assert_true(until > 0);
    return until;
}

static void expect_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

/* -------------------------------------------------- setup, teardown -- */

static int group_setup(void **state)
{
    struct db *db = NULL;

    if (stackdb_open("quota_layer", CP_LOG_ERROR, &stack_conf, &db))
        return -1;
    db_close(db);
    return 0;
}

static int group_teardown(void **state)
{
    struct db *db = NULL;

    if (db_open(stack_conf, &db) == 0)
        cleanup_rows(db);
    db_close(db);
    conf_free(stack_conf);
    stack_conf = NULL;
    return 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    if (db_open(stack_conf, &fx->db)) {
        free(fx);
        return -1;
    }
    /* The copy shares the stack's strings; only numbers and the two
     * keys below (this file's arrays) are changed. */
    fx->conf = *stack_conf;
    fx->conf.google_client_id = project_key;
    fx->conf.x_consumer_key = app_key;
    fx->conf.youtube_daily_units = 10000;
    fx->conf.youtube_insert_units = 1600;
    fx->conf.youtube_channel_daily_uploads = 50;
    fx->conf.x_user_posts = 100;
    fx->conf.x_user_window = 15 * MIN;
    fx->conf.x_app_posts = 10000;
    cleanup_rows(fx->db);
    fx->alice = make_user(fx->db, "zz-ql-alice@example.test");
    fx->bob = make_user(fx->db, "zz-ql-bob@example.test");
    fx->alice_yt = make_connection(fx->db, fx->alice, "youtube", "zz-ql-alice-channel");
    fx->alice_x = make_connection(fx->db, fx->alice, "x", "zz-ql-alice-x");
    fx->bob_x = make_connection(fx->db, fx->bob, "x", "zz-ql-bob-x");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    cleanup_rows(fx->db);
    db_close(fx->db);
    free(fx);
    return 0;
}

/* -------------------------------------------------------------- tests -- */

static void test_reserve_until_exhausted(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge yt[QUOTA_CHARGES_MAX], x[QUOTA_CHARGES_MAX];
    long long now, until, end;
    char why[256];
    size_t n;

    fx->conf.youtube_daily_units = 3 * 1600 + 100;
    n = charges(fx, PLATFORM_YOUTUBE, fx->alice_yt, yt);
    assert_int_equal(n, 2);
    for (int i = 0; i < 3; i++)
        reserve_ok(fx, yt, n);
    assert_int_equal(ledger(fx->db, &yt[0], USED), 4800);
    assert_int_equal(ledger(fx->db, &yt[0], "quota"), 4900);
    assert_int_equal(ledger(fx->db, &yt[1], USED), 3);

    now = db_now(fx->db);
    until = reserve_busy(fx, yt, n, why, sizeof why);
    end = ledger(fx->db, &yt[0], WINDOW_END);
    assert_int_equal(until, end);
    /* The YouTube day ends at midnight Pacific. */
    assert_true(end > now && end - now <= 25 * HOUR);
    assert_int_equal(end, quota_pacific_midnight_after(ledger(fx->db, &yt[0], WINDOW_START)));
    expect_contains(why, "YouTube project quota: 4800 of 4900 units used; frees at ");
    expect_contains(why, " UTC (midnight Pacific)");
    /* Refused: nothing was spent. */
    assert_int_equal(ledger(fx->db, &yt[0], USED), 4800);
    assert_int_equal(ledger(fx->db, &yt[1], USED), 3);

    /* X: a fixed window from the first post. */
    fx->conf.x_user_posts = 2;
    n = charges(fx, PLATFORM_X, fx->alice_x, x);
    assert_int_equal(n, 2);
    reserve_ok(fx, x, n);
    reserve_ok(fx, x, n);
    until = reserve_busy(fx, x, n, why, sizeof why);
    assert_int_equal(until, ledger(fx->db, &x[0], WINDOW_END));
    assert_int_equal(until - ledger(fx->db, &x[0], WINDOW_START), 15 * MIN);
    expect_contains(why, "X posts for this account: 2 of 2 in 15 min; frees at ");
    assert_int_equal(ledger(fx->db, &x[1], USED), 2);
    /* Another account of the same app still posts. */
    n = charges(fx, PLATFORM_X, fx->bob_x, x);
    reserve_ok(fx, x, n);
    assert_int_equal(ledger(fx->db, &x[1], USED), 3);
    /* why may be NULL. */
    n = charges(fx, PLATFORM_X, fx->alice_x, x);
    assert_int_equal(quota_reserve(fx->db, x, n, &until, NULL, 0), CP_EBUSY);
    assert_true(until > now);
}

static void test_all_or_nothing(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge yt[QUOTA_CHARGES_MAX];
    long long until, later;
    char why[256];
    size_t n;

    /* The channel is out of uploads; the project has room but is not
     * charged. */
    fx->conf.youtube_channel_daily_uploads = 1;
    n = charges(fx, PLATFORM_YOUTUBE, fx->alice_yt, yt);
    reserve_ok(fx, yt, n);
    until = reserve_busy(fx, yt, n, why, sizeof why);
    assert_int_equal(until, ledger(fx->db, &yt[1], WINDOW_END));
    expect_contains(why, "YouTube uploads for this channel: 1 of 1 today; frees at ");
    assert_int_equal(ledger(fx->db, &yt[0], USED), 1600);
    assert_int_equal(ledger(fx->db, &yt[1], USED), 1);

    /* The project is out of units; the channel (a larger budget now) is
     * not charged either. */
    fx->conf.youtube_channel_daily_uploads = 50;
    fx->conf.youtube_daily_units = 2000;
    n = charges(fx, PLATFORM_YOUTUBE, fx->alice_yt, yt);
    reserve_busy(fx, yt, n, why, sizeof why);
    expect_contains(why, "YouTube project quota: 1600 of 2000 units used");
    assert_int_equal(ledger(fx->db, &yt[1], USED), 1);

    /* Both refuse: the answer is when both have freed, the later one. */
    later = db_now(fx->db) + 3 * DAY;
    assert_int_equal(quota_block(fx->db, &yt[1], later, "uploadLimitExceeded"), 0);
    until = reserve_busy(fx, yt, n, why, sizeof why);
    assert_int_equal(until, later);
    expect_contains(why, "YouTube uploads for this channel: blocked by the platform until ");
    expect_contains(why, ": uploadLimitExceeded");
    assert_int_equal(ledger(fx->db, &yt[0], USED), 1600);
}

static void test_release(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge x[QUOTA_CHARGES_MAX], fresh;
    size_t n = charges(fx, PLATFORM_X, fx->alice_x, x);

    reserve_ok(fx, x, n);
    reserve_ok(fx, x, n);
    assert_int_equal(quota_release(fx->db, x, n), 0);
    assert_int_equal(ledger(fx->db, &x[0], USED), 1);
    assert_int_equal(ledger(fx->db, &x[1], USED), 1);
    /* Never below 0. */
    x[0].cost = 5;
    assert_int_equal(quota_release(fx->db, x, 1), 0);
    assert_int_equal(ledger(fx->db, &x[0], USED), 0);
    assert_int_equal(ledger(fx->db, &x[1], USED), 1);
    x[0].cost = 1;
    /* A window that has ended owes nothing back. */
    stackdb_exec(fx->db, "UPDATE quota_ledger SET window_end = NOW(3) - INTERVAL 1 SECOND"
                         " WHERE scope_key = 'zz-ql-app'", NULL, 0);
    assert_int_equal(quota_release(fx->db, &x[1], 1), 0);
    assert_int_equal(ledger(fx->db, &x[1], USED), 1);
    /* Nothing reserved, nothing to give back, no row made. */
    fresh = x[0];
    strcpy(fresh.scope_key, "zz-ql-never");
    assert_int_equal(quota_release(fx->db, &fresh, 1), 0);
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM quota_ledger WHERE scope_key = 'zz-ql-never'",
                                 NULL, 0), 0);
}

static void test_block(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge x[QUOTA_CHARGES_MAX], ig;
    char why[512], note[600];
    long long now, until;
    size_t n = charges(fx, PLATFORM_X, fx->alice_x, x);

    /* With a time: the row is made, counted full, and refuses until then. */
    now = db_now(fx->db);
    assert_int_equal(quota_block(fx->db, &x[0], now + 2 * HOUR, "x-rate-limit-remaining 0"), 0);
    assert_int_equal(ledger(fx->db, &x[0], BLOCKED_UNTIL), now + 2 * HOUR);
    assert_int_equal(ledger(fx->db, &x[0], USED), 100);
    until = reserve_busy(fx, x, n, why, sizeof why);
    assert_int_equal(until, now + 2 * HOUR);
    expect_contains(why, "X posts for this account: blocked by the platform until ");
    expect_contains(why, ": x-rate-limit-remaining 0");
    /* Refused: the app's row was not even made. */
    assert_int_equal(stackdb_i64(fx->db, "SELECT COUNT(*) FROM quota_ledger WHERE scope_key = 'zz-ql-app'",
                                 NULL, 0), 0);

    /* A block that has passed is lifted by the next reservation. */
    stackdb_exec(fx->db, "UPDATE quota_ledger SET blocked_until = NOW(3) - INTERVAL 1 SECOND,"
                         " used = 3 WHERE scope = 'user' AND scope_key ="
                         " CAST(? AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_unicode_ci",
                 (struct db_param[]){ DB_I64(fx->alice_x) }, 1);
    reserve_ok(fx, x, n);
    assert_int_equal(ledger(fx->db, &x[0], BLOCKED_UNTIL), -1);
    assert_int_equal(ledger(fx->db, &x[0], USED), 4);

    /* Without a time: until the window ends. */
    assert_int_equal(quota_block(fx->db, &x[1], 0, "x-app-usage 95%"), 0);
    assert_int_equal(ledger(fx->db, &x[1], BLOCKED_UNTIL), ledger(fx->db, &x[1], WINDOW_END));
    assert_int_equal(ledger(fx->db, &x[1], USED), 10000);
    until = reserve_busy(fx, x, n, why, sizeof why);
    assert_int_equal(until, ledger(fx->db, &x[1], WINDOW_END));

    /* Instagram's limit is read live; its exhaustion is noted here, with
     * a note cut to the column and made valid UTF-8. */
    memset(&ig, 0, sizeof ig);
    ig.platform = PLATFORM_INSTAGRAM;
    strcpy(ig.scope, "account");
    snprintf(ig.scope_key, sizeof ig.scope_key, "zz-ql-ig");
    strcpy(ig.bucket, "posts");
    ig.quota = 100;
    ig.cost = 1;
    memset(note, 'n', sizeof note - 1);
    note[sizeof note - 1] = '\0';
    note[0] = '\xff';
    assert_int_equal(quota_block(fx->db, &ig, 0, note), 0);
    assert_true(ledger(fx->db, &ig, BLOCKED_UNTIL) > now + 23 * HOUR);
    assert_int_equal(ledger(fx->db, &ig, "CHAR_LENGTH(last_note)"), 255);
    assert_int_equal(ledger(fx->db, &ig, "LEFT(last_note, 1) = '?'"), 1);
}

static void test_window_rolls(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge x[QUOTA_CHARGES_MAX], yt[QUOTA_CHARGES_MAX];
    long long before, start;
    char why[256];
    size_t n;

    fx->conf.x_user_posts = 2;
    n = charges(fx, PLATFORM_X, fx->alice_x, x);
    reserve_ok(fx, x, n);
    reserve_ok(fx, x, n);
    reserve_busy(fx, x, n, why, sizeof why);
    stackdb_exec(fx->db, "UPDATE quota_ledger SET window_start = NOW(3) - INTERVAL 20 MINUTE,"
                         " window_end = NOW(3) - INTERVAL 5 MINUTE WHERE scope = 'user'"
                         " AND scope_key = CAST(? AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_unicode_ci",
                 (struct db_param[]){ DB_I64(fx->alice_x) }, 1);
    before = db_now(fx->db);
    reserve_ok(fx, x, n);
    start = ledger(fx->db, &x[0], WINDOW_START);
    assert_true(start >= before);
    assert_int_equal(ledger(fx->db, &x[0], WINDOW_END), start + 15 * MIN);
    assert_int_equal(ledger(fx->db, &x[0], USED), 1);
    /* The app's window had not ended: it keeps counting. */
    assert_int_equal(ledger(fx->db, &x[1], USED), 3);

    /* A YouTube day that has ended starts again at 0 until the next
     * midnight Pacific. */
    fx->conf.youtube_daily_units = 1600;
    n = charges(fx, PLATFORM_YOUTUBE, fx->alice_yt, yt);
    reserve_ok(fx, yt, n);
    reserve_busy(fx, yt, n, why, sizeof why);
    stackdb_exec(fx->db, "UPDATE quota_ledger SET window_end = NOW(3) - INTERVAL 1 HOUR"
                         " WHERE scope_key = 'zz-ql-project'", NULL, 0);
    reserve_ok(fx, yt, n);
    assert_int_equal(ledger(fx->db, &yt[0], USED), 1600);
    start = ledger(fx->db, &yt[0], WINDOW_START);
    assert_int_equal(ledger(fx->db, &yt[0], WINDOW_END), quota_pacific_midnight_after(start));
    assert_int_equal(ledger(fx->db, &yt[1], USED), 2);
}

struct racer {
    const struct quota_charge *charge;
    int reserved;
    int unexpected;                    /* an answer other than 0 / CP_EBUSY */
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct db *db = NULL;

    if (db_open(stack_conf, &db)) {
        r->unexpected = CP_EUNAVAIL;
        db_close(db);
        return NULL;
    }
    for (;;) {
        long long until = 0;
        int rc = quota_reserve(db, r->charge, 1, &until, NULL, 0);

        if (rc == CP_EBUSY)
            break;
        if (rc) {
            r->unexpected = rc;
            break;
        }
        r->reserved++;
    }
    db_close(db);
    return NULL;
}

static void test_concurrent_reservations(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge x[QUOTA_CHARGES_MAX];
    struct racer racers[THREADS];
    pthread_t threads[THREADS];
    int total = 0;
    size_t n;

    fx->conf.x_user_posts = 0;
    fx->conf.x_app_posts = CONCURRENT_QUOTA;
    n = charges(fx, PLATFORM_X, fx->alice_x, x);
    assert_int_equal(n, 1);
    assert_string_equal(x[0].scope, "app");
    for (int i = 0; i < THREADS; i++) {
        racers[i] = (struct racer){ .charge = &x[0] };
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        if (racers[i].unexpected)
            fail_msg("thread %d: %s", i, cp_strerror(racers[i].unexpected));
        total += racers[i].reserved;
    }
    assert_int_equal(total, CONCURRENT_QUOTA);
    assert_int_equal(ledger(fx->db, &x[0], USED), CONCURRENT_QUOTA);
}

/* The rows of the listing whose scope_key is one of this file's, as
 * "platform/scope/bucket used/quota" lines in listing order. */
static void listed(struct fixture *fx, long long scope_user, struct buf *out)
{
    struct json_object *doc = NULL, *data = NULL;
    struct buf text, why;
    char keys[3][24];

    snprintf(keys[0], sizeof keys[0], "%lld", fx->alice_yt);
    snprintf(keys[1], sizeof keys[1], "%lld", fx->alice_x);
    snprintf(keys[2], sizeof keys[2], "%lld", fx->bob_x);
    buf_init(&text, 1 << 20);
    buf_init(&why, 256);
    assert_int_equal(quota_list_json(fx->db, scope_user, &text), 0);
    if (json_parse(text.data, text.len, &json_default_limits, &doc, &why))
        fail_msg("listing is not JSON: %s", buf_str(&why));
    assert_int_equal(json_get_array(doc, "data", &data), 0);
    buf_reset(out);
    for (size_t i = 0; i < json_object_array_length(data); i++) {
        struct json_object *row = json_object_array_get_idx(data, i);
        const char *platform, *scope, *key, *bucket, *start, *end, *note = "";
        long long used, quota;
        int ours;

        assert_int_equal(json_get_string(row, "platform", &platform), 0);
        assert_int_equal(json_get_string(row, "scope", &scope), 0);
        assert_int_equal(json_get_string(row, "scope_key", &key), 0);
        assert_int_equal(json_get_string(row, "bucket", &bucket), 0);
        ours = !strncmp(key, "zz-ql-", 6) || !strcmp(key, keys[0]) || !strcmp(key, keys[1]) ||
               !strcmp(key, keys[2]);
        if (!ours)
            continue;
        assert_int_equal(json_get_int(row, "used", &used), 0);
        assert_int_equal(json_get_int(row, "quota", &quota), 0);
        assert_int_equal(json_get_string(row, "window_start", &start), 0);
        assert_int_equal(json_get_string(row, "window_end", &end), 0);
        assert_true(strlen(end) == 24 && end[10] == 'T' && end[19] == '.' && end[23] == 'Z');
        assert_true(strcmp(start, end) < 0);
        assert_true(json_object_object_get_ex(row, "blocked_until", NULL));
        if (json_get_string(row, "note", &note) == CP_ENOTFOUND)
            note = "";
        assert_int_equal(buf_printf(out, "%s/%s/%s %s %lld/%lld%s%s\n", platform, scope, bucket,
                                    strncmp(key, "zz-ql-", 6) ? "conn" : key, used, quota,
                                    note[0] ? " " : "", note), 0);
    }
    json_object_put(doc);
    buf_free(&text);
    buf_free(&why);
}

static void test_list_json_scoping(void **state)
{
    struct fixture *fx = *state;
    struct quota_charge yt[QUOTA_CHARGES_MAX], x[QUOTA_CHARGES_MAX];
    size_t nyt = charges(fx, PLATFORM_YOUTUBE, fx->alice_yt, yt);
    size_t nx = charges(fx, PLATFORM_X, fx->bob_x, x);
    struct buf out;

    reserve_ok(fx, yt, nyt);
    reserve_ok(fx, x, nx);
    reserve_ok(fx, x, nx);
    assert_int_equal(quota_block(fx->db, &x[0], 0, "429 Too Many Requests"), 0);
    buf_init(&out, 1 << 16);

    /* Alice: the shared rows and her channel, not Bob's account. */
    listed(fx, fx->alice, &out);
    assert_string_equal(buf_str(&out),
                        "youtube/channel/uploads conn 1/50\n"
                        "youtube/project/units zz-ql-project 1600/10000\n"
                        "x/app/posts zz-ql-app 2/10000\n");
    /* Bob: the shared rows and his account, blocked and counted full. */
    listed(fx, fx->bob, &out);
    assert_string_equal(buf_str(&out),
                        "youtube/project/units zz-ql-project 1600/10000\n"
                        "x/app/posts zz-ql-app 2/10000\n"
                        "x/user/posts conn 100/100 429 Too Many Requests\n");
    /* Everyone's for an administrator. */
    listed(fx, 0, &out);
    assert_string_equal(buf_str(&out),
                        "youtube/channel/uploads conn 1/50\n"
                        "youtube/project/units zz-ql-project 1600/10000\n"
                        "x/app/posts zz-ql-app 2/10000\n"
                        "x/user/posts conn 100/100 429 Too Many Requests\n");
    /* A window that has ended counts nothing. */
    stackdb_exec(fx->db, "UPDATE quota_ledger SET window_start = NOW(3) - INTERVAL 1 DAY,"
                         " window_end = NOW(3) - INTERVAL 1 SECOND"
                         " WHERE scope_key = 'zz-ql-app'", NULL, 0);
    listed(fx, fx->alice, &out);
    expect_contains(buf_str(&out), "x/app/posts zz-ql-app 0/10000\n");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reserve_until_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_json_scoping, setup, teardown),
    };

    return cmocka_run_group_tests_name("quota_layer", tests, group_setup, group_teardown);
}
