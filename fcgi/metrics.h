/*
 * metrics.h - request metrics shared by every process of the pool.
 *
 * The master maps one shared anonymous region before it forks, so every
 * child adds to the same counters with atomic operations and GET /metrics
 * answered by any child reports the whole pool.  Counters live as long as
 * the master: they survive child crashes, recycling and reloads.
 *
 * Requests are counted by route (the pattern, or "unmatched") and status,
 * and timed in a fixed-bucket histogram per route.
 */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include <stddef.h>

#include "buf.h"
#include "router.h"

struct metrics;

/* Map the shared region for a table of nroutes routes. */
int metrics_create(size_t nroutes, struct metrics **out);
/* Unmap it; NULL is a no-op. */
void metrics_destroy(struct metrics *m);

/* Count one request: route_index -1 for unmatched paths. */
void metrics_observe(struct metrics *m, int route_index, int status, double seconds);

/* Pool bookkeeping, written by the master. */
void metrics_set_children(struct metrics *m, int children);
void metrics_child_exit(struct metrics *m, int crashed);

/* Render the Prometheus text exposition (format 0.0.4). */
int metrics_render(const struct metrics *m, const struct route *routes,
                   size_t nroutes, struct buf *out);

#endif
