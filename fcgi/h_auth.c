/*
 * Sign-in: POST /api/v1/auth/{login,refresh,logout,signup}.
 *
 * Login answers the same 401 body for an unknown email, a wrong password
 * and a disabled account, after the same argon2 work, so nothing tells
 * them apart; repeated failures, for an account or from an address, are
 * answered 429 with Retry-After for a while (ratelimit.h).  The refresh
 * token travels only in an HttpOnly, SameSite=Strict cookie scoped to
 * /api/v1/auth; refresh and logout refuse requests from other sites.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auth.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "log.h"
#include "password.h"
#include "ratelimit.h"
#include "sessions.h"
#include "token.h"
#include "users.h"
#include "userjson.h"

#define PASSWORD_BYTES_MAX 512       /* 128 code points of 4 bytes */

static void audit_req(struct request *req, const char *action, int failed, long long actor,
                      const char *label, long long target, const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = actor, .actor_label = label, .action = action, .failed = failed,
        .target_type = target ? "user" : NULL, .target_id = target, .owner_id = target,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

static void set_refresh_cookie(struct request *req, const char *token, long long max_age)
{
    req_set_cookie(req, REFRESH_COOKIE, token, REFRESH_COOKIE_PATH, max_age, "Strict");
}

static void clear_refresh_cookie(struct request *req)
{
    set_refresh_cookie(req, "", 0);
}

/* Answer with a fresh access token for session, and its refresh cookie. */
static void reply_tokens(struct request *req, int status, const struct user *u,
                         const struct session_info *s, const char *refresh)
{
    char token[TOKEN_MAX + 1], sub[24];
    struct buf b;

    snprintf(sub, sizeof sub, "%lld", u->id);
    if (token_issue(req->app->token_key, &req->app->token_policy, sub, TOKEN_TYPE_ACCESS,
                    s->id, u->token_version, (long long)time(NULL), token, sizeof token, NULL)) {
        reply_error(req, 500, "internal", "An access token could not be issued.");
        return;
    }
    set_refresh_cookie(req, refresh, s->expires_in_s);
    buf_init(&b, 16384);
    buf_printf(&b, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%lld,\"user\":",
               token, req->app->token_policy.ttl_s);
    user_json_append(&b, u);
    buf_addc(&b, '}');
    reply_json(req, status, buf_str(&b), b.len);
    buf_free(&b);
}

/* Start a session for u and answer with its tokens. */
static void start_session(struct request *req, struct db *db, int status, const struct user *u)
{
    char refresh[REFRESH_TOKEN_LEN + 1];
    const char *agent = req_param(req, "HTTP_USER_AGENT");
    struct session_info s;

    if (session_start(db, u->id, req->app->conf->session_lifetime / 1000, req_client_addr(req),
                      agent ? agent : "", refresh, &s)) {
        reply_error(req, 503, "unavailable", "The sign-in could not be recorded; try again shortly.");
        return;
    }
    reply_tokens(req, status, u, &s, refresh);
}

static void refuse_credentials(struct request *req)
{
    reply_error(req, 401, "invalid_credentials", "The email or password is wrong.");
}

void h_login(struct request *req)
{
    const char *email, *password, *who;
    char norm[EMAIL_MAX + 1];
    struct cache *cache;
    long long retry_s;
    struct user u;
    struct db *db;
    int rc, found, ok;

    if (body_string(req, "email", 1024, &email) || body_string(req, "password", 4096, &password))
        return;
    /* Failures count per account whether or not it exists, so throttling
     * tells nothing either. */
    who = user_email_normalize(email, norm) ? email : norm;
    if (app_cache(req->app, &cache))
        cache = NULL;
    if (ratelimit_login_check(cache, req->app->conf, who, req_client_addr(req),
                              ratelimit_now_ms(), &retry_s) == CP_ERETRY) {
        char v[24];

        /* The account, when there is one, sees the refusal in its trail. */
        found = app_db(req->app, &db) == 0 && user_find_by_email(db, email, &u) == 0;
        snprintf(v, sizeof v, "%lld", retry_s);
        audit_req(req, "auth.login_throttled", 1, 0, email, found ? u.id : 0, "too many failed sign-ins");
        req_add_header(req, "Retry-After", v);
        reply_error(req, 429, "too_many_attempts",
                    "Too many failed sign-ins; try again in %lld s.", retry_s);
        return;
    }
    if (app_db(req->app, &db)) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    rc = user_find_by_email(db, email, &u);
    if (rc && rc != CP_ENOTFOUND) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    found = rc == 0;
    /* The hash is always computed, so an unknown email costs the same. */
    ok = password_verify(found ? u.password_hash : password_dummy_hash(), password,
                         strnlen(password, PASSWORD_BYTES_MAX + 1)) == 0;
    if (!found || !ok || u.disabled) {
        audit_req(req, "auth.login", 1, 0, email, found ? u.id : 0,
                  !found ? "unknown email" : !ok ? "wrong password" : "account disabled");
        ratelimit_login_failed(cache, req->app->conf, who, req_client_addr(req), ratelimit_now_ms());
        refuse_credentials(req);
        return;
    }
    ratelimit_login_succeeded(cache, req->app->conf, who);
    if (password_needs_rehash(u.password_hash, &password_default_params)) {
        char hash[PASSWORD_HASH_MAX];
        if (password_hash(password, strlen(password), &password_default_params, hash, sizeof hash) == 0 &&
            user_update_hash(db, u.id, hash) == 0)
            log_info("rehashed the password of user %lld with current parameters", u.id);
    }
    struct db_param p[] = { DB_I64(u.id) };
    db_exec(db, "UPDATE users SET last_login_at = NOW(3) WHERE id = ?", p, 1, NULL, NULL);
    audit_req(req, "auth.login", 0, u.id, u.email, u.id, NULL);
    start_session(req, db, 200, &u);
}

void h_signup(struct request *req)
{
    const char *email, *password, *name = "";
    char norm[EMAIL_MAX + 1], hash[PASSWORD_HASH_MAX];
    enum password_verdict v;
    struct user u;
    struct db *db;
    long long id;
    int rc;

    if (!req->app->conf->signup_enabled) {
        reply_error(req, 403, "signup_disabled", "Accounts are created by an administrator here.");
        return;
    }
    if (body_string(req, "email", 1024, &email) || body_string(req, "password", 4096, &password))
        return;
    if (req->json && json_object_object_get_ex(req->json, "display_name", NULL) &&
        body_string(req, "display_name", DISPLAY_NAME_MAX, &name))
        return;
    if (user_email_normalize(email, norm)) {
        reply_error(req, 422, "invalid_email", "\"email\" is not an email address.");
        return;
    }
    v = password_check(password, strlen(password), norm);
    if (v != PASSWORD_OK) {
        reply_error(req, 422, "weak_password", "%s", password_verdict_text(v));
        return;
    }
    if (app_db(req->app, &db) ||
        password_hash(password, strlen(password), &password_default_params, hash, sizeof hash)) {
        reply_error(req, 503, "unavailable", "The account could not be created; try again shortly.");
        return;
    }
    rc = user_create(db, norm, name, hash, USER_ROLE_USER, &id);
    if (rc == CP_ECONFLICT) {
        reply_error(req, 409, "email_taken", "An account with this email exists; sign in instead.");
        return;
    }
    if (rc || user_find_by_id(db, id, &u)) {
        reply_error(req, 503, "unavailable", "The account could not be created; try again shortly.");
        return;
    }
    audit_req(req, "user.signup", 0, id, norm, id, NULL);
    start_session(req, db, 201, &u);
}

/* The refresh cookie, after the cross-site check; NULL after a reply. */
static const char *refresh_cookie(struct request *req, char *buf, size_t cap)
{
    if (!auth_same_origin(req)) {
        reply_error(req, 403, "cross_site", "This request must come from the crosspost UI's own site.");
        return NULL;
    }
    if (auth_cookie(req, REFRESH_COOKIE, buf, cap)) {
        clear_refresh_cookie(req);
        reply_error(req, 401, "no_session", "There is no sign-in to refresh; sign in again.");
        return NULL;
    }
    return buf;
}

void h_refresh(struct request *req)
{
    char presented[128], refresh[REFRESH_TOKEN_LEN + 1];
    struct session_info s;
    struct user u;
    struct db *db;
    int rc;

    if (!refresh_cookie(req, presented, sizeof presented))
        return;
    if (app_db(req->app, &db)) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    rc = session_refresh(db, presented, refresh, &s);
    if (rc == CP_ECONFLICT) {
        audit_req(req, "auth.refresh_reuse", 1, 0, "", s.user_id, "refresh token used twice; session revoked");
        log_warn("refresh token reused: session %lld of user %lld revoked", s.id, s.user_id);
    }
    if (rc == CP_ENOTFOUND || rc == CP_ECONFLICT || (!rc && (user_find_by_id(db, s.user_id, &u) || u.disabled))) {
        clear_refresh_cookie(req);
        reply_error(req, 401, "no_session", "This sign-in has ended; sign in again.");
        return;
    }
    if (rc) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    reply_tokens(req, 200, &u, &s, refresh);
}

void h_logout(struct request *req)
{
    char presented[128];
    struct session_info s;
    struct db *db;

    if (!refresh_cookie(req, presented, sizeof presented))
        return;
    if (app_db(req->app, &db)) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    if (session_end_by_token(db, presented, "logout", &s) == 0)
        audit_req(req, "auth.logout", 0, s.user_id, "", s.user_id, NULL);
    clear_refresh_cookie(req);
    reply_body(req, 204, "application/json", "", 0);
}

void h_me(struct request *req)
{
    struct user u;
    struct db *db;
    struct buf b;

    /* The credential check has just read the account; read it again only
     * for callers that came with an API key. */
    if (req->user)
        u = *req->user;
    else if (app_db(req->app, &db) || user_find_by_id(db, req->user_id, &u)) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    buf_init(&b, 16384);
    user_json_append(&b, &u);
    reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}

void h_me_password(struct request *req)
{
    const char *current, *next;
    char hash[PASSWORD_HASH_MAX];
    enum password_verdict v;
    struct user u;
    struct db *db;

    if (body_string(req, "current_password", 4096, &current) ||
        body_string(req, "new_password", 4096, &next))
        return;
    if (app_db(req->app, &db) || user_find_by_id(db, req->user_id, &u)) {
        reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
        return;
    }
    if (password_verify(u.password_hash, current, strnlen(current, PASSWORD_BYTES_MAX + 1)) != 0) {
        audit_req(req, "user.password", 1, u.id, u.email, u.id, "wrong current password");
        reply_error(req, 403, "wrong_password", "The current password is wrong.");
        return;
    }
    v = password_check(next, strlen(next), u.email);
    if (v != PASSWORD_OK) {
        reply_error(req, 422, "weak_password", "%s", password_verdict_text(v));
        return;
    }
    if (password_hash(next, strlen(next), &password_default_params, hash, sizeof hash) ||
        user_set_password(db, u.id, hash) || user_find_by_id(db, u.id, &u)) {
        reply_error(req, 503, "unavailable", "The password could not be changed; try again shortly.");
        return;
    }
    audit_req(req, "user.password", 0, u.id, u.email, u.id, "changed; every session ended");
    /* Every other session has ended; this client gets a new one. */
    start_session(req, db, 200, &u);
}
