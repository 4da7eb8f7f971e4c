#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "cache.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "ratelimit.h"

/*
 * The schedule is checked as a table; the counters against a private
 * memcached started here on a unix socket (skipped when memcached is not
 * installed), with the clock passed in so no test sleeps; failing open
 * against a server that is not there.
 */

#define T0 1700000000000LL        /* an arbitrary unix time in ms */

struct fixture {
    char dir[64];
    char sock[128];
    pid_t pid;
    struct conf *conf;
    struct cache *cache;
};

static void test_delay_table(void **state)
{
    static const struct {
        long long failures, after, max_s, want_ms;
    } cases[] = {
        { 0, 5, 300, 0 },
        { 4, 5, 300, 0 },
        { 5, 5, 300, 1000 },
        { 6, 5, 300, 2000 },
        { 7, 5, 300, 4000 },
        { 13, 5, 300, 256000 },
        { 14, 5, 300, 300000 },          /* capped */
        { 1000000, 5, 300, 300000 },     /* no overflow */
        { 19, 20, 900, 0 },
        { 20, 20, 900, 1000 },
        { 30, 20, 900, 900000 },
        { 1, 1, 300, 1000 },
        { 3, 0, 300, 4000 },             /* after below 1 counts as 1 */
        { 5, 5, 0, 0 },                  /* no cap, no delay */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long got = ratelimit_delay_ms(cases[i].failures, cases[i].after, cases[i].max_s);
        if (got != cases[i].want_ms)
            fail_msg("case %zu: delay(%lld, %lld, %lld) = %lld, expected %lld", i,
                     cases[i].failures, cases[i].after, cases[i].max_s, got, cases[i].want_ms);
    }
}

static struct conf *conf_with(const char *text)
{
    struct conf *c = NULL;
    struct buf err;

    buf_init(&err, 1024);
    assert_int_equal(conf_defaults(&c), 0);
    if (text && conf_parse_text(c, "test", text, &err))
        fail_msg("config: %s", buf_str(&err));
    buf_free(&err);
    return c;
}

static int start_memcached(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct buf text;
    int i;

    if (!f)
        return -1;
    *state = f;
    if (access("/usr/bin/memcached", X_OK) != 0)
        return 0;
    snprintf(f->dir, sizeof f->dir, "/tmp/cp-rl-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->sock, sizeof f->sock, "%s/mc.sock", f->dir);
    f->pid = fork();
    if (f->pid < 0)
        return -1;
    if (f->pid == 0) {
        /* memcached refuses to run as root without -u. */
        if (geteuid() == 0)
            execl("/usr/bin/memcached", "memcached", "-s", f->sock, "-m", "8", "-u", "root", (char *)NULL);
        else
            execl("/usr/bin/memcached", "memcached", "-s", f->sock, "-m", "8", (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 500 && access(f->sock, F_OK) != 0; i++)
        usleep(10000);
    if (access(f->sock, F_OK) != 0)
        return -1;
    buf_init(&text, 512);
    buf_printf(&text, "memcached_servers = %s\n", f->sock);
    f->conf = conf_with(buf_str(&text));
    buf_free(&text);
    return cache_open(f->conf, &f->cache) ? -1 : 0;
}

static int stop_memcached(void **state)
{
    struct fixture *f = *state;

    cache_close(f->cache);
    conf_free(f->conf);
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        unlink(f->sock);
        rmdir(f->dir);
    }
    free(f);
    return 0;
}

static struct fixture *need_memcached(void **state)
{
    struct fixture *f = *state;

    if (!f->cache)
        skip();
    return f;
}

static void fail_n(struct fixture *f, const char *email, const char *addr, int n, long long at)
{
    for (int i = 0; i < n; i++)
        ratelimit_login_failed(f->cache, f->conf, email, addr, at);
}

static void expect_wait(struct fixture *f, const char *email, const char *addr, long long at,
                         int want_rc, long long want_retry)
{
    long long retry = -1;
    int rc = ratelimit_login_check(f->cache, f->conf, email, addr, at, &retry);

    if (rc != want_rc || retry != want_retry)
        fail_msg("check(%s, %s, +%lld ms) = %d retry %lld; expected %d retry %lld", email, addr,
                 at - T0, rc, retry, want_rc, want_retry);
}

static void test_account_delays_grow(void **state)
{
    struct fixture *f = need_memcached(state);
    const char *who = "grow@example.com", *addr = "192.0.2.1";

    fail_n(f, who, addr, 4, T0);
    expect_wait(f, who, addr, T0, 0, 0);                /* four failures: no wait */
    fail_n(f, who, addr, 1, T0);
    expect_wait(f, who, addr, T0, CP_ERETRY, 1);        /* fifth: 1 s */
    expect_wait(f, who, addr, T0 + 999, CP_ERETRY, 1);
    expect_wait(f, who, addr, T0 + 1000, 0, 0);
    fail_n(f, who, addr, 1, T0 + 1000);
    expect_wait(f, who, addr, T0 + 1000, CP_ERETRY, 2); /* sixth: 2 s */
    expect_wait(f, who, addr, T0 + 2500, CP_ERETRY, 1); /* rounded up */
    expect_wait(f, who, addr, T0 + 3000, 0, 0);
    /* Another address and another account are not affected. */
    expect_wait(f, who, "192.0.2.2", T0 + 1000, CP_ERETRY, 2);
    expect_wait(f, "other@example.com", addr, T0 + 1000, 0, 0);
}

static void test_account_delay_is_capped(void **state)
{
    struct fixture *f = need_memcached(state);
    const char *who = "cap@example.com";

    fail_n(f, who, "", 200, T0);
    expect_wait(f, who, "", T0, CP_ERETRY, RATELIMIT_ACCOUNT_DELAY_MAX_S);
    expect_wait(f, who, "", T0 + RATELIMIT_ACCOUNT_DELAY_MAX_S * 1000LL, 0, 0);
    /* A failure stamped in the future never stretches the wait. */
    fail_n(f, who, "", 1, T0 + 3600 * 1000LL);
    expect_wait(f, who, "", T0, CP_ERETRY, RATELIMIT_ACCOUNT_DELAY_MAX_S);
}

static void test_success_clears_account_only(void **state)
{
    struct fixture *f = need_memcached(state);
    const char *who = "reset@example.com", *addr = "2001:db8::7";
    char email[64];

    /* Twenty failures from one address, spread over accounts. */
    for (int i = 0; i < 19; i++) {
        snprintf(email, sizeof email, "spread%d@example.com", i);
        fail_n(f, email, addr, 1, T0);
    }
    fail_n(f, who, addr, 1, T0);
    expect_wait(f, "fresh@example.com", addr, T0, CP_ERETRY, 1);   /* the address waits */
    fail_n(f, who, "", 4, T0);                                        /* five in all */
    expect_wait(f, who, "", T0, CP_ERETRY, 1);
    ratelimit_login_succeeded(f->cache, f->conf, who);
    expect_wait(f, who, "", T0, 0, 0);                               /* account cleared */
    expect_wait(f, who, addr, T0, CP_ERETRY, 1);                     /* address kept */
    expect_wait(f, who, addr, T0 + 1000, 0, 0);
}

static void test_address_keys(void **state)
{
    struct fixture *f = need_memcached(state);
    /* Not an address: hashed into the key, still counted. */
    const char *odd = "unix: socket peer with spaces";

    fail_n(f, "a@example.com", odd, 20, T0);
    expect_wait(f, "b@example.com", odd, T0, CP_ERETRY, 1);
    expect_wait(f, "b@example.com", "", T0, 0, 0);
}

static void test_budget(void **state)
{
    struct fixture *f = need_memcached(state);
    struct ratelimit_budget b;
    struct conf *c = conf_with("api_rate_limit = 3\napi_rate_window = 10s\n");
    /* 2.5 s into a 10 s window (windows are aligned on the epoch). */
    long long at = (T0 / 10000) * 10000 + 2500;

    for (int i = 1; i <= 3; i++) {
        assert_int_equal(ratelimit_request(f->cache, c, "user:1", at, &b), 0);
        assert_int_equal(b.limit, 3);
        assert_int_equal(b.remaining, 3 - i);
        assert_int_equal(b.reset_s, 8);
    }
    assert_int_equal(ratelimit_request(f->cache, c, "user:1", at + 1000, &b), CP_ERETRY);
    assert_int_equal(b.remaining, 0);
    assert_int_equal(b.reset_s, 7);
    /* Another principal has its own budget; the next window starts afresh. */
    assert_int_equal(ratelimit_request(f->cache, c, "key:1", at, &b), 0);
    assert_int_equal(b.remaining, 2);
    assert_int_equal(ratelimit_request(f->cache, c, "user:1", at + 7500, &b), 0);
    assert_int_equal(b.remaining, 2);
    assert_int_equal(b.reset_s, 10);
    conf_free(c);
}

static void test_budget_off_and_bad_principal(void **state)
{
    struct fixture *f = need_memcached(state);
    struct ratelimit_budget b;
    struct conf *off = conf_with("api_rate_limit = 0\n");

    for (int i = 0; i < 5; i++) {
        assert_int_equal(ratelimit_request(f->cache, off, "user:2", T0, &b), 0);
        assert_int_equal(b.limit, 0);
    }
    assert_int_equal(ratelimit_request(f->cache, f->conf, "user 2", T0, &b), CP_EINVAL);
    assert_int_equal(ratelimit_request(f->cache, f->conf, "", T0, &b), CP_EINVAL);
    assert_int_equal(ratelimit_request(f->cache, f->conf, NULL, T0, &b), CP_EINVAL);
    conf_free(off);
}

static int count_lines(const char *path, const char *needle)
{
    char line[4096];
    int n = 0;
    FILE *fp = fopen(path, "r");

    if (!fp)
        return -1;
    while (fgets(line, sizeof line, fp))
        if (strstr(line, needle))
            n++;
    fclose(fp);
    return n;
}

/* With memcached unreachable everything lets the request through, and the
 * warning is written once, not once per call. */
static void test_fails_open(void **state)
{
    char dir[] = "/tmp/cp-rl-open-XXXXXX", log_path[128];
    struct conf *c;
    struct cache *cache = NULL;
    struct ratelimit_budget b;
    struct buf text;
    long long retry = -1;

    assert_non_null(mkdtemp(dir));
    snprintf(log_path, sizeof log_path, "%s/log", dir);
    buf_init(&text, 512);
    buf_printf(&text, "memcached_servers = %s/absent.sock\nlogin_throttle_after = 1\n"
               "api_rate_limit = 1\n", dir);
    c = conf_with(buf_str(&text));
    buf_free(&text);
    assert_int_equal(cache_open(c, &cache), 0);
    assert_int_equal(log_open_file(log_path), 0);

    for (int i = 0; i < 5; i++) {
        ratelimit_login_failed(cache, c, "down@example.com", "192.0.2.9", T0);
        assert_int_equal(ratelimit_login_check(cache, c, "down@example.com", "192.0.2.9", T0, &retry), 0);
        assert_int_equal(retry, 0);
        assert_int_equal(ratelimit_request(cache, c, "user:3", T0, &b), 0);
        assert_int_equal(b.limit, 0);
        ratelimit_login_succeeded(cache, c, "down@example.com");
        /* No handle at all counts as down too. */
        assert_int_equal(ratelimit_login_check(NULL, c, "down@example.com", "", T0, &retry), 0);
        assert_int_equal(ratelimit_request(NULL, c, "user:3", T0, &b), 0);
    }
    log_open_file("/dev/null");
    assert_int_equal(count_lines(log_path, "rate limits not enforced"), 1);

    cache_close(cache);
    conf_free(c);
    unlink(log_path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_table),
        cmocka_unit_test(test_account_delays_grow),
        cmocka_unit_test(test_account_delay_is_capped),
        cmocka_unit_test(test_success_clears_account_only),
        cmocka_unit_test(test_address_keys),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_budget_off_and_bad_principal),
        cmocka_unit_test(test_fails_open),
    };

    log_init("test_ratelimit", CP_LOG_INFO);
    return cmocka_run_group_tests_name("ratelimit", tests, start_memcached, stop_memcached);
}
