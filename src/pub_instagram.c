#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
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
 * Instagram Reels through the Content Publishing API: a REELS container
 * (made from a URL Instagram fetches, or filled by a resumable upload to
 * rupload), polled until FINISHED, then media_publish.  The state in
 * publish.h is saved after every step Instagram acknowledged; a container
 * seen PUBLISHED is never published again, its media is looked up among
 * the account's recent media instead.
 */

#define URL_MAX 8192
#define FORM_MAX (64 * 1024)
#define POLL_FIRST_MS 2000LL
#define POLL_STEP_MAX_MS 30000LL
#define STILL_PROCESSING_MS 30000LL
#define FIND_SLACK_MS 60000LL
#define UPLOAD_TRIES 3
#define ROUNDS_MAX 6                  /* container rounds in one run (expired, publish unknown) */

struct ig {
    struct plat_ctx *pc;
    const struct conf *c;
    const struct pub_request *rq;
    struct json_object *state;
    const struct pub_hooks *hooks;
    struct pub_result *res;
    struct pub_quota *quota;
    struct plat_error *err;
    struct buf auth;                  /* "Bearer <token>" */
    long long usage_wait_ms;          /* app usage high: defer before the next call */
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- state -- */

static int stop(struct ig *g)
{
    plat_error_set(g->err, PLAT_RETRY, 0, "stopped", "Instagram publishing stopped");
    return CP_ERETRY;
}

/* hooks->save; a refusal stops the run (PLAT_RETRY "stopped"). */
static int save(struct ig *g)
{
    return pub_hook_save(g->hooks, g->state) ? stop(g) : 0;
}

static int stopped(struct ig *g)
{
    return pub_hook_should_stop(g->hooks) ? stop(g) : 0;
}

static int no_memory(struct ig *g, const char *what)
{
    return plat_no_memory(g->err, what);
}

/* Sleep ms in short slices, returning early (CP_ERETRY) when told to stop. */
static int nap(struct ig *g, long long ms)
{
    return pub_nap(g->hooks, ms, 1000) ? stop(g) : 0;
}

/* -------------------------------------------------------------- calls -- */

/* An earlier answer said the app's usage is high: save and defer. */
static int usage_gate(struct ig *g, const char *what)
{
    int rc;

    if (!g->usage_wait_ms)
        return 0;
    rc = save(g);
    if (rc)
        return rc;
    plat_error_set(g->err, PLAT_DEFER, 0, "app_usage_high",
                   "%s: the app's Graph usage is at or above %lld%%: waiting before the "
                   "next call", what, g->c->app_usage_defer_percent);
    g->err->retry_after_ms = g->usage_wait_ms;
    return CP_ERETRY;
}

/*
 * One Graph call: method on base/ver + path (printf-made), an optional
 * form body.  Before it, an earlier answer's high app usage defers the
 * run (state saved); after it, the answer's usage is noted.
 */
static int graph(struct ig *g, const char *method, const struct buf *form, const char *what,
                 struct http_response *resp, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int graph(struct ig *g, const char *method, const struct buf *form, const char *what,
                 struct http_response *resp, const char *fmt, ...)
{
    struct buf url, path;
    va_list ap;
    int rc;

    memset(resp, 0, sizeof *resp);
    rc = usage_gate(g, what);
    if (rc)
        return rc;
    buf_init(&path, URL_MAX);
    va_start(ap, fmt);
    rc = buf_vprintf(&path, fmt, ap);
    va_end(ap);
    buf_init(&url, URL_MAX);
    if (!rc)
        rc = plat_url(&url, g->c->facebook_graph_url, "/%s%s", g->c->facebook_graph_version,
                      buf_str(&path));
    buf_free(&path);
    if (rc) {
        buf_free(&url);
        return no_memory(g, what);
    }
    rc = plat_send(g->pc, &plat_graph_rules, method, buf_str(&url), buf_str(&g->auth),
                   form ? "application/x-www-form-urlencoded" : NULL, form, what, resp, g->err);
    buf_free(&url);
    if (rc == 0) {
        long long wait = 0;

        if (plat_graph_usage_high(resp, (int)g->c->app_usage_defer_percent, &wait))
            g->usage_wait_ms = wait;
    }
    return rc;
}

/* The JSON object of a successful answer, or CP_EPROTO (unexpected). */
static int answer_json(struct ig *g, struct http_response *resp, const char *what,
                       struct json_object **out)
{
    *out = NULL;
    if (plat_json_parse(resp->body.data, resp->body.len, out))
        return plat_error_unexpected(g->err, resp->status, what, "not a JSON object");
    return 0;
}

/* ------------------------------------------------------ publishing limit -- */

int pub_instagram_limit(struct plat_ctx *pc, const struct plat_creds *creds,
                        const char *ig_user_id, long long *used, long long *total,
                        long long *duration_s, struct plat_error *err)
{
    static const char what[] = "Instagram publishing limit";
    struct http_response resp;
    struct json_object *root = NULL, *data, *first, *config;
    struct buf url, auth;
    int rc;

    *used = *total = *duration_s = 0;
    rc = plat_need_token(creds ? creds->access_token : NULL, "access", what, err);
    if (rc)
        return rc;
    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (plat_url(&url, pc->conf->facebook_graph_url,
                 "/%s/%s/content_publishing_limit?fields=quota_usage,config",
                 pc->conf->facebook_graph_version, ig_user_id) ||
        plat_bearer(&auth, creds->access_token)) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    rc = plat_send(pc, &plat_graph_rules, "GET", buf_str(&url), buf_str(&auth), NULL, NULL, what,
                   &resp, err);
    if (rc)
        goto out;
    if (plat_json_parse(resp.body.data, resp.body.len, &root) ||
        json_get_array(root, "data", &data) || json_object_array_length(data) < 1 ||
        !json_object_is_type(first = json_object_array_get_idx(data, 0), json_type_object)) {
        rc = plat_error_unexpected(err, resp.status, what, "no data");
    } else {
        *used = plat_json_seconds(first, "quota_usage");
        if (json_get_object(first, "config", &config) == 0) {
            *total = plat_json_seconds(config, "quota_total");
            *duration_s = plat_json_seconds(config, "quota_duration");
        }
    }
    json_object_put(root);
    plat_response_free(&resp);
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    return rc;
}

static void quota_exhausted(struct ig *g, long long limit)
{
    memset(g->quota, 0, sizeof *g->quota);
    g->quota->exhausted = 1;
    snprintf(g->quota->bucket, sizeof g->quota->bucket, "posts");
    snprintf(g->quota->scope, sizeof g->quota->scope, "account");
    g->quota->remaining = 0;
    g->quota->limit = limit;
}

/* --------------------------------------------------------- the steps -- */

/* Step 3: a REELS container, from the URL or for a resumable upload. */
static int create_container(struct ig *g)
{
    static const char what[] = "Instagram container";
    const struct pub_request *rq = g->rq;
    int by_url = g->c->instagram_upload == 1 && rq->media.url && *rq->media.url;
    struct http_response resp;
    struct json_object *root = NULL, *v;
    const char *id = NULL, *cover = NULL;
    int share = 1;
    long long thumb = -1;
    char scratch[32];
    struct buf form;
    int rc;

    if (rq->settings && json_object_object_get_ex(rq->settings, "share_to_feed", &v) &&
        json_object_is_type(v, json_type_boolean))
        share = json_object_get_boolean(v);
    if (rq->settings)
        json_get_string(rq->settings, "cover_url", &cover);
    if (rq->settings && json_get_int(rq->settings, "thumb_offset_ms", &thumb))
        thumb = -1;
    buf_init(&form, FORM_MAX);
    rc = plat_form_add(&form, "media_type", "REELS");
    rc = rc ? rc : plat_form_add(&form, "caption", rq->caption ? rq->caption : "");
    rc = rc ? rc : plat_form_add(&form, "share_to_feed", share ? "true" : "false");
    if (!rc && cover && *cover)
        rc = plat_form_add(&form, "cover_url", cover);
    if (!rc && thumb >= 0) {
        snprintf(scratch, sizeof scratch, "%lld", thumb);
        rc = plat_form_add(&form, "thumb_offset", scratch);
    }
    if (!rc)
        rc = by_url ? plat_form_add(&form, "video_url", rq->media.url)
                    : plat_form_add(&form, "upload_type", "resumable");
    if (rc) {
        buf_free(&form);
        return no_memory(g, what);
    }
    rc = graph(g, "POST", &form, what, &resp, "/%s/media", rq->account_id);
    buf_free(&form);
    if (rc)
        return rc;
    rc = answer_json(g, &resp, what, &root);
    if (!rc && !(id = plat_json_text(root, "id", scratch, sizeof scratch)))
        rc = plat_error_unexpected(g->err, resp.status, what, "no id");
    if (!rc) {
        rc = pub_state_set_str(g->state, "container_id", id);
        rc = rc ? rc : pub_state_set_int(g->state, "container_at", now_ms());
        rc = rc ? rc : pub_state_set_str(g->state, "upload", by_url ? "url" : "resumable");
        rc = rc ? rc : pub_state_set_bool(g->state, "uploaded", by_url);
        rc = rc ? no_memory(g, what) : save(g);
        if (!rc)
            log_kv(CP_LOG_INFO, "instagram container made", "container", id, "upload",
                   by_url ? "url" : "resumable", NULL);
    }
    json_object_put(root);
    plat_response_free(&resp);
    return rc;
}

/*
 * The server's answer to one rupload POST: 1 the container has the bytes
 * (or refused them: its status says why), 0 partial with *offset where
 * it resumes, or a negative code with *err filled.
 */
static int upload_answer(struct ig *g, const struct http_response *resp, long long total,
                         long long *offset)
{
    static const char what[] = "Instagram upload";
    struct json_object *root = NULL, *info;
    const char *type = "", *msg = "";
    char text[PLAT_MESSAGE_MAX];
    int ok = 0, rc;

    if (plat_json_parse(resp->body.data, resp->body.len, &root))
        root = NULL;
    if (resp->status >= 200 && resp->status <= 299) {
        long long at = root ? plat_json_seconds(root, "offset") : -1;

        if (root && json_get_bool(root, "success", &ok) == 0 && ok) {
            rc = 1;
        } else if (root && at >= 0 && at <= total) {
            *offset = at;
            rc = 0;
        } else {
            rc = plat_error_unexpected(g->err, resp->status, what, "no success or offset");
        }
        json_object_put(root);
        return rc;
    }
    if (root && json_get_object(root, "debug_info", &info) == 0) {
        json_get_string(info, "type", &type);
        json_get_string(info, "message", &msg);
    }
    plat_text_clean(text, sizeof text, msg);
    if (resp->status == 401) {
        plat_error_set(g->err, PLAT_REAUTH, resp->status, "upload_auth",
                       "%s: the token was refused (%s)", what, text);
        rc = plat_outcome_rc(PLAT_REAUTH);
    } else if (strcmp(type, "ProcessingFailedError") == 0) {
        rc = 1;
    } else if (resp->status >= 500 || resp->status == 429) {
        plat_error_set(g->err, PLAT_RETRY, resp->status, "upload_failed", "%s: HTTP %ld (%s)",
                       what, resp->status, text);
        rc = CP_ERETRY;
    } else {
        plat_error_set(g->err, PLAT_FATAL, resp->status, "upload_refused",
                       "%s: refused (HTTP %ld, %s: %s)", what, resp->status,
                       type[0] ? type : "error", text);
        rc = CP_EPROTO;
    }
    json_object_put(root);
    return rc;
}

/*
 * Step 4: the file to rupload from offset 0 (a dropped answer leaves the
 * server's offset unknown; it accepts 0 again), following the server's
 * offset when it takes part of it.
 */
static int upload(struct ig *g)
{
    static const char what[] = "Instagram upload";
    const char *cid = pub_state_str(g->state, "container_id");
    long long total = g->rq->media.bytes, offset = 0;
    char offset_s[32], size_s[32];
    struct buf url, auth;
    struct stat sb;
    int fd, rc = 0, tries = 0;

    fd = open(g->rq->media.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        plat_error_set(g->err, PLAT_FATAL, 0, "media_unreadable", "%s: cannot open the media: %s",
                       what, strerror(errno));
        return CP_EIO;
    }
    if (fstat(fd, &sb) == 0 && (total <= 0 || total != (long long)sb.st_size))
        total = (long long)sb.st_size;
    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (plat_url(&url, g->c->instagram_upload_url, "/ig-api-upload/%s/%s",
                 g->c->facebook_graph_version, cid) ||
        buf_adds(&auth, "OAuth ") || buf_adds(&auth, g->rq->creds->access_token)) {
        rc = no_memory(g, what);
        goto out;
    }
    snprintf(size_s, sizeof size_s, "%lld", total);
    while (!rc) {
        struct http_header headers[5];
        struct http_request req;
        struct http_response resp;
        int got;

        if (pub_hook_progress(g->hooks, offset, total)) {
            rc = stop(g);
            break;
        }
        snprintf(offset_s, sizeof offset_s, "%lld", offset);
        headers[0] = (struct http_header){ "Authorization", buf_str(&auth) };
        headers[1] = (struct http_header){ "offset", offset_s };
        headers[2] = (struct http_header){ "file_size", size_s };
        headers[3] = (struct http_header){ "Content-Type", "application/octet-stream" };
        headers[4] = (struct http_header){ "Accept", "application/json" };
        http_request_init(&req, "POST", buf_str(&url));
        req.headers = headers;
        req.nheaders = 5;
        req.body_fd = fd;
        req.body_offset = (off_t)offset;
        req.body_len = (size_t)(total - offset);
        memset(&resp, 0, sizeof resp);
        rc = http_do(g->pc->http, &req, &resp);
        if (rc) {
            plat_error_transport(g->err, rc, &resp, what);
            http_response_free(&resp);
            if (++tries >= UPLOAD_TRIES)
                break;
            offset = 0;
            rc = 0;
            continue;
        }
        got = upload_answer(g, &resp, total, &offset);
        http_response_free(&resp);
        if (got < 0) {
            rc = got;
        } else if (got > 0) {
            pub_hook_progress(g->hooks, total, total);
            rc = pub_state_set_bool(g->state, "uploaded", 1) ? no_memory(g, what) : save(g);
            break;
        } else if (++tries >= UPLOAD_TRIES + 2) {
            plat_error_set(g->err, PLAT_RETRY, 200, "upload_incomplete",
                           "%s: the upload stopped at %lld of %lld bytes", what, offset, total);
            rc = CP_ERETRY;
        }
    }
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    close(fd);
    return rc;
}

/* GET the container's status_code into status[cap] and its words into text. */
static int container_status(struct ig *g, char *status, size_t cap, char *text, size_t text_cap)
{
    static const char what[] = "Instagram container status";
    struct http_response resp;
    struct json_object *root = NULL;
    const char *s = NULL, *t = NULL;
    int rc;

    rc = graph(g, "GET", NULL, what, &resp, "/%s?fields=status_code,status",
               pub_state_str(g->state, "container_id"));
    if (rc)
        return rc;
    rc = answer_json(g, &resp, what, &root);
    if (!rc && (json_get_string(root, "status_code", &s) || !*s || strlen(s) >= cap))
        rc = plat_error_unexpected(g->err, resp.status, what, "no status_code");
    if (!rc) {
        snprintf(status, cap, "%s", s);
        json_get_string(root, "status", &t);
        plat_text_clean(text, text_cap, t ? t : s);
    }
    json_object_put(root);
    plat_response_free(&resp);
    return rc;
}

/*
 * Step 2's wait: the status until it is not IN_PROGRESS, polled with
 * backoff for up to publish_poll_max; then PLAT_DEFER, or PLAT_FATAL
 * once the processing deadline of the container has passed.
 */
static int poll_container(struct ig *g, char *status, size_t cap, char *text, size_t text_cap)
{
    long long start = now_ms(), step = POLL_FIRST_MS;
    long long made = pub_state_int(g->state, "container_at");
    long long deadline = made > 0 ? made + g->c->publish_processing_deadline : 0;
    int rc;

    for (;;) {
        rc = container_status(g, status, cap, text, text_cap);
        if (rc || strcmp(status, "IN_PROGRESS") != 0)
            return rc;
        if (deadline && now_ms() >= deadline) {
            plat_error_set(g->err, PLAT_FATAL, 200, "processing_deadline",
                           "Instagram: processing did not finish in %lld s (%s)",
                           g->c->publish_processing_deadline / 1000, text);
            return CP_EPROTO;
        }
        if (now_ms() - start + step > g->c->publish_poll_max) {
            plat_error_set(g->err, PLAT_DEFER, 200, "processing",
                           "Instagram is still processing the video (%s)", text);
            g->err->retry_after_ms = STILL_PROCESSING_MS;
            return CP_ERETRY;
        }
        rc = nap(g, step);
        if (rc)
            return rc;
        step = step * 2 > POLL_STEP_MAX_MS ? POLL_STEP_MAX_MS : step * 2;
    }
}

/* Graph's "2026-11-22T11:20:42+0000" as epoch ms, 0 when unreadable. */
static long long graph_time_ms(const char *s)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof tm);
    if (!s || !(end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
        return 0;
    return (long long)timegm(&tm) * 1000;
}

static int done(struct ig *g, const char *media_id, const char *permalink)
{
    if (strlen(media_id) >= sizeof g->res->remote_id) {
        plat_error_set(g->err, PLAT_FATAL, 200, "unexpected_response",
                       "Instagram: the media id is too long");
        return CP_EPROTO;
    }
    snprintf(g->res->remote_id, sizeof g->res->remote_id, "%s", media_id);
    if (permalink && strlen(permalink) < sizeof g->res->url)
        snprintf(g->res->url, sizeof g->res->url, "%s", permalink);
    return 0;
}

/* Save media_id and permalink, then report the post live. */
static int finish(struct ig *g, const char *media_id, const char *permalink)
{
    int rc = pub_state_set_str(g->state, "media_id", media_id);

    rc = rc ? rc : pub_state_set_str(g->state, "permalink", permalink ? permalink : "");
    if (rc)
        return no_memory(g, "Instagram publishing");
    rc = save(g);
    if (!rc)
        rc = done(g, media_id, permalink);
    if (!rc)
        log_kv(CP_LOG_INFO, "instagram media published", "media", media_id, NULL);
    return rc;
}

/*
 * A container already PUBLISHED: its media among the account's recent
 * media, newest first: the one with our caption, else the newest made
 * since publish_sent_at - 60 s; else the container id with no URL.
 */
static int find_published(struct ig *g)
{
    static const char what[] = "Instagram recent media";
    long long since = pub_state_int(g->state, "publish_sent_at") - FIND_SLACK_MS;
    struct http_response resp;
    struct json_object *root = NULL, *data;
    const char *id = NULL, *link = NULL;
    char scratch[32], idbuf[PLAT_REMOTE_ID_MAX], linkbuf[PUB_URL_MAX];
    int rc;

    rc = graph(g, "GET", NULL, what, &resp, "/%s/media?fields=id,caption,permalink,timestamp",
               g->rq->account_id);
    if (rc)
        return rc;
    rc = answer_json(g, &resp, what, &root);
    if (!rc && json_get_array(root, "data", &data))
        rc = plat_error_unexpected(g->err, resp.status, what, "no data");
    for (size_t pass = 0; !rc && pass < 2 && !id; pass++) {
        for (size_t i = 0; i < json_object_array_length(data) && !id; i++) {
            struct json_object *m = json_object_array_get_idx(data, i);
            const char *caption = NULL, *ts = NULL, *mid;

            if (!json_object_is_type(m, json_type_object) ||
                !(mid = plat_json_text(m, "id", scratch, sizeof scratch)))
                continue;
            json_get_string(m, "caption", &caption);
            json_get_string(m, "timestamp", &ts);
            if (pass == 0 ? caption && g->rq->caption && strcmp(caption, g->rq->caption) == 0
                          : graph_time_ms(ts) >= since) {
                id = mid;
                link = NULL;
                json_get_string(m, "permalink", &link);
            }
        }
    }
    if (!rc) {
        snprintf(idbuf, sizeof idbuf, "%s", id ? id : pub_state_str(g->state, "container_id"));
        snprintf(linkbuf, sizeof linkbuf, "%s", id && link ? link : "");
        if (!id)
            log_kv(CP_LOG_WARN, "instagram media of a published container not found", "container",
                   idbuf, NULL);
    }
    json_object_put(root);
    plat_response_free(&resp);
    return rc ? rc : finish(g, idbuf, linkbuf);
}

/* GET /{media}?fields=permalink into link[cap] ("" when not said). */
static int permalink_of(struct ig *g, const char *media_id, char *link, size_t cap)
{
    static const char what[] = "Instagram media permalink";
    struct http_response resp;
    struct json_object *root = NULL;
    const char *s = NULL;
    int rc;

    link[0] = '\0';
    rc = graph(g, "GET", NULL, what, &resp, "/%s?fields=permalink", media_id);
    if (rc)
        return rc;
    rc = answer_json(g, &resp, what, &root);
    if (!rc && json_get_string(root, "permalink", &s) == 0 && strlen(s) < cap)
        snprintf(link, cap, "%s", s);
    json_object_put(root);
    plat_response_free(&resp);
    return rc;
}

enum publish_step { PUBLISHED_NOW, PUBLISH_UNKNOWN, PUBLISH_NOT_READY };

/*
 * Step 5: the publishing limit, then media_publish.  *step tells the
 * caller what happened when the answer leaves the outcome open: the
 * answer was lost (look at the container again) or the media was not
 * ready (poll again).
 */
static int publish_container(struct ig *g, enum publish_step *step)
{
    static const char what[] = "Instagram media_publish";
    const char *cid = pub_state_str(g->state, "container_id");
    long long used, total, duration;
    struct http_response resp;
    struct json_object *root = NULL;
    char scratch[32], media_id[PLAT_REMOTE_ID_MAX], link[PUB_URL_MAX];
    const char *id;
    struct buf form;
    int rc;

    *step = PUBLISHED_NOW;
    rc = usage_gate(g, what);
    if (rc)
        return rc;
    rc = pub_instagram_limit(g->pc, g->rq->creds, g->rq->account_id, &used, &total, &duration,
                             g->err);
    if (rc)
        return rc;
    if (total > 0 && used >= total) {
        quota_exhausted(g, total);
        plat_error_set(g->err, PLAT_DEFER, 200, "publishing_limit",
                       "Instagram: the account published %lld of its %lld posts in %lld h",
                       used, total, duration / 3600);
        g->err->retry_after_ms = g->c->instagram_quota_recheck;
        return CP_ERETRY;
    }
    if (pub_state_set_int(g->state, "publish_sent_at", now_ms()))
        return no_memory(g, what);
    rc = save(g);
    if (rc)
        return rc;
    buf_init(&form, 1024);
    if (plat_form_add(&form, "creation_id", cid)) {
        buf_free(&form);
        return no_memory(g, what);
    }
    rc = graph(g, "POST", &form, what, &resp, "/%s/media_publish", g->rq->account_id);
    buf_free(&form);
    if (rc) {
        if (g->err->outcome == PLAT_RETRY && strcmp(g->err->code, "9007") == 0) {
            *step = PUBLISH_NOT_READY;
            return 0;
        }
        /* Sent, but no answer or a failure of Facebook's: the post may be up. */
        if (g->err->outcome == PLAT_RETRY && strcmp(g->err->code, "stopped") != 0 &&
            strcmp(g->err->code, "app_usage_high") != 0) {
            log_kv(CP_LOG_WARN, "instagram media_publish outcome unknown", "container", cid,
                   "error", g->err->message, NULL);
            *step = PUBLISH_UNKNOWN;
            return 0;
        }
        if (g->err->outcome == PLAT_DEFER && strcmp(g->err->code, "9") == 0)
            quota_exhausted(g, total);
        return rc;
    }
    rc = answer_json(g, &resp, what, &root);
    if (!rc && !(id = plat_json_text(root, "id", scratch, sizeof scratch)))
        rc = plat_error_unexpected(g->err, resp.status, what, "no id");
    if (!rc && strlen(id) >= sizeof media_id)
        rc = plat_error_unexpected(g->err, resp.status, what, "an id too long");
    if (!rc)
        snprintf(media_id, sizeof media_id, "%s", id);
    json_object_put(root);
    plat_response_free(&resp);
    if (rc)
        return rc;
    /* The media is up: remember it before anything else can fail. */
    if (pub_state_set_str(g->state, "media_id", media_id))
        return no_memory(g, what);
    rc = save(g);
    if (rc)
        return rc;
    if (permalink_of(g, media_id, link, sizeof link))
        link[0] = '\0';               /* the post is live; the URL is a nicety */
    memset(g->err, 0, sizeof *g->err);
    return finish(g, media_id, link);
}

static int drop_container(struct ig *g)
{
    static const char *const keys[] = { "container_id", "container_at", "upload", "uploaded",
                                        "publish_sent_at" };

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        json_object_object_del(g->state, keys[i]);
    return save(g);
}

static int run(struct ig *g)
{
    char status[32], text[PLAT_MESSAGE_MAX];
    enum publish_step step;
    int rc;

    for (int round = 0; round < ROUNDS_MAX; round++) {
        rc = stopped(g);
        if (rc)
            return rc;
        if (!pub_state_str(g->state, "container_id")) {
            rc = create_container(g);
            if (rc)
                return rc;
        }
        if (!pub_state_bool(g->state, "uploaded")) {
            const char *kind = pub_state_str(g->state, "upload");

            if (kind && strcmp(kind, "resumable") == 0) {
                rc = upload(g);
                if (rc)
                    return rc;
            }
        }
        rc = poll_container(g, status, sizeof status, text, sizeof text);
        if (rc)
            return rc;
        if (strcmp(status, "PUBLISHED") == 0)
            return find_published(g);
        if (strcmp(status, "EXPIRED") == 0) {
            log_kv(CP_LOG_INFO, "instagram container expired: making another", "container",
                   pub_state_str(g->state, "container_id"), NULL);
            rc = drop_container(g);
            if (rc)
                return rc;
            continue;
        }
        if (strcmp(status, "FINISHED") != 0) {
            plat_error_set(g->err, PLAT_FATAL, 200, "container_error",
                           "Instagram could not process the video (%s: %s)", status, text);
            return CP_EPROTO;
        }
        rc = publish_container(g, &step);
        if (rc || step == PUBLISHED_NOW)
            return rc;
    }
    plat_error_set(g->err, PLAT_RETRY, 0, "publish_unsettled",
                   "Instagram: the post did not settle in %d rounds", ROUNDS_MAX);
    return CP_ERETRY;
}

int pub_instagram(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
                  const struct pub_hooks *hooks, struct pub_result *res,
                  struct pub_quota *quota, struct plat_error *err)
{
    struct ig g = { pc, pc->conf, rq, state, hooks, res, quota, err, { 0 }, 0 };
    const char *media_id;
    int rc;

    pub_outputs_reset(res, quota, err);
    if (!state || !json_object_is_type(state, json_type_object)) {
        plat_error_set(err, PLAT_FATAL, 0, "bad_state", "Instagram: the publishing state is not an object");
        return CP_EINVAL;
    }
    media_id = pub_state_str(state, "media_id");
    if (media_id)
        return done(&g, media_id, pub_state_str(state, "permalink"));
    rc = plat_need_token(rq->creds ? rq->creds->access_token : NULL, "access",
                         "Instagram publishing", err);
    if (rc)
        return rc;
    buf_init(&g.auth, PLAT_TOKEN_MAX + 16);
    if (plat_bearer(&g.auth, rq->creds->access_token))
        rc = plat_no_memory(err, "Instagram publishing");
    else
        rc = run(&g);
    plat_buf_wipe(&g.auth);
    return rc;
}
