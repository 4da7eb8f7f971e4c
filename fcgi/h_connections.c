/*
 * Connected platform accounts through the API: /api/v1/platforms and
 * /api/v1/connections...
 *
 * Users see and change their own connections; operators and admins see
 * and change all of them (struct conn_scope).  Another user's connection
 * is 404, as if it did not exist.  The rules of the data (reconnects,
 * sealed secrets, derived status) are connections.c's; this file checks
 * the input, maps results to replies and writes every change, refusals
 * included, to the audit log.  No token, cookie, code or state goes into
 * a reply, a log line or an audit detail; the one thing handed out that
 * carries a state is the authorize URL, which exists to carry it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "conf.h"
#include "connections.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "oauthstate.h"
#include "platforms.h"
#include "query.h"
#include "queue.h"
#include "secretbox.h"

#define CONN_JSON_MAX (64u << 10)      /* one connection */
#define LIST_JSON_MAX (16u << 20)      /* a page of them */
#define PLATFORMS_JSON_MAX 4096
#define COOKIES_TEXT_MAX (2 * PLAT_COOKIES_MAX)  /* pasted text, comments and all */
#define AUTHORIZE_JSON_MAX (16u << 10)
#define DETAIL_MAX 256

static void reply_no_connection(struct request *req, long long id)
{
    reply_error(req, 404, "not_found", "No connection has id %lld.", id);
}

static void reply_secrets_unavailable(struct request *req, int rc)
{
    if (rc == CP_ENOTFOUND)
        reply_error(req, 503, "secrets_unavailable",
                    "Connections need a key ring for their secrets: run `crosspostctl keygen "
                    "--secrets` and set secrets_key_file in the configuration.");
    else
        reply_error(req, 503, "secrets_unavailable",
                    "The key ring of secrets_key_file cannot be read; the server log says why.");
}

/* Whose connections the caller may see and change. */
static struct conn_scope scope_of(const struct request *req)
{
    struct conn_scope s = { .user_id = req->user_id, .see_all = req->user_role != USER_ROLE_USER };

    return s;
}

/* Written when the database answers; a change it cannot record was
 * already refused by the same database. */
static void audit_conn(struct request *req, const char *action, int failed, long long id,
                       long long owner, const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = action,
        .failed = failed, .target_type = "connection", .target_id = id, .owner_id = owner,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

static void reply_connection(struct request *req, int status, const struct connection *conn)
{
    struct buf b;

    buf_init(&b, CONN_JSON_MAX);
    if (conn_to_json(conn, req->app->conf, &b))
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, status, buf_str(&b), b.len);
    buf_free(&b);
}

/* The configuration keys that make a platform's app configured. */
static const char *platform_keys(const struct platform *p, const struct conf *c)
{
    switch (p->id) {
    case PLATFORM_TIKTOK:
        return "tiktok_client_key and tiktok_client_secret";
    case PLATFORM_INSTAGRAM:
        return "facebook_app_id and facebook_app_secret";
    case PLATFORM_YOUTUBE:
        return "google_client_id and google_client_secret";
    case PLATFORM_X:
        return c->x_auth_mode == 1 ? "x_client_id (and x_client_secret for a confidential client)"
                                   : "x_consumer_key and x_consumer_secret";
    }
    return "the platform's app credentials";
}

/* A name shown to people: at most CONN_DISPLAY_NAME_MAX bytes (the body
 * is already known to be UTF-8), no control characters. */
static int display_name_ok(const char *s)
{
    if (strlen(s) > CONN_DISPLAY_NAME_MAX)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int check_display_name(struct request *req, const char *name)
{
    if (display_name_ok(name))
        return 0;
    reply_error(req, 422, "invalid_field",
                "The field \"display_name\" must be at most %d bytes without control characters.",
                CONN_DISPLAY_NAME_MAX);
    return 1;
}

/* body_members, with no body counting as {} when optional is set. */
static int check_body(struct request *req, const char *const *allowed, int optional)
{
    if (!req->json && optional)
        return 0;
    return body_members(req, allowed);
}

static const char *const no_members[] = { NULL };

/* The platform named by the path; NULL after replying 404. */
static const struct platform *path_platform(struct request *req)
{
    char name[32];
    const struct platform *p = NULL;

    if (route_param_get(&req->match, "platform", name, sizeof name) == 0)
        p = platform_find(name);
    if (!p)
        reply_error(req, 404, "not_found",
                    "No such platform: crosspost connects tiktok, instagram, youtube and x.");
    return p;
}

static long long now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A platform that could not be reached: 503, with Retry-After when it
 * said when to come back. */
static void reply_platform_unavailable(struct request *req, const struct platform *p,
                                       const struct plat_error *err)
{
    char v[24];

    if (err->retry_after_ms > 0) {
        snprintf(v, sizeof v, "%lld", (err->retry_after_ms + 999) / 1000);
        req_add_header(req, "Retry-After", v);
    }
    reply_error(req, 503, "platform_unavailable", "%s is not answering; try again shortly.",
                p->label);
}

/* ---------------------------------------------------------- platforms -- */

void h_platforms_list(struct request *req)
{
    const struct conf *c = req->app->conf;
    const char *sandbox = c->sandbox ? "true" : "false";
    struct buf b;
    int rc;

    buf_init(&b, PLATFORMS_JSON_MAX);
    rc = buf_adds(&b, "{\"data\":[");
    for (size_t i = 0; i < PLATFORM_COUNT && !rc; i++) {
        const struct platform *p = &platforms[i];
        rc = buf_printf(&b, "%s{\"platform\":\"%s\",\"label\":\"%s\",\"configured\":%s,"
                            "\"auth_kind\":\"%s\",\"cookie_connections\":%s,\"sandbox\":%s}",
                        i ? "," : "", p->name, p->label, p->configured(c) ? "true" : "false",
                        auth_kind_name(p->auth_kind(c)), p->cookie_connections ? "true" : "false",
                        sandbox);
    }
    rc = rc ? rc : buf_adds(&b, "]}");
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}

/* -------------------------------------------------------------- list -- */

static int read_list_filter(struct request *req, struct conn_filter *f)
{
    char text[32];
    int rc;

    rc = req_query(req, "platform", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        const struct platform *p = platform_find(text);
        if (!p)
            return reply_bad_parameter(req, "platform", "one of tiktok, instagram, youtube, x");
        f->have_platform = 1;
        f->platform = p->id;
    }
    rc = req_query(req, "status", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (conn_status_parse(text, &f->status))
            return reply_bad_parameter(req, "status",
                                       "one of active, expiring, needs_reauth, error, disabled");
        f->have_status = 1;
    }
    rc = req_query(req, "user", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (req->user_role == USER_ROLE_USER) {
            reply_error(req, 403, "forbidden",
                        "Only operators and admins filter connections by user; you see your own.");
            return 1;
        }
        if (parse_id(text, &f->user_id))
            return reply_bad_parameter(req, "user", "a user id");
    }
    return 0;
}

void h_connections_list(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct conn_filter f;
    struct connection *rows = NULL;
    struct buf b, one;
    struct db *db;
    long long cursor;
    size_t n = 0;
    int limit, more = 0, rc;

    memset(&f, 0, sizeof f);
    if (req_paging(req, &limit, &cursor) || read_list_filter(req, &f))
        return;
    f.after_id = cursor;
    f.limit = limit;
    if (req_db(req, &db))
        return;
    rows = calloc((size_t)limit, sizeof *rows);
    if (!rows) {
        reply_error(req, 500, "internal", "Out of memory.");
        return;
    }
    rc = conn_list(db, req->app->conf, &scope, &f, rows, &n, &more);
    if (rc) {
        free(rows);
        reply_unavailable(req);
        return;
    }
    buf_init(&b, LIST_JSON_MAX);
    buf_init(&one, CONN_JSON_MAX);
    rc = buf_adds(&b, "{\"data\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        buf_reset(&one);
        rc = conn_to_json(&rows[i], req->app->conf, &one);
        rc = rc ? rc : i ? buf_addc(&b, ',') : 0;
        rc = rc ? rc : buf_add(&b, one.data, one.len);
    }
    if (!rc && more && n)
        rc = buf_printf(&b, "],\"next_cursor\":\"%lld\"}", rows[n - 1].id);
    else if (!rc)
        rc = buf_adds(&b, "],\"next_cursor\":null}");
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&one);
    buf_free(&b);
    free(rows);
}

/* ------------------------------------------------------------ one -- */

/* The id of the path, the database and the connection if the caller may
 * see it; 0, or 1 after a reply. */
static int load_target(struct request *req, struct db **db, long long *id, struct connection *conn)
{
    struct conn_scope scope = scope_of(req);
    int rc;

    if (req_path_id(req, "id", id))
        return 1;
    if (app_db(req->app, db)) {
        reply_unavailable(req);
        return 1;
    }
    rc = conn_get(*db, req->app->conf, &scope, *id, conn);
    if (rc == CP_ENOTFOUND) {
        reply_no_connection(req, *id);
        return 1;
    }
    if (rc) {
        reply_unavailable(req);
        return 1;
    }
    return 0;
}

void h_connection_get(struct request *req)
{
    struct connection conn;
    struct db *db;
    long long id;

    if (load_target(req, &db, &id, &conn))
        return;
    reply_connection(req, 200, &conn);
}

/* The PATCH body into u; detail names what changes.  0, or 1 after a
 * reply. */
static int read_update(struct request *req, struct conn_update *u, char *detail, size_t cap)
{
    size_t used = 0;

    detail[0] = '\0';
    if (!req->json || !json_object_is_type(req->json, json_type_object)) {
        reply_error(req, 400, "invalid_body", "The request body must be a JSON object.");
        return 1;
    }
    if (json_object_object_length(req->json) == 0) {
        reply_error(req, 422, "nothing_to_change",
                    "Name at least one of display_name, enabled, sync_interval.");
        return 1;
    }
    json_object_object_foreach(req->json, key, val) {
        int n = 0;

        if (strcmp(key, "display_name") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                reply_error(req, 400, "invalid_field", "The field \"display_name\" must be a string.");
                return 1;
            }
            if (check_display_name(req, json_object_get_string(val)))
                return 1;
            u->have_display_name = 1;
            u->display_name = json_object_get_string(val);
            n = snprintf(detail + used, cap - used, "%sdisplay_name", used ? " " : "");
        } else if (strcmp(key, "enabled") == 0) {
            if (!json_object_is_type(val, json_type_boolean)) {
                reply_error(req, 400, "invalid_field", "The field \"enabled\" must be true or false.");
                return 1;
            }
            u->have_enabled = 1;
            u->enabled = json_object_get_boolean(val) ? 1 : 0;
            n = snprintf(detail + used, cap - used, "%senabled=%s", used ? " " : "",
                         u->enabled ? "true" : "false");
        } else if (strcmp(key, "sync_interval") == 0) {
            long long s = 0;
            if (val && !json_object_is_type(val, json_type_int)) {
                reply_error(req, 400, "invalid_field",
                            "The field \"sync_interval\" must be a whole number of seconds, or null.");
                return 1;
            }
            if (val) {
                s = json_object_get_int64(val);
                if (s < CONN_SYNC_INTERVAL_MIN || s > CONN_SYNC_INTERVAL_MAX) {
                    reply_error(req, 422, "invalid_field",
                                "The field \"sync_interval\" must be from %d to %d seconds, or null "
                                "for the default.", CONN_SYNC_INTERVAL_MIN, CONN_SYNC_INTERVAL_MAX);
                    return 1;
                }
            }
            u->have_sync_interval = 1;
            u->sync_interval_s = s;
            n = s ? snprintf(detail + used, cap - used, "%ssync_interval=%lld", used ? " " : "", s)
                  : snprintf(detail + used, cap - used, "%ssync_interval=default", used ? " " : "");
        } else {
            reply_error(req, 422, "unknown_field", "The field \"%.64s\" is not known here.", key);
            return 1;
        }
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    return 0;
}

void h_connection_update(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct conn_update u;
    struct connection conn;
    char detail[DETAIL_MAX];
    struct db *db;
    long long id;
    int rc;

    memset(&u, 0, sizeof u);
    if (read_update(req, &u, detail, sizeof detail) || load_target(req, &db, &id, &conn))
        return;
    rc = conn_update(db, req->app->conf, &scope, id, &u);
    if (rc == CP_ENOTFOUND) {
        reply_no_connection(req, id);
        return;
    }
    if (rc == CP_EINVAL) {
        audit_conn(req, "connection.update", 1, id, conn.user_id, "refused: invalid value");
        reply_error(req, 422, "invalid_field", "The change was refused: a value is out of range.");
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    audit_conn(req, "connection.update", 0, id, conn.user_id, detail);
    rc = conn_get(db, req->app->conf, &scope, id, &conn);
    if (rc == CP_ENOTFOUND)
        reply_no_connection(req, id);          /* deleted in between */
    else if (rc)
        reply_unavailable(req);
    else
        reply_connection(req, 200, &conn);
}

void h_connection_delete(struct request *req)
{
    struct conn_scope scope = scope_of(req);
    struct connection conn;
    char detail[DETAIL_MAX];
    struct db *db;
    long long id;
    int rc;

    if (load_target(req, &db, &id, &conn))
        return;
    rc = conn_delete(db, &scope, id);
    if (rc == CP_ENOTFOUND) {
        reply_no_connection(req, id);
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    /* The row is gone; the account's name keeps the event readable. */
    snprintf(detail, sizeof detail, "%s %.128s", platform_get(conn.platform)->name,
             conn.username[0] ? conn.username : conn.remote_id);
    audit_conn(req, "connection.delete", 0, id, conn.user_id, detail);
    reply_body(req, 204, "application/json", "", 0);
}

void h_connection_refresh(struct request *req)
{
    const char *action = "connection.refresh_requested";
    struct connection conn;
    char payload[96], key[64], detail[DETAIL_MAX], body[64];
    struct db *db;
    long long id, job = 0;
    int rc, n;

    if (check_body(req, no_members, 1) || load_target(req, &db, &id, &conn))
        return;
    if (conn.stored_status == CONN_NEEDS_REAUTH) {
        audit_conn(req, action, 1, id, conn.user_id, "refused: needs_reauth");
        reply_error(req, 409, "needs_reauth",
                    "The platform refused this connection's credentials: reconnect this account.");
        return;
    }
    if (!conn.enabled) {
        audit_conn(req, action, 1, id, conn.user_id, "refused: disabled");
        reply_error(req, 409, "disabled", "This connection is disabled; enable it first.");
        return;
    }
    snprintf(payload, sizeof payload, "{\"connection_id\":%lld,\"force\":true}", id);
    snprintf(key, sizeof key, "connection.refresh:%lld", id);
    struct job_spec spec = {
        .kind = "connection.refresh", .payload = payload, .unique_key = key,
        .user_id = conn.user_id,
    };
    rc = queue_enqueue(db, &spec, &job);
    if (rc && rc != CP_ECONFLICT) {
        if (rc == CP_EINVAL) {
            log_error("connection.refresh could not be enqueued: %s", cp_strerror(rc));
            reply_error(req, 500, "internal", "The refresh could not be queued.");
        } else {
            reply_unavailable(req);
        }
        return;
    }
    /* One unfinished refresh per connection: asking again points at it. */
    if (job)
        snprintf(detail, sizeof detail, "job %lld%s", job, rc ? " (already queued)" : "");
    else
        snprintf(detail, sizeof detail, "already queued");
    audit_conn(req, action, 0, id, conn.user_id, detail);
    n = job ? snprintf(body, sizeof body, "{\"job_id\":%lld}", job)
            : snprintf(body, sizeof body, "{\"job_id\":null}");
    reply_json(req, 202, body, (size_t)n);
}

/* ------------------------------------------------- TikTok cookies -- */

void h_connection_tiktok_cookie(struct request *req)
{
    static const char *const allowed[] = { "cookies", "display_name", NULL };
    const char *action = "connection.cookie_add";
    const struct platform *p = platform_get(PLATFORM_TIKTOK);
    struct conn_scope scope = scope_of(req);
    const char *text, *name = NULL;
    struct plat_account acct;
    struct plat_error err;
    struct connection conn;
    struct secretbox *sb;
    struct http_client *http;
    struct buf cookies, why;
    char detail[DETAIL_MAX];
    struct db *db;
    long long id = 0;
    int created = 0, rc;

    if (check_body(req, allowed, 0) || body_string(req, "cookies", COOKIES_TEXT_MAX, &text))
        return;
    rc = json_get_string(req->json, "display_name", &name);
    if (rc == CP_EINVAL) {
        reply_error(req, 400, "invalid_field", "The field \"display_name\" must be a string.");
        return;
    }
    if (rc)
        name = NULL;
    if (name && check_display_name(req, name))
        return;
    rc = app_secrets(req->app, &sb);
    if (rc) {
        reply_secrets_unavailable(req, rc);
        return;
    }
    if (req_db(req, &db))
        return;
    if (app_http(req->app, &http)) {
        reply_error(req, 500, "internal", "No HTTP client could be made.");
        return;
    }

    buf_init(&cookies, PLAT_COOKIES_MAX + 1);
    buf_init(&why, 512);
    rc = tiktok_cookies_normalize(text, &cookies, &why);
    if (rc) {
        audit_conn(req, action, 1, 0, req->user_id, "cookies_invalid");
        if (rc == CP_ENOMEM)
            reply_error(req, 500, "internal", "Out of memory.");
        else if (rc == CP_ETOOBIG)
            reply_error(req, 422, "cookies_invalid",
                        "The field \"cookies\" holds more than %d KiB of cookies for TikTok.",
                        PLAT_COOKIES_MAX / 1024);
        else
            reply_error(req, 422, "cookies_invalid", "The field \"cookies\" is not usable. %s",
                        why.len ? buf_str(&why) : "It holds no TikTok sessionid cookie.");
        goto done;
    }

    struct plat_ctx pc = { .conf = req->app->conf, .http = http };
    struct plat_creds creds = {
        .kind = AUTH_COOKIE, .access_token = "", .refresh_token = "", .token_secret = "",
        .cookies = buf_str(&cookies),
    };
    memset(&acct, 0, sizeof acct);
    memset(&err, 0, sizeof err);
    rc = p->check(&pc, &creds, &acct, &err);
    if (rc) {
        log_kv(CP_LOG_INFO, "tiktok cookies refused", "outcome", plat_outcome_name(err.outcome),
               "code", err.code, LOG_END);
        if (err.outcome == PLAT_RETRY || err.outcome == PLAT_DEFER) {
            audit_conn(req, action, 1, 0, req->user_id, "platform_unavailable");
            reply_platform_unavailable(req, p, &err);
        } else if (err.outcome == PLAT_REAUTH) {
            audit_conn(req, action, 1, 0, req->user_id, "cookies_rejected");
            reply_error(req, 422, "cookies_rejected", "TikTok refused these cookies: session expired.");
        } else if (err.outcome == PLAT_FATAL) {
            audit_conn(req, action, 1, 0, req->user_id, "cookies_rejected");
            reply_error(req, 422, "cookies_rejected", "TikTok refused these cookies: %s",
                        err.message[0] ? err.message : "no reason given.");
        } else {
            audit_conn(req, action, 1, 0, req->user_id, "server_error");
            reply_error(req, 500, "internal", "The cookies could not be checked: %s.",
                        cp_strerror(rc));
        }
        goto done;
    }
    if (name && name[0])
        snprintf(acct.display_name, sizeof acct.display_name, "%s", name);

    struct conn_grant g = {
        .user_id = req->user_id, .platform = PLATFORM_TIKTOK, .auth_kind = AUTH_COOKIE,
        .account = &acct, .tokens = NULL, .cookies = buf_str(&cookies),
    };
    rc = conn_upsert(db, sb, req->app->conf, &g, &id, &created);
    if (rc) {
        log_error("a TikTok cookie connection could not be stored: %s", cp_strerror(rc));
        if (rc == CP_EUNAVAIL || rc == CP_EDB || rc == CP_ERETRY)
            reply_unavailable(req);
        else
            reply_error(req, 500, "internal", "The connection could not be stored.");
        goto done;
    }
    snprintf(detail, sizeof detail, "%s tiktok %.128s", created ? "added" : "updated",
             acct.username[0] ? acct.username : acct.remote_id);
    audit_conn(req, action, 0, id, req->user_id, detail);
    rc = conn_get(db, req->app->conf, &scope, id, &conn);
    if (rc == CP_ENOTFOUND)
        reply_no_connection(req, id);
    else if (rc)
        reply_unavailable(req);
    else
        reply_connection(req, created ? 201 : 200, &conn);

done:
    secretbox_wipe(&cookies);
    buf_free(&why);
}

/* ---------------------------------------------------------- authorize -- */

/* {public_url}/oauth/{platform}/callback: where each platform sends the
 * browser back (registered with the platform's app). */
static int redirect_uri(const struct conf *c, const struct platform *p, char *out, size_t cap)
{
    size_t n = strlen(c->public_url);
    int w;

    while (n && c->public_url[n - 1] == '/')
        n--;
    w = snprintf(out, cap, "%.*s/oauth/%s/callback", (int)n, c->public_url, p->name);
    return w < 0 || (size_t)w >= cap ? CP_ETOOBIG : 0;
}

void h_connection_authorize(struct request *req)
{
    const char *action = "connection.authorize";
    const struct conf *c = req->app->conf;
    const struct platform *p;
    char state[OAUTH_STATE_LEN + 1], binding[OAUTH_BINDING_LEN + 1], detail[DETAIL_MAX];
    long long ttl_s = c->oauth_state_ttl / 1000;
    struct auth_begin_out out;
    struct oauth_state st;
    struct plat_error err;
    struct secretbox *sb;
    struct http_client *http;
    struct cache *cache;
    struct buf b;
    int rc;

    memset(&out, 0, sizeof out);
    memset(&st, 0, sizeof st);
    buf_init(&out.url, 8192);
    if (!(p = path_platform(req)) || check_body(req, no_members, 1))
        goto done;
    if (!p->configured(c)) {
        audit_conn(req, action, 1, 0, req->user_id, "platform_not_configured");
        reply_error(req, 409, "platform_not_configured",
                    "%s is not configured: set %s in the configuration.", p->label,
                    platform_keys(p, c));
        goto done;
    }
    /* Nothing could be stored at the end of the trip without the key ring. */
    rc = app_secrets(req->app, &sb);
    if (rc) {
        reply_secrets_unavailable(req, rc);
        goto done;
    }
    if (app_cache(req->app, &cache)) {
        reply_error(req, 503, "unavailable", "memcached is not answering; try again shortly.");
        goto done;
    }
    if (app_http(req->app, &http)) {
        reply_error(req, 500, "internal", "No HTTP client could be made.");
        goto done;
    }
    if (oauth_state_random(state, sizeof state) || oauth_state_random(binding, sizeof binding)) {
        reply_error(req, 500, "internal", "No random state could be made.");
        goto done;
    }
    if (redirect_uri(c, p, st.redirect_uri, sizeof st.redirect_uri)) {
        reply_error(req, 500, "internal", "public_url is too long for a redirect URI.");
        goto done;
    }

    struct plat_ctx pc = { .conf = c, .http = http };
    struct auth_begin_in in = { .state = state, .redirect_uri = st.redirect_uri };
    memset(&err, 0, sizeof err);
    rc = p->auth_begin(&pc, &in, &out, &err);
    if (rc) {
        log_kv(CP_LOG_WARN, "authorization could not start", "platform", p->name,
               "outcome", plat_outcome_name(err.outcome), "code", err.code, LOG_END);
        if (err.outcome == PLAT_RETRY || err.outcome == PLAT_DEFER || rc == CP_EUNAVAIL) {
            audit_conn(req, action, 1, 0, req->user_id, "platform_unavailable");
            reply_platform_unavailable(req, p, &err);
        } else {
            audit_conn(req, action, 1, 0, req->user_id, "platform_error");
            reply_error(req, 502, "platform_error", "%s refused to start the authorization: %s",
                        p->label, err.message[0] ? err.message : "no reason given.");
        }
        goto done;
    }

    st.user_id = req->user_id;
    st.platform = p->id;
    st.created_ms = now_ms();
    oauth_binding_hash(binding, st.binding_sha256);
    snprintf(st.verifier, sizeof st.verifier, "%s", out.verifier);
    snprintf(st.request_secret, sizeof st.request_secret, "%s", out.request_secret);
    rc = oauth_state_put(cache, out.state_key, &st, (unsigned)ttl_s);
    if (rc) {
        audit_conn(req, action, 1, 0, req->user_id, "state not stored");
        if (rc == CP_EUNAVAIL)
            reply_error(req, 503, "unavailable", "memcached is not answering; try again shortly.");
        else
            reply_error(req, 500, "internal", "The authorization could not be recorded.");
        goto done;
    }

    req_set_cookie(req, OAUTH_COOKIE, binding, OAUTH_COOKIE_PATH, ttl_s, "Lax");
    buf_init(&b, AUTHORIZE_JSON_MAX);
    rc = buf_adds(&b, "{\"authorize_url\":\"");
    rc = rc ? rc : buf_add_json_escaped(&b, out.url.data ? out.url.data : "", out.url.len);
    rc = rc ? rc : buf_printf(&b, "\",\"expires_in\":%lld}", ttl_s);
    snprintf(detail, sizeof detail, "%s", p->name);
    audit_conn(req, action, 0, 0, req->user_id, detail);
    if (rc)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, 200, buf_str(&b), b.len);
    secretbox_wipe(&b);

done:
    secretbox_wipe(&out.url);
    explicit_bzero(&out, sizeof out);
    explicit_bzero(&st, sizeof st);
    explicit_bzero(state, sizeof state);
    explicit_bzero(binding, sizeof binding);
}
