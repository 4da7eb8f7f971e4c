#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "err.h"
#include "fetch.h"
#include "log.h"
#include "probe.h"

#define HASH_CHUNK (256 * 1024)
#define PROGRESS_EVERY_MS 1000

int fetch_failure_transient(enum fetch_failure f)
{
    return f == FETCH_TRANSIENT;
}

static void to_hex(const unsigned char *md, unsigned n, char *hex)
{
    static const char digits[] = "0123456789abcdef";

    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * n] = '\0';
}

static int failure_code(enum fetch_failure f)
{
    switch (f) {
    case FETCH_NONE: return 0;
    case FETCH_MISSING: return CP_ENOTFOUND;
    case FETCH_TOO_LARGE: return CP_ETOOBIG;
    case FETCH_NOT_VIDEO:
    case FETCH_PERMANENT: return CP_EPROTO;
    case FETCH_TRANSIENT: return CP_ERETRY;
    }
    return CP_EIO;
}

int fetch_hash_file(const char *path, long long *bytes, char sha256_hex[65])
{
    EVP_MD_CTX *md = NULL;
    unsigned char *chunk = NULL, digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    long long total = 0;
    int fd = -1, rc = 0;

    *bytes = 0;
    sha256_hex[0] = '\0';
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
    if (!(chunk = malloc(HASH_CHUNK)) || !(md = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = CP_ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, HASH_CHUNK);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = CP_EIO;
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, chunk, (size_t)n);
        total += n;
    }
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1) {
        rc = CP_EIO;
        goto out;
    }
    to_hex(digest, dlen, sha256_hex);
    *bytes = total;

out:
    EVP_MD_CTX_free(md);
    free(chunk);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ----------------------------------------------------- video check -- */

static const char *brand_type(const unsigned char *brand)
{
    if (!memcmp(brand, "qt  ", 4))
        return "video/quicktime";
    if (!memcmp(brand, "3gp", 3) || !memcmp(brand, "3g2", 3))
        return "video/3gpp";
    if (!memcmp(brand, "M4V", 3))
        return "video/x-m4v";
    if (!memcmp(brand, "M4A", 3) || !memcmp(brand, "M4B", 3))
        return NULL;   /* audio only */
    return "video/mp4";
}

int fetch_check_video(const struct conf *c, const char *path, char content_type[64])
{
    unsigned char head[12];
    ssize_t n;
    int fd, rc;
    const char *type = NULL;
    struct video_probe p;
    struct buf err;

    content_type[0] = '\0';
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return CP_EIO;
    do {
        n = pread(fd, head, sizeof head, 0);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n == (ssize_t)sizeof head && !memcmp(head + 4, "ftyp", 4))
        type = brand_type(head + 8);
    if (type) {
        snprintf(content_type, 64, "%s", type);
        return 0;
    }
    /* Not ISO BMFF (WebM, MPEG-TS...): a video if ffprobe finds one. */
    buf_init(&err, 512);
    rc = probe_file(c, path, &p, &err);
    buf_free(&err);
    if (rc == CP_ETIMEDOUT || rc == CP_EIO)
        return rc;
    if (rc)
        return CP_EPROTO;
    snprintf(content_type, 64, "%s",
             strstr(p.container, "webm") ? "video/webm" : "application/octet-stream");
    return 0;
}

/* Hash, size and check a finished download; the shared tail of both ways in. */
static int finish_file(const struct conf *c, const char *path, long long max_bytes,
                       struct fetch_result *out, struct buf *err)
{
    int rc;

    if (!out->sha256[0]) {
        rc = fetch_hash_file(path, &out->bytes, out->sha256);
        if (rc) {
            buf_setf(err, "the downloaded file could not be read");
            out->failure = FETCH_TRANSIENT;
            return CP_EIO;
        }
    }
    if (out->bytes > max_bytes) {
        buf_setf(err, "too large: the media is over the %lld-byte limit", max_bytes);
        out->failure = FETCH_TOO_LARGE;
        return CP_ETOOBIG;
    }
    if (out->bytes == 0) {
        buf_setf(err, "not a video: the download is empty");
        out->failure = FETCH_NOT_VIDEO;
        return CP_EPROTO;
    }
    char type[64];
    rc = fetch_check_video(c, path, type);
    if (rc == CP_ETIMEDOUT || rc == CP_EIO) {
        buf_setf(err, "the downloaded file could not be checked (ffprobe failed to run)");
        out->failure = FETCH_TRANSIENT;
        return CP_ERETRY;
    }
    if (rc) {
        buf_setf(err, "not a video: the download is neither MP4/MOV nor a stream ffprobe can read");
        out->failure = FETCH_NOT_VIDEO;
        return CP_EPROTO;
    }
    if (!out->content_type[0] || !strncasecmp(out->content_type, "application/", 12) ||
        !strncasecmp(out->content_type, "binary/", 7) || strncasecmp(out->content_type, "video/", 6))
        snprintf(out->content_type, sizeof out->content_type, "%s", type);
    return 0;
}

/* ------------------------------------------------------ direct URL -- */

struct url_stream {
    EVP_MD_CTX *md;
    const struct fetch_progress *progress;
    long long done;
    long long total;
    long long next_report_ms;
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_url_data(void *arg, const void *data, size_t len)
{
    struct url_stream *s = arg;

    if (EVP_DigestUpdate(s->md, data, len) != 1)
        return CP_EIO;
    s->done += (long long)len;
    if (s->progress && s->progress->fn) {
        long long t = now_ms();

        if (t >= s->next_report_ms) {
            s->next_report_ms = t + PROGRESS_EVERY_MS;
            return s->progress->fn(s->progress->arg, s->done, s->total);
        }
    }
    return 0;
}

/* Where a URL points, without its query string (it may carry a token). */
static void url_for_log(const char *url, char *dst, size_t cap)
{
    size_t n = strcspn(url, "?#");

    snprintf(dst, cap, "%.*s", (int)n, url);
}

int fetch_url_to_file_progress(const struct conf *c, struct http_client *http,
                               const char *url, const char *path, long long max_bytes,
                               const struct fetch_progress *progress,
                               struct fetch_result *out, struct buf *err)
{
    struct http_request req;
    struct http_response resp;
    struct url_stream s = { 0 };
    struct buf type;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    char where[256];
    int fd = -1, rc;

    memset(out, 0, sizeof *out);
    memset(&resp, 0, sizeof resp);
    buf_init(&type, 256);
    if (max_bytes <= 0)
        max_bytes = c->media_max_bytes;
    url_for_log(url ? url : "", where, sizeof where);
    if (!url || !path) {
        out->failure = FETCH_PERMANENT;
        buf_setf(err, "no media URL");
        return CP_EINVAL;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        out->failure = FETCH_TRANSIENT;
        buf_setf(err, "the scratch file could not be created: %s", strerror(errno));
        return CP_EIO;
    }
    if (!(s.md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
        out->failure = FETCH_TRANSIENT;
        rc = CP_ENOMEM;
        goto out;
    }
    s.progress = progress;
    s.next_report_ms = now_ms() + PROGRESS_EVERY_MS;

    http_request_init(&req, "GET", url);
    req.out_fd = fd;
    req.max_download = max_bytes;
    req.timeout_ms = c->fetch_timeout;
    req.on_data = on_url_data;
    req.on_data_arg = &s;
    rc = http_do(http, &req, &resp);
    if (rc == 0 && resp.status >= 200 && resp.status < 300) {
        if (EVP_DigestFinal_ex(s.md, digest, &dlen) != 1) {
            out->failure = FETCH_TRANSIENT;
            rc = CP_EIO;
            goto out;
        }
        to_hex(digest, dlen, out->sha256);
        out->bytes = s.done;
        if (http_response_header(&resp, "Content-Type", &type) == 0) {
            size_t n = strcspn(buf_str(&type), "; ");
            snprintf(out->content_type, sizeof out->content_type, "%.*s", (int)n, buf_str(&type));
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
            fd = -1;
            out->failure = FETCH_TRANSIENT;
            buf_setf(err, "writing the scratch file failed: %s", strerror(errno));
            rc = CP_EIO;
            goto out;
        }
        fd = -1;
        rc = finish_file(c, path, max_bytes, out, err);
        goto out;
    }
    if (rc == 0) {
        if (resp.status == 404 || resp.status == 410) {
            out->failure = FETCH_MISSING;
            buf_setf(err, "missing: %s answered %ld", where, resp.status);
        } else if (resp.status == 408 || resp.status == 429 || resp.status >= 500) {
            out->failure = FETCH_TRANSIENT;
            buf_setf(err, "%s answered %ld", where, resp.status);
        } else {
            out->failure = FETCH_PERMANENT;
            buf_setf(err, "%s refused the download with %ld", where, resp.status);
        }
    } else if (rc == CP_ETOOBIG) {
        out->failure = FETCH_TOO_LARGE;
        buf_setf(err, "too large: the media is over the %lld-byte limit", max_bytes);
    } else if (rc == CP_EINVAL) {
        out->failure = FETCH_PERMANENT;
        buf_setf(err, "the media URL cannot be fetched: %s", resp.error);
    } else {
        out->failure = FETCH_TRANSIENT;
        buf_setf(err, "the download failed: %s", resp.error);
    }
    rc = failure_code(out->failure);

out:
    if (fd >= 0)
        close(fd);
    if (rc) {
        unlink(path);
        if (out->failure == FETCH_NONE)
            out->failure = FETCH_TRANSIENT;
        enum fetch_failure f = out->failure;
        memset(out, 0, sizeof *out);
        out->failure = f;
    }
    EVP_MD_CTX_free(s.md);
    buf_free(&type);
    http_response_free(&resp);
    return rc;
}

int fetch_url_to_file(const struct conf *c, struct http_client *http, const char *url,
                      const char *path, long long max_bytes, struct fetch_result *out,
                      struct buf *err)
{
    return fetch_url_to_file_progress(c, http, url, path, max_bytes, NULL, out, err);
}

/* ------------------------------------------------------ downloader -- */

struct dl_watch {
    const struct fetch_progress *progress;
    const char *path;
    char part[4096];
    long long max_bytes;
    int too_large;
};

static long long size_of(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Once a second: report the bytes so far, and stop a download that has
 * grown past the cap (a stream of unknown size defeats --max-filesize). */
static int dl_tick(void *arg)
{
    struct dl_watch *w = arg;
    long long n = size_of(w->part), m = size_of(w->path);

    if (m > n)
        n = m;
    if (n > w->max_bytes) {
        w->too_large = 1;
        return CP_ETOOBIG;
    }
    if (w->progress && w->progress->fn)
        return w->progress->fn(w->progress->arg, n > 0 ? n : 0, 0);
    return 0;
}

/* Write cookies to a new private file (0600, O_EXCL) at path.  Its name
 * follows the download's, so a run cut short by a killed worker leaves
 * at most this one file, which the next run of the same fetch removes. */
static int write_cookie_file(const char *path, const char *cookies)
{
    int fd = -1, rc = 0;
    size_t len = strlen(cookies), done = 0;
    static const char header[] = "# Netscape HTTP Cookie File\n";

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return CP_EIO;
    if (fchmod(fd, 0600) < 0)
        rc = CP_EIO;
    /* yt-dlp wants the header line; connections store the body. */
    if (!rc && strncmp(cookies, "# Netscape", 10) && strncmp(cookies, "# HTTP", 6) &&
        write(fd, header, sizeof header - 1) != (ssize_t)(sizeof header - 1))
        rc = CP_EIO;
    while (!rc && done < len) {
        ssize_t w = write(fd, cookies + done, len - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = CP_EIO;
        else
            done += (size_t)w;
    }
    if (!rc && (len == 0 || cookies[len - 1] != '\n') && write(fd, "\n", 1) != 1)
        rc = CP_EIO;
    if (close(fd) < 0)
        rc = CP_EIO;
    if (rc)
        unlink(path);
    return rc;
}

/* The last line of stderr starting with "ERROR:", else the last line. */
static void error_line(const char *tail, char *dst, size_t cap)
{
    const char *p = tail, *best = NULL, *last = NULL;
    size_t best_len = 0, last_len = 0;

    while (*p) {
        size_t n = strcspn(p, "\r\n");

        if (n > 0) {
            last = p;
            last_len = n;
            if (!strncmp(p, "ERROR:", 6)) {
                best = p;
                best_len = n;
            }
        }
        p += n;
        while (*p == '\r' || *p == '\n')
            p++;
    }
    if (!best) {
        best = last;
        best_len = last_len;
    }
    if (!best) {
        snprintf(dst, cap, "no reason given");
        return;
    }
    if (best_len > cap - 1)
        best_len = cap - 1;
    snprintf(dst, cap, "%.*s", (int)best_len, best);
}

static int contains_ci(const char *hay, const char *needle)
{
    return strcasestr(hay, needle) != NULL;
}

/* What the downloader's last error means. */
static enum fetch_failure classify_downloader(const char *line)
{
    if (contains_ci(line, "File is larger than max-filesize") ||
        contains_ci(line, "larger than max-filesize") || contains_ci(line, "max-filesize"))
        return FETCH_TOO_LARGE;
    if (contains_ci(line, "HTTP Error 404") || contains_ci(line, "HTTP Error 410") ||
        contains_ci(line, "Video unavailable") || contains_ci(line, "currently unavailable") ||
        contains_ci(line, "not available") || contains_ci(line, "has been removed") ||
        contains_ci(line, "private video") || contains_ci(line, "does not exist"))
        return FETCH_MISSING;
    if (contains_ci(line, "HTTP Error 5") || contains_ci(line, "HTTP Error 429") ||
        contains_ci(line, "HTTP Error 408") || contains_ci(line, "timed out") ||
        contains_ci(line, "Connection refused") || contains_ci(line, "Connection reset") ||
        contains_ci(line, "Temporary failure") || contains_ci(line, "Network is unreachable") ||
        contains_ci(line, "Unable to download") || contains_ci(line, "IncompleteRead") ||
        contains_ci(line, "Remote end closed"))
        return FETCH_TRANSIENT;
    if (contains_ci(line, "Unsupported URL") || contains_ci(line, "HTTP Error 4") ||
        contains_ci(line, "login") || contains_ci(line, "cookies"))
        return FETCH_PERMANENT;
    return FETCH_TRANSIENT;
}

int fetch_with_downloader(const struct conf *c, const char *share_url, const char *cookies,
                          const char *path, long long max_bytes,
                          const struct fetch_progress *progress, struct fetch_result *out,
                          struct buf *err)
{
    char max_s[32], line[400], where[256];
    const char *args[24];
    size_t n = 0;
    struct buf cookie_path;
    struct probe_run_result r;
    struct dl_watch w;
    int rc, have_cookies = 0;

    memset(out, 0, sizeof *out);
    memset(&w, 0, sizeof w);
    memset(&r, 0, sizeof r);
    buf_init(&r.out, 0);
    buf_init(&cookie_path, 4096);
    if (max_bytes <= 0)
        max_bytes = c->media_max_bytes;
    if (!share_url || !*share_url || !path) {
        out->failure = FETCH_PERMANENT;
        buf_setf(err, "no share URL to fetch");
        rc = CP_EINVAL;
        goto out;
    }
    url_for_log(share_url, where, sizeof where);
    w.progress = progress;
    w.path = path;
    w.max_bytes = max_bytes;
    snprintf(w.part, sizeof w.part, "%s.part", path);
    /* A stale file from an earlier attempt would make yt-dlp skip. */
    unlink(path);
    unlink(w.part);

    /* Left by an earlier run that was killed, or to be written now. */
    if (buf_printf(&cookie_path, "%s.cookies", path)) {
        out->failure = FETCH_PERMANENT;
        buf_setf(err, "the download path is too long");
        rc = CP_EINVAL;
        goto out;
    }
    unlink(cookie_path.data);
    if (cookies && *cookies) {
        rc = write_cookie_file(cookie_path.data, cookies);
        if (rc) {
            out->failure = FETCH_TRANSIENT;
            buf_setf(err, "the cookies file could not be written");
            rc = CP_EIO;
            goto out;
        }
        have_cookies = 1;
    }
    snprintf(max_s, sizeof max_s, "%lld", max_bytes);
    args[n++] = "--no-playlist";
    args[n++] = "--no-progress";
    args[n++] = "--newline";
    args[n++] = "--no-config";
    args[n++] = "--no-cache-dir";
    args[n++] = "--no-part";
    args[n++] = "-f";
    args[n++] = "best";
    args[n++] = "-o";
    args[n++] = path;
    args[n++] = "--max-filesize";
    args[n++] = max_s;
    args[n++] = "--socket-timeout";
    args[n++] = "30";
    if (have_cookies) {
        args[n++] = "--cookies";
        args[n++] = cookie_path.data;
    }
    args[n++] = "--";
    args[n++] = share_url;

    rc = probe_run(c->fetch_command, args, n, c->fetch_timeout, 64 * 1024, dl_tick, &w, &r);
    if (have_cookies) {
        unlink(cookie_path.data);
        have_cookies = 0;
    }
    if (rc == CP_ETIMEDOUT) {
        out->failure = FETCH_TRANSIENT;
        buf_setf(err, "the download of %s took longer than %lld s", where, c->fetch_timeout / 1000);
        rc = CP_ERETRY;
        goto out;
    }
    if (w.too_large) {
        out->failure = FETCH_TOO_LARGE;
        buf_setf(err, "too large: the media is over the %lld-byte limit", max_bytes);
        rc = CP_ETOOBIG;
        goto out;
    }
    if (rc == CP_EIO && r.exited && r.exit_code == 127) {
        out->failure = FETCH_TRANSIENT;
        buf_setf(err, "the downloader (%s) is not installed", c->fetch_command);
        goto out;
    }
    if (rc) {
        out->failure = FETCH_TRANSIENT;
        buf_setf(err, "the download of %s was stopped: %s", where, cp_strerror(rc));
        goto out;
    }
    if (!r.exited || r.exit_code != 0) {
        error_line(r.err_tail, line, sizeof line);
        out->failure = classify_downloader(line);
        switch (out->failure) {
        case FETCH_MISSING:
            buf_setf(err, "missing: %s (%s)", where, line);
            break;
        case FETCH_TOO_LARGE:
            buf_setf(err, "too large: the media is over the %lld-byte limit", max_bytes);
            break;
        default:
            if (r.exited)
                buf_setf(err, "the downloader failed for %s (exit %d): %s", where, r.exit_code, line);
            else
                buf_setf(err, "the downloader was killed by signal %d", r.signal);
        }
        rc = failure_code(out->failure);
        goto out;
    }
    if (size_of(path) < 0) {
        /* yt-dlp exits 0 when --max-filesize made it skip the file. */
        error_line(r.err_tail, line, sizeof line);
        if (contains_ci(r.out.data ? r.out.data : "", "max-filesize") ||
            contains_ci(r.err_tail, "max-filesize")) {
            out->failure = FETCH_TOO_LARGE;
            buf_setf(err, "too large: the media is over the %lld-byte limit", max_bytes);
        } else {
            out->failure = FETCH_PERMANENT;
            buf_setf(err, "the downloader wrote no file for %s", where);
        }
        rc = failure_code(out->failure);
        goto out;
    }
    rc = finish_file(c, path, max_bytes, out, err);

out:
    if (have_cookies)
        unlink(cookie_path.data);
    if (rc) {
        enum fetch_failure f = out->failure == FETCH_NONE ? FETCH_TRANSIENT : out->failure;

        if (path) {
            unlink(path);
            if (w.part[0])
                unlink(w.part);
        }
        memset(out, 0, sizeof *out);
        out->failure = f;
    }
    probe_run_result_free(&r);
    buf_free(&cookie_path);
    return rc;
}
