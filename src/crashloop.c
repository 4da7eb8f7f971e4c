#include "config.h"

#include <string.h>

#include "crashloop.h"

void crashloop_reset(struct crashloop *cl)
{
    memset(cl, 0, sizeof *cl);
}

int crashloop_prune(struct crashloop *cl, long long now_ms, long long window_ms)
{
    int keep = 0;

    for (int i = 0; i < cl->nexits; i++)
        if (now_ms - cl->exits[i] <= window_ms)
            cl->exits[keep++] = cl->exits[i];
    cl->nexits = keep;
    if (keep == 0 && cl->backoff_ms) {
        cl->backoff_ms = 0;
        cl->respawn_at = 0;
        return 1;
    }
    return 0;
}

int crashloop_note(struct crashloop *cl, long long now_ms, long long window_ms, long long limit)
{
    crashloop_prune(cl, now_ms, window_ms);
    if (cl->nexits == CRASHLOOP_MAX_EXITS) {
        memmove(cl->exits, cl->exits + 1, sizeof cl->exits - sizeof cl->exits[0]);
        cl->nexits--;
    }
    cl->exits[cl->nexits++] = now_ms;
    if (cl->nexits < limit)
        return 0;
    cl->backoff_ms = cl->backoff_ms ? cl->backoff_ms * 2 : CRASHLOOP_BACKOFF_FIRST_MS;
    if (cl->backoff_ms > CRASHLOOP_BACKOFF_MAX_MS)
        cl->backoff_ms = CRASHLOOP_BACKOFF_MAX_MS;
    cl->respawn_at = now_ms + cl->backoff_ms;
    return cl->backoff_ms;
}

void crashloop_hold_until(struct crashloop *cl, long long at_ms)
{
    cl->respawn_at = at_ms;
}

int crashloop_may_spawn(const struct crashloop *cl, long long now_ms)
{
    return now_ms >= cl->respawn_at;
}

int crashloop_throttled(const struct crashloop *cl)
{
    return cl->backoff_ms != 0;
}

long long crashloop_respawn_at(const struct crashloop *cl)
{
    return cl->respawn_at;
}

int crashloop_exits(const struct crashloop *cl)
{
    return cl->nexits;
}
