#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "tiktok_sig.h"

#define SECRET "client-secret-123"
#define BODY "{\"client_key\":\"awx\",\"event\":\"video.publish.completed\",\"create_time\":1700000000," \
             "\"user_openid\":\"u1\",\"content\":\"{\\\"share_id\\\":\\\"v1\\\"}\"}"
/* Computed independently (Python's hmac module). */
#define SIG "f731d4bb118772bdf797d10135592d2d0d09525af788460cb95c21c08219ec21"
#define NOW 1700000000LL

static enum tiktok_sig_result check(const char *header, const char *body)
{
    return tiktok_sig_verify(header, body, strlen(body), SECRET, NOW, 300, NULL);
}

static void test_vector_and_make(void **state)
{
    char header[128];
    long long t = 0;

    assert_int_equal(tiktok_sig_verify("t=1700000000,s=" SIG, BODY, strlen(BODY), SECRET, NOW, 300, &t),
                     TIKTOK_SIG_OK);
    assert_int_equal(t, NOW);
    assert_int_equal(tiktok_sig_make(NOW, BODY, strlen(BODY), SECRET, header, sizeof header), 0);
    assert_string_equal(header, "t=1700000000,s=" SIG);
    /* order of elements, unknown elements, a second (old-secret) s= */
    assert_int_equal(check("s=" SIG ",t=1700000000", BODY), TIKTOK_SIG_OK);
    assert_int_equal(check("t=1700000000,v=2,s=" SIG, BODY), TIKTOK_SIG_OK);
    assert_int_equal(check("t=1700000000,s=0000000000000000000000000000000000000000000000000000000000000000,s=" SIG,
                           BODY), TIKTOK_SIG_OK);
    assert_int_equal(tiktok_sig_make(NOW, BODY, strlen(BODY), SECRET, header, 20), CP_ETOOBIG);
}

static void test_refusals(void **state)
{
    static const struct { const char *header; const char *body; enum tiktok_sig_result want; } cases[] = {
        /* a modified body, another secret's signature, a shifted time */
        { "t=1700000000,s=" SIG, BODY " ", TIKTOK_SIG_MISMATCH },
        { "t=1700000000,s=" SIG, "{}", TIKTOK_SIG_MISMATCH },
        { "t=1700000001,s=" SIG, BODY, TIKTOK_SIG_MISMATCH },
        { "t=1700000000,s=e731d4bb118772bdf797d10135592d2d0d09525af788460cb95c21c08219ec21", BODY,
          TIKTOK_SIG_MISMATCH },
        /* too old, too far in the future */
        { "t=1699999699,s=" SIG, BODY, TIKTOK_SIG_STALE },
        { "t=1700000301,s=" SIG, BODY, TIKTOK_SIG_STALE },
        /* malformed */
        { "", BODY, TIKTOK_SIG_MALFORMED },
        { "t=1700000000", BODY, TIKTOK_SIG_MALFORMED },
        { "s=" SIG, BODY, TIKTOK_SIG_MALFORMED },
        { "t=17000x0000,s=" SIG, BODY, TIKTOK_SIG_MALFORMED },
        { "t=-1700000000,s=" SIG, BODY, TIKTOK_SIG_MALFORMED },
        { "t=1700000000,t=1700000000,s=" SIG, BODY, TIKTOK_SIG_MALFORMED },
        { "t=1700000000,s=F731D4BB118772BDF797D10135592D2D0D09525AF788460CB95C21C08219EC21", BODY,
          TIKTOK_SIG_MALFORMED },
        { "t=1700000000,s=f731d4bb", BODY, TIKTOK_SIG_MALFORMED },
        { "t=1700000000,s=g731d4bb118772bdf797d10135592d2d0d09525af788460cb95c21c08219ec21", BODY,
          TIKTOK_SIG_MALFORMED },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum tiktok_sig_result got = check(cases[i].header, cases[i].body);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): %s, expected %s", i, cases[i].header, tiktok_sig_result_name(got),
                     tiktok_sig_result_name(cases[i].want));
    }
    assert_int_equal(tiktok_sig_verify(NULL, BODY, strlen(BODY), SECRET, NOW, 300, NULL), TIKTOK_SIG_MALFORMED);
    /* an empty secret verifies nothing */
    assert_int_equal(tiktok_sig_verify("t=1700000000,s=" SIG, BODY, strlen(BODY), "", NOW, 300, NULL),
                     TIKTOK_SIG_MALFORMED);
    /* the bound holds exactly at its edge */
    assert_int_equal(tiktok_sig_verify("t=1700000000,s=" SIG, BODY, strlen(BODY), SECRET, NOW + 300, 300, NULL),
                     TIKTOK_SIG_OK);
    assert_int_equal(tiktok_sig_verify("t=1700000000,s=" SIG, BODY, strlen(BODY), SECRET, NOW + 301, 300, NULL),
                     TIKTOK_SIG_STALE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_and_make),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests_name("tiktok_sig", tests, NULL, NULL);
}
