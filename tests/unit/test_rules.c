#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <json-c/json.h>

#include "err.h"
#include "rules.h"

#define ME 7
#define OTHER 8

/* The connections the lookup knows. */
static const struct rule_conn conns[] = {
    { 1, ME, PLATFORM_TIKTOK },
    { 2, ME, PLATFORM_INSTAGRAM },
    { 3, ME, PLATFORM_YOUTUBE },
    { 4, ME, PLATFORM_X },
    { 5, OTHER, PLATFORM_TIKTOK },
    { 6, OTHER, PLATFORM_INSTAGRAM },
};

static int fake_lookup(void *ctx, long long id, struct rule_conn *out)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        if (conns[i].id == id) {
            *out = conns[i];
            return 0;
        }
    return CP_ENOTFOUND;
}

static int failing_lookup(void *ctx, long long id, struct rule_conn *out)
{
    (void)ctx;
    (void)id;
    (void)out;
    return CP_EUNAVAIL;
}

/* Parse text as ME; the result code. */
static int parse_text(const char *text, struct rule_input *in, struct rule_problem *why)
{
    struct json_object *body = json_tokener_parse(text);
    int rc;

    if (!body)
        fail_msg("test body is not JSON: %s", text);
    rule_input_init(in);
    rc = rule_parse(body, ME, fake_lookup, NULL, in, why);
    json_object_put(body);
    return rc;
}

#define DEST_IG "{\"connection_id\":2}"
#define BODY(extra, dests) "{\"source_connection_id\":1" extra ",\"destinations\":[" dests "]}"
#define SETTINGS(id, s) "{\"connection_id\":" #id ",\"settings\":" s "}"

struct bad_case {
    const char *body;
    int status;
    const char *code;
    const char *field;
};

static const struct bad_case bad_cases[] = {
    /* the body and its members */
    { "[]", 400, "invalid_body", "" },
    { BODY(",\"id\":3", DEST_IG), 422, "unknown_field", "id" },
    { "{\"destinations\":[" DEST_IG "]}", 400, "missing_field", "source_connection_id" },
    { "{\"source_connection_id\":1}", 400, "missing_field", "destinations" },
    { BODY(",\"name\":5", DEST_IG), 400, "invalid_field", "name" },
    { BODY(",\"name\":\"a\\u0001b\"", DEST_IG), 422, "invalid_field", "name" },
    { BODY(",\"enabled\":\"yes\"", DEST_IG), 400, "invalid_field", "enabled" },
    { BODY(",\"backfill\":1", DEST_IG), 400, "invalid_field", "backfill" },
    { BODY(",\"delay_s\":1.5", DEST_IG), 400, "invalid_field", "delay_s" },
    { BODY(",\"delay_s\":-1", DEST_IG), 422, "invalid_field", "delay_s" },
    { BODY(",\"delay_s\":86401", DEST_IG), 422, "invalid_field", "delay_s" },
    /* the source */
    { "{\"source_connection_id\":\"1\",\"destinations\":[" DEST_IG "]}", 400, "invalid_field",
      "source_connection_id" },
    { "{\"source_connection_id\":5,\"destinations\":[" DEST_IG "]}", 422, "invalid_connection",
      "source_connection_id" },
    { "{\"source_connection_id\":99,\"destinations\":[" DEST_IG "]}", 422, "invalid_connection",
      "source_connection_id" },
    { "{\"source_connection_id\":2,\"destinations\":[" DEST_IG "]}", 422, "invalid_connection",
      "source_connection_id" },
    { "{\"source_connection_id\":0,\"destinations\":[" DEST_IG "]}", 422, "invalid_connection",
      "source_connection_id" },
    /* filters */
    { BODY(",\"filters\":[]", DEST_IG), 400, "invalid_field", "filters" },
    { BODY(",\"filters\":{\"colour\":1}", DEST_IG), 422, "unknown_field", "filters.colour" },
    { BODY(",\"filters\":{\"min_duration_s\":\"5\"}", DEST_IG), 400, "invalid_field",
      "filters.min_duration_s" },
    { BODY(",\"filters\":{\"min_duration_s\":-5}", DEST_IG), 422, "invalid_field",
      "filters.min_duration_s" },
    { BODY(",\"filters\":{\"min_duration_s\":60,\"max_duration_s\":30}", DEST_IG), 422,
      "invalid_field", "filters.max_duration_s" },
    { BODY(",\"filters\":{\"include_words\":\"cat\"}", DEST_IG), 400, "invalid_field",
      "filters.include_words" },
    { BODY(",\"filters\":{\"exclude_words\":[1]}", DEST_IG), 400, "invalid_field",
      "filters.exclude_words[0]" },
    { BODY(",\"filters\":{\"exclude_words\":[\"\"]}", DEST_IG), 422, "invalid_field",
      "filters.exclude_words[0]" },
    /* destinations */
    { BODY("", ""), 422, "invalid_field", "destinations" },
    { "{\"source_connection_id\":1,\"destinations\":{}}", 400, "invalid_field", "destinations" },
    { BODY("", "5"), 400, "invalid_field", "destinations[0]" },
    { BODY("", "{}"), 400, "missing_field", "destinations[0].connection_id" },
    { BODY("", DEST_IG ",{\"connection_id\":1}"), 422, "invalid_connection",
      "destinations[1].connection_id" },
    { BODY("", DEST_IG ",{\"connection_id\":6}"), 422, "invalid_connection",
      "destinations[1].connection_id" },
    { BODY("", DEST_IG ",{\"connection_id\":99}"), 422, "invalid_connection",
      "destinations[1].connection_id" },
    { BODY("", DEST_IG "," DEST_IG), 422, "invalid_field", "destinations[1].connection_id" },
    { BODY("", "{\"connection_id\":2,\"extra\":1}"), 422, "unknown_field", "destinations[0].extra" },
    { BODY("", "{\"connection_id\":2,\"platform\":\"x\"}"), 422, "invalid_field",
      "destinations[0].platform" },
    { BODY("", SETTINGS(2, "[]")), 400, "invalid_field", "destinations[0].settings" },
    /* settings: common keys */
    { BODY("", SETTINGS(2, "{\"title_template\":\"{title}\"}")), 422, "unknown_field",
      "destinations[0].settings.title_template" },
    { BODY("", SETTINGS(4, "{\"share_to_feed\":true}")), 422, "unknown_field",
      "destinations[0].settings.share_to_feed" },
    { BODY("", SETTINGS(2, "{\"caption_template\":7}")), 400, "invalid_field",
      "destinations[0].settings.caption_template" },
    { BODY("", SETTINGS(2, "{\"caption_template\":\"{nope}\"}")), 422, "invalid_template",
      "destinations[0].settings.caption_template" },
    { BODY("", SETTINGS(2, "{\"hashtags_add\":[\"two words\"]}")), 422, "invalid_field",
      "destinations[0].settings.hashtags_add[0]" },
    { BODY("", SETTINGS(2, "{\"hashtags_add\":[\"#\"]}")), 422, "invalid_field",
      "destinations[0].settings.hashtags_add[0]" },
    { BODY("", SETTINGS(2, "{\"hashtags_remove\":\"x\"}")), 400, "invalid_field",
      "destinations[0].settings.hashtags_remove" },
    { BODY("", SETTINGS(2, "{\"hashtags_max\":31}")), 422, "invalid_field",
      "destinations[0].settings.hashtags_max" },
    /* instagram */
    { BODY("", SETTINGS(2, "{\"share_to_feed\":\"yes\"}")), 400, "invalid_field",
      "destinations[0].settings.share_to_feed" },
    { BODY("", SETTINGS(2, "{\"thumb_offset_ms\":-1}")), 422, "invalid_field",
      "destinations[0].settings.thumb_offset_ms" },
    { BODY("", SETTINGS(2, "{\"cover_url\":\"ftp://x/y\"}")), 422, "invalid_field",
      "destinations[0].settings.cover_url" },
    /* youtube */
    { BODY("", SETTINGS(3, "{\"title_template\":\"{title\"}")), 422, "invalid_template",
      "destinations[0].settings.title_template" },
    { BODY("", SETTINGS(3, "{\"privacy\":\"friends\"}")), 422, "invalid_field",
      "destinations[0].settings.privacy" },
    { BODY("", SETTINGS(3, "{\"category_id\":22}")), 400, "invalid_field",
      "destinations[0].settings.category_id" },
    { BODY("", SETTINGS(3, "{\"category_id\":\"2a\"}")), 422, "invalid_field",
      "destinations[0].settings.category_id" },
    { BODY("", SETTINGS(3, "{\"made_for_kids\":0}")), 400, "invalid_field",
      "destinations[0].settings.made_for_kids" },
    { BODY("", SETTINGS(3, "{\"tags\":[\"a\",3]}")), 400, "invalid_field",
      "destinations[0].settings.tags[1]" },
    /* x */
    { BODY("", DEST_IG "," SETTINGS(4, "{\"text_template\":\"{date\"}")), 422, "invalid_template",
      "destinations[1].settings.text_template" },
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct rule_input in;
        struct rule_problem why;
        int rc = parse_text(c->body, &in, &why);

        if (rc != CP_EINVAL || why.status != c->status || strcmp(why.code, c->code) ||
            strcmp(why.field, c->field))
            fail_msg("case %zu %s: rc %d, %d %s \"%s\" (%s); expected %d %s \"%s\"", i, c->body, rc,
                     why.status, why.code, why.field, why.message, c->status, c->code, c->field);
        assert_true(strlen(why.message) > 0);
        rule_input_free(&in);
    }
}

/* Refusals built at run time: limits on sizes and counts. */
static void expect_refusal(const char *body, int status, const char *code, const char *field)
{
    struct rule_input in;
    struct rule_problem why;

    assert_int_equal(parse_text(body, &in, &why), CP_EINVAL);
    assert_int_equal(why.status, status);
    assert_string_equal(why.code, code);
    assert_string_equal(why.field, field);
    rule_input_free(&in);
}

static void test_limits(void **state)
{
    char body[40000], *p;
    int i;

    (void)state;
    /* name of 256 bytes */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"name\":\"");
    memset(p, 'n', 256);
    strcpy(p + 256, "\",\"destinations\":[" DEST_IG "]}");
    expect_refusal(body, 422, "invalid_field", "name");

    /* 11 destinations */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[");
    for (i = 0; i < 11; i++)
        p += sprintf(p, "%s{\"connection_id\":%d}", i ? "," : "", 2 + i % 3);
    strcpy(p, "]}");
    expect_refusal(body, 422, "invalid_field", "destinations");

    /* 51 words */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"filters\":{\"include_words\":[");
    for (i = 0; i < 51; i++)
        p += sprintf(p, "%s\"w%d\"", i ? "," : "", i);
    strcpy(p, "]},\"destinations\":[" DEST_IG "]}");
    expect_refusal(body, 422, "invalid_field", "filters.include_words");

    /* a word of 101 bytes */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"filters\":{\"exclude_words\":[\"ok\",\"");
    memset(p, 'w', 101);
    strcpy(p + 101, "\"]},\"destinations\":[" DEST_IG "]}");
    expect_refusal(body, 422, "invalid_field", "filters.exclude_words[1]");

    /* 31 hashtags to add */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":2,"
                             "\"settings\":{\"hashtags_add\":[");
    for (i = 0; i < 31; i++)
        p += sprintf(p, "%s\"t%d\"", i ? "," : "", i);
    strcpy(p, "]}}]}");
    expect_refusal(body, 422, "invalid_field", "destinations[0].settings.hashtags_add");

    /* a caption template of 2201 bytes */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":2,"
                             "\"settings\":{\"caption_template\":\"");
    memset(p, 'c', 2201);
    strcpy(p + 2201, "\"}}]}");
    expect_refusal(body, 422, "invalid_field", "destinations[0].settings.caption_template");

    /* an X text whose fixed part alone is over 280 */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":4,"
                             "\"settings\":{\"text_template\":\"");
    memset(p, 'x', 281);
    strcpy(p + 281, " {description}\"}}]}");
    expect_refusal(body, 422, "invalid_template", "destinations[0].settings.text_template");

    /* YouTube tags over 500 characters in all */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":3,"
                             "\"settings\":{\"tags\":[");
    for (i = 0; i < 51; i++)
        p += sprintf(p, "%s\"tag%07d\"", i ? "," : "", i);   /* 10 characters each */
    strcpy(p, "]}}]}");
    expect_refusal(body, 422, "invalid_field", "destinations[0].settings.tags");

    /* a YouTube title template over 500 bytes */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":3,"
                             "\"settings\":{\"title_template\":\"");
    memset(p, 't', 501);
    strcpy(p + 501, "\"}}]}");
    expect_refusal(body, 422, "invalid_field", "destinations[0].settings.title_template");

    /* an X text template over 1000 bytes */
    p = body + sprintf(body, "{\"source_connection_id\":1,\"destinations\":[{\"connection_id\":4,"
                             "\"settings\":{\"text_template\":\"");
    memset(p, 'x', 1001);
    strcpy(p + 1001, "\"}}]}");
    expect_refusal(body, 422, "invalid_field", "destinations[0].settings.text_template");
}

static void test_valid_rule(void **state)
{
    const char *body =
        "{\"name\":\"Cats everywhere\",\"source_connection_id\":1,\"enabled\":false,"
        "\"filters\":{\"min_duration_s\":5,\"max_duration_s\":null,\"include_words\":[\"cat\"],"
        "\"exclude_words\":[]},\"backfill\":true,\"delay_s\":600,\"destinations\":["
        "{\"connection_id\":2,\"platform\":\"instagram\",\"settings\":{\"caption_template\":"
        "\"{description} {hashtags}\",\"hashtags_add\":[\"#cats\",\"über\"],\"hashtags_max\":10,"
        "\"cover_url\":\"https://cdn.example/c.jpg\",\"thumb_offset_ms\":1500}},"
        "{\"connection_id\":3,\"settings\":{\"title_template\":\"{title} ({date})\","
        "\"tags\":[\"cats\"],\"privacy\":\"unlisted\"}},"
        "{\"connection_id\":4,\"settings\":{\"text_template\":\"{description} {share_url}\"}}]}";
    struct rule_input in;
    struct rule_problem why;
    struct json_object *s, *v;

    (void)state;
    if (parse_text(body, &in, &why))
        fail_msg("refused: %d %s %s %s", why.status, why.code, why.field, why.message);
    assert_string_equal(in.name, "Cats everywhere");
    assert_int_equal(in.source_connection_id, 1);
    assert_int_equal(in.enabled, 0);
    assert_int_equal(in.min_duration_s, 5);
    assert_int_equal(in.max_duration_s, -1);
    assert_string_equal(in.include_words, "[\"cat\"]");
    assert_string_equal(in.exclude_words, "[]");
    assert_int_equal(in.backfill, 1);
    assert_int_equal(in.delay_s, 600);
    assert_int_equal(in.ndestinations, 3);
    assert_int_equal(in.destinations[0].platform, PLATFORM_INSTAGRAM);
    assert_int_equal(in.destinations[1].platform, PLATFORM_YOUTUBE);
    assert_int_equal(in.destinations[2].connection_id, 4);
    /* defaults filled in */
    s = json_tokener_parse(in.destinations[0].settings);
    assert_true(json_object_object_get_ex(s, "share_to_feed", &v) && json_object_get_boolean(v));
    json_object_put(s);
    s = json_tokener_parse(in.destinations[1].settings);
    assert_true(json_object_object_get_ex(s, "category_id", &v));
    assert_string_equal(json_object_get_string(v), "22");
    assert_true(json_object_object_get_ex(s, "privacy", &v));
    assert_string_equal(json_object_get_string(v), "unlisted");
    assert_true(json_object_object_get_ex(s, "made_for_kids", &v) && !json_object_get_boolean(v));
    json_object_put(s);
    rule_input_free(&in);

    /* the least a rule needs */
    assert_int_equal(parse_text(BODY("", DEST_IG), &in, &why), 0);
    assert_string_equal(in.name, "");
    assert_int_equal(in.enabled, 1);
    assert_int_equal(in.backfill, 0);
    assert_int_equal(in.min_duration_s, -1);
    rule_input_free(&in);
}

static void test_lookup_failure_passes_on(void **state)
{
    struct json_object *body = json_tokener_parse(BODY("", DEST_IG));
    struct rule_input in;
    struct rule_problem why;

    (void)state;
    rule_input_init(&in);
    assert_int_equal(rule_parse(body, ME, failing_lookup, NULL, &in, &why), CP_EUNAVAIL);
    rule_input_free(&in);
    json_object_put(body);
}

static void test_merge_patch(void **state)
{
    struct json_object *stored = json_tokener_parse(
        "{\"id\":9,\"name\":\"old\",\"source_connection_id\":1,\"enabled\":true,"
        "\"filters\":{\"min_duration_s\":5,\"max_duration_s\":60,\"include_words\":[\"a\"],"
        "\"exclude_words\":[]},\"backfill\":false,\"delay_s\":0,"
        "\"destinations\":[{\"connection_id\":2,\"platform\":\"instagram\",\"settings\":{}}],"
        "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":null}");
    struct json_object *patch = json_tokener_parse(
        "{\"name\":\"new\",\"filters\":{\"max_duration_s\":90},"
        "\"destinations\":[{\"connection_id\":4}]}");
    struct json_object *bad = json_tokener_parse("{\"filters\":{\"min_duration_s\":100}}");
    struct json_object *m = NULL, *v, *f;
    struct rule_input in;
    struct rule_problem why;

    (void)state;
    assert_int_equal(rule_merge_patch(stored, patch, &m), 0);
    assert_false(json_object_object_get_ex(m, "id", NULL));
    assert_false(json_object_object_get_ex(m, "created_at", NULL));
    assert_true(json_object_object_get_ex(m, "name", &v));
    assert_string_equal(json_object_get_string(v), "new");
    assert_true(json_object_object_get_ex(m, "filters", &f));
    assert_true(json_object_object_get_ex(f, "min_duration_s", &v));
    assert_int_equal(json_object_get_int(v), 5);
    assert_true(json_object_object_get_ex(f, "max_duration_s", &v));
    assert_int_equal(json_object_get_int(v), 90);
    rule_input_init(&in);
    assert_int_equal(rule_parse(m, ME, fake_lookup, NULL, &in, &why), 0);
    assert_int_equal(in.ndestinations, 1);
    assert_int_equal(in.destinations[0].connection_id, 4);
    rule_input_free(&in);
    json_object_put(m);

    /* the stored maximum is kept, and now below the new minimum */
    assert_int_equal(rule_merge_patch(stored, bad, &m), 0);
    rule_input_init(&in);
    assert_int_equal(rule_parse(m, ME, fake_lookup, NULL, &in, &why), CP_EINVAL);
    assert_string_equal(why.field, "filters.max_duration_s");
    rule_input_free(&in);
    json_object_put(m);

    assert_int_equal(rule_merge_patch(stored, NULL, &m), CP_EINVAL);
    assert_null(m);
    json_object_put(bad);
    json_object_put(patch);
    json_object_put(stored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_valid_rule),
        cmocka_unit_test(test_lookup_failure_passes_on),
        cmocka_unit_test(test_merge_patch),
    };

    return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
