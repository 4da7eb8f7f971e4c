/*
 * oauthstate.h - the state of an authorization in flight, in memcached.
 *
 * When a user starts connecting an account, crosspost keeps who started
 * it, for which platform, and the secrets of the exchange to come (PKCE
 * verifier, OAuth 1.0a request token secret) under a random key (the
 * OAuth 2 state, or X's request token) with a short TTL.  The callback
 * takes it exactly once: take is a get followed by a delete, and only the
 * caller whose delete removed the entry gets it, so a replayed or raced
 * callback finds nothing.
 *
 * Entries are also bound to the browser that started the flow: the
 * authorize call sets a random cookie whose SHA-256 is kept in the entry,
 * and the callback must bring the same cookie.  An authorize URL passed to
 * someone else (to attach their platform account to the sender's
 * crosspost account) is refused.
 *
 * Keys in memcached are "oauth:" + hex SHA-256 of the state key, so
 * neither the state nor a request token appears in the cache's key space.
 */
#ifndef CP_OAUTHSTATE_H
#define CP_OAUTHSTATE_H

#include <stddef.h>

#include "cache.h"
#include "platforms.h"

#define OAUTH_STATE_LEN 43            /* 32 random bytes, base64url */
#define OAUTH_BINDING_LEN 43          /* the browser cookie's value */

struct oauth_state {
    long long user_id;
    enum platform_id platform;
    long long created_ms;             /* epoch ms */
    char binding_sha256[65];          /* hex SHA-256 of the browser cookie */
    char verifier[AUTH_SECRET_MAX];   /* PKCE verifier, "" */
    char request_secret[AUTH_SECRET_MAX]; /* OAuth 1.0a, "" */
    char redirect_uri[PLAT_URL_MAX];
};

/* A random state (and binding cookie value) into out[OAUTH_STATE_LEN + 1]. */
int oauth_state_random(char *out, size_t cap);

/* Hex SHA-256 of a binding cookie value into out[65]. */
void oauth_binding_hash(const char *cookie_value, char out[65]);

/* Keep st under key for ttl_s seconds.  CP_EUNAVAIL when memcached is
 * down (the flow cannot start: no state, no safe callback). */
int oauth_state_put(struct cache *cache, const char *key, const struct oauth_state *st,
                    unsigned ttl_s);

/* Take the entry under key: CP_ENOTFOUND when there is none (expired,
 * never made, or already taken), CP_EUNAVAIL, CP_EINVAL (unreadable). */
int oauth_state_take(struct cache *cache, const char *key, struct oauth_state *out);

/* Constant-time check that cookie_value hashes to st->binding_sha256. */
int oauth_binding_ok(const struct oauth_state *st, const char *cookie_value);

#endif
