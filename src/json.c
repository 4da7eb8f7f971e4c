#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"

/*
 * Checks are made in this order, so the first problem found is the one
 * reported: size, NUL bytes, UTF-8 of the raw text, emptiness, syntax
 * (json-c in strict mode), what follows the value, a lexical pass for what
 * json-c's strict mode still accepts, then nesting and string lengths on
 * the parsed tree.  Byte positions in messages count from 0.
 */

const struct json_limits json_default_limits = {
    .max_size = 8u * 1024 * 1024,
    .max_depth = 64,
    .max_string = 1024 * 1024,
};

/* Deeper limits make no sense and would let the tree walk and json-c's own
 * recursive free run out of stack. */
#define JSON_DEPTH_CEILING 10000

static void say(struct buf *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct buf *why, const char *fmt, ...)
{
    va_list ap;

    if (!why)
        return;
    va_start(ap, fmt);
    buf_vprintf(why, fmt, ap);
    va_end(ap);
}

/* Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629:
 * no overlong forms, no surrogates, nothing past U+10FFFF), or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        unsigned char lo = 0x80, hi = 0xbf;
        size_t need, k;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;          /* shorter forms are overlong */
            else if (c == 0xed)
                hi = 0x9f;          /* U+D800..U+DFFF are surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;          /* overlong */
            else if (c == 0xf4)
                hi = 0x8f;          /* past U+10FFFF */
        } else {
            return i;               /* 80..C1 and F5..FF never start a character */
        }
        if (len - i <= need)
            return i;               /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return i;
        i += need + 1;
    }
    return len;
}

int json_utf8_valid(const char *s, size_t len)
{
    return utf8_invalid_at((const unsigned char *)s, len) == len;
}

void json_utf8_clip(char *out, size_t cap, const char *s, const char *unreadable)
{
    size_t n = s ? strlen(s) : 0;

    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (n && !json_utf8_valid(s, n)) {
        snprintf(out, cap, "%s", unreadable);
        return;
    }
    if (n)
        memcpy(out, s, n);
    out[n] = '\0';
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* Length of the JSON number (RFC 8259 grammar) at s, or 0 when there is none:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t number_len(const char *s, size_t len)
{
    size_t i = 0, digits;

    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else {
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (!digits)
            return 0;
    }
    if (i < len && s[i] == '.') {
        i++;
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (!digits)
            return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (!digits)
            return 0;
    }
    return i;
}

static int is_token_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.';
}

/*
 * A lexical pass over text json-c has accepted, for what its strict mode
 * still lets through: single-quoted strings, NaN and Infinity, numbers such
 * as "1." or "-01", raw control characters inside strings, "\u0000" (a NUL
 * that silently truncates object keys) and unpaired surrogate escapes
 * (which json-c turns into U+FFFD or passes on as invalid UTF-8).
 */
static int check_lexical(const char *s, size_t len, struct buf *why)
{
    size_t i = 0, n;
    unsigned cp, low;

    while (i < len) {
        char c = s[i];

        if (is_json_space(c) || (c && strchr("{}[]:,", c))) {
            i++;
            continue;
        }
        if (is_token_char(c)) {
            for (n = 0; i + n < len && is_token_char(s[i + n]); n++)
                ;
            if (!((n == 4 && !memcmp(s + i, "true", 4)) ||
                  (n == 5 && !memcmp(s + i, "false", 5)) ||
                  (n == 4 && !memcmp(s + i, "null", 4)) ||
                  number_len(s + i, n) == n)) {
                say(why, "not a JSON number or literal at byte %zu", i);
                return CP_EPARSE;
            }
            i += n;
            continue;
        }
        if (c != '"') {
            say(why, "unexpected character at byte %zu", i);
            return CP_EPARSE;
        }
        /* Inside a string, up to and past its closing quote. */
        for (i++; i < len && s[i] != '"'; i++) {
            if ((unsigned char)s[i] < 0x20) {
                say(why, "control character in a string at byte %zu", i);
                return CP_EPARSE;
            }
            if (s[i] != '\\')
                continue;
            if (++i >= len)
                break;
            if (s[i] != 'u' || len - i <= 4 || !hex4(s + i + 1, &cp))
                continue;
            if (cp == 0) {
                say(why, "\\u0000 escape in a string at byte %zu", i - 1);
                return CP_EPARSE;
            }
            if (cp >= 0xd800 && cp <= 0xdbff && len - i > 10 &&
                s[i + 5] == '\\' && s[i + 6] == 'u' && hex4(s + i + 7, &low) &&
                low >= 0xdc00 && low <= 0xdfff) {
                i += 10;
                continue;
            }
            if (cp >= 0xd800 && cp <= 0xdfff) {
                say(why, "unpaired surrogate escape at byte %zu", i - 1);
                return CP_EPARSE;
            }
            i += 4;
        }
        i++;
    }
    return 0;
}

/* A decoded string or key: within the length limit, no NUL, valid UTF-8. */
static int check_string(const char *s, size_t n, const char *what,
                        const struct json_limits *lim, struct buf *why)
{
    if (n > lim->max_string) {
        say(why, "%s longer than %zu bytes", what, lim->max_string);
        return CP_ETOOBIG;
    }
    if (memchr(s, '\0', n)) {
        say(why, "%s contains a NUL character", what);
        return CP_EPARSE;
    }
    if (!json_utf8_valid(s, n)) {
        say(why, "%s is not valid UTF-8", what);
        return CP_EPARSE;
    }
    return 0;
}

/* depth: containers enclosing obj, obj included when it is one. */
static int walk(struct json_object *obj, int depth,
                const struct json_limits *lim, struct buf *why)
{
    int rc;

    switch (json_object_get_type(obj)) {
    case json_type_string:
        return check_string(json_object_get_string(obj),
                            (size_t)json_object_get_string_len(obj),
                            "a string", lim, why);
    case json_type_array: {
        size_t n = json_object_array_length(obj);

        if (depth > lim->max_depth) {
            say(why, "nesting deeper than %d levels", lim->max_depth);
            return CP_ETOOBIG;
        }
        for (size_t i = 0; i < n; i++) {
            rc = walk(json_object_array_get_idx(obj, i), depth + 1, lim, why);
            if (rc)
                return rc;
        }
        return 0;
    }
    case json_type_object:
        if (depth > lim->max_depth) {
            say(why, "nesting deeper than %d levels", lim->max_depth);
            return CP_ETOOBIG;
        }
        json_object_object_foreach(obj, key, val) {
            rc = check_string(key, strlen(key), "an object key", lim, why);
            if (rc)
                return rc;
            rc = walk(val, depth + 1, lim, why);
            if (rc)
                return rc;
        }
        return 0;
    default:
        return 0;
    }
}

int json_parse(const char *text, size_t len, const struct json_limits *lim,
               struct json_object **out, struct buf *why)
{
    struct json_tokener *tok = NULL;
    struct json_object *obj = NULL;
    enum json_tokener_error jerr;
    const char *nul;
    size_t bad, end, i;
    int rc = CP_EPARSE;

    *out = NULL;
    if (!lim)
        lim = &json_default_limits;
    if (!text || lim->max_depth < 1 || lim->max_depth > JSON_DEPTH_CEILING)
        return CP_EINVAL;
    /* json-c takes an int length, and one more byte ends the input. */
    if (len > lim->max_size || len >= INT_MAX) {
        say(why, "JSON text larger than %zu bytes", lim->max_size);
        return CP_ETOOBIG;
    }
    nul = memchr(text, '\0', len);
    if (nul) {
        say(why, "NUL character at byte %zu", (size_t)(nul - text));
        return CP_EPARSE;
    }
    bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad != len) {
        say(why, "invalid UTF-8 at byte %zu", bad);
        return CP_EPARSE;
    }
    for (i = 0; i < len && is_json_space(text[i]); i++)
        ;
    if (i == len) {
        say(why, "empty JSON text");
        return CP_EPARSE;
    }

    /* json-c gives a scalar inside a container a level of its own, so one
     * more level than ours; the exact count is checked in walk(). */
    tok = json_tokener_new_ex(lim->max_depth + 1);
    if (!tok)
        return CP_ENOMEM;
    /* Trailing data is judged below, for a clearer message. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    obj = json_tokener_parse_ex(tok, text, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue) {
        /* A bare number has no end of its own: a final NUL marks it. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    if (jerr == json_tokener_error_depth) {
        say(why, "nesting deeper than %d levels", lim->max_depth);
        rc = CP_ETOOBIG;
        goto fail;
    }
    /* A JSON null parses to a NULL object with success. */
    if (jerr != json_tokener_success) {
        say(why, "malformed JSON at byte %zu (%s)", end, json_tokener_error_desc(jerr));
        goto fail;
    }
    for (i = end; i < len; i++)
        if (!is_json_space(text[i])) {
            say(why, "unexpected data after the JSON value at byte %zu", i);
            goto fail;
        }
    rc = check_lexical(text, len, why);
    if (rc)
        goto fail;
    if (obj) {
        rc = walk(obj, 1, lim, why);
        if (rc)
            goto fail;
    }
    json_tokener_free(tok);
    *out = obj;
    return 0;

fail:
    json_object_put(obj);
    json_tokener_free(tok);
    return rc;
}

/* The member key of obj: CP_EINVAL when obj is not an object, CP_ENOTFOUND
 * when the key is absent or JSON null (json-c stores null as NULL). */
static int member(struct json_object *obj, const char *key, enum json_type type,
                  struct json_object **out)
{
    struct json_object *v = NULL;

    *out = NULL;
    if (!obj || !key || !json_object_is_type(obj, json_type_object))
        return CP_EINVAL;
    if (!json_object_object_get_ex(obj, key, &v) || !v)
        return CP_ENOTFOUND;
    if (!json_object_is_type(v, type))
        return CP_EINVAL;
    *out = v;
    return 0;
}

int json_get_string(struct json_object *obj, const char *key, const char **out)
{
    struct json_object *v;
    int rc = member(obj, key, json_type_string, &v);

    *out = NULL;
    if (rc)
        return rc;
    *out = json_object_get_string(v);
    return 0;
}

/*
 * json-c clamps integers outside int64 to INT64_MIN or (positive ones, kept
 * as unsigned) UINT64_MAX without saying so.  json_object_get_uint64() tells a positive clamp (the value was stored as
 * unsigned) from the literal INT64_MAX; a negative clamp cannot be told from
 * the literal INT64_MIN, so that one value is refused.  Accepted integers are
 * -(2^63 - 1) .. 2^63 - 1; anything outside is CP_EINVAL.
 */
int json_get_int(struct json_object *obj, const char *key, long long *out)
{
    struct json_object *v;
    int64_t n;
    int rc = member(obj, key, json_type_int, &v);

    *out = 0;
    if (rc)
        return rc;
    n = json_object_get_int64(v);
    if (n == INT64_MIN || (n == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX))
        return CP_EINVAL;
    *out = (long long)n;
    return 0;
}

int json_get_bool(struct json_object *obj, const char *key, int *out)
{
    struct json_object *v;
    int rc = member(obj, key, json_type_boolean, &v);

    *out = 0;
    if (rc)
        return rc;
    *out = json_object_get_boolean(v) ? 1 : 0;
    return 0;
}

/* The object and array getters lend a reference owned by obj. */
int json_get_object(struct json_object *obj, const char *key, struct json_object **out)
{
    return member(obj, key, json_type_object, out);
}

int json_get_array(struct json_object *obj, const char *key, struct json_object **out)
{
    return member(obj, key, json_type_array, out);
}

int json_to_buf(struct json_object *obj, struct buf *out)
{
    const char *s = json_object_to_json_string_ext(obj,
        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    if (!s)
        return CP_ENOMEM;
    return buf_adds(out, s);
}

int json_member_key(struct buf *b, const char *key)
{
    return buf_printf(b, ",\"%s\":", key);
}

int json_member_str(struct buf *b, const char *key, const char *v)
{
    int rc;

    if ((rc = json_member_key(b, key)) || (rc = buf_addc(b, '"')) ||
        (rc = buf_add_json_escaped(b, v, strlen(v))))
        return rc;
    return buf_addc(b, '"');
}

int json_member_time(struct buf *b, const char *key, long long ms)
{
    char text[40];
    struct tm tm;
    time_t sec;
    int rc;

    if ((rc = json_member_key(b, key)))
        return rc;
    if (ms <= 0)
        return buf_adds(b, "null");
    sec = (time_t)(ms / 1000);
    if (!gmtime_r(&sec, &tm) || !strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
        return CP_EINVAL;
    return buf_printf(b, "\"%s.%03lldZ\"", text, ms % 1000);
}
