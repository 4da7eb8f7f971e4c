#include "config.h"

/*
 * media_bench - drive the storage layer from the command line, for the
 * media benchmark (tests/bench/media) and the S3 integration test.
 *
 *   media_bench put KEY PATH [CONTENT_TYPE]   store a file (consumed)
 *   media_bench get KEY OUT_PATH              copy an object into a file
 *   media_bench stat KEY                      print its size
 *   media_bench delete KEY
 *   media_bench url KEY TTL_SECONDS           print a signed/presigned URL
 *   media_bench fetch-store URL KEY           GET URL into a scratch file
 *                                             (fetch_url_to_file: cap and
 *                                             SHA-256 on the way), store it
 *                                             under KEY; print the figures
 *   media_bench youtube-upload PATH           upload PATH with pub_youtube
 *                                             (a resumable session, chunks
 *                                             of youtube_chunk_size) to
 *                                             youtube_api_url with the
 *                                             access token in
 *                                             BENCH_YOUTUBE_TOKEN; print
 *                                             the figures
 *
 * Settings come from CROSSPOST_* environment variables over the defaults
 * (CROSSPOST_STORAGE_BACKEND, CROSSPOST_STORAGE_DIR, CROSSPOST_S3_*, ...),
 * or from --config FILE given first.  Exit status 0 on success, 1 with
 * a sentence on stderr otherwise (2 for a usage error).
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "fetch.h"
#include "http.h"
#include "platforms.h"
#include "publish.h"
#include "storage.h"

extern char **environ;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int fail(const char *what, int rc, const struct buf *err)
{
    fprintf(stderr, "media_bench: %s: %s%s%s\n", what, cp_strerror(rc), err && err->len ? ": " : "",
            err ? buf_str(err) : "");
    return 1;
}

/* fetch_url_to_file (the fetch task's routine: size cap, SHA-256 on the
 * way) into a scratch file, then store it under key. */
static int fetch_store(const struct conf *c, struct storage *st, const char *url,
                       const char *key)
{
    struct http_client *http = NULL;
    struct fetch_result res;
    struct buf err;
    char path[4096];
    double t0, t_fetched, t_stored;
    int rc;

    buf_init(&err, 1024);
    snprintf(path, sizeof path, "%s/bench-%ld.part", storage_scratch_dir(st), (long)getpid());
    rc = http_client_new(c, &http);
    if (rc)
        return fail("http client", rc, NULL);
    t0 = now_s();
    rc = fetch_url_to_file(c, http, url, path, 0, &res, &err);
    http_client_free(http);
    t_fetched = now_s();
    if (!rc)
        rc = storage_put_file(st, key, path, res.content_type, &err);
    t_stored = now_s();
    if (rc) {
        unlink(path);
        fail("fetch-store", rc, &err);
        buf_free(&err);
        return 1;
    }
    printf("bytes=%lld sha256=%s fetch_s=%.3f store_s=%.3f total_s=%.3f mib_s=%.1f "
           "peak_rss_kib=%ld\n",
           res.bytes, res.sha256, t_fetched - t0, t_stored - t_fetched, t_stored - t0,
           (double)res.bytes / (1024.0 * 1024.0) / (t_stored - t0), peak_rss_kib());
    buf_free(&err);
    return 0;
}

/* pub_youtube from an empty state, timed; the state is kept in memory. */
static int youtube_upload(const struct conf *c, const char *path)
{
    struct plat_creds creds = { .kind = AUTH_OAUTH2, .refresh_token = "" };
    struct pub_hooks hooks = { NULL, NULL, NULL, NULL };
    struct pub_request rq;
    struct pub_result res;
    struct pub_quota quota;
    struct plat_error err;
    struct plat_ctx pc = { c, NULL };
    struct json_object *state = json_object_new_object();
    struct stat sb;
    double t0, t1;
    int rc;

    creds.access_token = getenv("BENCH_YOUTUBE_TOKEN");
    memset(&rq, 0, sizeof rq);
    rq.creds = &creds;
    rq.account_id = "";
    rq.title = "Benchmark";
    rq.caption = "";
    rq.media.path = path;
    rq.media.content_type = "video/mp4";
    rc = stat(path, &sb) ? CP_EIO : http_client_new(c, &pc.http);
    if (rc || !state) {
        json_object_put(state);
        return fail("youtube-upload", rc ? rc : CP_ENOMEM, NULL);
    }
    t0 = now_s();
    rc = pub_youtube(&pc, &rq, state, &hooks, &res, &quota, &err);
    t1 = now_s();
    http_client_free(pc.http);
    json_object_put(state);
    if (rc) {
        fprintf(stderr, "media_bench: youtube-upload: %s: %s\n", plat_outcome_name(err.outcome),
                err.message);
        return 1;
    }
    printf("bytes=%lld video_id=%s total_s=%.3f mib_s=%.1f peak_rss_kib=%ld\n",
           (long long)sb.st_size, res.remote_id, t1 - t0,
           (double)sb.st_size / (1024.0 * 1024.0) / (t1 - t0), peak_rss_kib());
    return 0;
}

static int run(const struct conf *c, struct storage *st, int argc, char **argv)
{
    const char *cmd = argv[0];
    struct buf err, out;
    long long bytes = 0;
    int rc = 0, status = 0;

    buf_init(&err, 1024);
    buf_init(&out, 16384);
    if (strcmp(cmd, "put") == 0 && (argc == 3 || argc == 4)) {
        rc = storage_put_file(st, argv[1], argv[2], argc == 4 ? argv[3] : NULL, &err);
    } else if (strcmp(cmd, "get") == 0 && argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        rc = fd < 0 ? CP_EIO : storage_get_to_fd(st, argv[1], fd, &bytes, &err);
        if (fd >= 0 && close(fd) != 0 && !rc)
            rc = CP_EIO;
        if (!rc)
            printf("%lld\n", bytes);
    } else if (strcmp(cmd, "stat") == 0 && argc == 2) {
        rc = storage_stat(st, argv[1], &bytes, &err);
        if (!rc)
            printf("%lld\n", bytes);
    } else if (strcmp(cmd, "delete") == 0 && argc == 2) {
        rc = storage_delete(st, argv[1], &err);
    } else if (strcmp(cmd, "url") == 0 && argc == 3) {
        rc = storage_signed_url(st, argv[1], atoll(argv[2]) * 1000, &out);
        if (!rc)
            printf("%s\n", buf_str(&out));
    } else if (strcmp(cmd, "fetch-store") == 0 && argc == 3) {
        status = fetch_store(c, st, argv[1], argv[2]);
    } else if (strcmp(cmd, "youtube-upload") == 0 && argc == 2) {
        status = youtube_upload(c, argv[1]);
    } else {
        fprintf(stderr, "media_bench: unknown command or wrong arguments: %s\n", cmd);
        status = 2;
    }
    if (rc)
        status = fail(cmd, rc, &err);
    buf_free(&err);
    buf_free(&out);
    return status;
}

int main(int argc, char **argv)
{
    struct conf *c = NULL;
    struct storage *st = NULL;
    struct buf err;
    int rc, status;

    buf_init(&err, 1024);
    if (argc >= 3 && strcmp(argv[1], "--config") == 0) {
        rc = conf_load(&c, argv[2], &err);
        argc -= 2;
        argv += 2;
    } else {
        rc = conf_defaults(&c);
        rc = rc ? rc : conf_apply_env(c, environ, &err);
    }
    if (rc)
        return fail("configuration", rc, &err);
    if (argc < 2) {
        fprintf(stderr, "usage: media_bench [--config FILE] put|get|stat|delete|url|fetch-store|youtube-upload ...\n");
        conf_free(c);
        return 2;
    }
    rc = storage_open(c, &st, &err);
    if (rc) {
        conf_free(c);
        status = fail("storage", rc, &err);
        buf_free(&err);
        return status;
    }
    status = run(c, st, argc - 1, argv + 1);
    storage_free(st);
    conf_free(c);
    buf_free(&err);
    return status;
}
