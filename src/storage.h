/*
 * storage.h - where fetched media and thumbnails are kept.
 *
 * One small interface over two backends, chosen by storage_backend:
 *   local  files under storage_dir; nginx serves them under /media/ with
 *          expiring signed links (secure_link, keyed by media_url_secret);
 *   s3     an S3-compatible bucket (SigV4 through src/sigv4.h and
 *          libcurl); files larger than s3_part_size go up as a multipart
 *          upload, part by part from the file (never whole in memory),
 *          each part retried on transient failures, the upload aborted
 *          when it cannot finish; links are presigned GET URLs.
 *
 * Media is fetched into a scratch file first (storage_scratch_dir()),
 * probed there, then put: for local storage a rename within one file
 * system, for S3 an upload.  Keys are relative paths of [A-Za-z0-9._/-]
 * without "..", such as "videos/12/345.mp4".
 */
#ifndef CP_STORAGE_H
#define CP_STORAGE_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"

struct storage;

#define STORAGE_KEY_MAX 512

enum storage_backend { STORAGE_LOCAL, STORAGE_S3 };

/* Open the configured backend (creates storage_dir for local).
 * CP_EINVAL with a sentence in *err for an incomplete configuration. */
int storage_open(const struct conf *c, struct storage **out, struct buf *err);
void storage_free(struct storage *s);

enum storage_backend storage_backend_of(const struct storage *s);
const char *storage_backend_name(enum storage_backend b);   /* "local", "s3" */

/* A directory for scratch files on the same file system as local
 * storage (under storage_dir), created if needed. */
const char *storage_scratch_dir(const struct storage *s);

/* 1 when key is a valid key. */
int storage_key_ok(const char *key);

/* Put the file at path under key (the file is consumed: renamed or
 * uploaded, then removed).  CP_ERETRY for failures worth retrying
 * (network, 5xx, throttling), CP_EIO/CP_EPROTO otherwise, with a
 * sentence in *err. */
int storage_put_file(struct storage *s, const char *key, const char *path,
                     const char *content_type, struct buf *err);

/* Copy the object under key into fd; *bytes is its size. */
int storage_get_to_fd(struct storage *s, const char *key, int fd, long long *bytes,
                      struct buf *err);

/* Local storage: the path of the file under key, so a reader can use it
 * in place.  CP_EINVAL for S3 (copy it with storage_get_to_fd) or a bad
 * key. */
int storage_local_path(const struct storage *s, const char *key, struct buf *out);

/* Its size, or CP_ENOTFOUND. */
int storage_stat(struct storage *s, const char *key, long long *bytes, struct buf *err);

/* Remove it; a missing object is not an error. */
int storage_delete(struct storage *s, const char *key, struct buf *err);

/* A URL anyone may GET for ttl_ms: the nginx signed link under
 * {public_url}/media/ (local) or a presigned URL (s3). */
int storage_signed_url(struct storage *s, const char *key, long long ttl_ms, struct buf *out);

/*
 * Pieces of the backends, public so the unit tests can pin them down.
 */

/* The nginx secure_link URL of key valid until expires (Unix seconds):
 * {public_url}/media/<key>?md5=<base64url(MD5(expires + uri + " " +
 * secret)) without padding>&expires=<expires>, matching the /media/
 * location of nginx/locations.conf. */
int storage_local_link(const char *public_url, const char *key, long long expires,
                       const char *secret, struct buf *out);

/* How a file of size bytes is cut for a multipart upload: parts of
 * *part_len bytes (part_size, raised when S3's 10,000 parts would not be
 * enough), the last one shorter; *nparts of them.  CP_EINVAL for a size
 * below 1 or a part size below 1. */
int storage_s3_plan_parts(long long size, long long part_size, long long *part_len,
                          long long *nparts);

/* The UploadId of an InitiateMultipartUploadResult body; CP_EPROTO when
 * there is none. */
int storage_s3_upload_id(const char *xml, size_t len, struct buf *out);

/* 1 when an S3 response body is an <Error> document (its Code and Message
 * appended to code and message, either may be NULL), else 0. */
int storage_s3_error(const char *xml, size_t len, struct buf *code, struct buf *message);

/* 0 when the body of a 200 answer to CompleteMultipartUpload reports
 * success; CP_ERETRY (InternalError, SlowDown) or CP_EPROTO, with a
 * sentence in *err, when it is an <Error> or anything else. */
int storage_s3_complete_result(const char *xml, size_t len, struct buf *err);

#endif
