/*
 * rules.c - automation rules: validation and the data layer (rules.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"
#include "log.h"
#include "publications.h"
#include "queue.h"
#include "rules.h"
#include "template.h"

#define DURATION_MAX 86400             /* seconds: longer than any source video */
#define CAPTION_TEMPLATE_MAX 2200
#define TITLE_TEMPLATE_MAX 500
#define TEXT_TEMPLATE_MAX 1000
#define HASHTAGS_ADD_MAX 30
#define HASHTAGS_REMOVE_MAX 100
#define HASHTAGS_MAX_MAX 30
#define YT_TAGS_CHARS_MAX 500
#define COVER_URL_MAX 1024
#define CATEGORY_ID_MAX 10
#define RULE_JSON_MAX (256u << 10)
#define TX_ATTEMPTS 3

/* -------------------------------------------------------- problems -- */

static int problem(struct rule_problem *why, int status, const char *code, const char *field,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int problem(struct rule_problem *why, int status, const char *code, const char *field,
                   const char *fmt, ...)
{
    va_list ap;

    why->status = status;
    snprintf(why->code, sizeof why->code, "%s", code);
    snprintf(why->field, sizeof why->field, "%s", field);
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof why->message, fmt, ap);
    va_end(ap);
    return CP_EINVAL;
}

static int wrong_type(struct rule_problem *why, const char *field, const char *expected)
{
    return problem(why, 400, "invalid_field", field, "The field \"%s\" must be %s.", field, expected);
}

static int unknown(struct rule_problem *why, const char *field)
{
    return problem(why, 422, "unknown_field", field, "The field \"%s\" is not known here.", field);
}

static int out_of_range(struct rule_problem *why, const char *field, const char *expected)
{
    return problem(why, 422, "invalid_field", field, "The field \"%s\" must be %s.", field, expected);
}

static int in_list(const char *key, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(key, list[i]) == 0)
            return 1;
    return 0;
}

/* The first member of obj not in allowed, as prefix.key. */
static int check_members(struct json_object *obj, const char *prefix, const char *const *allowed,
                         struct rule_problem *why)
{
    char field[RULE_FIELD_MAX];

    json_object_object_foreach(obj, key, val) {
        (void)val;
        if (!in_list(key, allowed)) {
            snprintf(field, sizeof field, "%s%s%.40s", prefix, *prefix ? "." : "", key);
            return unknown(why, field);
        }
    }
    return 0;
}

/* Text shown to people: no control characters. */
static int no_controls(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int is_int(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_int);
}

static int is_bool(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_boolean);
}

static int is_string(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_string);
}

static int is_array(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_array);
}

static int is_object(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_object);
}

/* ------------------------------------------------------------ input -- */

void rule_input_init(struct rule_input *in)
{
    memset(in, 0, sizeof *in);
    in->enabled = 1;
    in->min_duration_s = -1;
    in->max_duration_s = -1;
}

void rule_input_free(struct rule_input *in)
{
    if (!in)
        return;
    free(in->include_words);
    free(in->exclude_words);
    in->include_words = in->exclude_words = NULL;
    for (size_t i = 0; i < in->ndestinations; i++) {
        free(in->destinations[i].settings);
        in->destinations[i].settings = NULL;
    }
    in->ndestinations = 0;
}

static int dup_json(struct json_object *obj, size_t max, char **out)
{
    struct buf b;
    int rc;

    *out = NULL;
    buf_init(&b, max);
    rc = json_to_buf(obj, &b);
    if (!rc) {
        *out = buf_detach(&b, NULL);
        if (!*out)
            rc = CP_ENOMEM;
    }
    buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ words -- */

/* A filter word list: at most RULE_WORDS_MAX strings of 1..RULE_WORD_MAX
 * bytes without control characters. */
static int parse_words(struct json_object *v, const char *field, char **out,
                       struct rule_problem *why)
{
    char f[RULE_FIELD_MAX];
    size_t n;

    if (!is_array(v))
        return wrong_type(why, field, "an array of strings");
    n = json_object_array_length(v);
    if (n > RULE_WORDS_MAX)
        return problem(why, 422, "invalid_field", field,
                       "The field \"%s\" holds at most %d words.", field, RULE_WORDS_MAX);
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        const char *s;
        snprintf(f, sizeof f, "%.64s[%zu]", field, i);
        if (!is_string(e))
            return wrong_type(why, f, "a string");
        s = json_object_get_string(e);
        if (!*s || strlen(s) > RULE_WORD_MAX || !no_controls(s))
            return problem(why, 422, "invalid_field", f,
                           "The field \"%s\" must be 1 to %d bytes without control characters.", f,
                           RULE_WORD_MAX);
    }
    free(*out);
    return dup_json(v, 64u << 10, out) ? problem(why, 500, "internal", field, "Out of memory.") : 0;
}

/* A hashtag word, '#' optional: [A-Za-z0-9_] and letters beyond ASCII,
 * short enough for template.h. */
static int hashtag_word_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n;

    if (*p == '#')
        p++;
    n = strlen((const char *)p);
    if (n == 0 || n >= TEMPLATE_TAG_MAX)
        return 0;
    while (*p) {
        unsigned long cp;
        size_t len;

        if (*p < 0x80) {
            if (!isalnum(*p) && *p != '_')
                return 0;
            p++;
            continue;
        }
        if ((*p & 0xe0) == 0xc0) {
            len = 2;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            len = 3;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            len = 4;
            cp = *p & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Letters, not spaces, punctuation, symbols or emoji. */
        if (cp < 0xc0 || cp == 0xd7 || cp == 0xf7 || (cp >= 0x2000 && cp <= 0x2bff) ||
            (cp >= 0x3000 && cp <= 0x303f) || (cp >= 0xfe00 && cp <= 0xfe0f) ||
            (cp >= 0xff00 && cp <= 0xff20) || cp >= 0x1f000)
            return 0;
        p += len;
    }
    return 1;
}

static int parse_hashtags(struct json_object *v, const char *field, size_t max,
                          struct rule_problem *why)
{
    char f[RULE_FIELD_MAX];
    size_t n;

    if (!is_array(v))
        return wrong_type(why, field, "an array of strings");
    n = json_object_array_length(v);
    if (n > max)
        return problem(why, 422, "invalid_field", field, "The field \"%s\" holds at most %zu hashtags.",
                       field, max);
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        snprintf(f, sizeof f, "%.64s[%zu]", field, i);
        if (!is_string(e))
            return wrong_type(why, f, "a string");
        if (!hashtag_word_ok(json_object_get_string(e)))
            return out_of_range(why, f, "one word of letters, digits and '_' ('#' optional), "
                                        "at most 63 bytes");
    }
    return 0;
}

/* -------------------------------------------------------- settings -- */

static const char *const common_keys[] = {
    "caption_template", "hashtags_add", "hashtags_remove", "hashtags_max", NULL,
};
static const char *const instagram_keys[] = { "share_to_feed", "thumb_offset_ms", "cover_url", NULL };
static const char *const youtube_keys[] = {
    "title_template", "tags", "category_id", "privacy", "made_for_kids", NULL,
};
static const char *const x_keys[] = { "text_template", NULL };

static const char *const *platform_keys(enum platform_id p)
{
    switch (p) {
    case PLATFORM_INSTAGRAM:
        return instagram_keys;
    case PLATFORM_YOUTUBE:
        return youtube_keys;
    case PLATFORM_X:
        return x_keys;
    default:
        return NULL;
    }
}

static int parse_template(struct json_object *v, const char *field, size_t max,
                          struct rule_problem *why)
{
    char reason[TEMPLATE_ERROR_MAX];

    if (!is_string(v))
        return wrong_type(why, field, "a string");
    if (strlen(json_object_get_string(v)) > max)
        return problem(why, 422, "invalid_field", field, "The field \"%s\" is longer than %zu bytes.",
                       field, max);
    if (template_check(json_object_get_string(v), reason, sizeof reason))
        return problem(why, 422, "invalid_template", field, "%s", reason);
    return 0;
}

static int url_ok(const char *s)
{
    size_t n = strlen(s);

    if (n > COVER_URL_MAX)
        return 0;
    if (strncmp(s, "https://", 8) == 0)
        s += 8;
    else if (strncmp(s, "http://", 7) == 0)
        s += 7;
    else
        return 0;
    if (!*s || *s == '/')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int digits_only(const char *s)
{
    if (!*s || strlen(s) > CATEGORY_ID_MAX)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static int parse_youtube_tags(struct json_object *v, const char *field, struct rule_problem *why)
{
    char f[RULE_FIELD_MAX];
    size_t total = 0;

    if (!is_array(v))
        return wrong_type(why, field, "an array of strings");
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        const char *s;
        snprintf(f, sizeof f, "%.64s[%zu]", field, i);
        if (!is_string(e))
            return wrong_type(why, f, "a string");
        s = json_object_get_string(e);
        if (!*s || !no_controls(s) || strpbrk(s, "<>"))
            return out_of_range(why, f, "a non-empty tag without control characters, '<' or '>'");
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
            if ((*p & 0xc0) != 0x80)
                total++;
    }
    if (total > YT_TAGS_CHARS_MAX)
        return problem(why, 422, "invalid_field", field,
                       "The tags of \"%s\" may hold %d characters in all.", field, YT_TAGS_CHARS_MAX);
    return 0;
}

static int settings_member(enum platform_id p, const char *key, struct json_object *v,
                           const char *field, struct rule_problem *why)
{
    if (strcmp(key, "caption_template") == 0)
        return parse_template(v, field, CAPTION_TEMPLATE_MAX, why);
    if (strcmp(key, "hashtags_add") == 0)
        return parse_hashtags(v, field, HASHTAGS_ADD_MAX, why);
    if (strcmp(key, "hashtags_remove") == 0)
        return parse_hashtags(v, field, HASHTAGS_REMOVE_MAX, why);
    if (strcmp(key, "hashtags_max") == 0) {
        if (!is_int(v))
            return wrong_type(why, field, "a whole number");
        if (json_object_get_int64(v) < 0 || json_object_get_int64(v) > HASHTAGS_MAX_MAX)
            return out_of_range(why, field, "from 0 to 30");
        return 0;
    }
    if (p == PLATFORM_INSTAGRAM) {
        if (strcmp(key, "share_to_feed") == 0)
            return is_bool(v) ? 0 : wrong_type(why, field, "true or false");
        if (strcmp(key, "thumb_offset_ms") == 0) {
            if (!is_int(v))
                return wrong_type(why, field, "a whole number of milliseconds");
            return json_object_get_int64(v) < 0 ? out_of_range(why, field, "0 or more") : 0;
        }
        if (strcmp(key, "cover_url") == 0) {
            if (!is_string(v))
                return wrong_type(why, field, "a string");
            return url_ok(json_object_get_string(v))
                       ? 0 : out_of_range(why, field, "an http:// or https:// URL of at most 1024 bytes");
        }
    } else if (p == PLATFORM_YOUTUBE) {
        if (strcmp(key, "title_template") == 0)
            return parse_template(v, field, TITLE_TEMPLATE_MAX, why);
        if (strcmp(key, "tags") == 0)
            return parse_youtube_tags(v, field, why);
        if (strcmp(key, "category_id") == 0) {
            if (!is_string(v))
                return wrong_type(why, field, "a string of digits");
            return digits_only(json_object_get_string(v))
                       ? 0 : out_of_range(why, field, "a string of 1 to 10 digits");
        }
        if (strcmp(key, "privacy") == 0) {
            const char *s;
            if (!is_string(v))
                return wrong_type(why, field, "a string");
            s = json_object_get_string(v);
            return strcmp(s, "public") && strcmp(s, "unlisted") && strcmp(s, "private")
                       ? out_of_range(why, field, "one of public, unlisted, private") : 0;
        }
        if (strcmp(key, "made_for_kids") == 0)
            return is_bool(v) ? 0 : wrong_type(why, field, "true or false");
    } else if (p == PLATFORM_X) {
        if (strcmp(key, "text_template") == 0)
            return parse_template(v, field, TEXT_TEMPLATE_MAX, why);
    }
    return unknown(why, field);
}

static int add_default(struct json_object *obj, const char *key, struct json_object *v)
{
    if (!v)
        return CP_ENOMEM;
    if (json_object_object_get_ex(obj, key, NULL)) {
        json_object_put(v);
        return 0;
    }
    return json_object_object_add(obj, key, v) ? CP_ENOMEM : 0;
}

/* A sample video the templates must render against. */
static const struct template_vars sample_video = {
    .description = "A short sample description #sample",
    .title = "",
    .share_url = "https://www.tiktok.com/@sample/video/7000000000000000000",
    .created_ms = 1767225600000LL,
};

/* Validate the settings of destination i (platform p) into *out (JSON
 * text with defaults). */
static int parse_settings(struct json_object *v, size_t i, enum platform_id p, char **out,
                          struct rule_problem *why)
{
    char prefix[40], field[RULE_FIELD_MAX], tfield[32], reason[TEMPLATE_ERROR_MAX];
    struct json_object *copy = NULL;
    struct template_result r;
    const char *const *own = platform_keys(p);
    int rc;

    snprintf(prefix, sizeof prefix, "destinations[%zu].settings", i);
    if (v && !is_object(v))
        return wrong_type(why, prefix, "an object");
    if (v) {
        json_object_object_foreach(v, key, val) {
            snprintf(field, sizeof field, "%s.%.40s", prefix, key);
            if (!in_list(key, common_keys) && !(own && in_list(key, own)))
                return unknown(why, field);
            if ((rc = settings_member(p, key, val, field, why)))
                return rc;
        }
    }
    copy = json_object_new_object();
    if (!copy)
        return problem(why, 500, "internal", prefix, "Out of memory.");
    if (v) {
        json_object_object_foreach(v, key, val)
            json_object_object_add(copy, key, json_object_get(val));
    }
    rc = 0;
    if (p == PLATFORM_INSTAGRAM)
        rc = add_default(copy, "share_to_feed", json_object_new_boolean(1));
    else if (p == PLATFORM_YOUTUBE) {
        rc = add_default(copy, "category_id", json_object_new_string("22"));
        rc = rc ? rc : add_default(copy, "privacy", json_object_new_string("public"));
        rc = rc ? rc : add_default(copy, "made_for_kids", json_object_new_boolean(0));
    }
    if (rc) {
        json_object_put(copy);
        return problem(why, 500, "internal", prefix, "Out of memory.");
    }
    template_result_init(&r);
    rc = template_render(p, copy, &sample_video, &r, tfield, sizeof tfield, reason, sizeof reason);
    template_result_free(&r);
    if (rc == CP_EINVAL) {
        json_object_put(copy);
        snprintf(field, sizeof field, "%s.%s", prefix, tfield);
        return problem(why, 422, "invalid_template", field, "%s", reason);
    }
    if (!rc)
        rc = dup_json(copy, RULE_SETTINGS_MAX, out);
    json_object_put(copy);
    if (rc == CP_ETOOBIG)
        return problem(why, 422, "invalid_field", prefix, "The settings are larger than %d bytes.",
                       RULE_SETTINGS_MAX);
    if (rc)
        return problem(why, 500, "internal", prefix, "The settings could not be read.");
    return 0;
}

/* ----------------------------------------------------- connections -- */

/* Connection id as the caller's own of a platform allowed by want (a
 * bit per platform); 0, CP_EINVAL with why, or the lookup's error. */
static int check_connection(struct json_object *v, const char *field, long long user_id,
                            unsigned want, const char *what, rule_conn_lookup_fn lookup, void *ctx,
                            struct rule_conn *conn, struct rule_problem *why)
{
    long long id;
    int rc;

    if (!is_int(v))
        return wrong_type(why, field, "a connection id");
    id = json_object_get_int64(v);
    if (id <= 0)
        return problem(why, 422, "invalid_connection", field, "No connection of yours has id %lld.", id);
    rc = lookup(ctx, id, conn);
    if (rc == CP_ENOTFOUND || (rc == 0 && conn->user_id != user_id))
        return problem(why, 422, "invalid_connection", field, "No connection of yours has id %lld.", id);
    if (rc)
        return rc;
    if (!(want & (1u << conn->platform)))
        return problem(why, 422, "invalid_connection", field, "Connection %lld is not %s.", id, what);
    return 0;
}

static int parse_destinations(struct json_object *v, long long user_id, rule_conn_lookup_fn lookup,
                              void *ctx, struct rule_input *out, struct rule_problem *why)
{
    static const char *const dest_keys[] = { "connection_id", "platform", "settings", NULL };
    const unsigned want = 1u << PLATFORM_INSTAGRAM | 1u << PLATFORM_YOUTUBE | 1u << PLATFORM_X;
    char prefix[40], field[RULE_FIELD_MAX];
    size_t n;
    int rc;

    if (!is_array(v))
        return wrong_type(why, "destinations", "an array of destinations");
    n = json_object_array_length(v);
    if (n < 1 || n > RULE_DESTINATIONS_MAX)
        return problem(why, 422, "invalid_field", "destinations",
                       "A rule has 1 to %d destinations.", RULE_DESTINATIONS_MAX);
    for (size_t i = 0; i < n; i++) {
        struct json_object *d = json_object_array_get_idx(v, i), *cid = NULL, *plat = NULL, *set = NULL;
        struct rule_conn conn;

        snprintf(prefix, sizeof prefix, "destinations[%zu]", i);
        if (!is_object(d))
            return wrong_type(why, prefix, "an object");
        if ((rc = check_members(d, prefix, dest_keys, why)))
            return rc;
        snprintf(field, sizeof field, "%s.connection_id", prefix);
        if (!json_object_object_get_ex(d, "connection_id", &cid))
            return problem(why, 400, "missing_field", field, "The field \"%s\" is required.", field);
        rc = check_connection(cid, field, user_id, want, "an Instagram, YouTube or X account",
                              lookup, ctx, &conn, why);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (out->destinations[j].connection_id == conn.id)
                return problem(why, 422, "invalid_field", field,
                               "Connection %lld is already a destination of this rule.", conn.id);
        if (json_object_object_get_ex(d, "platform", &plat)) {
            const struct platform *pf;
            snprintf(field, sizeof field, "%s.platform", prefix);
            if (!is_string(plat))
                return wrong_type(why, field, "a string");
            pf = platform_find(json_object_get_string(plat));
            if (!pf || pf->id != conn.platform)
                return out_of_range(why, field, "the platform of the connection");
        }
        json_object_object_get_ex(d, "settings", &set);
        out->destinations[i].connection_id = conn.id;
        out->destinations[i].platform = conn.platform;
        out->ndestinations = i + 1;
        rc = parse_settings(set, i, conn.platform, &out->destinations[i].settings, why);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------- filters -- */

static int parse_duration(struct json_object *v, const char *field, long long *out,
                          struct rule_problem *why)
{
    if (!v) {
        *out = -1;
        return 0;
    }
    if (!is_int(v))
        return wrong_type(why, field, "a whole number of seconds, or null");
    *out = json_object_get_int64(v);
    if (*out < 0 || *out > DURATION_MAX)
        return out_of_range(why, field, "from 0 to 86400 seconds, or null");
    return 0;
}

static int parse_filters(struct json_object *v, struct rule_input *out, struct rule_problem *why)
{
    static const char *const filter_keys[] = {
        "min_duration_s", "max_duration_s", "include_words", "exclude_words", NULL,
    };
    struct json_object *m;
    int rc;

    if (!v)
        return 0;
    if (!is_object(v))
        return wrong_type(why, "filters", "an object");
    if ((rc = check_members(v, "filters", filter_keys, why)))
        return rc;
    if (json_object_object_get_ex(v, "min_duration_s", &m) &&
        (rc = parse_duration(m, "filters.min_duration_s", &out->min_duration_s, why)))
        return rc;
    if (json_object_object_get_ex(v, "max_duration_s", &m) &&
        (rc = parse_duration(m, "filters.max_duration_s", &out->max_duration_s, why)))
        return rc;
    if (out->min_duration_s >= 0 && out->max_duration_s >= 0 &&
        out->min_duration_s > out->max_duration_s)
        return problem(why, 422, "invalid_field", "filters.max_duration_s",
                       "The field \"filters.max_duration_s\" must not be less than "
                       "\"filters.min_duration_s\".");
    if (json_object_object_get_ex(v, "include_words", &m) &&
        (rc = parse_words(m, "filters.include_words", &out->include_words, why)))
        return rc;
    if (json_object_object_get_ex(v, "exclude_words", &m) &&
        (rc = parse_words(m, "filters.exclude_words", &out->exclude_words, why)))
        return rc;
    return 0;
}

/* ------------------------------------------------------------ parse -- */

int rule_parse(struct json_object *body, long long user_id, rule_conn_lookup_fn lookup,
               void *lookup_ctx, struct rule_input *out, struct rule_problem *why)
{
    static const char *const rule_keys[] = {
        "name", "source_connection_id", "enabled", "filters", "backfill", "delay_s",
        "destinations", NULL,
    };
    struct json_object *v;
    struct rule_conn conn;
    int rc;

    memset(why, 0, sizeof *why);
    if (!is_object(body))
        return problem(why, 400, "invalid_body", "", "The request body must be a JSON object.");
    if ((rc = check_members(body, "", rule_keys, why)))
        return rc;
    if (json_object_object_get_ex(body, "name", &v)) {
        const char *s;
        if (!is_string(v))
            return wrong_type(why, "name", "a string");
        s = json_object_get_string(v);
        if (strlen(s) > RULE_NAME_MAX || !no_controls(s))
            return out_of_range(why, "name", "at most 255 bytes without control characters");
        snprintf(out->name, sizeof out->name, "%s", s);
    }
    if (!json_object_object_get_ex(body, "source_connection_id", &v))
        return problem(why, 400, "missing_field", "source_connection_id",
                       "The field \"source_connection_id\" is required.");
    rc = check_connection(v, "source_connection_id", user_id, 1u << PLATFORM_TIKTOK,
                          "a TikTok account", lookup, lookup_ctx, &conn, why);
    if (rc)
        return rc;
    out->source_connection_id = conn.id;
    if (json_object_object_get_ex(body, "enabled", &v)) {
        if (!is_bool(v))
            return wrong_type(why, "enabled", "true or false");
        out->enabled = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(body, "backfill", &v)) {
        if (!is_bool(v))
            return wrong_type(why, "backfill", "true or false");
        out->backfill = json_object_get_boolean(v) ? 1 : 0;
    }
    if (json_object_object_get_ex(body, "delay_s", &v)) {
        if (!is_int(v))
            return wrong_type(why, "delay_s", "a whole number of seconds");
        out->delay_s = json_object_get_int64(v);
        if (out->delay_s < 0 || out->delay_s > RULE_DELAY_MAX)
            return out_of_range(why, "delay_s", "from 0 to 86400 seconds");
    }
    if (json_object_object_get_ex(body, "filters", &v) && (rc = parse_filters(v, out, why)))
        return rc;
    if (!json_object_object_get_ex(body, "destinations", &v))
        return problem(why, 400, "missing_field", "destinations",
                       "The field \"destinations\" is required.");
    return parse_destinations(v, user_id, lookup, lookup_ctx, out, why);
}

int rule_merge_patch(struct json_object *stored, struct json_object *patch,
                     struct json_object **out)
{
    static const char *const writable[] = {
        "name", "source_connection_id", "enabled", "filters", "backfill", "delay_s",
        "destinations", NULL,
    };
    struct json_object *m, *filters = NULL;

    *out = NULL;
    if (!is_object(stored) || !is_object(patch))
        return CP_EINVAL;
    m = json_object_new_object();
    if (!m)
        return CP_ENOMEM;
    json_object_object_foreach(stored, key, val) {
        if (!in_list(key, writable))
            continue;
        if (strcmp(key, "destinations") == 0) {
            /* As written: connection and settings. */
            struct json_object *arr = json_object_new_array();
            for (size_t i = 0; arr && is_array(val) && i < json_object_array_length(val); i++) {
                struct json_object *d = json_object_array_get_idx(val, i), *c, *s, *nd;
                nd = json_object_new_object();
                if (!nd)
                    break;
                if (json_object_object_get_ex(d, "connection_id", &c))
                    json_object_object_add(nd, "connection_id", json_object_get(c));
                if (json_object_object_get_ex(d, "settings", &s))
                    json_object_object_add(nd, "settings", json_object_get(s));
                json_object_array_add(arr, nd);
            }
            json_object_object_add(m, key, arr);
        } else {
            json_object_object_add(m, key, json_object_get(val));
        }
    }
    json_object_object_foreach(patch, pkey, pval) {
        struct json_object *old = NULL;
        if (strcmp(pkey, "filters") == 0 && is_object(pval) &&
            json_object_object_get_ex(m, "filters", &old) && is_object(old)) {
            json_object_deep_copy(old, &filters, NULL);
            if (!filters)
                goto fail;
            json_object_object_foreach(pval, fkey, fval)
                json_object_object_add(filters, fkey, json_object_get(fval));
            json_object_object_add(m, "filters", filters);
            filters = NULL;
            continue;
        }
        json_object_object_add(m, pkey, json_object_get(pval));
    }
    *out = m;
    return 0;
fail:
    json_object_put(m);
    return CP_ENOMEM;
}

/* ------------------------------------------------------- data layer -- */

int rule_conn_lookup_db(void *ctx, long long id, struct rule_conn *out)
{
    struct db *db = ctx;
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    const struct platform *pf;
    char name[32];
    int rc;

    memset(out, 0, sizeof *out);
    rc = db_query(db, "SELECT id, user_id, platform FROM connections WHERE id = ?", p, 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) == 0) {
        db_result_free(r);
        return CP_ENOTFOUND;
    }
    out->id = db_result_int(r, 0, 0);
    out->user_id = db_result_int(r, 0, 1);
    db_result_text(r, 0, 2, name, sizeof name);
    db_result_free(r);
    pf = platform_find(name);
    if (!pf)
        return CP_EDB;                  /* the schema's enum knows no other */
    out->platform = pf->id;
    return 0;
}

static struct db_param opt_duration(long long v)
{
    return v < 0 ? DB_NULL : DB_I64(v);
}

static int write_destinations(struct db *db, long long rule_id, const struct rule_input *in)
{
    int rc = 0;

    for (size_t i = 0; i < in->ndestinations && !rc; i++) {
        struct db_param p[] = { DB_I64(rule_id), DB_I64(in->destinations[i].connection_id),
                                DB_I64((long long)i), DB_STR(in->destinations[i].settings) };
        rc = db_exec(db, "INSERT INTO rule_destinations (rule_id, connection_id, position, settings)"
                         " VALUES (?, ?, ?, ?)", p, 4, NULL, NULL);
    }
    return rc;
}

/* The source's newest 'known' videos to 'new', each with its fetch job. */
static int backfill_known(struct db *db, long long source_id, long long limit)
{
    struct db_param p[] = { DB_I64(source_id), DB_I64(limit) };
    struct db_result *r = NULL;
    int rc;

    if (limit <= 0)
        return 0;
    rc = db_query(db, "SELECT id, user_id FROM videos WHERE connection_id = ? AND state = 'known'"
                      " ORDER BY remote_created_at IS NULL, remote_created_at DESC, id DESC"
                      " LIMIT ? FOR UPDATE", p, 2, &r);
    if (rc)
        return rc;
    for (size_t i = 0; i < db_result_rows(r) && !rc; i++) {
        long long vid = db_result_int(r, i, 0);
        struct db_param u[] = { DB_I64(vid) };
        char payload[64], key[64];
        struct job_spec spec = { .kind = "video.fetch", .payload = payload, .unique_key = key,
                                 .user_id = db_result_int(r, i, 1) };
        long long job = 0;

        rc = db_exec(db, "UPDATE videos SET state = 'new' WHERE id = ? AND state = 'known'", u, 1,
                     NULL, NULL);
        if (rc)
            break;
        snprintf(payload, sizeof payload, "{\"video_id\":%lld}", vid);
        snprintf(key, sizeof key, "video.fetch:%lld", vid);
        rc = queue_enqueue(db, &spec, &job);
        if (rc == CP_ECONFLICT)
            rc = 0;
    }
    db_result_free(r);
    return rc;
}

struct write_tx {
    const struct conf *c;
    long long user_id;
    long long id;                      /* in for update, out for create */
    const struct rule_input *in;
    int backfill;
};

static int create_tx(struct db *db, void *arg)
{
    struct write_tx *t = arg;
    const struct rule_input *in = t->in;
    struct db_param p[] = {
        DB_I64(t->user_id), DB_STR(in->name), DB_I64(in->source_connection_id), DB_I64(in->enabled),
        opt_duration(in->min_duration_s), opt_duration(in->max_duration_s),
        DB_STR(in->include_words ? in->include_words : "[]"),
        DB_STR(in->exclude_words ? in->exclude_words : "[]"), DB_I64(in->backfill),
        DB_I64(in->delay_s),
    };
    unsigned long long id = 0;
    int rc;

    rc = db_exec(db, "INSERT INTO rules (user_id, name, source_connection_id, enabled, min_duration_s,"
                     " max_duration_s, include_words, exclude_words, backfill, delay_s)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", p, 10, NULL, &id);
    if (rc)
        return rc;
    t->id = (long long)id;
    rc = write_destinations(db, t->id, in);
    if (!rc && t->backfill)
        rc = backfill_known(db, in->source_connection_id, t->c->rule_backfill_max);
    return rc;
}

/* Videos already ready go out once the rule is committed. */
static void fanout_after(struct db *db, const struct conf *c, long long rule_id)
{
    size_t added = 0;
    int rc = pub_fanout_rule(db, rule_id, (int)c->rule_backfill_max, &added);

    if (rc)
        log_warn("rule %lld: publishing ready videos failed: %s", rule_id, cp_strerror(rc));
}

int rule_create(struct db *db, const struct conf *c, long long user_id,
                const struct rule_input *in, long long *id_out)
{
    struct write_tx t = { c, user_id, 0, in, in->backfill };
    int rc;

    *id_out = 0;
    rc = db_transaction(db, create_tx, &t, TX_ATTEMPTS);
    if (rc)
        return rc;
    *id_out = t.id;
    if (in->backfill)
        fanout_after(db, c, t.id);
    return 0;
}

static int update_tx(struct db *db, void *arg)
{
    struct write_tx *t = arg;
    const struct rule_input *in = t->in;
    struct db_param own[] = { DB_I64(t->id), DB_I64(t->user_id) };
    struct db_param p[] = {
        DB_STR(in->name), DB_I64(in->source_connection_id), DB_I64(in->enabled),
        opt_duration(in->min_duration_s), opt_duration(in->max_duration_s),
        DB_STR(in->include_words ? in->include_words : "[]"),
        DB_STR(in->exclude_words ? in->exclude_words : "[]"), DB_I64(in->backfill),
        DB_I64(in->delay_s), DB_I64(t->id),
    };
    struct db_result *r = NULL;
    int rc;

    rc = db_query(db, "SELECT id FROM rules WHERE id = ? AND user_id = ? FOR UPDATE", own, 2, &r);
    if (rc)
        return rc;
    rc = db_result_rows(r) ? 0 : CP_ENOTFOUND;
    db_result_free(r);
    if (rc)
        return rc;
    /* updated_at moves even when nothing else does. */
    rc = db_exec(db, "UPDATE rules SET name = ?, source_connection_id = ?, enabled = ?,"
                     " min_duration_s = ?, max_duration_s = ?, include_words = ?, exclude_words = ?,"
                     " backfill = ?, delay_s = ?, updated_at = NOW(3) WHERE id = ?",
                 p, 10, NULL, NULL);
    if (!rc)
        rc = db_exec(db, "DELETE FROM rule_destinations WHERE rule_id = ?", own, 1, NULL, NULL);
    if (!rc)
        rc = write_destinations(db, t->id, in);
    if (!rc && t->backfill)
        rc = backfill_known(db, in->source_connection_id, t->c->rule_backfill_max);
    return rc;
}

int rule_update(struct db *db, const struct conf *c, long long user_id, long long id,
                const struct rule_input *in, int run_backfill)
{
    struct write_tx t = { c, user_id, id, in, run_backfill && in->backfill };
    int rc;

    rc = db_transaction(db, update_tx, &t, TX_ATTEMPTS);
    if (rc)
        return rc;
    if (t.backfill)
        fanout_after(db, c, id);
    return 0;
}

int rule_delete(struct db *db, long long user_id, long long id)
{
    struct db_param p[] = { DB_I64(id), DB_I64(user_id) };
    unsigned long long affected = 0;
    int rc;

    rc = db_exec(db, "DELETE FROM rules WHERE id = ? AND user_id = ?", p, 2, &affected, NULL);
    if (rc)
        return rc;
    return affected ? 0 : CP_ENOTFOUND;
}

#define MS(col) "COALESCE(CAST(UNIX_TIMESTAMP(" col ") * 1000 AS SIGNED), 0)"
#define RULE_COLUMNS \
    "r.id, r.user_id, r.name, r.source_connection_id, r.enabled, r.min_duration_s," \
    " r.max_duration_s, r.include_words, r.exclude_words, r.backfill, r.delay_s, " \
    MS("r.created_at") ", " MS("r.updated_at")

enum { COL_ID, COL_USER, COL_NAME, COL_SOURCE, COL_ENABLED, COL_MIN, COL_MAX, COL_INCLUDE,
       COL_EXCLUDE, COL_BACKFILL, COL_DELAY, COL_CREATED, COL_UPDATED };

/* A stored JSON text as an object of type want, or a new empty one. */
static struct json_object *stored_json(const char *text, json_type want)
{
    struct json_object *o = text ? json_tokener_parse(text) : NULL;

    if (o && json_object_is_type(o, want))
        return o;
    json_object_put(o);
    return want == json_type_array ? json_object_new_array() : json_object_new_object();
}

/* A time as json.h writes them: ISO 8601 UTC with milliseconds, null
 * for none. */
static struct json_object *time_value(long long ms)
{
    char text[40], full[48];
    struct tm tm;
    time_t sec = (time_t)(ms / 1000);

    if (ms <= 0 || !gmtime_r(&sec, &tm) || !strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
        return NULL;
    snprintf(full, sizeof full, "%s.%03lldZ", text, ms % 1000);
    return json_object_new_string(full);
}

static struct json_object *opt_int(const struct db_result *r, size_t row, size_t col)
{
    long long v;

    return db_result_i64(r, row, col, &v) ? NULL : json_object_new_int64(v);
}

/* The resource of row i of r with its destinations from d (rows of
 * rule_id, connection_id, platform, settings). */
static struct json_object *rule_object(const struct db_result *r, size_t i,
                                       const struct db_result *d)
{
    struct json_object *o = json_object_new_object(), *f, *dests;
    long long id = db_result_int(r, i, COL_ID);
    char text[RULE_NAME_MAX + 1];

    if (!o)
        return NULL;
    db_result_text(r, i, COL_NAME, text, sizeof text);
    json_object_object_add(o, "id", json_object_new_int64(id));
    json_object_object_add(o, "name", json_object_new_string(text));
    json_object_object_add(o, "source_connection_id",
                           json_object_new_int64(db_result_int(r, i, COL_SOURCE)));
    json_object_object_add(o, "enabled", json_object_new_boolean(db_result_int(r, i, COL_ENABLED) != 0));
    f = json_object_new_object();
    json_object_object_add(f, "min_duration_s", opt_int(r, i, COL_MIN));
    json_object_object_add(f, "max_duration_s", opt_int(r, i, COL_MAX));
    json_object_object_add(f, "include_words", stored_json(db_result_get(r, i, COL_INCLUDE), json_type_array));
    json_object_object_add(f, "exclude_words", stored_json(db_result_get(r, i, COL_EXCLUDE), json_type_array));
    json_object_object_add(o, "filters", f);
    json_object_object_add(o, "backfill", json_object_new_boolean(db_result_int(r, i, COL_BACKFILL) != 0));
    json_object_object_add(o, "delay_s", json_object_new_int64(db_result_int(r, i, COL_DELAY)));
    dests = json_object_new_array();
    for (size_t j = 0; d && j < db_result_rows(d); j++) {
        struct json_object *e;
        char plat[16];
        if (db_result_int(d, j, 0) != id)
            continue;
        e = json_object_new_object();
        db_result_text(d, j, 2, plat, sizeof plat);
        json_object_object_add(e, "connection_id", json_object_new_int64(db_result_int(d, j, 1)));
        json_object_object_add(e, "platform", json_object_new_string(plat));
        json_object_object_add(e, "settings", stored_json(db_result_get(d, j, 3), json_type_object));
        json_object_array_add(dests, e);
    }
    json_object_object_add(o, "destinations", dests);
    json_object_object_add(o, "created_at", time_value(db_result_int(r, i, COL_CREATED)));
    json_object_object_add(o, "updated_at", time_value(db_result_int(r, i, COL_UPDATED)));
    return o;
}

/* The destinations of rules with ids in [lo, hi]. */
static int load_destinations(struct db *db, long long lo, long long hi, struct db_result **out)
{
    struct db_param p[] = { DB_I64(lo), DB_I64(hi) };

    return db_query(db, "SELECT d.rule_id, d.connection_id, c.platform, d.settings"
                        " FROM rule_destinations d JOIN connections c ON c.id = d.connection_id"
                        " WHERE d.rule_id BETWEEN ? AND ? ORDER BY d.rule_id, d.position, d.id",
                    p, 2, out);
}

int rule_get(struct db *db, const struct conn_scope *scope, long long id,
             struct json_object **out, long long *owner)
{
    struct db_param p[] = { DB_I64(id), DB_I64(conn_scope_all(scope) ? 1 : 0),
                            DB_I64(conn_scope_user(scope)) };
    struct db_result *r = NULL, *d = NULL;
    int rc;

    *out = NULL;
    if (owner)
        *owner = 0;
    rc = db_query(db, "SELECT " RULE_COLUMNS " FROM rules r WHERE r.id = ? AND (? = 1 OR r.user_id = ?)",
                  p, 3, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) == 0) {
        db_result_free(r);
        return CP_ENOTFOUND;
    }
    rc = load_destinations(db, id, id, &d);
    if (!rc) {
        *out = rule_object(r, 0, d);
        if (!*out)
            rc = CP_ENOMEM;
        else if (owner)
            *owner = db_result_int(r, 0, COL_USER);
    }
    db_result_free(d);
    db_result_free(r);
    return rc;
}

int rule_list(struct db *db, const struct conn_scope *scope, const struct rule_filter *f,
              struct buf *out)
{
    struct db_param p[] = {
        DB_I64(f->after_id), DB_I64(conn_scope_all(scope) ? 1 : 0), DB_I64(conn_scope_user(scope)),
        DB_I64(f->source_connection_id), DB_I64(f->source_connection_id),
        DB_I64(f->have_enabled ? 1 : 0), DB_I64(f->enabled ? 1 : 0), DB_I64(f->limit + 1),
    };
    struct db_result *r = NULL, *d = NULL;
    size_t n;
    int rc;

    if (f->limit < 1 || f->limit > 200)
        return CP_EINVAL;
    rc = db_query(db, "SELECT " RULE_COLUMNS " FROM rules r WHERE r.id > ? AND (? = 1 OR r.user_id = ?)"
                      " AND (? = 0 OR r.source_connection_id = ?) AND (? = 0 OR r.enabled = ?)"
                      " ORDER BY r.id LIMIT ?", p, 8, &r);
    if (rc)
        return rc;
    n = db_result_rows(r);
    if (n > (size_t)f->limit)
        n = (size_t)f->limit;
    if (n)
        rc = load_destinations(db, db_result_int(r, 0, COL_ID), db_result_int(r, n - 1, COL_ID), &d);
    rc = rc ? rc : buf_adds(out, "{\"data\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        struct json_object *o = rule_object(r, i, d);
        if (!o) {
            rc = CP_ENOMEM;
            break;
        }
        rc = i ? buf_addc(out, ',') : 0;
        rc = rc ? rc : json_to_buf(o, out);
        json_object_put(o);
    }
    if (!rc && db_result_rows(r) > n)
        rc = buf_printf(out, "],\"next_cursor\":\"%lld\"}", db_result_int(r, n - 1, COL_ID));
    else if (!rc)
        rc = buf_adds(out, "],\"next_cursor\":null}");
    db_result_free(d);
    db_result_free(r);
    return rc;
}
