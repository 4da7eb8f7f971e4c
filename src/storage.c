#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "sigv4.h"
#include "storage.h"

/*
 * Choices beyond what storage.h states:
 * - Keys are also refused with an empty or dot-led path component, so
 *   the scratch directory (".scratch" under storage_dir) can never be
 *   named by a key, and neither can "." or "..".
 * - S3 requests use path-style URLs ({endpoint}/{bucket}/{key}), which
 *   every S3-compatible server understands.  Uploads from a file are
 *   signed with UNSIGNED-PAYLOAD (hashing a part would read it twice);
 *   small XML bodies carry their SHA-256.
 * - A part is tried at most 1 + S3_PART_RETRIES times, with a short
 *   backoff; the CompleteMultipartUpload request likewise.
 */

#define SCRATCH_NAME ".scratch"
#define S3_MAX_PARTS 10000LL
#define S3_PART_RETRIES 3
#define S3_XML_MAX (64 * 1024)
#define S3_ERR_MAX 512
#define URL_MAX 8192
#define COPY_CHUNK (128 * 1024)

struct storage {
    enum storage_backend backend;
    char *dir;                  /* storage_dir */
    char *scratch;              /* dir/.scratch */
    char *public_url;           /* without a trailing slash */
    char *link_secret;          /* media_url_secret */
    /* s3 */
    char *origin;               /* scheme://host[:port] */
    char *host;                 /* Host header as sent */
    char *path_prefix;          /* "" or "/prefix" */
    char *bucket;
    char *region;
    char *access_key;
    char *secret_key;
    long long part_size;
    long long transfer_timeout_ms;
    long long max_object;
    struct http_client *http;
};

/* ------------------------------------------------------------ helpers -- */

static char *dup_trimmed(const char *s)
{
    char *d = strdup(s ? s : "");
    size_t n;

    if (!d)
        return NULL;
    n = strlen(d);
    while (n > 0 && d[n - 1] == '/')
        d[--n] = '\0';
    return d;
}

/* mkdir -p with mode 0750 for new directories. */
static int make_dirs(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof tmp)
        return CP_EINVAL;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return CP_EIO;
        *p = '/';
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return CP_EIO;
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    int fd, rc = 0;

    if (strlen(path) >= sizeof dir)
        return CP_EINVAL;
    strcpy(dir, path);
    slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CP_EIO;
    if (fsync(fd) != 0)
        rc = CP_EIO;
    close(fd);
    return rc;
}

/* Copy everything from in (from its offset) to out; *copied bytes. */
static int copy_fd(int in, int out, long long *copied)
{
    char *chunk = malloc(COPY_CHUNK);
    long long total = 0;
    int rc = 0;

    *copied = 0;
    if (!chunk)
        return CP_ENOMEM;
    for (;;) {
        ssize_t got = read(in, chunk, COPY_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = CP_EIO;
            break;
        }
        if (got == 0)
            break;
        for (ssize_t done = 0; done < got;) {
            ssize_t w = write(out, chunk + done, (size_t)(got - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = CP_EIO;
                goto done;
            }
            done += w;
        }
        total += got;
    }
done:
    free(chunk);
    if (!rc)
        *copied = total;
    return rc;
}

int storage_key_ok(const char *key)
{
    size_t n, comp = 0;

    if (!key)
        return 0;
    n = strlen(key);
    if (n == 0 || n > STORAGE_KEY_MAX)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = key[i];
        if (c == '/' || c == '\0') {
            /* Empty components ("a//b", "/a", "a/") and dot-led ones
             * (".", "..", ".scratch") are refused. */
            if (comp == 0 || key[i - comp] == '.')
                return 0;
            comp = 0;
            continue;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
        comp++;
    }
    return strstr(key, "..") == NULL;
}

/* ------------------------------------------------------- signed links -- */

int storage_local_link(const char *public_url, const char *key, long long expires,
                       const char *secret, struct buf *out)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char b64[64];
    struct buf text;
    size_t base_len;
    int rc;

    if (!public_url || !secret || !*secret || !storage_key_ok(key) || expires <= 0)
        return CP_EINVAL;
    buf_init(&text, STORAGE_KEY_MAX + 1024);
    rc = buf_printf(&text, "%lld/media/%s %s", expires, key, secret);
    if (!rc && EVP_Digest(text.data, text.len, digest, &dlen, EVP_md5(), NULL) != 1)
        rc = CP_EIO;
    if (text.data)
        OPENSSL_cleanse(text.data, text.len);
    buf_free(&text);
    if (rc)
        return rc;
    crypto_b64url(digest, dlen, b64);
    base_len = strlen(public_url);
    while (base_len > 0 && public_url[base_len - 1] == '/')
        base_len--;
    rc = buf_add(out, public_url, base_len);
    rc = rc ? rc : buf_printf(out, "/media/%s?md5=%s&expires=%lld", key, b64, expires);
    return rc;
}

/* ----------------------------------------------------------- S3 XML -- */

/* The text of the first <name>...</name> element in xml, appended to out. */
static int xml_element(const char *xml, size_t len, const char *name, struct buf *out)
{
    char open_tag[64], close_tag[64];
    const char *start, *end;

    snprintf(open_tag, sizeof open_tag, "<%s>", name);
    snprintf(close_tag, sizeof close_tag, "</%s>", name);
    start = memmem(xml, len, open_tag, strlen(open_tag));
    if (!start)
        return CP_ENOTFOUND;
    start += strlen(open_tag);
    end = memmem(start, len - (size_t)(start - xml), close_tag, strlen(close_tag));
    if (!end)
        return CP_ENOTFOUND;
    return out ? buf_add(out, start, (size_t)(end - start)) : 0;
}

/* The name of the root element, past an XML declaration and whitespace. */
static int xml_root_is(const char *xml, size_t len, const char *name)
{
    size_t i = 0, n = strlen(name);

    for (;;) {
        while (i < len && (xml[i] == ' ' || xml[i] == '\t' || xml[i] == '\r' || xml[i] == '\n'))
            i++;
        if (i + 1 < len && xml[i] == '<' && xml[i + 1] == '?') {
            const char *q = memmem(xml + i, len - i, "?>", 2);
            if (!q)
                return 0;
            i = (size_t)(q - xml) + 2;
            continue;
        }
        break;
    }
    return i + 1 + n < len && xml[i] == '<' && memcmp(xml + i + 1, name, n) == 0 &&
           (xml[i + 1 + n] == '>' || xml[i + 1 + n] == ' ');
}

int storage_s3_upload_id(const char *xml, size_t len, struct buf *out)
{
    struct buf id;
    int rc;

    if (!xml || !xml_root_is(xml, len, "InitiateMultipartUploadResult"))
        return CP_EPROTO;
    buf_init(&id, 1024);
    rc = xml_element(xml, len, "UploadId", &id);
    if (!rc && id.len == 0)
        rc = CP_EPROTO;
    if (!rc)
        rc = buf_add(out, id.data, id.len);
    else if (rc == CP_ENOTFOUND)
        rc = CP_EPROTO;
    buf_free(&id);
    return rc;
}

int storage_s3_error(const char *xml, size_t len, struct buf *code, struct buf *message)
{
    if (!xml || !xml_root_is(xml, len, "Error"))
        return 0;
    if (code)
        (void)xml_element(xml, len, "Code", code);
    if (message)
        (void)xml_element(xml, len, "Message", message);
    return 1;
}

/* Text content with XML's special characters escaped. */
static int xml_add_text(struct buf *out, const char *s, size_t n)
{
    int rc = 0;

    for (size_t i = 0; i < n && !rc; i++) {
        switch (s[i]) {
        case '&': rc = buf_adds(out, "&amp;"); break;
        case '<': rc = buf_adds(out, "&lt;"); break;
        case '>': rc = buf_adds(out, "&gt;"); break;
        default: rc = buf_addc(out, s[i]); break;
        }
    }
    return rc;
}

static int s3_code_transient(const char *code)
{
    return strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
           strcmp(code, "ServiceUnavailable") == 0 || strcmp(code, "RequestTimeout") == 0;
}

int storage_s3_complete_result(const char *xml, size_t len, struct buf *err)
{
    struct buf code, message;
    int rc;

    if (xml && xml_root_is(xml, len, "CompleteMultipartUploadResult"))
        return 0;
    buf_init(&code, 128);
    buf_init(&message, 256);
    if (xml && storage_s3_error(xml, len, &code, &message)) {
        rc = s3_code_transient(buf_str(&code)) ? CP_ERETRY : CP_EPROTO;
        buf_setf(err, "S3 refused to complete the multipart upload: %s (%s)",
                code.len ? buf_str(&code) : "no code", buf_str(&message));
    } else {
        rc = CP_EPROTO;
        buf_setf(err, "S3 answered the multipart completion without a result");
    }
    buf_free(&code);
    buf_free(&message);
    return rc;
}

int storage_s3_plan_parts(long long size, long long part_size, long long *part_len,
                          long long *nparts)
{
    long long len;

    *part_len = 0;
    *nparts = 0;
    if (size < 1 || part_size < 1)
        return CP_EINVAL;
    len = part_size;
    if ((size + len - 1) / len > S3_MAX_PARTS)
        len = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
    *part_len = len;
    *nparts = (size + len - 1) / len;
    return 0;
}

/* --------------------------------------------------------------- open -- */

static int parse_endpoint(struct storage *s, const char *endpoint, struct buf *err)
{
    const char *p = endpoint, *host, *slash;

    if (strncmp(p, "https://", 8) == 0)
        host = p + 8;
    else if (strncmp(p, "http://", 7) == 0)
        host = p + 7;
    else {
        buf_setf(err, "s3_endpoint must be an http:// or https:// URL");
        return CP_EINVAL;
    }
    slash = strchr(host, '/');
    s->host = slash ? strndup(host, (size_t)(slash - host)) : strdup(host);
    s->path_prefix = dup_trimmed(slash ? slash : "");
    s->origin = strndup(endpoint, (size_t)(host - endpoint) + strlen(s->host ? s->host : ""));
    if (!s->host || !s->path_prefix || !s->origin)
        return CP_ENOMEM;
    if (!*s->host || strpbrk(s->host, "?#@ ")) {
        buf_setf(err, "s3_endpoint has no usable host");
        return CP_EINVAL;
    }
    return 0;
}

int storage_open(const struct conf *c, struct storage **out, struct buf *err)
{
    struct storage *s;
    size_t n;
    int rc = 0;

    *out = NULL;
    if (!c->storage_dir || !*c->storage_dir) {
        buf_setf(err, "storage_dir is not set");
        return CP_EINVAL;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        return CP_ENOMEM;
    s->backend = c->storage_backend == STORAGE_S3 ? STORAGE_S3 : STORAGE_LOCAL;
    s->dir = dup_trimmed(c->storage_dir);
    s->public_url = dup_trimmed(c->public_url);
    s->link_secret = strdup(c->media_url_secret ? c->media_url_secret : "");
    if (!s->dir || !s->public_url || !s->link_secret) {
        rc = CP_ENOMEM;
        goto fail;
    }
    n = strlen(s->dir) + sizeof "/" SCRATCH_NAME;
    s->scratch = malloc(n);
    if (!s->scratch) {
        rc = CP_ENOMEM;
        goto fail;
    }
    snprintf(s->scratch, n, "%s/%s", s->dir, SCRATCH_NAME);
    if (make_dirs(s->dir) || make_dirs(s->scratch)) {
        buf_setf(err, "cannot create %s: %s", s->scratch, strerror(errno));
        rc = CP_EIO;
        goto fail;
    }
    if (s->backend == STORAGE_S3) {
        const char *missing = !c->s3_endpoint || !*c->s3_endpoint       ? "s3_endpoint"
                              : !c->s3_bucket || !*c->s3_bucket         ? "s3_bucket"
                              : !c->s3_access_key || !*c->s3_access_key ? "s3_access_key"
                              : !c->s3_secret_key || !*c->s3_secret_key ? "s3_secret_key"
                              : !c->s3_region || !*c->s3_region         ? "s3_region"
                                                                        : NULL;
        if (missing) {
            buf_setf(err, "storage_backend is s3 but %s is not set", missing);
            rc = CP_EINVAL;
            goto fail;
        }
        rc = parse_endpoint(s, c->s3_endpoint, err);
        if (rc)
            goto fail;
        s->bucket = strdup(c->s3_bucket);
        s->region = strdup(c->s3_region);
        s->access_key = strdup(c->s3_access_key);
        s->secret_key = strdup(c->s3_secret_key);
        if (!s->bucket || !s->region || !s->access_key || !s->secret_key) {
            rc = CP_ENOMEM;
            goto fail;
        }
        s->part_size = c->s3_part_size > 0 ? c->s3_part_size : 16LL * 1024 * 1024;
        s->transfer_timeout_ms = c->fetch_timeout > 0 ? c->fetch_timeout : 30LL * 60 * 1000;
        s->max_object = c->media_max_bytes > 0 ? c->media_max_bytes : 2LL << 30;
        rc = http_client_new(c, &s->http);
        if (rc) {
            buf_setf(err, "cannot create the HTTP client of the S3 backend");
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    storage_free(s);
    return rc;
}

void storage_free(struct storage *s)
{
    if (!s)
        return;
    http_client_free(s->http);
    if (s->secret_key)
        OPENSSL_cleanse(s->secret_key, strlen(s->secret_key));
    if (s->link_secret)
        OPENSSL_cleanse(s->link_secret, strlen(s->link_secret));
    free(s->dir);
    free(s->scratch);
    free(s->public_url);
    free(s->link_secret);
    free(s->origin);
    free(s->host);
    free(s->path_prefix);
    free(s->bucket);
    free(s->region);
    free(s->access_key);
    free(s->secret_key);
    free(s);
}

enum storage_backend storage_backend_of(const struct storage *s)
{
    return s->backend;
}

const char *storage_backend_name(enum storage_backend b)
{
    return b == STORAGE_S3 ? "s3" : "local";
}

const char *storage_scratch_dir(const struct storage *s)
{
    /* Created at open; made again in case it was removed since. */
    (void)make_dirs(s->scratch);
    return s->scratch;
}

/* -------------------------------------------------------------- local -- */

static int local_path(const struct storage *s, const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", s->dir, key);
    return n < 0 || (size_t)n >= cap ? CP_ETOOBIG : 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return CP_EIO;
    if (fsync(fd) != 0)
        rc = CP_EIO;
    close(fd);
    return rc;
}

/* Across file systems: copy next to dest, fsync, rename over it. */
static int local_copy_in(const char *src, const char *dest, struct buf *err)
{
    char tmp[PATH_MAX];
    long long copied;
    int in = -1, out = -1, rc;

    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", dest, (long)getpid()) >= (int)sizeof tmp)
        return CP_ETOOBIG;
    in = open(src, O_RDONLY | O_CLOEXEC);
    out = in < 0 ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (in < 0 || out < 0) {
        buf_setf(err, "cannot copy %s into storage: %s", src, strerror(errno));
        rc = CP_EIO;
        goto done;
    }
    rc = copy_fd(in, out, &copied);
    if (!rc && fsync(out) != 0)
        rc = CP_EIO;
    if (close(out) != 0 && !rc)
        rc = CP_EIO;
    out = -1;
    if (!rc && rename(tmp, dest) != 0)
        rc = CP_EIO;
    if (rc)
        buf_setf(err, "cannot copy %s into storage: %s", src, strerror(errno));
done:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (rc)
        unlink(tmp);
    else
        unlink(src);
    return rc;
}

static int local_put(struct storage *s, const char *key, const char *path, struct buf *err)
{
    char dest[PATH_MAX], parent[PATH_MAX];
    char *slash;
    int rc;

    rc = local_path(s, key, dest, sizeof dest);
    if (rc) {
        buf_setf(err, "storage key too long");
        return rc;
    }
    strcpy(parent, dest);
    slash = strrchr(parent, '/');
    *slash = '\0';
    if (make_dirs(parent)) {
        buf_setf(err, "cannot create %s: %s", parent, strerror(errno));
        return CP_EIO;
    }
    /* The data reaches the disk before the name does, so a crash never
     * leaves a stored name over a partial file. */
    if (fsync_path(path)) {
        buf_setf(err, "cannot sync %s: %s", path, strerror(errno));
        return errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
    }
    if (rename(path, dest) != 0) {
        if (errno != EXDEV) {
            buf_setf(err, "cannot move %s into storage: %s", path, strerror(errno));
            return CP_EIO;
        }
        rc = local_copy_in(path, dest, err);
        if (rc)
            return rc;
    }
    if (fsync_dir_of(dest)) {
        buf_setf(err, "cannot sync the directory of %s: %s", key, strerror(errno));
        return CP_EIO;
    }
    return 0;
}

static int local_get(struct storage *s, const char *key, int fd, long long *bytes,
                     struct buf *err)
{
    char path[PATH_MAX];
    int in, rc;

    rc = local_path(s, key, path, sizeof path);
    if (rc)
        return rc;
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        buf_setf(err, "cannot open %s: %s", key, strerror(errno));
        return errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
    }
    rc = copy_fd(in, fd, bytes);
    if (rc)
        buf_setf(err, "cannot copy %s: %s", key, strerror(errno));
    close(in);
    return rc;
}

static int local_stat(struct storage *s, const char *key, long long *bytes, struct buf *err)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = local_path(s, key, path, sizeof path);

    if (rc)
        return rc;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return CP_ENOTFOUND;
        buf_setf(err, "cannot stat %s: %s", key, strerror(errno));
        return CP_EIO;
    }
    if (!S_ISREG(st.st_mode))
        return CP_ENOTFOUND;
    *bytes = (long long)st.st_size;
    return 0;
}

static int local_delete(struct storage *s, const char *key, struct buf *err)
{
    char path[PATH_MAX];
    int rc = local_path(s, key, path, sizeof path);

    if (rc)
        return rc;
    if (unlink(path) != 0 && errno != ENOENT) {
        buf_setf(err, "cannot remove %s: %s", key, strerror(errno));
        return CP_EIO;
    }
    return 0;
}

/* ----------------------------------------------------------------- S3 -- */

struct s3_call {
    const char *method;
    const char *key;                    /* object key, not encoded */
    const struct sigv4_param *query;
    size_t nquery;
    const char *content_type;           /* NULL = none */
    const void *body;                   /* in memory, hashed */
    size_t body_len;
    int body_fd;                        /* or from this file, unsigned payload */
    off_t body_offset;
    long long fd_len;
    int out_fd;                         /* stream the answer here */
    long long timeout_ms;               /* 0 = client default */
};

static void s3_call_init(struct s3_call *call, const char *method, const char *key)
{
    memset(call, 0, sizeof *call);
    call->method = method;
    call->key = key;
    call->body_fd = -1;
    call->out_fd = -1;
}

static void amz_now(char out[17])
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* "/prefix/bucket/key" (not encoded). */
static int s3_path(const struct storage *s, const char *key, struct buf *out)
{
    int rc = buf_printf(out, "%s/%s", s->path_prefix, s->bucket);
    if (!rc && key)
        rc = buf_printf(out, "/%s", key);
    return rc;
}

static int s3_query_string(const struct sigv4_param *q, size_t n, struct buf *out)
{
    int rc = 0;

    for (size_t i = 0; i < n && !rc; i++) {
        rc = buf_addc(out, i ? '&' : '?');
        rc = rc ? rc : sigv4_encode(q[i].name, strlen(q[i].name), 0, out);
        rc = rc ? rc : buf_addc(out, '=');
        rc = rc ? rc : sigv4_encode(q[i].value, strlen(q[i].value), 0, out);
    }
    return rc;
}

/* Sign and send one request.  Returns http_do()'s result. */
static int s3_send(struct storage *s, const struct s3_call *call, struct http_response *resp)
{
    struct sigv4_key k = { s->access_key, s->secret_key, s->region, "s3" };
    char date[17], hash_hex[2 * SHA256_LEN + 1];
    struct buf path, url, auth;
    struct http_request req;
    struct http_header headers[5];
    size_t nh = 0;
    int rc;

    memset(resp, 0, sizeof *resp);
    buf_init(&resp->body, 1);
    buf_init(&resp->raw_headers, 1);
    amz_now(date);
    if (call->body_fd >= 0) {
        strcpy(hash_hex, SIGV4_UNSIGNED_PAYLOAD);
    } else {
        unsigned char digest[SHA256_LEN];
        crypto_sha256(call->body ? call->body : "", call->body_len, digest);
        crypto_hex(digest, sizeof digest, hash_hex);
    }
    buf_init(&path, URL_MAX);
    buf_init(&url, URL_MAX);
    buf_init(&auth, 1024);
    rc = s3_path(s, call->key, &path);
    rc = rc ? rc : buf_adds(&url, s->origin);
    rc = rc ? rc : sigv4_encode(path.data, path.len, 1, &url);
    rc = rc ? rc : s3_query_string(call->query, call->nquery, &url);
    if (!rc) {
        struct sigv4_param signed_headers[2] = {
            { "x-amz-content-sha256", hash_hex },
            { "x-amz-date", date },
        };
        struct sigv4_request sr = {
            .method = call->method, .host = s->host, .path = path.data,
            .query = call->query, .nquery = call->nquery,
            .headers = signed_headers, .nheaders = 2,
            .payload_hash = hash_hex, .amz_date = date,
        };
        rc = sigv4_authorization(&k, &sr, &auth);
    }
    if (rc) {
        snprintf(resp->error, sizeof resp->error, "cannot sign the S3 request: %s", cp_strerror(rc));
        goto done;
    }
    headers[nh++] = (struct http_header){ "Authorization", auth.data };
    headers[nh++] = (struct http_header){ "x-amz-date", date };
    headers[nh++] = (struct http_header){ "x-amz-content-sha256", hash_hex };
    if (call->content_type)
        headers[nh++] = (struct http_header){ "Content-Type", call->content_type };

    http_request_init(&req, call->method, url.data);
    req.headers = headers;
    req.nheaders = nh;
    if (call->body_fd >= 0) {
        req.body_fd = call->body_fd;
        req.body_offset = call->body_offset;
        req.body_len = (size_t)call->fd_len;
    } else if (call->body) {
        req.body = call->body;
        req.body_len = call->body_len;
    }
    req.max_response = S3_XML_MAX;
    req.timeout_ms = (long)call->timeout_ms;
    if (call->out_fd >= 0) {
        req.out_fd = call->out_fd;
        req.max_download = s->max_object;
    }
    rc = http_do(s->http, &req, resp);
done:
    if (auth.data)
        OPENSSL_cleanse(auth.data, auth.len);
    buf_free(&auth);
    buf_free(&path);
    buf_free(&url);
    return rc;
}

/* Map a transfer result and an S3 answer onto our codes, with a sentence. */
static int s3_outcome(int rc, const struct http_response *resp, const char *what,
                      struct buf *err)
{
    struct buf code, message;
    int out;

    if (rc) {
        buf_setf(err, "S3 %s failed: %s", what, resp->error[0] ? resp->error : cp_strerror(rc));
        return rc == CP_ETOOBIG || rc == CP_EINVAL || rc == CP_ENOMEM ? rc : CP_ERETRY;
    }
    if (resp->status >= 200 && resp->status < 300)
        return 0;
    buf_init(&code, 128);
    buf_init(&message, 256);
    (void)storage_s3_error(resp->body.data ? resp->body.data : "", resp->body.len, &code,
                           &message);
    if (resp->status == 404)
        out = CP_ENOTFOUND;
    else if (resp->status >= 500 || resp->status == 429 || s3_code_transient(buf_str(&code)))
        out = CP_ERETRY;
    else
        out = CP_EPROTO;
    buf_setf(err, "S3 %s answered %ld%s%s%s%s", what, resp->status, code.len ? " " : "",
            buf_str(&code), message.len ? ": " : "", buf_str(&message));
    buf_free(&code);
    buf_free(&message);
    return out;
}

static void backoff(int attempt)
{
    struct timespec ts = { 0, 200L * 1000 * 1000 };

    for (int i = 1; i < attempt && ts.tv_nsec < 800L * 1000 * 1000; i++)
        ts.tv_nsec *= 2;
    nanosleep(&ts, NULL);
}

static void s3_abort(struct storage *s, const char *key, const char *upload_id)
{
    struct sigv4_param q[1] = { { "uploadId", upload_id } };
    struct http_response resp;
    struct s3_call call;
    struct buf err;
    int rc;

    s3_call_init(&call, "DELETE", key);
    call.query = q;
    call.nquery = 1;
    buf_init(&err, S3_ERR_MAX);
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "abort of a multipart upload", &err);
    if (rc && rc != CP_ENOTFOUND)
        log_kv(CP_LOG_WARN, "s3 multipart abort failed", "key", key, "error", buf_str(&err),
               LOG_END);
    http_response_free(&resp);
    buf_free(&err);
}

static int s3_put_single(struct storage *s, const char *key, int fd, long long size,
                         const char *content_type, struct buf *err)
{
    struct http_response resp;
    struct s3_call call;
    int rc;

    s3_call_init(&call, "PUT", key);
    call.content_type = content_type;
    call.body_fd = fd;
    call.fd_len = size;
    call.timeout_ms = s->transfer_timeout_ms;
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "upload", err);
    http_response_free(&resp);
    return rc == CP_ENOTFOUND ? CP_EPROTO : rc;
}

/* One part, tried up to 1 + S3_PART_RETRIES times; its ETag into *etag. */
static int s3_put_part(struct storage *s, const char *key, const char *upload_id, int fd,
                       long long number, off_t offset, long long len, struct buf *etag,
                       struct buf *err)
{
    char number_text[24];
    struct sigv4_param q[2] = { { "partNumber", number_text }, { "uploadId", upload_id } };
    int rc = CP_ERETRY;

    snprintf(number_text, sizeof number_text, "%lld", number);
    for (int attempt = 0; attempt <= S3_PART_RETRIES && rc == CP_ERETRY; attempt++) {
        struct http_response resp;
        struct s3_call call;

        if (attempt > 0) {
            log_kv(CP_LOG_WARN, "s3 part upload retried", "key", key, "part", number_text,
                   "error", buf_str(err), LOG_END);
            backoff(attempt);
        }
        s3_call_init(&call, "PUT", key);
        call.query = q;
        call.nquery = 2;
        call.body_fd = fd;
        call.body_offset = offset;
        call.fd_len = len;
        call.timeout_ms = s->transfer_timeout_ms;
        rc = s3_outcome(s3_send(s, &call, &resp), &resp, "part upload", err);
        if (!rc) {
            buf_reset(etag);
            if (http_response_header(&resp, "ETag", etag) || etag->len == 0) {
                buf_setf(err, "S3 answered part %lld without an ETag", number);
                rc = CP_EPROTO;
            }
        } else if (rc == CP_ENOTFOUND) {
            rc = CP_EPROTO;   /* NoSuchUpload: the upload is gone */
        }
        http_response_free(&resp);
    }
    return rc;
}

static int s3_complete(struct storage *s, const char *key, const char *upload_id,
                       const struct buf *xml, struct buf *err)
{
    struct sigv4_param q[1] = { { "uploadId", upload_id } };
    int rc = CP_ERETRY;

    for (int attempt = 0; attempt <= S3_PART_RETRIES && rc == CP_ERETRY; attempt++) {
        struct http_response resp;
        struct s3_call call;

        if (attempt > 0)
            backoff(attempt);
        s3_call_init(&call, "POST", key);
        call.query = q;
        call.nquery = 1;
        call.content_type = "application/xml";
        call.body = xml->data;
        call.body_len = xml->len;
        /* Servers may take a while to assemble a large object. */
        call.timeout_ms = s->transfer_timeout_ms;
        rc = s3_outcome(s3_send(s, &call, &resp), &resp, "multipart completion", err);
        /* A 200 may still carry an <Error>: S3 reports late failures so. */
        if (!rc)
            rc = storage_s3_complete_result(resp.body.data ? resp.body.data : "", resp.body.len,
                                            err);
        else if (rc == CP_ENOTFOUND)
            rc = CP_EPROTO;
        http_response_free(&resp);
    }
    return rc;
}

static int s3_put_multipart(struct storage *s, const char *key, int fd, long long size,
                            const char *content_type, struct buf *err)
{
    struct sigv4_param q[1] = { { "uploads", "" } };
    long long part_len, nparts;
    struct buf upload_id, xml, etag;
    struct http_response resp;
    struct s3_call call;
    int rc;

    rc = storage_s3_plan_parts(size, s->part_size, &part_len, &nparts);
    if (rc)
        return rc;
    buf_init(&upload_id, 1024);
    buf_init(&xml, (size_t)nparts * 160 + 256);
    buf_init(&etag, 256);

    s3_call_init(&call, "POST", key);
    call.query = q;
    call.nquery = 1;
    call.content_type = content_type;
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "multipart initiation", err);
    if (!rc) {
        rc = storage_s3_upload_id(resp.body.data ? resp.body.data : "", resp.body.len, &upload_id);
        if (rc)
            buf_setf(err, "S3 answered the multipart initiation without an UploadId");
    } else if (rc == CP_ENOTFOUND) {
        rc = CP_EPROTO;   /* NoSuchBucket */
    }
    http_response_free(&resp);
    if (rc)
        goto done;

    rc = buf_adds(&xml, "<CompleteMultipartUpload>");
    for (long long i = 0; i < nparts && !rc; i++) {
        off_t offset = (off_t)(i * part_len);
        long long len = size - i * part_len < part_len ? size - i * part_len : part_len;

        rc = s3_put_part(s, key, upload_id.data, fd, i + 1, offset, len, &etag, err);
        rc = rc ? rc : buf_printf(&xml, "<Part><PartNumber>%lld</PartNumber><ETag>", i + 1);
        rc = rc ? rc : xml_add_text(&xml, etag.data, etag.len);
        rc = rc ? rc : buf_adds(&xml, "</ETag></Part>");
    }
    rc = rc ? rc : buf_adds(&xml, "</CompleteMultipartUpload>");
    rc = rc ? rc : s3_complete(s, key, upload_id.data, &xml, err);
    if (rc)
        s3_abort(s, key, upload_id.data);
done:
    buf_free(&upload_id);
    buf_free(&xml);
    buf_free(&etag);
    return rc;
}

static int s3_put(struct storage *s, const char *key, const char *path,
                  const char *content_type, struct buf *err)
{
    struct stat st;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        buf_setf(err, "cannot open %s: %s", path, strerror(errno));
        rc = errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if ((long long)st.st_size <= s->part_size)
        rc = s3_put_single(s, key, fd, (long long)st.st_size, content_type, err);
    else
        rc = s3_put_multipart(s, key, fd, (long long)st.st_size, content_type, err);
    close(fd);
    if (!rc && unlink(path) != 0)
        log_kv(CP_LOG_WARN, "cannot remove an uploaded scratch file", "path", path, LOG_END);
    return rc;
}

static int s3_get(struct storage *s, const char *key, int fd, long long *bytes, struct buf *err)
{
    struct http_response resp;
    struct s3_call call;
    int rc;

    s3_call_init(&call, "GET", key);
    call.out_fd = fd;
    call.timeout_ms = s->transfer_timeout_ms;
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "download", err);
    if (!rc)
        *bytes = resp.body_bytes;
    http_response_free(&resp);
    return rc;
}

static int s3_stat(struct storage *s, const char *key, long long *bytes, struct buf *err)
{
    struct http_response resp;
    struct buf length;
    struct s3_call call;
    int rc;

    s3_call_init(&call, "HEAD", key);
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "stat", err);
    buf_init(&length, 32);
    if (!rc) {
        char *end = NULL;
        long long n;

        errno = 0;
        rc = http_response_header(&resp, "Content-Length", &length);
        n = rc ? -1 : strtoll(buf_str(&length), &end, 10);
        if (rc || errno || !end || *end || n < 0) {
            buf_setf(err, "S3 answered the stat without a Content-Length");
            rc = CP_EPROTO;
        } else {
            *bytes = n;
        }
    }
    buf_free(&length);
    http_response_free(&resp);
    return rc;
}

static int s3_delete(struct storage *s, const char *key, struct buf *err)
{
    struct http_response resp;
    struct s3_call call;
    int rc;

    s3_call_init(&call, "DELETE", key);
    rc = s3_outcome(s3_send(s, &call, &resp), &resp, "delete", err);
    http_response_free(&resp);
    return rc == CP_ENOTFOUND ? 0 : rc;
}

static int s3_presign(struct storage *s, const char *key, long long ttl_s, struct buf *out)
{
    struct sigv4_key k = { s->access_key, s->secret_key, s->region, "s3" };
    char date[17];
    struct buf path, query;
    int rc;

    amz_now(date);
    buf_init(&path, URL_MAX);
    buf_init(&query, URL_MAX);
    rc = s3_path(s, key, &path);
    if (!rc) {
        struct sigv4_request sr = {
            .method = "GET", .host = s->host, .path = path.data,
            .payload_hash = SIGV4_UNSIGNED_PAYLOAD, .amz_date = date,
        };
        rc = sigv4_presign(&k, &sr, ttl_s, &query);
    }
    rc = rc ? rc : buf_adds(out, s->origin);
    rc = rc ? rc : sigv4_encode(path.data, path.len, 1, out);
    rc = rc ? rc : buf_addc(out, '?');
    rc = rc ? rc : buf_add(out, query.data, query.len);
    buf_free(&path);
    buf_free(&query);
    return rc;
}

/* ---------------------------------------------------------- interface -- */

static int check_key(const char *key, struct buf *err)
{
    if (storage_key_ok(key))
        return 0;
    buf_setf(err, "invalid storage key");
    return CP_EINVAL;
}

int storage_put_file(struct storage *s, const char *key, const char *path,
                     const char *content_type, struct buf *err)
{
    int rc = check_key(key, err);

    if (rc)
        return rc;
    if (!content_type || !*content_type)
        content_type = "application/octet-stream";
    return s->backend == STORAGE_S3 ? s3_put(s, key, path, content_type, err)
                                    : local_put(s, key, path, err);
}

int storage_get_to_fd(struct storage *s, const char *key, int fd, long long *bytes,
                      struct buf *err)
{
    int rc;

    *bytes = 0;
    rc = check_key(key, err);
    if (rc)
        return rc;
    return s->backend == STORAGE_S3 ? s3_get(s, key, fd, bytes, err)
                                    : local_get(s, key, fd, bytes, err);
}

int storage_local_path(const struct storage *s, const char *key, struct buf *out)
{
    if (!s || s->backend != STORAGE_LOCAL || !storage_key_ok(key))
        return CP_EINVAL;
    buf_reset(out);
    return buf_printf(out, "%s/%s", s->dir, key);
}

int storage_stat(struct storage *s, const char *key, long long *bytes, struct buf *err)
{
    int rc;

    *bytes = 0;
    rc = check_key(key, err);
    if (rc)
        return rc;
    return s->backend == STORAGE_S3 ? s3_stat(s, key, bytes, err)
                                    : local_stat(s, key, bytes, err);
}

int storage_delete(struct storage *s, const char *key, struct buf *err)
{
    int rc = check_key(key, err);

    if (rc)
        return rc;
    return s->backend == STORAGE_S3 ? s3_delete(s, key, err) : local_delete(s, key, err);
}

int storage_signed_url(struct storage *s, const char *key, long long ttl_ms, struct buf *out)
{
    long long ttl_s = (ttl_ms + 999) / 1000;

    if (!storage_key_ok(key) || ttl_s < 1)
        return CP_EINVAL;
    if (s->backend == STORAGE_S3)
        return s3_presign(s, key, ttl_s > SIGV4_EXPIRES_MAX ? SIGV4_EXPIRES_MAX : ttl_s, out);
    return storage_local_link(s->public_url, key, (long long)time(NULL) + ttl_s, s->link_secret,
                              out);
}
