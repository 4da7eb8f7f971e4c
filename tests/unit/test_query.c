/* Query-string parameters and strict ids. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "query.h"

struct get_case {
    const char *query;
    const char *name;
    size_t cap;
    int want_rc;
    const char *want;
};

static const struct get_case get_cases[] = {
    { "limit=5", "limit", 32, 0, "5" },
    { "a=1&limit=5&b=2", "limit", 32, 0, "5" },
    { "climit=5&limit=6", "limit", 32, 0, "6" },
    { "limitx=5", "limit", 32, CP_ENOTFOUND, "" },
    { "", "limit", 32, CP_ENOTFOUND, "" },
    { NULL, "limit", 32, CP_ENOTFOUND, "" },
    { "q", "q", 32, 0, "" },
    { "q=", "q", 32, 0, "" },
    { "q=a+b%20c", "q", 32, 0, "a b c" },
    { "q=%2Bx%25y%5f", "q", 32, 0, "+x%y_" },
    { "q=caf%C3%A9", "q", 32, 0, "caf\xc3\xa9" },
    { "q=a=b", "q", 32, 0, "a=b" },
    { "q=%", "q", 32, CP_EINVAL, "" },
    { "q=%4", "q", 32, CP_EINVAL, "" },
    { "q=%zz", "q", 32, CP_EINVAL, "" },
    { "q=a%00b", "q", 32, CP_EINVAL, "" },
    { "q=%FF", "q", 32, CP_EINVAL, "" },
    { "q=%C3", "q", 32, CP_EINVAL, "" },
    { "q=%C0%AF", "q", 32, CP_EINVAL, "" },
    { "q=\xc3\xa9", "q", 32, 0, "\xc3\xa9" },
    { "q=1&q=2", "q", 32, CP_EINVAL, "" },
    { "q=abcd", "q", 5, 0, "abcd" },
    { "q=abcde", "q", 5, CP_ETOOBIG, "" },
    { "q=%41%42%43%44%45", "q", 5, CP_ETOOBIG, "" },
};

static void test_query_get(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof get_cases / sizeof get_cases[0]; i++) {
        const struct get_case *c = &get_cases[i];
        char out[64];
        memset(out, 'x', sizeof out);
        int rc = query_get(c->query, c->name, out, c->cap);
        if (rc != c->want_rc || strcmp(out, c->want) != 0)
            fail_msg("case %zu (%s): rc %d out \"%s\", want %d \"%s\"", i,
                     c->query ? c->query : "(null)", rc, out, c->want_rc, c->want);
    }
}

struct id_case {
    const char *text;
    int want_rc;
    long long want;
};

static const struct id_case id_cases[] = {
    { "1", 0, 1 },
    { "42", 0, 42 },
    { "9223372036854775807", 0, 9223372036854775807LL },
    { "9223372036854775808", CP_EINVAL, 0 },
    { "9999999999999999999", CP_EINVAL, 0 },
    { "99999999999999999999", CP_EINVAL, 0 },
    { "0", CP_EINVAL, 0 },
    { "007", CP_EINVAL, 0 },
    { "", CP_EINVAL, 0 },
    { "-1", CP_EINVAL, 0 },
    { "+1", CP_EINVAL, 0 },
    { "1a", CP_EINVAL, 0 },
    { "abc", CP_EINVAL, 0 },
    { " 1", CP_EINVAL, 0 },
    { "1 ", CP_EINVAL, 0 },
};

static void test_parse_utc_time(void **state)
{
    static const struct { const char *in; const char *out; } cases[] = {
        { "2026-11-22T05:00:00Z", "2026-11-22 05:00:00.000000" },
        { "2026-11-22t05:00:00.5z", "2026-11-22 05:00:00.500000" },
        { "2024-02-29T23:59:59.123456Z", "2024-02-29 23:59:59.123456" },
        { "2023-02-29T00:00:00Z", NULL },          /* not a leap year */
        { "2026-11-22T05:00:00", NULL },           /* no zone */
        { "2026-11-22T05:00:00+01:00", NULL },     /* only UTC */
        { "2026-11-22T24:00:00Z", NULL },
        { "2026-13-01T00:00:00Z", NULL },
        { "2026-11-22T05:00:00.Z", NULL },
        { "2026-11-22T05:00:00.1234567Z", NULL },  /* more than 6 digits */
        { "0999-01-01T00:00:00Z", NULL },          /* before DATETIME's range */
        { "", NULL },
    };
    char out[48];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse_utc_time(cases[i].in, out, sizeof out);

        if (cases[i].out) {
            if (rc != 0 || strcmp(out, cases[i].out) != 0)
                fail_msg("%s: rc %d, got '%s'", cases[i].in, rc, rc ? "" : out);
        } else if (rc == 0) {
            fail_msg("%s: accepted as '%s'", cases[i].in, out);
        }
    }
}

static void test_parse_id(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof id_cases / sizeof id_cases[0]; i++) {
        long long v = -5;
        int rc = parse_id(id_cases[i].text, &v);
        if (rc != id_cases[i].want_rc || v != id_cases[i].want)
            fail_msg("\"%s\": rc %d value %lld, want %d %lld", id_cases[i].text, rc, v,
                     id_cases[i].want_rc, id_cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_parse_utc_time),
    };

    return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
