/*
 * retry.h - what happens to a job after an attempt fails.
 *
 * Pure logic, no I/O: the queue (queue.c) asks, the answer is applied in
 * one transaction.  Every failure carries an error class:
 *
 *   transient     retry after an exponential backoff with full jitter;
 *                 after the last attempt the job is dead
 *   rate_limited  defer to the reset time (or a backoff when none is
 *                 known) without spending an attempt
 *   auth          dead at once: the credentials need a person (the task
 *                 marks its connection needs_reauth before it fails)
 *   permanent     dead at once: trying again cannot help
 *   lost          the worker died or its lease ran out mid-attempt:
 *                 like transient (the attempt is spent, so a job that
 *                 kills its worker every time ends up dead)
 *   released      given back unstarted or interrupted by a stop: ready
 *                 again at once, no attempt spent
 *
 * Full jitter: the n-th retry waits a uniformly random time in
 * [0, min(cap, base * 2^(n-1))], which spreads a crowd of failures out
 * instead of retrying them in lock-step.
 */
#ifndef CP_RETRY_H
#define CP_RETRY_H

enum job_error_class {
    JOB_ERR_TRANSIENT,
    JOB_ERR_RATE_LIMITED,
    JOB_ERR_AUTH,
    JOB_ERR_PERMANENT,
    JOB_ERR_LOST,
    JOB_ERR_RELEASED,
};
#define JOB_ERR_CLASSES 6

/* "transient", "rate_limited", ... (the names the schema uses). */
const char *job_error_class_name(enum job_error_class c);
/* 0, or CP_EINVAL for a name that is not a class. */
int job_error_class_parse(const char *name, enum job_error_class *out);

struct retry_policy {
    long long base_ms;       /* job_retry_base */
    long long cap_ms;        /* job_retry_cap */
};

/* The longest a rate-limited job is deferred in one step; a reset time
 * further away is re-checked then. */
#define RETRY_DEFER_MAX_MS (24LL * 3600 * 1000)

enum retry_action {
    RETRY_AGAIN,     /* state failed (or ready when delay_ms is 0), run_at = now + delay */
    RETRY_DEFER,     /* state scheduled, run_at = now + delay, attempt given back */
    RETRY_DEAD,      /* state dead: the dead-letter queue */
};

struct retry_decision {
    enum retry_action action;
    long long delay_ms;
    int refund_attempt;      /* 1: the attempt the claim spent is given back */
};

/*
 * Decide for a job that has now spent `attempts` attempts (counting the
 * one that failed) of `max_attempts`.  retry_after_ms is what the failure
 * said about when to come back (a Retry-After header; 0 = nothing).  rnd
 * is a uniformly random 64-bit number (tests pass fixed ones).
 */
struct retry_decision retry_decide(enum job_error_class cls, int attempts, int max_attempts,
                                   long long retry_after_ms, const struct retry_policy *p,
                                   unsigned long long rnd);

/* Full-jitter backoff for the n-th retry (n >= 1): uniform in
 * [0, min(cap, base * 2^(n-1))], computed without overflow. */
long long retry_backoff_ms(int n, long long base_ms, long long cap_ms, unsigned long long rnd);

#endif
