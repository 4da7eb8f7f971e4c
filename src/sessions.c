#include "config.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "sessions.h"

static int hash_token(const char *presented, unsigned char out[SHA256_LEN])
{
    size_t n = presented ? strlen(presented) : 0;

    /* Only tokens of our own shape are looked up at all. */
    if (n != REFRESH_TOKEN_LEN || strncmp(presented, "cpr_", 4) != 0)
        return CP_ENOTFOUND;
    crypto_sha256(presented, n, out);
    return 0;
}

static int new_token(struct db *db, long long session_id, char *token)
{
    unsigned char h[SHA256_LEN];
    int rc = crypto_token("cpr_", token, REFRESH_TOKEN_LEN + 1);

    if (rc)
        return rc;
    crypto_sha256(token, strlen(token), h);
    struct db_param p[] = { DB_BYTES((const char *)h, sizeof h), DB_I64(session_id) };
    return db_exec(db, "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (?, ?)", p, 2, NULL, NULL);
}

struct start_tx {
    long long user_id, lifetime_s;
    const char *addr, *agent;
    char *token;
    struct session_info *out;
};

static int start_tx(struct db *db, void *arg)
{
    struct start_tx *t = arg;
    unsigned long long sid = 0;
    char addr[46], agent[256];
    int rc;

    snprintf(addr, sizeof addr, "%s", t->addr ? t->addr : "");
    snprintf(agent, sizeof agent, "%s", t->agent ? t->agent : "");
    struct db_param p[] = { DB_I64(t->user_id), DB_I64(t->lifetime_s), DB_STR(addr), DB_STR(agent) };
    rc = db_exec(db, "INSERT INTO sessions (user_id, expires_at, client_addr, user_agent) "
                     "VALUES (?, NOW(3) + INTERVAL ? SECOND, ?, ?)", p, 4, NULL, &sid);
    if (rc)
        return rc;
    rc = new_token(db, (long long)sid, t->token);
    if (rc)
        return rc;
    t->out->id = (long long)sid;
    t->out->user_id = t->user_id;
    t->out->expires_in_s = t->lifetime_s;
    return 0;
}

int session_start(struct db *db, long long user_id, long long lifetime_s,
                  const char *client_addr, const char *user_agent,
                  char *token, struct session_info *out)
{
    struct start_tx t = { user_id, lifetime_s, client_addr, user_agent, token, out };

    memset(out, 0, sizeof *out);
    token[0] = '\0';
    return db_transaction(db, start_tx, &t, 3);
}

enum refresh_outcome { REFRESH_OK, REFRESH_UNKNOWN, REFRESH_REUSED };

struct refresh_tx {
    unsigned char hash[SHA256_LEN];
    char *token;
    struct session_info *out;
    enum refresh_outcome outcome;
};

/* The reuse case must commit its revocation, so outcomes other than
 * success are reported through t->outcome with a committed transaction. */
static int refresh_tx(struct db *db, void *arg)
{
    struct refresh_tx *t = arg;
    struct db_result *r = NULL;
    long long sid, uid, used, live, left;
    int rc;

    t->outcome = REFRESH_UNKNOWN;
    struct db_param p[] = { DB_BYTES((const char *)t->hash, sizeof t->hash) };
    rc = db_query(db, "SELECT s.id, s.user_id, rt.used_at IS NOT NULL, "
                      "s.revoked_at IS NULL AND s.expires_at > NOW(3), "
                      "GREATEST(TIMESTAMPDIFF(SECOND, NOW(3), s.expires_at), 0) "
                      "FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id "
                      "WHERE rt.token_hash = ? FOR UPDATE", p, 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        return 0;
    }
    db_result_i64(r, 0, 0, &sid);
    db_result_i64(r, 0, 1, &uid);
    db_result_i64(r, 0, 2, &used);
    db_result_i64(r, 0, 3, &live);
    db_result_i64(r, 0, 4, &left);
    db_result_free(r);
    t->out->id = sid;
    t->out->user_id = uid;
    t->out->expires_in_s = left;
    if (!live)
        return 0;
    if (used) {
        t->outcome = REFRESH_REUSED;
        return session_end(db, sid, "reuse");
    }
    rc = db_exec(db, "UPDATE refresh_tokens SET used_at = NOW(3) WHERE token_hash = ?", p, 1, NULL, NULL);
    if (!rc) {
        struct db_param q[] = { DB_I64(sid) };
        rc = db_exec(db, "UPDATE sessions SET last_used_at = NOW(3) WHERE id = ?", q, 1, NULL, NULL);
    }
    if (!rc)
        rc = new_token(db, sid, t->token);
    if (!rc)
        t->outcome = REFRESH_OK;
    return rc;
}

int session_refresh(struct db *db, const char *presented, char *token, struct session_info *out)
{
    struct refresh_tx t = { .token = token, .out = out };
    int rc;

    memset(out, 0, sizeof *out);
    token[0] = '\0';
    if (hash_token(presented, t.hash))
        return CP_ENOTFOUND;
    rc = db_transaction(db, refresh_tx, &t, 3);
    if (rc)
        return rc;
    if (t.outcome == REFRESH_REUSED) {
        token[0] = '\0';
        return CP_ECONFLICT;
    }
    return t.outcome == REFRESH_OK ? 0 : CP_ENOTFOUND;
}

int session_end(struct db *db, long long session_id, const char *reason)
{
    struct db_param p[] = { DB_STR(reason), DB_I64(session_id) };

    return db_exec(db, "UPDATE sessions SET revoked_at = NOW(3), revoke_reason = ? "
                       "WHERE id = ? AND revoked_at IS NULL", p, 2, NULL, NULL);
}

int session_end_all(struct db *db, long long user_id, const char *reason)
{
    struct db_param p[] = { DB_STR(reason), DB_I64(user_id) };

    return db_exec(db, "UPDATE sessions SET revoked_at = NOW(3), revoke_reason = ? "
                       "WHERE user_id = ? AND revoked_at IS NULL", p, 2, NULL, NULL);
}

int session_end_by_token(struct db *db, const char *presented, const char *reason,
                         struct session_info *out)
{
    unsigned char h[SHA256_LEN];
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (hash_token(presented, h))
        return CP_ENOTFOUND;
    struct db_param p[] = { DB_BYTES((const char *)h, sizeof h) };
    rc = db_query(db, "SELECT s.id, s.user_id FROM refresh_tokens rt JOIN sessions s "
                      "ON s.id = rt.session_id WHERE rt.token_hash = ?", p, 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        return CP_ENOTFOUND;
    }
    db_result_i64(r, 0, 0, &out->id);
    db_result_i64(r, 0, 1, &out->user_id);
    db_result_free(r);
    return session_end(db, out->id, reason);
}
