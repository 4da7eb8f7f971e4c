/*
 * router.h - the route table and its matcher.
 *
 * A route is a method mask, a path pattern, the least role that may call
 * it and a handler.  Patterns are literal segments and {name} segments,
 * each {name} matching one non-empty segment:  /api/v1/users/{id}.
 * A path that matches no pattern is 404; a path that matches only under
 * other methods is 405, and the mask of the methods it does allow gives
 * the Allow header.  HEAD is allowed wherever GET is.
 */
#ifndef CP_ROUTER_H
#define CP_ROUTER_H

#include <stddef.h>

enum http_method {
    M_GET = 1u << 0,
    M_HEAD = 1u << 1,
    M_POST = 1u << 2,
    M_PUT = 1u << 3,
    M_PATCH = 1u << 4,
    M_DELETE = 1u << 5,
    M_OPTIONS = 1u << 6,
};

/* Roles in increasing power; a route names the least it needs. */
enum role {
    ROLE_PUBLIC = 0,     /* no credentials needed */
    ROLE_USER = 1,
    ROLE_OPERATOR = 2,
    ROLE_ADMIN = 3,
};

struct request;
typedef void (*route_handler)(struct request *req);

/* Route flags. */
#define ROUTE_RAW_BODY 1u    /* the handler parses the body itself, after checking a
                                signature over its raw bytes (req_parse_json_body) */

struct route {
    unsigned methods;
    const char *pattern;
    enum role role;
    route_handler handler;
    unsigned flags;          /* ROUTE_* */
};

#define ROUTE_MAX_PARAMS 4
#define ROUTE_MAX_SEGMENTS 16

struct route_param {
    const char *name;      /* points into the pattern */
    size_t name_len;
    const char *value;     /* points into the path */
    size_t value_len;
};

enum route_result { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_METHOD_NOT_ALLOWED };

struct route_match {
    const struct route *route;   /* ROUTE_FOUND only */
    int index;                   /* of the route in the table; -1 otherwise */
    unsigned allowed;            /* ROUTE_METHOD_NOT_ALLOWED: the allowed mask */
    int nparams;
    struct route_param params[ROUTE_MAX_PARAMS];
};

/* The method bit for a method name (case-sensitive, as HTTP says); 0 for
 * a method crosspost does not know. */
unsigned http_method_parse(const char *name);

/* Match method and path against the table. */
enum route_result router_match(const struct route *table, size_t n,
                               unsigned method, const char *path,
                               struct route_match *m);

/* Write the methods in mask as an Allow header value ("GET, HEAD"). */
void router_allow_header(unsigned mask, char *out, size_t outlen);

/* The value of path parameter name, copied to out (at most outlen-1
 * bytes); 0, or CP_ENOTFOUND / CP_ETOOBIG. */
int route_param_get(const struct route_match *m, const char *name,
                    char *out, size_t outlen);

#endif
