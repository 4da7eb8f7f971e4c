/*
 * The caller's API keys: GET/POST /api/v1/me/api-keys,
 * DELETE /api/v1/me/api-keys/{id}.
 *
 * A key is shown once, in the answer that creates it.  Keys are made only
 * by a caller signed in with an access token: a leaked key must not be
 * able to mint more keys that outlive its own revocation.  A key may list
 * its owner's keys and revoke them (itself included), so a script that
 * finds its key exposed can end it.  Another user's key is answered like
 * an unknown one (404).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikeys.h"
#include "audit.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "log.h"
#include "query.h"

static int audit_key(struct request *req, const char *action, int failed, long long key_id,
                     const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = action,
        .failed = failed, .target_type = "api_key", .target_id = key_id,
        .owner_id = req->user_id, .client_addr = req_client_addr(req),
        .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db))
        return CP_EUNAVAIL;
    return audit_write(db, &ev);
}

static void append_time(struct buf *b, const char *name, const char *value)
{
    if (value[0])
        buf_printf(b, ",\"%s\":\"%s\"", name, value);
    else
        buf_printf(b, ",\"%s\":null", name);
}

/* The public view of a key: never the key or its hash.  Leaves the
 * object open so the caller may add members. */
static void append_key_open(struct buf *b, const struct apikey *k)
{
    buf_printf(b, "{\"id\":%lld,\"name\":\"", k->id);
    buf_add_json_escaped(b, k->name, strlen(k->name));
    buf_adds(b, "\",\"prefix\":\"");
    buf_add_json_escaped(b, k->prefix, strlen(k->prefix));
    buf_printf(b, "\",\"created_at\":\"%s\"", k->created_at);
    append_time(b, "last_used_at", k->last_used_at);
    append_time(b, "revoked_at", k->revoked_at);
}

void h_apikeys_list(struct request *req)
{
    struct apikey *keys = NULL;
    size_t n = 0, shown;
    long long cursor;
    struct db *db;
    struct buf b;
    int limit;

    if (req_paging(req, &limit, &cursor))
        return;
    keys = calloc((size_t)limit + 1, sizeof *keys);
    if (!keys) {
        reply_error(req, 500, "internal", "Out of memory.");
        return;
    }
    /* One row more than asked for says whether another page follows. */
    if (app_db(req->app, &db) ||
        apikey_list(db, req->user_id, cursor, keys, (size_t)limit + 1, &n)) {
        free(keys);
        reply_unavailable(req);
        return;
    }
    shown = n > (size_t)limit ? (size_t)limit : n;
    buf_init(&b, 1024 * 1024);
    buf_adds(&b, "{\"data\":[");
    for (size_t i = 0; i < shown; i++) {
        if (i)
            buf_addc(&b, ',');
        append_key_open(&b, &keys[i]);
        buf_addc(&b, '}');
    }
    if (n > shown)
        buf_printf(&b, "],\"next_cursor\":\"%lld\"}", keys[shown - 1].id);
    else
        buf_adds(&b, "],\"next_cursor\":null}");
    free(keys);
    reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}

void h_apikeys_create(struct request *req)
{
    char key[APIKEY_LEN + 1], detail[APIKEY_NAME_MAX * 4 + 64];
    const char *name;
    struct apikey k;
    struct db *db;
    long long id;
    struct buf b;
    int rc;

    if (req->api_key_id) {
        snprintf(detail, sizeof detail, "refused: called with API key %lld", req->api_key_id);
        audit_key(req, "api_key.create", 1, 0, detail);
        reply_error(req, 403, "session_required",
                    "API keys are created only when signed in with a password, not with an API key.");
        return;
    }
    if (body_string(req, "name", APIKEY_NAME_MAX * 4, &name))
        return;
    if (!apikey_name_ok(name)) {
        reply_error(req, 400, "invalid_field",
                    "The field \"name\" must be 1 to %d characters, without control characters.",
                    APIKEY_NAME_MAX);
        return;
    }
    if (req_db(req, &db))
        return;
    rc = apikey_create(db, req->user_id, name, key, &id);
    if (rc == CP_ETOOBIG) {
        reply_error(req, 409, "too_many_keys",
                    "You have %d live API keys; revoke one before creating another.",
                    APIKEY_LIVE_MAX);
        return;
    }
    if (rc || apikey_get(db, req->user_id, id, &k)) {
        if (!rc)
            apikey_revoke(db, req->user_id, id);
        reply_unavailable(req);
        return;
    }
    snprintf(detail, sizeof detail, "prefix %s", k.prefix);
    /* A key nobody can account for must not exist: if the audit log
     * cannot record it, it is withdrawn at once. */
    if (audit_key(req, "api_key.create", 0, id, detail)) {
        if (apikey_revoke(db, req->user_id, id))
            log_error("API key %lld of user %lld could not be audited nor revoked", id, req->user_id);
        reply_unavailable(req);
        return;
    }
    buf_init(&b, 4096);
    append_key_open(&b, &k);
    buf_printf(&b, ",\"key\":\"%s\"}", key);
    memset(key, 0, sizeof key);
    reply_json(req, 201, buf_str(&b), b.len);
    buf_free(&b);
}

void h_apikeys_revoke(struct request *req)
{
    char detail[96] = "";
    struct db *db;
    long long id;
    int rc;

    if (req_path_id(req, "id", &id))
        return;
    if (req_db(req, &db))
        return;
    rc = apikey_revoke(db, req->user_id, id);
    if (rc == CP_ENOTFOUND) {
        reply_error(req, 404, "not_found", "You have no live API key %lld.", id);
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    if (req->api_key_id)
        snprintf(detail, sizeof detail, "with API key %lld", req->api_key_id);
    audit_key(req, "api_key.revoke", 0, id, detail);
    reply_body(req, 204, "application/json", "", 0);
}
