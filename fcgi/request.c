#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "cache.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "auth.h"
#include "handlers.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "request.h"
#include "secretbox.h"

#define HEADERS_MAX 8192
#define DRAIN_MAX (256LL * 1024 * 1024)

int app_db(struct app *app, struct db **out)
{
    int rc;

    *out = NULL;
    if (!app->db) {
        rc = db_open(app->conf, &app->db);
        if (!app->db)
            return rc ? rc : CP_EUNAVAIL;
    }
    *out = app->db;
    return 0;
}

int app_cache(struct app *app, struct cache **out)
{
    int rc;

    *out = NULL;
    if (!app->cache) {
        rc = cache_open(app->conf, &app->cache);
        if (rc)
            return rc;
    }
    *out = app->cache;
    return 0;
}

int app_secrets(struct app *app, struct secretbox **out)
{
    struct buf why;
    int rc;

    *out = NULL;
    if (!app->secrets) {
        buf_init(&why, 512);
        rc = secretbox_open_conf(app->conf, &app->secrets, &why);
        if (rc && rc != CP_ENOTFOUND)
            log_error("the secrets key ring cannot be opened: %s",
                      why.len ? buf_str(&why) : cp_strerror(rc));
        buf_free(&why);
        if (rc)
            return rc;
    }
    *out = app->secrets;
    return 0;
}

int app_http(struct app *app, struct http_client **out)
{
    int rc;

    *out = NULL;
    if (!app->http) {
        rc = http_client_new(app->conf, &app->http);
        if (rc)
            return rc;
    }
    *out = app->http;
    return 0;
}

void app_close(struct app *app)
{
    db_close(app->db);
    cache_close(app->cache);
    secretbox_free(app->secrets);
    http_client_free(app->http);
    app->db = NULL;
    app->cache = NULL;
    app->secrets = NULL;
    app->http = NULL;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

const char *req_param(const struct request *req, const char *name)
{
    return FCGX_GetParam(name, req->fcgx->envp);
}

const char *req_client_addr(const struct request *req)
{
    const char *a = req_param(req, "REMOTE_ADDR");

    return a ? a : "";
}

int body_string(struct request *req, const char *key, size_t max, const char **out)
{
    int rc;

    *out = NULL;
    if (!req->json || !json_object_is_type(req->json, json_type_object)) {
        reply_error(req, 400, "invalid_body", "The request body must be a JSON object.");
        return 1;
    }
    rc = json_get_string(req->json, key, out);
    if (rc == CP_ENOTFOUND) {
        reply_error(req, 400, "missing_field", "The field \"%s\" is required.", key);
        return 1;
    }
    if (rc) {
        reply_error(req, 400, "invalid_field", "The field \"%s\" must be a string.", key);
        return 1;
    }
    if (strlen(*out) > max) {
        reply_error(req, 400, "invalid_field", "The field \"%s\" is longer than %zu bytes.", key, max);
        *out = NULL;
        return 1;
    }
    return 0;
}

int body_members(struct request *req, const char *const *allowed)
{
    if (!req->json || !json_object_is_type(req->json, json_type_object)) {
        reply_error(req, 400, "invalid_body", "The request body must be a JSON object.");
        return 1;
    }
    json_object_object_foreach(req->json, key, val) {
        size_t i = 0;
        (void)val;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) {
            reply_error(req, 422, "unknown_field", "The field \"%.64s\" is not known here.", key);
            return 1;
        }
    }
    return 0;
}

void req_set_cookie(struct request *req, const char *name, const char *value, const char *path,
                    long long max_age, const char *same_site)
{
    char cookie[256];

    snprintf(cookie, sizeof cookie, "%s=%s; Path=%s; Max-Age=%lld; HttpOnly; SameSite=%s%s", name,
             value, path, max_age, same_site,
             req->app->conf->session_cookie_secure ? "; Secure" : "");
    req_add_header(req, "Set-Cookie", cookie);
}

static int header_value_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

int req_add_header(struct request *req, const char *name, const char *value)
{
    if (!header_value_ok(name) || !header_value_ok(value))
        return CP_EINVAL;
    return buf_printf(&req->headers, "%s: %s\r\n", name, value);
}

void reply_body(struct request *req, int status, const char *content_type,
                const char *body, size_t len)
{
    FCGX_Stream *out = req->fcgx->out;
    struct buf head;

    if (req->replied)
        return;
    req->replied = 1;
    req->status = status;
    /* Formatted here: libfcgi's own printf knows few conversions. */
    buf_init(&head, HEADERS_MAX + 512);
    if (buf_printf(&head,
                   "Status: %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "X-Request-Id: %s\r\n"
                   "%s\r\n",
                   status, http_status_text(status), content_type, len,
                   req->request_id, buf_str(&req->headers)) == 0)
        FCGX_PutStr(head.data, (int)head.len, out);
    buf_free(&head);
    if (len && req->method != M_HEAD)
        FCGX_PutStr(body, (int)len, out);
}

void reply_json(struct request *req, int status, const char *json, size_t len)
{
    reply_body(req, status, "application/json", json, len);
}

/* The error object; field names the member at fault or is NULL; extra is
 * more top-level members (JSON text) or NULL. */
static void reply_error_v(struct request *req, int status, const char *code, const char *field,
                          const char *extra, const char *fmt, va_list ap)
{
    char message[512];
    struct buf b;

    vsnprintf(message, sizeof message, fmt, ap);
    buf_init(&b, 64 * 1024);
    buf_adds(&b, "{\"error\":{\"code\":\"");
    buf_add_json_escaped(&b, code, strlen(code));
    buf_adds(&b, "\",\"message\":\"");
    buf_add_json_escaped(&b, message, strlen(message));
    if (field) {
        buf_adds(&b, "\",\"field\":\"");
        buf_add_json_escaped(&b, field, strlen(field));
    }
    buf_adds(&b, "\",\"request_id\":\"");
    buf_add_json_escaped(&b, req->request_id, strlen(req->request_id));
    buf_adds(&b, "\"}");
    if (extra) {
        buf_addc(&b, ',');
        buf_adds(&b, extra);
    }
    if (buf_addc(&b, '}') != 0) {
        reply_json(req, 500, "{\"error\":{\"code\":\"internal\",\"message\":\"error too large to report\"}}", 74);
        return;
    }
    reply_json(req, status, b.data, b.len);
    buf_free(&b);
}

void reply_error(struct request *req, int status, const char *code,
                 const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(req, status, code, NULL, NULL, fmt, ap);
    va_end(ap);
}

void reply_field_error(struct request *req, int status, const char *code, const char *field,
                       const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(req, status, code, field, NULL, fmt, ap);
    va_end(ap);
}

void reply_error_extra(struct request *req, int status, const char *code,
                       const char *extra, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_error_v(req, status, code, NULL, extra, fmt, ap);
    va_end(ap);
}

/* nginx's $request_id is 32 hex digits; accept any short token of safe
 * characters from a trusted proxy, make one otherwise. */
static void settle_request_id(struct request *req)
{
    const char *given = req_param(req, "REQUEST_ID");
    unsigned char raw[16];
    size_t n = given ? strlen(given) : 0;
    int ok = n > 0 && n < sizeof req->request_id;

    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)given[i]) || given[i] == '-' || given[i] == '_';
    if (ok) {
        memcpy(req->request_id, given, n + 1);
        return;
    }
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(raw, &ts, sizeof raw < sizeof ts ? sizeof raw : sizeof ts);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(req->request_id + 2 * i, 3, "%02x", raw[i]);
}

/* Read and drop what is left of the body, so the connection to nginx
 * stays in step when a request is refused before its body is read. */
static void drain_body(struct request *req, long long remaining)
{
    char scratch[16384];

    if (remaining > DRAIN_MAX)
        remaining = DRAIN_MAX;
    while (remaining > 0) {
        int want = remaining > (long long)sizeof scratch ? (int)sizeof scratch : (int)remaining;
        int got = FCGX_GetStr(scratch, want, req->fcgx->in);
        if (got <= 0)
            break;
        remaining -= got;
    }
}

static int parse_content_length(const char *s, long long *out)
{
    long long v = 0;

    if (!*s)
        return CP_EINVAL;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || p - s >= 18)
            return CP_EINVAL;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

static int is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    if (!ct || strncasecmp(ct, "application/json", n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/*
 * Framing and content of the body, before routing, so a refused body never
 * reaches a handler: 411 without a length where a body belongs, 413 past
 * the cap, 400 when short, 415 when not JSON, 400 when not valid JSON.
 * Returns 0 to go on, or 1 when a reply was sent.
 */
static int read_body(struct request *req)
{
    const struct conf *c = req->app->conf;
    const char *cl = req_param(req, "CONTENT_LENGTH");
    int wants_body = req->method & (M_POST | M_PUT | M_PATCH);
    long long length = 0;
    char chunk[16384];

    if (!cl || !*cl) {
        if (wants_body) {
            reply_error(req, 411, "length_required",
                        "A %s request needs a Content-Length header.", req->method_name);
            return 1;
        }
        return 0;
    }
    if (parse_content_length(cl, &length)) {
        reply_error(req, 400, "bad_content_length", "The Content-Length header is not a valid length.");
        return 1;
    }
    if (length > c->api_max_body) {
        drain_body(req, length);
        reply_error(req, 413, "payload_too_large",
                    "The request body is %lld bytes; the limit is %lld bytes.",
                    length, c->api_max_body);
        return 1;
    }
    if (length == 0)
        return 0;

    buf_init(&req->body, (size_t)c->api_max_body);
    while ((long long)req->body.len < length) {
        long long left = length - (long long)req->body.len;
        int want = left > (long long)sizeof chunk ? (int)sizeof chunk : (int)left;
        int got = FCGX_GetStr(chunk, want, req->fcgx->in);
        if (got <= 0)
            break;
        if (buf_add(&req->body, chunk, (size_t)got))
            break;
    }
    if ((long long)req->body.len != length) {
        reply_error(req, 400, "truncated_body",
                    "The request body ended after %zu of %lld bytes.", req->body.len, length);
        return 1;
    }
    return 0;
}

int req_parse_json_body(struct request *req)
{
    const struct conf *c = req->app->conf;
    struct buf why;
    int rc;

    if (req->json || req->body.len == 0)
        return 0;
    if (!is_json_type(req_param(req, "CONTENT_TYPE"))) {
        reply_error(req, 415, "unsupported_media_type",
                    "Request bodies must be JSON, sent as Content-Type: application/json.");
        return 1;
    }

    struct json_limits lim = {
        .max_size = (size_t)c->api_max_body,
        .max_depth = (int)c->json_max_depth,
        .max_string = (size_t)c->json_max_string,
    };
    buf_init(&why, 512);
    rc = json_parse(req->body.data, req->body.len, &lim, &req->json, &why);
    if (rc) {
        reply_error(req, 400, "invalid_json", "The request body is not acceptable JSON: %s.",
                    why.len ? buf_str(&why) : cp_strerror(rc));
        buf_free(&why);
        return 1;
    }
    buf_free(&why);
    return 0;
}

/* Credentials and role for a protected route; 0 to go on, or 1 when a
 * refusal was sent: 401 without or with bad credentials, 403 when the
 * role is too low, 503 when the database cannot say. */
static int authorize(struct request *req)
{
    struct principal p;
    const char *why = "";
    int rc = auth_principal(req, &p, &why);

    if (rc == CP_ENOTFOUND) {
        req_add_header(req, "WWW-Authenticate", "Bearer");
        reply_error(req, 401, "unauthenticated", "Sign in first: send Authorization: Bearer <token>.");
        return 1;
    }
    if (rc == CP_EUNAVAIL) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return 1;
    }
    if (rc) {
        log_kv(CP_LOG_INFO, "credentials refused", "why", why, LOG_END);
        req_add_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        reply_error(req, 401, "invalid_token", "The access token is not valid; sign in again.");
        return 1;
    }
    req->authenticated = 1;
    req->user_id = p.user_id;
    req->user_role = p.role;
    req->session_id = p.session_id;
    req->api_key_id = p.api_key_id;
    memcpy(req->user_email, p.email, sizeof req->user_email);
    if (p.has_user) {
        req->account = p.user;
        req->user = &req->account;
    }
    if (auth_role_rank(p.role) < req->match.route->role) {
        reply_error(req, 403, "forbidden", "Your role may not use this endpoint.");
        return 1;
    }
    return 0;
}

/* Spend one request of the caller's budget (per API key, else per user):
 * RateLimit-* headers on the answer, 429 when it is spent.  0 to go on,
 * 1 when refused.  Without memcached the request goes on, unlimited. */
static int spend_budget(struct request *req)
{
    struct ratelimit_budget b;
    struct cache *cache;
    char principal[32], v[24];
    int rc;

    if (req->api_key_id)
        snprintf(principal, sizeof principal, "key:%lld", req->api_key_id);
    else
        snprintf(principal, sizeof principal, "user:%lld", req->user_id);
    if (app_cache(req->app, &cache))
        cache = NULL;
    rc = ratelimit_request(cache, req->app->conf, principal, ratelimit_now_ms(), &b);
    if (b.limit == 0)
        return 0;
    snprintf(v, sizeof v, "%lld", b.limit);
    req_add_header(req, "RateLimit-Limit", v);
    snprintf(v, sizeof v, "%lld", b.remaining);
    req_add_header(req, "RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%lld", b.reset_s);
    req_add_header(req, "RateLimit-Reset", v);
    if (rc != CP_ERETRY)
        return 0;
    req_add_header(req, "Retry-After", v);
    reply_error(req, 429, "rate_limited",
                "Over the limit of %lld requests per %lld s; try again in %lld s.",
                b.limit, req->app->conf->api_rate_window / 1000, b.reset_s);
    return 1;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

void request_handle(struct app *app, FCGX_Request *fcgx)
{
    struct request req;
    struct timespec t0;
    enum route_result found;
    double elapsed;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&req, 0, sizeof req);
    req.app = app;
    req.fcgx = fcgx;
    req.match.index = -1;
    buf_init(&req.headers, HEADERS_MAX);
    buf_init(&req.body, 0);
    settle_request_id(&req);
    log_set_request_id(req.request_id);

    req.method_name = req_param(&req, "REQUEST_METHOD");
    if (!req.method_name)
        req.method_name = "";
    req.method = http_method_parse(req.method_name);
    req.path = req_param(&req, "DOCUMENT_URI");
    if (!req.path)
        req.path = req_param(&req, "SCRIPT_NAME");
    if (!req.path)
        req.path = "";
    req.query = req_param(&req, "QUERY_STRING");

    if (read_body(&req))
        goto done;

    found = router_match(api_routes, api_nroutes, req.method, req.path, &req.match);
    /* A body is JSON, judged before the route (so a bad body is 400
     * wherever it is sent), except for a route that checks a signature
     * over the raw bytes first and parses after. */
    if (!(found == ROUTE_FOUND && (req.match.route->flags & ROUTE_RAW_BODY)) &&
        req_parse_json_body(&req))
        goto done;
    if (found == ROUTE_NOT_FOUND) {
        reply_error(&req, 404, "not_found", "Nothing is at %s.", req.path[0] ? req.path : "this path");
        goto done;
    }
    if (found == ROUTE_METHOD_NOT_ALLOWED) {
        char allow[128];
        router_allow_header(req.match.allowed, allow, sizeof allow);
        req_add_header(&req, "Allow", allow);
        reply_error(&req, 405, "method_not_allowed", "%s accepts %s.", req.path, allow);
        goto done;
    }
    if (req.match.route->role != ROLE_PUBLIC && (authorize(&req) || spend_budget(&req)))
        goto done;
    req.match.route->handler(&req);
    if (!req.replied)
        reply_error(&req, 500, "internal", "The server produced no answer.");

done:
    elapsed = seconds_since(&t0);
    metrics_observe(app->metrics, req.match.index, req.status, elapsed);
    if (req.status >= 500)
        log_kv(CP_LOG_ERROR, "request failed", "method", req.method_name, "path", req.path, LOG_END);
    else if (log_get_level() <= CP_LOG_DEBUG) {
        char status[8], ms[32];
        snprintf(status, sizeof status, "%d", req.status);
        snprintf(ms, sizeof ms, "%.3f", elapsed * 1e3);
        log_kv(CP_LOG_DEBUG, "request", "method", req.method_name, "path", req.path,
               "status", status, "ms", ms, LOG_END);
    }
    if (req.json)
        json_object_put(req.json);
    buf_free(&req.body);
    buf_free(&req.headers);
    log_set_request_id(NULL);
}
