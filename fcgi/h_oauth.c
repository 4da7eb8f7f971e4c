/*
 * GET /oauth/{platform}/callback: the end of a browser's trip to a
 * platform's consent page.
 *
 * The callback is public (the browser comes back from the platform with
 * no Authorization header); who it belongs to is the saved state's user.
 * The state is taken exactly once, must be for this platform, and must
 * come back to the browser that started it (the cp_oauth cookie set by
 * POST /api/v1/connections/{platform}/authorize).  Then the code or
 * verifier is exchanged and the connection stored, a reconnect updating
 * the existing one.
 *
 * Every outcome is a 302 to {public_url}{oauth_return_path} with
 * platform=, result=connected&connection_id=N[&reconnected=1] or
 * result=error&error=CODE, one of a fixed list: nothing the platform or
 * the query said is echoed into the Location.  Every outcome clears the
 * binding cookie and is written to the audit log (connection.connect).
 * No code, state, token or verifier is logged.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "conf.h"
#include "connections.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "log.h"
#include "oauthstate.h"
#include "platforms.h"
#include "query.h"
#include "secretbox.h"
#include "users.h"

#define LOCATION_MAX 4096
#define CODE_MAX 2048                /* authorization codes are a few hundred bytes */
#define ERROR_PARAM_MAX 128

/* The outcomes a callback ends with, as the UI reads them. */
#define OUT_ACCESS_DENIED "access_denied"
#define OUT_STATE_INVALID "state_invalid"
#define OUT_SESSION_MISMATCH "session_mismatch"
#define OUT_EXCHANGE_FAILED "exchange_failed"
#define OUT_NO_INSTAGRAM "no_instagram_account"
#define OUT_NO_YOUTUBE "no_youtube_channel"
#define OUT_PLATFORM_UNAVAILABLE "platform_unavailable"
#define OUT_NOT_CONFIGURED "not_configured"
#define OUT_SERVER_ERROR "server_error"

/* What the platform sent back, from the query string. */
struct callback_query {
    char state[AUTH_SECRET_MAX];          /* OAuth 2 */
    char code[CODE_MAX];
    char error[ERROR_PARAM_MAX];
    char oauth_token[AUTH_SECRET_MAX];    /* OAuth 1.0a */
    char oauth_verifier[AUTH_SECRET_MAX];
    char denied[AUTH_SECRET_MAX];
    int bad;                              /* a parameter was malformed or repeated */
};

/* The outcome so far. */
struct callback {
    const struct platform *p;
    struct oauth_state st;
    int have_state;                       /* st was taken for this callback */
    char owner_label[EMAIL_MAX + 1];
    long long connection_id;
    int created;
    const char *error;                    /* an OUT_* code; NULL = connected */
};

/* Parameter name into out ("" when absent); a malformed, repeated or
 * oversized value marks the query bad. */
static void read_param(struct request *req, struct callback_query *q, const char *name, char *out,
                       size_t cap)
{
    int rc = query_get(req->query, name, out, cap);

    if (rc && rc != CP_ENOTFOUND)
        q->bad = 1;
    if (rc)
        out[0] = '\0';
}

static void read_query(struct request *req, struct callback_query *q)
{
    memset(q, 0, sizeof *q);
    read_param(req, q, "state", q->state, sizeof q->state);
    read_param(req, q, "code", q->code, sizeof q->code);
    read_param(req, q, "error", q->error, sizeof q->error);
    read_param(req, q, "oauth_token", q->oauth_token, sizeof q->oauth_token);
    read_param(req, q, "oauth_verifier", q->oauth_verifier, sizeof q->oauth_verifier);
    read_param(req, q, "denied", q->denied, sizeof q->denied);
}

/* The key the state was saved under: the OAuth 2 state, or X's request
 * token (oauth_token when consent was given, denied when not). */
static const char *state_key(const struct callback_query *q)
{
    if (q->state[0])
        return q->state;
    if (q->oauth_token[0])
        return q->oauth_token;
    if (q->denied[0])
        return q->denied;
    return NULL;
}

/* Take the saved state and check that it belongs here: this platform,
 * this browser, a user who may still connect accounts. */
static void take_state(struct request *req, const struct callback_query *q, struct callback *cb)
{
    char cookie[OAUTH_BINDING_LEN + 8];
    const char *key = state_key(q);
    struct cache *cache;
    struct user u;
    struct db *db;
    int rc;

    if (q->bad || !key) {
        cb->error = OUT_STATE_INVALID;
        return;
    }
    if (app_cache(req->app, &cache)) {
        log_warn("an OAuth callback came while memcached is not answering");
        cb->error = OUT_SERVER_ERROR;
        return;
    }
    rc = oauth_state_take(cache, key, &cb->st);
    if (rc == CP_EUNAVAIL) {
        log_warn("an OAuth callback came while memcached is not answering");
        cb->error = OUT_SERVER_ERROR;
        return;
    }
    if (rc) {
        cb->error = OUT_STATE_INVALID;   /* unknown, expired, replayed or unreadable */
        return;
    }
    cb->have_state = 1;
    if (cb->st.platform != cb->p->id) {
        cb->error = OUT_STATE_INVALID;
        return;
    }
    if (auth_cookie(req, OAUTH_COOKIE, cookie, sizeof cookie) || !oauth_binding_ok(&cb->st, cookie)) {
        cb->error = OUT_SESSION_MISMATCH;
        explicit_bzero(cookie, sizeof cookie);
        return;
    }
    explicit_bzero(cookie, sizeof cookie);
    if (app_db(req->app, &db)) {
        cb->error = OUT_SERVER_ERROR;
        return;
    }
    rc = user_find_by_id(db, cb->st.user_id, &u);
    if (rc == 0)
        snprintf(cb->owner_label, sizeof cb->owner_label, "%s", u.email);
    if (rc == CP_ENOTFOUND || (rc == 0 && u.disabled))
        cb->error = OUT_STATE_INVALID;   /* the account that started it is gone */
    else if (rc)
        cb->error = OUT_SERVER_ERROR;
}

/* An exchange that failed, as an outcome code. */
static const char *exchange_outcome(const struct plat_error *err, int rc)
{
    if (err->outcome == PLAT_RETRY || err->outcome == PLAT_DEFER ||
        (err->outcome == PLAT_OK && (rc == CP_EUNAVAIL || rc == CP_ETIMEDOUT)))
        return OUT_PLATFORM_UNAVAILABLE;
    if (strcmp(err->code, OUT_NO_INSTAGRAM) == 0)
        return OUT_NO_INSTAGRAM;
    if (strcmp(err->code, OUT_NO_YOUTUBE) == 0)
        return OUT_NO_YOUTUBE;
    if (err->outcome == PLAT_OK)
        return OUT_SERVER_ERROR;         /* failed without reaching a verdict */
    return OUT_EXCHANGE_FAILED;
}

/* Exchange what came back for tokens and the account, and store them. */
static void finish(struct request *req, const struct callback_query *q, struct callback *cb)
{
    const struct conf *c = req->app->conf;
    struct plat_tokens tok;
    struct plat_account acct;
    struct plat_error err;
    struct secretbox *sb;
    struct http_client *http;
    struct db *db;
    int rc;

    if (strcmp(q->error, "access_denied") == 0 || q->denied[0]) {
        cb->error = OUT_ACCESS_DENIED;
        return;
    }
    if (q->error[0]) {
        cb->error = OUT_EXCHANGE_FAILED;
        return;
    }
    if (!cb->p->configured(c)) {
        cb->error = OUT_NOT_CONFIGURED;
        return;
    }
    if ((!q->code[0] && !q->oauth_verifier[0])) {
        cb->error = OUT_EXCHANGE_FAILED;
        return;
    }
    if (app_secrets(req->app, &sb) || app_db(req->app, &db) || app_http(req->app, &http)) {
        cb->error = OUT_SERVER_ERROR;
        return;
    }

    struct plat_ctx pc = { .conf = c, .http = http };
    struct auth_finish_in in = {
        .code = q->code, .redirect_uri = cb->st.redirect_uri, .verifier = cb->st.verifier,
        .oauth_token = q->oauth_token, .oauth_verifier = q->oauth_verifier,
        .request_secret = cb->st.request_secret,
    };
    memset(&tok, 0, sizeof tok);
    memset(&acct, 0, sizeof acct);
    memset(&err, 0, sizeof err);
    rc = cb->p->auth_finish(&pc, &in, &tok, &acct, &err);
    if (rc) {
        cb->error = exchange_outcome(&err, rc);
        log_kv(CP_LOG_WARN, "authorization could not be finished", "platform", cb->p->name,
               "outcome", plat_outcome_name(err.outcome), "code", err.code, "result", cb->error,
               LOG_END);
        goto done;
    }

    /* OAuth 1.0a hands out a token secret; OAuth 2 never does. */
    struct conn_grant g = {
        .user_id = cb->st.user_id, .platform = cb->p->id,
        .auth_kind = tok.token_secret && tok.token_secret[0] ? AUTH_OAUTH1 : AUTH_OAUTH2,
        .account = &acct, .tokens = &tok, .cookies = NULL,
    };
    rc = conn_upsert(db, sb, c, &g, &cb->connection_id, &cb->created);
    if (rc) {
        log_error("a %s connection could not be stored: %s", cb->p->name, cp_strerror(rc));
        cb->error = OUT_SERVER_ERROR;
    }

done:
    plat_tokens_clear(&tok);
}

/* The Location of the outcome: {public_url}{oauth_return_path}?... */
static int build_location(const struct conf *c, const struct callback *cb, struct buf *loc)
{
    size_t n = strlen(c->public_url);
    int rc;

    while (n && c->public_url[n - 1] == '/')
        n--;
    rc = buf_add(loc, c->public_url, n);
    rc = rc ? rc : buf_adds(loc, c->oauth_return_path);
    rc = rc ? rc : buf_addc(loc, strchr(c->oauth_return_path, '?') ? '&' : '?');
    rc = rc ? rc : buf_printf(loc, "platform=%s", cb->p->name);
    if (rc)
        return rc;
    if (cb->error)
        return buf_printf(loc, "&result=error&error=%s", cb->error);
    return buf_printf(loc, "&result=connected&connection_id=%lld%s", cb->connection_id,
                      cb->created ? "" : "&reconnected=1");
}

static void audit_outcome(struct request *req, const struct callback *cb)
{
    long long user = cb->have_state ? cb->st.user_id : 0;
    char detail[128];
    struct db *db;

    if (cb->error)
        snprintf(detail, sizeof detail, "%s %s", cb->p->name, cb->error);
    else
        snprintf(detail, sizeof detail, "%s %s", cb->p->name, cb->created ? "connected" : "reconnected");
    struct audit_event ev = {
        .actor_id = user, .actor_label = cb->owner_label[0] ? cb->owner_label : "oauth callback",
        .action = "connection.connect", .failed = cb->error != NULL,
        .target_type = "connection", .target_id = cb->connection_id, .owner_id = user,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };
    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

void h_oauth_callback(struct request *req)
{
    const struct conf *c = req->app->conf;
    struct callback_query q;
    struct callback cb;
    char name[32];
    struct buf loc;

    memset(&cb, 0, sizeof cb);
    if (route_param_get(&req->match, "platform", name, sizeof name) == 0)
        cb.p = platform_find(name);
    if (!cb.p) {
        reply_error(req, 404, "not_found", "Nothing is at %s.", req->path);
        return;
    }
    read_query(req, &q);
    take_state(req, &q, &cb);
    if (!cb.error)
        finish(req, &q, &cb);
    explicit_bzero(&q, sizeof q);

    audit_outcome(req, &cb);
    if (cb.error)
        log_kv(CP_LOG_INFO, "account not connected", "platform", cb.p->name, "result", cb.error,
               LOG_END);
    explicit_bzero(&cb.st, sizeof cb.st);

    req_set_cookie(req, OAUTH_COOKIE, "", OAUTH_COOKIE_PATH, 0, "Lax");
    buf_init(&loc, LOCATION_MAX);
    if (build_location(c, &cb, &loc) || req_add_header(req, "Location", buf_str(&loc))) {
        buf_free(&loc);
        reply_error(req, 500, "internal", "oauth_return_path or public_url does not make a URL.");
        return;
    }
    buf_free(&loc);
    reply_body(req, 302, "text/plain; charset=utf-8", "", 0);
}
