#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "connections.h"
#include "err.h"
#include "json.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define NOW 1800000000000LL               /* 2027-01-15T08:00:00Z */

static struct conf *test_conf(void)
{
    struct conf *c = NULL;

    assert_int_equal(conf_defaults(&c), 0);
    c->token_refresh_margin = 10 * MIN;
    c->token_refresh_margin_long = 7 * DAY;
    c->connection_check_interval = 6 * HOUR;
    c->connection_expiring_window = 7 * DAY;
    c->sync_interval = 5 * MIN;
    return c;
}

/* ------------------------------------------------------ refresh due -- */

struct due_case {
    const char *name;
    int refreshable;
    long long expires_at;                 /* 0 = does not expire */
    long long lifetime;                   /* 0 = unknown */
    long long want;
};

static const struct due_case due_cases[] = {
    { "short-lived token: margin before expiry", 1, NOW + 2 * HOUR, 2 * HOUR, NOW + 2 * HOUR - 10 * MIN },
    { "Google's 3599 s token", 1, NOW + 3599 * SEC, 3599 * SEC, NOW + 3599 * SEC - 10 * MIN },
    { "just under a day: short margin", 1, NOW + DAY - MIN, DAY - MIN, NOW + DAY - MIN - 10 * MIN },
    { "60-day token: long margin", 1, NOW + 60 * DAY, 60 * DAY, NOW + 53 * DAY },
    { "one day: long margin, at most half", 1, NOW + DAY, DAY, NOW + DAY / 2 },
    { "shorter than the margin: half-way", 1, NOW + 60 * SEC, 60 * SEC, NOW + 30 * SEC },
    { "as long as the margin: half-way", 1, NOW + 10 * MIN, 10 * MIN, NOW + 5 * MIN },
    { "a little longer than the margin", 1, NOW + 15 * MIN, 15 * MIN, NOW + 5 * MIN },
    { "lifetime unknown: short margin", 1, NOW + 2 * HOUR, 0, NOW + 2 * HOUR - 10 * MIN },
    { "inside the margin already: now", 1, NOW + 5 * MIN, 2 * HOUR, NOW },
    { "expired: now", 1, NOW - HOUR, 2 * HOUR, NOW },
    { "refreshable without expiry: checked", 1, 0, 0, NOW + 6 * HOUR },
    { "not refreshable, no expiry", 0, 0, 0, NOW + 6 * HOUR },
    { "not refreshable, expires first", 0, NOW + HOUR, 2 * HOUR, NOW + HOUR },
    { "not refreshable, expires later", 0, NOW + 30 * DAY, 60 * DAY, NOW + 6 * HOUR },
    { "not refreshable, expired but working", 0, NOW - MIN, HOUR, NOW + 6 * HOUR },
    { "not refreshable, expires now", 0, NOW, HOUR, NOW + 6 * HOUR },
};

static void test_refresh_due(void **state)
{
    struct conf *c = test_conf();

    for (size_t i = 0; i < sizeof due_cases / sizeof due_cases[0]; i++) {
        const struct due_case *t = &due_cases[i];
        long long got = conn_refresh_due(c, t->refreshable, t->expires_at, t->lifetime, NOW);

        if (got != t->want)
            fail_msg("%s: due %lld ms from now, expected %lld", t->name, got - NOW, t->want - NOW);
        if (got < NOW)
            fail_msg("%s: due before now", t->name);
    }
    conf_free(c);
}

static void test_refresh_due_follows_configuration(void **state)
{
    struct conf *c = test_conf();

    c->token_refresh_margin = 30 * MIN;
    c->token_refresh_margin_long = 2 * DAY;
    c->connection_check_interval = HOUR;
    assert_true(conn_refresh_due(c, 1, NOW + 2 * HOUR, 2 * HOUR, NOW) == NOW + 90 * MIN);
    assert_true(conn_refresh_due(c, 1, NOW + 60 * DAY, 60 * DAY, NOW) == NOW + 58 * DAY);
    assert_true(conn_refresh_due(c, 0, 0, 0, NOW) == NOW + HOUR);
    conf_free(c);
}

/* ---------------------------------------------------- shown status -- */

struct status_case {
    const char *name;
    enum conn_status stored;
    int enabled;
    int has_refresh;
    long long access_exp, refresh_exp;
    long long window;                     /* -1 = the test default (7 days) */
    enum conn_status want;
};

static const struct status_case status_cases[] = {
    { "active", CONN_ACTIVE, 1, 1, NOW + HOUR, NOW + 180 * DAY, -1, CONN_ACTIVE },
    { "disabled wins", CONN_ACTIVE, 0, 1, NOW + HOUR, NOW + 180 * DAY, -1, CONN_DISABLED },
    { "disabled over needs_reauth", CONN_NEEDS_REAUTH, 0, 1, 0, 0, -1, CONN_DISABLED },
    { "disabled over expiring", CONN_ACTIVE, 0, 0, NOW + DAY, 0, -1, CONN_DISABLED },
    { "needs_reauth", CONN_NEEDS_REAUTH, 1, 1, NOW - HOUR, NOW + DAY, -1, CONN_NEEDS_REAUTH },
    { "error", CONN_ERROR, 1, 1, NOW + HOUR, NOW + DAY, -1, CONN_ERROR },
    { "refresh token ends soon", CONN_ACTIVE, 1, 1, NOW + HOUR, NOW + 3 * DAY, -1, CONN_EXPIRING },
    { "short access token, long refresh token", CONN_ACTIVE, 1, 1, NOW + MIN, NOW + 30 * DAY, -1, CONN_ACTIVE },
    { "refresh token without expiry", CONN_ACTIVE, 1, 1, NOW + HOUR, 0, -1, CONN_ACTIVE },
    { "long-lived token ends soon", CONN_ACTIVE, 1, 0, NOW + 3 * DAY, 0, -1, CONN_EXPIRING },
    { "long-lived token ends later", CONN_ACTIVE, 1, 0, NOW + 8 * DAY, 0, -1, CONN_ACTIVE },
    { "no expiry (cookies, OAuth 1.0a)", CONN_ACTIVE, 1, 0, 0, 0, -1, CONN_ACTIVE },
    { "at the window's edge", CONN_ACTIVE, 1, 0, NOW + 7 * DAY, 0, -1, CONN_EXPIRING },
    { "just past the window", CONN_ACTIVE, 1, 0, NOW + 7 * DAY + 1, 0, -1, CONN_ACTIVE },
    { "already ended", CONN_ACTIVE, 1, 0, NOW - 1, 0, -1, CONN_EXPIRING },
    { "no window", CONN_ACTIVE, 1, 0, NOW + 1, 0, 0, CONN_ACTIVE },
    { "wider window", CONN_ACTIVE, 1, 1, NOW + HOUR, NOW + 20 * DAY, 30 * DAY, CONN_EXPIRING },
};

static void test_shown_status(void **state)
{
    struct conf *c = test_conf();

    for (size_t i = 0; i < sizeof status_cases / sizeof status_cases[0]; i++) {
        const struct status_case *t = &status_cases[i];
        enum conn_status got;

        c->connection_expiring_window = t->window < 0 ? 7 * DAY : t->window;
        got = conn_shown_status(c, t->stored, t->enabled, t->has_refresh, t->access_exp, t->refresh_exp, NOW);
        if (got != t->want)
            fail_msg("%s: %s, expected %s", t->name, conn_status_name(got), conn_status_name(t->want));
    }
    conf_free(c);
}

static void test_status_names(void **state)
{
    static const char *const names[] = { "active", "expiring", "needs_reauth", "error", "disabled" };
    enum conn_status s;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        assert_int_equal(conn_status_parse(names[i], &s), 0);
        assert_int_equal(s, (enum conn_status)i);
        assert_string_equal(conn_status_name(s), names[i]);
    }
    assert_int_equal(conn_status_parse("Active", &s), CP_EINVAL);
    assert_int_equal(conn_status_parse("", &s), CP_EINVAL);
    assert_int_equal(conn_status_parse(NULL, &s), CP_EINVAL);
}

/* ------------------------------------------------------------ JSON -- */

static struct json_object *parse_json(const struct buf *b)
{
    struct json_object *obj = NULL;

    if (json_parse(b->data, b->len, &json_default_limits, &obj, NULL))
        fail_msg("not JSON: %s", buf_str(b));
    return obj;
}

static void test_json(void **state)
{
    static const char *const members[] = {
        "id", "user_id", "platform", "auth_kind", "remote_id", "username", "display_name",
        "avatar_url", "status", "enabled", "sync_interval", "effective_sync_interval", "scopes",
        "has_refresh_token", "token_expires_at", "refresh_token_expires_at", "next_refresh_at",
        "last_refreshed_at", "last_checked_at", "last_error", "last_error_at", "last_sync_at",
        "next_sync_at", "last_sync_error", "last_video_at", "videos_seen", "created_at",
        "updated_at", "sandbox",
    };
    struct conf *c = test_conf();
    struct connection k;
    struct json_object *obj, *v;
    const char *s;
    long long n;
    struct buf b;

    memset(&k, 0, sizeof k);
    k.id = 12;
    k.user_id = 3;
    k.platform = PLATFORM_YOUTUBE;
    k.auth_kind = AUTH_OAUTH2;
    snprintf(k.remote_id, sizeof k.remote_id, "UC123");
    snprintf(k.username, sizeof k.username, "sandboxshorts");
    snprintf(k.display_name, sizeof k.display_name, "Sandbox \"Shorts\"");
    snprintf(k.scopes, sizeof k.scopes, "a b,c");
    k.status = CONN_EXPIRING;
    k.enabled = 1;
    k.has_refresh_token = 1;
    k.access_expires_at = 1795860000000LL;          /* 2026-11-28T10:00:00.000Z */
    k.refresh_due_at = 1795860000123LL;
    k.created_at = 1795860000007LL;
    c->sandbox = 1;

    buf_init(&b, 16384);
    assert_int_equal(conn_to_json(&k, c, &b), 0);
    obj = parse_json(&b);
    assert_int_equal(json_object_object_length(obj), (int)(sizeof members / sizeof members[0]));
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        if (!json_object_object_get_ex(obj, members[i], NULL))
            fail_msg("no member %s in %s", members[i], buf_str(&b));
    assert_int_equal(json_get_string(obj, "platform", &s), 0);
    assert_string_equal(s, "youtube");
    assert_int_equal(json_get_string(obj, "status", &s), 0);
    assert_string_equal(s, "expiring");
    assert_int_equal(json_get_string(obj, "display_name", &s), 0);
    assert_string_equal(s, "Sandbox \"Shorts\"");
    assert_int_equal(json_get_string(obj, "token_expires_at", &s), 0);
    assert_string_equal(s, "2026-11-28T10:00:00.000Z");
    assert_int_equal(json_get_string(obj, "next_refresh_at", &s), 0);
    assert_string_equal(s, "2026-11-28T10:00:00.123Z");
    assert_int_equal(json_get_string(obj, "created_at", &s), 0);
    assert_string_equal(s, "2026-11-28T10:00:00.007Z");
    assert_int_equal(json_get_string(obj, "last_refreshed_at", &s), CP_ENOTFOUND);   /* null */
    assert_true(json_object_object_get_ex(obj, "sync_interval", &v) && v == NULL);
    assert_int_equal(json_get_int(obj, "effective_sync_interval", &n), 0);
    assert_int_equal(n, 300);
    assert_int_equal(json_get_string(obj, "scopes", &s), 0);
    assert_string_equal(s, "a b,c");
    assert_true(json_object_object_get_ex(obj, "last_error", &v) && v == NULL);
    json_object_put(obj);

    k.sync_interval_s = 900;
    snprintf(k.last_error, sizeof k.last_error, "HTTP 503 \"Service Unavailable\"");
    k.last_error_at = 1795860000000LL;
    buf_reset(&b);
    assert_int_equal(conn_to_json(&k, c, &b), 0);
    obj = parse_json(&b);
    assert_int_equal(json_get_int(obj, "sync_interval", &n), 0);
    assert_int_equal(n, 900);
    assert_int_equal(json_get_int(obj, "effective_sync_interval", &n), 0);
    assert_int_equal(n, 900);
    assert_int_equal(json_get_string(obj, "last_error", &s), 0);
    assert_string_equal(s, "HTTP 503 \"Service Unavailable\"");
    assert_int_equal(json_get_string(obj, "last_error_at", &s), 0);
    assert_string_equal(s, "2026-11-28T10:00:00.000Z");
    json_object_put(obj);

    /* A buffer too small fails rather than leaving half an object. */
    buf_free(&b);
    buf_init(&b, 64);
    assert_int_not_equal(conn_to_json(&k, c, &b), 0);
    buf_free(&b);
    conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_due),
        cmocka_unit_test(test_refresh_due_follows_configuration),
        cmocka_unit_test(test_shown_status),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_json),
    };

    return cmocka_run_group_tests_name("connections", tests, NULL, NULL);
}
