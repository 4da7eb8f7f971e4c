#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "connections.h"
#include "err.h"
#include "fetch.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "probe.h"
#include "secretbox.h"
#include "storage.h"
#include "tasks.h"
#include "videos.h"

#define ERR_MAX 1024

static int payload_video_id(struct task_ctx *ctx, long long *id)
{
    *id = 0;
    if (json_get_int(ctx->payload, "video_id", id) || *id <= 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload needs a positive \"video_id\"");
    return TASK_OK;
}

/* A permanent failure: the video is marked failed with why, the job too. */
static int fail_video(struct task_ctx *ctx, long long id, const char *why)
{
    int rc = video_mark_failed(ctx->db, id, why);

    if (rc && rc != CP_ECONFLICT && rc != CP_ENOTFOUND)
        log_warn("video %lld: cannot record its failure: %s", id, cp_strerror(rc));
    return task_fail(ctx, JOB_ERR_PERMANENT, 0, "video %lld: %s", id, why);
}

/* A transient failure; on the job's last attempt the video fails too,
 * so it does not stay "fetching" with nothing left to move it. */
static int retry_video(struct task_ctx *ctx, long long id, const char *why)
{
    if (ctx->job && ctx->job->max_attempts > 0 && ctx->job->attempts >= ctx->job->max_attempts)
        video_mark_failed(ctx->db, id, why);
    return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: %s", id, why);
}

/* Progress of a download: bytes so far; stop when the job must stop. */
static int on_fetch_progress(void *arg, long long done, long long total)
{
    struct task_ctx *ctx = arg;

    task_progress(ctx, done, total);
    return task_should_stop(ctx) ? CP_ECONFLICT : 0;
}

static int scratch_path(const struct storage *s, const char *what, long long id, const char *ext,
                        char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s-%lld%s", storage_scratch_dir(s), what, id, ext);

    return n > 0 && (size_t)n < cap ? 0 : CP_ETOOBIG;
}

/* The cookies of a cookie connection into *cookies (cleared by the caller). */
static int open_cookies(struct task_ctx *ctx, long long conn_id, struct conn_secrets *secrets)
{
    struct secretbox *sb;
    struct connection conn;
    int rc;

    if ((rc = task_secretbox(ctx, &sb)) != TASK_OK)
        return rc;
    rc = conn_open_secrets(ctx->db, sb, conn_id, &conn, secrets);
    if (rc == CP_ENOTFOUND)
        return 0;   /* the connection is gone: try without cookies */
    if (rc)
        return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "cannot open the connection's secrets: %s",
                         cp_strerror(rc));
    if (conn.auth_kind != AUTH_COOKIE)
        conn_secrets_clear(secrets);
    return TASK_OK;
}

int task_video_fetch(struct task_ctx *ctx)
{
    struct video v;
    struct storage *st;
    struct http_client *http;
    struct conn_secrets secrets;
    struct fetch_result fr;
    struct fetch_progress progress = { on_fetch_progress, ctx };
    struct buf err;
    char path[4096], key[STORAGE_KEY_MAX];
    long long id;
    int rc;

    conn_secrets_init(&secrets);
    buf_init(&err, ERR_MAX);
    path[0] = '\0';
    if ((rc = payload_video_id(ctx, &id)) != TASK_OK)
        goto out;
    rc = video_begin_fetch(ctx->db, id, &v);
    if (rc == CP_ECONFLICT) {
        log_info("video %lld is already stored", id);
        rc = TASK_OK;
        goto out;
    }
    if (rc == CP_ENOTFOUND) {
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "video %lld does not exist", id);
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: %s", id, cp_strerror(rc));
        goto out;
    }
    if ((rc = task_storage(ctx, &st)) != TASK_OK)
        goto out;
    snprintf(key, sizeof key, "videos/%lld/%lld.mp4", v.user_id, v.id);
    if (scratch_path(st, "fetch", v.id, ".mp4", path, sizeof path)) {
        rc = fail_video(ctx, id, "the scratch path is too long");
        goto out;
    }
    /* A run cut short (a killed worker) may have left its file: start over. */
    unlink(path);

    if (v.media_url[0]) {
        if ((rc = task_http(ctx, &http)) != TASK_OK)
            goto out;
        rc = fetch_url_to_file_progress(ctx->conf, http, v.media_url, path, 0, &progress, &fr,
                                        &err);
    } else {
        if ((rc = open_cookies(ctx, v.connection_id, &secrets)) != TASK_OK)
            goto out;
        rc = fetch_with_downloader(ctx->conf, v.share_url,
                                   secrets.cookies.len ? buf_str(&secrets.cookies) : NULL,
                                   path, 0, &progress, &fr, &err);
        conn_secrets_clear(&secrets);
    }
    if (rc) {
        if (task_should_stop(ctx)) {
            rc = TASK_STOPPED;
            goto out;
        }
        if (fetch_failure_transient(fr.failure))
            rc = retry_video(ctx, id, err.len ? buf_str(&err) : cp_strerror(rc));
        else
            rc = fail_video(ctx, id, err.len ? buf_str(&err) : cp_strerror(rc));
        goto out;
    }
    task_progress(ctx, fr.bytes, fr.bytes);
    if (task_should_stop(ctx)) {
        rc = TASK_STOPPED;
        goto out;
    }

    rc = storage_put_file(st, key, path, fr.content_type[0] ? fr.content_type : "video/mp4", &err);
    if (rc) {
        const char *why = err.len ? buf_str(&err) : cp_strerror(rc);
        char line[ERR_MAX + 64];

        snprintf(line, sizeof line, "storing the media failed: %s", why);
        rc = rc == CP_ERETRY || rc == CP_EIO ? retry_video(ctx, id, line) : fail_video(ctx, id, line);
        goto out;
    }
    rc = video_mark_stored(ctx->db, id, storage_backend_name(storage_backend_of(st)), key,
                           fr.bytes, fr.sha256, fr.content_type[0] ? fr.content_type : "video/mp4");
    if (rc == CP_ECONFLICT) {
        /* Another run got there first; the object it stored is the same. */
        rc = TASK_OK;
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: recording it as stored failed: %s",
                       id, cp_strerror(rc));
        goto out;
    }
    log_info("video %lld stored: %lld bytes, sha256 %s", id, fr.bytes, fr.sha256);
    rc = TASK_OK;

out:
    if (path[0])
        unlink(path);   /* consumed by storage_put_file on success */
    conn_secrets_clear(&secrets);
    buf_free(&err);
    return rc;
}

int task_video_probe(struct task_ctx *ctx)
{
    struct conn_scope all = { 0, 1 };
    struct video v;
    struct video_probe p;
    struct storage *st;
    struct buf err;
    char path[4096], thumb[4096], thumb_key[STORAGE_KEY_MAX];
    long long id, bytes = 0;
    int rc, fd = -1, have_thumb = 0;

    buf_init(&err, ERR_MAX);
    path[0] = thumb[0] = thumb_key[0] = '\0';
    if ((rc = payload_video_id(ctx, &id)) != TASK_OK)
        goto out;
    rc = video_get(ctx->db, &all, id, &v);
    if (rc == CP_ENOTFOUND) {
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "video %lld does not exist", id);
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: %s", id, cp_strerror(rc));
        goto out;
    }
    if (v.state == VIDEO_READY) {
        rc = TASK_OK;   /* probed by an earlier run */
        goto out;
    }
    if (v.state != VIDEO_STORED || !v.storage_key[0]) {
        rc = task_fail(ctx, JOB_ERR_PERMANENT, 0, "video %lld is %s, not stored", id,
                       video_state_name(v.state));
        goto out;
    }
    if ((rc = task_storage(ctx, &st)) != TASK_OK)
        goto out;
    if (scratch_path(st, "probe", id, ".mp4", path, sizeof path) ||
        scratch_path(st, "thumb", id, ".jpg", thumb, sizeof thumb)) {
        path[0] = thumb[0] = '\0';
        rc = fail_video(ctx, id, "the scratch path is too long");
        goto out;
    }
    unlink(path);
    unlink(thumb);

    /* ffprobe and ffmpeg want a file: a copy of the object, whichever backend. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: cannot create a scratch file: %s",
                       id, strerror(errno));
        goto out;
    }
    task_alive(ctx);
    rc = storage_get_to_fd(st, v.storage_key, fd, &bytes, &err);
    close(fd);
    fd = -1;
    if (rc == CP_ENOTFOUND) {
        rc = fail_video(ctx, id, "the stored media is missing");
        goto out;
    }
    if (rc) {
        rc = retry_video(ctx, id, err.len ? buf_str(&err) : cp_strerror(rc));
        goto out;
    }
    task_alive(ctx);
    if (task_should_stop(ctx)) {
        rc = TASK_STOPPED;
        goto out;
    }

    rc = probe_file(ctx->conf, path, &p, &err);
    if (rc == CP_ENOTFOUND || rc == CP_EPROTO) {
        rc = fail_video(ctx, id, err.len ? buf_str(&err) : "not a video");
        goto out;
    }
    if (rc) {
        rc = retry_video(ctx, id, err.len ? buf_str(&err) : cp_strerror(rc));
        goto out;
    }
    task_alive(ctx);

    /* A video without a thumbnail is still publishable: a failed thumbnail
     * is logged, not fatal. */
    snprintf(thumb_key, sizeof thumb_key, "thumbs/%lld/%lld.jpg", v.user_id, v.id);
    rc = probe_thumbnail(ctx->conf, path, p.duration_ms, thumb, &err);
    if (rc == 0) {
        task_alive(ctx);
        rc = storage_put_file(st, thumb_key, thumb, "image/jpeg", &err);
        if (rc == CP_ERETRY || rc == CP_EIO) {
            rc = retry_video(ctx, id, err.len ? buf_str(&err) : cp_strerror(rc));
            goto out;
        }
        have_thumb = rc == 0;
    }
    if (!have_thumb) {
        log_warn("video %lld: no thumbnail: %s", id, err.len ? buf_str(&err) : cp_strerror(rc));
        thumb_key[0] = '\0';
    }

    rc = video_mark_probed(ctx->db, id, &p, thumb_key[0] ? thumb_key : NULL);
    if (rc == CP_ECONFLICT) {
        rc = TASK_OK;
        goto out;
    }
    if (rc) {
        rc = task_fail(ctx, JOB_ERR_TRANSIENT, 0, "video %lld: recording the probe failed: %s",
                       id, cp_strerror(rc));
        goto out;
    }
    log_info("video %lld probed: %lld ms, %lldx%lld, moov %s", id, p.duration_ms, p.width,
             p.height, p.moov_front ? "first" : "last");
    rc = TASK_OK;

out:
    if (fd >= 0)
        close(fd);
    if (path[0])
        unlink(path);
    if (thumb[0])
        unlink(thumb);
    buf_free(&err);
    return rc;
}
