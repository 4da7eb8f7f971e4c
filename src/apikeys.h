/*
 * apikeys.h - personal API keys in the api_keys table.
 *
 * A key is "cpk_" + 43 base64url characters (32 random bytes) and acts
 * for its user with the user's current role.  Only its SHA-256 is
 * stored; the key itself leaves apikey_create() once and is never
 * readable again.  The first APIKEY_PREFIX_LEN characters are kept in
 * clear so a person can tell their keys apart.  A revoked key stays in
 * the table (revoked_at set) and is refused from then on.
 */
#ifndef CP_APIKEYS_H
#define CP_APIKEYS_H

#include <stddef.h>

#include "db.h"
#include "users.h"

#define APIKEY_LEN 47                 /* "cpk_" + 43 */
#define APIKEY_PREFIX_LEN 12
#define APIKEY_NAME_MAX 100           /* characters */
#define APIKEY_LIVE_MAX 50            /* unrevoked keys per user */

struct apikey {
    long long id;
    char name[APIKEY_NAME_MAX * 4 + 1];
    char prefix[APIKEY_PREFIX_LEN + 1];
    char created_at[32];
    char last_used_at[32];            /* "" when never used */
    char revoked_at[32];              /* "" while live */
};

/* Who a presented key speaks for. */
struct apikey_owner {
    long long key_id;
    long long user_id;
    enum user_role role;
    char email[EMAIL_MAX + 1];
};

/* 1 when s (n bytes) has the shape of a key: "cpk_" and exactly 43
 * base64url characters.  Reads every byte of a key-sized input. */
int apikey_shape_ok(const char *s, size_t n);

/* 1 when name is an acceptable key name: 1..APIKEY_NAME_MAX characters
 * of valid UTF-8 without control characters. */
int apikey_name_ok(const char *name);

/*
 * Make a key for user_id.  0 with the key in key_out (APIKEY_LEN+1
 * bytes) and its id in *id; CP_EINVAL for a bad name; CP_ENOTFOUND when
 * the user does not exist; CP_ETOOBIG when the user already has
 * APIKEY_LIVE_MAX live keys; or a database error.
 */
int apikey_create(struct db *db, long long user_id, const char *name,
                  char key_out[APIKEY_LEN + 1], long long *id);

/* One key of user_id by id (revoked or not): 0 or CP_ENOTFOUND. */
int apikey_get(struct db *db, long long user_id, long long id, struct apikey *out);

/* The keys of user_id with ids above after_id, oldest first, at most cap
 * of them into out[]; *count receives how many. */
int apikey_list(struct db *db, long long user_id, long long after_id,
                struct apikey *out, size_t cap, size_t *count);

/* Revoke key id of user_id.  CP_ENOTFOUND when it is not user_id's,
 * does not exist or is already revoked. */
int apikey_revoke(struct db *db, long long user_id, long long id);

/*
 * The owner of a presented key.  0 for a live key of an enabled user;
 * CP_ENOTFOUND for a malformed, unknown or revoked key or a disabled
 * user (*why says which, for the log; never the key); or a database
 * error.  Marks the key used, at most once a minute, so busy keys do not
 * write on every request.
 */
int apikey_resolve(struct db *db, const char *presented, struct apikey_owner *out,
                   const char **why);

#endif
