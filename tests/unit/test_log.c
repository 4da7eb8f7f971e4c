#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "err.h"
#include "log.h"

#define MAX_LINES 64

/* The log file of the running test and the lines read back from it. */
static char log_path[64];
static char *log_text;
static char *lines[MAX_LINES];
static size_t nlines;

static void start_log(int level)
{
    int fd;

    snprintf(log_path, sizeof log_path, "/tmp/test_log_XXXXXX");
    fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);
    log_init("test-log", level);
    assert_int_equal(log_open_file(log_path), 0);
    log_set_request_id(NULL);
    log_set_job_id(0);
}

/* Read the file back, split into lines; each must end in a newline. */
static void read_lines(void)
{
    FILE *fp = fopen(log_path, "r");
    size_t len = 0;
    char *p;

    assert_non_null(fp);
    free(log_text);
    log_text = calloc(1, 1 << 20);
    assert_non_null(log_text);
    len = fread(log_text, 1, (1 << 20) - 1, fp);
    fclose(fp);
    assert_int_equal(strlen(log_text), len);   /* no NUL bytes */
    nlines = 0;
    for (p = log_text; *p;) {
        char *nl = strchr(p, '\n');
        if (!nl)
            fail_msg("line without a newline: %s", p);
        *nl = '\0';
        assert_true(nlines < MAX_LINES);
        lines[nlines++] = p;
        p = nl + 1;
    }
}

static void finish_log(void)
{
    unlink(log_path);
    free(log_text);
    log_text = NULL;
    nlines = 0;
}

static const char *get_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Parse one line strictly and check the fixed fields; the caller puts it. */
static struct json_object *parse_line(const char *line)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o, *pid;
    const char *ts;

    assert_non_null(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, line, (int)strlen(line) + 1);
    if (!o || json_tokener_get_error(tok) != json_tokener_success)
        fail_msg("not JSON: %s", line);
    json_tokener_free(tok);
    assert_true(json_object_is_type(o, json_type_object));

    ts = get_str(o, "ts");
    assert_non_null(ts);
    /* 2026-11-22T04:28:16.123Z */
    if (strlen(ts) != 24 || ts[4] != '-' || ts[10] != 'T' || ts[19] != '.' || ts[23] != 'Z')
        fail_msg("bad ts: %s", ts);
    assert_non_null(get_str(o, "level"));
    assert_non_null(get_str(o, "msg"));
    assert_string_equal(get_str(o, "prog"), "test-log");
    assert_true(json_object_object_get_ex(o, "pid", &pid));
    assert_true(json_object_is_type(pid, json_type_int));
    assert_int_equal(json_object_get_int64(pid), getpid());
    return o;
}

static void test_fixed_fields(void **state)
{
    struct json_object *o;

    start_log(CP_LOG_DEBUG);
    log_info("hello %d", 42);
    read_lines();
    assert_int_equal(nlines, 1);
    o = parse_line(lines[0]);
    assert_string_equal(get_str(o, "level"), "info");
    assert_string_equal(get_str(o, "msg"), "hello 42");
    assert_false(json_object_object_get_ex(o, "request_id", NULL));
    assert_false(json_object_object_get_ex(o, "job_id", NULL));
    json_object_put(o);
    finish_log();
}

static void test_context_fields(void **state)
{
    struct json_object *o, *job;

    start_log(CP_LOG_DEBUG);
    log_set_request_id("req-\"1\"");
    log_info("with request");
    log_set_job_id(7);
    log_warn("with both");
    log_set_request_id(NULL);
    log_error("with job");
    log_set_job_id(0);
    log_info("with neither");
    read_lines();
    assert_int_equal(nlines, 4);

    o = parse_line(lines[0]);
    assert_string_equal(get_str(o, "request_id"), "req-\"1\"");
    assert_false(json_object_object_get_ex(o, "job_id", NULL));
    json_object_put(o);

    o = parse_line(lines[1]);
    assert_string_equal(get_str(o, "level"), "warn");
    assert_string_equal(get_str(o, "request_id"), "req-\"1\"");
    assert_true(json_object_object_get_ex(o, "job_id", &job));
    assert_true(json_object_is_type(job, json_type_int));
    assert_int_equal(json_object_get_int64(job), 7);
    json_object_put(o);

    o = parse_line(lines[2]);
    assert_string_equal(get_str(o, "level"), "error");
    assert_false(json_object_object_get_ex(o, "request_id", NULL));
    assert_true(json_object_object_get_ex(o, "job_id", NULL));
    json_object_put(o);

    o = parse_line(lines[3]);
    assert_false(json_object_object_get_ex(o, "request_id", NULL));
    assert_false(json_object_object_get_ex(o, "job_id", NULL));
    json_object_put(o);
    finish_log();
}

static void test_level_filter(void **state)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };

    for (int min = CP_LOG_DEBUG; min <= CP_LOG_ERROR; min++) {
        start_log(CP_LOG_DEBUG);
        log_set_level(min);
        assert_int_equal(log_get_level(), min);
        log_debug("d");
        log_info("i");
        log_warn("w");
        log_error("e");
        log_kv(CP_LOG_DEBUG, "kv debug", "k1", "v", LOG_END);
        log_kv(CP_LOG_ERROR, "kv error", "k1", "v", LOG_END);
        read_lines();
        /* Levels min..error from log_msg, plus the error from log_kv. */
        if (nlines != (size_t)(4 - min) + 1 + (min == CP_LOG_DEBUG))
            fail_msg("min %d: %zu lines", min, nlines);
        for (size_t i = 0; i < (size_t)(4 - min); i++) {
            struct json_object *o = parse_line(lines[i]);
            assert_string_equal(get_str(o, "level"), names[min + (int)i]);
            json_object_put(o);
        }
        finish_log();
    }
}

struct secret_case {
    const char *field;
    int secret;
};

static const struct secret_case secret_cases[] = {
    { "password", 1 },
    { "db_password", 1 },
    { "PASSWORD", 1 },
    { "token", 1 },
    { "access_token", 1 },
    { "refresh_token", 1 },
    { "authorization", 1 },
    { "Authorization", 1 },
    { "api_key", 1 },
    { "X-Api-Key", 1 },
    { "cookie", 1 },
    { "Set-Cookie", 1 },
    { "client_secret", 1 },
    { "user", 0 },
    { "path", 0 },
    { "status", 0 },
    { "platform", 0 },
};

static void test_kv_redaction(void **state)
{
    const size_t n = sizeof secret_cases / sizeof secret_cases[0];

    start_log(CP_LOG_DEBUG);
    for (size_t i = 0; i < n; i++) {
        const struct secret_case *c = &secret_cases[i];
        if (!!log_field_is_secret(c->field) != c->secret)
            fail_msg("log_field_is_secret(%s) != %d", c->field, c->secret);
        log_kv(CP_LOG_INFO, "kv", c->field, "s3cr3t-value", LOG_END);
    }
    read_lines();
    assert_int_equal(nlines, n);
    for (size_t i = 0; i < n; i++) {
        const struct secret_case *c = &secret_cases[i];
        struct json_object *o = parse_line(lines[i]);
        const char *v = get_str(o, c->field);

        assert_non_null(v);
        if (c->secret) {
            assert_string_equal(v, "[redacted]");
            if (strstr(lines[i], "s3cr3t"))
                fail_msg("%s leaked: %s", c->field, lines[i]);
        } else {
            assert_string_equal(v, "s3cr3t-value");
        }
        json_object_put(o);
    }
    finish_log();
}

static void test_kv_fields(void **state)
{
    struct json_object *o;

    start_log(CP_LOG_DEBUG);
    log_kv(CP_LOG_WARN, "request done", "method", "GET", "path", "/a\"b\\c\n",
           "empty", (const char *)NULL, "password", "pw", LOG_END);
    read_lines();
    assert_int_equal(nlines, 1);
    o = parse_line(lines[0]);
    assert_string_equal(get_str(o, "level"), "warn");
    assert_string_equal(get_str(o, "msg"), "request done");
    assert_string_equal(get_str(o, "method"), "GET");
    assert_string_equal(get_str(o, "path"), "/a\"b\\c\n");
    assert_string_equal(get_str(o, "empty"), "");
    assert_string_equal(get_str(o, "password"), "[redacted]");
    json_object_put(o);
    finish_log();
}

static const char *const awkward_messages[] = {
    "plain",
    "",
    "say \"hi\"",
    "back\\slash",
    "two\nlines",
    "carriage\rreturn\r\n",
    "tab\there",
    "bell\x07 esc\x1b[0m del\x7f",
    "\x01\x02\x03\x1f",
    "}\n{\"level\":\"error\",\"msg\":\"forged\"}",
    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    "percent %d %s %n",
};

static void test_awkward_messages(void **state)
{
    const size_t n = sizeof awkward_messages / sizeof awkward_messages[0];

    start_log(CP_LOG_DEBUG);
    for (size_t i = 0; i < n; i++) {
        log_info("%s", awkward_messages[i]);
        log_kv(CP_LOG_INFO, awkward_messages[i], "field", awkward_messages[i], LOG_END);
    }
    read_lines();
    assert_int_equal(nlines, 2 * n);
    for (size_t i = 0; i < 2 * n; i++) {
        struct json_object *o = parse_line(lines[i]);
        assert_string_equal(get_str(o, "msg"), awkward_messages[i / 2]);
        if (i % 2)
            assert_string_equal(get_str(o, "field"), awkward_messages[i / 2]);
        json_object_put(o);
    }
    finish_log();
}

static void test_oversized_lines(void **state)
{
    static char big[9001];
    struct json_object *o;

    start_log(CP_LOG_DEBUG);
    /* Escaping makes 4000 control bytes 24000 bytes, past the line cap. */
    memset(big, '\x01', 4000);
    big[4000] = '\0';
    log_info("%s", big);
    /* A long message is cut to fit. */
    memset(big, 'a', 9000);
    big[9000] = '\0';
    log_info("%s", big);
    /* A long field value passes the cap. */
    log_set_request_id("r1");
    log_kv(CP_LOG_ERROR, "big field", "body", big, LOG_END);
    log_info("after");
    read_lines();
    assert_int_equal(nlines, 4);

    o = parse_line(lines[0]);
    assert_string_equal(get_str(o, "msg"), "log line too long, dropped");
    assert_string_equal(get_str(o, "level"), "info");
    json_object_put(o);

    o = parse_line(lines[1]);
    assert_true(strlen(get_str(o, "msg")) > 1000);
    assert_true(strlen(get_str(o, "msg")) < 8000);
    json_object_put(o);

    o = parse_line(lines[2]);
    assert_string_equal(get_str(o, "msg"), "log line too long, dropped");
    assert_string_equal(get_str(o, "level"), "error");
    assert_string_equal(get_str(o, "request_id"), "r1");
    json_object_put(o);

    o = parse_line(lines[3]);
    assert_string_equal(get_str(o, "msg"), "after");
    json_object_put(o);
    finish_log();
}

static void test_syserr_and_errno(void **state)
{
    struct json_object *o;

    start_log(CP_LOG_DEBUG);
    errno = ENOENT;
    log_syserr("open %s", "/x");
    assert_int_equal(errno, ENOENT);
    errno = EACCES;
    log_info("keeps errno");
    log_debug("filtered or not, keeps errno");
    assert_int_equal(errno, EACCES);
    read_lines();
    assert_int_equal(nlines, 3);
    o = parse_line(lines[0]);
    assert_string_equal(get_str(o, "level"), "error");
    assert_string_equal(get_str(o, "msg"), "open /x: No such file or directory");
    json_object_put(o);
    finish_log();
}

static void test_open_file_fails(void **state)
{
    assert_int_equal(log_open_file("/nonexistent-dir/x.log"), CP_EIO);
}

struct level_case {
    const char *name;
    int level;
};

static const struct level_case level_cases[] = {
    { "debug", CP_LOG_DEBUG },
    { "info", CP_LOG_INFO },
    { "warn", CP_LOG_WARN },
    { "error", CP_LOG_ERROR },
    { "INFO", CP_LOG_INFO },
    { "Warn", CP_LOG_WARN },
    { "warning", -1 },
    { "err", -1 },
    { "fatal", -1 },
    { "", -1 },
    { " info", -1 },
    { NULL, -1 },
};

static void test_level_parse(void **state)
{
    for (size_t i = 0; i < sizeof level_cases / sizeof level_cases[0]; i++) {
        const struct level_case *c = &level_cases[i];
        int got = log_level_parse(c->name);
        if (got != c->level)
            fail_msg("log_level_parse(%s) = %d, expected %d",
                     c->name ? c->name : "NULL", got, c->level);
    }
    assert_string_equal(log_level_name(CP_LOG_DEBUG), "debug");
    assert_string_equal(log_level_name(CP_LOG_INFO), "info");
    assert_string_equal(log_level_name(CP_LOG_WARN), "warn");
    assert_string_equal(log_level_name(CP_LOG_ERROR), "error");
    assert_string_equal(log_level_name(-1), "info");
    assert_string_equal(log_level_name(99), "info");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_fields),
        cmocka_unit_test(test_context_fields),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_kv_redaction),
        cmocka_unit_test(test_kv_fields),
        cmocka_unit_test(test_awkward_messages),
        cmocka_unit_test(test_oversized_lines),
        cmocka_unit_test(test_syserr_and_errno),
        cmocka_unit_test(test_open_file_fails),
        cmocka_unit_test(test_level_parse),
    };

    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
