/*
 * pkce.h - Proof Key for Code Exchange (RFC 7636), method S256.
 *
 * The client keeps a random verifier and sends its challenge,
 * base64url(SHA-256(verifier)), with the authorization request; the token
 * request then proves possession with the verifier itself.
 */
#ifndef CP_PKCE_H
#define CP_PKCE_H

#include <stddef.h>

#define PKCE_VERIFIER_LEN 43          /* 32 random bytes, base64url */
#define PKCE_VERIFIER_MIN 43
#define PKCE_VERIFIER_MAX 128
#define PKCE_CHALLENGE_LEN 43

/* A new verifier into out[PKCE_VERIFIER_LEN + 1]: 0 or CP_EIO. */
int pkce_verifier(char out[PKCE_VERIFIER_LEN + 1]);

/* The S256 challenge of verifier into out[PKCE_CHALLENGE_LEN + 1].
 * CP_EINVAL for a verifier outside RFC 7636's 43..128 characters of
 * [A-Za-z0-9-._~]. */
int pkce_challenge(const char *verifier, char out[PKCE_CHALLENGE_LEN + 1]);

#endif
