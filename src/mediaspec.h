/*
 * mediaspec.h - what each destination platform accepts, and how to make a
 * stored video fit.
 *
 * One row per destination platform in media_specs[] (mediaspec.c), with
 * the limits of platforms.md: duration, size, dimensions, aspect ratio,
 * codecs, frame rate, audio, moov position.  media_check() compares a
 * probe with a row and answers one of:
 *   - fits as it is;
 *   - fixable, with the list of fixes (enum media_fix bits) and a profile
 *     name that is canonical for that list ("faststart",
 *     "scale-1280x1024.h264.faststart"), so destinations needing the same
 *     fixes share one variant, made once per video and profile;
 *   - refused, with the limit named ("X accepts videos up to 140 s; this
 *     one is 150.0 s").  Only what cannot be fixed without harm is
 *     refused: too long, too short, too big after every fix.
 * media_ffmpeg_args() builds ffmpeg's argument list for a fix list:
 * stream copy when only the moov atom moves, a scale that keeps the
 * aspect ratio (even dimensions), a re-encode to H.264/AAC only when a
 * codec, frame rate or scale demands it.
 */
#ifndef CP_MEDIASPEC_H
#define CP_MEDIASPEC_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "platforms.h"
#include "videos.h"

enum media_fix {
    MEDIA_FIX_FASTSTART = 1 << 0,     /* moov atom to the front (remux) */
    MEDIA_FIX_SCALE = 1 << 1,         /* scale down to fit max width/height */
    MEDIA_FIX_VIDEO = 1 << 2,         /* re-encode video to H.264 */
    MEDIA_FIX_AUDIO = 1 << 3,         /* re-encode audio to AAC-LC 44.1/48 kHz */
    MEDIA_FIX_FPS = 1 << 4,           /* frame rate into the allowed range */
};

struct media_spec {
    enum platform_id platform;
    const char *label;                /* "Instagram Reels" */
    long long min_duration_ms, max_duration_ms;
    long long max_bytes;
    long long max_width, max_height;  /* as displayed (after rotation) */
    double min_aspect, max_aspect;    /* width / height; 0 = any */
    double min_fps, max_fps;          /* 0 = any */
    const char *const *video_codecs;  /* NULL-terminated ffprobe names */
    const char *const *audio_codecs;  /* NULL-terminated; "" audio always ok */
    long long max_audio_rate;         /* Hz, 0 = any */
    int needs_faststart;
};

extern const struct media_spec media_specs[];
extern const size_t media_nspecs;

/* The row of platform, or NULL (TikTok). */
const struct media_spec *media_spec_find(enum platform_id platform);

enum media_verdict { MEDIA_FITS, MEDIA_FIX, MEDIA_REFUSE };

#define MEDIA_PROFILE_MAX 64

struct media_decision {
    enum media_verdict verdict;
    unsigned fixes;                   /* enum media_fix bits */
    char profile[MEDIA_PROFILE_MAX];  /* canonical name of the fixes, "" when none */
    long long target_width, target_height;  /* when MEDIA_FIX_SCALE (even numbers) */
    double target_fps;                /* when MEDIA_FIX_FPS */
    char reason[512];                 /* refusal: the limit named; fixes: what and why */
};

/* Compare a probed video of bytes with spec. */
void media_check(const struct media_spec *spec, const struct video_probe *p, long long bytes,
                 struct media_decision *out);

/* ffmpeg arguments (without the program name) turning in_path into
 * out_path (an .mp4) per d; *n filled, at most cap.  The strings are in
 * storage (a buffer the caller frees).  CP_ETOOBIG when cap is short. */
#define MEDIA_ARGS_MAX 48
int media_ffmpeg_args(const struct media_decision *d, const char *in_path, const char *out_path,
                      struct buf *storage, const char **argv, size_t cap, size_t *n);

/*
 * Make (or find) the variant of video for d->profile: the stored source
 * is copied to a scratch file, ffmpeg runs (probe_run, deadline
 * media_transcode_timeout, tick called about once a second), the result
 * is probed and checked again with spec (a result that still does not
 * fit is CP_EPROTO), stored under "variants/<video>/<profile>.mp4", and
 * recorded in media_variants; a row already there is returned without
 * any work.  *out_key, *out_bytes, *out_sha256 (65 bytes) describe it.
 * Errors: CP_EPROTO (ffmpeg failed on this input: permanent), CP_ERETRY
 * / CP_EIO (storage, database), with a sentence in *err.
 */
struct db;
struct storage;
typedef int (*media_tick_fn)(void *arg);
int media_variant_get_or_make(struct db *db, struct storage *st, const struct conf *c,
                              const struct video *v, const struct media_spec *spec,
                              const struct media_decision *d, media_tick_fn tick, void *tick_arg,
                              char *out_key, size_t key_cap, long long *out_bytes,
                              char out_sha256[65], struct buf *err);

#endif
