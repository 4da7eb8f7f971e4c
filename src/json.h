/*
 * json.h - JSON input with limits, over json-c.
 *
 * Every JSON document that enters crosspost (request bodies, platform
 * responses, job payloads) is parsed here so the same limits apply: total
 * size, nesting depth, string (and key) length, strict syntax, valid UTF-8,
 * no NUL bytes, nothing after the value.
 */
#ifndef CP_JSON_H
#define CP_JSON_H

#include <stddef.h>

#include <json-c/json.h>

#include "buf.h"

struct json_limits {
    size_t max_size;     /* bytes of input */
    int max_depth;       /* nesting of arrays/objects; 1 = a scalar or flat container */
    size_t max_string;   /* bytes in one string or key */
};

/* Defaults for parsing trusted-but-external data (platform responses). */
extern const struct json_limits json_default_limits;

/*
 * Parse len bytes of text.  On success *out holds a new reference (free it
 * with json_object_put).  Failures: CP_ETOOBIG (a limit; *why names which)
 * or CP_EPARSE (malformed, not UTF-8, trailing data; *why says where).
 */
int json_parse(const char *text, size_t len, const struct json_limits *lim,
               struct json_object **out, struct buf *why);

/* Typed member access.  CP_ENOTFOUND when the key is absent or null,
 * CP_EINVAL when the member has another JSON type.  json_get_int accepts
 * JSON integers only (not 1.5, not "1"). */
int json_get_string(struct json_object *obj, const char *key, const char **out);
int json_get_int(struct json_object *obj, const char *key, long long *out);
int json_get_bool(struct json_object *obj, const char *key, int *out);
int json_get_object(struct json_object *obj, const char *key, struct json_object **out);
int json_get_array(struct json_object *obj, const char *key, struct json_object **out);

/* Append obj's compact text to out (no escaped slashes). */
int json_to_buf(struct json_object *obj, struct buf *out);

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int json_utf8_valid(const char *s, size_t len);

/* s (NULL is "") copied to out, cut to fit cap bytes (cap >= 1) without
 * splitting a UTF-8 sequence; when the kept part is not UTF-8, out holds
 * the (ASCII) text unreadable instead, so text columns never refuse it. */
void json_utf8_clip(char *out, size_t cap, const char *s, const char *unreadable);

/* Writers of one member of an object being built as text: each appends
 * ,"key": and the value (so the object's first member is written by the
 * caller).  A string is escaped; a time (epoch ms) is ISO 8601 UTC with
 * milliseconds, or null for 0 or less. */
int json_member_key(struct buf *b, const char *key);
int json_member_str(struct buf *b, const char *key, const char *v);
int json_member_time(struct buf *b, const char *key, long long ms);

#endif
