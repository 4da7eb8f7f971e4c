/*
 * crosspostctl audit prune: delete audit events older than
 * audit_retention, in small batches so the table stays usable meanwhile.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "ctl.h"
#include "db.h"
#include "err.h"

#define PRUNE_BATCH 1000

int cmd_audit(struct ctl *ctl, int argc, char **argv)
{
    unsigned long long total = 0;
    size_t deleted;
    struct conf *c;
    struct db *db = NULL;
    int rc;

    if (argc != 2 || strcmp(argv[1], "prune") != 0)
        return usage_error("audit: the only subcommand is \"prune\"");
    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    rc = db_open(c, &db);
    if (rc) {
        fprintf(stderr, "crosspostctl: cannot connect to MariaDB: %s\n", db ? db_error(db) : cp_strerror(rc));
        db_close(db);
        return EXIT_FAILED;
    }
    do {
        rc = audit_prune(db, c->audit_retention, PRUNE_BATCH, &deleted);
        total += deleted;
    } while (!rc && deleted == PRUNE_BATCH);
    if (rc)
        fprintf(stderr, "crosspostctl: audit prune: %s\n", db_error(db));
    else
        printf("deleted %llu audit events older than %lld days\n", total,
               c->audit_retention / (24LL * 3600 * 1000));
    db_close(db);
    return rc ? EXIT_FAILED : 0;
}
