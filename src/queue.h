/*
 * queue.h - the job queue in MariaDB (sql/006_jobs.sql).
 *
 * Life of a job:
 *
 *   enqueue ──> ready ──claim──> running ──complete──> succeeded
 *      │          ^                │ │ │
 *      │(delay)   │ promote        │ │ └─fail──> failed ──promote──> ready
 *      v          │                │ │           (backoff)
 *   scheduled ────┘                │ └─fail (last attempt, auth, permanent)──> dead
 *      ^                           └─defer (rate limited: no attempt spent)
 *      └───────────────────────────┘
 *   release (stop) / lease lost: back to ready;  cancel: cancelled;
 *   retry (operator): dead, failed or cancelled back to ready.
 *
 * Rules every function keeps (docs/queue.md explains why):
 *  - A claim is one short READ COMMITTED transaction:
 *    SELECT ... FROM jobs FORCE INDEX (ix_jobs_claim) WHERE queue = ? AND
 *    state = 'ready' ORDER BY priority, id LIMIT n FOR UPDATE SKIP LOCKED,
 *    then one UPDATE by primary key; it commits before any job runs.
 *  - Every later write goes by primary key and, for the claimant, is
 *    fenced by owner and lease token: 0 rows matched means the lease was
 *    lost, reported as CP_ECONFLICT (or a short count), and nothing else
 *    is done.
 *  - A claim spends an attempt; release and defer give it back.
 *  - Times are the database's clock (NOW(3), UTC), never a host's.
 *  - Lists of ids are bound as IN lists padded to a power of two, so the
 *    statement cache holds a handful of shapes.
 *  - Deadlocks and lock wait timeouts retry the transaction
 *    (db_transaction).
 *
 * The db handle should be in READ COMMITTED (db_set_read_committed) for
 * worker and scheduler sessions.  Functions that say "in the caller's
 * transaction" run plain statements and never begin or commit.
 */
#ifndef CP_QUEUE_H
#define CP_QUEUE_H

#include <stddef.h>

#include "db.h"
#include "jobkinds.h"
#include "retry.h"

enum job_state {
    JOB_SCHEDULED, JOB_READY, JOB_RUNNING, JOB_FAILED,
    JOB_SUCCEEDED, JOB_DEAD, JOB_CANCELLED,
};
#define JOB_STATES 7

const char *job_state_name(enum job_state s);
int job_state_parse(const char *name, enum job_state *out);  /* 0 or CP_EINVAL */

#define JOB_PAYLOAD_MAX 65535           /* bytes of JSON (a TEXT column) */
#define JOB_UNIQUE_KEY_MAX 191
#define JOB_ERROR_MAX 1024              /* longer messages are cut at a UTF-8 boundary */
#define QUEUE_BATCH_MAX 256             /* ids per claim, completion or heartbeat */

struct job_spec {
    const char *kind;          /* required; a kind of jobkinds.h */
    const char *queue;         /* NULL: the kind's queue */
    const char *payload;       /* a JSON object; NULL = "{}" */
    const char *unique_key;    /* NULL: none.  At most one unfinished job per key. */
    int priority;              /* -1000..1000, smaller first; 0 is normal */
    long long delay_ms;        /* 0: due now (ready); later: scheduled */
    int max_attempts;          /* 0: the kind's; at most 100 */
    long long user_id;         /* 0: the system's own work */
};

/*
 * Add one job, in the caller's transaction if one is open (so a business
 * row and its job commit together).  *id_out is its id.  CP_EINVAL for
 * an unknown kind, a bad queue name, a payload that is not a JSON object
 * or too long, or numbers out of range; CP_ECONFLICT when an unfinished
 * job holds the same unique key (*id_out is then that job's id when it
 * can be read, else 0).
 */
int queue_enqueue(struct db *db, const struct job_spec *spec, long long *id_out);

/* Add n jobs with one multi-row INSERT per QUEUE_BATCH_MAX (no unique
 * keys: CP_EINVAL).  Same validation; nothing is added unless all are
 * valid.  In the caller's transaction if one is open. */
int queue_enqueue_many(struct db *db, const struct job_spec *specs, size_t n);

/* A claim's fence: every write by the claimant must match both. */
struct lease {
    long long owner;                  /* workers.id of the claiming process */
    unsigned long long token;         /* random, fresh for each claim */
};

/* A claimed job, as the worker sees it. */
struct job {
    long long id;
    char queue[JOB_QUEUE_MAX + 1];
    char kind[JOB_KIND_MAX + 1];
    char *payload;                    /* JSON text, owned by the batch */
    int attempts;                     /* spent, counting this one */
    int max_attempts;
    int priority;
    long long user_id;                /* 0: the system's */
    long long created_ms;             /* Unix ms (database clock) */
    long long run_at_ms;              /* when it became due */
    long long claimed_ms;             /* this claim */
};

struct job_batch {
    struct lease lease;
    struct job *jobs;
    size_t n;
};

/* Free the jobs of a batch and zero it; safe on a zeroed batch. */
void job_batch_free(struct job_batch *b);

/*
 * Claim up to max (1..QUEUE_BATCH_MAX) ready jobs of queue for owner,
 * oldest first within priority, with leases of lease_ms.  out->n may be
 * 0.  One READ COMMITTED transaction, retried on deadlock.
 */
int queue_claim(struct db *db, const char *queue, long long owner, int max, long long lease_ms,
                struct job_batch *out);

/* Mark jobs succeeded (one statement per QUEUE_BATCH_MAX).  *done is how
 * many still held the lease; the rest were lost and are left alone. */
int queue_complete(struct db *db, const struct lease *l, const long long *ids, size_t n,
                   size_t *done);

/* A failed attempt. */
struct job_failure {
    enum job_error_class cls;
    const char *message;              /* for people; never a secret */
    long long retry_after_ms;         /* 0: unknown */
};

/*
 * Record a failed attempt of job and apply retry_decide(): failed with a
 * backoff, scheduled (deferred, attempt refunded), or dead.  A job that
 * dies records an alert event (alert_events, kind job.dead) in the same
 * transaction.  Writes a job_attempts row.  *new_state may be NULL.
 * CP_ECONFLICT when the lease was lost.  rnd feeds the jitter.
 */
int queue_fail(struct db *db, const struct lease *l, const struct job *job,
               const struct job_failure *f, const struct retry_policy *p,
               unsigned long long rnd, enum job_state *new_state);

/* Rate limited: scheduled again at now + delay_ms without spending an
 * attempt (a job_attempts row, outcome deferred).  CP_ECONFLICT when the
 * lease was lost. */
int queue_defer(struct db *db, const struct lease *l, const struct job *job,
                long long delay_ms, const char *reason);

/* Give jobs back, ready at once, their attempt refunded (a stop, or
 * claimed but never started).  *released may be NULL. */
int queue_release(struct db *db, const struct lease *l, const long long *ids, size_t n,
                  size_t *released);

/* Renew the leases of the owner's running jobs among ids to now +
 * lease_ms.  *renewed may be NULL. */
int queue_heartbeat(struct db *db, long long owner, const long long *ids, size_t n,
                    long long lease_ms, size_t *renewed);

/* Record progress of a running job (bytes done / total; total 0 =
 * unknown).  CP_ECONFLICT when the lease was lost. */
int queue_progress(struct db *db, const struct lease *l, long long id, long long done,
                   long long total);

/* ---------------------------------------------------------- recovery -- */

/*
 * A worker process is gone (its supervisor reaped it, or found it dead
 * at start).  The job it was running, running_id, runs again as a lost
 * attempt (retry_decide with JOB_ERR_LOST; why goes into job_attempts),
 * so a job that kills its worker every time ends up dead.  The jobs it
 * held but had not started are released with their attempt refunded.
 * running_id 0 = it was running none; -1 = not known (every job held
 * counts as lost).  *n may be NULL.
 */
int queue_release_owner(struct db *db, long long owner, long long running_id, const char *why,
                        const struct retry_policy *p, size_t *n);

/* Scheduler: make up to limit due scheduled and failed jobs ready. */
int queue_promote_due(struct db *db, int limit, size_t *n);

/* Scheduler: up to limit running jobs whose lease has expired become
 * lost attempts (see queue_release_owner). */
int queue_reap_expired(struct db *db, int limit, const struct retry_policy *p, size_t *n);

/* Delete up to batch finished jobs (and their attempts): succeeded and
 * cancelled ones finished more than retention_ms ago, dead ones more than
 * dead_retention_ms ago.  Call again while *n == batch. */
int queue_prune(struct db *db, long long retention_ms, long long dead_retention_ms, int batch,
                size_t *n);

/* --------------------------------------------------------- operators -- */

/* Whose jobs an operator action may touch: 0 = anyone's (admins,
 * operators, crosspostctl), else only this user's; another user's job is
 * CP_ENOTFOUND, as if it did not exist. */

/* Cancel a scheduled, ready or failed job, or discard a dead one from
 * the dead-letter queue.  CP_ENOTFOUND; CP_ECONFLICT when it is running,
 * succeeded or already cancelled (*was tells which state). */
int queue_cancel(struct db *db, long long id, long long user_scope, enum job_state *was);

/* Run a dead, failed or cancelled job again: ready now, attempts reset
 * to 0.  CP_ENOTFOUND; CP_ECONFLICT when it is in another state, or when
 * another unfinished job holds its unique key (*was tells the state). */
int queue_retry(struct db *db, long long id, long long user_scope, enum job_state *was);

/* Which dead jobs POST /jobs/dead/retry brings back; NULL / 0 = any. */
struct dead_filter {
    const char *queue;
    const char *kind;
    const char *error_class;
    long long user_scope;
};

/* Retry up to limit dead jobs matching f, oldest first.  *n is how many
 * came back (jobs whose unique key is taken are skipped). */
int queue_retry_dead(struct db *db, const struct dead_filter *f, int limit, size_t *n);

/* --------------------------------------------------------- recurring -- */

struct recurring_task {
    const char *name;          /* unique, [a-z0-9_.-] */
    const char *kind;
    const char *queue;         /* NULL: the kind's */
    const char *payload;       /* NULL = "{}" */
    long long interval_ms;
};

/* Create the task if it is new (due at once when first_run_now, else one
 * interval from now), or update its kind, queue, payload and interval if
 * it exists, keeping its due time unless the new interval brings it
 * closer (a shortened interval takes effect within one new interval). */
int recurring_register(struct db *db, const struct recurring_task *t, int first_run_now);

/*
 * Enqueue every due recurring task (at most limit).  For each, in one
 * transaction: advance next_run_at by compare-and-set (UPDATE ... WHERE
 * name = ? AND next_run_at = <the due time read>), and only if that
 * matched a row, insert the job with unique key "recurring:<name>".  Two
 * schedulers racing for one due time enqueue one job, and a task whose
 * previous job is still unfinished skips this run instead of piling up.
 * *enqueued may be NULL.
 */
int recurring_run_due(struct db *db, int limit, size_t *enqueued);

#endif
