/*
 * plat_internal.h - what the platform clients share, for platforms.c,
 * plat_*.c and their unit tests only.
 *
 * The pure parts of every client live here so tests can drive them with
 * canned responses: the classification tables, the response parsers and
 * the authorize URL builders.  Nothing in here sends a request except
 * plat_call(), and the client entry points named in platforms[].
 */
#ifndef CP_PLAT_INTERNAL_H
#define CP_PLAT_INTERNAL_H

#include <stddef.h>

#include <json-c/json.h>

#include "buf.h"
#include "http.h"
#include "pkce.h"
#include "platforms.h"

/* -------------------------------------------------- classification -- */

/*
 * One row of a platform's classification table.  A response matches when
 * its status is in [status_min, status_max] (0, 0 = any status), its code
 * equals code (NULL = any; "LO-HI" = a number in that range) and its
 * subcode equals subcode (NULL = any).  Rows with a code only match
 * responses whose body is the platform's error JSON; the first matching
 * row wins, so code rows come before the status rows that catch the rest.
 */
struct plat_rule {
    long status_min, status_max;
    const char *code;
    const char *subcode;
    enum plat_outcome outcome;
    const char *meaning;              /* for people: what went wrong */
};

/* A failure as the platform described it in the body of a response. */
struct plat_fault {
    int found;                        /* the body is the platform's error JSON */
    char code[PLAT_CODE_MAX];         /* "invalid_grant", "190", "authError", ... */
    char subcode[PLAT_CODE_MAX];      /* Graph error_subcode, "" otherwise */
    char text[PLAT_MESSAGE_MAX];      /* the platform's words, cleaned of anything token-like */
};

struct plat_rules {
    const char *label;                /* "TikTok", "Facebook", "Google", "X" */
    const struct plat_rule *rows;
    size_t count;
    /* Read the platform's error out of a response; f->found = 0 when the
     * body holds none (a success, or not the platform's JSON). */
    void (*fault)(const struct http_response *resp, struct plat_fault *f);
    /* How long to wait before trying again (ms, 0 = unknown), for a
     * response classified outcome (PLAT_RETRY or PLAT_DEFER). */
    long long (*wait_ms)(const struct http_response *resp, enum plat_outcome outcome);
};

extern const struct plat_rules plat_tiktok_rules;
extern const struct plat_rules plat_graph_rules;     /* Facebook / Instagram */
extern const struct plat_rules plat_google_rules;    /* Google OAuth, YouTube */
extern const struct plat_rules plat_x_rules;

/* The first row of rules matching (status, code, subcode); code NULL
 * matches only the rows without a code.  NULL when none does. */
const struct plat_rule *plat_rule_find(const struct plat_rules *rules, long status,
                                       const char *code, const char *subcode);

/*
 * Classify a response that arrived.  PLAT_OK (and *err cleared) for a 2xx
 * without an error in the body; otherwise *err is filled: the row's
 * outcome, or with no row PLAT_RETRY for 5xx and PLAT_FATAL for the rest.
 * what names the call in the message ("TikTok token exchange").
 */
enum plat_outcome plat_classify(const struct plat_rules *rules, const struct http_response *resp,
                                const char *what, struct plat_error *err);

/* The CP_E* code a client returns for an outcome: CP_ERETRY for
 * PLAT_RETRY and PLAT_DEFER, CP_EINVAL for PLAT_REAUTH, CP_EPROTO for
 * PLAT_FATAL, 0 for PLAT_OK.  Callers decide by err->outcome. */
int plat_outcome_rc(enum plat_outcome o);

/*
 * Send req and classify what comes back.  0 when the platform answered
 * with success (resp holds it; the caller frees it with
 * plat_response_free); otherwise *err is filled and the return is the
 * transport error or plat_outcome_rc().  resp is freed on failure.
 */
int plat_call(struct plat_ctx *pc, const struct plat_rules *rules, const struct http_request *req,
              struct http_response *resp, const char *what, struct plat_error *err);

/* plat_call() for the usual request: method and url, an Authorization
 * header value (NULL = none), Accept: application/json, and a body of
 * content_type (body NULL = none). */
int plat_send(struct plat_ctx *pc, const struct plat_rules *rules, const char *method,
              const char *url, const char *authorization, const char *content_type,
              const struct buf *body, const char *what, struct http_response *resp,
              struct plat_error *err);

/* "Bearer <token>" into b (a buffer of at least PLAT_TOKEN_MAX + 16). */
int plat_bearer(struct buf *b, const char *token);

/* http_response_free after wiping the body (it may hold tokens). */
void plat_response_free(struct http_response *resp);

/* Fill *err as PLAT_FATAL "unexpected_response": a success whose body
 * is not what the platform documents.  Returns CP_EPROTO. */
int plat_error_unexpected(struct plat_error *err, long status, const char *what,
                          const char *missing);

/* ------------------------------------------------------------ helpers -- */

/* Parse a platform's JSON (size, depth and string limits for responses);
 * CP_EPARSE/CP_ETOOBIG when it is not JSON or too big, CP_EINVAL when
 * it is not an object. */
int plat_json_parse(const char *body, size_t len, struct json_object **out);

/* A member as text: a string, or an integer written in decimal.  NULL
 * when absent or of another type. */
const char *plat_json_text(struct json_object *obj, const char *key, char *scratch, size_t cap);

/* A member as a non-negative integer: a JSON integer or a string of
 * digits (some platforms send either).  0 when absent or unreadable. */
long long plat_json_seconds(struct json_object *obj, const char *key);

/* Copy src into dst[cap], cut at a UTF-8 character boundary. */
void plat_copy_text(char *dst, size_t cap, const char *src);

/* Copy a platform's words for a message: control characters become
 * spaces and any long token-like run is replaced by "[redacted]". */
void plat_text_clean(char *dst, size_t cap, const char *src);

/* Append name=value (both percent-encoded) to a query or form body,
 * with '&' before it when b is not empty (or the last char is not '?'). */
int plat_form_add(struct buf *b, const char *name, const char *value);

/* The value of name in an application/x-www-form-urlencoded body,
 * decoded into out[cap].  CP_ENOTFOUND, CP_ETOOBIG, CP_EINVAL (bad escape). */
int plat_form_get(const char *body, size_t len, const char *name, char *out, size_t cap);

/* base (without its trailing '/') followed by the formatted path. */
int plat_url(struct buf *b, const char *base, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Wipe and free a buffer that held a secret. */
void plat_buf_wipe(struct buf *b);

/* A fresh PKCE verifier into out->verifier and its S256 challenge. */
int plat_pkce(struct auth_begin_out *out, char challenge[PKCE_CHALLENGE_LEN + 1]);

/* Fill *err as PLAT_RETRY "no_memory" for what.  Returns CP_ENOMEM. */
int plat_no_memory(struct plat_error *err, const char *what);

/* 0 when token is set; otherwise CP_EINVAL with *err PLAT_REAUTH
 * "no_<kind>_token" ("what: there is no <kind> token: reconnect the
 * account"), kind being "access" or "refresh". */
int plat_need_token(const char *token, const char *kind, const char *what,
                    struct plat_error *err);

/* plat_form_add for each name, value in pairs[0..npairs). */
int plat_form_pairs(struct buf *b, const char *const *pairs, size_t npairs);

/* base, '?' unless base has one, then the pairs: an authorize URL.
 * CP_EINVAL when base is empty. */
int plat_query_url(struct buf *out, const char *base, const char *const *pairs, size_t npairs);

/* 0 when in has a state that fits out->state_key and a redirect URI;
 * otherwise CP_EINVAL with *err PLAT_FATAL "bad_request" for what. */
int plat_begin_check(const struct auth_begin_in *in, const struct auth_begin_out *out,
                     const char *what, struct plat_error *err);

/* A platform's authorize URL builder (tiktok_authorize_url, ...). */
typedef int (*plat_authorize_fn)(const struct conf *c, const char *state,
                                 const char *redirect_uri, const char *challenge,
                                 struct buf *out);

/* The PKCE end of auth_begin: a verifier into out, the URL build makes
 * with its challenge, and in->state as out->state_key.  On failure
 * out->url is freed, the verifier wiped and *err set by plat_no_memory. */
int plat_begin_pkce(struct plat_ctx *pc, const struct auth_begin_in *in,
                    struct auth_begin_out *out, plat_authorize_fn build, const char *what,
                    struct plat_error *err);

/* 0 when in has an authorization code; otherwise CP_EINVAL with *err
 * PLAT_FATAL "bad_request" for what. */
int plat_finish_check(const struct auth_finish_in *in, const char *what, struct plat_error *err);

/*
 * OAuth 2 token request forms.  With id_name (the platform's name for
 * the client id: "client_id", TikTok's "client_key") the client id and
 * secret come first; NULL leaves them to the caller.  A code exchange
 * sends code_verifier always when pkce_required, else when in has one.
 */
int plat_code_form(struct buf *form, const char *id_name, const char *client_id,
                   const char *client_secret, const struct auth_finish_in *in, int pkce_required);
int plat_refresh_form(struct buf *form, const char *id_name, const char *client_id,
                      const char *client_secret, const char *refresh_token);

/* An OAuth 2 token request and how to read its answer. */
struct plat_token_req {
    const struct plat_rules *rules;
    const char *url;
    const char *authorization;        /* NULL = none */
    const struct buf *form;           /* POSTed form-urlencoded; NULL = GET url */
    const char *what;                 /* names the call in messages */
    const char *answer;               /* names the answer in messages; NULL = what */
    const char *id_key;               /* as plat_parse_oauth2_tokens; NULL = none */
    char *id;
    size_t id_cap;
};

/* Send r and read the token answer into tok (plat_parse_oauth2_tokens).
 * Returns as plat_call, or the parser's error. */
int plat_token_call(struct plat_ctx *pc, const struct plat_token_req *r, struct plat_tokens *tok,
                    struct plat_error *err);

/* Token lengths accepted from platforms; longer is an unexpected response. */
#define PLAT_TOKEN_MAX 4096

/*
 * The common OAuth 2 token response: access_token (required),
 * expires_in, refresh_token, refresh_expires_in, scope.  id_key names an
 * extra member copied to id[cap] when present (TikTok's open_id), or NULL.
 * Returns 0, or CP_EPROTO with *err filled (what names the call).
 */
int plat_parse_oauth2_tokens(const char *body, size_t len, const char *what,
                             struct plat_tokens *tok, const char *id_key, char *id, size_t cap,
                             struct plat_error *err);

/* ------------------------------------------------------------- TikTok -- */

/* The TikTok authorize URL for these inputs. */
int tiktok_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                         const char *challenge, struct buf *out);
/* A token response (code exchange or refresh): tokens and open_id. */
int tiktok_parse_tokens(const char *body, size_t len, struct plat_tokens *tok, char *open_id,
                        size_t cap, struct plat_error *err);
/* GET /v2/user/info/ -> the account. */
int tiktok_parse_user(const char *body, size_t len, struct plat_account *acct,
                      struct plat_error *err);
/* GET /passport/web/account/info/ (cookie session) -> the account. */
int tiktok_parse_cookie_account(const char *body, size_t len, struct plat_account *acct,
                                struct plat_error *err);
/* The Cookie header value for a normalized cookies.txt: the cookies of
 * tiktok domains that have not expired.  CP_EINVAL when there is no
 * sessionid among them. */
int tiktok_cookie_header(const char *cookies_txt, struct buf *out);

int tiktok_configured(const struct conf *c);
enum auth_kind tiktok_auth_kind(const struct conf *c);
int tiktok_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                      struct auth_begin_out *out, struct plat_error *err);
int tiktok_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                       struct plat_tokens *tok, struct plat_account *acct, struct plat_error *err);
int tiktok_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                   struct plat_error *err);
int tiktok_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                 struct plat_error *err);

/* ---------------------------------------------------------- Instagram -- */

int instagram_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                            struct buf *out);
/* GET /{ver}/me/accounts: the first page with an Instagram business
 * account.  CP_ENOTFOUND (no page has one) with *after set to the next
 * page's cursor ("" = last page); acct->meta gets page_id and, when
 * facebook_user_id is not NULL, facebook_user_id. */
int instagram_parse_pages(const char *body, size_t len, const char *facebook_user_id,
                          struct plat_account *acct, char *after, size_t after_cap,
                          struct plat_error *err);
/* GET /{ver}/me?fields=id,name -> the Facebook user id. */
int instagram_parse_me(const char *body, size_t len, char *id, size_t cap,
                       struct plat_error *err);
/* The minutes of x-business-use-case-usage's estimated_time_to_regain_access, in ms. */
long long graph_usage_wait_ms(const struct http_response *resp);
/* 1 when x-app-usage of a (successful) Graph response has a percentage
 * at or above percent (0 = never): *wait_ms is then
 * estimated_time_to_regain_access or an hour; 0 otherwise. */
int plat_graph_usage_high(const struct http_response *resp, int percent, long long *wait_ms);

int instagram_configured(const struct conf *c);
enum auth_kind instagram_auth_kind(const struct conf *c);
int instagram_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                         struct auth_begin_out *out, struct plat_error *err);
int instagram_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                          struct plat_tokens *tok, struct plat_account *acct,
                          struct plat_error *err);
int instagram_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                      struct plat_error *err);
int instagram_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                    struct plat_error *err);

/* ------------------------------------------------------------ YouTube -- */

int youtube_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                          const char *challenge, struct buf *out);
int youtube_parse_tokens(const char *body, size_t len, struct plat_tokens *tok,
                         struct plat_error *err);
/* GET /youtube/v3/channels?mine=true -> the channel; CP_ENOTFOUND with
 * PLAT_FATAL "no_youtube_channel" when there is none. */
int youtube_parse_channel(const char *body, size_t len, struct plat_account *acct,
                          struct plat_error *err);

int youtube_configured(const struct conf *c);
enum auth_kind youtube_auth_kind(const struct conf *c);
int youtube_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                       struct auth_begin_out *out, struct plat_error *err);
int youtube_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in,
                        struct plat_tokens *tok, struct plat_account *acct,
                        struct plat_error *err);
int youtube_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
                    struct plat_error *err);
int youtube_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
                  struct plat_error *err);

/* ------------------------------------------------------------------ X -- */

/* OAuth 2 authorize URL (x_auth_mode = oauth2). */
int x_authorize_url(const struct conf *c, const char *state, const char *redirect_uri,
                    const char *challenge, struct buf *out);
/* OAuth 1.0a request_token answer: token and secret, callback confirmed. */
int x_parse_request_token(const char *body, size_t len, char *token, size_t token_cap,
                          char *secret, size_t secret_cap, struct plat_error *err);
/* OAuth 1.0a access_token answer: tokens, and the user in acct. */
int x_parse_access_token(const char *body, size_t len, struct plat_tokens *tok,
                         struct plat_account *acct, struct plat_error *err);
int x_parse_oauth2_tokens(const char *body, size_t len, struct plat_tokens *tok,
                          struct plat_error *err);
/* GET /2/users/me -> the account. */
int x_parse_user(const char *body, size_t len, struct plat_account *acct,
                 struct plat_error *err);
/* x-rate-limit-reset (unix seconds) as ms from now for PLAT_DEFER. */
long long x_wait_ms(const struct http_response *resp, enum plat_outcome outcome);

int x_configured(const struct conf *c);
enum auth_kind x_auth_kind(const struct conf *c);
int x_auth_begin(struct plat_ctx *pc, const struct auth_begin_in *in,
                 struct auth_begin_out *out, struct plat_error *err);
int x_auth_finish(struct plat_ctx *pc, const struct auth_finish_in *in, struct plat_tokens *tok,
                  struct plat_account *acct, struct plat_error *err);
int x_refresh(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_tokens *tok,
              struct plat_error *err);
int x_check(struct plat_ctx *pc, const struct plat_creds *cur, struct plat_account *acct,
            struct plat_error *err);

#endif
