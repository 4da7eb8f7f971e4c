/*
 * jobstats.h - counters of the work crosspost-worker does, for /metrics.
 *
 * Writer side: a supervisor maps one struct jobstats in shared memory
 * before it forks, and its worker and scheduler processes add to it with
 * atomic operations (it outlives their crashes).  Every heartbeat the
 * supervisor writes jobstats_to_json() into its workers row.
 *
 * Reader side: GET /metrics (any API host) reads the snapshots of the
 * supervisors that are alive, sums them (jobstats_sum_add_json) and
 * renders Prometheus text, next to the gauges it reads from the jobs
 * table itself (queue depth, oldest due job, dead-letter size, live
 * workers).
 *
 * Snapshot format (version 1), all counts since the supervisor started:
 *   {"v":1,
 *    "finished":[{"queue":"default","kind":"noop","outcome":"succeeded","n":12}, ...],
 *    "duration":[{"queue":"default","kind":"noop","buckets":[..JOBSTATS_BUCKETS..],
 *                 "sum":0.5,"count":12}, ...],
 *    "claim":{"buckets":[...],"sum":0.01,"count":3,"jobs":12},
 *    "counters":{"leases_reaped":0,"jobs_promoted":0,"released_on_exit":0,"db_retries":0}}
 * Buckets are per-bucket counts (not cumulative), in the order of
 * jobstats_bounds, with one more for +Inf.
 */
#ifndef CP_JOBSTATS_H
#define CP_JOBSTATS_H

#include <stddef.h>

#include "buf.h"

#define JOBSTATS_QUEUES 16           /* queue names one supervisor tracks */
#define JOBSTATS_KINDS 64            /* >= job_nkinds (checked by a unit test) */
#define JOBSTATS_BUCKETS 16          /* finite bounds; +Inf is one more */
#define JOBSTATS_JSON_MAX (1u << 20)

/* Upper bounds of the duration buckets, seconds. */
extern const double jobstats_bounds[JOBSTATS_BUCKETS];

enum jobstats_outcome {
    JOBSTATS_SUCCEEDED,   /* done */
    JOBSTATS_RETRIED,     /* failed, will retry */
    JOBSTATS_DEFERRED,    /* rate limited, waiting */
    JOBSTATS_DEAD,        /* into the dead-letter queue */
    JOBSTATS_RELEASED,    /* given back by a stop */
    JOBSTATS_LEASE_LOST,  /* finished after its lease was lost: nothing recorded */
};
#define JOBSTATS_OUTCOMES 6

const char *jobstats_outcome_name(enum jobstats_outcome o);

enum jobstats_counter {
    JOBSTATS_LEASES_REAPED,      /* expired leases the scheduler took back */
    JOBSTATS_JOBS_PROMOTED,      /* scheduled/failed jobs made ready */
    JOBSTATS_RELEASED_ON_EXIT,   /* claims of dead children released by the supervisor */
    JOBSTATS_DB_RETRIES,         /* transactions run again after a deadlock or lock wait timeout */
};
#define JOBSTATS_COUNTERS 4

struct jobstats;

/* Size of the region to map (MAP_SHARED | MAP_ANONYMOUS), zero-filled. */
size_t jobstats_size(void);

/* The index of queue in s, adding it if new: 0..JOBSTATS_QUEUES-1, or
 * CP_ETOOBIG when the table is full (the caller then skips counting).
 * Safe to call from several processes at once. */
int jobstats_queue(struct jobstats *s, const char *queue);

/* Count one attempt of kind (an index into job_kinds) on queue index qi
 * that ended with outcome after seconds. */
void jobstats_finish(struct jobstats *s, int qi, size_t kind, enum jobstats_outcome outcome,
                     double seconds);

/* Count one claim transaction that took seconds and returned jobs jobs. */
void jobstats_claim(struct jobstats *s, double seconds, size_t jobs);

void jobstats_add(struct jobstats *s, enum jobstats_counter c, unsigned long long n);

/* Append the snapshot (format above). */
int jobstats_to_json(const struct jobstats *s, struct buf *out);

/* ------------------------------------------------------------ reader -- */

struct jobstats_sum;

int jobstats_sum_new(struct jobstats_sum **out);
void jobstats_sum_free(struct jobstats_sum *sum);

/* Add one snapshot.  CP_EPARSE for text that is not a version-1
 * snapshot (the caller skips it); names are checked before use. */
int jobstats_sum_add_json(struct jobstats_sum *sum, const char *json);

/* Render the summed counters as Prometheus text (# HELP/# TYPE lines,
 * metric names crosspost_jobs_finished_total, crosspost_job_duration_seconds,
 * crosspost_job_claim_seconds, crosspost_jobs_claimed_total,
 * crosspost_job_leases_reaped_total, crosspost_jobs_promoted_total,
 * crosspost_job_claims_released_on_exit_total, crosspost_job_db_retries_total). */
int jobstats_sum_render(const struct jobstats_sum *sum, struct buf *out);

#endif
