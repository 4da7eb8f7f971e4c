#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "buf.h"
#include "cache.h"
#include "err.h"
#include "log.h"

#define CACHE_KEY_MAX 250
#define CACHE_SERVER_MAX 1024        /* longest "host:port" or socket path */
#define CACHE_DEFAULT_PORT 11211
/* memcached reads an expiry above 30 days as a unix time. */
#define CACHE_RELATIVE_TTL_MAX (30u * 24 * 3600)
/* Consecutive failures before a server is set aside for RETRY_TIMEOUT. */
#define CACHE_FAILURE_LIMIT 2

struct cache {
    memcached_st *mc;
    size_t nservers;
};

static int map_rc(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
    case MEMCACHED_DELETED:
    case MEMCACHED_END:
    case MEMCACHED_BUFFERED:
        return 0;
    case MEMCACHED_NOTFOUND:
        return CP_ENOTFOUND;
    case MEMCACHED_NOTSTORED:
    case MEMCACHED_DATA_EXISTS:
        return CP_ECONFLICT;
    case MEMCACHED_E2BIG:
        return CP_ETOOBIG;
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
        return CP_ENOMEM;
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_KEY_TOO_BIG:
        return CP_EINVAL;
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_CLIENT_ERROR:
    case MEMCACHED_UNKNOWN_STAT_KEY:
        return CP_EPROTO;
    default:
        /* Connection failures, timeouts, servers set aside, no servers. */
        return CP_EUNAVAIL;
    }
}

/* Log a failure that means the cache is unreachable; other outcomes are
 * the caller's business. */
static int check(struct cache *cache, memcached_return_t rc, const char *op)
{
    int err = map_rc(rc);

    if (err == CP_EUNAVAIL || err == CP_EPROTO)
        log_debug("memcached %s: %s", op, memcached_last_error_message(cache->mc));
    return err;
}

static int key_ok(const char *key, size_t *len)
{
    size_t n;

    if (!key)
        return 0;
    for (n = 0; key[n]; n++)
        if ((unsigned char)key[n] <= ' ' || (unsigned char)key[n] >= 0x7f || n >= CACHE_KEY_MAX)
            return 0;
    *len = n;
    return n > 0;
}

static time_t expiry(unsigned ttl_s)
{
    if (ttl_s > CACHE_RELATIVE_TTL_MAX)
        return time(NULL) + (time_t)ttl_s;
    return (time_t)ttl_s;
}

/* Add one "host:port", "[v6]:port", "host" or "/socket" entry. */
static int add_server(memcached_st *mc, const char *entry)
{
    char host[CACHE_SERVER_MAX];
    const char *colon;
    unsigned long port = CACHE_DEFAULT_PORT;
    size_t hlen;
    memcached_return_t rc;

    if (entry[0] == '/') {
        rc = memcached_server_add_unix_socket(mc, entry);
        return memcached_success(rc) ? 0 : CP_EINVAL;
    }
    if (entry[0] == '[') {
        const char *close = strchr(entry, ']');

        if (!close || close == entry + 1)
            return CP_EINVAL;
        hlen = (size_t)(close - entry - 1);
        if (hlen >= sizeof host)
            return CP_EINVAL;
        memcpy(host, entry + 1, hlen);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] && !colon)
            return CP_EINVAL;
    } else {
        colon = strrchr(entry, ':');
        hlen = colon ? (size_t)(colon - entry) : strlen(entry);
        if (colon && memchr(entry, ':', hlen))
            return CP_EINVAL;   /* a bare IPv6 address needs brackets */
        if (hlen >= sizeof host)
            return CP_EINVAL;
        memcpy(host, entry, hlen);
    }
    if (hlen == 0)
        return CP_EINVAL;
    host[hlen] = '\0';
    if (colon) {
        char *end;

        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end || port == 0 || port > 65535)
            return CP_EINVAL;
    }
    rc = memcached_server_add(mc, host, (in_port_t)port);
    return memcached_success(rc) ? 0 : CP_EINVAL;
}

static int add_servers(struct cache *cache, const char *list)
{
    const char *p = list;

    while (*p) {
        char entry[CACHE_SERVER_MAX];
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int rc;

        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n >= sizeof entry)
            return CP_EINVAL;
        if (n) {
            memcpy(entry, p, n);
            entry[n] = '\0';
            rc = add_server(cache->mc, entry);
            if (rc) {
                log_error("memcached_servers: cannot use \"%s\"", entry);
                return rc;
            }
            cache->nservers++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    if (cache->nservers == 0) {
        log_error("memcached_servers names no server");
        return CP_EINVAL;
    }
    return 0;
}

int cache_open(const struct conf *c, struct cache **out)
{
    struct cache *cache;
    memcached_st *mc;
    uint64_t timeout = (uint64_t)c->memcached_timeout;
    int rc;

    *out = NULL;
    cache = calloc(1, sizeof *cache);
    if (!cache)
        return CP_ENOMEM;
    mc = memcached_create(NULL);
    if (!mc) {
        free(cache);
        return CP_ENOMEM;
    }
    cache->mc = mc;

    /* Ketama: losing or adding a server moves only its share of keys. */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
                           MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
    /* The binary protocol is what lets incr create a missing counter. */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, timeout);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout);
    /* A failing server is skipped for a second and then tried again; it
     * is never removed from the ring, so a restarted memcached gets its
     * keys back and the others never see a reshuffle. */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, CACHE_FAILURE_LIMIT);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0);

    rc = add_servers(cache, c->memcached_servers ? c->memcached_servers : "");
    if (rc) {
        cache_close(cache);
        return rc;
    }
    *out = cache;
    return 0;
}

void cache_close(struct cache *cache)
{
    if (!cache)
        return;
    memcached_free(cache->mc);
    free(cache);
}

int cache_get(struct cache *cache, const char *key, struct buf *out)
{
    memcached_return_t rc;
    size_t klen, vlen = 0;
    uint32_t flags = 0;
    char *val;
    int err;

    if (!key_ok(key, &klen))
        return CP_EINVAL;
    val = memcached_get(cache->mc, key, klen, &vlen, &flags, &rc);
    err = check(cache, rc, "get");
    if (!err)
        err = buf_add(out, val ? val : "", val ? vlen : 0);
    free(val);
    return err;
}

int cache_set(struct cache *cache, const char *key, const void *val, size_t len, unsigned ttl_s)
{
    size_t klen;

    if (!key_ok(key, &klen) || (!val && len))
        return CP_EINVAL;
    return check(cache, memcached_set(cache->mc, key, klen, val, len, expiry(ttl_s), 0), "set");
}

int cache_add(struct cache *cache, const char *key, const void *val, size_t len, unsigned ttl_s)
{
    size_t klen;

    if (!key_ok(key, &klen) || (!val && len))
        return CP_EINVAL;
    return check(cache, memcached_add(cache->mc, key, klen, val, len, expiry(ttl_s), 0), "add");
}

int cache_delete(struct cache *cache, const char *key)
{
    size_t klen;
    int err;

    if (!key_ok(key, &klen))
        return CP_EINVAL;
    err = check(cache, memcached_delete(cache->mc, key, klen, 0), "delete");
    return err == CP_ENOTFOUND ? 0 : err;
}

int cache_take(struct cache *cache, const char *key, struct buf *out)
{
    size_t before = out->len;
    int err;

    err = cache_get(cache, key, out);
    if (err)
        return err;
    /* The delete decides: memcached removes a key for one deleter only,
     * the others are told NOTFOUND. */
    err = check(cache, memcached_delete(cache->mc, key, strlen(key), 0), "delete");
    if (err && out->data) {
        memset(out->data + before, 0, out->len - before);
        out->len = before;
        out->data[before] = '\0';
    }
    return err;
}

int cache_incr(struct cache *cache, const char *key, unsigned long long delta,
               unsigned ttl_s, unsigned long long *value)
{
    uint64_t v = 0;
    size_t klen;
    int err;

    *value = 0;
    if (!key_ok(key, &klen))
        return CP_EINVAL;
    err = check(cache, memcached_increment_with_initial(cache->mc, key, klen, delta, delta,
                                                        expiry(ttl_s), &v), "incr");
    if (err)
        return err;
    *value = v;
    return 0;
}

int cache_ping(struct cache *cache)
{
    memcached_stat_st *stats;
    memcached_return_t rc;

    /* A stats request is sent to every server and each answer awaited.
     * (memcached_version() would not do: it asks a server only until it
     * has learnt its version once.) */
    stats = memcached_stat(cache->mc, NULL, &rc);
    if (stats)
        memcached_stat_free(cache->mc, stats);
    if (!memcached_success(rc)) {
        log_debug("memcached ping: %s", memcached_last_error_message(cache->mc));
        return CP_EUNAVAIL;
    }
    return 0;
}
