/*
 * keyring.h - secrets at rest: AES-256-GCM under a ring of numbered keys.
 *
 * OAuth access and refresh tokens, token secrets and cookies are stored
 * sealed.  A sealed value is
 *
 *   version (1 byte, 1) | key id (4 bytes, big-endian) | nonce (12 bytes)
 *   | ciphertext | tag (exactly 16 bytes)
 *
 * with a fresh random nonce for every seal.  The associated data binds a
 * value to where it belongs (keyring_aad(): table, row id and owner), so a
 * sealed token copied into another row, or another user's row, does not
 * open.  Any change to the version, key id, nonce, ciphertext, tag or
 * associated data makes keyring_open() fail, and no plaintext is returned
 * on failure.
 *
 * The ring file has one key a line, "<id> <64 hex digits>", ids rising;
 * the highest id seals, every id opens, so rows sealed under an older key
 * stay readable until they are sealed again (key rotation).  The file
 * must be a regular file not readable or writable by group or others.
 */
#ifndef CP_KEYRING_H
#define CP_KEYRING_H

#include <stddef.h>

#include "buf.h"

#define KEYRING_KEY_LEN 32
#define KEYRING_NONCE_LEN 12
#define KEYRING_TAG_LEN 16
#define KEYRING_HEADER_LEN (1 + 4 + KEYRING_NONCE_LEN)
#define KEYRING_OVERHEAD (KEYRING_HEADER_LEN + KEYRING_TAG_LEN)
#define KEYRING_PLAIN_MAX (64 * 1024)   /* the largest secret sealed */
#define KEYRING_KEYS_MAX 1024
#define KEYRING_AAD_MAX 160

struct keyring;

/* Load the ring from path.  CP_EIO (cannot read), CP_EINVAL (bad
 * permissions, format, duplicate or falling ids, no key) with a sentence
 * naming the file and line in *err. */
int keyring_load(const char *path, struct keyring **out, struct buf *err);

/* The same from text (tests; name is used in messages). */
int keyring_parse(const char *name, const char *text, struct keyring **out, struct buf *err);

/* Wipe the keys and free; NULL is a no-op. */
void keyring_free(struct keyring *k);

/* The id of the key that seals. */
unsigned keyring_current_id(const struct keyring *k);

/* The associated data of a value in column table.column of row row_id
 * owned by owner_id: "table.column:row_id:owner_id" into out[cap].
 * 0 or CP_ETOOBIG. */
int keyring_aad(char *out, size_t cap, const char *table_column, long long row_id,
                long long owner_id);

/* Seal n bytes (at most KEYRING_PLAIN_MAX) under the current key into
 * out[cap] (at least n + KEYRING_OVERHEAD); *out_len is the sealed size.
 * 0, CP_ETOOBIG or CP_EIO. */
int keyring_seal(const struct keyring *k, const void *plain, size_t n, const char *aad,
                 unsigned char *out, size_t cap, size_t *out_len);

/* Open a sealed value into out[cap] (at least n - KEYRING_OVERHEAD);
 * *out_len is the plaintext size.  CP_EINVAL when the value is malformed
 * or does not authenticate (out is wiped), CP_ENOTFOUND when its key id
 * is not in the ring, CP_ETOOBIG when out is too small. */
int keyring_open(const struct keyring *k, const unsigned char *sealed, size_t n, const char *aad,
                 void *out, size_t cap, size_t *out_len);

/* The key id a sealed value names: 0 or CP_EINVAL. */
int keyring_sealed_id(const unsigned char *sealed, size_t n, unsigned *kid);

/* Create a ring file with one random key (id 1), mode 0600.  CP_ECONFLICT
 * when path exists; CP_EIO otherwise on failure. */
int keyring_create(const char *path);

/* Add a random key with the next id to the ring file, atomically (a new
 * file renamed over the old one); *new_id is its id.  CP_EINVAL/CP_EIO
 * as keyring_load(), with *err. */
int keyring_add_key(const char *path, unsigned *new_id, struct buf *err);

#endif
