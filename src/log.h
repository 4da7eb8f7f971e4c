/*
 * log.h - JSON-lines logging.
 *
 * Each call writes one line, one JSON object, with a single write(2):
 *   {"ts":"2026-11-22T04:28:16.123Z","level":"info","prog":"crosspost-api",
 *    "pid":42,"msg":"...","request_id":"...","job_id":7, ...extra fields}
 * request_id and job_id come from the per-process context set below, so a
 * handler or task never has to pass them along.
 *
 * Secrets never reach the log: log_kv() replaces the value of any field
 * whose name contains password, secret, token, cookie, authorization or key
 * with "[redacted]", and callers must not format secrets into messages.
 */
#ifndef CP_LOG_H
#define CP_LOG_H

enum cp_log_level {
    CP_LOG_DEBUG = 0,
    CP_LOG_INFO = 1,
    CP_LOG_WARN = 2,
    CP_LOG_ERROR = 3,
};

/* Name the program and pick the minimum level; output goes to stderr. */
void log_init(const char *prog, int level);

/* Send output to a file (opened for append) instead of stderr; reopening
 * the same path after rotation is safe.  Returns 0 or CP_EIO. */
int log_open_file(const char *path);

void log_set_level(int level);
int log_get_level(void);

/* Parse "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/* Context fields added to every line until cleared (NULL / 0). */
void log_set_request_id(const char *request_id);
void log_set_job_id(long long job_id);

void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A message with extra string fields: key, value pairs ending in LOG_END. */
void log_kv(int level, const char *msg, ...) __attribute__((sentinel));

/* The sentinel of log_kv(), typed so variadic passing is well defined. */
#define LOG_END ((const char *)NULL)

/* log_msg at CP_LOG_ERROR with ": strerror(errno)" appended. */
void log_syserr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when a field name looks like it holds a secret. */
int log_field_is_secret(const char *name);

#define log_debug(...) log_msg(CP_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(CP_LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(CP_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(CP_LOG_ERROR, __VA_ARGS__)

#endif
