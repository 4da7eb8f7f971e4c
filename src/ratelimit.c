#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "cache.h"
#include "crypto.h"
#include "err.h"
#include "log.h"
#include "ratelimit.h"

#define KEY_MAX 160
#define ADDR_TEXT_MAX 45          /* the longest textual IPv6 address */
#define PRINCIPAL_MAX 64
#define WARN_INTERVAL_MS 60000LL
#define DELAY_BASE_MS 1000LL

/* One thing whose failed sign-ins are counted: an account or an address. */
struct subject {
    char count_key[KEY_MAX];      /* failures in the window (a counter) */
    char last_key[KEY_MAX];       /* unix ms of the latest failure */
    long long after;              /* failures before delays start */
    long long max_s;              /* the longest delay */
};

static long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long ratelimit_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Limits go unenforced while memcached is away; say so, but not on every
 * request of an outage. */
static void cache_down(const char *op, int rc)
{
    static int warned;
    static long long warned_at;
    long long now = monotonic_ms();

    if (warned && now - warned_at < WARN_INTERVAL_MS)
        return;
    warned = 1;
    warned_at = now;
    log_warn("rate limits not enforced: memcached %s failed (%s); requests go on "
             "(repeated at most once a minute)", op, cp_strerror(rc));
}

long long ratelimit_delay_ms(long long failures, long long after, long long max_s)
{
    long long steps, cap = max_s * 1000;

    if (after < 1)
        after = 1;
    if (failures < after || cap <= 0)
        return 0;
    steps = failures - after;
    if (steps >= 40)
        return cap;
    return (DELAY_BASE_MS << steps) < cap ? DELAY_BASE_MS << steps : cap;
}

/* The number stored at key; 0 when absent or not a number (memcached pads
 * a counter whose text got shorter with spaces). */
static int get_number(struct cache *cache, const char *key, long long *out)
{
    struct buf b;
    const char *s;
    char *end;
    long long v;
    int rc;

    *out = 0;
    buf_init(&b, 64);
    rc = cache_get(cache, key, &b);
    if (rc) {
        buf_free(&b);
        return rc == CP_ENOTFOUND ? 0 : rc;
    }
    s = buf_str(&b);
    errno = 0;
    v = strtoll(s, &end, 10);
    while (*end == ' ')
        end++;
    if (!errno && end != s && !*end && v > 0)
        *out = v;
    buf_free(&b);
    return 0;
}

static void account_subject(const struct conf *c, const char *email, struct subject *s)
{
    unsigned char digest[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];

    crypto_sha256(email, strlen(email), digest);
    crypto_hex(digest, sizeof digest, hex);
    snprintf(s->count_key, sizeof s->count_key, "cp:rl:login:acct:%s:n", hex);
    snprintf(s->last_key, sizeof s->last_key, "cp:rl:login:acct:%s:t", hex);
    s->after = c->login_throttle_after;
    s->max_s = RATELIMIT_ACCOUNT_DELAY_MAX_S;
}

/* 0 when addr is unknown (nothing to count).  An address is used as is
 * when it looks like one, so operators can find it in the cache. */
static int addr_subject(const struct conf *c, const char *addr, struct subject *s)
{
    char id[2 * SHA256_LEN + 2];
    size_t n = addr ? strlen(addr) : 0;

    if (n == 0)
        return 0;
    if (n <= ADDR_TEXT_MAX && strspn(addr, "0123456789abcdefABCDEF.:") == n) {
        memcpy(id, addr, n + 1);
    } else {
        unsigned char digest[SHA256_LEN];

        crypto_sha256(addr, n, digest);
        id[0] = 'h';
        crypto_hex(digest, sizeof digest, id + 1);
    }
    snprintf(s->count_key, sizeof s->count_key, "cp:rl:login:addr:%s:n", id);
    snprintf(s->last_key, sizeof s->last_key, "cp:rl:login:addr:%s:t", id);
    s->after = c->login_throttle_addr_after;
    s->max_s = RATELIMIT_ADDR_DELAY_MAX_S;
    return 1;
}

/* How long subject must still wait at now_ms (0 = not at all). */
static int subject_wait(struct cache *cache, const struct subject *s, long long now_ms,
                        long long *wait_ms)
{
    long long failures, last, delay;
    int rc;

    *wait_ms = 0;
    rc = get_number(cache, s->count_key, &failures);
    if (rc)
        return rc;
    delay = ratelimit_delay_ms(failures, s->after, s->max_s);
    if (delay == 0)
        return 0;
    rc = get_number(cache, s->last_key, &last);
    if (rc)
        return rc;
    /* A failure stamped in the future (clocks of two hosts apart) must not
     * stretch the wait beyond one delay. */
    if (last > now_ms)
        last = now_ms;
    if (last + delay > now_ms)
        *wait_ms = last + delay - now_ms;
    return 0;
}

int ratelimit_login_check(struct cache *cache, const struct conf *c, const char *email,
                          const char *addr, long long now_ms, long long *retry_after_s)
{
    struct subject account, address;
    long long wait = 0, w;
    int rc;

    *retry_after_s = 0;
    if (!cache) {
        cache_down("connect", CP_EUNAVAIL);
        return 0;
    }
    account_subject(c, email ? email : "", &account);
    rc = subject_wait(cache, &account, now_ms, &wait);
    if (!rc && addr_subject(c, addr, &address)) {
        rc = subject_wait(cache, &address, now_ms, &w);
        if (w > wait)
            wait = w;
    }
    if (rc) {
        cache_down("get", rc);
        return 0;
    }
    if (wait == 0)
        return 0;
    *retry_after_s = (wait + 999) / 1000;
    return CP_ERETRY;
}

static int count_failure(struct cache *cache, const struct subject *s, unsigned ttl_s,
                         long long now_ms)
{
    unsigned long long failures;
    char stamp[24];
    int n, rc;

    rc = cache_incr(cache, s->count_key, 1, ttl_s, &failures);
    if (rc)
        return rc;
    n = snprintf(stamp, sizeof stamp, "%lld", now_ms);
    return cache_set(cache, s->last_key, stamp, (size_t)n, ttl_s);
}

void ratelimit_login_failed(struct cache *cache, const struct conf *c, const char *email,
                            const char *addr, long long now_ms)
{
    struct subject account, address;
    unsigned ttl_s = (unsigned)((c->login_throttle_window + 999) / 1000);
    int rc;

    if (!cache) {
        cache_down("connect", CP_EUNAVAIL);
        return;
    }
    account_subject(c, email ? email : "", &account);
    rc = count_failure(cache, &account, ttl_s, now_ms);
    if (!rc && addr_subject(c, addr, &address))
        rc = count_failure(cache, &address, ttl_s, now_ms);
    if (rc)
        cache_down("update", rc);
}

void ratelimit_login_succeeded(struct cache *cache, const struct conf *c, const char *email)
{
    struct subject account;
    int rc;

    if (!cache) {
        cache_down("connect", CP_EUNAVAIL);
        return;
    }
    account_subject(c, email ? email : "", &account);
    rc = cache_delete(cache, account.count_key);
    if (!rc)
        rc = cache_delete(cache, account.last_key);
    if (rc)
        cache_down("delete", rc);
}

static int principal_ok(const char *p)
{
    size_t n;

    if (!p)
        return 0;
    for (n = 0; p[n]; n++)
        if ((unsigned char)p[n] <= ' ' || (unsigned char)p[n] >= 0x7f || n >= PRINCIPAL_MAX)
            return 0;
    return n > 0;
}

int ratelimit_request(struct cache *cache, const struct conf *c, const char *principal,
                      long long now_ms, struct ratelimit_budget *out)
{
    long long limit = c->api_rate_limit, window = c->api_rate_window;
    long long number, reset_s;
    unsigned long long used;
    char key[KEY_MAX];
    int rc;

    memset(out, 0, sizeof *out);
    if (!principal_ok(principal))
        return CP_EINVAL;
    if (limit <= 0 || window <= 0 || now_ms < 0)
        return 0;
    if (!cache) {
        cache_down("connect", CP_EUNAVAIL);
        return 0;
    }
    number = now_ms / window;
    reset_s = ((number + 1) * window - now_ms + 999) / 1000;
    snprintf(key, sizeof key, "cp:rl:req:%s:%lld:%lld", principal, window, number);
    /* The counter outlives its window by a second, never by a window. */
    rc = cache_incr(cache, key, 1, (unsigned)reset_s + 1, &used);
    if (rc) {
        cache_down("incr", rc);
        return 0;
    }
    out->limit = limit;
    out->reset_s = reset_s;
    out->remaining = used >= (unsigned long long)limit ? 0 : limit - (long long)used;
    return used > (unsigned long long)limit ? CP_ERETRY : 0;
}
