/*
 * tasks.h - the handlers that do the work of each job kind.
 *
 * One row per kind in tasks[] (tasks.c), next to the policy row of the
 * same kind in job_kinds[] (src/jobkinds.c); a unit test checks that both
 * tables name the same kinds.  A new kind is a handler in a task_*.c file
 * plus one row in each table.
 *
 * The contract of a handler, int run(struct task_ctx *ctx):
 *
 *  - It must be idempotent.  Delivery is at least once: a job whose
 *    worker died, or whose lease ran out, runs again, maybe after part of
 *    its work was done.  Record remote state as it goes (ids, upload
 *    sessions) and resume from it; check an "outcome unknown" against the
 *    remote before sending anything again.
 *  - During long work it calls task_progress() (when it can count) or
 *    task_alive() at least every few seconds.  A worker that shows no sign
 *    of life for worker_stall_timeout is killed, and one whose liveness is
 *    not fresh gets no lease renewals, so its jobs run again elsewhere.
 *  - It checks task_should_stop() between steps and, when it says so,
 *    returns TASK_STOPPED as soon as it can: a fast stop wants the job
 *    back, or the lease was lost and another worker may run it.
 *  - It returns TASK_OK when the work is done, or the value of
 *    task_fail() / task_defer() (which record why), or TASK_STOPPED.
 *  - It never holds a database transaction open across slow work, and
 *    never logs secrets (the job id is added to every log line for it).
 *
 * Handlers run in a worker process, one job at a time; the context and
 * everything it points to belong to the worker and are valid only during
 * the call.
 */
#ifndef CP_WORKERS_TASKS_H
#define CP_WORKERS_TASKS_H

#include <signal.h>
#include <stddef.h>

#include <json-c/json.h>

#include "conf.h"
#include "db.h"
#include "queue.h"
#include "retry.h"
#include "shared.h"

enum task_result {
    TASK_OK = 0,         /* done: the job succeeds */
    TASK_FAILED = 1,     /* see task_fail() */
    TASK_DEFERRED = 2,   /* see task_defer() */
    TASK_STOPPED = 3,    /* gave up because task_should_stop() said so */
};

struct task_ctx {
    /* For handlers, read only. */
    const struct job *job;            /* the claimed job (id, kind, attempts, ...) */
    struct json_object *payload;      /* its payload, parsed: always an object */
    struct db *db;                    /* the worker's connection (READ COMMITTED) */
    const struct conf *conf;

    /* The worker's: handlers use the functions below instead. */
    struct worker_slot *slot;         /* liveness ticks; may be NULL */
    const volatile sig_atomic_t *fast_stop;   /* set by SIGINT; may be NULL */
    const struct lease *lease;
    long long progress_written_ms;    /* CLOCK_MONOTONIC of the last progress write */
    int progress_shown;               /* progress was written for this attempt */
    int lease_lost;
    enum task_result result;
    enum job_error_class fail_class;
    long long retry_after_ms;
    long long defer_ms;
    char message[JOB_ERROR_MAX + 1];
};

struct task {
    const char *kind;                 /* a name of job_kinds[] */
    int (*run)(struct task_ctx *ctx);
};

extern const struct task tasks[];
extern const size_t ntasks;

/* The handler of kind, or NULL. */
const struct task *task_find(const char *kind);

/* Prepare ctx for one job (the worker calls this before run). */
void task_ctx_init(struct task_ctx *ctx, const struct job *job, struct json_object *payload,
                   struct db *db, const struct conf *conf, const struct lease *lease,
                   struct worker_slot *slot, const volatile sig_atomic_t *fast_stop);

/* --------------------------------------------------- for handlers -- */

/* The attempt failed: record the error class, what the failure said about
 * when to come back (a Retry-After; 0 = nothing) and a message for people
 * (never a secret; cut at JOB_ERROR_MAX).  Returns TASK_FAILED, so a
 * handler writes `return task_fail(ctx, JOB_ERR_TRANSIENT, 0, "...")`.
 * The retry policy (retry.h) decides what happens next. */
int task_fail(struct task_ctx *ctx, enum job_error_class cls, long long retry_after_ms,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Come back in delay_ms without spending an attempt (a rate limit whose
 * reset time is known).  Returns TASK_DEFERRED. */
int task_defer(struct task_ctx *ctx, long long delay_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Work done so far (bytes, items, ms; total 0 = unknown).  A sign of life
 * on every call; written to the job row at most once a second (and when
 * done reaches total, if earlier progress was written).  Returns
 * CP_ECONFLICT when that write found the lease lost (task_should_stop()
 * is then true), else 0. */
int task_progress(struct task_ctx *ctx, long long done, long long total);

/* A sign of life, for work that cannot count its progress. */
void task_alive(struct task_ctx *ctx);

/* 1 when the handler should give up now: a fast stop was asked, or the
 * lease was lost. */
int task_should_stop(const struct task_ctx *ctx);

/* The worker process's view of the secrets key ring, its HTTP client and
 * the media storage, made on first use and kept for later jobs (the ring
 * follows its file; the client keeps connections to the platforms open).  Return TASK_OK,
 * or the value of task_fail() saying why they cannot be had. */
struct secretbox;
struct http_client;
struct storage;
int task_secretbox(struct task_ctx *ctx, struct secretbox **out);
int task_http(struct task_ctx *ctx, struct http_client **out);
int task_storage(struct task_ctx *ctx, struct storage **out);

/* ------------------------------------------------------- handlers -- */

/* Internal kinds for tests and benchmarks (task_internal.c). */
int task_noop(struct task_ctx *ctx);
int task_sleep(struct task_ctx *ctx);

/* Housekeeping (task_maintenance.c). */
int task_prune_jobs(struct task_ctx *ctx);
int task_prune_workers(struct task_ctx *ctx);
int task_prune_audit(struct task_ctx *ctx);
int task_prune_sessions(struct task_ctx *ctx);

/* Connected accounts (task_connections.c). */
int task_connection_refresh(struct task_ctx *ctx);
int task_connections_plan(struct task_ctx *ctx);

/* Source syncs (task_sync.c). */
int task_tiktok_sync(struct task_ctx *ctx);
int task_sync_plan(struct task_ctx *ctx);

/* Media of recorded videos (task_media.c). */
int task_video_fetch(struct task_ctx *ctx);
int task_video_probe(struct task_ctx *ctx);

/* Publishing (task_publish.c). */
int task_publish_post(struct task_ctx *ctx);
int task_publications_sweep(struct task_ctx *ctx);

#endif
