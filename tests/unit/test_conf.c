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

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "log.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define KB 1024LL
#define MB (1024LL * 1024)
#define GB (1024LL * 1024 * 1024)

static const char *const all_keys[] = {
    "log_level", "log_file", "db_host", "db_port", "db_socket", "db_user",
    "db_password", "db_name", "db_connect_timeout", "db_read_timeout",
    "db_write_timeout", "memcached_servers", "memcached_timeout",
    "api_listen", "api_socket_mode", "api_socket_group", "api_children",
    "api_max_requests", "api_max_body", "api_graceful_timeout",
    "api_crash_limit", "api_crash_window", "api_pid_file",
    "json_max_depth", "json_max_string", "http_connect_timeout",
    "http_timeout", "http_max_response", "sql_dir", "jwt_key_file", "public_url",
    "jwt_audience", "access_token_ttl", "session_lifetime", "session_cookie_secure",
    "signup_enabled", "audit_retention", "login_throttle_after", "login_throttle_addr_after",
    "login_throttle_window", "api_rate_limit", "api_rate_window",
    "worker_queues", "worker_pid_file", "worker_claim_batch", "worker_poll_interval",
    "worker_wake_interval", "worker_heartbeat_interval", "worker_stale_after",
    "worker_stall_timeout", "worker_graceful_timeout", "worker_crash_limit",
    "worker_crash_window", "job_lease", "job_retry_base", "job_retry_cap", "job_retention",
    "dead_job_retention", "scheduler_interval",
    "secrets_key_file", "sandbox", "tiktok_client_key", "tiktok_client_secret",
    "tiktok_auth_url", "tiktok_api_url", "tiktok_web_url", "tiktok_scopes",
    "facebook_app_id", "facebook_app_secret", "facebook_auth_url",
    "facebook_graph_url", "facebook_graph_version", "instagram_upload_url",
    "instagram_scopes", "google_client_id", "google_client_secret",
    "google_auth_url", "google_token_url", "youtube_api_url", "youtube_scopes",
    "x_auth_mode", "x_consumer_key", "x_consumer_secret", "x_client_id",
    "x_client_secret", "x_api_url", "x_oauth2_auth_url", "x_scopes",
    "oauth_state_ttl", "oauth_return_path", "token_refresh_margin",
    "token_refresh_margin_long", "connection_check_interval",
    "connection_expiring_window", "connection_scan_interval", "sync_interval",
    "storage_backend", "storage_dir", "media_url_secret", "media_url_ttl",
    "s3_endpoint", "s3_bucket", "s3_region", "s3_access_key", "s3_secret_key",
    "s3_part_size", "media_max_bytes", "fetch_command", "fetch_timeout",
    "ffprobe_command", "ffmpeg_command", "sync_interval_min",
    "sync_interval_max", "webhook_max_age",
    "youtube_chunk_size", "youtube_daily_units", "youtube_insert_units",
    "youtube_channel_daily_uploads", "x_chunk_size", "x_user_posts", "x_user_window",
    "x_app_posts", "instagram_upload", "instagram_quota_recheck", "app_usage_defer_percent",
    "publish_poll_max", "publish_processing_deadline", "publication_stuck_after",
    "publication_sweep_interval", "media_transcode_timeout", "rule_backfill_max",
};
#define NKEYS (sizeof all_keys / sizeof all_keys[0])

static struct conf *defaults(void)
{
    struct conf *c = NULL;

    assert_int_equal(conf_defaults(&c), 0);
    assert_non_null(c);
    return c;
}

/* The effective value of key as conf_get_text prints it. */
static void expect_text(const struct conf *c, const char *key, const char *want)
{
    struct buf v;

    buf_init(&v, 8192);
    assert_int_equal(conf_get_text(c, key, &v), 0);
    if (strcmp(buf_str(&v), want) != 0)
        fail_msg("%s = '%s', expected '%s'", key, buf_str(&v), want);
    buf_free(&v);
}

static void test_defaults(void **state)
{
    struct conf *c = defaults();
    struct buf v;

    assert_int_equal(c->log_level, CP_LOG_INFO);
    assert_string_equal(c->log_file, "");
    assert_string_equal(c->db_host, "localhost");
    assert_int_equal(c->db_port, 3306);
    assert_string_equal(c->db_user, "crosspost");
    assert_string_equal(c->db_password, "");
    assert_int_equal(c->db_connect_timeout, 2000);
    assert_int_equal(c->db_read_timeout, 30000);
    assert_string_equal(c->memcached_servers, "127.0.0.1:11211");
    assert_int_equal(c->memcached_timeout, 500);
    assert_string_equal(c->api_listen, "unix:/run/crosspost/api.sock");
    assert_int_equal(c->api_socket_mode, 0660);
    assert_int_equal(c->api_children, 4);
    assert_int_equal(c->api_max_requests, 10000);
    assert_int_equal(c->api_max_body, 1 * MB);
    assert_int_equal(c->api_graceful_timeout, 30000);
    assert_int_equal(c->api_crash_limit, 10);
    assert_int_equal(c->api_crash_window, 10000);
    assert_int_equal(c->json_max_depth, 32);
    assert_int_equal(c->json_max_string, 64 * KB);
    assert_int_equal(c->http_connect_timeout, 10000);
    assert_int_equal(c->http_timeout, 60000);
    assert_int_equal(c->http_max_response, 8 * MB);
    assert_null(conf_file_path(c));

    expect_text(c, "api_socket_mode", "0660");
    expect_text(c, "api_max_body", "1M");
    expect_text(c, "memcached_timeout", "500ms");
    expect_text(c, "log_level", "info");
    expect_text(c, "db_password", "");
    buf_init(&v, 64);
    assert_int_equal(conf_get_text(c, "no_such_key", &v), CP_ENOTFOUND);
    buf_free(&v);
    conf_free(c);
    conf_free(NULL);
}

struct line_case {
    const char *text;
    int rc;
    const char *expect;   /* the error fragment, or "key=value" to check */
};

static const struct line_case line_cases[] = {
    /* good lines: key=value names the resulting conf_get_text value */
    { "db_name = plain", 0, "db_name=plain" },
    { "db_name=x", 0, "db_name=x" },
    { "   db_port   =   3307   ", 0, "db_port=3307" },
    { "db_port = 3307\r", 0, "db_port=3307" },
    { "db_name = plain # a comment", 0, "db_name=plain" },
    { "db_name = plain\t# a comment", 0, "db_name=plain" },
    { "db_name = a#b", 0, "db_name=a#b" },
    { "db_name = a = b", 0, "db_name=a = b" },
    { "db_name = \"with # hash\"", 0, "db_name=with # hash" },
    { "db_name = \"  padded  \"", 0, "db_name=  padded  " },
    { "db_name = \"quoted\" # comment", 0, "db_name=quoted" },
    { "db_name = \"\"", 0, "db_name=" },
    { "db_name =", 0, "db_name=" },
    { "# only a comment\n\n   \n\t# another", 0, "db_name=crosspost" },
    { "db_name = one\ndb_name = two", 0, "db_name=two" },
    { "log_level = DEBUG", 0, "log_level=debug" },
    { "log_level = error", 0, "log_level=error" },
    { "api_socket_mode = 0600", 0, "api_socket_mode=0600" },
    { "api_socket_mode = 777", 0, "api_socket_mode=0777" },
    { "api_max_requests = 0", 0, "api_max_requests=0" },

    /* bad lines */
    { "no_such_key = 1", CP_EINVAL, "test.conf:1: unknown key 'no_such_key'" },
    { "# c\n\ndb_name = x\nbogus = 2", CP_EINVAL, "test.conf:4: unknown key 'bogus'" },
    { "api_children", CP_EINVAL, "test.conf:1: expected 'key = value'" },
    { "api_children = abc", CP_EINVAL, "test.conf:1: value 'abc' of 'api_children' is not a whole number" },
    { "api_children = 4x", CP_EINVAL, "is not a whole number" },
    { "api_children = 1.5", CP_EINVAL, "is not a whole number" },
    { "api_children = ", CP_EINVAL, "is not a whole number" },
    { "api_children = 99999999999999999999", CP_EINVAL, "is not a whole number" },
    { "api_children = 0", CP_EINVAL, "is out of range (allowed: 1 to 256)" },
    { "api_children = 257", CP_EINVAL, "is out of range" },
    { "api_children = -1", CP_EINVAL, "is out of range" },
    { "db_port = 65536", CP_EINVAL, "'db_port' is out of range" },
    { "api_max_body = 8X", CP_EINVAL, "is not a size such as 512k, 8M or 1G" },
    { "api_max_body = M", CP_EINVAL, "is not a size" },
    { "api_max_body = 512", CP_EINVAL, "is out of range (allowed: 1024 to 67108864 bytes)" },
    { "api_max_body = 100G", CP_EINVAL, "is out of range" },
    { "api_max_body = 99999999999G", CP_EINVAL, "is out of range" },
    { "db_read_timeout = 5 minutes", CP_EINVAL, "is not a duration such as 250ms, 30s, 5m, 1h or 30d" },
    { "db_read_timeout = 5w", CP_EINVAL, "is not a duration" },
    { "db_read_timeout = 5d", CP_EINVAL, "is out of range" },
    { "session_lifetime = 7d", 0, "session_lifetime=7d" },
    { "db_read_timeout = 10ms", CP_EINVAL, "is out of range (allowed: 1000ms to 3600000ms)" },
    { "db_read_timeout = -5s", CP_EINVAL, "is out of range" },
    { "api_socket_mode = 0999", CP_EINVAL, "is not an octal mode such as 0660" },
    { "api_socket_mode = rw", CP_EINVAL, "is not an octal mode" },
    { "api_socket_mode = 01777", CP_EINVAL, "is out of range (allowed: 0 to 0777)" },
    { "log_level = verbose", CP_EINVAL, "is not one of the allowed values (allowed: debug info warn error)" },
    { "db_name = \"abc", CP_EINVAL, "test.conf:1: unterminated quoted value of 'db_name'" },
    { "db_name = \"", CP_EINVAL, "unterminated quoted value" },
    { "db_name = \"a\" b", CP_EINVAL, "unexpected text after the quoted value of 'db_name'" },
    { "= 5", CP_EINVAL, "unknown key ''" },
};

static void test_line_table(void **state)
{
    for (size_t i = 0; i < sizeof line_cases / sizeof line_cases[0]; i++) {
        const struct line_case *lc = &line_cases[i];
        struct conf *c = defaults();
        struct buf err;
        int rc;

        buf_init(&err, 4096);
        rc = conf_parse_text(c, "test.conf", lc->text, &err);
        if (rc != lc->rc)
            fail_msg("'%s': rc %d (%s), expected %d", lc->text, rc, buf_str(&err), lc->rc);
        if (rc == 0) {
            const char *eq = strchr(lc->expect, '=');
            char key[64];

            assert_non_null(eq);
            snprintf(key, sizeof key, "%.*s", (int)(eq - lc->expect), lc->expect);
            assert_int_equal(err.len, 0);
            expect_text(c, key, eq + 1);
        } else if (!strstr(buf_str(&err), lc->expect)) {
            fail_msg("'%s': error '%s' lacks '%s'", lc->text, buf_str(&err), lc->expect);
        }
        buf_free(&err);
        conf_free(c);
    }
}

static void test_long_value(void **state)
{
    struct conf *c = defaults();
    struct buf text, err;

    buf_init(&text, 8192);
    buf_init(&err, 1024);
    assert_int_equal(buf_adds(&text, "db_name = "), 0);
    for (int i = 0; i < 4097; i++)
        assert_int_equal(buf_addc(&text, 'n'), 0);
    assert_int_equal(conf_parse_text(c, "t", buf_str(&text), &err), CP_EINVAL);
    assert_non_null(strstr(buf_str(&err), "longer than 4096 bytes"));
    buf_free(&text);
    buf_free(&err);
    conf_free(c);
}

struct unit_case {
    const char *line;
    size_t offset;         /* of the long long field */
    long long value;
};

static const struct unit_case unit_cases[] = {
    { "api_max_body = 512k", offsetof(struct conf, api_max_body), 512 * KB },
    { "api_max_body = 512K", offsetof(struct conf, api_max_body), 512 * KB },
    { "api_max_body = 64kb", offsetof(struct conf, api_max_body), 64 * KB },
    { "api_max_body = 8M", offsetof(struct conf, api_max_body), 8 * MB },
    { "api_max_body = 2048", offsetof(struct conf, api_max_body), 2048 },
    { "api_max_body = 2048b", offsetof(struct conf, api_max_body), 2048 },
    { "http_max_response = 1G", offsetof(struct conf, http_max_response), 1 * GB },
    { "json_max_string = 16", offsetof(struct conf, json_max_string), 16 },
    { "memcached_timeout = 250ms", offsetof(struct conf, memcached_timeout), 250 },
    { "db_read_timeout = 30s", offsetof(struct conf, db_read_timeout), 30000 },
    { "db_read_timeout = 5m", offsetof(struct conf, db_read_timeout), 300000 },
    { "db_read_timeout = 1h", offsetof(struct conf, db_read_timeout), 3600000 },
    { "db_read_timeout = 45", offsetof(struct conf, db_read_timeout), 45000 },
    { "api_socket_mode = 0640", offsetof(struct conf, api_socket_mode), 0640 },
    { "json_max_depth = 1000", offsetof(struct conf, json_max_depth), 1000 },
};

static void test_units_table(void **state)
{
    for (size_t i = 0; i < sizeof unit_cases / sizeof unit_cases[0]; i++) {
        const struct unit_case *u = &unit_cases[i];
        struct conf *c = defaults();
        struct buf err;
        long long got;

        buf_init(&err, 1024);
        if (conf_parse_text(c, "t", u->line, &err) != 0)
            fail_msg("'%s': %s", u->line, buf_str(&err));
        memcpy(&got, (char *)c + u->offset, sizeof got);
        if (got != u->value)
            fail_msg("'%s': %lld, expected %lld", u->line, got, u->value);
        buf_free(&err);
        conf_free(c);
    }
}

static void test_env(void **state)
{
    char *good[] = {
        "PATH=/usr/bin",
        "CROSSPOST_API_CHILDREN=8",
        "CROSSPOST_DB_NAME=fromenv",
        "CROSSPOST_API_CHILDREN_EXTRA=1",
        "CROSSPOST_DB_PORTX=1",
        "crosspost_db_port=1",
        "CROSSPOST_MEMCACHED_TIMEOUT=250ms",
        NULL,
    };
    char *bad[] = { "CROSSPOST_API_CHILDREN=lots", NULL };
    char *range[] = { "CROSSPOST_DB_PORT=0", NULL };
    struct conf *c = defaults();
    struct buf err;
    char *out = NULL;
    size_t outlen = 0;
    FILE *fp;

    buf_init(&err, 1024);
    assert_int_equal(conf_apply_env(c, good, &err), 0);
    assert_int_equal(c->api_children, 8);
    assert_string_equal(c->db_name, "fromenv");
    assert_int_equal(c->db_port, 3306);
    assert_int_equal(c->memcached_timeout, 250);

    /* The source of each value is shown. */
    fp = open_memstream(&out, &outlen);
    assert_non_null(fp);
    conf_print(c, fp);
    fclose(fp);
    assert_non_null(strstr(out, "api_children"));
    assert_non_null(strstr(strstr(out, "\napi_children"), "# environment\n"));
    assert_non_null(strstr(strstr(out, "\ndb_port"), "# default\n"));
    free(out);

    assert_int_equal(conf_apply_env(c, bad, &err), CP_EINVAL);
    assert_non_null(strstr(buf_str(&err), "CROSSPOST_API_CHILDREN"));
    assert_non_null(strstr(buf_str(&err), "'lots'"));
    assert_non_null(strstr(buf_str(&err), "not a whole number"));
    buf_reset(&err);
    assert_int_equal(conf_apply_env(c, range, &err), CP_EINVAL);
    assert_non_null(strstr(buf_str(&err), "CROSSPOST_DB_PORT: value '0' of 'db_port' is out of range"));
    buf_free(&err);
    conf_free(c);
}

static void test_print_redacts_secret(void **state)
{
    struct conf *c = defaults();
    struct buf err;
    char *out = NULL;
    size_t outlen = 0;
    FILE *fp;

    buf_init(&err, 1024);
    assert_int_equal(conf_parse_text(c, "t", "db_password = hunter2-very-secret\ndb_user = alice", &err), 0);
    assert_string_equal(c->db_password, "hunter2-very-secret");
    fp = open_memstream(&out, &outlen);
    assert_non_null(fp);
    conf_print(c, fp);
    fclose(fp);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "db_password"));
    assert_non_null(strstr(strstr(out, "db_password"), "[redacted]"));
    assert_non_null(strstr(out, "alice"));
    assert_non_null(strstr(out, "# configuration file: (none)"));
    for (size_t i = 0; i < NKEYS; i++)
        if (!strstr(out, all_keys[i]))
            fail_msg("conf_print lacks %s", all_keys[i]);
    free(out);
    expect_text(c, "db_password", "[redacted]");
    buf_free(&err);
    conf_free(c);
}

static void test_print_defaults(void **state)
{
    char *out = NULL, needle[128];
    size_t outlen = 0, lines = 0;
    FILE *fp = open_memstream(&out, &outlen);

    assert_non_null(fp);
    conf_print_defaults(fp);
    fclose(fp);
    for (size_t i = 0; i < NKEYS; i++) {
        snprintf(needle, sizeof needle, "\n#%s = ", all_keys[i]);
        if (!strstr(out, needle))
            fail_msg("defaults lack %s", all_keys[i]);
    }
    /* Every key and nothing else: one "#name = default" line each (help
     * lines start "# "). */
    for (const char *p = out; p && *p;) {
        if (p[0] == '#' && p[1] != ' ')
            lines++;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    assert_int_equal(lines, NKEYS);
    assert_non_null(strstr(out, "#api_max_body = 1M\n"));
    assert_non_null(strstr(out, "(allowed: 1 to 256)"));
    free(out);
}

/* Write text to a new temporary file; the caller unlinks path. */
static void temp_conf(char *path, size_t size, const char *text)
{
    int fd;
    FILE *fp;

    snprintf(path, size, "/tmp/test_conf_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void test_load_file(void **state)
{
    char path[64], where[96];
    struct conf *c = NULL;
    struct buf err;

    unsetenv("CROSSPOST_CONFIG");
    unsetenv("CROSSPOST_API_CHILDREN");
    buf_init(&err, 1024);

    temp_conf(path, sizeof path, "# test\napi_children = 7\ndb_name = \"t db\"\n");
    assert_int_equal(conf_load(&c, path, &err), 0);
    assert_non_null(c);
    assert_int_equal(c->api_children, 7);
    assert_string_equal(c->db_name, "t db");
    assert_string_equal(conf_file_path(c), path);
    conf_free(c);

    /* The process environment wins over the file. */
    setenv("CROSSPOST_API_CHILDREN", "9", 1);
    assert_int_equal(conf_load(&c, path, &err), 0);
    assert_int_equal(c->api_children, 9);
    conf_free(c);
    unsetenv("CROSSPOST_API_CHILDREN");

    /* CROSSPOST_CONFIG names the file when no path is given. */
    setenv("CROSSPOST_CONFIG", path, 1);
    assert_int_equal(conf_load(&c, NULL, &err), 0);
    assert_int_equal(c->api_children, 7);
    conf_free(c);
    unsetenv("CROSSPOST_CONFIG");
    unlink(path);

    /* A bad line names the file and line. */
    temp_conf(path, sizeof path, "api_children = 7\n\nmystery = 1\n");
    c = (struct conf *)1;
    assert_int_equal(conf_load(&c, path, &err), CP_EINVAL);
    assert_null(c);
    snprintf(where, sizeof where, "%s:3: unknown key 'mystery'", path);
    assert_string_equal(buf_str(&err), where);
    unlink(path);

    /* A NUL byte would hide the rest of the file. */
    snprintf(path, sizeof path, "/tmp/test_conf_XXXXXX");
    {
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "db_name = a\0\nbogus = 1\n", 23), 23);
        close(fd);
    }
    buf_reset(&err);
    assert_int_equal(conf_load(&c, path, &err), CP_EINVAL);
    assert_non_null(strstr(buf_str(&err), "NUL"));
    unlink(path);
    buf_free(&err);
}

static void test_load_missing(void **state)
{
    struct conf *c = NULL;
    struct buf err;

    unsetenv("CROSSPOST_CONFIG");
    buf_init(&err, 1024);

    /* An explicit path must exist. */
    assert_int_equal(conf_load(&c, "/nonexistent/crosspost-test.conf", &err), CP_EIO);
    assert_null(c);
    assert_non_null(strstr(buf_str(&err), "/nonexistent/crosspost-test.conf"));
    assert_non_null(strstr(buf_str(&err), "cannot open"));

    /* So must one named by CROSSPOST_CONFIG. */
    buf_reset(&err);
    setenv("CROSSPOST_CONFIG", "/nonexistent/env.conf", 1);
    assert_int_equal(conf_load(&c, NULL, &err), CP_EIO);
    assert_non_null(strstr(buf_str(&err), "/nonexistent/env.conf"));
    unsetenv("CROSSPOST_CONFIG");

    /* A path that is not a readable file is reported, never skipped. */
    buf_reset(&err);
    assert_int_equal(conf_load(&c, "/tmp", &err), CP_EIO);
    assert_null(c);

    /* The default file may be absent: then the defaults apply. */
    if (access(SYSCONFDIR "/crosspost/crosspost.conf", F_OK) != 0 && errno == ENOENT) {
        buf_reset(&err);
        assert_int_equal(conf_load(&c, NULL, &err), 0);
        assert_non_null(c);
        assert_null(conf_file_path(c));
        assert_int_equal(err.len, 0);
        conf_free(c);
    }
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_line_table),
        cmocka_unit_test(test_long_value),
        cmocka_unit_test(test_units_table),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_print_redacts_secret),
        cmocka_unit_test(test_print_defaults),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_missing),
    };

    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
