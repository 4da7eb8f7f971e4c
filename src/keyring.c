#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "err.h"
#include "keyring.h"

#define SEALED_VERSION 1
#define RING_FILE_MAX (KEYRING_KEYS_MAX * 80)

struct ring_key {
    unsigned id;
    unsigned char key[KEYRING_KEY_LEN];
};

struct keyring {
    struct ring_key *keys;        /* ids rising; the last one seals */
    size_t n;
};

void keyring_free(struct keyring *k)
{
    if (!k)
        return;
    if (k->keys)
        OPENSSL_cleanse(k->keys, k->n * sizeof k->keys[0]);
    free(k->keys);
    free(k);
}

unsigned keyring_current_id(const struct keyring *k)
{
    return k && k->n ? k->keys[k->n - 1].id : 0;
}

static const struct ring_key *find_key(const struct keyring *k, unsigned id)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->keys[i].id == id)
            return &k->keys[i];
    return NULL;
}

/* ------------------------------------------------------------ parsing -- */

static int parse_line(const char *name, int lineno, const char *line, size_t len,
                      struct ring_key *key, struct buf *err)
{
    char idtext[16];
    size_t i = 0, id_len;
    unsigned long id;
    char *end;

    while (i < len && line[i] >= '0' && line[i] <= '9')
        i++;
    id_len = i;
    if (id_len == 0 || id_len >= sizeof idtext || i >= len || line[i] != ' ') {
        buf_printf(err, "%s:%d: expected \"<id> <64 hex digits>\"", name, lineno);
        return CP_EINVAL;
    }
    memcpy(idtext, line, id_len);
    idtext[id_len] = '\0';
    errno = 0;
    id = strtoul(idtext, &end, 10);
    if (errno || *end || id == 0 || id > UINT_MAX || idtext[0] == '0') {
        buf_printf(err, "%s:%d: the key id must be a number from 1 to %u", name, lineno, UINT_MAX);
        return CP_EINVAL;
    }
    i++;
    if (len - i != 2 * KEYRING_KEY_LEN || crypto_unhex(line + i, len - i, key->key, KEYRING_KEY_LEN)) {
        buf_printf(err, "%s:%d: key %lu must be %d hex digits", name, lineno, id, 2 * KEYRING_KEY_LEN);
        return CP_EINVAL;
    }
    key->id = (unsigned)id;
    return 0;
}

int keyring_parse(const char *name, const char *text, struct keyring **out, struct buf *err)
{
    struct keyring *k;
    const char *p = text;
    int lineno = 0, rc = 0;

    *out = NULL;
    k = calloc(1, sizeof *k);
    if (!k || !(k->keys = calloc(KEYRING_KEYS_MAX, sizeof k->keys[0]))) {
        free(k);
        return CP_ENOMEM;
    }
    while (*p && !rc) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        lineno++;
        if (len && p[len - 1] == '\r')
            len--;
        if (len && p[0] != '#') {
            if (k->n == KEYRING_KEYS_MAX) {
                buf_printf(err, "%s:%d: more than %d keys", name, lineno, KEYRING_KEYS_MAX);
                rc = CP_EINVAL;
                break;
            }
            rc = parse_line(name, lineno, p, len, &k->keys[k->n], err);
            if (!rc && k->n && k->keys[k->n].id <= k->keys[k->n - 1].id) {
                buf_printf(err, "%s:%d: key ids must rise from line to line", name, lineno);
                rc = CP_EINVAL;
            }
            if (!rc)
                k->n++;
        }
        p = nl ? nl + 1 : p + len;
    }
    if (!rc && k->n == 0) {
        buf_printf(err, "%s: no key (create one with `crosspostctl keygen`)", name);
        rc = CP_EINVAL;
    }
    if (rc) {
        keyring_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

/* Read the whole ring file after checking what it is and who may read it. */
static int read_ring_file(const char *path, char **text, struct buf *err)
{
    struct stat st;
    ssize_t got;
    size_t len = 0;
    char *data;
    int fd;

    *text = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return CP_EIO;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        buf_printf(err, "%s: not a regular file", path);
        close(fd);
        return CP_EINVAL;
    }
    if (st.st_mode & 077) {
        buf_printf(err, "%s: group or others may access it (mode %04o); chmod 600 it",
                   path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return CP_EINVAL;
    }
    if (st.st_size > RING_FILE_MAX) {
        buf_printf(err, "%s: larger than %d bytes", path, RING_FILE_MAX);
        close(fd);
        return CP_EINVAL;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        close(fd);
        return CP_ENOMEM;
    }
    while (len < (size_t)st.st_size && (got = read(fd, data + len, (size_t)st.st_size - len)) > 0)
        len += (size_t)got;
    close(fd);
    data[len] = '\0';
    if (strlen(data) != len) {
        buf_printf(err, "%s: contains a NUL byte", path);
        OPENSSL_cleanse(data, len);
        free(data);
        return CP_EINVAL;
    }
    *text = data;
    return 0;
}

int keyring_load(const char *path, struct keyring **out, struct buf *err)
{
    char *text;
    int rc;

    *out = NULL;
    rc = read_ring_file(path, &text, err);
    if (rc)
        return rc;
    rc = keyring_parse(path, text, out, err);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return rc;
}

/* ------------------------------------------------------- seal / open -- */

int keyring_aad(char *out, size_t cap, const char *table_column, long long row_id,
                long long owner_id)
{
    int n = snprintf(out, cap, "%s:%lld:%lld", table_column, row_id, owner_id);

    return n < 0 || (size_t)n >= cap ? CP_ETOOBIG : 0;
}

int keyring_sealed_id(const unsigned char *sealed, size_t n, unsigned *kid)
{
    *kid = 0;
    if (n < KEYRING_OVERHEAD || sealed[0] != SEALED_VERSION)
        return CP_EINVAL;
    *kid = (unsigned)sealed[1] << 24 | (unsigned)sealed[2] << 16 | (unsigned)sealed[3] << 8 | sealed[4];
    return 0;
}

int keyring_seal(const struct keyring *k, const void *plain, size_t n, const char *aad,
                 unsigned char *out, size_t cap, size_t *out_len)
{
    const struct ring_key *key = &k->keys[k->n - 1];
    size_t aad_len = aad ? strlen(aad) : 0;
    unsigned char *nonce = out + 5, *ct = out + KEYRING_HEADER_LEN;
    EVP_CIPHER_CTX *ctx;
    int len = 0, fin = 0, ok;

    *out_len = 0;
    if (n > KEYRING_PLAIN_MAX || cap < n + KEYRING_OVERHEAD || aad_len > KEYRING_AAD_MAX)
        return CP_ETOOBIG;
    out[0] = SEALED_VERSION;
    out[1] = (unsigned char)(key->id >> 24);
    out[2] = (unsigned char)(key->id >> 16);
    out[3] = (unsigned char)(key->id >> 8);
    out[4] = (unsigned char)key->id;
    if (crypto_random(nonce, KEYRING_NONCE_LEN))
        return CP_EIO;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return CP_ENOMEM;
    /* The header is authenticated too: a value relabelled with another
     * key id or version does not open. */
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KEYRING_NONCE_LEN, NULL) == 1 &&
         EVP_EncryptInit_ex(ctx, NULL, NULL, key->key, nonce) == 1 &&
         EVP_EncryptUpdate(ctx, NULL, &len, out, 5) == 1 &&
         (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)aad_len) == 1) &&
         EVP_EncryptUpdate(ctx, ct, &len, plain, (int)n) == 1 &&
         EVP_EncryptFinal_ex(ctx, ct + len, &fin) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KEYRING_TAG_LEN, ct + len + fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok || (size_t)(len + fin) != n) {
        OPENSSL_cleanse(out, cap);
        return CP_EIO;
    }
    *out_len = n + KEYRING_OVERHEAD;
    return 0;
}

int keyring_open(const struct keyring *k, const unsigned char *sealed, size_t n, const char *aad,
                 void *out, size_t cap, size_t *out_len)
{
    size_t aad_len = aad ? strlen(aad) : 0, ct_len;
    const struct ring_key *key;
    unsigned char tag[KEYRING_TAG_LEN];
    EVP_CIPHER_CTX *ctx;
    unsigned kid;
    int len = 0, fin = 0, ok;

    *out_len = 0;
    /* The tag is exactly 16 bytes: OpenSSL would accept a shorter one. */
    if (keyring_sealed_id(sealed, n, &kid) || aad_len > KEYRING_AAD_MAX ||
        n - KEYRING_OVERHEAD > KEYRING_PLAIN_MAX)
        return CP_EINVAL;
    key = find_key(k, kid);
    if (!key)
        return CP_ENOTFOUND;
    ct_len = n - KEYRING_OVERHEAD;
    if (cap < ct_len)
        return CP_ETOOBIG;
    memcpy(tag, sealed + n - KEYRING_TAG_LEN, KEYRING_TAG_LEN);
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return CP_ENOMEM;
    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KEYRING_NONCE_LEN, NULL) == 1 &&
         EVP_DecryptInit_ex(ctx, NULL, NULL, key->key, sealed + 5) == 1 &&
         EVP_DecryptUpdate(ctx, NULL, &len, sealed, 5) == 1 &&
         (aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)aad_len) == 1) &&
         EVP_DecryptUpdate(ctx, out, &len, sealed + KEYRING_HEADER_LEN, (int)ct_len) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KEYRING_TAG_LEN, tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, (unsigned char *)out + len, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok || (size_t)(len + fin) != ct_len) {
        /* Never hand out what a failed check produced. */
        OPENSSL_cleanse(out, cap);
        return CP_EINVAL;
    }
    *out_len = ct_len;
    return 0;
}

/* ------------------------------------------------------- ring files -- */

static int write_key_line(FILE *fp, unsigned id)
{
    unsigned char key[KEYRING_KEY_LEN];
    char hex[2 * KEYRING_KEY_LEN + 1];
    int rc;

    if (crypto_random(key, sizeof key))
        return CP_EIO;
    crypto_hex(key, sizeof key, hex);
    rc = fprintf(fp, "%u %s\n", id, hex) < 0 ? CP_EIO : 0;
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(hex, sizeof hex);
    return rc;
}

/* Write text plus one new key to path via a private temporary file. */
static int write_ring(const char *path, const char *text, unsigned new_id, int exclusive)
{
    char tmp[4096];
    FILE *fp;
    int fd, rc;

    if (snprintf(tmp, sizeof tmp, "%s.new", path) >= (int)sizeof tmp)
        return CP_ETOOBIG;
    unlink(tmp);
    fd = open(exclusive ? path : tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errno == EEXIST ? CP_ECONFLICT : CP_EIO;
    fp = fdopen(fd, "w");
    if (!fp) {
        close(fd);
        return CP_EIO;
    }
    rc = text && fputs(text, fp) < 0 ? CP_EIO : 0;
    if (!rc)
        rc = write_key_line(fp, new_id);
    if (!rc && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
        rc = CP_EIO;
    if (fclose(fp) != 0 && !rc)
        rc = CP_EIO;
    if (!rc && !exclusive && rename(tmp, path) != 0)
        rc = CP_EIO;
    if (rc)
        unlink(exclusive ? path : tmp);
    return rc;
}

int keyring_create(const char *path)
{
    return write_ring(path,
                      "# crosspost key ring: \"<id> <key as 64 hex digits>\", one key a line.\n"
                      "# The highest id seals new secrets; every id opens.  Keep it secret.\n",
                      1, 1);
}

int keyring_add_key(const char *path, unsigned *new_id, struct buf *err)
{
    struct keyring *k = NULL;
    char *text = NULL;
    size_t len;
    int rc;

    *new_id = 0;
    rc = read_ring_file(path, &text, err);
    if (!rc)
        rc = keyring_parse(path, text, &k, err);
    if (!rc && keyring_current_id(k) == UINT_MAX) {
        buf_printf(err, "%s: no key id left", path);
        rc = CP_EINVAL;
    }
    if (!rc) {
        unsigned id = keyring_current_id(k) + 1;

        len = strlen(text);
        if (len && text[len - 1] != '\n') {
            char *grown = realloc(text, len + 2);
            if (!grown) {
                rc = CP_ENOMEM;
            } else {
                text = grown;
                memcpy(text + len, "\n", 2);
            }
        }
        if (!rc)
            rc = write_ring(path, text, id, 0);
        if (!rc)
            *new_id = id;
        else
            buf_printf(err, "%s: cannot write the new ring: %s", path, cp_strerror(rc));
    }
    keyring_free(k);
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    return rc;
}
