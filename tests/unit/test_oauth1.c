#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "oauth1.h"
#include "pkce.h"

/* X's documented example (platforms.md test vectors). */
static const struct oauth1_param x_body[] = {
    { "status", "Hello Ladies + Gentlemen, a signed OAuth request!" },
};
static const struct oauth1_creds x_creds = {
    "xvz1evFS4wEEPTGEFPHBog", "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
    "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
};

static struct oauth1_request x_request(const char *url)
{
    return (struct oauth1_request){
        .method = "POST", .url = url, .body = x_body, .nbody = 1,
        .nonce = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", .timestamp = 1318622958,
        .with_version = 1,
    };
}

static void expect_signature(const struct oauth1_request *r, const struct oauth1_creds *c,
                             const char *want)
{
    char sig[OAUTH1_SIGNATURE_LEN + 1];

    assert_int_equal(oauth1_sign(r, c, sig, sizeof sig), 0);
    assert_string_equal(sig, want);
}

static void test_vectors(void **state)
{
    struct oauth1_request r = x_request("https://api.x.com/1.1/statuses/update.json?include_entities=true");
    struct oauth1_creds rfc = { "dpf43f3p2l4k3l03", "kd94hf93k423kf44", "nnch734d00sl2jdk",
                                "pfkkdhi9sl3r4s00" };
    struct oauth1_request rfc_req = {
        .method = "GET", .url = "http://photos.example.net/photos?file=vacation.jpg&size=original",
        .nonce = "chapoH", .timestamp = 137131202,
    };

    expect_signature(&r, &x_creds, "Ls93hJiZbQ3akF3HF3x1Bz8/zU4=");
    r = x_request("https://api.twitter.com/1.1/statuses/update.json?include_entities=true");
    expect_signature(&r, &x_creds, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
    /* scheme and host case, a default port and a fragment change nothing */
    r = x_request("HTTPS://API.Twitter.com:443/1.1/statuses/update.json?include_entities=true#top");
    expect_signature(&r, &x_creds, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
    expect_signature(&rfc_req, &rfc, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
    /* a different secret, body or method: a different signature */
    rfc.token_secret = "pfkkdhi9sl3r4s01";
    char sig[OAUTH1_SIGNATURE_LEN + 1];
    assert_int_equal(oauth1_sign(&rfc_req, &rfc, sig, sizeof sig), 0);
    assert_string_not_equal(sig, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
}

static void test_base_string(void **state)
{
    struct oauth1_request r = x_request("https://api.x.com/1.1/statuses/update.json?include_entities=true");
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(oauth1_base_string(&r, &x_creds, &b, NULL, NULL), 0);
    assert_string_equal(buf_str(&b),
        "POST&https%3A%2F%2Fapi.x.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26"
        "oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"
        "%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-"
        "GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B"
        "%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521");
    buf_free(&b);
}

static void test_encode(void **state)
{
    static const struct { const char *in; const char *out; } cases[] = {
        { "Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen" },
        { "An encoded string!", "An%20encoded%20string%21" },
        { "Dogs, Cats & Mice", "Dogs%2C%20Cats%20%26%20Mice" },
        { "\xe2\x98\x83", "%E2%98%83" },
        { "-._~AZaz09", "-._~AZaz09" },
        { "a/b?c=d", "a%2Fb%3Fc%3Dd" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b;

        buf_init(&b, 256);
        assert_int_equal(oauth1_encode(cases[i].in, strlen(cases[i].in), &b), 0);
        assert_string_equal(buf_str(&b), cases[i].out);
        buf_free(&b);
    }
}

static void test_header_and_refusals(void **state)
{
    struct oauth1_request r = x_request("https://api.x.com/1.1/statuses/update.json?include_entities=true");
    struct buf b;

    buf_init(&b, 4096);
    assert_int_equal(oauth1_authorization(&r, &x_creds, &b), 0);
    assert_non_null(strstr(buf_str(&b), "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\""));
    assert_non_null(strstr(buf_str(&b), "oauth_signature=\"Ls93hJiZbQ3akF3HF3x1Bz8%2FzU4%3D\""));
    assert_non_null(strstr(buf_str(&b), "oauth_version=\"1.0\""));
    /* without a nonce and time, fresh ones are made and signed */
    r.nonce = NULL;
    r.timestamp = 0;
    buf_reset(&b);
    assert_int_equal(oauth1_authorization(&r, &x_creds, &b), 0);
    assert_non_null(strstr(buf_str(&b), "oauth_nonce=\""));
    /* not an http(s) URL, or a broken escape in its query */
    static const char *const bad[] = { "ftp://x.com/a", "https:///a", "x.com/a", "https://x.com/a?b=%4", "https://x.com/a?b=%zz" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sig[OAUTH1_SIGNATURE_LEN + 1];
        r.url = bad[i];
        if (oauth1_sign(&r, &x_creds, sig, sizeof sig) != CP_EINVAL)
            fail_msg("%s was signed", bad[i]);
    }
    buf_free(&b);
}

static void test_pkce(void **state)
{
    char challenge[PKCE_CHALLENGE_LEN + 1], v1[PKCE_VERIFIER_LEN + 1], v2[PKCE_VERIFIER_LEN + 1];

    assert_int_equal(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge), 0);
    assert_string_equal(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_int_equal(pkce_verifier(v1), 0);
    assert_int_equal(pkce_verifier(v2), 0);
    assert_int_equal(strlen(v1), PKCE_VERIFIER_LEN);
    assert_string_not_equal(v1, v2);
    assert_int_equal(pkce_challenge(v1, challenge), 0);
    /* RFC 7636: 43..128 characters of [A-Za-z0-9-._~] */
    assert_int_equal(pkce_challenge("short", challenge), CP_EINVAL);
    assert_int_equal(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX+", challenge), CP_EINVAL);
    assert_int_equal(pkce_challenge(NULL, challenge), CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_base_string),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_header_and_refusals),
        cmocka_unit_test(test_pkce),
    };
    return cmocka_run_group_tests_name("oauth1", tests, NULL, NULL);
}
