#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crashloop.h"
#include "err.h"
#include "log.h"
#include "sigflags.h"
#include "metrics.h"
#include "pool.h"

#define MAX_CHILDREN 256
#define LISTEN_BACKLOG 1024

static volatile sig_atomic_t got_stop_graceful, got_stop_fast, got_reload, got_chld, got_reopen;

static void on_signal(int sig)
{
    switch (sig) {
    case SIGTERM:
    case SIGQUIT: got_stop_graceful = 1; break;
    case SIGINT: got_stop_fast = 1; break;
    case SIGHUP: got_reload = 1; break;
    case SIGCHLD: got_chld = 1; break;
    case SIGUSR1: got_reopen = 1; break;
    }
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ socket -- */

static int listen_unix(const struct conf *c, const char *path, int *fd_out)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof sa.sun_path) {
        log_error("api_listen: unix socket path is longer than %zu bytes: %s", sizeof sa.sun_path - 1, path);
        return CP_EINVAL;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error("api_listen: %s exists and is not a socket", path);
            return CP_EINVAL;
        }
        /* A socket that accepts belongs to a running master. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            log_error("api_listen: %s is in use by a running crosspost-api", path);
            return CP_ECONFLICT;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        log_syserr("socket");
        return CP_EIO;
    }
    /* Bind with a tight umask so the socket is never briefly world-open. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0) {
        log_syserr("bind %s", path);
        close(fd);
        return CP_EIO;
    }
    if (c->api_socket_group[0]) {
        struct group *gr = getgrnam(c->api_socket_group);
        if (!gr || chown(path, (uid_t)-1, gr->gr_gid) < 0) {
            log_error("api_socket_group: cannot give %s to group %s", path, c->api_socket_group);
            close(fd);
            unlink(path);
            return CP_EINVAL;
        }
    }
    if (chmod(path, (mode_t)c->api_socket_mode) < 0) {
        log_syserr("chmod %s", path);
        close(fd);
        unlink(path);
        return CP_EIO;
    }
    *fd_out = fd;
    return 0;
}

static int listen_tcp(const char *spec, int *fd_out)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, one = 1, rc;

    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host) {
        log_error("api_listen: expected unix:/path or host:port, got %s", spec);
        return CP_EINVAL;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc) {
        log_error("api_listen: %s: %s", spec, gai_strerror(rc));
        return CP_EINVAL;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_syserr("api_listen: cannot bind %s", spec);
        return CP_EIO;
    }
    *fd_out = fd;
    return 0;
}

int pool_listen(const struct conf *c, int *fd_out)
{
    int fd = -1, rc;

    *fd_out = -1;
    if (!strncmp(c->api_listen, "unix:", 5))
        rc = listen_unix(c, c->api_listen + 5, &fd);
    else
        rc = listen_tcp(c->api_listen, &fd);
    if (rc)
        return rc;
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        log_syserr("listen %s", c->api_listen);
        close(fd);
        return CP_EIO;
    }
    /* Children wait in poll() and then accept; non-blocking so a child
     * that loses the race for a connection goes back to waiting instead
     * of sleeping in accept() where a stop signal cannot reach it. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *fd_out = fd;
    return 0;
}

/* ------------------------------------------------------------ master -- */

enum pool_state { POOL_RUNNING, POOL_STOPPING };

struct child {
    pid_t pid;
    unsigned generation;
};

struct pool {
    struct conf **confp;
    const struct pool_ops *ops;
    void *arg;
    int listen_fd;
    struct metrics *metrics;
    enum pool_state state;
    unsigned generation;
    struct child children[2 * MAX_CHILDREN];   /* room for two generations */
    int nchildren;
    struct crashloop crashes;                  /* respawn throttle */
    long long stop_deadline;
    sigset_t wait_mask;                        /* mask while waiting */
};

static int count_generation(const struct pool *p, unsigned gen)
{
    int n = 0;

    for (int i = 0; i < p->nchildren; i++)
        if (p->children[i].generation == gen)
            n++;
    return n;
}

static void spawn_one(struct pool *p)
{
    pid_t pid;

    if (p->nchildren >= (int)(sizeof p->children / sizeof p->children[0]))
        return;
    pid = fork();
    if (pid < 0) {
        log_syserr("fork");
        crashloop_hold_until(&p->crashes, now_ms() + 1000);
        return;
    }
    if (pid == 0) {
        sigset_t none;
        struct sigaction dfl;

        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        for (int s = 1; s < NSIG; s++)
            if (s != SIGKILL && s != SIGSTOP)
                sigaction(s, &dfl, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        _exit(p->ops->child_main(p->listen_fd, p->arg));
    }
    p->children[p->nchildren].pid = pid;
    p->children[p->nchildren].generation = p->generation;
    p->nchildren++;
}

/* Keep the current generation at its configured size, unless a crash
 * loop has pushed the next respawn into the future. */
static void spawn_missing(struct pool *p)
{
    int want = (int)(*p->confp)->api_children;

    if (p->state != POOL_RUNNING || !crashloop_may_spawn(&p->crashes, now_ms()))
        return;
    while (count_generation(p, p->generation) < want) {
        int before = p->nchildren;
        spawn_one(p);
        if (p->nchildren == before)
            break;
        /* After a crash loop, bring children back one at a time. */
        if (crashloop_throttled(&p->crashes))
            break;
    }
    metrics_set_children(p->metrics, count_generation(p, p->generation));
}

/* Forget crashes older than the window; once none is left the crash loop
 * is over and children are respawned at full speed again. */
static void prune_crashes(struct pool *p)
{
    if (crashloop_prune(&p->crashes, now_ms(), (*p->confp)->api_crash_window))
        log_info("crash loop over; respawning at full speed");
}

static void note_crash(struct pool *p)
{
    const struct conf *c = *p->confp;
    int backoff_ms;

    prune_crashes(p);
    backoff_ms = crashloop_note(&p->crashes, now_ms(), c->api_crash_window, c->api_crash_limit);
    if (backoff_ms)
        log_error("children are crashing: %d exits in %llds; next respawn in %d ms",
                  crashloop_exits(&p->crashes), c->api_crash_window / 1000, backoff_ms);
}

static void reap(struct pool *p)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int i, crashed;

        for (i = 0; i < p->nchildren; i++)
            if (p->children[i].pid == pid)
                break;
        if (i == p->nchildren)
            continue;
        crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (crashed && WIFSIGNALED(status))
            log_error("child %ld killed by signal %d", (long)pid, WTERMSIG(status));
        else if (crashed)
            log_error("child %ld exited with status %d", (long)pid, WEXITSTATUS(status));
        else
            log_debug("child %ld exited", (long)pid);
        if (p->state == POOL_RUNNING && p->children[i].generation == p->generation) {
            metrics_child_exit(p->metrics, crashed);
            if (crashed)
                note_crash(p);
        }
        p->children[i] = p->children[--p->nchildren];
    }
}

static void signal_children(struct pool *p, int sig, int only_old)
{
    for (int i = 0; i < p->nchildren; i++)
        if (!only_old || p->children[i].generation != p->generation)
            kill(p->children[i].pid, sig);
}

static void do_reload(struct pool *p)
{
    char *old_listen = strdup((*p->confp)->api_listen);

    if (p->ops->reload(p->arg, p->confp) != 0) {
        log_error("reload failed; keeping the running configuration");
        free(old_listen);
        return;
    }
    if (old_listen && strcmp(old_listen, (*p->confp)->api_listen))
        log_warn("api_listen changed to %s: it takes effect after a restart", (*p->confp)->api_listen);
    free(old_listen);
    log_set_level((int)(*p->confp)->log_level);
    p->generation++;
    crashloop_reset(&p->crashes);
    spawn_missing(p);
    /* The new children accept now; the old ones finish what they hold. */
    signal_children(p, SIGTERM, 1);
    log_info("reloaded: %lld children started", (*p->confp)->api_children);
}

static void begin_stop(struct pool *p, int fast)
{
    if (p->state != POOL_STOPPING || fast) {
        p->state = POOL_STOPPING;
        p->stop_deadline = now_ms() + (fast ? 0 : (*p->confp)->api_graceful_timeout);
        log_info("%s stop: %d children", fast ? "fast" : "graceful", p->nchildren);
        signal_children(p, fast ? SIGKILL : SIGTERM, 0);
    }
    metrics_set_children(p->metrics, 0);
}

static void install_handlers(struct pool *p)
{
    static const int sigs[] = { SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGCHLD, SIGUSR1 };

    /* Signals are only delivered inside ppoll(), so flags are read
     * without races. */
    sigflags_install(sigs, sizeof sigs / sizeof sigs[0], on_signal, &p->wait_mask);
}

int pool_run(int listen_fd, struct conf **confp, const struct pool_ops *ops,
             void *arg, struct metrics *metrics)
{
    struct pool *p = calloc(1, sizeof *p);

    if (!p)
        return CP_ENOMEM;
    p->confp = confp;
    p->ops = ops;
    p->arg = arg;
    p->listen_fd = listen_fd;
    p->metrics = metrics;
    install_handlers(p);
    log_info("pool started: %lld children on %s", (*confp)->api_children, (*confp)->api_listen);

    for (;;) {
        long long t, respawn_at, wait_ms = 1000;
        struct timespec ts;

        if (got_chld) {
            got_chld = 0;
            reap(p);
        }
        if (got_stop_fast) {
            got_stop_fast = 0;
            begin_stop(p, 1);
        }
        if (got_stop_graceful) {
            got_stop_graceful = 0;
            begin_stop(p, 0);
        }
        if (got_reload) {
            got_reload = 0;
            if (p->state == POOL_RUNNING)
                do_reload(p);
        }
        if (got_reopen) {
            got_reopen = 0;
            if ((*confp)->log_file[0])
                log_open_file((*confp)->log_file);
            signal_children(p, SIGUSR1, 0);
        }
        if (p->state == POOL_STOPPING) {
            if (p->nchildren == 0)
                break;
            if (now_ms() >= p->stop_deadline) {
                log_warn("graceful stop timed out; killing %d children", p->nchildren);
                signal_children(p, SIGKILL, 0);
                p->stop_deadline = now_ms() + 60000;
            }
        } else {
            prune_crashes(p);
            spawn_missing(p);
        }

        t = now_ms();
        respawn_at = crashloop_respawn_at(&p->crashes);
        if (p->state == POOL_RUNNING && respawn_at > t && respawn_at - t < wait_ms)
            wait_ms = respawn_at - t;
        if (p->state == POOL_STOPPING && p->stop_deadline - t < wait_ms)
            wait_ms = p->stop_deadline > t ? p->stop_deadline - t : 0;
        ts.tv_sec = wait_ms / 1000;
        ts.tv_nsec = (wait_ms % 1000) * 1000000;
        ppoll(NULL, 0, &ts, &p->wait_mask);
    }
    log_info("pool stopped");
    free(p);
    return 0;
}
