#include "config.h"

#include <stdio.h>
#include <string.h>

#include "apikeys.h"
#include "crypto.h"
#include "err.h"
#include "log.h"

#define APIKEY_SCHEME "cpk_"
#define APIKEY_SCHEME_LEN 4

#define TIME_FMT(col) "DATE_FORMAT(" col ", '%Y-%m-%dT%H:%i:%s.%fZ')"
#define KEY_COLUMNS \
    "id, name, prefix, " TIME_FMT("created_at") ", " \
    "COALESCE(" TIME_FMT("last_used_at") ", ''), COALESCE(" TIME_FMT("revoked_at") ", '')"

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

int apikey_shape_ok(const char *s, size_t n)
{
    unsigned bad = 0;

    if (!s || n != APIKEY_LEN)
        return 0;
    /* No early exit inside a key-sized input: how long the check takes
     * says nothing about where a guess went wrong. */
    bad |= (unsigned)(memcmp(s, APIKEY_SCHEME, APIKEY_SCHEME_LEN) != 0);
    for (size_t i = APIKEY_SCHEME_LEN; i < n; i++)
        bad |= (unsigned)!b64url_char((unsigned char)s[i]);
    return bad == 0;
}

int apikey_name_ok(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t chars = 0;

    if (!name)
        return 0;
    while (*p) {
        unsigned c = *p, cp, need;

        if (c < 0x80) {
            cp = c;
            need = 0;
        } else if ((c & 0xe0) == 0xc0) {
            cp = c & 0x1f;
            need = 1;
        } else if ((c & 0xf0) == 0xe0) {
            cp = c & 0x0f;
            need = 2;
        } else if ((c & 0xf8) == 0xf0) {
            cp = c & 0x07;
            need = 3;
        } else {
            return 0;
        }
        p++;
        for (unsigned i = 0; i < need; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p & 0x3f);
        }
        /* Overlong forms, surrogates and values past Unicode are not UTF-8. */
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        /* Names are shown in lists: no control characters (C0, DEL, C1). */
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return 0;
        if (++chars > APIKEY_NAME_MAX)
            return 0;
    }
    return chars > 0;
}

static void copy_col(const struct db_result *r, size_t row, size_t col, char *dst, size_t cap)
{
    const char *v = db_result_get(r, row, col);

    snprintf(dst, cap, "%s", v ? v : "");
}

static int key_from_row(const struct db_result *r, size_t row, struct apikey *out)
{
    memset(out, 0, sizeof *out);
    if (db_result_i64(r, row, 0, &out->id))
        return CP_EDB;
    copy_col(r, row, 1, out->name, sizeof out->name);
    copy_col(r, row, 2, out->prefix, sizeof out->prefix);
    copy_col(r, row, 3, out->created_at, sizeof out->created_at);
    copy_col(r, row, 4, out->last_used_at, sizeof out->last_used_at);
    copy_col(r, row, 5, out->revoked_at, sizeof out->revoked_at);
    return 0;
}

struct create_tx {
    long long user_id;
    const char *name;
    const char *key;
    const unsigned char *hash;
    long long id;
};

/* The user's row is locked while the live keys are counted, so two
 * concurrent creations cannot both slip under the limit. */
static int create_tx(struct db *db, void *arg)
{
    struct create_tx *t = arg;
    struct db_result *r = NULL;
    unsigned long long id = 0;
    long long live = 0;
    char prefix[APIKEY_PREFIX_LEN + 1];
    int rc;

    struct db_param u[] = { DB_I64(t->user_id) };
    rc = db_query(db, "SELECT id FROM users WHERE id = ? FOR UPDATE", u, 1, &r);
    if (rc)
        return rc;
    rc = db_result_rows(r) == 1 ? 0 : CP_ENOTFOUND;
    db_result_free(r);
    r = NULL;
    if (rc)
        return rc;
    rc = db_query(db, "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL",
                  u, 1, &r);
    if (rc)
        return rc;
    rc = db_result_i64(r, 0, 0, &live);
    db_result_free(r);
    if (rc)
        return CP_EDB;
    if (live >= APIKEY_LIVE_MAX)
        return CP_ETOOBIG;

    memcpy(prefix, t->key, APIKEY_PREFIX_LEN);
    prefix[APIKEY_PREFIX_LEN] = '\0';
    struct db_param p[] = { DB_I64(t->user_id), DB_STR(t->name), DB_STR(prefix),
                            DB_BYTES((const char *)t->hash, SHA256_LEN) };
    rc = db_exec(db, "INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES (?, ?, ?, ?)",
                 p, 4, NULL, &id);
    if (rc)
        return rc;
    t->id = (long long)id;
    return 0;
}

int apikey_create(struct db *db, long long user_id, const char *name,
                  char key_out[APIKEY_LEN + 1], long long *id)
{
    char key[APIKEY_LEN + 1];
    unsigned char hash[SHA256_LEN];
    struct create_tx t = { .user_id = user_id, .name = name, .key = key, .hash = hash };
    int rc;

    key_out[0] = '\0';
    *id = 0;
    if (!apikey_name_ok(name))
        return CP_EINVAL;
    rc = crypto_token(APIKEY_SCHEME, key, sizeof key);
    if (rc)
        return rc;
    crypto_sha256(key, APIKEY_LEN, hash);
    rc = db_transaction(db, create_tx, &t, 3);
    if (rc == 0) {
        memcpy(key_out, key, sizeof key);
        *id = t.id;
    }
    memset(key, 0, sizeof key);
    return rc;
}

int apikey_get(struct db *db, long long user_id, long long id, struct apikey *out)
{
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    struct db_param p[] = { DB_I64(id), DB_I64(user_id) };
    rc = db_query(db, "SELECT " KEY_COLUMNS " FROM api_keys WHERE id = ? AND user_id = ?", p, 2, &r);
    if (rc)
        return rc;
    rc = db_result_rows(r) == 1 ? key_from_row(r, 0, out) : CP_ENOTFOUND;
    db_result_free(r);
    return rc;
}

int apikey_list(struct db *db, long long user_id, long long after_id,
                struct apikey *out, size_t cap, size_t *count)
{
    struct db_result *r = NULL;
    size_t n;
    int rc;

    *count = 0;
    if (cap == 0)
        return 0;
    struct db_param p[] = { DB_I64(user_id), DB_I64(after_id), DB_I64((long long)cap) };
    rc = db_query(db, "SELECT " KEY_COLUMNS " FROM api_keys WHERE user_id = ? AND id > ? "
                      "ORDER BY id LIMIT ?", p, 3, &r);
    if (rc)
        return rc;
    n = db_result_rows(r);
    for (size_t i = 0; i < n && i < cap; i++) {
        rc = key_from_row(r, i, &out[i]);
        if (rc)
            goto out;
    }
    *count = n < cap ? n : cap;
out:
    db_result_free(r);
    return rc;
}

int apikey_revoke(struct db *db, long long user_id, long long id)
{
    unsigned long long affected = 0;
    int rc;

    struct db_param p[] = { DB_I64(id), DB_I64(user_id) };
    rc = db_exec(db, "UPDATE api_keys SET revoked_at = NOW(3) "
                     "WHERE id = ? AND user_id = ? AND revoked_at IS NULL", p, 2, &affected, NULL);
    if (rc)
        return rc;
    return affected == 1 ? 0 : CP_ENOTFOUND;
}

int apikey_resolve(struct db *db, const char *presented, struct apikey_owner *out,
                   const char **why)
{
    unsigned char hash[SHA256_LEN];
    struct db_result *r = NULL;
    long long key_id, user_id, disabled, revoked, stale;
    int role, rc;

    memset(out, 0, sizeof *out);
    *why = "";
    if (!presented || !apikey_shape_ok(presented, strnlen(presented, APIKEY_LEN + 1))) {
        *why = "malformed API key";
        return CP_ENOTFOUND;
    }
    crypto_sha256(presented, APIKEY_LEN, hash);
    struct db_param p[] = { DB_BYTES((const char *)hash, sizeof hash) };
    rc = db_query(db, "SELECT k.id, k.user_id, u.role, u.disabled, u.email, "
                      "k.revoked_at IS NOT NULL, "
                      "k.last_used_at IS NULL OR k.last_used_at < NOW(3) - INTERVAL 1 MINUTE "
                      "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?",
                  p, 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        *why = "unknown API key";
        return CP_ENOTFOUND;
    }
    if (db_result_i64(r, 0, 0, &key_id) || db_result_i64(r, 0, 1, &user_id) ||
        db_result_i64(r, 0, 3, &disabled) || db_result_i64(r, 0, 5, &revoked) ||
        db_result_i64(r, 0, 6, &stale)) {
        db_result_free(r);
        return CP_EDB;
    }
    role = user_role_parse(db_result_get(r, 0, 2));
    copy_col(r, 0, 4, out->email, sizeof out->email);
    db_result_free(r);
    if (revoked) {
        *why = "API key revoked";
        goto refused;
    }
    if (disabled) {
        *why = "user disabled";
        goto refused;
    }
    if (stale) {
        /* The condition is repeated so concurrent requests write once;
         * a failed mark is not worth refusing the request over. */
        struct db_param q[] = { DB_I64(key_id) };
        if (db_exec(db, "UPDATE api_keys SET last_used_at = NOW(3) WHERE id = ? AND "
                        "(last_used_at IS NULL OR last_used_at < NOW(3) - INTERVAL 1 MINUTE)",
                    q, 1, NULL, NULL))
            log_warn("could not mark API key %lld used", key_id);
    }
    out->key_id = key_id;
    out->user_id = user_id;
    out->role = role < 0 ? USER_ROLE_USER : (enum user_role)role;
    return 0;

refused:
    memset(out, 0, sizeof *out);
    return CP_ENOTFOUND;
}
