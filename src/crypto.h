/*
 * crypto.h - small cryptographic helpers over OpenSSL.
 *
 * Randomness from the kernel CSPRNG (RAND_bytes), SHA-256 and
 * HMAC-SHA256, constant-time comparison, and the text encodings tokens
 * travel in (lower-case hex, base64url without padding).  Decoders are
 * strict: they refuse bad characters, padding and non-canonical trailing
 * bits, so one token has exactly one spelling.
 */
#ifndef CP_CRYPTO_H
#define CP_CRYPTO_H

#include <stddef.h>

#define SHA256_LEN 32

/* Fill buf with n random bytes: 0 or CP_EIO. */
int crypto_random(void *buf, size_t n);

/* SHA-256 and HMAC-SHA256 of data into out[SHA256_LEN]. */
void crypto_sha256(const void *data, size_t len, unsigned char out[SHA256_LEN]);
int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       unsigned char out[SHA256_LEN]);

/* Compare n bytes in time independent of their contents: 1 when equal. */
int crypto_equal(const void *a, const void *b, size_t n);

/* The value of one hex digit (either case), or -1. */
int crypto_hex_digit(int c);

/* Lower-case hex: out must hold 2*n+1 bytes. */
void crypto_hex(const void *data, size_t n, char *out);
/* Decode exactly 2*n hex digits (either case) into out[n]: 0 or CP_EINVAL. */
int crypto_unhex(const char *hex, size_t hex_len, void *out, size_t n);

/* base64url without padding: out must hold crypto_b64url_len(n)+1 bytes. */
size_t crypto_b64url_len(size_t n);
void crypto_b64url(const void *data, size_t n, char *out);
/* Decode; *out_len receives the byte count.  out must hold at least
 * 3*len/4 bytes.  0, CP_EINVAL (bad alphabet, padding, length or trailing
 * bits) or CP_ETOOBIG (out too small). */
int crypto_unb64url(const char *text, size_t len, void *out, size_t out_cap, size_t *out_len);

/* A random token: prefix followed by 32 bytes as base64url (43 chars),
 * e.g. "cpk_" for API keys.  out must hold strlen(prefix)+44 bytes. */
int crypto_token(const char *prefix, char *out, size_t out_cap);

#endif
