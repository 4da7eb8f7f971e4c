/*
 * oauth1.h - OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as X's API
 * expects it.
 *
 * The signature base string is METHOD&enc(base URL)&enc(parameters):
 * the base URL is the request URL with scheme and host in lower case,
 * default ports, query and fragment dropped; the parameters are the URL's
 * query, the form-encoded body (JSON and multipart bodies are not
 * signed) and the oauth_* parameters, each percent-encoded (UTF-8 bytes,
 * everything but A-Z a-z 0-9 - . _ ~, upper-case hex), sorted by name then
 * value, joined k=v&...  The key is enc(consumer secret)&enc(token secret).
 */
#ifndef CP_OAUTH1_H
#define CP_OAUTH1_H

#include <stddef.h>

#include "buf.h"

#define OAUTH1_PARAMS_MAX 64
#define OAUTH1_SIGNATURE_LEN 28       /* base64 of 20 bytes */

struct oauth1_param {
    const char *name;                 /* not encoded */
    const char *value;
};

struct oauth1_creds {
    const char *consumer_key;
    const char *consumer_secret;
    const char *token;                /* NULL or "": none (request_token step) */
    const char *token_secret;         /* NULL = "" */
};

struct oauth1_request {
    const char *method;               /* "GET", "POST" */
    const char *url;                  /* may carry a query; it is signed */
    const struct oauth1_param *body;  /* form fields of the body, not encoded */
    size_t nbody;
    const char *nonce;                /* NULL: a random one is made */
    long long timestamp;              /* 0: now */
    int with_version;                 /* send oauth_version=1.0 */
    const char *callback;             /* oauth_callback (request_token), or NULL */
    const char *verifier;             /* oauth_verifier (access_token), or NULL */
};

/* Percent-encode len bytes of s the OAuth way onto out. */
int oauth1_encode(const char *s, size_t len, struct buf *out);

/* The signature base string; the nonce and timestamp used are written to
 * nonce_out[48] and *ts_out when they are not NULL.  CP_EINVAL for a URL
 * that is not http(s)://host/..., or a malformed query escape. */
int oauth1_base_string(const struct oauth1_request *r, const struct oauth1_creds *c,
                       struct buf *out, char *nonce_out, long long *ts_out);

/* The signature (base64, OAUTH1_SIGNATURE_LEN chars) into out[cap]. */
int oauth1_sign(const struct oauth1_request *r, const struct oauth1_creds *c, char *out,
                size_t cap);

/* The Authorization header value: OAuth oauth_consumer_key="...", ... */
int oauth1_authorization(const struct oauth1_request *r, const struct oauth1_creds *c,
                         struct buf *out);

#endif
