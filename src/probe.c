#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "err.h"
#include "log.h"
#include "probe.h"

#define PROBE_MAX_JSON (1024 * 1024)
#define PROBE_TIMEOUT_MS (60 * 1000)
#define MAX_COMMAND_WORDS 16
#define MAX_ARGS 64

/* ------------------------------------------------ running programs -- */

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void probe_run_result_free(struct probe_run_result *r)
{
    if (r)
        buf_free(&r->out);
}

static void keep_tail(char *tail, size_t cap, const char *p, size_t n)
{
    size_t have = strlen(tail);

    if (n >= cap - 1) {
        memcpy(tail, p + n - (cap - 1), cap - 1);
        tail[cap - 1] = '\0';
        return;
    }
    if (have + n > cap - 1) {
        size_t drop = have + n - (cap - 1);
        memmove(tail, tail + drop, have - drop + 1);
        have -= drop;
    }
    memcpy(tail + have, p, n);
    tail[have + n] = '\0';
}

/* Split command on spaces into words (pointers into copy). */
static size_t split_words(char *copy, char **words, size_t max)
{
    size_t n = 0;
    char *save = NULL;

    for (char *w = strtok_r(copy, " \t", &save); w && n < max; w = strtok_r(NULL, " \t", &save))
        words[n++] = w;
    return n;
}

static void child_exec(char *const argv[], int out_fd, int err_fd)
{
    int null_fd = open("/dev/null", O_RDONLY);

    /* Its own process group, so a timeout kills whatever it started too;
     * and it dies with us rather than run on orphaned. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(126);
    closefrom(3);
    execvp(argv[0], argv);
    _exit(127);
}

static void kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

int probe_run(const char *command, const char *const *args, size_t nargs, long long timeout_ms,
              size_t max_out, probe_tick_fn tick, void *tick_arg, struct probe_run_result *r)
{
    char *copy = NULL;
    char *argv[MAX_COMMAND_WORDS + MAX_ARGS + 1];
    size_t nwords, i;
    int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
    pid_t pid = -1;
    int rc = 0, status = 0, open_fds = 2;
    long long deadline, next_tick;
    sigset_t block, old;

    memset(r, 0, sizeof *r);
    buf_init(&r->out, max_out);
    if (!command || !*command || nargs > MAX_ARGS)
        return CP_EINVAL;
    if (!(copy = strdup(command)))
        return CP_ENOMEM;
    nwords = split_words(copy, argv, MAX_COMMAND_WORDS);
    if (nwords == 0) {
        free(copy);
        return CP_EINVAL;
    }
    for (i = 0; i < nargs; i++)
        argv[nwords + i] = (char *)args[i];
    argv[nwords + nargs] = NULL;

    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        rc = CP_EIO;
        goto out;
    }
    /* No signal handler of ours may run in the child before exec. */
    sigfillset(&block);
    sigprocmask(SIG_BLOCK, &block, &old);
    pid = fork();
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGQUIT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGUSR1, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        child_exec(argv, out_pipe[1], err_pipe[1]);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_syserr("fork");
        rc = CP_EIO;
        goto out;
    }
    setpgid(pid, pid);   /* as the child does, whichever runs first */
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;

    deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : PROBE_TIMEOUT_MS);
    next_tick = mono_ms() + 1000;
    while (open_fds > 0) {
        struct pollfd pf[2] = { { out_pipe[0], POLLIN, 0 }, { err_pipe[0], POLLIN, 0 } };
        long long now = mono_ms();
        long long wait = deadline - now;
        char chunk[8192];
        int n;

        if (wait <= 0) {
            r->timed_out = 1;
            rc = CP_ETIMEDOUT;
            break;
        }
        if (tick && now >= next_tick) {
            int trc = tick(tick_arg);

            next_tick = now + 1000;
            if (trc) {
                rc = trc;
                break;
            }
        }
        if (wait > 1000)
            wait = 1000;
        n = poll(pf, 2, (int)wait);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = CP_EIO;
            break;
        }
        for (i = 0; i < 2; i++) {
            ssize_t got;

            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            got = read(pf[i].fd, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                close(pf[i].fd);
                if (i == 0)
                    out_pipe[0] = -1;
                else
                    err_pipe[0] = -1;
                open_fds--;
                continue;
            }
            if (i == 1) {
                keep_tail(r->err_tail, sizeof r->err_tail, chunk, (size_t)got);
            } else if (!r->out_overflow) {
                if (r->out.len + (size_t)got > r->out.max) {
                    r->out_overflow = 1;
                    buf_free(&r->out);
                } else if (buf_add(&r->out, chunk, (size_t)got)) {
                    r->out_overflow = 1;
                }
            }
        }
    }
    if (rc)
        kill_group(pid);
    /* The pipes may stay open in a grandchild; the exit is what counts. */
    for (;;) {
        pid_t w = waitpid(pid, &status, rc ? 0 : WNOHANG);

        if (w == pid)
            break;
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            if (!rc)
                rc = CP_EIO;
            break;
        }
        /* Still running with its pipes closed: give it to the deadline. */
        if (mono_ms() >= deadline) {
            r->timed_out = 1;
            rc = CP_ETIMEDOUT;
            kill_group(pid);
            continue;
        }
        usleep(20 * 1000);
    }
    /* Whatever it left running in its group goes too. */
    kill(-pid, SIGKILL);
    pid = -1;
    if (WIFEXITED(status)) {
        r->exited = 1;
        r->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->signal = WTERMSIG(status);
    }
    if (!rc && r->exited && r->exit_code == 127)
        rc = CP_EIO;   /* execvp failed: the program is not installed */

out:
    if (pid > 0) {
        kill_group(pid);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    for (i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    free(copy);
    return rc;
}

/* ------------------------------------------------------ box scan -- */

typedef int (*read_at_fn)(void *arg, long long off, unsigned char *dst, size_t n, size_t *got);

struct mem_src {
    const unsigned char *p;
    size_t len;
};

static int mem_read_at(void *arg, long long off, unsigned char *dst, size_t n, size_t *got)
{
    const struct mem_src *m = arg;

    *got = 0;
    if (off < 0 || (unsigned long long)off >= m->len)
        return 0;
    if (n > m->len - (size_t)off)
        n = m->len - (size_t)off;
    memcpy(dst, m->p + off, n);
    *got = n;
    return 0;
}

static int fd_read_at(void *arg, long long off, unsigned char *dst, size_t n, size_t *got)
{
    int fd = *(const int *)arg;

    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, dst + *got, n - *got, (off_t)(off + (long long)*got));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return CP_EIO;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int box_type_ok(const unsigned char *t)
{
    /* Four-character codes are letters, digits, spaces and the odd '©'. */
    for (int i = 0; i < 4; i++) {
        unsigned char c = t[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ' ' || c == 0xa9))
            return 0;
    }
    return 1;
}

static int scan(read_at_fn rd, void *arg, long long file_size, struct mp4_layout *out)
{
    long long off = 0;
    int rc;

    memset(out, 0, sizeof *out);
    out->moov_offset = out->mdat_offset = -1;
    while (off < file_size) {
        unsigned char h[16];
        size_t got;
        unsigned long long size;
        long long header = 8;

        if ((rc = rd(arg, off, h, sizeof h, &got)))
            return rc;
        if (got < 8) {
            out->truncated = 1;
            break;
        }
        if (!box_type_ok(h + 4))
            return CP_EPARSE;
        size = be32(h);
        if (size == 1) {
            if (got < 16) {
                out->truncated = 1;
                break;
            }
            size = (unsigned long long)be32(h + 8) << 32 | be32(h + 12);
            header = 16;
        } else if (size == 0) {
            size = (unsigned long long)(file_size - off);
        }
        if (size < (unsigned long long)header)
            return CP_EPARSE;
        out->boxes++;
        if (!memcmp(h + 4, "ftyp", 4)) {
            out->has_ftyp = 1;
        } else if (!memcmp(h + 4, "moov", 4)) {
            if (!out->has_moov)
                out->moov_offset = off;
            out->has_moov = 1;
        } else if (!memcmp(h + 4, "mdat", 4)) {
            if (!out->has_mdat)
                out->mdat_offset = off;
            out->has_mdat = 1;
        }
        if (size > (unsigned long long)(file_size - off)) {
            out->truncated = 1;
            break;
        }
        off += (long long)size;
    }
    if (out->boxes == 0)
        return CP_EPARSE;
    out->moov_front = out->has_moov && (!out->has_mdat || out->moov_offset < out->mdat_offset);
    return 0;
}

int probe_scan_mem(const unsigned char *p, size_t len, struct mp4_layout *out)
{
    struct mem_src m = { p, len };

    return scan(mem_read_at, &m, (long long)len, out);
}

int probe_scan_fd(int fd, struct mp4_layout *out)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        memset(out, 0, sizeof *out);
        return CP_EIO;
    }
    return scan(fd_read_at, &fd, (long long)st.st_size, out);
}

/* ---------------------------------------------------------- probing -- */

double probe_parse_rate(const char *s)
{
    char *end;
    double num, den;

    if (!s || !*s)
        return 0;
    errno = 0;
    num = strtod(s, &end);
    if (end == s || errno)
        return 0;
    if (*end == '\0')
        return isfinite(num) && num > 0 ? num : 0;
    if (*end != '/')
        return 0;
    s = end + 1;
    den = strtod(s, &end);
    if (end == s || *end != '\0' || den <= 0 || num <= 0)
        return 0;
    num /= den;
    return isfinite(num) ? num : 0;
}

/* Nearest integer without libm (the library does not link it). */
static long long round_ll(double d)
{
    if (d >= 9e18)
        return 9000000000000000000LL;
    if (d <= -9e18)
        return -9000000000000000000LL;
    return (long long)(d < 0 ? d - 0.5 : d + 0.5);
}

static int normalise_degrees(double d)
{
    long long q;

    if (!isfinite(d))
        return 0;
    q = round_ll(d / 90.0);
    q %= 4;
    if (q < 0)
        q += 4;
    return (int)(q * 90);
}

int probe_rotation_from_matrix(double rotation)
{
    /* ffprobe prints the displaymatrix angle counter-clockwise (-90 for a
     * phone held upright); the rotate tag and our field are clockwise. */
    return normalise_degrees(-rotation);
}

int probe_rotation_from_tag(long long degrees)
{
    return normalise_degrees((double)degrees);
}

static const char *str_of(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!o || !json_object_object_get_ex(o, key, &v) || !v)
        return NULL;
    return json_object_get_string(v);
}

/* A number that ffprobe may print as a string ("12.345", "900000"). */
static int num_of(struct json_object *o, const char *key, double *out)
{
    struct json_object *v;
    const char *s;
    char *end;

    if (!o || !json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return isfinite(*out);
    }
    if (!json_object_is_type(v, json_type_string))
        return 0;
    s = json_object_get_string(v);
    errno = 0;
    *out = strtod(s, &end);
    return end != s && *end == '\0' && !errno && isfinite(*out);
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static int stream_rotation(struct json_object *st)
{
    struct json_object *sdl, *tags;
    double d;

    if (json_object_object_get_ex(st, "side_data_list", &sdl) &&
        json_object_is_type(sdl, json_type_array)) {
        size_t n = json_object_array_length(sdl);

        for (size_t i = 0; i < n; i++) {
            struct json_object *sd = json_object_array_get_idx(sdl, i);

            if (num_of(sd, "rotation", &d))
                return probe_rotation_from_matrix(d);
        }
    }
    if (json_object_object_get_ex(st, "tags", &tags) && num_of(tags, "rotate", &d) &&
        d > -1e9 && d < 1e9)
        return probe_rotation_from_tag((long long)d);
    return 0;
}

int probe_parse_json(const char *json, size_t len, struct video_probe *out)
{
    struct json_tokener *tok = NULL;
    struct json_object *root = NULL, *streams, *format;
    struct json_object *video = NULL, *audio = NULL;
    double d;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (!json || len == 0 || len > PROBE_MAX_JSON)
        return CP_EPARSE;
    if (!(tok = json_tokener_new()))
        return CP_ENOMEM;
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success ||
        !json_object_is_type(root, json_type_object)) {
        rc = CP_EPARSE;
        goto out;
    }
    if (json_object_object_get_ex(root, "streams", &streams) &&
        json_object_is_type(streams, json_type_array)) {
        size_t n = json_object_array_length(streams);

        for (size_t i = 0; i < n; i++) {
            struct json_object *st = json_object_array_get_idx(streams, i);
            const char *type = str_of(st, "codec_type");
            struct json_object *disp, *attached;

            if (!type)
                continue;
            /* Cover art is a "video" stream too; it is no video. */
            if (json_object_object_get_ex(st, "disposition", &disp) &&
                json_object_object_get_ex(disp, "attached_pic", &attached) &&
                json_object_get_int(attached))
                continue;
            if (!strcmp(type, "video") && !video)
                video = st;
            else if (!strcmp(type, "audio") && !audio)
                audio = st;
        }
    }
    if (!json_object_object_get_ex(root, "format", &format))
        format = NULL;
    if (!video) {
        rc = CP_ENOTFOUND;
        goto out;
    }
    if (num_of(video, "width", &d) && d > 0 && d < 1e9)
        out->width = (long long)d;
    if (num_of(video, "height", &d) && d > 0 && d < 1e9)
        out->height = (long long)d;
    out->rotation = stream_rotation(video);
    out->fps = probe_parse_rate(str_of(video, "avg_frame_rate"));
    if (out->fps == 0)
        out->fps = probe_parse_rate(str_of(video, "r_frame_rate"));
    copy_str(out->video_codec, sizeof out->video_codec, str_of(video, "codec_name"));
    if (audio) {
        copy_str(out->audio_codec, sizeof out->audio_codec, str_of(audio, "codec_name"));
        if (num_of(audio, "sample_rate", &d) && d > 0 && d < 1e12)
            out->audio_rate = (long long)d;
    }
    if (num_of(format, "duration", &d) && d > 0)
        out->duration_ms = round_ll(d * 1000.0);
    else if (num_of(video, "duration", &d) && d > 0)
        out->duration_ms = round_ll(d * 1000.0);
    if (num_of(format, "bit_rate", &d) && d > 0 && d < 1e15)
        out->bitrate = (long long)d;
    copy_str(out->container, sizeof out->container, str_of(format, "format_name"));

out:
    if (rc)
        memset(out, 0, sizeof *out);
    json_object_put(root);
    json_tokener_free(tok);
    return rc;
}

/* The last non-empty line of a program's stderr, for messages. */
static void last_line(const char *tail, char *dst, size_t cap)
{
    const char *end = tail + strlen(tail), *start;

    while (end > tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    start = end;
    while (start > tail && start[-1] != '\n')
        start--;
    snprintf(dst, cap, "%.*s", (int)(end - start), start);
}

int probe_file(const struct conf *c, const char *path, struct video_probe *out, struct buf *err)
{
    const char *args[] = { "-v", "error", "-print_format", "json", "-show_format",
                           "-show_streams", "--", path };
    struct probe_run_result r;
    struct video_probe p;
    struct mp4_layout layout;
    char why[256];
    int rc, fd;

    memset(out, 0, sizeof *out);
    rc = probe_run(c->ffprobe_command, args, sizeof args / sizeof args[0], PROBE_TIMEOUT_MS,
                   PROBE_MAX_JSON, NULL, NULL, &r);
    if (rc) {
        buf_setf(err, rc == CP_ETIMEDOUT ? "ffprobe took too long" : "ffprobe could not be run");
        goto out;
    }
    if (r.out_overflow) {
        buf_setf(err, "ffprobe printed more than %d bytes", PROBE_MAX_JSON);
        rc = CP_EPROTO;
        goto out;
    }
    if (!r.exited || r.exit_code != 0) {
        last_line(r.err_tail, why, sizeof why);
        buf_setf(err, "not a video: ffprobe cannot read it (%s)", why[0] ? why : "no reason given");
        rc = CP_EPROTO;
        goto out;
    }
    rc = probe_parse_json(r.out.data, r.out.len, &p);
    if (rc == CP_ENOTFOUND) {
        buf_setf(err, "not a video: no video stream");
        goto out;
    }
    if (rc) {
        buf_setf(err, "ffprobe's output could not be parsed");
        rc = CP_EPROTO;
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (probe_scan_fd(fd, &layout) == 0)
            p.moov_front = layout.moov_front;
        close(fd);
    }
    *out = p;

out:
    probe_run_result_free(&r);
    return rc;
}

int probe_thumbnail(const struct conf *c, const char *video_path, long long duration_ms,
                    const char *out_path, struct buf *err)
{
    char at[32];
    long long at_ms = duration_ms > 0 && duration_ms / 2 < 1000 ? duration_ms / 2 : 1000;
    const char *args[] = { "-nostdin", "-v", "error", "-ss", at, "-i", video_path,
                           "-frames:v", "1", "-vf", "scale=320:-2", "-f", "image2",
                           "-y", out_path };
    struct probe_run_result r;
    struct stat st;
    char why[256];
    int rc;

    snprintf(at, sizeof at, "%lld.%03lld", at_ms / 1000, at_ms % 1000);
    rc = probe_run(c->ffmpeg_command, args, sizeof args / sizeof args[0], PROBE_TIMEOUT_MS,
                   64 * 1024, NULL, NULL, &r);
    if (rc) {
        buf_setf(err, rc == CP_ETIMEDOUT ? "ffmpeg took too long" : "ffmpeg could not be run");
        goto out;
    }
    if (!r.exited || r.exit_code != 0 || stat(out_path, &st) < 0 || st.st_size == 0) {
        last_line(r.err_tail, why, sizeof why);
        buf_setf(err, "ffmpeg made no thumbnail (%s)", why[0] ? why : "no reason given");
        rc = CP_EPROTO;
    }

out:
    probe_run_result_free(&r);
    return rc;
}
