#include "config.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "pkce.h"
#include "plat_internal.h"

/*
 * YouTube through Google OAuth 2: offline access with prompt=consent so
 * the code exchange yields a refresh token, PKCE, and the channel of the
 * account (channels?mine=true).  A refresh answers without a refresh
 * token: the stored one stays.
 */

#define URL_MAX 8192
#define FORM_MAX (16 * 1024)

static const struct plat_rule google_rows[] = {
    { 0, 0, "invalid_grant", NULL, PLAT_REAUTH, "the authorization is invalid, expired or revoked" },
    { 0, 0, "authError", NULL, PLAT_REAUTH, "the credentials were refused" },
    { 0, 0, "insufficientPermissions", NULL, PLAT_REAUTH,
      "a permission crosspost needs was not granted" },
    { 0, 0, "quotaExceeded", NULL, PLAT_DEFER, "the project's daily quota is used up" },
    { 0, 0, "rateLimitExceeded", NULL, PLAT_DEFER, "rate limited" },
    { 0, 0, "userRateLimitExceeded", NULL, PLAT_DEFER, "the user's rate limit was reached" },
    { 0, 0, "dailyLimitExceeded", NULL, PLAT_DEFER, "the daily limit was reached" },
    { 0, 0, "uploadLimitExceeded", NULL, PLAT_DEFER, "the channel's daily upload limit was reached" },
    { 0, 0, "backendError", NULL, PLAT_RETRY, "Google's backend failed" },
    { 0, 0, "internalError", NULL, PLAT_RETRY, "Google failed internally" },
    { 0, 0, "invalid_client", NULL, PLAT_FATAL, "the app's client id or secret was refused" },
    { 0, 0, "unauthorized_client", NULL, PLAT_FATAL, "the app may not use this grant" },
    { 0, 0, "invalid_request", NULL, PLAT_FATAL, "the request was refused as invalid" },
    { 0, 0, "invalid_scope", NULL, PLAT_FATAL, "the app asked for scopes it may not have" },
    { 0, 0, "redirect_uri_mismatch", NULL, PLAT_FATAL, "the redirect URI is not registered" },
    { 0, 0, "unsupported_grant_type", NULL, PLAT_FATAL, "the grant type was refused" },
    { 0, 0, "youtubeSignupRequired", NULL, PLAT_FATAL, "the account has no YouTube channel" },
    { 0, 0, "forbidden", NULL, PLAT_REAUTH,
      "the request is forbidden: reconnecting grants the access it needs" },
    { 0, 0, "invalidTitle", NULL, PLAT_FATAL, "the title was refused" },
    { 0, 0, "invalidDescription", NULL, PLAT_FATAL, "the description was refused" },
    { 0, 0, "invalidTags", NULL, PLAT_FATAL, "the tags were refused" },
    { 0, 0, "invalidCategoryId", NULL, PLAT_FATAL, "the category was refused" },
    { 0, 0, "badRequest", NULL, PLAT_FATAL, "the request was refused as invalid" },
    { 401, 401, NULL, NULL, PLAT_REAUTH, "the credentials were refused" },
    { 429, 429, NULL, NULL, PLAT_DEFER, "rate limited" },
    { 500, 599, NULL, NULL, PLAT_RETRY, "Google is failing" },
};

/* OAuth's {"error":"invalid_grant","error_description"} or the APIs'
 * {"error":{"code","message","errors":[{"reason",...}],"status"}}. */
static void google_fault(const struct http_response *resp, struct plat_fault *f)
{
    struct json_object *root = NULL, *e, *errors;
    const char *code = NULL, *text = NULL;
    char scratch[32];

    memset(f, 0, sizeof *f);
    if (plat_json_parse(resp->body.data, resp->body.len, &root))
        return;
    if (json_object_object_get_ex(root, "error", &e) && e) {
        if (json_object_is_type(e, json_type_string)) {
            code = json_object_get_string(e);
            json_get_string(root, "error_description", &text);
        } else if (json_object_is_type(e, json_type_object)) {
            if (json_get_array(e, "errors", &errors) == 0 &&
                json_object_array_length(errors) > 0) {
                struct json_object *first = json_object_array_get_idx(errors, 0);

                if (json_object_is_type(first, json_type_object))
                    json_get_string(first, "reason", &code);
            }
            if (!code)
                json_get_string(e, "status", &code);
            if (!code)
                code = plat_json_text(e, "code", scratch, sizeof scratch);
            json_get_string(e, "message", &text);
        }
    }
    if (code && *code) {
        f->found = 1;
        plat_copy_text(f->code, sizeof f->code, code);
        plat_text_clean(f->text, sizeof f->text, text);
    }
    json_object_put(root);
}

#define GOOGLE_RATE_WAIT_MS (60 * 1000LL)

/* Retry-After when Google sends one; a rate limit (reason or 429) else
 * waits a minute.  Quotas (quotaExceeded, uploadLimitExceeded) say
 * nothing here: they free at midnight Pacific time, which the quota
 * ledger knows. */
static long long google_wait_ms(const struct http_response *resp, enum plat_outcome outcome)
{
    long long ms = plat_retry_after_ms(resp);
    struct plat_fault f;

    if (ms || outcome != PLAT_DEFER)
        return ms;
    google_fault(resp, &f);
    if (resp->status == 429 || (f.found && (strcmp(f.code, "rateLimitExceeded") == 0 ||
                                            strcmp(f.code, "userRateLimitExceeded") == 0)))
        return GOOGLE_RATE_WAIT_MS;
    return 0;
}

const struct plat_rules plat_google_rules = {
    "Google", google_rows, sizeof google_rows / sizeof google_rows[0], google_fault,
    google_wait_ms,
};

/* ------------------------------------------------------------ parsers -- */

int youtube_parse_tokens(const char *body, size_t len, struct plat_tokens *tok,
                         struct plat_error *err)
{
    return plat_parse_oauth2_tokens(body, len, "Google token response", tok, NULL, NULL, 0, err);
}

int youtube_parse_channel(const char *body, size_t len, struct plat_account *acct,
                          struct plat_error *err)
{
    static const char what[] = "YouTube channel lookup";
    struct json_object *root = NULL, *items, *ch, *snippet, *thumbs, *def;
    const char *id = NULL, *s = NULL;
    int rc = 0;

    memset(acct, 0, sizeof *acct);
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    rc = json_get_array(root, "items", &items);
    if (rc == CP_EINVAL) {
        rc = plat_error_unexpected(err, 200, what, "items is not an array");
        goto out;
    }
    if (rc || json_object_array_length(items) == 0) {
        plat_error_set(err, PLAT_FATAL, 200, "no_youtube_channel",
                       "%s: the Google account has no YouTube channel", what);
        rc = CP_ENOTFOUND;
        goto out;
    }
    ch = json_object_array_get_idx(items, 0);
    if (!json_object_is_type(ch, json_type_object) || json_get_string(ch, "id", &id) || !*id ||
        strlen(id) >= sizeof acct->remote_id) {
        rc = plat_error_unexpected(err, 200, what, "no channel id");
        goto out;
    }
    snprintf(acct->remote_id, sizeof acct->remote_id, "%s", id);
    if (json_get_object(ch, "snippet", &snippet) == 0) {
        if (json_get_string(snippet, "title", &s) == 0)
            plat_copy_text(acct->display_name, sizeof acct->display_name, s);
        if (json_get_string(snippet, "customUrl", &s) == 0)
            plat_copy_text(acct->username, sizeof acct->username, s[0] == '@' ? s + 1 : s);
        if (json_get_object(snippet, "thumbnails", &thumbs) == 0 &&
            json_get_object(thumbs, "default", &def) == 0 &&
            json_get_string(def, "url", &s) == 0 && strlen(s) < sizeof acct->avatar_url)
            snprintf(acct->avatar_url, sizeof acct->avatar_url, "%s", s);
    }
out:
    json_object_put(root);
    return rc;
}

int youtube_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                          const char *challenge, struct buf *out)
{
    const char *pairs[] = {
        "client_id", c->google_client_id, "redirect_uri", redirect_uri,
        "response_type", "code", "scope", c->youtube_scopes, "access_type", "offline",
        "prompt", "consent", "include_granted_scopes", "true", "state", state,
        "code_challenge", challenge, "code_challenge_method", "S256",
    };

    return plat_query_url(out, c->google_auth_url, pairs, sizeof pairs / sizeof *pairs);
}

/* ------------------------------------------------------------ calls -- */

int youtube_configured(const struct conf *c)
{
    return c && c->google_client_id && *c->google_client_id && c->google_client_secret &&
           *c->google_client_secret;
}

enum auth_kind youtube_auth_kind(const struct conf *c)
{
    return AUTH_OAUTH2;
}

static int not_configured(struct plat_error *err)
{
    plat_error_set(err, PLAT_FATAL, 0, "not_configured",
                   "YouTube: the Google client id and secret are not configured");
    return CP_EINVAL;
}

static int token_call(struct plat_ctx *pc, const struct buf *form, const char *what,
                      struct plat_tokens *tok, struct plat_error *err)
{
    if (!pc->conf->google_token_url || !*pc->conf->google_token_url)
        return not_configured(err);
    return plat_token_call(pc, &(struct plat_token_req){
                               .rules = &plat_google_rules, .url = pc->conf->google_token_url,
                               .form = form, .what = what },
                           tok, err);
}

static int channel_call(struct plat_ctx *pc, const char *token, struct plat_account *acct,
                        struct plat_error *err)
{
    static const char what[] = "YouTube channel lookup";
    struct http_response resp;
    struct buf url, auth;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (plat_url(&url, pc->conf->youtube_api_url, "/youtube/v3/channels?part=snippet&mine=true") ||
        plat_bearer(&auth, token)) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    rc = plat_send(pc, &plat_google_rules, "GET", buf_str(&url), buf_str(&auth), NULL, NULL,
                   what, &resp, err);
    if (!rc) {
        rc = youtube_parse_channel(resp.body.data, resp.body.len, acct, err);
        plat_response_free(&resp);
    }
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    return rc;
}

int youtube_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                       struct auth_begin_out *out, struct plat_error *err)
{
    static const char what[] = "Google authorize";

    memset(out, 0, sizeof *out);
    buf_init(&out->url, URL_MAX);
    memset(err, 0, sizeof *err);
    if (!youtube_configured(pc->conf))
        return not_configured(err);
    if (plat_begin_check(in, out, what, err))
        return CP_EINVAL;
    return plat_begin_pkce(pc, in, out, youtube_authorize_url, what, err);
}

int youtube_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                        struct plat_tokens *tok, struct plat_account *acct,
                        struct plat_error *err)
{
    static const char what[] = "Google token exchange";
    const struct conf *c = pc->conf;
    struct buf form;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (!youtube_configured(c))
        return not_configured(err);
    if (plat_finish_check(in, what, err))
        return CP_EINVAL;
    buf_init(&form, FORM_MAX);
    if (plat_code_form(&form, "client_id", c->google_client_id, c->google_client_secret, in, 0)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    if (rc)
        return rc;
    rc = channel_call(pc, tok->access_token, acct, err);
    if (rc)
        plat_tokens_clear(tok);
    return rc;
}

int youtube_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                    struct plat_error *err)
{
    static const char what[] = "Google token refresh";
    const struct conf *c = pc->conf;
    struct buf form;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(err, 0, sizeof *err);
    if (!youtube_configured(c))
        return not_configured(err);
    if (plat_need_token(cur->kind == AUTH_OAUTH2 ? cur->refresh_token : NULL, "refresh", what,
                        err))
        return CP_EINVAL;
    buf_init(&form, FORM_MAX);
    if (plat_refresh_form(&form, "client_id", c->google_client_id, c->google_client_secret,
                          cur->refresh_token)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    return rc;
}

int youtube_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                  struct plat_error *err)
{
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (plat_need_token(cur->access_token, "access", "YouTube check", err))
        return CP_EINVAL;
    return channel_call(pc, cur->access_token, acct, err);
}
