#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "err.h"
#include "json.h"
#include "log.h"
#include "oauth1.h"
#include "plat_internal.h"
#include "pub_internal.h"
#include "publish.h"

/*
 * X: the media upload v2 (INITIALIZE, APPEND segments, FINALIZE, STATUS
 * until processed), then POST /2/tweets.  Every acknowledged step is
 * saved.  A post whose outcome is unknown (no answer, 5xx) and a post
 * X calls a duplicate are first looked for among the account's recent
 * posts: a post is never made twice.  Calls are signed with OAuth 1.0a
 * or bear an OAuth 2 token, by the kind of the credentials.
 */

#define URL_MAX 8192
#define HEADER_MAX (8 * 1024)
#define ID_MAX 64
#define MEDIA_TYPE "video/mp4"
#define NAP_STEP_MS 100
#define LOOKBACK_S 5                  /* clock slack when looking for a sent post */
#define TIMELINE_COUNT 20
#define MULTIPART_EXTRA 1024

struct xp {
    struct plat_ctx *pc;
    const struct pub_request *rq;
    struct json_object *state;
    const struct pub_hooks *hooks;
    struct pub_result *res;
    struct pub_quota *quota;
    struct plat_error *err;
    int fd;
    long long total;
    char media_id[ID_MAX];
    char media_key[ID_MAX];
};

/* ------------------------------------------------------------ pure parts -- */

int pub_x_processing(const char *body, size_t len, struct x_processing *out)
{
    struct json_object *root = NULL, *data, *info, *error;
    const char *s;
    long long n;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (plat_json_parse(body, len, &root))
        return CP_EPARSE;
    /* v2 nests it in data; v1.1 has it at the top. */
    if (json_get_object(root, "data", &data))
        data = root;
    if (json_get_object(data, "processing_info", &info))
        goto out;
    if (json_get_string(info, "state", &s) == 0) {
        if (strlen(s) >= sizeof out->state) {
            rc = CP_EPARSE;
            goto out;
        }
        snprintf(out->state, sizeof out->state, "%s", s);
    }
    if (json_get_int(info, "check_after_secs", &n) == 0 && n > 0)
        out->check_after_s = n;
    if (json_get_int(info, "progress_percent", &n) == 0 && n >= 0 && n <= 100)
        out->progress_percent = (int)n;
    if (json_get_object(info, "error", &error) == 0) {
        if (json_get_string(error, "message", &s) == 0 || json_get_string(error, "name", &s) == 0)
            plat_text_clean(out->error, sizeof out->error, s);
    }
out:
    json_object_put(root);
    return rc;
}

/* "2026-01-02T03:04:05.000Z" -> unix seconds; -1 when unreadable. */
static long long iso_seconds(const char *s)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    return (long long)timegm(&tm);
}

/* text with every URL replaced by one marker and the ends trimmed:
 * X rewrites links to t.co, so any link stands for any other. */
static int text_key(const char *text, struct buf *out)
{
    const char *p = text;

    while (*p == ' ' || *p == '\n' || *p == '\t')
        p++;
    while (*p) {
        if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
            if (buf_addc(out, '\x01'))
                return CP_ENOMEM;
            while (*p && *p != ' ' && *p != '\n' && *p != '\t')
                p++;
            continue;
        }
        if (buf_addc(out, *p++))
            return CP_ENOMEM;
    }
    while (out->len && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\n' ||
                        out->data[out->len - 1] == '\t'))
        out->len--;
    if (out->data)
        out->data[out->len] = '\0';
    return 0;
}

static int carries_media(struct json_object *post, const char *media_key)
{
    struct json_object *att, *keys;

    if (!media_key || !*media_key || json_get_object(post, "attachments", &att) ||
        json_get_array(att, "media_keys", &keys))
        return 0;
    for (size_t i = 0; i < json_object_array_length(keys); i++) {
        struct json_object *k = json_object_array_get_idx(keys, i);

        if (json_object_is_type(k, json_type_string) &&
            strcmp(json_object_get_string(k), media_key) == 0)
            return 1;
    }
    return 0;
}

int pub_x_find_post(const char *body, size_t len, const char *text, const char *media_key,
                    long long since_s, char *id_out, size_t cap)
{
    struct json_object *root = NULL, *data;
    struct buf want, got;
    int rc = CP_ENOTFOUND;

    if (cap)
        id_out[0] = '\0';
    if (plat_json_parse(body, len, &root))
        return CP_EPARSE;
    buf_init(&want, 64 * 1024);
    buf_init(&got, 64 * 1024);
    if (text && *text && text_key(text, &want)) {
        rc = CP_ENOMEM;
        goto out;
    }
    if (json_get_array(root, "data", &data))
        goto out;
    for (size_t i = 0; i < json_object_array_length(data); i++) {
        struct json_object *post = json_object_array_get_idx(data, i);
        const char *id, *t, *at;
        int match;

        if (!json_object_is_type(post, json_type_object) || json_get_string(post, "id", &id) ||
            !*id)
            continue;
        if (since_s > 0 && json_get_string(post, "created_at", &at) == 0) {
            long long when = iso_seconds(at);

            if (when >= 0 && when < since_s)
                continue;
        }
        match = carries_media(post, media_key);
        if (!match && want.len && json_get_string(post, "text", &t) == 0) {
            buf_reset(&got);
            if (text_key(t, &got)) {
                rc = CP_ENOMEM;
                goto out;
            }
            match = got.len == want.len && memcmp(got.data, want.data, want.len) == 0;
        }
        if (match) {
            if (strlen(id) >= cap) {
                rc = CP_ETOOBIG;
                goto out;
            }
            snprintf(id_out, cap, "%s", id);
            rc = 0;
            goto out;
        }
    }
out:
    buf_free(&want);
    buf_free(&got);
    json_object_put(root);
    return rc;
}

/* --------------------------------------------------------------- state -- */

static int stopped(struct xp *x, const char *where)
{
    plat_error_set(x->err, PLAT_RETRY, 0, "stopped", "X publish: stopped %s", where);
    return CP_ERETRY;
}

static int save(struct xp *x)
{
    return pub_hook_save(x->hooks, x->state) ? stopped(x, "after saving") : 0;
}

static int should_stop(struct xp *x)
{
    return pub_hook_should_stop(x->hooks);
}

static int progress(struct xp *x, long long sent)
{
    return pub_hook_progress(x->hooks, sent, x->total);
}

static int nap(struct xp *x, long long ms, long long sent)
{
    for (long long slept = 0; slept < ms; slept += NAP_STEP_MS) {
        struct timespec ts = { 0, NAP_STEP_MS * 1000000L };

        if (should_stop(x) || progress(x, sent))
            return 1;
        nanosleep(&ts, NULL);
    }
    return should_stop(x);
}

/* Forget the media: it expired or X does not know it any more. */
static void drop_media(struct xp *x)
{
    static const char *const keys[] = { "media_id", "media_key", "media_expires_at", "segment",
                                        "appended", "finalized" };

    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        json_object_object_del(x->state, keys[i]);
    x->media_id[0] = x->media_key[0] = '\0';
}

/* ------------------------------------------------------------- calls -- */

/* The Authorization value for a call: OAuth 1.0a signature (query
 * signed; JSON and multipart bodies are not) or the bearer token. */
static int authorization(struct xp *x, const char *method, const char *url, struct buf *out)
{
    const struct plat_creds *cr = x->rq->creds;

    if (cr->kind == AUTH_OAUTH1) {
        const struct conf *c = x->pc->conf;
        struct oauth1_request r = { .method = method, .url = url, .with_version = 1 };
        struct oauth1_creds oc = { c->x_consumer_key, c->x_consumer_secret, cr->access_token,
                                   cr->token_secret };

        return oauth1_authorization(&r, &oc, out);
    }
    return plat_bearer(out, cr->access_token);
}

/*
 * One call.  0 with *resp holding any answer that arrived (the caller
 * frees it with plat_response_free); otherwise the transport error with
 * *err classified.
 */
static int x_do_on(struct xp *x, struct http_client *http, const char *method, const char *url,
                   const char *content_type, const void *body, size_t len, const char *what,
                   struct http_response *resp)
{
    struct http_header headers[3];
    struct http_request req;
    struct buf auth;
    size_t n = 0;
    int rc;

    buf_init(&auth, HEADER_MAX);
    if (authorization(x, method, url, &auth)) {
        plat_buf_wipe(&auth);
        plat_error_set(x->err, PLAT_FATAL, 0, "bad_request", "%s: the request could not be signed",
                       what);
        return CP_EINVAL;
    }
    headers[n++] = (struct http_header){ "Accept", "application/json" };
    headers[n++] = (struct http_header){ "Authorization", buf_str(&auth) };
    if (content_type)
        headers[n++] = (struct http_header){ "Content-Type", content_type };
    http_request_init(&req, method, url);
    req.headers = headers;
    req.nheaders = n;
    if (body) {
        req.body = body;
        req.body_len = len;
        req.timeout_ms = 60000 + (long)(len / (256 * 1024)) * 1000;
    }
    memset(x->err, 0, sizeof *x->err);
    rc = http_do(http, &req, resp);
    plat_buf_wipe(&auth);
    if (rc) {
        plat_error_transport(x->err, rc, resp, what);
        plat_response_free(resp);
    }
    return rc;
}

static int x_do(struct xp *x, const char *method, const char *url, const char *content_type,
                const void *body, size_t len, const char *what, struct http_response *resp)
{
    return x_do_on(x, x->pc->http, method, url, content_type, body, len, what, resp);
}

static long long header_int(const struct http_response *resp, const char *name)
{
    struct buf v;
    long long n = -1;

    buf_init(&v, 64);
    if (http_response_header(resp, name, &v) == 0 && v.len) {
        char *end;
        long long got = strtoll(buf_str(&v), &end, 10);

        if (*end == '\0' && got >= 0)
            n = got;
    }
    buf_free(&v);
    return n;
}

/* The posting limits of an answer to POST /2/tweets into *quota: the
 * user's 15-minute window, or the app's day when that one ran out. */
static void note_post_limits(struct xp *x, const struct http_response *resp)
{
    long long remaining = header_int(resp, "x-rate-limit-remaining");
    long long limit = header_int(resp, "x-rate-limit-limit");
    long long reset = header_int(resp, "x-rate-limit-reset");
    long long app_remaining = header_int(resp, "x-app-limit-24hour-remaining");
    const char *scope = "user";

    if (app_remaining == 0 && remaining != 0) {
        remaining = 0;
        limit = header_int(resp, "x-app-limit-24hour-limit");
        reset = header_int(resp, "x-app-limit-24hour-reset");
        scope = "app";
    }
    snprintf(x->quota->bucket, sizeof x->quota->bucket, "posts");
    snprintf(x->quota->scope, sizeof x->quota->scope, "%s", scope);
    x->quota->remaining = remaining;
    x->quota->limit = limit > 0 ? limit : 0;
    x->quota->reset_ms = reset > 0 ? reset * 1000 : 0;
    x->quota->exhausted = resp->status == 429 || remaining == 0;
}

/* errors[0].message of an invalid-request answer ("" when none). */
static void first_message(const struct http_response *resp, char *out, size_t cap)
{
    struct json_object *root = NULL, *errors, *first;
    const char *s;

    out[0] = '\0';
    if (plat_json_parse(resp->body.data, resp->body.len, &root))
        return;
    if (json_get_array(root, "errors", &errors) == 0 && json_object_array_length(errors) > 0) {
        first = json_object_array_get_idx(errors, 0);
        if (json_object_is_type(first, json_type_object) &&
            json_get_string(first, "message", &s) == 0)
            plat_copy_text(out, cap, s);
    }
    if (!out[0] && json_get_string(root, "detail", &s) == 0)
        plat_copy_text(out, cap, s);
    json_object_put(root);
}

/* X no longer knows the media (expired, or never finalized in time). */
static int media_unknown(const struct http_response *resp)
{
    char msg[256];

    if (resp->status != 400 && resp->status != 404)
        return 0;
    first_message(resp, msg, sizeof msg);
    return strstr(msg, "Invalid media_id") != NULL || strstr(msg, "media IDs are invalid") != NULL;
}

/* Classify a failed answer; returns the CP_E* code. */
static int failed(struct xp *x, const struct http_response *resp, const char *what)
{
    enum plat_outcome o = plat_classify(&plat_x_rules, resp, what, x->err);

    if (o == PLAT_OK)
        return plat_error_unexpected(x->err, resp->status, what, "a success without data");
    if (o == PLAT_FATAL && resp->status == 400) {
        char msg[256];

        /* The problem's detail is generic: the parameter error says what. */
        first_message(resp, msg, sizeof msg);
        if (msg[0])
            plat_error_set(x->err, PLAT_FATAL, 400, x->err->code, "%s: %s", what, msg);
    }
    return plat_outcome_rc(o);
}

static int initialize(struct xp *x)
{
    static const char what[] = "X media initialize";
    struct json_object *root = NULL, *data;
    struct http_response resp;
    struct buf url, body;
    const char *id = NULL, *key = NULL;
    long long expires = 0;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&body, 256);
    if (plat_url(&url, x->pc->conf->x_api_url, "/2/media/upload/initialize") ||
        buf_printf(&body, "{\"media_type\":\"%s\",\"total_bytes\":%lld,"
                          "\"media_category\":\"tweet_video\"}", MEDIA_TYPE, x->total)) {
        rc = plat_no_memory(x->err, what);
        goto out;
    }
    rc = x_do(x, "POST", buf_str(&url), "application/json", body.data, body.len, what, &resp);
    if (rc)
        goto out;
    if (resp.status < 200 || resp.status > 299) {
        rc = failed(x, &resp, what);
        plat_response_free(&resp);
        goto out;
    }
    if (plat_json_parse(resp.body.data, resp.body.len, &root) ||
        json_get_object(root, "data", &data) || json_get_string(data, "id", &id) || !*id ||
        strlen(id) >= sizeof x->media_id) {
        rc = plat_error_unexpected(x->err, resp.status, what, "no data.id");
        plat_response_free(&resp);
        goto out;
    }
    snprintf(x->media_id, sizeof x->media_id, "%s", id);
    if (json_get_string(data, "media_key", &key) == 0 && strlen(key) < sizeof x->media_key)
        snprintf(x->media_key, sizeof x->media_key, "%s", key);
    expires = plat_json_seconds(data, "expires_after_secs");
    plat_response_free(&resp);
    pub_state_set_str(x->state, "media_id", x->media_id);
    pub_state_set_str(x->state, "media_key", x->media_key);
    pub_state_set_int(x->state, "media_expires_at", expires ? (long long)time(NULL) + expires : 0);
    pub_state_set_int(x->state, "segment", 0);
    pub_state_set_int(x->state, "appended", 0);
    pub_state_set_bool(x->state, "finalized", 0);
    rc = save(x);
out:
    json_object_put(root);
    buf_free(&url);
    buf_free(&body);
    return rc;
}

/* The segment as multipart/form-data: segment_index, then media. */
static int segment_body(struct xp *x, long long index, long long offset, size_t len,
                        const char *boundary, struct buf *body)
{
    ssize_t got;
    size_t at;

    if (buf_printf(body,
                   "--%s\r\nContent-Disposition: form-data; name=\"segment_index\"\r\n\r\n%lld\r\n"
                   "--%s\r\nContent-Disposition: form-data; name=\"media\"; filename=\"blob\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n",
                   boundary, index, boundary))
        return CP_ENOMEM;
    at = body->len;
    /* Room for the bytes: grow by adding, then read over them. */
    for (size_t done = 0; done < len;) {
        static const char zeros[64 * 1024];
        size_t n = len - done < sizeof zeros ? len - done : sizeof zeros;

        if (buf_add(body, zeros, n))
            return CP_ENOMEM;
        done += n;
    }
    for (size_t done = 0; done < len; done += (size_t)got) {
        do
            got = pread(x->fd, body->data + at + done, len - done, (off_t)(offset + (long long)done));
        while (got < 0 && errno == EINTR);
        if (got <= 0)
            return CP_EIO;
    }
    return buf_printf(body, "\r\n--%s--\r\n", boundary) ? CP_ENOMEM : 0;
}

static int append_all(struct xp *x)
{
    static const char what[] = "X media append";
    long long chunk = x->pc->conf->x_chunk_size > 0 ? x->pc->conf->x_chunk_size : 4 << 20;
    long long segment = pub_state_int(x->state, "segment");
    long long appended = pub_state_int(x->state, "appended");
    unsigned char rnd[12];
    char boundary[48], ctype[96];
    struct buf url, body;
    int rc = 0;

    if (appended < 0 || appended > x->total || segment < 0)
        appended = segment = 0;
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return plat_no_memory(x->err, what);
    snprintf(boundary, sizeof boundary, "crosspost-");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(boundary + strlen(boundary), 3, "%02x", rnd[i]);
    snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=%s", boundary);
    buf_init(&url, URL_MAX);
    buf_init(&body, (size_t)chunk + MULTIPART_EXTRA);
    if (plat_url(&url, x->pc->conf->x_api_url, "/2/media/upload/%s/append", x->media_id)) {
        rc = plat_no_memory(x->err, what);
        goto out;
    }
    while (appended < x->total) {
        size_t len = (size_t)(x->total - appended < chunk ? x->total - appended : chunk);
        struct http_response resp;

        if (should_stop(x)) {
            rc = stopped(x, "between segments");
            goto out;
        }
        if (progress(x, appended)) {
            rc = stopped(x, "between segments");
            goto out;
        }
        buf_reset(&body);
        rc = segment_body(x, segment, appended, len, boundary, &body);
        if (rc) {
            plat_error_set(x->err, PLAT_RETRY, 0, "media_unreadable",
                           "%s: the media file cannot be read", what);
            goto out;
        }
        rc = x_do(x, "POST", buf_str(&url), ctype, body.data, body.len, what, &resp);
        if (rc)
            goto out;
        if (resp.status < 200 || resp.status > 299) {
            rc = media_unknown(&resp) ? CP_ENOTFOUND : failed(x, &resp, what);
            plat_response_free(&resp);
            goto out;
        }
        plat_response_free(&resp);
        segment++;
        appended += (long long)len;
        pub_state_set_int(x->state, "segment", segment);
        pub_state_set_int(x->state, "appended", appended);
        if ((rc = save(x)))
            goto out;
    }
    if (progress(x, appended))
        rc = stopped(x, "after the upload");
out:
    buf_free(&url);
    buf_free(&body);
    return rc;
}

/* FINALIZE, then STATUS until processed.  CP_ENOTFOUND: media unknown. */
static int finalize_and_wait(struct xp *x)
{
    static const char what_fin[] = "X media finalize", what_st[] = "X media status";
    struct x_processing proc;
    struct http_response resp;
    struct buf url;
    long long waited_ms = 0, poll_max = x->pc->conf->publish_poll_max;
    int rc = 0;

    memset(&proc, 0, sizeof proc);
    buf_init(&url, URL_MAX);
    if (!pub_state_bool(x->state, "finalized")) {
        if (plat_url(&url, x->pc->conf->x_api_url, "/2/media/upload/%s/finalize", x->media_id)) {
            rc = plat_no_memory(x->err, what_fin);
            goto out;
        }
        rc = x_do(x, "POST", buf_str(&url), NULL, "", 0, what_fin, &resp);
        if (rc)
            goto out;
        if (resp.status < 200 || resp.status > 299) {
            char msg[256];

            first_message(&resp, msg, sizeof msg);
            if (strstr(msg, "already finalized")) {
                /* Our earlier FINALIZE went through; its answer was lost. */
                snprintf(proc.state, sizeof proc.state, "pending");
            } else {
                rc = media_unknown(&resp) || strstr(msg, "File size mismatch")
                         ? CP_ENOTFOUND
                         : failed(x, &resp, what_fin);
                plat_response_free(&resp);
                goto out;
            }
        } else if (pub_x_processing(resp.body.data, resp.body.len, &proc)) {
            rc = plat_error_unexpected(x->err, resp.status, what_fin, "not JSON");
            plat_response_free(&resp);
            goto out;
        }
        plat_response_free(&resp);
        pub_state_set_bool(x->state, "finalized", 1);
        if ((rc = save(x)))
            goto out;
    } else {
        snprintf(proc.state, sizeof proc.state, "pending");
    }
    buf_reset(&url);
    if (plat_url(&url, x->pc->conf->x_api_url, "/2/media/upload?command=STATUS&media_id=%s",
                 x->media_id)) {
        rc = plat_no_memory(x->err, what_st);
        goto out;
    }
    for (int first = 1;; first = 0) {
        long long wait_ms;

        if (!proc.state[0] || strcmp(proc.state, "succeeded") == 0)
            break;
        if (strcmp(proc.state, "failed") == 0) {
            plat_error_set(x->err, PLAT_FATAL, 200, "processing_failed",
                           "X could not process the video: %s",
                           proc.error[0] ? proc.error : "no reason given");
            rc = CP_EPROTO;
            goto out;
        }
        wait_ms = (proc.check_after_s > 0 ? proc.check_after_s : 1) * 1000;
        /* A resumed run asks at once; the answer says how long to wait. */
        if (first && pub_state_bool(x->state, "finalized") && proc.check_after_s == 0)
            wait_ms = 0;
        if (waited_ms + wait_ms > poll_max) {
            plat_error_set(x->err, PLAT_DEFER, 0, "processing",
                           "X is still processing the video (%d %%)", proc.progress_percent);
            x->err->retry_after_ms = wait_ms;
            rc = CP_ERETRY;
            goto out;
        }
        if (nap(x, wait_ms, x->total)) {
            rc = stopped(x, "while X processes the video");
            goto out;
        }
        waited_ms += wait_ms;
        rc = x_do(x, "GET", buf_str(&url), NULL, NULL, 0, what_st, &resp);
        if (rc)
            goto out;
        if (resp.status < 200 || resp.status > 299) {
            rc = media_unknown(&resp) ? CP_ENOTFOUND : failed(x, &resp, what_st);
            plat_response_free(&resp);
            goto out;
        }
        rc = pub_x_processing(resp.body.data, resp.body.len, &proc);
        plat_response_free(&resp);
        if (rc) {
            rc = plat_error_unexpected(x->err, 200, what_st, "not JSON");
            goto out;
        }
    }
out:
    buf_free(&url);
    return rc;
}

static void post_url(struct xp *x, const char *id)
{
    const char *user = NULL;

    snprintf(x->res->remote_id, sizeof x->res->remote_id, "%s", id);
    if (x->rq->settings && json_get_string(x->rq->settings, "username", &user) == 0 && *user &&
        strspn(user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
            strlen(user))
        snprintf(x->res->url, sizeof x->res->url, "https://x.com/%s/status/%s", user, id);
    else
        snprintf(x->res->url, sizeof x->res->url, "https://x.com/i/web/status/%s", id);
}

static int done(struct xp *x, const char *id)
{
    post_url(x, id);
    pub_state_set_str(x->state, "tweet_id", id);
    return save(x);
}

/* Look for the post among the account's recent ones.  0 and done when
 * found, CP_ENOTFOUND when not, else the call's error. */
static int lookup(struct xp *x)
{
    static const char what[] = "X post lookup";
    struct http_response resp;
    struct buf url;
    char id[PLAT_REMOTE_ID_MAX];
    long long since = pub_state_int(x->state, "tweet_sent_at");
    int rc;

    buf_init(&url, URL_MAX);
    if (plat_url(&url, x->pc->conf->x_api_url,
                 "/2/users/%s/tweets?max_results=%d&tweet.fields=created_at%%2Cattachments",
                 x->rq->account_id, TIMELINE_COUNT)) {
        buf_free(&url);
        return plat_no_memory(x->err, what);
    }
    rc = x_do(x, "GET", buf_str(&url), NULL, NULL, 0, what, &resp);
    buf_free(&url);
    if (rc)
        return rc;
    if (resp.status != 200) {
        rc = failed(x, &resp, what);
        plat_response_free(&resp);
        return rc;
    }
    rc = pub_x_find_post(resp.body.data, resp.body.len, x->rq->caption, x->media_key,
                         since > LOOKBACK_S ? since - LOOKBACK_S : 0, id, sizeof id);
    plat_response_free(&resp);
    if (rc == CP_ENOTFOUND)
        return rc;
    if (rc)
        return plat_error_unexpected(x->err, 200, what, "an unreadable timeline");
    log_kv(CP_LOG_INFO, "x post found among recent posts", "tweet_id", id, LOG_END);
    return done(x, id);
}

/* POST /2/tweets once.  *unknown is set when the post may or may not
 * exist; CP_ECONFLICT for "duplicate content", CP_ENOTFOUND when X no
 * longer knows the media. */
static int post_once(struct xp *x, int *unknown)
{
    static const char what[] = "X post";
    struct json_object *root = NULL, *data;
    struct http_client *fresh = NULL;
    struct http_response resp;
    struct buf url, body;
    const char *id = NULL;
    int rc;

    *unknown = 0;
    buf_init(&url, URL_MAX);
    buf_init(&body, 64 * 1024);
    if (plat_url(&url, x->pc->conf->x_api_url, "/2/tweets") || buf_adds(&body, "{\"text\":") ||
        buf_addc(&body, '"') ||
        buf_add_json_escaped(&body, x->rq->caption ? x->rq->caption : "",
                             x->rq->caption ? strlen(x->rq->caption) : 0) ||
        buf_printf(&body, "\",\"media\":{\"media_ids\":[\"%s\"]}}", x->media_id)) {
        rc = plat_no_memory(x->err, what);
        goto out;
    }
    pub_state_set_int(x->state, "tweet_sent_at", (long long)time(NULL));
    if ((rc = save(x)))
        goto out;
    /* On a connection of its own: curl resends a request whose reused
     * connection died without an answer, and a post must not be resent
     * before it has been looked for. */
    if (http_client_new(x->pc->conf, &fresh)) {
        rc = plat_no_memory(x->err, what);
        goto out;
    }
    rc = x_do_on(x, fresh, "POST", buf_str(&url), "application/json", body.data, body.len, what,
                 &resp);
    http_client_free(fresh);
    if (rc) {
        *unknown = 1;
        goto out;
    }
    note_post_limits(x, &resp);
    if (resp.status == 201 || resp.status == 200) {
        if (plat_json_parse(resp.body.data, resp.body.len, &root) ||
            json_get_object(root, "data", &data) || json_get_string(data, "id", &id) || !*id ||
            strlen(id) >= PLAT_REMOTE_ID_MAX) {
            rc = plat_error_unexpected(x->err, resp.status, what, "no data.id");
        } else {
            rc = done(x, id);
        }
        plat_response_free(&resp);
        goto out;
    }
    if (resp.status == 403) {
        char msg[256];

        first_message(&resp, msg, sizeof msg);
        if (strstr(msg, "duplicate")) {
            plat_error_set(x->err, PLAT_FATAL, 403, "duplicate",
                           "X refused the post as a duplicate of an earlier one");
            plat_response_free(&resp);
            rc = CP_ECONFLICT;
            goto out;
        }
    }
    if (media_unknown(&resp)) {
        plat_response_free(&resp);
        rc = CP_ENOTFOUND;
        goto out;
    }
    rc = failed(x, &resp, what);
    if (x->err->outcome == PLAT_RETRY && resp.status >= 500)
        *unknown = 1;
    if (x->err->outcome == PLAT_DEFER && x->quota->reset_ms > 0) {
        long long wait = x->quota->reset_ms - (long long)time(NULL) * 1000;

        x->err->retry_after_ms = wait > 0 ? wait : 1000;
    }
    plat_response_free(&resp);
out:
    json_object_put(root);
    buf_free(&url);
    buf_free(&body);
    return rc;
}

/* Post, looking first whenever an earlier attempt may have gone through. */
static int post(struct xp *x)
{
    int unknown = 0, rc;

    if (pub_state_int(x->state, "tweet_sent_at") > 0) {
        rc = lookup(x);
        if (rc != CP_ENOTFOUND)
            return rc;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        struct plat_error first;

        rc = post_once(x, &unknown);
        if (rc == 0 || rc == CP_ENOTFOUND || (!unknown && rc != CP_ECONFLICT))
            return rc;
        first = *x->err;
        rc = lookup(x);
        if (rc == 0)
            return 0;
        if (rc != CP_ENOTFOUND) {
            /* Whether it went through stays unknown: try again later. */
            *x->err = first;
            x->err->outcome = PLAT_RETRY;
            return CP_ERETRY;
        }
        if (!unknown) {
            /* A duplicate that is not among the recent posts: an older one. */
            *x->err = first;
            return CP_EPROTO;
        }
    }
    return CP_ERETRY;
}

static int open_media(struct xp *x)
{
    struct stat st;

    x->fd = open(x->rq->media.path, O_RDONLY | O_CLOEXEC);
    if (x->fd < 0 || fstat(x->fd, &st) || st.st_size <= 0) {
        plat_error_set(x->err, PLAT_RETRY, 0, "media_unreadable",
                       "X publish: the media file cannot be read: %s",
                       x->fd < 0 ? strerror(errno) : "empty or not a file");
        return CP_EIO;
    }
    x->total = (long long)st.st_size;
    return 0;
}

/* The saved media, when it has not expired. */
static void load_media(struct xp *x)
{
    const char *id = NULL, *key = NULL;
    long long expires = pub_state_int(x->state, "media_expires_at");

    if (json_get_string(x->state, "media_id", &id) || !*id || strlen(id) >= sizeof x->media_id ||
        (expires > 0 && expires <= (long long)time(NULL) + 60)) {
        drop_media(x);
        return;
    }
    snprintf(x->media_id, sizeof x->media_id, "%s", id);
    if (json_get_string(x->state, "media_key", &key) == 0 && strlen(key) < sizeof x->media_key)
        snprintf(x->media_key, sizeof x->media_key, "%s", key);
}

static int publish(struct xp *x)
{
    int rc = 0;

    for (int round = 0; round < 2; round++) {
        if (!x->media_id[0] && (rc = initialize(x)))
            return rc;
        rc = append_all(x);
        if (!rc)
            rc = finalize_and_wait(x);
        if (!rc)
            rc = post(x);
        if (rc != CP_ENOTFOUND)
            return rc;
        log_kv(CP_LOG_INFO, "x media unknown or expired: uploading it again", LOG_END);
        drop_media(x);
        if ((rc = save(x)))
            return rc;
    }
    plat_error_set(x->err, PLAT_RETRY, 400, "media_lost", "X publish: X lost the media twice");
    return CP_ERETRY;
}

int pub_x(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
          const struct pub_hooks *hooks, struct pub_result *res, struct pub_quota *quota,
          struct plat_error *err)
{
    static const char what[] = "X publish";
    struct xp x = { .pc = pc, .rq = rq, .state = state, .hooks = hooks, .res = res,
                    .quota = quota, .err = err, .fd = -1 };
    const char *tweet_id = NULL;
    int rc;

    pub_outputs_reset(res, quota, err);
    if (json_get_string(state, "tweet_id", &tweet_id) == 0 && *tweet_id &&
        strlen(tweet_id) < PLAT_REMOTE_ID_MAX) {
        post_url(&x, tweet_id);
        return 0;
    }
    if ((rc = plat_need_token(rq->creds ? rq->creds->access_token : NULL, "access", what, err)))
        return rc;
    if (rq->creds->kind == AUTH_OAUTH1 &&
        (!pc->conf->x_consumer_key || !*pc->conf->x_consumer_key)) {
        plat_error_set(err, PLAT_FATAL, 0, "not_configured",
                       "X: the consumer key and secret are not configured");
        return CP_EINVAL;
    }
    if ((rc = open_media(&x)))
        goto out;
    load_media(&x);
    rc = publish(&x);
    if (rc == 0)
        log_kv(CP_LOG_INFO, "x post made", "tweet_id", res->remote_id, LOG_END);
out:
    if (x.fd >= 0)
        close(x.fd);
    return rc;
}
