#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "log.h"
#include "plat_internal.h"
#include "pub_internal.h"
#include "publish.h"

/*
 * YouTube: a resumable upload session (videos.insert with
 * uploadType=resumable), then the file in chunks of whole 256 KiB
 * granules.  The session URI is saved as soon as it exists and the
 * offset after every acknowledged chunk, so a later run continues the
 * same session; the offset always comes from the server's Range, never
 * from what was sent.  A final chunk whose answer was lost is found by
 * the status query (the session answers with the video), so a video is
 * never inserted twice.
 */

#define GRANULE (256LL * 1024)
#define URL_MAX 8192
#define HEADER_MAX 512
#define FAILURES_MAX 5                /* consecutive failures without progress */
#define SESSIONS_MAX 3                /* new sessions in one run (404s) */
#define NAP_STEP_MS 100

struct yt {
    struct plat_ctx *pc;
    const struct pub_request *rq;
    struct json_object *state;
    const struct pub_hooks *hooks;
    struct pub_result *res;
    struct pub_quota *quota;
    struct plat_error *err;
    struct buf auth;                  /* "Bearer ..." */
    int fd;
    long long total;
    long long offset;
    char session[URL_MAX];
};

/* What a PUT to the session told us. */
enum put_result {
    PUT_PROGRESS,                     /* 308: y->offset updated */
    PUT_DONE,                         /* 200/201: the video exists */
    PUT_GONE,                         /* 404: the session is gone */
    PUT_FAILED,                       /* transient: transport or 5xx */
    PUT_ERROR,                        /* anything else: *err classified */
};

/* ------------------------------------------------------------ pure parts -- */

int pub_youtube_next_offset(const char *range, long long *next)
{
    const char *p;
    long long last = 0;

    *next = 0;
    if (!range || !*range)
        return 0;
    if (strncmp(range, "bytes=0-", 8) != 0)
        return CP_EPARSE;
    p = range + 8;
    if (!*p)
        return CP_EPARSE;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return CP_EPARSE;
        if (last > (999999999999999LL - (*p - '0')) / 10)
            return CP_EPARSE;
        last = last * 10 + (*p - '0');
    }
    *next = last + 1;
    return 0;
}

long long pub_youtube_chunk_len(long long offset, long long total, long long chunk_size)
{
    long long chunk = chunk_size - chunk_size % GRANULE, rest = total - offset;

    if (chunk < GRANULE)
        chunk = GRANULE;
    if (rest <= 0)
        return 0;
    return rest < chunk ? rest : chunk;
}

static const char *setting_str(struct json_object *settings, const char *key, const char *dflt)
{
    const char *s = NULL;

    if (settings && json_get_string(settings, key, &s) == 0 && *s)
        return s;
    return dflt;
}

/* settings.tags: an array of strings, or one string of comma-separated tags. */
static int add_tags(struct json_object *snippet, struct json_object *settings)
{
    struct json_object *tags, *out;
    const char *text;

    if (!settings)
        return 0;
    out = json_object_new_array();
    if (!out)
        return CP_ENOMEM;
    if (json_get_array(settings, "tags", &tags) == 0) {
        for (size_t i = 0; i < json_object_array_length(tags); i++) {
            struct json_object *t = json_object_array_get_idx(tags, i);

            if (json_object_is_type(t, json_type_string) && json_object_get_string_len(t) > 0)
                json_object_array_add(out, json_object_new_string(json_object_get_string(t)));
        }
    } else if (json_get_string(settings, "tags", &text) == 0) {
        while (*text) {
            size_t n = strcspn(text, ",");
            const char *s = text, *e = text + n;

            while (s < e && (*s == ' ' || *s == '#'))
                s++;
            while (e > s && e[-1] == ' ')
                e--;
            if (e > s)
                json_object_array_add(out, json_object_new_string_len(s, (int)(e - s)));
            text += n + (text[n] == ',');
        }
    }
    if (json_object_array_length(out) == 0) {
        json_object_put(out);
        return 0;
    }
    json_object_object_add(snippet, "tags", out);
    return 0;
}

int pub_youtube_metadata(const struct pub_request *rq, struct buf *out)
{
    struct json_object *root = NULL, *snippet, *status, *kids;
    int made_for_kids = 0, rc;

    root = json_object_new_object();
    snippet = json_object_new_object();
    status = json_object_new_object();
    if (!root || !snippet || !status) {
        json_object_put(root);
        json_object_put(snippet);
        json_object_put(status);
        return CP_ENOMEM;
    }
    json_object_object_add(root, "snippet", snippet);
    json_object_object_add(root, "status", status);
    json_object_object_add(snippet, "title", json_object_new_string(rq->title ? rq->title : ""));
    json_object_object_add(snippet, "description",
                           json_object_new_string(rq->caption ? rq->caption : ""));
    rc = add_tags(snippet, rq->settings);
    if (rc)
        goto out;
    if (rq->settings && json_object_object_get_ex(rq->settings, "category_id", &kids) &&
        json_object_is_type(kids, json_type_int)) {
        char num[24];

        snprintf(num, sizeof num, "%lld", (long long)json_object_get_int64(kids));
        json_object_object_add(snippet, "categoryId", json_object_new_string(num));
    } else {
        json_object_object_add(snippet, "categoryId",
                               json_object_new_string(setting_str(rq->settings, "category_id", "22")));
    }
    json_object_object_add(status, "privacyStatus",
                           json_object_new_string(setting_str(rq->settings, "privacy", "public")));
    if (rq->settings)
        json_get_bool(rq->settings, "made_for_kids", &made_for_kids);
    json_object_object_add(status, "selfDeclaredMadeForKids",
                           json_object_new_boolean(made_for_kids));
    rc = json_to_buf(root, out);
out:
    json_object_put(root);
    return rc;
}

/* --------------------------------------------------------------- state -- */

static int stopped(struct yt *y)
{
    plat_error_set(y->err, PLAT_RETRY, 0, "stopped", "YouTube upload: stopped at byte %lld of %lld",
                   y->offset, y->total);
    return CP_ERETRY;
}

static int save(struct yt *y)
{
    return pub_hook_save(y->hooks, y->state) ? stopped(y) : 0;
}

static int should_stop(struct yt *y)
{
    return pub_hook_should_stop(y->hooks);
}

static int progress(struct yt *y)
{
    return pub_hook_progress(y->hooks, y->offset, y->total) ? stopped(y) : 0;
}

/* Sleep ms in small steps; 1 when told to stop on the way. */
static int nap(struct yt *y, long long ms)
{
    return pub_nap(y->hooks, ms, NAP_STEP_MS);
}

static int finish(struct yt *y, const char *video_id)
{
    /* Up to three minutes it is a Short. */
    snprintf(y->res->remote_id, sizeof y->res->remote_id, "%s", video_id);
    if (y->rq->media.duration_ms > 180000)
        snprintf(y->res->url, sizeof y->res->url, "https://www.youtube.com/watch?v=%s", video_id);
    else
        snprintf(y->res->url, sizeof y->res->url, "https://youtube.com/shorts/%s", video_id);
    return 0;
}

/* The video id of a 200/201 answer to the session. */
static int read_video(struct yt *y, const struct http_response *resp)
{
    struct json_object *root = NULL;
    const char *id = NULL;
    int rc;

    if (plat_json_parse(resp->body.data, resp->body.len, &root) ||
        json_get_string(root, "id", &id) || !*id || strlen(id) >= PLAT_REMOTE_ID_MAX) {
        json_object_put(root);
        return plat_error_unexpected(y->err, resp->status, "YouTube upload", "no video id");
    }
    pub_state_set_str(y->state, "video_id", id);
    finish(y, id);
    json_object_put(root);
    rc = save(y);
    return rc;
}

/* A quota error's details for the ledger. */
static void note_quota(struct yt *y)
{
    const char *bucket = NULL, *scope = NULL;

    if (strcmp(y->err->code, "quotaExceeded") == 0 || strcmp(y->err->code, "dailyLimitExceeded") == 0) {
        bucket = "units";
        scope = "project";
    } else if (strcmp(y->err->code, "uploadLimitExceeded") == 0) {
        bucket = "uploads";
        scope = "channel";
    }
    if (!bucket)
        return;
    y->quota->exhausted = 1;
    snprintf(y->quota->bucket, sizeof y->quota->bucket, "%s", bucket);
    snprintf(y->quota->scope, sizeof y->quota->scope, "%s", scope);
    y->quota->reset_ms = 0;           /* midnight Pacific: the caller knows */
    y->quota->remaining = 0;
    y->err->outcome = PLAT_DEFER;
    y->err->retry_after_ms = 0;
}

/* ------------------------------------------------------------- calls -- */

/* POST the metadata: a new session into y->session, saved with offset 0. */
static int start_session(struct yt *y)
{
    static const char what[] = "YouTube upload start";
    struct buf url, body, loc;
    char length[24];
    struct http_header headers[5];
    struct http_request req;
    struct http_response resp;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&body, 64 * 1024);
    buf_init(&loc, URL_MAX);
    snprintf(length, sizeof length, "%lld", y->total);
    if (plat_url(&url, y->pc->conf->youtube_api_url,
                 "/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status") ||
        pub_youtube_metadata(y->rq, &body)) {
        rc = plat_no_memory(y->err, what);
        goto out;
    }
    headers[0] = (struct http_header){ "Accept", "application/json" };
    headers[1] = (struct http_header){ "Authorization", buf_str(&y->auth) };
    headers[2] = (struct http_header){ "Content-Type", "application/json; charset=UTF-8" };
    headers[3] = (struct http_header){ "X-Upload-Content-Length", length };
    headers[4] = (struct http_header){ "X-Upload-Content-Type",
                                       y->rq->media.content_type ? y->rq->media.content_type
                                                                 : "video/mp4" };
    http_request_init(&req, "POST", buf_str(&url));
    req.headers = headers;
    req.nheaders = 5;
    req.body = body.data ? body.data : "";
    req.body_len = body.len;
    rc = plat_call(y->pc, &plat_google_rules, &req, &resp, what, y->err);
    if (rc) {
        note_quota(y);
        goto out;
    }
    if (http_response_header(&resp, "Location", &loc) || loc.len == 0 ||
        strncmp(buf_str(&loc), "http", 4) != 0) {
        rc = plat_error_unexpected(y->err, resp.status, what, "no Location");
        plat_response_free(&resp);
        goto out;
    }
    plat_response_free(&resp);
    snprintf(y->session, sizeof y->session, "%s", buf_str(&loc));
    y->offset = 0;
    pub_state_set_str(y->state, "session_uri", y->session);
    pub_state_set_int(y->state, "total", y->total);
    pub_state_set_int(y->state, "offset", 0);
    pub_state_set_str(y->state, "video_id", NULL);
    rc = save(y);
out:
    buf_free(&url);
    buf_free(&body);
    buf_free(&loc);
    return rc;
}

/*
 * PUT to the session: a chunk of len bytes at y->offset, or (len < 0)
 * the status query "bytes STAR/TOTAL" with an empty body.
 */
static enum put_result put(struct yt *y, long long len, int *rc_out)
{
    const char *what = len < 0 ? "YouTube upload status" : "YouTube upload chunk";
    char range[96];
    struct http_header headers[4];
    struct http_request req;
    struct http_response resp;
    struct buf hdr;
    enum put_result out;
    int rc;

    *rc_out = 0;
    if (len < 0)
        snprintf(range, sizeof range, "bytes */%lld", y->total);
    else
        snprintf(range, sizeof range, "bytes %lld-%lld/%lld", y->offset, y->offset + len - 1,
                 y->total);
    headers[0] = (struct http_header){ "Accept", "application/json" };
    headers[1] = (struct http_header){ "Authorization", buf_str(&y->auth) };
    headers[2] = (struct http_header){ "Content-Range", range };
    headers[3] = (struct http_header){ "Content-Type", y->rq->media.content_type
                                                          ? y->rq->media.content_type
                                                          : "video/mp4" };
    http_request_init(&req, "PUT", y->session);
    req.headers = headers;
    req.nheaders = len < 0 ? 3 : 4;
    if (len < 0) {
        req.body = "";
        req.body_len = 0;
    } else {
        req.body_fd = y->fd;
        req.body_offset = (off_t)y->offset;
        req.body_len = (size_t)len;
        /* Room for a slow link: a minute plus one second per 256 KiB. */
        req.timeout_ms = 60000 + (long)(len / GRANULE) * 1000;
    }
    memset(y->err, 0, sizeof *y->err);
    rc = http_do(y->pc->http, &req, &resp);
    if (rc) {
        plat_error_transport(y->err, rc, &resp, what);
        plat_response_free(&resp);
        *rc_out = rc;
        return PUT_FAILED;
    }
    if (resp.status == 308) {
        long long next;

        buf_init(&hdr, 128);
        if (http_response_header(&resp, "Range", &hdr) == CP_ENOTFOUND)
            buf_reset(&hdr);
        rc = pub_youtube_next_offset(buf_str(&hdr), &next);
        buf_free(&hdr);
        if (rc || next > y->total) {
            *rc_out = plat_error_unexpected(y->err, 308, what, "a Range past the file");
            out = PUT_ERROR;
        } else {
            y->offset = next;
            out = PUT_PROGRESS;
        }
    } else if (resp.status == 200 || resp.status == 201) {
        *rc_out = read_video(y, &resp);
        out = *rc_out ? PUT_ERROR : PUT_DONE;
    } else if (resp.status == 404) {
        out = PUT_GONE;
    } else {
        enum plat_outcome o = plat_classify(&plat_google_rules, &resp, what, y->err);

        *rc_out = plat_outcome_rc(o);
        /* A chunk refused as not starting where the session is (a resend
         * after a connection died mid-body): ask the offset and go on. */
        if ((o == PLAT_RETRY && resp.status >= 500) ||
            (len >= 0 && resp.status == 400 && strcmp(y->err->code, "badRequest") == 0)) {
            out = PUT_FAILED;
        } else {
            note_quota(y);
            out = PUT_ERROR;
        }
    }
    plat_response_free(&resp);
    return out;
}

/* The session's confirmed offset after a failure, retrying with backoff
 * 1, 2, 4, 4 s.  *failures counts the consecutive failures. */
static enum put_result recover(struct yt *y, int *failures, int *rc)
{
    static const long long backoff_ms[] = { 1000, 2000, 4000 };
    enum put_result r;

    for (;;) {
        int i = *failures - 1;

        if (*failures >= FAILURES_MAX) {
            y->err->outcome = PLAT_RETRY;
            *rc = CP_ERETRY;
            return PUT_ERROR;
        }
        if (nap(y, backoff_ms[i < 3 ? (i < 0 ? 0 : i) : 2])) {
            *rc = stopped(y);
            return PUT_ERROR;
        }
        r = put(y, -1, rc);
        if (r != PUT_FAILED)
            return r;
        (*failures)++;
    }
}

static int open_media(struct yt *y)
{
    struct stat st;

    y->fd = open(y->rq->media.path, O_RDONLY | O_CLOEXEC);
    if (y->fd < 0 || fstat(y->fd, &st) || st.st_size <= 0) {
        plat_error_set(y->err, PLAT_RETRY, 0, "media_unreadable",
                       "YouTube upload: the media file cannot be read: %s",
                       y->fd < 0 ? strerror(errno) : "empty or not a file");
        return CP_EIO;
    }
    y->total = (long long)st.st_size;
    return 0;
}

/* The resumed session: load it when it fits the file, else forget it. */
static void load_session(struct yt *y)
{
    const char *uri = NULL;

    if (json_get_string(y->state, "session_uri", &uri) == 0 && *uri &&
        strlen(uri) < sizeof y->session && pub_state_int(y->state, "total") == y->total)
        snprintf(y->session, sizeof y->session, "%s", uri);
    y->offset = pub_state_int(y->state, "offset");
}

static int upload(struct yt *y)
{
    int failures = 0, sessions = 0, rc = 0;
    enum put_result r;

    if (y->session[0]) {
        /* Resumed: ask the session what it has (maybe everything). */
        r = put(y, -1, &rc);
        if (r == PUT_FAILED) {
            failures = 1;
            r = recover(y, &failures, &rc);
        }
        if (r == PUT_DONE || r == PUT_ERROR)
            return rc;
        if (r == PUT_GONE) {
            log_kv(CP_LOG_INFO, "youtube upload session gone: starting a new one", LOG_END);
            y->session[0] = '\0';
        } else {
            pub_state_set_int(y->state, "offset", y->offset);
            if ((rc = save(y)))
                return rc;
        }
    }
    for (;;) {
        long long len, before;
        int recovered;

        if (!y->session[0]) {
            if (++sessions > SESSIONS_MAX) {
                plat_error_set(y->err, PLAT_RETRY, 404, "session_lost",
                               "YouTube upload: the upload session kept disappearing");
                return CP_ERETRY;
            }
            if ((rc = start_session(y)))
                return rc;
        }
        if (should_stop(y))
            return stopped(y);
        if ((rc = progress(y)))
            return rc;
        len = pub_youtube_chunk_len(y->offset, y->total, y->pc->conf->youtube_chunk_size);
        if (len <= 0) {
            /* Every byte is in but no video was returned: ask. */
            len = -1;
        }
        before = y->offset;
        r = put(y, len, &rc);
        recovered = r == PUT_FAILED;
        if (recovered) {
            log_kv(CP_LOG_WARN, "youtube chunk failed: asking the session for its offset",
                   "error", y->err->message, LOG_END);
            failures++;
            r = recover(y, &failures, &rc);
        }
        switch (r) {
        case PUT_DONE:
            return 0;
        case PUT_ERROR:
            return rc;
        case PUT_GONE:
            log_kv(CP_LOG_INFO, "youtube upload session gone: starting a new one", LOG_END);
            y->session[0] = '\0';
            y->offset = 0;
            pub_state_set_str(y->state, "session_uri", NULL);
            continue;
        case PUT_PROGRESS:
        case PUT_FAILED:
            break;
        }
        if (y->offset > before)
            failures = 0;
        else if (!recovered && ++failures >= FAILURES_MAX) {
            plat_error_set(y->err, PLAT_RETRY, 308, "no_progress",
                           "YouTube upload: the session stopped taking bytes at %lld",
                           y->offset);
            return CP_ERETRY;
        }
        pub_state_set_int(y->state, "offset", y->offset);
        if ((rc = save(y)))
            return rc;
    }
}

int pub_youtube(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
                const struct pub_hooks *hooks, struct pub_result *res, struct pub_quota *quota,
                struct plat_error *err)
{
    static const char what[] = "YouTube upload";
    struct yt y = { .pc = pc, .rq = rq, .state = state, .hooks = hooks, .res = res,
                    .quota = quota, .err = err, .fd = -1 };
    const char *video_id = NULL;
    int rc;

    pub_outputs_reset(res, quota, err);
    if (json_get_string(state, "video_id", &video_id) == 0 && *video_id &&
        strlen(video_id) < PLAT_REMOTE_ID_MAX)
        return finish(&y, video_id);
    if ((rc = plat_need_token(rq->creds ? rq->creds->access_token : NULL, "access", what, err)))
        return rc;
    buf_init(&y.auth, PLAT_TOKEN_MAX + 16);
    if (plat_bearer(&y.auth, rq->creds->access_token)) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    if ((rc = open_media(&y)))
        goto out;
    load_session(&y);
    rc = upload(&y);
    if (rc == 0)
        log_kv(CP_LOG_INFO, "youtube video uploaded", "video_id", res->remote_id, LOG_END);
out:
    if (y.fd >= 0)
        close(y.fd);
    plat_buf_wipe(&y.auth);
    return rc;
}
