#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "err.h"
#include "oauth1.h"

#define PART_MAX 8192                 /* one encoded name=value */
#define BASE_MAX (256 * 1024)

int oauth1_encode(const char *s, size_t len, struct buf *out)
{
    return buf_add_percent_encoded(out, s, len, NULL);
}

/* Decode a query component (%XX escapes; '+' is a space in form data). */
static int url_decode(const char *s, size_t len, struct buf *out)
{
    int rc = 0;

    for (size_t i = 0; i < len && !rc; i++) {
        if (s[i] == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return CP_EINVAL;
            hi = crypto_hex_digit((unsigned char)s[i + 1]);
            lo = crypto_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return CP_EINVAL;
            rc = buf_addc(out, (char)(hi << 4 | lo));
            i += 2;
        } else {
            rc = buf_addc(out, s[i] == '+' ? ' ' : s[i]);
        }
    }
    return rc;
}

/* One encoded "name=value" pair, kept for sorting. */
struct pair {
    char *text;                       /* "enc(name)=enc(value)" */
    size_t name_len;                  /* bytes of enc(name) */
};

struct pairs {
    struct pair p[OAUTH1_PARAMS_MAX];
    size_t n;
};

static void pairs_free(struct pairs *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->p[i].text);
    ps->n = 0;
}

static int pairs_add(struct pairs *ps, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    struct buf b;
    size_t enc_name;
    int rc;

    if (ps->n == OAUTH1_PARAMS_MAX)
        return CP_ETOOBIG;
    buf_init(&b, PART_MAX);
    rc = oauth1_encode(name, name_len, &b);
    enc_name = b.len;
    rc = rc ? rc : buf_addc(&b, '=');
    rc = rc ? rc : oauth1_encode(value, value_len, &b);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    ps->p[ps->n].text = buf_detach(&b, NULL);
    if (!ps->p[ps->n].text)
        return CP_ENOMEM;
    ps->p[ps->n].name_len = enc_name;
    ps->n++;
    return 0;
}

static int pairs_add_str(struct pairs *ps, const char *name, const char *value)
{
    return pairs_add(ps, name, strlen(name), value, strlen(value));
}

/* Sort by encoded name, then encoded value (byte order). */
static int pair_cmp(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->text, y->text, n);

    if (c)
        return c;
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    return strcmp(x->text + x->name_len + 1, y->text + y->name_len + 1);
}

/* The query of url as decoded pairs. */
static int add_query(struct pairs *ps, const char *query)
{
    const char *p = query;
    int rc = 0;

    while (*p && !rc) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p), *eq;
        struct buf name, value;

        if (end == p) {
            p = amp ? amp + 1 : end;
            continue;
        }
        eq = memchr(p, '=', (size_t)(end - p));
        buf_init(&name, PART_MAX);
        buf_init(&value, PART_MAX);
        rc = url_decode(p, (size_t)((eq ? eq : end) - p), &name);
        if (!rc && eq)
            rc = url_decode(eq + 1, (size_t)(end - eq - 1), &value);
        if (!rc)
            rc = pairs_add(ps, name.data ? name.data : "", name.len, value.data ? value.data : "",
                           value.len);
        buf_free(&name);
        buf_free(&value);
        p = amp ? amp + 1 : end;
    }
    return rc;
}

/* Scheme and host in lower case, default port dropped, no query or
 * fragment; *query points into url at the query (or ""). */
static int base_url(const char *url, struct buf *out, const char **query)
{
    const char *rest, *host, *path, *q;
    int https;
    size_t host_len;

    *query = "";
    if (!strncasecmp(url, "https://", 8)) {
        https = 1;
        rest = url + 8;
    } else if (!strncasecmp(url, "http://", 7)) {
        https = 0;
        rest = url + 7;
    } else {
        return CP_EINVAL;
    }
    host = rest;
    path = host + strcspn(host, "/?#");
    host_len = (size_t)(path - host);
    if (host_len == 0)
        return CP_EINVAL;
    /* Default ports are not part of the base URL. */
    if (https && host_len > 4 && !memcmp(path - 4, ":443", 4))
        host_len -= 4;
    else if (!https && host_len > 3 && !memcmp(path - 3, ":80", 3))
        host_len -= 3;
    if (buf_adds(out, https ? "https://" : "http://"))
        return CP_ENOMEM;
    for (size_t i = 0; i < host_len; i++)
        if (buf_addc(out, (char)tolower((unsigned char)host[i])))
            return CP_ETOOBIG;
    q = path + strcspn(path, "?#");
    if (q == path) {
        if (buf_addc(out, '/'))
            return CP_ETOOBIG;
    } else if (buf_add(out, path, (size_t)(q - path))) {
        return CP_ETOOBIG;
    }
    if (*q == '?')
        *query = q + 1;
    return 0;
}

static int make_nonce(char out[48])
{
    unsigned char raw[16];              /* 32 hex digits: fits out[48] */

    if (crypto_random(raw, sizeof raw))
        return CP_EIO;
    crypto_hex(raw, sizeof raw, out);
    return 0;
}

/* The oauth_* parameters of the request (without the signature). */
static int oauth_params(struct pairs *ps, const struct oauth1_request *r,
                        const struct oauth1_creds *c, const char *nonce, const char *ts)
{
    int rc = pairs_add_str(ps, "oauth_consumer_key", c->consumer_key);

    rc = rc ? rc : pairs_add_str(ps, "oauth_nonce", nonce);
    rc = rc ? rc : pairs_add_str(ps, "oauth_signature_method", "HMAC-SHA1");
    rc = rc ? rc : pairs_add_str(ps, "oauth_timestamp", ts);
    if (!rc && c->token && *c->token)
        rc = pairs_add_str(ps, "oauth_token", c->token);
    if (!rc && r->with_version)
        rc = pairs_add_str(ps, "oauth_version", "1.0");
    if (!rc && r->callback)
        rc = pairs_add_str(ps, "oauth_callback", r->callback);
    if (!rc && r->verifier)
        rc = pairs_add_str(ps, "oauth_verifier", r->verifier);
    return rc;
}

int oauth1_base_string(const struct oauth1_request *r, const struct oauth1_creds *c,
                       struct buf *out, char *nonce_out, long long *ts_out)
{
    struct pairs ps = { .n = 0 };
    struct buf url, params;
    const char *query = "", *nonce = r->nonce;
    char nonce_buf[48], ts[24];
    long long t = r->timestamp ? r->timestamp : (long long)time(NULL);
    int rc;

    if (!r->method || !r->url || !c->consumer_key || !c->consumer_secret)
        return CP_EINVAL;
    if (!nonce) {
        rc = make_nonce(nonce_buf);
        if (rc)
            return rc;
        nonce = nonce_buf;
    }
    snprintf(ts, sizeof ts, "%lld", t);
    buf_init(&url, BASE_MAX);
    buf_init(&params, BASE_MAX);
    rc = base_url(r->url, &url, &query);
    if (!rc) {
        /* The query ends where a fragment starts. */
        char *q = strndup(query, strcspn(query, "#"));

        rc = q ? add_query(&ps, q) : CP_ENOMEM;
        free(q);
    }
    for (size_t i = 0; i < r->nbody && !rc; i++)
        rc = pairs_add_str(&ps, r->body[i].name, r->body[i].value ? r->body[i].value : "");
    rc = rc ? rc : oauth_params(&ps, r, c, nonce, ts);
    if (!rc) {
        qsort(ps.p, ps.n, sizeof ps.p[0], pair_cmp);
        for (size_t i = 0; i < ps.n && !rc; i++)
            rc = buf_printf(&params, "%s%s", i ? "&" : "", ps.p[i].text);
    }
    for (const char *m = r->method; *m && !rc; m++)
        rc = buf_addc(out, (char)toupper((unsigned char)*m));
    rc = rc ? rc : buf_addc(out, '&');
    rc = rc ? rc : oauth1_encode(url.data, url.len, out);
    rc = rc ? rc : buf_addc(out, '&');
    rc = rc ? rc : oauth1_encode(params.data ? params.data : "", params.len, out);
    if (!rc && nonce_out)
        snprintf(nonce_out, 48, "%s", nonce);
    if (!rc && ts_out)
        *ts_out = t;
    pairs_free(&ps);
    buf_free(&url);
    buf_free(&params);
    return rc;
}

/* Sign a base string with the request's key into out (base64). */
static int sign_base(const struct buf *base, const struct oauth1_creds *c, char *out, size_t cap)
{
    unsigned char mac[20];
    unsigned int mac_len = 0;
    struct buf key;
    int rc;

    if (cap < OAUTH1_SIGNATURE_LEN + 1)
        return CP_ETOOBIG;
    buf_init(&key, 4096);
    rc = oauth1_encode(c->consumer_secret, strlen(c->consumer_secret), &key);
    rc = rc ? rc : buf_addc(&key, '&');
    if (!rc && c->token_secret)
        rc = oauth1_encode(c->token_secret, strlen(c->token_secret), &key);
    if (!rc && !HMAC(EVP_sha1(), key.data, (int)key.len, (const unsigned char *)base->data, base->len,
                     mac, &mac_len))
        rc = CP_EIO;
    buf_free(&key);
    if (rc)
        return rc;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)mac_len);
    return 0;
}

int oauth1_sign(const struct oauth1_request *r, const struct oauth1_creds *c, char *out, size_t cap)
{
    struct buf base;
    int rc;

    buf_init(&base, BASE_MAX);
    rc = oauth1_base_string(r, c, &base, NULL, NULL);
    rc = rc ? rc : sign_base(&base, c, out, cap);
    buf_free(&base);
    return rc;
}

static int header_param(struct buf *out, int first, const char *name, const char *value)
{
    int rc = buf_printf(out, "%s%s=\"", first ? "OAuth " : ", ", name);

    rc = rc ? rc : oauth1_encode(value, strlen(value), out);
    return rc ? rc : buf_addc(out, '"');
}

int oauth1_authorization(const struct oauth1_request *r, const struct oauth1_creds *c,
                         struct buf *out)
{
    char nonce[48], sig[OAUTH1_SIGNATURE_LEN + 1], ts[24];
    long long t = 0;
    struct buf base;
    int rc;

    buf_init(&base, BASE_MAX);
    rc = oauth1_base_string(r, c, &base, nonce, &t);
    rc = rc ? rc : sign_base(&base, c, sig, sizeof sig);
    buf_free(&base);
    if (rc)
        return rc;
    snprintf(ts, sizeof ts, "%lld", t);
    /* The same nonce and timestamp that were signed. */
    rc = header_param(out, 1, "oauth_consumer_key", c->consumer_key);
    rc = rc ? rc : header_param(out, 0, "oauth_nonce", nonce);
    rc = rc ? rc : header_param(out, 0, "oauth_signature", sig);
    rc = rc ? rc : header_param(out, 0, "oauth_signature_method", "HMAC-SHA1");
    rc = rc ? rc : header_param(out, 0, "oauth_timestamp", ts);
    if (!rc && c->token && *c->token)
        rc = header_param(out, 0, "oauth_token", c->token);
    if (!rc && r->with_version)
        rc = header_param(out, 0, "oauth_version", "1.0");
    if (!rc && r->callback)
        rc = header_param(out, 0, "oauth_callback", r->callback);
    if (!rc && r->verifier)
        rc = header_param(out, 0, "oauth_verifier", r->verifier);
    return rc;
}
