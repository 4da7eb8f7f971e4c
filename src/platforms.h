/*
 * platforms.h - the platforms crosspost connects to, behind one table.
 *
 * One row per platform in platforms[] (platforms.c): its name, how an
 * account is authorised, and the client functions that talk to it.  Each
 * platform's client lives in plat_<name>.c; base URLs and app credentials
 * come from the configuration, so the same code talks to the real
 * platform or to the sandbox simulators in tests/sim/.
 *
 * What a client does for a connection:
 *   auth_begin   the URL the browser is sent to (OAuth 2 with state and
 *                PKCE, or OAuth 1.0a's request_token step for X);
 *   auth_finish  the code or verifier exchanged for tokens, long-lived
 *                tokens where the platform has them, and the account found
 *                (TikTok user, Instagram business account, YouTube channel,
 *                X user);
 *   refresh      new tokens from the refresh token (or, for Facebook's
 *                long-lived tokens, from the current token);
 *   check        one cheap authenticated call that proves the credentials
 *                still work, and says whose they are.
 *
 * Every failure is classified (enum plat_outcome) by one table per
 * platform, so callers decide by class, never by a platform's codes:
 * retry later, defer until a time, reconnect, or give up.  Messages in a
 * struct plat_error are for people and never hold a token.
 */
#ifndef CP_PLATFORMS_H
#define CP_PLATFORMS_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "http.h"

enum platform_id {
    PLATFORM_TIKTOK,
    PLATFORM_INSTAGRAM,
    PLATFORM_YOUTUBE,
    PLATFORM_X,
};
#define PLATFORM_COUNT 4

enum auth_kind {
    AUTH_OAUTH2,         /* bearer access token, maybe a refresh token */
    AUTH_OAUTH1,         /* X: token and token secret, no expiry */
    AUTH_COOKIE,         /* TikTok web session cookies */
};

const char *auth_kind_name(enum auth_kind k);       /* "oauth2", "oauth1", "cookie" */
int auth_kind_parse(const char *name, enum auth_kind *out);  /* 0 or CP_EINVAL */

/* How a failure should be handled. */
enum plat_outcome {
    PLAT_OK = 0,
    PLAT_RETRY,          /* transient: 5xx, timeouts, dropped connections */
    PLAT_DEFER,          /* rate limited or out of quota: come back at retry_after_ms */
    PLAT_REAUTH,         /* credentials revoked, expired or refused: reconnect */
    PLAT_FATAL,          /* permanent: bad request, no permission, policy */
};

const char *plat_outcome_name(enum plat_outcome o);

#define PLAT_CODE_MAX 64
#define PLAT_MESSAGE_MAX 512

struct plat_error {
    enum plat_outcome outcome;
    long http_status;                 /* 0 when no response arrived */
    char code[PLAT_CODE_MAX];         /* the platform's code: "invalid_grant", "190", ... */
    char message[PLAT_MESSAGE_MAX];   /* for people; never a secret */
    long long retry_after_ms;         /* PLAT_DEFER/PLAT_RETRY: wait this long (0 = unknown) */
};

/* Tokens as a platform hands them out.  Strings are heap copies owned by
 * the struct; plat_tokens_clear() wipes and frees them.  An empty or NULL
 * refresh_token means "none was given" (keep the one you have). */
struct plat_tokens {
    char *access_token;
    char *refresh_token;
    char *token_secret;               /* OAuth 1.0a */
    long long access_expires_in_s;    /* 0 = does not expire / unknown */
    long long refresh_expires_in_s;   /* 0 = does not expire / unknown */
    char scopes[1024];                /* as granted, "" when not said */
};

void plat_tokens_clear(struct plat_tokens *t);

/* Duplicate s into *slot (wiping what was there); CP_ENOMEM. */
int plat_tokens_set(char **slot, const char *s);

#define PLAT_REMOTE_ID_MAX 128
#define PLAT_NAME_MAX 256
#define PLAT_URL_MAX 1024
#define PLAT_META_MAX 1024

/* Whose credentials these are. */
struct plat_account {
    char remote_id[PLAT_REMOTE_ID_MAX];   /* open_id, IG user id, channel id, X user id */
    char username[PLAT_NAME_MAX];         /* handle without @, may be "" */
    char display_name[PLAT_NAME_MAX];
    char avatar_url[PLAT_URL_MAX];
    char meta[PLAT_META_MAX];             /* JSON object of platform extras, "" = {} */
};

/* What a client needs to make calls. */
struct plat_ctx {
    const struct conf *conf;
    struct http_client *http;
};

/* The browser's trip to the platform. */
struct auth_begin_in {
    const char *state;                /* random, single use (OAuth 2) */
    const char *redirect_uri;         /* {public_url}/oauth/{platform}/callback */
};

#define AUTH_SECRET_MAX 256

struct auth_begin_out {
    struct buf url;                   /* where the browser goes (caller frees) */
    char state_key[AUTH_SECRET_MAX];  /* the callback's key to the saved state:
                                         the state (OAuth 2) or the request
                                         token (OAuth 1.0a) */
    char verifier[AUTH_SECRET_MAX];   /* PKCE code_verifier, "" when none */
    char request_secret[AUTH_SECRET_MAX]; /* OAuth 1.0a request token secret */
};

/* The callback's query, as the platform sent the browser back. */
struct auth_finish_in {
    const char *code;                 /* OAuth 2 */
    const char *redirect_uri;         /* the same as in auth_begin */
    const char *verifier;             /* PKCE, or "" */
    const char *oauth_token;          /* OAuth 1.0a request token */
    const char *oauth_verifier;
    const char *request_secret;
};

/* Credentials of an existing connection, for refresh and check. */
struct plat_creds {
    enum auth_kind kind;
    const char *access_token;
    const char *refresh_token;        /* "" when none */
    const char *token_secret;         /* OAuth 1.0a */
    const char *cookies;              /* AUTH_COOKIE: Netscape cookies.txt text */
};

struct platform {
    enum platform_id id;
    const char *name;                 /* "tiktok": in URLs, JSON and the database */
    const char *label;                /* "TikTok": for people */
    int cookie_connections;           /* accounts may be added by cookies */

    /* 1 when the app credentials for this platform are configured. */
    int (*configured)(const struct conf *c);
    /* The auth kind new connections get under this configuration. */
    enum auth_kind (*auth_kind)(const struct conf *c);

    /* Return 0, or CP_EUNAVAIL/CP_EINVAL/... with *err filled (outcome
     * and a message).  Outputs are only valid on 0. */
    int (*auth_begin)(struct plat_ctx *pc, const struct auth_begin_in *in,
                      struct auth_begin_out *out, struct plat_error *err);
    int (*auth_finish)(struct plat_ctx *pc, const struct auth_finish_in *in,
                       struct plat_tokens *tok, struct plat_account *acct,
                       struct plat_error *err);
    /* NULL when credentials of this kind are not refreshed (OAuth 1.0a,
     * cookies).  tok receives what the platform returned. */
    int (*refresh)(struct plat_ctx *pc, const struct plat_creds *cur,
                   struct plat_tokens *tok, struct plat_error *err);
    int (*check)(struct plat_ctx *pc, const struct plat_creds *cur,
                 struct plat_account *acct, struct plat_error *err);
};

extern const struct platform platforms[PLATFORM_COUNT];

/* The platform called name, or NULL. */
const struct platform *platform_find(const char *name);
const struct platform *platform_get(enum platform_id id);

/* Fill *err: outcome, status, code, and a message from fmt. */
void plat_error_set(struct plat_error *err, enum plat_outcome outcome, long http_status,
                    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Classify a failed http_do() (no response): timeouts and refused or
 * dropped connections are PLAT_RETRY.  Returns the rc it was given. */
int plat_error_transport(struct plat_error *err, int rc, const struct http_response *resp,
                         const char *what);

/* The Retry-After of a response in ms (seconds or an HTTP date), 0 when
 * absent or unreadable. */
long long plat_retry_after_ms(const struct http_response *resp);

/* TikTok's cookie connection: parse cookies pasted by a user ("a=b; c=d"
 * header text or a Netscape cookies.txt) into Netscape cookies.txt text
 * for .tiktok.com in out.  CP_EINVAL with a sentence in *why when there is
 * no sessionid cookie or the text is not cookies; at most
 * PLAT_COOKIES_MAX bytes. */
#define PLAT_COOKIES_MAX (32 * 1024)
int tiktok_cookies_normalize(const char *text, struct buf *out, struct buf *why);

/*
 * TikTok's video list: one page of the account's videos, newest first
 * (POST /v2/video/list/ with the Display API fields), from cursor (0 =
 * the newest) into out[cap] (cap up to TIKTOK_LIST_PAGE_MAX), with the
 * cursor of the next page and whether there is one.  Pages may be
 * shorter than asked while has_more is set.  Cookie connections cannot
 * use the Display API: CP_EINVAL, PLAT_FATAL "listing_needs_oauth".
 * Failures are classified by TikTok's table (rate limits PLAT_DEFER,
 * access_token_invalid PLAT_REAUTH).
 */
#define TIKTOK_LIST_PAGE_MAX 20
struct video_listing;
int tiktok_list_videos(struct plat_ctx *pc, const struct plat_creds *cur, long long cursor,
                       struct video_listing *out, size_t cap, size_t *n, long long *next_cursor,
                       int *has_more, struct plat_error *err);

#endif
