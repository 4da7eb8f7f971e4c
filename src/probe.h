/*
 * probe.h - what a stored video is made of, and its thumbnail.
 *
 * ffprobe (ffprobe_command) reads the streams; its JSON is parsed here
 * into struct video_probe (videos.h).  Our own scan of the top-level
 * ISO BMFF boxes says whether the moov atom comes before mdat (fast
 * start), which ffprobe does not report.  ffmpeg (ffmpeg_command) takes
 * the thumbnail.  External programs run without a shell, with a
 * deadline and bounded output (probe_run).
 */
#ifndef CP_PROBE_H
#define CP_PROBE_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "videos.h"

/* ------------------------------------------------ running programs -- */

/* Called about once a second while a program runs; a non-zero CP_E*
 * return kills it (its process group) and probe_run returns that code. */
typedef int (*probe_tick_fn)(void *arg);

struct probe_run_result {
    int exited;              /* 1: exited normally, status in exit_code */
    int exit_code;
    int signal;              /* the signal that ended it, else 0 */
    int timed_out;           /* killed at the deadline */
    int out_overflow;        /* stdout passed its cap (the rest was dropped) */
    struct buf out;          /* stdout, up to max_out bytes */
    char err_tail[2048];     /* the last bytes of stderr, NUL-terminated */
};

void probe_run_result_free(struct probe_run_result *r);

/*
 * Run command (a program name, optionally followed by arguments split on
 * spaces, e.g. "yt-dlp" or "python3 -m yt_dlp") with the extra
 * arguments args[0..nargs), stdin from /dev/null, in its own process
 * group (killed with the caller's death too).  0 when it ran, whatever
 * its exit status (see *r); CP_ETIMEDOUT when killed at timeout_ms
 * (r->timed_out set); the tick's code when it stopped it; CP_EIO when
 * it could not be started.  The caller frees *r in every case.
 */
int probe_run(const char *command, const char *const *args, size_t nargs, long long timeout_ms,
              size_t max_out, probe_tick_fn tick, void *tick_arg, struct probe_run_result *r);

/* ------------------------------------------------------ box scan -- */

struct mp4_layout {
    int has_ftyp, has_moov, has_mdat;
    long long moov_offset, mdat_offset;    /* -1 when absent */
    int moov_front;                        /* moov present, before any mdat */
    int truncated;                         /* the last box runs past the end */
    size_t boxes;                          /* top-level boxes seen */
};

/*
 * Walk the top-level boxes (32-bit sizes, size 1 = 64-bit size after the
 * type, size 0 = to the end of the file) of the bytes p[0..len) or of
 * the file behind fd.  CP_EPARSE for a size that cannot be (below the
 * header), or when the data does not start with a box at all.
 */
int probe_scan_mem(const unsigned char *p, size_t len, struct mp4_layout *out);
int probe_scan_fd(int fd, struct mp4_layout *out);

/* ---------------------------------------------------------- probing -- */

/* Parse ffprobe's "-print_format json -show_format -show_streams" output.
 * CP_EPARSE when it is not that JSON; CP_ENOTFOUND when it has no video
 * stream. */
int probe_parse_json(const char *json, size_t len, struct video_probe *out);

/* Rotation in degrees from a displaymatrix "rotation" (counter-clockwise,
 * as ffprobe prints it) or a "rotate" tag (clockwise): 0, 90, 180, 270. */
int probe_rotation_from_matrix(double rotation);
int probe_rotation_from_tag(long long degrees);

/* "30000/1001" -> 29.97; "30" -> 30; 0 for "0/0" or nonsense. */
double probe_parse_rate(const char *s);

/* ffprobe the file at path and scan its boxes into *out.  CP_ENOTFOUND
 * when it has no video stream ("not a video"), CP_EPROTO when ffprobe
 * cannot read it, CP_ETIMEDOUT / CP_EIO when ffprobe did not run;
 * a sentence in *err. */
int probe_file(const struct conf *c, const char *path, struct video_probe *out, struct buf *err);

/* A JPEG thumbnail 320 px wide of the frame at min(1 s, duration / 2),
 * written to out_path (replaced). */
int probe_thumbnail(const struct conf *c, const char *video_path, long long duration_ms,
                    const char *out_path, struct buf *err);

#endif
