#include "config.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "router.h"

static const struct {
    const char *name;
    unsigned bit;
} methods[] = {
    { "GET", M_GET },       { "HEAD", M_HEAD },     { "POST", M_POST },
    { "PUT", M_PUT },       { "PATCH", M_PATCH },   { "DELETE", M_DELETE },
    { "OPTIONS", M_OPTIONS },
};

#define NMETHODS (sizeof methods / sizeof methods[0])

unsigned http_method_parse(const char *name)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (strcmp(name, methods[i].name) == 0)
            return methods[i].bit;
    return 0;
}

void router_allow_header(unsigned mask, char *out, size_t outlen)
{
    size_t used = 0;

    if (outlen)
        out[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        int n;
        if (!(mask & methods[i].bit))
            continue;
        n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", methods[i].name);
        if (n < 0 || (size_t)n >= outlen - used) {
            out[used] = '\0';     /* never end on part of a name */
            return;
        }
        used += (size_t)n;
    }
}

/*
 * Match path against one pattern; fills params on success.  *wild gets
 * one bit per {name} segment, the first segment the highest, so that of
 * two patterns matching one path the smaller *wild has a literal segment
 * where the other first has a parameter.
 */
static int pattern_match(const char *pattern, const char *path, struct route_match *m,
                         unsigned *wild)
{
    const char *p = pattern, *s = path;
    int nparams = 0, segment = 0;

    *wild = 0;

    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++;
        s++;
        const char *pend = strchr(p, '/');
        const char *send = strchr(s, '/');
        size_t plen = pend ? (size_t)(pend - p) : strlen(p);
        size_t slen = send ? (size_t)(send - s) : strlen(s);

        if (segment == ROUTE_MAX_SEGMENTS)
            return 0;
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (slen == 0 || nparams == ROUTE_MAX_PARAMS)
                return 0;
            *wild |= 1u << (ROUTE_MAX_SEGMENTS - 1 - segment);
            m->params[nparams].name = p + 1;
            m->params[nparams].name_len = plen - 2;
            m->params[nparams].value = s;
            m->params[nparams].value_len = slen;
            nparams++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
        segment++;
    }
    if (*p || *s)
        return 0;
    m->nparams = nparams;
    return 1;
}

/* A literal segment wins over a parameter in the same place, whatever
 * the order of the table (GET /jobs/dead is not GET /jobs/{id}); among
 * patterns of the same shape the first in the table wins. */
enum route_result router_match(const struct route *table, size_t n,
                               unsigned method, const char *path,
                               struct route_match *m)
{
    unsigned allowed = 0, wild, best_wild = 0;
    struct route_match tmp;

    memset(m, 0, sizeof *m);
    m->index = -1;
    if (!path || path[0] != '/')
        return ROUTE_NOT_FOUND;
    for (size_t i = 0; i < n; i++) {
        unsigned mask = table[i].methods;

        memset(&tmp, 0, sizeof tmp);
        if (!pattern_match(table[i].pattern, path, &tmp, &wild))
            continue;
        if (mask & M_GET)
            mask |= M_HEAD;
        if (!(method & mask)) {
            allowed |= mask;
            continue;
        }
        if (m->route && wild >= best_wild)
            continue;
        *m = tmp;
        m->route = &table[i];
        m->index = (int)i;
        best_wild = wild;
    }
    if (m->route)
        return ROUTE_FOUND;
    if (!allowed)
        return ROUTE_NOT_FOUND;
    m->allowed = allowed;
    return ROUTE_METHOD_NOT_ALLOWED;
}

int route_param_get(const struct route_match *m, const char *name,
                    char *out, size_t outlen)
{
    size_t nlen = strlen(name);

    for (int i = 0; i < m->nparams; i++) {
        const struct route_param *rp = &m->params[i];
        if (rp->name_len != nlen || memcmp(rp->name, name, nlen) != 0)
            continue;
        if (rp->value_len >= outlen)
            return CP_ETOOBIG;
        memcpy(out, rp->value, rp->value_len);
        out[rp->value_len] = '\0';
        return 0;
    }
    return CP_ENOTFOUND;
}
