#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "sigv4.h"

#define PART_MAX (16 * 1024)
#define CANON_MAX (64 * 1024)
#define ALGORITHM "AWS4-HMAC-SHA256"

int sigv4_encode(const char *s, size_t len, int keep_slash, struct buf *out)
{
    return buf_add_percent_encoded(out, s, len, keep_slash ? "/" : NULL);
}

/* "YYYYMMDDTHHMMSSZ" */
static int date_ok(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------ sorted lists -- */

struct entry {
    char *key;                 /* encoded query name, or lower-case header name */
    char *value;               /* encoded query value, or trimmed header value */
};

struct entries {
    struct entry e[SIGV4_PARAMS_MAX + 8];
    size_t n;
};

static void entries_free(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->e[i].key);
        free(es->e[i].value);
    }
    es->n = 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : strcmp(x->value, y->value);
}

static int entries_add(struct entries *es, char *key, char *value)
{
    if (!key || !value || es->n == sizeof es->e / sizeof es->e[0]) {
        free(key);
        free(value);
        return key && value ? CP_ETOOBIG : CP_ENOMEM;
    }
    es->e[es->n].key = key;
    es->e[es->n].value = value;
    es->n++;
    return 0;
}

static char *encoded(const char *s)
{
    struct buf b;

    buf_init(&b, PART_MAX);
    if (sigv4_encode(s, strlen(s), 0, &b)) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static int add_query(struct entries *es, const char *name, const char *value)
{
    return entries_add(es, encoded(name), encoded(value ? value : ""));
}

/* Lower-case name; value trimmed, inner runs of spaces collapsed. */
static int add_header(struct entries *es, const char *name, const char *value)
{
    char *k = strdup(name), *v = malloc(strlen(value ? value : "") + 1), *o = v;
    const char *p = value ? value : "";

    if (k)
        for (char *c = k; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    if (v) {
        while (*p == ' ' || *p == '\t')
            p++;
        while (*p) {
            if (*p == ' ' || *p == '\t') {
                while (*p == ' ' || *p == '\t')
                    p++;
                if (*p)
                    *o++ = ' ';
            } else {
                *o++ = *p++;
            }
        }
        *o = '\0';
    }
    return entries_add(es, k, v);
}

/* ----------------------------------------------------------- signing -- */

static int hmac(const void *key, size_t key_len, const char *msg, unsigned char out[SHA256_LEN])
{
    return crypto_hmac_sha256(key, key_len, msg, strlen(msg), out);
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static int signing_key(const struct sigv4_key *k, const char *date8, unsigned char out[SHA256_LEN])
{
    unsigned char a[SHA256_LEN], b[SHA256_LEN];
    struct buf secret;
    int rc;

    buf_init(&secret, 1024);
    rc = buf_printf(&secret, "AWS4%s", k->secret_key);
    rc = rc ? rc : hmac(secret.data, secret.len, date8, a);
    rc = rc ? rc : hmac(a, sizeof a, k->region, b);
    rc = rc ? rc : hmac(b, sizeof b, k->service, a);
    rc = rc ? rc : hmac(a, sizeof a, "aws4_request", out);
    buf_free(&secret);
    return rc;
}

/* Canonical request -> string to sign -> hex signature. */
static int signature(const struct sigv4_key *k, const struct sigv4_request *r, const struct entries *query,
                     const struct entries *headers, const char *signed_names, char out[2 * SHA256_LEN + 1])
{
    unsigned char digest[SHA256_LEN], key[SHA256_LEN], mac[SHA256_LEN];
    char date8[9], digest_hex[2 * SHA256_LEN + 1];
    struct buf canon, sts;
    int rc;

    memcpy(date8, r->amz_date, 8);
    date8[8] = '\0';
    buf_init(&canon, CANON_MAX);
    buf_init(&sts, 4096);
    rc = buf_printf(&canon, "%s\n", r->method);
    rc = rc ? rc : sigv4_encode(r->path, strlen(r->path), 1, &canon);
    rc = rc ? rc : buf_addc(&canon, '\n');
    for (size_t i = 0; i < query->n && !rc; i++)
        rc = buf_printf(&canon, "%s%s=%s", i ? "&" : "", query->e[i].key, query->e[i].value);
    rc = rc ? rc : buf_addc(&canon, '\n');
    for (size_t i = 0; i < headers->n && !rc; i++)
        rc = buf_printf(&canon, "%s:%s\n", headers->e[i].key, headers->e[i].value);
    rc = rc ? rc : buf_printf(&canon, "\n%s\n%s", signed_names, r->payload_hash);
    if (!rc) {
        crypto_sha256(canon.data, canon.len, digest);
        crypto_hex(digest, sizeof digest, digest_hex);
        rc = buf_printf(&sts, ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", r->amz_date, date8, k->region,
                        k->service, digest_hex);
    }
    rc = rc ? rc : signing_key(k, date8, key);
    rc = rc ? rc : crypto_hmac_sha256(key, sizeof key, sts.data, sts.len, mac);
    if (!rc)
        crypto_hex(mac, sizeof mac, out);
    buf_free(&canon);
    buf_free(&sts);
    return rc;
}

static int request_ok(const struct sigv4_key *k, const struct sigv4_request *r)
{
    return k && r && k->access_key && k->secret_key && k->region && k->service && r->method &&
           r->host && r->path && r->path[0] == '/' && r->payload_hash && date_ok(r->amz_date) &&
           r->nquery <= SIGV4_PARAMS_MAX && r->nheaders <= SIGV4_PARAMS_MAX;
}

/* The request's headers plus host, sorted; names joined with ';'. */
static int build_headers(const struct sigv4_request *r, struct entries *hs, struct buf *names)
{
    int rc = add_header(hs, "host", r->host);

    for (size_t i = 0; i < r->nheaders && !rc; i++)
        rc = add_header(hs, r->headers[i].name, r->headers[i].value);
    if (rc)
        return rc;
    qsort(hs->e, hs->n, sizeof hs->e[0], entry_cmp);
    for (size_t i = 0; i < hs->n && !rc; i++)
        rc = buf_printf(names, "%s%s", i ? ";" : "", hs->e[i].key);
    return rc;
}

int sigv4_authorization(const struct sigv4_key *k, const struct sigv4_request *r, struct buf *out)
{
    struct entries query = { .n = 0 }, headers = { .n = 0 };
    char sig[2 * SHA256_LEN + 1];
    struct buf names;
    int rc = 0;

    if (!request_ok(k, r))
        return CP_EINVAL;
    buf_init(&names, 4096);
    for (size_t i = 0; i < r->nquery && !rc; i++)
        rc = add_query(&query, r->query[i].name, r->query[i].value);
    if (!rc)
        qsort(query.e, query.n, sizeof query.e[0], entry_cmp);
    rc = rc ? rc : build_headers(r, &headers, &names);
    rc = rc ? rc : signature(k, r, &query, &headers, buf_str(&names), sig);
    if (!rc)
        rc = buf_printf(out, ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
                        k->access_key, r->amz_date, k->region, k->service, buf_str(&names), sig);
    entries_free(&query);
    entries_free(&headers);
    buf_free(&names);
    return rc;
}

int sigv4_presign(const struct sigv4_key *k, const struct sigv4_request *r, long long expires_s,
                  struct buf *out)
{
    struct entries query = { .n = 0 }, headers = { .n = 0 };
    struct sigv4_request unsigned_req;
    char sig[2 * SHA256_LEN + 1], expires[24];
    struct buf credential, names;
    int rc = 0;

    if (!request_ok(k, r) || expires_s < 1 || expires_s > SIGV4_EXPIRES_MAX)
        return CP_EINVAL;
    /* A presigned URL signs the host only, and not the payload. */
    unsigned_req = *r;
    unsigned_req.payload_hash = SIGV4_UNSIGNED_PAYLOAD;
    unsigned_req.nheaders = 0;
    buf_init(&credential, 1024);
    buf_init(&names, 64);
    snprintf(expires, sizeof expires, "%lld", expires_s);
    rc = buf_printf(&credential, "%s/%.8s/%s/%s/aws4_request", k->access_key, r->amz_date, k->region,
                    k->service);
    for (size_t i = 0; i < r->nquery && !rc; i++)
        rc = add_query(&query, r->query[i].name, r->query[i].value);
    rc = rc ? rc : add_query(&query, "X-Amz-Algorithm", ALGORITHM);
    rc = rc ? rc : add_query(&query, "X-Amz-Credential", buf_str(&credential));
    rc = rc ? rc : add_query(&query, "X-Amz-Date", r->amz_date);
    rc = rc ? rc : add_query(&query, "X-Amz-Expires", expires);
    rc = rc ? rc : add_query(&query, "X-Amz-SignedHeaders", "host");
    if (!rc)
        qsort(query.e, query.n, sizeof query.e[0], entry_cmp);
    rc = rc ? rc : build_headers(&unsigned_req, &headers, &names);
    rc = rc ? rc : signature(k, &unsigned_req, &query, &headers, buf_str(&names), sig);
    for (size_t i = 0; i < query.n && !rc; i++)
        rc = buf_printf(out, "%s%s=%s", i ? "&" : "", query.e[i].key, query.e[i].value);
    rc = rc ? rc : buf_printf(out, "&X-Amz-Signature=%s", sig);
    entries_free(&query);
    entries_free(&headers);
    buf_free(&credential);
    buf_free(&names);
    return rc;
}
