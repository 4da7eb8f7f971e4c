#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "password.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Cheap parameters for tests that are not about the defaults. */
static const struct password_params fast = { .m_kib = 1024, .t = 1, .p = 1 };

#define DEFAULT_PREFIX "$argon2id$v=19$m=19456,t=2,p=1$"

/* ---- policy ----------------------------------------------------------- */

/* A password is unit repeated times (or unit once, len bytes, when len is
 * given, so NULs can be embedded). */
struct policy_case {
    const char *name;
    const char *unit;
    size_t repeat;
    size_t len;
    const char *email;
    enum password_verdict verdict;
};

static const struct policy_case policy_cases[] = {
    { "empty", "", 1, 0, NULL, PASSWORD_TOO_SHORT },
    { "7 ASCII", "xk7#Lp2", 1, 0, NULL, PASSWORD_TOO_SHORT },
    { "8 ASCII", "xk7#Lp2Q", 1, 0, NULL, PASSWORD_OK },
    { "7 two-byte chars (14 bytes)", "\xc3\xa9", 7, 0, NULL, PASSWORD_TOO_SHORT },
    { "8 two-byte chars", "\xc3\xa9", 8, 0, NULL, PASSWORD_OK },
    { "7 four-byte chars (28 bytes)", "\xf0\x9f\x98\x80", 7, 0, NULL, PASSWORD_TOO_SHORT },
    { "8 four-byte chars", "\xf0\x9f\x98\x80", 8, 0, NULL, PASSWORD_OK },
    { "128 ASCII", "a", 128, 0, NULL, PASSWORD_OK },
    { "129 ASCII", "a", 129, 0, NULL, PASSWORD_TOO_LONG },
    { "128 three-byte chars", "\xe2\x82\xac", 128, 0, NULL, PASSWORD_OK },
    { "129 three-byte chars", "\xe2\x82\xac", 129, 0, NULL, PASSWORD_TOO_LONG },
    { "128 four-byte chars (512 bytes)", "\xf0\x9f\x98\x80", 128, 0, NULL, PASSWORD_OK },
    { "129 four-byte chars", "\xf0\x9f\x98\x80", 129, 0, NULL, PASSWORD_TOO_LONG },
    { "many bytes", "a", 100000, 0, NULL, PASSWORD_TOO_LONG },
    { "passphrase", "correct horse battery staple", 1, 0, NULL, PASSWORD_OK },
    { "mixed scripts", "\xd0\x9f\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8c-\xe5\xaf\x86\xe7\xa0\x81",
      1, 0, NULL, PASSWORD_OK },
    /* Malformed UTF-8. */
    { "invalid byte 0xff", "abcdefgh\xff", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "invalid, short", "\xff", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "lone continuation byte", "\x80" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "truncated sequence at end", "abcdefgh\xe2\x82", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "truncated sequence inside", "abcd\xe2\x82" "efgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "overlong slash (2 bytes)", "\xc0\xaf" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "overlong slash (3 bytes)", "\xe0\x80\xaf" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "overlong (4 bytes)", "\xf0\x80\x80\xaf" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "UTF-16 surrogate", "\xed\xa0\x80" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "past U+10FFFF", "\xf4\x90\x80\x80" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "lead byte 0xf5", "\xf5\x80\x80\x80" "abcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "Latin-1 text", "caf\xe9 cr\xe8me br\xfbl\xe9" "e", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    /* Control characters. */
    { "embedded NUL", "abcd\0efgh", 1, 9, NULL, PASSWORD_NOT_UTF8 },
    { "trailing NUL", "abcdefgh\0", 1, 9, NULL, PASSWORD_NOT_UTF8 },
    { "tab", "abcd\tefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "newline", "abcdefgh\n", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "escape", "\x1b[31mabcdefgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "DEL", "abcd\x7f" "efgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    { "C1 NEL", "abcd\xc2\x85" "efgh", 1, 0, NULL, PASSWORD_NOT_UTF8 },
    /* Common passwords, in any ASCII case. */
    { "common: password", "password", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: PASSWORD", "PASSWORD", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: Password1", "Password1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: P@ssw0rd", "P@ssw0rd", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 123456789", "123456789", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 12345678", "12345678", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1234567890", "1234567890", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: iLoveYou", "iLoveYou", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: QWERTY123", "QWERTY123", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: qwertyuiop", "qwertyuiop", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: Admin123", "Admin123", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: Welcome1", "Welcome1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: passw0rd", "passw0rd", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: FOOTBALL", "FOOTBALL", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: Sunshine", "Sunshine", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: princess", "princess", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: abc12345", "ABC12345", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1q2w3e4r", "1Q2W3E4R", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: zaq12wsx", "ZAQ12wsx", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1qaz2wsx", "1qaz2wsx", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: TrustNo1", "TrustNo1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: baseball", "baseball", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: Superman", "Superman", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 11111111", "11111111", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 987654321", "987654321", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: asdfghjkl", "asdfghjkl", 1, 0, NULL, PASSWORD_TOO_COMMON },
    /* Entries spread over the sorted list, first and last included, so an
     * unsorted list would show up as a miss. */
    { "common: first entry", "!@#$%^&*", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1234554321", "1234554321", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1234asdf", "1234asdf", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 1a2b3c4d", "1A2B3C4D", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: 66666666", "66666666", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: abcdefghi", "abcdefghi", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: asdfzxcv", "asdfzxcv", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: cameron1", "Cameron1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: default1", "default1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: genesis1", "Genesis1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: letmein123", "LetMeIn123", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: minecraft1", "Minecraft1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: password12", "password12", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: princess1", "Princess1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: qwerty1!", "Qwerty1!", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: samsung1", "Samsung1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: summer12", "Summer12", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: unicorn1", "Unicorn1", 1, 0, NULL, PASSWORD_TOO_COMMON },
    { "common: last entry", "zzzzzzzz", 1, 0, NULL, PASSWORD_TOO_COMMON },
    /* Near misses are not on the list. */
    { "not common: password + suffix", "password-for-crosspost", 1, 0, NULL, PASSWORD_OK },
    { "not common: spaced", "pass word", 1, 0, NULL, PASSWORD_OK },
    { "not common: Tr0ub4dor&3", "Tr0ub4dor&3", 1, 0, NULL, PASSWORD_OK },
    /* The account's email. */
    { "email itself", "alice.smith@example.com", 1, 0, "alice.smith@example.com",
      PASSWORD_LIKE_EMAIL },
    { "email, other case", "ALICE.Smith@Example.COM", 1, 0, "alice.smith@example.com",
      PASSWORD_LIKE_EMAIL },
    { "local part", "alice.smith", 1, 0, "Alice.Smith@example.com", PASSWORD_LIKE_EMAIL },
    { "local part, upper case", "ALICE.SMITH", 1, 0, "alice.smith@example.com",
      PASSWORD_LIKE_EMAIL },
    { "local part plus a digit", "alice.smith1", 1, 0, "alice.smith@example.com", PASSWORD_OK },
    { "local part prefix", "alice.smit", 1, 0, "alice.smith@example.com", PASSWORD_OK },
    { "domain", "example.com", 1, 0, "alice.smith@example.com", PASSWORD_OK },
    { "no email given", "alice.smith", 1, 0, NULL, PASSWORD_OK },
    { "email without @", "alice.smith", 1, 0, "alice.smith", PASSWORD_LIKE_EMAIL },
    { "short local part", "ab", 1, 0, "ab@example.com", PASSWORD_TOO_SHORT },
};

static void test_policy_table(void **state)
{
    for (size_t i = 0; i < COUNT(policy_cases); i++) {
        const struct policy_case *c = &policy_cases[i];
        size_t unit_len = c->len ? c->len : strlen(c->unit);
        size_t len = unit_len * c->repeat;
        char *pw = malloc(len + 1);
        enum password_verdict v;

        assert_non_null(pw);
        for (size_t r = 0; r < c->repeat; r++)
            memcpy(pw + r * unit_len, c->unit, unit_len);
        pw[len] = '\0';
        v = password_check(pw, len, c->email);
        free(pw);
        if (v != c->verdict)
            fail_msg("%s: verdict %d, expected %d", c->name, (int)v, (int)c->verdict);
    }
}

static void test_verdict_text(void **state)
{
    static const enum password_verdict all[] = {
        PASSWORD_OK, PASSWORD_TOO_SHORT, PASSWORD_TOO_LONG,
        PASSWORD_NOT_UTF8, PASSWORD_TOO_COMMON, PASSWORD_LIKE_EMAIL,
    };

    for (size_t i = 0; i < COUNT(all); i++) {
        const char *text = password_verdict_text(all[i]);

        assert_non_null(text);
        assert_true(strlen(text) > 10);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(text, password_verdict_text(all[j]));
    }
    assert_non_null(password_verdict_text((enum password_verdict)99));
}

/* ---- hashing ---------------------------------------------------------- */

static void test_hash_verify_round_trip(void **state)
{
    const char *pw = "K3ep-it-s3cret, \xc3\xa9t\xc3\xa9";
    char hash[PASSWORD_HASH_MAX], again[PASSWORD_HASH_MAX];

    assert_int_equal(password_hash(pw, strlen(pw), &fast, hash, sizeof hash), 0);
    assert_true(strncmp(hash, "$argon2id$v=19$m=1024,t=1,p=1$", 30) == 0);
    assert_int_equal(password_verify(hash, pw, strlen(pw)), 0);
    assert_int_equal(password_verify(hash, "K3ep-it-s3cret", 14), CP_ENOTFOUND);
    assert_int_equal(password_verify(hash, "", 0), CP_ENOTFOUND);
    /* Case matters for the password itself. */
    assert_int_equal(password_verify(hash, "k3ep-it-s3cret, \xc3\xa9t\xc3\xa9", strlen(pw)),
                     CP_ENOTFOUND);
    /* A fresh salt each time. */
    assert_int_equal(password_hash(pw, strlen(pw), &fast, again, sizeof again), 0);
    assert_string_not_equal(hash, again);
}

static void test_no_truncation(void **state)
{
    char pw[121], other[121];
    char hash[PASSWORD_HASH_MAX];

    for (size_t i = 0; i < 120; i++)
        pw[i] = (char)('a' + i % 26);
    pw[120] = '\0';
    assert_int_equal(password_check(pw, 120, NULL), PASSWORD_OK);
    assert_int_equal(password_hash(pw, 120, &fast, hash, sizeof hash), 0);

    memcpy(other, pw, sizeof pw);
    other[100] ^= 0x01;
    assert_int_equal(password_verify(hash, other, 120), CP_ENOTFOUND);
    memcpy(other, pw, sizeof pw);
    other[119] = 'Z';
    assert_int_equal(password_verify(hash, other, 120), CP_ENOTFOUND);
    /* A prefix is not the password either. */
    assert_int_equal(password_verify(hash, pw, 100), CP_ENOTFOUND);
    assert_int_equal(password_verify(hash, pw, 120), 0);
}

static void test_length_limits(void **state)
{
    char pw[514];
    char hash[PASSWORD_HASH_MAX];

    /* 128 four-byte characters are 512 bytes: the most ever hashed. */
    memset(pw, 'p', sizeof pw);
    assert_int_equal(password_hash(pw, 512, &fast, hash, sizeof hash), 0);
    assert_int_equal(password_verify(hash, pw, 512), 0);
    assert_int_equal(password_verify(hash, pw, 513), CP_ENOTFOUND);
    assert_int_equal(password_hash(pw, 513, &fast, hash, sizeof hash), CP_EINVAL);
    assert_int_equal(hash[0], '\0');
}

static void test_default_params(void **state)
{
    const char *pw = "a default-cost password";
    char hash[PASSWORD_HASH_MAX];

    assert_int_equal(password_default_params.m_kib, 19456);
    assert_int_equal(password_default_params.t, 2);
    assert_int_equal(password_default_params.p, 1);
    assert_int_equal(password_hash(pw, strlen(pw), &password_default_params, hash, sizeof hash),
                     0);
    if (strncmp(hash, DEFAULT_PREFIX, strlen(DEFAULT_PREFIX)) != 0)
        fail_msg("hash \"%s\" lacks the prefix %s", hash, DEFAULT_PREFIX);
    assert_true(strlen(hash) < PASSWORD_HASH_MAX);
    assert_int_equal(password_needs_rehash(hash, &password_default_params), 0);
    assert_int_equal(password_needs_rehash(hash, NULL), 0);
    assert_int_equal(password_verify(hash, pw, strlen(pw)), 0);
}

static void test_hash_bad_arguments(void **state)
{
    static const struct password_params bad[] = {
        { 0, 1, 1 },
        { 7, 1, 1 },
        { 1024, 0, 1 },
        { 1024, 1, 0 },
        { 1024, 101, 1 },
        { 1024, 1, 17 },
        { 64, 1, 16 },                  /* below 8 KiB per lane */
        { 1024u * 1024u + 1, 1, 1 },
        { 4000000000u, 1, 1 },
    };
    char hash[PASSWORD_HASH_MAX];

    for (size_t i = 0; i < COUNT(bad); i++) {
        memset(hash, 'x', sizeof hash);
        if (password_hash("longenough", 10, &bad[i], hash, sizeof hash) != CP_EINVAL)
            fail_msg("params m=%u t=%u p=%u accepted", bad[i].m_kib, bad[i].t, bad[i].p);
        assert_int_equal(hash[0], '\0');
    }
    /* Too small an output buffer. */
    assert_int_equal(password_hash("longenough", 10, &fast, hash, 60), CP_EINVAL);
    assert_int_equal(hash[0], '\0');
    assert_int_equal(password_hash(NULL, 3, &fast, hash, sizeof hash), CP_EINVAL);
}

static void test_needs_rehash(void **state)
{
    struct case_ {
        struct password_params params;
        int rehash;
    };
    static const struct case_ cases[] = {
        { { 1024, 1, 1 }, 0 },
        { { 2048, 1, 1 }, 1 },
        { { 512, 1, 1 }, 1 },
        { { 1024, 2, 1 }, 1 },
        { { 1024, 1, 2 }, 1 },
        { { 19456, 2, 1 }, 1 },
    };
    char hash[PASSWORD_HASH_MAX];

    assert_int_equal(password_hash("rehash me please", 16, &fast, hash, sizeof hash), 0);
    for (size_t i = 0; i < COUNT(cases); i++)
        if (password_needs_rehash(hash, &cases[i].params) != cases[i].rehash)
            fail_msg("case %zu: expected %d", i, cases[i].rehash);
    assert_int_equal(password_needs_rehash(hash, NULL), 1);
    assert_int_equal(password_needs_rehash("", &fast), 1);
    assert_int_equal(password_needs_rehash(NULL, &fast), 1);
    assert_int_equal(password_needs_rehash("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
                                           &fast), 1);
}

/* A valid hash of "tamper test" at m=1024,t=1,p=1, built in the test. */
static char tamper_base[PASSWORD_HASH_MAX];

static void tampered(char *out, size_t cap, const char *params)
{
    /* Keep the salt and digest of the real hash, swap what precedes. */
    const char *salt = strchr(tamper_base + strlen("$argon2id$v=19$"), '$');

    snprintf(out, cap, "%s%s", params, salt);
}

static void test_tampered_hashes(void **state)
{
    static const char *const heads[] = {
        "$argon2id$v=19$m=99999999999,t=1,p=1",
        "$argon2id$v=19$m=1048577,t=1,p=1",
        "$argon2id$v=19$m=4294967296,t=1,p=1",
        "$argon2id$v=19$m=18446744073709551617,t=1,p=1",
        "$argon2id$v=19$m=1024,t=101,p=1",
        "$argon2id$v=19$m=1024,t=4294967295,p=1",
        "$argon2id$v=19$m=1024,t=0,p=1",
        "$argon2id$v=19$m=1024,t=1,p=17",
        "$argon2id$v=19$m=1024,t=1,p=0",
        "$argon2id$v=19$m=64,t=1,p=16",
        "$argon2id$v=19$m=-1024,t=1,p=1",
        "$argon2id$v=19$m=+1024,t=1,p=1",
        "$argon2id$v=19$m=01024,t=1,p=1",
        "$argon2id$v=19$m=,t=1,p=1",
        "$argon2id$v=19$m=1024,p=1,t=1",
        "$argon2id$v=19$m=1024,t=1",
        "$argon2id$v=19$m=1024 ,t=1,p=1",
        "$argon2id$v=16$m=1024,t=1,p=1",
        "$argon2id$m=1024,t=1,p=1",
        "$argon2i$v=19$m=1024,t=1,p=1",
        "$argon2d$v=19$m=1024,t=1,p=1",
        "$ARGON2ID$v=19$m=1024,t=1,p=1",
        "argon2id$v=19$m=1024,t=1,p=1",
        "$2y$10$m=1024,t=1,p=1",
    };
    static const char *const whole[] = {
        "",
        "$",
        "$argon2id",
        "$argon2id$v=19$m=1024,t=1,p=1",
        "$argon2id$v=19$m=1024,t=1,p=1$",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=1024,t=1,p=1$$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhh!2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$x",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1$c2Fs$aGFzaGhhc2hoYXNoaGFzaA",     /* 3-byte salt */
        "$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
    };
    char hash[PASSWORD_HASH_MAX + 64];
    char longer[300];

    assert_int_equal(password_hash("tamper test", 11, &fast, tamper_base, sizeof tamper_base),
                     0);
    assert_int_equal(password_verify(tamper_base, "tamper test", 11), 0);

    for (size_t i = 0; i < COUNT(heads); i++) {
        int rc;

        tampered(hash, sizeof hash, heads[i]);
        rc = password_verify(hash, "tamper test", 11);
        if (rc != CP_EINVAL)
            fail_msg("\"%s\": rc %d, expected CP_EINVAL", hash, rc);
        assert_int_equal(password_needs_rehash(hash, &fast), 1);
    }
    for (size_t i = 0; i < COUNT(whole); i++) {
        int rc = password_verify(whole[i], "tamper test", 11);

        if (rc != CP_EINVAL)
            fail_msg("\"%s\": rc %d, expected CP_EINVAL", whole[i], rc);
    }
    assert_int_equal(password_verify(NULL, "tamper test", 11), CP_EINVAL);

    /* Longer than any hash we write. */
    memset(longer, 'A', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    memcpy(longer, tamper_base, strlen(tamper_base));
    assert_int_equal(password_verify(longer, "tamper test", 11), CP_EINVAL);

    /* Every truncation fails, and never by crashing. */
    for (size_t n = 0; n < strlen(tamper_base); n++) {
        int rc;

        memcpy(hash, tamper_base, n);
        hash[n] = '\0';
        rc = password_verify(hash, "tamper test", 11);
        if (rc != CP_EINVAL && rc != CP_ENOTFOUND)
            fail_msg("truncated to %zu: rc %d", n, rc);
    }

    /* A changed digit of the digest is a mismatch, not a malformed hash. */
    strcpy(hash, tamper_base);
    hash[strlen(hash) - 5] = hash[strlen(hash) - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(password_verify(hash, "tamper test", 11), CP_ENOTFOUND);
}

static void test_dummy_hash(void **state)
{
    const char *dummy = password_dummy_hash();

    assert_non_null(dummy);
    assert_ptr_equal(dummy, password_dummy_hash());
    if (strncmp(dummy, DEFAULT_PREFIX, strlen(DEFAULT_PREFIX)) != 0)
        fail_msg("dummy hash \"%s\" lacks the prefix %s", dummy, DEFAULT_PREFIX);
    assert_int_equal(password_needs_rehash(dummy, &password_default_params), 0);
    assert_int_equal(password_verify(dummy, "any password at all", 19), CP_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_table),
        cmocka_unit_test(test_verdict_text),
        cmocka_unit_test(test_hash_verify_round_trip),
        cmocka_unit_test(test_no_truncation),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_hash_bad_arguments),
        cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_tampered_hashes),
        cmocka_unit_test(test_dummy_hash),
    };

    return cmocka_run_group_tests_name("password", tests, NULL, NULL);
}
