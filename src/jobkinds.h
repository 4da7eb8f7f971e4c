/*
 * jobkinds.h - every kind of job crosspost knows, with its policy.
 *
 * One table (jobkinds.c): kind name, the queue it runs on unless the
 * enqueuer says otherwise, its attempts, how long one attempt may run,
 * and whether it is internal (for tests and benchmarks only).  The API,
 * crosspostctl and the workers all read it; the workers' handlers live
 * in workers/tasks.c, and a unit test checks that both tables name the
 * same kinds.
 */
#ifndef CP_JOBKINDS_H
#define CP_JOBKINDS_H

#include <stddef.h>

#define JOB_KIND_MAX 64        /* bytes of a kind name */
#define JOB_QUEUE_MAX 32       /* bytes of a queue name */

struct job_kind {
    const char *name;          /* "maintenance.prune_jobs" */
    const char *queue;         /* default queue */
    int max_attempts;
    long long timeout_ms;      /* one attempt; past it the worker is killed */
    int internal;              /* noop, sleep: tests and benchmarks only */
    const char *summary;       /* one line for `crosspostctl jobs kinds` and docs */
};

extern const struct job_kind job_kinds[];
extern const size_t job_nkinds;

/* The kind called name, or NULL. */
const struct job_kind *job_kind_find(const char *name);

/* A queue name is 1..JOB_QUEUE_MAX bytes of [a-z0-9_-]. */
int job_queue_name_ok(const char *name);

/* A kind name is 1..JOB_KIND_MAX bytes of [a-z0-9_.-]: the alphabet of
 * the table, so a kind this build does not know (an older job, a newer
 * worker) can still be named in filters and metrics. */
int job_kind_name_ok(const char *name);

#endif
