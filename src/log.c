#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "log.h"

#define LOG_LINE_MAX 8192
#define LOG_MSG_MAX 4096

static const char *const level_names[] = { "debug", "info", "warn", "error" };

static struct {
    char prog[64];
    int level;
    int fd;
    char request_id[65];
    long long job_id;
} logger = { "crosspost", CP_LOG_INFO, STDERR_FILENO, "", 0 };

void log_init(const char *prog, int level)
{
    snprintf(logger.prog, sizeof logger.prog, "%s", prog ? prog : "crosspost");
    logger.level = level;
}

int log_open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (fd < 0)
        return CP_EIO;
    if (logger.fd != STDERR_FILENO)
        close(logger.fd);
    logger.fd = fd;
    return 0;
}

void log_set_level(int level) { logger.level = level; }
int log_get_level(void) { return logger.level; }

int log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "info";
}

void log_set_request_id(const char *request_id)
{
    snprintf(logger.request_id, sizeof logger.request_id, "%s",
             request_id ? request_id : "");
}

void log_set_job_id(long long job_id) { logger.job_id = job_id; }

int log_field_is_secret(const char *name)
{
    static const char *const words[] = {
        "password", "secret", "token", "cookie", "authorization", "key",
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(name, words[i]))
            return 1;
    return 0;
}

/* Start a line with the fixed fields; msg is escaped.  Returns the first
 * failed append: a buffer past its cap frees itself and would accept later
 * appends, so the caller must not finish a line after a failure. */
static int log_begin(struct buf *b, int level, const char *msg)
{
    struct timeval tv;
    struct tm tm;
    char ts[32];
    int rc;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    rc = buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"",
                    ts, (long)(tv.tv_usec / 1000), log_level_name(level));
    if (!rc)
        rc = buf_add_json_escaped(b, logger.prog, strlen(logger.prog));
    if (!rc)
        rc = buf_printf(b, "\",\"pid\":%ld,\"msg\":\"", (long)getpid());
    if (!rc)
        rc = buf_add_json_escaped(b, msg, strlen(msg));
    if (!rc)
        rc = buf_addc(b, '"');
    if (!rc && logger.request_id[0]) {
        rc = buf_adds(b, ",\"request_id\":\"");
        if (!rc)
            rc = buf_add_json_escaped(b, logger.request_id, strlen(logger.request_id));
        if (!rc)
            rc = buf_addc(b, '"');
    }
    if (!rc && logger.job_id)
        rc = buf_printf(b, ",\"job_id\":%lld", logger.job_id);
    return rc;
}

/* Close the line and write it; rc is the first failure while building it. */
static void log_end(struct buf *b, int level, int rc)
{
    ssize_t off = 0, n;

    if (!rc)
        rc = buf_adds(b, "}\n");
    if (rc) {
        /* The line passed its cap: say so rather than lose it silently. */
        buf_free(b);
        if (log_begin(b, level, "log line too long, dropped") || buf_adds(b, "}\n"))
            return;
    }
    while ((size_t)off < b->len) {
        n = write(logger.fd, b->data + off, b->len - (size_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += n;
    }
}

static void log_vmsg(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void log_vmsg(int level, const char *fmt, va_list ap)
{
    char msg[LOG_MSG_MAX];
    struct buf b;
    int saved = errno;

    if (level < logger.level)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    buf_init(&b, LOG_LINE_MAX);
    log_end(&b, level, log_begin(&b, level, msg));
    buf_free(&b);
    errno = saved;
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void log_syserr(const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_msg(CP_LOG_ERROR, "%s: %s", msg, strerror(saved));
    errno = saved;
}

void log_kv(int level, const char *msg, ...)
{
    struct buf b;
    va_list ap;
    const char *key;
    int saved = errno, rc;

    if (level < logger.level)
        return;
    buf_init(&b, LOG_LINE_MAX);
    rc = log_begin(&b, level, msg);
    va_start(ap, msg);
    while (!rc && (key = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        if (!val)
            val = "";
        if (log_field_is_secret(key))
            val = "[redacted]";
        rc = buf_adds(&b, ",\"");
        if (!rc)
            rc = buf_add_json_escaped(&b, key, strlen(key));
        if (!rc)
            rc = buf_adds(&b, "\":\"");
        if (!rc)
            rc = buf_add_json_escaped(&b, val, strlen(val));
        if (!rc)
            rc = buf_addc(&b, '"');
    }
    va_end(ap);
    log_end(&b, level, rc);
    buf_free(&b);
    errno = saved;
}
