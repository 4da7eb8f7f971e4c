/*
 * users.h - accounts in the users table.
 *
 * Emails are normalised (trimmed, ASCII lower-cased) before they are
 * stored or looked up.  Every change that must end existing sessions
 * (password, role, disabling) raises token_version, which ends every
 * access token at once, and revokes the user's sessions, which ends every
 * refresh token.
 * Changes that would leave no enabled admin are refused (CP_ECONFLICT), so
 * an installation cannot lock itself out.
 */
#ifndef CP_USERS_H
#define CP_USERS_H

#include "db.h"

#define EMAIL_MAX 254
#define DISPLAY_NAME_MAX 100

enum user_role { USER_ROLE_USER = 0, USER_ROLE_OPERATOR = 1, USER_ROLE_ADMIN = 2 };

struct user {
    long long id;
    char email[EMAIL_MAX + 1];
    char display_name[DISPLAY_NAME_MAX * 4 + 1];
    char password_hash[192];
    enum user_role role;
    int disabled;
    long long token_version;
    char created_at[32];
    char last_login_at[32];       /* "" when never */
};

/* "user", "operator", "admin" <-> enum; -1 when unknown. */
int user_role_parse(const char *name);
const char *user_role_name(enum user_role role);

/* Normalise an email into out (EMAIL_MAX+1 bytes): CP_EINVAL when it is
 * not local@domain of printable ASCII without spaces, or too long. */
int user_email_normalize(const char *in, char *out);

/* Create a user with an already computed password hash; *id receives the
 * new id.  CP_ECONFLICT when the email is taken. */
int user_create(struct db *db, const char *email, const char *display_name,
                const char *password_hash, enum user_role role, long long *id);

/* Look a user up: 0, CP_ENOTFOUND, or a database error. */
int user_find_by_email(struct db *db, const char *email, struct user *out);
int user_find_by_id(struct db *db, long long id, struct user *out);

/* The user together with one of their sessions, in one query (the check
 * every signed-in request makes): *session_live is 1 while the session is
 * neither revoked nor past its lifetime.  CP_ENOTFOUND when the user or
 * that session of theirs does not exist. */
int user_find_for_session(struct db *db, long long id, long long session_id,
                          struct user *out, int *session_live);

/* Changes; each ends existing sessions (raises token_version). */
int user_set_password(struct db *db, long long id, const char *password_hash);
int user_set_role(struct db *db, long long id, enum user_role role);
int user_set_disabled(struct db *db, long long id, int disabled);
/* End every session of a user without other change. */
int user_revoke_sessions(struct db *db, long long id);

/* Replace the stored hash without ending sessions (rehash on login). */
int user_update_hash(struct db *db, long long id, const char *password_hash);

/* Remove a user; refused for the last enabled admin. */
int user_delete(struct db *db, long long id);

#endif
