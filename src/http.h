/*
 * http.h - outbound HTTP over libcurl, for the platform clients.
 *
 * One struct http_client wraps one curl easy handle, so connections are
 * reused between requests of one process.  Every request has a connect
 * timeout and a total timeout, never follows redirects, speaks only http
 * and https, verifies TLS, and caps the response: in memory at
 * max_response bytes, or streamed to a file descriptor up to max_download.
 * Logs carry the method, host, path and status, never headers, query
 * strings or bodies (they may hold tokens).
 */
#ifndef CP_HTTP_H
#define CP_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "conf.h"

struct http_client;

struct http_header {
    const char *name;
    const char *value;
};

struct http_request {
    const char *method;                  /* "GET", "POST", "PUT", ... */
    const char *url;
    const struct http_header *headers;
    size_t nheaders;
    const void *body;                    /* request body in memory, or */
    size_t body_len;
    int body_fd;                         /* ... from this file (-1 = none), */
    off_t body_offset;                   /* from this offset, */
                                         /* body_len bytes (chunked uploads) */
    long connect_timeout_ms;             /* 0 = http_connect_timeout */
    long timeout_ms;                     /* 0 = http_timeout */
    size_t max_response;                 /* 0 = http_max_response */
    int out_fd;                          /* -1 = body kept in memory */
    long long max_download;              /* cap when streaming to out_fd; 0 = max_response */
    /* When streaming to out_fd: called with each chunk once it is written
     * (to hash it or show progress on the way); a non-zero CP_E* return
     * stops the transfer and http_do returns it.  NULL = none. */
    int (*on_data)(void *arg, const void *data, size_t len);
    void *on_data_arg;
};

/* Fill a request with defaults: GET, no body, no headers, fds -1. */
void http_request_init(struct http_request *req, const char *method, const char *url);

struct http_response {
    long status;                         /* 0 when no response arrived */
    struct buf body;                     /* when not streamed to out_fd */
    long long body_bytes;                /* bytes received (either way) */
    struct buf raw_headers;              /* "Name: value\r\n" lines of the final response */
    char error[256];                     /* why, when http_do fails */
};

int http_client_new(const struct conf *c, struct http_client **out);
void http_client_free(struct http_client *client);

/*
 * Send req and wait for the whole response.  Returns 0 when a response
 * arrived, whatever its status.  Otherwise: CP_ETIMEDOUT, CP_EUNAVAIL
 * (could not connect or resolve), CP_ETOOBIG (response past its cap),
 * CP_EIO (anything else); resp->error says more.  The caller releases
 * resp with http_response_free() in every case.
 */
int http_do(struct http_client *client, const struct http_request *req,
            struct http_response *resp);

/* The value of the last header called name (case-insensitive) in the
 * final response, copied to out; CP_ENOTFOUND when absent. */
int http_response_header(const struct http_response *resp, const char *name, struct buf *out);

void http_response_free(struct http_response *resp);

#endif
