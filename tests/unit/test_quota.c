/*
 * test_quota.c - the parts of the quota ledger that need no database:
 * the next midnight in Pacific time and the budgets a publish spends
 * from.  (The ledger itself: tests/integration/quota_layer.c.)
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "conf.h"
#include "err.h"
#include "quota.h"

#define MIN_MS (60 * 1000LL)

/* "YYYY-MM-DD HH:MM:SS.mmm" UTC as epoch ms. */
static long long utc_ms(const char *text)
{
    struct tm tm;
    int ms = 0;

    memset(&tm, 0, sizeof tm);
    if (sscanf(text, "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &ms) < 6)
        fail_msg("bad time in the table: %s", text);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

static const struct {
    const char *now;            /* UTC */
    const char *midnight;       /* the next midnight Pacific, UTC */
    const char *what;
} midnights[] = {
    { "2026-01-15 12:00:00", "2026-01-16 08:00:00", "winter (PST, UTC-8)" },
    { "2026-01-15 07:59:59.999", "2026-01-15 08:00:00", "a moment before midnight PST" },
    { "2026-01-15 08:00:00", "2026-01-16 08:00:00", "at midnight: the next one" },
    { "2026-07-04 18:00:00", "2026-07-05 07:00:00", "summer (PDT, UTC-7)" },
    { "2026-07-05 06:59:59.999", "2026-07-05 07:00:00", "a moment before midnight PDT" },
    { "2026-11-22 12:00:00", "2026-11-23 08:00:00", "late November" },
    { "2026-03-07 20:00:00", "2026-03-08 08:00:00", "Saturday before the March change" },
    { "2026-03-08 08:00:00", "2026-03-09 07:00:00", "March change day, midnight PST" },
    { "2026-03-08 09:59:59.999", "2026-03-09 07:00:00", "March change day, 01:59:59 PST" },
    { "2026-03-08 10:00:00", "2026-03-09 07:00:00", "March change day, 03:00 PDT" },
    { "2026-03-09 06:59:59.999", "2026-03-09 07:00:00", "March change day, 23:59:59 PDT" },
    { "2026-03-09 07:00:00", "2026-03-10 07:00:00", "the day after the March change" },
    { "2026-10-31 12:00:00", "2026-11-01 07:00:00", "Saturday before the November change" },
    { "2026-11-01 07:00:00", "2026-11-02 08:00:00", "November change day, midnight PDT" },
    { "2026-11-01 08:30:00", "2026-11-02 08:00:00", "November change day, first 01:30 (PDT)" },
    { "2026-11-01 08:59:59.999", "2026-11-02 08:00:00", "November change day, 01:59:59 PDT" },
    { "2026-11-01 09:00:00", "2026-11-02 08:00:00", "November change day, second 01:00 (PST)" },
    { "2026-11-01 09:30:00", "2026-11-02 08:00:00", "November change day, second 01:30 (PST)" },
    { "2026-11-02 07:59:59.999", "2026-11-02 08:00:00", "November change day, 23:59:59 PST" },
    { "2024-03-10 09:30:00", "2024-03-11 07:00:00", "2024 March change day (10th)" },
    { "2024-11-03 10:00:00", "2024-11-04 08:00:00", "2024 November change day (3rd)" },
    { "2026-12-31 22:00:00", "2027-01-01 08:00:00", "new year's eve" },
    { "2027-01-01 03:00:00", "2027-01-01 08:00:00", "new year in UTC, not yet in Pacific" },
    { "2027-01-01 07:59:59.999", "2027-01-01 08:00:00", "a moment before the new year" },
    { "2028-02-28 20:00:00", "2028-02-29 08:00:00", "into the leap day" },
    { "2028-02-29 10:00:00", "2028-03-01 08:00:00", "out of the leap day" },
    { "2027-02-28 20:00:00", "2027-03-01 08:00:00", "no leap day in 2027" },
    { "2100-03-01 09:00:00", "2100-03-02 08:00:00", "2100 is not a leap year" },
};

static void test_pacific_midnight(void **state)
{
    int failed = 0;

    for (size_t i = 0; i < sizeof midnights / sizeof midnights[0]; i++) {
        long long now = utc_ms(midnights[i].now), want = utc_ms(midnights[i].midnight);
        long long got = quota_pacific_midnight_after(now);

        if (got != want) {
            print_error("%s: after %s got %lld ms, want %s (%lld)\n", midnights[i].what,
                        midnights[i].now, got, midnights[i].midnight, want);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

/* Every day of a few years: strictly after now, within 25 hours, and a
 * fixed point for the whole day up to it. */
static void test_pacific_midnight_every_day(void **state)
{
    long long t = utc_ms("2025-12-31 00:00:00"), end = utc_ms("2029-01-02 00:00:00");

    for (; t < end; t += 37 * MIN_MS) {
        long long m = quota_pacific_midnight_after(t);

        assert_true(m > t);
        assert_true(m - t <= 25 * 60 * MIN_MS);
        assert_true(m % (60 * MIN_MS) == 0);
        assert_int_equal(quota_pacific_midnight_after(m - 1), m);
    }
}

/* ------------------------------------------------------- charges_for -- */

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = v ? strdup(v) : NULL;
    if (v)
        assert_non_null(*field);
}

struct want_charge {
    const char *scope, *scope_key, *bucket;
    long long cost, quota;
    int pacific_day;
    long long window_ms;
};

struct charges_case {
    const char *what;
    enum platform_id platform;
    const char *google_client_id, *x_consumer_key, *x_client_id;
    long long youtube_daily_units, youtube_channel_daily_uploads, x_user_posts, x_app_posts;
    int rc;
    size_t n;
    struct want_charge want[QUOTA_CHARGES_MAX];
};

static const struct charges_case charges_cases[] = {
    { "youtube with defaults", PLATFORM_YOUTUBE, NULL, NULL, NULL, 10000, 50, 100, 10000, 0, 2,
      { { "project", "default", "units", 1600, 10000, 1, 0 },
        { "channel", "42", "uploads", 1, 50, 1, 0 } } },
    { "youtube keyed by the client id", PLATFORM_YOUTUBE, "123-abc.apps.googleusercontent.com", NULL,
      NULL, 5000, 10, 100, 10000, 0, 2,
      { { "project", "123-abc.apps.googleusercontent.com", "units", 1600, 5000, 1, 0 },
        { "channel", "42", "uploads", 1, 10, 1, 0 } } },
    { "youtube without a project budget", PLATFORM_YOUTUBE, NULL, NULL, NULL, 0, 50, 100, 10000, 0, 1,
      { { "channel", "42", "uploads", 1, 50, 1, 0 } } },
    { "youtube without any budget", PLATFORM_YOUTUBE, NULL, NULL, NULL, 0, 0, 100, 10000, 0, 0, { { 0 } } },
    { "x with defaults", PLATFORM_X, NULL, NULL, NULL, 10000, 50, 100, 10000, 0, 2,
      { { "user", "42", "posts", 1, 100, 0, 15 * MIN_MS },
        { "app", "default", "posts", 1, 10000, 0, 24 * 60 * MIN_MS } } },
    { "x app keyed by the consumer key", PLATFORM_X, NULL, "ck-1", "cid-1", 10000, 50, 100, 10000, 0, 2,
      { { "user", "42", "posts", 1, 100, 0, 15 * MIN_MS },
        { "app", "ck-1", "posts", 1, 10000, 0, 24 * 60 * MIN_MS } } },
    { "x app keyed by the client id", PLATFORM_X, NULL, "", "cid-1", 10000, 50, 100, 10000, 0, 2,
      { { "user", "42", "posts", 1, 100, 0, 15 * MIN_MS },
        { "app", "cid-1", "posts", 1, 10000, 0, 24 * 60 * MIN_MS } } },
    { "x without a user budget", PLATFORM_X, NULL, NULL, NULL, 10000, 50, 0, 300, 0, 1,
      { { "app", "default", "posts", 1, 300, 0, 24 * 60 * MIN_MS } } },
    { "x without an app budget", PLATFORM_X, NULL, NULL, NULL, 10000, 50, 7, 0, 0, 1,
      { { "user", "42", "posts", 1, 7, 0, 15 * MIN_MS } } },
    { "instagram is not budgeted here", PLATFORM_INSTAGRAM, NULL, NULL, NULL, 10000, 50, 100, 10000,
      0, 0, { { 0 } } },
    { "tiktok is never published to", PLATFORM_TIKTOK, NULL, NULL, NULL, 10000, 50, 100, 10000,
      CP_EINVAL, 0, { { 0 } } },
};

static void test_charges_for(void **state)
{
    struct conf *c = NULL;

    assert_int_equal(conf_defaults(&c), 0);
    for (size_t i = 0; i < sizeof charges_cases / sizeof charges_cases[0]; i++) {
        const struct charges_case *k = &charges_cases[i];
        struct quota_charge out[QUOTA_CHARGES_MAX];
        size_t n = 99;
        int rc;

        set_str(&c->google_client_id, k->google_client_id);
        set_str(&c->x_consumer_key, k->x_consumer_key);
        set_str(&c->x_client_id, k->x_client_id);
        c->youtube_daily_units = k->youtube_daily_units;
        c->youtube_channel_daily_uploads = k->youtube_channel_daily_uploads;
        c->x_user_posts = k->x_user_posts;
        c->x_app_posts = k->x_app_posts;
        rc = quota_charges_for(c, k->platform, 42, out, QUOTA_CHARGES_MAX, &n);
        if (rc != k->rc || n != k->n)
            fail_msg("%s: rc %d n %zu, want rc %d n %zu", k->what, rc, n, k->rc, k->n);
        for (size_t j = 0; j < n; j++) {
            const struct want_charge *w = &k->want[j];

            assert_int_equal(out[j].platform, k->platform);
            assert_string_equal(out[j].scope, w->scope);
            assert_string_equal(out[j].scope_key, w->scope_key);
            assert_string_equal(out[j].bucket, w->bucket);
            assert_int_equal(out[j].cost, w->cost);
            assert_int_equal(out[j].quota, w->quota);
            assert_int_equal(out[j].pacific_day, w->pacific_day);
            assert_int_equal(out[j].window_ms, w->window_ms);
        }
    }
    conf_free(c);
}

static void test_charges_for_refusals(void **state)
{
    struct conf *c = NULL;
    struct quota_charge out[QUOTA_CHARGES_MAX];
    char long_key[QUOTA_KEY_MAX + 8];
    size_t n = 99;

    assert_int_equal(conf_defaults(&c), 0);
    /* Too little room: nothing is said to be filled. */
    assert_int_equal(quota_charges_for(c, PLATFORM_YOUTUBE, 42, out, 1, &n), CP_ETOOBIG);
    assert_int_equal(n, 0);
    /* Per-connection budgets need the connection. */
    n = 99;
    assert_int_equal(quota_charges_for(c, PLATFORM_X, 0, out, QUOTA_CHARGES_MAX, &n), CP_EINVAL);
    assert_int_equal(n, 0);
    /* A key longer than the ledger's column. */
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    set_str(&c->google_client_id, long_key);
    n = 99;
    assert_int_equal(quota_charges_for(c, PLATFORM_YOUTUBE, 42, out, QUOTA_CHARGES_MAX, &n), CP_ETOOBIG);
    assert_int_equal(n, 0);
    /* The X user window follows the configuration. */
    c->x_user_window = 5 * MIN_MS;
    assert_int_equal(quota_charges_for(c, PLATFORM_X, 7, out, QUOTA_CHARGES_MAX, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].window_ms, 5 * MIN_MS);
    assert_string_equal(out[0].scope_key, "7");
    conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pacific_midnight),
        cmocka_unit_test(test_pacific_midnight_every_day),
        cmocka_unit_test(test_charges_for),
        cmocka_unit_test(test_charges_for_refusals),
    };

    return cmocka_run_group_tests_name("quota", tests, NULL, NULL);
}
