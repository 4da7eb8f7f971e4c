#include "config.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "err.h"
#include "metrics.h"

/* The statuses crosspost answers with; anything else counts as "other". */
static const int statuses[] = {
    200, 201, 202, 204, 301, 302, 303, 304, 400, 401, 403, 404, 405, 409,
    410, 411, 413, 415, 422, 429, 500, 502, 503, 504,
};
#define NSTATUS (sizeof statuses / sizeof statuses[0])
#define STATUS_OTHER NSTATUS

/* Histogram upper bounds in seconds. */
static const double bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

struct route_stats {
    uint64_t by_status[NSTATUS + 1];
    uint64_t buckets[NBOUNDS + 1];      /* non-cumulative; last is +Inf */
    uint64_t sum_us;
};

struct metrics {
    size_t size;                        /* of the whole mapping */
    size_t nroutes;                     /* slot 0 is "unmatched" */
    uint64_t started;                   /* master start, unix seconds */
    int64_t children;
    uint64_t exits_recycled;
    uint64_t exits_crashed;
    struct route_stats routes[];
};

int metrics_create(size_t nroutes, struct metrics **out)
{
    size_t size = sizeof(struct metrics) + (nroutes + 1) * sizeof(struct route_stats);
    struct metrics *m;

    *out = NULL;
    m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return CP_ENOMEM;
    memset(m, 0, size);
    m->size = size;
    m->nroutes = nroutes;
    m->started = (uint64_t)time(NULL);
    *out = m;
    return 0;
}

void metrics_destroy(struct metrics *m)
{
    if (m)
        munmap(m, m->size);
}

static void add(uint64_t *counter, uint64_t v)
{
    __atomic_fetch_add(counter, v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

void metrics_observe(struct metrics *m, int route_index, int status, double seconds)
{
    struct route_stats *rs;
    size_t slot = STATUS_OTHER, b;

    if (!m)
        return;
    if (route_index < -1 || route_index >= (int)m->nroutes)
        route_index = -1;
    rs = &m->routes[route_index + 1];
    for (size_t i = 0; i < NSTATUS; i++)
        if (statuses[i] == status) {
            slot = i;
            break;
        }
    add(&rs->by_status[slot], 1);
    for (b = 0; b < NBOUNDS && seconds > bounds[b]; b++)
        ;
    add(&rs->buckets[b], 1);
    add(&rs->sum_us, seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
}

void metrics_set_children(struct metrics *m, int children)
{
    if (m)
        __atomic_store_n(&m->children, (int64_t)children, __ATOMIC_RELAXED);
}

void metrics_child_exit(struct metrics *m, int crashed)
{
    if (m)
        add(crashed ? &m->exits_crashed : &m->exits_recycled, 1);
}

static const char *route_label(const struct route *routes, size_t i)
{
    return i == 0 ? "unmatched" : routes[i - 1].pattern;
}

int metrics_render(const struct metrics *m, const struct route *routes,
                   size_t nroutes, struct buf *out)
{
    int rc = 0;

    if (nroutes > m->nroutes)
        nroutes = m->nroutes;
    rc |= buf_printf(out,
        "# HELP crosspost_build_info Version of the running crosspost-api.\n"
        "# TYPE crosspost_build_info gauge\n"
        "crosspost_build_info{version=\"%s\"} 1\n"
        "# HELP crosspost_api_start_time_seconds When the pool master started.\n"
        "# TYPE crosspost_api_start_time_seconds gauge\n"
        "crosspost_api_start_time_seconds %llu\n"
        "# HELP crosspost_api_children FastCGI children the master keeps running.\n"
        "# TYPE crosspost_api_children gauge\n"
        "crosspost_api_children %lld\n"
        "# HELP crosspost_api_child_exits_total Child exits: recycled after their request budget or crashed.\n"
        "# TYPE crosspost_api_child_exits_total counter\n"
        "crosspost_api_child_exits_total{reason=\"recycled\"} %llu\n"
        "crosspost_api_child_exits_total{reason=\"crashed\"} %llu\n",
        PACKAGE_VERSION, (unsigned long long)m->started,
        (long long)__atomic_load_n(&m->children, __ATOMIC_RELAXED),
        (unsigned long long)get(&m->exits_recycled),
        (unsigned long long)get(&m->exits_crashed));

    rc |= buf_adds(out,
        "# HELP crosspost_http_requests_total Requests answered, by route and status.\n"
        "# TYPE crosspost_http_requests_total counter\n");
    for (size_t i = 0; i <= nroutes; i++) {
        const struct route_stats *rs = &m->routes[i];
        for (size_t s = 0; s <= NSTATUS; s++) {
            uint64_t v = get(&rs->by_status[s]);
            if (!v)
                continue;
            if (s == STATUS_OTHER)
                rc |= buf_printf(out, "crosspost_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                                 route_label(routes, i), (unsigned long long)v);
            else
                rc |= buf_printf(out, "crosspost_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                 route_label(routes, i), statuses[s], (unsigned long long)v);
        }
    }

    rc |= buf_adds(out,
        "# HELP crosspost_http_request_duration_seconds Time from accepting a request to the end of its response.\n"
        "# TYPE crosspost_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i <= nroutes; i++) {
        const struct route_stats *rs = &m->routes[i];
        const char *label = route_label(routes, i);
        uint64_t cum = 0, counts[NBOUNDS + 1];

        for (size_t b = 0; b <= NBOUNDS; b++)
            counts[b] = get(&rs->buckets[b]);
        for (size_t b = 0; b <= NBOUNDS; b++)
            cum += counts[b];
        if (!cum)
            continue;
        cum = 0;
        for (size_t b = 0; b < NBOUNDS; b++) {
            cum += counts[b];
            rc |= buf_printf(out, "crosspost_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                             label, bounds[b], (unsigned long long)cum);
        }
        cum += counts[NBOUNDS];
        rc |= buf_printf(out,
            "crosspost_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
            "crosspost_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "crosspost_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            label, (unsigned long long)cum, label, (double)get(&rs->sum_us) / 1e6,
            label, (unsigned long long)cum);
    }
    return rc ? CP_ETOOBIG : 0;
}
