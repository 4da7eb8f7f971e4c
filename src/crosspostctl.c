#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "migrate.h"
#include "ctl.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* Schema changes on a large table can take long; the migrate command
 * must not give up on the server after the API's usual read timeout. */
#define MIGRATE_READ_TIMEOUT_MS (3600LL * 1000)

struct command {
    const char *name;
    int (*run)(struct ctl *ctl, int argc, char **argv);
    const char *args;
    const char *help;
};

static int cmd_config(struct ctl *ctl, int argc, char **argv);
static int cmd_migrate(struct ctl *ctl, int argc, char **argv);
static int cmd_version(struct ctl *ctl, int argc, char **argv);
static int cmd_help(struct ctl *ctl, int argc, char **argv);

static const struct command commands[] = {
    { "config", cmd_config, "[--defaults]",
      "print the effective configuration (secrets redacted), or the documented defaults" },
    { "migrate", cmd_migrate, "[--status]",
      "apply pending schema migrations, or list every migration and its state" },
    { "user", cmd_user, "add|passwd|role|disable|enable|list ...",
      "manage accounts (crosspostctl user help)" },
    { "audit", cmd_audit, "prune", "delete audit events older than audit_retention" },
    { "jobs", cmd_jobs, "SUBCOMMAND ...",
      "the job queue: list, show, retry, cancel, enqueue, kinds (crosspostctl jobs help)" },
    { "workers", cmd_workers, "[--all]", "list the processes of crosspost-worker" },
    { "connections", cmd_connections, "list|show ...",
      "connected platform accounts, without their secrets (crosspostctl connections help)" },
    { "keygen", cmd_keygen, "[--es256] [--force] [FILE]",
      "create the access-token signing key FILE; with no FILE, whichever of jwt_key_file and "
      "secrets_key_file is missing" },
    { "keygen", cmd_keygen, "--secrets [FILE]",
      "create the key ring that seals platform credentials (default: secrets_key_file)" },
    { "rotate-key", cmd_rotate_key, "[--reseal-only]",
      "add a key to secrets_key_file and re-seal every connection under it (--reseal-only: resume)" },
    { "version", cmd_version, "", "print the version" },
    { "help", cmd_help, "", "show this help" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

void usage(FILE *fp)
{
    fprintf(fp, "usage: crosspostctl [--config FILE] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char left[64];

        snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].args);
        fprintf(fp, "  %-22s %s\n", left, commands[i].help);
    }
    fprintf(fp, "\noptions:\n"
                "  --config FILE          read FILE instead of $CROSSPOST_CONFIG or the "
                "default path\n"
                "\nexit status: 0 success, 1 the operation failed, 2 usage or "
                "configuration error\n");
}

int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "crosspostctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return EXIT_USAGE;
}

struct conf *ctl_conf(struct ctl *ctl)
{
    struct buf err;
    int rc;

    if (ctl->conf)
        return ctl->conf;
    buf_init(&err, ERR_MAX);
    rc = conf_load(&ctl->conf, ctl->config_path, &err);
    if (rc) {
        fprintf(stderr, "crosspostctl: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
        buf_free(&err);
        return NULL;
    }
    buf_free(&err);
    log_set_level((int)ctl->conf->log_level);
    return ctl->conf;
}

int ctl_db_failed(struct db *db)
{
    fprintf(stderr, "crosspostctl: %s\n", db_error(db)[0] ? db_error(db) : "the database is not answering");
    return EXIT_FAILED;
}

int ctl_parse_number(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return CP_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return CP_EINVAL;
    *out = v;
    return 0;
}

int ctl_open_db(struct ctl *ctl, struct db **db)
{
    struct conf *c = ctl_conf(ctl);
    int rc;

    *db = NULL;
    if (!c)
        return EXIT_USAGE;
    rc = db_open(c, db);
    if (rc) {
        fprintf(stderr, "crosspostctl: cannot connect to MariaDB: %s\n", *db ? db_error(*db) : cp_strerror(rc));
        db_close(*db);
        *db = NULL;
        return EXIT_FAILED;
    }
    return 0;
}

static int cmd_config(struct ctl *ctl, int argc, char **argv)
{
    struct conf *c;

    if (argc == 2 && strcmp(argv[1], "--defaults") == 0) {
        conf_print_defaults(stdout);
        return 0;
    }
    if (argc > 1)
        return usage_error("config: unexpected argument \"%s\"", argv[1]);
    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    conf_print(c, stdout);
    return 0;
}

static int cmd_migrate(struct ctl *ctl, int argc, char **argv)
{
    struct migration_set *set = NULL;
    struct db *db = NULL;
    struct conf *c;
    struct buf err;
    int status = 0, rc;

    if (argc == 2 && strcmp(argv[1], "--status") == 0)
        status = 1;
    else if (argc > 1)
        return usage_error("migrate: unexpected argument \"%s\"", argv[1]);
    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    if (c->db_read_timeout < MIGRATE_READ_TIMEOUT_MS)
        c->db_read_timeout = MIGRATE_READ_TIMEOUT_MS;

    buf_init(&err, ERR_MAX);
    rc = migration_set_load(c->sql_dir, &set, &err);
    if (rc) {
        fprintf(stderr, "crosspostctl: %s\n", buf_str(&err));
        goto out;
    }
    rc = db_open(c, &db);
    if (rc) {
        fprintf(stderr, "crosspostctl: cannot connect to MariaDB: %s\n",
                db ? db_error(db) : cp_strerror(rc));
        goto out;
    }
    if (status)
        rc = migrate_print_status(db, set, stdout, &err);
    else
        rc = migrate_apply(db, set, stdout, &err);
    if (rc)
        fprintf(stderr, "crosspostctl: migrate: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
out:
    db_close(db);
    migration_set_free(set);
    buf_free(&err);
    return rc ? EXIT_FAILED : 0;
}

static int cmd_version(struct ctl *ctl, int argc, char **argv)
{
    if (argc > 1)
        return usage_error("version: unexpected argument \"%s\"", argv[1]);
    printf("crosspostctl (crosspost) %s\n", PACKAGE_VERSION);
    return 0;
}

static int cmd_help(struct ctl *ctl, int argc, char **argv)
{
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct ctl ctl = { 0 };
    int i, rc;

    log_init("crosspostctl", CP_LOG_INFO);
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        } else if (strcmp(arg, "--config") == 0 || strcmp(arg, "-c") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file name", arg);
            ctl.config_path = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            ctl.config_path = arg + 9;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--version") == 0) {
            return cmd_version(&ctl, 1, argv);
        } else {
            return usage_error("unknown option \"%s\"", arg);
        }
    }
    if (ctl.config_path && !ctl.config_path[0])
        return usage_error("--config needs a file name");
    if (i >= argc)
        return usage_error("no command given");

    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[i], commands[k].name) == 0) {
            rc = commands[k].run(&ctl, argc - i, argv + i);
            conf_free(ctl.conf);
            return rc;
        }
    return usage_error("unknown command \"%s\"", argv[i]);
}
