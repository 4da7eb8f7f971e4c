#include "config.h"

#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "crypto.h"
#include "err.h"
#include "json.h"
#include "oauthstate.h"

#define KEY_PREFIX "oauth:"
#define CACHE_KEY_LEN (sizeof KEY_PREFIX - 1 + 2 * SHA256_LEN)
#define RECORD_MAX 8192

int oauth_state_random(char *out, size_t cap)
{
    if (cap < OAUTH_STATE_LEN + 1)
        return CP_ETOOBIG;
    return crypto_token("", out, cap);
}

void oauth_binding_hash(const char *cookie_value, char out[65])
{
    unsigned char sum[SHA256_LEN];

    crypto_sha256(cookie_value, strlen(cookie_value), sum);
    crypto_hex(sum, sizeof sum, out);
}

/* "oauth:" + hex SHA-256 of the state key. */
static int cache_key(const char *key, char out[CACHE_KEY_LEN + 1])
{
    unsigned char sum[SHA256_LEN];

    if (!key || !*key)
        return CP_EINVAL;
    crypto_sha256(key, strlen(key), sum);
    memcpy(out, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    crypto_hex(sum, sizeof sum, out + sizeof KEY_PREFIX - 1);
    return 0;
}

static int add_member(struct buf *b, const char *name, const char *value)
{
    int rc;

    if ((rc = buf_printf(b, ",\"%s\":\"", name)) ||
        (rc = buf_add_json_escaped(b, value, strlen(value))))
        return rc;
    return buf_addc(b, '"');
}

static void wipe(struct buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->alloc);
    buf_free(b);
}

int oauth_state_put(struct cache *cache, const char *key, const struct oauth_state *st,
                    unsigned ttl_s)
{
    const struct platform *p = platform_get(st->platform);
    char ckey[CACHE_KEY_LEN + 1];
    struct buf rec;
    int rc;

    if (!p || st->user_id <= 0 || ttl_s == 0)
        return CP_EINVAL;
    rc = cache_key(key, ckey);
    if (rc)
        return rc;
    buf_init(&rec, RECORD_MAX);
    if (!(rc = buf_printf(&rec, "{\"user_id\":%lld,\"created_ms\":%lld", st->user_id, st->created_ms)) &&
        !(rc = add_member(&rec, "platform", p->name)) &&
        !(rc = add_member(&rec, "binding_sha256", st->binding_sha256)) &&
        !(rc = add_member(&rec, "verifier", st->verifier)) &&
        !(rc = add_member(&rec, "request_secret", st->request_secret)) &&
        !(rc = add_member(&rec, "redirect_uri", st->redirect_uri)) &&
        !(rc = buf_addc(&rec, '}')))
        rc = cache_set(cache, ckey, rec.data, rec.len, ttl_s);
    wipe(&rec);
    if (rc == CP_ETOOBIG || rc == CP_EINVAL || rc == CP_ENOMEM)
        return rc;
    return rc ? CP_EUNAVAIL : 0;
}

/* Copy string member name into out[cap]: CP_EINVAL when absent, not a
 * string, or too long. */
static int copy_member(struct json_object *obj, const char *name, char *out, size_t cap)
{
    const char *s;
    size_t n;

    if (json_get_string(obj, name, &s))
        return CP_EINVAL;
    n = strlen(s);
    if (n >= cap)
        return CP_EINVAL;
    memcpy(out, s, n + 1);
    return 0;
}

static int parse_record(const struct buf *rec, struct oauth_state *out)
{
    struct json_limits lim = json_default_limits;
    struct json_object *obj = NULL;
    const struct platform *p;
    const char *name;
    int rc = CP_EINVAL;

    lim.max_size = RECORD_MAX;
    if (json_parse(rec->data ? rec->data : "", rec->len, &lim, &obj, NULL) ||
        !json_object_is_type(obj, json_type_object))
        goto out;
    if (json_get_int(obj, "user_id", &out->user_id) || out->user_id <= 0 ||
        json_get_int(obj, "created_ms", &out->created_ms) ||
        json_get_string(obj, "platform", &name) || !(p = platform_find(name)))
        goto out;
    out->platform = p->id;
    if (copy_member(obj, "binding_sha256", out->binding_sha256, sizeof out->binding_sha256) ||
        strlen(out->binding_sha256) != 64 ||
        copy_member(obj, "verifier", out->verifier, sizeof out->verifier) ||
        copy_member(obj, "request_secret", out->request_secret, sizeof out->request_secret) ||
        copy_member(obj, "redirect_uri", out->redirect_uri, sizeof out->redirect_uri))
        goto out;
    rc = 0;
out:
    json_object_put(obj);
    return rc;
}

int oauth_state_take(struct cache *cache, const char *key, struct oauth_state *out)
{
    char ckey[CACHE_KEY_LEN + 1];
    struct buf rec;
    int rc;

    memset(out, 0, sizeof *out);
    rc = cache_key(key, ckey);
    if (rc)
        return CP_ENOTFOUND;
    buf_init(&rec, RECORD_MAX);
    rc = cache_take(cache, ckey, &rec);
    if (rc == CP_ENOTFOUND) {
        wipe(&rec);
        return CP_ENOTFOUND;
    }
    if (rc == CP_ETOOBIG || rc == CP_EINVAL) {
        /* An entry too big for a record is not one of ours; it was
         * taken (or is unreadable) either way. */
        wipe(&rec);
        return CP_EINVAL;
    }
    if (rc) {
        wipe(&rec);
        return CP_EUNAVAIL;
    }
    rc = parse_record(&rec, out);
    wipe(&rec);
    if (rc) {
        OPENSSL_cleanse(out, sizeof *out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int oauth_binding_ok(const struct oauth_state *st, const char *cookie_value)
{
    char hex[65];
    int ok;

    if (!cookie_value || !*cookie_value || strlen(st->binding_sha256) != 64)
        return 0;
    oauth_binding_hash(cookie_value, hex);
    ok = crypto_equal(hex, st->binding_sha256, 64);
    OPENSSL_cleanse(hex, sizeof hex);
    return ok;
}
