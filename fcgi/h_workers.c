/*
 * The processes of crosspost-worker: GET /api/v1/workers (operators and
 * admins).
 *
 * Rows of the workers table, newest first, paged by id.  A process is
 * alive while it is not stopped and its heartbeat is fresher than
 * worker_stale_after; a row that is not stopped but stale is a process
 * that died without its supervisor noticing (or a supervisor that died).
 * Stopped rows are shown with ?all=1.
 */
#include "config.h"

#include <limits.h>
#include <string.h>

#include "conf.h"
#include "db.h"
#include "err.h"
#include "handlers.h"
#include "query.h"

#define WORKERS_JSON_MAX (4u << 20)

#define TIME_COL(c) "DATE_FORMAT(" c ", '%Y-%m-%dT%H:%i:%s.%f')"

enum {
    C_ID, C_SUPERVISOR, C_ROLE, C_HOST, C_PID, C_QUEUES, C_STATE, C_STARTED, C_HEARTBEAT,
    C_AGE, C_ALIVE, C_JOBS_DONE, C_CURRENT_JOB,
};

static int add_raw_or_null(struct buf *b, const char *name, const char *v)
{
    return buf_printf(b, ",\"%s\":%s", name, v ? v : "null");
}

static int add_text(struct buf *b, const char *name, const char *v)
{
    int rc = buf_printf(b, ",\"%s\":\"", name);

    rc = rc ? rc : buf_add_json_escaped(b, v ? v : "", v ? strlen(v) : 0);
    return rc ? rc : buf_addc(b, '"');
}

static int add_time(struct buf *b, const char *name, const char *v)
{
    return v ? buf_printf(b, ",\"%s\":\"%.23sZ\"", name, v) : buf_printf(b, ",\"%s\":null", name);
}

static int page_json(const struct db_result *r, int limit, struct buf *b)
{
    size_t rows = db_result_rows(r), shown = rows > (size_t)limit ? (size_t)limit : rows;
    long long id = 0, alive = 0;
    int rc = buf_adds(b, "{\"data\":[");

    for (size_t i = 0; i < shown && !rc; i++) {
        db_result_i64(r, i, C_ID, &id);
        db_result_i64(r, i, C_ALIVE, &alive);
        /* Every number comes from an integer or decimal column. */
        rc = buf_printf(b, "%s{\"id\":%lld", i ? "," : "", id);
        rc = rc ? rc : add_raw_or_null(b, "supervisor_id", db_result_get(r, i, C_SUPERVISOR));
        rc = rc ? rc : add_text(b, "role", db_result_get(r, i, C_ROLE));
        rc = rc ? rc : add_text(b, "host", db_result_get(r, i, C_HOST));
        rc = rc ? rc : add_raw_or_null(b, "pid", db_result_get(r, i, C_PID));
        rc = rc ? rc : add_text(b, "queues", db_result_get(r, i, C_QUEUES));
        rc = rc ? rc : add_text(b, "state", db_result_get(r, i, C_STATE));
        rc = rc ? rc : add_time(b, "started_at", db_result_get(r, i, C_STARTED));
        rc = rc ? rc : add_time(b, "last_heartbeat_at", db_result_get(r, i, C_HEARTBEAT));
        rc = rc ? rc : add_raw_or_null(b, "heartbeat_age_s", db_result_get(r, i, C_AGE));
        rc = rc ? rc : buf_printf(b, ",\"alive\":%s", alive ? "true" : "false");
        rc = rc ? rc : add_raw_or_null(b, "jobs_done", db_result_get(r, i, C_JOBS_DONE));
        rc = rc ? rc : add_raw_or_null(b, "current_job_id", db_result_get(r, i, C_CURRENT_JOB));
        rc = rc ? rc : buf_addc(b, '}');
    }
    if (rc)
        return rc;
    if (rows > shown)
        return buf_printf(b, "],\"next_cursor\":\"%lld\"}", id);
    return buf_adds(b, "],\"next_cursor\":null}");
}

void h_workers_list(struct request *req)
{
    struct db_param p[3];
    char all_text[8];
    struct buf sql;
    long long cursor;
    int limit, all = 0, rc;

    if (req_paging(req, &limit, &cursor))
        return;
    rc = req_query(req, "all", all_text, sizeof all_text);
    if (rc == 1)
        return;
    if (rc == 0) {
        all = strcmp(all_text, "1") == 0 ? 1 : strcmp(all_text, "0") == 0 ? 0 : -1;
        if (all < 0) {
            reply_error(req, 400, "invalid_parameter", "The query parameter \"all\" must be 1 or 0.");
            return;
        }
    }
    p[0] = DB_I64(req->app->conf->worker_stale_after * 1000);
    p[1] = DB_I64(cursor ? cursor : LLONG_MAX);
    p[2] = DB_I64(limit + 1);
    buf_init(&sql, 2048);
    rc = buf_adds(&sql,
        "SELECT id, supervisor_id, role, host, pid, queues, state, " TIME_COL("started_at") ", "
        TIME_COL("last_heartbeat_at") ", "
        "ROUND(TIMESTAMPDIFF(MICROSECOND, last_heartbeat_at, NOW(3)) / 1e6, 3), "
        "state <> 'stopped' AND last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND, "
        "jobs_done, current_job_id FROM workers WHERE id < ?");
    if (!rc && !all)
        rc = buf_adds(&sql, " AND state <> 'stopped'");
    rc = rc ? rc : buf_adds(&sql, " ORDER BY id DESC LIMIT ?");
    reply_list_query(req, rc, &sql, p, 3, limit, page_json, WORKERS_JSON_MAX);
}
