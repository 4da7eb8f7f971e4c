#include "config.h"

#include <stdlib.h>

#include "err.h"
#include "jobstats.h"
#include "log.h"
#include "queue.h"
#include "runner.h"
#include "scheduler.h"

/* Rows one statement handles; a full batch means look again at once. */
#define PROMOTE_BATCH 1000
#define REAP_BATCH 500
#define RECURRING_BATCH 100

#define MINUTE (60LL * 1000)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

static const struct recurring_task recurring_fixed[] = {
    { "maintenance.prune_jobs", "maintenance.prune_jobs", NULL, NULL, 10 * MINUTE },
    { "maintenance.prune_workers", "maintenance.prune_workers", NULL, NULL, HOUR },
    { "maintenance.prune_audit", "maintenance.prune_audit", NULL, NULL, DAY },
    { "maintenance.prune_sessions", "maintenance.prune_sessions", NULL, NULL, HOUR },
    { "sync.plan", "sync.plan", NULL, NULL, 15 * 1000 },
};
#define NFIXED (sizeof recurring_fixed / sizeof recurring_fixed[0])
/* The fixed tasks, then those whose interval is configured. */
#define NRECURRING (NFIXED + 2)

static struct recurring_task recurring_row(const struct conf *c, size_t i)
{
    if (i < NFIXED)
        return recurring_fixed[i];
    if (i == NFIXED + 1)
        return (struct recurring_task){ "publications.sweep", "publications.sweep", NULL, NULL,
                                        c->publication_sweep_interval };
    return (struct recurring_task){ "connections.plan", "connections.plan", NULL, NULL,
                                    c->connection_scan_interval };
}

struct scheduler {
    const struct scheduler_opts *o;
    const struct conf *c;
    struct db *db;
    struct jobstats *stats;
    struct retry_policy policy;
    unsigned long long db_retries_seen;
    int trouble;                       /* an error was logged; say when it is over */
};

static void count_db_retries(struct scheduler *s)
{
    unsigned long long n = db_tx_retries(s->db);

    if (n > s->db_retries_seen)
        jobstats_add(s->stats, JOBSTATS_DB_RETRIES, n - s->db_retries_seen);
    s->db_retries_seen = n;
}

/* Register what is not registered yet; 1 when all are. */
static int register_recurring(struct scheduler *s, unsigned char *done)
{
    int all = 1;

    for (size_t i = 0; i < NRECURRING; i++) {
        int rc;

        struct recurring_task t = recurring_row(s->c, i);

        if (done[i])
            continue;
        rc = recurring_register(s->db, &t, 0);
        if (rc) {
            all = 0;
            if (!s->trouble)
                log_error("cannot register recurring task %s: %s", t.name, cp_strerror(rc));
            s->trouble = 1;
            continue;
        }
        done[i] = 1;
    }
    return all;
}

/* One tick; 0 when every step went through. */
static int tick(struct scheduler *s)
{
    size_t n, total;
    int rc;

    total = 0;
    do {
        n = 0;
        rc = queue_promote_due(s->db, PROMOTE_BATCH, &n);
        total += n;
    } while (!rc && n == PROMOTE_BATCH && child_stop_asked(s->o->slot) == SLOT_RUN);
    if (total) {
        jobstats_add(s->stats, JOBSTATS_JOBS_PROMOTED, total);
        shared_wake_all(s->o->sh);
        log_debug("promoted %zu due jobs", total);
    }
    if (rc)
        goto out;

    total = 0;
    do {
        n = 0;
        rc = queue_reap_expired(s->db, REAP_BATCH, &s->policy, &n);
        total += n;
    } while (!rc && n == REAP_BATCH && child_stop_asked(s->o->slot) == SLOT_RUN);
    if (total) {
        jobstats_add(s->stats, JOBSTATS_LEASES_REAPED, total);
        log_warn("%zu running jobs had expired leases; they run again", total);
    }
    if (rc)
        goto out;

    n = 0;
    rc = recurring_run_due(s->db, RECURRING_BATCH, &n);
    if (n) {
        shared_wake_all(s->o->sh);
        log_info("enqueued %zu recurring tasks", n);
    }
out:
    count_db_retries(s);
    return rc;
}

int scheduler_main(const struct scheduler_opts *o)
{
    struct scheduler s = { .o = o, .c = o->conf };
    unsigned char registered[NRECURRING] = { 0 };
    long long worker_id = 0;
    int rc, all_registered = 0;

    child_signals_install(o->supervisor_pid);
    s.stats = shared_jobstats(o->sh);
    s.policy = (struct retry_policy){ o->conf->job_retry_base, o->conf->job_retry_cap };
    rc = db_open(s.c, &s.db);
    if (!s.db) {
        log_error("scheduler: cannot create a database handle: %s", cp_strerror(rc));
        return RUNNER_EXIT_FAILED;
    }
    db_set_read_committed(s.db);
    if (child_register(s.db, s.c, o->sh, o->slot, "scheduler", "", &worker_id))
        goto out;
    log_info("scheduler started: worker id %lld, every %lld ms", worker_id, s.c->scheduler_interval);

    while (child_stop_asked(o->slot) == SLOT_RUN) {
        child_reopen_log(s.c);
        slot_tick(o->slot);
        if (!all_registered)
            all_registered = register_recurring(&s, registered);
        rc = tick(&s);
        if (rc && !s.trouble)
            log_error("scheduler: %s; trying again every %lld ms", cp_strerror(rc), s.c->scheduler_interval);
        else if (!rc && s.trouble && all_registered)
            log_info("scheduler: database reachable again");
        if (rc)
            s.trouble = 1;
        else if (all_registered)
            s.trouble = 0;
        child_pause(o->slot, s.c->scheduler_interval);
    }
    log_info("scheduler stopping");
out:
    child_exit_row(s.db, worker_id, o->supervisor_pid);
    db_close(s.db);
    return RUNNER_EXIT_OK;
}
