/*
 * shared.h - the memory a worker supervisor shares with its children.
 *
 * The supervisor maps one region (MAP_SHARED | MAP_ANONYMOUS) before it
 * forks, so it outlives any child and every process sees the same bytes:
 *
 *  - a wake word: a futex that idle workers sleep on and that the
 *    supervisor (new jobs) and the scheduler (promoted jobs) bump to wake
 *    them all.  Process-shared futex operations, never the PRIVATE ones.
 *  - one slot per child process: who it is, when it last showed a sign of
 *    life, the job it runs, the jobs it holds, and whether it was asked
 *    to stop.  The child writes its slot; the supervisor reads it for
 *    heartbeats and to find stalled children.
 *  - the job counters (struct jobstats, jobstats.h).
 *
 * The job id, its times and the held ids are published together under a
 * seqlock (one writer: the child), so the supervisor never renews leases
 * from a half-written list.  The other fields are single words read and
 * written atomically.  All times are CLOCK_MONOTONIC milliseconds, which
 * every process of the host shares.
 */
#ifndef CP_WORKERS_SHARED_H
#define CP_WORKERS_SHARED_H

#include <stddef.h>
#include <sys/types.h>

#include "jobstats.h"
#include "queue.h"

struct shared;
struct worker_slot;

/* What a child was asked to do (by the supervisor; signals say the same). */
enum slot_stop {
    SLOT_RUN = 0,
    SLOT_STOP_GRACEFUL = 1,    /* stop claiming, finish the running job */
    SLOT_STOP_FAST = 2,        /* give everything back now */
};

/* Map a zero-filled region with nslots slots (1..SHARED_SLOTS_MAX). */
#define SHARED_SLOTS_MAX 1024
int shared_create(size_t nslots, struct shared **out);

/* Unmap it; NULL is a no-op.  Only the supervisor, after its children
 * are gone. */
void shared_destroy(struct shared *sh);

size_t shared_nslots(const struct shared *sh);
struct worker_slot *shared_slot(struct shared *sh, size_t i);
struct jobstats *shared_jobstats(struct shared *sh);

/* The supervisor's workers.id, for its children's rows (0 = not yet). */
void shared_set_supervisor_id(struct shared *sh, long long id);
long long shared_supervisor_id(const struct shared *sh);

/* -------------------------------------------------------- wake word -- */

/* The current value of the wake word: read it before looking for work,
 * then pass it to shared_wait, so a wake in between is not missed. */
unsigned shared_wake_seq(const struct shared *sh);

/* Bump the wake word and wake every process waiting on it. */
void shared_wake_all(struct shared *sh);

/* Sleep until the wake word differs from seen, a signal arrives, or
 * timeout_ms passes.  Returns at once when it already differs. */
void shared_wait(struct shared *sh, unsigned seen, long long timeout_ms);

/* ------------------------------------------------- slots: supervisor -- */

/* Prepare a free slot for a child about to be forked: everything zeroed,
 * the liveness tick set to now (a child is not stalled before it starts). */
void slot_prepare(struct worker_slot *s);
/* Record the pid of the forked child (0 marks the slot free again). */
void slot_set_pid(struct worker_slot *s, pid_t pid);
pid_t slot_pid(const struct worker_slot *s);
/* Ask the child to stop; a stronger request wins over a weaker one. */
void slot_request_stop(struct worker_slot *s, enum slot_stop how);

/* What the supervisor reads of a child. */
struct slot_view {
    long long worker_id;          /* 0: its row is not written yet */
    long long tick_ms;            /* last sign of life */
    long long job_id;             /* running now; 0 = none */
    long long job_started_ms;
    long long job_deadline_ms;    /* past it the child is killed; 0 = none */
    unsigned long long jobs_done;
    size_t nheld;                 /* claimed and not yet given up, running one included */
    long long held[QUEUE_BATCH_MAX];
};

/* Cheap reads for frequent checks: the liveness tick; the running job
 * and its deadline, a consistent pair (both 0 when the child kept
 * writing and no stable pair could be read). */
long long slot_tick_ms(const struct worker_slot *s);
void slot_job(const struct worker_slot *s, long long *job_id, long long *deadline_ms);

/* A consistent copy of the slot.  CP_ERETRY when the child kept writing
 * (or died mid-write) and no stable copy could be read; try later. */
int slot_read(const struct worker_slot *s, struct slot_view *out);

/* ------------------------------------------------------ slots: child -- */

void slot_set_worker_id(struct worker_slot *s, long long worker_id);
long long slot_worker_id(const struct worker_slot *s);
/* A sign of life: the liveness tick becomes now. */
void slot_tick(struct worker_slot *s);
enum slot_stop slot_stop_requested(const struct worker_slot *s);
/* Publish the ids the child holds (n <= QUEUE_BATCH_MAX) and the job it
 * runs (0 = none; deadline_ms 0 = none), atomically for readers. */
void slot_publish(struct worker_slot *s, const long long *held, size_t n, long long job_id,
                  long long started_ms, long long deadline_ms);
/* Count finished jobs. */
void slot_add_done(struct worker_slot *s, unsigned long long n);

/* CLOCK_MONOTONIC in ms: the time base of every slot field. */
long long shared_now_ms(void);

#endif
