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
#include "json.h"
#include "template.h"

#define JAN_1_2026 1767225600000LL

static const struct template_vars video = {
    .description = "Hello world #fun #Cats\nsecond line",
    .title = "",
    .share_url = "https://www.tiktok.com/@me/video/1",
    .created_ms = JAN_1_2026,
};

static size_t chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if ((*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* A string of n copies of unit. */
static char *repeat(const char *unit, size_t n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * n + 1);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * len, unit, len);
    s[len * n] = '\0';
    return s;
}

static struct json_object *settings_of(const char *text)
{
    struct json_object *o = text ? json_tokener_parse(text) : NULL;

    if (text)
        assert_non_null(o);
    return o;
}

/* ---------------------------------------------------------- expand -- */

struct expand_case {
    const char *tmpl;
    long long created_ms;
    const char *hashtags;
    const char *expect;
};

static const struct expand_case expand_cases[] = {
    { "{description}", JAN_1_2026, "", "Hello world\nsecond line" },
    { "{title}", JAN_1_2026, "", "Hello world" },
    { "{hashtags}", JAN_1_2026, "#a #b", "#a #b" },
    { "{share_url}", JAN_1_2026, "", "https://www.tiktok.com/@me/video/1" },
    { "{date}", JAN_1_2026, "", "2026-01-01" },
    { "{date}", JAN_1_2026 - 1, "", "2025-12-31" },
    { "on {date}.", 0, "", "on ." },
    { "{{literal}} {{ }}", JAN_1_2026, "", "{literal} { }" },
    { "{title} - {date} {hashtags}", JAN_1_2026, "#x", "Hello world - 2026-01-01 #x" },
    { "  {description}   {hashtags}  ", JAN_1_2026, "", "Hello world\nsecond line" },
    { "", JAN_1_2026, "#x", "" },
};

static void test_expand(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof expand_cases / sizeof expand_cases[0]; i++) {
        const struct expand_case *c = &expand_cases[i];
        struct template_vars v = video;
        char why[TEMPLATE_ERROR_MAX];
        struct buf out;

        v.created_ms = c->created_ms;
        buf_init(&out, 4096);
        assert_int_equal(template_expand(c->tmpl, &v, c->hashtags, &out, why, sizeof why), 0);
        assert_string_equal(buf_str(&out), c->expect);
        buf_free(&out);
    }
}

static void test_title_fallback(void **state)
{
    char *line = repeat("é", 150);
    char *desc = malloc(strlen(line) + 32);
    struct template_vars v = video;
    struct buf out;
    char why[TEMPLATE_ERROR_MAX];

    (void)state;
    sprintf(desc, "#tag %s #more\nnext", line);
    v.description = desc;
    buf_init(&out, 4096);
    assert_int_equal(template_expand("{title}", &v, "", &out, why, sizeof why), 0);
    assert_int_equal(chars(buf_str(&out)), 100);
    assert_null(strchr(buf_str(&out), '#'));
    buf_reset(&out);
    v.title = "Own title";
    assert_int_equal(template_expand("{title}", &v, "", &out, why, sizeof why), 0);
    assert_string_equal(buf_str(&out), "Own title");
    buf_free(&out);
    free(desc);
    free(line);
}

struct error_case {
    const char *tmpl;
    const char *mentions[2];          /* pieces the sentence must hold */
};

static const struct error_case error_cases[] = {
    { "{nope}", { "{nope}", "byte 0" } },
    { "abc {Title}", { "{Title}", "byte 4" } },
    { "ab {title", { "not closed", "byte 3" } },
    { "x {a{title}", { "not closed", "byte 2" } },
    { "a } b", { "closes nothing", "byte 2" } },
    { "{}", { "{}", "byte 0" } },
};

static void test_template_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const struct error_case *c = &error_cases[i];
        char why[TEMPLATE_ERROR_MAX];
        struct buf out;

        assert_int_equal(template_check(c->tmpl, why, sizeof why), CP_EINVAL);
        for (int k = 0; k < 2; k++)
            if (!strstr(why, c->mentions[k]))
                fail_msg("%s: \"%s\" lacks \"%s\"", c->tmpl, why, c->mentions[k]);
        buf_init(&out, 4096);
        assert_int_equal(template_expand(c->tmpl, &video, "", &out, why, sizeof why), CP_EINVAL);
        buf_free(&out);
    }
    assert_int_equal(template_check("{description} {{ok}} {hashtags}", NULL, 0), 0);
}

/* -------------------------------------------------------- hashtags -- */

static void test_hashtags(void **state)
{
    char tags[8][TEMPLATE_TAG_MAX];
    struct buf rest;
    size_t n;

    (void)state;
    buf_init(&rest, 4096);
    n = template_hashtags("a #one b #Two #ONE c#not #x_y #über &#39; #", tags, 8, &rest);
    assert_int_equal(n, 4);
    assert_string_equal(tags[0], "one");
    assert_string_equal(tags[1], "Two");
    assert_string_equal(tags[2], "x_y");
    assert_string_equal(tags[3], "über");
    assert_string_equal(buf_str(&rest), "a b c#not &#39; #");
    buf_free(&rest);
    assert_int_equal(template_hashtags("#a #b #c", tags, 2, NULL), 2);
}

struct tags_case {
    const char *settings;
    const char *expect;                /* the X text for video */
};

static const struct tags_case tags_cases[] = {
    { NULL, "Hello world\nsecond line #fun #Cats" },
    { "{\"hashtags_remove\":[\"FUN\"]}", "Hello world\nsecond line #Cats" },
    { "{\"hashtags_remove\":[\"#cats\",\"fun\"]}", "Hello world\nsecond line" },
    { "{\"hashtags_add\":[\"#brand\",\"extra\",\"cats\"]}",
      "Hello world\nsecond line #fun #Cats #brand #extra" },
    { "{\"hashtags_add\":[\"brand\"],\"hashtags_max\":2}", "Hello world\nsecond line #fun #Cats" },
    { "{\"hashtags_add\":[\"brand\"],\"hashtags_remove\":[\"fun\"],\"hashtags_max\":2}",
      "Hello world\nsecond line #Cats #brand" },
    { "{\"hashtags_max\":0}", "Hello world\nsecond line" },
    { "{\"text_template\":\"{hashtags} | {description}\",\"hashtags_max\":1}",
      "#fun | Hello world\nsecond line" },
};

static void test_destination_hashtags(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tags_cases / sizeof tags_cases[0]; i++) {
        struct json_object *s = settings_of(tags_cases[i].settings);
        struct template_result r;
        char field[64], why[TEMPLATE_ERROR_MAX];

        template_result_init(&r);
        assert_int_equal(template_render(PLATFORM_X, s, &video, &r, field, sizeof field, why,
                                         sizeof why), 0);
        assert_string_equal(buf_str(&r.caption), tags_cases[i].expect);
        assert_int_equal(r.truncated, 0);
        template_result_free(&r);
        json_object_put(s);
    }
}

/* -------------------------------------------------------- X weight -- */

struct weight_case {
    const char *text;
    long long weight;
};

static const struct weight_case weight_cases[] = {
    { "", 0 },
    { "hello", 5 },
    { "é", 1 },
    { "日本", 4 },
    { "\xf0\x9f\x98\x80", 2 },                            /* 😀 */
    { "\xe2\x80\x94", 1 },                                /* — U+2014 */
    { "\xe2\x80\xa6", 2 },                                /* … U+2026 */
    { "https://example.com/a/very/long/path?with=query", 23 },
    { "see http://a.b/c now", 4 + 23 + 4 },
    { "https://", 8 },
    { "x https://a.co y https://b.co", 2 + 23 + 3 + 23 },
};

static void test_x_weight(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof weight_cases / sizeof weight_cases[0]; i++)
        if (template_x_weight(weight_cases[i].text) != weight_cases[i].weight)
            fail_msg("\"%s\": %lld, expected %lld", weight_cases[i].text,
                     template_x_weight(weight_cases[i].text), weight_cases[i].weight);
}

/* ---------------------------------------------------------- fitting -- */

static void test_x_truncation_keeps_url_and_hashtags(void **state)
{
    char *words = repeat("word ", 100);
    char *desc = malloc(strlen(words) + 64);
    struct template_vars v = video;
    struct json_object *s = settings_of("{\"text_template\":\"{description} {share_url} {hashtags}\"}");
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];
    const char *t;

    (void)state;
    sprintf(desc, "%s#one #two", words);
    v.description = desc;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_X, s, &v, &r, field, sizeof field, why, sizeof why), 0);
    t = buf_str(&r.caption);
    assert_true(template_x_weight(t) <= 280);
    assert_true(template_x_weight(t) > 260);
    assert_int_equal(r.truncated, 1);
    assert_non_null(strstr(t, "word\xe2\x80\xa6 https://www.tiktok.com/@me/video/1 #one #two"));
    assert_int_equal(strncmp(t, "word word", 9), 0);
    template_result_free(&r);
    json_object_put(s);
    free(desc);
    free(words);
}

static void test_x_truncation_drops_hashtags_then_refuses(void **state)
{
    char *fixed = repeat("x", 272);
    char tmpl[512];
    struct json_object *s;
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];

    (void)state;
    /* 272 + " #fun" fits (277); " #Cats" more does not, nor "H…": the last
     * tag goes and the description with it. */
    snprintf(tmpl, sizeof tmpl, "{\"text_template\":\"%s {description} {hashtags}\"}", fixed);
    s = settings_of(tmpl);
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_X, s, &video, &r, field, sizeof field, why, sizeof why), 0);
    assert_int_equal(r.truncated, 1);
    assert_non_null(strstr(buf_str(&r.caption), "x #fun"));
    assert_null(strstr(buf_str(&r.caption), "Cats"));
    assert_null(strstr(buf_str(&r.caption), "Hello"));
    json_object_put(s);
    free(fixed);

    fixed = repeat("x", 281);
    snprintf(tmpl, sizeof tmpl, "{\"text_template\":\"%s{description}\"}", fixed);
    s = settings_of(tmpl);
    assert_int_equal(template_render(PLATFORM_X, s, &video, &r, field, sizeof field, why, sizeof why),
                     CP_EINVAL);
    assert_string_equal(field, "text_template");
    assert_true(strlen(why) > 0);
    template_result_free(&r);
    json_object_put(s);
    free(fixed);
}

static void test_x_cut_counts_cjk_double(void **state)
{
    char *desc = repeat("日", 200);
    struct template_vars v = video;
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];

    (void)state;
    v.description = desc;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_X, NULL, &v, &r, field, sizeof field, why, sizeof why), 0);
    /* 139 characters of weight 2 and the ellipsis (2): 280. */
    assert_int_equal(template_x_weight(buf_str(&r.caption)), 280);
    assert_int_equal(chars(buf_str(&r.caption)), 140);
    template_result_free(&r);
    free(desc);
}

static void test_x_cut_never_splits_a_url(void **state)
{
    char *a = repeat("a", 260);
    char *desc = malloc(400);
    char *expect = malloc(300);
    struct template_vars v = video;
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];

    (void)state;
    /* 260 + 1 + 23 is over 280; "https://" alone would fit but is no
     * link, so the cut goes before the URL. */
    sprintf(desc, "%s https://example.com/pppppppppppppppppppppppppppppp", a);
    sprintf(expect, "%s\xe2\x80\xa6", a);
    v.description = desc;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_X, NULL, &v, &r, field, sizeof field, why, sizeof why), 0);
    assert_string_equal(buf_str(&r.caption), expect);
    assert_int_equal(r.truncated, 1);
    template_result_free(&r);
    free(expect);
    free(desc);
    free(a);
}

static void test_youtube_limits(void **state)
{
    char *long_title = repeat("ü", 150);
    char *title = malloc(strlen(long_title) + 32);
    char *desc = repeat("ö", 3000);                    /* 6000 bytes */
    struct template_vars v = video;
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];

    (void)state;
    sprintf(title, "<b>Bold</b> %s", long_title);
    v.title = title;
    v.description = desc;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_YOUTUBE, NULL, &v, &r, field, sizeof field, why,
                                     sizeof why), 0);
    assert_int_equal(chars(buf_str(&r.title)), 100);
    assert_null(strpbrk(buf_str(&r.title), "<>"));
    assert_int_equal(strncmp(buf_str(&r.title), "bBold/b ", 8), 0);
    assert_true(r.caption.len <= 5000);
    assert_true(r.caption.len >= 4999);
    assert_true(json_utf8_valid(r.caption.data, r.caption.len));
    assert_int_equal(r.truncated, 1);
    template_result_free(&r);

    v = video;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_YOUTUBE, NULL, &v, &r, field, sizeof field, why,
                                     sizeof why), 0);
    assert_string_equal(buf_str(&r.title), "Hello world");
    assert_string_equal(buf_str(&r.caption), "Hello world\nsecond line\n\n#fun #Cats");
    assert_int_equal(r.truncated, 0);
    template_result_free(&r);
    free(desc);
    free(title);
    free(long_title);
}

static void test_instagram_limits(void **state)
{
    char *desc = repeat("abc ", 750);                  /* 3000 characters */
    struct template_vars v = video;
    struct template_result r;
    struct json_object *s;
    char field[64], why[TEMPLATE_ERROR_MAX], tags[40][TEMPLATE_TAG_MAX];
    char many[40 * 8], fixed[64];

    (void)state;
    v.description = desc;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_INSTAGRAM, NULL, &v, &r, field, sizeof field, why,
                                     sizeof why), 0);
    assert_true(chars(buf_str(&r.caption)) <= 2200);
    assert_true(chars(buf_str(&r.caption)) > 2150);
    assert_int_equal(r.truncated, 1);
    template_result_free(&r);

    /* 30 source tags and 5 in the template: the last 5 source tags go. */
    many[0] = '\0';
    for (int i = 0; i < 30; i++)
        sprintf(many + strlen(many), "#t%d ", i);
    v.description = many;
    strcpy(fixed, "{\"caption_template\":\"#a #b #c #d #e {hashtags}\"}");
    s = settings_of(fixed);
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_INSTAGRAM, s, &v, &r, field, sizeof field, why,
                                     sizeof why), 0);
    assert_int_equal(template_hashtags(buf_str(&r.caption), tags, 40, NULL), 30);
    assert_non_null(strstr(buf_str(&r.caption), "#t24"));
    assert_null(strstr(buf_str(&r.caption), "#t25"));
    assert_int_equal(r.truncated, 1);
    template_result_free(&r);
    json_object_put(s);
    free(desc);
}

static void test_bad_settings(void **state)
{
    struct json_object *s = settings_of("{\"caption_template\":\"{oops}\"}");
    struct template_result r;
    char field[64], why[TEMPLATE_ERROR_MAX];

    (void)state;
    template_result_init(&r);
    assert_int_equal(template_render(PLATFORM_INSTAGRAM, s, &video, &r, field, sizeof field, why,
                                     sizeof why), CP_EINVAL);
    assert_string_equal(field, "caption_template");
    assert_non_null(strstr(why, "{oops}"));
    json_object_put(s);
    s = settings_of("{\"title_template\":5}");
    assert_int_equal(template_render(PLATFORM_YOUTUBE, s, &video, &r, field, sizeof field, why,
                                     sizeof why), CP_EINVAL);
    assert_string_equal(field, "title_template");
    template_result_free(&r);
    json_object_put(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_title_fallback),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_hashtags),
        cmocka_unit_test(test_destination_hashtags),
        cmocka_unit_test(test_x_weight),
        cmocka_unit_test(test_x_truncation_keeps_url_and_hashtags),
        cmocka_unit_test(test_x_truncation_drops_hashtags_then_refuses),
        cmocka_unit_test(test_x_cut_counts_cjk_double),
        cmocka_unit_test(test_x_cut_never_splits_a_url),
        cmocka_unit_test(test_youtube_limits),
        cmocka_unit_test(test_instagram_limits),
        cmocka_unit_test(test_bad_settings),
    };

    return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
