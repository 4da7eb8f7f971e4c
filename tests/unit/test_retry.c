#include "config.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "retry.h"

#define RND_MAX ULLONG_MAX
#define RND_HALF (1ULL << 63)
#define BASE 1000LL
#define CAP 60000LL

/* ----------------------------------------------------------- backoff -- */

struct backoff_case {
    const char *name;
    int n;
    long long base, cap;
    unsigned long long rnd;
    long long expected;
};

static const struct backoff_case backoff_cases[] = {
    { "first retry, rnd 0", 1, BASE, CAP, 0, 0 },
    { "first retry, rnd max is the base", 1, BASE, CAP, RND_MAX, 1000 },
    { "first retry, rnd half", 1, BASE, CAP, RND_HALF, 500 },
    { "second retry doubles", 2, BASE, CAP, RND_MAX, 2000 },
    { "third retry", 3, BASE, CAP, RND_MAX, 4000 },
    { "sixth retry", 6, BASE, CAP, RND_MAX, 32000 },
    { "seventh retry reaches the cap", 7, BASE, CAP, RND_MAX, CAP },
    { "attempt 1000 stays at the cap", 1000, BASE, CAP, RND_MAX, CAP },
    { "attempt 1000, rnd 0", 1000, BASE, CAP, 0, 0 },
    { "attempt INT_MAX", INT_MAX, BASE, CAP, RND_MAX, CAP },
    { "n 0 counts as the first", 0, BASE, CAP, RND_MAX, 1000 },
    { "negative n counts as the first", -5, BASE, CAP, RND_MAX, 1000 },
    { "base above the cap", 1, 5000, 1000, RND_MAX, 1000 },
    { "base 0", 10, 0, CAP, RND_MAX, 0 },
    { "negative base", 3, -10, CAP, RND_MAX, 0 },
    { "cap 0", 3, BASE, 0, RND_MAX, 0 },
    { "huge cap, shift 62", 63, 1, LLONG_MAX, RND_MAX, 1LL << 62 },
    { "huge cap, shift 63", 64, 1, LLONG_MAX, RND_MAX, LLONG_MAX },
    { "huge cap, attempt 1000", 1000, BASE, LLONG_MAX, RND_MAX, LLONG_MAX },
    { "huge cap, rnd half", 1000, BASE, LLONG_MAX, RND_HALF, 1LL << 62 },
    { "huge base and cap", 2, LLONG_MAX / 2 + 1, LLONG_MAX, RND_MAX, LLONG_MAX },
};

static void test_backoff_table(void **state)
{
    for (size_t i = 0; i < sizeof backoff_cases / sizeof backoff_cases[0]; i++) {
        const struct backoff_case *c = &backoff_cases[i];
        long long got = retry_backoff_ms(c->n, c->base, c->cap, c->rnd);

        if (got != c->expected)
            fail_msg("%s: got %lld, expected %lld", c->name, got, c->expected);
    }
}

/* The upper bound doubles per retry until the cap, and never shrinks. */
static void test_backoff_growth(void **state)
{
    long long prev = 0, expect = BASE;

    for (int n = 1; n <= 1000; n++) {
        long long upper = retry_backoff_ms(n, BASE, CAP, RND_MAX);

        if (upper != (expect < CAP ? expect : CAP))
            fail_msg("retry %d: upper bound %lld, expected %lld", n, upper,
                     expect < CAP ? expect : CAP);
        assert_true(upper >= prev);
        prev = upper;
        if (expect < CAP)
            expect *= 2;
    }
}

/* Full jitter: values cover the whole interval evenly, none outside it. */
static void test_backoff_spread(void **state)
{
    enum { BINS = 10, DRAWS = 100000 };
    unsigned long long x = 0x9e3779b97f4a7c15ULL;
    long long upper = 16000, lo = LLONG_MAX, hi = -1;
    int bins[BINS] = { 0 };

    for (int i = 0; i < DRAWS; i++) {
        long long v;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = retry_backoff_ms(5, BASE, CAP, x);
        assert_true(v >= 0 && v <= upper);
        if (v < lo)
            lo = v;
        if (v > hi)
            hi = v;
        bins[v * BINS / (upper + 1)]++;
    }
    assert_true(lo < upper / 100);
    assert_true(hi > upper - upper / 100);
    for (int b = 0; b < BINS; b++)
        if (bins[b] < DRAWS / BINS * 9 / 10 || bins[b] > DRAWS / BINS * 11 / 10)
            fail_msg("bin %d holds %d of %d draws", b, bins[b], DRAWS);
}

/* ------------------------------------------------------------ decide -- */

struct decide_case {
    const char *name;
    enum job_error_class cls;
    int attempts, max_attempts;
    long long retry_after_ms;
    unsigned long long rnd;
    enum retry_action action;
    long long delay_ms;
    int refund;
};

static const struct decide_case decide_cases[] = {
    { "transient, first attempt", JOB_ERR_TRANSIENT, 1, 5, 0, RND_MAX, RETRY_AGAIN, 1000, 0 },
    { "transient, third attempt", JOB_ERR_TRANSIENT, 3, 5, 0, RND_MAX, RETRY_AGAIN, 4000, 0 },
    { "transient, jitter 0", JOB_ERR_TRANSIENT, 3, 5, 0, 0, RETRY_AGAIN, 0, 0 },
    { "transient, one before last", JOB_ERR_TRANSIENT, 4, 5, 0, RND_HALF, RETRY_AGAIN, 4000, 0 },
    { "transient, last attempt", JOB_ERR_TRANSIENT, 5, 5, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "transient, past the last", JOB_ERR_TRANSIENT, 9, 5, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "transient, one attempt only", JOB_ERR_TRANSIENT, 1, 1, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "transient, retry-after longer", JOB_ERR_TRANSIENT, 1, 5, 30000, RND_MAX, RETRY_AGAIN,
      30000, 0 },
    { "transient, retry-after shorter", JOB_ERR_TRANSIENT, 3, 5, 10, RND_MAX, RETRY_AGAIN,
      4000, 0 },
    { "transient, retry-after capped", JOB_ERR_TRANSIENT, 1, 5, RETRY_DEFER_MAX_MS * 3,
      RND_MAX, RETRY_AGAIN, RETRY_DEFER_MAX_MS, 0 },
    { "transient, retry-after on the last", JOB_ERR_TRANSIENT, 5, 5, 30000, RND_MAX,
      RETRY_DEAD, 0, 0 },
    { "lost, first attempt", JOB_ERR_LOST, 1, 3, 0, RND_MAX, RETRY_AGAIN, 1000, 0 },
    { "lost, last attempt", JOB_ERR_LOST, 3, 3, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "rate limited, retry-after", JOB_ERR_RATE_LIMITED, 1, 5, 5000, RND_MAX, RETRY_DEFER,
      5000, 1 },
    { "rate limited on the last attempt", JOB_ERR_RATE_LIMITED, 5, 5, 5000, RND_MAX,
      RETRY_DEFER, 5000, 1 },
    { "rate limited, no retry-after", JOB_ERR_RATE_LIMITED, 2, 5, 0, RND_MAX, RETRY_DEFER,
      2000, 1 },
    { "rate limited, retry-after capped", JOB_ERR_RATE_LIMITED, 1, 5,
      10 * 24 * 3600 * 1000LL, 0, RETRY_DEFER, RETRY_DEFER_MAX_MS, 1 },
    { "rate limited, negative retry-after", JOB_ERR_RATE_LIMITED, 1, 5, -7, RND_MAX,
      RETRY_DEFER, 1000, 1 },
    { "auth", JOB_ERR_AUTH, 1, 5, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "auth with retry-after", JOB_ERR_AUTH, 1, 5, 5000, RND_MAX, RETRY_DEAD, 0, 0 },
    { "permanent", JOB_ERR_PERMANENT, 1, 5, 0, RND_MAX, RETRY_DEAD, 0, 0 },
    { "released", JOB_ERR_RELEASED, 1, 5, 0, RND_MAX, RETRY_AGAIN, 0, 1 },
    { "released on the last attempt", JOB_ERR_RELEASED, 5, 5, 0, RND_MAX, RETRY_AGAIN, 0, 1 },
    { "not a class", (enum job_error_class)99, 1, 5, 0, RND_MAX, RETRY_DEAD, 0, 0 },
};

static void test_decide_table(void **state)
{
    const struct retry_policy p = { BASE, CAP };

    for (size_t i = 0; i < sizeof decide_cases / sizeof decide_cases[0]; i++) {
        const struct decide_case *c = &decide_cases[i];
        struct retry_decision d = retry_decide(c->cls, c->attempts, c->max_attempts,
                                               c->retry_after_ms, &p, c->rnd);

        if (d.action != c->action || d.delay_ms != c->delay_ms || d.refund_attempt != c->refund)
            fail_msg("%s: action %d delay %lld refund %d; expected %d %lld %d", c->name,
                     (int)d.action, d.delay_ms, d.refund_attempt, (int)c->action, c->delay_ms,
                     c->refund);
    }
}

/* Every delay a decision asks for stays within the policy (or the
 * deferral cap), whatever the attempt number. */
static void test_decide_bounds(void **state)
{
    const struct retry_policy p = { BASE, CAP };

    for (int attempts = 1; attempts <= 1000; attempts += 37) {
        for (int cls = 0; cls < JOB_ERR_CLASSES; cls++) {
            struct retry_decision d = retry_decide((enum job_error_class)cls, attempts, 1000,
                                                   0, &p, RND_MAX);

            assert_true(d.delay_ms >= 0 && d.delay_ms <= CAP);
        }
    }
}

/* ------------------------------------------------------------- names -- */

static void test_class_names(void **state)
{
    static const char *const expected[JOB_ERR_CLASSES] = {
        "transient", "rate_limited", "auth", "permanent", "lost", "released",
    };
    static const char *const refused[] = {
        "", "Transient", "transient ", " lost", "rate-limited", "dead", "unknown",
    };
    enum job_error_class c;

    for (int i = 0; i < JOB_ERR_CLASSES; i++) {
        const char *name = job_error_class_name((enum job_error_class)i);

        assert_string_equal(name, expected[i]);
        assert_int_equal(job_error_class_parse(name, &c), 0);
        assert_int_equal(c, i);
    }
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (job_error_class_parse(refused[i], &c) != CP_EINVAL)
            fail_msg("\"%s\" parsed as a class", refused[i]);
    assert_int_equal(job_error_class_parse(NULL, &c), CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_table),
        cmocka_unit_test(test_backoff_growth),
        cmocka_unit_test(test_backoff_spread),
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_decide_bounds),
        cmocka_unit_test(test_class_names),
    };

    return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
