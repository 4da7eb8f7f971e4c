#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "err.h"
#include "json.h"
#include "query.h"


/* Decode s[0..len) into out; see query_get. */
static int decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? crypto_hex_digit((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? crypto_hex_digit((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return CP_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0)
            return CP_EINVAL;
        if (n + 1 >= cap)
            return CP_ETOOBIG;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

int query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    const char *value = NULL, *p = query;
    size_t value_len = 0;

    if (cap == 0)
        return CP_ETOOBIG;
    out[0] = '\0';
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;

        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            if (value)
                return CP_EINVAL;
            value = eq ? eq + 1 : p + len;
            value_len = eq ? len - key_len - 1 : 0;
        }
        p = end ? end + 1 : NULL;
    }
    if (!value)
        return CP_ENOTFOUND;
    int rc = decode(value, value_len, out, cap);
    /* Values meet text columns, which take only well-formed UTF-8. */
    if (rc == 0 && !json_utf8_valid(out, strlen(out)))
        rc = CP_EINVAL;
    if (rc)
        out[0] = '\0';
    return rc;
}

int parse_id(const char *s, long long *out)
{
    long long v = 0;
    size_t n = strlen(s);

    *out = 0;
    if (n == 0 || n > 19 || s[0] == '0')
        return CP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int d = s[i] - '0';
        if (d < 0 || d > 9 || v > (LLONG_MAX - d) / 10)
            return CP_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* See query.h. */
int parse_utc_time(const char *s, char *out, size_t cap)
{
    static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, mo, d, h, mi, sec, frac = 0, frac_digits = 0;
    const char *p = s + 19;

    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return CP_EINVAL;
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p) && frac_digits < 6; p++, frac_digits++)
            frac = frac * 10 + (*p - '0');
        if (frac_digits == 0)
            return CP_EINVAL;
        for (int i = frac_digits; i < 6; i++)
            frac *= 10;
    }
    if ((*p != 'Z' && *p != 'z') || p[1] != '\0')
        return CP_EINVAL;
    /* DATETIME's range; no leap seconds. */
    if (y < 1000 || mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 || mi > 59 || sec > 59)
        return CP_EINVAL;
    snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06d", y, mo, d, h, mi, sec, frac);
    return 0;
}

int utc_literal_ms(const char *lit, long long *out)
{
    struct tm tm;
    const char *rest;
    long long frac = 0, scale = 100;

    memset(&tm, 0, sizeof tm);
    rest = strptime(lit, "%Y-%m-%d %H:%M:%S", &tm);
    if (!rest)
        return CP_EINVAL;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
            frac += scale > 0 ? (*rest - '0') * scale : 0;
    *out = (long long)timegm(&tm) * 1000 + frac;
    return *out > 0 ? 0 : CP_EINVAL;
}

int req_path_id(struct request *req, const char *name, long long *out)
{
    char text[24];

    if (route_param_get(&req->match, name, text, sizeof text) || parse_id(text, out)) {
        *out = 0;
        reply_error(req, 404, "not_found", "Nothing is at %s.", req->path);
        return 1;
    }
    return 0;
}

int req_query(struct request *req, const char *name, char *out, size_t cap)
{
    int rc = query_get(req->query, name, out, cap);

    if (rc == 0 || rc == CP_ENOTFOUND)
        return rc;
    reply_error(req, 400, "invalid_parameter", "The query parameter \"%s\" is %s.", name,
                rc == CP_ETOOBIG ? "too long" : "malformed or given more than once");
    return 1;
}

int req_query_id(struct request *req, const char *name, const char *what, long long *out)
{
    char text[32];
    int rc = req_query(req, name, text, sizeof text);

    if (rc == 1)
        return 1;
    if (rc == 0 && parse_id(text, out))
        return reply_bad_parameter(req, name, what);
    return 0;
}

int reply_bad_parameter(struct request *req, const char *name, const char *expected)
{
    reply_error(req, 400, "invalid_parameter", "The query parameter \"%s\" must be %s.", name,
                expected);
    return 1;
}

void reply_unavailable(struct request *req)
{
    reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
}

int req_db(struct request *req, struct db **db)
{
    if (app_db(req->app, db)) {
        reply_unavailable(req);
        return 1;
    }
    return 0;
}

int req_paging(struct request *req, int *limit, long long *cursor)
{
    char text[24];
    long long v;
    int rc;

    *limit = QUERY_LIMIT_DEFAULT;
    *cursor = 0;
    rc = req_query(req, "limit", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (parse_id(text, &v) || v > QUERY_LIMIT_MAX) {
            reply_error(req, 400, "invalid_parameter",
                        "The query parameter \"limit\" must be a whole number from 1 to %d.",
                        QUERY_LIMIT_MAX);
            return 1;
        }
        *limit = (int)v;
    }
    rc = req_query(req, "cursor", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0 && parse_id(text, cursor)) {
        reply_error(req, 400, "invalid_parameter",
                    "The query parameter \"cursor\" is not one this server gave out.");
        return 1;
    }
    return 0;
}

int req_query_time(struct request *req, const char *name, char *out, size_t cap)
{
    char text[64];
    int rc;

    out[0] = '\0';
    rc = req_query(req, name, text, sizeof text);
    if (rc)
        return rc;
    if (parse_utc_time(text, out, cap)) {
        reply_error(req, 400, "invalid_parameter",
                    "The query parameter \"%s\" must be a UTC time like 2026-11-22T05:00:00Z.", name);
        return 1;
    }
    return 0;
}

void reply_list_query(struct request *req, int built_rc, struct buf *sql,
                      const struct db_param *params, size_t nparams, int limit,
                      page_json_fn page_json, size_t max_json)
{
    struct db_result *r = NULL;
    struct buf out;
    struct db *db;

    if (built_rc || app_db(req->app, &db) || db_query(db, buf_str(sql), params, nparams, &r)) {
        buf_free(sql);
        reply_unavailable(req);
        return;
    }
    buf_free(sql);
    buf_init(&out, max_json);
    if (page_json(r, limit, &out))
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&out), out.len);
    buf_free(&out);
    db_result_free(r);
}
