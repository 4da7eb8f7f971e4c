#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "log.h"

/*
 * A small HTTP/1.1 server on 127.0.0.1 with an ephemeral port, started
 * for each test.  Each path is one canned behaviour; the server records
 * what it saw of the last request so tests can check what was sent.
 * Everything is bounded: connections, requests per connection, sizes,
 * and every socket read times out.
 */

#define SRV_MAX_CONNS 16
#define SRV_MAX_REQUESTS 32
#define SRV_HEAD_MAX 16384
#define SRV_BODY_MAX (1 << 20)
#define SRV_SLOW_MS 1500

struct server {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_t conn_threads[SRV_MAX_CONNS];
    int conn_fds[SRV_MAX_CONNS];     /* -1 once closed */
    int connections;
    int requests;
    /* the last request */
    char method[16];
    char target[512];
    char head[SRV_HEAD_MAX + 1];     /* header lines, without the request line */
    size_t body_len;
};

struct srv_request {
    char method[16];
    char target[512];
    char path[512];
    char *head;
    char *body;
    size_t body_len;
};

struct srv_conn {
    struct server *srv;
    int slot;
    int fd;
    char in[SRV_HEAD_MAX + 1];
    size_t len;
};

static char pattern_byte(size_t i)
{
    return (char)('a' + i % 26);
}

static unsigned char source_byte(size_t i)
{
    return (unsigned char)((i * 131 + 7) & 0xff);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_text(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int send_text(int fd, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text)
        return -1;
    return send_all(fd, text, (size_t)n);
}

static int send_pattern(int fd, size_t n)
{
    char chunk[8192];
    size_t done = 0;

    while (done < n) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        for (size_t i = 0; i < k; i++)
            chunk[i] = pattern_byte(done + i);
        if (send_all(fd, chunk, k))
            return -1;
        done += k;
    }
    return 0;
}

static int send_pattern_chunked(int fd, size_t n)
{
    char chunk[4096];
    size_t done = 0;

    while (done < n) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        for (size_t i = 0; i < k; i++)
            chunk[i] = pattern_byte(done + i);
        if (send_text(fd, "%zx\r\n", k) || send_all(fd, chunk, k) || send_text(fd, "\r\n"))
            return -1;
        done += k;
    }
    return send_text(fd, "0\r\n\r\n");
}

/* The value of header name in a block of "Name: value\r\n" lines. */
static int find_header(const char *head, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    const char *p = head;
    int found = 0;

    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t line = eol ? (size_t)(eol - p) : strlen(p);
        if (line > n && p[n] == ':' && strncasecmp(p, name, n) == 0) {
            const char *v = p + n + 1;
            size_t vlen = line - n - 1;
            while (vlen && (*v == ' ' || *v == '\t')) {
                v++;
                vlen--;
            }
            snprintf(out, size, "%.*s", (int)vlen, v);
            found = 1;
        }
        p = eol ? eol + 2 : NULL;
    }
    return found;
}

static size_t query_n(const char *target, size_t fallback)
{
    const char *q = strstr(target, "?n=");

    if (!q)
        q = strstr(target, "&n=");
    return q ? (size_t)strtoull(q + 3, NULL, 10) : fallback;
}

static int conn_fill(struct srv_conn *c)
{
    ssize_t r;

    if (c->len >= SRV_HEAD_MAX)
        return -1;
    do
        r = recv(c->fd, c->in + c->len, SRV_HEAD_MAX - c->len, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return -1;
    c->len += (size_t)r;
    c->in[c->len] = '\0';
    return 0;
}

static void srv_request_free(struct srv_request *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int read_request(struct srv_conn *c, struct srv_request *r)
{
    char *end, *line_end, value[64];
    size_t head_len, used, have;
    long long cl = 0;

    memset(r, 0, sizeof *r);
    c->in[c->len] = '\0';
    while (!(end = strstr(c->in, "\r\n\r\n")))
        if (conn_fill(c))
            return -1;
    head_len = (size_t)(end - c->in) + 4;
    line_end = strstr(c->in, "\r\n");
    if (sscanf(c->in, "%15s %511s", r->method, r->target) != 2)
        return -1;
    snprintf(r->path, sizeof r->path, "%.*s", (int)strcspn(r->target, "?"), r->target);
    r->head = strndup(line_end + 2, (size_t)(end + 2 - (line_end + 2)));
    if (!r->head)
        return -1;
    if (find_header(r->head, "Content-Length", value, sizeof value))
        cl = strtoll(value, NULL, 10);
    if (cl < 0 || cl > SRV_BODY_MAX)
        return -1;
    r->body = malloc((size_t)cl + 1);
    if (!r->body)
        return -1;
    have = c->len - head_len < (size_t)cl ? c->len - head_len : (size_t)cl;
    memcpy(r->body, c->in + head_len, have);
    used = head_len + have;
    while (have < (size_t)cl) {
        ssize_t got = recv(c->fd, r->body + have, (size_t)cl - have, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        have += (size_t)got;
    }
    r->body_len = (size_t)cl;
    memmove(c->in, c->in + used, c->len - used);
    c->len -= used;
    c->in[c->len] = '\0';
    return 0;
}

static void record_request(struct server *srv, const struct srv_request *r)
{
    pthread_mutex_lock(&srv->lock);
    srv->requests++;
    snprintf(srv->method, sizeof srv->method, "%s", r->method);
    snprintf(srv->target, sizeof srv->target, "%s", r->target);
    snprintf(srv->head, sizeof srv->head, "%s", r->head);
    srv->body_len = r->body_len;
    pthread_mutex_unlock(&srv->lock);
}

/* Answer one request; returns 1 to keep the connection, 0 to close it. */
static int respond(struct server *srv, int fd, const struct srv_request *r)
{
    int head_only = strcmp(r->method, "HEAD") == 0;
    const char *path = r->path;
    size_t n = query_n(r->target, 1000);

    if (strcmp(path, "/json") == 0) {
        static const char body[] = "{\"ok\":true,\"n\":1}";
        return send_text(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "X-Custom: hello\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(body), head_only ? "" : body) == 0;
    }
    if (strcmp(path, "/headers") == 0)
        return send_text(fd, "HTTP/1.1 200 OK\r\n"
                             "X-Dup: first\r\n"
                             "x-dup:   second  \r\n"
                             "X-Spaces: \t padded value \t\r\n"
                             "X-Empty:\r\n"
                             "X-Dupe-Prefix: not this\r\n"
                             "Content-Length: 0\r\n\r\n") == 0;
    if (strcmp(path, "/redirect") == 0)
        return send_text(fd, "HTTP/1.1 302 Found\r\nLocation: /json\r\n"
                             "Content-Length: 5\r\n\r\n%s", head_only ? "" : "moved") == 0;
    if (strcmp(path, "/error") == 0)
        return send_text(fd, "HTTP/1.1 500 Internal Server Error\r\n"
                             "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n%s",
                         head_only ? "" : "{\"error\":\"boom\"}") == 0;
    if (strcmp(path, "/continue") == 0)
        return send_text(fd, "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok") == 0;
    if (strcmp(path, "/slow") == 0) {
        for (int waited = 0; waited < SRV_SLOW_MS && !atomic_load(&srv->stop); waited += 50)
            usleep(50 * 1000);
        return send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate") == 0;
    }
    if (strcmp(path, "/big") == 0) {
        if (send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n))
            return 0;
        return head_only || send_pattern(fd, n) == 0;
    }
    if (strcmp(path, "/big-unannounced") == 0) {
        if (send_text(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") == 0)
            send_pattern(fd, n);
        return 0;
    }
    if (strcmp(path, "/chunked") == 0) {
        if (send_text(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
            return 0;
        return send_pattern_chunked(fd, n) == 0;
    }
    if (strcmp(path, "/many-headers") == 0) {
        if (send_text(fd, "HTTP/1.1 200 OK\r\n"))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (send_text(fd, "X-Filler-%zu: %0100zu\r\n", i, i))
                return 0;
        return send_text(fd, "Content-Length: 0\r\n\r\n") == 0;
    }
    if (strcmp(path, "/lie") == 0) {
        send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n0123456789");
        return 0;
    }
    if (strcmp(path, "/echo") == 0) {
        char length[64] = "none", test[256] = "none";
        find_header(r->head, "Content-Length", length, sizeof length);
        find_header(r->head, "X-Test", test, sizeof test);
        if (send_text(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          "X-Method: %s\r\nX-Request-Length: %s\r\nX-Echo: %s\r\n"
                          "Content-Length: %zu\r\n\r\n",
                      r->method, length, test, r->body_len))
            return 0;
        return head_only || send_all(fd, r->body, r->body_len) == 0;
    }
    return send_text(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") == 0;
}

static void *conn_main(void *arg)
{
    struct srv_conn *c = arg;
    struct server *srv = c->srv;

    for (int i = 0; i < SRV_MAX_REQUESTS && !atomic_load(&srv->stop); i++) {
        struct srv_request r;
        int keep;

        if (read_request(c, &r)) {
            srv_request_free(&r);
            break;
        }
        record_request(srv, &r);
        keep = respond(srv, c->fd, &r);
        srv_request_free(&r);
        if (!keep)
            break;
    }
    pthread_mutex_lock(&srv->lock);
    close(c->fd);
    srv->conn_fds[c->slot] = -1;
    pthread_mutex_unlock(&srv->lock);
    free(c);
    return NULL;
}

static void set_timeout(int fd, int optname, long ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    setsockopt(fd, SOL_SOCKET, optname, &tv, sizeof tv);
}

static void *server_main(void *arg)
{
    struct server *srv = arg;

    while (!atomic_load(&srv->stop)) {
        struct srv_conn *c;
        int fd = accept(srv->listen_fd, NULL, NULL);

        if (fd < 0)
            continue;       /* the accept timeout: look at the stop flag */
        pthread_mutex_lock(&srv->lock);
        if (srv->connections >= SRV_MAX_CONNS || !(c = calloc(1, sizeof *c))) {
            pthread_mutex_unlock(&srv->lock);
            close(fd);
            continue;
        }
        set_timeout(fd, SO_RCVTIMEO, 2000);
        set_timeout(fd, SO_SNDTIMEO, 2000);
        c->srv = srv;
        c->fd = fd;
        c->slot = srv->connections;
        srv->conn_fds[c->slot] = fd;
        if (pthread_create(&srv->conn_threads[c->slot], NULL, conn_main, c) != 0) {
            srv->conn_fds[c->slot] = -1;
            close(fd);
            free(c);
        } else {
            srv->connections++;
        }
        pthread_mutex_unlock(&srv->lock);
    }
    return NULL;
}

static int server_start(struct server *srv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof sa;

    memset(srv, 0, sizeof *srv);
    atomic_init(&srv->stop, 0);
    pthread_mutex_init(&srv->lock, NULL);
    for (int i = 0; i < SRV_MAX_CONNS; i++)
        srv->conn_fds[i] = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv->listen_fd < 0)
        return -1;
    set_timeout(srv->listen_fd, SO_RCVTIMEO, 50);
    if (bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(srv->listen_fd, (struct sockaddr *)&sa, &len) ||
        listen(srv->listen_fd, 16) ||
        pthread_create(&srv->thread, NULL, server_main, srv) != 0) {
        close(srv->listen_fd);
        return -1;
    }
    srv->port = ntohs(sa.sin_port);
    return 0;
}

static void server_stop(struct server *srv)
{
    int n;

    atomic_store(&srv->stop, 1);
    pthread_join(srv->thread, NULL);
    close(srv->listen_fd);
    pthread_mutex_lock(&srv->lock);
    n = srv->connections;
    for (int i = 0; i < n; i++)
        if (srv->conn_fds[i] >= 0)
            shutdown(srv->conn_fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < n; i++)
        pthread_join(srv->conn_threads[i], NULL);
    pthread_mutex_destroy(&srv->lock);
}

/* What the server saw, copied under its lock. */
struct seen {
    int connections;
    int requests;
    char method[16];
    char target[512];
    char head[SRV_HEAD_MAX + 1];
    size_t body_len;
};

static void server_seen(struct server *srv, struct seen *s)
{
    pthread_mutex_lock(&srv->lock);
    s->connections = srv->connections;
    s->requests = srv->requests;
    memcpy(s->method, srv->method, sizeof s->method);
    memcpy(s->target, srv->target, sizeof s->target);
    memcpy(s->head, srv->head, sizeof s->head);
    s->body_len = srv->body_len;
    pthread_mutex_unlock(&srv->lock);
}

/* A port on 127.0.0.1 where nothing listens. */
static int closed_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int temp_fd(void)
{
    char path[] = "/tmp/test_http.XXXXXX";
    int fd = mkstemp(path);

    if (fd >= 0)
        unlink(path);
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ fixture -- */

struct fixture {
    struct server srv;
    struct conf *conf;
    struct http_client *client;
    char url[1024];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    if (server_start(&f->srv)) {
        free(f);
        return -1;
    }
    if (conf_defaults(&f->conf) || http_client_new(f->conf, &f->client)) {
        server_stop(&f->srv);
        conf_free(f->conf);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    http_client_free(f->client);
    server_stop(&f->srv);
    conf_free(f->conf);
    free(f);
    return 0;
}

static const char *url(struct fixture *f, const char *target)
{
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d%s", f->srv.port, target);
    return f->url;
}

static void assert_header(const struct http_response *resp, const char *name,
                          const char *want)
{
    struct buf v;

    buf_init(&v, 4096);
    assert_int_equal(http_response_header(resp, name, &v), 0);
    assert_string_equal(buf_str(&v), want);
    buf_free(&v);
}

static void assert_no_header(const struct http_response *resp, const char *name)
{
    struct buf v;

    buf_init(&v, 4096);
    assert_int_equal(http_response_header(resp, name, &v), CP_ENOTFOUND);
    assert_int_equal(v.len, 0);
    buf_free(&v);
}

/* -------------------------------------------------------------- tests -- */

static void test_request_init(void **state)
{
    struct http_request req;

    memset(&req, 0x5a, sizeof req);
    http_request_init(&req, NULL, "http://127.0.0.1/");
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.url, "http://127.0.0.1/");
    assert_int_equal(req.body_fd, -1);
    assert_int_equal(req.out_fd, -1);
    assert_null(req.body);
    assert_null(req.headers);
    assert_int_equal(req.nheaders, 0);
    assert_int_equal(req.body_len, 0);
    assert_int_equal(req.timeout_ms, 0);
    assert_int_equal(req.max_response, 0);
    http_request_init(&req, "DELETE", "http://127.0.0.1/x");
    assert_string_equal(req.method, "DELETE");
}

static void test_get_json(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    struct seen *s = calloc(1, sizeof *s);
    static const char body[] = "{\"ok\":true,\"n\":1}";

    assert_non_null(s);
    http_request_init(&req, "GET", url(f, "/json"));
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, strlen(body));
    assert_int_equal(resp.body_bytes, (long long)strlen(body));
    assert_string_equal(buf_str(&resp.body), body);
    assert_string_equal(resp.error, "");
    assert_header(&resp, "Content-Type", "application/json");
    assert_header(&resp, "x-custom", "hello");
    /* Only header lines are kept, not the status line. */
    assert_null(strstr(buf_str(&resp.raw_headers), "HTTP/"));
    http_response_free(&resp);

    server_seen(&f->srv, s);
    assert_string_equal(s->method, "GET");
    assert_string_equal(s->target, "/json");
    assert_non_null(strstr(s->head, "User-Agent: crosspost/"));
    assert_null(strcasestr(s->head, "Accept-Encoding"));
    free(s);
}

static void test_status_passed_through(void **state)
{
    static const struct {
        const char *target;
        long status;
        const char *body;
        const char *location;
    } cases[] = {
        { "/redirect", 302, "moved", "/json" },
        { "/error", 500, "{\"error\":\"boom\"}", NULL },
        { "/missing", 404, "", NULL },
    };
    struct fixture *f = *state;
    struct seen *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_request req;
        struct http_response resp;

        http_request_init(&req, "GET", url(f, cases[i].target));
        assert_int_equal(http_do(f->client, &req, &resp), 0);
        assert_int_equal(resp.status, cases[i].status);
        assert_string_equal(buf_str(&resp.body), cases[i].body);
        if (cases[i].location)
            assert_header(&resp, "Location", cases[i].location);
        http_response_free(&resp);
        /* One request per case: a redirect is never followed. */
        server_seen(&f->srv, s);
        assert_int_equal(s->requests, (int)i + 1);
        assert_string_equal(s->target, cases[i].target);
    }
    free(s);
}

static void test_header_lookup(void **state)
{
    static const struct {
        const char *name;
        int rc;
        const char *value;
    } cases[] = {
        { "X-Dup", 0, "second" },            /* the last occurrence wins */
        { "x-dup", 0, "second" },
        { "X-DUP", 0, "second" },
        { "X-Spaces", 0, "padded value" },   /* whitespace trimmed */
        { "X-Empty", 0, "" },
        { "X-Dupe-Prefix", 0, "not this" },
        { "Content-Length", 0, "0" },
        { "X-Du", CP_ENOTFOUND, NULL },      /* no prefix matches */
        { "Dup", CP_ENOTFOUND, NULL },
        { "Missing", CP_ENOTFOUND, NULL },
        { "", CP_EINVAL, NULL },
    };
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    struct buf v;

    http_request_init(&req, "GET", url(f, "/headers"));
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    buf_init(&v, 4096);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(http_response_header(&resp, cases[i].name, &v), cases[i].rc);
        if (cases[i].value)
            assert_string_equal(buf_str(&v), cases[i].value);
        else
            assert_int_equal(v.len, 0);
    }
    /* A value longer than the caller's buffer is refused, not cut. */
    buf_free(&v);
    buf_init(&v, 4);
    assert_int_equal(http_response_header(&resp, "X-Spaces", &v), CP_ETOOBIG);
    buf_free(&v);
    http_response_free(&resp);
}

static void test_interim_response_dropped(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;

    http_request_init(&req, "GET", url(f, "/continue"));
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(buf_str(&resp.body), "ok");
    assert_header(&resp, "X-Final", "yes");
    assert_no_header(&resp, "X-Interim");
    http_response_free(&resp);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    long long start = now_ms(), took;

    http_request_init(&req, "GET", url(f, "/slow?access_token=SECRET123"));
    req.timeout_ms = 300;
    assert_int_equal(http_do(f->client, &req, &resp), CP_ETIMEDOUT);
    took = now_ms() - start;
    assert_true(took >= 250);
    assert_true(took < 1200);
    assert_int_equal(resp.status, 0);
    /* The error names the request without its query. */
    assert_non_null(strstr(resp.error, "GET http://127.0.0.1:"));
    assert_non_null(strstr(resp.error, "/slow"));
    assert_null(strstr(resp.error, "SECRET123"));
    assert_null(strstr(resp.error, "access_token"));
    http_response_free(&resp);

    /* The client stays usable after an aborted transfer. */
    http_request_init(&req, "GET", url(f, "/json"));
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    http_response_free(&resp);
}

/* Compare a streamed file with the server's pattern. */
static void assert_file_pattern(int fd, size_t n)
{
    char chunk[8192];
    size_t done = 0;
    struct stat st;

    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, (off_t)n);
    while (done < n) {
        ssize_t got = pread(fd, chunk, sizeof chunk, (off_t)done);
        assert_true(got > 0);
        for (ssize_t i = 0; i < got; i++)
            assert_int_equal(chunk[i], pattern_byte(done + (size_t)i));
        done += (size_t)got;
    }
}

static void test_size_caps(void **state)
{
    enum { MEMORY, STREAM };
    static const struct {
        const char *target;
        int where;
        size_t cap;                 /* max_response or max_download */
        int rc;
        long long bytes;            /* body_bytes; -1 = at most the cap */
    } cases[] = {
        { "/big?n=65536", MEMORY, 65536, 0, 65536 },
        { "/chunked?n=65536", MEMORY, 65536, 0, 65536 },
        { "/big?n=100000", MEMORY, 0, 0, 100000 },          /* the configured cap */
        { "/big?n=65537", MEMORY, 65536, CP_ETOOBIG, 0 },   /* refused on Content-Length */
        { "/lie", MEMORY, 65536, CP_ETOOBIG, 0 },
        { "/many-headers?n=100", MEMORY, 65536, 0, 0 },     /* 12 KiB of headers */
        { "/many-headers?n=1000", MEMORY, 65536, CP_ETOOBIG, 0 },   /* 120 KiB */
        { "/big-unannounced?n=200000", MEMORY, 65536, CP_ETOOBIG, -1 },
        { "/chunked?n=200000", MEMORY, 65536, CP_ETOOBIG, -1 },
        { "/big?n=300000", STREAM, 300000, 0, 300000 },
        { "/chunked?n=300000", STREAM, 300000, 0, 300000 },
        { "/big-unannounced?n=300000", STREAM, 300000, 0, 300000 },
        { "/big?n=300001", STREAM, 300000, CP_ETOOBIG, 0 },
        { "/chunked?n=300001", STREAM, 300000, CP_ETOOBIG, -1 },
        { "/big-unannounced?n=300001", STREAM, 300000, CP_ETOOBIG, -1 },
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_request req;
        struct http_response resp;
        int fd = -1;

        http_request_init(&req, "GET", url(f, cases[i].target));
        if (cases[i].where == STREAM) {
            fd = temp_fd();
            assert_true(fd >= 0);
            req.out_fd = fd;
            req.max_download = (long long)cases[i].cap;
            req.max_response = 16;      /* must not limit a stream */
        } else {
            req.max_response = cases[i].cap;
        }
        assert_int_equal(http_do(f->client, &req, &resp), cases[i].rc);
        if (cases[i].bytes >= 0)
            assert_int_equal(resp.body_bytes, cases[i].bytes);
        else
            assert_true(resp.body_bytes <= (long long)cases[i].cap);
        if (cases[i].rc == 0) {
            assert_int_equal(resp.status, 200);
            assert_string_equal(resp.error, "");
            if (fd >= 0) {
                assert_int_equal(resp.body.len, 0);
                assert_file_pattern(fd, (size_t)cases[i].bytes);
            } else {
                assert_int_equal(resp.body.len, (size_t)cases[i].bytes);
                for (size_t k = 0; k < resp.body.len; k++)
                    assert_int_equal(resp.body.data[k], pattern_byte(k));
            }
        } else {
            assert_non_null(strstr(resp.error, "larger than"));
            if (fd < 0)
                assert_true(resp.body.len <= cases[i].cap);
        }
        http_response_free(&resp);
        if (fd >= 0)
            close(fd);
    }
}

static void test_head_not_capped(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;

    http_request_init(&req, "HEAD", url(f, "/big?n=10000000"));
    req.max_response = 1024;
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_bytes, 0);
    assert_header(&resp, "Content-Length", "10000000");
    http_response_free(&resp);
}

static void test_stream_write_error(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    http_request_init(&req, "GET", url(f, "/big?n=1000"));
    req.out_fd = fd;
    req.max_download = 1 << 20;
    assert_int_equal(http_do(f->client, &req, &resp), CP_EIO);
    assert_non_null(strstr(resp.error, "writing"));
    http_response_free(&resp);
    close(fd);
}

static void test_upload_echo(void **state)
{
    enum { NONE, MEMORY, FILE_SLICE };
    static const struct {
        const char *method;
        int source;
        off_t offset;
        size_t len;
        const char *length_sent;    /* Content-Length the server saw */
    } cases[] = {
        { "POST", MEMORY, 0, 70000, "70000" },  /* large enough for curl's Expect */
        { "POST", FILE_SLICE, 12345, 50000, "50000" },
        { "POST", MEMORY, 0, 0, "0" },
        { "PUT", MEMORY, 0, 1000, "1000" },
        { "PUT", FILE_SLICE, 1, 99999, "99999" },
        { "PUT", NONE, 0, 0, "0" },
        { "PATCH", MEMORY, 0, 10, "10" },
        { "PATCH", FILE_SLICE, 99990, 10, "10" },
        { "DELETE", NONE, 0, 0, "none" },
        { "DELETE", MEMORY, 0, 3, "3" },
    };
    enum { SOURCE_LEN = 100000 };
    struct fixture *f = *state;
    unsigned char *source = malloc(SOURCE_LEN);
    struct seen *s = calloc(1, sizeof *s);
    int fd = temp_fd();

    assert_non_null(source);
    assert_non_null(s);
    assert_true(fd >= 0);
    for (size_t i = 0; i < SOURCE_LEN; i++)
        source[i] = source_byte(i);
    assert_int_equal(write(fd, source, SOURCE_LEN), SOURCE_LEN);

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_request req;
        struct http_response resp;
        const unsigned char *want = source + cases[i].offset;

        http_request_init(&req, cases[i].method, url(f, "/echo"));
        req.body_len = cases[i].len;
        if (cases[i].source == MEMORY)
            req.body = source;
        if (cases[i].source == FILE_SLICE) {
            req.body_fd = fd;
            req.body_offset = cases[i].offset;
        }
        assert_int_equal(http_do(f->client, &req, &resp), 0);
        assert_int_equal(resp.status, 200);
        assert_header(&resp, "X-Method", cases[i].method);
        assert_header(&resp, "X-Request-Length", cases[i].length_sent);
        assert_int_equal(resp.body.len, cases[i].len);
        assert_int_equal(resp.body_bytes, (long long)cases[i].len);
        if (cases[i].len)
            assert_memory_equal(resp.body.data, want, cases[i].len);
        http_response_free(&resp);

        server_seen(&f->srv, s);
        assert_string_equal(s->method, cases[i].method);
        assert_int_equal(s->body_len, cases[i].len);
        assert_null(strcasestr(s->head, "Expect"));
        assert_null(strcasestr(s->head, "Transfer-Encoding"));
        /* No Content-Type is invented for the caller's body. */
        assert_null(strcasestr(s->head, "Content-Type"));
    }
    close(fd);
    free(source);
    free(s);
}

static void test_body_file_too_short(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    int fd = temp_fd();

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    http_request_init(&req, "PUT", url(f, "/echo"));
    req.body_fd = fd;
    req.body_offset = 4;
    req.body_len = 100;
    assert_int_equal(http_do(f->client, &req, &resp), CP_EIO);
    assert_non_null(strstr(resp.error, "ended"));
    http_response_free(&resp);
    close(fd);
}

static void test_request_headers_sent(void **state)
{
    static const struct http_header headers[] = {
        { "X-Test", "value 1" },
        { "Content-Type", "application/json" },
        { "X-Empty", "" },
        { "Authorization", "Bearer SECRET456" },
    };
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    struct seen *s = calloc(1, sizeof *s);
    char value[256];

    assert_non_null(s);
    http_request_init(&req, "POST", url(f, "/echo"));
    req.headers = headers;
    req.nheaders = sizeof headers / sizeof headers[0];
    req.body = "{}";
    req.body_len = 2;
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_header(&resp, "X-Echo", "value 1");
    assert_string_equal(buf_str(&resp.body), "{}");
    assert_null(strstr(resp.error, "SECRET456"));
    http_response_free(&resp);

    server_seen(&f->srv, s);
    assert_true(find_header(s->head, "Content-Type", value, sizeof value));
    assert_string_equal(value, "application/json");
    assert_true(find_header(s->head, "X-Empty", value, sizeof value));
    assert_string_equal(value, "");
    assert_true(find_header(s->head, "Authorization", value, sizeof value));
    assert_string_equal(value, "Bearer SECRET456");
    free(s);
}

static void test_bad_requests_refused(void **state)
{
    static const struct {
        const char *method;
        struct http_header header;
    } cases[] = {
        { "GET", { "X-Test", "a\r\nX-Injected: 1" } },
        { "GET", { "X-Test", "a\nb" } },
        { "GET", { "Bad Name", "x" } },
        { "GET", { "Bad:Name", "x" } },
        { "GET", { "", "x" } },
        { "GET", { "X-Test", NULL } },
        { "GET /x HTTP/1.1\r\n", { "X-Test", "x" } },
        { "", { "X-Test", "x" } },
        { NULL, { "X-Test", "x" } },
    };
    struct fixture *f = *state;
    struct seen *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_request req;
        struct http_response resp;

        http_request_init(&req, "GET", url(f, "/echo"));
        req.method = cases[i].method;
        req.headers = &cases[i].header;
        req.nheaders = 1;
        assert_int_equal(http_do(f->client, &req, &resp), CP_EINVAL);
        assert_int_equal(resp.status, 0);
        assert_true(resp.error[0] != '\0');
        http_response_free(&resp);
    }
    server_seen(&f->srv, s);
    assert_int_equal(s->connections, 0);
    assert_int_equal(s->requests, 0);
    free(s);
}

static void test_other_schemes_refused(void **state)
{
    static const struct {
        const char *before_port;    /* the URL is before_port, port, after_port */
        const char *after_port;
    } targets[] = {
        { "ftp://127.0.0.1:", "/file" },
        { "gopher://127.0.0.1:", "/" },
        { "dict://127.0.0.1:", "/d:word" },
        { "127.0.0.1:", "/json" },              /* no scheme */
        { "file:///etc/passwd", NULL },
        { "not a url", NULL },
        { "", NULL },
    };
    struct fixture *f = *state;
    struct seen *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        struct http_request req;
        struct http_response resp;
        char u[256];

        if (targets[i].after_port)
            snprintf(u, sizeof u, "%s%d%s", targets[i].before_port, f->srv.port,
                     targets[i].after_port);
        else
            snprintf(u, sizeof u, "%s", targets[i].before_port);
        http_request_init(&req, "GET", u);
        assert_int_equal(http_do(f->client, &req, &resp), CP_EINVAL);
        assert_int_equal(resp.status, 0);
        assert_true(resp.error[0] != '\0');
        http_response_free(&resp);
    }
    server_seen(&f->srv, s);
    assert_int_equal(s->connections, 0);
    free(s);
}

static void test_connection_refused(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    char u[128];
    int port = closed_port();

    assert_true(port > 0);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/json?key=SECRET789", port);
    http_request_init(&req, "GET", u);
    req.connect_timeout_ms = 2000;
    assert_int_equal(http_do(f->client, &req, &resp), CP_EUNAVAIL);
    assert_int_equal(resp.status, 0);
    assert_int_equal(resp.body_bytes, 0);
    assert_non_null(strstr(resp.error, "/json"));
    assert_null(strstr(resp.error, "SECRET789"));
    http_response_free(&resp);
}

static void test_connection_reused(void **state)
{
    struct fixture *f = *state;
    struct seen *s = calloc(1, sizeof *s);

    assert_non_null(s);
    for (int i = 0; i < 3; i++) {
        struct http_request req;
        struct http_response resp;

        http_request_init(&req, "GET", url(f, i == 1 ? "/error" : "/json"));
        assert_int_equal(http_do(f->client, &req, &resp), 0);
        http_response_free(&resp);
    }
    server_seen(&f->srv, s);
    assert_int_equal(s->requests, 3);
    assert_int_equal(s->connections, 1);
    free(s);
}

static void test_request_logged_without_query(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    char path[] = "/tmp/test_http_log.XXXXXX";
    char text[8192];
    int fd = mkstemp(path);
    ssize_t n;
    int level = log_get_level();

    assert_true(fd >= 0);
    assert_int_equal(log_open_file(path), 0);
    log_set_level(CP_LOG_DEBUG);
    http_request_init(&req, "GET", url(f, "/json?access_token=SECRET321"));
    assert_int_equal(http_do(f->client, &req, &resp), 0);
    http_response_free(&resp);
    log_set_level(level);

    n = pread(fd, text, sizeof text - 1, 0);
    assert_true(n > 0);
    text[n] = '\0';
    unlink(path);
    close(fd);
    assert_non_null(strstr(text, "\"method\":\"GET\""));
    assert_non_null(strstr(text, "\"host\":\"127.0.0.1\""));
    assert_non_null(strstr(text, "\"path\":\"/json\""));
    assert_non_null(strstr(text, "\"status\":\"200\""));
    assert_non_null(strstr(text, "\"ms\":\""));
    assert_null(strstr(text, "SECRET321"));
    assert_null(strstr(text, "access_token"));
    assert_null(strchr(strchr(text, '\n') + 1, '{'));      /* one line */
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct http_request req;
    struct http_response resp;
    struct http_client *client = (struct http_client *)&req;   /* any non-NULL */

    assert_int_equal(http_client_new(NULL, &client), CP_EINVAL);
    assert_null(client);
    assert_int_equal(http_client_new(f->conf, NULL), CP_EINVAL);
    http_client_free(NULL);

    http_request_init(&req, "GET", url(f, "/json"));
    assert_int_equal(http_do(NULL, &req, &resp), CP_EINVAL);
    http_response_free(&resp);
    assert_int_equal(http_do(f->client, NULL, &resp), CP_EINVAL);
    http_response_free(&resp);
    assert_int_equal(http_do(f->client, &req, NULL), CP_EINVAL);
    req.body_len = 5;                       /* a length without a body */
    assert_int_equal(http_do(f->client, &req, &resp), CP_EINVAL);
    http_response_free(&resp);
    http_response_free(&resp);              /* freeing twice is harmless */
    http_response_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_init),
        cmocka_unit_test_setup_teardown(test_get_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_passed_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_response_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_not_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_file_too_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_headers_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_schemes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_logged_without_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };

    /* Requests go straight to the test server, never through a proxy. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    log_init("test_http", CP_LOG_WARN);
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
