/*
 * ctl.h - what the commands of crosspostctl share.
 *
 * crosspostctl.c holds main() and the command table; each group of
 * commands lives in its own ctl_*.c file.
 */
#ifndef CP_CTL_H
#define CP_CTL_H

#include <stdio.h>

#include "conf.h"

/* Exit statuses: the operation failed / the command line or config is wrong. */
#define EXIT_FAILED 1
#define EXIT_USAGE 2

#define ERR_MAX 8192

struct ctl {
    const char *config_path;     /* --config, or NULL */
    struct conf *conf;           /* loaded on first use */
};

/* Load the configuration once; NULL (after telling the user) on error. */
struct conf *ctl_conf(struct ctl *ctl);

struct db;

/* Connect to MariaDB with the configuration: 0, or the exit status to
 * return after telling the user why not (EXIT_USAGE, EXIT_FAILED). */
int ctl_open_db(struct ctl *ctl, struct db **db);

/* Print why the database failed (its error, or that it is not
 * answering); returns EXIT_FAILED. */
int ctl_db_failed(struct db *db);

/* A whole number in [min, max], strictly written (decimal, an optional
 * '-', nothing after it): 0 with *out, or CP_EINVAL. */
int ctl_parse_number(const char *s, long long min, long long max, long long *out);

/* Print "crosspostctl: <message>" and the usage; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void usage(FILE *fp);

/* ctl_users.c */
int cmd_user(struct ctl *ctl, int argc, char **argv);

/* ctl_keys.c */
int cmd_keygen(struct ctl *ctl, int argc, char **argv);
int cmd_rotate_key(struct ctl *ctl, int argc, char **argv);
int cmd_connections(struct ctl *ctl, int argc, char **argv);

/* ctl_audit.c */
int cmd_audit(struct ctl *ctl, int argc, char **argv);

/* ctl_jobs.c */
int cmd_jobs(struct ctl *ctl, int argc, char **argv);
int cmd_workers(struct ctl *ctl, int argc, char **argv);

#endif
