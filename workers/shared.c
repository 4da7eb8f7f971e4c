#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "shared.h"

#define CACHE_LINE 64
/* Tries before slot_read gives up on a slot that keeps changing. */
#define SEQLOCK_TRIES 1000

/* Fields are accessed with __atomic builtins: several processes share them. */
struct worker_slot {
    int pid;                          /* supervisor */
    int stop;                         /* supervisor: enum slot_stop */
    long long worker_id;              /* child */
    long long tick_ms;                /* child */
    unsigned long long jobs_done;     /* child */
    unsigned seq;                     /* child: odd while the fields below change */
    unsigned nheld;
    long long job_id;
    long long job_started_ms;
    long long job_deadline_ms;
    long long held[QUEUE_BATCH_MAX];
} __attribute__((aligned(CACHE_LINE)));

struct shared {
    uint32_t wake;                    /* the futex word */
    uint32_t waiters;                 /* processes in shared_wait: wake only when some are */
    long long supervisor_id;
    size_t size;                      /* of the mapping */
    size_t nslots;
    size_t stats_offset;              /* where struct jobstats starts */
    struct worker_slot slots[];
};

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

long long shared_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int shared_create(size_t nslots, struct shared **out)
{
    struct shared *sh;
    size_t stats_offset, size;

    *out = NULL;
    if (nslots == 0 || nslots > SHARED_SLOTS_MAX)
        return CP_EINVAL;
    stats_offset = round_up(sizeof *sh + nslots * sizeof sh->slots[0], CACHE_LINE);
    size = stats_offset + jobstats_size();
    sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return CP_ENOMEM;
    memset(sh, 0, size);
    sh->size = size;
    sh->nslots = nslots;
    sh->stats_offset = stats_offset;
    *out = sh;
    return 0;
}

void shared_destroy(struct shared *sh)
{
    if (sh)
        munmap(sh, sh->size);
}

size_t shared_nslots(const struct shared *sh)
{
    return sh->nslots;
}

struct worker_slot *shared_slot(struct shared *sh, size_t i)
{
    return i < sh->nslots ? &sh->slots[i] : NULL;
}

struct jobstats *shared_jobstats(struct shared *sh)
{
    return (struct jobstats *)((char *)sh + sh->stats_offset);
}

void shared_set_supervisor_id(struct shared *sh, long long id)
{
    __atomic_store_n(&sh->supervisor_id, id, __ATOMIC_RELEASE);
}

long long shared_supervisor_id(const struct shared *sh)
{
    return __atomic_load_n(&sh->supervisor_id, __ATOMIC_ACQUIRE);
}

/* -------------------------------------------------------- wake word -- */

unsigned shared_wake_seq(const struct shared *sh)
{
    return __atomic_load_n(&sh->wake, __ATOMIC_SEQ_CST);
}

void shared_wake_all(struct shared *sh)
{
    __atomic_add_fetch(&sh->wake, 1, __ATOMIC_SEQ_CST);
    /* A waiter counts itself before it sleeps, so seeing none here means
     * any later sleeper compares against the bumped word and returns. */
    if (__atomic_load_n(&sh->waiters, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &sh->wake, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void shared_wait(struct shared *sh, unsigned seen, long long timeout_ms)
{
    struct timespec ts;

    if (timeout_ms <= 0)
        return;
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (timeout_ms % 1000) * 1000000;
    __atomic_add_fetch(&sh->waiters, 1, __ATOMIC_SEQ_CST);
    /* The kernel compares the word with seen before sleeping: a wake
     * between the caller's read and here returns at once (EAGAIN). */
    if (__atomic_load_n(&sh->wake, __ATOMIC_SEQ_CST) == seen)
        syscall(SYS_futex, &sh->wake, FUTEX_WAIT, seen, &ts, NULL, 0);
    __atomic_sub_fetch(&sh->waiters, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------- slots: supervisor -- */

void slot_prepare(struct worker_slot *s)
{
    memset(s, 0, sizeof *s);
    __atomic_store_n(&s->tick_ms, shared_now_ms(), __ATOMIC_RELEASE);
}

void slot_set_pid(struct worker_slot *s, pid_t pid)
{
    __atomic_store_n(&s->pid, (int)pid, __ATOMIC_RELEASE);
}

pid_t slot_pid(const struct worker_slot *s)
{
    return (pid_t)__atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
}

void slot_request_stop(struct worker_slot *s, enum slot_stop how)
{
    int cur = __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);

    /* Only the supervisor writes this word, so no lost update. */
    if ((int)how > cur)
        __atomic_store_n(&s->stop, (int)how, __ATOMIC_RELEASE);
}

long long slot_tick_ms(const struct worker_slot *s)
{
    return __atomic_load_n(&s->tick_ms, __ATOMIC_ACQUIRE);
}

void slot_job(const struct worker_slot *s, long long *job_id, long long *deadline_ms)
{
    unsigned before, after;
    int tries = 0;

    do {
        before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        *job_id = __atomic_load_n(&s->job_id, __ATOMIC_RELAXED);
        *deadline_ms = __atomic_load_n(&s->job_deadline_ms, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
    } while ((before != after || (before & 1)) && ++tries < SEQLOCK_TRIES);
    if (before != after || (before & 1))
        *job_id = *deadline_ms = 0;
}

int slot_read(const struct worker_slot *s, struct slot_view *out)
{
    memset(out, 0, sizeof *out);
    out->worker_id = __atomic_load_n(&s->worker_id, __ATOMIC_ACQUIRE);
    out->tick_ms = __atomic_load_n(&s->tick_ms, __ATOMIC_ACQUIRE);
    out->jobs_done = __atomic_load_n(&s->jobs_done, __ATOMIC_ACQUIRE);
    for (int tries = 0; tries < SEQLOCK_TRIES; tries++) {
        unsigned before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE), after, n;

        if (before & 1) {
            sched_yield();
            continue;
        }
        out->job_id = __atomic_load_n(&s->job_id, __ATOMIC_RELAXED);
        out->job_started_ms = __atomic_load_n(&s->job_started_ms, __ATOMIC_RELAXED);
        out->job_deadline_ms = __atomic_load_n(&s->job_deadline_ms, __ATOMIC_RELAXED);
        n = __atomic_load_n(&s->nheld, __ATOMIC_RELAXED);
        if (n > QUEUE_BATCH_MAX)
            n = QUEUE_BATCH_MAX;
        for (unsigned i = 0; i < n; i++)
            out->held[i] = __atomic_load_n(&s->held[i], __ATOMIC_RELAXED);
        out->nheld = n;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        if (after == before)
            return 0;
    }
    out->nheld = 0;
    out->job_id = 0;
    return CP_ERETRY;
}

/* ------------------------------------------------------ slots: child -- */

void slot_set_worker_id(struct worker_slot *s, long long worker_id)
{
    __atomic_store_n(&s->worker_id, worker_id, __ATOMIC_RELEASE);
}

long long slot_worker_id(const struct worker_slot *s)
{
    return __atomic_load_n(&s->worker_id, __ATOMIC_ACQUIRE);
}

void slot_tick(struct worker_slot *s)
{
    __atomic_store_n(&s->tick_ms, shared_now_ms(), __ATOMIC_RELEASE);
}

enum slot_stop slot_stop_requested(const struct worker_slot *s)
{
    return (enum slot_stop)__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

void slot_publish(struct worker_slot *s, const long long *held, size_t n, long long job_id,
                  long long started_ms, long long deadline_ms)
{
    unsigned seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);

    if (n > QUEUE_BATCH_MAX)
        n = QUEUE_BATCH_MAX;
    __atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->job_id, job_id, __ATOMIC_RELAXED);
    __atomic_store_n(&s->job_started_ms, started_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&s->job_deadline_ms, deadline_ms, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n; i++)
        __atomic_store_n(&s->held[i], held[i], __ATOMIC_RELAXED);
    __atomic_store_n(&s->nheld, (unsigned)n, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
    /* A sign of life too: publishing means the child is working. */
    slot_tick(s);
}

void slot_add_done(struct worker_slot *s, unsigned long long n)
{
    __atomic_add_fetch(&s->jobs_done, n, __ATOMIC_RELEASE);
}
