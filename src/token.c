#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include "crypto.h"
#include "err.h"
#include "json.h"
#include "token.h"

/*
 * Verification never lets libjwt decide anything but the signature: the
 * structure, the header's "alg", and every claim are checked here, on the
 * decoded JSON parsed with json_parse() (strict syntax, UTF-8, limits).
 */

#define KEY_FILE_MAX (16 * 1024)   /* a P-256 PEM is ~250 bytes */
#define HS_KEY_MIN 32
#define HS_KEY_GEN 32
#define HS_KEY_MIN_DISTINCT 16     /* 32 random bytes have ~30 distinct values */
#define HS_PREFIX "hs256:"
#define TTL_MAX_S 900
#define JTI_BYTES 16
#define SUB_MAX_DIGITS 20
#define JTI_MIN 16
#define JTI_MAX 47
#define HS256_SIG_LEN 32
#define ES256_SIG_LEN 64           /* r || s, 32 bytes each (RFC 7518 3.4) */

struct token_key {
    enum token_alg alg;
    unsigned char *secret;      /* HS256: the raw secret */
    size_t secret_len;
    char *priv_pem;             /* ES256: PKCS#8 private key, for signing */
    size_t priv_len;
    char *pub_pem;              /* ES256: SubjectPublicKeyInfo, for verifying */
    size_t pub_len;
};

/* The header and payload of a token are small flat objects; "aud" may be
 * an array in other people's tokens, and "crit" is one, hence depth 2. */
static const struct json_limits token_json_limits = {
    .max_size = TOKEN_MAX,
    .max_depth = 2,
    .max_string = 512,
};

static void say(struct buf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct buf *err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    buf_vprintf(err, fmt, ap);
    va_end(ap);
}

static const char *alg_name(enum token_alg alg)
{
    return alg == TOKEN_ES256 ? "ES256" : "HS256";
}

static jwt_alg_t alg_jwt(enum token_alg alg)
{
    return alg == TOKEN_ES256 ? JWT_ALG_ES256 : JWT_ALG_HS256;
}

static void free_secret(void *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

void token_key_free(struct token_key *key)
{
    if (!key)
        return;
    free_secret(key->secret, key->secret_len);
    free_secret(key->priv_pem, key->priv_len);
    free(key->pub_pem);
    free(key);
}

enum token_alg token_key_alg(const struct token_key *key)
{
    return key->alg;
}

/* Never prompt on a terminal for the passphrase of an encrypted PEM. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* The whole contents of a BIO as a fresh NUL-terminated string. */
static int bio_to_string(BIO *bio, char **out, size_t *out_len)
{
    char *data = NULL, *copy;
    long n = BIO_get_mem_data(bio, &data);

    *out = NULL;
    *out_len = 0;
    if (n <= 0 || !data)
        return CP_ENOMEM;
    copy = malloc((size_t)n + 1);
    if (!copy)
        return CP_ENOMEM;
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *out = copy;
    *out_len = (size_t)n;
    return 0;
}

/* PEM text of a private key (PKCS#8) or of its public half. */
static int pkey_to_pem(EVP_PKEY *pkey, int private, char **out, size_t *out_len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc, ok;

    *out = NULL;
    *out_len = 0;
    if (!bio)
        return CP_ENOMEM;
    if (private)
        ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
    else
        ok = PEM_write_bio_PUBKEY(bio, pkey);
    rc = ok == 1 ? bio_to_string(bio, out, out_len) : CP_ENOMEM;
    /* The private key passed through the BIO's memory. */
    BIO_free_all(bio);
    return rc;
}

static int load_hs256(const char *text, size_t len, const char *path,
                      struct token_key *key, struct buf *err)
{
    const char *b64 = text + strlen(HS_PREFIX);
    size_t b64_len = len - strlen(HS_PREFIX), n = 0, cap, distinct = 0;
    unsigned char *secret = NULL;
    unsigned char seen[256] = { 0 };
    int rc;

    if (b64_len && b64[b64_len - 1] == '\n')
        b64_len--;
    if (b64_len == 0) {
        say(err, "key file %s: no key after \"%s\"", path, HS_PREFIX);
        return CP_EINVAL;
    }
    cap = b64_len / 4 * 3 + 3;
    secret = malloc(cap);
    if (!secret)
        return CP_ENOMEM;
    rc = crypto_unb64url(b64, b64_len, secret, cap, &n);
    if (rc) {
        say(err, "key file %s: the key is not valid base64url", path);
        rc = CP_EINVAL;
        goto fail;
    }
    if (n < HS_KEY_MIN) {
        say(err, "key file %s: the key is %zu bytes; at least %d are required",
            path, n, HS_KEY_MIN);
        rc = CP_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (!seen[secret[i]])
            distinct++;
        seen[secret[i]] = 1;
    }
    if (distinct == 1) {
        say(err, "key file %s: the key is not random (all bytes are equal)", path);
        rc = CP_EINVAL;
        goto fail;
    }
    if (distinct < HS_KEY_MIN_DISTINCT) {
        say(err, "key file %s: the key is not random (only %zu distinct byte values)",
            path, distinct);
        rc = CP_EINVAL;
        goto fail;
    }
    key->alg = TOKEN_HS256;
    key->secret = secret;
    key->secret_len = n;
    OPENSSL_cleanse(seen, sizeof seen);
    return 0;

fail:
    OPENSSL_cleanse(seen, sizeof seen);
    free_secret(secret, cap);
    return rc;
}

static int load_es256(const char *text, size_t len, const char *path,
                      struct token_key *key, struct buf *err)
{
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    char group[64] = "";
    size_t group_len = 0;
    int rc = CP_EINVAL;

    if (len > INT_MAX)
        return CP_EINVAL;
    bio = BIO_new_mem_buf(text, (int)len);
    if (!bio)
        return CP_ENOMEM;
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        say(err, "key file %s: not a readable (unencrypted) PEM private key", path);
        goto done;
    }
    if (!EVP_PKEY_is_a(pkey, "EC") ||
        !EVP_PKEY_get_group_name(pkey, group, sizeof group, &group_len) ||
        strcmp(group, SN_X9_62_prime256v1) != 0) {
        say(err, "key file %s: ES256 needs an EC P-256 (prime256v1) private key", path);
        goto done;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!ctx) {
        rc = CP_ENOMEM;
        goto done;
    }
    if (EVP_PKEY_check(ctx) != 1) {
        say(err, "key file %s: the EC key fails its consistency check", path);
        goto done;
    }
    rc = pkey_to_pem(pkey, 1, &key->priv_pem, &key->priv_len);
    if (rc)
        goto done;
    rc = pkey_to_pem(pkey, 0, &key->pub_pem, &key->pub_len);
    if (rc)
        goto done;
    key->alg = TOKEN_ES256;

done:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return rc;
}

/* Read the whole key file, refusing what is not private to its owner. */
static int read_key_file(const char *path, char **out, size_t *out_len, struct buf *err)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    ssize_t n;
    int fd, rc = CP_EIO;

    *out = NULL;
    *out_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        say(err, "cannot open key file %s: %s", path, strerror(errno));
        return CP_EIO;
    }
    /* fstat on the open file: what was checked is what is read. */
    if (fstat(fd, &st) != 0) {
        say(err, "cannot stat key file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        say(err, "key file %s is not a regular file", path);
        rc = CP_EINVAL;
        goto fail;
    }
    if (st.st_mode & 077) {
        say(err, "key file %s is accessible by group or others (mode %04o); chmod 600 it",
            path, (unsigned)(st.st_mode & 07777));
        rc = CP_EINVAL;
        goto fail;
    }
    if (st.st_size == 0) {
        say(err, "key file %s is empty", path);
        rc = CP_EINVAL;
        goto fail;
    }
    if (st.st_size > KEY_FILE_MAX) {
        say(err, "key file %s is larger than %d bytes", path, KEY_FILE_MAX);
        rc = CP_EINVAL;
        goto fail;
    }
    data = malloc(KEY_FILE_MAX + 1);
    if (!data) {
        rc = CP_ENOMEM;
        goto fail;
    }
    /* Read to EOF, but never past the cap even if the file grows. */
    while (len <= KEY_FILE_MAX) {
        n = read(fd, data + len, KEY_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            say(err, "cannot read key file %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > KEY_FILE_MAX) {
        say(err, "key file %s is larger than %d bytes", path, KEY_FILE_MAX);
        rc = CP_EINVAL;
        goto fail;
    }
    if (len == 0) {
        say(err, "key file %s is empty", path);
        rc = CP_EINVAL;
        goto fail;
    }
    data[len] = '\0';
    close(fd);
    *out = data;
    *out_len = len;
    return 0;

fail:
    free_secret(data, KEY_FILE_MAX + 1);
    close(fd);
    return rc;
}

int token_key_load(const char *path, struct token_key **out, struct buf *err)
{
    struct token_key *key = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if (!path || !*path) {
        say(err, "no key file configured");
        return CP_EINVAL;
    }
    rc = read_key_file(path, &text, &len, err);
    if (rc)
        return rc;
    key = calloc(1, sizeof *key);
    if (!key) {
        rc = CP_ENOMEM;
        goto done;
    }
    if (memchr(text, '\0', len)) {
        say(err, "key file %s contains a NUL byte", path);
        rc = CP_EINVAL;
    } else if (!strncmp(text, HS_PREFIX, strlen(HS_PREFIX))) {
        rc = load_hs256(text, len, path, key, err);
    } else if (!strncmp(text, "-----BEGIN ", strlen("-----BEGIN "))) {
        rc = load_es256(text, len, path, key, err);
    } else {
        say(err, "key file %s: expected \"%s<base64url>\" or a PEM EC P-256 private key",
            path, HS_PREFIX);
        rc = CP_EINVAL;
    }
    if (rc)
        goto done;
    *out = key;
    key = NULL;

done:
    token_key_free(key);
    free_secret(text, KEY_FILE_MAX + 1);
    return rc;
}

/* The text of a fresh key file. */
static int new_key_text(enum token_alg alg, char **out, size_t *out_len)
{
    unsigned char secret[HS_KEY_GEN];
    EVP_PKEY *pkey = NULL;
    char *text;
    size_t cap;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (alg == TOKEN_ES256) {
        pkey = EVP_EC_gen(SN_X9_62_prime256v1);
        if (!pkey)
            return CP_EIO;
        rc = pkey_to_pem(pkey, 1, out, out_len);
        EVP_PKEY_free(pkey);
        return rc;
    }
    rc = crypto_random(secret, sizeof secret);
    if (rc)
        return rc;
    cap = strlen(HS_PREFIX) + crypto_b64url_len(sizeof secret) + 2;
    text = malloc(cap);
    if (!text) {
        OPENSSL_cleanse(secret, sizeof secret);
        return CP_ENOMEM;
    }
    memcpy(text, HS_PREFIX, strlen(HS_PREFIX));
    crypto_b64url(secret, sizeof secret, text + strlen(HS_PREFIX));
    OPENSSL_cleanse(secret, sizeof secret);
    strcat(text, "\n");
    *out = text;
    *out_len = strlen(text);
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Make the new directory entry durable; failure here is not fatal. */
static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path), *slash;
    int fd;

    if (!dir)
        return;
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int token_key_generate(enum token_alg alg, const char *path, int force, struct buf *err)
{
    struct buf tmp;
    unsigned char rnd[8];
    char rnd_hex[2 * sizeof rnd + 1];
    char *text = NULL;
    size_t len = 0;
    int fd = -1, rc, created = 0;

    buf_init(&tmp, PATH_MAX);
    if (!path || !*path || (alg != TOKEN_HS256 && alg != TOKEN_ES256)) {
        say(err, "no key file path given");
        return CP_EINVAL;
    }
    if (!force && access(path, F_OK) == 0) {
        say(err, "key file %s already exists; use force to replace it", path);
        return CP_ECONFLICT;
    }
    rc = new_key_text(alg, &text, &len);
    if (rc) {
        say(err, "cannot generate a %s key", alg_name(alg));
        goto done;
    }
    rc = crypto_random(rnd, sizeof rnd);
    if (rc)
        goto done;
    crypto_hex(rnd, sizeof rnd, rnd_hex);
    /* Same directory, so the final rename or link stays on one file system. */
    rc = buf_printf(&tmp, "%s.%s.tmp", path, rnd_hex);
    if (rc) {
        say(err, "key file path too long");
        rc = CP_EINVAL;
        goto done;
    }
    fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        say(err, "cannot create %s: %s", buf_str(&tmp), strerror(errno));
        rc = CP_EIO;
        goto done;
    }
    created = 1;
    /* The umask may only remove bits; make the mode exact. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, len) != 0 || fsync(fd) != 0) {
        say(err, "cannot write %s: %s", buf_str(&tmp), strerror(errno));
        rc = CP_EIO;
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        say(err, "cannot write %s: %s", buf_str(&tmp), strerror(errno));
        rc = CP_EIO;
        goto done;
    }
    fd = -1;
    if (force) {
        if (rename(buf_str(&tmp), path) != 0) {
            say(err, "cannot rename to %s: %s", path, strerror(errno));
            rc = CP_EIO;
            goto done;
        }
        created = 0;
    } else {
        /* link() fails if the path appeared meanwhile: no silent replace. */
        if (link(buf_str(&tmp), path) != 0) {
            if (errno == EEXIST) {
                say(err, "key file %s already exists; use force to replace it", path);
                rc = CP_ECONFLICT;
            } else {
                say(err, "cannot create %s: %s", path, strerror(errno));
                rc = CP_EIO;
            }
            goto done;
        }
    }
    sync_parent_dir(path);
    rc = 0;

done:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(buf_str(&tmp));
    free_secret(text, len);
    buf_free(&tmp);
    return rc;
}

/* sub: the user id, 1 to 20 ASCII digits. */
static int valid_sub(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > SUB_MAX_DIGITS)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int valid_jti(const char *s)
{
    size_t n = strlen(s);

    if (n < JTI_MIN || n > JTI_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int valid_policy(const struct token_policy *pol)
{
    return pol && pol->issuer && *pol->issuer && pol->audience && *pol->audience &&
           pol->ttl_s > 0 && pol->ttl_s <= TTL_MAX_S &&
           pol->leeway_s >= 0 && pol->leeway_s <= TTL_MAX_S;
}

int token_issue(const struct token_key *key, const struct token_policy *pol,
                const char *sub, const char *cpt, long long sid, long long ver,
                long long now, char *out, size_t out_cap, struct token_claims *claims)
{
    struct token_claims c;
    unsigned char rnd[JTI_BYTES];
    jwt_t *jwt = NULL;
    char *text = NULL;
    size_t len;
    int rc = CP_EINVAL;

    if (out && out_cap)
        out[0] = '\0';
    if (claims)
        memset(claims, 0, sizeof *claims);
    if (!key || !valid_policy(pol) || !sub || !cpt || !out)
        return CP_EINVAL;
    /* Issue nothing token_verify() would refuse. */
    if (!valid_sub(sub) || !*cpt || strlen(cpt) >= sizeof c.cpt || sid < 1 || ver < 1)
        return CP_EINVAL;
    if (now <= 0 || now > LONG_MAX - TTL_MAX_S)
        return CP_EINVAL;

    memset(&c, 0, sizeof c);
    strcpy(c.sub, sub);
    strcpy(c.cpt, cpt);
    c.iat = now;
    c.nbf = now;
    c.exp = now + pol->ttl_s;
    c.sid = sid;
    c.ver = ver;
    rc = crypto_random(rnd, sizeof rnd);
    if (rc)
        return rc;
    crypto_b64url(rnd, sizeof rnd, c.jti);

    rc = CP_ENOMEM;
    if (jwt_new(&jwt) != 0)
        goto done;
    if (key->alg == TOKEN_ES256)
        rc = jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)key->priv_pem,
                         (int)key->priv_len);
    else
        rc = jwt_set_alg(jwt, JWT_ALG_HS256, key->secret, (int)key->secret_len);
    if (rc) {
        rc = CP_EINVAL;
        goto done;
    }
    rc = CP_ENOMEM;
    if (jwt_add_grant(jwt, "iss", pol->issuer) || jwt_add_grant(jwt, "aud", pol->audience) ||
        jwt_add_grant(jwt, "sub", c.sub) || jwt_add_grant_int(jwt, "iat", (long)c.iat) ||
        jwt_add_grant_int(jwt, "nbf", (long)c.nbf) || jwt_add_grant_int(jwt, "exp", (long)c.exp) ||
        jwt_add_grant(jwt, "jti", c.jti) || jwt_add_grant(jwt, "cpt", c.cpt) ||
        jwt_add_grant_int(jwt, "sid", (long)c.sid) || jwt_add_grant_int(jwt, "ver", (long)c.ver))
        goto done;
    text = jwt_encode_str(jwt);
    if (!text) {
        rc = CP_EIO;
        goto done;
    }
    len = strlen(text);
    if (len > TOKEN_MAX || len >= out_cap) {
        rc = CP_ETOOBIG;
        goto done;
    }
    memcpy(out, text, len + 1);
    if (claims)
        *claims = c;
    rc = 0;

done:
    free(text);
    jwt_free(jwt);
    return rc;
}

/* Claims checked in token_verify(), each failure with its own reason. */
static int get_string_claim(struct json_object *payload, const char *name,
                            const char **out, const char **why,
                            const char *missing, const char *not_string)
{
    int rc = json_get_string(payload, name, out);

    if (rc == CP_ENOTFOUND)
        *why = missing;
    else if (rc)
        *why = not_string;
    return rc ? CP_EINVAL : 0;
}

static int get_time_claim(struct json_object *payload, const char *name,
                          long long *out, const char **why,
                          const char *missing, const char *not_int)
{
    int rc = json_get_int(payload, name, out);

    if (rc == CP_ENOTFOUND)
        *why = missing;
    else if (rc)
        *why = not_int;
    return rc ? CP_EINVAL : 0;
}

static int check_header(const char *text, size_t len, enum token_alg alg, const char **why)
{
    struct json_object *hdr = NULL, *crit = NULL;
    const char *s = NULL;
    int rc = CP_EINVAL;

    if (json_parse(text, len, &token_json_limits, &hdr, NULL) != 0) {
        *why = "header is not valid JSON";
        return CP_EINVAL;
    }
    if (!json_object_is_type(hdr, json_type_object)) {
        *why = "header is not an object";
        goto done;
    }
    if (json_get_string(hdr, "alg", &s) != 0) {
        *why = "alg missing or not a string";
        goto done;
    }
    /* Exact and case-sensitive: libjwt would take "none" spelt any way. */
    if (strcmp(s, alg_name(alg)) != 0) {
        *why = "alg not allowed";
        goto done;
    }
    if (json_object_object_get_ex(hdr, "typ", NULL)) {
        if (json_get_string(hdr, "typ", &s) != 0 || strcmp(s, "JWT") != 0) {
            *why = "typ is not JWT";
            goto done;
        }
    }
    /* Extensions we would have to understand: we understand none. */
    if (json_object_object_get_ex(hdr, "crit", &crit)) {
        *why = "crit header not supported";
        goto done;
    }
    rc = 0;

done:
    json_object_put(hdr);
    return rc;
}

static int check_claims(struct json_object *payload, const struct token_policy *pol,
                        const char *want_cpt, long long now,
                        struct token_claims *c, const char **why)
{
    const char *iss, *aud, *sub, *jti, *cpt;
    long long lifetime, earliest, latest;

    if (!json_object_is_type(payload, json_type_object)) {
        *why = "payload is not an object";
        return CP_EINVAL;
    }
    if (get_string_claim(payload, "iss", &iss, why, "iss missing", "iss is not a string") ||
        get_string_claim(payload, "aud", &aud, why, "aud missing", "aud is not a string") ||
        get_string_claim(payload, "sub", &sub, why, "sub missing", "sub is not a string") ||
        get_string_claim(payload, "jti", &jti, why, "jti missing", "jti is not a string") ||
        get_string_claim(payload, "cpt", &cpt, why, "cpt missing", "cpt is not a string") ||
        get_time_claim(payload, "iat", &c->iat, why, "iat missing", "iat is not an integer") ||
        get_time_claim(payload, "nbf", &c->nbf, why, "nbf missing", "nbf is not an integer") ||
        get_time_claim(payload, "exp", &c->exp, why, "exp missing", "exp is not an integer") ||
        get_time_claim(payload, "sid", &c->sid, why, "sid missing", "sid is not an integer") ||
        get_time_claim(payload, "ver", &c->ver, why, "ver missing", "ver is not an integer"))
        return CP_EINVAL;
    if (c->sid < 1 || c->ver < 1) {
        *why = "sid or ver out of range";
        return CP_EINVAL;
    }

    if (strcmp(iss, pol->issuer) != 0) {
        *why = "wrong issuer";
        return CP_EINVAL;
    }
    if (strcmp(aud, pol->audience) != 0) {
        *why = "wrong audience";
        return CP_EINVAL;
    }
    if (strcmp(cpt, want_cpt) != 0) {
        *why = "wrong token type";
        return CP_EINVAL;
    }
    if (!valid_sub(sub)) {
        *why = "sub is not a user id";
        return CP_EINVAL;
    }
    if (!valid_jti(jti)) {
        *why = "jti is malformed";
        return CP_EINVAL;
    }
    /* The claims may be anything; only now and the leeway are trusted. */
    if (__builtin_sub_overflow(now, pol->leeway_s, &earliest))
        earliest = LLONG_MIN;
    if (__builtin_add_overflow(now, pol->leeway_s, &latest))
        latest = LLONG_MAX;
    if (c->exp <= earliest) {
        *why = "expired";
        return CP_EINVAL;
    }
    if (c->nbf > latest) {
        *why = "not yet valid";
        return CP_EINVAL;
    }
    if (c->iat > latest) {
        *why = "issued in the future";
        return CP_EINVAL;
    }
    if (c->exp <= c->iat) {
        *why = "exp not after iat";
        return CP_EINVAL;
    }
    if (__builtin_sub_overflow(c->exp, c->iat, &lifetime) || lifetime > pol->ttl_s) {
        *why = "lifetime longer than policy";
        return CP_EINVAL;
    }
    strcpy(c->sub, sub);
    strcpy(c->jti, jti);
    strcpy(c->cpt, cpt);
    return 0;
}

int token_verify(const struct token_key *key, const struct token_policy *pol,
                 const char *token, size_t len, const char *want_cpt, long long now,
                 struct token_claims *claims, const char **why)
{
    /* Decoded parts are shorter than the token, which is at most TOKEN_MAX. */
    char part[TOKEN_MAX + 1];
    char copy[TOKEN_MAX + 1];
    const char *dot1, *dot2, *ignored;
    const char *p[3];
    size_t plen[3], n = 0, sig_len = 0;
    struct json_object *payload = NULL;
    struct token_claims c;
    jwt_t *jwt = NULL;
    const unsigned char *vkey;
    int vkey_len, rc = CP_EINVAL;

    if (!why)
        why = &ignored;
    *why = NULL;
    if (claims)
        memset(claims, 0, sizeof *claims);
    memset(&c, 0, sizeof c);
    if (!key || !valid_policy(pol) || !want_cpt || !*want_cpt ||
        strlen(want_cpt) >= sizeof c.cpt || (!token && len)) {
        *why = "bad arguments";
        return CP_EINVAL;
    }
    if (len == 0) {
        *why = "empty token";
        return CP_EINVAL;
    }
    if (len > TOKEN_MAX) {
        *why = "token too long";
        return CP_EINVAL;
    }

    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        *why = "not three parts";
        return CP_EINVAL;
    }
    p[0] = token;
    plen[0] = (size_t)(dot1 - token);
    p[1] = dot1 + 1;
    plen[1] = (size_t)(dot2 - p[1]);
    p[2] = dot2 + 1;
    plen[2] = len - (size_t)(p[2] - token);
    if (plen[0] == 0 || plen[1] == 0) {
        *why = "empty header or payload";
        return CP_EINVAL;
    }
    /* Backwards, so the header is what part holds at the end. */
    for (int i = 2; i >= 0; i--) {
        if (crypto_unb64url(p[i], plen[i], part, sizeof part, &n) != 0) {
            *why = "bad base64url";
            return CP_EINVAL;
        }
        if (i == 2)
            sig_len = n;
    }
    rc = check_header(part, n, key->alg, why);
    if (rc)
        return rc;
    if (sig_len != (key->alg == TOKEN_ES256 ? ES256_SIG_LEN : HS256_SIG_LEN)) {
        *why = "bad signature";
        return CP_EINVAL;
    }

    /* libjwt wants a C string, and the key must never be empty: libjwt
     * 1.10 skips verification altogether without one. */
    memcpy(copy, token, len);
    copy[len] = '\0';
    if (key->alg == TOKEN_ES256) {
        vkey = (const unsigned char *)key->pub_pem;
        vkey_len = (int)key->pub_len;
    } else {
        vkey = key->secret;
        vkey_len = (int)key->secret_len;
    }
    if (!vkey || vkey_len <= 0) {
        *why = "no verification key";
        return CP_EINVAL;
    }
    rc = CP_EINVAL;
    if (jwt_decode(&jwt, copy, vkey, vkey_len) != 0 || !jwt) {
        /* libjwt says EINVAL for a payload its JSON parser refuses too;
         * tell the two apart for the log. */
        *why = "bad signature";
        if (crypto_unb64url(p[1], plen[1], part, sizeof part, &n) == 0 &&
            json_parse(part, n, &token_json_limits, &payload, NULL) != 0)
            *why = "payload is not valid JSON";
        goto done;
    }
    if (jwt_get_alg(jwt) != alg_jwt(key->alg)) {
        *why = "alg not allowed";
        goto done;
    }

    if (crypto_unb64url(p[1], plen[1], part, sizeof part, &n) != 0)
        goto done;
    if (json_parse(part, n, &token_json_limits, &payload, NULL) != 0) {
        *why = "payload is not valid JSON";
        goto done;
    }
    rc = check_claims(payload, pol, want_cpt, now, &c, why);
    if (rc)
        goto done;
    if (claims)
        *claims = c;
    rc = 0;

done:
    json_object_put(payload);
    jwt_free(jwt);
    OPENSSL_cleanse(copy, sizeof copy);
    return rc;
}
