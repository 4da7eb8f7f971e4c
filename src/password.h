/*
 * password.h - password policy and hashing (argon2id).
 *
 * Hashes are PHC strings ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash") so
 * the parameters travel with each hash; password_needs_rehash() tells when
 * a stored hash was made with weaker parameters than the current ones, so
 * login can upgrade it.  Passwords are compared in full (never truncated).
 */
#ifndef CP_PASSWORD_H
#define CP_PASSWORD_H

#include <stddef.h>

#define PASSWORD_MIN 8          /* characters (code points) */
#define PASSWORD_MAX 128
#define PASSWORD_HASH_MAX 192   /* bytes of a PHC string, with room */

/* argon2id cost parameters. */
struct password_params {
    unsigned m_kib;             /* memory in KiB (>= 19456) */
    unsigned t;                 /* iterations (>= 2) */
    unsigned p;                 /* lanes (>= 1) */
};

/* The defaults: m=19456 KiB (19 MiB), t=2, p=1 (OWASP's minimum). */
extern const struct password_params password_default_params;

/* Why a password is refused. */
enum password_verdict {
    PASSWORD_OK = 0,
    PASSWORD_TOO_SHORT,         /* fewer than PASSWORD_MIN characters */
    PASSWORD_TOO_LONG,          /* more than PASSWORD_MAX characters */
    PASSWORD_NOT_UTF8,          /* not valid UTF-8, or holds a NUL/control */
    PASSWORD_TOO_COMMON,        /* on the list of most common passwords */
    PASSWORD_LIKE_EMAIL,        /* equals the account's email or its local part */
};

/* Check a new password against the policy; email may be NULL. */
enum password_verdict password_check(const char *pw, size_t len, const char *email);
/* A sentence for a verdict, fit for an API error message. */
const char *password_verdict_text(enum password_verdict v);

/* Hash pw into out (a NUL-terminated PHC string).  0, CP_EINVAL, CP_ENOMEM. */
int password_hash(const char *pw, size_t len, const struct password_params *params,
                  char *out, size_t out_cap);

/* 0 when pw matches hash; CP_ENOTFOUND on mismatch; CP_EINVAL when the
 * stored hash is not an argon2id PHC string.  Constant time in pw. */
int password_verify(const char *hash, const char *pw, size_t len);

/* 1 when hash was made with parameters other than params. */
int password_needs_rehash(const char *hash, const struct password_params *params);

/* A hash to verify against when the account does not exist, so an
 * unknown email costs the same time as a wrong password. */
const char *password_dummy_hash(void);

#endif
