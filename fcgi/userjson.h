/*
 * userjson.h - an account as the API shows it.
 *
 * One shape everywhere a user is returned (GET /me, sign-in answers, the
 * admin endpoints):
 *   {"id","email","display_name","role","disabled","created_at","last_login_at"}
 * last_login_at is null when the user never signed in.  The password hash
 * and token version are never shown.
 */
#ifndef CP_USERJSON_H
#define CP_USERJSON_H

#include "buf.h"
#include "users.h"

/* Append u as a JSON object. */
int user_json_append(struct buf *b, const struct user *u);

/* Append u's members without the braces, so a caller can add members of
 * its own to the same object. */
int user_json_members(struct buf *b, const struct user *u);

#endif
