#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"

#define METRICS_MAX (4 * 1024 * 1024)

/* Liveness: the process answers.  No dependency is consulted, so a
 * database outage never gets healthy API processes restarted. */
void h_healthz(struct request *req)
{
    static const char body[] = "{\"status\":\"ok\"}";

    reply_json(req, 200, body, sizeof body - 1);
}

void h_version(struct request *req)
{
    static const char body[] =
        "{\"name\":\"" PACKAGE_NAME "\",\"version\":\"" PACKAGE_VERSION "\",\"api\":\"v1\"}";

    reply_json(req, 200, body, sizeof body - 1);
}

void h_metrics(struct request *req)
{
    struct buf out;

    buf_init(&out, METRICS_MAX);
    if (metrics_render(req->app->metrics, api_routes, api_nroutes, &out)) {
        buf_free(&out);
        reply_error(req, 500, "internal", "The metrics could not be rendered.");
        return;
    }
    reply_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    buf_free(&out);
}

struct readiness {
    const char *database;
    const char *migrations;
    const char *memcached;
    char instance_id[40];
    char detail[256];
};

static void check_database(struct app *app, struct readiness *r)
{
    struct db_result *res = NULL;
    struct db *db;
    struct buf why;
    int rc;

    if (app_db(app, &db) || db_ping(db)) {
        r->database = "unavailable";
        r->migrations = "unknown";
        return;
    }
    r->database = "ok";
    if (!app->migrations) {
        r->migrations = "unknown";
        snprintf(r->detail, sizeof r->detail, "the schema files could not be read");
        return;
    }
    buf_init(&why, 256);
    rc = migrate_check_current(db, app->migrations, &why);
    if (rc) {
        r->migrations = rc == CP_ECHANGED ? "changed" : rc == CP_ENOTFOUND ? "pending" : "unknown";
        if (rc == CP_EUNAVAIL)
            r->database = "unavailable";
        snprintf(r->detail, sizeof r->detail, "%s", buf_str(&why));
        buf_free(&why);
        return;
    }
    buf_free(&why);
    r->migrations = "ok";
    if (db_query(db, "SELECT instance_id FROM instance WHERE id = 1", NULL, 0, &res) == 0 &&
        db_result_rows(res) == 1 && db_result_get(res, 0, 0))
        snprintf(r->instance_id, sizeof r->instance_id, "%s", db_result_get(res, 0, 0));
    db_result_free(res);
}

/* Readiness: MariaDB and memcached answer and the schema is current.
 * Each call checks again, so readiness comes back by itself once the
 * dependency does. */
void h_readyz(struct request *req)
{
    struct readiness r = { "unknown", "unknown", "unknown", "", "" };
    struct cache *cache;
    char checks[512], failing[256] = "";

    check_database(req->app, &r);
    r.memcached = (app_cache(req->app, &cache) || cache_ping(cache)) ? "unavailable" : "ok";

    snprintf(checks, sizeof checks,
             "\"checks\":{\"database\":\"%s\",\"migrations\":\"%s\",\"memcached\":\"%s\"}",
             r.database, r.migrations, r.memcached);
    if (strcmp(r.database, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "database %s", r.database);
    if (strcmp(r.migrations, "ok") && !strcmp(r.database, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "%smigrations %s%s%s",
                 failing[0] ? ", " : "", r.migrations, r.detail[0] ? " (" : "", r.detail[0] ? ")" : "");
    if (strcmp(r.memcached, "ok"))
        snprintf(failing + strlen(failing), sizeof failing - strlen(failing), "%smemcached %s",
                 failing[0] ? ", " : "", r.memcached);

    if (failing[0]) {
        log_warn("not ready: %s", failing);
        reply_error_extra(req, 503, "not_ready", checks, "Not ready: %s.", failing);
        return;
    }
    char body[768];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"ready\",%s,\"instance_id\":\"%s\",\"version\":\"%s\"}",
                     checks, r.instance_id, PACKAGE_VERSION);
    reply_json(req, 200, body, (size_t)n);
}
