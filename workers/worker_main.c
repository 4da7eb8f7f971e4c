/*
 * crosspost-worker - runs the jobs of the queue.
 *
 * The supervisor (supervisor.c) forks a scheduler and the worker
 * processes, and watches over them; see supervisor.h for the signals and
 * docs/OPERATIONS.md for running it.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "supervisor.h"

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: crosspost-worker [--config FILE] [--version]\n"
            "  --config FILE  configuration file (else $CROSSPOST_CONFIG, else %s/crosspost/crosspost.conf)\n"
            "  --version      print the version and exit\n"
            "Signals: TERM/QUIT graceful stop, INT fast stop, HUP reload, USR1 reopen logs.\n",
            SYSCONFDIR);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL;
    struct conf *conf = NULL;
    char *pid_file = NULL;
    struct buf err;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'V': printf("crosspost-worker %s\n", PACKAGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    buf_init(&err, 1024);
    if (conf_load(&conf, config_path, &err) || supervisor_check_conf(conf, &err)) {
        fprintf(stderr, "crosspost-worker: %s\n", buf_str(&err));
        buf_free(&err);
        conf_free(conf);
        return 2;
    }
    buf_free(&err);
    log_init("crosspost-worker", (int)conf->log_level);
    if (conf->log_file[0] && log_open_file(conf->log_file)) {
        fprintf(stderr, "crosspost-worker: cannot open log_file %s: %s\n", conf->log_file, strerror(errno));
        conf_free(conf);
        return 1;
    }
    if (conf->worker_pid_file[0]) {
        FILE *fp = fopen(conf->worker_pid_file, "w");
        if (!fp) {
            log_syserr("worker_pid_file %s", conf->worker_pid_file);
            conf_free(conf);
            return 1;
        }
        fprintf(fp, "%ld\n", (long)getpid());
        fclose(fp);
        pid_file = strdup(conf->worker_pid_file);
    }

    rc = supervisor_run(config_path, &conf);

    /* The pid file written at start, even if a reload changed the key. */
    if (pid_file)
        unlink(pid_file);
    free(pid_file);
    conf_free(conf);
    return rc ? 1 : 0;
}
