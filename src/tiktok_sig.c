#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/params.h>

#include "crypto.h"
#include "err.h"
#include "tiktok_sig.h"

#define T_DIGITS_MAX 12

const char *tiktok_sig_result_name(enum tiktok_sig_result r)
{
    switch (r) {
    case TIKTOK_SIG_OK: return "ok";
    case TIKTOK_SIG_MALFORMED: return "malformed signature header";
    case TIKTOK_SIG_STALE: return "signature timestamp out of range";
    case TIKTOK_SIG_MISMATCH: return "signature does not match";
    }
    return "unknown";
}

/* HMAC-SHA256 of "<t>.<body>" keyed with secret. */
static int mac_of(long long t, const void *body, size_t len, const char *secret,
                  unsigned char out[SHA256_LEN])
{
    char prefix[T_DIGITS_MAX + 4];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end(),
    };
    size_t got = 0;
    int n = snprintf(prefix, sizeof prefix, "%lld.", t), ok;

    ok = ctx && n > 0 && (size_t)n < sizeof prefix &&
         EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
         EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)n) == 1 &&
         EVP_MAC_update(ctx, body, len) == 1 &&
         EVP_MAC_final(ctx, out, &got, SHA256_LEN) == 1 && got == SHA256_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : CP_EIO;
}

int tiktok_sig_make(long long t, const void *body, size_t len, const char *secret, char *out,
                    size_t cap)
{
    unsigned char mac[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    int n;

    if (mac_of(t, body, len, secret, mac))
        return CP_EIO;
    crypto_hex(mac, sizeof mac, hex);
    n = snprintf(out, cap, "t=%lld,s=%s", t, hex);
    return n < 0 || (size_t)n >= cap ? CP_ETOOBIG : 0;
}

enum tiktok_sig_result tiktok_sig_verify(const char *header, const void *body, size_t len,
                                         const char *secret, long long now, long long max_skew_s,
                                         long long *t_out)
{
    const char *p = header, *sigs[8];
    size_t nsigs = 0;
    long long t = -1;
    unsigned char want[SHA256_LEN];
    int matched = 0;

    if (t_out)
        *t_out = 0;
    if (!header || !secret || !*secret || strlen(header) > TIKTOK_SIG_HEADER_MAX)
        return TIKTOK_SIG_MALFORMED;
    /* Elements "k=v" separated by commas; t once, s one or more. */
    while (*p) {
        size_t n = strcspn(p, ",");

        if (n > 2 && p[0] == 't' && p[1] == '=' && t < 0) {
            if (n - 2 > T_DIGITS_MAX)
                return TIKTOK_SIG_MALFORMED;
            t = 0;
            for (size_t i = 2; i < n; i++) {
                if (p[i] < '0' || p[i] > '9')
                    return TIKTOK_SIG_MALFORMED;
                t = t * 10 + (p[i] - '0');
            }
        } else if (n == 2 + TIKTOK_SIG_HEX_LEN && p[0] == 's' && p[1] == '=') {
            if (nsigs == sizeof sigs / sizeof sigs[0])
                return TIKTOK_SIG_MALFORMED;
            sigs[nsigs++] = p + 2;
        } else if (n > 0) {
            /* Unknown elements are ignored, as with other signed-webhook
             * schemes; a repeated t= or a bad s= is not. */
            if ((p[0] == 't' || p[0] == 's') && n > 1 && p[1] == '=')
                return TIKTOK_SIG_MALFORMED;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (t < 0 || nsigs == 0)
        return TIKTOK_SIG_MALFORMED;
    if (t_out)
        *t_out = t;
    if (t > now + max_skew_s || t < now - max_skew_s)
        return TIKTOK_SIG_STALE;
    if (mac_of(t, body, len, secret, want))
        return TIKTOK_SIG_MISMATCH;
    for (size_t i = 0; i < nsigs; i++) {
        unsigned char got[SHA256_LEN];

        /* Upper-case hex is refused: the header is specified lower case. */
        if (crypto_unhex(sigs[i], TIKTOK_SIG_HEX_LEN, got, sizeof got))
            return TIKTOK_SIG_MALFORMED;
        for (size_t k = 0; k < TIKTOK_SIG_HEX_LEN; k++)
            if (sigs[i][k] >= 'A' && sigs[i][k] <= 'F')
                return TIKTOK_SIG_MALFORMED;
        matched |= crypto_equal(got, want, sizeof want);
    }
    return matched ? TIKTOK_SIG_OK : TIKTOK_SIG_MISMATCH;
}
