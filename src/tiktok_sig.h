/*
 * tiktok_sig.h - the TikTok-Signature header of TikTok's webhooks.
 *
 *   TikTok-Signature: t=<unix seconds>,s=<64 lower-case hex digits>
 *
 * s is HMAC-SHA256, keyed with the app's client secret, of
 * "<t>.<raw body>".  The check runs on the raw body before any parsing,
 * compares in constant time, and bounds the timestamp's distance from now
 * in both directions (a replay of an old delivery, or a forged future
 * one).  Several s= elements may appear (during a secret change): any
 * one matching is enough.
 */
#ifndef CP_TIKTOK_SIG_H
#define CP_TIKTOK_SIG_H

#include <stddef.h>

#define TIKTOK_SIG_HEADER_MAX 1024
#define TIKTOK_SIG_HEX_LEN 64

enum tiktok_sig_result {
    TIKTOK_SIG_OK = 0,
    TIKTOK_SIG_MALFORMED,        /* missing, too long, or not t=...,s=... */
    TIKTOK_SIG_STALE,            /* |now - t| > max_skew_s */
    TIKTOK_SIG_MISMATCH,         /* no s= matches the body */
};

const char *tiktok_sig_result_name(enum tiktok_sig_result r);

/* Check header against body.  *t_out (may be NULL) gets the signed time
 * when the header parses. */
enum tiktok_sig_result tiktok_sig_verify(const char *header, const void *body, size_t len,
                                         const char *secret, long long now, long long max_skew_s,
                                         long long *t_out);

/* The header value for body signed at t (the simulators and tests send
 * webhooks with it): out[cap] >= 96.  0 or CP_ETOOBIG / CP_EIO. */
int tiktok_sig_make(long long t, const void *body, size_t len, const char *secret, char *out,
                    size_t cap);

#endif
