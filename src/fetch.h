/*
 * fetch.h - download a video's media into a scratch file.
 *
 * Two ways in: a direct media URL through the HTTP client, or the
 * configured downloader (fetch_command, yt-dlp) given a share URL.  Both
 * write a new file (O_EXCL) under a size cap, never hold the media in
 * memory, and report its size and SHA-256.  On any failure the file at
 * path is removed.
 *
 * Failures come back as a code and a sentence in *err (no secrets, no
 * query strings) and out->failure says which kind it was:
 *   CP_ENOTFOUND  missing (404/410, removed or private)   permanent
 *   CP_ETOOBIG    larger than max_bytes                   permanent
 *   CP_EPROTO     not a video, or refused for good        permanent
 *   CP_ERETRY     network trouble, 5xx, 429, timeouts     transient
 *   CP_EIO        a local failure (disk, fork)            transient
 */
#ifndef CP_FETCH_H
#define CP_FETCH_H

#include "buf.h"
#include "conf.h"
#include "http.h"

enum fetch_failure {
    FETCH_NONE,          /* success */
    FETCH_MISSING,
    FETCH_TOO_LARGE,
    FETCH_NOT_VIDEO,
    FETCH_PERMANENT,     /* any other refusal worth no retry */
    FETCH_TRANSIENT,
};

struct fetch_result {
    long long bytes;
    char sha256[65];            /* lower-case hex */
    char content_type[64];      /* "video/mp4" when unknown or generic */
    enum fetch_failure failure;
};

/* 1 when failure is worth retrying. */
int fetch_failure_transient(enum fetch_failure f);

/*
 * Called now and then while a download runs, with the bytes so far
 * (total 0 when unknown).  A non-zero CP_E* return stops the download
 * (the result is then that code, FETCH_TRANSIENT).
 */
typedef int (*fetch_progress_fn)(void *arg, long long done, long long total);

/* Progress reporting for the calls below; NULL for none. */
struct fetch_progress {
    fetch_progress_fn fn;
    void *arg;
};

/*
 * GET url (a direct media URL) into a new file at path, at most max_bytes
 * (0 = media_max_bytes), hashing it on the way.  http is the caller's
 * client (reused between calls).  The file is checked to be a video
 * (fetch_check_video).
 */
int fetch_url_to_file(const struct conf *c, struct http_client *http, const char *url,
                      const char *path, long long max_bytes, struct fetch_result *out,
                      struct buf *err);

/* The same with progress reports. */
int fetch_url_to_file_progress(const struct conf *c, struct http_client *http,
                               const char *url, const char *path, long long max_bytes,
                               const struct fetch_progress *progress,
                               struct fetch_result *out, struct buf *err);

/*
 * Run fetch_command (no shell) to download share_url into a new file at
 * path, at most max_bytes (0 = media_max_bytes), within fetch_timeout.
 * cookies (Netscape cookies.txt, or NULL) go to the downloader in a
 * private file (mode 0600, O_EXCL) beside path, "<path>.cookies", removed
 * in every case (after a killed run, by the next run for path).  The
 * downloader's output is kept bounded, only its last error line reaches
 * *err, and cookies never do.  Then the file is hashed and checked to be
 * a video.
 */
int fetch_with_downloader(const struct conf *c, const char *share_url, const char *cookies,
                          const char *path, long long max_bytes,
                          const struct fetch_progress *progress, struct fetch_result *out,
                          struct buf *err);

/* Size and SHA-256 hex (65 bytes) of the file at path, read in chunks. */
int fetch_hash_file(const char *path, long long *bytes, char sha256_hex[65]);

/*
 * 0 when the first bytes of the file at path are an ISO BMFF "ftyp" box
 * (MP4, MOV, M4V, 3GP) or ffprobe_command finds a video stream in it;
 * else CP_EPROTO ("not a video").  *content_type (64 bytes) gets
 * "video/mp4" or "video/quicktime" and so on.
 */
int fetch_check_video(const struct conf *c, const char *path, char content_type[64]);

#endif
