/*
 * request.h - one API request: what came in and what goes out.
 *
 * request_handle() runs the whole life of a request inside a child of the
 * pool: it reads the FastCGI parameters, settles the request id, checks
 * the body's framing and content (411, 413, 415, 400) before routing,
 * routes (404, 405), calls the handler, writes the response, and counts
 * it in the shared metrics.  Handlers only look at the request and call
 * one reply_*() function.
 */
#ifndef CP_REQUEST_H
#define CP_REQUEST_H

#include <stddef.h>

#include <fcgiapp.h>
#include <json-c/json.h>

#include "buf.h"
#include "router.h"
#include "token.h"
#include "users.h"

struct conf;
struct db;
struct cache;
struct metrics;
struct migration_set;
struct secretbox;
struct http_client;

/* What a child of the pool holds for the requests it serves. */
struct app {
    const struct conf *conf;
    struct metrics *metrics;
    const struct migration_set *migrations;  /* the schema the code expects */
    struct db *db;                           /* opened on first use */
    struct cache *cache;                     /* opened on first use */
    struct secretbox *secrets;               /* opened on first use */
    struct http_client *http;                /* made on first use */
    const struct token_key *token_key;       /* signs and checks access tokens */
    struct token_policy token_policy;
};

/* Open the database / cache handles on first use; CP_EUNAVAIL if down. */
int app_db(struct app *app, struct db **out);
int app_cache(struct app *app, struct cache **out);

/* The key ring of secrets_key_file, opened on first use: CP_ENOTFOUND
 * when none is configured, CP_EIO/CP_EINVAL when it cannot be read (the
 * reason is logged; the next call tries again). */
int app_secrets(struct app *app, struct secretbox **out);

/* The process's client for calls to the platforms; CP_ENOMEM. */
int app_http(struct app *app, struct http_client **out);

/* Close everything the app opened (at the end of a child). */
void app_close(struct app *app);

struct request {
    struct app *app;
    FCGX_Request *fcgx;
    const char *method_name;
    unsigned method;                 /* M_* bit, 0 when unknown */
    const char *path;
    const char *query;
    char request_id[65];
    struct route_match match;
    struct buf body;                 /* the raw body, capped at api_max_body */
    struct json_object *json;        /* the parsed body, or NULL */

    /* Who is calling, for routes that need credentials. */
    int authenticated;
    long long user_id;
    enum user_role user_role;
    long long session_id;            /* 0 when called with an API key */
    long long api_key_id;            /* 0 when called with an access token */
    char user_email[EMAIL_MAX + 1];
    const struct user *user;         /* the account as the check read it, or NULL */
    struct user account;             /* storage behind user */

    int status;                      /* set by reply_*() */
    int replied;
    struct buf headers;              /* extra response header lines */
};

/* Serve one accepted FastCGI request from start to finish. */
void request_handle(struct app *app, FCGX_Request *fcgx);

/* A FastCGI parameter (HTTP_* for request headers), or NULL. */
const char *req_param(const struct request *req, const char *name);

/* Check the body is JSON (Content-Type and limits) and parse it into
 * req->json: 0, or 1 when a 415/400 refusal was sent.  Runs before every
 * handler except those of ROUTE_RAW_BODY routes, which call it once they
 * have checked the raw bytes. */
int req_parse_json_body(struct request *req);

/* Add a response header line; name and value must not contain CR/LF. */
int req_add_header(struct request *req, const char *name, const char *value);

/* Reply with a body of a given content type. */
void reply_body(struct request *req, int status, const char *content_type,
                const char *body, size_t len);

/* Reply with a JSON text. */
void reply_json(struct request *req, int status, const char *json, size_t len);

/* Reply with the documented error shape:
 *   {"error":{"code":"...","message":"...","request_id":"..."}}  */
void reply_error(struct request *req, int status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* reply_error() naming the member at fault (a path such as
 * "destinations[1].settings.text_template"):
 *   {"error":{"code":"...","message":"...","field":"...","request_id":"..."}}  */
void reply_field_error(struct request *req, int status, const char *code, const char *field,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The client's address as nginx saw it ("" when unknown). */
const char *req_client_addr(const struct request *req);

/* A string member of the JSON body object, at most max bytes.  On any
 * problem (no body, not an object, missing, wrong type, too long) replies
 * 400 naming the field and returns non-zero. */
int body_string(struct request *req, const char *key, size_t max, const char **out);

/* The body as a JSON object whose members all are in allowed (a
 * NULL-terminated list): 0, or 1 after replying 400 (not an object) or
 * 422 (a member not in allowed). */
int body_members(struct request *req, const char *const *allowed);

/* Add a Set-Cookie header: name=value for path, Max-Age max_age s,
 * HttpOnly, SameSite=same_site, and Secure when the configuration says
 * cookies are sent over HTTPS only. */
void req_set_cookie(struct request *req, const char *name, const char *value, const char *path,
                    long long max_age, const char *same_site);

/* The reason phrase of a status code. */
const char *http_status_text(int status);

#endif
