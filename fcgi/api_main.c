/*
 * crosspost-api - the FastCGI responder behind nginx.
 *
 * The master (pool.c) binds the socket and supervises the children; each
 * child runs api_child() below: wait for a connection, serve it, repeat,
 * until told to stop or its request budget is spent.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <sys/epoll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "cache.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "pool.h"
#include "token.h"
#include "request.h"
#include "handlers.h"

struct api {
    const char *config_path;
    struct conf *conf;
    struct metrics *metrics;
    struct migration_set *migrations;
    struct token_key *token_key;
};

/* Tolerated clock skew between API hosts when checking token times. */
#define TOKEN_LEEWAY_S 30

static volatile sig_atomic_t child_stop, child_reopen;

static void child_on_signal(int sig)
{
    if (sig == SIGUSR1)
        child_reopen = 1;
    else
        child_stop = 1;
}

/*
 * End a request and close its connection.  libfcgi's own close waits for
 * nginx to hang up first (a lingering close), which keeps the child idle
 * for a round trip on every request.  Once all of the request has been
 * read there is nothing left to linger for, so the connection is detached
 * and closed at once.
 */
static void finish_request(FCGX_Request *fcgx)
{
    char scratch[4096];
    int budget = 16;

    while (budget-- > 0 && FCGX_GetStr(scratch, sizeof scratch, fcgx->in) > 0)
        ;
    if (FCGX_HasSeenEOF(fcgx->in))
        FCGX_Detach(fcgx);
    FCGX_Finish_r(fcgx);
}

static int api_child(int listen_fd, void *arg)
{
    struct api *api = arg;
    struct app app = {
        .conf = api->conf, .metrics = api->metrics, .migrations = api->migrations,
        .token_key = api->token_key,
        .token_policy = {
            .issuer = api->conf->public_url,
            .audience = api->conf->jwt_audience,
            .ttl_s = api->conf->access_token_ttl / 1000,
            .leeway_s = TOKEN_LEEWAY_S,
        },
    };
    long long served = 0, budget = api->conf->api_max_requests;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
    int ep;
    struct sigaction sa;
    sigset_t block, waiting;
    FCGX_Request fcgx;
    int status = 0;

    if (FCGX_Init() != 0) {
        log_error("FCGX_Init failed");
        return 1;
    }
    /* Installed after FCGX_Init, which sets handlers of its own. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Stop signals wait while a request is served and are taken only in
     * epoll_pwait(), so an in-flight request always finishes. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waiting);

    if (FCGX_InitRequest(&fcgx, listen_fd, 0) != 0) {
        log_error("FCGX_InitRequest failed");
        return 1;
    }
    /* EPOLLEXCLUSIVE wakes one waiting child per connection, not all. */
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        log_syserr("epoll");
        return 1;
    }
    while (!child_stop) {
        struct epoll_event got;
        int rc = epoll_pwait(ep, &got, 1, -1, &waiting);

        if (child_reopen) {
            child_reopen = 0;
            if (api->conf->log_file[0])
                log_open_file(api->conf->log_file);
        }
        if (rc <= 0 || child_stop)
            continue;
        rc = FCGX_Accept_r(&fcgx);
        if (rc < 0) {
            /* Another child took the connection first. */
            if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR)
                continue;
            log_error("accept failed: %s", strerror(-rc));
            status = 1;
            break;
        }
        request_handle(&app, &fcgx);
        finish_request(&fcgx);
        if (budget && ++served >= budget) {
            log_debug("recycling after %lld requests", served);
            break;
        }
    }
    close(ep);
    app_close(&app);
    return status;
}

/* The signing key: without a strong one no access token can be trusted,
 * so the service does not start (or, on reload, keeps the old key). */
static int load_token_key(struct api *api, const struct conf *c)
{
    struct token_key *key = NULL;
    struct buf err;
    int rc;

    buf_init(&err, 1024);
    rc = token_key_load(c->jwt_key_file, &key, &err);
    if (rc) {
        log_error("jwt_key_file %s: %s (create one with: crosspostctl keygen)", c->jwt_key_file,
                  err.len ? buf_str(&err) : cp_strerror(rc));
        fprintf(stderr, "crosspost-api: jwt_key_file %s: %s (create one with: crosspostctl keygen)\n",
                c->jwt_key_file, err.len ? buf_str(&err) : cp_strerror(rc));
        buf_free(&err);
        return rc;
    }
    buf_free(&err);
    token_key_free(api->token_key);
    api->token_key = key;
    return 0;
}

static void load_migrations(struct api *api)
{
    struct buf err;

    migration_set_free(api->migrations);
    api->migrations = NULL;
    buf_init(&err, 1024);
    if (migration_set_load(api->conf->sql_dir, &api->migrations, &err))
        log_error("schema files in %s: %s (/readyz will report not ready)",
                  api->conf->sql_dir, buf_str(&err));
    buf_free(&err);
}

static int api_reload(void *arg, struct conf **confp)
{
    struct api *api = arg;
    struct conf *fresh = NULL;
    struct buf err;
    int rc;

    buf_init(&err, 1024);
    rc = conf_load(&fresh, api->config_path, &err);
    if (rc) {
        log_error("configuration: %s", buf_str(&err));
        buf_free(&err);
        return rc;
    }
    buf_free(&err);
    rc = load_token_key(api, fresh);
    if (rc) {
        conf_free(fresh);
        return rc;
    }
    /* Children still running under the old configuration have their own
     * copy (fork), so the master's can go. */
    conf_free(*confp);
    *confp = fresh;
    api->conf = fresh;
    if (fresh->log_file[0])
        log_open_file(fresh->log_file);
    load_migrations(api);
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: crosspost-api [--config FILE] [--check] [--version]\n"
            "  --config FILE  configuration file (else $CROSSPOST_CONFIG, else %s/crosspost/crosspost.conf)\n"
            "  --check        load and validate the configuration, then exit\n"
            "  --version      print the version and exit\n"
            "Signals: TERM/QUIT graceful stop, INT fast stop, HUP reload, USR1 reopen logs.\n",
            SYSCONFDIR);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check", no_argument, NULL, 'k' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct api api = { 0 };
    struct buf err;
    char *bound = NULL;
    int opt, check = 0, fd = -1, rc;

    while ((opt = getopt_long(argc, argv, "c:kVh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': api.config_path = optarg; break;
        case 'k': check = 1; break;
        case 'V': printf("crosspost-api %s\n", PACKAGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    buf_init(&err, 1024);
    if (conf_load(&api.conf, api.config_path, &err)) {
        fprintf(stderr, "crosspost-api: %s\n", buf_str(&err));
        buf_free(&err);
        return 2;
    }
    buf_free(&err);
    if (load_token_key(&api, api.conf)) {
        conf_free(api.conf);
        return 2;
    }
    if (check) {
        printf("configuration ok\n");
        token_key_free(api.token_key);
        conf_free(api.conf);
        return 0;
    }
    log_init("crosspost-api", (int)api.conf->log_level);
    if (api.conf->log_file[0] && log_open_file(api.conf->log_file)) {
        fprintf(stderr, "crosspost-api: cannot open log_file %s: %s\n", api.conf->log_file, strerror(errno));
        return 1;
    }
    load_migrations(&api);
    if (metrics_create(api_nroutes, &api.metrics)) {
        log_error("cannot map the shared metrics region");
        return 1;
    }
    rc = pool_listen(api.conf, &fd);
    if (rc) {
        fprintf(stderr, "crosspost-api: cannot listen on %s: %s\n", api.conf->api_listen, cp_strerror(rc));
        return 1;
    }
    /* What was bound is cleaned up at exit, even if a reload changes
     * api_listen meanwhile. */
    bound = strdup(api.conf->api_listen);
    if (api.conf->api_pid_file[0]) {
        FILE *fp = fopen(api.conf->api_pid_file, "w");
        if (!fp) {
            log_syserr("api_pid_file %s", api.conf->api_pid_file);
            return 1;
        }
        fprintf(fp, "%ld\n", (long)getpid());
        fclose(fp);
    }

    static const struct pool_ops ops = { api_child, api_reload };
    rc = pool_run(fd, &api.conf, &ops, &api, api.metrics);

    close(fd);
    if (bound && !strncmp(bound, "unix:", 5))
        unlink(bound + 5);
    free(bound);
    if (api.conf->api_pid_file[0])
        unlink(api.conf->api_pid_file);
    metrics_destroy(api.metrics);
    migration_set_free(api.migrations);
    token_key_free(api.token_key);
    conf_free(api.conf);
    return rc ? 1 : 0;
}
