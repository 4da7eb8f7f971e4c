/*
 * buf.h - a growable byte buffer with a hard cap.
 *
 * Modelled on curl's dynbuf: the cap is fixed at init, and an append that
 * would pass it frees the buffer and fails with CP_ETOOBIG, so no input can
 * grow memory without bound.  The contents are always NUL-terminated (the
 * terminator is not counted in len), so text can be used as a C string.
 *
 * A struct buf is a value type: declare it, buf_init() it, buf_free() it.
 * buf_detach() hands the memory to the caller, who frees it with free().
 */
#ifndef CP_BUF_H
#define CP_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;     /* NULL until the first append */
    size_t len;     /* bytes stored, excluding the terminator */
    size_t alloc;   /* bytes allocated */
    size_t max;     /* the hard cap on len */
};

/* Prepare an empty buffer that may hold at most max bytes. */
void buf_init(struct buf *b, size_t max);

/* Release the memory; the buffer is empty and reusable (same cap). */
void buf_free(struct buf *b);

/* Empty the buffer but keep its memory for reuse. */
void buf_reset(struct buf *b);

/* Append n bytes.  CP_ETOOBIG (and the buffer freed) past the cap. */
int buf_add(struct buf *b, const void *p, size_t n);

/* Append a NUL-terminated string. */
int buf_adds(struct buf *b, const char *s);

/* Append one byte. */
int buf_addc(struct buf *b, char c);

/* Append printf-formatted text. */
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Replace the contents with printf-formatted text (a sentence for a
 * caller's error buffer); NULL b is a no-op, and text past the cap is
 * dropped. */
void buf_setf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append s as the inside of a JSON string (quotes not included). */
int buf_add_json_escaped(struct buf *b, const char *s, size_t n);

/* Append n bytes of s percent-encoded as RFC 3986 wants for signatures
 * (OAuth 1.0a, AWS SigV4): every byte but A-Z a-z 0-9 - . _ ~ and those
 * in keep (NULL = none) becomes %XX with upper-case hex. */
int buf_add_percent_encoded(struct buf *b, const char *s, size_t n, const char *keep);

/* Contents as a C string; "" for an empty buffer, never NULL. */
const char *buf_str(const struct buf *b);

/* Hand the memory over (the caller frees it); the buffer is emptied.
 * Returns a freshly allocated "" for an empty buffer, NULL on ENOMEM. */
char *buf_detach(struct buf *b, size_t *len);

#endif
