#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "stackdb.h"

int stackdb_open(const char *prog, int log_level, struct conf **conf, struct db **db)
{
    struct buf err;
    int rc;

    *db = NULL;
    log_init(prog, log_level);
    buf_init(&err, 4096);
    rc = conf_load(conf, NULL, &err);
    if (rc) {
        fprintf(stderr, "# cannot load the configuration: %s\n", buf_str(&err));
        buf_free(&err);
        return -1;
    }
    buf_free(&err);
    rc = db_open(*conf, db);
    if (rc) {
        fprintf(stderr, "# cannot reach MariaDB: %s (%s)\n", cp_strerror(rc), *db ? db_error(*db) : "");
        db_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

void stackdb_exec(struct db *db, const char *sql, const struct db_param *p, size_t n)
{
    int rc = db_exec(db, sql, p, n, NULL, NULL);

    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
}

long long stackdb_i64(struct db *db, const char *sql, const struct db_param *p, size_t n)
{
    struct db_result *r = NULL;
    long long v = 0;
    int rc;

    rc = db_query(db, sql, p, n, &r);
    if (rc)
        fail_msg("%s: %s (%s)", sql, cp_strerror(rc), db_error(db));
    if (db_result_rows(r) != 1)
        fail_msg("%s: %zu rows", sql, db_result_rows(r));
    rc = db_result_i64(r, 0, 0, &v);
    db_result_free(r);
    if (rc == CP_ENOTFOUND)
        return -1;                           /* NULL */
    assert_int_equal(rc, 0);
    return v;
}
