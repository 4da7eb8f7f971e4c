/*
 * POST /api/v1/webhooks/tiktok: TikTok's event deliveries.
 *
 * Public (TikTok has no credentials of ours): the TikTok-Signature header
 * is checked over the raw body before anything in the body is read, with
 * the app's client secret, a constant-time compare and a bounded age in
 * both directions.  A bad signature is 401 and audited.  A delivery is
 * taken once: the SHA-256 of its raw body goes into webhook_events, and a
 * replay of it finds the row and does nothing.  The work is queued or
 * done in a few short statements, so TikTok gets its 200 at once:
 *   video.publish.completed  a tiktok.sync of each connection of that account
 *   authorization.removed    each connection of that account needs_reauth
 *                            (which also stops its syncs)
 * Other events are recorded and acknowledged.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "connections.h"
#include "crypto.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "json.h"
#include "log.h"
#include "queue.h"
#include "tiktok_sig.h"

#define EVENT_MAX 64
#define OPENID_MAX 128
#define DETAIL_MAX 256

static void reply_unavailable(struct request *req)
{
    reply_error(req, 503, "unavailable", "The database is not answering; try again shortly.");
}

static void audit_rejected(struct request *req, const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_label = "tiktok webhook", .action = "webhook.rejected", .failed = 1,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

static void reply_ok(struct request *req, const char *what)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"ok\":true,\"result\":\"%s\"}", what);

    reply_json(req, 200, body, (size_t)n);
}

/* The active TikTok connections of account openid: ids and owners. */
static int account_connections(struct db *db, const char *openid, int any_status,
                               struct db_result **out)
{
    struct db_param p[] = { DB_STR(openid), DB_I64(any_status) };

    return db_query(db, "SELECT id, user_id FROM connections WHERE platform = 'tiktok'"
                        " AND remote_id = ? AND (? = 1 OR (enabled = 1 AND status IN ('active', 'error')))"
                        " ORDER BY id", p, 2, out);
}

static int queue_syncs(struct db *db, const char *openid, size_t *n_out)
{
    struct db_result *r = NULL;
    int rc = account_connections(db, openid, 0, &r);

    *n_out = 0;
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        long long id = 0, user = 0, job = 0;
        char payload[96], key[64];
        struct job_spec spec = { .kind = "tiktok.sync", .payload = payload, .unique_key = key };

        if (db_result_i64(r, i, 0, &id) || db_result_i64(r, i, 1, &user))
            continue;
        snprintf(payload, sizeof payload, "{\"connection_id\":%lld}", id);
        snprintf(key, sizeof key, "tiktok.sync:%lld", id);
        spec.user_id = user;
        rc = queue_enqueue(db, &spec, &job);
        if (rc == CP_ECONFLICT)
            rc = 0;                     /* a sync is queued already: it will see the video */
        if (!rc)
            (*n_out)++;
    }
    db_result_free(r);
    return rc;
}

static int mark_removed(struct db *db, const char *openid, size_t *n_out)
{
    struct db_result *r = NULL;
    int rc = account_connections(db, openid, 1, &r);

    *n_out = 0;
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        long long id = 0;

        if (db_result_i64(r, i, 0, &id))
            continue;
        rc = conn_mark_needs_reauth(db, id, "TikTok says the account owner removed crosspost's "
                                            "authorization");
        if (rc == CP_ENOTFOUND)
            rc = 0;
        if (!rc)
            (*n_out)++;
    }
    db_result_free(r);
    return rc;
}

void h_webhook_tiktok(struct request *req)
{
    const struct conf *c = req->app->conf;
    const char *header = req_param(req, "HTTP_TIKTOK_SIGNATURE");
    const char *event = NULL, *openid = NULL;
    unsigned char digest[SHA256_LEN];
    char key[2 * SHA256_LEN + 1], detail[DETAIL_MAX];
    enum tiktok_sig_result sig;
    struct db *db;
    size_t n = 0;
    int rc;

    if (!c->tiktok_client_secret || !*c->tiktok_client_secret) {
        audit_rejected(req, "no client secret is configured");
        reply_error(req, 401, "unauthorized", "The signature cannot be checked.");
        return;
    }
    sig = tiktok_sig_verify(header, req->body.data ? req->body.data : "", req->body.len,
                            c->tiktok_client_secret, (long long)time(NULL),
                            c->webhook_max_age / 1000, NULL);
    if (sig != TIKTOK_SIG_OK) {
        snprintf(detail, sizeof detail, "signature %s", tiktok_sig_result_name(sig));
        audit_rejected(req, detail);
        log_warn("TikTok webhook refused: signature %s", tiktok_sig_result_name(sig));
        reply_error(req, 401, "bad_signature", "The TikTok-Signature header does not verify.");
        return;
    }
    /* Signed by TikTok: now the body may be parsed. */
    if (req_parse_json_body(req))
        return;
    if (!req->json || json_get_string(req->json, "event", &event) || !*event ||
        strlen(event) > EVENT_MAX) {
        reply_error(req, 400, "invalid_body", "The delivery names no event.");
        return;
    }
    if (json_get_string(req->json, "user_openid", &openid) || strlen(openid) > OPENID_MAX)
        openid = "";
    if (app_db(req->app, &db)) {
        reply_unavailable(req);
        return;
    }
    crypto_sha256(req->body.data, req->body.len, digest);
    crypto_hex(digest, sizeof digest, key);
    {
        struct db_param p[] = { DB_STR(key), DB_STR(event), DB_STR(openid) };

        rc = db_exec(db, "INSERT INTO webhook_events (source, dedupe_key, event, remote_user)"
                         " VALUES ('tiktok', ?, ?, ?)", p, 3, NULL, NULL);
    }
    if (rc == CP_ECONFLICT) {
        log_info("TikTok webhook %s: a delivery already taken; nothing to do", event);
        reply_ok(req, "duplicate");
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    if (!*openid)
        rc = 0;
    else if (strcmp(event, "video.publish.completed") == 0)
        rc = queue_syncs(db, openid, &n);
    else if (strcmp(event, "authorization.removed") == 0)
        rc = mark_removed(db, openid, &n);
    if (rc) {
        /* Not done: forget the delivery so TikTok's retry is taken. */
        struct db_param p[] = { DB_STR(key) };

        db_exec(db, "DELETE FROM webhook_events WHERE source = 'tiktok' AND dedupe_key = ?", p, 1,
                NULL, NULL);
        reply_unavailable(req);
        return;
    }
    log_info("TikTok webhook %s: %zu connection%s", event, n, n == 1 ? "" : "s");
    reply_ok(req, "accepted");
}
