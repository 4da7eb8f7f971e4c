/*
 * scheduler.h - the scheduler process of crosspost-worker.
 *
 * One per supervisor.  At start it registers the recurring maintenance
 * tasks (recurring_register; names = kinds):
 *   maintenance.prune_jobs      every 10 minutes
 *   maintenance.prune_workers   every hour
 *   maintenance.prune_audit     every day
 *   maintenance.prune_sessions  every hour
 * Then every scheduler_interval it makes due scheduled and failed jobs
 * ready (queue_promote_due, and wakes idle workers when it did), turns
 * expired leases into lost attempts (queue_reap_expired) and enqueues due
 * recurring tasks (recurring_run_due).  Several schedulers (several hosts,
 * or two generations during a reload) may run at once: every step is safe
 * to race.
 *
 * Any stop signal (TERM, QUIT, INT) ends it after the current tick.
 */
#ifndef CP_WORKERS_SCHEDULER_H
#define CP_WORKERS_SCHEDULER_H

#include <sys/types.h>

#include "conf.h"
#include "shared.h"

struct scheduler_opts {
    const struct conf *conf;
    struct shared *sh;
    struct worker_slot *slot;          /* this process's slot */
    pid_t supervisor_pid;
};

/* Run the scheduler until it is told to stop; returns its exit status
 * (runner.h's RUNNER_EXIT_*). */
int scheduler_main(const struct scheduler_opts *o);

#endif
