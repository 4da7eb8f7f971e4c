#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "fetch.h"
#include "log.h"
#include "mediaspec.h"
#include "probe.h"
#include "storage.h"

/*
 * The limits of platforms.md.  Where a platform publishes a range of
 * figures the conservative one is kept (Instagram's 300 MB, decimal
 * megabytes for X's 512 MB), so a video we accept is never refused there.
 * Instagram only documents "width <= 1920"; 1920x1920 keeps a 4K
 * vertical video to 1080x1920, the size Instagram recommends for Reels.
 */
static const char *const ig_video[] = { "h264", "hevc", NULL };
static const char *const ig_audio[] = { "aac", NULL };
static const char *const yt_video[] = { "h264", "hevc", "vp9", "av1", "mpeg4", NULL };
static const char *const yt_audio[] = { "aac", "mp3", "opus", "vorbis", "ac3", "eac3", "flac",
                                        "alac", "pcm_s16le", "pcm_s24le", NULL };
static const char *const x_video[] = { "h264", NULL };
static const char *const x_audio[] = { "aac", NULL };

const struct media_spec media_specs[] = {
    {
        .platform = PLATFORM_INSTAGRAM,
        .label = "Instagram Reels",
        .min_duration_ms = 3000,
        .max_duration_ms = 15 * 60 * 1000,
        .max_bytes = 300LL * 1000 * 1000,
        .max_width = 1920,
        .max_height = 1920,
        .min_aspect = 0.01,
        .max_aspect = 10,
        .min_fps = 23,
        .max_fps = 60,
        .video_codecs = ig_video,
        .audio_codecs = ig_audio,
        .max_audio_rate = 48000,
        .needs_faststart = 1,
    },
    {
        .platform = PLATFORM_YOUTUBE,
        .label = "YouTube Shorts",
        .min_duration_ms = 1000,
        .max_duration_ms = 180 * 1000,
        .max_bytes = 256LL * 1024 * 1024 * 1024,
        .max_width = 0,
        .max_height = 0,
        .min_aspect = 0,
        .max_aspect = 1,
        .min_fps = 0,
        .max_fps = 0,
        .video_codecs = yt_video,
        .audio_codecs = yt_audio,
        .max_audio_rate = 0,
        .needs_faststart = 0,
    },
    {
        .platform = PLATFORM_X,
        .label = "X",
        .min_duration_ms = 500,
        .max_duration_ms = 140 * 1000,
        .max_bytes = 512LL * 1000 * 1000,
        .max_width = 1280,
        .max_height = 1024,
        .min_aspect = 1.0 / 3.0,
        .max_aspect = 3,
        .min_fps = 0,
        .max_fps = 60,
        .video_codecs = x_video,
        .audio_codecs = x_audio,
        .max_audio_rate = 48000,
        .needs_faststart = 1,
    },
};

const size_t media_nspecs = sizeof media_specs / sizeof media_specs[0];

/* The sample rate of re-encoded audio: every platform above takes 48 kHz. */
#define MEDIA_AUDIO_RATE "48000"

const struct media_spec *media_spec_find(enum platform_id platform)
{
    for (size_t i = 0; i < media_nspecs; i++)
        if (media_specs[i].platform == platform)
            return &media_specs[i];
    return NULL;
}

/* ------------------------------------------------------------ checking -- */

/* Append to a fixed char array, cutting at its end. */
static void appendf(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void appendf(char *dst, size_t cap, const char *fmt, ...)
{
    size_t len = strnlen(dst, cap);
    va_list ap;

    if (len + 1 >= cap)
        return;
    va_start(ap, fmt);
    vsnprintf(dst + len, cap - len, fmt, ap);
    va_end(ap);
}

/* "; " between the parts of a fix reason. */
static void reason_part(struct media_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reason_part(struct media_decision *d, const char *fmt, ...)
{
    char part[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(part, sizeof part, fmt, ap);
    va_end(ap);
    appendf(d->reason, sizeof d->reason, "%s%s", d->reason[0] ? "; " : "", part);
}

/* "X's", "Instagram Reels'". */
static const char *possessive(const char *label, char *out, size_t cap)
{
    size_t n = strlen(label);

    snprintf(out, cap, "%s%s", label, n && label[n - 1] == 's' ? "'" : "'s");
    return out;
}

/* 140000 -> "140 s", 500 -> "0.5 s", 900000 -> "15 min". */
static const char *limit_duration(long long ms, char *out, size_t cap)
{
    if (ms >= 60000 && ms % 60000 == 0)
        snprintf(out, cap, "%lld min", ms / 60000);
    else
        snprintf(out, cap, "%g s", (double)ms / 1000.0);
    return out;
}

/* 300000000 -> "300 MB", 256 GiB -> "256 GB". */
static const char *limit_bytes(long long bytes, char *out, size_t cap)
{
    if (bytes >= (1LL << 30) && bytes % (1LL << 30) == 0)
        snprintf(out, cap, "%lld GB", bytes >> 30);
    else if (bytes >= 1000000)
        snprintf(out, cap, "%g MB", (double)bytes / 1e6);
    else
        snprintf(out, cap, "%lld bytes", bytes);
    return out;
}

/* 301000000 -> "301.0 MB"; small files in bytes. */
static const char *size_text(long long bytes, char *out, size_t cap)
{
    if (bytes >= 100000)
        snprintf(out, cap, "%.1f MB", (double)bytes / 1e6);
    else
        snprintf(out, cap, "%lld bytes", bytes);
    return out;
}

static int in_list(const char *const *list, const char *name)
{
    if (!list)
        return 1;
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static void list_text(const char *const *list, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; list && list[i]; i++)
        appendf(out, cap, "%s%s", i ? ", " : "", list[i]);
}

/* The largest even size within max_w x max_h (0 = no limit) with the
 * aspect ratio of w x h, never larger than w x h. */
static void fit_within(long long w, long long h, long long max_w, long long max_h,
                       long long *out_w, long long *out_h)
{
    long long tw = w, th = h;

    if (max_w > 0 && max_h > 0 && w * max_h >= h * max_w) {
        if (w > max_w) {
            tw = max_w;
            th = (h * tw + w / 2) / w;
        }
    } else if (max_h > 0 && h > max_h) {
        th = max_h;
        tw = (w * th + h / 2) / h;
    } else if (max_w > 0 && w > max_w) {
        tw = max_w;
        th = (h * tw + w / 2) / w;
    }
    tw &= ~1LL;
    th &= ~1LL;
    *out_w = tw < 2 ? 2 : tw;
    *out_h = th < 2 ? 2 : th;
}

/* 23 -> "23", 29.97 -> "29.97". */
static void fps_text(double fps, char *out, size_t cap)
{
    snprintf(out, cap, "%.6g", fps);
}

/* Profile name of the output the fixes make: the tokens in a fixed order
 * "scale-WxH", "fps-N", "h264", "aac", "faststart".  A re-encode always
 * writes H.264 with the moov atom first, so its name carries "h264" and
 * "faststart" whichever fix asked for it, and destinations needing the
 * same output share the variant. */
static void profile_name(struct media_decision *d)
{
    int reencode = (d->fixes & (MEDIA_FIX_SCALE | MEDIA_FIX_VIDEO | MEDIA_FIX_FPS)) != 0;
    char fps[32];

    d->profile[0] = '\0';
    if (d->fixes & MEDIA_FIX_SCALE)
        appendf(d->profile, sizeof d->profile, "scale-%lldx%lld", d->target_width,
                d->target_height);
    if (d->fixes & MEDIA_FIX_FPS) {
        fps_text(d->target_fps, fps, sizeof fps);
        appendf(d->profile, sizeof d->profile, "%sfps-%s", d->profile[0] ? "." : "", fps);
    }
    if (reencode)
        appendf(d->profile, sizeof d->profile, "%sh264", d->profile[0] ? "." : "");
    if (d->fixes & MEDIA_FIX_AUDIO)
        appendf(d->profile, sizeof d->profile, "%saac", d->profile[0] ? "." : "");
    appendf(d->profile, sizeof d->profile, "%sfaststart", d->profile[0] ? "." : "");
}

static void refuse(struct media_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void refuse(struct media_decision *d, const char *fmt, ...)
{
    va_list ap;

    memset(d, 0, sizeof *d);
    d->verdict = MEDIA_REFUSE;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
}

void media_check(const struct media_spec *spec, const struct video_probe *p, long long bytes,
                 struct media_decision *out)
{
    char a[32], b[32], poss[64], list[128];
    long long dw, dh;
    double aspect = 0;

    memset(out, 0, sizeof *out);
    possessive(spec->label, poss, sizeof poss);

    /* Length cannot be changed without harm. */
    if (p->duration_ms < spec->min_duration_ms || p->duration_ms > spec->max_duration_ms) {
        refuse(out, "%s accepts videos of %s to %s; this one is %.1f s", spec->label,
               limit_duration(spec->min_duration_ms, a, sizeof a),
               limit_duration(spec->max_duration_ms, b, sizeof b),
               (double)p->duration_ms / 1000.0);
        return;
    }

    /* As displayed: a quarter turn swaps width and height. */
    dw = p->width;
    dh = p->height;
    if (p->rotation == 90 || p->rotation == 270) {
        dw = p->height;
        dh = p->width;
    }

    /* Nor can the shape: cropping or padding would change the picture. */
    if (dw > 0 && dh > 0) {
        aspect = (double)dw / (double)dh;
        if (spec->platform == PLATFORM_YOUTUBE && spec->max_aspect > 0 &&
            aspect > spec->max_aspect + 1e-9) {
            refuse(out, "%s must be vertical or square; this one is %lldx%lld (landscape)",
                   spec->label, dw, dh);
            return;
        }
        if ((spec->min_aspect > 0 && aspect < spec->min_aspect - 1e-9) ||
            (spec->max_aspect > 0 && aspect > spec->max_aspect + 1e-9)) {
            refuse(out, "%s accepts width/height ratios of %.2f to %.2f; this one is %lldx%lld (%.2f)",
                   spec->label, spec->min_aspect, spec->max_aspect, dw, dh, aspect);
            return;
        }
    }

    if (dw > 0 && dh > 0 && ((spec->max_width > 0 && dw > spec->max_width) ||
                             (spec->max_height > 0 && dh > spec->max_height))) {
        out->fixes |= MEDIA_FIX_SCALE;
        fit_within(dw, dh, spec->max_width, spec->max_height, &out->target_width,
                   &out->target_height);
        if (spec->max_width > 0 && dw > spec->max_width && spec->max_height > 0 &&
            dh > spec->max_height)
            reason_part(out, "%lldx%lld is over %s %lldx%lld: scaled to %lldx%lld", dw, dh, poss,
                        spec->max_width, spec->max_height, out->target_width, out->target_height);
        else if (spec->max_width > 0 && dw > spec->max_width)
            reason_part(out, "width %lld is over %s %lld: scaled to %lldx%lld", dw, poss,
                        spec->max_width, out->target_width, out->target_height);
        else
            reason_part(out, "height %lld is over %s %lld: scaled to %lldx%lld", dh, poss,
                        spec->max_height, out->target_width, out->target_height);
    }

    if (!in_list(spec->video_codecs, p->video_codec)) {
        out->fixes |= MEDIA_FIX_VIDEO;
        list_text(spec->video_codecs, list, sizeof list);
        reason_part(out, "video codec %s is not one %s accepts (%s): re-encoded to H.264",
                    p->video_codec[0] ? p->video_codec : "(unknown)", spec->label, list);
    }

    if (p->audio_codec[0]) {
        if (!in_list(spec->audio_codecs, p->audio_codec)) {
            out->fixes |= MEDIA_FIX_AUDIO;
            list_text(spec->audio_codecs, list, sizeof list);
            reason_part(out, "audio codec %s is not one %s accepts (%s): re-encoded to AAC at 48 kHz",
                        p->audio_codec, spec->label, list);
        } else if (spec->max_audio_rate > 0 && p->audio_rate > spec->max_audio_rate) {
            out->fixes |= MEDIA_FIX_AUDIO;
            reason_part(out, "audio at %lld Hz is over %s %lld Hz: re-encoded to AAC at 48 kHz",
                        p->audio_rate, poss, spec->max_audio_rate);
        }
    }

    if (spec->max_fps > 0 && p->fps > spec->max_fps + 1e-6) {
        out->fixes |= MEDIA_FIX_FPS;
        out->target_fps = spec->max_fps;
        fps_text(p->fps, a, sizeof a);
        fps_text(spec->max_fps, b, sizeof b);
        reason_part(out, "%s fps is over %s %s: set to %s fps", a, poss, b, b);
    } else if (spec->min_fps > 0 && p->fps > 0 && p->fps < spec->min_fps - 1e-6) {
        out->fixes |= MEDIA_FIX_FPS;
        out->target_fps = spec->min_fps;
        fps_text(p->fps, a, sizeof a);
        fps_text(spec->min_fps, b, sizeof b);
        reason_part(out, "%s fps is under %s %s: set to %s fps", a, poss, b, b);
    }

    if (spec->needs_faststart && !p->moov_front) {
        out->fixes |= MEDIA_FIX_FASTSTART;
        reason_part(out, "the moov atom comes after the media data and %s needs it first: "
                    "moved to the front", spec->label);
    }

    /* Only a smaller picture makes a file smaller for sure; the variant is
     * checked again once made. */
    if (spec->max_bytes > 0 && bytes > spec->max_bytes && !(out->fixes & MEDIA_FIX_SCALE)) {
        refuse(out, "%s accepts files of up to %s; this one is %s", spec->label,
               limit_bytes(spec->max_bytes, a, sizeof a), size_text(bytes, b, sizeof b));
        return;
    }

    if (!out->fixes) {
        out->verdict = MEDIA_FITS;
        return;
    }
    out->verdict = MEDIA_FIX;
    profile_name(out);
}

/* ----------------------------------------------------- ffmpeg arguments -- */

/* The strings go into storage one after another (with their NULs); the
 * pointers are taken once all are in, since storage may move as it grows. */
struct argv_builder {
    struct buf *storage;
    size_t off[MEDIA_ARGS_MAX];
    size_t n;
    int rc;
};

static void arg_add(struct argv_builder *a, const char *s)
{
    if (a->rc)
        return;
    if (a->n >= MEDIA_ARGS_MAX) {
        a->rc = CP_ETOOBIG;
        return;
    }
    a->off[a->n] = a->storage->len;
    a->rc = buf_add(a->storage, s, strlen(s) + 1);
    if (!a->rc)
        a->n++;
}

static void arg_addf(struct argv_builder *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void arg_addf(struct argv_builder *a, const char *fmt, ...)
{
    char s[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s, sizeof s, fmt, ap);
    va_end(ap);
    arg_add(a, s);
}

int media_ffmpeg_args(const struct media_decision *d, const char *in_path, const char *out_path,
                      struct buf *storage, const char **argv, size_t cap, size_t *n)
{
    struct argv_builder a = { .storage = storage };
    unsigned reencode = d->fixes & (MEDIA_FIX_SCALE | MEDIA_FIX_VIDEO | MEDIA_FIX_FPS);
    char fps[32];

    *n = 0;
    if (!d->fixes || !in_path || !out_path)
        return CP_EINVAL;
    if ((d->fixes & MEDIA_FIX_SCALE) && (d->target_width < 2 || d->target_height < 2))
        return CP_EINVAL;
    if ((d->fixes & MEDIA_FIX_FPS) && !(d->target_fps > 0))
        return CP_EINVAL;

    arg_add(&a, "-nostdin");
    arg_add(&a, "-hide_banner");
    arg_add(&a, "-loglevel");
    arg_add(&a, "error");
    arg_add(&a, "-y");
    arg_add(&a, "-i");
    arg_add(&a, in_path);
    if (!reencode && !(d->fixes & MEDIA_FIX_AUDIO)) {
        /* Only the moov atom moves: every stream copied as it is. */
        arg_add(&a, "-map");
        arg_add(&a, "0");
        arg_add(&a, "-c");
        arg_add(&a, "copy");
    } else {
        /* The first video and audio streams; cover pictures, subtitles
         * and data tracks would not survive the trip into MP4. */
        arg_add(&a, "-map");
        arg_add(&a, "0:v:0");
        arg_add(&a, "-map");
        arg_add(&a, "0:a:0?");
        if (reencode) {
            arg_add(&a, "-c:v");
            arg_add(&a, "libx264");
            arg_add(&a, "-preset");
            arg_add(&a, "veryfast");
            arg_add(&a, "-crf");
            arg_add(&a, "20");
            arg_add(&a, "-pix_fmt");
            arg_add(&a, "yuv420p");
            arg_add(&a, "-vf");
            /* yuv420p needs even dimensions; the scale is applied after
             * ffmpeg's automatic rotation, so to the picture as shown. */
            if (d->fixes & MEDIA_FIX_SCALE)
                arg_addf(&a, "scale=%lld:%lld", d->target_width, d->target_height);
            else
                arg_add(&a, "scale=trunc(iw/2)*2:trunc(ih/2)*2");
            if (d->fixes & MEDIA_FIX_FPS) {
                fps_text(d->target_fps, fps, sizeof fps);
                arg_add(&a, "-r");
                arg_add(&a, fps);
            }
        } else {
            arg_add(&a, "-c:v");
            arg_add(&a, "copy");
        }
        if (d->fixes & MEDIA_FIX_AUDIO) {
            arg_add(&a, "-c:a");
            arg_add(&a, "aac");
            arg_add(&a, "-b:a");
            arg_add(&a, "128k");
            arg_add(&a, "-ar");
            arg_add(&a, MEDIA_AUDIO_RATE);
        } else {
            arg_add(&a, "-c:a");
            arg_add(&a, "copy");
        }
    }
    arg_add(&a, "-movflags");
    arg_add(&a, "+faststart");
    arg_add(&a, "-f");
    arg_add(&a, "mp4");
    arg_add(&a, out_path);
    if (a.rc)
        return a.rc;
    if (a.n > cap)
        return CP_ETOOBIG;
    for (size_t i = 0; i < a.n; i++)
        argv[i] = storage->data + a.off[i];
    *n = a.n;
    return 0;
}

/* ------------------------------------------------------------ variants -- */

struct variant_row {
    char backend[8];
    char key[STORAGE_KEY_MAX];
    long long bytes;
    char sha256[65];
};

static const char SELECT_VARIANT[] =
    "SELECT storage_backend, storage_key, media_bytes, media_sha256 FROM media_variants "
    "WHERE video_id = ? AND profile = ?";

/* 0 with *found 1 and *row filled, or *found 0; CP_E* from the database. */
static int variant_find(struct db *db, long long video_id, const char *profile,
                        struct variant_row *row, int *found)
{
    struct db_param params[] = { DB_I64(video_id), DB_STR(profile) };
    struct db_result *r = NULL;
    int rc;

    *found = 0;
    rc = db_query(db, SELECT_VARIANT, params, 2, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) > 0) {
        db_result_text(r, 0, 0, row->backend, sizeof row->backend);
        db_result_text(r, 0, 1, row->key, sizeof row->key);
        row->bytes = db_result_int(r, 0, 2);
        db_result_text(r, 0, 3, row->sha256, sizeof row->sha256);
        *found = 1;
    }
    db_result_free(r);
    return 0;
}

/* A scratch file name under dir from template (mkstemps with suffix). */
static int scratch_file(const char *dir, const char *what, long long video_id, const char *suffix,
                        char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/%s-%lld-XXXXXX%s", dir, what, video_id, suffix);
    int fd;

    if (n < 0 || (size_t)n >= cap) {
        path[0] = '\0';
        return -1;
    }
    fd = mkstemps(path, (int)strlen(suffix));
    if (fd < 0)
        path[0] = '\0';
    return fd;
}

/* The last line of ffmpeg's stderr, for a sentence. */
static void last_line(const char *tail, char *out, size_t cap)
{
    size_t len = strlen(tail);
    const char *start;

    while (len > 0 && (tail[len - 1] == '\n' || tail[len - 1] == '\r' || tail[len - 1] == ' '))
        len--;
    start = tail + len;
    while (start > tail && start[-1] != '\n')
        start--;
    snprintf(out, cap, "%.*s", (int)(tail + len - start), start);
}

static int db_code(int rc)
{
    return rc == CP_EUNAVAIL || rc == CP_ERETRY ? CP_ERETRY : CP_EIO;
}

int media_variant_get_or_make(struct db *db, struct storage *st, const struct conf *c,
                              const struct video *v, const struct media_spec *spec,
                              const struct media_decision *d, media_tick_fn tick, void *tick_arg,
                              char *out_key, size_t key_cap, long long *out_bytes,
                              char out_sha256[65], struct buf *err)
{
    const char *backend = storage_backend_name(storage_backend_of(st));
    const char *argv[MEDIA_ARGS_MAX];
    struct variant_row row;
    struct video_probe p;
    struct media_decision again;
    struct probe_run_result run;
    struct buf args;
    char src[4096] = "", dst[4096] = "", key[STORAGE_KEY_MAX], sha[65], line[256];
    long long src_bytes = 0, bytes = 0, stored_bytes = 0;
    size_t nargs = 0;
    int fd = -1, found = 0, had_row = 0, ran = 0, rc;

    if (out_key && key_cap)
        out_key[0] = '\0';
    *out_bytes = 0;
    out_sha256[0] = '\0';
    buf_init(&args, 16384);
    memset(&run, 0, sizeof run);

    if (d->verdict != MEDIA_FIX || !d->profile[0] || !v->stored || !v->storage_key[0]) {
        buf_setf(err, "nothing to make: the video is not stored or needs no fix");
        rc = CP_EINVAL;
        goto out;
    }
    if (snprintf(key, sizeof key, "variants/%lld/%s.mp4", v->id, d->profile) >= (int)sizeof key ||
        !storage_key_ok(key)) {
        buf_setf(err, "variant profile \"%s\" does not make a storage key", d->profile);
        rc = CP_EINVAL;
        goto out;
    }

    /* Made before (by this job or another destination of the same video)? */
    rc = variant_find(db, v->id, d->profile, &row, &found);
    if (rc) {
        buf_setf(err, "reading media variants failed: %s", cp_strerror(rc));
        rc = db_code(rc);
        goto out;
    }
    if (found) {
        had_row = 1;
        if (strcmp(row.backend, backend) == 0) {
            rc = storage_stat(st, row.key, &stored_bytes, err);
            if (rc == 0 && stored_bytes == row.bytes)
                goto found;
            if (rc && rc != CP_ENOTFOUND)
                goto out;
        }
        log_warn("video %lld: variant %s is gone from storage: making it again", v->id,
                 d->profile);
    }

    fd = scratch_file(storage_scratch_dir(st), "variant-src", v->id, "", src, sizeof src);
    if (fd < 0) {
        buf_setf(err, "cannot create a scratch file: %s", strerror(errno));
        rc = CP_EIO;
        goto out;
    }
    rc = storage_get_to_fd(st, v->storage_key, fd, &src_bytes, err);
    close(fd);
    fd = -1;
    if (rc == CP_ENOTFOUND) {
        buf_setf(err, "the stored video %s is missing", v->storage_key);
        rc = CP_EIO;
    }
    if (rc)
        goto out;
    fd = scratch_file(storage_scratch_dir(st), "variant", v->id, ".mp4", dst, sizeof dst);
    if (fd < 0) {
        buf_setf(err, "cannot create a scratch file: %s", strerror(errno));
        rc = CP_EIO;
        goto out;
    }
    close(fd);
    fd = -1;

    rc = media_ffmpeg_args(d, src, dst, &args, argv, MEDIA_ARGS_MAX, &nargs);
    if (rc) {
        buf_setf(err, "cannot build the ffmpeg arguments: %s", cp_strerror(rc));
        goto out;
    }
    rc = probe_run(c->ffmpeg_command, argv, nargs, c->media_transcode_timeout, 64 * 1024, tick,
                   tick_arg, &run);
    ran = 1;
    if (rc == CP_ETIMEDOUT) {
        /* The same input takes as long next time. */
        buf_setf(err, "ffmpeg did not finish making %s within %lld s", d->profile,
                 c->media_transcode_timeout / 1000);
        rc = CP_EPROTO;
        goto out;
    }
    if (rc == CP_EIO) {
        buf_setf(err, "cannot run ffmpeg (%s)", c->ffmpeg_command);
        goto out;
    }
    if (rc)
        goto out;   /* the tick stopped it */
    if (!run.exited || run.exit_code != 0) {
        last_line(run.err_tail, line, sizeof line);
        if (run.exited)
            buf_setf(err, "ffmpeg failed making %s (exit %d): %s", d->profile, run.exit_code,
                     line);
        else
            buf_setf(err, "ffmpeg was killed by signal %d making %s", run.signal, d->profile);
        rc = CP_EPROTO;
        goto out;
    }

    rc = probe_file(c, dst, &p, err);
    if (rc == CP_ENOTFOUND || rc == CP_EPROTO) {
        rc = CP_EPROTO;
        goto out;
    }
    if (rc)
        goto out;
    rc = fetch_hash_file(dst, &bytes, sha);
    if (rc) {
        buf_setf(err, "cannot read the variant: %s", cp_strerror(rc));
        rc = CP_EIO;
        goto out;
    }
    media_check(spec, &p, bytes, &again);
    if (again.verdict != MEDIA_FITS) {
        buf_setf(err, "the %s variant still does not fit %s: %s", d->profile, spec->label,
                 again.reason);
        rc = CP_EPROTO;
        goto out;
    }

    rc = storage_put_file(st, key, dst, "video/mp4", err);
    if (rc)
        goto out;
    dst[0] = '\0';   /* consumed */

    {
        long long dw = p.width, dh = p.height;
        struct db_param params[] = {
            DB_I64(v->id), DB_STR(d->profile), DB_STR(backend), DB_STR(key), DB_I64(bytes),
            DB_STR(sha), DB_I64(dw), DB_I64(dh), DB_I64(p.duration_ms),
        };

        if (p.rotation == 90 || p.rotation == 270) {
            params[6] = DB_I64(dh);
            params[7] = DB_I64(dw);
        }
        /* A row found stale is brought up to date; otherwise a row another
         * job recorded meanwhile describes the same output and is kept. */
        rc = db_exec(db,
                     had_row
                         ? "INSERT INTO media_variants (video_id, profile, storage_backend, "
                           "storage_key, media_bytes, media_sha256, width, height, duration_ms) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
                           "storage_backend = VALUES(storage_backend), "
                           "storage_key = VALUES(storage_key), media_bytes = VALUES(media_bytes), "
                           "media_sha256 = VALUES(media_sha256), width = VALUES(width), "
                           "height = VALUES(height), duration_ms = VALUES(duration_ms)"
                         : "INSERT INTO media_variants (video_id, profile, storage_backend, "
                           "storage_key, media_bytes, media_sha256, width, height, duration_ms) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id",
                     params, sizeof params / sizeof params[0], NULL, NULL);
    }
    if (rc) {
        buf_setf(err, "recording the variant failed: %s", cp_strerror(rc));
        rc = db_code(rc);
        goto out;
    }
    rc = variant_find(db, v->id, d->profile, &row, &found);
    if (rc || !found) {
        buf_setf(err, "reading the variant back failed: %s", cp_strerror(rc ? rc : CP_ENOTFOUND));
        rc = rc ? db_code(rc) : CP_ERETRY;
        goto out;
    }
    log_info("video %lld: variant %s made: %lld bytes (%s)", v->id, d->profile, row.bytes,
             d->reason);

found:
    if (strlen(row.key) >= key_cap || strlen(row.sha256) != 64) {
        buf_setf(err, "variant %s: recorded key or digest does not fit", d->profile);
        rc = CP_EIO;
        goto out;
    }
    memcpy(out_key, row.key, strlen(row.key) + 1);
    *out_bytes = row.bytes;
    memcpy(out_sha256, row.sha256, 65);
    rc = 0;

out:
    if (fd >= 0)
        close(fd);
    if (src[0])
        unlink(src);
    if (dst[0])
        unlink(dst);
    if (ran)
        probe_run_result_free(&run);
    buf_free(&args);
    return rc;
}
