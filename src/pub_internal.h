/*
 * pub_internal.h - what the publishers (pub_<platform>.c) share, for them
 * and their unit tests only.
 *
 * A publisher keeps its resumable progress in a JSON object (state) that
 * the caller persists through pub_hooks; these read and write its
 * members and call the hooks, each of which may be absent.
 */
#ifndef CP_PUB_INTERNAL_H
#define CP_PUB_INTERNAL_H

#include <json-c/json.h>

#include "publish.h"

/* Member key of state: a non-empty string, or NULL. */
const char *pub_state_str(struct json_object *state, const char *key);
/* Member key of state as an integer; 0 when absent or not one. */
long long pub_state_int(struct json_object *state, const char *key);
/* Member key of state is true; 0 when absent or not a boolean. */
int pub_state_bool(struct json_object *state, const char *key);

/* Set member key of state, replacing it; a NULL string is a JSON null.
 * 0 or CP_ENOMEM (the member is then left as it was). */
int pub_state_set_str(struct json_object *state, const char *key, const char *v);
int pub_state_set_int(struct json_object *state, const char *key, long long v);
int pub_state_set_bool(struct json_object *state, const char *key, int v);

/* The hooks, each a no-op answering 0 when hooks or the hook is NULL.
 * Non-zero: the publisher must stop (see struct pub_hooks). */
/* Every publisher starts by clearing its outputs: no result, no quota
 * news (remaining -1 = not said), no error. */
void pub_outputs_reset(struct pub_result *res, struct pub_quota *quota, struct plat_error *err);

int pub_hook_save(const struct pub_hooks *hooks, struct json_object *state);
int pub_hook_progress(const struct pub_hooks *hooks, long long sent, long long total);
int pub_hook_should_stop(const struct pub_hooks *hooks);

/* Sleep ms in steps of step_ms, asking should_stop before each step and
 * at the end: 1 when told to stop on the way, else 0. */
int pub_nap(const struct pub_hooks *hooks, long long ms, long long step_ms);

#endif
