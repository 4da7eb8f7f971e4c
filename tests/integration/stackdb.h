/*
 * stackdb.h - what the C programs of the integration suite share: the
 * stack's configuration (CROSSPOST_CONFIG, set by the pytest wrapper) and
 * a first connection to its MariaDB.
 */
#ifndef CP_TESTS_STACKDB_H
#define CP_TESTS_STACKDB_H

#include "conf.h"
#include "db.h"

/* Start logging as prog at level, load the configuration into *conf and
 * open *db.  0, or -1 after saying why on stderr (as a TAP comment);
 * *conf is then still to be freed by the caller. */
int stackdb_open(const char *prog, int log_level, struct conf **conf, struct db **db);

/* Run sql with its parameters; a failure fails the current test. */
void stackdb_exec(struct db *db, const char *sql, const struct db_param *p, size_t n);

/* The integer in the first column of the one row sql returns, -1 when
 * it is NULL; another row count or a failure fails the current test. */
long long stackdb_i64(struct db *db, const char *sql, const struct db_param *p, size_t n);

#endif
