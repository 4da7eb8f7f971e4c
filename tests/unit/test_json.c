#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "json.h"

/* Small limits so each limit can be reached with short literals. */
static const struct json_limits small = { .max_size = 64, .max_depth = 3, .max_string = 8 };

struct parse_case {
    const char *name;
    const char *text;
    size_t len;            /* 0 = strlen(text); set for text holding NUL */
    int rc;
    const char *why;       /* a fragment of the explanation, or NULL */
};

static const struct parse_case parse_cases[] = {
    /* accepted */
    { "empty object", "{}", 0, CP_OK, NULL },
    { "empty array", "[]", 0, CP_OK, NULL },
    { "object", "{\"a\":1,\"b\":\"x\",\"c\":[true,false,null]}", 0, CP_OK, NULL },
    { "array of scalars", "[1,-2,0.5,1e5,1E+5,-0.0e-0,\"s\",true,false,null]", 0, CP_OK, NULL },
    { "top-level integer", "123", 0, CP_OK, NULL },
    { "top-level zero", "0", 0, CP_OK, NULL },
    { "top-level string", "\"abc\"", 0, CP_OK, NULL },
    { "top-level true", "true", 0, CP_OK, NULL },
    { "top-level null", "null", 0, CP_OK, NULL },
    { "whitespace around", " \t\r\n{ \"a\" : 1 }\r\n\t ", 0, CP_OK, NULL },
    { "trailing whitespace", "{}   ", 0, CP_OK, NULL },
    { "UTF-8 passes", "[\"\xc3\xa9\xe2\x82\xac\",\"\xf0\x9f\x98\x80\"]", 0, CP_OK, NULL },
    { "surrogate pair escape", "\"\\ud83d\\ude00\"", 0, CP_OK, NULL },
    { "escaped backslash before u0000", "\"\\\\u0000\"", 0, CP_OK, NULL },
    { "escaped quote", "\"a\\\"b\"", 0, CP_OK, NULL },
    { "escaped slash", "\"a\\/b\"", 0, CP_OK, NULL },
    { "duplicate keys: last wins", "{\"a\":1,\"a\":2}", 0, CP_OK, NULL },

    /* depth: 3 containers at the limit, 4 over it */
    { "depth 3 arrays", "[[[1]]]", 0, CP_OK, NULL },
    { "depth 3 empty", "[[[]]]", 0, CP_OK, NULL },
    { "depth 3 objects", "{\"a\":{\"b\":{\"c\":1}}}", 0, CP_OK, NULL },
    { "depth 4 arrays", "[[[[1]]]]", 0, CP_ETOOBIG, "nesting deeper than 3 levels" },
    { "depth 4 empty", "[[[[]]]]", 0, CP_ETOOBIG, "nesting deeper than 3 levels" },
    { "depth 4 objects", "{\"a\":{\"b\":{\"c\":{}}}}", 0, CP_ETOOBIG, "nesting deeper" },
    { "depth 4 mixed", "[{\"a\":[{}]}]", 0, CP_ETOOBIG, "nesting deeper" },

    /* string and key length: 8 at the limit, 9 over it */
    { "string at limit", "\"12345678\"", 0, CP_OK, NULL },
    { "string over limit", "\"123456789\"", 0, CP_ETOOBIG, "string longer than 8 bytes" },
    { "escaped string at limit", "\"\\u00e9\\u00e9\\u00e9\\u00e9\"", 0, CP_OK, NULL },
    { "nested string over limit", "[{\"a\":\"123456789\"}]", 0, CP_ETOOBIG, "longer than 8" },
    { "key at limit", "{\"12345678\":1}", 0, CP_OK, NULL },
    { "key over limit", "{\"123456789\":1}", 0, CP_ETOOBIG, "key longer than 8 bytes" },

    /* size: 64 bytes at the limit, 65 over it */
    { "size at limit", "\"123\"                                                           ", 0, CP_OK, NULL },
    { "size over limit", "\"123\"                                                            ", 0, CP_ETOOBIG, "larger than 64 bytes" },

    /* UTF-8 of the raw text */
    { "overlong C0 80", "\"\xc0\x80\"", 0, CP_EPARSE, "invalid UTF-8 at byte 1" },
    { "overlong E0 80 80", "\"\xe0\x80\x80\"", 0, CP_EPARSE, "invalid UTF-8 at byte 1" },
    { "surrogate ED A0 80", "\"\xed\xa0\x80\"", 0, CP_EPARSE, "invalid UTF-8 at byte 1" },
    { "past U+10FFFF F4 90", "\"\xf4\x90\x80\x80\"", 0, CP_EPARSE, "invalid UTF-8" },
    { "F5 lead byte", "\"\xf5\x80\x80\x80\"", 0, CP_EPARSE, "invalid UTF-8" },
    { "truncated E2 82", "\"\xe2\x82\"", 0, CP_EPARSE, "invalid UTF-8 at byte 1" },
    { "truncated at end", "\"a\"\xe2\x82", 0, CP_EPARSE, "invalid UTF-8 at byte 3" },
    { "lone continuation", "[\"\x80\"]", 0, CP_EPARSE, "invalid UTF-8 at byte 2" },
    { "invalid in key", "{\"\xff\":1}", 0, CP_EPARSE, "invalid UTF-8 at byte 2" },

    /* NUL, raw or escaped */
    { "NUL byte", "{\"a\":\"x\0y\"}", 11, CP_EPARSE, "NUL character at byte 7" },
    { "NUL after value", "{}\0", 3, CP_EPARSE, "NUL character at byte 2" },
    { "u0000 in string", "\"a\\u0000b\"", 0, CP_EPARSE, "\\u0000" },
    { "u0000 in key", "{\"a\\u0000b\":1}", 0, CP_EPARSE, "\\u0000" },
    { "lone high surrogate", "\"\\ud800\"", 0, CP_EPARSE, "unpaired surrogate" },
    { "lone low surrogate", "\"\\udc00\"", 0, CP_EPARSE, "unpaired surrogate" },
    { "high then letter", "\"\\ud83dx\"", 0, CP_EPARSE, "unpaired surrogate" },
    { "high then non-low", "\"\\ud83d\\u0041\"", 0, CP_EPARSE, "unpaired surrogate" },
    { "raw control character", "\"a\tb\"", 0, CP_EPARSE, "control character" },

    /* syntax */
    { "empty", "", 0, CP_EPARSE, "empty" },
    { "only whitespace", " \n\t ", 0, CP_EPARSE, "empty" },
    { "trailing garbage", "{} x", 0, CP_EPARSE, "unexpected data after the JSON value" },
    { "two values", "{\"a\":1}{\"b\":2}", 0, CP_EPARSE, "unexpected data after the JSON value at byte 7" },
    { "number then letters", "1x", 0, CP_EPARSE, "unexpected data after" },
    { "hex number", "0x10", 0, CP_EPARSE, NULL },
    { "single quotes", "{'a':1}", 0, CP_EPARSE, "unexpected character at byte 1" },
    { "single-quoted string value", "{\"a\":'b'}", 0, CP_EPARSE, NULL },
    { "trailing comma array", "[1,]", 0, CP_EPARSE, "malformed JSON at byte 3" },
    { "trailing comma object", "{\"a\":1,}", 0, CP_EPARSE, "malformed JSON" },
    { "missing comma", "[1 2]", 0, CP_EPARSE, "malformed JSON" },
    { "missing colon", "{\"a\" 1}", 0, CP_EPARSE, "malformed JSON" },
    { "unquoted key", "{a:1}", 0, CP_EPARSE, NULL },
    { "unterminated string", "\"abc", 0, CP_EPARSE, "malformed JSON" },
    { "unterminated array", "[1,2", 0, CP_EPARSE, "malformed JSON" },
    { "bad escape", "\"\\x\"", 0, CP_EPARSE, "malformed JSON" },
    { "NaN", "NaN", 0, CP_EPARSE, NULL },
    { "NaN in array", "[NaN]", 0, CP_EPARSE, NULL },
    { "Infinity", "Infinity", 0, CP_EPARSE, NULL },
    { "-Infinity", "[-Infinity]", 0, CP_EPARSE, NULL },
    { "upper-case TRUE", "TRUE", 0, CP_EPARSE, NULL },
    { "leading zero", "01", 0, CP_EPARSE, NULL },
    { "negative leading zero", "-01", 0, CP_EPARSE, NULL },
    { "dot without fraction", "1.", 0, CP_EPARSE, NULL },
    { "dot before exponent", "1.e5", 0, CP_EPARSE, NULL },
    { "leading dot", ".5", 0, CP_EPARSE, NULL },
    { "plus sign", "+1", 0, CP_EPARSE, NULL },
    { "bare minus", "-", 0, CP_EPARSE, NULL },
    { "comment", "/* c */ 1", 0, CP_EPARSE, NULL },
    { "form feed as space", "[1,\f2]", 0, CP_EPARSE, NULL },
};

static void run_parse_case(const struct parse_case *c, const struct json_limits *lim)
{
    struct json_object *obj = (struct json_object *)1;
    struct buf why;
    size_t len = c->len ? c->len : strlen(c->text);
    int rc;

    buf_init(&why, 1024);
    rc = json_parse(c->text, len, lim, &obj, &why);
    if (rc != c->rc)
        fail_msg("%s: rc %d (%s), expected %d", c->name, rc, buf_str(&why), c->rc);
    if (rc != 0 && obj != NULL)
        fail_msg("%s: *out set on failure", c->name);
    if (rc == 0 && why.len != 0)
        fail_msg("%s: explanation on success: %s", c->name, buf_str(&why));
    if (rc != 0 && why.len == 0)
        fail_msg("%s: no explanation", c->name);
    if (c->why && !strstr(buf_str(&why), c->why))
        fail_msg("%s: explanation '%s' lacks '%s'", c->name, buf_str(&why), c->why);
    json_object_put(rc == 0 ? obj : NULL);
    buf_free(&why);
}

static void test_parse_table(void **state)
{
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++)
        run_parse_case(&parse_cases[i], &small);
}

static void test_parse_without_why(void **state)
{
    struct json_object *obj = NULL;

    assert_int_equal(json_parse("[1,]", 4, &small, &obj, NULL), CP_EPARSE);
    assert_null(obj);
    assert_int_equal(json_parse("[1]", 3, NULL, &obj, NULL), 0);
    assert_non_null(obj);
    json_object_put(obj);
}

static void test_duplicate_keys_last_wins(void **state)
{
    struct json_object *obj = NULL;
    long long v = 0;

    assert_int_equal(json_parse("{\"a\":1,\"a\":2}", 13, &small, &obj, NULL), 0);
    assert_int_equal(json_object_object_length(obj), 1);
    assert_int_equal(json_get_int(obj, "a", &v), 0);
    assert_int_equal(v, 2);
    json_object_put(obj);
}

/* n nested arrays around a number. */
static char *nested(int n, size_t *len)
{
    char *s = malloc((size_t)n * 2 + 2);

    assert_non_null(s);
    memset(s, '[', (size_t)n);
    s[n] = '1';
    memset(s + n + 1, ']', (size_t)n);
    s[2 * n + 1] = '\0';
    *len = (size_t)n * 2 + 1;
    return s;
}

static void test_default_limits(void **state)
{
    assert_int_equal(json_default_limits.max_size, 8 * 1024 * 1024);
    assert_int_equal(json_default_limits.max_depth, 64);
    assert_int_equal(json_default_limits.max_string, 1024 * 1024);
}

static void test_default_depth(void **state)
{
    struct json_object *obj = NULL;
    struct buf why;
    size_t len;
    char *s;

    buf_init(&why, 256);
    s = nested(64, &len);
    assert_int_equal(json_parse(s, len, &json_default_limits, &obj, &why), 0);
    json_object_put(obj);
    free(s);

    s = nested(65, &len);
    assert_int_equal(json_parse(s, len, &json_default_limits, &obj, &why), CP_ETOOBIG);
    assert_null(obj);
    assert_string_equal(buf_str(&why), "nesting deeper than 64 levels");
    free(s);

    /* Far past json-c's own default of 32, still refused cleanly. */
    s = nested(5000, &len);
    assert_int_equal(json_parse(s, len, &json_default_limits, &obj, NULL), CP_ETOOBIG);
    free(s);
    buf_free(&why);
}

/* A JSON string holding n bytes of 'a'. */
static char *long_string(size_t n, size_t *len)
{
    char *s = malloc(n + 3);

    assert_non_null(s);
    s[0] = '"';
    memset(s + 1, 'a', n);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    *len = n + 2;
    return s;
}

static void test_default_string_and_size(void **state)
{
    struct json_object *obj = NULL;
    size_t len, max = json_default_limits.max_size;
    char *s;

    s = long_string(json_default_limits.max_string, &len);
    assert_int_equal(json_parse(s, len, &json_default_limits, &obj, NULL), 0);
    assert_int_equal(json_object_get_string_len(obj), (int)json_default_limits.max_string);
    json_object_put(obj);
    free(s);

    s = long_string(json_default_limits.max_string + 1, &len);
    assert_int_equal(json_parse(s, len, &json_default_limits, &obj, NULL), CP_ETOOBIG);
    assert_null(obj);
    free(s);

    /* Whitespace-padded text: exactly max_size parses, one more byte fails. */
    s = malloc(max + 1);
    assert_non_null(s);
    memset(s, ' ', max + 1);
    s[0] = '{';
    s[1] = '}';
    assert_int_equal(json_parse(s, max, &json_default_limits, &obj, NULL), 0);
    json_object_put(obj);
    assert_int_equal(json_parse(s, max + 1, &json_default_limits, &obj, NULL), CP_ETOOBIG);
    assert_null(obj);
    free(s);
}

static void test_bad_limits(void **state)
{
    struct json_limits zero = { 64, 0, 8 };
    struct json_object *obj = NULL;

    assert_int_equal(json_parse("1", 1, &zero, &obj, NULL), CP_EINVAL);
    assert_null(obj);
}

struct utf8_case {
    const char *name;
    const char *s;
    size_t len;
    int valid;
};

static const struct utf8_case utf8_cases[] = {
    { "empty", "", 0, 1 },
    { "ASCII", "hello", 5, 1 },
    { "U+0000 is a character", "a\0b", 3, 1 },
    { "2-byte min C2 80", "\xc2\x80", 2, 1 },
    { "3-byte E2 82 AC", "\xe2\x82\xac", 3, 1 },
    { "last before surrogates ED 9F BF", "\xed\x9f\xbf", 3, 1 },
    { "first after surrogates EE 80 80", "\xee\x80\x80", 3, 1 },
    { "U+FFFF EF BF BF", "\xef\xbf\xbf", 3, 1 },
    { "4-byte min F0 90 80 80", "\xf0\x90\x80\x80", 4, 1 },
    { "U+10FFFF F4 8F BF BF", "\xf4\x8f\xbf\xbf", 4, 1 },
    { "overlong C0 80", "\xc0\x80", 2, 0 },
    { "overlong C1 BF", "\xc1\xbf", 2, 0 },
    { "overlong E0 9F BF", "\xe0\x9f\xbf", 3, 0 },
    { "overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 4, 0 },
    { "surrogate ED A0 80", "\xed\xa0\x80", 3, 0 },
    { "surrogate ED BF BF", "\xed\xbf\xbf", 3, 0 },
    { "past max F4 90 80 80", "\xf4\x90\x80\x80", 4, 0 },
    { "F5 lead", "\xf5\x80\x80\x80", 4, 0 },
    { "FF byte", "\xff", 1, 0 },
    { "lone continuation", "\x80", 1, 0 },
    { "truncated 2-byte", "\xc3", 1, 0 },
    { "truncated 3-byte", "\xe2\x82", 2, 0 },
    { "truncated 4-byte", "\xf0\x9f\x98", 3, 0 },
    { "bad continuation", "\xe2\x28\xa1", 3, 0 },
    { "ASCII as continuation", "\xc3\x41", 2, 0 },
};

static void test_utf8_table(void **state)
{
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        int got = json_utf8_valid(c->s, c->len) ? 1 : 0;
        if (got != c->valid)
            fail_msg("%s: valid=%d, expected %d", c->name, got, c->valid);
    }
}

static const char getters_doc[] =
    "{\"s\":\"text\",\"i\":42,\"neg\":-7,\"f\":1.5,\"b\":true,\"bf\":false,"
    "\"o\":{\"x\":1},\"a\":[1,2],\"n\":null,\"si\":\"1\",\"ib\":1,"
    "\"max\":9223372036854775807,\"min1\":-9223372036854775807,"
    "\"over\":9223372036854775808,\"huge\":99999999999999999999,"
    "\"min\":-9223372036854775808,\"under\":-9223372036854775809,"
    "\"exp\":1e2}";

enum getter { G_STRING, G_INT, G_BOOL, G_OBJECT, G_ARRAY };

struct getter_case {
    enum getter getter;
    const char *key;
    int rc;
    long long value;      /* G_INT, G_BOOL */
};

static const struct getter_case getter_cases[] = {
    { G_STRING, "s", CP_OK, 0 },
    { G_STRING, "i", CP_EINVAL, 0 },
    { G_STRING, "n", CP_ENOTFOUND, 0 },
    { G_STRING, "missing", CP_ENOTFOUND, 0 },
    { G_INT, "i", CP_OK, 42 },
    { G_INT, "neg", CP_OK, -7 },
    { G_INT, "max", CP_OK, INT64_MAX },
    { G_INT, "min1", CP_OK, -INT64_MAX },
    { G_INT, "f", CP_EINVAL, 0 },
    { G_INT, "exp", CP_EINVAL, 0 },
    { G_INT, "si", CP_EINVAL, 0 },
    { G_INT, "b", CP_EINVAL, 0 },
    { G_INT, "over", CP_EINVAL, 0 },
    { G_INT, "huge", CP_EINVAL, 0 },
    { G_INT, "min", CP_EINVAL, 0 },      /* cannot be told from a clamp */
    { G_INT, "under", CP_EINVAL, 0 },
    { G_INT, "n", CP_ENOTFOUND, 0 },
    { G_INT, "missing", CP_ENOTFOUND, 0 },
    { G_BOOL, "b", CP_OK, 1 },
    { G_BOOL, "bf", CP_OK, 0 },
    { G_BOOL, "ib", CP_EINVAL, 0 },
    { G_BOOL, "s", CP_EINVAL, 0 },
    { G_BOOL, "n", CP_ENOTFOUND, 0 },
    { G_OBJECT, "o", CP_OK, 0 },
    { G_OBJECT, "a", CP_EINVAL, 0 },
    { G_OBJECT, "s", CP_EINVAL, 0 },
    { G_OBJECT, "missing", CP_ENOTFOUND, 0 },
    { G_ARRAY, "a", CP_OK, 0 },
    { G_ARRAY, "o", CP_EINVAL, 0 },
    { G_ARRAY, "n", CP_ENOTFOUND, 0 },
};

static void test_getters_table(void **state)
{
    struct json_object *doc = NULL;

    assert_int_equal(json_parse(getters_doc, strlen(getters_doc), NULL, &doc, NULL), 0);
    for (size_t i = 0; i < sizeof getter_cases / sizeof getter_cases[0]; i++) {
        const struct getter_case *c = &getter_cases[i];
        const char *s = "unset";
        long long n = -1;
        int b = -1, rc = 0;
        struct json_object *o = (struct json_object *)1;

        switch (c->getter) {
        case G_STRING:
            rc = json_get_string(doc, c->key, &s);
            if ((rc == 0) != (s != NULL))
                fail_msg("string %s: out %p with rc %d", c->key, (const void *)s, rc);
            break;
        case G_INT:
            rc = json_get_int(doc, c->key, &n);
            if (rc == 0 && n != c->value)
                fail_msg("int %s: %lld, expected %lld", c->key, n, c->value);
            if (rc != 0 && n != 0)
                fail_msg("int %s: out %lld with rc %d", c->key, n, rc);
            break;
        case G_BOOL:
            rc = json_get_bool(doc, c->key, &b);
            if (rc == 0 && b != c->value)
                fail_msg("bool %s: %d, expected %lld", c->key, b, c->value);
            if (rc != 0 && b != 0)
                fail_msg("bool %s: out %d with rc %d", c->key, b, rc);
            break;
        case G_OBJECT:
            rc = json_get_object(doc, c->key, &o);
            if ((rc == 0) != (o != NULL))
                fail_msg("object %s: out %p with rc %d", c->key, (void *)o, rc);
            break;
        case G_ARRAY:
            rc = json_get_array(doc, c->key, &o);
            if ((rc == 0) != (o != NULL))
                fail_msg("array %s: out %p with rc %d", c->key, (void *)o, rc);
            break;
        }
        if (rc != c->rc)
            fail_msg("getter %d on '%s': rc %d, expected %d", (int)c->getter, c->key, rc, c->rc);
    }
    json_object_put(doc);
}

static void test_getter_values(void **state)
{
    struct json_object *doc = NULL, *o = NULL, *a = NULL, *arr = NULL;
    const char *s = NULL;
    long long n = 0;

    assert_int_equal(json_parse(getters_doc, strlen(getters_doc), NULL, &doc, NULL), 0);
    assert_int_equal(json_get_string(doc, "s", &s), 0);
    assert_string_equal(s, "text");
    assert_int_equal(json_get_object(doc, "o", &o), 0);
    assert_int_equal(json_get_int(o, "x", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(json_get_array(doc, "a", &a), 0);
    assert_int_equal(json_object_array_length(a), 2);
    /* Members of something that is not an object. */
    assert_int_equal(json_get_int(a, "x", &n), CP_EINVAL);
    assert_int_equal(json_get_string(NULL, "x", &s), CP_EINVAL);
    assert_null(s);
    json_object_put(doc);

    assert_int_equal(json_parse("[1]", 3, NULL, &arr, NULL), 0);
    assert_int_equal(json_get_int(arr, "0", &n), CP_EINVAL);
    json_object_put(arr);
}

static void test_to_buf(void **state)
{
    static const char text[] =
        "{ \"url\" : \"https://example.test/a/b\", \"s\" : \"\xc3\xa9\\n\\\"\", \"n\" : [ 1, 2.5, true, null ] }";
    struct json_object *obj = NULL;
    struct buf out, tiny;

    assert_int_equal(json_parse(text, strlen(text), NULL, &obj, NULL), 0);
    buf_init(&out, 1024);
    assert_int_equal(json_to_buf(obj, &out), 0);
    assert_string_equal(buf_str(&out),
        "{\"url\":\"https://example.test/a/b\",\"s\":\"\xc3\xa9\\n\\\"\",\"n\":[1,2.5,true,null]}");
    /* It appends. */
    assert_int_equal(json_to_buf(obj, &out), 0);
    assert_int_equal(out.len, 2 * strlen("{\"url\":\"https://example.test/a/b\",\"s\":\"\xc3\xa9\\n\\\"\",\"n\":[1,2.5,true,null]}"));
    buf_free(&out);

    buf_init(&tiny, 10);
    assert_int_equal(json_to_buf(obj, &tiny), CP_ETOOBIG);
    assert_int_equal(tiny.len, 0);
    buf_free(&tiny);
    json_object_put(obj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_without_why),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_default_depth),
        cmocka_unit_test(test_default_string_and_size),
        cmocka_unit_test(test_bad_limits),
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_getters_table),
        cmocka_unit_test(test_getter_values),
        cmocka_unit_test(test_to_buf),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
