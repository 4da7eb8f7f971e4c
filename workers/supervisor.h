/*
 * supervisor.h - the master process of crosspost-worker.
 *
 * The supervisor registers itself in the workers table, recovers what
 * dead processes of this host left behind, maps the shared region
 * (shared.h) and forks one scheduler (scheduler.h) and, per queue of
 * worker_queues, that many worker processes (runner.h).  Then it only
 * supervises, in one loop; signal handlers only set flags:
 *
 *   TERM, QUIT  graceful stop: children stop claiming and finish their
 *               running job; after worker_graceful_timeout they are asked
 *               for a fast stop, 5 s later killed
 *   INT         fast stop: children give their jobs back at once
 *   HUP         reload: re-read the configuration and start a new
 *               generation of children; the old one drains (as above)
 *   USR1        reopen the log file, in every process
 *
 * Every worker_heartbeat_interval it records heartbeats (its own row with
 * the job counters, and the rows of children whose liveness tick is
 * fresh), renews the leases of the jobs those children hold, and kills
 * children that stalled (no tick for worker_stall_timeout) or whose job
 * ran past its kind's timeout.  Every worker_wake_interval it looks for
 * new jobs (SELECT MAX(id)) and wakes idle workers.  A child that dies is
 * reaped at once: its row is marked stopped and the jobs it held run
 * again (queue_release_owner).  Children that crash in a loop are
 * respawned more and more slowly (crashloop.h).
 */
#ifndef CP_WORKERS_SUPERVISOR_H
#define CP_WORKERS_SUPERVISOR_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "jobkinds.h"

#define SUPERVISOR_MAX_QUEUES 16        /* queues one supervisor serves (JOBSTATS_QUEUES) */
#define SUPERVISOR_MAX_PROCESSES 128    /* worker processes in one generation */

struct queue_processes {
    char queue[JOB_QUEUE_MAX + 1];
    int processes;
};

/*
 * Parse worker_queues ("default:2,maintenance:1"; spaces around items are
 * allowed).  Each queue once, 1..SUPERVISOR_MAX_PROCESSES processes, at
 * most SUPERVISOR_MAX_PROCESSES in all.  CP_EINVAL with a sentence in
 * *err (may be NULL).
 */
int worker_queues_parse(const char *text, struct queue_processes *out, size_t max, size_t *n,
                        struct buf *err);

/* Everything crosspost-worker needs of a configuration beyond conf.c's
 * own checks: worker_queues parses, and job_lease is more than twice
 * worker_heartbeat_interval (else leases would lapse between heartbeats).
 * CP_EINVAL with a sentence in *err. */
int supervisor_check_conf(const struct conf *c, struct buf *err);

/* Run until stopped.  config_path (may be NULL) is re-read on SIGHUP and
 * *confp replaced.  Returns 0 after a clean stop. */
int supervisor_run(const char *config_path, struct conf **confp);

#endif
