#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "err.h"
#include "http.h"
#include "log.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

/*
 * Choices beyond what http.h states:
 * - http_do() initialises *resp itself, so a response needs no set-up.
 * - A stream to out_fd without max_download is capped at max_response,
 *   so every download has a bound.
 * - No Content-Type or "Expect: 100-continue" is invented: a body is sent
 *   as the caller labelled it, at once.
 * - Bodies are taken as they come (no Accept-Encoding), so the caps
 *   count the bytes that arrive.
 */

/* The final response's header lines are kept up to this many bytes. */
#define HTTP_MAX_HEADERS (64 * 1024)
/* One request header line ("Name: value") as handed to curl. */
#define HTTP_MAX_HEADER_LINE (16 * 1024)

struct http_client {
    CURL *easy;                  /* kept across requests: its connection cache */
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_response;
    char errbuf[CURL_ERROR_SIZE];
};

/* The state of one http_do() call, shared with the curl callbacks. */
struct http_transfer {
    const struct http_request *req;
    struct http_response *resp;
    size_t max_response;
    long long max_download;      /* cap when streaming to req->out_fd */
    size_t body_pos;             /* next request body byte to send */
    int abort_rc;                /* why a callback stopped the transfer */
    char abort_msg[160];
};

/*
 * curl_global_init() is not thread-safe and must run once per process
 * before any handle exists, so http_client_new() runs it through
 * pthread_once.  curl_global_cleanup() is never called: the state lives
 * as long as the process, which may create clients at any time.
 */
static pthread_once_t http_global_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc = CURLE_FAILED_INIT;

static void http_global_init(void)
{
    http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static long clamp_long(long long v)
{
    if (v < 0)
        return 0;
    return v > LONG_MAX ? LONG_MAX : (long)v;
}

int http_client_new(const struct conf *c, struct http_client **out)
{
    struct http_client *client;

    if (!out)
        return CP_EINVAL;
    *out = NULL;
    if (!c)
        return CP_EINVAL;
    if (pthread_once(&http_global_once, http_global_init) != 0 ||
        http_global_rc != CURLE_OK)
        return CP_EIO;

    client = calloc(1, sizeof *client);
    if (!client)
        return CP_ENOMEM;
    client->easy = curl_easy_init();
    if (!client->easy) {
        free(client);
        return CP_ENOMEM;
    }
    client->connect_timeout_ms = clamp_long(c->http_connect_timeout);
    client->timeout_ms = clamp_long(c->http_timeout);
    client->max_response = c->http_max_response > 0 ? (size_t)c->http_max_response : 0;
    *out = client;
    return 0;
}

void http_client_free(struct http_client *client)
{
    if (!client)
        return;
    curl_easy_cleanup(client->easy);
    free(client);
}

void http_request_init(struct http_request *req, const char *method, const char *url)
{
    memset(req, 0, sizeof *req);
    req->method = method ? method : "GET";
    req->url = url;
    req->body_fd = -1;
    req->out_fd = -1;
}

void http_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    buf_free(&resp->body);
    buf_free(&resp->raw_headers);
    resp->status = 0;
    resp->body_bytes = 0;
    resp->error[0] = '\0';
}

/* snprintf for messages meant to be cut short when too long. */
static void text_printf(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void text_printf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

static void transfer_abort(struct http_transfer *t, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void transfer_abort(struct http_transfer *t, int rc, const char *fmt, ...)
{
    va_list ap;

    if (t->abort_rc)
        return;
    t->abort_rc = rc;
    va_start(ap, fmt);
    vsnprintf(t->abort_msg, sizeof t->abort_msg, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------- callbacks -- */

/* Only the final response's headers are kept: an interim response
 * (100 Continue) or a proxy's CONNECT reply starts with its own status
 * line, which throws away what came before. */
static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t len = size * nitems, n = len;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        buf_reset(&t->resp->raw_headers);
        return len;
    }
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    if (n == 0)
        return len;
    if (buf_add(&t->resp->raw_headers, data, n) != 0 ||
        buf_add(&t->resp->raw_headers, "\r\n", 2) != 0) {
        transfer_abort(t, CP_ETOOBIG, "the response headers are larger than %d bytes",
                       HTTP_MAX_HEADERS);
        return 0;
    }
    return len;
}

static size_t on_body_to_memory(char *data, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t len = size * nitems;
    int rc = buf_add(&t->resp->body, data, len);

    if (rc == CP_ETOOBIG) {
        transfer_abort(t, rc, "the response body is larger than the %zu-byte limit",
                       t->max_response);
        return 0;
    }
    if (rc) {
        transfer_abort(t, rc, "out of memory for the response body");
        return 0;
    }
    t->resp->body_bytes += (long long)len;
    return len;
}

static size_t on_body_to_fd(char *data, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t len = size * nitems, done = 0;

    if ((long long)len > t->max_download - t->resp->body_bytes) {
        transfer_abort(t, CP_ETOOBIG, "the download is larger than the %lld-byte limit",
                       t->max_download);
        return 0;
    }
    while (done < len) {
        ssize_t w = write(t->req->out_fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            transfer_abort(t, CP_EIO, "writing the download failed: %s",
                           w < 0 ? strerror(errno) : "no progress");
            return 0;
        }
        done += (size_t)w;
    }
    t->resp->body_bytes += (long long)len;
    if (t->req->on_data) {
        int rc = t->req->on_data(t->req->on_data_arg, data, len);
        if (rc) {
            transfer_abort(t, rc, "the download was stopped: %s", cp_strerror(rc));
            return 0;
        }
    }
    return len;
}

static size_t on_read_body(char *dst, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    const struct http_request *req = t->req;
    size_t want = size * nitems, left = req->body_len - t->body_pos;
    ssize_t got;

    if (want > left)
        want = left;
    if (want == 0)
        return 0;
    if (req->body_fd < 0) {
        memcpy(dst, (const char *)req->body + t->body_pos, want);
        t->body_pos += want;
        return want;
    }
    do
        got = pread(req->body_fd, dst, want, req->body_offset + (off_t)t->body_pos);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        transfer_abort(t, CP_EIO, "reading the request body failed: %s", strerror(errno));
        return CURL_READFUNC_ABORT;
    }
    if (got == 0) {
        transfer_abort(t, CP_EIO, "the request body file ended %zu bytes early", left);
        return CURL_READFUNC_ABORT;
    }
    t->body_pos += (size_t)got;
    return (size_t)got;
}

/* curl rewinds the body when it resends a request, e.g. after a reused
 * connection turned out to be closed by the peer. */
static int on_seek_body(void *userdata, curl_off_t offset, int origin)
{
    struct http_transfer *t = userdata;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > t->req->body_len)
        return CURL_SEEKFUNC_FAIL;
    t->body_pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* ------------------------------------------------------------ request -- */

/* An HTTP token (RFC 9110): what a method or a header name may be. */
static int is_token(const char *m)
{
    if (!*m)
        return 0;
    for (; *m; m++)
        if (!strchr("!#$%&'*+-.^_`|~", *m) &&
            !(*m >= '0' && *m <= '9') && !(*m >= 'A' && *m <= 'Z') &&
            !(*m >= 'a' && *m <= 'z'))
            return 0;
    return 1;
}

/* A header must not be able to inject another line or end the block. */
static int header_is_valid(const struct http_header *h)
{
    if (!h->name || !h->value || !*h->name || !is_token(h->name))
        return 0;
    return strpbrk(h->value, "\r\n") == NULL;
}

/* Methods that carry a body send a Content-Length even when it is 0. */
static int request_has_body(const struct http_request *req)
{
    return req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
           strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
}

static int has_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return 1;
    return 0;
}

static int slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);

    if (!grown)
        return CP_ENOMEM;
    *list = grown;
    return 0;
}

/*
 * The request headers as curl wants them.  An empty value is written
 * "Name;" because "Name:" tells curl to drop a header.  That second form
 * removes two of curl's defaults: "Expect: 100-continue", which would stall
 * every larger upload by a round trip, and the form-encoded Content-Type
 * curl puts on a POST, so a body is never mislabelled.
 */
static int build_headers(const struct http_request *req, struct curl_slist **out)
{
    struct curl_slist *list = NULL;
    struct buf line;
    int rc = 0;

    *out = NULL;
    buf_init(&line, HTTP_MAX_HEADER_LINE);
    for (size_t i = 0; i < req->nheaders && !rc; i++) {
        const struct http_header *h = &req->headers[i];
        buf_reset(&line);
        if (*h->value)
            rc = buf_printf(&line, "%s: %s", h->name, h->value);
        else
            rc = buf_printf(&line, "%s;", h->name);
        if (!rc)
            rc = slist_add(&list, buf_str(&line));
    }
    if (!rc && !has_header(req, "Expect"))
        rc = slist_add(&list, "Expect:");
    if (!rc && request_has_body(req) && !has_header(req, "Content-Type"))
        rc = slist_add(&list, "Content-Type:");
    buf_free(&line);
    if (rc) {
        curl_slist_free_all(list);
        return rc;
    }
    *out = list;
    return 0;
}

#define SETOPT(opt, val)                                        \
    do {                                                        \
        CURLcode setopt_rc_ = curl_easy_setopt(easy, opt, val); \
        if (setopt_rc_ != CURLE_OK)                             \
            return setopt_rc_;                                  \
    } while (0)

/* Everything a request sets on the (freshly reset) handle. */
static CURLcode setup_transfer(struct http_client *client, struct http_transfer *t,
                               struct curl_slist *headers)
{
    CURL *easy = client->easy;
    const struct http_request *req = t->req;
    const char *m = req->method;
    int is_head = strcmp(m, "HEAD") == 0;
    int is_post = strcmp(m, "POST") == 0;
    int has_body = request_has_body(req);
    long connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                  : client->connect_timeout_ms;
    long total_ms = req->timeout_ms > 0 ? req->timeout_ms : client->timeout_ms;

    SETOPT(CURLOPT_URL, req->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, total_ms);
    SETOPT(CURLOPT_USERAGENT, "crosspost/" PACKAGE_VERSION);
    SETOPT(CURLOPT_ERRORBUFFER, client->errbuf);
    SETOPT(CURLOPT_HTTPHEADER, headers);

    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, t);
    SETOPT(CURLOPT_WRITEFUNCTION, req->out_fd >= 0 ? on_body_to_fd : on_body_to_memory);
    SETOPT(CURLOPT_WRITEDATA, t);
    /* Refuse at once a body whose Content-Length is already past the cap;
     * the write callbacks enforce it for bodies of unannounced length. */
    if (!is_head)
        SETOPT(CURLOPT_MAXFILESIZE_LARGE,
               (curl_off_t)(req->out_fd >= 0 ? t->max_download : (long long)t->max_response));

    if (is_head) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (is_post && req->body_fd < 0) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SETOPT(CURLOPT_POSTFIELDS, req->body_len ? (const char *)req->body : "");
    } else if (is_post) {
        SETOPT(CURLOPT_POST, 1L);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (has_body) {
        SETOPT(CURLOPT_UPLOAD, 1L);
        SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
        if (strcmp(m, "PUT") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        SETOPT(CURLOPT_CUSTOMREQUEST, m);
    }
    if (!is_head && (req->body_fd >= 0 || (has_body && !is_post))) {
        SETOPT(CURLOPT_READFUNCTION, on_read_body);
        SETOPT(CURLOPT_READDATA, t);
        SETOPT(CURLOPT_SEEKFUNCTION, on_seek_body);
        SETOPT(CURLOPT_SEEKDATA, t);
    }
    return CURLE_OK;
}

#undef SETOPT

static int map_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return CP_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CP_EUNAVAIL;
    case CURLE_FILESIZE_EXCEEDED:
        return CP_ETOOBIG;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return CP_EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return CP_ENOMEM;
    default:
        return CP_EIO;
    }
}

/* Where a request goes, for logs and errors: scheme, host, port and path,
 * never the user info or the query (they may carry credentials). */
struct url_parts {
    char scheme[16];
    char host[256];
    char path[512];
    char where[800];             /* scheme://host[:port]/path */
};

static void copy_part(CURLU *u, CURLUPart part, char *dst, size_t size)
{
    char *s = NULL;

    dst[0] = '\0';
    if (curl_url_get(u, part, &s, 0) == CURLUE_OK && s)
        text_printf(dst, size, "%s", s);
    curl_free(s);
}

/* Returns 0 when url parses as an absolute URL. */
static int url_describe(const char *url, struct url_parts *p)
{
    CURLU *u = curl_url();
    char port[16];
    int rc = CP_EINVAL;

    memset(p, 0, sizeof *p);
    if (!u)
        return CP_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
        copy_part(u, CURLUPART_SCHEME, p->scheme, sizeof p->scheme);
        copy_part(u, CURLUPART_HOST, p->host, sizeof p->host);
        copy_part(u, CURLUPART_PORT, port, sizeof port);
        copy_part(u, CURLUPART_PATH, p->path, sizeof p->path);
        text_printf(p->where, sizeof p->where, "%s://%s%s%s%s", p->scheme, p->host,
                 port[0] ? ":" : "", port, p->path);
        rc = 0;
    } else {
        text_printf(p->where, sizeof p->where, "(malformed URL)");
    }
    curl_url_cleanup(u);
    return rc;
}

static long long elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void log_request(const struct http_request *req, const struct url_parts *where,
                        long status, long long ms, int rc)
{
    char status_text[24], ms_text[24];

    snprintf(status_text, sizeof status_text, "%ld", status);
    snprintf(ms_text, sizeof ms_text, "%lld", ms);
    log_kv(CP_LOG_DEBUG, "http request", "method", req->method, "host", where->host,
           "path", where->path, "status", status_text, "ms", ms_text,
           "result", rc ? cp_strerror(rc) : "ok", LOG_END);
}

static int check_request(const struct http_request *req, struct http_response *resp)
{
    if (!req->method || !is_token(req->method)) {
        text_printf(resp->error, sizeof resp->error, "invalid HTTP method");
        return CP_EINVAL;
    }
    if (!req->url) {
        text_printf(resp->error, sizeof resp->error, "no URL given");
        return CP_EINVAL;
    }
    if ((req->body_len > 0 && !req->body && req->body_fd < 0) ||
        (req->body_fd >= 0 && req->body_offset < 0) ||
        (req->body_len > 0 && strcmp(req->method, "HEAD") == 0)) {
        text_printf(resp->error, sizeof resp->error, "invalid request body");
        return CP_EINVAL;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!header_is_valid(&req->headers[i])) {
            text_printf(resp->error, sizeof resp->error, "invalid request header #%zu", i);
            return CP_EINVAL;
        }
    }
    return 0;
}

int http_do(struct http_client *client, const struct http_request *req,
            struct http_response *resp)
{
    struct http_transfer t;
    struct url_parts where;
    struct curl_slist *headers = NULL;
    struct timespec start;
    CURLcode cc;
    int rc;

    if (!resp)
        return CP_EINVAL;
    memset(resp, 0, sizeof *resp);
    buf_init(&resp->raw_headers, HTTP_MAX_HEADERS);
    buf_init(&resp->body, 0);
    if (!client || !req)
        return CP_EINVAL;
    rc = check_request(req, resp);
    if (rc)
        return rc;

    memset(&t, 0, sizeof t);
    t.req = req;
    t.resp = resp;
    t.max_response = req->max_response ? req->max_response : client->max_response;
    /* A stream always has a cap: without its own, the in-memory one. */
    t.max_download = req->max_download > 0 ? req->max_download : (long long)t.max_response;
    buf_init(&resp->body, t.max_response);
    clock_gettime(CLOCK_MONOTONIC, &start);

    rc = url_describe(req->url, &where);
    if (rc) {
        text_printf(resp->error, sizeof resp->error, "%s: malformed URL", req->method);
        goto out;
    }
    if (strcasecmp(where.scheme, "http") != 0 && strcasecmp(where.scheme, "https") != 0) {
        rc = CP_EINVAL;
        text_printf(resp->error, sizeof resp->error, "%s %s: only http and https URLs are allowed",
                 req->method, where.where);
        goto out;
    }
    rc = build_headers(req, &headers);
    if (rc) {
        text_printf(resp->error, sizeof resp->error, "%s %s: no memory for the request headers",
                 req->method, where.where);
        goto out;
    }

    /* Reset drops the last request's options but keeps the connections. */
    curl_easy_reset(client->easy);
    client->errbuf[0] = '\0';
    cc = setup_transfer(client, &t, headers);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(client->easy);
    curl_easy_getinfo(client->easy, CURLINFO_RESPONSE_CODE, &resp->status);

    if (t.abort_rc) {
        rc = t.abort_rc;
        text_printf(resp->error, sizeof resp->error, "%s %s: %s", req->method, where.where,
                 t.abort_msg);
    } else if (cc == CURLE_FILESIZE_EXCEEDED) {
        rc = CP_ETOOBIG;
        text_printf(resp->error, sizeof resp->error,
                 "%s %s: the announced response body is larger than the %lld-byte limit",
                 req->method, where.where,
                 req->out_fd >= 0 ? t.max_download : (long long)t.max_response);
    } else if (cc != CURLE_OK) {
        rc = map_curl_error(cc);
        text_printf(resp->error, sizeof resp->error, "%s %s: %s", req->method, where.where,
                 client->errbuf[0] ? client->errbuf : curl_easy_strerror(cc));
    }
    /* Leave no pointer to this call's headers or state in the handle. */
    curl_easy_reset(client->easy);

out:
    curl_slist_free_all(headers);
    log_request(req, &where, resp->status, elapsed_ms(&start), rc);
    return rc;
}

int http_response_header(const struct http_response *resp, const char *name, struct buf *out)
{
    const char *p, *end, *found = NULL;
    size_t name_len, found_len = 0;

    if (!out)
        return CP_EINVAL;
    buf_reset(out);
    if (!resp || !name || !*name)
        return CP_EINVAL;
    name_len = strlen(name);
    p = buf_str(&resp->raw_headers);
    end = p + resp->raw_headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *v, *v_end;

        if (line_end > p && line_end[-1] == '\r')
            line_end--;
        if ((size_t)(line_end - p) > name_len && p[name_len] == ':' &&
            strncasecmp(p, name, name_len) == 0) {
            v = p + name_len + 1;
            v_end = line_end;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            found = v;
            found_len = (size_t)(v_end - v);
        }
        p = eol ? eol + 1 : end;
    }
    if (!found)
        return CP_ENOTFOUND;
    return buf_add(out, found, found_len);
}
