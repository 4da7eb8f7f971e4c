#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "err.h"
#include "log.h"

static struct db_param text_or_empty(const char *s, size_t max, char *buf, size_t cap)
{
    /* Long free text is cut to the column's size rather than refused:
     * the event matters more than the last characters of its detail. */
    snprintf(buf, cap, "%.*s", (int)max, s ? s : "");
    return DB_STR(buf);
}

int audit_write(struct db *db, const struct audit_event *ev)
{
    char label[255], target[65], addr[46], rid[65], detail[1025], target_id[24];
    int rc;

    snprintf(target_id, sizeof target_id, "%lld", ev->target_id);
    struct db_param p[] = {
        ev->actor_id ? DB_I64(ev->actor_id) : DB_NULL,
        text_or_empty(ev->actor_label, 254, label, sizeof label),
        DB_STR(ev->action),
        DB_STR(ev->failed ? "failure" : "success"),
        text_or_empty(ev->target_type, 32, target, sizeof target),
        DB_STR(ev->target_id ? target_id : ""),
        ev->owner_id ? DB_I64(ev->owner_id) : DB_NULL,
        text_or_empty(ev->client_addr, 45, addr, sizeof addr),
        text_or_empty(ev->request_id, 64, rid, sizeof rid),
        text_or_empty(ev->detail, 1024, detail, sizeof detail),
    };
    rc = db_exec(db, "INSERT INTO audit_log (actor_id, actor_label, action, outcome, target_type, "
                     "target_id, owner_id, client_addr, request_id, detail) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 p, sizeof p / sizeof p[0], NULL, NULL);
    if (rc)
        log_error("audit event %s could not be recorded: %s", ev->action, cp_strerror(rc));
    return rc;
}

int alert_write(struct db *db, const char *kind, const char *subject_type, long long subject_id,
                long long user_id, const char *message)
{
    struct db_param p[] = {
        DB_STR(kind), DB_STR(subject_type), DB_I64(subject_id),
        user_id > 0 ? DB_I64(user_id) : DB_NULL, DB_STR(message),
    };

    return db_exec(db,
                   "INSERT INTO alert_events (kind, severity, subject_type, subject_id, user_id,"
                   " message) VALUES (?, 'warning', ?, ?, ?, ?)",
                   p, 5, NULL, NULL);
}

int audit_prune(struct db *db, long long retention_ms, int batch, size_t *deleted)
{
    unsigned long long affected = 0;
    int rc;

    *deleted = 0;
    if (batch < 1)
        return CP_EINVAL;
    struct db_param p[] = { DB_I64(retention_ms / 1000), DB_I64(batch) };
    /* By primary key, oldest first: each batch locks only what it deletes. */
    rc = db_exec(db, "DELETE FROM audit_log WHERE at < NOW(3) - INTERVAL ? SECOND "
                     "ORDER BY id LIMIT ?", p, 2, &affected, NULL);
    if (rc)
        return rc;
    *deleted = (size_t)affected;
    return 0;
}
