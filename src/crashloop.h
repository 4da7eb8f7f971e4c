/*
 * crashloop.h - slow down respawning when children crash in a loop.
 *
 * A supervisor (the API pool, the worker supervisor) notes every abnormal
 * exit of a child.  While fewer than `limit` exits fall within the last
 * `window` ms, children are respawned at once.  At the limit, respawns are
 * held back: 1 s after the first exit past it, then twice as long after
 * each further one, up to CRASHLOOP_BACKOFF_MAX_MS.  The loop is over when
 * the window holds no exit any more; respawns are then immediate again.
 *
 * Pure bookkeeping on a plain value: no clock, no logging, no allocation.
 * Callers pass the time (CLOCK_MONOTONIC ms) and log what they learn from
 * the return values.  Zero-filled (or crashloop_reset) is the idle state.
 */
#ifndef CP_CRASHLOOP_H
#define CP_CRASHLOOP_H

#define CRASHLOOP_MAX_EXITS 64          /* exits remembered; older ones are dropped */
#define CRASHLOOP_BACKOFF_FIRST_MS 1000
#define CRASHLOOP_BACKOFF_MAX_MS 30000

struct crashloop {
    /* Private: use the functions below. */
    long long exits[CRASHLOOP_MAX_EXITS];  /* times of recent abnormal exits, oldest first */
    int nexits;
    int backoff_ms;                        /* 0 = not throttled */
    long long respawn_at;                  /* no respawn before this; 0 = now */
};

/* Forget every exit and any throttle (a reload starts afresh). */
void crashloop_reset(struct crashloop *cl);

/* Forget exits older than window_ms.  Returns 1 when that ended a crash
 * loop (respawns are immediate again), else 0. */
int crashloop_prune(struct crashloop *cl, long long now_ms, long long window_ms);

/* Note one abnormal exit at now_ms.  Returns the respawn delay in ms when
 * the window now holds `limit` exits or more (respawns are held back),
 * else 0. */
int crashloop_note(struct crashloop *cl, long long now_ms, long long window_ms, long long limit);

/* Hold respawns until at_ms (after a failed fork, say) without counting
 * an exit. */
void crashloop_hold_until(struct crashloop *cl, long long at_ms);

/* 1 when a child may be spawned at now_ms. */
int crashloop_may_spawn(const struct crashloop *cl, long long now_ms);

/* 1 while in a crash loop: children come back one at a time. */
int crashloop_throttled(const struct crashloop *cl);

/* The earliest time of the next respawn (0 = now). */
long long crashloop_respawn_at(const struct crashloop *cl);

/* Exits within the window, as of the last prune or note. */
int crashloop_exits(const struct crashloop *cl);

#endif
