/*
 * pool.h - the prefork master of crosspost-api.
 *
 * The master binds the listening socket, forks the children that accept
 * on it, and then only supervises: it reaps children in a waitpid(WNOHANG)
 * loop, respawns them (slowing down when they crash in a loop), replaces
 * them all on reload, and drains them on a graceful stop.  Signal handlers
 * only set flags; the master acts on them in one loop.
 *
 *   TERM, QUIT  graceful stop: children finish their request, then exit;
 *               any still busy after api_graceful_timeout are killed
 *   INT         fast stop: children are killed at once
 *   HUP         reload: re-read the configuration, start new children,
 *               retire the old ones gracefully
 *   USR1        reopen the log file (after rotation), in every process
 */
#ifndef CP_POOL_H
#define CP_POOL_H

#include "conf.h"

struct metrics;

struct pool_ops {
    /* Serve in a child until asked to stop; returns the exit status
     * (0 = normal: stopped or recycled). */
    int (*child_main)(int listen_fd, void *arg);
    /* Re-read the configuration on SIGHUP; 0 when *confp was replaced. */
    int (*reload)(void *arg, struct conf **confp);
};

/* Bind the socket named by conf->api_listen ("unix:/path" or
 * "host:port").  A unix socket gets api_socket_mode and api_socket_group;
 * a stale socket file is replaced, a live one (another master) refused. */
int pool_listen(const struct conf *c, int *fd_out);

/* Run the master until stopped.  *confp may be replaced on reload.
 * Returns 0 after a clean stop. */
int pool_run(int listen_fd, struct conf **confp, const struct pool_ops *ops,
             void *arg, struct metrics *metrics);

#endif
