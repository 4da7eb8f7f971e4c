#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

#define BUF_MIN_ALLOC 64

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Make room for n more bytes plus the terminator. */
static int buf_grow(struct buf *b, size_t n)
{
    size_t need, want;
    char *p;

    if (n > b->max || b->len > b->max - n) {
        buf_free(b);
        return CP_ETOOBIG;
    }
    need = b->len + n + 1;
    if (need <= b->alloc)
        return 0;
    want = b->alloc ? b->alloc : BUF_MIN_ALLOC;
    while (want < need)
        want = want > (SIZE_MAX / 2) ? need : want * 2;
    /* Never allocate much beyond the cap. */
    if (b->max < SIZE_MAX && want > b->max + 1)
        want = b->max + 1;
    if (want < need)
        want = need;
    p = realloc(b->data, want);
    if (!p) {
        buf_free(b);
        return CP_ENOMEM;
    }
    b->data = p;
    b->alloc = want;
    return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
    int rc = buf_grow(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_adds(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int buf_addc(struct buf *b, char c)
{
    return buf_add(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return CP_EINVAL;
    if ((size_t)n < sizeof small)
        return buf_add(b, small, (size_t)n);
    rc = buf_grow(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_add_json_escaped(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, start = 0;
    int rc;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        rc = buf_add(b, s + start, i - start);
        if (rc)
            return rc;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
        }
        rc = buf_add(b, esc, elen);
        if (rc)
            return rc;
        start = i + 1;
    }
    return buf_add(b, s + start, n - start);
}

const char *buf_str(const struct buf *b)
{
    return b->data ? b->data : "";
}

char *buf_detach(struct buf *b, size_t *len)
{
    char *p = b->data;

    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}

int buf_add_percent_encoded(struct buf *b, const char *s, size_t n, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~' || (c && keep && strchr(keep, c))) {
            rc = buf_addc(b, (char)c);
        } else {
            char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
            rc = buf_add(b, esc, 3);
        }
    }
    return rc;
}

void buf_setf(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    if (!b)
        return;
    buf_reset(b);
    va_start(ap, fmt);
    (void)buf_vprintf(b, fmt, ap);
    va_end(ap);
}
