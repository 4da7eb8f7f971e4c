#include "config.h"

#include <stdio.h>

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
