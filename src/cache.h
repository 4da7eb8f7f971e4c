/*
 * cache.h - memcached through libmemcached.
 *
 * Several servers are used with consistent hashing, so adding or losing
 * one moves few keys.  A server that stops answering is skipped for a
 * short retry time and tried again after, so the cache recovers by itself.
 * Keys must be 1..250 bytes of printable ASCII without spaces (CP_EINVAL
 * otherwise).  Errors: CP_ENOTFOUND (no such key), CP_ECONFLICT (cache_add
 * on an existing key), CP_EUNAVAIL (no server answered), CP_ETOOBIG.
 */
#ifndef CP_CACHE_H
#define CP_CACHE_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"

struct cache;

/* Prepare a handle for conf->memcached_servers; does not connect yet. */
int cache_open(const struct conf *c, struct cache **out);
void cache_close(struct cache *cache);

/* Append the value of key to out. */
int cache_get(struct cache *cache, const char *key, struct buf *out);
/* Store key unconditionally / only when absent.  ttl_s 0 = no expiry. */
int cache_set(struct cache *cache, const char *key, const void *val, size_t len, unsigned ttl_s);
int cache_add(struct cache *cache, const char *key, const void *val, size_t len, unsigned ttl_s);
/* Remove key; a missing key is not an error. */
int cache_delete(struct cache *cache, const char *key);
/* Take key once: append its value to out and delete it.  Only the caller
 * whose delete removed the key gets the value; a missing key, or one
 * another caller took between our get and delete, is CP_ENOTFOUND (out is
 * then left as it was). */
int cache_take(struct cache *cache, const char *key, struct buf *out);
/* Add delta to a counter, creating it at delta with ttl_s when missing. */
int cache_incr(struct cache *cache, const char *key, unsigned long long delta,
               unsigned ttl_s, unsigned long long *value);
/* 0 when every configured server answers, CP_EUNAVAIL otherwise. */
int cache_ping(struct cache *cache);

#endif
