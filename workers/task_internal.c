/*
 * Internal job kinds, for tests and benchmarks only: they touch nothing
 * outside the jobs table (job_kinds[] marks them internal).
 *
 *   noop   does nothing
 *   sleep  {"ms": N} (0..3600000): sleeps N ms, reporting progress
 *          done = elapsed ms, total = N; a fast stop or a lost lease ends
 *          it early (the worker then gives the job back)
 *
 * Both take optional members that make an attempt fail, so tests can
 * drive the retry policy end to end:
 *   "fail"            an error class: transient, rate_limited, auth, permanent
 *   "fail_attempts"   fail only while the job's attempts <= N (absent: always)
 *   "retry_after_ms"  what the failure says about when to come back
 *   "message"         the error message (default: "<kind> failed as asked")
 * A sleep with "fail" sleeps first, then fails.
 */
#include "config.h"

#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"
#include "tasks.h"

#define SLEEP_MAX_MS 3600000LL
#define SLEEP_STEP_MS 50

/* Fail the attempt if the payload asks for it; TASK_OK otherwise. */
static int maybe_fail(struct task_ctx *ctx)
{
    static const enum job_error_class allowed[] = {
        JOB_ERR_TRANSIENT, JOB_ERR_RATE_LIMITED, JOB_ERR_AUTH, JOB_ERR_PERMANENT,
    };
    const char *name = NULL, *message = NULL;
    long long fail_attempts = -1, retry_after = 0;
    enum job_error_class cls;
    int rc, ok = 0;

    rc = json_get_string(ctx->payload, "fail", &name);
    if (rc == CP_ENOTFOUND)
        return TASK_OK;
    if (rc || job_error_class_parse(name, &cls))
        return task_fail(ctx, JOB_ERR_PERMANENT, 0,
                         "payload: fail must be transient, rate_limited, auth or permanent");
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        ok |= allowed[i] == cls;
    if (!ok)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0,
                         "payload: fail must be transient, rate_limited, auth or permanent");
    rc = json_get_int(ctx->payload, "fail_attempts", &fail_attempts);
    if (rc == CP_ENOTFOUND)
        fail_attempts = -1;
    else if (rc || fail_attempts < 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload: fail_attempts must be an integer >= 0");
    rc = json_get_int(ctx->payload, "retry_after_ms", &retry_after);
    if (rc == CP_ENOTFOUND)
        retry_after = 0;
    else if (rc || retry_after < 0)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload: retry_after_ms must be an integer >= 0");
    rc = json_get_string(ctx->payload, "message", &message);
    if (rc == CP_EINVAL)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload: message must be a string");

    if (fail_attempts >= 0 && ctx->job->attempts > fail_attempts)
        return TASK_OK;
    if (message)
        return task_fail(ctx, cls, retry_after, "%s", message);
    return task_fail(ctx, cls, retry_after, "%s failed as asked", ctx->job->kind);
}

int task_noop(struct task_ctx *ctx)
{
    return maybe_fail(ctx);
}

int task_sleep(struct task_ctx *ctx)
{
    long long ms = 0, start, elapsed;
    int rc;

    rc = json_get_int(ctx->payload, "ms", &ms);
    if (rc || ms < 0 || ms > SLEEP_MAX_MS)
        return task_fail(ctx, JOB_ERR_PERMANENT, 0, "payload: ms must be an integer in 0..%lld",
                         SLEEP_MAX_MS);
    start = shared_now_ms();
    while ((elapsed = shared_now_ms() - start) < ms) {
        long long step = ms - elapsed < SLEEP_STEP_MS ? ms - elapsed : SLEEP_STEP_MS;
        struct timespec ts = { 0, step * 1000000L };

        if (task_should_stop(ctx))
            return TASK_STOPPED;
        task_progress(ctx, elapsed, ms);
        /* A signal cuts the step short; the loop looks at the clock. */
        nanosleep(&ts, NULL);
    }
    task_progress(ctx, ms, ms);
    return maybe_fail(ctx);
}
