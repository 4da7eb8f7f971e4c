/*
 * runner.h - one worker process of crosspost-worker, and what every
 * process of crosspost-worker shares (signals, its workers row).
 *
 * A worker process serves one queue.  It loops: claim a batch of ready
 * jobs (queue_claim), publish the ids in its slot (so the supervisor's
 * heartbeat renews their leases), run each through the task registry
 * (tasks.h), record the outcome, and sleep on the wake word when the
 * queue ran dry.
 *
 *  - The batch adapts: it starts at 1 and doubles toward
 *    worker_claim_batch while a whole batch takes less than 50 ms; a job
 *    that takes 50 ms or more, or a queue that runs dry, brings it back
 *    to 1, so slow jobs are not hoarded by one process while others idle.
 *  - Successes are completed in batches: at the end of each batch, and
 *    before a job when the oldest waiting completion is over 20 ms old
 *    or the batch has had a slow job.  Failures and deferrals are
 *    recorded at once.
 *  - An outcome that cannot be recorded (the database is away) is tried
 *    again for up to job_lease / 2; then the process exits with status
 *    RUNNER_EXIT_UNRECORDED, and the supervisor gives its claims back.
 *  - SIGTERM / SIGQUIT (graceful): stop claiming, finish the running job,
 *    give back the claimed ones not started (their attempt refunded),
 *    exit 0.  SIGINT (fast): the running job sees task_should_stop(); the
 *    process gives back everything it holds, the running job included,
 *    and exits 0.  The supervisor's slot stop request means the same.
 *  - The parent's death sends SIGTERM (PR_SET_PDEATHSIG).
 */
#ifndef CP_WORKERS_RUNNER_H
#define CP_WORKERS_RUNNER_H

#include <signal.h>
#include <sys/types.h>

#include "conf.h"
#include "db.h"
#include "shared.h"

/* Exit statuses of a worker or scheduler process. */
#define RUNNER_EXIT_OK 0
#define RUNNER_EXIT_FAILED 1           /* could not start (memory, database handle) */
#define RUNNER_EXIT_UNRECORDED 3       /* an outcome could not be recorded */

struct runner_opts {
    const struct conf *conf;
    const char *queue;
    struct shared *sh;
    struct worker_slot *slot;          /* this process's slot */
    pid_t supervisor_pid;
};

/* Run a worker process until it is told to stop; returns its exit status. */
int runner_main(const struct runner_opts *o);

/* ------------------------------------ every crosspost-worker process -- */

/* In a freshly forked child: SIGTERM/SIGQUIT ask a graceful stop, SIGINT
 * a fast one, SIGUSR1 a log reopen (handlers only set flags; system calls
 * restart); SIGHUP is ignored; the parent's death sends SIGTERM. */
void child_signals_install(pid_t supervisor_pid);

/* The strongest stop asked, by signal or through the slot. */
enum slot_stop child_stop_asked(const struct worker_slot *slot);

/* The flag SIGINT sets, for task_should_stop(). */
const volatile sig_atomic_t *child_fast_stop_flag(void);

/* Reopen the log file if SIGUSR1 asked for it. */
void child_reopen_log(const struct conf *c);

/* This host's name (gethostname), for workers rows; never NULL. */
const char *worker_host(void);

/* Insert this process's workers row (role "supervisor", "scheduler" or
 * "worker"; supervisor_id 0 = none; queues may be ""). */
int workers_row_insert(struct db *db, long long supervisor_id, const char *role, const char *queues,
                       long long *id_out);

/* Mark a workers row stopped. */
int workers_row_stop(struct db *db, long long id);

/* In a child: insert its row, retrying every worker_poll_interval while
 * the database is away (logged once); the id goes into the slot too.
 * CP_ETIMEDOUT when a stop was asked before it could. */
int child_register(struct db *db, const struct conf *c, struct shared *sh, struct worker_slot *slot,
                   const char *role, const char *queues, long long *id_out);

/* Sleep up to ms (in steps, ticking the slot), returning early when a
 * stop is asked. */
void child_pause(struct worker_slot *slot, long long ms);

/* At exit: when the supervisor is gone nobody else marks the row, so the
 * child does. */
void child_exit_row(struct db *db, long long id, pid_t supervisor_pid);

#endif
