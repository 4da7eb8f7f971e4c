/*
 * Counters of crosspost-worker in shared memory, their JSON snapshot, and
 * the reader that sums snapshots for /metrics.
 *
 * Writer: struct jobstats is a fixed, zero-filled layout (no pointers), so
 * it can sit in a shared anonymous mapping made before fork.  Every count
 * is a 64-bit relaxed atomic; a process killed mid-update loses at most
 * the one count it was adding.  Queue names are added to a small table by
 * compare-and-swap: a slot goes free -> being written -> published, and
 * only published slots are read.
 *
 * Reader: snapshots come from the workers table, so they are checked
 * like any input (version, shapes, names, sizes) before anything is
 * added, and a bad one is refused whole.
 */
#include "config.h"

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jobkinds.h"
#include "jobstats.h"
#include "json.h"

const double jobstats_bounds[JOBSTATS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5, 10, 60, 300,
};

#define NB (JOBSTATS_BUCKETS + 1)        /* with +Inf */

static const char *const outcome_names[JOBSTATS_OUTCOMES] = {
    "succeeded", "retried", "deferred", "dead", "released", "lease_lost",
};

/* Snapshot member names of the counters, and their metric names. */
static const char *const counter_names[JOBSTATS_COUNTERS] = {
    "leases_reaped", "jobs_promoted", "released_on_exit", "db_retries",
};

const char *jobstats_outcome_name(enum jobstats_outcome o)
{
    return (unsigned)o < JOBSTATS_OUTCOMES ? outcome_names[o] : "unknown";
}

/* ------------------------------------------------------------ writer -- */

enum { SLOT_FREE = 0, SLOT_WRITING = 1, SLOT_READY = 2 };

/* How long a reader of the queue table waits for a slot being written
 * before it gives up on that slot (its writer may have died). */
#define SLOT_SPINS 100000

struct histogram {
    uint64_t buckets[NB];                /* per bucket, not cumulative */
    uint64_t sum_us;
};

struct jobstats {
    uint32_t slot_state[JOBSTATS_QUEUES];
    char queue_name[JOBSTATS_QUEUES][JOB_QUEUE_MAX + 1];
    uint64_t finished[JOBSTATS_QUEUES][JOBSTATS_KINDS][JOBSTATS_OUTCOMES];
    struct histogram duration[JOBSTATS_QUEUES][JOBSTATS_KINDS];
    struct histogram claim;
    uint64_t claimed_jobs;
    uint64_t counters[JOBSTATS_COUNTERS];
};

size_t jobstats_size(void)
{
    return sizeof(struct jobstats);
}

static void add_u64(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static uint64_t get_u64(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* A slot's state once it has left SLOT_WRITING, or SLOT_WRITING when its
 * writer takes too long (then the slot is skipped). */
static uint32_t settled_state(const struct jobstats *s, int i)
{
    uint32_t st = __atomic_load_n(&s->slot_state[i], __ATOMIC_ACQUIRE);

    for (int spin = 0; st == SLOT_WRITING && spin < SLOT_SPINS; spin++) {
        sched_yield();
        st = __atomic_load_n(&s->slot_state[i], __ATOMIC_ACQUIRE);
    }
    return st;
}

int jobstats_queue(struct jobstats *s, const char *queue)
{
    if (!s || !queue || !job_queue_name_ok(queue))
        return CP_EINVAL;
    for (int i = 0; i < JOBSTATS_QUEUES; i++) {
        uint32_t st = settled_state(s, i);

        if (st == SLOT_FREE) {
            uint32_t expected = SLOT_FREE;
            if (__atomic_compare_exchange_n(&s->slot_state[i], &expected, SLOT_WRITING, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                memset(s->queue_name[i], 0, sizeof s->queue_name[i]);
                memcpy(s->queue_name[i], queue, strlen(queue));
                __atomic_store_n(&s->slot_state[i], SLOT_READY, __ATOMIC_RELEASE);
                return i;
            }
            st = settled_state(s, i);     /* another process took it: whose name? */
        }
        if (st == SLOT_READY && strcmp(s->queue_name[i], queue) == 0)
            return i;
    }
    return CP_ETOOBIG;
}

static void observe(struct histogram *h, double seconds)
{
    size_t b = 0;

    if (!(seconds > 0))                  /* negative, zero or NaN */
        seconds = 0;
    while (b < JOBSTATS_BUCKETS && seconds > jobstats_bounds[b])
        b++;
    add_u64(&h->buckets[b], 1);
    /* A year in microseconds still fits; cap anything absurd. */
    add_u64(&h->sum_us, seconds < 3.2e7 ? (uint64_t)(seconds * 1e6 + 0.5) : (uint64_t)3.2e13);
}

static int kind_index_ok(size_t kind)
{
    return kind < job_nkinds && kind < JOBSTATS_KINDS;
}

void jobstats_finish(struct jobstats *s, int qi, size_t kind, enum jobstats_outcome outcome,
                     double seconds)
{
    if (!s || qi < 0 || qi >= JOBSTATS_QUEUES || !kind_index_ok(kind) ||
        (unsigned)outcome >= JOBSTATS_OUTCOMES)
        return;
    add_u64(&s->finished[qi][kind][outcome], 1);
    observe(&s->duration[qi][kind], seconds);
}

void jobstats_claim(struct jobstats *s, double seconds, size_t jobs)
{
    if (!s)
        return;
    observe(&s->claim, seconds);
    add_u64(&s->claimed_jobs, jobs);
}

void jobstats_add(struct jobstats *s, enum jobstats_counter c, unsigned long long n)
{
    if (s && (unsigned)c < JOBSTATS_COUNTERS)
        add_u64(&s->counters[c], n);
}

/* Read a histogram once, so its count is the sum of the buckets shown. */
static uint64_t read_histogram(const struct histogram *h, uint64_t *buckets, double *sum)
{
    uint64_t count = 0;

    for (size_t b = 0; b < NB; b++) {
        buckets[b] = get_u64(&h->buckets[b]);
        count += buckets[b];
    }
    *sum = (double)get_u64(&h->sum_us) / 1e6;
    return count;
}

static int histogram_json(struct buf *out, const uint64_t *buckets, double sum, uint64_t count)
{
    int rc = buf_adds(out, "\"buckets\":[");

    for (size_t b = 0; b < NB && !rc; b++)
        rc = buf_printf(out, "%s%llu", b ? "," : "", (unsigned long long)buckets[b]);
    return rc ? rc : buf_printf(out, "],\"sum\":%.6f,\"count\":%llu", sum, (unsigned long long)count);
}

int jobstats_to_json(const struct jobstats *s, struct buf *out)
{
    uint64_t buckets[NB], count;
    size_t nkinds = job_nkinds < JOBSTATS_KINDS ? job_nkinds : JOBSTATS_KINDS;
    int first = 1, rc;
    double sum;

    if (!s || !out)
        return CP_EINVAL;
    rc = buf_adds(out, "{\"v\":1,\"finished\":[");
    for (int q = 0; q < JOBSTATS_QUEUES && !rc; q++) {
        if (__atomic_load_n(&s->slot_state[q], __ATOMIC_ACQUIRE) != SLOT_READY)
            continue;
        for (size_t k = 0; k < nkinds && !rc; k++)
            for (int o = 0; o < JOBSTATS_OUTCOMES && !rc; o++) {
                uint64_t n = get_u64(&s->finished[q][k][o]);
                if (!n)
                    continue;
                rc = buf_printf(out, "%s{\"queue\":\"%s\",\"kind\":\"%s\",\"outcome\":\"%s\",\"n\":%llu}",
                                first ? "" : ",", s->queue_name[q], job_kinds[k].name,
                                outcome_names[o], (unsigned long long)n);
                first = 0;
            }
    }
    rc = rc ? rc : buf_adds(out, "],\"duration\":[");
    first = 1;
    for (int q = 0; q < JOBSTATS_QUEUES && !rc; q++) {
        if (__atomic_load_n(&s->slot_state[q], __ATOMIC_ACQUIRE) != SLOT_READY)
            continue;
        for (size_t k = 0; k < nkinds && !rc; k++) {
            count = read_histogram(&s->duration[q][k], buckets, &sum);
            if (!count)
                continue;
            rc = buf_printf(out, "%s{\"queue\":\"%s\",\"kind\":\"%s\",", first ? "" : ",",
                            s->queue_name[q], job_kinds[k].name);
            rc = rc ? rc : histogram_json(out, buckets, sum, count);
            rc = rc ? rc : buf_addc(out, '}');
            first = 0;
        }
    }
    count = read_histogram(&s->claim, buckets, &sum);
    rc = rc ? rc : buf_adds(out, "],\"claim\":{");
    rc = rc ? rc : histogram_json(out, buckets, sum, count);
    rc = rc ? rc : buf_printf(out, ",\"jobs\":%llu},\"counters\":{",
                              (unsigned long long)get_u64(&s->claimed_jobs));
    for (int c = 0; c < JOBSTATS_COUNTERS && !rc; c++)
        rc = buf_printf(out, "%s\"%s\":%llu", c ? "," : "", counter_names[c],
                        (unsigned long long)get_u64(&s->counters[c]));
    return rc ? rc : buf_adds(out, "}}");
}

/* ------------------------------------------------------------ reader -- */

/* Series one sum holds; far more than any installation has (queues x
 * kinds x outcomes), so a snapshot cannot make the reader grow without
 * bound. */
#define SUM_SERIES_MAX 8192

struct finished_series {
    char queue[JOB_QUEUE_MAX + 1];
    char kind[JOB_KIND_MAX + 1];
    int outcome;
    uint64_t n;
};

struct duration_series {
    char queue[JOB_QUEUE_MAX + 1];
    char kind[JOB_KIND_MAX + 1];
    uint64_t buckets[NB];
    double sum;
};

struct jobstats_sum {
    struct finished_series *finished;
    size_t nfinished, cap_finished;
    struct duration_series *duration;
    size_t nduration, cap_duration;
    uint64_t claim_buckets[NB];
    double claim_sum;
    uint64_t claimed_jobs;
    uint64_t counters[JOBSTATS_COUNTERS];
};

int jobstats_sum_new(struct jobstats_sum **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : CP_ENOMEM;
}

void jobstats_sum_free(struct jobstats_sum *sum)
{
    if (!sum)
        return;
    free(sum->finished);
    free(sum->duration);
    free(sum);
}

static int outcome_parse(const char *s)
{
    for (int o = 0; o < JOBSTATS_OUTCOMES; o++)
        if (strcmp(s, outcome_names[o]) == 0)
            return o;
    return -1;
}

/* A count: a JSON integer >= 0. */
static int get_count(struct json_object *obj, const char *key, uint64_t *out)
{
    long long v;

    if (json_get_int(obj, key, &v) || v < 0)
        return CP_EPARSE;
    *out = (uint64_t)v;
    return 0;
}

/* A sum of seconds: a finite JSON number >= 0. */
static int get_seconds(struct json_object *obj, const char *key, double *out)
{
    struct json_object *v;
    double d;

    if (!json_object_object_get_ex(obj, key, &v) ||
        (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)))
        return CP_EPARSE;
    d = json_object_get_double(v);
    if (!isfinite(d) || d < 0)
        return CP_EPARSE;
    *out = d;
    return 0;
}

static int get_name(struct json_object *obj, const char *key, int (*ok)(const char *),
                    char *out, size_t cap)
{
    const char *s;

    if (json_get_string(obj, key, &s) || strlen(s) >= cap || !ok(s))
        return CP_EPARSE;
    strcpy(out, s);
    return 0;
}

/* Buckets, sum and count of a histogram object; count must be the total
 * of the buckets, as Prometheus requires of _count and le="+Inf". */
static int get_histogram(struct json_object *obj, uint64_t *buckets, double *sum)
{
    struct json_object *arr;
    uint64_t count, total = 0;

    if (json_get_array(obj, "buckets", &arr) || json_object_array_length(arr) != NB)
        return CP_EPARSE;
    for (size_t b = 0; b < NB; b++) {
        struct json_object *v = json_object_array_get_idx(arr, b);
        long long n;
        if (!json_object_is_type(v, json_type_int) || (n = json_object_get_int64(v)) < 0)
            return CP_EPARSE;
        buckets[b] = (uint64_t)n;
        if (total + buckets[b] < total)
            return CP_EPARSE;
        total += buckets[b];
    }
    if (get_seconds(obj, "sum", sum) || get_count(obj, "count", &count) || count != total)
        return CP_EPARSE;
    return 0;
}

static int grow(void **items, size_t *cap, size_t need, size_t size)
{
    size_t ncap;
    void *p;

    if (need <= *cap)
        return 0;
    if (need > SUM_SERIES_MAX)
        return CP_ETOOBIG;
    ncap = *cap ? *cap * 2 : 32;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SUM_SERIES_MAX)
        ncap = SUM_SERIES_MAX;
    p = realloc(*items, ncap * size);
    if (!p)
        return CP_ENOMEM;
    *items = p;
    *cap = ncap;
    return 0;
}

static int cmp_finished(const void *a, const void *b)
{
    const struct finished_series *x = a, *y = b;
    int c = strcmp(x->queue, y->queue);

    if (!c)
        c = strcmp(x->kind, y->kind);
    return c ? c : x->outcome - y->outcome;
}

static int cmp_duration(const void *a, const void *b)
{
    const struct duration_series *x = a, *y = b;
    int c = strcmp(x->queue, y->queue);

    return c ? c : strcmp(x->kind, y->kind);
}

/*
 * The series equal to key in a sorted array, inserted (a copy of key) if
 * missing.  Arrays stay sorted, so lookups are binary searches and
 * scrapes list series in a stable order.
 */
static int find_or_insert(void **items, size_t *n, size_t *cap, size_t size, const void *key,
                          int (*cmp)(const void *, const void *), void **out)
{
    size_t lo = 0, hi = *n;
    char *base;
    int rc;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp((char *)*items + mid * size, key);
        if (c == 0) {
            *out = (char *)*items + mid * size;
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    rc = grow(items, cap, *n + 1, size);
    if (rc)
        return rc;
    base = *items;
    memmove(base + (lo + 1) * size, base + lo * size, (*n - lo) * size);
    memcpy(base + lo * size, key, size);
    (*n)++;
    *out = base + lo * size;
    return 0;
}

/*
 * Check every part of a parsed snapshot and, when apply is set, add it.
 * add_json runs it twice, checking first, so that a snapshot refused
 * half-way has added nothing.
 */
static int walk_snapshot(struct jobstats_sum *sum, struct json_object *root, int apply)
{
    struct json_object *arr, *obj;
    long long version;
    uint64_t buckets[NB], n;
    double secs;
    int rc;

    if (!json_object_is_type(root, json_type_object) || json_get_int(root, "v", &version) ||
        version != 1)
        return CP_EPARSE;

    if (json_get_array(root, "finished", &arr))
        return CP_EPARSE;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct finished_series item = { .outcome = -1 };
        struct json_object *e = json_object_array_get_idx(arr, i);
        const char *outcome;

        if (!json_object_is_type(e, json_type_object) ||
            get_name(e, "queue", job_queue_name_ok, item.queue, sizeof item.queue) ||
            get_name(e, "kind", job_kind_name_ok, item.kind, sizeof item.kind) ||
            json_get_string(e, "outcome", &outcome) || (item.outcome = outcome_parse(outcome)) < 0 ||
            get_count(e, "n", &n))
            return CP_EPARSE;
        if (!apply)
            continue;
        void *slot;
        rc = find_or_insert((void **)&sum->finished, &sum->nfinished, &sum->cap_finished,
                            sizeof item, &item, cmp_finished, &slot);
        if (rc)
            return rc;
        ((struct finished_series *)slot)->n += n;
    }

    if (json_get_array(root, "duration", &arr))
        return CP_EPARSE;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct duration_series item = { .sum = 0 };
        struct json_object *e = json_object_array_get_idx(arr, i);

        if (!json_object_is_type(e, json_type_object) ||
            get_name(e, "queue", job_queue_name_ok, item.queue, sizeof item.queue) ||
            get_name(e, "kind", job_kind_name_ok, item.kind, sizeof item.kind) ||
            get_histogram(e, buckets, &secs))
            return CP_EPARSE;
        if (!apply)
            continue;
        void *slot;
        rc = find_or_insert((void **)&sum->duration, &sum->nduration, &sum->cap_duration,
                            sizeof item, &item, cmp_duration, &slot);
        if (rc)
            return rc;
        struct duration_series *d = slot;
        for (size_t b = 0; b < NB; b++)
            d->buckets[b] += buckets[b];
        d->sum += secs;
    }

    if (json_get_object(root, "claim", &obj) || get_histogram(obj, buckets, &secs) ||
        get_count(obj, "jobs", &n))
        return CP_EPARSE;
    if (apply) {
        for (size_t b = 0; b < NB; b++)
            sum->claim_buckets[b] += buckets[b];
        sum->claim_sum += secs;
        sum->claimed_jobs += n;
    }

    if (json_get_object(root, "counters", &obj))
        return CP_EPARSE;
    for (int c = 0; c < JOBSTATS_COUNTERS; c++) {
        if (get_count(obj, counter_names[c], &n))
            return CP_EPARSE;
        if (apply)
            sum->counters[c] += n;
    }
    return 0;
}

int jobstats_sum_add_json(struct jobstats_sum *sum, const char *json)
{
    static const struct json_limits limits = {
        .max_size = JOBSTATS_JSON_MAX, .max_depth = 4, .max_string = 128,
    };
    struct json_object *root = NULL;
    int rc;

    if (!sum || !json)
        return CP_EINVAL;
    if (json_parse(json, strlen(json), &limits, &root, NULL))
        return CP_EPARSE;
    rc = walk_snapshot(sum, root, 0);
    if (rc == 0)
        rc = walk_snapshot(sum, root, 1);
    json_object_put(root);
    return rc;
}

/* One histogram's samples; labels is "" or `queue="q",kind="k",`. */
static int render_histogram(struct buf *out, const char *name, const char *labels,
                            const uint64_t *buckets, double sum)
{
    uint64_t cum = 0;
    int rc = 0;

    for (size_t b = 0; b < JOBSTATS_BUCKETS && !rc; b++) {
        cum += buckets[b];
        rc = buf_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, jobstats_bounds[b],
                        (unsigned long long)cum);
    }
    cum += buckets[JOBSTATS_BUCKETS];
    if (rc)
        return rc;
    /* _sum and _count take the labels without the trailing comma. */
    size_t n = strlen(labels);
    return buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n"
                           "%s_sum%s%.*s%s %.6f\n"
                           "%s_count%s%.*s%s %llu\n",
                      name, labels, (unsigned long long)cum,
                      name, n ? "{" : "", (int)(n ? n - 1 : 0), labels, n ? "}" : "", sum,
                      name, n ? "{" : "", (int)(n ? n - 1 : 0), labels, n ? "}" : "",
                      (unsigned long long)cum);
}

int jobstats_sum_render(const struct jobstats_sum *sum, struct buf *out)
{
    static const struct {
        const char *name;
        const char *help;
    } counters[JOBSTATS_COUNTERS] = {
        { "crosspost_job_leases_reaped_total",
          "Running jobs whose lease expired and that the scheduler took back." },
        { "crosspost_jobs_promoted_total", "Scheduled and failed jobs made ready when due." },
        { "crosspost_job_claims_released_on_exit_total",
          "Jobs held by a worker process that died, released by its supervisor." },
        { "crosspost_job_db_retries_total",
          "Queue transactions run again after a deadlock or lock wait timeout." },
    };
    char labels[JOB_QUEUE_MAX + JOB_KIND_MAX + 32];
    int rc;

    if (!sum || !out)
        return CP_EINVAL;
    rc = buf_adds(out,
        "# HELP crosspost_jobs_finished_total Job attempts that ended, by queue, kind and outcome.\n"
        "# TYPE crosspost_jobs_finished_total counter\n");
    for (size_t i = 0; i < sum->nfinished && !rc; i++) {
        const struct finished_series *f = &sum->finished[i];
        rc = buf_printf(out, "crosspost_jobs_finished_total{queue=\"%s\",kind=\"%s\",outcome=\"%s\"} %llu\n",
                        f->queue, f->kind, outcome_names[f->outcome], (unsigned long long)f->n);
    }
    rc = rc ? rc : buf_adds(out,
        "# HELP crosspost_job_duration_seconds How long one attempt of a job ran.\n"
        "# TYPE crosspost_job_duration_seconds histogram\n");
    for (size_t i = 0; i < sum->nduration && !rc; i++) {
        const struct duration_series *d = &sum->duration[i];
        snprintf(labels, sizeof labels, "queue=\"%s\",kind=\"%s\",", d->queue, d->kind);
        rc = render_histogram(out, "crosspost_job_duration_seconds", labels, d->buckets, d->sum);
    }
    rc = rc ? rc : buf_adds(out,
        "# HELP crosspost_job_claim_seconds How long one claim transaction took.\n"
        "# TYPE crosspost_job_claim_seconds histogram\n");
    rc = rc ? rc : render_histogram(out, "crosspost_job_claim_seconds", "", sum->claim_buckets,
                                    sum->claim_sum);
    rc = rc ? rc : buf_printf(out,
        "# HELP crosspost_jobs_claimed_total Jobs claimed by worker processes.\n"
        "# TYPE crosspost_jobs_claimed_total counter\n"
        "crosspost_jobs_claimed_total %llu\n", (unsigned long long)sum->claimed_jobs);
    for (int c = 0; c < JOBSTATS_COUNTERS && !rc; c++)
        rc = buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[c].name,
                        counters[c].help, counters[c].name, counters[c].name,
                        (unsigned long long)sum->counters[c]);
    return rc;
}
