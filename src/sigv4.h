/*
 * sigv4.h - AWS Signature Version 4 for S3-compatible object storage.
 *
 * Two uses: the Authorization header of a request the storage layer
 * sends, and presigned URLs (query-string signing) that let a platform
 * fetch a stored video for a limited time (Instagram's video_url).
 * libcurl's CURLOPT_AWS_SIGV4 signs requests too, but it cannot presign.
 *
 * Canonical request: METHOD, the path with every byte but A-Z a-z 0-9
 * - . _ ~ / percent-encoded (S3 encodes once), the query sorted by
 * encoded name then value, the headers in lower case sorted by name with
 * their values trimmed, the signed header names, and the payload hash.
 */
#ifndef CP_SIGV4_H
#define CP_SIGV4_H

#include <stddef.h>

#include "buf.h"

#define SIGV4_PARAMS_MAX 32
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_EXPIRES_MAX (7LL * 24 * 3600)   /* S3's limit for presigned URLs */

struct sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *region;                /* "us-east-1" */
    const char *service;               /* "s3" */
};

struct sigv4_param {
    const char *name;                  /* not encoded */
    const char *value;
};

struct sigv4_request {
    const char *method;
    const char *host;                  /* the Host header as sent, port included if not default */
    const char *path;                  /* not encoded: "/bucket/key with spaces.mp4" */
    const struct sigv4_param *query;   /* not encoded */
    size_t nquery;
    const struct sigv4_param *headers; /* signed besides host (x-amz-date is added) */
    size_t nheaders;
    const char *payload_hash;          /* hex SHA-256 of the body, or SIGV4_UNSIGNED_PAYLOAD */
    const char *amz_date;              /* "20130524T000000Z" */
};

/* The Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=..."); the request must also carry
 * x-amz-date: amz_date and, for S3, x-amz-content-sha256: payload_hash
 * (pass it in headers to sign it).  CP_EINVAL for a malformed date or
 * missing field, CP_ETOOBIG past SIGV4_PARAMS_MAX. */
int sigv4_authorization(const struct sigv4_key *k, const struct sigv4_request *r, struct buf *out);

/* The query string of a presigned URL valid for expires_s (1 ..
 * SIGV4_EXPIRES_MAX) seconds from amz_date: the request's own query plus
 * X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders=host and
 * -Signature, encoded and ready to follow "?". */
int sigv4_presign(const struct sigv4_key *k, const struct sigv4_request *r, long long expires_s,
                  struct buf *out);

/* Percent-encode the SigV4 way; keep_slash for paths. */
int sigv4_encode(const char *s, size_t len, int keep_slash, struct buf *out);

#endif
