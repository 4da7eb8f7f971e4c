/*
 * ratelimit.h - throttling of failed sign-ins and the request budget of
 * the API, kept in memcached so that every process shares them.
 *
 * Sign-in.  Failures are counted per account (keyed by the SHA-256 of the
 * normalised email, so the cache holds no addresses of people) and per
 * client address, for login_throttle_window from the first failure.  Past
 * login_throttle_after failures of an account, each further attempt must
 * wait 1 s, 2 s, 4 s ... (at most RATELIMIT_ACCOUNT_DELAY_MAX_S) after the
 * last failure; past login_throttle_addr_after failures from an address,
 * the same up to RATELIMIT_ADDR_DELAY_MAX_S.  Attempts refused while
 * waiting are not counted.  Delays are bounded and counters expire, so
 * someone failing on purpose can slow a real user down but never lock
 * them out for good.  A success clears the account's count; the address's
 * count stays.
 *
 * Request budget.  api_rate_limit requests per api_rate_window for one
 * principal (a user or an API key), in fixed windows aligned on the epoch.
 *
 * memcached down.  Everything here fails open: sign-ins and requests go on
 * (argon2's cost still bounds password guessing, and nginx's limit_req
 * stays in front) and a warning is logged at most once a minute per
 * process.  A NULL cache counts as one that is down.
 */
#ifndef CP_RATELIMIT_H
#define CP_RATELIMIT_H

#include "cache.h"
#include "conf.h"

#define RATELIMIT_ACCOUNT_DELAY_MAX_S 300
#define RATELIMIT_ADDR_DELAY_MAX_S 900

/*
 * May a sign-in for email (normalised; any string is accepted, it is only
 * hashed) from addr (the client address; "" = unknown, not counted) go on
 * at now_ms (unix time in ms)?  0 when it may; CP_ERETRY when it must wait,
 * with *retry_after_s (>= 1) set to the seconds after which it may.
 */
int ratelimit_login_check(struct cache *cache, const struct conf *c, const char *email,
                          const char *addr, long long now_ms, long long *retry_after_s);

/* Count a failed sign-in (unknown email, wrong password, disabled account). */
void ratelimit_login_failed(struct cache *cache, const struct conf *c, const char *email,
                            const char *addr, long long now_ms);

/* A sign-in succeeded: forget the account's failures. */
void ratelimit_login_succeeded(struct cache *cache, const struct conf *c, const char *email);

/* Wait before the next attempt, in ms, after failures failures when
 * delays start past after: 0 up to after, then 1 s doubling to max_s. */
long long ratelimit_delay_ms(long long failures, long long after, long long max_s);

/* Where a principal stands in the current window. */
struct ratelimit_budget {
    long long limit;       /* requests per window; 0 = nothing known: send no headers */
    long long remaining;   /* requests left in this window */
    long long reset_s;     /* seconds until the window ends (>= 1) */
};

/*
 * Spend one request of principal's budget ("user:42", "key:7": printable
 * ASCII, no spaces, at most 64 bytes).  0 when within the budget; CP_ERETRY
 * when it is spent (out->reset_s is the Retry-After).  With the budget off
 * (api_rate_limit = 0) or memcached down, 0 with out->limit = 0.
 * CP_EINVAL for a malformed principal.
 */
int ratelimit_request(struct cache *cache, const struct conf *c, const char *principal,
                      long long now_ms, struct ratelimit_budget *out);

/* Unix time in ms, as the functions above expect it. */
long long ratelimit_now_ms(void);

#endif
