#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "err.h"
#include "keyring.h"
#include "log.h"
#include "secretbox.h"

/* How often sealing looks at the ring file for a change. */
#define RELOAD_CHECK_MS 1000
#define RING_ERROR_MAX 1024

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct secretbox {
    char *path;
    struct keyring *ring;
    struct file_id loaded;          /* the file the ring was read from */
    long long checked_ms;           /* CLOCK_MONOTONIC of the last look */
    int reload_failing;             /* a failed reload was logged */
};

static long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int file_identity(const char *path, struct file_id *id)
{
    struct stat st;

    memset(id, 0, sizeof *id);
    if (stat(path, &st) != 0)
        return CP_EIO;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime = st.st_mtim;
    return 0;
}

static int same_file(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Read the ring again when the file changed (or always, when forced).
 * A ring that cannot be read keeps the keys already loaded: an operator
 * editing the file must not stop every process from opening secrets. */
static void maybe_reload(struct secretbox *sb, int force)
{
    struct keyring *ring = NULL;
    struct file_id now_id, before;
    long long now = monotonic_ms();
    struct buf err;
    int rc;

    if (!force && now - sb->checked_ms < RELOAD_CHECK_MS)
        return;
    sb->checked_ms = now;
    if (file_identity(sb->path, &before) == 0 && same_file(&before, &sb->loaded))
        return;
    buf_init(&err, RING_ERROR_MAX);
    rc = keyring_load(sb->path, &ring, &err);
    /* The identity is taken again after reading: a file replaced while
     * it was read is read once more at the next look. */
    if (!rc && file_identity(sb->path, &now_id) == 0 && same_file(&now_id, &before)) {
        keyring_free(sb->ring);
        sb->ring = ring;
        sb->loaded = now_id;
        if (sb->reload_failing)
            log_info("key ring %s readable again", sb->path);
        sb->reload_failing = 0;
        log_debug("key ring %s loaded; key %u seals", sb->path, keyring_current_id(ring));
    } else {
        keyring_free(ring);
        if (rc && !sb->reload_failing)
            log_warn("key ring %s not reloaded, the keys already loaded stay in use: %s", sb->path,
                     err.len ? buf_str(&err) : cp_strerror(rc));
        if (rc)
            sb->reload_failing = 1;
    }
    buf_free(&err);
}

int secretbox_open_path(const char *path, struct secretbox **out, struct buf *err)
{
    struct secretbox *sb;
    struct file_id before, after;
    int rc;

    *out = NULL;
    if (!path || !*path)
        return CP_ENOTFOUND;
    sb = calloc(1, sizeof *sb);
    if (!sb)
        return CP_ENOMEM;
    sb->path = strdup(path);
    if (!sb->path) {
        free(sb);
        return CP_ENOMEM;
    }
    file_identity(path, &before);
    rc = keyring_load(path, &sb->ring, err);
    if (rc) {
        secretbox_free(sb);
        return rc;
    }
    /* A file replaced during the read leaves loaded unset, so the next
     * look reads it again. */
    if (file_identity(path, &after) == 0 && same_file(&before, &after))
        sb->loaded = after;
    sb->checked_ms = monotonic_ms();
    *out = sb;
    return 0;
}

int secretbox_open_conf(const struct conf *c, struct secretbox **out, struct buf *err)
{
    *out = NULL;
    if (!c->secrets_key_file || !c->secrets_key_file[0])
        return CP_ENOTFOUND;
    return secretbox_open_path(c->secrets_key_file, out, err);
}

void secretbox_free(struct secretbox *sb)
{
    if (!sb)
        return;
    keyring_free(sb->ring);
    free(sb->path);
    free(sb);
}

unsigned secretbox_current_id(struct secretbox *sb)
{
    maybe_reload(sb, 0);
    return keyring_current_id(sb->ring);
}

void secretbox_wipe(struct buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->alloc);
    buf_free(b);
}

int secretbox_seal(struct secretbox *sb, const char *table_column, long long row_id,
                   long long owner_id, const void *plain, size_t n, struct buf *out)
{
    char aad[KEYRING_AAD_MAX + 1];
    unsigned char *sealed;
    size_t cap = n + KEYRING_OVERHEAD, len = 0;
    int rc;

    if (n > KEYRING_PLAIN_MAX || cap > out->max)
        return CP_ETOOBIG;
    rc = keyring_aad(aad, sizeof aad, table_column, row_id, owner_id);
    if (rc)
        return rc;
    maybe_reload(sb, 0);
    sealed = malloc(cap);
    if (!sealed)
        return CP_ENOMEM;
    rc = keyring_seal(sb->ring, plain, n, aad, sealed, cap, &len);
    if (!rc) {
        buf_reset(out);
        rc = buf_add(out, sealed, len);
    }
    free(sealed);
    return rc;
}

int secretbox_open(struct secretbox *sb, const char *table_column, long long row_id,
                   long long owner_id, const void *sealed, size_t n, struct buf *out)
{
    char aad[KEYRING_AAD_MAX + 1];
    unsigned char *plain;
    size_t cap, len = 0;
    unsigned kid;
    int rc;

    if (keyring_sealed_id(sealed, n, &kid))
        return CP_EINVAL;
    cap = n - KEYRING_OVERHEAD;
    if (cap > out->max)
        return CP_ETOOBIG;
    rc = keyring_aad(aad, sizeof aad, table_column, row_id, owner_id);
    if (rc)
        return CP_EINVAL;
    /* One allocation of the exact size for the plaintext, so no copy of
     * it is left behind by a buffer growing. */
    plain = malloc(cap + 1);
    if (!plain)
        return CP_ENOMEM;
    rc = keyring_open(sb->ring, sealed, n, aad, plain, cap + 1, &len);
    if (rc == CP_ENOTFOUND) {
        /* Sealed by a key added since the ring was read (rotate-key). */
        maybe_reload(sb, 1);
        rc = keyring_open(sb->ring, sealed, n, aad, plain, cap + 1, &len);
    }
    if (!rc) {
        secretbox_wipe(out);
        rc = buf_add(out, plain, len);
    }
    OPENSSL_cleanse(plain, cap + 1);
    free(plain);
    return rc;
}
