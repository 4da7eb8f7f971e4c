/*
 * db.h - the MariaDB layer.
 *
 * One struct db is one connection plus a cache of its prepared statements.
 * Every query with values goes through a prepared statement: values are
 * bound, never spliced into SQL.  (db_exec_script() runs trusted schema
 * files only, for `crosspostctl migrate`.)
 *
 * Lost connections: outside a transaction, a statement that was never
 * sent ("server gone") and any read are retried once on a new connection;
 * a write whose connection died after it was sent fails with CP_EUNAVAIL,
 * since it may have run and must not run twice.  Inside a transaction a
 * lost connection fails with CP_ERETRY, and db_transaction() runs the
 * whole transaction again.  Deadlocks (1213) and lock wait timeouts
 * (1205) are CP_ERETRY too.
 *
 * Error codes: CP_EUNAVAIL (cannot reach the server), CP_ERETRY (try the
 * transaction again), CP_ECONFLICT (duplicate key, 1062), CP_EDB (any other
 * refusal; db_errno()/db_error() tell which).
 */
#ifndef CP_DB_H
#define CP_DB_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"

struct db;
struct db_result;

enum db_type { DB_T_NULL, DB_T_I64, DB_T_DOUBLE, DB_T_STR };

/* One bound value.  Strings are not copied: they must outlive the call. */
struct db_param {
    enum db_type type;
    long long i;
    double d;
    const char *s;
    size_t len;
};

#define DB_NULL ((struct db_param){ .type = DB_T_NULL })
#define DB_I64(v) ((struct db_param){ .type = DB_T_I64, .i = (v) })
#define DB_DOUBLE(v) ((struct db_param){ .type = DB_T_DOUBLE, .d = (v) })
#define DB_STR(v) ((struct db_param){ .type = DB_T_STR, .s = (v), .len = strlen(v) })
#define DB_BYTES(p, n) ((struct db_param){ .type = DB_T_STR, .s = (p), .len = (n) })

/* Prepare a handle from the configuration; connects at once.  On
 * CP_EUNAVAIL the handle is still returned and reconnects on next use,
 * so a process can start while MariaDB is down. */
int db_open(const struct conf *c, struct db **out);

/* Close the connection and free the handle; NULL is a no-op. */
void db_close(struct db *db);

/* Check the server answers, reconnecting if needed: 0 or CP_EUNAVAIL. */
int db_ping(struct db *db);

/* Run a statement that returns no rows.  affected and insert_id may be
 * NULL. */
int db_exec(struct db *db, const char *sql, const struct db_param *params,
            size_t nparams, unsigned long long *affected,
            unsigned long long *insert_id);

/* Run a query and fetch all its rows (at most 64 MiB of data). */
int db_query(struct db *db, const char *sql, const struct db_param *params,
             size_t nparams, struct db_result **out);

/* db_query for one row: CP_ENOTFOUND unless it returns exactly one (the
 * result is still set then, for the caller to free). */
/* Append " AND column >= FROM_UNIXTIME(from) AND column < FROM_UNIXTIME(to)"
 * to a WHERE clause for an epoch-ms range (0 = open), binding into
 * p[*np...] (room for two).  FROM_UNIXTIME ends in 2038: a later "to" is
 * open, a later "from" matches nothing. */
struct buf;
int db_where_time_range(struct buf *sql, const char *column, long long from_ms, long long to_ms,
                        struct db_param *p, size_t *np);

int db_query_row(struct db *db, const char *sql, const struct db_param *params,
                 size_t nparams, struct db_result **out);

size_t db_result_rows(const struct db_result *r);

/* The rows of a page fetched with LIMIT limit + 1: how many to show (at
 * most limit), with *more set to 1 when a row beyond them came back. */
size_t db_result_page(const struct db_result *r, int limit, int *more);
size_t db_result_cols(const struct db_result *r);
/* Column name of col, or NULL when out of range. */
const char *db_result_name(const struct db_result *r, size_t col);
/* Value as text (NUL-terminated), or NULL for SQL NULL / out of range. */
const char *db_result_get(const struct db_result *r, size_t row, size_t col);
/* Byte length of a value (binary columns may hold NULs). */
size_t db_result_len(const struct db_result *r, size_t row, size_t col);
/* Value as an integer: CP_ENOTFOUND for NULL, CP_EINVAL if not a number. */
int db_result_i64(const struct db_result *r, size_t row, size_t col, long long *out);
/* Value as an integer, 0 for NULL or not a number (columns that are
 * numbers by schema). */
long long db_result_int(const struct db_result *r, size_t row, size_t col);
/* Value as text into out[cap] ("" for NULL), cut at cap. */
void db_result_text(const struct db_result *r, size_t row, size_t col, char *out, size_t cap);
void db_result_free(struct db_result *r);

/* Transactions.  db_begin() starts one (CP_EINVAL when one is already
 * open on this handle); db_commit()/db_rollback() end it. */
int db_begin(struct db *db);
int db_commit(struct db *db);
int db_rollback(struct db *db);

/* Use READ COMMITTED for this session's later transactions (kept across
 * reconnects).  Queue sessions want it; see docs/queue.md. */
int db_set_read_committed(struct db *db);

/* Run fn inside a transaction; commit when it returns 0, roll back
 * otherwise.  CP_ERETRY from fn or the commit (deadlock, lock wait
 * timeout, lost connection) runs it again, up to max_attempts times,
 * with a short randomised pause between attempts. */
typedef int (*db_tx_fn)(struct db *db, void *arg);
int db_transaction(struct db *db, db_tx_fn fn, void *arg, int max_attempts);

/* How many times db_transaction() has run a transaction again on this
 * handle (for the deadlock-retry metric). */
unsigned long long db_tx_retries(const struct db *db);

/* Run a trusted SQL script (statements separated by ';' outside quotes
 * and comments) with plain queries.  On failure *err names the statement
 * number and the server's message. */
int db_exec_script(struct db *db, const char *sql, struct buf *err);

/* The server error number and message of the last failure (0 / ""). */
unsigned db_errno(const struct db *db);
const char *db_error(const struct db *db);

#endif
