#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "err.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- SHA-256 ---------------------------------------------------------- */

struct sha_case {
    const char *data;
    const char *digest;
};

static const struct sha_case sha_cases[] = {
    /* FIPS 180-2 examples. */
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
};

static void test_sha256_vectors(void **state)
{
    for (size_t i = 0; i < COUNT(sha_cases); i++) {
        unsigned char digest[SHA256_LEN];
        char hex[2 * SHA256_LEN + 1];

        crypto_sha256(sha_cases[i].data, strlen(sha_cases[i].data), digest);
        crypto_hex(digest, sizeof digest, hex);
        if (strcmp(hex, sha_cases[i].digest) != 0)
            fail_msg("sha256(\"%s\") = %s, expected %s", sha_cases[i].data, hex,
                     sha_cases[i].digest);
    }
}

/* ---- HMAC-SHA256 (RFC 4231) ------------------------------------------- */

struct hmac_case {
    const char *name;
    unsigned char key[32];
    size_t key_len;
    unsigned char data[64];
    size_t data_len;
    const char *mac;
};

static const struct hmac_case hmac_cases[] = {
    { "RFC 4231 case 1",
      { 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
        0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b },
      20, "Hi There", 8,
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "RFC 4231 case 2", "Jefe", 4, "what do ya want for nothing?", 28,
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { "RFC 4231 case 4",
      { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
        0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19 },
      25,
      { 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
        0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
        0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
        0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd,
        0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd, 0xcd },
      50,
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { "empty key and message", "", 0, "", 0,
      "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad" },
};

static void test_hmac_vectors(void **state)
{
    for (size_t i = 0; i < COUNT(hmac_cases); i++) {
        const struct hmac_case *c = &hmac_cases[i];
        unsigned char mac[SHA256_LEN];
        char hex[2 * SHA256_LEN + 1];
        int rc;

        rc = crypto_hmac_sha256(c->key, c->key_len, c->data, c->data_len, mac);
        if (rc != 0)
            fail_msg("%s: rc %d", c->name, rc);
        crypto_hex(mac, sizeof mac, hex);
        if (strcmp(hex, c->mac) != 0)
            fail_msg("%s: %s, expected %s", c->name, hex, c->mac);
    }
}

static void test_hmac_null_key(void **state)
{
    unsigned char a[SHA256_LEN], b[SHA256_LEN];

    /* No key at all is the empty key, and a key pointer is still checked. */
    assert_int_equal(crypto_hmac_sha256(NULL, 0, "", 0, a), 0);
    assert_int_equal(crypto_hmac_sha256("", 0, "", 0, b), 0);
    assert_memory_equal(a, b, SHA256_LEN);
    assert_int_equal(crypto_hmac_sha256(NULL, 4, "x", 1, a), CP_EINVAL);
    assert_int_equal(crypto_hmac_sha256("k", 1, NULL, 3, a), CP_EINVAL);
}

/* ---- hex -------------------------------------------------------------- */

static void test_hex_encode(void **state)
{
    static const unsigned char bytes[] = { 0x00, 0x01, 0x7f, 0x80, 0xa5, 0xff };
    char out[2 * sizeof bytes + 1];

    crypto_hex(bytes, sizeof bytes, out);
    assert_string_equal(out, "00017f80a5ff");
    crypto_hex(bytes, 0, out);
    assert_string_equal(out, "");
}

struct unhex_case {
    const char *text;
    size_t n;                   /* bytes asked for */
    int rc;
    const char *expect;         /* decoded bytes when rc == 0 */
};

static const struct unhex_case unhex_cases[] = {
    { "00017f80a5ff", 6, CP_OK, "\x00\x01\x7f\x80\xa5\xff" },
    { "00017F80A5FF", 6, CP_OK, "\x00\x01\x7f\x80\xa5\xff" },
    { "aBcD", 2, CP_OK, "\xab\xcd" },
    { "", 0, CP_OK, "" },
    { "abc", 2, CP_EINVAL, NULL },          /* odd length */
    { "abc", 1, CP_EINVAL, NULL },          /* odd length */
    { "abcd", 1, CP_EINVAL, NULL },         /* more digits than bytes */
    { "ab", 2, CP_EINVAL, NULL },           /* fewer digits than bytes */
    { "0g", 1, CP_EINVAL, NULL },
    { "g0", 1, CP_EINVAL, NULL },
    { " 0", 1, CP_EINVAL, NULL },
    { "0 ", 1, CP_EINVAL, NULL },
    { "+1", 1, CP_EINVAL, NULL },
    { "0x", 1, CP_EINVAL, NULL },
    { "ab\n", 1, CP_EINVAL, NULL },
    { "\xc3\xa9", 1, CP_EINVAL, NULL },
};

static void test_unhex_table(void **state)
{
    for (size_t i = 0; i < COUNT(unhex_cases); i++) {
        const struct unhex_case *c = &unhex_cases[i];
        unsigned char out[16];
        int rc;

        memset(out, 0xee, sizeof out);
        rc = crypto_unhex(c->text, strlen(c->text), out, c->n);
        if (rc != c->rc)
            fail_msg("unhex(\"%s\", %zu): rc %d, expected %d", c->text, c->n, rc, c->rc);
        if (rc == 0)
            assert_memory_equal(out, c->expect, c->n);
    }
}

static void test_hex_round_trip(void **state)
{
    unsigned char data[64], back[64];
    char hex[2 * sizeof data + 1];

    for (size_t n = 0; n <= sizeof data; n++) {
        assert_int_equal(crypto_random(data, n), 0);
        crypto_hex(data, n, hex);
        assert_int_equal(strlen(hex), 2 * n);
        assert_int_equal(crypto_unhex(hex, 2 * n, back, n), 0);
        assert_memory_equal(data, back, n);
    }
}

/* ---- base64url -------------------------------------------------------- */

struct b64_case {
    const char *data;
    size_t len;
    const char *text;
};

static const struct b64_case b64_cases[] = {
    /* RFC 4648 section 10, padding dropped. */
    { "", 0, "" },
    { "f", 1, "Zg" },
    { "fo", 2, "Zm8" },
    { "foo", 3, "Zm9v" },
    { "foob", 4, "Zm9vYg" },
    { "fooba", 5, "Zm9vYmE" },
    { "foobar", 6, "Zm9vYmFy" },
    /* Where the URL alphabet differs from the standard one ("+/8="). */
    { "\xfb\xff", 2, "-_8" },
    { "\xfb\xef\xbe", 3, "----" },
    { "\xff\xff\xff", 3, "____" },
    { "\x00", 1, "AA" },
    { "\x00\x00\x00", 3, "AAAA" },
    { "\x14\xfb\x9c\x03\xd9\x7e", 6, "FPucA9l-" },
    { "\x14\xfb\x9c\x03\xd9", 5, "FPucA9k" },
    { "\x14\xfb\x9c\x03", 4, "FPucAw" },
};

static void test_b64url_vectors(void **state)
{
    for (size_t i = 0; i < COUNT(b64_cases); i++) {
        const struct b64_case *c = &b64_cases[i];
        unsigned char back[16];
        char text[32];
        size_t back_len = 99;
        int rc;

        assert_int_equal(crypto_b64url_len(c->len), strlen(c->text));
        crypto_b64url(c->data, c->len, text);
        if (strcmp(text, c->text) != 0)
            fail_msg("case %zu: encoded \"%s\", expected \"%s\"", i, text, c->text);
        rc = crypto_unb64url(c->text, strlen(c->text), back, sizeof back, &back_len);
        if (rc != 0)
            fail_msg("decode \"%s\": rc %d", c->text, rc);
        assert_int_equal(back_len, c->len);
        assert_memory_equal(back, c->data, c->len);
    }
}

struct unb64_case {
    const char *name;
    const char *text;
    size_t len;                 /* 0: strlen(text) */
    int rc;
};

static const struct unb64_case unb64_cases[] = {
    { "canonical one byte", "QQ", 0, CP_OK },
    { "non-canonical one byte", "QR", 0, CP_EINVAL },
    { "non-canonical one byte, high spare bit", "QY", 0, CP_EINVAL },
    { "canonical two bytes", "QUE", 0, CP_OK },
    { "non-canonical two bytes", "QUF", 0, CP_EINVAL },
    { "non-canonical two bytes, high spare bit", "QUG", 0, CP_EINVAL },
    { "padding", "Zg==", 0, CP_EINVAL },
    { "padding, single", "Zm8=", 0, CP_EINVAL },
    { "padding alone", "====", 0, CP_EINVAL },
    { "standard alphabet plus", "+_8A", 0, CP_EINVAL },
    { "standard alphabet slash", "-/8A", 0, CP_EINVAL },
    { "space inside", "Zm9 v", 0, CP_EINVAL },
    { "leading space", " Zm9v", 0, CP_EINVAL },
    { "trailing newline", "Zm9v\n", 0, CP_EINVAL },
    { "tab", "Zm\t9", 0, CP_EINVAL },
    { "CR LF", "Zm9v\r\n", 0, CP_EINVAL },
    { "one character", "Z", 0, CP_EINVAL },
    { "five characters", "Zm9vY", 0, CP_EINVAL },
    { "nine characters", "Zm9vYmFyZ", 0, CP_EINVAL },
    { "embedded NUL", "Zm\0v", 4, CP_EINVAL },
    { "non-ASCII", "Zm\xc3\xa9", 0, CP_EINVAL },
    { "dot", "Zm9.", 0, CP_EINVAL },
    { "empty", "", 0, CP_OK },
};

static void test_unb64url_table(void **state)
{
    for (size_t i = 0; i < COUNT(unb64_cases); i++) {
        const struct unb64_case *c = &unb64_cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        unsigned char out[16];
        size_t out_len = 99;
        int rc;

        rc = crypto_unb64url(c->text, len, out, sizeof out, &out_len);
        if (rc != c->rc)
            fail_msg("%s: rc %d, expected %d", c->name, rc, c->rc);
        if (rc != 0)
            assert_int_equal(out_len, 0);
    }
}

static void test_unb64url_capacity(void **state)
{
    unsigned char out[8];
    size_t out_len = 99;

    /* "foobar" needs 6 bytes; "fooba" 5. */
    assert_int_equal(crypto_unb64url("Zm9vYmFy", 8, out, 5, &out_len), CP_ETOOBIG);
    assert_int_equal(out_len, 0);
    assert_int_equal(crypto_unb64url("Zm9vYmFy", 8, out, 6, &out_len), 0);
    assert_int_equal(out_len, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(crypto_unb64url("Zm9vYmE", 7, out, 4, &out_len), CP_ETOOBIG);
    assert_int_equal(crypto_unb64url("Zm9vYmE", 7, out, 5, &out_len), 0);
    assert_int_equal(out_len, 5);
    assert_int_equal(crypto_unb64url("", 0, NULL, 0, &out_len), 0);
    assert_int_equal(out_len, 0);
}

static void test_b64url_round_trip(void **state)
{
    unsigned char data[64], back[64];
    char text[128];

    for (size_t n = 0; n <= sizeof data; n++) {
        size_t len, back_len = 99;

        assert_int_equal(crypto_random(data, n), 0);
        crypto_b64url(data, n, text);
        len = strlen(text);
        assert_int_equal(len, crypto_b64url_len(n));
        assert_true(len % 4 != 1);
        assert_int_equal(strspn(text, url_alphabet), len);
        assert_int_equal(crypto_unb64url(text, len, back, sizeof back, &back_len), 0);
        assert_int_equal(back_len, n);
        assert_memory_equal(data, back, n);
        /* 3*len/4 is always enough room. */
        assert_true(back_len <= 3 * len / 4);
    }
}

/* ---- crypto_equal, crypto_random, crypto_token ------------------------ */

static void test_equal(void **state)
{
    unsigned char a[32], b[32];

    memset(a, 0x5a, sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(crypto_equal(a, b, sizeof a), 1);
    assert_int_equal(crypto_equal(a, b, 0), 1);
    for (size_t i = 0; i < sizeof a; i++) {
        b[i] ^= 0x01;
        if (crypto_equal(a, b, sizeof a) != 0)
            fail_msg("difference at byte %zu not seen", i);
        b[i] ^= 0x01;
    }
    b[31] = 0x00;
    assert_int_equal(crypto_equal(a, b, 31), 1);
    assert_int_equal(crypto_equal(a, b, 32), 0);
}

static void test_random(void **state)
{
    unsigned char a[32], b[32];

    assert_int_equal(crypto_random(a, 0), 0);
    assert_int_equal(crypto_random(a, sizeof a), 0);
    assert_int_equal(crypto_random(b, sizeof b), 0);
    assert_memory_not_equal(a, b, sizeof a);
}

#define TOKEN_DRAWS 1000
#define TOKEN_CAP 48

static int compare_tokens(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_token(void **state)
{
    char (*tokens)[TOKEN_CAP] = calloc(TOKEN_DRAWS, TOKEN_CAP);
    unsigned char raw[40];
    size_t raw_len;

    assert_non_null(tokens);
    for (size_t i = 0; i < TOKEN_DRAWS; i++) {
        char *t = tokens[i];

        assert_int_equal(crypto_token("cpk_", t, strlen("cpk_") + 44), 0);
        assert_int_equal(strlen(t), 4 + 43);
        assert_memory_equal(t, "cpk_", 4);
        assert_int_equal(strspn(t + 4, url_alphabet), 43);
        assert_int_equal(crypto_unb64url(t + 4, 43, raw, sizeof raw, &raw_len), 0);
        assert_int_equal(raw_len, 32);
    }
    qsort(tokens, TOKEN_DRAWS, TOKEN_CAP, compare_tokens);
    for (size_t i = 1; i < TOKEN_DRAWS; i++)
        if (strcmp(tokens[i - 1], tokens[i]) == 0)
            fail_msg("token drawn twice: %s", tokens[i]);
    free(tokens);
}

static void test_token_limits(void **state)
{
    char out[64];

    memset(out, 'x', sizeof out);
    assert_int_equal(crypto_token("cpk_", out, 47), CP_ETOOBIG);
    assert_int_equal(out[0], '\0');
    assert_int_equal(crypto_token("", out, 43), CP_ETOOBIG);
    assert_int_equal(crypto_token("", out, 44), 0);
    assert_int_equal(strlen(out), 43);
    assert_int_equal(crypto_token(NULL, out, sizeof out), 0);
    assert_int_equal(strlen(out), 43);
    assert_int_equal(crypto_token("cpk_", NULL, 0), CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_hmac_null_key),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_unhex_table),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_unb64url_table),
        cmocka_unit_test(test_unb64url_capacity),
        cmocka_unit_test(test_b64url_round_trip),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_token_limits),
    };

    return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
