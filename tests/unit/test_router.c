/* Route matching: 404, 405 with the allowed methods, path parameters. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "handlers.h"
#include "router.h"

static void h_dummy(struct request *req) { (void)req; }

static const struct route table[] = {
    { M_GET, "/healthz", ROLE_PUBLIC, h_dummy, 0 },
    { M_GET | M_POST, "/api/v1/users", ROLE_ADMIN, h_dummy, 0 },
    { M_GET | M_PATCH | M_DELETE, "/api/v1/users/{id}", ROLE_ADMIN, h_dummy, 0 },
    { M_POST, "/api/v1/users/{id}/revoke-sessions", ROLE_ADMIN, h_dummy, 0 },
    { M_POST, "/api/v1/connections/{platform}/authorize", ROLE_USER, h_dummy, 0 },
    { M_GET, "/api/v1/connections/{id}", ROLE_USER, h_dummy, 0 },
    { M_GET, "/api/v1/a/{x}/b/{y}", ROLE_USER, h_dummy, 0 },
    /* Parameters before literals on purpose: the literal must still win. */
    { M_GET, "/api/v1/jobs/{id}", ROLE_USER, h_dummy, 0 },
    { M_POST, "/api/v1/jobs/{id}/retry", ROLE_USER, h_dummy, 0 },
    { M_GET, "/api/v1/jobs/dead", ROLE_USER, h_dummy, 0 },
    { M_POST, "/api/v1/jobs/dead/retry", ROLE_USER, h_dummy, 0 },
    { M_GET, "/api/v1/{x}/dead", ROLE_USER, h_dummy, 0 },
};
#define NTABLE (sizeof table / sizeof table[0])

struct match_case {
    const char *method;
    const char *path;
    enum route_result want;
    int index;            /* expected route, -1 when none */
    const char *allow;    /* expected Allow on 405 */
};

static const struct match_case cases[] = {
    { "GET", "/healthz", ROUTE_FOUND, 0, NULL },
    { "HEAD", "/healthz", ROUTE_FOUND, 0, NULL },
    { "POST", "/healthz", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD" },
    { "FOO", "/healthz", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD" },
    { "get", "/healthz", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD" },
    { "GET", "/healthz/", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/healthzz", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "healthz", ROUTE_NOT_FOUND, -1, NULL },
    { "POST", "/api/v1/users", ROUTE_FOUND, 1, NULL },
    { "DELETE", "/api/v1/users", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD, POST" },
    { "PATCH", "/api/v1/users/42", ROUTE_FOUND, 2, NULL },
    { "PUT", "/api/v1/users/42", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD, PATCH, DELETE" },
    { "GET", "/api/v1/users//", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/api/v1/users/42/", ROUTE_NOT_FOUND, -1, NULL },
    { "POST", "/api/v1/users/42/revoke-sessions", ROUTE_FOUND, 3, NULL },
    { "GET", "/api/v1/users/42/revoke-sessions", ROUTE_METHOD_NOT_ALLOWED, -1, "POST" },
    { "POST", "/api/v1/connections/tiktok/authorize", ROUTE_FOUND, 4, NULL },
    { "GET", "/api/v1/connections/7", ROUTE_FOUND, 5, NULL },
    { "GET", "/api/v1/connections/tiktok/authorize", ROUTE_METHOD_NOT_ALLOWED, -1, "POST" },
    { "GET", "/api/v1/a/1/b/2", ROUTE_FOUND, 6, NULL },
    { "GET", "/api/v1/a/1/b", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/api/v1/a/1/b/2/c", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/API/v1/users", ROUTE_NOT_FOUND, -1, NULL },
    { "GET", "/api/v1/jobs/42", ROUTE_FOUND, 7, NULL },
    { "GET", "/api/v1/jobs/dead", ROUTE_FOUND, 9, NULL },
    { "HEAD", "/api/v1/jobs/dead", ROUTE_FOUND, 9, NULL },
    { "POST", "/api/v1/jobs/42/retry", ROUTE_FOUND, 8, NULL },
    { "POST", "/api/v1/jobs/dead/retry", ROUTE_FOUND, 10, NULL },
    { "POST", "/api/v1/jobs/dead", ROUTE_METHOD_NOT_ALLOWED, -1, "GET, HEAD" },
    { "GET", "/api/v1/jobs/dead/retry", ROUTE_METHOD_NOT_ALLOWED, -1, "POST" },
    /* The first segment that differs decides: /users/{id} beats /{x}/dead. */
    { "GET", "/api/v1/users/dead", ROUTE_FOUND, 2, NULL },
    { "GET", "/api/v1/other/dead", ROUTE_FOUND, 11, NULL },
};

static void test_match_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct match_case *c = &cases[i];
        struct route_match m;
        enum route_result got = router_match(table, NTABLE, http_method_parse(c->method), c->path, &m);
        char allow[128];

        if (got != c->want)
            fail_msg("%s %s: result %d, want %d", c->method, c->path, got, c->want);
        assert_int_equal(m.index, c->index);
        if (c->want == ROUTE_FOUND)
            assert_ptr_equal(m.route, &table[c->index]);
        if (c->allow) {
            router_allow_header(m.allowed, allow, sizeof allow);
            assert_string_equal(allow, c->allow);
        }
    }
}

static void test_params(void **state)
{
    struct route_match m;
    char out[16];

    (void)state;
    assert_int_equal(router_match(table, NTABLE, M_GET, "/api/v1/a/first/b/second", &m), ROUTE_FOUND);
    assert_int_equal(m.nparams, 2);
    assert_int_equal(route_param_get(&m, "x", out, sizeof out), 0);
    assert_string_equal(out, "first");
    assert_int_equal(route_param_get(&m, "y", out, sizeof out), 0);
    assert_string_equal(out, "second");
    assert_int_equal(route_param_get(&m, "z", out, sizeof out), CP_ENOTFOUND);
    /* A value that does not fit is refused, never cut short. */
    assert_int_equal(router_match(table, NTABLE, M_GET, "/api/v1/a/0123456789abcdef/b/2", &m), ROUTE_FOUND);
    assert_int_equal(route_param_get(&m, "x", out, sizeof out), CP_ETOOBIG);
}

static void test_methods(void **state)
{
    (void)state;
    assert_int_equal(http_method_parse("GET"), M_GET);
    assert_int_equal(http_method_parse("DELETE"), M_DELETE);
    assert_int_equal(http_method_parse("OPTIONS"), M_OPTIONS);
    assert_int_equal(http_method_parse("TRACE"), 0);
    assert_int_equal(http_method_parse(""), 0);
    assert_int_equal(http_method_parse("GETX"), 0);
}

static void test_allow_header_truncates_safely(void **state)
{
    char small[8];

    (void)state;
    router_allow_header(M_GET | M_HEAD | M_POST | M_DELETE, small, sizeof small);
    assert_string_equal(small, "GET");
}

/* The real table: every pattern is well formed and no two routes shadow
 * each other for the same method. */
static void test_api_table_is_consistent(void **state)
{
    (void)state;
    for (size_t i = 0; i < api_nroutes; i++) {
        struct route_match m;
        assert_non_null(api_routes[i].handler);
        assert_true(api_routes[i].methods != 0);
        assert_int_equal(api_routes[i].pattern[0], '/');
        if (!strchr(api_routes[i].pattern, '{')) {
            unsigned first = api_routes[i].methods & -api_routes[i].methods;
            assert_int_equal(router_match(api_routes, api_nroutes, first, api_routes[i].pattern, &m), ROUTE_FOUND);
            assert_int_equal(m.index, (int)i);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_allow_header_truncates_safely),
        cmocka_unit_test(test_api_table_is_consistent),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
