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

/* Two appends against a cap: the first must fit, the second is judged. */
struct cap_case {
    const char *name;
    size_t cap;
    size_t first;
    size_t second;
    int rc;
};

static const struct cap_case cap_cases[] = {
    { "exactly to the cap", 10, 4, 6, CP_OK },
    { "one byte past the cap", 10, 4, 7, CP_ETOOBIG },
    { "empty append at the cap", 10, 10, 0, CP_OK },
    { "one byte on a full buffer", 10, 10, 1, CP_ETOOBIG },
    { "zero cap, empty append", 0, 0, 0, CP_OK },
    { "zero cap, one byte", 0, 0, 1, CP_ETOOBIG },
    { "large cap, past the first allocation", 4096, 100, 3996, CP_OK },
    { "large cap, one past", 4096, 100, 3997, CP_ETOOBIG },
    { "huge append", 16, 1, SIZE_MAX, CP_ETOOBIG },
};

static void test_cap_table(void **state)
{
    static char bytes[8192];

    memset(bytes, 'x', sizeof bytes);
    for (size_t i = 0; i < sizeof cap_cases / sizeof cap_cases[0]; i++) {
        const struct cap_case *c = &cap_cases[i];
        struct buf b;
        int rc;

        buf_init(&b, c->cap);
        if (buf_add(&b, bytes, c->first) != 0)
            fail_msg("%s: first append failed", c->name);
        /* SIZE_MAX must be refused before anything is read. */
        rc = buf_add(&b, bytes, c->second);
        if (rc != c->rc)
            fail_msg("%s: rc %d, expected %d", c->name, rc, c->rc);
        if (rc == 0) {
            assert_int_equal(b.len, c->first + c->second);
            assert_non_null(b.data);
            assert_int_equal(b.data[b.len], '\0');
            assert_true(b.alloc >= b.len + 1);
            assert_true(b.alloc <= c->cap + 1 || b.alloc <= 64);
        } else {
            /* Past the cap the buffer is freed and empty. */
            assert_null(b.data);
            assert_int_equal(b.len, 0);
            assert_int_equal(b.alloc, 0);
            assert_string_equal(buf_str(&b), "");
            /* ...and reusable with the same cap. */
            assert_int_equal(b.max, c->cap);
            if (c->cap) {
                assert_int_equal(buf_add(&b, "y", 1), 0);
                assert_string_equal(buf_str(&b), "y");
            }
        }
        buf_free(&b);
    }
}

static void test_cap_other_appends(void **state)
{
    struct buf b;

    buf_init(&b, 3);
    assert_int_equal(buf_adds(&b, "abc"), 0);
    assert_int_equal(buf_addc(&b, 'd'), CP_ETOOBIG);
    assert_null(b.data);

    assert_int_equal(buf_adds(&b, "ab"), 0);
    assert_int_equal(buf_addc(&b, 'c'), 0);
    assert_string_equal(buf_str(&b), "abc");
    assert_int_equal(buf_printf(&b, "%d", 1), CP_ETOOBIG);
    assert_int_equal(b.len, 0);

    assert_int_equal(buf_printf(&b, "%s", "abcd"), CP_ETOOBIG);
    assert_int_equal(buf_add_json_escaped(&b, "\"", 1), 0);   /* 2 bytes */
    assert_int_equal(buf_add_json_escaped(&b, "\n", 1), CP_ETOOBIG);
    assert_null(b.data);
    buf_free(&b);
}

static void test_printf_growth(void **state)
{
    struct buf b;
    char big[1001];

    memset(big, 'q', 1000);
    big[1000] = '\0';
    buf_init(&b, 100000);
    assert_int_equal(buf_printf(&b, "%s", "start:"), 0);
    /* Longer than the 256-byte stack buffer inside buf_vprintf. */
    assert_int_equal(buf_printf(&b, "[%s|%d]", big, 42), 0);
    assert_int_equal(b.len, 6 + 1 + 1000 + 4);
    assert_int_equal(strlen(buf_str(&b)), b.len);
    assert_memory_equal(b.data, "start:[", 7);
    assert_memory_equal(b.data + 7, big, 1000);
    assert_string_equal(b.data + 1007, "|42]");
    /* Exactly 255 and 256 bytes of output, around the switch-over. */
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "%.255s", big), 0);
    assert_int_equal(b.len, 255);
    assert_int_equal(buf_printf(&b, "%.256s", big), 0);
    assert_int_equal(b.len, 511);
    assert_int_equal(strlen(buf_str(&b)), 511);
    buf_free(&b);

    /* Growth past the cap through printf fails and frees. */
    buf_init(&b, 300);
    assert_int_equal(buf_printf(&b, "%.300s", big), 0);
    assert_int_equal(b.len, 300);
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "%.301s", big), CP_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

struct escape_case {
    const char *name;
    const char *in;
    size_t len;          /* 0 = strlen(in) */
    const char *out;
};

static const struct escape_case escape_cases[] = {
    { "plain", "hello world", 0, "hello world" },
    { "empty", "", 0, "" },
    { "quote", "say \"hi\"", 0, "say \\\"hi\\\"" },
    { "backslash", "a\\b", 0, "a\\\\b" },
    { "slash untouched", "a/b", 0, "a/b" },
    { "newline", "a\nb", 0, "a\\nb" },
    { "carriage return", "\r", 0, "\\r" },
    { "tab", "\t", 0, "\\t" },
    { "backspace", "\b", 0, "\\b" },
    { "form feed", "\f", 0, "\\f" },
    { "NUL", "a\0b", 3, "a\\u0000b" },
    { "0x01", "\x01", 0, "\\u0001" },
    { "0x1f", "\x1f", 0, "\\u001f" },
    { "escape char", "\x1b[0m", 0, "\\u001b[0m" },
    { "space is kept", " ", 0, " " },
    { "DEL 0x7f", "\x7f", 0, "\\u007f" },
    { "UTF-8 passes through", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0,
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
    { "mixed", "\"\\\n\x7f\xc3\xa9", 0, "\\\"\\\\\\n\\u007f\xc3\xa9" },
    { "only the first n bytes", "abcdef", 3, "abc" },
};

static void test_json_escape_table(void **state)
{
    for (size_t i = 0; i < sizeof escape_cases / sizeof escape_cases[0]; i++) {
        const struct escape_case *c = &escape_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        struct buf b;

        buf_init(&b, 1024);
        assert_int_equal(buf_adds(&b, "<"), 0);
        if (buf_add_json_escaped(&b, c->in, len) != 0)
            fail_msg("%s: failed", c->name);
        assert_int_equal(buf_adds(&b, ">"), 0);
        if (b.len != strlen(c->out) + 2 || memcmp(b.data + 1, c->out, strlen(c->out)) != 0 ||
            b.data[0] != '<' || b.data[b.len - 1] != '>')
            fail_msg("%s: got '%s', expected '<%s>'", c->name, buf_str(&b), c->out);
        buf_free(&b);
    }
}

static void test_detach(void **state)
{
    struct buf b;
    char *p, *before;
    size_t len = 99;

    buf_init(&b, 64);
    assert_int_equal(buf_adds(&b, "owned"), 0);
    before = b.data;
    p = buf_detach(&b, &len);
    /* The same memory changes hands; the buffer forgets it. */
    assert_ptr_equal(p, before);
    assert_int_equal(len, 5);
    assert_string_equal(p, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.max, 64);
    free(p);

    /* An empty buffer hands over a fresh "". */
    p = buf_detach(&b, &len);
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);

    /* len may be NULL; the buffer is reusable afterwards. */
    assert_int_equal(buf_adds(&b, "again"), 0);
    p = buf_detach(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
    buf_free(&b);
}

static void test_reset(void **state)
{
    struct buf b;
    char *mem;
    size_t alloc;

    buf_init(&b, 64);
    buf_reset(&b);                    /* on a never-used buffer */
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_adds(&b, "some text"), 0);
    mem = b.data;
    alloc = b.alloc;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    assert_ptr_equal(b.data, mem);   /* memory kept for reuse */
    assert_int_equal(b.alloc, alloc);
    assert_int_equal(buf_adds(&b, "new"), 0);
    assert_string_equal(buf_str(&b), "new");
    assert_ptr_equal(b.data, mem);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    buf_free(&b);                     /* twice is harmless */
}

static void test_empty_str(void **state)
{
    struct buf b;

    buf_init(&b, 16);
    assert_non_null(buf_str(&b));
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_add(&b, NULL, 0), 0);
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(b.len, 0);
    buf_free(&b);
    assert_string_equal(buf_str(&b), "");
}

static void test_binary_and_terminator(void **state)
{
    struct buf b;
    static const char bin[] = { 'a', '\0', 'b', '\0', 'c' };

    buf_init(&b, 1 << 20);
    assert_int_equal(buf_add(&b, bin, sizeof bin), 0);
    assert_int_equal(b.len, sizeof bin);
    assert_memory_equal(b.data, bin, sizeof bin);
    assert_int_equal(b.data[b.len], '\0');
    /* Many small appends keep the terminator and the contents. */
    buf_reset(&b);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_addc(&b, (char)('a' + i % 26)), 0);
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.data[9999], 'a' + 9999 % 26);
    assert_int_equal(b.data[10000], '\0');
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_table),
        cmocka_unit_test(test_cap_other_appends),
        cmocka_unit_test(test_printf_growth),
        cmocka_unit_test(test_json_escape_table),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_empty_str),
        cmocka_unit_test(test_binary_and_terminator),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
