/*
 * sessions.h - sign-ins and their rotating refresh tokens.
 *
 * A refresh token is "cpr_" + 43 base64url characters; only its SHA-256 is
 * stored.  Each is good for one refresh: session_refresh() marks it used
 * and hands out the next.  Presenting a used token revokes the session.
 */
#ifndef CP_SESSIONS_H
#define CP_SESSIONS_H

#include "db.h"

#define REFRESH_TOKEN_LEN 47          /* "cpr_" + 43 */

struct session_info {
    long long id;
    long long user_id;
    long long expires_in_s;           /* seconds left of the absolute lifetime */
};

/* Start a session for user_id that lasts lifetime_s; the first refresh
 * token goes to token (REFRESH_TOKEN_LEN+1 bytes). */
int session_start(struct db *db, long long user_id, long long lifetime_s,
                  const char *client_addr, const char *user_agent,
                  char *token, struct session_info *out);

/*
 * Trade a refresh token for the next one.  0 with the new token and the
 * session; CP_ENOTFOUND for an unknown, revoked or expired token;
 * CP_ECONFLICT when the token was already used: the session is revoked
 * (reason "reuse") and *out names it, for the audit log.
 */
int session_refresh(struct db *db, const char *presented, char *token, struct session_info *out);

/* Revoke the session a refresh token belongs to (logout); *out names it.
 * CP_ENOTFOUND when the token is unknown. */
int session_end_by_token(struct db *db, const char *presented, const char *reason,
                         struct session_info *out);

/* Revoke one session / every session of a user. */
int session_end(struct db *db, long long session_id, const char *reason);
int session_end_all(struct db *db, long long user_id, const char *reason);

#endif
