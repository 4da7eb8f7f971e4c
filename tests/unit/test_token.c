#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "buf.h"
#include "crypto.h"
#include "err.h"
#include "token.h"

/*
 * Tokens are built here from their JSON text, so every hostile shape can be
 * written down as it travels: header and payload as literals, signed with
 * HMAC-SHA256 under a key of the test's choosing, or not signed at all.
 */

#define NOW 1700000000LL
#define ISS "https://crosspost.test"
#define AUD "crosspost-api"
#define JTI "q83vEjRWeJq83vEjRWeJqw"

static const struct token_policy policy = {
    .issuer = ISS,
    .audience = AUD,
    .ttl_s = 600,
    .leeway_s = 30,
};

/* The HS256 secret the module loads, known to the test so it can sign. */
static const unsigned char hs_secret[32] = {
    0x3c, 0x91, 0x0e, 0xa7, 0x52, 0xd8, 0x6b, 0x14, 0xf0, 0x29, 0xbe, 0x47, 0x83, 0x5d, 0xc6, 0x1a,
    0x98, 0x2f, 0x71, 0xe4, 0x0b, 0xa3, 0x5c, 0xd9, 0x66, 0x12, 0xfb, 0x8e, 0x37, 0xc0, 0x4d, 0xb5,
};
static const unsigned char other_secret[32] = {
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01,
    0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf0, 0x02,
};

static char tmpdir[64];
static struct token_key *hs_key, *es_key;
static char *es_pub_pem;        /* the public half of es_key, as PEM text */
static size_t es_pub_len;

static void path_in_tmp(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", tmpdir, name);

    assert_true(n > 0 && (size_t)n < cap);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 8192);
    size_t n;

    assert_non_null(f);
    assert_non_null(text);
    n = fread(text, 1, 8191, f);
    assert_true(n > 0);
    fclose(f);
    return text;
}

/* "hs256:" + base64url of the secret, as token_key_generate writes it. */
static void write_hs_key(const char *path, const unsigned char *secret, size_t n,
                         const char *suffix, mode_t mode)
{
    char text[512];

    assert_true(n <= 300);
    strcpy(text, "hs256:");
    crypto_b64url(secret, n, text + 6);
    strcat(text, suffix);
    write_file(path, text, strlen(text), mode);
}

static void write_pkey(const char *path, EVP_PKEY *pkey, const EVP_CIPHER *cipher)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, cipher,
                                              cipher ? (unsigned char *)"passphrase" : NULL,
                                              cipher ? 10 : 0, NULL, NULL), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    write_file(path, data, (size_t)n, 0600);
    BIO_free(bio);
}

/* ---- building tokens ---- */

enum sign_mode {
    SIGN_HS,            /* HMAC-SHA256 under the configured secret */
    SIGN_OTHER,         /* HMAC-SHA256 under another 32-byte secret */
    SIGN_ES_PUB,        /* HMAC-SHA256 keyed with the ES256 public key PEM */
    SIGN_NONE,          /* empty signature */
    SIGN_SHORT,         /* the right HMAC, cut to 31 bytes */
};

static void b64url_append(char *out, const void *data, size_t n)
{
    crypto_b64url(data, n, out + strlen(out));
}

/* header.payload.signature from JSON text; out holds at least 4096 bytes. */
static void make_token(char *out, const char *header, const char *payload, enum sign_mode mode)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const void *k = hs_secret;
    size_t klen = sizeof hs_secret;

    assert_true(strlen(header) < 1000 && strlen(payload) < 1900);
    out[0] = '\0';
    b64url_append(out, header, strlen(header));
    strcat(out, ".");
    b64url_append(out, payload, strlen(payload));
    if (mode == SIGN_OTHER) {
        k = other_secret;
    } else if (mode == SIGN_ES_PUB) {
        k = es_pub_pem;
        klen = es_pub_len;
    }
    assert_non_null(HMAC(EVP_sha256(), k, (int)klen, (const unsigned char *)out, strlen(out),
                         mac, &mac_len));
    strcat(out, ".");
    if (mode == SIGN_NONE)
        return;
    b64url_append(out, mac, mode == SIGN_SHORT ? mac_len - 1 : mac_len);
}

static const char *hdr_hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* A payload that passes, with one member replaced (name == NULL: none),
 * added (not present before) or removed (value == NULL). */
static void make_payload(char *out, size_t cap, const char *name, const char *value)
{
    static const char *names[] = { "iss", "aud", "sub", "iat", "nbf", "exp", "jti", "cpt", "sid", "ver" };
    static const char *values[] = {
        "\"" ISS "\"", "\"" AUD "\"", "\"42\"", "1700000000", "1700000000", "1700000600",
        "\"" JTI "\"", "\"access\"", "5", "1",
    };
    struct buf b;
    int replaced = 0;

    buf_init(&b, cap - 1);
    assert_int_equal(buf_addc(&b, '{'), 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = values[i];

        if (name && !strcmp(name, names[i])) {
            replaced = 1;
            v = value;
        }
        if (!v)
            continue;
        assert_int_equal(buf_printf(&b, "%s\"%s\":%s", b.len > 1 ? "," : "", names[i], v), 0);
    }
    if (name && !replaced && value)
        assert_int_equal(buf_printf(&b, ",\"%s\":%s", name, value), 0);
    assert_int_equal(buf_addc(&b, '}'), 0);
    strcpy(out, buf_str(&b));
    buf_free(&b);
}

/* ---- fixture: one HS256 and one ES256 key for the whole run ---- */

static void make_fixture(void)
{
    char path[256], *pem;
    struct buf err;
    BIO *bio;
    EVP_PKEY *pkey;
    char *data = NULL;
    long n;

    strcpy(tmpdir, "/tmp/test_token.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    buf_init(&err, 1024);

    path_in_tmp(path, sizeof path, "hs.key");
    write_hs_key(path, hs_secret, sizeof hs_secret, "\n", 0600);
    assert_int_equal(token_key_load(path, &hs_key, &err), 0);

    path_in_tmp(path, sizeof path, "es.key");
    assert_int_equal(token_key_generate(TOKEN_ES256, path, 0, &err), 0);
    assert_int_equal(token_key_load(path, &es_key, &err), 0);

    /* The public key PEM exactly as an attacker could obtain it. */
    pem = read_text(path);
    bio = BIO_new_mem_buf(pem, -1);
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    assert_non_null(pkey);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    n = BIO_get_mem_data(bio, &data);
    es_pub_pem = malloc((size_t)n + 1);
    assert_non_null(es_pub_pem);
    memcpy(es_pub_pem, data, (size_t)n);
    es_pub_pem[n] = '\0';
    es_pub_len = (size_t)n;
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    free(pem);
    buf_free(&err);
}

static int fixture_setup(void **state)
{
    (void)state;
    if (!hs_key)
        make_fixture();
    return 0;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0)
            remove_tree(path);
    }
    closedir(d);
    rmdir(dir);
}

static int fixture_teardown(void **state)
{
    (void)state;
    token_key_free(hs_key);
    token_key_free(es_key);
    free(es_pub_pem);
    hs_key = es_key = NULL;
    es_pub_pem = NULL;
    if (tmpdir[0])
        remove_tree(tmpdir);
    return 0;
}

/* ---- verify: a table of crafted tokens ---- */

struct verify_case {
    const char *name;
    const char *header;         /* NULL: HS256/JWT */
    const char *claim;          /* member of the valid payload to change, or NULL */
    const char *value;          /* its new JSON text; NULL removes it */
    const char *payload;        /* the whole payload instead (claim ignored) */
    enum sign_mode sign;
    int es;                     /* verify with the ES256 key instead */
    long long now;              /* 0: NOW */
    const char *why;            /* NULL: accepted; else the exact reason */
};

static const struct verify_case verify_cases[] = {
    { "valid", NULL, NULL, NULL, NULL, SIGN_HS, 0, 0, NULL },
    { "valid with extra claims", NULL, "role", "\"admin\"", NULL, SIGN_HS, 0, 0, NULL },
    { "valid without typ", "{\"alg\":\"HS256\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, NULL },
    { "valid with kid", "{\"alg\":\"HS256\",\"kid\":\"1\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, NULL },

    /* the algorithm */
    { "alg none", "{\"alg\":\"none\",\"typ\":\"JWT\"}", NULL, NULL, NULL, SIGN_NONE, 0, 0, "alg not allowed" },
    { "alg NONE", "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", NULL, NULL, NULL, SIGN_NONE, 0, 0, "alg not allowed" },
    { "alg nOnE", "{\"alg\":\"nOnE\",\"typ\":\"JWT\"}", NULL, NULL, NULL, SIGN_NONE, 0, 0, "alg not allowed" },
    { "alg none, ES256 configured", "{\"alg\":\"none\"}", NULL, NULL, NULL, SIGN_NONE, 1, 0, "alg not allowed" },
    { "alg none with a valid HMAC", "{\"alg\":\"none\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "alg not allowed" },
    { "alg hs256 lower case", "{\"alg\":\"hs256\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "alg not allowed" },
    { "alg HS384", "{\"alg\":\"HS384\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "alg not allowed" },
    { "alg missing", "{\"typ\":\"JWT\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "alg missing or not a string" },
    { "alg not a string", "{\"alg\":1}", NULL, NULL, NULL, SIGN_HS, 0, 0, "alg missing or not a string" },
    { "alg with NUL escape", "{\"alg\":\"HS256\\u0000x\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not valid JSON" },
    { "duplicate alg, last none", "{\"alg\":\"HS256\",\"alg\":\"none\"}", NULL, NULL, NULL, SIGN_NONE, 0, 0, "alg not allowed" },
    { "signed with another key", NULL, NULL, NULL, NULL, SIGN_OTHER, 0, 0, "bad signature" },
    { "signature cut short", NULL, NULL, NULL, NULL, SIGN_SHORT, 0, 0, "bad signature" },
    { "HS256 signature missing", NULL, NULL, NULL, NULL, SIGN_NONE, 0, 0, "bad signature" },
    { "HS256 token, ES256 configured", NULL, NULL, NULL, NULL, SIGN_HS, 1, 0, "alg not allowed" },
    { "HS256 keyed with the ES256 public PEM", NULL, NULL, NULL, NULL, SIGN_ES_PUB, 1, 0, "alg not allowed" },
    { "typ lower case", "{\"alg\":\"HS256\",\"typ\":\"jwt\"}", NULL, NULL, NULL, SIGN_HS, 0, 0, "typ is not JWT" },
    { "typ null", "{\"alg\":\"HS256\",\"typ\":null}", NULL, NULL, NULL, SIGN_HS, 0, 0, "typ is not JWT" },
    { "crit header", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}", NULL, NULL, NULL, SIGN_HS, 0, 0, "crit header not supported" },
    { "header not JSON", "{alg:HS256}", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not valid JSON" },
    { "header trailing garbage", "{\"alg\":\"HS256\"}x", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not valid JSON" },
    { "header an array", "[\"HS256\"]", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not an object" },
    { "header a string", "\"HS256\"", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not an object" },
    { "header nested too deep", "{\"alg\":\"HS256\",\"x\":[[1]]}", NULL, NULL, NULL, SIGN_HS, 0, 0, "header is not valid JSON" },

    /* exp, nbf, iat: presence and JSON type */
    { "exp missing", NULL, "exp", NULL, NULL, SIGN_HS, 0, 0, "exp missing" },
    { "exp null", NULL, "exp", "null", NULL, SIGN_HS, 0, 0, "exp missing" },
    { "exp as string", NULL, "exp", "\"9999999999\"", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    { "exp as double 1.5e10", NULL, "exp", "1.5e10", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    { "exp with fraction", NULL, "exp", "1700000600.5", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    { "exp as 1700000600.0", NULL, "exp", "1700000600.0", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    { "exp as true", NULL, "exp", "true", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    { "exp as array", NULL, "exp", "[1700000600]", NULL, SIGN_HS, 0, 0, "exp is not an integer" },
    /* jansson, inside libjwt, refuses integers past int64 first */
    { "exp past int64", NULL, "exp", "99999999999999999999", NULL, SIGN_HS, 0, 0, "bad signature" },
    { "nbf missing", NULL, "nbf", NULL, NULL, SIGN_HS, 0, 0, "nbf missing" },
    { "nbf as string", NULL, "nbf", "\"1700000000\"", NULL, SIGN_HS, 0, 0, "nbf is not an integer" },
    { "iat missing", NULL, "iat", NULL, NULL, SIGN_HS, 0, 0, "iat missing" },
    { "iat as double", NULL, "iat", "1.7e9", NULL, SIGN_HS, 0, 0, "iat is not an integer" },

    /* time: leeway is 30 s */
    { "expired", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW + 600 + 31, "expired" },
    { "expired by exactly the leeway", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW + 600 + 30, "expired" },
    { "within leeway after exp", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW + 600 + 29, NULL },
    { "long expired", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW + 86400, "expired" },
    { "nbf in the future", NULL, "nbf", "1700000031", NULL, SIGN_HS, 0, 0, "not yet valid" },
    { "nbf at the leeway", NULL, "nbf", "1700000030", NULL, SIGN_HS, 0, 0, NULL },
    { "iat in the future", NULL, NULL, NULL,
      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"42\",\"iat\":1700000031,"
      "\"nbf\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cpt\":\"access\",\"sid\":5,\"ver\":1}",
      SIGN_HS, 0, 0, "issued in the future" },
    { "iat at the leeway", NULL, NULL, NULL,
      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"42\",\"iat\":1700000030,"
      "\"nbf\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cpt\":\"access\",\"sid\":5,\"ver\":1}",
      SIGN_HS, 0, 0, NULL },
    { "before iat, within leeway", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW - 30, NULL },
    { "before iat, past leeway", NULL, NULL, NULL, NULL, SIGN_HS, 0, NOW - 31, "not yet valid" },
    { "lifetime above policy", NULL, "exp", "1700000601", NULL, SIGN_HS, 0, 0, "lifetime longer than policy" },
    { "lifetime at policy", NULL, "exp", "1700000600", NULL, SIGN_HS, 0, 0, NULL },
    { "exp at int64 max, iat far past", NULL, NULL, NULL,
      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"42\",\"iat\":-9223372036854775807,"
      "\"nbf\":0,\"exp\":9223372036854775807,\"jti\":\"" JTI "\",\"cpt\":\"access\",\"sid\":5,\"ver\":1}",
      SIGN_HS, 0, 0, "lifetime longer than policy" },
    { "exp before iat", NULL, NULL, NULL,
      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"42\",\"iat\":1700000000,"
      "\"nbf\":1700000000,\"exp\":1699999999,\"jti\":\"" JTI "\",\"cpt\":\"access\",\"sid\":5,\"ver\":1}",
      SIGN_HS, 0, 0, "exp not after iat" },

    /* iss, aud, sub, jti, cpt */
    { "wrong aud", NULL, "aud", "\"other-api\"", NULL, SIGN_HS, 0, 0, "wrong audience" },
    { "aud as array", NULL, "aud", "[\"" AUD "\"]", NULL, SIGN_HS, 0, 0, "aud is not a string" },
    { "aud missing", NULL, "aud", NULL, NULL, SIGN_HS, 0, 0, "aud missing" },
    { "aud prefix only", NULL, "aud", "\"crosspost\"", NULL, SIGN_HS, 0, 0, "wrong audience" },
    { "wrong iss", NULL, "iss", "\"https://evil.test\"", NULL, SIGN_HS, 0, 0, "wrong issuer" },
    { "iss missing", NULL, "iss", NULL, NULL, SIGN_HS, 0, 0, "iss missing" },
    { "iss as number", NULL, "iss", "1", NULL, SIGN_HS, 0, 0, "iss is not a string" },
    { "wrong cpt", NULL, "cpt", "\"refresh\"", NULL, SIGN_HS, 0, 0, "wrong token type" },
    { "cpt upper case", NULL, "cpt", "\"ACCESS\"", NULL, SIGN_HS, 0, 0, "wrong token type" },
    { "cpt missing", NULL, "cpt", NULL, NULL, SIGN_HS, 0, 0, "cpt missing" },
    { "sid missing", NULL, "sid", NULL, NULL, SIGN_HS, 0, 0, "sid missing" },
    { "sid as string", NULL, "sid", "\"5\"", NULL, SIGN_HS, 0, 0, "sid is not an integer" },
    { "ver as double", NULL, "ver", "1.0", NULL, SIGN_HS, 0, 0, "ver is not an integer" },
    { "ver zero", NULL, "ver", "0", NULL, SIGN_HS, 0, 0, "sid or ver out of range" },
    { "sid negative", NULL, "sid", "-5", NULL, SIGN_HS, 0, 0, "sid or ver out of range" },
    { "sub non-numeric", NULL, "sub", "\"admin\"", NULL, SIGN_HS, 0, 0, "sub is not a user id" },
    { "sub negative", NULL, "sub", "\"-1\"", NULL, SIGN_HS, 0, 0, "sub is not a user id" },
    { "sub empty", NULL, "sub", "\"\"", NULL, SIGN_HS, 0, 0, "sub is not a user id" },
    { "sub 21 digits", NULL, "sub", "\"123456789012345678901\"", NULL, SIGN_HS, 0, 0, "sub is not a user id" },
    { "sub 20 digits", NULL, "sub", "\"12345678901234567890\"", NULL, SIGN_HS, 0, 0, NULL },
    { "sub as number", NULL, "sub", "42", NULL, SIGN_HS, 0, 0, "sub is not a string" },
    { "sub with space", NULL, "sub", "\"42 \"", NULL, SIGN_HS, 0, 0, "sub is not a user id" },
    { "jti short", NULL, "jti", "\"abc\"", NULL, SIGN_HS, 0, 0, "jti is malformed" },
    { "jti bad alphabet", NULL, "jti", "\"q83vEjRWeJq83vEjRWeJ+w\"", NULL, SIGN_HS, 0, 0, "jti is malformed" },
    { "jti 48 chars", NULL, "jti", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", NULL, SIGN_HS, 0, 0, "jti is malformed" },
    { "jti missing", NULL, "jti", NULL, NULL, SIGN_HS, 0, 0, "jti missing" },

    /* payload text */
    { "payload trailing garbage", NULL, NULL, NULL,
      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"42\",\"iat\":1700000000,"
      "\"nbf\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cpt\":\"access\"}x",
      SIGN_HS, 0, 0, "payload is not valid JSON" },
    { "payload not UTF-8", NULL, "name", "\"\xc0\xaf\"", NULL, SIGN_HS, 0, 0, "payload is not valid JSON" },
    { "payload not JSON", NULL, NULL, NULL, "{iss:1}", SIGN_HS, 0, 0, "payload is not valid JSON" },
    /* libjwt takes an array here (jansson refuses bare scalars) */
    { "payload an array", NULL, NULL, NULL, "[1]", SIGN_HS, 0, 0, "payload is not an object" },
    { "payload a string", NULL, NULL, NULL, "\"access\"", SIGN_HS, 0, 0, "bad signature" },
    { "payload nested too deep", NULL, "x", "{\"y\":{\"z\":1}}", NULL, SIGN_HS, 0, 0, "payload is not valid JSON" },
    { "payload with NUL escape", NULL, "x", "\"a\\u0000b\"", NULL, SIGN_HS, 0, 0, "payload is not valid JSON" },
};

static void test_verify_table(void **state)
{
    char payload[2048], token[4096];
    struct token_claims c;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof verify_cases / sizeof verify_cases[0]; i++) {
        const struct verify_case *t = &verify_cases[i];
        int rc;

        if (t->payload)
            strcpy(payload, t->payload);
        else
            make_payload(payload, sizeof payload, t->claim, t->value);
        make_token(token, t->header ? t->header : hdr_hs, payload, t->sign);
        why = "untouched";
        rc = token_verify(t->es ? es_key : hs_key, &policy, token, strlen(token),
                          TOKEN_TYPE_ACCESS, t->now ? t->now : NOW, &c, &why);
        if (!t->why) {
            if (rc != 0)
                fail_msg("%s: refused (%s)", t->name, why ? why : "?");
            assert_string_equal(c.sub, strstr(payload, "12345678901234567890") ? "12345678901234567890" : "42");
            assert_string_equal(c.cpt, "access");
            assert_string_equal(c.jti, JTI);
            assert_true(c.exp > c.iat);
        } else {
            if (rc != CP_EINVAL)
                fail_msg("%s: rc %d, expected CP_EINVAL", t->name, rc);
            if (!why || strcmp(why, t->why) != 0)
                fail_msg("%s: reason \"%s\", expected \"%s\"", t->name, why ? why : "(null)", t->why);
            assert_string_equal(c.sub, "");
            assert_int_equal(c.exp, 0);
        }
    }
}

/* ---- verify: the token's outer shape ---- */

struct shape_case {
    const char *name;
    const char *token;          /* "%s" stands for a valid token */
    const char *why;
};

static const struct shape_case shape_cases[] = {
    { "valid", "%s", NULL },
    { "extra dot at the end", "%s.", "not three parts" },
    { "extra part", "%s.AAAA", "not three parts" },
    { "leading dot", ".%s", "not three parts" },
    { "no dots", "abcdef", "not three parts" },
    { "one dot", "abc.def", "not three parts" },
    { "only dots", "..", "empty header or payload" },
    { "empty header", ".eyJ9.AAAA", "empty header or payload" },
    { "whitespace appended", "%s ", "bad base64url" },
    { "newline appended", "%s\n", "bad base64url" },
    { "padding appended", "%s=", "bad base64url" },
    { "standard base64 plus", "+%s", "bad base64url" },
    { "standard base64 slash", "/%s", "bad base64url" },
    { "Bearer prefix", "Bearer %s", "bad base64url" },
};

/* Copy template to out with its first "%s" replaced by good. */
static void expand(char *out, size_t cap, const char *template, const char *good)
{
    const char *mark = strstr(template, "%s");
    int n;

    if (mark)
        n = snprintf(out, cap, "%.*s%s%s", (int)(mark - template), template, good, mark + 2);
    else
        n = snprintf(out, cap, "%s", template);
    assert_true(n > 0 && (size_t)n < cap);
}

static void test_verify_shape(void **state)
{
    char payload[1024], good[4096], token[8192];
    struct token_claims c;
    const char *why;

    (void)state;
    make_payload(payload, sizeof payload, NULL, NULL);
    make_token(good, hdr_hs, payload, SIGN_HS);
    for (size_t i = 0; i < sizeof shape_cases / sizeof shape_cases[0]; i++) {
        const struct shape_case *t = &shape_cases[i];
        int rc;

        expand(token, sizeof token, t->token, good);
        why = NULL;
        rc = token_verify(hs_key, &policy, token, strlen(token), TOKEN_TYPE_ACCESS, NOW, &c, &why);
        if (!t->why) {
            if (rc)
                fail_msg("%s: refused (%s)", t->name, why);
            continue;
        }
        if (rc != CP_EINVAL || !why || strcmp(why, t->why))
            fail_msg("%s: rc %d reason \"%s\", expected \"%s\"", t->name, rc,
                     why ? why : "(null)", t->why);
    }
}

/* Edits of a valid token that need more than a format string. */
static void test_verify_edits(void **state)
{
    char payload[1024], good[4096], token[4096], *big;
    const char *why, *sig;
    size_t len;

    (void)state;
    make_payload(payload, sizeof payload, NULL, NULL);
    make_token(good, hdr_hs, payload, SIGN_HS);
    len = strlen(good);

    /* The length counts, not the NUL: a token cut short is not the token. */
    assert_int_equal(token_verify(hs_key, &policy, good, len - 1, "access", NOW, NULL, &why), CP_EINVAL);
    assert_int_equal(token_verify(hs_key, &policy, good, 0, "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "empty token");
    assert_int_equal(token_verify(hs_key, &policy, "", 0, "access", NOW, NULL, &why), CP_EINVAL);

    /* A NUL inside the counted length. */
    memcpy(token, good, len + 1);
    token[10] = '\0';
    assert_int_equal(token_verify(hs_key, &policy, token, len, "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "bad base64url");

    /* The last signature character with non-zero trailing bits: the same
     * bytes spelt differently are refused. */
    memcpy(token, good, len + 1);
    sig = strrchr(token, '.') + 1;
    assert_int_equal(strlen(sig), 43);
    token[len - 1] = token[len - 1] == 'A' ? 'B' : (char)(token[len - 1] ^ 1);
    assert_int_equal(token_verify(hs_key, &policy, token, len, "access", NOW, NULL, &why), CP_EINVAL);

    /* One changed payload character. */
    memcpy(token, good, len + 1);
    token[strchr(token, '.') - token + 5] ^= 0x01;
    assert_int_equal(token_verify(hs_key, &policy, token, len, "access", NOW, NULL, &why), CP_EINVAL);

    /* Past the size limit, even when otherwise valid-looking. */
    big = malloc(3001);
    assert_non_null(big);
    memset(big, 'A', 3000);
    big[3000] = '\0';
    memcpy(big, good, len);
    assert_int_equal(token_verify(hs_key, &policy, big, 3000, "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "token too long");
    assert_int_equal(token_verify(hs_key, &policy, big, TOKEN_MAX + 1, "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "token too long");
    free(big);

    /* The caller asks for another type than the token carries. */
    assert_int_equal(token_verify(hs_key, &policy, good, len, "refresh", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "wrong token type");
    assert_int_equal(token_verify(hs_key, &policy, good, len, "access", NOW, NULL, NULL), 0);
}

/* Random corruption: never a crash, never an acceptance. */
static void test_verify_mutations(void **state)
{
    char payload[1024], good[4096], token[4096];
    const char *why;
    unsigned seed = 12345;
    size_t len;

    (void)state;
    make_payload(payload, sizeof payload, NULL, NULL);
    make_token(good, hdr_hs, payload, SIGN_HS);
    len = strlen(good);
    for (int i = 0; i < 3000; i++) {
        size_t pos, cut = len;

        memcpy(token, good, len + 1);
        for (int k = 0; k < 1 + i % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            token[pos] = (char)(seed >> 16);
        }
        if (i % 7 == 0)
            cut = (seed >> 4) % len + 1;
        if (cut == len && !memcmp(token, good, len))
            continue;
        assert_int_equal(token_verify(hs_key, &policy, token, cut, "access", NOW, NULL, &why),
                         CP_EINVAL);
        assert_non_null(why);
    }
}

/* ---- issue and verify ---- */

static void round_trip(struct token_key *key, const char *alg)
{
    char token[TOKEN_MAX + 1], header[256];
    struct token_claims issued, got;
    const char *why = NULL;
    size_t n = 0;

    assert_int_equal(token_issue(key, &policy, "1234", "access", 5, 1, NOW, token, sizeof token, &issued), 0);
    assert_true(strlen(token) < TOKEN_MAX);
    assert_string_equal(issued.sub, "1234");
    assert_string_equal(issued.cpt, "access");
    assert_int_equal(issued.iat, NOW);
    assert_int_equal(issued.nbf, NOW);
    assert_int_equal(issued.exp, NOW + policy.ttl_s);
    assert_int_equal(strlen(issued.jti), 22);
    assert_int_equal(issued.sid, 5);
    assert_int_equal(issued.ver, 1);

    /* The header says what it should. */
    assert_int_equal(crypto_unb64url(token, (size_t)(strchr(token, '.') - token), header,
                                     sizeof header - 1, &n), 0);
    header[n] = '\0';
    assert_non_null(strstr(header, alg));
    assert_non_null(strstr(header, "\"typ\":\"JWT\""));

    if (token_verify(key, &policy, token, strlen(token), "access", NOW, &got, &why))
        fail_msg("%s round trip refused: %s", alg, why);
    assert_int_equal(got.sid, 5);
    assert_int_equal(got.ver, 1);
    assert_memory_equal(&issued, &got, sizeof got);

    /* The whole lifetime, with the leeway at both ends. */
    assert_int_equal(token_verify(key, &policy, token, strlen(token), "access",
                                  NOW - policy.leeway_s, &got, &why), 0);
    assert_int_equal(token_verify(key, &policy, token, strlen(token), "access",
                                  NOW + policy.ttl_s + policy.leeway_s - 1, &got, &why), 0);
    assert_int_equal(token_verify(key, &policy, token, strlen(token), "access",
                                  NOW + policy.ttl_s + policy.leeway_s, &got, &why), CP_EINVAL);
    assert_string_equal(why, "expired");

    /* The token of the other key type is refused by its algorithm. */
    assert_int_equal(token_verify(key == hs_key ? es_key : hs_key, &policy, token, strlen(token),
                                  "access", NOW, &got, &why), CP_EINVAL);
    assert_string_equal(why, "alg not allowed");

    /* Each issue has its own jti. */
    {
        struct token_claims again;
        char token2[TOKEN_MAX + 1];

        assert_int_equal(token_issue(key, &policy, "1234", "access", 5, 1, NOW, token2, sizeof token2,
                                     &again), 0);
        assert_string_not_equal(again.jti, issued.jti);
        assert_string_not_equal(token, token2);
    }

    /* Another type of token does not pass for an access token. */
    assert_int_equal(token_issue(key, &policy, "1234", "refresh", 5, 1, NOW, token, sizeof token, NULL), 0);
    assert_int_equal(token_verify(key, &policy, token, strlen(token), "access", NOW, &got, &why),
                     CP_EINVAL);
    assert_string_equal(why, "wrong token type");
    assert_int_equal(token_verify(key, &policy, token, strlen(token), "refresh", NOW, &got, &why), 0);
}

static void test_round_trip_hs256(void **state)
{
    (void)state;
    assert_int_equal(token_key_alg(hs_key), TOKEN_HS256);
    round_trip(hs_key, "\"alg\":\"HS256\"");
}

static void test_round_trip_es256(void **state)
{
    char token[TOKEN_MAX + 1];
    const char *why;
    size_t len;

    (void)state;
    assert_int_equal(token_key_alg(es_key), TOKEN_ES256);
    round_trip(es_key, "\"alg\":\"ES256\"");

    /* A changed signature byte fails ECDSA verification. */
    assert_int_equal(token_issue(es_key, &policy, "7", "access", 5, 1, NOW, token, sizeof token, NULL), 0);
    len = strlen(token);
    token[len - 10] = token[len - 10] == 'A' ? 'B' : 'A';
    assert_int_equal(token_verify(es_key, &policy, token, len, "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "bad signature");
}

/* A policy from another deployment refuses our tokens. */
static void test_policy_mismatch(void **state)
{
    char token[TOKEN_MAX + 1];
    struct token_policy other = policy;
    const char *why;

    (void)state;
    assert_int_equal(token_issue(hs_key, &policy, "1", "access", 5, 1, NOW, token, sizeof token, NULL), 0);
    other.audience = "crosspost-admin";
    assert_int_equal(token_verify(hs_key, &other, token, strlen(token), "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "wrong audience");
    other = policy;
    other.issuer = "https://elsewhere.test";
    assert_int_equal(token_verify(hs_key, &other, token, strlen(token), "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "wrong issuer");
    other = policy;
    other.ttl_s = 300;     /* a shorter policy than the token was issued under */
    assert_int_equal(token_verify(hs_key, &other, token, strlen(token), "access", NOW, NULL, &why), CP_EINVAL);
    assert_string_equal(why, "lifetime longer than policy");
}

struct issue_case {
    const char *name;
    long long ttl_s;
    long long leeway_s;
    const char *sub;
    const char *cpt;
    long long now;
    size_t cap;
    int rc;
};

static const struct issue_case issue_cases[] = {
    { "ok", 600, 30, "1", "access", NOW, TOKEN_MAX + 1, 0 },
    { "ttl at the cap", 900, 30, "1", "access", NOW, TOKEN_MAX + 1, 0 },
    { "ttl past the cap", 901, 30, "1", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "ttl zero", 0, 30, "1", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "ttl negative", -5, 30, "1", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "negative leeway", 600, -1, "1", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "sub not digits", 600, 30, "bob", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "sub empty", 600, 30, "", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "sub 21 digits", 600, 30, "123456789012345678901", "access", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "cpt empty", 600, 30, "1", "", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "cpt too long", 600, 30, "1", "0123456789abcdef", NOW, TOKEN_MAX + 1, CP_EINVAL },
    { "now zero", 600, 30, "1", "access", 0, TOKEN_MAX + 1, CP_EINVAL },
    { "now near overflow", 600, 30, "1", "access", LLONG_MAX - 10, TOKEN_MAX + 1, CP_EINVAL },
    { "buffer too small", 600, 30, "1", "access", NOW, 64, CP_ETOOBIG },
};

static void test_issue_table(void **state)
{
    char out[TOKEN_MAX + 1];
    struct token_claims c;

    (void)state;
    for (size_t i = 0; i < sizeof issue_cases / sizeof issue_cases[0]; i++) {
        const struct issue_case *t = &issue_cases[i];
        struct token_policy pol = policy;
        int rc;

        pol.ttl_s = t->ttl_s;
        pol.leeway_s = t->leeway_s;
        for (int k = 0; k < 2; k++) {
            memset(out, 'x', sizeof out);
            rc = token_issue(k ? es_key : hs_key, &pol, t->sub, t->cpt, 5, 1, t->now, out, t->cap, &c);
            if (rc != t->rc)
                fail_msg("%s (%s): rc %d, expected %d", t->name, k ? "ES256" : "HS256", rc, t->rc);
            if (rc) {
                assert_string_equal(out, "");
                assert_int_equal(c.exp, 0);
            } else {
                assert_int_equal(c.exp - c.iat, t->ttl_s);
            }
        }
    }
}

/* ---- key files ---- */

enum key_kind {
    KEY_HS_GOOD,        /* 32 random bytes, "\n" at the end */
    KEY_HS_NO_NEWLINE,
    KEY_HS_64,
    KEY_HS_31,
    KEY_HS_ZERO,
    KEY_HS_FEW_VALUES,  /* 32 bytes, 8 distinct values */
    KEY_HS_CRLF,
    KEY_HS_TWO_NEWLINES,
    KEY_HS_PADDED,
    KEY_HS_SPACE,
    KEY_TEXT,           /* the literal text below */
    KEY_ES_P256,
    KEY_ES_P256_SEC1,
    KEY_ES_P384,
    KEY_ES_ENCRYPTED,
    KEY_RSA,
    KEY_MISSING,
    KEY_DIRECTORY,
};

struct key_case {
    const char *name;
    enum key_kind kind;
    const char *text;
    mode_t mode;
    int rc;
    const char *err;            /* a fragment of the message */
};

static const struct key_case key_cases[] = {
    { "HS256 good", KEY_HS_GOOD, NULL, 0600, 0, NULL },
    { "HS256 owner read-only", KEY_HS_GOOD, NULL, 0400, 0, NULL },
    { "HS256 without newline", KEY_HS_NO_NEWLINE, NULL, 0600, 0, NULL },
    { "HS256 64 bytes", KEY_HS_64, NULL, 0600, 0, NULL },
    { "HS256 mode 0644", KEY_HS_GOOD, NULL, 0644, CP_EINVAL, "chmod 600" },
    { "HS256 mode 0640", KEY_HS_GOOD, NULL, 0640, CP_EINVAL, "chmod 600" },
    { "HS256 mode 0604", KEY_HS_GOOD, NULL, 0604, CP_EINVAL, "chmod 600" },
    { "HS256 mode 0610", KEY_HS_GOOD, NULL, 0610, CP_EINVAL, "chmod 600" },
    { "HS256 31 bytes", KEY_HS_31, NULL, 0600, CP_EINVAL, "at least 32" },
    { "HS256 all zero", KEY_HS_ZERO, NULL, 0600, CP_EINVAL, "not random" },
    { "HS256 8 distinct values", KEY_HS_FEW_VALUES, NULL, 0600, CP_EINVAL, "not random" },
    { "HS256 CRLF", KEY_HS_CRLF, NULL, 0600, CP_EINVAL, "base64url" },
    { "HS256 two newlines", KEY_HS_TWO_NEWLINES, NULL, 0600, CP_EINVAL, "base64url" },
    { "HS256 padded", KEY_HS_PADDED, NULL, 0600, CP_EINVAL, "base64url" },
    { "HS256 space before key", KEY_HS_SPACE, NULL, 0600, CP_EINVAL, "base64url" },
    { "upper-case prefix", KEY_TEXT, "HS256:PJEOp1LYaxTwKb5Hg13GGpgvceQLo1zZZhL7jjfATbU\n", 0600, CP_EINVAL, "expected" },
    { "hs512 prefix", KEY_TEXT, "hs512:PJEOp1LYaxTwKb5Hg13GGpgvceQLo1zZZhL7jjfATbU\n", 0600, CP_EINVAL, "expected" },
    { "no prefix", KEY_TEXT, "PJEOp1LYaxTwKb5Hg13GGpgvceQLo1zZZhL7jjfATbU\n", 0600, CP_EINVAL, "expected" },
    { "leading space", KEY_TEXT, " hs256:PJEOp1LYaxTwKb5Hg13GGpgvceQLo1zZZhL7jjfATbU\n", 0600, CP_EINVAL, "expected" },
    { "prefix only", KEY_TEXT, "hs256:\n", 0600, CP_EINVAL, "no key" },
    { "empty file", KEY_TEXT, "", 0600, CP_EINVAL, "empty" },
    { "PEM garbage", KEY_TEXT, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600, CP_EINVAL, "PEM private key" },
    { "public key PEM", KEY_TEXT, "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n", 0600, CP_EINVAL, "PEM private key" },
    { "ES256 P-256", KEY_ES_P256, NULL, 0600, 0, NULL },
    { "ES256 P-256 SEC1 PEM", KEY_ES_P256_SEC1, NULL, 0600, 0, NULL },
    { "ES256 P-256 mode 0644", KEY_ES_P256, NULL, 0644, CP_EINVAL, "chmod 600" },
    { "ES256 P-384", KEY_ES_P384, NULL, 0600, CP_EINVAL, "P-256" },
    { "ES256 encrypted", KEY_ES_ENCRYPTED, NULL, 0600, CP_EINVAL, "unencrypted" },
    { "RSA key", KEY_RSA, NULL, 0600, CP_EINVAL, "P-256" },
    { "missing file", KEY_MISSING, NULL, 0600, CP_EIO, "No such file" },
    { "a directory", KEY_DIRECTORY, NULL, 0700, CP_EINVAL, "not a regular file" },
};

static void write_key_case(const char *path, const struct key_case *t)
{
    unsigned char bytes[64];
    EVP_PKEY *pkey = NULL;

    switch (t->kind) {
    case KEY_HS_GOOD:
    case KEY_HS_NO_NEWLINE:
    case KEY_HS_64:
    case KEY_HS_31:
    case KEY_HS_CRLF:
    case KEY_HS_TWO_NEWLINES:
        assert_int_equal(crypto_random(bytes, sizeof bytes), 0);
        /* At least 16 distinct values whatever the random draw. */
        for (int i = 0; i < 16; i++)
            bytes[i] = (unsigned char)(i * 16 + 1);
        write_hs_key(path, bytes,
                     t->kind == KEY_HS_64 ? 64 : t->kind == KEY_HS_31 ? 31 : 32,
                     t->kind == KEY_HS_NO_NEWLINE ? "" : t->kind == KEY_HS_CRLF ? "\r\n" :
                     t->kind == KEY_HS_TWO_NEWLINES ? "\n\n" : "\n", t->mode);
        break;
    case KEY_HS_ZERO:
        memset(bytes, 0, sizeof bytes);
        write_hs_key(path, bytes, 32, "\n", t->mode);
        break;
    case KEY_HS_FEW_VALUES:
        for (int i = 0; i < 32; i++)
            bytes[i] = (unsigned char)(i % 8);
        write_hs_key(path, bytes, 32, "\n", t->mode);
        break;
    case KEY_HS_PADDED:
        /* 32 bytes are 43 characters; the standard spelling adds "=". */
        write_hs_key(path, hs_secret, 32, "=\n", t->mode);
        break;
    case KEY_HS_SPACE:
        write_file(path, "hs256: PJEOp1LYaxTwKb5Hg13GGpgvceQLo1zZZhL7jjfATbU\n", 51, t->mode);
        break;
    case KEY_TEXT:
        write_file(path, t->text, strlen(t->text), t->mode);
        break;
    case KEY_ES_P256:
    case KEY_ES_ENCRYPTED:
        pkey = EVP_EC_gen("P-256");
        assert_non_null(pkey);
        write_pkey(path, pkey, t->kind == KEY_ES_ENCRYPTED ? EVP_aes_256_cbc() : NULL);
        assert_int_equal(chmod(path, t->mode), 0);
        break;
    case KEY_ES_P256_SEC1: {
        char cmd[600];

        unlink(path);
        snprintf(cmd, sizeof cmd,
                 "openssl ecparam -name prime256v1 -genkey -noout -out '%s' 2>/dev/null", path);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(chmod(path, t->mode), 0);
        break;
    }
    case KEY_ES_P384:
        pkey = EVP_EC_gen("P-384");
        assert_non_null(pkey);
        write_pkey(path, pkey, NULL);
        break;
    case KEY_RSA:
        pkey = EVP_RSA_gen(2048);
        assert_non_null(pkey);
        write_pkey(path, pkey, NULL);
        break;
    case KEY_MISSING:
        unlink(path);
        break;
    case KEY_DIRECTORY:
        assert_int_equal(mkdir(path, t->mode), 0);
        break;
    }
    EVP_PKEY_free(pkey);
}

static void test_key_load_table(void **state)
{
    char path[256];
    struct buf err;

    (void)state;
    buf_init(&err, 1024);
    for (size_t i = 0; i < sizeof key_cases / sizeof key_cases[0]; i++) {
        const struct key_case *t = &key_cases[i];
        struct token_key *key = (struct token_key *)&err;   /* must be reset */
        char name[32];
        int rc;

        snprintf(name, sizeof name, "load-%zu.key", i);
        path_in_tmp(path, sizeof path, name);
        write_key_case(path, t);
        buf_reset(&err);
        rc = token_key_load(path, &key, &err);
        if (rc != t->rc)
            fail_msg("%s: rc %d (%s), expected %d", t->name, rc, buf_str(&err), t->rc);
        if (rc) {
            assert_null(key);
            if (!strstr(buf_str(&err), t->err))
                fail_msg("%s: message \"%s\" lacks \"%s\"", t->name, buf_str(&err), t->err);
            if (t->kind == KEY_DIRECTORY)
                rmdir(path);
            continue;
        }
        assert_non_null(key);
        /* A loaded key signs and verifies its own tokens. */
        {
            char token[TOKEN_MAX + 1];
            const char *why = NULL;

            assert_int_equal(token_issue(key, &policy, "9", "access", 5, 1, NOW, token, sizeof token, NULL), 0);
            assert_int_equal(token_verify(key, &policy, token, strlen(token), "access", NOW, NULL, &why), 0);
        }
        token_key_free(key);
    }
    buf_free(&err);
    token_key_free(NULL);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_key_generate(void **state)
{
    char dir[256], path[300];
    struct buf err;
    struct stat st;
    mode_t old_umask;

    (void)state;
    buf_init(&err, 1024);
    path_in_tmp(dir, sizeof dir, "gen");
    assert_int_equal(mkdir(dir, 0700), 0);

    /* A permissive umask does not make the file readable by others. */
    old_umask = umask(0);
    for (int k = 0; k < 2; k++) {
        enum token_alg alg = k ? TOKEN_ES256 : TOKEN_HS256;
        struct token_key *key = NULL;
        char *before, *after;

        snprintf(path, sizeof path, "%s/%s.key", dir, k ? "es" : "hs");
        buf_reset(&err);
        assert_int_equal(token_key_generate(alg, path, 0, &err), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(token_key_load(path, &key, &err), 0);
        assert_int_equal(token_key_alg(key), alg);
        token_key_free(key);
        before = read_text(path);
        if (!k) {
            assert_memory_equal(before, "hs256:", 6);
            assert_int_equal(strlen(before), 6 + 43 + 1);
        } else {
            assert_non_null(strstr(before, "-----BEGIN PRIVATE KEY-----"));
        }

        /* No silent replacement. */
        buf_reset(&err);
        assert_int_equal(token_key_generate(alg, path, 0, &err), CP_ECONFLICT);
        assert_non_null(strstr(buf_str(&err), "exists"));
        after = read_text(path);
        assert_string_equal(before, after);
        free(after);

        /* With force: a new key, still 0600. */
        assert_int_equal(token_key_generate(alg, path, 1, &err), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        after = read_text(path);
        assert_string_not_equal(before, after);
        free(after);
        free(before);
    }
    umask(old_umask);

    /* Nothing left behind but the two keys. */
    assert_int_equal(count_entries(dir), 2);

    /* A directory that does not exist. */
    snprintf(path, sizeof path, "%s/nope/x.key", dir);
    buf_reset(&err);
    assert_int_equal(token_key_generate(TOKEN_HS256, path, 0, &err), CP_EIO);
    assert_true(err.len > 0);
    buf_free(&err);
}

/* Refusals never hand out a key and never crash on odd arguments. */
static void test_bad_arguments(void **state)
{
    struct token_key *key = (struct token_key *)&key;
    char token[TOKEN_MAX + 1];
    const char *why;

    (void)state;
    assert_int_equal(token_key_load("", &key, NULL), CP_EINVAL);
    assert_null(key);
    assert_int_equal(token_key_generate(TOKEN_HS256, "", 0, NULL), CP_EINVAL);
    assert_int_equal(token_issue(NULL, &policy, "1", "access", 5, 1, NOW, token, sizeof token, NULL), CP_EINVAL);
    assert_int_equal(token_issue(hs_key, NULL, "1", "access", 5, 1, NOW, token, sizeof token, NULL), CP_EINVAL);
    assert_int_equal(token_verify(NULL, &policy, "a.b.c", 5, "access", NOW, NULL, &why), CP_EINVAL);
    assert_int_equal(token_verify(hs_key, NULL, "a.b.c", 5, "access", NOW, NULL, &why), CP_EINVAL);
    assert_int_equal(token_verify(hs_key, &policy, NULL, 5, "access", NOW, NULL, &why), CP_EINVAL);
    assert_int_equal(token_verify(hs_key, &policy, "a.b.c", 5, NULL, NOW, NULL, &why), CP_EINVAL);
    assert_int_equal(token_verify(hs_key, &policy, "a.b.c", 5, "0123456789abcdef", NOW, NULL, &why),
                     CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_verify_table, fixture_setup),
        cmocka_unit_test_setup(test_verify_shape, fixture_setup),
        cmocka_unit_test_setup(test_verify_edits, fixture_setup),
        cmocka_unit_test_setup(test_verify_mutations, fixture_setup),
        cmocka_unit_test_setup(test_round_trip_hs256, fixture_setup),
        cmocka_unit_test_setup(test_round_trip_es256, fixture_setup),
        cmocka_unit_test_setup(test_policy_mismatch, fixture_setup),
        cmocka_unit_test_setup(test_issue_table, fixture_setup),
        cmocka_unit_test_setup(test_key_load_table, fixture_setup),
        cmocka_unit_test_setup(test_key_generate, fixture_setup),
        cmocka_unit_test_setup(test_bad_arguments, fixture_setup),
    };
    int rc = cmocka_run_group_tests_name("token", tests, NULL, NULL);

    fixture_teardown(NULL);
    return rc;
}
