#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "err.h"
#include "log.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char hex_digits[] = "0123456789abcdef";

int crypto_random(void *buf, size_t n)
{
    unsigned char *p = buf;

    /* RAND_bytes takes an int count. */
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;

        if (RAND_bytes(p, chunk) != 1) {
            log_error("RAND_bytes failed");
            return CP_EIO;
        }
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

void crypto_sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    unsigned int out_len = 0;

    /* Only an allocation failure inside OpenSSL can make this fail; going
     * on with an unset digest would silently match wrong data, so stop. */
    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1 ||
        out_len != SHA256_LEN) {
        log_error("SHA-256 failed");
        abort();
    }
}

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       unsigned char out[SHA256_LEN])
{
    unsigned char mac[SHA256_LEN];
    unsigned int mac_len = 0;
    static const unsigned char no_key;

    if (key_len > INT_MAX || (!key && key_len) || (!data && len))
        return CP_EINVAL;
    /* OpenSSL refuses a NULL key even when it is empty. */
    if (!key)
        key = &no_key;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data ? data : (const void *)&no_key, len,
              mac, &mac_len) ||
        mac_len != SHA256_LEN) {
        log_error("HMAC-SHA256 failed");
        return CP_EIO;
    }
    memcpy(out, mac, SHA256_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

int crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void crypto_hex(const void *data, size_t n, char *out)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[p[i] >> 4];
        out[2 * i + 1] = hex_digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int crypto_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_unhex(const char *hex, size_t hex_len, void *out, size_t n)
{
    unsigned char *o = out;

    if (n > SIZE_MAX / 2 || hex_len != 2 * n || (!hex && hex_len))
        return CP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = crypto_hex_digit((unsigned char)hex[2 * i]);
        int lo = crypto_hex_digit((unsigned char)hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            /* Leave no half-decoded value behind. */
            OPENSSL_cleanse(out, n);
            return CP_EINVAL;
        }
        o[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

size_t crypto_b64url_len(size_t n)
{
    size_t full = n / 3, rem = n % 3;

    return full * 4 + (rem ? rem + 1 : 0);
}

void crypto_b64url(const void *data, size_t n, char *out)
{
    const unsigned char *p = data;
    size_t i = 0;
    char *o = out;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
        *o++ = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;

        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
    }
    *o = '\0';
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int crypto_unb64url(const char *text, size_t len, void *out, size_t out_cap, size_t *out_len)
{
    unsigned char *o = out;
    size_t need, rem = len % 4, written = 0;
    uint32_t acc = 0;

    *out_len = 0;
    /* A lone trailing character would carry only 6 bits: never a byte. */
    if (rem == 1 || (!text && len))
        return CP_EINVAL;
    need = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > out_cap)
        return CP_ETOOBIG;

    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)text[i]);

        if (v < 0)
            goto fail;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            o[written++] = (unsigned char)(acc >> 16);
            o[written++] = (unsigned char)(acc >> 8);
            o[written++] = (unsigned char)acc;
            acc = 0;
        }
    }
    /* The unused low bits of the last character must be zero, or two
     * spellings ("QQ" and "QR") would decode to the same byte. */
    if (rem == 2) {
        if (acc & 0x0f)
            goto fail;
        o[written++] = (unsigned char)(acc >> 4);
    } else if (rem == 3) {
        if (acc & 0x03)
            goto fail;
        o[written++] = (unsigned char)(acc >> 10);
        o[written++] = (unsigned char)(acc >> 2);
    }
    *out_len = written;
    return 0;

fail:
    if (written)
        OPENSSL_cleanse(out, written);
    return CP_EINVAL;
}

int crypto_token(const char *prefix, char *out, size_t out_cap)
{
    unsigned char raw[32];
    size_t prefix_len;
    int rc;

    if (out && out_cap)
        out[0] = '\0';
    if (!prefix)
        prefix = "";
    prefix_len = strlen(prefix);
    if (!out)
        return CP_EINVAL;
    if (prefix_len > SIZE_MAX - 44 || out_cap < prefix_len + 44)
        return CP_ETOOBIG;
    rc = crypto_random(raw, sizeof raw);
    if (rc)
        return rc;
    memcpy(out, prefix, prefix_len);
    crypto_b64url(raw, sizeof raw, out + prefix_len);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}
