#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apikeys.h"
#include "crypto.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define B41 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmno"     /* 41 base64url characters */
#define B42 B41 "p"
#define B43 B42 "0"

struct shape_case {
    const char *key;
    int ok;
};

static const struct shape_case shape_cases[] = {
    { "cpk_" B43, 1 },
    { "cpk_" "-_-_-_-_-_-_-_-_-_-_" "-_-_-_-_-_-_-_-_-_-_" "-_-", 1 },
    { "cpk_" B43 "A", 0 },                         /* 44 after the prefix */
    { "cpk_" B42, 0 },
    { "cpr_" B43, 0 },                              /* a refresh token */
    { "CPK_" B43, 0 },
    { "cpk_" B42 "=", 0 },                          /* padding */
    { "cpk_" B42 "+", 0 },                          /* base64, not base64url */
    { "cpk_" B42 "/", 0 },
    { "cpk_" B41 " p", 0 },
    { "cpk_" B41 "\xc3\xa9", 0 },                     /* 43 bytes, 42 characters */
    { "cpk_", 0 },
    { "", 0 },
};

static void test_shape(void **state)
{
    for (size_t i = 0; i < COUNT(shape_cases); i++) {
        const char *k = shape_cases[i].key;
        if (apikey_shape_ok(k, strlen(k)) != shape_cases[i].ok)
            fail_msg("apikey_shape_ok(\"%s\") should be %d", k, shape_cases[i].ok);
    }
    assert_false(apikey_shape_ok(NULL, 0));
}

static void test_shape_of_a_made_key(void **state)
{
    char key[APIKEY_LEN + 1];

    for (int i = 0; i < 100; i++) {
        assert_int_equal(crypto_token("cpk_", key, sizeof key), 0);
        assert_int_equal(strlen(key), APIKEY_LEN);
        assert_true(apikey_shape_ok(key, strlen(key)));
    }
}

/* A NUL inside the counted length is not part of any key. */
static void test_shape_counts_bytes_not_the_string(void **state)
{
    char key[APIKEY_LEN + 1] = "cpk_" B43;

    key[20] = '\0';
    assert_false(apikey_shape_ok(key, APIKEY_LEN));
}

struct name_case {
    const char *name;
    int ok;
};

static const struct name_case name_cases[] = {
    { "backup script", 1 },
    { "x", 1 },
    { "Grüße – 日本 🎬", 1 },
    { "", 0 },
    { "tab\there", 0 },
    { "line\nbreak", 0 },
    { "del\x7f", 0 },
    { "c1 \xc2\x85", 0 },                       /* U+0085 NEL */
    { "bad \xff utf8", 0 },
    { "overlong \xc0\xaf", 0 },
    { "surrogate \xed\xa0\x80", 0 },
    { "truncated \xe2\x82", 0 },
    { "past unicode \xf4\x90\x80\x80", 0 },
};

static void test_names(void **state)
{
    for (size_t i = 0; i < COUNT(name_cases); i++)
        if (apikey_name_ok(name_cases[i].name) != name_cases[i].ok)
            fail_msg("apikey_name_ok(\"%s\") should be %d", name_cases[i].name, name_cases[i].ok);
    assert_false(apikey_name_ok(NULL));
}

/* The limit is in characters, so 100 four-byte characters fit and 101 ASCII do not. */
static void test_name_length_in_characters(void **state)
{
    char name[APIKEY_NAME_MAX * 4 + 8];

    memset(name, 'a', APIKEY_NAME_MAX);
    name[APIKEY_NAME_MAX] = '\0';
    assert_true(apikey_name_ok(name));
    name[APIKEY_NAME_MAX] = 'a';
    name[APIKEY_NAME_MAX + 1] = '\0';
    assert_false(apikey_name_ok(name));

    name[0] = '\0';
    for (int i = 0; i < APIKEY_NAME_MAX; i++)
        strcat(name, "\xf0\x9f\x8e\xac");
    assert_true(apikey_name_ok(name));
    strcat(name, "a");
    assert_false(apikey_name_ok(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_shape_of_a_made_key),
        cmocka_unit_test(test_shape_counts_bytes_not_the_string),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_name_length_in_characters),
    };
    return cmocka_run_group_tests_name("apikeys", tests, NULL, NULL);
}
