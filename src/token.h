/*
 * token.h - access tokens: JWTs signed and checked with libjwt, safely.
 *
 * libjwt 1.10 accepts any token when given an empty key, matches "alg"
 * case-insensitively, verifies HS256 against any bytes passed as the key
 * (an RSA public key PEM included), never checks "exp", and reads "1000"
 * or 1000.5 as the integer 1000.  So this module refuses weak keys at
 * load, pins the algorithm (the header must name exactly the configured
 * one before libjwt sees the token), and checks every claim and its JSON
 * type itself:
 *
 *   iss, aud      strings equal to the configured issuer and audience
 *   sub           the user id: a decimal string
 *   jti           a random id (base64url)
 *   iat, nbf, exp JSON integers; nbf and iat not in the future, exp in the
 *                 future, exp - iat no longer than the policy allows
 *   cpt           crosspost's token type ("access"), so a token minted for
 *                 one purpose never passes for another
 *   sid, ver      JSON integers >= 1: the session (refresh-token family) the
 *                 token belongs to and the user's token version when it was
 *                 issued, so ending a session or raising the version ends
 *                 the token at once
 *
 * Key files (made by token_key_generate, `crosspostctl keygen`):
 *   HS256: one line "hs256:" followed by the base64url of >= 32 random bytes
 *   ES256: a PEM P-256 private key
 * A key file readable by group or others is refused, as is a key that is
 * too short or visibly not random.
 */
#ifndef CP_TOKEN_H
#define CP_TOKEN_H

#include <stddef.h>

#include "buf.h"

enum token_alg { TOKEN_HS256, TOKEN_ES256 };

struct token_key;

#define TOKEN_MAX 2048          /* bytes of a token we issue or accept */
#define TOKEN_TYPE_ACCESS "access"

struct token_policy {
    const char *issuer;         /* "iss", e.g. the public URL */
    const char *audience;       /* "aud", e.g. "crosspost-api" */
    long long ttl_s;            /* lifetime of issued tokens (<= 900) */
    long long leeway_s;         /* clock skew tolerated on nbf/iat/exp */
};

struct token_claims {
    char sub[24];
    char jti[48];
    char cpt[16];
    long long iat, nbf, exp;
    long long sid, ver;
};

/* Load a key file; *err says why it was refused.  CP_EIO (unreadable),
 * CP_EINVAL (malformed, weak, or too open permissions). */
int token_key_load(const char *path, struct token_key **out, struct buf *err);
void token_key_free(struct token_key *key);
enum token_alg token_key_alg(const struct token_key *key);

/* Create a new key file (mode 0600).  Refuses to replace an existing file
 * unless force is set.  CP_ECONFLICT when it exists. */
int token_key_generate(enum token_alg alg, const char *path, int force, struct buf *err);

/* Issue a token for sub of type cpt in session sid at token version ver,
 * at time now (unix seconds).  The token text goes to out; claims (may be
 * NULL) receives what was signed. */
int token_issue(const struct token_key *key, const struct token_policy *pol,
                const char *sub, const char *cpt, long long sid, long long ver,
                long long now, char *out, size_t out_cap, struct token_claims *claims);

/* Verify a token of type want_cpt at time now.  0 and *claims filled, or
 * CP_EINVAL with a short reason in *why (for logs, not for clients). */
int token_verify(const struct token_key *key, const struct token_policy *pol,
                 const char *token, size_t len, const char *want_cpt, long long now,
                 struct token_claims *claims, const char **why);

#endif
