#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "err.h"
#include "json.h"
#include "oauth1.h"
#include "pkce.h"
#include "plat_internal.h"

/*
 * X: three-legged OAuth 1.0a (request_token, authorize, access_token;
 * tokens that never expire), or OAuth 2 with PKCE when x_auth_mode is
 * oauth2 (rotating refresh tokens).  Existing connections are served by
 * the kind of their credentials, whatever the mode is now.
 */

#define URL_MAX 8192
#define FORM_MAX (16 * 1024)
#define HEADER_MAX (8 * 1024)
#define PAIR_MAX 1024                 /* client_id:client_secret */
#define TOKEN_ANSWER "X token response"

static const struct plat_rule x_rows[] = {
    { 0, 0, "32", NULL, PLAT_REAUTH, "X could not authenticate the request" },
    { 0, 0, "89", NULL, PLAT_REAUTH, "the token is invalid or expired" },
    { 0, 0, "326", NULL, PLAT_REAUTH, "the account is locked: its owner must sign in to X" },
    { 0, 0, "135", NULL, PLAT_RETRY, "the request's timestamp was out of bounds: check the clock" },
    { 0, 0, "130", NULL, PLAT_RETRY, "X is over capacity" },
    { 0, 0, "131", NULL, PLAT_RETRY, "X failed internally" },
    { 0, 0, "88", NULL, PLAT_DEFER, "rate limited" },
    { 0, 0, "64", NULL, PLAT_FATAL, "the account is suspended" },
    { 0, 0, "duplicate", NULL, PLAT_FATAL, "the same text was posted before" },
    { 0, 0, "187", NULL, PLAT_FATAL, "the same text was posted before" },
    { 0, 0, "215", NULL, PLAT_FATAL, "the request carried bad authentication data" },
    { 0, 0, "415", NULL, PLAT_FATAL, "the callback URL is not approved for this app" },
    { 0, 0, "invalid_request", NULL, PLAT_REAUTH, "the token or code was refused" },
    { 0, 0, "invalid_grant", NULL, PLAT_REAUTH, "the authorization is invalid or expired" },
    { 0, 0, "invalid_client", NULL, PLAT_FATAL, "the app's client id or secret was refused" },
    { 0, 0, "unauthorized_client", NULL, PLAT_FATAL, "the app may not use this grant" },
    { 0, 0, "usage-capped", NULL, PLAT_DEFER, "the app's usage cap was reached" },
    { 0, 0, "client-forbidden", NULL, PLAT_FATAL, "the app may not use this endpoint" },
    { 0, 0, "not-authorized-for-resource", NULL, PLAT_FATAL, "not authorized for this resource" },
    { 0, 0, "invalid-request", NULL, PLAT_FATAL, "the request was refused as invalid" },
    { 401, 401, NULL, NULL, PLAT_REAUTH, "the credentials were refused" },
    { 400, 400, NULL, NULL, PLAT_FATAL, "the request was refused as invalid" },
    { 403, 403, NULL, NULL, PLAT_FATAL, "the request is forbidden" },
    { 429, 429, NULL, NULL, PLAT_DEFER, "rate limited" },
    { 500, 599, NULL, NULL, PLAT_RETRY, "X is failing" },
};

#define X_DUPLICATE_TEXT "duplicate content"

/* The last path segment of a v2 problem type URL, else NULL. */
static const char *problem_name(const char *type)
{
    const char *slash;

    if (!type || !strstr(type, "/2/problems/"))
        return NULL;
    slash = strrchr(type, '/');
    return slash && slash[1] ? slash + 1 : NULL;
}

/*
 * Three shapes: v1.1 {"errors":[{"code":32,"message"}]}, OAuth 2
 * {"error":"invalid_request","error_description"}, and v2 problems
 * {"title","detail","type","status"}.  A v2 answer with "data" is a
 * success even when it lists partial "errors".
 */
static void x_fault(const struct http_response *resp, struct plat_fault *f)
{
    struct json_object *root = NULL, *errors, *data;
    const char *code = NULL, *text = NULL, *type = NULL, *title = NULL;
    char scratch[32];
    int success = resp->status >= 200 && resp->status <= 299;

    memset(f, 0, sizeof *f);
    if (plat_json_parse(resp->body.data, resp->body.len, &root))
        return;
    if (success && json_object_object_get_ex(root, "data", &data))
        goto out;
    if (json_get_array(root, "errors", &errors) == 0 && json_object_array_length(errors) > 0) {
        struct json_object *first = json_object_array_get_idx(errors, 0);

        if (json_object_is_type(first, json_type_object)) {
            code = plat_json_text(first, "code", scratch, sizeof scratch);
            json_get_string(first, "message", &text);
        }
    }
    if (!code && json_get_string(root, "error", &code) == 0)
        json_get_string(root, "error_description", &text);
    json_get_string(root, "type", &type);
    json_get_string(root, "title", &title);
    if (!code && (type || title)) {
        code = problem_name(type);
        if (!code)
            code = title;
        json_get_string(root, "detail", &text);
    }
    /* A repeated post has no code of its own in v2 (403 "Forbidden"):
     * its words tell it. */
    if (code && *code && text && strstr(text, X_DUPLICATE_TEXT))
        code = "duplicate";
    if (code && *code) {
        f->found = 1;
        plat_copy_text(f->code, sizeof f->code, code);
        plat_text_clean(f->text, sizeof f->text, text);
    }
out:
    json_object_put(root);
}

#define X_DEFER_DEFAULT_MS (15 * 60 * 1000LL)

/* A rate limit lasts until x-rate-limit-reset, else Retry-After, else
 * the 15-minute window X counts in. */
long long x_wait_ms(const struct http_response *resp, enum plat_outcome outcome)
{
    struct buf v;
    long long ms = 0;

    if (outcome == PLAT_DEFER) {
        buf_init(&v, 64);
        if (http_response_header(resp, "x-rate-limit-reset", &v) == 0 && v.len) {
            char *end;
            long long reset = strtoll(buf_str(&v), &end, 10);
            long long now = (long long)time(NULL);

            if (*end == '\0' && reset > now && reset - now <= 366LL * 86400)
                ms = (reset - now) * 1000;
        }
        buf_free(&v);
    }
    if (!ms)
        ms = plat_retry_after_ms(resp);
    return ms || outcome != PLAT_DEFER ? ms : X_DEFER_DEFAULT_MS;
}

const struct plat_rules plat_x_rules = {
    "X", x_rows, sizeof x_rows / sizeof x_rows[0], x_fault, x_wait_ms,
};

/* ------------------------------------------------------------ parsers -- */

static int form_value(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    int rc = plat_form_get(body, len, name, out, cap);

    return rc || !out[0] ? CP_ENOTFOUND : 0;
}

int x_parse_request_token(const char *body, size_t len, char *token, size_t token_cap,
                          char *secret, size_t secret_cap, struct plat_error *err)
{
    static const char what[] = "X request token";
    char confirmed[16];

    if (form_value(body, len, "oauth_token", token, token_cap) ||
        form_value(body, len, "oauth_token_secret", secret, secret_cap)) {
        OPENSSL_cleanse(token, token_cap);
        OPENSSL_cleanse(secret, secret_cap);
        return plat_error_unexpected(err, 200, what, "no oauth_token or oauth_token_secret");
    }
    if (form_value(body, len, "oauth_callback_confirmed", confirmed, sizeof confirmed) ||
        strcmp(confirmed, "true") != 0) {
        OPENSSL_cleanse(token, token_cap);
        OPENSSL_cleanse(secret, secret_cap);
        return plat_error_unexpected(err, 200, what, "the callback was not confirmed");
    }
    return 0;
}

int x_parse_access_token(const char *body, size_t len, struct plat_tokens *tok,
                         struct plat_account *acct, struct plat_error *err)
{
    static const char what[] = "X access token";
    char *token = NULL, *secret = NULL;
    int rc = 0;

    memset(tok, 0, sizeof *tok);
    memset(acct, 0, sizeof *acct);
    token = calloc(2, PLAT_TOKEN_MAX + 1);
    if (!token) {
        plat_error_set(err, PLAT_RETRY, 200, "no_memory", "%s: out of memory", what);
        return CP_ENOMEM;
    }
    secret = token + PLAT_TOKEN_MAX + 1;
    if (form_value(body, len, "oauth_token", token, PLAT_TOKEN_MAX + 1) ||
        form_value(body, len, "oauth_token_secret", secret, PLAT_TOKEN_MAX + 1)) {
        rc = plat_error_unexpected(err, 200, what, "no oauth_token or oauth_token_secret");
        goto out;
    }
    if (form_value(body, len, "user_id", acct->remote_id, sizeof acct->remote_id)) {
        rc = plat_error_unexpected(err, 200, what, "no user_id");
        goto out;
    }
    form_value(body, len, "screen_name", acct->username, sizeof acct->username);
    snprintf(acct->display_name, sizeof acct->display_name, "%s", acct->username);
    if (plat_tokens_set(&tok->access_token, token) ||
        plat_tokens_set(&tok->token_secret, secret)) {
        plat_error_set(err, PLAT_RETRY, 200, "no_memory", "%s: out of memory", what);
        rc = CP_ENOMEM;
    }
out:
    if (rc) {
        plat_tokens_clear(tok);
        memset(acct, 0, sizeof *acct);
    }
    OPENSSL_cleanse(token, 2 * (PLAT_TOKEN_MAX + 1));
    free(token);
    return rc;
}

int x_parse_oauth2_tokens(const char *body, size_t len, struct plat_tokens *tok,
                          struct plat_error *err)
{
    return plat_parse_oauth2_tokens(body, len, TOKEN_ANSWER, tok, NULL, NULL, 0, err);
}

int x_parse_user(const char *body, size_t len, struct plat_account *acct,
                 struct plat_error *err)
{
    static const char what[] = "X user lookup";
    struct json_object *root = NULL, *data;
    const char *id = NULL, *s = NULL;
    int rc = 0;

    memset(acct, 0, sizeof *acct);
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_object(root, "data", &data) || json_get_string(data, "id", &id) || !*id ||
        strlen(id) >= sizeof acct->remote_id) {
        rc = plat_error_unexpected(err, 200, what, "no data.id");
        goto out;
    }
    snprintf(acct->remote_id, sizeof acct->remote_id, "%s", id);
    if (json_get_string(data, "username", &s) == 0)
        plat_copy_text(acct->username, sizeof acct->username, s);
    if (json_get_string(data, "name", &s) == 0)
        plat_copy_text(acct->display_name, sizeof acct->display_name, s);
    if (json_get_string(data, "profile_image_url", &s) == 0 && strlen(s) < sizeof acct->avatar_url)
        snprintf(acct->avatar_url, sizeof acct->avatar_url, "%s", s);
out:
    json_object_put(root);
    return rc;
}

int x_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                    const char *challenge, struct buf *out)
{
    const char *pairs[] = {
        "response_type", "code", "client_id", c->x_client_id, "redirect_uri", redirect_uri,
        "scope", c->x_scopes, "state", state,
        "code_challenge", challenge, "code_challenge_method", "S256",
    };

    return plat_query_url(out, c->x_oauth2_auth_url, pairs, sizeof pairs / sizeof *pairs);
}

/* ------------------------------------------------------------ calls -- */

static int oauth2_mode(const struct conf *c)
{
    return c->x_auth_mode == 1;
}

static int oauth1_configured(const struct conf *c)
{
    return c->x_consumer_key && *c->x_consumer_key && c->x_consumer_secret &&
           *c->x_consumer_secret;
}

static int oauth2_configured(const struct conf *c)
{
    return c->x_client_id && *c->x_client_id;
}

int x_configured(const struct conf *c)
{
    if (!c)
        return 0;
    return oauth2_mode(c) ? oauth2_configured(c) : oauth1_configured(c);
}

enum auth_kind x_auth_kind(const struct conf *c)
{
    return c && oauth2_mode(c) ? AUTH_OAUTH2 : AUTH_OAUTH1;
}

static int not_configured(struct plat_error *err, int oauth2)
{
    plat_error_set(err, PLAT_FATAL, 0, "not_configured",
                   oauth2 ? "X: the OAuth 2 client id is not configured"
                          : "X: the consumer key and secret are not configured");
    return CP_EINVAL;
}

/* A request signed with OAuth 1.0a (no body parameters). */
static int signed_call(struct plat_ctx *pc, const char *method, const char *url,
                       const char *token, const char *token_secret, const char *callback,
                       const char *verifier, const char *what, struct http_response *resp,
                       struct plat_error *err)
{
    const struct conf *c = pc->conf;
    struct oauth1_request r = {
        .method = method, .url = url, .with_version = 1, .callback = callback,
        .verifier = verifier,
    };
    struct oauth1_creds creds = { c->x_consumer_key, c->x_consumer_secret, token, token_secret };
    struct buf auth, empty;
    int rc;

    buf_init(&auth, HEADER_MAX);
    buf_init(&empty, 0);
    if (oauth1_authorization(&r, &creds, &auth)) {
        plat_buf_wipe(&auth);
        plat_error_set(err, PLAT_FATAL, 0, "bad_request", "%s: the request could not be signed",
                       what);
        return CP_EINVAL;
    }
    rc = plat_send(pc, &plat_x_rules, method, url, buf_str(&auth),
                   "application/x-www-form-urlencoded", strcmp(method, "POST") ? NULL : &empty,
                   what, resp, err);
    plat_buf_wipe(&auth);
    return rc;
}

static int users_me_url(const struct conf *c, struct buf *url)
{
    return plat_url(url, c->x_api_url, "/2/users/me?user.fields=profile_image_url");
}

/* GET /2/users/me, signed with OAuth 1.0a (token_secret set) or bearing an OAuth 2 token. */
static int user_call(struct plat_ctx *pc, const char *token, const char *token_secret,
                     struct plat_account *acct, struct plat_error *err)
{
    static const char what[] = "X user lookup";
    struct http_response resp;
    struct buf url, auth;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (users_me_url(pc->conf, &url)) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    if (token_secret) {
        rc = signed_call(pc, "GET", buf_str(&url), token, token_secret, NULL, NULL, what, &resp,
                         err);
    } else if (plat_bearer(&auth, token)) {
        rc = plat_no_memory(err, what);
        goto out;
    } else {
        rc = plat_send(pc, &plat_x_rules, "GET", buf_str(&url), buf_str(&auth), NULL, NULL, what,
                       &resp, err);
    }
    if (!rc) {
        rc = x_parse_user(resp.body.data, resp.body.len, acct, err);
        plat_response_free(&resp);
    }
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    return rc;
}

/* POST the form to /2/oauth2/token: Basic auth for a confidential
 * client, client_id in the body for a public one. */
static int oauth2_token_call(struct plat_ctx *pc, struct buf *form, const char *what,
                             struct plat_tokens *tok, struct plat_error *err)
{
    const struct conf *c = pc->conf;
    struct buf url, pair, auth;
    int rc = 0;

    buf_init(&url, URL_MAX);
    buf_init(&pair, PAIR_MAX);
    buf_init(&auth, 4 * PAIR_MAX);
    if (c->x_client_secret && *c->x_client_secret) {
        unsigned char b64[4 * ((PAIR_MAX + 2) / 3) + 1];

        rc = buf_printf(&pair, "%s:%s", c->x_client_id, c->x_client_secret);
        if (!rc) {
            EVP_EncodeBlock(b64, (const unsigned char *)pair.data, (int)pair.len);
            rc = buf_printf(&auth, "Basic %s", (const char *)b64);
            OPENSSL_cleanse(b64, sizeof b64);
        }
    } else {
        rc = plat_form_add(form, "client_id", c->x_client_id);
    }
    if (!rc)
        rc = plat_url(&url, c->x_api_url, "/2/oauth2/token");
    if (rc) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    rc = plat_token_call(pc, &(struct plat_token_req){
                             .rules = &plat_x_rules, .url = buf_str(&url),
                             .authorization = auth.len ? buf_str(&auth) : NULL, .form = form,
                             .what = what, .answer = TOKEN_ANSWER },
                         tok, err);
out:
    plat_buf_wipe(&pair);
    plat_buf_wipe(&auth);
    buf_free(&url);
    return rc;
}

static int begin_oauth1(struct plat_ctx *pc, const struct auth_begin_in *in,
                        struct auth_begin_out *out, struct plat_error *err)
{
    static const char what[] = "X request token";
    struct http_response resp;
    struct buf url;
    int rc;

    buf_init(&url, URL_MAX);
    if (plat_url(&url, pc->conf->x_api_url, "/oauth/request_token")) {
        buf_free(&url);
        return plat_no_memory(err, what);
    }
    rc = signed_call(pc, "POST", buf_str(&url), NULL, NULL, in->redirect_uri, NULL, what, &resp,
                     err);
    buf_free(&url);
    if (rc)
        return rc;
    rc = x_parse_request_token(resp.body.data, resp.body.len, out->state_key,
                               sizeof out->state_key, out->request_secret,
                               sizeof out->request_secret, err);
    plat_response_free(&resp);
    if (rc)
        return rc;
    if (plat_url(&out->url, pc->conf->x_api_url, "/oauth/authorize?") ||
        plat_form_add(&out->url, "oauth_token", out->state_key)) {
        memset(out->state_key, 0, sizeof out->state_key);
        OPENSSL_cleanse(out->request_secret, sizeof out->request_secret);
        return plat_no_memory(err, what);
    }
    return 0;
}

int x_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                 struct auth_begin_out *out, struct plat_error *err)
{
    const struct conf *c = pc->conf;
    int rc;

    memset(out, 0, sizeof *out);
    buf_init(&out->url, URL_MAX);
    memset(err, 0, sizeof *err);
    if (!x_configured(c))
        return not_configured(err, oauth2_mode(c));
    if (!in->redirect_uri || !*in->redirect_uri ||
        (oauth2_mode(c) && (!in->state || !*in->state || strlen(in->state) >= sizeof out->state_key))) {
        plat_error_set(err, PLAT_FATAL, 0, "bad_request", "X authorize: no state or redirect URI");
        return CP_EINVAL;
    }
    if (!oauth2_mode(c)) {
        rc = begin_oauth1(pc, in, out, err);
        if (rc)
            buf_free(&out->url);
        return rc;
    }
    return plat_begin_pkce(pc, in, out, x_authorize_url, "X authorize", err);
}

static int finish_oauth1(struct plat_ctx *pc, const struct auth_finish_in *in,
                         struct plat_tokens *tok, struct plat_account *acct,
                         struct plat_error *err)
{
    static const char what[] = "X access token";
    struct plat_account me;
    struct plat_error me_err;
    struct http_response resp;
    struct buf url;
    int rc;

    if (!in->oauth_token || !*in->oauth_token || !in->oauth_verifier || !*in->oauth_verifier) {
        plat_error_set(err, PLAT_FATAL, 0, "bad_request", "%s: no oauth_token or oauth_verifier",
                       what);
        return CP_EINVAL;
    }
    buf_init(&url, URL_MAX);
    if (plat_url(&url, pc->conf->x_api_url, "/oauth/access_token")) {
        buf_free(&url);
        return plat_no_memory(err, what);
    }
    rc = signed_call(pc, "POST", buf_str(&url), in->oauth_token,
                     in->request_secret ? in->request_secret : "", NULL, in->oauth_verifier,
                     what, &resp, err);
    buf_free(&url);
    if (rc)
        return rc;
    rc = x_parse_access_token(resp.body.data, resp.body.len, tok, acct, err);
    plat_response_free(&resp);
    if (rc)
        return rc;
    /* The name and picture come from /2/users/me; the access token's
     * answer already says who it is, so only a refusal of the new tokens
     * fails the connection. */
    rc = user_call(pc, tok->access_token, tok->token_secret, &me, &me_err);
    if (rc == 0 && strcmp(me.remote_id, acct->remote_id) == 0) {
        *acct = me;
    } else if (rc && me_err.outcome == PLAT_REAUTH) {
        *err = me_err;
        plat_tokens_clear(tok);
        memset(acct, 0, sizeof *acct);
        return rc;
    }
    return 0;
}

static int finish_oauth2(struct plat_ctx *pc, const struct auth_finish_in *in,
                         struct plat_tokens *tok, struct plat_account *acct,
                         struct plat_error *err)
{
    static const char what[] = "X token exchange";
    struct buf form;
    int rc;

    if (!oauth2_configured(pc->conf))
        return not_configured(err, 1);
    buf_init(&form, FORM_MAX);
    if (plat_code_form(&form, NULL, NULL, NULL, in, 1)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = oauth2_token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    if (rc)
        return rc;
    rc = user_call(pc, tok->access_token, NULL, acct, err);
    if (rc)
        plat_tokens_clear(tok);
    return rc;
}

int x_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in, struct plat_tokens *tok,
                  struct plat_account *acct, struct plat_error *err)
{
    memset(tok, 0, sizeof *tok);
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    /* The callback's own parameters say which flow it ends. */
    if (in->code && *in->code)
        return finish_oauth2(pc, in, tok, acct, err);
    if (!oauth1_configured(pc->conf))
        return not_configured(err, 0);
    return finish_oauth1(pc, in, tok, acct, err);
}

int x_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
              struct plat_error *err)
{
    static const char what[] = "X token refresh";
    struct buf form;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(err, 0, sizeof *err);
    if (cur->kind != AUTH_OAUTH2) {
        plat_error_set(err, PLAT_FATAL, 0, "not_refreshable",
                       "%s: OAuth 1.0a tokens do not expire and are not refreshed", what);
        return CP_EINVAL;
    }
    if (!oauth2_configured(pc->conf))
        return not_configured(err, 1);
    if (plat_need_token(cur->refresh_token, "refresh", what, err))
        return CP_EINVAL;
    buf_init(&form, FORM_MAX);
    if (plat_refresh_form(&form, NULL, NULL, NULL, cur->refresh_token)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = oauth2_token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    return rc;
}

int x_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
            struct plat_error *err)
{
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (!cur->access_token || !*cur->access_token ||
        (cur->kind == AUTH_OAUTH1 && (!cur->token_secret || !*cur->token_secret))) {
        plat_error_set(err, PLAT_REAUTH, 0, "no_access_token",
                       "X user lookup: there are no credentials: reconnect the account");
        return CP_EINVAL;
    }
    if (cur->kind == AUTH_OAUTH1) {
        if (!oauth1_configured(pc->conf))
            return not_configured(err, 0);
        return user_call(pc, cur->access_token, cur->token_secret, acct, err);
    }
    return user_call(pc, cur->access_token, NULL, acct, err);
}
