/*
 * template.c - captions, titles and post texts (see template.h).
 *
 * Rendering works on code points of UTF-8 text that the API already
 * checked; bytes that are not valid UTF-8 count as one character each so
 * nothing here can loop or read past a string.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "err.h"
#include "template.h"

#define TEXT_MAX (256u << 10)          /* any rendered text */
#define TITLE_CHARS_MAX 100            /* {title} from the description; YouTube titles */
#define IG_CAPTION_CHARS 2200
#define IG_HASHTAGS_MAX 30
#define X_TEXT_WEIGHT 280
#define X_URL_WEIGHT 23
#define YT_DESCRIPTION_BYTES 5000
#define HASHTAGS_LIMIT 30              /* hashtags_max's ceiling */
#define TAG_LIST_MAX 160               /* source tags plus hashtags_add */
#define ELLIPSIS "\xe2\x80\xa6"

static const char *const default_ig_caption = "{description} {hashtags}";
static const char *const default_yt_title = "{title}";
static const char *const default_yt_description = "{description}\n\n{hashtags}";
static const char *const default_x_text = "{description} {hashtags}";

/* ------------------------------------------------------------ UTF-8 -- */

/* Length of the sequence starting at s (1 for a stray byte) and its code
 * point. */
static size_t utf8_next(const unsigned char *s, unsigned long *cp)
{
    unsigned char c = s[0];
    size_t n, i;
    unsigned long v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        v = c & 0x07;
    } else {
        *cp = c;
        return 1;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = c;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return n;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    unsigned long cp;

    for (const unsigned char *p = (const unsigned char *)s; *p; p += utf8_next(p, &cp))
        n++;
    return n;
}

/* Bytes of the first max characters of s[0..len). */
static size_t utf8_prefix_chars(const char *s, size_t len, size_t max)
{
    size_t off = 0, n = 0;
    unsigned long cp;

    while (off < len && n < max) {
        size_t step = utf8_next((const unsigned char *)s + off, &cp);
        if (off + step > len)
            break;
        off += step;
        n++;
    }
    return off;
}

/* The longest prefix of s[0..len) of at most max bytes ending on a
 * character boundary. */
static size_t utf8_prefix_bytes(const char *s, size_t len, size_t max)
{
    size_t off = 0;
    unsigned long cp;

    while (off < len) {
        size_t step = utf8_next((const unsigned char *)s + off, &cp);
        if (off + step > max)
            break;
        off += step;
    }
    return off;
}

/* ---------------------------------------------------------- X weight -- */

static int x_light(unsigned long cp)
{
    return cp <= 0x10ff || (cp >= 0x2000 && cp <= 0x200d) || (cp >= 0x2010 && cp <= 0x201f) ||
           (cp >= 0x2032 && cp <= 0x2037);
}

/* Length of an http(s):// URL starting at s, or 0. */
static size_t url_at(const char *s)
{
    size_t scheme;

    if (strncasecmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return 0;
    size_t n = scheme;
    while (s[n] && !isspace((unsigned char)s[n]))
        n++;
    return n > scheme ? n : 0;
}

long long template_x_weight(const char *text)
{
    long long w = 0;
    const unsigned char *p = (const unsigned char *)text;
    int at_word_start = 1;

    if (!text)
        return 0;
    while (*p) {
        size_t u = at_word_start ? url_at((const char *)p) : 0;
        unsigned long cp;

        if (u) {
            w += X_URL_WEIGHT;
            p += u;
            at_word_start = 0;
            continue;
        }
        at_word_start = isspace(*p) || *p == '(' || *p == '"' || *p == '\'';
        p += utf8_next(p, &cp);
        w += x_light(cp) ? 1 : 2;
    }
    return w;
}

/* ---------------------------------------------------------- hashtags -- */

static int tag_byte(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* A hashtag starts at text[i] when it is '#' followed by a word and not
 * glued to a word before it; *len is the whole "#word". */
static int tag_at(const char *text, size_t i, size_t *len)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t n = 1;

    if (t[i] != '#' || (i > 0 && (tag_byte(t[i - 1]) || t[i - 1] == '&' || t[i - 1] == '#')))
        return 0;
    while (tag_byte(t[i + n]))
        n++;
    if (n == 1)
        return 0;
    *len = n;
    return 1;
}

static int tag_listed(char (*tags)[TEMPLATE_TAG_MAX], size_t n, const char *word, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(tags[i]) == len && strncasecmp(tags[i], word, len) == 0)
            return 1;
    return 0;
}

/* Drop horizontal space at the end of lines and of the text, and blank
 * lines at either end. */
static int tidy_text(const char *s, size_t len, struct buf *out)
{
    size_t start = 0, end = len;
    int rc = 0;

    while (start < end && isspace((unsigned char)s[start]))
        start++;
    while (end > start && isspace((unsigned char)s[end - 1]))
        end--;
    for (size_t i = start; i < end && !rc; i++) {
        if (s[i] == ' ' || s[i] == '\t') {
            size_t j = i;
            while (j < end && (s[j] == ' ' || s[j] == '\t'))
                j++;
            if (j < end && s[j] != '\n' && s[j] != '\r')
                rc = buf_addc(out, ' ');
            i = j - 1;
            continue;
        }
        rc = buf_addc(out, s[i]);
    }
    return rc;
}

size_t template_hashtags(const char *text, char (*out)[TEMPLATE_TAG_MAX], size_t cap,
                         struct buf *rest)
{
    struct buf raw;
    size_t n = 0, i = 0;
    int rc = 0;

    if (!text)
        text = "";
    buf_init(&raw, strlen(text) + 1);
    while (text[i]) {
        size_t len;

        if (tag_at(text, i, &len)) {
            const char *word = text + i + 1;
            size_t wlen = len - 1;
            if (wlen < TEMPLATE_TAG_MAX && n < cap && !tag_listed(out, n, word, wlen)) {
                memcpy(out[n], word, wlen);
                out[n][wlen] = '\0';
                n++;
            }
            i += len;
            continue;
        }
        if (rest && !rc)
            rc = buf_addc(&raw, text[i]);
        i++;
    }
    if (rest && !rc)
        tidy_text(buf_str(&raw), raw.len, rest);
    buf_free(&raw);
    return n;
}

/* ---------------------------------------------------------- expanding -- */

enum var { VAR_DESCRIPTION, VAR_TITLE, VAR_HASHTAGS, VAR_SHARE_URL, VAR_DATE };

static const char *const var_names[] = { "description", "title", "hashtags", "share_url", "date" };

static void set_why(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (!why || !cap)
        return;
    if (cap > TEMPLATE_ERROR_MAX)
        cap = TEMPLATE_ERROR_MAX;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* The values of the variables as rendering uses them. */
struct values {
    const char *v[5];
    size_t len[5];
};

/* Walk tmpl; with vals NULL only check it.  0 or CP_EINVAL with why;
 * CP_ETOOBIG / CP_ENOMEM from out. */
static int walk(const char *tmpl, const struct values *vals, struct buf *out, char *why,
                size_t why_cap)
{
    size_t i = 0;
    int rc = 0;

    while (tmpl[i] && !rc) {
        char c = tmpl[i];

        if (c == '{' && tmpl[i + 1] == '{') {
            rc = out ? buf_addc(out, '{') : 0;
            i += 2;
        } else if (c == '}' && tmpl[i + 1] == '}') {
            rc = out ? buf_addc(out, '}') : 0;
            i += 2;
        } else if (c == '}') {
            set_why(why, why_cap, "A '}' at byte %zu closes nothing (write \"}}\" for a brace).", i);
            return CP_EINVAL;
        } else if (c == '{') {
            size_t j = i + 1, k;
            while (tmpl[j] && tmpl[j] != '}' && tmpl[j] != '{')
                j++;
            if (tmpl[j] != '}') {
                set_why(why, why_cap, "The '{' at byte %zu is not closed (write \"{{\" for a brace).", i);
                return CP_EINVAL;
            }
            for (k = 0; k < sizeof var_names / sizeof var_names[0]; k++)
                if (strlen(var_names[k]) == j - i - 1 && memcmp(var_names[k], tmpl + i + 1, j - i - 1) == 0)
                    break;
            if (k == sizeof var_names / sizeof var_names[0]) {
                set_why(why, why_cap,
                        "Unknown variable {%.*s} at byte %zu: use {description}, {title}, "
                        "{hashtags}, {share_url} or {date}.",
                        (int)(j - i - 1 > 40 ? 40 : j - i - 1), tmpl + i + 1, i);
                return CP_EINVAL;
            }
            if (out && vals)
                rc = buf_add(out, vals->v[k], vals->len[k]);
            i = j + 1;
        } else {
            rc = out ? buf_addc(out, c) : 0;
            i++;
        }
    }
    return rc;
}

int template_check(const char *tmpl, char *why, size_t why_cap)
{
    if (why && why_cap)
        why[0] = '\0';
    if (!tmpl) {
        set_why(why, why_cap, "A template must be a string.");
        return CP_EINVAL;
    }
    return walk(tmpl, NULL, NULL, why, why_cap);
}

static void format_date(long long ms, char out[16])
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);

    out[0] = '\0';
    if (ms <= 0 || !gmtime_r(&t, &tm))
        return;
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* {title}: the source's, or the first line of the description without
 * hashtags, at most TITLE_CHARS_MAX characters. */
static int title_of(const struct template_vars *vars, const char *rest, struct buf *out)
{
    const char *t = vars && vars->title ? vars->title : "";
    size_t len;

    while (*t && isspace((unsigned char)*t))
        t++;
    if (*t)
        return buf_adds(out, t);
    len = strcspn(rest, "\r\n");
    return buf_add(out, rest, utf8_prefix_chars(rest, len, TITLE_CHARS_MAX));
}

/* Everything rendering needs that does not change while fitting. */
struct source {
    const struct template_vars *vars;
    struct buf rest;                  /* description without hashtags */
    struct buf title;                 /* {title} */
    char date[16];
};

static int source_init(struct source *s, const struct template_vars *vars)
{
    const char *d = vars && vars->description ? vars->description : "";
    int rc;

    s->vars = vars;
    buf_init(&s->rest, strlen(d) + 1);
    buf_init(&s->title, TEXT_MAX);
    template_hashtags(d, NULL, 0, &s->rest);
    rc = title_of(vars, buf_str(&s->rest), &s->title);
    format_date(vars ? vars->created_ms : 0, s->date);
    return rc;
}

static void source_free(struct source *s)
{
    buf_free(&s->rest);
    buf_free(&s->title);
}

/* Expand with description text desc[0..dlen) (plus "…" when cut). */
static int expand_with(const char *tmpl, const struct source *s, const char *desc, size_t dlen,
                       int cut, const char *hashtags, struct buf *out, char *why, size_t why_cap)
{
    struct values vals;
    struct buf d, raw;
    const char *share = s->vars && s->vars->share_url ? s->vars->share_url : "";
    int rc;

    buf_init(&d, dlen + 8);
    rc = buf_add(&d, desc, dlen);
    if (!rc && cut)
        rc = buf_adds(&d, ELLIPSIS);
    if (rc) {
        buf_free(&d);
        return rc;
    }
    vals.v[VAR_DESCRIPTION] = buf_str(&d);
    vals.len[VAR_DESCRIPTION] = d.len;
    vals.v[VAR_TITLE] = buf_str(&s->title);
    vals.len[VAR_TITLE] = s->title.len;
    vals.v[VAR_HASHTAGS] = hashtags ? hashtags : "";
    vals.len[VAR_HASHTAGS] = strlen(vals.v[VAR_HASHTAGS]);
    vals.v[VAR_SHARE_URL] = share;
    vals.len[VAR_SHARE_URL] = strlen(share);
    vals.v[VAR_DATE] = s->date;
    vals.len[VAR_DATE] = strlen(s->date);
    buf_init(&raw, TEXT_MAX);
    rc = walk(tmpl, &vals, &raw, why, why_cap);
    if (!rc)
        rc = tidy_text(buf_str(&raw), raw.len, out);
    buf_free(&raw);
    buf_free(&d);
    return rc;
}

int template_expand(const char *tmpl, const struct template_vars *vars, const char *hashtags,
                    struct buf *out, char *why, size_t why_cap)
{
    struct source s;
    int rc;

    if (why && why_cap)
        why[0] = '\0';
    if (!tmpl || !out)
        return CP_EINVAL;
    rc = source_init(&s, vars);
    if (!rc)
        rc = expand_with(tmpl, &s, s.rest.data ? s.rest.data : "", s.rest.len, 0, hashtags, out,
                         why, why_cap);
    source_free(&s);
    return rc;
}

/* ---------------------------------------------------------- rendering -- */

void template_result_init(struct template_result *r)
{
    buf_init(&r->caption, TEXT_MAX);
    buf_init(&r->title, TEXT_MAX);
    r->truncated = 0;
}

void template_result_free(struct template_result *r)
{
    if (!r)
        return;
    buf_free(&r->caption);
    buf_free(&r->title);
    r->truncated = 0;
}

/* A string setting, def when absent; CP_EINVAL when another type. */
static int setting_string(struct json_object *settings, const char *key, const char *def,
                          const char **out)
{
    struct json_object *v;

    *out = def;
    if (!settings || !json_object_object_get_ex(settings, key, &v) || !v)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return CP_EINVAL;
    *out = json_object_get_string(v);
    return 0;
}

/* A word of hashtags_add / hashtags_remove without its '#'. */
static const char *tag_word(const char *s)
{
    return s[0] == '#' ? s + 1 : s;
}

static int word_in(struct json_object *arr, const char *word)
{
    size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;

    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_is_type(e, json_type_string) &&
            strcasecmp(tag_word(json_object_get_string(e)), word) == 0)
            return 1;
    }
    return 0;
}

/* A word fit to follow '#': at least one byte, all hashtag bytes. */
static int tag_word_ok(const char *w)
{
    size_t n = strlen(w);

    if (n == 0 || n >= TEMPLATE_TAG_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tag_byte((unsigned char)w[i]))
            return 0;
    return 1;
}

/* The source's hashtags, less hashtags_remove, plus hashtags_add, at most
 * hashtags_max (default and ceiling HASHTAGS_LIMIT). */
static size_t destination_tags(struct json_object *settings, const char *description,
                               char (*tags)[TEMPLATE_TAG_MAX])
{
    char found[TAG_LIST_MAX][TEMPLATE_TAG_MAX];
    struct json_object *remove = NULL, *add = NULL, *max = NULL;
    size_t nfound, n = 0, limit = HASHTAGS_LIMIT;

    if (settings) {
        json_object_object_get_ex(settings, "hashtags_remove", &remove);
        json_object_object_get_ex(settings, "hashtags_add", &add);
        if (json_object_object_get_ex(settings, "hashtags_max", &max) &&
            json_object_is_type(max, json_type_int)) {
            long long m = json_object_get_int64(max);
            limit = m < 0 ? 0 : m > HASHTAGS_LIMIT ? HASHTAGS_LIMIT : (size_t)m;
        }
    }
    nfound = template_hashtags(description ? description : "", found, TAG_LIST_MAX, NULL);
    for (size_t i = 0; i < nfound && n < TAG_LIST_MAX; i++)
        if (!word_in(remove, found[i]))
            memcpy(tags[n++], found[i], TEMPLATE_TAG_MAX);
    if (add && json_object_is_type(add, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(add) && n < TAG_LIST_MAX; i++) {
            struct json_object *e = json_object_array_get_idx(add, i);
            const char *w;
            if (!json_object_is_type(e, json_type_string))
                continue;
            w = tag_word(json_object_get_string(e));
            if (tag_word_ok(w) && !tag_listed(tags, n, w, strlen(w))) {
                strcpy(tags[n], w);
                n++;
            }
        }
    }
    return n < limit ? n : limit;
}

static int tags_text(char (*tags)[TEMPLATE_TAG_MAX], size_t n, struct buf *out)
{
    int rc = 0;

    buf_reset(out);
    for (size_t i = 0; i < n && !rc; i++)
        rc = buf_printf(out, "%s#%s", i ? " " : "", tags[i]);
    return rc;
}

/* What a platform allows in a text. */
struct limit {
    enum { MEASURE_X, MEASURE_CHARS } measure;
    long long max;
    size_t max_hashtags;              /* 0: no limit */
};

static int text_fits(const struct limit *l, const struct buf *text)
{
    long long size = l->measure == MEASURE_X ? template_x_weight(buf_str(text))
                                             : (long long)utf8_chars(buf_str(text));

    if (size > l->max)
        return 0;
    if (l->max_hashtags) {
        char tags[IG_HASHTAGS_MAX + 1][TEMPLATE_TAG_MAX];
        if (template_hashtags(buf_str(text), tags, IG_HASHTAGS_MAX + 1, NULL) > l->max_hashtags)
            return 0;
    }
    return 1;
}

/* Render tmpl into out with the first ntags tags and desc cut to dlen
 * bytes (cut: "…" added); *fits says whether it is within l. */
static int try_render(const char *tmpl, const struct source *s, size_t dlen, int cut,
                      char (*tags)[TEMPLATE_TAG_MAX], size_t ntags, const struct limit *l,
                      struct buf *out, int *fits, char *why, size_t why_cap)
{
    struct buf ht;
    int rc;

    buf_init(&ht, TAG_LIST_MAX * (TEMPLATE_TAG_MAX + 2));
    rc = tags_text(tags, ntags, &ht);
    buf_reset(out);
    if (!rc)
        rc = expand_with(tmpl, s, s->rest.data ? s->rest.data : "", dlen, cut, buf_str(&ht), out,
                         why, why_cap);
    *fits = rc ? 0 : text_fits(l, out);
    buf_free(&ht);
    return rc;
}

/* Where to cut the description at about len bytes: not inside a URL (it
 * would stop being one) and without trailing space. */
static size_t cut_point(const char *d, size_t len)
{
    size_t start = len;

    while (start > 0 && !isspace((unsigned char)d[start - 1]))
        start--;
    if (url_at(d + start) && start < len)
        len = start;
    while (len > 0 && isspace((unsigned char)d[len - 1]))
        len--;
    return len;
}

/* Render within l: cut {description} first, then drop hashtags from the
 * end; CP_EINVAL when even the fixed part does not fit. */
static int render_fitted(const char *tmpl, const struct source *s, char (*tags)[TEMPLATE_TAG_MAX],
                         size_t ntags, const struct limit *l, struct buf *out, int *truncated,
                         char *why, size_t why_cap)
{
    const char *d = s->rest.data ? s->rest.data : "";
    size_t dlen = s->rest.len, *bounds = NULL, nb = 0, lo, hi;
    int fits, rc;

    rc = try_render(tmpl, s, dlen, 0, tags, ntags, l, out, &fits, why, why_cap);
    if (rc || fits)
        return rc;
    *truncated = 1;
    for (;;) {
        rc = try_render(tmpl, s, 0, 0, tags, ntags, l, out, &fits, why, why_cap);
        if (rc || fits)
            break;
        if (ntags == 0) {
            set_why(why, why_cap, "The template's own text is longer than the platform allows "
                                  "(%lld %s%s).", l->max,
                    l->measure == MEASURE_X ? "by X's count" : "characters",
                    l->max_hashtags ? ", 30 hashtags" : "");
            return CP_EINVAL;
        }
        ntags--;
    }
    if (rc || dlen == 0)
        return rc;
    /* Fewer hashtags may leave room for the whole description. */
    rc = try_render(tmpl, s, dlen, 0, tags, ntags, l, out, &fits, why, why_cap);
    if (rc || fits)
        return rc;
    /* The longest description prefix (on a character boundary) that fits. */
    bounds = malloc((dlen + 1) * sizeof *bounds);
    if (!bounds)
        return CP_ENOMEM;
    for (size_t off = 0; off < dlen;) {
        unsigned long cp;
        bounds[nb++] = off;
        off += utf8_next((const unsigned char *)d + off, &cp);
    }
    lo = 0;                           /* bounds[lo] fits (0 bytes always does) */
    hi = nb;                          /* bounds[hi..] do not */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, len = cut_point(d, bounds[mid]);
        rc = try_render(tmpl, s, len, len > 0, tags, ntags, l, out, &fits, why, why_cap);
        if (rc)
            break;
        if (fits)
            lo = mid;
        else
            hi = mid;
    }
    if (!rc) {
        size_t len = cut_point(d, bounds[lo]);
        rc = try_render(tmpl, s, len, len > 0, tags, ntags, l, out, &fits, why, why_cap);
        if (!rc && !fits)
            rc = try_render(tmpl, s, 0, 0, tags, ntags, l, out, &fits, why, why_cap);
    }
    free(bounds);
    return rc;
}

/* Keep at most max characters, without '<' and '>'. */
static int youtube_title(const char *text, struct buf *out)
{
    size_t chars = 0;
    unsigned long cp;
    int rc = 0;

    buf_reset(out);
    for (const unsigned char *p = (const unsigned char *)text; *p && !rc && chars < TITLE_CHARS_MAX;) {
        size_t n = utf8_next(p, &cp);
        if (cp != '<' && cp != '>') {
            rc = buf_add(out, p, n);
            chars++;
        }
        p += n;
    }
    return rc;
}

static int copy_field(char *field, size_t cap, const char *name)
{
    if (field && cap)
        snprintf(field, cap, "%s", name);
    return CP_EINVAL;
}

int template_render(enum platform_id platform, struct json_object *settings,
                    const struct template_vars *vars, struct template_result *out,
                    char *field, size_t field_cap, char *why, size_t why_cap)
{
    char tags[TAG_LIST_MAX][TEMPLATE_TAG_MAX];
    struct source s;
    struct buf tmp;
    const char *tmpl = NULL, *key = "caption_template";
    size_t ntags;
    int rc;

    if (field && field_cap)
        field[0] = '\0';
    if (why && why_cap)
        why[0] = '\0';
    if (!out)
        return CP_EINVAL;
    buf_reset(&out->caption);
    buf_reset(&out->title);
    out->truncated = 0;
    if (settings && !json_object_is_type(settings, json_type_object)) {
        set_why(why, why_cap, "The settings must be an object.");
        return copy_field(field, field_cap, "settings");
    }
    rc = source_init(&s, vars);
    if (rc) {
        source_free(&s);
        return rc;
    }
    ntags = destination_tags(settings, vars ? vars->description : NULL, tags);
    buf_init(&tmp, TEXT_MAX);
    switch (platform) {
    case PLATFORM_INSTAGRAM: {
        struct limit l = { MEASURE_CHARS, IG_CAPTION_CHARS, IG_HASHTAGS_MAX };
        if (setting_string(settings, key, default_ig_caption, &tmpl)) {
            rc = CP_EINVAL;
            set_why(why, why_cap, "A template must be a string.");
            break;
        }
        rc = render_fitted(tmpl, &s, tags, ntags, &l, &out->caption, &out->truncated, why, why_cap);
        break;
    }
    case PLATFORM_X: {
        struct limit l = { MEASURE_X, X_TEXT_WEIGHT, 0 };
        key = "text_template";
        if (setting_string(settings, key, default_x_text, &tmpl)) {
            rc = CP_EINVAL;
            set_why(why, why_cap, "A template must be a string.");
            break;
        }
        rc = render_fitted(tmpl, &s, tags, ntags, &l, &out->caption, &out->truncated, why, why_cap);
        break;
    }
    case PLATFORM_YOUTUBE: {
        struct buf ht;
        size_t keep;

        buf_init(&ht, TAG_LIST_MAX * (TEMPLATE_TAG_MAX + 2));
        rc = tags_text(tags, ntags, &ht);
        key = "title_template";
        if (!rc && setting_string(settings, key, default_yt_title, &tmpl)) {
            rc = CP_EINVAL;
            set_why(why, why_cap, "A template must be a string.");
        }
        if (!rc)
            rc = expand_with(tmpl, &s, buf_str(&s.rest), s.rest.len, 0, buf_str(&ht), &tmp, why,
                             why_cap);
        if (!rc) {
            if (utf8_chars(buf_str(&tmp)) > TITLE_CHARS_MAX || strpbrk(buf_str(&tmp), "<>"))
                out->truncated = 1;
            rc = youtube_title(buf_str(&tmp), &out->title);
        }
        if (!rc) {
            key = "caption_template";
            if (setting_string(settings, key, default_yt_description, &tmpl)) {
                rc = CP_EINVAL;
                set_why(why, why_cap, "A template must be a string.");
            }
        }
        if (!rc) {
            buf_reset(&tmp);
            rc = expand_with(tmpl, &s, buf_str(&s.rest), s.rest.len, 0, buf_str(&ht), &tmp, why,
                             why_cap);
        }
        if (!rc) {
            keep = utf8_prefix_bytes(buf_str(&tmp), tmp.len, YT_DESCRIPTION_BYTES);
            if (keep < tmp.len)
                out->truncated = 1;
            rc = buf_add(&out->caption, buf_str(&tmp), keep);
        }
        buf_free(&ht);
        break;
    }
    default:
        set_why(why, why_cap, "Nothing is published to this platform.");
        key = "platform";
        rc = CP_EINVAL;
        break;
    }
    buf_free(&tmp);
    source_free(&s);
    if (rc == CP_EINVAL)
        copy_field(field, field_cap, key);
    return rc;
}
