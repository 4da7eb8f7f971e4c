/*
 * secretbox.h - sealing and opening the secrets of database rows.
 *
 * A secretbox is a process's view of the key ring file (keyring.h) named
 * by secrets_key_file.  It follows the file: before sealing it checks the
 * file's identity (inode, size, mtime) at most once a second and reloads
 * when it changed, and when a value names a key id it does not know it
 * reloads at once and tries again.  So `crosspostctl rotate-key`, which
 * adds a key and re-seals every row, needs no restart of running API or
 * worker processes.
 *
 * Values are bound to where they live: table.column, row id and owner
 * (keyring_aad()).
 */
#ifndef CP_SECRETBOX_H
#define CP_SECRETBOX_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"

struct secretbox;

/* Open the ring of c->secrets_key_file.  CP_ENOTFOUND when the key is
 * not configured (empty), CP_EIO/CP_EINVAL as keyring_load() with a
 * sentence in *err. */
int secretbox_open_conf(const struct conf *c, struct secretbox **out, struct buf *err);

/* The same from an explicit path (crosspostctl). */
int secretbox_open_path(const char *path, struct secretbox **out, struct buf *err);

void secretbox_free(struct secretbox *sb);

/* The key id that seals now (after a reload check). */
unsigned secretbox_current_id(struct secretbox *sb);

/* Seal n bytes for table_column of row_id owned by owner_id; the sealed
 * bytes replace the contents of out.  0, CP_ETOOBIG, CP_EIO. */
int secretbox_seal(struct secretbox *sb, const char *table_column, long long row_id,
                   long long owner_id, const void *plain, size_t n, struct buf *out);

/* Open a sealed value; the plaintext replaces the contents of out (NUL
 * terminated).  CP_EINVAL (tampered, moved to another row, malformed),
 * CP_ENOTFOUND (its key is not in the ring even after a reload). */
int secretbox_open(struct secretbox *sb, const char *table_column, long long row_id,
                   long long owner_id, const void *sealed, size_t n, struct buf *out);

/* Wipe and free a buffer that held a secret. */
void secretbox_wipe(struct buf *b);

#endif
