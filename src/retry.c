#include "config.h"

#include <string.h>

#include "err.h"
#include "retry.h"

/* In the order of enum job_error_class; the schema's ENUM spells them so. */
static const char *const class_names[JOB_ERR_CLASSES] = {
    "transient", "rate_limited", "auth", "permanent", "lost", "released",
};

const char *job_error_class_name(enum job_error_class c)
{
    if ((unsigned)c >= JOB_ERR_CLASSES)
        return "permanent";
    return class_names[c];
}

int job_error_class_parse(const char *name, enum job_error_class *out)
{
    *out = JOB_ERR_TRANSIENT;
    if (!name)
        return CP_EINVAL;
    for (int i = 0; i < JOB_ERR_CLASSES; i++)
        if (strcmp(name, class_names[i]) == 0) {
            *out = (enum job_error_class)i;
            return 0;
        }
    return CP_EINVAL;
}

long long retry_backoff_ms(int n, long long base_ms, long long cap_ms, unsigned long long rnd)
{
    unsigned long long upper;
    int shift;

    if (base_ms < 0)
        base_ms = 0;
    if (cap_ms < 0)
        cap_ms = 0;
    if (n < 1)
        n = 1;
    shift = n - 1;

    /* min(cap, base * 2^shift) without computing a product that may not
     * fit: base << shift <= cap exactly when base <= cap >> shift. */
    if (base_ms >= cap_ms || shift >= 63 || base_ms > (cap_ms >> shift))
        upper = (unsigned long long)cap_ms;
    else
        upper = (unsigned long long)base_ms << shift;

    /* Scale rnd onto [0, upper]: 0 maps to 0 and the largest rnd to upper,
     * with no modulo bias.  upper + 1 <= 2^63 fits in 64 bits. */
    return (long long)(((unsigned __int128)rnd * (upper + 1)) >> 64);
}

static long long clamp_retry_after(long long retry_after_ms)
{
    if (retry_after_ms <= 0)
        return 0;
    if (retry_after_ms > RETRY_DEFER_MAX_MS)
        return RETRY_DEFER_MAX_MS;
    return retry_after_ms;
}

struct retry_decision retry_decide(enum job_error_class cls, int attempts, int max_attempts,
                                   long long retry_after_ms, const struct retry_policy *p,
                                   unsigned long long rnd)
{
    struct retry_decision d = { .action = RETRY_DEAD, .delay_ms = 0, .refund_attempt = 0 };
    long long base = p ? p->base_ms : 0, cap = p ? p->cap_ms : 0;
    long long after = clamp_retry_after(retry_after_ms);

    if (attempts < 1)
        attempts = 1;
    if (max_attempts < 1)
        max_attempts = 1;

    switch (cls) {
    case JOB_ERR_TRANSIENT:
    case JOB_ERR_LOST:
        if (attempts >= max_attempts)
            return d;
        d.action = RETRY_AGAIN;
        d.delay_ms = retry_backoff_ms(attempts, base, cap, rnd);
        /* A server that said when to come back is not asked sooner. */
        if (after > d.delay_ms)
            d.delay_ms = after;
        return d;
    case JOB_ERR_RATE_LIMITED:
        d.action = RETRY_DEFER;
        d.refund_attempt = 1;
        d.delay_ms = after ? after : retry_backoff_ms(attempts, base, cap, rnd);
        return d;
    case JOB_ERR_RELEASED:
        d.action = RETRY_AGAIN;
        d.refund_attempt = 1;
        return d;
    case JOB_ERR_AUTH:
    case JOB_ERR_PERMANENT:
        return d;
    }
    return d;                    /* not a class: nothing to try again */
}
