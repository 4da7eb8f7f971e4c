#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "keyring.h"

#define KEY1 "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
#define KEY2 "2 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\n"

static struct keyring *ring(const char *text)
{
    struct keyring *k = NULL;
    struct buf err;

    buf_init(&err, 1024);
    if (keyring_parse("test", text, &k, &err))
        fail_msg("keyring_parse: %s", buf_str(&err));
    buf_free(&err);
    return k;
}

static size_t seal(const struct keyring *k, const char *plain, const char *aad, unsigned char *out,
                   size_t cap)
{
    size_t n = 0;

    assert_int_equal(keyring_seal(k, plain, strlen(plain), aad, out, cap, &n), 0);
    assert_int_equal(n, strlen(plain) + KEYRING_OVERHEAD);
    return n;
}

static void test_round_trip_and_fresh_nonces(void **state)
{
    struct keyring *k = ring(KEY1);
    unsigned char a[256], b[256];
    char plain[256];
    size_t na, nb, n;
    unsigned kid;

    na = seal(k, "refresh-token-value", "connections.refresh_token:7:42", a, sizeof a);
    nb = seal(k, "refresh-token-value", "connections.refresh_token:7:42", b, sizeof b);
    /* the same secret twice never seals the same way */
    assert_int_equal(na, nb);
    assert_memory_not_equal(a + 5, b + 5, KEYRING_NONCE_LEN);
    assert_int_equal(keyring_sealed_id(a, na, &kid), 0);
    assert_int_equal(kid, 1);
    assert_int_equal(keyring_open(k, a, na, "connections.refresh_token:7:42", plain, sizeof plain, &n), 0);
    assert_int_equal(n, strlen("refresh-token-value"));
    assert_memory_equal(plain, "refresh-token-value", n);
    /* an empty secret seals too */
    na = seal(k, "", "x", a, sizeof a);
    assert_int_equal(keyring_open(k, a, na, "x", plain, sizeof plain, &n), 0);
    assert_int_equal(n, 0);
    keyring_free(k);
}

/* One flipped bit anywhere (version, key id, nonce, ciphertext, tag) or
 * in the associated data: the value does not open and nothing comes out. */
static void test_any_change_fails(void **state)
{
    struct keyring *k = ring(KEY1);
    unsigned char s[256];
    char plain[256];
    size_t n, len = seal(k, "access-token", "connections.access_token:1:2", s, sizeof s);

    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            int rc;

            s[i] ^= (unsigned char)(1u << bit);
            memset(plain, 'Z', sizeof plain);
            rc = keyring_open(k, s, len, "connections.access_token:1:2", plain, sizeof plain, &n);
            if (rc == 0)
                fail_msg("opened with byte %zu bit %d flipped", i, bit);
            assert_int_equal(n, 0);
            assert_null(memchr(plain, 'a', sizeof plain));   /* no plaintext left behind */
            s[i] ^= (unsigned char)(1u << bit);
        }
    }
    /* the associated data binds table, row and owner */
    static const char *const other_places[] = {
        "connections.access_token:1:3", "connections.access_token:2:2",
        "connections.refresh_token:1:2", "", NULL,
    };
    for (size_t i = 0; i < sizeof other_places / sizeof other_places[0]; i++)
        assert_int_equal(keyring_open(k, s, len, other_places[i], plain, sizeof plain, &n), CP_EINVAL);
    assert_int_equal(keyring_open(k, s, len, "connections.access_token:1:2", plain, sizeof plain, &n), 0);
    keyring_free(k);
}

/* The tag is exactly 16 bytes: a value cut short (a shorter tag, which
 * OpenSSL alone would accept) or grown does not open. */
static void test_tag_length_is_exact(void **state)
{
    struct keyring *k = ring(KEY1);
    unsigned char s[256];
    char plain[256];
    size_t n, len = seal(k, "secret", "a:1:1", s, sizeof s);

    for (size_t cut = 1; cut <= KEYRING_TAG_LEN + 6; cut++)
        assert_int_not_equal(keyring_open(k, s, len - cut, "a:1:1", plain, sizeof plain, &n), 0);
    s[len] = 0;
    assert_int_equal(keyring_open(k, s, len + 1, "a:1:1", plain, sizeof plain, &n), CP_EINVAL);
    assert_int_equal(keyring_open(k, s, 3, "a:1:1", plain, sizeof plain, &n), CP_EINVAL);
    keyring_free(k);
}

/* After a rotation the new key seals and old values still open; a value
 * under a key the ring no longer has is CP_ENOTFOUND. */
static void test_rotation(void **state)
{
    struct keyring *old = ring(KEY1), *both = ring(KEY1 KEY2), *only2 = ring(KEY2);
    unsigned char a[256], b[256];
    char plain[256];
    size_t na, nb, n;
    unsigned kid;

    na = seal(old, "sealed under key 1", "t:1:1", a, sizeof a);
    assert_int_equal(keyring_current_id(both), 2);
    nb = seal(both, "sealed under key 2", "t:1:1", b, sizeof b);
    assert_int_equal(keyring_sealed_id(b, nb, &kid), 0);
    assert_int_equal(kid, 2);
    assert_int_equal(keyring_open(both, a, na, "t:1:1", plain, sizeof plain, &n), 0);
    assert_memory_equal(plain, "sealed under key 1", n);
    assert_int_equal(keyring_open(both, b, nb, "t:1:1", plain, sizeof plain, &n), 0);
    assert_int_equal(keyring_open(old, b, nb, "t:1:1", plain, sizeof plain, &n), CP_ENOTFOUND);
    assert_int_equal(keyring_open(only2, a, na, "t:1:1", plain, sizeof plain, &n), CP_ENOTFOUND);
    /* relabelling a value with another key id does not open it either */
    a[4] = 2;
    assert_int_equal(keyring_open(both, a, na, "t:1:1", plain, sizeof plain, &n), CP_EINVAL);
    keyring_free(old);
    keyring_free(both);
    keyring_free(only2);
}

static void test_limits(void **state)
{
    struct keyring *k = ring(KEY1);
    static unsigned char big[KEYRING_PLAIN_MAX + KEYRING_OVERHEAD + 1];
    unsigned char s[64];
    char aad[KEYRING_AAD_MAX + 2], small[4];
    size_t n;

    assert_int_equal(keyring_seal(k, big, KEYRING_PLAIN_MAX + 1, "a", big, sizeof big, &n), CP_ETOOBIG);
    assert_int_equal(keyring_seal(k, "abc", 3, "a", s, 3 + KEYRING_OVERHEAD - 1, &n), CP_ETOOBIG);
    memset(aad, 'x', sizeof aad - 1);
    aad[sizeof aad - 1] = '\0';
    assert_int_equal(keyring_seal(k, "abc", 3, aad, s, sizeof s, &n), CP_ETOOBIG);
    n = seal(k, "abcdefgh", "a", s, sizeof s);
    assert_int_equal(keyring_open(k, s, n, "a", small, sizeof small, &n), CP_ETOOBIG);
    assert_int_equal(keyring_aad(aad, sizeof aad, "connections.cookies", 12, 34), 0);
    assert_string_equal(aad, "connections.cookies:12:34");
    assert_int_equal(keyring_aad(small, sizeof small, "connections.cookies", 12, 34), CP_ETOOBIG);
    keyring_free(k);
}

static void test_bad_rings(void **state)
{
    static const struct { const char *text; const char *says; } cases[] = {
        { "", "no key" },
        { "# only a comment\n", "no key" },
        { "1 0001\n", "64 hex digits" },
        { "0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", "from 1" },
        { "01 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", "from 1" },
        { "x 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", "expected" },
        { "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n", "hex" },
        { KEY2 KEY1, "rise" },
        { KEY1 KEY1, "rise" },
        { "99999999999 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", "from 1" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct keyring *k = NULL;
        struct buf err;

        buf_init(&err, 1024);
        assert_int_equal(keyring_parse("ring", cases[i].text, &k, &err), CP_EINVAL);
        assert_null(k);
        if (!strstr(buf_str(&err), cases[i].says))
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, buf_str(&err), cases[i].says);
        buf_free(&err);
    }
}

static void test_ring_files(void **state)
{
    char dir[] = "/tmp/cp-keyring-test.XXXXXX", path[256];
    struct keyring *k = NULL;
    unsigned char s[128];
    char plain[128];
    struct buf err;
    struct stat st;
    unsigned id = 0;
    size_t n, len;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys", dir);
    buf_init(&err, 1024);

    assert_int_equal(keyring_create(path), 0);
    assert_int_equal(keyring_create(path), CP_ECONFLICT);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(keyring_load(path, &k, &err), 0);
    assert_int_equal(keyring_current_id(k), 1);
    len = seal(k, "before rotation", "t:1:1", s, sizeof s);
    keyring_free(k);

    assert_int_equal(keyring_add_key(path, &id, &err), 0);
    assert_int_equal(id, 2);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(keyring_load(path, &k, &err), 0);
    assert_int_equal(keyring_current_id(k), 2);
    assert_int_equal(keyring_open(k, s, len, "t:1:1", plain, sizeof plain, &n), 0);
    assert_memory_equal(plain, "before rotation", n);
    keyring_free(k);

    /* a ring others can read is refused, naming the fix */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(keyring_load(path, &k, &err), CP_EINVAL);
    assert_non_null(strstr(buf_str(&err), "chmod 600"));
    buf_reset(&err);
    assert_int_equal(keyring_add_key(path, &id, &err), CP_EINVAL);
    buf_reset(&err);
    assert_int_equal(keyring_load("/nonexistent/keys", &k, &err), CP_EIO);

    unlink(path);
    rmdir(dir);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_fresh_nonces),
        cmocka_unit_test(test_any_change_fails),
        cmocka_unit_test(test_tag_length_is_exact),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_bad_rings),
        cmocka_unit_test(test_ring_files),
    };
    return cmocka_run_group_tests_name("keyring", tests, NULL, NULL);
}
