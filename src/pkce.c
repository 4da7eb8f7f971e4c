#include "config.h"

#include <string.h>

#include "crypto.h"
#include "err.h"
#include "pkce.h"

int pkce_verifier(char out[PKCE_VERIFIER_LEN + 1])
{
    unsigned char raw[32];

    out[0] = '\0';
    if (crypto_random(raw, sizeof raw))
        return CP_EIO;
    crypto_b64url(raw, sizeof raw, out);
    return 0;
}

static int unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int pkce_challenge(const char *verifier, char out[PKCE_CHALLENGE_LEN + 1])
{
    unsigned char digest[SHA256_LEN];
    size_t n = verifier ? strlen(verifier) : 0;

    out[0] = '\0';
    if (n < PKCE_VERIFIER_MIN || n > PKCE_VERIFIER_MAX)
        return CP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!unreserved((unsigned char)verifier[i]))
            return CP_EINVAL;
    crypto_sha256(verifier, n, digest);
    crypto_b64url(digest, sizeof digest, out);
    return 0;
}
