/*
 * auth.h - who is calling: credentials to a principal, and the helpers
 * the sign-in handlers share.
 *
 * An access token is accepted only while its user exists, is enabled, has
 * the token version the token was issued under, and its session is live;
 * all four are read from the database on every request, so logout,
 * password and role changes and disabling take effect at once.
 * A Bearer credential that starts with "cpk_" is an API key instead: it
 * acts with its user's current role while the key is unrevoked and the
 * user enabled, read from the database on every request as well.
 */
#ifndef CP_AUTH_H
#define CP_AUTH_H

#include "request.h"
#include "users.h"

struct principal {
    long long user_id;
    enum user_role role;
    long long session_id;            /* 0 when signed in with an API key */
    long long api_key_id;            /* 0 when signed in with an access token */
    char email[EMAIL_MAX + 1];
    int has_user;                /* user below is filled (token sign-ins) */
    struct user user;            /* the account as read by the check */
};

/* Resolve the Authorization header.  0 with *out filled; CP_ENOTFOUND when
 * no credentials were sent; CP_EINVAL when they are not acceptable (*why
 * says why, for the log); CP_EUNAVAIL when the database is down. */
int auth_principal(struct request *req, struct principal *out, const char **why);

/* The least route role a user role satisfies (ROLE_USER..ROLE_ADMIN). */
enum role auth_role_rank(enum user_role role);

/* True when the request comes from the UI's own origin (or from no
 * browser at all): Sec-Fetch-Site and Origin agree with public_url. */
int auth_same_origin(struct request *req);

/* The value of cookie name, copied to out; CP_ENOTFOUND when absent. */
int auth_cookie(struct request *req, const char *name, char *out, size_t cap);

#define REFRESH_COOKIE "cp_refresh"
#define REFRESH_COOKIE_PATH "/api/v1/auth"

#endif
