#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apikeys.h"
#include "auth.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "token.h"

enum role auth_role_rank(enum user_role role)
{
    switch (role) {
    case USER_ROLE_ADMIN: return ROLE_ADMIN;
    case USER_ROLE_OPERATOR: return ROLE_OPERATOR;
    default: return ROLE_USER;
    }
}

/* An API key: its shape is checked before anything is looked up. */
static int api_key_principal(struct request *req, const char *key, struct principal *out,
                             const char **why)
{
    struct apikey_owner owner;
    struct db *db;
    int rc;

    if (!apikey_shape_ok(key, strnlen(key, APIKEY_LEN + 1))) {
        *why = "malformed API key";
        return CP_EINVAL;
    }
    if (app_db(req->app, &db))
        return CP_EUNAVAIL;
    rc = apikey_resolve(db, key, &owner, why);
    if (rc == CP_ENOTFOUND)
        return CP_EINVAL;
    if (rc)
        return CP_EUNAVAIL;
    out->user_id = owner.user_id;
    out->role = owner.role;
    out->session_id = 0;
    out->api_key_id = owner.key_id;
    memcpy(out->email, owner.email, sizeof out->email);
    return 0;
}

int auth_principal(struct request *req, struct principal *out, const char **why)
{
    const char *h = req_param(req, "HTTP_AUTHORIZATION");
    struct token_claims claims;
    long long uid;
    struct db *db;
    int rc, live;

    memset(out, 0, sizeof *out);
    *why = "";
    if (!h || !*h)
        return CP_ENOTFOUND;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "not a Bearer credential";
        return CP_EINVAL;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (strncmp(h, "cpk_", 4) == 0)
        return api_key_principal(req, h, out, why);
    if (token_verify(req->app->token_key, &req->app->token_policy, h, strlen(h),
                     TOKEN_TYPE_ACCESS, (long long)time(NULL), &claims, why))
        return CP_EINVAL;

    rc = app_db(req->app, &db);
    if (rc)
        return CP_EUNAVAIL;
    uid = strtoll(claims.sub, NULL, 10);
    rc = user_find_for_session(db, uid, claims.sid, &out->user, &live);
    if (rc == CP_ENOTFOUND) {
        *why = "no such user or session";
        return CP_EINVAL;
    }
    if (rc)
        return CP_EUNAVAIL;
    if (out->user.disabled) {
        *why = "user disabled";
        return CP_EINVAL;
    }
    if (out->user.token_version != claims.ver) {
        *why = "token version outdated";
        return CP_EINVAL;
    }
    if (!live) {
        *why = "session ended";
        return CP_EINVAL;
    }
    out->has_user = 1;
    memcpy(out->email, out->user.email, sizeof out->email);
    out->user_id = uid;
    out->role = out->user.role;
    out->session_id = claims.sid;
    return 0;
}

/* scheme://host[:port] of public_url, into out. */
static void public_origin(const struct conf *c, char *out, size_t cap)
{
    const char *u = c->public_url, *p = strstr(u, "://");
    size_t n = strlen(u);

    if (p) {
        const char *slash = strchr(p + 3, '/');
        if (slash)
            n = (size_t)(slash - u);
    }
    snprintf(out, cap, "%.*s", (int)n, u);
}

int auth_same_origin(struct request *req)
{
    const char *site = req_param(req, "HTTP_SEC_FETCH_SITE");
    const char *origin = req_param(req, "HTTP_ORIGIN");
    char mine[512];

    if (site && *site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return 0;
    if (origin && *origin) {
        public_origin(req->app->conf, mine, sizeof mine);
        if (strcasecmp(origin, mine) != 0)
            return 0;
    }
    return 1;
}

int auth_cookie(struct request *req, const char *name, char *out, size_t cap)
{
    const char *h = req_param(req, "HTTP_COOKIE");
    size_t nlen = strlen(name);

    if (cap)
        out[0] = '\0';
    if (!h)
        return CP_ENOTFOUND;
    while (*h) {
        const char *end;
        size_t vlen;

        while (*h == ' ' || *h == ';')
            h++;
        end = strchr(h, ';');
        if (!end)
            end = h + strlen(h);
        if ((size_t)(end - h) > nlen && !strncmp(h, name, nlen) && h[nlen] == '=') {
            vlen = (size_t)(end - h) - nlen - 1;
            if (vlen >= cap)
                return CP_ETOOBIG;
            memcpy(out, h + nlen + 1, vlen);
            out[vlen] = '\0';
            return 0;
        }
        h = end;
    }
    return CP_ENOTFOUND;
}
