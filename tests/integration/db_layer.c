/*
 * db_layer.c - the MariaDB layer, the memcached wrapper and migrations
 * against the real servers of the integration stack.
 *
 * The configuration comes from conf_load() (CROSSPOST_CONFIG names the
 * stack's file).  Every table made here is named zz_dbtest_* and dropped
 * at the end; cache keys start with zz_dbtest:.  Migrations run in a
 * database of their own, so the stack's schema_migrations is never
 * touched.  tests/integration/test_db_layer.py runs this program.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "cache.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "migrate.h"
#include "stackdb.h"

#define ITEMS "zz_dbtest_items"
#define SCRIPT_TABLE "zz_dbtest_script"
#define MIGRATE_DB "zz_dbtest_migrate"
#define KEY_PREFIX "zz_dbtest:"

/* mysqld_error.h numbers the tests look for. */
#define ER_DUP_ENTRY 1062
#define ER_PARSE_ERROR 1064
#define ER_LOCK_WAIT_TIMEOUT 1205
#define ER_LOCK_DEADLOCK 1213

static const char items_ddl[] =
    "CREATE TABLE " ITEMS " ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name VARCHAR(100) NOT NULL UNIQUE,"
    " data VARBINARY(2000) NULL,"
    " n BIGINT NULL,"
    " d DOUBLE NULL,"
    " txt MEDIUMTEXT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/* The stack's configuration, loaded once for the whole run. */
static struct conf *stack_conf;

/* What one test works with; the teardown releases whatever is set. */
struct fixture {
    struct db *db;
    struct db *other;            /* a second session: locks, KILL */
    struct db *scratch;          /* the migrations' own database */
    struct cache *cache;
    char migrate_dir[64];        /* "" unless the test made it */
};

/* ------------------------------------------------------------ helpers -- */

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static void exec_ok(struct db *db, const char *sql)
{
    int rc = db_exec(db, sql, NULL, 0, NULL, NULL);

    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
}

/* The first column of the first row of a one-row query, as a number. */
static long long query_i64(struct db *db, const char *sql,
                           const struct db_param *params, size_t nparams)
{
    struct db_result *r = NULL;
    long long v = 0;
    int rc;

    rc = db_query(db, sql, params, nparams, &r);
    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
    assert_int_equal(db_result_rows(r), 1);
    rc = db_result_i64(r, 0, 0, &v);
    db_result_free(r);
    assert_int_equal(rc, 0);
    return v;
}

/* The same as text, copied into out. */
static const char *query_text(struct db *db, const char *sql, char *out, size_t size)
{
    struct db_result *r = NULL;
    int rc;

    rc = db_query(db, sql, NULL, 0, &r);
    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
    assert_int_equal(db_result_rows(r), 1);
    assert_non_null(db_result_get(r, 0, 0));
    snprintf(out, size, "%s", db_result_get(r, 0, 0));
    db_result_free(r);
    return out;
}

static long long count_named(struct db *db, const char *name)
{
    struct db_param p[] = { DB_STR(name) };

    return query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE name = ?", p, 1);
}

static void insert_named(struct db *db, const char *name, long long n)
{
    struct db_param p[] = { DB_STR(name), DB_I64(n) };
    int rc = db_exec(db, "INSERT INTO " ITEMS " (name, n) VALUES (?, ?)", p, 2, NULL, NULL);

    if (rc)
        fail_msg("insert %s: %s (%s)", name, cp_strerror(rc), db_error(db));
}

static long long connection_id(struct db *db)
{
    return query_i64(db, "SELECT CONNECTION_ID()", NULL, 0);
}

/* Have the server end session id from another session, and wait until it
 * is really gone, so the victim's next call finds a closed connection. */
static void kill_session(struct db *killer, long long id)
{
    struct db_param p[] = { DB_I64(id) };
    char sql[64];
    double start = now_ms();

    snprintf(sql, sizeof sql, "KILL CONNECTION %lld", id);
    exec_ok(killer, sql);
    while (query_i64(killer, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
                     p, 1) != 0) {
        if (now_ms() - start > 5000)
            fail_msg("session %lld still listed 5 s after KILL", id);
        sleep_ms(10);
    }
}

static long long session_status(struct db *db, const char *name)
{
    struct db_param p[] = { DB_STR(name) };

    return query_i64(db, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS"
                         " WHERE VARIABLE_NAME = ?", p, 1);
}

/* -------------------------------------------------- setup, teardown -- */

static int group_setup(void **state)
{
    struct db *db = NULL;
    int rc;

    if (stackdb_open("db_layer", CP_LOG_WARN, &stack_conf, &db))
        return -1;
    rc = db_exec(db, "DROP TABLE IF EXISTS " ITEMS ", " SCRIPT_TABLE, NULL, 0, NULL, NULL);
    db_close(db);
    return rc ? -1 : 0;
}

static int group_teardown(void **state)
{
    struct db *db = NULL;

    if (db_open(stack_conf, &db) == 0)
        db_exec(db, "DROP TABLE IF EXISTS " ITEMS ", " SCRIPT_TABLE, NULL, 0, NULL, NULL);
    db_close(db);
    conf_free(stack_conf);
    stack_conf = NULL;
    return 0;
}

/* Two sessions and a fresh, empty items table. */
static int setup_db(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    *state = fx;
    if (db_open(stack_conf, &fx->db) || db_open(stack_conf, &fx->other))
        return -1;
    if (db_exec(fx->db, "DROP TABLE IF EXISTS " ITEMS, NULL, 0, NULL, NULL) ||
        db_exec(fx->db, items_ddl, NULL, 0, NULL, NULL))
        return -1;
    return 0;
}

static int setup_cache(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    *state = fx;
    return cache_open(stack_conf, &fx->cache) ? -1 : 0;
}

static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char file[PATH_MAX];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    if (!fx)
        return 0;
    if (fx->db) {
        /* A failed test may leave a transaction open. */
        db_rollback(fx->db);
        db_exec(fx->db, "DROP TABLE IF EXISTS " ITEMS, NULL, 0, NULL, NULL);
    }
    if (fx->migrate_dir[0])
        remove_dir(fx->migrate_dir);
    db_close(fx->db);
    db_close(fx->other);
    db_close(fx->scratch);
    cache_close(fx->cache);
    free(fx);
    return 0;
}

/* ---------------------------------------------------- values, results -- */

static void test_params_and_results(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    static const char bin[] = { 'a', '\0', (char)0xff, (char)0x80, '\0', 'z' };
    const char *utf8 = "h\xc3\xa9llo \xf0\x9f\x98\x80";
    const size_t long_len = 300000;
    char *long_text = malloc(long_len + 1);
    unsigned long long affected, id_alice, id_bob;
    struct db_result *r = NULL;
    long long v;

    assert_non_null(long_text);
    memset(long_text, 'x', long_len);
    long_text[long_len] = '\0';
    long_text[1000] = 'y';
    long_text[long_len - 1] = 'e';

    struct db_param alice[] = { DB_STR("alice"), DB_BYTES(bin, sizeof bin),
                                DB_I64(LLONG_MIN), DB_DOUBLE(2.5), DB_STR(utf8) };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, data, n, d, txt) VALUES (?, ?, ?, ?, ?)",
                             alice, 5, &affected, &id_alice), 0);
    assert_int_equal(affected, 1);
    assert_true(id_alice > 0);

    struct db_param bob[] = { DB_STR("bob"), DB_NULL, DB_I64(LLONG_MAX), DB_DOUBLE(-1.0e-300),
                              DB_STR(long_text) };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, data, n, d, txt) VALUES (?, ?, ?, ?, ?)",
                             bob, 5, &affected, &id_bob), 0);
    assert_int_equal(affected, 1);
    assert_int_equal(id_bob, id_alice + 1);

    struct db_param carol[] = { DB_STR("carol"), DB_NULL, DB_NULL, DB_NULL, DB_NULL };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, data, n, d, txt) VALUES (?, ?, ?, ?, ?)",
                             carol, 5, NULL, NULL), 0);

    assert_int_equal(db_query(db, "SELECT id, name, data, n, d, txt, NULL AS nothing FROM " ITEMS
                                  " ORDER BY id", NULL, 0, &r), 0);
    assert_int_equal(db_result_rows(r), 3);
    assert_int_equal(db_result_cols(r), 7);
    assert_string_equal(db_result_name(r, 0), "id");
    assert_string_equal(db_result_name(r, 2), "data");
    assert_string_equal(db_result_name(r, 6), "nothing");
    assert_null(db_result_name(r, 7));

    /* alice: binary bytes survive both ways, extreme integers, UTF-8 */
    assert_int_equal(db_result_i64(r, 0, 0, &v), 0);
    assert_int_equal(v, (long long)id_alice);
    assert_string_equal(db_result_get(r, 0, 1), "alice");
    assert_int_equal(db_result_len(r, 0, 1), 5);
    assert_int_equal(db_result_len(r, 0, 2), sizeof bin);
    assert_memory_equal(db_result_get(r, 0, 2), bin, sizeof bin);
    assert_int_equal(db_result_i64(r, 0, 3, &v), 0);
    assert_true(v == LLONG_MIN);
    assert_true(strtod(db_result_get(r, 0, 4), NULL) == 2.5);
    assert_string_equal(db_result_get(r, 0, 5), utf8);

    /* bob: NULL bytes, the other extreme, a tiny double, a long string */
    assert_null(db_result_get(r, 1, 2));
    assert_int_equal(db_result_len(r, 1, 2), 0);
    assert_int_equal(db_result_i64(r, 1, 3, &v), 0);
    assert_true(v == LLONG_MAX);
    assert_true(strtod(db_result_get(r, 1, 4), NULL) == -1.0e-300);
    assert_int_equal(db_result_len(r, 1, 5), long_len);
    assert_memory_equal(db_result_get(r, 1, 5), long_text, long_len);

    /* carol: every value NULL */
    for (size_t col = 2; col < 7; col++) {
        assert_null(db_result_get(r, 2, col));
        assert_int_equal(db_result_len(r, 2, col), 0);
        v = 7;
        assert_int_equal(db_result_i64(r, 2, col, &v), CP_ENOTFOUND);
        assert_int_equal(v, 0);
    }

    /* i64 of what is not an integer, and out of range cells */
    v = 7;
    assert_int_equal(db_result_i64(r, 0, 1, &v), CP_EINVAL);
    assert_int_equal(v, 0);
    assert_int_equal(db_result_i64(r, 0, 4, &v), CP_EINVAL);      /* "2.5" */
    assert_int_equal(db_result_i64(r, 0, 2, &v), CP_EINVAL);      /* bytes with NUL */
    assert_int_equal(db_result_i64(r, 3, 0, &v), CP_EINVAL);
    assert_int_equal(db_result_i64(r, 0, 7, &v), CP_EINVAL);
    assert_null(db_result_get(r, 3, 0));
    assert_null(db_result_get(r, 0, 7));
    assert_int_equal(db_result_len(r, 0, 99), 0);
    db_result_free(r);
    r = NULL;

    /* Binary and text parameters in WHERE find the rows. */
    struct db_param by_data[] = { DB_BYTES(bin, sizeof bin) };
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE data = ?", by_data, 1), 1);
    struct db_param by_prefix[] = { DB_BYTES(bin, 2) };
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE data = ?", by_prefix, 1), 0);
    struct db_param by_text[] = { DB_STR(long_text) };
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE txt = ?", by_text, 1), 1);
    struct db_param is_null[] = { DB_NULL };
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE data <=> ?", is_null, 1), 2);

    /* Numbers bound as numbers: arithmetic on the server. */
    struct db_param nums[] = { DB_I64(40), DB_DOUBLE(2.0) };
    assert_int_equal(query_i64(db, "SELECT CAST(? + ? AS SIGNED)", nums, 2), 42);

    /* An empty result still has its columns. */
    assert_int_equal(db_query(db, "SELECT * FROM " ITEMS " WHERE 1 = 0", NULL, 0, &r), 0);
    assert_int_equal(db_result_rows(r), 0);
    assert_int_equal(db_result_cols(r), 6);
    assert_null(db_result_get(r, 0, 0));
    db_result_free(r);
    db_result_free(NULL);

    /* affected rows of an update; a statement that returns rows through
     * db_exec is drained and the session stays usable. */
    struct db_param upd[] = { DB_I64(5) };
    assert_int_equal(db_exec(db, "UPDATE " ITEMS " SET n = ? WHERE n IS NOT NULL", upd, 1,
                             &affected, NULL), 0);
    assert_int_equal(affected, 2);
    assert_int_equal(db_exec(db, "SELECT * FROM " ITEMS, NULL, 0, &affected, NULL), 0);
    assert_int_equal(query_i64(db, "SELECT SUM(n) FROM " ITEMS, NULL, 0), 10);
    free(long_text);
}

static void test_refusals(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct db_result *r = NULL;
    unsigned long long affected = 9, id = 9;

    insert_named(db, "dup", 1);

    /* duplicate key */
    struct db_param dup[] = { DB_STR("dup"), DB_I64(2) };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, n) VALUES (?, ?)", dup, 2,
                             &affected, &id), CP_ECONFLICT);
    assert_int_equal(db_errno(db), ER_DUP_ENTRY);
    assert_non_null(strstr(db_error(db), "Duplicate"));
    assert_int_equal(affected, 0);
    assert_int_equal(id, 0);

    /* wrong number of parameters, both ways */
    struct db_param one[] = { DB_STR("dup") };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, n) VALUES (?, ?)", one, 1,
                             NULL, NULL), CP_EINVAL);
    assert_int_equal(db_query(db, "SELECT n FROM " ITEMS " WHERE name = ?", dup, 2, &r), CP_EINVAL);
    assert_null(r);
    assert_int_equal(db_query(db, "SELECT n FROM " ITEMS " WHERE name = ?", NULL, 0, &r), CP_EINVAL);
    assert_non_null(strstr(db_error(db), "parameters"));

    /* syntax error, missing table */
    assert_int_equal(db_exec(db, "INSRT INTO " ITEMS, NULL, 0, NULL, NULL), CP_EDB);
    assert_int_equal(db_errno(db), ER_PARSE_ERROR);
    assert_int_equal(db_query(db, "SELECT * FROM zz_dbtest_nosuch", NULL, 0, &r), CP_EDB);
    assert_null(r);

    /* strict mode refuses invalid UTF-8 in a text column */
    struct db_param bad[] = { DB_STR("bad"), DB_BYTES("\xff\xfe", 2) };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, txt) VALUES (?, ?)", bad, 2,
                             NULL, NULL), CP_EDB);

    /* None of it broke the session. */
    assert_int_equal(count_named(db, "dup"), 1);
    assert_int_equal(query_i64(db, "SELECT n FROM " ITEMS " WHERE name = ?", one, 1), 1);
    assert_int_equal(count_named(db, "bad"), 0);
}

/* --------------------------------------------------- locks, deadlocks -- */

static void test_lock_wait_timeout(void **state)
{
    struct fixture *fx = *state;
    struct db_result *r = NULL;
    double start, waited;

    insert_named(fx->db, "locked", 1);
    exec_ok(fx->db, "SET SESSION innodb_lock_wait_timeout = 1");

    assert_int_equal(db_begin(fx->other), 0);
    assert_int_equal(db_query(fx->other, "SELECT n FROM " ITEMS " WHERE name = 'locked' FOR UPDATE",
                              NULL, 0, &r), 0);
    assert_int_equal(db_result_rows(r), 1);
    db_result_free(r);

    start = now_ms();
    assert_int_equal(db_exec(fx->db, "UPDATE " ITEMS " SET n = 2 WHERE name = 'locked'",
                             NULL, 0, NULL, NULL), CP_ERETRY);
    waited = now_ms() - start;
    assert_int_equal(db_errno(fx->db), ER_LOCK_WAIT_TIMEOUT);
    assert_true(waited > 900 && waited < 4000);

    /* Once the lock is released the same statement goes through. */
    assert_int_equal(db_rollback(fx->other), 0);
    assert_int_equal(db_exec(fx->db, "UPDATE " ITEMS " SET n = 2 WHERE name = 'locked'",
                             NULL, 0, NULL, NULL), 0);
    assert_int_equal(query_i64(fx->other, "SELECT n FROM " ITEMS " WHERE name = 'locked'", NULL, 0), 2);
}

/*
 * A deadlock between a transaction in a thread (r1, then r2) and one here
 * (r2 and a few new rows, then r1).  InnoDB rolls back the transaction
 * that changed fewer rows, the thread's, whichever of the two closes the
 * cycle; db_transaction() then runs it again and it commits.
 */
struct deadlock {
    struct db *db;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int holds_r1;                /* the first attempt has locked r1 */
    int attempts;
    int first_rc;                /* what the first attempt's r2 update got */
    unsigned first_errno;
    int rc;                      /* what db_transaction() returned */
};

static int deadlock_tx(struct db *db, void *arg)
{
    struct deadlock *d = arg;
    int rc;

    d->attempts++;
    rc = db_exec(db, "UPDATE " ITEMS " SET n = n + 1 WHERE name = 'r1'", NULL, 0, NULL, NULL);
    if (rc)
        return rc;
    if (d->attempts == 1) {
        pthread_mutex_lock(&d->lock);
        d->holds_r1 = 1;
        pthread_cond_signal(&d->cond);
        pthread_mutex_unlock(&d->lock);
    }
    rc = db_exec(db, "UPDATE " ITEMS " SET n = n + 1 WHERE name = 'r2'", NULL, 0, NULL, NULL);
    if (d->attempts == 1) {
        d->first_rc = rc;
        d->first_errno = db_errno(db);
    }
    return rc;
}

static void *deadlock_thread(void *arg)
{
    struct deadlock *d = arg;

    d->rc = db_transaction(d->db, deadlock_tx, d, 3);
    pthread_mutex_lock(&d->lock);
    d->holds_r1 = 1;             /* never leave the main thread waiting */
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void test_deadlock_retried(void **state)
{
    struct fixture *fx = *state;
    struct deadlock d = { .db = fx->db };
    struct timespec until;
    pthread_t thread;
    int rc_main, rc_commit = -100, waited_ok = 1;
    double start = now_ms();

    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    insert_named(fx->db, "r1", 0);
    insert_named(fx->db, "r2", 0);
    /* Bounded waits, should the deadlock not be detected. */
    exec_ok(fx->db, "SET SESSION innodb_lock_wait_timeout = 3");
    exec_ok(fx->other, "SET SESSION innodb_lock_wait_timeout = 3");

    assert_int_equal(db_begin(fx->other), 0);
    exec_ok(fx->other, "UPDATE " ITEMS " SET n = n + 1 WHERE name = 'r2'");
    /* The heavier transaction: inserts lock no existing row. */
    for (int i = 0; i < 8; i++) {
        char name[16];

        snprintf(name, sizeof name, "w%d", i);
        insert_named(fx->other, name, 0);
    }

    /* From here on nothing may fail before the thread is joined. */
    assert_int_equal(pthread_create(&thread, NULL, deadlock_thread, &d), 0);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&d.lock);
    while (!d.holds_r1 && waited_ok)
        waited_ok = pthread_cond_timedwait(&d.cond, &d.lock, &until) == 0;
    pthread_mutex_unlock(&d.lock);

    rc_main = db_exec(fx->other, "UPDATE " ITEMS " SET n = n + 1 WHERE name = 'r1'",
                      NULL, 0, NULL, NULL);
    if (rc_main == 0)
        rc_commit = db_commit(fx->other);
    else
        db_rollback(fx->other);
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.cond);

    assert_true(waited_ok);
    assert_int_equal(rc_main, 0);
    assert_int_equal(rc_commit, 0);
    assert_int_equal(d.first_rc, CP_ERETRY);
    assert_int_equal(d.first_errno, ER_LOCK_DEADLOCK);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.attempts, 2);
    /* Both transactions counted once each, the victim's first try not. */
    assert_int_equal(query_i64(fx->db, "SELECT n FROM " ITEMS " WHERE name = 'r1'", NULL, 0), 2);
    assert_int_equal(query_i64(fx->db, "SELECT n FROM " ITEMS " WHERE name = 'r2'", NULL, 0), 2);
    assert_true(now_ms() - start < 5000);
}

/* ------------------------------------------------------- transactions -- */

struct tx_count {
    int calls;
    int fail_with;               /* what fn returns after its insert */
};

static int insert_then(struct db *db, void *arg)
{
    struct tx_count *t = arg;
    char name[32];

    t->calls++;
    snprintf(name, sizeof name, "tx%d", t->calls);
    insert_named(db, name, t->calls);
    return t->fail_with;
}

static void test_transaction_rollback(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct tx_count t = { 0, CP_EINVAL };

    /* An error from fn rolls back and is returned at once. */
    assert_int_equal(db_transaction(db, insert_then, &t, 5), CP_EINVAL);
    assert_int_equal(t.calls, 1);
    assert_int_equal(count_named(db, "tx1"), 0);

    /* CP_ERETRY is tried max_attempts times, then returned. */
    t = (struct tx_count){ 0, CP_ERETRY };
    assert_int_equal(db_transaction(db, insert_then, &t, 3), CP_ERETRY);
    assert_int_equal(t.calls, 3);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS, NULL, 0), 0);

    /* Success commits: the other session sees the row. */
    t = (struct tx_count){ 0, 0 };
    assert_int_equal(db_transaction(db, insert_then, &t, 3), 0);
    assert_int_equal(t.calls, 1);
    assert_int_equal(count_named(fx->other, "tx1"), 1);

    /* Explicit transactions: no nesting, no commit outside one. */
    assert_int_equal(db_begin(db), 0);
    assert_int_equal(db_begin(db), CP_EINVAL);
    insert_named(db, "uncommitted", 1);
    assert_int_equal(count_named(fx->other, "uncommitted"), 0);
    assert_int_equal(db_rollback(db), 0);
    assert_int_equal(db_commit(db), CP_EINVAL);
    assert_int_equal(count_named(db, "uncommitted"), 0);
}

/* ------------------------------------------------- statement cache -- */

static void test_statement_cache(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    const int distinct = 150;
    long long prepared0, closed0, prepared, closed;
    struct db_param one[] = { DB_I64(1) };
    char sql[64];

    /* Fill the cache, and more. */
    for (int i = 0; i < distinct; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);
        assert_int_equal(query_i64(db, sql, one, 1), i + 1);
    }
    prepared0 = session_status(db, "COM_STMT_PREPARE");
    closed0 = session_status(db, "COM_STMT_CLOSE");

    /* From now on every new statement closes the least recently used
     * one on the server: no more than the cache's worth stay open.  The
     * status query itself is pushed out and comes back once. */
    for (int i = distinct; i < 2 * distinct; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);
        assert_int_equal(query_i64(db, sql, one, 1), i + 1);
    }
    prepared = session_status(db, "COM_STMT_PREPARE");
    closed = session_status(db, "COM_STMT_CLOSE");
    assert_int_equal(prepared - prepared0, distinct + 1);
    assert_int_equal(closed - closed0, distinct + 1);

    /* The most recent ones are served from the cache... */
    for (int i = 2 * distinct - 10; i < 2 * distinct; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);
        assert_int_equal(query_i64(db, sql, one, 1), i + 1);
    }
    assert_int_equal(session_status(db, "COM_STMT_PREPARE"), prepared);
    /* ...the oldest are prepared again and still right. */
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + ?", i);
        assert_int_equal(query_i64(db, sql, one, 1), i + 1);
    }
    assert_int_equal(session_status(db, "COM_STMT_PREPARE"), prepared + 3);
}

/* ------------------------------------------------------- lost sessions -- */

static void test_reconnect_after_kill(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    char tz[32];
    long long first, second;

    insert_named(db, "before", 1);
    first = connection_id(db);
    kill_session(fx->other, first);

    /* A read finds the connection gone and runs on a new one. */
    assert_int_equal(count_named(db, "before"), 1);
    second = connection_id(db);
    assert_true(second != first);
    assert_string_equal(query_text(db, "SELECT @@session.time_zone", tz, sizeof tz), "+00:00");

    /* A write on a connection killed while idle was never sent, so it is
     * sent again on a new connection, and runs exactly once. */
    insert_named(db, "cached", 1);              /* the INSERT is now prepared */
    kill_session(fx->other, second);
    struct db_param p[] = { DB_STR("after kill"), DB_I64(2) };
    unsigned long long affected = 0;
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, n) VALUES (?, ?)", p, 2,
                             &affected, NULL), 0);
    assert_int_equal(affected, 1);
    assert_true(connection_id(db) != second);
    assert_int_equal(count_named(fx->other, "after kill"), 1);

    /* The same for a statement that was not prepared yet. */
    kill_session(fx->other, connection_id(db));
    exec_ok(db, "UPDATE " ITEMS " SET n = n + 10 WHERE name = 'before'");
    assert_int_equal(query_i64(fx->other, "SELECT n FROM " ITEMS " WHERE name = 'before'", NULL, 0), 11);
    assert_int_equal(db_ping(db), 0);
}

static void test_kill_inside_transaction(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;

    assert_int_equal(db_begin(db), 0);
    insert_named(db, "tx a", 1);
    kill_session(fx->other, connection_id(db));

    /* No silent reconnect inside a transaction: it is dead as a whole. */
    struct db_param p[] = { DB_STR("tx b"), DB_I64(2) };
    assert_int_equal(db_exec(db, "INSERT INTO " ITEMS " (name, n) VALUES (?, ?)", p, 2,
                             NULL, NULL), CP_ERETRY);
    struct db_result *r = NULL;
    assert_int_equal(db_query(db, "SELECT 1", NULL, 0, &r), CP_ERETRY);
    assert_null(r);
    assert_int_equal(db_commit(db), CP_ERETRY);

    /* After it, the handle works again and nothing was committed. */
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " ITEMS " WHERE name LIKE 'tx %'", NULL, 0), 0);
    assert_int_equal(db_commit(db), CP_EINVAL);
}

static void test_read_committed_kept(void **state)
{
    struct fixture *fx = *state;
    char iso[32];
    long long first;

    assert_string_equal(query_text(fx->db, "SELECT @@tx_isolation", iso, sizeof iso), "REPEATABLE-READ");
    assert_int_equal(db_set_read_committed(fx->db), 0);
    assert_string_equal(query_text(fx->db, "SELECT @@tx_isolation", iso, sizeof iso), "READ-COMMITTED");

    first = connection_id(fx->db);
    kill_session(fx->other, first);
    assert_string_equal(query_text(fx->db, "SELECT @@tx_isolation", iso, sizeof iso), "READ-COMMITTED");
    assert_true(connection_id(fx->db) != first);
    /* It belongs to that handle only. */
    assert_string_equal(query_text(fx->other, "SELECT @@tx_isolation", iso, sizeof iso), "REPEATABLE-READ");
}

/* ----------------------------------------------------------- scripts -- */

static void test_exec_script(void **state)
{
    struct fixture *fx = *state;
    struct db *db = fx->db;
    struct buf err;

    buf_init(&err, 4096);
    exec_ok(db, "DROP TABLE IF EXISTS " SCRIPT_TABLE);
    assert_int_equal(db_exec_script(db,
        "-- a header; with a semicolon\n"
        "# another; comment\n"
        "CREATE TABLE " SCRIPT_TABLE " (`a;b` INT, v VARCHAR(50)) /* c;omment */;\n"
        "INSERT INTO " SCRIPT_TABLE " VALUES (1, 'x;y'), (2, \"it\\\"s;\"), (3, 'a''b;c');;\n"
        "   ;\n"
        "INSERT INTO " SCRIPT_TABLE " VALUES (4, '--;not a comment'), (5, '/*;*/')--;\n"
        "; /* trailing; */ -- end;", &err), 0);
    assert_string_equal(buf_str(&err), "");
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " SCRIPT_TABLE, NULL, 0), 5);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " SCRIPT_TABLE " WHERE v IN"
                                   " ('x;y', 'it\"s;', 'a''b;c', '--;not a comment', '/*;*/')", NULL, 0), 5);
    assert_int_equal(query_i64(db, "SELECT SUM(`a;b`) FROM " SCRIPT_TABLE, NULL, 0), 15);

    /* A failure names the statement and stops there. */
    assert_int_equal(db_exec_script(db,
        "INSERT INTO " SCRIPT_TABLE " VALUES (10, 'one;');\n"
        "SELECT 2;\n"
        "INSERT INTO zz_dbtest_nosuch VALUES (1);\n"
        "INSERT INTO " SCRIPT_TABLE " VALUES (11, 'four')", &err), CP_EDB);
    assert_true(strncmp(buf_str(&err), "statement 3: ", 13) == 0);
    assert_non_null(strstr(buf_str(&err), "zz_dbtest_nosuch"));
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " SCRIPT_TABLE " WHERE `a;b` = 10", NULL, 0), 1);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM " SCRIPT_TABLE " WHERE `a;b` = 11", NULL, 0), 0);
    buf_free(&err);
    exec_ok(db, "DROP TABLE " SCRIPT_TABLE);
}

/* ---------------------------------------------------------- memcached -- */

static void test_cache_set_get_delete(void **state)
{
    struct fixture *fx = *state;
    struct cache *c = fx->cache;
    static const char val[] = "hello\0bin\xff";
    struct buf out, small;

    buf_init(&out, 4096);
    assert_int_equal(cache_ping(c), 0);
    assert_int_equal(cache_set(c, KEY_PREFIX "k1", val, sizeof val - 1, 60), 0);
    assert_int_equal(cache_get(c, KEY_PREFIX "k1", &out), 0);
    assert_int_equal(out.len, sizeof val - 1);
    assert_memory_equal(out.data, val, sizeof val - 1);

    /* set overwrites; get appends to what the buffer holds */
    assert_int_equal(cache_set(c, KEY_PREFIX "k1", "v2", 2, 0), 0);
    buf_reset(&out);
    assert_int_equal(buf_adds(&out, ">"), 0);
    assert_int_equal(cache_get(c, KEY_PREFIX "k1", &out), 0);
    assert_string_equal(buf_str(&out), ">v2");

    /* an empty value is a value */
    assert_int_equal(cache_set(c, KEY_PREFIX "empty", "", 0, 0), 0);
    buf_reset(&out);
    assert_int_equal(cache_get(c, KEY_PREFIX "empty", &out), 0);
    assert_int_equal(out.len, 0);

    /* the caller's cap on the value */
    buf_init(&small, 1);
    assert_int_equal(cache_get(c, KEY_PREFIX "k1", &small), CP_ETOOBIG);
    buf_free(&small);

    /* delete, twice; then it is gone */
    assert_int_equal(cache_delete(c, KEY_PREFIX "k1"), 0);
    assert_int_equal(cache_delete(c, KEY_PREFIX "k1"), 0);
    assert_int_equal(cache_delete(c, KEY_PREFIX "empty"), 0);
    buf_reset(&out);
    assert_int_equal(cache_get(c, KEY_PREFIX "k1", &out), CP_ENOTFOUND);
    assert_int_equal(cache_get(c, KEY_PREFIX "never set", &out), CP_EINVAL);
    assert_int_equal(cache_get(c, KEY_PREFIX "never-set", &out), CP_ENOTFOUND);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_cache_add(void **state)
{
    struct fixture *fx = *state;
    struct cache *c = fx->cache;
    struct buf out;

    buf_init(&out, 64);
    assert_int_equal(cache_delete(c, KEY_PREFIX "add"), 0);
    assert_int_equal(cache_add(c, KEY_PREFIX "add", "first", 5, 60), 0);
    assert_int_equal(cache_add(c, KEY_PREFIX "add", "second", 6, 60), CP_ECONFLICT);
    assert_int_equal(cache_get(c, KEY_PREFIX "add", &out), 0);
    assert_string_equal(buf_str(&out), "first");
    assert_int_equal(cache_delete(c, KEY_PREFIX "add"), 0);
    assert_int_equal(cache_add(c, KEY_PREFIX "add", "third", 5, 60), 0);
    assert_int_equal(cache_delete(c, KEY_PREFIX "add"), 0);
    buf_free(&out);
}

static void test_cache_incr_and_ttl(void **state)
{
    struct fixture *fx = *state;
    struct cache *c = fx->cache;
    unsigned long long v = 99;
    struct buf out;
    double start;
    int gone = 0;

    buf_init(&out, 64);
    assert_int_equal(cache_delete(c, KEY_PREFIX "ctr"), 0);

    /* A missing counter starts at delta. */
    assert_int_equal(cache_incr(c, KEY_PREFIX "ctr", 5, 60, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(cache_incr(c, KEY_PREFIX "ctr", 3, 60, &v), 0);
    assert_int_equal(v, 8);
    assert_int_equal(cache_get(c, KEY_PREFIX "ctr", &out), 0);
    assert_string_equal(buf_str(&out), "8");

    /* Expiry: three-second keys are there at first and vanish; a 90-day
     * one (past memcached's 30-day switch to absolute times) stays.
     * memcached's clock ticks once a second and now and then skips a
     * second, so "three seconds" means somewhere between 1 and 3 s. */
    assert_int_equal(cache_delete(c, KEY_PREFIX "ctr-short"), 0);
    start = now_ms();
    assert_int_equal(cache_incr(c, KEY_PREFIX "ctr-short", 1, 3, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cache_set(c, KEY_PREFIX "short", "s", 1, 3), 0);
    assert_int_equal(cache_set(c, KEY_PREFIX "long", "l", 1, 90u * 24 * 3600), 0);
    assert_int_equal(cache_get(c, KEY_PREFIX "short", &out), 0);
    assert_int_equal(cache_incr(c, KEY_PREFIX "ctr-short", 1, 3, &v), 0);
    assert_int_equal(v, 2);
    while (!gone && now_ms() - start < 5000) {
        sleep_ms(100);
        buf_reset(&out);
        gone = cache_get(c, KEY_PREFIX "short", &out) == CP_ENOTFOUND &&
               cache_get(c, KEY_PREFIX "ctr-short", &out) == CP_ENOTFOUND;
    }
    assert_true(gone);
    assert_true(now_ms() - start > 500);
    buf_reset(&out);
    assert_int_equal(cache_get(c, KEY_PREFIX "long", &out), 0);
    assert_string_equal(buf_str(&out), "l");
    /* An expired counter starts again. */
    assert_int_equal(cache_incr(c, KEY_PREFIX "ctr-short", 4, 1, &v), 0);
    assert_int_equal(v, 4);

    /* A value that is not a number is not counted. */
    assert_int_equal(cache_set(c, KEY_PREFIX "text", "abc", 3, 60), 0);
    v = 99;
    assert_true(cache_incr(c, KEY_PREFIX "text", 1, 0, &v) != 0);
    assert_int_equal(v, 0);

    const char *keys[] = { "ctr", "ctr-short", "short", "long", "text" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char key[64];

        snprintf(key, sizeof key, KEY_PREFIX "%s", keys[i]);
        assert_int_equal(cache_delete(c, key), 0);
    }
    buf_free(&out);
}

static void test_cache_keys(void **state)
{
    struct fixture *fx = *state;
    struct cache *c = fx->cache;
    char key[300];
    unsigned long long v;
    struct buf out;

    buf_init(&out, 64);
    memset(key, 'k', sizeof key);
    key[250] = '\0';
    assert_int_equal(cache_set(c, key, "v", 1, 10), 0);
    assert_int_equal(cache_get(c, key, &out), 0);
    assert_int_equal(cache_delete(c, key), 0);
    key[250] = 'k';
    key[251] = '\0';
    assert_int_equal(cache_set(c, key, "v", 1, 0), CP_EINVAL);
    assert_int_equal(cache_get(c, key, &out), CP_EINVAL);
    buf_reset(&out);

    static const char *const bad[] = { "", "a b", "a\tb", "a\nb", "caf\xc3\xa9", "del\x7f" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cache_set(c, bad[i], "v", 1, 0), CP_EINVAL);
        assert_int_equal(cache_add(c, bad[i], "v", 1, 0), CP_EINVAL);
        assert_int_equal(cache_get(c, bad[i], &out), CP_EINVAL);
        assert_int_equal(cache_delete(c, bad[i]), CP_EINVAL);
        assert_int_equal(cache_incr(c, bad[i], 1, 0, &v), CP_EINVAL);
    }
    assert_int_equal(cache_get(c, NULL, &out), CP_EINVAL);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_cache_big_values(void **state)
{
    struct fixture *fx = *state;
    struct cache *c = fx->cache;
    const size_t fits = 1000 * 1000, over = (1u << 20) + 1;
    char *val = malloc(over);
    struct buf out;

    assert_non_null(val);
    for (size_t i = 0; i < over; i++)
        val[i] = (char)(i * 7);
    buf_init(&out, 2u << 20);

    assert_int_equal(cache_set(c, KEY_PREFIX "big", val, fits, 60), 0);
    assert_int_equal(cache_get(c, KEY_PREFIX "big", &out), 0);
    assert_int_equal(out.len, fits);
    assert_memory_equal(out.data, val, fits);

    /* memcached keeps items of at most 1 MiB.  A larger one is refused,
     * memcached drops the old value of the key rather than keep a stale
     * one, and the connection is still good. */
    assert_int_equal(cache_set(c, KEY_PREFIX "big", val, over, 60), CP_ETOOBIG);
    assert_int_equal(cache_add(c, KEY_PREFIX "big2", val, over, 60), CP_ETOOBIG);
    buf_reset(&out);
    assert_int_equal(cache_get(c, KEY_PREFIX "big", &out), CP_ENOTFOUND);
    assert_int_equal(cache_get(c, KEY_PREFIX "big2", &out), CP_ENOTFOUND);
    assert_int_equal(cache_set(c, KEY_PREFIX "small", "s", 1, 60), 0);
    buf_reset(&out);
    assert_int_equal(cache_get(c, KEY_PREFIX "small", &out), 0);
    assert_string_equal(buf_str(&out), "s");
    assert_int_equal(cache_ping(c), 0);

    assert_int_equal(cache_delete(c, KEY_PREFIX "big"), 0);
    assert_int_equal(cache_delete(c, KEY_PREFIX "small"), 0);
    buf_free(&out);
    free(val);
}

/* --------------------------------------------------------- migrations -- */

/*
 * The stack's user may use its own database only, so migrations run as
 * the server's administrator (socket authentication as this system user)
 * in a scratch database.
 */
static int admin_conf(const char *dbname, struct conf **out)
{
    struct passwd *pw = getpwuid(getuid());
    struct buf err, text;
    int rc;

    *out = NULL;
    if (!pw || !stack_conf->db_socket || !stack_conf->db_socket[0])
        return CP_ENOTFOUND;
    buf_init(&err, 1024);
    buf_init(&text, 1024);
    rc = conf_load(out, NULL, &err);
    if (!rc)
        rc = buf_printf(&text, "db_user = \"%s\"\ndb_password = \"\"\ndb_name = \"%s\"\n",
                        pw->pw_name, dbname);
    if (!rc)
        rc = conf_parse_text(*out, "admin", buf_str(&text), &err);
    if (rc) {
        fprintf(stderr, "# %s\n", buf_str(&err));
        conf_free(*out);
        *out = NULL;
    }
    buf_free(&err);
    buf_free(&text);
    return rc;
}

static int teardown_migrate(void **state)
{
    struct conf *c = NULL;
    struct db *admin = NULL;

    if (admin_conf(stack_conf->db_name, &c) == 0 && db_open(c, &admin) == 0)
        db_exec(admin, "DROP DATABASE IF EXISTS " MIGRATE_DB, NULL, 0, NULL, NULL);
    db_close(admin);
    conf_free(c);
    return teardown(state);
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *fp;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static struct migration_set *load_set(const char *dir)
{
    struct migration_set *set = NULL;
    struct buf err;
    int rc;

    buf_init(&err, 4096);
    rc = migration_set_load(dir, &set, &err);
    if (rc)
        fail_msg("migration_set_load: %s", buf_str(&err));
    buf_free(&err);
    return set;
}

static void test_migrations(void **state)
{
    struct fixture *fx = *state;
    struct conf *admin_c = NULL, *mig_c = NULL;
    struct db *admin = NULL;
    struct migration_set *set;
    long long stack_versions;
    struct buf err;
    struct db *db;

    stack_versions = query_i64(fx->db, "SELECT COUNT(*) FROM schema_migrations", NULL, 0);

    assert_int_equal(admin_conf(stack_conf->db_name, &admin_c), 0);
    assert_int_equal(db_open(admin_c, &admin), 0);
    exec_ok(admin, "DROP DATABASE IF EXISTS " MIGRATE_DB);
    exec_ok(admin, "CREATE DATABASE " MIGRATE_DB " CHARACTER SET utf8mb4");
    db_close(admin);
    conf_free(admin_c);
    assert_int_equal(admin_conf(MIGRATE_DB, &mig_c), 0);
    assert_int_equal(db_open(mig_c, &fx->scratch), 0);
    conf_free(mig_c);
    db = fx->scratch;

    snprintf(fx->migrate_dir, sizeof fx->migrate_dir, "/tmp/zz_dbtest_XXXXXX");
    assert_non_null(mkdtemp(fx->migrate_dir));
    put_file(fx->migrate_dir, "001_a.sql",
             "-- 001_a.sql; the first table\n"
             "CREATE TABLE zz_dbtest_a (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;\n"
             "INSERT INTO zz_dbtest_a VALUES (1, 'x;y'), (2, 'it''s');\n");
    put_file(fx->migrate_dir, "002_b.sql",
             "CREATE TABLE zz_dbtest_b (id INT PRIMARY KEY) ENGINE=InnoDB;\n");
    put_file(fx->migrate_dir, "README.md", "not a migration\n");
    put_file(fx->migrate_dir, "x.sql", "not a migration either;\n");

    buf_init(&err, 4096);
    set = load_set(fx->migrate_dir);
    assert_int_equal(migration_set_count(set), 2);
    assert_int_equal(migration_set_latest(set), 2);

    /* fresh database: pending; apply; current; applying again is a no-op */
    assert_int_equal(migrate_check_current(db, set, &err), CP_ENOTFOUND);
    buf_reset(&err);
    if (migrate_apply(db, set, NULL, &err))
        fail_msg("migrate_apply: %s", buf_str(&err));
    assert_int_equal(migrate_check_current(db, set, &err), 0);
    assert_int_equal(migrate_apply(db, set, NULL, &err), 0);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM schema_migrations", NULL, 0), 2);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM zz_dbtest_a WHERE v IN ('x;y', 'it''s')", NULL, 0), 2);
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM zz_dbtest_b", NULL, 0), 0);
    migration_set_free(set);

    /* a new file is pending until applied */
    put_file(fx->migrate_dir, "003_c.sql", "INSERT INTO zz_dbtest_b VALUES (3);\n");
    set = load_set(fx->migrate_dir);
    buf_reset(&err);
    assert_int_equal(migrate_check_current(db, set, &err), CP_ENOTFOUND);
    buf_reset(&err);
    assert_int_equal(migrate_apply(db, set, NULL, &err), 0);
    assert_int_equal(migrate_check_current(db, set, &err), 0);
    assert_int_equal(query_i64(db, "SELECT id FROM zz_dbtest_b", NULL, 0), 3);
    migration_set_free(set);

    /* an applied file that changed is refused */
    put_file(fx->migrate_dir, "002_b.sql",
             "CREATE TABLE zz_dbtest_b (id INT PRIMARY KEY) ENGINE=InnoDB;\n-- edited\n");
    set = load_set(fx->migrate_dir);
    buf_reset(&err);
    assert_int_equal(migrate_check_current(db, set, &err), CP_ECHANGED);
    buf_reset(&err);
    assert_int_equal(migrate_apply(db, set, NULL, &err), CP_ECHANGED);
    assert_non_null(strstr(buf_str(&err), "002_b.sql"));
    migration_set_free(set);
    put_file(fx->migrate_dir, "002_b.sql",
             "CREATE TABLE zz_dbtest_b (id INT PRIMARY KEY) ENGINE=InnoDB;\n");

    /* a failing migration names its file and statement, is not recorded */
    put_file(fx->migrate_dir, "004_d.sql",
             "CREATE TABLE IF NOT EXISTS zz_dbtest_d (id INT PRIMARY KEY);\n"
             "-- a comment; not a statement\n"
             "INSERT INTO zz_dbtest_d VALUES ('not a number');\n");
    set = load_set(fx->migrate_dir);
    buf_reset(&err);
    assert_int_equal(migrate_apply(db, set, NULL, &err), CP_EDB);
    assert_non_null(strstr(buf_str(&err), "004_d.sql: statement 2: "));
    assert_int_equal(query_i64(db, "SELECT COUNT(*) FROM schema_migrations", NULL, 0), 3);
    migration_set_free(set);

    /* once fixed it applies */
    put_file(fx->migrate_dir, "004_d.sql",
             "CREATE TABLE IF NOT EXISTS zz_dbtest_d (id INT PRIMARY KEY);\n"
             "INSERT INTO zz_dbtest_d VALUES (4);\n");
    set = load_set(fx->migrate_dir);
    buf_reset(&err);
    assert_int_equal(migrate_apply(db, set, NULL, &err), 0);
    assert_int_equal(migrate_check_current(db, set, &err), 0);
    assert_int_equal(query_i64(db, "SELECT MAX(version) FROM schema_migrations", NULL, 0), 4);
    migration_set_free(set);
    buf_free(&err);

    /* The stack's own record was never touched. */
    assert_int_equal(query_i64(fx->db, "SELECT COUNT(*) FROM schema_migrations", NULL, 0), stack_versions);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_params_and_results, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait_timeout, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_retried, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_rollback, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_kill, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_kill_inside_transaction, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_read_committed_kept, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_exec_script, setup_db, teardown),
        cmocka_unit_test_setup_teardown(test_cache_set_get_delete, setup_cache, teardown),
        cmocka_unit_test_setup_teardown(test_cache_add, setup_cache, teardown),
        cmocka_unit_test_setup_teardown(test_cache_incr_and_ttl, setup_cache, teardown),
        cmocka_unit_test_setup_teardown(test_cache_keys, setup_cache, teardown),
        cmocka_unit_test_setup_teardown(test_cache_big_values, setup_cache, teardown),
        cmocka_unit_test_setup_teardown(test_migrations, setup_db, teardown_migrate),
    };

    return cmocka_run_group_tests_name("db_layer", tests, group_setup, group_teardown);
}
