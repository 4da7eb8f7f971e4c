#include "config.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "plat_internal.h"

/*
 * Instagram through Facebook Login: the code buys a short-lived user
 * token, fb_exchange_token turns it into a long-lived one (about 60 days),
 * and the account is the Instagram business account of the first of the
 * user's pages that has one.  Refreshing is the same exchange made with
 * the current long-lived token.  Graph calls carry the token in an
 * Authorization header; only the token exchanges need it in the query,
 * which the HTTP layer never logs.
 */

#define URL_MAX 8192
#define PAGES_MAX 10                  /* pages of /me/accounts read looking for the account */

/*
 * Graph's codes.  Subcode rows come before the row of their code.  A
 * missing permission (10, 200) is PLAT_REAUTH: reconnecting shows the
 * consent screen again, where the user grants it; the other permission
 * codes (201-299) are about the object or the app and stay PLAT_FATAL.
 */
static const struct plat_rule graph_rows[] = {
    { 0, 0, "190", NULL, PLAT_REAUTH, "the access token is invalid, expired or revoked" },
    { 0, 0, "102", NULL, PLAT_REAUTH, "the session is invalid" },
    { 0, 0, "9007", "2207027", PLAT_RETRY, "the media is not ready for publishing yet" },
    { 0, 0, "9007", NULL, PLAT_RETRY, "the media is not ready yet" },
    { 0, 0, "9", "2207042", PLAT_DEFER, "the account's publishing limit was reached" },
    { 0, 0, "1", NULL, PLAT_RETRY, "Facebook had a transient error" },
    { 0, 0, "2", NULL, PLAT_RETRY, "Facebook is temporarily unavailable" },
    { 0, 0, "4", NULL, PLAT_DEFER, "the app's rate limit was reached" },
    { 0, 0, "17", NULL, PLAT_DEFER, "the user's rate limit was reached" },
    { 0, 0, "32", NULL, PLAT_DEFER, "the page's rate limit was reached" },
    { 0, 0, "613", NULL, PLAT_DEFER, "a rate limit was reached" },
    { 0, 0, "80000-80099", NULL, PLAT_DEFER, "the business use case rate limit was reached" },
    { 0, 0, "10", NULL, PLAT_REAUTH, "a permission is missing: reconnecting grants it" },
    { 0, 0, "200", NULL, PLAT_REAUTH, "a permission is missing: reconnecting grants it" },
    { 0, 0, "201-299", NULL, PLAT_FATAL, "a permission is missing" },
    { 0, 0, "368", NULL, PLAT_FATAL, "blocked by Facebook's policy" },
    { 0, 0, "100", "2207026", PLAT_FATAL, "the video format is not supported" },
    { 0, 0, "100", "2207023", PLAT_FATAL, "the media type is not supported" },
    { 0, 0, "100", "2207018", PLAT_FATAL, "the caption is too long or has too many hashtags" },
    { 0, 0, "100", NULL, PLAT_FATAL, "a parameter was refused" },
    { 429, 429, NULL, NULL, PLAT_DEFER, "rate limited" },
    { 500, 599, NULL, NULL, PLAT_RETRY, "Facebook is failing" },
};

/* {"error":{"message","type","code","error_subcode","fbtrace_id"}} */
static void graph_fault(const struct http_response *resp, struct plat_fault *f)
{
    struct json_object *root = NULL, *e;
    const char *code, *sub, *text = NULL;
    char s1[32], s2[32];

    memset(f, 0, sizeof *f);
    if (plat_json_parse(resp->body.data, resp->body.len, &root))
        return;
    if (json_get_object(root, "error", &e) == 0) {
        code = plat_json_text(e, "code", s1, sizeof s1);
        if (!code)
            code = plat_json_text(e, "type", s1, sizeof s1);
        sub = plat_json_text(e, "error_subcode", s2, sizeof s2);
        json_get_string(e, "message", &text);
        f->found = 1;
        plat_copy_text(f->code, sizeof f->code, code ? code : "error");
        plat_copy_text(f->subcode, sizeof f->subcode, sub);
        plat_text_clean(f->text, sizeof f->text, text);
    }
    json_object_put(root);
}

long long graph_usage_wait_ms(const struct http_response *resp)
{
    struct buf v;
    struct json_object *root = NULL;
    long long minutes = 0;

    buf_init(&v, 16 * 1024);
    if (http_response_header(resp, "x-business-use-case-usage", &v) == 0 && v.len &&
        plat_json_parse(v.data, v.len, &root) == 0) {
        /* {"<business id>":[{"type","call_count",...,"estimated_time_to_regain_access"}]} */
        json_object_object_foreach(root, key, uses) {
            (void)key;
            if (!json_object_is_type(uses, json_type_array))
                continue;
            for (size_t i = 0; i < json_object_array_length(uses); i++) {
                struct json_object *u = json_object_array_get_idx(uses, i);
                long long m = plat_json_seconds(u, "estimated_time_to_regain_access");

                if (m > minutes)
                    minutes = m;
            }
        }
        json_object_put(root);
    }
    buf_free(&v);
    return minutes > 0 && minutes <= 7 * 24 * 60 ? minutes * 60 * 1000 : 0;
}

#define GRAPH_DEFER_DEFAULT_MS (15 * 60 * 1000LL)
#define GRAPH_USAGE_FULL_MS (60 * 60 * 1000LL)
#define GRAPH_NOT_READY_MS (10 * 1000LL)

/* The highest of x-app-usage's percentages, -1 when there is none. */
static long long app_usage_percent(const struct http_response *resp)
{
    static const char *const keys[] = { "call_count", "total_time", "total_cputime" };
    struct buf v;
    struct json_object *root = NULL;
    long long high = -1;

    buf_init(&v, 4096);
    if (http_response_header(resp, "x-app-usage", &v) == 0 && v.len &&
        plat_json_parse(v.data, v.len, &root) == 0) {
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            struct json_object *n;

            if (json_object_object_get_ex(root, keys[i], &n) &&
                (json_object_is_type(n, json_type_int) ||
                 json_object_is_type(n, json_type_double))) {
                long long pct = (long long)json_object_get_double(n);

                if (pct > high)
                    high = pct;
            }
        }
        json_object_put(root);
    }
    buf_free(&v);
    return high;
}

/*
 * Waits: a rate limit lasts the business use case's
 * estimated_time_to_regain_access when Graph says it; else an app usage
 * at 100 % frees within the hour it is counted over; else Retry-After;
 * else 15 minutes.  Media not ready (9007) is polled again after 10 s.
 */
static long long graph_wait_ms(const struct http_response *resp, enum plat_outcome outcome)
{
    long long ms;

    if (outcome == PLAT_DEFER) {
        ms = graph_usage_wait_ms(resp);
        if (!ms && app_usage_percent(resp) >= 100)
            ms = GRAPH_USAGE_FULL_MS;
        if (!ms)
            ms = plat_retry_after_ms(resp);
        return ms ? ms : GRAPH_DEFER_DEFAULT_MS;
    }
    ms = plat_retry_after_ms(resp);
    if (!ms) {
        struct plat_fault f;

        graph_fault(resp, &f);
        if (f.found && strcmp(f.code, "9007") == 0)
            ms = GRAPH_NOT_READY_MS;
    }
    return ms;
}

int plat_graph_usage_high(const struct http_response *resp, int percent, long long *wait_ms)
{
    long long ms;

    *wait_ms = 0;
    if (percent <= 0 || app_usage_percent(resp) < percent)
        return 0;
    ms = graph_usage_wait_ms(resp);
    *wait_ms = ms ? ms : GRAPH_USAGE_FULL_MS;
    return 1;
}

const struct plat_rules plat_graph_rules = {
    "Facebook", graph_rows, sizeof graph_rows / sizeof graph_rows[0], graph_fault, graph_wait_ms,
};

/* ------------------------------------------------------------ parsers -- */

int instagram_parse_me(const char *body, size_t len, char *id, size_t cap, struct plat_error *err)
{
    static const char what[] = "Facebook user lookup";
    struct json_object *root = NULL;
    const char *s;
    char scratch[32];
    int rc = 0;

    id[0] = '\0';
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    s = plat_json_text(root, "id", scratch, sizeof scratch);
    if (!s || !*s || strlen(s) >= cap)
        rc = plat_error_unexpected(err, 200, what, "no id");
    else
        snprintf(id, cap, "%s", s);
    json_object_put(root);
    return rc;
}

static int add_meta(struct buf *m, const char *key, const char *value)
{
    int rc = buf_adds(m, m->len ? ",\"" : "{\"");

    rc = rc ? rc : buf_adds(m, key);
    rc = rc ? rc : buf_adds(m, "\":\"");
    rc = rc ? rc : buf_add_json_escaped(m, value, strlen(value));
    return rc ? rc : buf_addc(m, '"');
}

/* The account of one page's instagram_business_account. */
static int take_account(struct json_object *page, struct json_object *ig,
                        const char *facebook_user_id, struct plat_account *acct)
{
    const char *id, *page_id, *s = NULL;
    char s1[32], s2[32];
    struct buf meta;
    int rc;

    id = plat_json_text(ig, "id", s1, sizeof s1);
    page_id = plat_json_text(page, "id", s2, sizeof s2);
    if (!id || !*id || strlen(id) >= sizeof acct->remote_id || !page_id || !*page_id)
        return CP_EPROTO;
    snprintf(acct->remote_id, sizeof acct->remote_id, "%s", id);
    if (json_get_string(ig, "username", &s) == 0)
        plat_copy_text(acct->username, sizeof acct->username, s);
    if (json_get_string(ig, "name", &s) == 0 && *s)
        plat_copy_text(acct->display_name, sizeof acct->display_name, s);
    else
        plat_copy_text(acct->display_name, sizeof acct->display_name, acct->username);
    if (json_get_string(ig, "profile_picture_url", &s) == 0 && strlen(s) < sizeof acct->avatar_url)
        snprintf(acct->avatar_url, sizeof acct->avatar_url, "%s", s);
    buf_init(&meta, sizeof acct->meta - 1);
    rc = add_meta(&meta, "page_id", page_id);
    if (!rc && facebook_user_id && *facebook_user_id)
        rc = add_meta(&meta, "facebook_user_id", facebook_user_id);
    if (!rc)
        rc = buf_addc(&meta, '}');
    if (!rc)
        snprintf(acct->meta, sizeof acct->meta, "%s", buf_str(&meta));
    buf_free(&meta);
    return rc ? CP_EPROTO : 0;
}

int instagram_parse_pages(const char *body, size_t len, const char *facebook_user_id,
                          struct plat_account *acct, char *after, size_t after_cap,
                          struct plat_error *err)
{
    static const char what[] = "Facebook pages lookup";
    struct json_object *root = NULL, *data, *paging, *cursors;
    const char *next = NULL, *cursor = NULL;
    int rc = CP_ENOTFOUND;

    memset(acct, 0, sizeof *acct);
    if (after_cap)
        after[0] = '\0';
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_array(root, "data", &data)) {
        rc = plat_error_unexpected(err, 200, what, "no data");
        goto out;
    }
    for (size_t i = 0; i < json_object_array_length(data); i++) {
        struct json_object *page = json_object_array_get_idx(data, i), *ig;

        if (!json_object_is_type(page, json_type_object) ||
            json_get_object(page, "instagram_business_account", &ig))
            continue;
        if (take_account(page, ig, facebook_user_id, acct)) {
            memset(acct, 0, sizeof *acct);
            rc = plat_error_unexpected(err, 200, what, "a page's Instagram account has no id");
        } else {
            rc = 0;
        }
        goto out;
    }
    /* Graph leaves "next" out on the last page, though cursors remain. */
    if (json_get_object(root, "paging", &paging) == 0 &&
        json_get_string(paging, "next", &next) == 0 && *next &&
        json_get_object(paging, "cursors", &cursors) == 0 &&
        json_get_string(cursors, "after", &cursor) == 0 && strlen(cursor) < after_cap)
        snprintf(after, after_cap, "%s", cursor);
    plat_error_set(err, PLAT_FATAL, 200, "no_instagram_account",
                   "%s: none of the Facebook pages has an Instagram business account", what);
out:
    json_object_put(root);
    return rc;
}

int instagram_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                            struct buf *out)
{
    const char *pairs[] = {
        "client_id", c->facebook_app_id, "redirect_uri", redirect_uri, "state", state,
        "scope", c->instagram_scopes, "response_type", "code",
    };
    int rc = plat_url(out, c->facebook_auth_url, "/%s/dialog/oauth?", c->facebook_graph_version);

    if (!rc)
        rc = plat_form_pairs(out, pairs, sizeof pairs / sizeof *pairs);
    return rc;
}

/* ------------------------------------------------------------ calls -- */

int instagram_configured(const struct conf *c)
{
    return c && c->facebook_app_id && *c->facebook_app_id && c->facebook_app_secret &&
           *c->facebook_app_secret;
}

enum auth_kind instagram_auth_kind(const struct conf *c)
{
    return AUTH_OAUTH2;
}

static int not_configured(struct plat_error *err)
{
    plat_error_set(err, PLAT_FATAL, 0, "not_configured",
                   "Instagram: the Meta app id and secret are not configured");
    return CP_EINVAL;
}

/*
 * GET /{ver}/oauth/access_token with the query built by the caller after
 * client_id and client_secret (both added here), into tok.
 */
static int token_call(struct plat_ctx *pc, const char *const *params, size_t nparams,
                      const char *what, struct plat_tokens *tok, struct plat_error *err)
{
    const struct conf *c = pc->conf;
    struct buf url;
    int rc;

    buf_init(&url, URL_MAX);
    rc = plat_url(&url, c->facebook_graph_url, "/%s/oauth/access_token?",
                  c->facebook_graph_version);
    if (!rc)
        rc = plat_form_add(&url, "client_id", c->facebook_app_id);
    if (!rc)
        rc = plat_form_pairs(&url, params, nparams);
    if (!rc)
        rc = plat_form_add(&url, "client_secret", c->facebook_app_secret);
    if (rc) {
        plat_buf_wipe(&url);
        return plat_no_memory(err, what);
    }
    rc = plat_token_call(pc, &(struct plat_token_req){
                             .rules = &plat_graph_rules, .url = buf_str(&url), .what = what },
                         tok, err);
    plat_buf_wipe(&url);
    return rc;
}

/* A short-lived (or the current long-lived) token for a new long-lived one. */
static int exchange_long_lived(struct plat_ctx *pc, const char *token, const char *what,
                               struct plat_tokens *tok, struct plat_error *err)
{
    const char *params[] = { "grant_type", "fb_exchange_token", "fb_exchange_token", token };

    return token_call(pc, params, 4, what, tok, err);
}

/* A Graph GET with the token in the Authorization header. */
static int graph_get(struct plat_ctx *pc, const char *token, const struct buf *url,
                     const char *what, struct http_response *resp, struct plat_error *err)
{
    struct buf auth;
    int rc;

    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (plat_bearer(&auth, token)) {
        plat_buf_wipe(&auth);
        return plat_no_memory(err, what);
    }
    rc = plat_send(pc, &plat_graph_rules, "GET", buf_str(url), buf_str(&auth), NULL, NULL, what,
                   resp, err);
    plat_buf_wipe(&auth);
    return rc;
}

/* The Facebook user, then the first page with an Instagram business account. */
static int find_account(struct plat_ctx *pc, const char *token, struct plat_account *acct,
                        struct plat_error *err)
{
    const struct conf *c = pc->conf;
    struct http_response resp;
    char user_id[PLAT_REMOTE_ID_MAX], after[1024] = "";
    struct buf url;
    int rc;

    buf_init(&url, URL_MAX);
    if (plat_url(&url, c->facebook_graph_url, "/%s/me?fields=id,name",
                 c->facebook_graph_version)) {
        rc = plat_no_memory(err, "Facebook user lookup");
        goto out;
    }
    rc = graph_get(pc, token, &url, "Facebook user lookup", &resp, err);
    if (rc)
        goto out;
    rc = instagram_parse_me(resp.body.data, resp.body.len, user_id, sizeof user_id, err);
    plat_response_free(&resp);
    if (rc)
        goto out;

    for (int page = 0; page < PAGES_MAX; page++) {
        buf_reset(&url);
        rc = plat_url(&url, c->facebook_graph_url, "/%s/me/accounts?", c->facebook_graph_version);
        if (!rc)
            rc = plat_form_add(&url, "fields",
                               "id,name,instagram_business_account{id,username,name,"
                               "profile_picture_url}");
        if (!rc)
            rc = plat_form_add(&url, "limit", "100");
        if (!rc && after[0])
            rc = plat_form_add(&url, "after", after);
        if (rc) {
            rc = plat_no_memory(err, "Facebook pages lookup");
            goto out;
        }
        rc = graph_get(pc, token, &url, "Facebook pages lookup", &resp, err);
        if (rc)
            goto out;
        rc = instagram_parse_pages(resp.body.data, resp.body.len, user_id, acct, after,
                                   sizeof after, err);
        plat_response_free(&resp);
        if (rc != CP_ENOTFOUND || !after[0])
            goto out;
    }
out:
    buf_free(&url);
    return rc;
}

int instagram_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                         struct auth_begin_out *out, struct plat_error *err)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->url, URL_MAX);
    memset(err, 0, sizeof *err);
    if (!instagram_configured(pc->conf))
        return not_configured(err);
    if (plat_begin_check(in, out, "Facebook Login", err))
        return CP_EINVAL;
    if (instagram_authorize_url(pc->conf, in->state, in->redirect_uri, &out->url)) {
        buf_free(&out->url);
        return plat_no_memory(err, "Facebook Login");
    }
    snprintf(out->state_key, sizeof out->state_key, "%s", in->state);
    return 0;
}

int instagram_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                          struct plat_tokens *tok, struct plat_account *acct,
                          struct plat_error *err)
{
    struct plat_tokens short_lived;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (!instagram_configured(pc->conf))
        return not_configured(err);
    if (plat_finish_check(in, "Facebook code exchange", err))
        return CP_EINVAL;
    {
        const char *params[] = { "redirect_uri", in->redirect_uri ? in->redirect_uri : "",
                                 "code", in->code };

        rc = token_call(pc, params, 4, "Facebook code exchange", &short_lived, err);
    }
    if (rc)
        return rc;
    rc = exchange_long_lived(pc, short_lived.access_token, "Facebook long-lived token exchange",
                             tok, err);
    plat_tokens_clear(&short_lived);
    if (rc)
        return rc;
    /* Facebook user tokens come without a refresh token: the long-lived
     * token itself is exchanged again before it expires. */
    plat_tokens_set(&tok->refresh_token, NULL);
    rc = find_account(pc, tok->access_token, acct, err);
    if (rc) {
        plat_tokens_clear(tok);
        memset(acct, 0, sizeof *acct);
    }
    return rc;
}

int instagram_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                      struct plat_error *err)
{
    static const char what[] = "Facebook token refresh";
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(err, 0, sizeof *err);
    if (!instagram_configured(pc->conf))
        return not_configured(err);
    if (plat_need_token(cur->kind == AUTH_OAUTH2 ? cur->access_token : NULL, "access", what, err))
        return CP_EINVAL;
    rc = exchange_long_lived(pc, cur->access_token, what, tok, err);
    if (!rc)
        plat_tokens_set(&tok->refresh_token, NULL);
    return rc;
}

int instagram_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                    struct plat_error *err)
{
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (plat_need_token(cur->access_token, "access", "Instagram check", err))
        return CP_EINVAL;
    return find_account(pc, cur->access_token, acct, err);
}
