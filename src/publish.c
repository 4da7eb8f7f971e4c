#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"
#include "pub_internal.h"
#include "publish.h"

/* One row per destination platform; TikTok is only a source. */
static const struct publisher publishers[] = {
    { PLATFORM_INSTAGRAM, pub_instagram },
    { PLATFORM_YOUTUBE, pub_youtube },
    { PLATFORM_X, pub_x },
};

const struct publisher *publisher_find(enum platform_id platform)
{
    for (size_t i = 0; i < sizeof publishers / sizeof publishers[0]; i++)
        if (publishers[i].platform == platform)
            return &publishers[i];
    return NULL;
}

/* ------------------------------------------------ publisher helpers -- */

const char *pub_state_str(struct json_object *state, const char *key)
{
    const char *s = NULL;

    return json_get_string(state, key, &s) == 0 && *s ? s : NULL;
}

long long pub_state_int(struct json_object *state, const char *key)
{
    long long v = 0;

    return json_get_int(state, key, &v) == 0 ? v : 0;
}

int pub_state_bool(struct json_object *state, const char *key)
{
    int v = 0;

    return json_get_bool(state, key, &v) == 0 && v;
}

/* Takes v (NULL when it could not be made: out of memory). */
static int state_set(struct json_object *state, const char *key, struct json_object *v)
{
    if (!v)
        return CP_ENOMEM;
    if (json_object_object_add(state, key, v)) {
        json_object_put(v);
        return CP_ENOMEM;
    }
    return 0;
}

int pub_state_set_str(struct json_object *state, const char *key, const char *v)
{
    if (!v)
        return json_object_object_add(state, key, NULL) ? CP_ENOMEM : 0;
    return state_set(state, key, json_object_new_string(v));
}

int pub_state_set_int(struct json_object *state, const char *key, long long v)
{
    return state_set(state, key, json_object_new_int64(v));
}

int pub_state_set_bool(struct json_object *state, const char *key, int v)
{
    return state_set(state, key, json_object_new_boolean(v));
}

int pub_hook_save(const struct pub_hooks *hooks, struct json_object *state)
{
    return hooks && hooks->save && hooks->save(hooks->arg, state);
}

int pub_hook_progress(const struct pub_hooks *hooks, long long sent, long long total)
{
    return hooks && hooks->progress && hooks->progress(hooks->arg, sent, total);
}

int pub_hook_should_stop(const struct pub_hooks *hooks)
{
    return hooks && hooks->should_stop && hooks->should_stop(hooks->arg);
}

int pub_nap(const struct pub_hooks *hooks, long long ms, long long step_ms)
{
    while (ms > 0) {
        long long step = ms < step_ms ? ms : step_ms;
        struct timespec ts = { (time_t)(step / 1000), (long)(step % 1000) * 1000000L };

        if (pub_hook_should_stop(hooks))
            return 1;
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
        ms -= step;
    }
    return pub_hook_should_stop(hooks);
}

void pub_outputs_reset(struct pub_result *res, struct pub_quota *quota, struct plat_error *err)
{
    memset(res, 0, sizeof *res);
    memset(quota, 0, sizeof *quota);
    quota->remaining = -1;
    memset(err, 0, sizeof *err);
}
