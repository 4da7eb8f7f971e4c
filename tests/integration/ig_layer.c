/*
 * ig_layer.c - the Instagram publisher (src/pub_instagram.c) against the
 * Instagram simulator of the integration stack.
 *
 * The configuration comes from conf_load() (CROSSPOST_CONFIG names the
 * stack's file).  test_ig_layer.py connects an account through the
 * simulator's OAuth flow and passes: IG_LAYER_TOKEN (a long-lived user
 * token), IG_LAYER_USER (the Instagram user id), IG_LAYER_MEDIA (a stock
 * clip) and IG_LAYER_MEDIA_URL (the same clip served over loopback).
 * Every test posts its own caption and counts it in the simulator's
 * /__control/published.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "platforms.h"
#include "publish.h"

static struct conf *cf;
static struct http_client *http;
static const char *token, *ig_user, *media_path, *media_url;
static long long media_bytes;

/* ------------------------------------------------------------ helpers -- */

/* A control call on the simulator; the answer's JSON (caller puts it). */
static struct json_object *sim(const char *method, const char *path, const char *body)
{
    struct http_header h[] = { { "Content-Type", "application/json" } };
    struct http_request req;
    struct http_response resp;
    struct json_object *obj = NULL;
    struct buf url;

    buf_init(&url, 4096);
    assert_int_equal(buf_printf(&url, "%s/__control/%s", cf->facebook_graph_url, path), 0);
    http_request_init(&req, method, buf_str(&url));
    if (body) {
        req.headers = h;
        req.nheaders = 1;
        req.body = body;
        req.body_len = strlen(body);
    }
    memset(&resp, 0, sizeof resp);
    assert_int_equal(http_do(http, &req, &resp), 0);
    if (resp.status < 200 || resp.status > 299)
        fail_msg("%s %s: HTTP %ld %s", method, path, resp.status, buf_str(&resp.body));
    obj = json_tokener_parse(buf_str(&resp.body));
    http_response_free(&resp);
    buf_free(&url);
    return obj;
}

static void sim_ok(const char *method, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sim_ok(const char *method, const char *path, const char *fmt, ...)
{
    char body[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    json_object_put(sim(method, path, body));
}

/* How many published records carry caption; the last one's remote id. */
static int published(const char *caption, char *remote_id, size_t cap)
{
    struct json_object *root = sim("GET", "published", NULL), *list;
    int n = 0;

    assert_non_null(root);
    assert_int_equal(json_get_array(root, "published", &list), 0);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *p = json_object_array_get_idx(list, i);
        const char *c = NULL, *id = NULL;

        if (json_get_string(p, "caption", &c) == 0 && strcmp(c, caption) == 0) {
            n++;
            if (remote_id && json_get_string(p, "remote_id", &id) == 0)
                snprintf(remote_id, cap, "%s", id);
        }
    }
    json_object_put(root);
    return n;
}

/* How many requests to path the simulator answered with a fault. */
static int faulted(const char *path)
{
    struct json_object *root = sim("GET", "requests?since=0", NULL), *list;
    int n = 0;

    assert_non_null(root);
    assert_int_equal(json_get_array(root, "requests", &list), 0);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *q = json_object_array_get_idx(list, i), *f;
        const char *p = NULL;

        if (json_get_string(q, "path", &p) == 0 && strcmp(p, path) == 0 &&
            json_object_object_get_ex(q, "fault", &f) && f &&
            !json_object_is_type(f, json_type_null))
            n++;
    }
    json_object_put(root);
    return n;
}

struct run {
    char caption[128];
    struct plat_creds creds;
    struct pub_request rq;
    struct json_object *state;
    struct pub_hooks hooks;
    struct pub_result res;
    struct pub_quota quota;
    struct plat_error err;
    int saves;
    int stop_on_save_with;            /* 1: stop once a container is saved */
    int stop_on_progress;             /* stop at this progress call (1 = first), 0 = never */
    int progress_calls;
};

static int on_save(void *arg, struct json_object *state)
{
    struct run *r = arg;
    const char *cid = NULL;

    r->saves++;
    if (r->stop_on_save_with && json_get_string(state, "container_id", &cid) == 0) {
        r->stop_on_save_with = 0;
        return 1;
    }
    return 0;
}

static int on_progress(void *arg, long long sent, long long total)
{
    struct run *r = arg;

    assert_true(sent >= 0 && sent <= total);
    r->progress_calls++;
    return r->stop_on_progress && r->progress_calls == r->stop_on_progress;
}

static int never_stop(void *arg)
{
    return 0;
}

static void run_init(struct run *r, const char *name)
{
    memset(r, 0, sizeof *r);
    snprintf(r->caption, sizeof r->caption, "ig_layer %s %ld #crosspost", name, (long)getpid());
    r->creds = (struct plat_creds){ .kind = AUTH_OAUTH2, .access_token = token,
                                    .refresh_token = "" };
    r->rq = (struct pub_request){ .publication_id = 1, .creds = &r->creds,
                                  .account_id = ig_user, .caption = r->caption, .title = "" };
    r->rq.media = (struct pub_media){ .path = media_path, .bytes = media_bytes,
                                      .content_type = "video/mp4", .sha256 = "", .url = media_url };
    r->rq.settings = json_object_new_object();
    r->state = json_object_new_object();
    r->hooks = (struct pub_hooks){ r, on_save, on_progress, never_stop };
}

static void run_free(struct run *r)
{
    json_object_put(r->rq.settings);
    json_object_put(r->state);
}

static int publish(struct run *r)
{
    struct plat_ctx pc = { cf, http };

    return pub_instagram(&pc, &r->rq, r->state, &r->hooks, &r->res, &r->quota, &r->err);
}

static void expect_live(struct run *r, int rc)
{
    char remote[128] = "";

    if (rc)
        fail_msg("publish: %d %s %s", rc, plat_outcome_name(r->err.outcome), r->err.message);
    assert_int_equal(published(r->caption, remote, sizeof remote), 1);
    assert_string_equal(r->res.remote_id, remote);
    assert_non_null(strstr(r->res.url, "/reel/"));
}

static const char *state_str(struct run *r, const char *key)
{
    const char *s = NULL;

    return json_get_string(r->state, key, &s) == 0 ? s : NULL;
}

/* -------------------------------------------------------------- tests -- */

static void test_resumable_once(void **unused)
{
    struct run r;
    int rc;

    cf->instagram_upload = 0;
    run_init(&r, "resumable");
    rc = publish(&r);
    expect_live(&r, rc);
    assert_string_equal(state_str(&r, "upload"), "resumable");
    assert_string_equal(state_str(&r, "media_id"), r.res.remote_id);
    assert_true(r.progress_calls >= 2);
    /* Run again: done from the state, nothing more is posted. */
    memset(&r.res, 0, sizeof r.res);
    assert_int_equal(publish(&r), 0);
    assert_int_equal(published(r.caption, NULL, 0), 1);
    run_free(&r);
}

static void test_video_url(void **unused)
{
    struct run r;
    int rc;

    cf->instagram_upload = 1;
    run_init(&r, "video_url");
    rc = publish(&r);
    cf->instagram_upload = 0;
    expect_live(&r, rc);
    assert_string_equal(state_str(&r, "upload"), "url");
    assert_int_equal(r.progress_calls, 0);
    run_free(&r);
}

static void test_resume_after_progress_stop(void **unused)
{
    struct run r;

    run_init(&r, "progress_stop");
    r.stop_on_progress = 1;
    assert_int_equal(publish(&r), CP_ERETRY);
    assert_int_equal(r.err.outcome, PLAT_RETRY);
    assert_string_equal(r.err.code, "stopped");
    assert_non_null(state_str(&r, "container_id"));
    assert_int_equal(published(r.caption, NULL, 0), 0);
    r.stop_on_progress = 0;
    expect_live(&r, publish(&r));
    run_free(&r);
}

static void test_publish_answer_lost(void **unused)
{
    struct run r;
    char path[256];
    long long sent_at = 0;

    run_init(&r, "answer_lost");
    snprintf(path, sizeof path, "/%s/%s/media_publish", cf->facebook_graph_version, ig_user);
    sim_ok("POST", "faults", "{\"match\":\"%s\",\"method\":\"POST\",\"action\":\"timeout_after\","
           "\"seconds\":1,\"count\":1}", path);
    expect_live(&r, publish(&r));
    assert_int_equal(json_get_int(r.state, "publish_sent_at", &sent_at), 0);
    assert_true(sent_at > 0);
    assert_int_equal(faulted(path), 1);
    run_free(&r);
}

static void test_expired_container(void **unused)
{
    struct run r;
    char first[64], body[128];

    run_init(&r, "expired");
    r.stop_on_save_with = 1;
    assert_int_equal(publish(&r), CP_ERETRY);
    assert_string_equal(r.err.code, "stopped");
    snprintf(first, sizeof first, "%s", state_str(&r, "container_id"));
    snprintf(body, sizeof body, "{\"id\":\"%s\"}", first);
    json_object_put(sim("POST", "containers/expire", body));
    expect_live(&r, publish(&r));
    assert_string_not_equal(state_str(&r, "container_id"), first);
    run_free(&r);
}

static void test_publishing_limit(void **unused)
{
    struct run r;
    long long used = 0, total = 0, duration = 0;
    struct plat_ctx pc = { cf, http };
    struct plat_creds creds = { .kind = AUTH_OAUTH2, .access_token = token };
    struct plat_error e;

    assert_int_equal(pub_instagram_limit(&pc, &creds, ig_user, &used, &total, &duration, &e), 0);
    assert_true(used >= 1 && total >= used && duration > 0);
    sim_ok("POST", "config", "{\"publish_limit\":%lld}", used);
    run_init(&r, "limit");
    assert_int_equal(publish(&r), CP_ERETRY);
    sim_ok("POST", "config", "{\"publish_limit\":50}");
    assert_int_equal(r.err.outcome, PLAT_DEFER);
    assert_int_equal(r.err.retry_after_ms, cf->instagram_quota_recheck);
    assert_int_equal(r.quota.exhausted, 1);
    assert_string_equal(r.quota.bucket, "posts");
    assert_string_equal(r.quota.scope, "account");
    assert_int_equal(r.quota.remaining, 0);
    assert_int_equal(r.quota.limit, used);
    assert_int_equal(published(r.caption, NULL, 0), 0);
    /* The container is kept for the next run. */
    assert_non_null(state_str(&r, "container_id"));
    expect_live(&r, publish(&r));
    run_free(&r);
}

static void test_bad_token_reauth(void **unused)
{
    struct run r;

    run_init(&r, "bad_token");
    r.creds.access_token = "EAAnot-a-token-the-simulator-issued";
    assert_int_equal(publish(&r), CP_EINVAL);
    assert_int_equal(r.err.outcome, PLAT_REAUTH);
    assert_string_equal(r.err.code, "190");
    assert_null(strstr(r.err.message, "EAAnot"));
    assert_int_equal(published(r.caption, NULL, 0), 0);
    run_free(&r);
}

static void test_container_error_is_fatal(void **unused)
{
    static const char junk[] = "this is not a video, whatever its name says\n";
    char path[] = "/tmp/ig_layer_junk_XXXXXX";
    struct run r;
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof junk - 1), (ssize_t)(sizeof junk - 1));
    close(fd);
    run_init(&r, "junk");
    r.rq.media.path = path;
    r.rq.media.bytes = (long long)(sizeof junk - 1);
    assert_int_equal(publish(&r), CP_EPROTO);
    unlink(path);
    assert_int_equal(r.err.outcome, PLAT_FATAL);
    assert_string_equal(r.err.code, "container_error");
    assert_non_null(strstr(r.err.message, "ERROR"));
    assert_int_equal(published(r.caption, NULL, 0), 0);
    run_free(&r);
}

static void test_processing_defers_then_deadline(void **unused)
{
    long long poll_max = cf->publish_poll_max, deadline = cf->publish_processing_deadline;
    struct run r;
    int rc;

    sim_ok("POST", "config", "{\"processing_seconds\":3600}");
    cf->publish_poll_max = 3000;
    run_init(&r, "processing");
    rc = publish(&r);
    if (rc != CP_ERETRY || r.err.outcome != PLAT_DEFER)
        fail_msg("still processing: %d %s", rc, r.err.message);
    assert_string_equal(r.err.code, "processing");
    assert_int_equal(r.err.retry_after_ms, 30000);
    assert_true(json_object_object_get_ex(r.state, "container_at", NULL));
    /* Past the processing deadline the container is given up. */
    cf->publish_processing_deadline = 1;
    rc = publish(&r);
    cf->publish_poll_max = poll_max;
    cf->publish_processing_deadline = deadline;
    sim_ok("POST", "config", "{\"processing_seconds\":3}");
    assert_int_equal(rc, CP_EPROTO);
    assert_int_equal(r.err.outcome, PLAT_FATAL);
    assert_non_null(strstr(r.err.message, "processing did not finish"));
    assert_int_equal(published(r.caption, NULL, 0), 0);
    run_free(&r);
}

static void test_app_usage_defers(void **unused)
{
    long long percent = cf->app_usage_defer_percent;
    struct run r;
    int rc;

    /* Dozens of calls were made this hour: 1000 an hour puts usage above 1 %. */
    sim_ok("POST", "config", "{\"app_call_limit\":1000}");
    cf->app_usage_defer_percent = 1;
    run_init(&r, "usage");
    rc = publish(&r);
    cf->app_usage_defer_percent = percent;
    sim_ok("POST", "config", "{\"app_call_limit\":4800}");
    if (rc != CP_ERETRY || r.err.outcome != PLAT_DEFER)
        fail_msg("usage: %d %s", rc, r.err.message);
    assert_string_equal(r.err.code, "app_usage_high");
    assert_int_equal(r.err.retry_after_ms, 3600 * 1000LL);
    /* The container made before is kept, and saved. */
    assert_non_null(state_str(&r, "container_id"));
    assert_true(r.saves >= 2);
    assert_int_equal(published(r.caption, NULL, 0), 0);
    expect_live(&r, publish(&r));
    run_free(&r);
}

static int group_setup(void **unused)
{
    struct buf err;
    struct stat sb;

    log_init("ig_layer", CP_LOG_WARN);
    token = getenv("IG_LAYER_TOKEN");
    ig_user = getenv("IG_LAYER_USER");
    media_path = getenv("IG_LAYER_MEDIA");
    media_url = getenv("IG_LAYER_MEDIA_URL");
    if (!token || !ig_user || !media_path || !media_url || stat(media_path, &sb)) {
        fprintf(stderr, "IG_LAYER_TOKEN, IG_LAYER_USER, IG_LAYER_MEDIA, IG_LAYER_MEDIA_URL\n");
        return -1;
    }
    media_bytes = (long long)sb.st_size;
    buf_init(&err, 1024);
    if (conf_load(&cf, NULL, &err)) {
        fprintf(stderr, "config: %s\n", buf_str(&err));
        buf_free(&err);
        return -1;
    }
    buf_free(&err);
    /* Polling and the lost answer stay short. */
    cf->publish_poll_max = 60 * 1000;
    cf->http_timeout = 20 * 1000;
    return http_client_new(cf, &http) ? -1 : 0;
}

static int group_teardown(void **unused)
{
    http_client_free(http);
    conf_free(cf);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resumable_once),
        cmocka_unit_test(test_video_url),
        cmocka_unit_test(test_resume_after_progress_stop),
        cmocka_unit_test(test_publish_answer_lost),
        cmocka_unit_test(test_expired_container),
        cmocka_unit_test(test_publishing_limit),
        cmocka_unit_test(test_bad_token_reauth),
        cmocka_unit_test(test_container_error_is_fatal),
        cmocka_unit_test(test_processing_defers_then_deadline),
        cmocka_unit_test(test_app_usage_defers),
    };

    return cmocka_run_group_tests_name("ig_layer", tests, group_setup, group_teardown);
}
