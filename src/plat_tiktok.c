#include "config.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "pkce.h"
#include "plat_internal.h"
#include "videos.h"

/*
 * TikTok: Login Kit v2 (OAuth 2 with PKCE, client_key instead of
 * client_id, comma-separated scopes, rotating refresh tokens), the Display
 * API for the user, and the web site's passport endpoint for accounts
 * connected by session cookies.
 */

#define URL_MAX 8192
#define FORM_MAX (16 * 1024)
#define TOKEN_ANSWER "TikTok token response"

static const struct plat_rule tiktok_rows[] = {
    { 0, 0, "invalid_grant", NULL, PLAT_REAUTH, "the authorization is invalid, used or expired" },
    { 0, 0, "access_token_invalid", NULL, PLAT_REAUTH, "the access token is invalid or expired" },
    { 0, 0, "scope_not_authorized", NULL, PLAT_REAUTH, "a permission crosspost needs was not granted" },
    { 0, 0, "access_denied", NULL, PLAT_REAUTH, "the account owner refused access" },
    { 0, 0, "8", NULL, PLAT_REAUTH, "the web session has expired" },
    { 0, 0, "rate_limit_exceeded", NULL, PLAT_DEFER, "rate limited" },
    { 0, 0, "internal_error", NULL, PLAT_RETRY, "TikTok failed internally" },
    { 0, 0, "invalid_request", NULL, PLAT_FATAL, "the request was refused as invalid" },
    { 0, 0, "invalid_params", NULL, PLAT_FATAL, "the request parameters were refused" },
    { 0, 0, "invalid_client", NULL, PLAT_FATAL, "the app's client key or secret was refused" },
    { 0, 0, "unauthorized_client", NULL, PLAT_FATAL, "the app may not use this grant" },
    { 0, 0, "invalid_scope", NULL, PLAT_FATAL, "the app asked for scopes it may not have" },
    { 0, 0, "unsupported_grant_type", NULL, PLAT_FATAL, "the grant type was refused" },
    { 0, 0, "unsupported_response_type", NULL, PLAT_FATAL, "the response type was refused" },
    { 401, 401, NULL, NULL, PLAT_REAUTH, "the credentials were refused" },
    { 429, 429, NULL, NULL, PLAT_DEFER, "rate limited" },
    { 500, 599, NULL, NULL, PLAT_RETRY, "TikTok is failing" },
};

/* TikTok says what went wrong three ways: OAuth's {"error":"...",
 * "error_description"}, the Display API's {"error":{"code","message"}}
 * (code "ok" on success), and the web site's {"message":"error",
 * "data":{"error_code","description"}}. */
static void tiktok_fault(const struct http_response *resp, struct plat_fault *f)
{
    struct json_object *root = NULL, *e, *data;
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
            json_get_string(e, "code", &code);
            json_get_string(e, "message", &text);
            if (code && strcmp(code, "ok") == 0)
                code = NULL;
        }
    } else if (json_get_string(root, "message", &code) == 0 && strcmp(code, "error") == 0) {
        if (json_get_object(root, "data", &data) == 0) {
            const char *n = plat_json_text(data, "error_code", scratch, sizeof scratch);

            if (n)
                code = n;
            json_get_string(data, "description", &text);
        }
    } else {
        code = NULL;
    }
    if (code && *code) {
        f->found = 1;
        plat_copy_text(f->code, sizeof f->code, code);
        plat_text_clean(f->text, sizeof f->text, text);
    }
    json_object_put(root);
}

const struct plat_rules plat_tiktok_rules = {
    "TikTok", tiktok_rows, sizeof tiktok_rows / sizeof tiktok_rows[0], tiktok_fault, NULL,
};

/* ------------------------------------------------------------ parsers -- */

/* A URL that does not fit is dropped rather than cut. */
static void copy_url(char *dst, size_t cap, const char *src)
{
    if (src && strlen(src) < cap)
        snprintf(dst, cap, "%s", src);
    else
        dst[0] = '\0';
}

int tiktok_parse_tokens(const char *body, size_t len, struct plat_tokens *tok, char *open_id,
                        size_t cap, struct plat_error *err)
{
    return plat_parse_oauth2_tokens(body, len, TOKEN_ANSWER, tok, "open_id", open_id, cap, err);
}

int tiktok_parse_user(const char *body, size_t len, struct plat_account *acct,
                      struct plat_error *err)
{
    static const char what[] = "TikTok user info";
    struct json_object *root = NULL, *data, *user;
    const char *id = NULL, *s = NULL;
    int rc = 0;

    memset(acct, 0, sizeof *acct);
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_object(root, "data", &data) || json_get_object(data, "user", &user)) {
        rc = plat_error_unexpected(err, 200, what, "no data.user");
        goto out;
    }
    if (json_get_string(user, "open_id", &id) || !*id || strlen(id) >= sizeof acct->remote_id) {
        rc = plat_error_unexpected(err, 200, what, "no open_id");
        goto out;
    }
    snprintf(acct->remote_id, sizeof acct->remote_id, "%s", id);
    if (json_get_string(user, "username", &s) == 0)
        plat_copy_text(acct->username, sizeof acct->username, s);
    if (json_get_string(user, "display_name", &s) == 0)
        plat_copy_text(acct->display_name, sizeof acct->display_name, s);
    if (json_get_string(user, "avatar_url", &s) == 0)
        copy_url(acct->avatar_url, sizeof acct->avatar_url, s);
    if (json_get_string(user, "union_id", &s) == 0 && *s) {
        struct buf meta;

        buf_init(&meta, sizeof acct->meta - 1);
        if (buf_adds(&meta, "{\"union_id\":\"") == 0 &&
            buf_add_json_escaped(&meta, s, strlen(s)) == 0 && buf_adds(&meta, "\"}") == 0)
            snprintf(acct->meta, sizeof acct->meta, "%s", buf_str(&meta));
        buf_free(&meta);
    }
out:
    if (rc)
        memset(acct, 0, sizeof *acct);
    json_object_put(root);
    return rc;
}

int tiktok_parse_cookie_account(const char *body, size_t len, struct plat_account *acct,
                                struct plat_error *err)
{
    static const char what[] = "TikTok session check";
    struct json_object *root = NULL, *data;
    const char *msg = NULL, *id, *s = NULL;
    char scratch[32];
    int rc = 0;

    memset(acct, 0, sizeof *acct);
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_string(root, "message", &msg) || strcmp(msg, "success") != 0 ||
        json_get_object(root, "data", &data)) {
        rc = plat_error_unexpected(err, 200, what, "no successful data");
        goto out;
    }
    id = plat_json_text(data, "user_id_str", scratch, sizeof scratch);
    if (!id || !*id)
        id = plat_json_text(data, "user_id", scratch, sizeof scratch);
    if (!id || !*id || strlen(id) >= sizeof acct->remote_id) {
        rc = plat_error_unexpected(err, 200, what, "no user_id_str");
        goto out;
    }
    snprintf(acct->remote_id, sizeof acct->remote_id, "%s", id);
    if (json_get_string(data, "username", &s) == 0)
        plat_copy_text(acct->username, sizeof acct->username, s);
    if (json_get_string(data, "screen_name", &s) == 0)
        plat_copy_text(acct->display_name, sizeof acct->display_name, s);
    if (json_get_string(data, "avatar_url", &s) == 0)
        copy_url(acct->avatar_url, sizeof acct->avatar_url, s);
out:
    if (rc)
        memset(acct, 0, sizeof *acct);
    json_object_put(root);
    return rc;
}

int tiktok_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                         const char *challenge, struct buf *out)
{
    const char *pairs[] = {
        "client_key", c->tiktok_client_key, "scope", c->tiktok_scopes,
        "response_type", "code", "redirect_uri", redirect_uri, "state", state,
        "code_challenge", challenge, "code_challenge_method", "S256",
    };

    return plat_query_url(out, c->tiktok_auth_url, pairs, sizeof pairs / sizeof *pairs);
}

/* ------------------------------------------------------------ calls -- */

int tiktok_configured(const struct conf *c)
{
    return c && c->tiktok_client_key && *c->tiktok_client_key && c->tiktok_client_secret &&
           *c->tiktok_client_secret;
}

enum auth_kind tiktok_auth_kind(const struct conf *c)
{
    return AUTH_OAUTH2;
}

static int not_configured(struct plat_error *err)
{
    plat_error_set(err, PLAT_FATAL, 0, "not_configured",
                   "TikTok: the app's client key and secret are not configured");
    return CP_EINVAL;
}

/* POST the form to the token endpoint and read the tokens. */
static int token_call(struct plat_ctx *pc, const struct buf *form, const char *what,
                      struct plat_tokens *tok, struct plat_error *err)
{
    char open_id[PLAT_REMOTE_ID_MAX];
    struct buf url;
    int rc;

    buf_init(&url, URL_MAX);
    if (plat_url(&url, pc->conf->tiktok_api_url, "/v2/oauth/token/")) {
        buf_free(&url);
        return plat_no_memory(err, what);
    }
    rc = plat_token_call(pc, &(struct plat_token_req){
                             .rules = &plat_tiktok_rules, .url = buf_str(&url), .form = form,
                             .what = what, .answer = TOKEN_ANSWER, .id_key = "open_id",
                             .id = open_id, .id_cap = sizeof open_id },
                         tok, err);
    buf_free(&url);
    return rc;
}

/* The user fields of user.info.basic; username needs user.info.profile. */
#define BASIC_FIELDS "open_id,union_id,avatar_url,display_name"
#define PROFILE_SCOPE "user.info.profile"

/* GET /v2/user/info/ with the access token. */
static int user_call(struct plat_ctx *pc, const char *access_token, int with_username,
                     struct plat_account *acct, struct plat_error *err)
{
    static const char what[] = "TikTok user info";
    struct http_response resp;
    struct buf url, auth;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    if (plat_url(&url, pc->conf->tiktok_api_url, "/v2/user/info/?fields=%s",
                 with_username ? BASIC_FIELDS ",username" : BASIC_FIELDS) ||
        plat_bearer(&auth, access_token)) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    rc = plat_send(pc, &plat_tiktok_rules, "GET", buf_str(&url), buf_str(&auth), NULL, NULL,
                   what, &resp, err);
    if (!rc) {
        rc = tiktok_parse_user(resp.body.data, resp.body.len, acct, err);
        plat_response_free(&resp);
    }
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    return rc;
}

static int has_scope(const char *scopes, const char *scope)
{
    size_t n = strlen(scope);

    for (const char *p = scopes; p && *p;) {
        size_t len = strcspn(p, ", ");

        if (len == n && strncmp(p, scope, n) == 0)
            return 1;
        p += len;
        p += strspn(p, ", ");
    }
    return 0;
}

/*
 * The user, with the username when the grant allows it: asked for when
 * the granted scopes include user.info.profile, or, when they are not
 * known, tried first and dropped if TikTok refuses the field.
 */
static int user_info(struct plat_ctx *pc, const char *access_token, const char *scopes,
                     struct plat_account *acct, struct plat_error *err)
{
    int rc;

    if (scopes && *scopes)
        return user_call(pc, access_token, has_scope(scopes, PROFILE_SCOPE), acct, err);
    rc = user_call(pc, access_token, 1, acct, err);
    if (rc && strcmp(err->code, "scope_not_authorized") == 0)
        rc = user_call(pc, access_token, 0, acct, err);
    return rc;
}

/* GET the web site's account info with the session cookies. */
static int cookie_call(struct plat_ctx *pc, const char *cookies, struct plat_account *acct,
                       struct plat_error *err)
{
    static const char what[] = "TikTok session check";
    struct http_header headers[2] = { { "Cookie", NULL }, { "Accept", "application/json" } };
    struct http_request req;
    struct http_response resp;
    struct buf url, cookie;
    int rc;

    buf_init(&url, URL_MAX);
    buf_init(&cookie, PLAT_COOKIES_MAX);
    rc = tiktok_cookie_header(cookies, &cookie);
    if (rc == CP_ENOMEM) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    if (rc) {
        plat_error_set(err, PLAT_REAUTH, 0, "cookies_invalid",
                       "%s: the stored cookies hold no live TikTok session", what);
        goto out;
    }
    if (plat_url(&url, pc->conf->tiktok_web_url, "/passport/web/account/info/")) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    headers[0].value = buf_str(&cookie);
    http_request_init(&req, "GET", buf_str(&url));
    req.headers = headers;
    req.nheaders = 2;
    rc = plat_call(pc, &plat_tiktok_rules, &req, &resp, what, err);
    if (!rc) {
        rc = tiktok_parse_cookie_account(resp.body.data, resp.body.len, acct, err);
        plat_response_free(&resp);
    }
out:
    plat_buf_wipe(&cookie);
    buf_free(&url);
    return rc;
}

int tiktok_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                      struct auth_begin_out *out, struct plat_error *err)
{
    static const char what[] = "TikTok authorize";

    memset(out, 0, sizeof *out);
    buf_init(&out->url, URL_MAX);
    memset(err, 0, sizeof *err);
    if (!tiktok_configured(pc->conf))
        return not_configured(err);
    if (plat_begin_check(in, out, what, err))
        return CP_EINVAL;
    return plat_begin_pkce(pc, in, out, tiktok_authorize_url, what, err);
}

int tiktok_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                       struct plat_tokens *tok, struct plat_account *acct, struct plat_error *err)
{
    static const char what[] = "TikTok token exchange";
    const struct conf *c = pc->conf;
    struct buf form;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (!tiktok_configured(c))
        return not_configured(err);
    if (plat_finish_check(in, what, err))
        return CP_EINVAL;
    buf_init(&form, FORM_MAX);
    if (plat_code_form(&form, "client_key", c->tiktok_client_key, c->tiktok_client_secret, in,
                       0)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    if (rc)
        return rc;
    rc = user_info(pc, tok->access_token, tok->scopes, acct, err);
    if (rc) {
        plat_tokens_clear(tok);
        return rc;
    }
    return 0;
}

int tiktok_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                   struct plat_error *err)
{
    static const char what[] = "TikTok token refresh";
    const struct conf *c = pc->conf;
    struct buf form;
    int rc;

    memset(tok, 0, sizeof *tok);
    memset(err, 0, sizeof *err);
    if (cur->kind != AUTH_OAUTH2) {
        plat_error_set(err, PLAT_FATAL, 0, "not_refreshable",
                       "%s: cookie connections are checked, not refreshed", what);
        return CP_EINVAL;
    }
    if (!tiktok_configured(c))
        return not_configured(err);
    if (plat_need_token(cur->refresh_token, "refresh", what, err))
        return CP_EINVAL;
    buf_init(&form, FORM_MAX);
    if (plat_refresh_form(&form, "client_key", c->tiktok_client_key, c->tiktok_client_secret,
                          cur->refresh_token)) {
        plat_buf_wipe(&form);
        return plat_no_memory(err, what);
    }
    rc = token_call(pc, &form, what, tok, err);
    plat_buf_wipe(&form);
    return rc;
}

int tiktok_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                 struct plat_error *err)
{
    memset(acct, 0, sizeof *acct);
    memset(err, 0, sizeof *err);
    if (cur->kind == AUTH_COOKIE)
        return cookie_call(pc, cur->cookies, acct, err);
    if (plat_need_token(cur->access_token, "access", "TikTok user info", err))
        return CP_EINVAL;
    return user_info(pc, cur->access_token, NULL, acct, err);
}

/* ------------------------------------------------------- video list -- */

#define LIST_FIELDS "id,create_time,cover_image_url,share_url,video_description,duration," \
                    "height,width,title,embed_link"

static void listing_text(struct json_object *o, const char *key, char *dst, size_t cap)
{
    const char *s = NULL;

    if (json_get_string(o, key, &s) == 0)
        plat_copy_text(dst, cap, s);
}

static void listing_url(struct json_object *o, const char *key, char *dst, size_t cap)
{
    const char *s = NULL;

    dst[0] = '\0';
    if (json_get_string(o, key, &s) == 0)
        copy_url(dst, cap, s);
}

static int parse_video_list(const char *body, size_t len, struct video_listing *out, size_t cap,
                            size_t *n, long long *next_cursor, int *has_more,
                            struct plat_error *err)
{
    static const char what[] = "TikTok video list";
    struct json_object *root = NULL, *data, *videos, *more;
    char scratch[VIDEO_REMOTE_ID_MAX];
    size_t count;
    long long cursor = 0;
    int rc = 0;

    *n = 0;
    *next_cursor = 0;
    *has_more = 0;
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_object(root, "data", &data) || json_get_array(data, "videos", &videos)) {
        rc = plat_error_unexpected(err, 200, what, "no data.videos");
        goto out;
    }
    count = json_object_array_length(videos);
    if (count > cap) {
        rc = plat_error_unexpected(err, 200, what, "more videos than asked for");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        struct json_object *v = json_object_array_get_idx(videos, i);
        struct video_listing *l = &out[i];
        const char *id;

        memset(l, 0, sizeof *l);
        id = v && json_object_is_type(v, json_type_object)
                 ? plat_json_text(v, "id", scratch, sizeof scratch) : NULL;
        if (!id || !*id || strlen(id) >= sizeof l->remote_id) {
            rc = plat_error_unexpected(err, 200, what, "a video without an id");
            goto out;
        }
        snprintf(l->remote_id, sizeof l->remote_id, "%s", id);
        l->create_time_s = plat_json_seconds(v, "create_time");
        l->duration_s = plat_json_seconds(v, "duration");
        l->width = plat_json_seconds(v, "width");
        l->height = plat_json_seconds(v, "height");
        listing_text(v, "title", l->title, sizeof l->title);
        listing_text(v, "video_description", l->description, sizeof l->description);
        listing_url(v, "share_url", l->share_url, sizeof l->share_url);
        listing_url(v, "cover_image_url", l->cover_url, sizeof l->cover_url);
        listing_url(v, "embed_link", l->embed_link, sizeof l->embed_link);
    }
    /* The cursor is a time in ms, past plat_json_seconds()'s range. */
    if (json_object_object_get_ex(data, "cursor", &more) && more &&
        json_object_is_type(more, json_type_int))
        cursor = json_object_get_int64(more);
    if (json_object_object_get_ex(data, "has_more", &more) && more &&
        json_object_is_type(more, json_type_boolean))
        *has_more = json_object_get_boolean(more) ? 1 : 0;
    *n = count;
    *next_cursor = cursor;
out:
    json_object_put(root);
    return rc;
}

int tiktok_list_videos(struct plat_ctx *pc, const struct plat_creds *cur, long long cursor,
                       struct video_listing *out, size_t cap, size_t *n, long long *next_cursor,
                       int *has_more, struct plat_error *err)
{
    static const char what[] = "TikTok video list";
    struct http_response resp;
    struct buf url, auth, body;
    int rc;

    *n = 0;
    *next_cursor = 0;
    *has_more = 0;
    memset(err, 0, sizeof *err);
    if (cur->kind != AUTH_OAUTH2) {
        plat_error_set(err, PLAT_FATAL, 0, "listing_needs_oauth",
                       "%s: listing videos needs an OAuth connection; reconnect the account "
                       "through TikTok's login instead of cookies", what);
        return CP_EINVAL;
    }
    if (cap == 0 || cap > TIKTOK_LIST_PAGE_MAX || cursor < 0) {
        plat_error_set(err, PLAT_FATAL, 0, "invalid_params", "%s: a page holds 1 to %d videos",
                       what, TIKTOK_LIST_PAGE_MAX);
        return CP_EINVAL;
    }
    if (plat_need_token(cur->access_token, "access", what, err))
        return CP_EINVAL;
    buf_init(&url, URL_MAX);
    buf_init(&auth, PLAT_TOKEN_MAX + 16);
    buf_init(&body, 128);
    if (plat_url(&url, pc->conf->tiktok_api_url, "/v2/video/list/?fields=%s", LIST_FIELDS) ||
        plat_bearer(&auth, cur->access_token) ||
        (cursor > 0 ? buf_printf(&body, "{\"cursor\":%lld,\"max_count\":%zu}", cursor, cap)
                    : buf_printf(&body, "{\"max_count\":%zu}", cap))) {
        rc = plat_no_memory(err, what);
        goto out;
    }
    rc = plat_send(pc, &plat_tiktok_rules, "POST", buf_str(&url), buf_str(&auth),
                   "application/json", &body, what, &resp, err);
    if (!rc) {
        rc = parse_video_list(resp.body.data, resp.body.len, out, cap, n, next_cursor,
                                     has_more, err);
        plat_response_free(&resp);
    }
out:
    plat_buf_wipe(&auth);
    buf_free(&url);
    buf_free(&body);
    return rc;
}
