#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "audit.h"
#include "err.h"
#include "jobkinds.h"
#include "json.h"
#include "log.h"
#include "queue.h"
#include "retry.h"

#define TX_ATTEMPTS 5
#define MAX_DELAY_MS (10LL * 366 * 24 * 3600 * 1000)    /* ten years */
#define MAX_RETENTION_MS (100LL * 366 * 24 * 3600 * 1000)
#define PRIORITY_MIN (-1000)
#define PRIORITY_MAX 1000
#define ATTEMPTS_MAX 100
#define IDS_MAX 1024               /* the longest IN list of any statement */
#define PRUNE_BATCH_MAX IDS_MAX
#define RETRY_DEAD_MAX 1000
#define RECURRING_NAME_MAX 64
#define RECURRING_KEY_PREFIX "recurring:"
#define SQL_MAX (64 * 1024)
#define MESSAGE_BUF_MAX (4 * JOB_ERROR_MAX)
#define PAYLOAD_MAX JOB_PAYLOAD_MAX     /* what a TEXT column holds */

/* ------------------------------------------------------------ states -- */

/* In the order of enum job_state; the schema's ENUM spells them so. */
static const char *const state_names[JOB_STATES] = {
    "scheduled", "ready", "running", "failed", "succeeded", "dead", "cancelled",
};

const char *job_state_name(enum job_state s)
{
    if ((unsigned)s >= JOB_STATES)
        return "unknown";
    return state_names[s];
}

int job_state_parse(const char *name, enum job_state *out)
{
    *out = JOB_SCHEDULED;
    if (!name)
        return CP_EINVAL;
    for (int i = 0; i < JOB_STATES; i++)
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum job_state)i;
            return 0;
        }
    return CP_EINVAL;
}

/* ----------------------------------------------------------- helpers -- */

static int random_u64(unsigned long long *out)
{
    unsigned char bytes[sizeof *out];
    size_t got = 0;

    *out = 0;
    while (got < sizeof bytes) {
        ssize_t r = getrandom(bytes + got, sizeof bytes - got, 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            log_syserr("getrandom");
            return CP_EIO;
        }
        got += (size_t)r;
    }
    memcpy(out, bytes, sizeof bytes);
    return 0;
}

/* A lease token: random, non-zero, and below 2^63 so that it binds as a
 * signed 64-bit value into the BIGINT UNSIGNED column. */
static int new_lease_token(unsigned long long *out)
{
    unsigned long long v = 0;
    int rc;

    *out = 0;
    do {
        rc = random_u64(&v);
        if (rc)
            return rc;
        v &= (unsigned long long)INT64_MAX;
    } while (v == 0);
    *out = v;
    return 0;
}

/* Copy text into out (at most max bytes plus the NUL) as valid UTF-8:
 * invalid bytes become '?', control characters other than newline and
 * tab become spaces, and the cut falls on a character boundary. */
static void clean_text(const char *in, char *out, size_t max)
{
    const unsigned char *p = (const unsigned char *)(in ? in : "");
    size_t o = 0;

    while (*p) {
        size_t len = 1;

        if (*p >= 0xC0) {
            len = *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;
            for (size_t k = 1; k < len; k++)
                if (!p[k]) {
                    len = 0;      /* truncated sequence */
                    break;
                }
            if (len && !json_utf8_valid((const char *)p, len))
                len = 0;
        } else if (*p >= 0x80) {
            len = 0;              /* a stray continuation byte */
        }
        if (len == 0) {
            if (o + 1 > max)
                break;
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + len > max)
            break;
        if (len == 1 && *p < 0x20 && *p != '\n' && *p != '\t')
            out[o++] = ' ';
        else if (len == 1 && *p == 0x7F)
            out[o++] = ' ';
        else {
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
    }
    out[o] = '\0';
}

static size_t pow2_at_least(size_t n)
{
    size_t m = 1;

    while (m < n)
        m <<= 1;
    return m;
}

static int parse_i64_col(const struct db_result *r, size_t row, size_t col, long long *out)
{
    int rc = db_result_i64(r, row, col, out);

    if (rc == CP_ENOTFOUND) {      /* SQL NULL */
        *out = 0;
        return 0;
    }
    return rc ? CP_EDB : 0;
}

static void copy_col(const struct db_result *r, size_t row, size_t col, char *out, size_t size)
{
    const char *s = db_result_get(r, row, col);

    snprintf(out, size, "%s", s ? s : "");
}

/* A statement of the form  head (?, ?, ...) tail  whose IN list holds n
 * ids padded to a power of two by repeating the last, so a statement
 * cache sees a handful of shapes.  Parameters: lead, the ids, trail. */
struct id_stmt {
    struct buf sql;
    struct db_param *params;
    size_t nparams;
};

static void id_stmt_free(struct id_stmt *s)
{
    buf_free(&s->sql);
    free(s->params);
    s->params = NULL;
    s->nparams = 0;
}

static int id_stmt_build(struct id_stmt *s, const char *head, const char *tail,
                         const struct db_param *lead, size_t nlead,
                         const long long *ids, size_t n,
                         const struct db_param *trail, size_t ntrail)
{
    size_t slots = pow2_at_least(n), k = 0;
    int rc;

    memset(s, 0, sizeof *s);
    buf_init(&s->sql, SQL_MAX);
    if (n == 0 || n > IDS_MAX)
        return CP_EINVAL;
    s->params = calloc(nlead + slots + ntrail, sizeof *s->params);
    if (!s->params)
        return CP_ENOMEM;
    rc = buf_adds(&s->sql, head);
    if (!rc)
        rc = buf_adds(&s->sql, " (");
    for (size_t i = 0; !rc && i < slots; i++)
        rc = buf_adds(&s->sql, i ? ", ?" : "?");
    if (!rc)
        rc = buf_adds(&s->sql, ")");
    if (!rc && tail && *tail)
        rc = buf_printf(&s->sql, " %s", tail);
    if (rc) {
        id_stmt_free(s);
        return rc;
    }
    for (size_t i = 0; i < nlead; i++)
        s->params[k++] = lead[i];
    for (size_t i = 0; i < slots; i++)
        s->params[k++] = DB_I64(ids[i < n ? i : n - 1]);
    for (size_t i = 0; i < ntrail; i++)
        s->params[k++] = trail[i];
    s->nparams = k;
    return 0;
}

static int exec_ids(struct db *db, const char *head, const char *tail,
                    const struct db_param *lead, size_t nlead, const long long *ids, size_t n,
                    const struct db_param *trail, size_t ntrail, unsigned long long *affected)
{
    struct id_stmt s;
    int rc;

    if (affected)
        *affected = 0;
    rc = id_stmt_build(&s, head, tail, lead, nlead, ids, n, trail, ntrail);
    if (!rc)
        rc = db_exec(db, buf_str(&s.sql), s.params, s.nparams, affected, NULL);
    id_stmt_free(&s);
    return rc;
}

static int count_ids(struct db *db, const char *head, const char *tail,
                     const long long *ids, size_t n, const struct db_param *trail,
                     size_t ntrail, long long *count)
{
    struct db_result *r = NULL;
    struct id_stmt s;
    int rc;

    *count = 0;
    rc = id_stmt_build(&s, head, tail, NULL, 0, ids, n, trail, ntrail);
    if (!rc)
        rc = db_query(db, buf_str(&s.sql), s.params, s.nparams, &r);
    if (!rc)
        rc = db_result_rows(r) == 1 ? parse_i64_col(r, 0, 0, count) : CP_EDB;
    db_result_free(r);
    id_stmt_free(&s);
    return rc;
}

/*
 * A single autocommitted statement, run again when it lost a deadlock or
 * timed out waiting for a lock: the server rolled it back whole, so
 * running it again is safe.
 */
static int exec_ids_retrying(struct db *db, const char *head, const char *tail,
                             const struct db_param *lead, size_t nlead, const long long *ids,
                             size_t n, const struct db_param *trail, size_t ntrail,
                             unsigned long long *affected)
{
    int rc = CP_ERETRY;

    for (int attempt = 1; attempt <= TX_ATTEMPTS; attempt++) {
        rc = exec_ids(db, head, tail, lead, nlead, ids, n, trail, ntrail, affected);
        if (rc != CP_ERETRY)
            return rc;
        if (attempt < TX_ATTEMPTS) {
            unsigned long long r = 0;
            struct timespec ts = { 0, 0 };

            random_u64(&r);
            ts.tv_nsec = (long)((5 + r % 46) * (unsigned long long)attempt * 1000000ULL);
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
    }
    return rc;
}

/* ------------------------------------------------------------ enqueue -- */

struct valid_spec {
    const char *kind;
    const char *queue;
    const char *payload;
    int max_attempts;
    const char *state;
};

static int payload_ok(const char *text)
{
    struct json_limits lim = json_default_limits;
    struct json_object *obj = NULL;
    size_t len = strlen(text);
    int is_object;

    if (len > PAYLOAD_MAX)
        return CP_EINVAL;
    lim.max_size = PAYLOAD_MAX;
    if (lim.max_string > PAYLOAD_MAX)
        lim.max_string = PAYLOAD_MAX;
    if (json_parse(text, len, &lim, &obj, NULL))
        return CP_EINVAL;
    is_object = json_object_is_type(obj, json_type_object);
    json_object_put(obj);
    return is_object ? 0 : CP_EINVAL;
}

static int spec_check(const struct job_spec *s, struct valid_spec *v)
{
    const struct job_kind *k;

    memset(v, 0, sizeof *v);
    if (!s || !s->kind)
        return CP_EINVAL;
    k = job_kind_find(s->kind);
    if (!k)
        return CP_EINVAL;
    v->kind = k->name;
    v->queue = s->queue ? s->queue : k->queue;
    if (!job_queue_name_ok(v->queue))
        return CP_EINVAL;
    v->payload = s->payload ? s->payload : "{}";
    if (payload_ok(v->payload))
        return CP_EINVAL;
    if (s->unique_key) {
        size_t len = strlen(s->unique_key);

        if (len == 0 || len > JOB_UNIQUE_KEY_MAX || !json_utf8_valid(s->unique_key, len))
            return CP_EINVAL;
    }
    if (s->priority < PRIORITY_MIN || s->priority > PRIORITY_MAX)
        return CP_EINVAL;
    if (s->delay_ms < 0 || s->delay_ms > MAX_DELAY_MS)
        return CP_EINVAL;
    if (s->max_attempts < 0 || s->max_attempts > ATTEMPTS_MAX)
        return CP_EINVAL;
    if (s->user_id < 0)
        return CP_EINVAL;
    v->max_attempts = s->max_attempts ? s->max_attempts : k->max_attempts;
    v->state = s->delay_ms > 0 ? "scheduled" : "ready";
    return 0;
}

static const char sql_enqueue[] =
    "INSERT INTO jobs (queue, kind, state, priority, run_at, max_attempts, unique_key,"
    " active_key, payload, user_id)"
    " VALUES (?, ?, ?, ?, NOW(3) + INTERVAL ? MICROSECOND, ?, ?, ?, ?, ?)";

static const char sql_active_key_owner[] = "SELECT id FROM jobs WHERE active_key = ?";

int queue_enqueue(struct db *db, const struct job_spec *spec, long long *id_out)
{
    struct valid_spec v;
    unsigned long long id = 0;
    int rc;

    *id_out = 0;
    rc = spec_check(spec, &v);
    if (rc)
        return rc;
    struct db_param p[] = {
        DB_STR(v.queue), DB_STR(v.kind), DB_STR(v.state), DB_I64(spec->priority),
        DB_I64(spec->delay_ms * 1000), DB_I64(v.max_attempts),
        spec->unique_key ? DB_STR(spec->unique_key) : DB_NULL,
        spec->unique_key ? DB_STR(spec->unique_key) : DB_NULL,
        DB_STR(v.payload), spec->user_id ? DB_I64(spec->user_id) : DB_NULL,
    };
    rc = db_exec(db, sql_enqueue, p, sizeof p / sizeof p[0], NULL, &id);
    if (rc == CP_ECONFLICT && spec->unique_key) {
        struct db_param k[] = { DB_STR(spec->unique_key) };
        struct db_result *r = NULL;
        long long holder = 0;

        /* The holder may have finished meanwhile; then 0 is the answer. */
        if (db_query(db, sql_active_key_owner, k, 1, &r) == 0 && db_result_rows(r) == 1 &&
            parse_i64_col(r, 0, 0, &holder) == 0)
            *id_out = holder;
        db_result_free(r);
        return CP_ECONFLICT;
    }
    if (rc)
        return rc;
    *id_out = (long long)id;
    return 0;
}

#define ENQUEUE_MANY_COLS 8

static int enqueue_rows(struct db *db, const struct job_spec *specs,
                        const struct valid_spec *v, size_t n)
{
    struct db_param *p;
    struct buf sql;
    size_t k = 0;
    int rc;

    p = calloc(n * ENQUEUE_MANY_COLS, sizeof *p);
    if (!p)
        return CP_ENOMEM;
    buf_init(&sql, SQL_MAX);
    rc = buf_adds(&sql, "INSERT INTO jobs (queue, kind, state, priority, run_at, max_attempts,"
                        " payload, user_id) VALUES ");
    for (size_t i = 0; !rc && i < n; i++) {
        rc = buf_adds(&sql, i ? ", (?, ?, ?, ?, NOW(3) + INTERVAL ? MICROSECOND, ?, ?, ?)"
                              : "(?, ?, ?, ?, NOW(3) + INTERVAL ? MICROSECOND, ?, ?, ?)");
        p[k++] = DB_STR(v[i].queue);
        p[k++] = DB_STR(v[i].kind);
        p[k++] = DB_STR(v[i].state);
        p[k++] = DB_I64(specs[i].priority);
        p[k++] = DB_I64(specs[i].delay_ms * 1000);
        p[k++] = DB_I64(v[i].max_attempts);
        p[k++] = DB_STR(v[i].payload);
        p[k++] = specs[i].user_id ? DB_I64(specs[i].user_id) : DB_NULL;
    }
    if (!rc)
        rc = db_exec(db, buf_str(&sql), p, k, NULL, NULL);
    buf_free(&sql);
    free(p);
    return rc;
}

int queue_enqueue_many(struct db *db, const struct job_spec *specs, size_t n)
{
    struct valid_spec *v;
    size_t done = 0;
    int own_tx = 0, rc = 0;

    if (n == 0)
        return 0;
    if (!specs)
        return CP_EINVAL;
    v = calloc(n, sizeof *v);
    if (!v)
        return CP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rc = spec_check(&specs[i], &v[i]);
        if (!rc && specs[i].unique_key)
            rc = CP_EINVAL;
        if (rc)
            goto out;
    }
    /* More than one statement must still add all or nothing.  db_begin()
     * refuses (CP_EINVAL) when the caller's transaction is open, and then
     * that transaction holds the statements together. */
    if (n > QUEUE_BATCH_MAX) {
        rc = db_begin(db);
        if (rc == 0)
            own_tx = 1;
        else if (rc != CP_EINVAL)
            goto out;
        rc = 0;
    }
    /* Chunks of power-of-two sizes keep the statement shapes few. */
    while (!rc && done < n) {
        size_t chunk = QUEUE_BATCH_MAX;

        while (chunk > n - done)
            chunk >>= 1;
        rc = enqueue_rows(db, specs + done, v + done, chunk);
        done += chunk;
    }
    if (own_tx) {
        if (rc)
            db_rollback(db);
        else
            rc = db_commit(db);
    }
out:
    free(v);
    return rc;
}

/* -------------------------------------------------------------- claim -- */

void job_batch_free(struct job_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->jobs[i].payload);
    free(b->jobs);
    memset(b, 0, sizeof *b);
}

/* Statements read by tests/integration/test_queue_layer.py (EXPLAIN):
 * keep each one a plain string literal. */
static const char sql_claim_select[] =
    "SELECT id, queue, kind, payload, attempts, max_attempts, priority, COALESCE(user_id, 0),"
    " CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED),"
    " CAST(UNIX_TIMESTAMP(run_at) * 1000 AS SIGNED),"
    " NOW(3), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
    " FROM jobs FORCE INDEX (ix_jobs_claim)"
    " WHERE queue = ? AND state = 'ready'"
    " ORDER BY priority, id LIMIT ? FOR UPDATE SKIP LOCKED";

static const char sql_claim_update[] =
    "UPDATE jobs SET state = 'running', owner = ?, lease_token = ?, attempts = attempts + 1,"
    " claimed_at = ?, lease_expires_at = CAST(? AS DATETIME(3)) + INTERVAL ? MICROSECOND,"
    " progress_done = NULL, progress_total = NULL"
    " WHERE id IN";

struct claim_ctx {
    const char *queue;
    long long owner;
    int max;
    long long lease_ms;
    struct job_batch *out;
};

static int claim_fill(const struct db_result *r, struct job_batch *b)
{
    size_t rows = db_result_rows(r);

    b->jobs = calloc(rows, sizeof *b->jobs);
    if (!b->jobs)
        return CP_ENOMEM;
    for (size_t i = 0; i < rows; i++) {
        struct job *j = &b->jobs[i];
        const char *payload = db_result_get(r, i, 3);
        long long attempts = 0, max_attempts = 0, priority = 0;

        if (parse_i64_col(r, i, 0, &j->id) || parse_i64_col(r, i, 4, &attempts) ||
            parse_i64_col(r, i, 5, &max_attempts) || parse_i64_col(r, i, 6, &priority) ||
            parse_i64_col(r, i, 7, &j->user_id) || parse_i64_col(r, i, 8, &j->created_ms) ||
            parse_i64_col(r, i, 9, &j->run_at_ms) || parse_i64_col(r, i, 11, &j->claimed_ms))
            return CP_EDB;
        copy_col(r, i, 1, j->queue, sizeof j->queue);
        copy_col(r, i, 2, j->kind, sizeof j->kind);
        j->payload = strdup(payload ? payload : "{}");
        if (!j->payload)
            return CP_ENOMEM;
        b->n = i + 1;
        j->attempts = (int)attempts + 1;
        j->max_attempts = (int)max_attempts;
        j->priority = (int)priority;
    }
    return 0;
}

static int claim_tx(struct db *db, void *arg)
{
    struct claim_ctx *c = arg;
    struct job_batch *b = c->out;
    struct db_result *r = NULL;
    long long ids[QUEUE_BATCH_MAX];
    unsigned long long token = 0, affected = 0;
    const char *now;
    size_t rows;
    int rc;

    job_batch_free(b);          /* what an earlier, failed attempt read */
    rc = new_lease_token(&token);
    if (rc)
        return rc;
    struct db_param sp[] = { DB_STR(c->queue), DB_I64(c->max) };
    rc = db_query(db, sql_claim_select, sp, 2, &r);
    if (rc)
        return rc;
    rows = db_result_rows(r);
    if (rows == 0)
        goto out;
    if (rows > (size_t)c->max || db_result_cols(r) != 12) {
        rc = CP_EDB;
        goto out;
    }
    rc = claim_fill(r, b);
    if (rc)
        goto out;
    now = db_result_get(r, 0, 10);
    if (!now) {
        rc = CP_EDB;
        goto out;
    }
    for (size_t i = 0; i < b->n; i++)
        ids[i] = b->jobs[i].id;
    struct db_param up[] = {
        DB_I64(c->owner), DB_I64((long long)token), DB_STR(now), DB_STR(now),
        DB_I64(c->lease_ms * 1000),
    };
    rc = exec_ids(db, sql_claim_update, NULL, up, 5, ids, b->n, NULL, 0, &affected);
    if (!rc && affected != b->n) {
        log_error("claim: %llu of %zu locked jobs changed", affected, b->n);
        rc = CP_EDB;
    }
    b->lease.owner = c->owner;
    b->lease.token = token;
out:
    db_result_free(r);
    if (rc)
        job_batch_free(b);
    return rc;
}

int queue_claim(struct db *db, const char *queue, long long owner, int max, long long lease_ms,
                struct job_batch *out)
{
    struct claim_ctx c = { queue, owner, max, lease_ms, out };
    int rc;

    memset(out, 0, sizeof *out);
    if (!job_queue_name_ok(queue) || owner <= 0 || max < 1 || max > QUEUE_BATCH_MAX ||
        lease_ms < 1 || lease_ms > MAX_DELAY_MS)
        return CP_EINVAL;
    rc = db_transaction(db, claim_tx, &c, TX_ATTEMPTS);
    if (rc)
        job_batch_free(out);
    return rc;
}

/* ---------------------------------------------- the claimant's writes -- */

static const char sql_complete[] =
    "UPDATE jobs SET state = 'succeeded', finished_at = NOW(3), active_key = NULL,"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id IN";
static const char sql_fence_tail[] = "AND state = 'running' AND owner = ? AND lease_token = ?";

static int lease_ok(const struct lease *l)
{
    return l && l->owner > 0 && l->token > 0 && l->token <= (unsigned long long)INT64_MAX;
}

/* Apply head...IN (ids) + fence to ids in statements of QUEUE_BATCH_MAX. */
static int fenced_batches(struct db *db, const char *head, const struct db_param *lead,
                          size_t nlead, const struct lease *l, const long long *ids, size_t n,
                          size_t *count)
{
    struct db_param fence[] = { DB_I64(l->owner), DB_I64((long long)l->token) };
    size_t total = 0;
    int rc = 0;

    for (size_t off = 0; off < n; off += QUEUE_BATCH_MAX) {
        size_t chunk = n - off < QUEUE_BATCH_MAX ? n - off : QUEUE_BATCH_MAX;
        unsigned long long affected = 0;

        rc = exec_ids_retrying(db, head, sql_fence_tail, lead, nlead, ids + off, chunk,
                               fence, 2, &affected);
        if (rc)
            break;
        total += (size_t)affected;
    }
    if (count)
        *count = total;
    return rc;
}

int queue_complete(struct db *db, const struct lease *l, const long long *ids, size_t n,
                   size_t *done)
{
    *done = 0;
    if (n == 0)
        return 0;
    if (!lease_ok(l) || !ids)
        return CP_EINVAL;
    return fenced_batches(db, sql_complete, NULL, 0, l, ids, n, done);
}

static const char sql_release[] =
    "UPDATE jobs SET state = 'ready', attempts = attempts - LEAST(attempts, 1),"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id IN";

int queue_release(struct db *db, const struct lease *l, const long long *ids, size_t n,
                  size_t *released)
{
    size_t count = 0;
    int rc;

    if (released)
        *released = 0;
    if (n == 0)
        return 0;
    if (!lease_ok(l) || !ids)
        return CP_EINVAL;
    rc = fenced_batches(db, sql_release, NULL, 0, l, ids, n, &count);
    if (released)
        *released = count;
    return rc;
}

static const char sql_heartbeat[] =
    "UPDATE jobs SET lease_expires_at = NOW(3) + INTERVAL ? MICROSECOND WHERE id IN";
static const char sql_heartbeat_count[] = "SELECT COUNT(*) FROM jobs WHERE id IN";
static const char sql_owner_tail[] = "AND state = 'running' AND owner = ?";

int queue_heartbeat(struct db *db, long long owner, const long long *ids, size_t n,
                    long long lease_ms, size_t *renewed)
{
    struct db_param lead[] = { DB_I64(lease_ms * 1000) };
    struct db_param trail[] = { DB_I64(owner) };
    size_t total = 0;
    int rc = 0;

    if (renewed)
        *renewed = 0;
    if (n == 0)
        return 0;
    if (owner <= 0 || !ids || lease_ms < 1 || lease_ms > MAX_DELAY_MS)
        return CP_EINVAL;
    for (size_t off = 0; off < n; off += QUEUE_BATCH_MAX) {
        size_t chunk = n - off < QUEUE_BATCH_MAX ? n - off : QUEUE_BATCH_MAX;
        unsigned long long affected = 0;

        rc = exec_ids_retrying(db, sql_heartbeat, sql_owner_tail, lead, 1, ids + off, chunk,
                               trail, 1, &affected);
        if (rc)
            break;
        if (affected < chunk) {
            /* A lease renewed twice within one millisecond is unchanged
             * and not counted as affected: count what is held instead. */
            long long held = 0;

            rc = count_ids(db, sql_heartbeat_count, sql_owner_tail, ids + off, chunk, trail, 1,
                           &held);
            if (rc)
                break;
            affected = (unsigned long long)held;
        }
        total += (size_t)affected;
    }
    if (renewed)
        *renewed = total;
    return rc;
}

static const char sql_progress[] =
    "UPDATE jobs SET progress_done = ?, progress_total = ?"
    " WHERE id = ? AND state = 'running' AND owner = ? AND lease_token = ?";
static const char sql_progress_held[] =
    "SELECT COUNT(*) FROM jobs WHERE id = ? AND state = 'running' AND owner = ? AND lease_token = ?";

int queue_progress(struct db *db, const struct lease *l, long long id, long long done,
                   long long total)
{
    struct db_result *r = NULL;
    unsigned long long affected = 0;
    long long held = 0;
    int rc;

    if (!lease_ok(l) || id <= 0 || done < 0 || total < 0)
        return CP_EINVAL;
    struct db_param p[] = {
        DB_I64(done), total ? DB_I64(total) : DB_NULL, DB_I64(id), DB_I64(l->owner),
        DB_I64((long long)l->token),
    };
    rc = db_exec(db, sql_progress, p, 5, &affected, NULL);
    if (rc || affected)
        return rc;
    /* Nothing changed: the same figures again, or the lease is gone. */
    rc = db_query(db, sql_progress_held, p + 2, 3, &r);
    if (!rc)
        rc = db_result_rows(r) == 1 ? parse_i64_col(r, 0, 0, &held) : CP_EDB;
    db_result_free(r);
    if (rc)
        return rc;
    return held ? 0 : CP_ECONFLICT;
}

/* ------------------------------------------------- ending an attempt -- */

/* One attempt that did not succeed, and what retry_decide() made of it. */
struct attempt_end {
    long long id;
    long long owner;
    unsigned long long token;
    int attempt;                  /* attempts spent, counting this one */
    const char *kind;
    long long user_id;
    enum job_error_class cls;
    const char *message;
    struct retry_decision d;
};

static const char sql_end_dead[] =
    "UPDATE jobs SET state = 'dead', finished_at = NOW(3), active_key = NULL,"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
    " last_error = ?, last_error_class = ?"
    " WHERE id = ? AND state = 'running' AND owner = ? AND lease_token = ?";

static const char sql_end_again[] =
    "UPDATE jobs SET state = ?, run_at = NOW(3) + INTERVAL ? MICROSECOND,"
    " attempts = attempts - LEAST(attempts, ?),"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
    " last_error = ?, last_error_class = ?"
    " WHERE id = ? AND state = 'running' AND owner = ? AND lease_token = ?";

static const char sql_attempt_row[] =
    "INSERT INTO job_attempts (job_id, attempt, outcome, error_class, error, worker_id,"
    " worker_host, worker_pid, started_at)"
    " SELECT j.id, ?, ?, ?, ?, ?, COALESCE(w.host, ''), w.pid, j.claimed_at"
    " FROM jobs j LEFT JOIN workers w ON w.id = ? WHERE j.id = ?";

static enum job_state decided_state(const struct retry_decision *d)
{
    switch (d->action) {
    case RETRY_DEAD:
        return JOB_DEAD;
    case RETRY_DEFER:
        return JOB_SCHEDULED;
    case RETRY_AGAIN:
        break;
    }
    return d->delay_ms > 0 ? JOB_FAILED : JOB_READY;
}

static const char *attempt_outcome(const struct attempt_end *e)
{
    if (e->d.action == RETRY_DEAD)
        return "dead";
    if (e->d.action == RETRY_DEFER)
        return "deferred";
    if (e->cls == JOB_ERR_LOST)
        return "lost";
    if (e->cls == JOB_ERR_RELEASED)
        return "released";
    return "failed";
}

/* In the current transaction: move the job on as decided (fenced by its
 * lease), record the attempt and, for a death, the alert. */
static int end_attempt(struct db *db, const struct attempt_end *e, enum job_state *state_out)
{
    char error[JOB_ERROR_MAX + 1];
    const char *cls = job_error_class_name(e->cls);
    enum job_state state = decided_state(&e->d);
    unsigned long long affected = 0;
    int rc;

    clean_text(e->message, error, JOB_ERROR_MAX);
    if (state == JOB_DEAD) {
        struct db_param p[] = {
            DB_STR(error), DB_STR(cls), DB_I64(e->id), DB_I64(e->owner),
            DB_I64((long long)e->token),
        };
        rc = db_exec(db, sql_end_dead, p, 5, &affected, NULL);
    } else {
        long long delay = e->d.delay_ms < 0 ? 0 : e->d.delay_ms;
        struct db_param p[] = {
            DB_STR(job_state_name(state)), DB_I64(delay * 1000),
            DB_I64(e->d.refund_attempt ? 1 : 0), DB_STR(error), DB_STR(cls), DB_I64(e->id),
            DB_I64(e->owner), DB_I64((long long)e->token),
        };
        rc = db_exec(db, sql_end_again, p, 8, &affected, NULL);
    }
    if (rc)
        return rc;
    if (affected == 0)
        return CP_ECONFLICT;

    struct db_param a[] = {
        DB_I64(e->attempt), DB_STR(attempt_outcome(e)), DB_STR(cls), DB_STR(error),
        DB_I64(e->owner), DB_I64(e->owner), DB_I64(e->id),
    };
    rc = db_exec(db, sql_attempt_row, a, 7, NULL, NULL);
    if (rc)
        return rc;

    if (state == JOB_DEAD) {
        char message[JOB_ERROR_MAX + 1];
        struct buf m;

        buf_init(&m, MESSAGE_BUF_MAX);
        rc = buf_printf(&m, "job %lld (%s) is dead after %d attempt%s: %s: %s", e->id,
                        e->kind, e->attempt, e->attempt == 1 ? "" : "s", cls, error);
        if (rc == CP_ETOOBIG)
            rc = 0;               /* what fits is said */
        clean_text(buf_str(&m), message, JOB_ERROR_MAX);
        buf_free(&m);
        if (rc)
            return rc;
        rc = alert_write(db, "job.dead", "job", e->id, e->user_id, message);
        if (rc)
            return rc;
    }
    if (state_out)
        *state_out = state;
    return 0;
}

struct end_ctx {
    struct attempt_end e;
    enum job_state state;
};

static int end_tx(struct db *db, void *arg)
{
    struct end_ctx *c = arg;

    return end_attempt(db, &c->e, &c->state);
}

int queue_fail(struct db *db, const struct lease *l, const struct job *job,
               const struct job_failure *f, const struct retry_policy *p,
               unsigned long long rnd, enum job_state *new_state)
{
    struct end_ctx c;
    int rc;

    if (new_state)
        *new_state = JOB_SCHEDULED;
    if (!lease_ok(l) || !job || !f || !p || (unsigned)f->cls >= JOB_ERR_CLASSES)
        return CP_EINVAL;
    memset(&c, 0, sizeof c);
    c.e.id = job->id;
    c.e.owner = l->owner;
    c.e.token = l->token;
    c.e.attempt = job->attempts;
    c.e.kind = job->kind;
    c.e.user_id = job->user_id;
    c.e.cls = f->cls;
    c.e.message = f->message;
    c.e.d = retry_decide(f->cls, job->attempts, job->max_attempts, f->retry_after_ms, p, rnd);
    rc = db_transaction(db, end_tx, &c, TX_ATTEMPTS);
    if (rc)
        return rc;
    if (new_state)
        *new_state = c.state;
    return 0;
}

int queue_defer(struct db *db, const struct lease *l, const struct job *job,
                long long delay_ms, const char *reason)
{
    struct end_ctx c;

    if (!lease_ok(l) || !job || delay_ms < 0)
        return CP_EINVAL;
    if (delay_ms > RETRY_DEFER_MAX_MS)
        delay_ms = RETRY_DEFER_MAX_MS;
    memset(&c, 0, sizeof c);
    c.e.id = job->id;
    c.e.owner = l->owner;
    c.e.token = l->token;
    c.e.attempt = job->attempts;
    c.e.kind = job->kind;
    c.e.user_id = job->user_id;
    c.e.cls = JOB_ERR_RATE_LIMITED;
    c.e.message = reason;
    c.e.d.action = RETRY_DEFER;
    c.e.d.delay_ms = delay_ms;
    c.e.d.refund_attempt = 1;
    return db_transaction(db, end_tx, &c, TX_ATTEMPTS);
}

/* ------------------------------------------------------------ recovery -- */

/* Running jobs whose worker is gone, by owner; or whose lease ran out. */
static const char sql_owner_running[] =
    "SELECT id, owner, lease_token, attempts, max_attempts, kind, COALESCE(user_id, 0)"
    " FROM jobs FORCE INDEX (ix_jobs_due)"
    " WHERE state = 'running' AND owner = ?"
    " LIMIT ? FOR UPDATE SKIP LOCKED";

static const char sql_reap_select[] =
    "SELECT id, owner, lease_token, attempts, max_attempts, kind, COALESCE(user_id, 0)"
    " FROM jobs FORCE INDEX (ix_jobs_due)"
    " WHERE state = 'running' AND lease_expires_at < NOW(3)"
    " LIMIT ? FOR UPDATE SKIP LOCKED";

struct lost_ctx {
    long long owner;              /* 0: reap expired leases */
    long long running_id;         /* the owner's job in progress; 0 none, -1 unknown */
    int limit;                    /* this transaction's share */
    const char *why;              /* NULL: a lease that expired */
    const struct retry_policy *p;
    size_t rows;                  /* selected */
    size_t n;                     /* made lost attempts */
};

static int lost_tx(struct db *db, void *arg)
{
    struct lost_ctx *c = arg;
    struct db_result *r = NULL;
    int rc;

    c->rows = c->n = 0;
    if (c->owner) {
        struct db_param p[] = { DB_I64(c->owner), DB_I64(c->limit) };

        rc = db_query(db, sql_owner_running, p, 2, &r);
    } else {
        struct db_param p[] = { DB_I64(c->limit) };

        rc = db_query(db, sql_reap_select, p, 1, &r);
    }
    if (rc)
        return rc;
    c->rows = db_result_rows(r);
    for (size_t i = 0; i < c->rows; i++) {
        char kind[JOB_KIND_MAX + 1], why[JOB_ERROR_MAX + 1];
        long long token = 0, attempts = 0, max_attempts = 0;
        unsigned long long rnd = 0;
        struct attempt_end e;

        memset(&e, 0, sizeof e);
        if (parse_i64_col(r, i, 0, &e.id) || parse_i64_col(r, i, 1, &e.owner) ||
            parse_i64_col(r, i, 2, &token) || parse_i64_col(r, i, 3, &attempts) ||
            parse_i64_col(r, i, 4, &max_attempts) || parse_i64_col(r, i, 6, &e.user_id)) {
            rc = CP_EDB;
            break;
        }
        copy_col(r, i, 5, kind, sizeof kind);
        if (c->why)
            snprintf(why, sizeof why, "%s", c->why);
        else
            snprintf(why, sizeof why, "lease expired (worker %lld)", e.owner);
        rc = random_u64(&rnd);
        if (rc)
            break;
        e.token = (unsigned long long)token;
        e.attempt = (int)attempts;
        e.kind = kind;
        e.cls = JOB_ERR_LOST;
        /* Held but never started: the death was not this job's doing. */
        if (c->owner && c->running_id >= 0 && e.id != c->running_id) {
            e.cls = JOB_ERR_RELEASED;
            snprintf(why, sizeof why, "%s before the job started", c->why);
        }
        e.message = why;
        e.d = retry_decide(e.cls, (int)attempts, (int)max_attempts, 0, c->p, rnd);
        rc = end_attempt(db, &e, NULL);
        if (rc == CP_ECONFLICT) {
            /* A running row without a lease of its own: nothing to fence. */
            log_warn("job %lld is running without a valid lease; left alone", e.id);
            rc = 0;
            continue;
        }
        if (rc)
            break;
        c->n++;
    }
    db_result_free(r);
    return rc;
}

/* Batches of QUEUE_BATCH_MAX, each one transaction, until limit or a
 * short batch. */
static int lost_batches(struct db *db, struct lost_ctx *c, int limit, size_t *n)
{
    size_t total = 0;
    int rc = 0;

    while (limit > 0) {
        c->limit = limit < QUEUE_BATCH_MAX ? limit : QUEUE_BATCH_MAX;
        rc = db_transaction(db, lost_tx, c, TX_ATTEMPTS);
        if (rc)
            break;
        total += c->n;
        limit -= c->limit;
        /* A short batch is the last; so is one where nothing could be
         * fenced, which would only be selected again. */
        if (c->rows < (size_t)c->limit || c->n == 0)
            break;
    }
    if (n)
        *n = total;
    return rc;
}

int queue_release_owner(struct db *db, long long owner, long long running_id, const char *why,
                        const struct retry_policy *p, size_t *n)
{
    struct lost_ctx c = { .owner = owner, .running_id = running_id < 0 ? -1 : running_id,
                          .why = why ? why : "worker process gone", .p = p };

    if (n)
        *n = 0;
    if (owner <= 0 || !p)
        return CP_EINVAL;
    return lost_batches(db, &c, INT32_MAX, n);
}

int queue_reap_expired(struct db *db, int limit, const struct retry_policy *p, size_t *n)
{
    struct lost_ctx c = { .owner = 0, .running_id = -1, .why = NULL, .p = p };

    if (n)
        *n = 0;
    if (limit < 1 || !p)
        return CP_EINVAL;
    return lost_batches(db, &c, limit, n);
}

static const char sql_promote_select[] =
    "SELECT id FROM jobs FORCE INDEX (ix_jobs_due)"
    " WHERE state = ? AND run_at <= NOW(3)"
    " ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED";
static const char sql_promote[] = "UPDATE jobs SET state = 'ready' WHERE id IN";

struct promote_ctx {
    int limit;
    size_t n;
};

static int promote_tx(struct db *db, void *arg)
{
    static const char *const due_states[] = { "scheduled", "failed" };
    struct promote_ctx *c = arg;
    long long ids[QUEUE_BATCH_MAX];
    size_t n = 0;
    int rc = 0;

    c->n = 0;
    for (size_t s = 0; s < 2 && n < (size_t)c->limit; s++) {
        struct db_param p[] = { DB_STR(due_states[s]), DB_I64(c->limit - (long long)n) };
        struct db_result *r = NULL;

        rc = db_query(db, sql_promote_select, p, 2, &r);
        if (rc)
            return rc;
        for (size_t i = 0; i < db_result_rows(r) && n < (size_t)c->limit; i++)
            if (parse_i64_col(r, i, 0, &ids[n++])) {
                rc = CP_EDB;
                break;
            }
        db_result_free(r);
        if (rc)
            return rc;
    }
    if (n) {
        unsigned long long affected = 0;

        rc = exec_ids(db, sql_promote, NULL, NULL, 0, ids, n, NULL, 0, &affected);
        if (rc)
            return rc;
        c->n = (size_t)affected;
    }
    return 0;
}

int queue_promote_due(struct db *db, int limit, size_t *n)
{
    struct promote_ctx c = { 0, 0 };
    size_t total = 0;
    int rc = 0;

    if (n)
        *n = 0;
    if (limit < 1)
        return CP_EINVAL;
    while (limit > 0) {
        c.limit = limit < QUEUE_BATCH_MAX ? limit : QUEUE_BATCH_MAX;
        rc = db_transaction(db, promote_tx, &c, TX_ATTEMPTS);
        if (rc)
            break;
        total += c.n;
        limit -= c.limit;
        if (c.n < (size_t)c.limit)
            break;
    }
    if (n)
        *n = total;
    return rc;
}

static const char sql_prune_select[] =
    "SELECT id FROM jobs FORCE INDEX (ix_jobs_finished)"
    " WHERE finished_at < NOW(3) - INTERVAL ? MICROSECOND AND state IN (?, ?)"
    " ORDER BY finished_at LIMIT ? FOR UPDATE SKIP LOCKED";
static const char sql_prune_attempts[] = "DELETE FROM job_attempts WHERE job_id IN";
static const char sql_prune_jobs[] = "DELETE FROM jobs WHERE id IN";

struct prune_ctx {
    long long retention_ms, dead_retention_ms;
    int batch;
    size_t n;
};

static int prune_tx(struct db *db, void *arg)
{
    struct prune_ctx *c = arg;
    long long *ids;
    unsigned long long affected = 0;
    size_t n = 0;
    int rc = 0;

    c->n = 0;
    ids = calloc((size_t)c->batch, sizeof *ids);
    if (!ids)
        return CP_ENOMEM;
    for (int pass = 0; pass < 2 && n < (size_t)c->batch; pass++) {
        long long age = pass == 0 ? c->retention_ms : c->dead_retention_ms;
        struct db_param p[] = {
            DB_I64(age * 1000), DB_STR(pass == 0 ? "succeeded" : "dead"),
            DB_STR(pass == 0 ? "cancelled" : "dead"), DB_I64(c->batch - (long long)n),
        };
        struct db_result *r = NULL;

        rc = db_query(db, sql_prune_select, p, 4, &r);
        if (rc)
            goto out;
        for (size_t i = 0; i < db_result_rows(r) && n < (size_t)c->batch; i++)
            if (parse_i64_col(r, i, 0, &ids[n++])) {
                rc = CP_EDB;
                break;
            }
        db_result_free(r);
        if (rc)
            goto out;
    }
    if (n == 0)
        goto out;
    rc = exec_ids(db, sql_prune_attempts, NULL, NULL, 0, ids, n, NULL, 0, NULL);
    if (!rc)
        rc = exec_ids(db, sql_prune_jobs, NULL, NULL, 0, ids, n, NULL, 0, &affected);
    if (!rc)
        c->n = (size_t)affected;
out:
    free(ids);
    return rc;
}

int queue_prune(struct db *db, long long retention_ms, long long dead_retention_ms, int batch,
                size_t *n)
{
    struct prune_ctx c = { retention_ms, dead_retention_ms, batch, 0 };
    int rc;

    if (n)
        *n = 0;
    if (retention_ms < 0 || retention_ms > MAX_RETENTION_MS || dead_retention_ms < 0 ||
        dead_retention_ms > MAX_RETENTION_MS || batch < 1 || batch > PRUNE_BATCH_MAX)
        return CP_EINVAL;
    rc = db_transaction(db, prune_tx, &c, TX_ATTEMPTS);
    if (!rc && n)
        *n = c.n;
    return rc;
}

/* ----------------------------------------------------------- operators -- */

static const char sql_lock_job[] =
    "SELECT state, COALESCE(user_id, 0) FROM jobs WHERE id = ? FOR UPDATE";
static const char sql_cancel[] =
    "UPDATE jobs SET state = 'cancelled', finished_at = NOW(3), active_key = NULL,"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = ?";
static const char sql_retry[] =
    "UPDATE jobs SET state = 'ready', run_at = NOW(3), attempts = 0, finished_at = NULL,"
    " active_key = unique_key, owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
    " progress_done = NULL, progress_total = NULL"
    " WHERE id = ?";

struct operator_ctx {
    long long id;
    long long user_scope;
    int retry;                    /* 0: cancel */
    int found;
    enum job_state was;
};

static int operator_tx(struct db *db, void *arg)
{
    struct operator_ctx *c = arg;
    struct db_param p[] = { DB_I64(c->id) };
    struct db_result *r = NULL;
    long long user_id = 0;
    int allowed, rc;

    c->found = 0;
    rc = db_query(db, sql_lock_job, p, 1, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        return CP_ENOTFOUND;
    }
    if (parse_i64_col(r, 0, 1, &user_id) || job_state_parse(db_result_get(r, 0, 0), &c->was)) {
        db_result_free(r);
        return CP_EDB;
    }
    db_result_free(r);
    if (c->user_scope && user_id != c->user_scope)
        return CP_ENOTFOUND;
    c->found = 1;
    if (c->retry)
        allowed = c->was == JOB_DEAD || c->was == JOB_FAILED || c->was == JOB_CANCELLED;
    else
        /* Cancelling a dead job discards it from the dead-letter queue. */
        allowed = c->was == JOB_SCHEDULED || c->was == JOB_READY || c->was == JOB_FAILED ||
                  c->was == JOB_DEAD;
    if (!allowed)
        return CP_ECONFLICT;
    /* For a retry, CP_ECONFLICT here means another unfinished job holds
     * the unique key again. */
    return db_exec(db, c->retry ? sql_retry : sql_cancel, p, 1, NULL, NULL);
}

static int operator_action(struct db *db, long long id, long long user_scope, int retry,
                           enum job_state *was)
{
    struct operator_ctx c = { .id = id, .user_scope = user_scope, .retry = retry };
    int rc;

    if (was)
        *was = JOB_SCHEDULED;
    if (id <= 0 || user_scope < 0)
        return CP_EINVAL;
    rc = db_transaction(db, operator_tx, &c, TX_ATTEMPTS);
    if (c.found && was)
        *was = c.was;
    return rc;
}

int queue_cancel(struct db *db, long long id, long long user_scope, enum job_state *was)
{
    return operator_action(db, id, user_scope, 0, was);
}

int queue_retry(struct db *db, long long id, long long user_scope, enum job_state *was)
{
    return operator_action(db, id, user_scope, 1, was);
}

static const char sql_retry_dead_keyless[] =
    "UPDATE jobs SET state = 'ready', run_at = NOW(3), attempts = 0, finished_at = NULL,"
    " owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
    " progress_done = NULL, progress_total = NULL"
    " WHERE id IN";
static const char sql_retry_dead_one[] =
    "UPDATE jobs SET state = 'ready', run_at = NOW(3), attempts = 0, finished_at = NULL,"
    " active_key = unique_key, owner = NULL, lease_token = NULL, lease_expires_at = NULL,"
    " progress_done = NULL, progress_total = NULL"
    " WHERE id = ? AND state = 'dead'";

struct retry_dead_ctx {
    const struct dead_filter *f;
    int limit;
    size_t n;
};

static int retry_dead_tx(struct db *db, void *arg)
{
    struct retry_dead_ctx *c = arg;
    const struct dead_filter *f = c->f;
    struct db_param p[5];
    struct db_result *r = NULL;
    long long *keyless = NULL;
    size_t np = 0, nkeyless = 0, rows;
    struct buf sql;
    int rc;

    c->n = 0;
    buf_init(&sql, SQL_MAX);
    rc = buf_adds(&sql, "SELECT id, unique_key IS NOT NULL FROM jobs FORCE INDEX (ix_jobs_due)"
                        " WHERE state = 'dead'");
    if (!rc && f->queue) {
        rc = buf_adds(&sql, " AND queue = ?");
        p[np++] = DB_STR(f->queue);
    }
    if (!rc && f->kind) {
        rc = buf_adds(&sql, " AND kind = ?");
        p[np++] = DB_STR(f->kind);
    }
    if (!rc && f->error_class) {
        rc = buf_adds(&sql, " AND last_error_class = ?");
        p[np++] = DB_STR(f->error_class);
    }
    if (!rc && f->user_scope) {
        rc = buf_adds(&sql, " AND user_id = ?");
        p[np++] = DB_I64(f->user_scope);
    }
    if (!rc)
        rc = buf_adds(&sql, " ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED");
    p[np++] = DB_I64(c->limit);
    if (!rc)
        rc = db_query(db, buf_str(&sql), p, np, &r);
    buf_free(&sql);
    if (rc)
        return rc;
    rows = db_result_rows(r);
    keyless = calloc(rows ? rows : 1, sizeof *keyless);
    if (!keyless) {
        rc = CP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < rows; i++) {
        long long id = 0, has_key = 0;

        if (parse_i64_col(r, i, 0, &id) || parse_i64_col(r, i, 1, &has_key)) {
            rc = CP_EDB;
            goto out;
        }
        if (!has_key) {
            keyless[nkeyless++] = id;
            continue;
        }
        struct db_param one[] = { DB_I64(id) };
        unsigned long long affected = 0;

        rc = db_exec(db, sql_retry_dead_one, one, 1, &affected, NULL);
        if (rc == CP_ECONFLICT) {
            rc = 0;               /* its unique key is taken: it stays dead */
            continue;
        }
        if (rc)
            goto out;
        c->n += (size_t)affected;
    }
    for (size_t off = 0; off < nkeyless; off += QUEUE_BATCH_MAX) {
        size_t chunk = nkeyless - off < QUEUE_BATCH_MAX ? nkeyless - off : QUEUE_BATCH_MAX;
        unsigned long long affected = 0;

        rc = exec_ids(db, sql_retry_dead_keyless, "AND state = 'dead'", NULL, 0, keyless + off,
                      chunk, NULL, 0, &affected);
        if (rc)
            goto out;
        c->n += (size_t)affected;
    }
out:
    free(keyless);
    db_result_free(r);
    return rc;
}

int queue_retry_dead(struct db *db, const struct dead_filter *f, int limit, size_t *n)
{
    static const struct dead_filter any = { NULL, NULL, NULL, 0 };
    struct retry_dead_ctx c = { f ? f : &any, limit, 0 };
    enum job_error_class cls;
    int rc;

    if (n)
        *n = 0;
    if (limit < 1 || limit > RETRY_DEAD_MAX)
        return CP_EINVAL;
    if (c.f->queue && !job_queue_name_ok(c.f->queue))
        return CP_EINVAL;
    if (c.f->kind && strlen(c.f->kind) > JOB_KIND_MAX)
        return CP_EINVAL;
    if (c.f->error_class && job_error_class_parse(c.f->error_class, &cls))
        return CP_EINVAL;
    if (c.f->user_scope < 0)
        return CP_EINVAL;
    rc = db_transaction(db, retry_dead_tx, &c, TX_ATTEMPTS);
    if (!rc && n)
        *n = c.n;
    return rc;
}

/* ----------------------------------------------------------- recurring -- */

static int recurring_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;

        if (n >= RECURRING_NAME_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return n > 0;
}

static const char sql_recurring_register[] =
    "INSERT INTO recurring_tasks (name, kind, queue, interval_ms, payload, next_run_at)"
    " VALUES (?, ?, ?, ?, ?, NOW(3) + INTERVAL ? MICROSECOND)"
    " ON DUPLICATE KEY UPDATE kind = VALUES(kind), queue = VALUES(queue),"
    " next_run_at = LEAST(next_run_at, NOW(3) + INTERVAL (VALUES(interval_ms) * 1000) MICROSECOND),"
    " interval_ms = VALUES(interval_ms), payload = VALUES(payload)";

int recurring_register(struct db *db, const struct recurring_task *t, int first_run_now)
{
    const struct job_kind *k;
    const char *queue, *payload;

    if (!t || !recurring_name_ok(t->name))
        return CP_EINVAL;
    k = job_kind_find(t->kind);
    if (!k)
        return CP_EINVAL;
    queue = t->queue ? t->queue : k->queue;
    payload = t->payload ? t->payload : "{}";
    if (!job_queue_name_ok(queue) || payload_ok(payload) || t->interval_ms < 1 ||
        t->interval_ms > MAX_DELAY_MS)
        return CP_EINVAL;
    struct db_param p[] = {
        DB_STR(t->name), DB_STR(k->name), DB_STR(queue), DB_I64(t->interval_ms),
        DB_STR(payload), DB_I64(first_run_now ? 0 : t->interval_ms * 1000),
    };
    return db_exec(db, sql_recurring_register, p, 6, NULL, NULL);
}

static const char sql_recurring_due[] =
    "SELECT name, kind, queue, payload, DATE_FORMAT(next_run_at, '%Y-%m-%d %H:%i:%s.%f')"
    " FROM recurring_tasks WHERE enabled = 1 AND next_run_at <= NOW(3)"
    " ORDER BY next_run_at, name LIMIT ?";

/* The next due time after now on the task's cadence, so a scheduler that
 * was down runs a task once, not once per missed interval. */
static const char sql_recurring_advance[] =
    "UPDATE recurring_tasks SET next_run_at = next_run_at + INTERVAL"
    " ((FLOOR(GREATEST(TIMESTAMPDIFF(MICROSECOND, next_run_at, NOW(3)), 0)"
    " / (interval_ms * 1000)) + 1) * interval_ms * 1000) MICROSECOND"
    " WHERE name = ? AND next_run_at = ? AND enabled = 1";

static const char sql_recurring_enqueued[] =
    "UPDATE recurring_tasks SET last_enqueued_at = NOW(3), last_job_id = ? WHERE name = ?";

struct recurring_ctx {
    const char *name, *kind, *queue, *payload, *due;
    int enqueued;
};

static int recurring_tx(struct db *db, void *arg)
{
    struct recurring_ctx *c = arg;
    char key[sizeof RECURRING_KEY_PREFIX + RECURRING_NAME_MAX];
    struct job_spec spec;
    unsigned long long affected = 0;
    long long id = 0;
    int rc;

    c->enqueued = 0;
    struct db_param cas[] = { DB_STR(c->name), DB_STR(c->due) };
    rc = db_exec(db, sql_recurring_advance, cas, 2, &affected, NULL);
    if (rc)
        return rc;
    if (affected == 0)
        return 0;                 /* another scheduler took this due time */

    snprintf(key, sizeof key, RECURRING_KEY_PREFIX "%s", c->name);
    memset(&spec, 0, sizeof spec);
    spec.kind = c->kind;
    spec.queue = c->queue;
    spec.payload = c->payload;
    spec.unique_key = key;
    rc = queue_enqueue(db, &spec, &id);
    if (rc == CP_ECONFLICT) {
        log_debug("recurring task %s: job %lld still unfinished; skipping this run",
                  c->name, id);
        return 0;
    }
    if (rc == CP_EINVAL) {
        log_warn("recurring task %s: cannot enqueue kind %s on queue %s; skipping this run",
                 c->name, c->kind, c->queue);
        return 0;
    }
    if (rc)
        return rc;
    struct db_param done[] = { DB_I64(id), DB_STR(c->name) };
    rc = db_exec(db, sql_recurring_enqueued, done, 2, NULL, NULL);
    if (rc)
        return rc;
    c->enqueued = 1;
    return 0;
}

int recurring_run_due(struct db *db, int limit, size_t *enqueued)
{
    struct db_param p[] = { DB_I64(limit) };
    struct db_result *r = NULL;
    size_t total = 0;
    int rc;

    if (enqueued)
        *enqueued = 0;
    if (limit < 1)
        return CP_EINVAL;
    rc = db_query(db, sql_recurring_due, p, 1, &r);
    if (rc)
        return rc;
    for (size_t i = 0; i < db_result_rows(r); i++) {
        struct recurring_ctx c = {
            db_result_get(r, i, 0), db_result_get(r, i, 1), db_result_get(r, i, 2),
            db_result_get(r, i, 3), db_result_get(r, i, 4), 0,
        };

        if (!c.name || !c.kind || !c.queue || !c.payload || !c.due) {
            rc = CP_EDB;
            break;
        }
        rc = db_transaction(db, recurring_tx, &c, TX_ATTEMPTS);
        if (rc)
            break;
        total += (size_t)c.enqueued;
    }
    db_result_free(r);
    if (enqueued)
        *enqueued = total;
    return rc;
}
