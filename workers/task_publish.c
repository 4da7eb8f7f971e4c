/*
 * task_publish.c - publish.post (one video to one destination) and
 * publications.sweep.
 *
 * A publish run walks the publication forward and records each step, so
 * a run that dies (worker killed, lease lost, platform down) is followed
 * by one that continues:
 *   1. texts rendered from the rule destination's templates;
 *   2. media checked against the platform's limits, fixed into a variant
 *      (once per video and profile) or refused with the limit named;
 *   3. quota reserved in the ledger, or the job deferred until it frees;
 *   4. the publisher (publish.h) resumes from the publication's
 *      remote_state, saving it after every acknowledged step;
 *   5. the outcome: published, deferred (no attempt spent), retried,
 *      reconnect needed, or failed with the platform's reason.
 * An access token the platform refuses is refreshed once (under the
 * connection's refresh lock) before the connection is marked as needing
 * to be connected again.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "connections.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "mediaspec.h"
#include "platforms.h"
#include "publications.h"
#include "publish.h"
#include "quota.h"
#include "secretbox.h"
#include "storage.h"
#include "tasks.h"
#include "template.h"
#include "videos.h"

#define WHY_MAX 1024
/* How long a publish waits for another worker's refresh of the same
 * connection. */
#define REFRESH_LOCK_WAIT_S 30
/* A token that ends within this is refreshed before the upload starts. */
#define TOKEN_FRESH_MS (120 * 1000LL)
/* Progress rows are written at most this often. */
#define PROGRESS_EVERY_MS 1000

static long long wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Everything one run holds; freed by run_free. */
struct run {
    struct task_ctx *ctx;
    struct publication *pub;
    struct video *video;
    struct connection *conn;
    struct conn_secrets secrets;
    struct secretbox *sb;
    struct http_client *http;
    struct storage *st;
    struct json_object *settings;
    struct json_object *remote;
    struct template_result texts;
    char media_key[STORAGE_KEY_MAX + 1];
    long long media_bytes;
    char media_sha256[65];
    struct buf media_path;            /* a local file of the media */
    int media_path_is_scratch;        /* remove it when done */
    struct buf media_url;
    long long progress_at;
    enum pub_state shown;             /* the state last written */
    int refreshed;                    /* tokens were refreshed in this run */
};

static void run_free(struct run *r)
{
    if (r->media_path_is_scratch && r->media_path.len)
        unlink(buf_str(&r->media_path));
    buf_free(&r->media_path);
    buf_free(&r->media_url);
    template_result_free(&r->texts);
    if (r->settings)
        json_object_put(r->settings);
    if (r->remote)
        json_object_put(r->remote);
    conn_secrets_clear(&r->secrets);
    free(r->conn);
    free(r->video);
    free(r->pub);
}

/* ------------------------------------------------------- outcomes -- */

/* Final failure: the publication says why, the job gives up. */
static int give_up(struct run *r, enum job_error_class cls, const char *code, const char *why)
{
    int rc = pub_mark_failed(r->ctx->db, r->pub->id, code, why);

    if (rc && rc != CP_ECONFLICT && rc != CP_ENOTFOUND)
        return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "publication %lld: cannot record the failure "
                         "(%s): %s", r->pub->id, why, cp_strerror(rc));
    log_warn("publication %lld (%s): failed: %s", r->pub->id, platform_get(r->pub->platform)->name, why);
    return task_fail(r->ctx, cls, 0, "%s", why);
}

/* A failure worth another attempt; on the last one the publication fails. */
static int try_again(struct run *r, long long retry_after_ms, const char *code, const char *why)
{
    if (r->ctx->job->attempts >= r->ctx->job->max_attempts) {
        char last[WHY_MAX];

        snprintf(last, sizeof last, "gave up after %d attempts: %s", r->ctx->job->attempts, why);
        return give_up(r, JOB_ERR_TRANSIENT, code, last);
    }
    pub_note_error(r->ctx->db, r->pub->id, code, why);
    return task_fail(r->ctx, JOB_ERR_TRANSIENT, retry_after_ms, "%s", why);
}

/* Come back at until_ms without spending an attempt. */
static int wait_until(struct run *r, long long until_ms, const char *code, const char *why)
{
    long long delay = until_ms - wall_ms();

    if (delay < 1000)
        delay = 1000;
    pub_mark_deferred(r->ctx->db, r->pub->id, wall_ms() + delay, code, why);
    log_info("publication %lld: deferred %lld s: %s", r->pub->id, delay / 1000, why);
    return task_defer(r->ctx, delay, "%s", why);
}

static void describe(const struct plat_error *e, char *out, size_t cap)
{
    if (e->message[0])
        snprintf(out, cap, "%s", e->message);
    else if (e->code[0])
        snprintf(out, cap, "%s (HTTP %ld)", e->code, e->http_status);
    else
        snprintf(out, cap, "failed (HTTP %ld)", e->http_status);
}

/* ------------------------------------------------------------ hooks -- */

/* The state a publisher's saved remote state shows: what it is doing. */
static enum pub_state state_of_remote(enum platform_id platform, struct json_object *st)
{
    struct json_object *v;

    if (json_object_object_get_ex(st, "tweet_sent_at", &v) ||
        json_object_object_get_ex(st, "publish_sent_at", &v))
        return PUB_PUBLISHING;
    if ((json_object_object_get_ex(st, "finalized", &v) && json_object_get_boolean(v)) ||
        (json_object_object_get_ex(st, "uploaded", &v) && json_object_get_boolean(v)) ||
        (platform == PLATFORM_INSTAGRAM && json_object_object_get_ex(st, "container_id", &v) &&
         !json_object_object_get_ex(st, "upload", &v)))
        return PUB_PROCESSING;
    return PUB_UPLOADING;
}

static int hook_save(void *arg, struct json_object *state)
{
    struct run *r = arg;
    const char *text = json_object_to_json_string_ext(state, JSON_C_TO_STRING_PLAIN);
    enum pub_state now;
    int rc;

    if (!text || strlen(text) > PUB_REMOTE_STATE_MAX - 1)
        return CP_ETOOBIG;
    rc = pub_save_remote(r->ctx->db, r->pub->id, text);
    if (rc)
        return rc;
    now = state_of_remote(r->pub->platform, state);
    if (now != r->shown && pub_set_state(r->ctx->db, r->pub->id, now) == 0)
        r->shown = now;
    return task_should_stop(r->ctx) ? CP_ECONFLICT : 0;
}

static int hook_progress(void *arg, long long sent, long long total)
{
    struct run *r = arg;
    long long now = mono_ms();

    if (now - r->progress_at >= PROGRESS_EVERY_MS || sent == total) {
        r->progress_at = now;
        pub_progress(r->ctx->db, r->pub->id, sent, total);
    }
    return task_progress(r->ctx, sent, total) ? CP_ECONFLICT : 0;
}

static int hook_should_stop(void *arg)
{
    struct run *r = arg;

    return task_should_stop(r->ctx);
}

static int tick(void *arg)
{
    struct run *r = arg;

    task_alive(r->ctx);
    return task_should_stop(r->ctx) ? CP_ECONFLICT : 0;
}

/* ------------------------------------------------------------ steps -- */

static int load(struct run *r, long long id)
{
    struct task_ctx *ctx = r->ctx;
    int rc;

    r->pub = calloc(1, sizeof *r->pub);
    r->video = calloc(1, sizeof *r->video);
    r->conn = calloc(1, sizeof *r->conn);
    if (!r->pub || !r->video || !r->conn)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
    rc = pub_load(ctx->db, id, r->pub);
    if (rc == CP_ENOTFOUND) {
        log_info("publication %lld is gone; nothing to publish", id);
        return 1;
    }
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "publication %lld: %s", id, cp_strerror(rc));
    if (r->pub->state == PUB_PUBLISHED || r->pub->state == PUB_CANCELLED ||
        r->pub->state == PUB_FAILED) {
        log_info("publication %lld is %s; nothing to do", id, pub_state_name(r->pub->state));
        return 1;
    }
    if (json_parse(r->pub->settings, strlen(r->pub->settings), &json_default_limits, &r->settings, NULL) ||
        !json_object_is_type(r->settings, json_type_object))
        return give_up(r, JOB_ERR_PERMANENT, "bad_settings", "the destination settings are not a JSON object");
    if (json_parse(r->pub->remote_state[0] ? r->pub->remote_state : "{}",
                   r->pub->remote_state[0] ? strlen(r->pub->remote_state) : 2, &json_default_limits,
                   &r->remote, NULL) ||
        !json_object_is_type(r->remote, json_type_object)) {
        if (r->remote)
            json_object_put(r->remote);
        r->remote = json_object_new_object();
    }
    rc = video_get(ctx->db, NULL, r->pub->video_id, r->video);
    if (rc == CP_ENOTFOUND)
        return give_up(r, JOB_ERR_PERMANENT, "video_gone", "the video was deleted");
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: %s", r->pub->video_id, cp_strerror(rc));
    if (r->video->state != VIDEO_READY || !r->video->stored || !r->video->probed)
        return give_up(r, JOB_ERR_PERMANENT, "video_not_ready", "the video is not stored and probed");
    if ((rc = task_secretbox(ctx, &r->sb)) != TASK_OK || (rc = task_http(ctx, &r->http)) != TASK_OK ||
        (rc = task_storage(ctx, &r->st)) != TASK_OK)
        return rc;
    rc = conn_open_secrets(ctx->db, r->sb, r->pub->connection_id, r->conn, &r->secrets);
    if (rc == CP_ENOTFOUND)
        return give_up(r, JOB_ERR_PERMANENT, "connection_gone", "the destination account was removed");
    if (rc == CP_EINVAL)
        return give_up(r, JOB_ERR_PERMANENT, "secrets_unreadable",
                       "the destination's credentials cannot be decrypted with the key ring");
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "connection %lld: %s", r->pub->connection_id,
                         cp_strerror(rc));
    if (!r->conn->enabled)
        return give_up(r, JOB_ERR_PERMANENT, "connection_disabled",
                       "the destination account is disabled: enable it, then retry");
    if (r->conn->stored_status == CONN_NEEDS_REAUTH)
        return give_up(r, JOB_ERR_AUTH, "needs_reauth",
                       "the destination account must be connected again, then retried");
    return 0;
}

static int render(struct run *r)
{
    struct template_vars vars = {
        .description = r->video->description,
        .title = r->video->title,
        .share_url = r->video->share_url,
        .created_ms = r->video->remote_created_at,
    };
    char field[64] = "", why[TEMPLATE_ERROR_MAX] = "", msg[WHY_MAX];
    int rc;

    rc = template_render(r->pub->platform, r->settings, &vars, &r->texts, field, sizeof field, why,
                         sizeof why);
    if (rc == CP_ENOMEM)
        return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "out of memory rendering the texts");
    if (rc) {
        snprintf(msg, sizeof msg, "settings.%s: %s", field[0] ? field : "template", why);
        return give_up(r, JOB_ERR_PERMANENT, "template", msg);
    }
    /* YouTube refuses an empty title (a template of only an empty
     * variable): the video's own words, else its id, rather than a
     * refused upload. */
    if (r->pub->platform == PLATFORM_YOUTUBE && r->texts.title.len == 0) {
        const char *src = r->video->title[0] ? r->video->title : r->video->remote_id;

        if (buf_printf(&r->texts.title, "%.100s", src))
            return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "out of memory rendering the texts");
    }
    return 0;
}

/* The media to send: the stored file or its variant for this platform,
 * as a local path (and a signed URL when the platform fetches it). */
static int prepare_media(struct run *r)
{
    const struct media_spec *spec = media_spec_find(r->pub->platform);
    struct media_decision d;
    struct buf err;
    int rc;

    snprintf(r->media_key, sizeof r->media_key, "%s", r->video->storage_key);
    r->media_bytes = r->video->media_bytes;
    snprintf(r->media_sha256, sizeof r->media_sha256, "%s", r->video->media_sha256);
    if (!spec)
        return give_up(r, JOB_ERR_PERMANENT, "not_a_destination", "this platform is not a destination");
    media_check(spec, &r->video->probe, r->video->media_bytes, &d);
    if (d.verdict == MEDIA_REFUSE)
        return give_up(r, JOB_ERR_PERMANENT, "media_limit", d.reason);
    rc = pub_set_texts(r->ctx->db, r->pub->id, buf_str(&r->texts.caption), buf_str(&r->texts.title),
                       d.verdict == MEDIA_FIX ? d.profile : "original");
    if (rc && rc != CP_ECONFLICT)
        return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "cannot record the texts: %s", cp_strerror(rc));
    buf_init(&err, WHY_MAX);
    if (d.verdict == MEDIA_FIX) {
        log_info("publication %lld: %s", r->pub->id, d.reason);
        rc = media_variant_get_or_make(r->ctx->db, r->st, r->ctx->conf, r->video, spec, &d, tick, r,
                                       r->media_key, sizeof r->media_key, &r->media_bytes,
                                       r->media_sha256, &err);
        if (rc) {
            char why[WHY_MAX];

            snprintf(why, sizeof why, "cannot fix the media for %s (%s): %s", spec->label, d.profile,
                     err.len ? buf_str(&err) : cp_strerror(rc));
            buf_free(&err);
            if (task_should_stop(r->ctx))
                return TASK_STOPPED;
            if (rc == CP_EPROTO || rc == CP_EINVAL)
                return give_up(r, JOB_ERR_PERMANENT, "media_fix", why);
            return try_again(r, 0, "media_fix", why);
        }
    }
    buf_init(&r->media_path, 4096);
    buf_init(&r->media_url, 8192);
    if (storage_local_path(r->st, r->media_key, &r->media_path) != 0) {
        /* S3: a scratch copy to read from. */
        int fd;
        long long bytes = 0;

        buf_reset(&r->media_path);
        if (buf_printf(&r->media_path, "%s/publish-%lld-XXXXXX", storage_scratch_dir(r->st),
                       r->pub->id)) {
            buf_free(&err);
            return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "out of memory");
        }
        fd = mkstemp(r->media_path.data);
        if (fd < 0) {
            buf_free(&err);
            return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "cannot make a scratch file: %s",
                             strerror(errno));
        }
        r->media_path_is_scratch = 1;
        rc = storage_get_to_fd(r->st, r->media_key, fd, &bytes, &err);
        close(fd);
        if (rc) {
            char why[WHY_MAX];

            snprintf(why, sizeof why, "cannot read the media from storage: %s",
                     err.len ? buf_str(&err) : cp_strerror(rc));
            buf_free(&err);
            return rc == CP_ENOTFOUND ? give_up(r, JOB_ERR_PERMANENT, "media_missing", why)
                                      : try_again(r, 0, "storage", why);
        }
        r->media_bytes = bytes;
    }
    buf_free(&err);
    if (r->pub->platform == PLATFORM_INSTAGRAM && r->ctx->conf->instagram_upload == 1 &&
        storage_signed_url(r->st, r->media_key, r->ctx->conf->media_url_ttl, &r->media_url) != 0)
        buf_reset(&r->media_url);
    return 0;
}

/* The budgets of this publish; a reservation is made once per
 * publication (remote_state "quota_reserved"), so a retried run does not
 * count it twice. */
static int reserve_quota(struct run *r, struct quota_charge *charges, size_t *n)
{
    struct json_object *v;
    long long until = 0;
    char why[WHY_MAX] = "";
    int rc;

    *n = 0;
    rc = quota_charges_for(r->ctx->conf, r->pub->platform, r->pub->connection_id, charges,
                           QUOTA_CHARGES_MAX, n);
    if (rc)
        return task_fail(r->ctx, JOB_ERR_PERMANENT, 0, "no budgets for this platform: %s", cp_strerror(rc));
    if (*n == 0 || (json_object_object_get_ex(r->remote, "quota_reserved", &v) &&
                    json_object_get_boolean(v)))
        return 0;
    rc = quota_reserve(r->ctx->db, charges, *n, &until, why, sizeof why);
    if (rc == CP_EBUSY)
        return wait_until(r, until, "quota", why[0] ? why : "out of quota");
    if (rc)
        return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "cannot reserve the quota: %s", cp_strerror(rc));
    json_object_object_add(r->remote, "quota_reserved", json_object_new_boolean(1));
    rc = hook_save(r, r->remote);
    if (rc) {
        quota_release(r->ctx->db, charges, *n);
        return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "cannot record the reservation: %s",
                         cp_strerror(rc));
    }
    return 0;
}

/* A quota the platform says is used up: block it in the ledger. */
static long long note_exhausted(struct run *r, const struct pub_quota *q,
                                const struct quota_charge *charges, size_t n, const char *why)
{
    long long until = q->reset_ms;

    if (until <= 0 && r->pub->platform == PLATFORM_YOUTUBE)
        until = quota_pacific_midnight_after(wall_ms());
    if (until <= 0 && r->pub->platform == PLATFORM_INSTAGRAM)
        until = wall_ms() + r->ctx->conf->instagram_quota_recheck;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(charges[i].bucket, q->bucket) && !strcmp(charges[i].scope, q->scope))
            quota_block(r->ctx->db, &charges[i], until, why);
    if (r->pub->platform == PLATFORM_INSTAGRAM) {
        struct quota_charge ig = { .platform = PLATFORM_INSTAGRAM, .quota = q->limit,
                                   .window_ms = 24LL * 3600 * 1000 };

        snprintf(ig.scope, sizeof ig.scope, "account");
        snprintf(ig.scope_key, sizeof ig.scope_key, "%lld", r->pub->connection_id);
        snprintf(ig.bucket, sizeof ig.bucket, "posts");
        quota_block(r->ctx->db, &ig, until, why);
    }
    return until;
}

/* Refresh the destination's tokens now (once per run), under the
 * connection's lock: another worker may have just done it. */
static int refresh_tokens(struct run *r, struct plat_error *err)
{
    const struct platform *p = platform_get(r->conn->platform);
    struct plat_ctx pc = { r->ctx->conf, r->http };
    struct plat_tokens tok = { 0 };
    char before[64];
    int rc;

    memset(err, 0, sizeof *err);
    if (r->refreshed || r->conn->auth_kind != AUTH_OAUTH2 || !p->refresh)
        return CP_EINVAL;
    r->refreshed = 1;
    snprintf(before, sizeof before, "%.63s", buf_str(&r->secrets.access_token));
    rc = conn_refresh_lock(r->ctx->db, r->conn->id, REFRESH_LOCK_WAIT_S);
    if (rc) {
        plat_error_set(err, PLAT_RETRY, 0, "refresh_busy", "another worker is refreshing the tokens");
        return rc;
    }
    conn_secrets_clear(&r->secrets);
    conn_secrets_init(&r->secrets);
    rc = conn_open_secrets(r->ctx->db, r->sb, r->conn->id, r->conn, &r->secrets);
    if (rc) {
        conn_refresh_unlock(r->ctx->db, r->conn->id);
        plat_error_set(err, PLAT_RETRY, 0, "secrets", "cannot read the connection: %s", cp_strerror(rc));
        return rc;
    }
    if (strncmp(before, buf_str(&r->secrets.access_token), sizeof before - 1) != 0) {
        conn_refresh_unlock(r->ctx->db, r->conn->id);
        return 0;                       /* someone else renewed them */
    }
    {
        struct plat_creds creds = conn_creds(r->conn, &r->secrets);

        rc = p->refresh(&pc, &creds, &tok, err);
    }
    if (rc == 0)
        rc = conn_store_refresh(r->ctx->db, r->sb, r->ctx->conf, r->conn->id, &tok);
    plat_tokens_clear(&tok);
    if (rc == 0) {
        conn_secrets_clear(&r->secrets);
        conn_secrets_init(&r->secrets);
        rc = conn_open_secrets(r->ctx->db, r->sb, r->conn->id, r->conn, &r->secrets);
        log_info("connection %lld: tokens refreshed for publication %lld", r->conn->id, r->pub->id);
    } else if (err->outcome == PLAT_OK) {
        plat_error_set(err, PLAT_RETRY, 0, "refresh_store", "cannot store the new tokens: %s",
                       cp_strerror(rc));
    }
    conn_refresh_unlock(r->ctx->db, r->conn->id);
    return rc;
}

static int publish(struct run *r)
{
    const struct publisher *pb = publisher_find(r->pub->platform);
    struct plat_ctx pc = { r->ctx->conf, r->http };
    struct quota_charge charges[QUOTA_CHARGES_MAX];
    size_t ncharges = 0;
    struct pub_result res = { 0 };
    struct pub_quota q = { 0 };
    struct plat_error err = { 0 };
    char why[WHY_MAX];
    int rc;

    if (!pb)
        return give_up(r, JOB_ERR_PERMANENT, "not_a_destination", "this platform is not a destination");
    if ((rc = reserve_quota(r, charges, &ncharges)) != 0)
        return rc;
    /* A token about to end is renewed before a long upload starts. */
    if (r->conn->access_expires_at && r->conn->access_expires_at < wall_ms() + TOKEN_FRESH_MS &&
        r->conn->has_refresh_token) {
        rc = refresh_tokens(r, &err);
        if (rc && err.outcome == PLAT_REAUTH)
            goto reauth;
    }
    for (;;) {
        struct plat_creds creds = conn_creds(r->conn, &r->secrets);
        struct pub_hooks hooks = { r, hook_save, hook_progress, hook_should_stop };
        struct pub_request rq = {
            .publication_id = r->pub->id,
            .creds = &creds,
            .account_id = r->conn->remote_id,
            .caption = buf_str(&r->texts.caption),
            .title = buf_str(&r->texts.title),
            .settings = r->settings,
            .media = {
                .path = buf_str(&r->media_path),
                .bytes = r->media_bytes,
                .content_type = "video/mp4",
                .sha256 = r->media_sha256,
                .url = r->media_url.len ? buf_str(&r->media_url) : NULL,
                .duration_ms = r->video->probe.duration_ms,
            },
        };

        if (r->shown < PUB_UPLOADING || r->shown == PUB_DEFERRED) {
            enum pub_state s = state_of_remote(r->pub->platform, r->remote);

            if (pub_set_state(r->ctx->db, r->pub->id, s) == 0)
                r->shown = s;
        }
        rc = pb->publish(&pc, &rq, r->remote, &hooks, &res, &q, &err);
        if (rc == 0)
            break;
        if (err.outcome == PLAT_REAUTH && !r->refreshed && r->conn->has_refresh_token) {
            struct plat_error rerr;

            if (refresh_tokens(r, &rerr) == 0)
                continue;               /* once more with the new token */
            if (rerr.outcome != PLAT_REAUTH) {
                describe(&rerr, why, sizeof why);
                return try_again(r, rerr.retry_after_ms, "refresh", why);
            }
            err = rerr;
        }
        break;
    }
    if (rc == 0) {
        /* The last chunk's answer ends the upload: show it whole. */
        pub_progress(r->ctx->db, r->pub->id, r->media_bytes, r->media_bytes);
        rc = pub_mark_published(r->ctx->db, r->pub->id, res.remote_id, res.url);
        if (rc && rc != CP_ECONFLICT)
            return task_fail(r->ctx, JOB_ERR_TRANSIENT, 0, "published as %s but cannot record it: %s",
                             res.remote_id, cp_strerror(rc));
        log_info("publication %lld: published on %s as %s", r->pub->id,
                 platform_get(r->pub->platform)->name, res.remote_id);
        return TASK_OK;
    }
    if (task_should_stop(r->ctx))
        return TASK_STOPPED;
    describe(&err, why, sizeof why);
    switch (err.outcome) {
    case PLAT_DEFER: {
        long long until = wall_ms() + (err.retry_after_ms > 0 ? err.retry_after_ms : 60 * 1000);

        if (q.exhausted) {
            long long blocked = note_exhausted(r, &q, charges, ncharges, why);

            /* Instagram's rolling 24-hour limit is read live before each
             * publish, so look again after the recheck interval; other
             * budgets free when their window ends. */
            if (r->pub->platform == PLATFORM_INSTAGRAM)
                until = blocked;
            else if (blocked > until)
                until = blocked;
        }
        return wait_until(r, until, err.code[0] ? err.code : "rate_limited", why);
    }
    case PLAT_RETRY:
        return try_again(r, err.retry_after_ms, err.code[0] ? err.code : "transient", why);
    case PLAT_REAUTH:
        goto reauth;
    case PLAT_OK:
    case PLAT_FATAL:
        break;
    }
    return give_up(r, JOB_ERR_PERMANENT, err.code[0] ? err.code : "refused", why);

reauth:
    describe(&err, why, sizeof why);
    conn_mark_needs_reauth(r->ctx->db, r->conn->id, why);
    {
        char msg[WHY_MAX + 128];

        snprintf(msg, sizeof msg, "the account must be connected again (%s); retry after reconnecting",
                 why);
        return give_up(r, JOB_ERR_AUTH, "needs_reauth", msg);
    }
}

int task_publish_post(struct task_ctx *ctx)
{
    struct run r;
    long long id = 0;
    int rc;

    if (json_get_int(ctx->payload, "publication_id", &id) || id <= 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload needs {\"publication_id\": N}");
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    conn_secrets_init(&r.secrets);
    template_result_init(&r.texts);
    rc = load(&r, id);
    if (rc == 1) {
        rc = TASK_OK;
        goto out;
    }
    if (rc)
        goto out;
    rc = pub_set_state(ctx->db, id, PUB_PREPARING);
    if (rc == CP_ECONFLICT) {
        rc = TASK_OK;                   /* published or cancelled meanwhile */
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "publication %lld: %s", id, cp_strerror(rc));
        goto out;
    }
    r.shown = PUB_PREPARING;
    if ((rc = render(&r)) != 0 || (rc = prepare_media(&r)) != 0)
        goto out;
    if (task_should_stop(ctx)) {
        rc = TASK_STOPPED;
        goto out;
    }
    rc = publish(&r);
out:
    run_free(&r);
    return rc;
}

int task_publications_sweep(struct task_ctx *ctx)
{
    size_t requeued = 0, failed = 0;
    int rc = pub_sweep(ctx->db, ctx->conf, 200, &requeued, &failed);

    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "sweeping publications: %s", cp_strerror(rc));
    if (requeued || failed)
        log_info("publications swept: %zu requeued, %zu failed", requeued, failed);
    return TASK_OK;
}
