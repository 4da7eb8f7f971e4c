/*
 * crosspostctl user ...: accounts, from the operator's shell.  Every change is written to the audit log with
 * the actor "crosspostctl".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "crypto.h"
#include "ctl.h"
#include "db.h"
#include "err.h"
#include "password.h"
#include "users.h"

#define PASSWORD_INPUT_MAX 1024

static const char user_usage[] =
    "usage: crosspostctl user add EMAIL [--role user|operator|admin] [--name NAME] [--password-stdin]\n"
    "       crosspostctl user passwd EMAIL [--password-stdin]\n"
    "       crosspostctl user role EMAIL user|operator|admin\n"
    "       crosspostctl user disable EMAIL\n"
    "       crosspostctl user enable EMAIL\n"
    "       crosspostctl user list\n"
    "Without --password-stdin a random password is made and printed once.\n";

/* Read one line (the password) from standard input. */
static int read_password(char *out, size_t cap)
{
    size_t n;

    if (!fgets(out, (int)cap, stdin)) {
        fprintf(stderr, "crosspostctl: no password on standard input\n");
        return CP_EINVAL;
    }
    n = strlen(out);
    if (n && out[n - 1] == '\n')
        out[--n] = '\0';
    else if (n == cap - 1) {
        fprintf(stderr, "crosspostctl: the password is longer than %d characters\n", PASSWORD_MAX);
        return CP_EINVAL;
    }
    if (n && out[n - 1] == '\r')
        out[--n] = '\0';
    return 0;
}

/* A password from stdin (checked against the policy) or a random one. */
static int new_password(int from_stdin, const char *email, char *out, size_t cap, int *generated)
{
    enum password_verdict v;
    int rc;

    *generated = !from_stdin;
    if (!from_stdin)
        return crypto_token("", out, cap);
    rc = read_password(out, cap);
    if (rc)
        return rc;
    v = password_check(out, strlen(out), email);
    if (v != PASSWORD_OK) {
        fprintf(stderr, "crosspostctl: %s\n", password_verdict_text(v));
        return CP_EINVAL;
    }
    return 0;
}

static int hash_password(const char *pw, char *hash, size_t cap)
{
    int rc = password_hash(pw, strlen(pw), &password_default_params, hash, cap);

    if (rc)
        fprintf(stderr, "crosspostctl: cannot hash the password: %s\n", cp_strerror(rc));
    return rc;
}

static void audit(struct db *db, const char *action, long long target, const char *detail)
{
    struct audit_event ev = {
        .actor_label = "crosspostctl", .action = action, .target_type = "user",
        .target_id = target, .owner_id = target, .detail = detail,
    };

    audit_write(db, &ev);
}

static int find_user(struct db *db, const char *email, struct user *u)
{
    int rc = user_find_by_email(db, email, u);

    if (rc == CP_ENOTFOUND)
        fprintf(stderr, "crosspostctl: no user %s\n", email);
    else if (rc)
        fprintf(stderr, "crosspostctl: %s\n", db_error(db));
    return rc;
}

static int user_add(struct db *db, int argc, char **argv)
{
    const char *email = NULL, *name = "";
    enum user_role role = USER_ROLE_USER;
    char norm[EMAIL_MAX + 1], pw[PASSWORD_INPUT_MAX], hash[PASSWORD_HASH_MAX];
    int from_stdin = 0, generated, rc;
    long long id;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--role") && i + 1 < argc) {
            int r = user_role_parse(argv[++i]);
            if (r < 0)
                return usage_error("user add: unknown role \"%s\"", argv[i]);
            role = (enum user_role)r;
        } else if (!strcmp(argv[i], "--name") && i + 1 < argc) {
            name = argv[++i];
        } else if (!strcmp(argv[i], "--password-stdin")) {
            from_stdin = 1;
        } else if (argv[i][0] != '-' && !email) {
            email = argv[i];
        } else {
            return usage_error("user add: unexpected argument \"%s\"", argv[i]);
        }
    }
    if (!email)
        return usage_error("user add: an EMAIL is needed");
    if (user_email_normalize(email, norm)) {
        fprintf(stderr, "crosspostctl: \"%s\" is not an email address\n", email);
        return EXIT_FAILED;
    }
    if (strlen(name) > DISPLAY_NAME_MAX) {
        fprintf(stderr, "crosspostctl: the name is longer than %d characters\n", DISPLAY_NAME_MAX);
        return EXIT_FAILED;
    }
    if (new_password(from_stdin, norm, pw, sizeof pw, &generated) || hash_password(pw, hash, sizeof hash))
        return EXIT_FAILED;
    rc = user_create(db, norm, name, hash, role, &id);
    if (rc == CP_ECONFLICT) {
        fprintf(stderr, "crosspostctl: a user %s already exists\n", norm);
        return EXIT_FAILED;
    }
    if (rc) {
        fprintf(stderr, "crosspostctl: cannot create the user: %s\n", db_error(db));
        return EXIT_FAILED;
    }
    audit(db, "user.create", id, user_role_name(role));
    printf("created user %lld %s (%s)\n", id, norm, user_role_name(role));
    if (generated)
        printf("password: %s\n", pw);
    return 0;
}

static int user_passwd(struct db *db, int argc, char **argv)
{
    char pw[PASSWORD_INPUT_MAX], hash[PASSWORD_HASH_MAX];
    int from_stdin = argc == 3 && !strcmp(argv[2], "--password-stdin");
    int generated;
    struct user u;

    if (argc != 2 && !from_stdin)
        return usage_error("user passwd: EMAIL [--password-stdin]");
    if (find_user(db, argv[1], &u))
        return EXIT_FAILED;
    if (new_password(from_stdin, u.email, pw, sizeof pw, &generated) || hash_password(pw, hash, sizeof hash))
        return EXIT_FAILED;
    if (user_set_password(db, u.id, hash)) {
        fprintf(stderr, "crosspostctl: %s\n", db_error(db));
        return EXIT_FAILED;
    }
    audit(db, "user.password", u.id, "set by operator; sessions ended");
    printf("password of %s changed; its sessions are ended\n", u.email);
    if (generated)
        printf("password: %s\n", pw);
    return 0;
}

static int report_change(struct db *db, int rc, const struct user *u)
{
    if (rc == CP_ECONFLICT)
        fprintf(stderr, "crosspostctl: %s is the last enabled admin; make another admin first\n", u->email);
    else if (rc)
        fprintf(stderr, "crosspostctl: %s\n", db_error(db));
    return rc ? EXIT_FAILED : 0;
}

static int user_role(struct db *db, int argc, char **argv)
{
    struct user u;
    int role, rc;

    if (argc != 3)
        return usage_error("user role: EMAIL user|operator|admin");
    role = user_role_parse(argv[2]);
    if (role < 0)
        return usage_error("user role: unknown role \"%s\"", argv[2]);
    if (find_user(db, argv[1], &u))
        return EXIT_FAILED;
    rc = user_set_role(db, u.id, (enum user_role)role);
    if (report_change(db, rc, &u))
        return EXIT_FAILED;
    audit(db, "user.role", u.id, argv[2]);
    printf("%s is now %s; its sessions are ended\n", u.email, argv[2]);
    return 0;
}

static int user_disable(struct db *db, int argc, char **argv, int disable)
{
    struct user u;
    int rc;

    if (argc != 2)
        return usage_error("user %s: EMAIL", disable ? "disable" : "enable");
    if (find_user(db, argv[1], &u))
        return EXIT_FAILED;
    rc = user_set_disabled(db, u.id, disable);
    if (report_change(db, rc, &u))
        return EXIT_FAILED;
    audit(db, disable ? "user.disable" : "user.enable", u.id, NULL);
    printf("%s is %s\n", u.email, disable ? "disabled; its sessions are ended" : "enabled");
    return 0;
}

static int user_list(struct db *db)
{
    struct db_result *r = NULL;

    if (db_query(db, "SELECT id, email, role, IF(disabled, 'disabled', 'enabled'), "
                     "DATE_FORMAT(created_at, '%Y-%m-%d %H:%i'), "
                     "COALESCE(DATE_FORMAT(last_login_at, '%Y-%m-%d %H:%i'), '-') "
                     "FROM users ORDER BY id", NULL, 0, &r)) {
        fprintf(stderr, "crosspostctl: %s\n", db_error(db));
        return EXIT_FAILED;
    }
    printf("%-6s %-40s %-9s %-9s %-17s %s\n", "id", "email", "role", "state", "created", "last login");
    for (size_t i = 0; i < db_result_rows(r); i++)
        printf("%-6s %-40s %-9s %-9s %-17s %s\n", db_result_get(r, i, 0), db_result_get(r, i, 1),
               db_result_get(r, i, 2), db_result_get(r, i, 3), db_result_get(r, i, 4),
               db_result_get(r, i, 5));
    db_result_free(r);
    return 0;
}

int cmd_user(struct ctl *ctl, int argc, char **argv)
{
    struct db *db;
    int rc;

    if (argc < 2 || !strcmp(argv[1], "help")) {
        fputs(user_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "add") && strcmp(argv[1], "passwd") && strcmp(argv[1], "role") &&
        strcmp(argv[1], "disable") && strcmp(argv[1], "enable") && strcmp(argv[1], "list"))
        return usage_error("user: unknown subcommand \"%s\"", argv[1]);
    rc = ctl_open_db(ctl, &db);
    if (rc)
        return rc;
    if (!strcmp(argv[1], "add"))
        rc = user_add(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "passwd"))
        rc = user_passwd(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "role"))
        rc = user_role(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "disable"))
        rc = user_disable(db, argc - 1, argv + 1, 1);
    else if (!strcmp(argv[1], "enable"))
        rc = user_disable(db, argc - 1, argv + 1, 0);
    else
        rc = user_list(db);
    db_close(db);
    return rc;
}
