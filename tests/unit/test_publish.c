#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "buf.h"
#include "err.h"
#include "publish.h"

#define KIB 1024LL
#define MIB (1024 * KIB)
#define GRANULE (256 * KIB)

/* ------------------------------------------------- YouTube Range header -- */

static void test_next_offset(void **state)
{
    static const struct {
        const char *range;
        int rc;
        long long next;
    } cases[] = {
        { NULL, 0, 0 },
        { "", 0, 0 },
        { "bytes=0-0", 0, 1 },
        { "bytes=0-262143", 0, 262144 },
        { "bytes=0-8388607", 0, 8388608 },
        { "bytes=0-1073741823", 0, 1073741824 },
        { "bytes=1-5", CP_EPARSE, 0 },
        { "bytes=0-", CP_EPARSE, 0 },
        { "bytes=0-12a", CP_EPARSE, 0 },
        { "bytes=0--1", CP_EPARSE, 0 },
        { "bytes 0-5", CP_EPARSE, 0 },
        { "0-5", CP_EPARSE, 0 },
        { "bytes=0-5 ", CP_EPARSE, 0 },
        { "bytes=0-99999999999999999999999", CP_EPARSE, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long next = -7;

        assert_int_equal(pub_youtube_next_offset(cases[i].range, &next), cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(next, cases[i].next);
        else
            assert_int_equal(next, 0);
    }
}

/* ------------------------------------------------------ chunk lengths -- */

static void test_chunk_len(void **state)
{
    static const struct {
        long long offset, total, chunk, want;
    } cases[] = {
        { 0, 100 * MIB, 8 * MIB, 8 * MIB },           /* a whole chunk */
        { 96 * MIB, 100 * MIB, 8 * MIB, 4 * MIB },    /* the last one, shorter */
        { 0, 1000, 8 * MIB, 1000 },                   /* a file smaller than a chunk */
        { 0, 100 * MIB, 8 * MIB + 1000, 8 * MIB },    /* rounded down to 256 KiB */
        { 0, 100 * MIB, 300 * KIB, GRANULE },
        { 0, 100 * MIB, 1000, GRANULE },               /* never below one granule */
        { 0, 100 * MIB, 0, GRANULE },
        { 100 * MIB, 100 * MIB, 8 * MIB, 0 },         /* nothing left */
        { 101 * MIB, 100 * MIB, 8 * MIB, 0 },
        { 8 * MIB, 8 * MIB + 1, 8 * MIB, 1 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long got = pub_youtube_chunk_len(cases[i].offset, cases[i].total, cases[i].chunk);

        assert_int_equal(got, cases[i].want);
        if (got > 0 && cases[i].offset + got < cases[i].total)
            assert_int_equal(got % GRANULE, 0);
    }
}

/* ------------------------------------------------------- metadata JSON -- */

static void test_metadata(void **state)
{
    static const struct {
        const char *settings;           /* JSON or NULL */
        const char *title, *caption;
        const char *want;
    } cases[] = {
        { NULL, "My clip", "Look #shorts",
          "{\"snippet\":{\"title\":\"My clip\",\"description\":\"Look #shorts\","
          "\"categoryId\":\"22\"},\"status\":{\"privacyStatus\":\"public\","
          "\"selfDeclaredMadeForKids\":false}}" },
        { "{\"privacy\":\"unlisted\",\"category_id\":\"10\",\"made_for_kids\":true,"
          "\"tags\":[\"a\",\"b c\",\"\"]}",
          "T", "D \"quoted\"\n",
          "{\"snippet\":{\"title\":\"T\",\"description\":\"D \\\"quoted\\\"\\n\","
          "\"tags\":[\"a\",\"b c\"],\"categoryId\":\"10\"},\"status\":{\"privacyStatus\":"
          "\"unlisted\",\"selfDeclaredMadeForKids\":true}}" },
        { "{\"tags\":\"one, #two ,, three\",\"category_id\":24}", "t", "",
          "{\"snippet\":{\"title\":\"t\",\"description\":\"\",\"tags\":[\"one\",\"two\","
          "\"three\"],\"categoryId\":\"24\"},\"status\":{\"privacyStatus\":\"public\","
          "\"selfDeclaredMadeForKids\":false}}" },
        { "{\"privacy\":\"\"}", "caf\xc3\xa9", NULL,
          "{\"snippet\":{\"title\":\"caf\xc3\xa9\",\"description\":\"\",\"categoryId\":\"22\"},"
          "\"status\":{\"privacyStatus\":\"public\",\"selfDeclaredMadeForKids\":false}}" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pub_request rq;
        struct buf out;
        struct json_object *want, *got;

        memset(&rq, 0, sizeof rq);
        rq.title = cases[i].title;
        rq.caption = cases[i].caption;
        rq.settings = cases[i].settings ? json_tokener_parse(cases[i].settings) : NULL;
        buf_init(&out, 64 * 1024);
        assert_int_equal(pub_youtube_metadata(&rq, &out), 0);
        got = json_tokener_parse(buf_str(&out));
        want = json_tokener_parse(cases[i].want);
        assert_non_null(got);
        assert_non_null(want);
        if (!json_object_equal(got, want))
            fail_msg("case %zu: got %s", i, buf_str(&out));
        json_object_put(got);
        json_object_put(want);
        json_object_put(rq.settings);
        buf_free(&out);
    }
}

/* ---------------------------------------------------- processing_info -- */

static void test_processing(void **state)
{
    static const struct {
        const char *body;
        int rc;
        const char *state;
        long long check_after;
        int percent;
        const char *error;
    } cases[] = {
        { "{\"data\":{\"id\":\"1\",\"processing_info\":{\"state\":\"pending\","
          "\"check_after_secs\":5,\"progress_percent\":0}}}", 0, "pending", 5, 0, "" },
        { "{\"data\":{\"processing_info\":{\"state\":\"in_progress\",\"check_after_secs\":2,"
          "\"progress_percent\":66}}}", 0, "in_progress", 2, 66, "" },
        { "{\"data\":{\"processing_info\":{\"state\":\"succeeded\",\"progress_percent\":100}}}",
          0, "succeeded", 0, 100, "" },
        { "{\"data\":{\"processing_info\":{\"state\":\"failed\",\"progress_percent\":100,"
          "\"error\":{\"code\":1,\"name\":\"InvalidMedia\",\"message\":\"Invalid or "
          "Unsupported media\"}}}}", 0, "failed", 0, 100, "Invalid or Unsupported media" },
        { "{\"data\":{\"processing_info\":{\"state\":\"failed\",\"error\":{\"name\":\"X\"}}}}",
          0, "failed", 0, 0, "X" },
        { "{\"data\":{\"id\":\"1\",\"media_key\":\"7_1\"}}", 0, "", 0, 0, "" },
        { "{\"processing_info\":{\"state\":\"pending\",\"check_after_secs\":1}}", 0, "pending",
          1, 0, "" },
        { "{\"data\":{\"processing_info\":{\"state\":\"pending\",\"check_after_secs\":-4,"
          "\"progress_percent\":400}}}", 0, "pending", 0, 0, "" },
        { "{\"data\":{\"processing_info\":{\"state\":\"a-state-name-far-too-long\"}}}",
          CP_EPARSE, "", 0, 0, "" },
        { "not json", CP_EPARSE, "", 0, 0, "" },
        { "", CP_EPARSE, "", 0, 0, "" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct x_processing p;

        memset(&p, 0x55, sizeof p);
        assert_int_equal(pub_x_processing(cases[i].body, strlen(cases[i].body), &p),
                         cases[i].rc);
        assert_string_equal(p.state, cases[i].state);
        assert_int_equal(p.check_after_s, cases[i].check_after);
        assert_int_equal(p.progress_percent, cases[i].percent);
        assert_string_equal(p.error, cases[i].error);
    }
}

/* ------------------------------------------------------------ find_post -- */

#define T0 1767225600LL                 /* 2026-01-01T00:00:00Z */

static void test_find_post(void **state)
{
    static const char timeline[] =
        "{\"data\":["
        "{\"id\":\"300\",\"text\":\"newest https://t.co/abc\",\"created_at\":"
        "\"2026-01-01T00:00:10.000Z\",\"attachments\":{\"media_keys\":[\"7_999\"]}},"
        "{\"id\":\"200\",\"text\":\"  hello world  \",\"created_at\":\"2026-01-01T00:00:05.000Z\"},"
        "{\"id\":\"100\",\"text\":\"old post\",\"created_at\":\"2025-12-31T23:00:00.000Z\","
        "\"attachments\":{\"media_keys\":[\"7_111\"]}},"
        "{\"text\":\"no id\"},"
        "{\"id\":\"50\",\"text\":\"undated\"}"
        "],\"meta\":{\"result_count\":5}}";
    static const struct {
        const char *body, *text, *media_key;
        long long since;
        int rc;
        const char *id;
    } cases[] = {
        { timeline, "newest https://example.com/very/long?x=1", NULL, T0, 0, "300" },
        { timeline, "something else", "7_999", T0, 0, "300" },     /* by media */
        { timeline, "hello world", NULL, T0, 0, "200" },           /* trimmed */
        { timeline, "hello world", NULL, T0 + 6, CP_ENOTFOUND, "" }, /* too old */
        { timeline, "old post", NULL, T0 - 7200, 0, "100" },
        { timeline, "old post", "7_111", T0, CP_ENOTFOUND, "" },
        { timeline, "old post", NULL, 0, 0, "100" },               /* no lower bound */
        { timeline, "undated", NULL, T0, 0, "50" },                /* no date: not excluded */
        { timeline, "newest", NULL, T0, CP_ENOTFOUND, "" },        /* the link is part of it */
        { timeline, "", NULL, T0, CP_ENOTFOUND, "" },
        { timeline, NULL, "7_000", T0, CP_ENOTFOUND, "" },
        { "{\"meta\":{\"result_count\":0}}", "x", NULL, 0, CP_ENOTFOUND, "" },
        { "[]", "x", NULL, 0, CP_EPARSE, "" },
        { "garbage", "x", NULL, 0, CP_EPARSE, "" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[64];

        memset(id, 'z', sizeof id);
        assert_int_equal(pub_x_find_post(cases[i].body, strlen(cases[i].body), cases[i].text,
                                         cases[i].media_key, cases[i].since, id, sizeof id),
                         cases[i].rc);
        assert_string_equal(id, cases[i].id);
    }
}

static void test_find_post_small_buffer(void **state)
{
    static const char body[] = "{\"data\":[{\"id\":\"1234567890\",\"text\":\"t\"}]}";
    char id[4];

    (void)state;
    assert_int_equal(pub_x_find_post(body, strlen(body), "t", NULL, 0, id, sizeof id), CP_ETOOBIG);
}

static void test_publishers_table(void **state)
{
    (void)state;
    assert_ptr_equal(publisher_find(PLATFORM_YOUTUBE)->publish, pub_youtube);
    assert_ptr_equal(publisher_find(PLATFORM_X)->publish, pub_x);
    assert_null(publisher_find(PLATFORM_TIKTOK));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_offset),
        cmocka_unit_test(test_chunk_len),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_processing),
        cmocka_unit_test(test_find_post),
        cmocka_unit_test(test_find_post_small_buffer),
        cmocka_unit_test(test_publishers_table),
    };

    return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
