#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "log.h"

#define DB_STMT_CACHE 64
#define DB_RESULT_MAX (64u * 1024 * 1024)
#define DB_FETCH_MIN 64          /* smallest column buffer */
#define DB_ERROR_MAX 512
#define DB_SCRIPT_ERR_MAX 4096

/* An internal outcome, never returned to callers: the connection is gone
 * and has been dropped; db_call() decides whether to reconnect. */
#define DB_LOST 1

/* No session may run with the server's defaults for these: timestamps are
 * stored in UTC and bad data is refused rather than silently mangled. */
static const char session_setup[] =
    "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,"
    "NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";
static const char read_committed_sql[] =
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

struct db_stmt {
    char *sql;                   /* NULL when the slot is free */
    MYSQL_STMT *stmt;
    unsigned long long used;     /* LRU clock value of the last use */
};

struct db {
    MYSQL *conn;                 /* NULL while disconnected */

    /* Copied from the configuration so the handle outlives it. */
    char *host, *socket, *user, *password, *name;
    unsigned port;
    unsigned connect_timeout_s, read_timeout_s, write_timeout_s;

    int in_tx;                   /* between db_begin and commit/rollback */
    int tx_dead;                 /* the connection was lost inside it */
    int read_committed;          /* re-applied on every new connection */
    int down_logged;             /* "cannot connect" already logged */
    int may_have_run;            /* this attempt sent its statement */
    int resend_ok;               /* the running call may be sent twice */

    struct db_stmt stmts[DB_STMT_CACHE];
    unsigned long long clock;

    unsigned long long rng;      /* for the retry pause */
    unsigned long long tx_retries; /* transactions run again (db_tx_retries) */

    unsigned last_errno;
    char last_error[DB_ERROR_MAX];
};

struct db_result {
    size_t rows, cols;
    char **names;                /* cols entries */
    char *data;                  /* every value, each NUL-terminated */
    size_t *off;                 /* rows*cols offsets into data */
    size_t *len;                 /* rows*cols lengths */
};

#define DB_NULL_OFF SIZE_MAX

/* ------------------------------------------------------------ helpers -- */

static void set_error(struct db *db, unsigned no, const char *msg)
{
    db->last_errno = no;
    snprintf(db->last_error, sizeof db->last_error, "%s", msg ? msg : "");
}

static int is_connection_error(unsigned no)
{
    switch (no) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_STMT_CLOSED:
    case CR_ERR_NET_READ:
    case CR_ERR_NET_WRITE:
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_NET_READ_ERROR:
    case ER_NET_ERROR_ON_WRITE:
        return 1;
    }
    return 0;
}

/* Map a server or client error number to a CP_E* code (or DB_LOST). */
static int map_errno(unsigned no)
{
    if (is_connection_error(no))
        return DB_LOST;
    switch (no) {
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
        return CP_ERETRY;
    case ER_DUP_ENTRY:
        return CP_ECONFLICT;
    }
    return CP_EDB;
}

static unsigned ms_to_s(long long ms)
{
    long long s = (ms + 999) / 1000;

    if (s < 1)
        s = 1;
    if (s > UINT_MAX)
        s = UINT_MAX;
    return (unsigned)s;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static unsigned long long next_random(struct db *db)
{
    /* xorshift64: enough to spread retries of competing processes. */
    unsigned long long x = db->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    db->rng = x;
    return x;
}

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------ statement cache -- */

static void stmt_cache_clear(struct db *db)
{
    for (size_t i = 0; i < DB_STMT_CACHE; i++) {
        if (db->stmts[i].stmt)
            mysql_stmt_close(db->stmts[i].stmt);
        free(db->stmts[i].sql);
        db->stmts[i].sql = NULL;
        db->stmts[i].stmt = NULL;
        db->stmts[i].used = 0;
    }
}

static void stmt_cache_evict(struct db *db, MYSQL_STMT *stmt)
{
    for (size_t i = 0; i < DB_STMT_CACHE; i++)
        if (db->stmts[i].stmt == stmt) {
            mysql_stmt_close(stmt);
            free(db->stmts[i].sql);
            db->stmts[i].sql = NULL;
            db->stmts[i].stmt = NULL;
            return;
        }
}

/* Forget the connection.  The server rolls back whatever was open. */
static void drop_connection(struct db *db)
{
    /* Closing the connection first detaches its statements, so closing
     * them afterwards only frees memory instead of writing to a dead
     * socket. */
    if (db->conn)
        mysql_close(db->conn);
    db->conn = NULL;
    stmt_cache_clear(db);
    if (db->in_tx)
        db->tx_dead = 1;
}

/* Record a failure and classify it; a lost connection is dropped here. */
static int fail(struct db *db, unsigned no, const char *msg)
{
    int rc;

    set_error(db, no, msg);
    rc = map_errno(no);
    if (rc == DB_LOST)
        drop_connection(db);
    else if (no == ER_LOCK_DEADLOCK && db->in_tx)
        db->tx_dead = 1;         /* the server has rolled it all back */
    return rc;
}

static int conn_error(struct db *db)
{
    return fail(db, mysql_errno(db->conn), mysql_error(db->conn));
}

static int stmt_error(struct db *db, MYSQL_STMT *stmt)
{
    int rc = fail(db, mysql_stmt_errno(stmt), mysql_stmt_error(stmt));

    if (rc != DB_LOST) {
        /* Leave the statement ready for its next execution. */
        mysql_stmt_free_result(stmt);
        if (mysql_stmt_reset(stmt))
            stmt_cache_evict(db, stmt);
    }
    return rc;
}

/* Find or prepare the statement for sql. */
static int stmt_get(struct db *db, const char *sql, MYSQL_STMT **out)
{
    struct db_stmt *slot = NULL;
    MYSQL_STMT *stmt;
    my_bool on = 1;
    char *copy;

    *out = NULL;
    for (size_t i = 0; i < DB_STMT_CACHE; i++) {
        struct db_stmt *s = &db->stmts[i];

        if (s->sql && strcmp(s->sql, sql) == 0) {
            s->used = ++db->clock;
            *out = s->stmt;
            return 0;
        }
        if (!slot || (slot->sql && (!s->sql || s->used < slot->used)))
            slot = s;
    }

    copy = strdup(sql);
    if (!copy)
        return CP_ENOMEM;
    stmt = mysql_stmt_init(db->conn);
    if (!stmt) {
        free(copy);
        return conn_error(db) == DB_LOST ? DB_LOST : CP_ENOMEM;
    }
    if (mysql_stmt_prepare(stmt, sql, strlen(sql))) {
        char msg[DB_ERROR_MAX];
        unsigned no = mysql_stmt_errno(stmt);

        snprintf(msg, sizeof msg, "%s", mysql_stmt_error(stmt));
        mysql_stmt_close(stmt);
        free(copy);
        return fail(db, no, msg);
    }
    mysql_stmt_attr_set(stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &on);

    if (slot->sql) {
        mysql_stmt_close(slot->stmt);
        free(slot->sql);
    }
    slot->sql = copy;
    slot->stmt = stmt;
    slot->used = ++db->clock;
    *out = stmt;
    return 0;
}

/* ---------------------------------------------------------- connect -- */

static int db_connect(struct db *db)
{
    const char *where = db->socket[0] ? db->socket : db->host;
    unsigned local_infile = 0;
    my_bool off = 0;
    MYSQL *m;

    m = mysql_init(NULL);
    if (!m)
        return CP_ENOMEM;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &db->connect_timeout_s);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &db->read_timeout_s);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &db->write_timeout_s);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* Reconnecting is ours to do: the library's silent reconnect would
     * lose the session settings and any open transaction unnoticed. */
    mysql_options(m, MYSQL_OPT_RECONNECT, &off);
    /* The server must never be able to ask for client files. */
    mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &local_infile);

    if (!mysql_real_connect(m, db->socket[0] ? NULL : db->host, db->user,
                            db->password, db->name,
                            db->socket[0] ? 0 : db->port,
                            db->socket[0] ? db->socket : NULL, 0)) {
        set_error(db, mysql_errno(m), mysql_error(m));
        if (!db->down_logged)
            log_warn("cannot connect to MariaDB at %s: %s", where, mysql_error(m));
        db->down_logged = 1;
        mysql_close(m);
        return CP_EUNAVAIL;
    }
    if (mysql_real_query(m, session_setup, sizeof session_setup - 1) ||
        (db->read_committed &&
         mysql_real_query(m, read_committed_sql, sizeof read_committed_sql - 1))) {
        set_error(db, mysql_errno(m), mysql_error(m));
        log_warn("cannot set up the MariaDB session: %s", mysql_error(m));
        mysql_close(m);
        return CP_EUNAVAIL;
    }
    if (db->down_logged)
        log_info("connected to MariaDB at %s", where);
    db->down_logged = 0;
    db->conn = m;
    return 0;
}

/*
 * Run op on a live connection.  A lost connection outside a transaction is
 * re-established and op runs once more; inside one the transaction is dead
 * and the caller gets CP_ERETRY.  At most one connection attempt is made
 * per call, so a down server costs one failed connect, not a storm.
 */
typedef int (*db_op_fn)(struct db *db, void *ctx);

static int db_call(struct db *db, db_op_fn op, void *ctx)
{
    int connect_tried = 0;
    int rc;

    for (int attempt = 0;; attempt++) {
        if (db->in_tx && (db->tx_dead || !db->conn)) {
            db->tx_dead = 1;
            return CP_ERETRY;
        }
        if (!db->conn) {
            if (connect_tried)
                return CP_EUNAVAIL;
            connect_tried = 1;
            rc = db_connect(db);
            if (rc)
                return rc;
        }
        db->may_have_run = 0;
        rc = op(db, ctx);
        if (rc != DB_LOST)
            return rc;
        if (db->in_tx) {
            db->tx_dead = 1;
            return CP_ERETRY;
        }
        if (attempt >= 1)
            return CP_EUNAVAIL;
        /* "Server gone" means the statement was never sent.  Any other
         * loss after sending leaves its outcome unknown: a write must not
         * run twice, so only reads are sent again. */
        if (db->may_have_run && !db->resend_ok && db->last_errno != CR_SERVER_GONE_ERROR) {
            log_warn("lost the MariaDB connection after sending a statement (%s); "
                     "its outcome is unknown, not resending", db->last_error);
            return CP_EUNAVAIL;
        }
        log_warn("lost the MariaDB connection (%s); reconnecting", db->last_error);
    }
}

/* ------------------------------------------------------ open, close -- */

int db_open(const struct conf *c, struct db **out)
{
    struct db *db;
    struct timespec now;

    *out = NULL;
    db = calloc(1, sizeof *db);
    if (!db)
        return CP_ENOMEM;
    db->host = dup_or_empty(c->db_host);
    db->socket = dup_or_empty(c->db_socket);
    db->user = dup_or_empty(c->db_user);
    db->password = dup_or_empty(c->db_password);
    db->name = dup_or_empty(c->db_name);
    if (!db->host || !db->socket || !db->user || !db->password || !db->name) {
        db_close(db);
        return CP_ENOMEM;
    }
    db->port = (unsigned)c->db_port;
    db->connect_timeout_s = ms_to_s(c->db_connect_timeout);
    db->read_timeout_s = ms_to_s(c->db_read_timeout);
    db->write_timeout_s = ms_to_s(c->db_write_timeout);

    clock_gettime(CLOCK_REALTIME, &now);
    db->rng = ((unsigned long long)now.tv_nsec << 20) ^ (unsigned long long)now.tv_sec ^
              ((unsigned long long)getpid() << 40) ^ (unsigned long long)(uintptr_t)db;
    if (!db->rng)
        db->rng = 0x9e3779b97f4a7c15ULL;

    *out = db;
    return db_connect(db);
}

void db_close(struct db *db)
{
    if (!db)
        return;
    if (db->conn)
        mysql_close(db->conn);
    db->conn = NULL;
    stmt_cache_clear(db);
    free(db->host);
    free(db->socket);
    free(db->user);
    if (db->password) {
        explicit_bzero(db->password, strlen(db->password));
        free(db->password);
    }
    free(db->name);
    free(db);
}

static int op_ping(struct db *db, void *ctx)
{
    if (mysql_ping(db->conn))
        return conn_error(db) == DB_LOST ? DB_LOST : CP_EUNAVAIL;
    return 0;
}

int db_ping(struct db *db)
{
    int rc;

    db->resend_ok = 1;
    rc = db_call(db, op_ping, NULL);
    db->resend_ok = 0;
    return rc ? CP_EUNAVAIL : 0;
}

unsigned db_errno(const struct db *db)
{
    return db->last_errno;
}

const char *db_error(const struct db *db)
{
    return db->last_error;
}

/* ------------------------------------------------------- statements -- */

struct stmt_run {
    const char *sql;
    const struct db_param *params;
    size_t nparams;
    /* db_exec */
    unsigned long long affected, insert_id;
    /* db_query */
    struct db_result *result;
};

/* Prepare (or reuse) and execute; binds copies of the numeric values
 * because MYSQL_BIND wants writable buffers. */
static int stmt_execute(struct db *db, struct stmt_run *run, MYSQL_STMT **out)
{
    MYSQL_STMT *stmt;
    MYSQL_BIND *bind = NULL;
    unsigned long *lens = NULL;
    long long *ints = NULL;
    double *dbls = NULL;
    int rc;

    *out = NULL;
    rc = stmt_get(db, run->sql, &stmt);
    if (rc)
        return rc;
    if (mysql_stmt_param_count(stmt) != run->nparams) {
        char msg[128];

        snprintf(msg, sizeof msg, "statement takes %lu parameters, %zu given",
                 mysql_stmt_param_count(stmt), run->nparams);
        set_error(db, 0, msg);
        return CP_EINVAL;
    }
    if (run->nparams) {
        bind = calloc(run->nparams, sizeof *bind);
        lens = calloc(run->nparams, sizeof *lens);
        ints = calloc(run->nparams, sizeof *ints);
        dbls = calloc(run->nparams, sizeof *dbls);
        if (!bind || !lens || !ints || !dbls) {
            rc = CP_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < run->nparams; i++) {
            const struct db_param *p = &run->params[i];

            switch (p->type) {
            case DB_T_NULL:
                bind[i].buffer_type = MYSQL_TYPE_NULL;
                break;
            case DB_T_I64:
                ints[i] = p->i;
                bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
                bind[i].buffer = &ints[i];
                break;
            case DB_T_DOUBLE:
                dbls[i] = p->d;
                bind[i].buffer_type = MYSQL_TYPE_DOUBLE;
                bind[i].buffer = &dbls[i];
                break;
            case DB_T_STR:
                if (p->len > ULONG_MAX || (!p->s && p->len)) {
                    rc = CP_EINVAL;
                    goto out;
                }
                lens[i] = (unsigned long)p->len;
                bind[i].buffer_type = MYSQL_TYPE_STRING;
                bind[i].buffer = (void *)(uintptr_t)(p->s ? p->s : "");
                bind[i].buffer_length = lens[i];
                bind[i].length = &lens[i];
                break;
            default:
                rc = CP_EINVAL;
                goto out;
            }
        }
        if (mysql_stmt_bind_param(stmt, bind)) {
            rc = stmt_error(db, stmt);
            goto out;
        }
    }
    db->may_have_run = 1;
    if (mysql_stmt_execute(stmt)) {
        rc = stmt_error(db, stmt);
        goto out;
    }
    *out = stmt;
out:
    free(bind);
    free(lens);
    free(ints);
    free(dbls);
    return rc;
}

static int op_exec(struct db *db, void *ctx)
{
    struct stmt_run *run = ctx;
    MYSQL_STMT *stmt;
    int rc;

    rc = stmt_execute(db, run, &stmt);
    if (rc)
        return rc;
    run->affected = mysql_stmt_affected_rows(stmt);
    run->insert_id = mysql_stmt_insert_id(stmt);
    /* A statement that produced rows anyway must be drained. */
    if (mysql_stmt_field_count(stmt) > 0) {
        if (mysql_stmt_store_result(stmt))
            return stmt_error(db, stmt);
        mysql_stmt_free_result(stmt);
    }
    return 0;
}

int db_exec(struct db *db, const char *sql, const struct db_param *params,
            size_t nparams, unsigned long long *affected,
            unsigned long long *insert_id)
{
    struct stmt_run run = { .sql = sql, .params = params, .nparams = nparams };
    int rc;

    if (affected)
        *affected = 0;
    if (insert_id)
        *insert_id = 0;
    if (!sql || (nparams && !params))
        return CP_EINVAL;
    rc = db_call(db, op_exec, &run);
    if (rc)
        return rc;
    if (affected)
        *affected = run.affected;
    if (insert_id)
        *insert_id = run.insert_id;
    return 0;
}

/* ----------------------------------------------------------- results -- */

void db_result_free(struct db_result *r)
{
    if (!r)
        return;
    if (r->names)
        for (size_t i = 0; i < r->cols; i++)
            free(r->names[i]);
    free(r->names);
    free(r->data);
    free(r->off);
    free(r->len);
    free(r);
}

/* Fetch every row of an executed statement into a new db_result. */
static int fetch_all(struct db *db, MYSQL_STMT *stmt, struct db_result **out)
{
    struct db_result *r = NULL;
    MYSQL_RES *meta = NULL;
    MYSQL_FIELD *fields;
    MYSQL_BIND *bind = NULL;
    unsigned long *lengths = NULL;
    my_bool *nulls = NULL, *errors = NULL;
    char **bufs = NULL;
    MYSQL_STMT *stored = NULL;   /* holds a stored result until cleanup */
    size_t ncols, nrows, cells, cell = 0;
    struct buf data;
    int rc = 0, frc;

    *out = NULL;
    buf_init(&data, 0);

    r = calloc(1, sizeof *r);
    if (!r)
        return CP_ENOMEM;

    ncols = mysql_stmt_field_count(stmt);
    if (ncols == 0) {
        *out = r;             /* no result set: zero rows, zero columns */
        return 0;
    }
    if (mysql_stmt_store_result(stmt)) {
        db_result_free(r);
        return stmt_error(db, stmt);
    }
    stored = stmt;
    /* Taken after store_result so max_length is filled in. */
    meta = mysql_stmt_result_metadata(stmt);
    if (!meta) {
        rc = stmt_error(db, stmt);
        stored = NULL;
        goto out;
    }
    fields = mysql_fetch_fields(meta);
    nrows = (size_t)mysql_stmt_num_rows(stmt);

    /* The bookkeeping counts against the cap as well as the values. */
    if (nrows > DB_RESULT_MAX / ncols / (2 * sizeof(size_t))) {
        rc = CP_ETOOBIG;
        goto out;
    }
    cells = nrows * ncols;
    buf_init(&data, DB_RESULT_MAX - cells * 2 * sizeof(size_t));

    r->cols = ncols;
    r->names = calloc(ncols, sizeof *r->names);
    r->off = malloc((cells ? cells : 1) * sizeof *r->off);
    r->len = malloc((cells ? cells : 1) * sizeof *r->len);
    bind = calloc(ncols, sizeof *bind);
    lengths = calloc(ncols, sizeof *lengths);
    nulls = calloc(ncols, sizeof *nulls);
    errors = calloc(ncols, sizeof *errors);
    bufs = calloc(ncols, sizeof *bufs);
    if (!r->names || !r->off || !r->len || !bind || !lengths || !nulls || !errors || !bufs) {
        rc = CP_ENOMEM;
        goto out;
    }
    for (size_t c = 0; c < ncols; c++) {
        unsigned long size = fields[c].max_length;

        r->names[c] = strndup(fields[c].name ? fields[c].name : "", fields[c].name_length);
        if (size < DB_FETCH_MIN)
            size = DB_FETCH_MIN;
        if (size > DB_RESULT_MAX)
            size = DB_RESULT_MAX;
        bufs[c] = malloc(size);
        if (!r->names[c] || !bufs[c]) {
            rc = CP_ENOMEM;
            goto out;
        }
        bind[c].buffer_type = MYSQL_TYPE_STRING;
        bind[c].buffer = bufs[c];
        bind[c].buffer_length = size;
        bind[c].length = &lengths[c];
        bind[c].is_null = &nulls[c];
        bind[c].error = &errors[c];
    }
    if (mysql_stmt_bind_result(stmt, bind)) {
        rc = stmt_error(db, stmt);
        stored = NULL;
        goto out;
    }

    while ((frc = mysql_stmt_fetch(stmt)) == 0 || frc == MYSQL_DATA_TRUNCATED) {
        int rebind = 0;

        if (r->rows >= nrows) {   /* never more rows than were stored */
            rc = CP_EDB;
            goto out;
        }
        for (size_t c = 0; c < ncols; c++, cell++) {
            if (nulls[c]) {
                r->off[cell] = DB_NULL_OFF;
                r->len[cell] = 0;
                continue;
            }
            if (lengths[c] > bind[c].buffer_length) {
                /* Longer than max_length promised: fetch this column
                 * again into a buffer of the real size. */
                unsigned long need = lengths[c], got = 0;
                my_bool col_err = 0;
                MYSQL_BIND one;
                char *bigger;

                if (need > DB_RESULT_MAX) {
                    rc = CP_ETOOBIG;
                    goto out;
                }
                bigger = realloc(bufs[c], need);
                if (!bigger) {
                    rc = CP_ENOMEM;
                    goto out;
                }
                bufs[c] = bigger;
                bind[c].buffer = bigger;
                bind[c].buffer_length = need;
                one = bind[c];
                one.length = &got;
                one.error = &col_err;
                if (mysql_stmt_fetch_column(stmt, &one, (unsigned)c, 0)) {
                    rc = stmt_error(db, stmt);
                    stored = NULL;
                    goto out;
                }
                rebind = 1;
            }
            r->off[cell] = data.len;
            r->len[cell] = lengths[c];
            rc = buf_add(&data, bufs[c], lengths[c]);
            if (!rc)
                rc = buf_addc(&data, '\0');
            if (rc)
                goto out;
        }
        r->rows++;
        if (rebind && mysql_stmt_bind_result(stmt, bind)) {
            rc = stmt_error(db, stmt);
            stored = NULL;
            goto out;
        }
    }
    if (frc != MYSQL_NO_DATA) {
        rc = stmt_error(db, stmt);
        stored = NULL;
        goto out;
    }
    r->data = buf_detach(&data, NULL);
    if (!r->data) {
        rc = CP_ENOMEM;
        goto out;
    }

out:
    /* stmt_error() has already released (or closed) a failed statement. */
    if (stored)
        mysql_stmt_free_result(stored);
    if (meta)
        mysql_free_result(meta);
    if (bufs)
        for (size_t c = 0; c < ncols; c++)
            free(bufs[c]);
    free(bufs);
    free(bind);
    free(lengths);
    free(nulls);
    free(errors);
    buf_free(&data);
    if (rc) {
        db_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int op_query(struct db *db, void *ctx)
{
    struct stmt_run *run = ctx;
    MYSQL_STMT *stmt;
    int rc;

    rc = stmt_execute(db, run, &stmt);
    if (rc)
        return rc;
    return fetch_all(db, stmt, &run->result);
}

int db_query(struct db *db, const char *sql, const struct db_param *params,
             size_t nparams, struct db_result **out)
{
    struct stmt_run run = { .sql = sql, .params = params, .nparams = nparams };
    int rc;

    *out = NULL;
    if (!sql || (nparams && !params))
        return CP_EINVAL;
    db->resend_ok = 1;           /* reads are safe to send twice */
    rc = db_call(db, op_query, &run);
    db->resend_ok = 0;
    if (rc)
        return rc;
    *out = run.result;
    return 0;
}

int db_query_row(struct db *db, const char *sql, const struct db_param *params,
                 size_t nparams, struct db_result **out)
{
    int rc = db_query(db, sql, params, nparams, out);

    if (!rc && db_result_rows(*out) != 1)
        rc = CP_ENOTFOUND;
    return rc;
}

size_t db_result_rows(const struct db_result *r)
{
    return r ? r->rows : 0;
}

size_t db_result_page(const struct db_result *r, int limit, int *more)
{
    size_t rows = db_result_rows(r);

    if (limit >= 0 && rows > (size_t)limit) {
        *more = 1;
        rows = (size_t)limit;
    }
    return rows;
}

size_t db_result_cols(const struct db_result *r)
{
    return r ? r->cols : 0;
}

const char *db_result_name(const struct db_result *r, size_t col)
{
    if (!r || col >= r->cols)
        return NULL;
    return r->names[col];
}

const char *db_result_get(const struct db_result *r, size_t row, size_t col)
{
    size_t cell;

    if (!r || row >= r->rows || col >= r->cols)
        return NULL;
    cell = row * r->cols + col;
    if (r->off[cell] == DB_NULL_OFF)
        return NULL;
    return r->data + r->off[cell];
}

size_t db_result_len(const struct db_result *r, size_t row, size_t col)
{
    if (!r || row >= r->rows || col >= r->cols)
        return 0;
    return r->len[row * r->cols + col];
}

int db_result_i64(const struct db_result *r, size_t row, size_t col, long long *out)
{
    const char *s = db_result_get(r, row, col);
    char *end;
    long long v;

    *out = 0;
    if (!s) {
        if (!r || row >= r->rows || col >= r->cols)
            return CP_EINVAL;
        return CP_ENOTFOUND;
    }
    if (!*s || db_result_len(r, row, col) != strlen(s))
        return CP_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return CP_EINVAL;
    *out = v;
    return 0;
}

/* ------------------------------------------------------ transactions -- */

static int op_plain(struct db *db, void *ctx)
{
    const char *sql = ctx;

    db->may_have_run = 1;
    if (mysql_real_query(db->conn, sql, strlen(sql)))
        return conn_error(db);
    return 0;
}

int db_begin(struct db *db)
{
    int rc;

    if (db->in_tx)
        return CP_EINVAL;
    db->resend_ok = 1;
    rc = db_call(db, op_plain, (void *)"START TRANSACTION");
    db->resend_ok = 0;
    if (rc)
        return rc;
    db->in_tx = 1;
    db->tx_dead = 0;
    return 0;
}

int db_rollback(struct db *db)
{
    if (!db->in_tx)
        return 0;
    db->in_tx = 0;
    db->tx_dead = 0;
    if (!db->conn)
        return 0;                /* the server discarded it with the session */
    if (mysql_rollback(db->conn)) {
        /* A failed rollback leaves the session in an unknown state; a new
         * connection is the only clean one. */
        set_error(db, mysql_errno(db->conn), mysql_error(db->conn));
        drop_connection(db);
    }
    return 0;
}

int db_commit(struct db *db)
{
    int rc;

    if (!db->in_tx)
        return CP_EINVAL;
    if (db->tx_dead || !db->conn) {
        db_rollback(db);
        return CP_ERETRY;
    }
    if (mysql_commit(db->conn) == 0) {
        db->in_tx = 0;
        return 0;
    }
    rc = conn_error(db);
    if (rc == DB_LOST)
        rc = CP_ERETRY;
    db_rollback(db);
    return rc;
}

int db_set_read_committed(struct db *db)
{
    int rc;

    db->read_committed = 1;
    /* A connection made by db_call() applies it already. */
    db->resend_ok = 1;
    rc = db_call(db, op_plain, (void *)read_committed_sql);
    db->resend_ok = 0;
    return rc;
}

unsigned long long db_tx_retries(const struct db *db)
{
    return db ? db->tx_retries : 0;
}

int db_transaction(struct db *db, db_tx_fn fn, void *arg, int max_attempts)
{
    int rc = CP_ERETRY;

    if (max_attempts < 1)
        max_attempts = 1;
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        rc = db_begin(db);
        if (rc)
            return rc;
        rc = fn(db, arg);
        if (rc == 0) {
            rc = db_commit(db);
            if (rc == 0)
                return 0;
        } else {
            db_rollback(db);
        }
        if (rc != CP_ERETRY)
            return rc;
        if (attempt < max_attempts) {
            long ms = (long)(5 + next_random(db) % 46) * attempt;

            db->tx_retries++;
            log_debug("transaction attempt %d failed (%s); retrying in %ld ms",
                      attempt, cp_strerror(rc), ms);
            pause_ms(ms);
        }
    }
    return rc;
}

/* ------------------------------------------------------------ scripts -- */

static int op_script_statement(struct db *db, void *ctx)
{
    const struct buf *stmt = ctx;
    MYSQL_RES *res;
    int status;

    db->may_have_run = 1;
    if (mysql_real_query(db->conn, stmt->data, stmt->len))
        return conn_error(db);
    do {
        res = mysql_store_result(db->conn);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(db->conn) != 0)
            return conn_error(db);
        status = mysql_next_result(db->conn);
        if (status > 0)
            return conn_error(db);
    } while (status == 0);
    return 0;
}

enum scan_state { S_CODE, S_SQUOTE, S_DQUOTE, S_BACKTICK, S_LINE_COMMENT, S_BLOCK_COMMENT };

/* "-- " starts a comment only when followed by a space or control
 * character (or the end), as in MariaDB. */
static int is_dash_comment(const char *p, const char *end)
{
    return p + 1 < end && p[0] == '-' && p[1] == '-' &&
           (p + 2 == end || (unsigned char)p[2] <= ' ');
}

static int run_script_statement(struct db *db, struct buf *stmt, unsigned n,
                                struct buf *err)
{
    int rc = db_call(db, op_script_statement, stmt);

    if (rc && err)
        buf_printf(err, "statement %u: %s", n,
                   db->last_error[0] ? db->last_error : cp_strerror(rc));
    return rc;
}

int db_exec_script(struct db *db, const char *sql, struct buf *err)
{
    const char *p = sql, *end = sql + strlen(sql);
    enum scan_state st = S_CODE;
    struct buf stmt;
    int has_code = 0, rc = 0;
    unsigned n = 0;

    buf_init(&stmt, (size_t)(end - sql));
    while (p < end) {
        char c = *p;

        switch (st) {
        case S_CODE:
            if (c == ';') {
                if (has_code) {
                    rc = run_script_statement(db, &stmt, ++n, err);
                    if (rc)
                        goto out;
                }
                buf_reset(&stmt);
                has_code = 0;
                p++;
                continue;
            }
            if (c == '\'')
                st = S_SQUOTE;
            else if (c == '"')
                st = S_DQUOTE;
            else if (c == '`')
                st = S_BACKTICK;
            else if (c == '#' || is_dash_comment(p, end))
                st = S_LINE_COMMENT;
            else if (c == '/' && p + 1 < end && p[1] == '*') {
                st = S_BLOCK_COMMENT;
                rc = buf_add(&stmt, p, 2);
                if (rc)
                    goto out;
                p += 2;
                continue;
            }
            if (st != S_LINE_COMMENT && st != S_BLOCK_COMMENT &&
                !(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'))
                has_code = 1;
            break;
        case S_SQUOTE:
        case S_DQUOTE:
            if (c == '\\' && p + 1 < end) {
                rc = buf_add(&stmt, p, 2);
                if (rc)
                    goto out;
                p += 2;
                continue;
            }
            if (c == (st == S_SQUOTE ? '\'' : '"'))
                st = S_CODE;   /* a doubled quote reopens at once */
            break;
        case S_BACKTICK:
            if (c == '`')
                st = S_CODE;
            break;
        case S_LINE_COMMENT:
            if (c == '\n')
                st = S_CODE;
            break;
        case S_BLOCK_COMMENT:
            if (c == '*' && p + 1 < end && p[1] == '/') {
                st = S_CODE;
                rc = buf_add(&stmt, p, 2);
                if (rc)
                    goto out;
                p += 2;
                continue;
            }
            break;
        }
        rc = buf_addc(&stmt, c);
        if (rc)
            goto out;
        p++;
    }
    if (has_code)
        rc = run_script_statement(db, &stmt, ++n, err);
out:
    if (rc == CP_ENOMEM && err && !err->len)
        buf_adds(err, cp_strerror(rc));
    buf_free(&stmt);
    return rc;
}

long long db_result_int(const struct db_result *r, size_t row, size_t col)
{
    long long v = 0;

    if (db_result_i64(r, row, col, &v))
        return 0;
    return v;
}

void db_result_text(const struct db_result *r, size_t row, size_t col, char *out, size_t cap)
{
    const char *s = db_result_get(r, row, col);

    snprintf(out, cap, "%s", s ? s : "");
}

/* FROM_UNIXTIME's last second. */
#define FROM_UNIXTIME_MAX_MS 2147483647000LL

int db_where_time_range(struct buf *sql, const char *column, long long from_ms, long long to_ms,
                        struct db_param *p, size_t *np)
{
    int rc = 0;

    if (from_ms > FROM_UNIXTIME_MAX_MS)
        return buf_adds(sql, " AND 0");
    if (from_ms) {
        rc = buf_printf(sql, " AND %s >= FROM_UNIXTIME(? / 1000)", column);
        p[(*np)++] = DB_DOUBLE((double)from_ms);
    }
    if (!rc && to_ms && to_ms <= FROM_UNIXTIME_MAX_MS) {
        rc = buf_printf(sql, " AND %s < FROM_UNIXTIME(? / 1000)", column);
        p[(*np)++] = DB_DOUBLE((double)to_ms);
    }
    return rc;
}
