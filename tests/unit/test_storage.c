#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "storage.h"

#define MIB (1024LL * 1024)

static void test_key_ok(void **state)
{
    static const struct { const char *key; int ok; } cases[] = {
        { "videos/12/345.mp4", 1 },
        { "thumbs/1/2.jpg", 1 },
        { "a", 1 },
        { "a-b_c.d/e", 1 },
        { "", 0 },
        { "/videos/1.mp4", 0 },
        { "videos/1.mp4/", 0 },
        { "videos//1.mp4", 0 },
        { "videos/../etc/passwd", 0 },
        { "..", 0 },
        { "a..b", 0 },
        { ".scratch/x", 0 },
        { "videos/.hidden", 0 },
        { "./a", 0 },
        { "videos/1 2.mp4", 0 },
        { "videos/1%2e.mp4", 0 },
        { "videos\\1.mp4", 0 },
        { "vid\xc3\xa9o.mp4", 0 },
        { "a?b", 0 },
    };
    char longkey[STORAGE_KEY_MAX + 2];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (storage_key_ok(cases[i].key) != cases[i].ok)
            fail_msg("key \"%s\": expected %d", cases[i].key, cases[i].ok);
    }
    assert_false(storage_key_ok(NULL));
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[STORAGE_KEY_MAX] = '\0';
    assert_true(storage_key_ok(longkey));
    longkey[STORAGE_KEY_MAX] = 'a';
    longkey[STORAGE_KEY_MAX + 1] = '\0';
    assert_false(storage_key_ok(longkey));
}

/* Expected digests: base64url(MD5(expires + "/media/" + key + " " +
 * secret)) without padding, as nginx's secure_link_md5 computes them. */
static void test_local_link(void **state)
{
    static const struct {
        const char *base, *key, *secret;
        long long expires;
        const char *url;
    } cases[] = {
        { "https://cp.example.com", "videos/12/345.mp4", "s3cret", 2147483647LL,
          "https://cp.example.com/media/videos/12/345.mp4?md5=HRjduCssDDtZqi0jBKJS1g"
          "&expires=2147483647" },
        { "http://127.0.0.1:8080/", "thumbs/1/2.jpg", "k", 1700000000LL,
          "http://127.0.0.1:8080/media/thumbs/1/2.jpg?md5=VaYBtXcE-LeHkz45uIluzA"
          "&expires=1700000000" },
    };
    struct buf out;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_init(&out, 4096);
        assert_int_equal(storage_local_link(cases[i].base, cases[i].key, cases[i].expires,
                                            cases[i].secret, &out), 0);
        assert_string_equal(buf_str(&out), cases[i].url);
        buf_free(&out);
    }
    buf_init(&out, 4096);
    assert_int_equal(storage_local_link("http://x", "videos/../a", 1, "k", &out), CP_EINVAL);
    assert_int_equal(storage_local_link("http://x", "a", 1, "", &out), CP_EINVAL);
    assert_int_equal(storage_local_link("http://x", "a", 0, "k", &out), CP_EINVAL);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_plan_parts(void **state)
{
    static const struct { long long size, part, want_len, want_n; int rc; } cases[] = {
        { 12 * MIB, 5 * MIB, 5 * MIB, 3, 0 },
        { 10 * MIB, 5 * MIB, 5 * MIB, 2, 0 },
        { 10 * MIB + 1, 5 * MIB, 5 * MIB, 3, 0 },
        { 1, 5 * MIB, 5 * MIB, 1, 0 },
        /* 100 GiB in 5 MiB parts would be 20,480 parts: raised to fit 10,000. */
        { 100LL * 1024 * MIB, 5 * MIB, 10737419, 10000, 0 },
        { 0, 5 * MIB, 0, 0, CP_EINVAL },
        { 5, 0, 0, 0, CP_EINVAL },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long len = -1, n = -1;
        int rc = storage_s3_plan_parts(cases[i].size, cases[i].part, &len, &n);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(len, cases[i].want_len);
        assert_int_equal(n, cases[i].want_n);
        if (!rc) {
            assert_true(n <= 10000);
            assert_true((n - 1) * len < cases[i].size && n * len >= cases[i].size);
        }
    }
}

static void test_upload_id(void **state)
{
    static const char ok[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Bucket>media</Bucket><Key>videos/1/2.mp4</Key>"
        "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
        "</InitiateMultipartUploadResult>";
    static const char *const bad[] = {
        "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>",
        "<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>",
        "<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>",
        "<InitiateMultipartUploadResult><UploadId>abc",
        "",
    };
    struct buf id;

    (void)state;
    buf_init(&id, 1024);
    assert_int_equal(storage_s3_upload_id(ok, strlen(ok), &id), 0);
    assert_string_equal(buf_str(&id), "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&id);
        assert_int_equal(storage_s3_upload_id(bad[i], strlen(bad[i]), &id), CP_EPROTO);
        assert_int_equal(id.len, 0);
    }
    buf_free(&id);
}

static void test_error_body(void **state)
{
    static const char err[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
        "<Message>Reduce your request rate.</Message><RequestId>1</RequestId></Error>";
    static const char not_err[] = "<ListBucketResult><Error>x</Error></ListBucketResult>";
    struct buf code, message;

    (void)state;
    buf_init(&code, 128);
    buf_init(&message, 256);
    assert_int_equal(storage_s3_error(err, strlen(err), &code, &message), 1);
    assert_string_equal(buf_str(&code), "SlowDown");
    assert_string_equal(buf_str(&message), "Reduce your request rate.");
    buf_reset(&code);
    assert_int_equal(storage_s3_error(not_err, strlen(not_err), &code, NULL), 0);
    assert_int_equal(storage_s3_error("", 0, &code, NULL), 0);
    assert_int_equal(code.len, 0);
    buf_free(&code);
    buf_free(&message);
}

static void test_complete_result(void **state)
{
    static const struct { const char *xml; int rc; const char *err_has; } cases[] = {
        { "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult "
          "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>x</Location>"
          "<ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag></CompleteMultipartUploadResult>",
          0, NULL },
        /* S3 may answer 200 and report the failure in the body. */
        { "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<Error><Code>InternalError</Code>"
          "<Message>We encountered an internal error.</Message></Error>",
          CP_ERETRY, "InternalError" },
        { "<Error><Code>InvalidPart</Code><Message>One or more parts could not be found"
          "</Message></Error>", CP_EPROTO, "InvalidPart" },
        { "", CP_EPROTO, "without a result" },
        { "<html>bad gateway</html>", CP_EPROTO, "without a result" },
    };
    struct buf err;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_init(&err, 512);
        assert_int_equal(storage_s3_complete_result(cases[i].xml, strlen(cases[i].xml), &err),
                         cases[i].rc);
        if (cases[i].err_has)
            assert_non_null(strstr(buf_str(&err), cases[i].err_has));
        buf_free(&err);
    }
}

/* The local backend end to end in a temporary directory. */
static void test_local_backend(void **state)
{
    char dir[] = "/tmp/cp-test-storage.XXXXXX", src[256], path[512];
    struct conf *c = NULL;
    struct storage *s = NULL;
    struct buf err, url;
    long long bytes = -1;
    FILE *f;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(conf_defaults(&c), 0);
    free(c->storage_dir);
    c->storage_dir = strdup(dir);
    free(c->media_url_secret);
    c->media_url_secret = strdup("k");
    buf_init(&err, 1024);
    assert_int_equal(storage_open(c, &s, &err), 0);
    assert_int_equal(storage_backend_of(s), STORAGE_LOCAL);
    assert_string_equal(storage_backend_name(STORAGE_LOCAL), "local");
    assert_string_equal(storage_backend_name(STORAGE_S3), "s3");

    snprintf(src, sizeof src, "%s/in.mp4", storage_scratch_dir(s));
    f = fopen(src, "w");
    assert_non_null(f);
    fputs("hello media", f);
    fclose(f);
    assert_int_equal(storage_put_file(s, "videos/1/2.mp4", src, "video/mp4", &err), 0);
    assert_int_equal(access(src, F_OK), -1);
    assert_int_equal(storage_stat(s, "videos/1/2.mp4", &bytes, &err), 0);
    assert_int_equal(bytes, 11);
    snprintf(path, sizeof path, "%s/out", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(storage_get_to_fd(s, "videos/1/2.mp4", fd, &bytes, &err), 0);
    close(fd);
    assert_int_equal(bytes, 11);
    assert_int_equal(storage_put_file(s, "../escape", src, NULL, &err), CP_EINVAL);

    buf_init(&url, 4096);
    assert_int_equal(storage_signed_url(s, "videos/1/2.mp4", 60000, &url), 0);
    assert_non_null(strstr(buf_str(&url), "/media/videos/1/2.mp4?md5="));
    buf_free(&url);

    assert_int_equal(storage_delete(s, "videos/1/2.mp4", &err), 0);
    assert_int_equal(storage_delete(s, "videos/1/2.mp4", &err), 0);
    assert_int_equal(storage_stat(s, "videos/1/2.mp4", &bytes, &err), CP_ENOTFOUND);
    assert_int_equal(bytes, 0);

    storage_free(s);
    storage_free(NULL);
    unlink(path);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
    buf_free(&err);
    conf_free(c);
}

static void test_s3_config_incomplete(void **state)
{
    char dir[] = "/tmp/cp-test-storage.XXXXXX";
    struct conf *c = NULL;
    struct storage *s = NULL;
    struct buf err;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(conf_defaults(&c), 0);
    free(c->storage_dir);
    c->storage_dir = strdup(dir);
    c->storage_backend = STORAGE_S3;
    buf_init(&err, 1024);
    assert_int_equal(storage_open(c, &s, &err), CP_EINVAL);
    assert_null(s);
    assert_non_null(strstr(buf_str(&err), "s3_endpoint"));
    buf_free(&err);
    conf_free(c);
    {
        /* storage_dir and its scratch directory were made before the check. */
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_ok),
        cmocka_unit_test(test_local_link),
        cmocka_unit_test(test_plan_parts),
        cmocka_unit_test(test_upload_id),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_complete_result),
        cmocka_unit_test(test_local_backend),
        cmocka_unit_test(test_s3_config_incomplete),
    };
    return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
