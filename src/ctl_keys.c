/*
 * crosspostctl keygen, rotate-key and connections: the keys crosspost
 * holds (the access-token signing key and the key ring that seals
 * platform credentials) and the connected accounts, from the operator's
 * shell.  Nothing here prints a secret: connections are shown without
 * their tokens, and key material only ever goes to the key files.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "connections.h"
#include "ctl.h"
#include "db.h"
#include "err.h"
#include "keyring.h"
#include "secretbox.h"
#include "token.h"
#include "users.h"

/* Rows one re-seal batch takes; each is its own short transaction. */
#define RESEAL_BATCH 100
#define LIST_PAGE 200

/* ------------------------------------------------------------- keygen -- */

static int keygen_jwt(const char *path, enum token_alg alg, int force, int explicit_path)
{
    struct buf err;
    int rc;

    buf_init(&err, ERR_MAX);
    rc = token_key_generate(alg, path, force, &err);
    if (rc == CP_ECONFLICT && explicit_path)
        fprintf(stderr, "crosspostctl: %s exists; use --force to replace it (every session ends)\n", path);
    else if (rc == CP_ECONFLICT)
        printf("%s exists; kept (keygen --force replaces it, and every session ends)\n", path);
    else if (rc)
        fprintf(stderr, "crosspostctl: keygen: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
    else
        printf("wrote %s key to %s (mode 0600)\n", alg == TOKEN_ES256 ? "ES256" : "HS256", path);
    buf_free(&err);
    return rc == CP_ECONFLICT && !explicit_path ? 0 : rc;
}

/* A key ring is never replaced: every sealed credential would be lost. */
static int keygen_ring(const char *path, int explicit_path)
{
    int rc = keyring_create(path);

    if (rc == CP_ECONFLICT && explicit_path)
        fprintf(stderr, "crosspostctl: %s exists; `crosspostctl rotate-key` adds a key to it\n", path);
    else if (rc == CP_ECONFLICT)
        printf("%s exists; kept (rotate-key adds a key to it)\n", path);
    else if (rc)
        fprintf(stderr, "crosspostctl: keygen: cannot create %s: %s\n", path, cp_strerror(rc));
    else
        printf("wrote key ring to %s (mode 0600, key 1)\n", path);
    return rc == CP_ECONFLICT && !explicit_path ? 0 : rc;
}

int cmd_keygen(struct ctl *ctl, int argc, char **argv)
{
    enum token_alg alg = TOKEN_HS256;
    const char *path = NULL;
    int force = 0, secrets = 0, es256 = 0, rc;
    struct conf *c;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--es256"))
            es256 = 1;
        else if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (!strcmp(argv[i], "--secrets"))
            secrets = 1;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            return usage_error("keygen: unexpected argument \"%s\"", argv[i]);
    }
    if (es256)
        alg = TOKEN_ES256;
    if (secrets && (es256 || force))
        return usage_error("keygen --secrets takes no %s: a key ring is grown by rotate-key, never replaced",
                           es256 ? "--es256" : "--force");
    if (path && secrets)
        return keygen_ring(path, 1) ? EXIT_FAILED : 0;
    if (path)
        return keygen_jwt(path, alg, force, 1) ? EXIT_FAILED : 0;

    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    if (secrets) {
        if (!c->secrets_key_file[0])
            return usage_error("keygen --secrets: secrets_key_file is not set; name a FILE or set it");
        return keygen_ring(c->secrets_key_file, 1) ? EXIT_FAILED : 0;
    }
    /* No file named: make whichever of the configured keys is missing. */
    rc = 0;
    if (c->jwt_key_file[0])
        rc |= keygen_jwt(c->jwt_key_file, alg, force, 0) != 0;
    else
        printf("jwt_key_file is not set; no signing key made\n");
    if (c->secrets_key_file[0])
        rc |= keygen_ring(c->secrets_key_file, 0) != 0;
    else
        printf("secrets_key_file is not set; no key ring made\n");
    return rc ? EXIT_FAILED : 0;
}

/* --------------------------------------------------------- rotate-key -- */

static void audit_rotation(struct db *db, int failed, const char *detail)
{
    struct audit_event ev = {
        .actor_label = "crosspostctl", .action = "secrets.rotate_key", .failed = failed,
        .detail = detail,
    };

    audit_write(db, &ev);
}

int cmd_rotate_key(struct ctl *ctl, int argc, char **argv)
{
    struct secretbox *sb = NULL;
    struct db *db = NULL;
    struct conf *c;
    struct buf err;
    size_t total = 0, done = 0, left = 0, last_left = (size_t)-1;
    unsigned added = 0;
    char detail[160];
    int reseal_only = 0, status = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reseal-only"))
            reseal_only = 1;
        else
            return usage_error("rotate-key: unexpected argument \"%s\"", argv[i]);
    }
    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    if (!c->secrets_key_file[0])
        return usage_error("rotate-key: secrets_key_file is not set");
    /* The database first: a key added while nothing can be re-sealed
     * would only have to be resumed. */
    status = ctl_open_db(ctl, &db);
    if (status)
        return status;
    buf_init(&err, ERR_MAX);
    if (!reseal_only) {
        rc = keyring_add_key(c->secrets_key_file, &added, &err);
        if (rc) {
            fprintf(stderr, "crosspostctl: rotate-key: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
            status = EXIT_FAILED;
            goto out;
        }
        printf("added key %u to %s\n", added, c->secrets_key_file);
    }
    rc = secretbox_open_path(c->secrets_key_file, &sb, &err);
    if (rc) {
        fprintf(stderr, "crosspostctl: rotate-key: %s\n", err.len ? buf_str(&err) : cp_strerror(rc));
        status = EXIT_FAILED;
        goto out;
    }
    for (;;) {
        rc = conn_reseal_batch(db, sb, RESEAL_BATCH, &done, &left);
        total += done;
        if (rc) {
            fprintf(stderr, "crosspostctl: rotate-key: %s\n",
                    rc == CP_EINVAL ? "the secrets of a connection do not open with this key ring "
                                      "(named above); nothing more was re-sealed"
                                    : db_error(db)[0] ? db_error(db) : cp_strerror(rc));
            status = EXIT_FAILED;
            break;
        }
        printf("re-sealed %zu of %zu connections\n", total, total + left);
        fflush(stdout);
        if (left == 0)
            break;
        if (done == 0 && left >= last_left) {
            fprintf(stderr, "crosspostctl: rotate-key: %zu connections are still sealed under older keys "
                            "and could not be re-sealed; run rotate-key --reseal-only again\n", left);
            status = EXIT_FAILED;
            break;
        }
        last_left = left;
    }
    if (!status)
        printf("every connection is sealed under key %u\n", secretbox_current_id(sb));
    snprintf(detail, sizeof detail, "%s%u; re-sealed %zu connections; %zu left",
             reseal_only ? "re-seal only, key " : "added key ", reseal_only ? secretbox_current_id(sb) : added,
             total, left);
    audit_rotation(db, status != 0, detail);
out:
    secretbox_free(sb);
    buf_free(&err);
    db_close(db);
    return status;
}

/* -------------------------------------------------------- connections -- */

static const char connections_usage[] =
    "usage: crosspostctl connections list [--user EMAIL|ID] [--platform P] [--status S]\n"
    "       crosspostctl connections show ID\n"
    "Platforms: tiktok instagram youtube x.  Statuses: active expiring needs_reauth error disabled.\n"
    "Times are UTC.  Tokens and cookies are never shown.\n";

/* A row id: 1 or more, in decimal. */
static int parse_id(const char *s, long long *out)
{
    return ctl_parse_number(s, 1, LLONG_MAX, out);
}

static const char *utc(long long ms, char *out, size_t cap)
{
    struct tm tm;
    time_t sec = (time_t)(ms / 1000);

    if (ms <= 0 || !gmtime_r(&sec, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, cap, "-");
    return out;
}

/* The owner's email (or their id, when the row cannot be read). */
static const char *owner_name(struct db *db, long long id, struct user *cache)
{
    if (cache->id != id && user_find_by_id(db, id, cache) != 0) {
        memset(cache, 0, sizeof *cache);
        snprintf(cache->email, sizeof cache->email, "user %lld", id);
        cache->id = id;
    }
    return cache->email;
}

static int connections_list(struct db *db, struct conf *c, int argc, char **argv)
{
    struct conn_scope all = { 0, 1 };
    struct conn_filter f = { .limit = LIST_PAGE };
    struct connection *rows;
    struct user owner = { 0 };
    const char *who = NULL;
    int more = 1, rc;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        const struct platform *p;

        if (!val)
            return usage_error("connections list: %s needs a value", opt);
        if (!strcmp(opt, "--user"))
            who = val;
        else if (!strcmp(opt, "--platform")) {
            if (!(p = platform_find(val)))
                return usage_error("connections list: unknown platform \"%s\"", val);
            f.have_platform = 1;
            f.platform = p->id;
        } else if (!strcmp(opt, "--status")) {
            if (conn_status_parse(val, &f.status))
                return usage_error("connections list: unknown status \"%s\"", val);
            f.have_status = 1;
        } else
            return usage_error("connections list: unexpected argument \"%s\"", opt);
        i++;
    }
    if (who) {
        long long id;

        rc = parse_id(who, &id) == 0 ? user_find_by_id(db, id, &owner) : user_find_by_email(db, who, &owner);
        if (rc == CP_ENOTFOUND) {
            fprintf(stderr, "crosspostctl: no user %s\n", who);
            return EXIT_FAILED;
        }
        if (rc)
            return ctl_db_failed(db);
        f.user_id = owner.id;
    }
    rows = calloc(LIST_PAGE, sizeof *rows);
    if (!rows)
        return EXIT_FAILED;
    printf("%-8s %-28s %-9s %-6s %-24s %-12s %-19s %-19s %s\n", "id", "owner", "platform", "auth",
           "account", "status", "token expires", "next refresh", "last error");
    while (more) {
        size_t n = 0;

        rc = conn_list(db, c, &all, &f, rows, &n, &more);
        if (rc) {
            free(rows);
            return ctl_db_failed(db);
        }
        for (size_t i = 0; i < n; i++) {
            const struct connection *k = &rows[i];
            const struct platform *p = platform_get(k->platform);
            char account[300], expires[32], due[32];

            snprintf(account, sizeof account, "%s%s", k->username[0] ? "@" : "",
                     k->username[0] ? k->username : k->remote_id);
            printf("%-8lld %-28s %-9s %-6s %-24s %-12s %-19s %-19s %.60s\n", k->id,
                   owner_name(db, k->user_id, &owner), p ? p->name : "?", auth_kind_name(k->auth_kind),
                   account, conn_status_name(k->status), utc(k->access_expires_at, expires, sizeof expires),
                   utc(k->refresh_due_at, due, sizeof due), k->last_error[0] ? k->last_error : "-");
        }
        if (n)
            f.after_id = rows[n - 1].id;
    }
    free(rows);
    return 0;
}

static int connections_show(struct db *db, struct conf *c, int argc, char **argv)
{
    struct connection *k;
    struct user owner = { 0 };
    const struct platform *p;
    char t[8][32];
    long long id;
    int rc;

    if (argc != 2)
        return usage_error("connections show: one connection ID is needed");
    if (parse_id(argv[1], &id))
        return usage_error("connections show: \"%s\" is not a connection id", argv[1]);
    k = calloc(1, sizeof *k);
    if (!k)
        return EXIT_FAILED;
    rc = conn_get(db, c, NULL, id, k);
    if (rc == CP_ENOTFOUND) {
        fprintf(stderr, "crosspostctl: no connection %lld\n", id);
        free(k);
        return EXIT_FAILED;
    }
    if (rc) {
        free(k);
        return ctl_db_failed(db);
    }
    p = platform_get(k->platform);
    printf("%-25s %lld\n", "id", k->id);
    printf("%-25s %s (user %lld)\n", "owner", owner_name(db, k->user_id, &owner), k->user_id);
    printf("%-25s %s\n", "platform", p ? p->name : "?");
    printf("%-25s %s\n", "auth_kind", auth_kind_name(k->auth_kind));
    printf("%-25s %s\n", "remote_id", k->remote_id);
    printf("%-25s %s\n", "username", k->username[0] ? k->username : "-");
    printf("%-25s %s\n", "display_name", k->display_name[0] ? k->display_name : "-");
    printf("%-25s %s\n", "status", conn_status_name(k->status));
    printf("%-25s %s\n", "enabled", k->enabled ? "yes" : "no");
    if (k->sync_interval_s)
        printf("%-25s %lld s\n", "sync_interval", k->sync_interval_s);
    else
        printf("%-25s default (%lld s)\n", "sync_interval", c->sync_interval / 1000);
    printf("%-25s %s\n", "scopes", k->scopes[0] ? k->scopes : "-");
    printf("%-25s %s\n", "has_refresh_token", k->has_refresh_token ? "yes" : "no");
    printf("%-25s %u\n", "secrets_key_id", k->secrets_key_id);
    printf("%-25s %s\n", "token_expires_at", utc(k->access_expires_at, t[0], sizeof t[0]));
    printf("%-25s %s\n", "refresh_token_expires_at", utc(k->refresh_expires_at, t[1], sizeof t[1]));
    printf("%-25s %s\n", "next_refresh_at", utc(k->refresh_due_at, t[2], sizeof t[2]));
    printf("%-25s %s\n", "last_refreshed_at", utc(k->token_refreshed_at, t[3], sizeof t[3]));
    printf("%-25s %s\n", "last_checked_at", utc(k->last_checked_at, t[4], sizeof t[4]));
    printf("%-25s %s\n", "last_error", k->last_error[0] ? k->last_error : "-");
    printf("%-25s %s\n", "last_error_at", utc(k->last_error_at, t[5], sizeof t[5]));
    printf("%-25s %s\n", "created_at", utc(k->created_at, t[6], sizeof t[6]));
    printf("%-25s %s\n", "updated_at", utc(k->updated_at, t[7], sizeof t[7]));
    printf("%-25s %s\n", "remote_meta", k->remote_meta);
    free(k);
    return 0;
}

int cmd_connections(struct ctl *ctl, int argc, char **argv)
{
    struct db *db = NULL;
    struct conf *c;
    int rc;

    if (argc < 2 || !strcmp(argv[1], "help")) {
        fputs(connections_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "show") != 0)
        return usage_error("connections: unknown subcommand \"%s\"", argv[1]);
    c = ctl_conf(ctl);
    if (!c)
        return EXIT_USAGE;
    rc = ctl_open_db(ctl, &db);
    if (rc)
        return rc;
    if (!strcmp(argv[1], "list"))
        rc = connections_list(db, c, argc - 1, argv + 1);
    else
        rc = connections_show(db, c, argc - 1, argv + 1);
    db_close(db);
    return rc;
}
