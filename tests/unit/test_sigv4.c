#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct sigv4_key aws_example = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3",
};

/* The AWS S3 documentation's GET example (platforms.md test vectors). */
static void test_authorization_vector(void **state)
{
    const struct sigv4_param headers[] = {
        { "Range", "bytes=0-9" },
        { "x-amz-content-sha256", EMPTY_SHA256 },
        { "x-amz-date", "20130524T000000Z" },
    };
    struct sigv4_request r = {
        .method = "GET", .host = "examplebucket.s3.amazonaws.com", .path = "/test.txt",
        .headers = headers, .nheaders = 3, .payload_hash = EMPTY_SHA256, .amz_date = "20130524T000000Z",
    };
    struct buf b;

    buf_init(&b, 4096);
    assert_int_equal(sigv4_authorization(&aws_example, &r, &b), 0);
    assert_string_equal(buf_str(&b),
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    /* header values are trimmed and names folded: the same signature */
    const struct sigv4_param messy[] = {
        { "RANGE", "  bytes=0-9 " },
        { "X-Amz-Content-Sha256", EMPTY_SHA256 },
        { "X-Amz-Date", "20130524T000000Z" },
    };
    r.headers = messy;
    buf_reset(&b);
    assert_int_equal(sigv4_authorization(&aws_example, &r, &b), 0);
    assert_non_null(strstr(buf_str(&b), "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
    /* another body hash, path or secret: another signature */
    r.payload_hash = SIGV4_UNSIGNED_PAYLOAD;
    buf_reset(&b);
    assert_int_equal(sigv4_authorization(&aws_example, &r, &b), 0);
    assert_null(strstr(buf_str(&b), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
    buf_free(&b);
}

/* The AWS documentation's presigned URL example (recomputed with an
 * independent implementation). */
static void test_presign_vector(void **state)
{
    struct sigv4_request r = {
        .method = "GET", .host = "examplebucket.s3.amazonaws.com", .path = "/test.txt",
        .payload_hash = EMPTY_SHA256, .amz_date = "20130524T000000Z",
    };
    struct buf b;

    buf_init(&b, 4096);
    assert_int_equal(sigv4_presign(&aws_example, &r, 86400, &b), 0);
    assert_string_equal(buf_str(&b),
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
        "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    buf_reset(&b);
    assert_int_equal(sigv4_presign(&aws_example, &r, 0, &b), CP_EINVAL);
    assert_int_equal(sigv4_presign(&aws_example, &r, SIGV4_EXPIRES_MAX + 1, &b), CP_EINVAL);
    buf_free(&b);
}

static void test_encoding_and_refusals(void **state)
{
    struct buf b;
    struct sigv4_request r = {
        .method = "GET", .host = "h", .path = "/a", .payload_hash = EMPTY_SHA256, .amz_date = "20130524T000000Z",
    };
    static const char *const bad_dates[] = { "20130524", "20130524T000000", "2013052AT000000Z", "20130524X000000Z" };

    buf_init(&b, 4096);
    assert_int_equal(sigv4_encode("videos/a b+c~é.mp4", strlen("videos/a b+c~é.mp4"), 1, &b), 0);
    assert_string_equal(buf_str(&b), "videos/a%20b%2Bc~%C3%A9.mp4");
    buf_reset(&b);
    assert_int_equal(sigv4_encode("a/b", 3, 0, &b), 0);
    assert_string_equal(buf_str(&b), "a%2Fb");
    for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
        r.amz_date = bad_dates[i];
        buf_reset(&b);
        assert_int_equal(sigv4_authorization(&aws_example, &r, &b), CP_EINVAL);
    }
    r.amz_date = "20130524T000000Z";
    r.path = "relative";
    assert_int_equal(sigv4_authorization(&aws_example, &r, &b), CP_EINVAL);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authorization_vector),
        cmocka_unit_test(test_presign_vector),
        cmocka_unit_test(test_encoding_and_refusals),
    };
    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}
