#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <json-c/json.h>

#include "err.h"
#include "videos.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define NOW (1800000000LL * SEC)

struct interval_case {
    const char *what;
    long long conn_s;                 /* the connection's own interval, 0 = default */
    long long last_video_at;          /* 0 = none seen */
    double jitter;
    long long expect_ms;
};

/* Default 5 min, bounds 1 min .. 1 h (the configuration's defaults). */
static const struct interval_case interval_cases[] = {
    { "nothing seen: the default", 0, 0, 0, 5 * MIN },
    { "video 10 min ago: a quarter", 0, NOW - 10 * MIN, 0, 75 * SEC },
    { "video 5 h ago: half", 0, NOW - 5 * HOUR, 0, 150 * SEC },
    { "video 3 days ago: the interval", 0, NOW - 3 * DAY, 0, 5 * MIN },
    { "video 10 days ago: twice", 0, NOW - 10 * DAY, 0, 10 * MIN },
    { "video 60 days ago: four times", 0, NOW - 60 * DAY, 0, 20 * MIN },
    { "own interval 10 min, quiet for a week", 600, NOW - 8 * DAY, 0, 20 * MIN },
    { "own interval 30 min, quiet for months: the maximum", 1800, NOW - 90 * DAY, 0, HOUR },
    { "own interval 2 min, busy: the minimum", 120, NOW - 1 * MIN, 0, MIN },
    { "jitter +1: 10 % more", 0, 0, 1, 330 * SEC },
    { "jitter -1: 10 % less", 0, 0, -1, 270 * SEC },
    { "jitter beyond 1 is 1", 0, 0, 7, 330 * SEC },
    { "jitter never passes the maximum", 3600, 0, 1, HOUR },
    { "jitter never passes the minimum", 60, NOW - 1 * MIN, -1, MIN },
    { "a video dated in the future: the plain interval", 0, NOW + 5 * MIN, 0, 5 * MIN },
};

static void test_sync_interval(void **state)
{
    struct conf c;

    memset(&c, 0, sizeof c);
    c.sync_interval = 5 * MIN;
    c.sync_interval_min = MIN;
    c.sync_interval_max = HOUR;
    for (size_t i = 0; i < sizeof interval_cases / sizeof interval_cases[0]; i++) {
        const struct interval_case *t = &interval_cases[i];
        long long got = video_sync_interval_ms(&c, t->conn_s, t->last_video_at, NOW, t->jitter);

        if (got != t->expect_ms)
            fail_msg("%s: %lld ms, expected %lld", t->what, got, t->expect_ms);
    }
}

/* Jitter spreads syncs but stays within 10 %. */
static void test_sync_interval_jitter_range(void **state)
{
    struct conf c;

    memset(&c, 0, sizeof c);
    c.sync_interval = 10 * MIN;
    c.sync_interval_min = MIN;
    c.sync_interval_max = HOUR;
    for (int k = -10; k <= 10; k++) {
        long long got = video_sync_interval_ms(&c, 0, NOW - 3 * DAY, NOW, k / 10.0);

        assert_true(got >= 9 * MIN && got <= 11 * MIN);
    }
}

static void test_state_names(void **state)
{
    static const struct { enum video_state s; const char *name; } cases[] = {
        { VIDEO_KNOWN, "known" }, { VIDEO_NEW, "new" }, { VIDEO_FETCHING, "fetching" },
        { VIDEO_STORED, "stored" }, { VIDEO_READY, "ready" }, { VIDEO_FAILED, "failed" },
    };
    enum video_state s;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_string_equal(video_state_name(cases[i].s), cases[i].name);
        assert_int_equal(video_state_parse(cases[i].name, &s), 0);
        assert_int_equal(s, cases[i].s);
    }
    assert_int_equal(video_state_parse("Ready", &s), CP_EINVAL);
    assert_int_equal(video_state_parse("", &s), CP_EINVAL);
    assert_int_equal(video_state_parse(NULL, &s), CP_EINVAL);
}

static int fake_signer(void *arg, const char *key, struct buf *out)
{
    (*(int *)arg)++;
    return buf_printf(out, "https://media.test/%s?sig=x", key);
}

static struct json_object *parse(const struct buf *b)
{
    struct json_object *o = json_tokener_parse(buf_str(b));

    if (!o)
        fail_msg("not JSON: %s", buf_str(b));
    return o;
}

static const char *str_of(struct json_object *o, const char *key)
{
    struct json_object *v;

    assert_true(json_object_object_get_ex(o, key, &v));
    return v ? json_object_get_string(v) : NULL;
}

static void test_json(void **state)
{
    struct video v;
    struct buf b;
    struct json_object *o, *probe, *storage;
    int calls = 0;

    memset(&v, 0, sizeof v);
    v.id = 7;
    v.user_id = 3;
    v.connection_id = 2;
    snprintf(v.remote_id, sizeof v.remote_id, "7300000000000000001");
    v.state = VIDEO_NEW;
    v.remote_created_at = 1700000000123LL;
    snprintf(v.title, sizeof v.title, "A \"quoted\" title");
    snprintf(v.description, sizeof v.description, "line\nbreak");
    buf_init(&b, 64 * 1024);
    assert_int_equal(video_to_json(&v, fake_signer, &calls, &b), 0);
    o = parse(&b);
    assert_string_equal(str_of(o, "state"), "new");
    assert_string_equal(str_of(o, "title"), "A \"quoted\" title");
    assert_string_equal(str_of(o, "description"), "line\nbreak");
    assert_string_equal(str_of(o, "remote_created_at"), "2023-11-14T22:13:20.123Z");
    assert_null(str_of(o, "thumbnail_url"));
    assert_null(str_of(o, "storage"));
    assert_null(str_of(o, "probe"));
    assert_int_equal(calls, 0);
    json_object_put(o);
    buf_free(&b);

    v.state = VIDEO_READY;
    v.stored = 1;
    snprintf(v.storage_backend, sizeof v.storage_backend, "s3");
    snprintf(v.storage_key, sizeof v.storage_key, "videos/3/7.mp4");
    v.media_bytes = 12345;
    memset(v.media_sha256, 'a', 64);
    snprintf(v.media_type, sizeof v.media_type, "video/mp4");
    v.probed = 1;
    v.probe.duration_ms = 15000;
    v.probe.width = 1080;
    v.probe.height = 1920;
    v.probe.fps = 30;
    snprintf(v.probe.video_codec, sizeof v.probe.video_codec, "h264");
    v.probe.moov_front = 1;
    snprintf(v.thumbnail_key, sizeof v.thumbnail_key, "thumbs/3/7.jpg");
    buf_init(&b, 64 * 1024);
    assert_int_equal(video_to_json(&v, fake_signer, &calls, &b), 0);
    o = parse(&b);
    assert_int_equal(calls, 1);
    assert_string_equal(str_of(o, "thumbnail_url"), "https://media.test/thumbs/3/7.jpg?sig=x");
    assert_true(json_object_object_get_ex(o, "storage", &storage));
    assert_string_equal(str_of(storage, "backend"), "s3");
    assert_null(strstr(buf_str(&b), "videos/3/7.mp4"));      /* keys stay inside */
    assert_true(json_object_object_get_ex(o, "probe", &probe));
    assert_string_equal(str_of(probe, "video_codec"), "h264");
    assert_null(str_of(probe, "audio_codec"));
    assert_true(json_object_get_boolean(json_object_object_get(probe, "moov_front")));
    json_object_put(o);
    buf_free(&b);

    /* No signer: no URL, and the key is not shown instead. */
    buf_init(&b, 64 * 1024);
    assert_int_equal(video_to_json(&v, NULL, NULL, &b), 0);
    assert_null(strstr(buf_str(&b), "thumbs/3/7.jpg"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_interval),
        cmocka_unit_test(test_sync_interval_jitter_range),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_json),
    };

    return cmocka_run_group_tests_name("videos", tests, NULL, NULL);
}
