/*
 * Automation rules through the API: /api/v1/rules...
 *
 * A rule belongs to the user who made it, and names only that user's
 * connections.  Users see and change their own rules; operators and
 * admins may read every rule but change only their own.  A rule the
 * caller may not see is 404, as if it did not exist.  Validation is
 * rules.c's rule_parse(); this file maps its problems to replies (the
 * field at fault named) and writes every change to the audit log.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "connections.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "json.h"
#include "log.h"
#include "query.h"
#include "rules.h"

#define RULE_JSON_MAX (256u << 10)     /* one rule */
#define LIST_JSON_MAX (32u << 20)      /* a page of them */
#define DETAIL_MAX 128

static void reply_no_rule(struct request *req, long long id)
{
    reply_error(req, 404, "not_found", "No rule has id %lld.", id);
}

/* Who may read: a user their own rules; operators and admins all. */
static struct conn_scope read_scope(const struct request *req)
{
    struct conn_scope s = { .user_id = req->user_id, .see_all = req->user_role != USER_ROLE_USER };

    return s;
}

/* Who may change: everyone only their own. */
static struct conn_scope own_scope(const struct request *req)
{
    struct conn_scope s = { .user_id = req->user_id, .see_all = 0 };

    return s;
}

static void audit_rule(struct request *req, const char *action, long long id, const char *detail)
{
    struct db *db;
    struct audit_event ev = {
        .actor_id = req->user_id, .actor_label = req->user_email, .action = action,
        .target_type = "rule", .target_id = id, .owner_id = req->user_id,
        .client_addr = req_client_addr(req), .request_id = req->request_id, .detail = detail,
    };

    if (app_db(req->app, &db) == 0)
        audit_write(db, &ev);
}

static void reply_problem(struct request *req, const struct rule_problem *p)
{
    if (p->status == 500) {
        reply_error(req, 500, "internal", "%s", p->message);
        return;
    }
    reply_field_error(req, p->status, p->code, p->field[0] ? p->field : NULL, "%s", p->message);
}

/* Reply with rule id as it now is. */
static void reply_rule(struct request *req, struct db *db, int status, long long id)
{
    struct conn_scope scope = read_scope(req);
    struct json_object *o = NULL;
    struct buf b;
    int rc;

    rc = rule_get(db, &scope, id, &o, NULL);
    if (rc == CP_ENOTFOUND) {
        reply_no_rule(req, id);
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    buf_init(&b, RULE_JSON_MAX);
    if (json_to_buf(o, &b))
        reply_error(req, 500, "internal", "The answer could not be built.");
    else
        reply_json(req, status, buf_str(&b), b.len);
    buf_free(&b);
    json_object_put(o);
}

static void rule_detail(const struct rule_input *in, char *detail, size_t cap)
{
    snprintf(detail, cap, "source=%lld destinations=%zu enabled=%s backfill=%s",
             in->source_connection_id, in->ndestinations, in->enabled ? "true" : "false",
             in->backfill ? "true" : "false");
}

/* ------------------------------------------------------------- list -- */

static int read_list_filter(struct request *req, struct rule_filter *f)
{
    char text[32];
    int rc;

    rc = req_query(req, "source_connection_id", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0 && parse_id(text, &f->source_connection_id))
        return reply_bad_parameter(req, "source_connection_id", "a connection id");
    rc = req_query(req, "enabled", text, sizeof text);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        if (strcmp(text, "true") && strcmp(text, "false"))
            return reply_bad_parameter(req, "enabled", "true or false");
        f->have_enabled = 1;
        f->enabled = strcmp(text, "true") == 0;
    }
    return 0;
}

void h_rules_list(struct request *req)
{
    struct conn_scope scope = read_scope(req);
    struct rule_filter f;
    struct buf b;
    struct db *db;
    long long cursor;
    int limit, rc;

    memset(&f, 0, sizeof f);
    if (req_paging(req, &limit, &cursor) || read_list_filter(req, &f))
        return;
    f.after_id = cursor;
    f.limit = limit;
    if (req_db(req, &db))
        return;
    buf_init(&b, LIST_JSON_MAX);
    rc = rule_list(db, &scope, &f, &b);
    if (rc == CP_ETOOBIG || rc == CP_ENOMEM)
        reply_error(req, 500, "internal", "The answer could not be built.");
    else if (rc)
        reply_unavailable(req);
    else
        reply_json(req, 200, buf_str(&b), b.len);
    buf_free(&b);
}

/* ----------------------------------------------------------- create -- */

/* Parse body into in: 0, or 1 after a reply. */
static int parse_body(struct request *req, struct db *db, struct json_object *body,
                      struct rule_input *in)
{
    struct rule_problem why;
    int rc;

    rc = rule_parse(body, req->user_id, rule_conn_lookup_db, db, in, &why);
    if (rc == CP_EINVAL) {
        reply_problem(req, &why);
        return 1;
    }
    if (rc) {
        reply_unavailable(req);
        return 1;
    }
    return 0;
}

void h_rule_create(struct request *req)
{
    struct rule_input in;
    char detail[DETAIL_MAX];
    struct db *db;
    long long id = 0;
    int rc;

    if (req_db(req, &db))
        return;
    rule_input_init(&in);
    if (parse_body(req, db, req->json, &in))
        goto done;
    rc = rule_create(db, req->app->conf, req->user_id, &in, &id);
    if (rc) {
        log_warn("rule create failed: %s", cp_strerror(rc));
        reply_unavailable(req);
        goto done;
    }
    rule_detail(&in, detail, sizeof detail);
    audit_rule(req, "rule.create", id, detail);
    reply_rule(req, db, 201, id);
done:
    rule_input_free(&in);
}

/* -------------------------------------------------------------- one -- */

void h_rule_get(struct request *req)
{
    struct db *db;
    long long id;

    if (req_path_id(req, "id", &id))
        return;
    if (req_db(req, &db))
        return;
    reply_rule(req, db, 200, id);
}

void h_rule_update(struct request *req)
{
    struct conn_scope scope = own_scope(req);
    struct json_object *stored = NULL, *merged = NULL, *bf = NULL;
    struct rule_input in;
    char detail[DETAIL_MAX];
    struct db *db;
    long long id;
    int rc, run_backfill;

    rule_input_init(&in);
    if (req_path_id(req, "id", &id))
        return;
    if (!req->json || !json_object_is_type(req->json, json_type_object)) {
        reply_error(req, 400, "invalid_body", "The request body must be a JSON object.");
        return;
    }
    if (json_object_object_length(req->json) == 0) {
        reply_error(req, 422, "nothing_to_change", "Name at least one member of the rule to change.");
        return;
    }
    if (req_db(req, &db))
        return;
    rc = rule_get(db, &scope, id, &stored, NULL);
    if (rc == CP_ENOTFOUND) {
        reply_no_rule(req, id);
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    rc = rule_merge_patch(stored, req->json, &merged);
    if (rc) {
        reply_error(req, 500, "internal", "The change could not be applied.");
        goto done;
    }
    if (parse_body(req, db, merged, &in))
        goto done;
    run_backfill = json_object_object_get_ex(req->json, "backfill", &bf) &&
                   json_object_is_type(bf, json_type_boolean) && json_object_get_boolean(bf);
    rc = rule_update(db, req->app->conf, req->user_id, id, &in, run_backfill);
    if (rc == CP_ENOTFOUND) {
        reply_no_rule(req, id);
        goto done;
    }
    if (rc) {
        log_warn("rule %lld update failed: %s", id, cp_strerror(rc));
        reply_unavailable(req);
        goto done;
    }
    rule_detail(&in, detail, sizeof detail);
    audit_rule(req, "rule.update", id, detail);
    reply_rule(req, db, 200, id);
done:
    rule_input_free(&in);
    json_object_put(merged);
    json_object_put(stored);
}

void h_rule_delete(struct request *req)
{
    struct db *db;
    long long id;
    int rc;

    if (req->json && (!json_object_is_type(req->json, json_type_object) ||
                      json_object_object_length(req->json) != 0)) {
        reply_error(req, 422, "unknown_field", "DELETE takes no body.");
        return;
    }
    if (req_path_id(req, "id", &id))
        return;
    if (req_db(req, &db))
        return;
    rc = rule_delete(db, req->user_id, id);
    if (rc == CP_ENOTFOUND) {
        reply_no_rule(req, id);
        return;
    }
    if (rc) {
        reply_unavailable(req);
        return;
    }
    audit_rule(req, "rule.delete", id, "");
    reply_body(req, 204, "application/json", "", 0);
}
