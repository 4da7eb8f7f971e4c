#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "pkce.h"
#include "plat_internal.h"
#include "platforms.h"

/* ------------------------------------------------------------ fixtures -- */

/* A response as http_do() would leave it: status, header lines, body. */
static void canned(struct http_response *r, long status, const char *headers, const char *body)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, 1 << 20);
    buf_init(&r->raw_headers, 1 << 16);
    r->status = status;
    if (headers)
        assert_int_equal(buf_adds(&r->raw_headers, headers), 0);
    if (body)
        assert_int_equal(buf_adds(&r->body, body), 0);
    r->body_bytes = (long long)r->body.len;
}

static struct conf *test_conf(const char *text)
{
    struct conf *c = NULL;
    struct buf err;

    buf_init(&err, 1024);
    assert_int_equal(conf_defaults(&c), 0);
    if (text && conf_parse_text(c, "test.conf", text, &err) != 0)
        fail_msg("config: %s", buf_str(&err));
    buf_free(&err);
    return c;
}

static const char app_conf[] =
    "tiktok_client_key = ck_test\n"
    "tiktok_client_secret = cs_test\n"
    "facebook_app_id = 1234\n"
    "facebook_app_secret = fbsecret\n"
    "google_client_id = gid.apps\n"
    "google_client_secret = gsecret\n"
    "x_consumer_key = xkey\n"
    "x_consumer_secret = xsecret\n"
    "x_client_id = xcid\n";

/* ------------------------------------------------- the platform table -- */

static void test_table(void **state)
{
    static const char *const names[PLATFORM_COUNT] = { "tiktok", "instagram", "youtube", "x" };

    for (int i = 0; i < PLATFORM_COUNT; i++) {
        const struct platform *p = platform_get((enum platform_id)i);

        assert_non_null(p);
        assert_int_equal(p->id, i);
        assert_string_equal(p->name, names[i]);
        assert_ptr_equal(platform_find(names[i]), p);
        assert_non_null(p->configured);
        assert_non_null(p->auth_kind);
        assert_non_null(p->auth_begin);
        assert_non_null(p->auth_finish);
        assert_non_null(p->check);
        assert_int_equal(p->cookie_connections, i == PLATFORM_TIKTOK);
    }
    assert_null(platform_find("myspace"));
    assert_null(platform_find(NULL));
    assert_null(platform_find("TikTok"));
    assert_null(platform_get((enum platform_id)PLATFORM_COUNT));
}

static void test_names(void **state)
{
    static const struct { enum auth_kind k; const char *name; } kinds[] = {
        { AUTH_OAUTH2, "oauth2" }, { AUTH_OAUTH1, "oauth1" }, { AUTH_COOKIE, "cookie" },
    };
    static const struct { enum plat_outcome o; const char *name; } outcomes[] = {
        { PLAT_OK, "ok" }, { PLAT_RETRY, "retry" }, { PLAT_DEFER, "defer" },
        { PLAT_REAUTH, "reauth" }, { PLAT_FATAL, "fatal" },
    };
    enum auth_kind k;

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        assert_string_equal(auth_kind_name(kinds[i].k), kinds[i].name);
        assert_int_equal(auth_kind_parse(kinds[i].name, &k), 0);
        assert_int_equal(k, kinds[i].k);
    }
    assert_int_equal(auth_kind_parse("OAuth2", &k), CP_EINVAL);
    assert_int_equal(auth_kind_parse("", &k), CP_EINVAL);
    assert_int_equal(auth_kind_parse(NULL, &k), CP_EINVAL);
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        assert_string_equal(plat_outcome_name(outcomes[i].o), outcomes[i].name);
}

static void test_configured(void **state)
{
    struct conf *none = test_conf(NULL), *all = test_conf(app_conf);
    struct conf *x2 = test_conf("x_auth_mode = oauth2\nx_client_id = xcid\n");

    for (int i = 0; i < PLATFORM_COUNT; i++) {
        assert_false(platforms[i].configured(none));
        assert_true(platforms[i].configured(all));
    }
    assert_int_equal(platforms[PLATFORM_X].auth_kind(all), AUTH_OAUTH1);
    assert_int_equal(platforms[PLATFORM_X].auth_kind(x2), AUTH_OAUTH2);
    assert_true(platforms[PLATFORM_X].configured(x2));
    assert_int_equal(platforms[PLATFORM_TIKTOK].auth_kind(all), AUTH_OAUTH2);
    conf_free(none);
    conf_free(all);
    conf_free(x2);
}

static void test_tokens(void **state)
{
    struct plat_tokens t;

    memset(&t, 0, sizeof t);
    assert_int_equal(plat_tokens_set(&t.access_token, "a1"), 0);
    assert_int_equal(plat_tokens_set(&t.access_token, "a2"), 0);
    assert_string_equal(t.access_token, "a2");
    assert_int_equal(plat_tokens_set(&t.refresh_token, "r"), 0);
    assert_int_equal(plat_tokens_set(&t.refresh_token, NULL), 0);
    assert_null(t.refresh_token);
    assert_int_equal(plat_tokens_set(&t.token_secret, "s"), 0);
    t.access_expires_in_s = 5;
    snprintf(t.scopes, sizeof t.scopes, "a,b");
    plat_tokens_clear(&t);
    assert_null(t.access_token);
    assert_null(t.token_secret);
    assert_int_equal(t.access_expires_in_s, 0);
    assert_string_equal(t.scopes, "");
    plat_tokens_clear(&t);
    plat_tokens_clear(NULL);
}

/* ---------------------------------------------------- classification -- */

/* The platform's error body for code (and subcode), in each shape the
 * platform uses; returns how many were written to bodies[]. */
static int error_bodies(const struct plat_rules *rules, const char *code, const char *subcode,
                        char bodies[2][512])
{
    char num[32];

    /* a range row stands for its first number */
    snprintf(num, sizeof num, "%s", code);
    if (num[0] >= '0' && num[0] <= '9' && strchr(num, '-'))
        *strchr(num, '-') = '\0';

    if (rules == &plat_tiktok_rules) {
        if (num[0] >= '0' && num[0] <= '9') {
            snprintf(bodies[0], 512,
                     "{\"data\":{\"description\":\"Session expired, please sign in again.\","
                     "\"error_code\":%s},\"message\":\"error\"}", num);
            return 1;
        }
        snprintf(bodies[0], 512,
                 "{\"error\":\"%s\",\"error_description\":\"d\",\"log_id\":\"L1\"}", num);
        snprintf(bodies[1], 512,
                 "{\"data\":{},\"error\":{\"code\":\"%s\",\"message\":\"m\",\"log_id\":\"L2\"}}",
                 num);
        return 2;
    }
    if (rules == &plat_graph_rules) {
        snprintf(bodies[0], 512,
                 "{\"error\":{\"message\":\"m\",\"type\":\"OAuthException\",\"code\":%s%s%s,"
                 "\"fbtrace_id\":\"AbC\"}}",
                 num, subcode ? ",\"error_subcode\":" : "", subcode ? subcode : "");
        return 1;
    }
    if (rules == &plat_google_rules) {
        if (strchr(num, '_'))
            snprintf(bodies[0], 512, "{\"error\":\"%s\",\"error_description\":\"d\"}", num);
        else
            snprintf(bodies[0], 512,
                     "{\"error\":{\"code\":403,\"message\":\"m\",\"errors\":[{\"reason\":\"%s\","
                     "\"domain\":\"youtube.quota\",\"message\":\"m\"}],\"status\":\"X\"}}",
                     num);
        return 1;
    }
    if (num[0] >= '0' && num[0] <= '9')
        snprintf(bodies[0], 512, "{\"errors\":[{\"code\":%s,\"message\":\"m\"}]}", num);
    else if (strchr(num, '-'))
        snprintf(bodies[0], 512,
                 "{\"title\":\"T\",\"detail\":\"d\",\"type\":\"https://api.x.com/2/problems/%s\","
                 "\"status\":403}", num);
    else
        snprintf(bodies[0], 512, "{\"error\":\"%s\",\"error_description\":\"d\"}", num);
    return 1;
}

/* Every row of every table is reachable and gives its outcome. */
static void test_every_row(void **state)
{
    const struct plat_rules *all[] = { &plat_tiktok_rules, &plat_graph_rules, &plat_google_rules,
                                       &plat_x_rules };

    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        const struct plat_rules *rules = all[t];

        assert_true(rules->count > 0);
        for (size_t i = 0; i < rules->count; i++) {
            const struct plat_rule *row = &rules->rows[i];
            long status = row->status_min ? row->status_min : 400;
            char bodies[2][512];
            int n = 1;

            if (row->code)
                n = error_bodies(rules, row->code, row->subcode, bodies);
            else
                snprintf(bodies[0], sizeof bodies[0], "<html><body>Error</body></html>");
            for (int k = 0; k < n; k++) {
                struct http_response r;
                struct plat_error e;
                enum plat_outcome o;

                canned(&r, status, NULL, bodies[k]);
                o = plat_classify(rules, &r, "test call", &e);
                if (o != row->outcome || e.outcome != row->outcome)
                    fail_msg("%s row %zu (%s): got %s for %s", rules->label, i,
                             row->code ? row->code : "status", plat_outcome_name(o), bodies[k]);
                assert_int_equal(e.http_status, status);
                assert_non_null(strstr(e.message, "test call"));
                assert_non_null(strstr(e.message, row->meaning));
                if (row->code && !strchr(row->code, '-'))
                    assert_string_equal(e.code, row->code);
                http_response_free(&r);
            }
            /* no earlier row shadows this one */
            {
                char num[32];

                snprintf(num, sizeof num, "%s", row->code ? row->code : "");
                if (num[0] >= '0' && num[0] <= '9' && strchr(num, '-'))
                    *strchr(num, '-') = '\0';
                assert_ptr_equal(plat_rule_find(rules, status, row->code ? num : NULL,
                                                row->subcode),
                                 row);
            }
        }
    }
}

struct classify_case {
    const char *name;
    const struct plat_rules *rules;
    long status;
    const char *headers;
    const char *body;
    enum plat_outcome outcome;
    const char *code;
    long long wait_min, wait_max;     /* retry_after_ms bounds */
};

static const struct classify_case classify_cases[] = {
    { "tiktok display ok", &plat_tiktok_rules, 200, NULL,
      "{\"data\":{\"user\":{\"open_id\":\"o\"}},\"error\":{\"code\":\"ok\",\"message\":\"\"}}",
      PLAT_OK, "", 0, 0 },
    { "tiktok oauth error in a 200", &plat_tiktok_rules, 200, NULL,
      "{\"error\":\"invalid_grant\",\"error_description\":\"Authorization code is expired.\"}",
      PLAT_REAUTH, "invalid_grant", 0, 0 },
    { "tiktok body beats status", &plat_tiktok_rules, 500, NULL,
      "{\"error\":{\"code\":\"invalid_params\",\"message\":\"bad\"}}", PLAT_FATAL,
      "invalid_params", 0, 0 },
    { "tiktok rate limit with Retry-After", &plat_tiktok_rules, 429, "Retry-After: 30\r\n",
      "{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\"}}", PLAT_DEFER,
      "rate_limit_exceeded", 30000, 30000 },
    { "tiktok internal error", &plat_tiktok_rules, 500, NULL,
      "{\"error\":{\"code\":\"internal_error\",\"message\":\"\"}}", PLAT_RETRY, "internal_error",
      0, 0 },
    { "tiktok dead web session", &plat_tiktok_rules, 200, NULL,
      "{\"data\":{\"description\":\"Session expired, please sign in again.\",\"error_code\":8},"
      "\"message\":\"error\"}", PLAT_REAUTH, "8", 0, 0 },
    { "tiktok web session alive", &plat_tiktok_rules, 200, NULL,
      "{\"data\":{\"user_id_str\":\"1\"},\"message\":\"success\"}", PLAT_OK, "", 0, 0 },
    { "tiktok html 502", &plat_tiktok_rules, 502, NULL, "<html>Bad Gateway</html>", PLAT_RETRY,
      "http_502", 0, 0 },
    { "tiktok html 404", &plat_tiktok_rules, 404, NULL, "<html>Not Found</html>", PLAT_FATAL,
      "http_404", 0, 0 },
    { "tiktok empty 403", &plat_tiktok_rules, 403, NULL, "", PLAT_FATAL, "http_403", 0, 0 },
    { "tiktok 429 without a body", &plat_tiktok_rules, 429, "Retry-After: 5\r\n", "", PLAT_DEFER,
      "http_429", 5000, 5000 },
    { "tiktok unknown code 400", &plat_tiktok_rules, 400, NULL,
      "{\"error\":{\"code\":\"brand_new\",\"message\":\"\"}}", PLAT_FATAL, "brand_new", 0, 0 },
    { "tiktok unknown code 503", &plat_tiktok_rules, 503, "Retry-After: 7\r\n",
      "{\"error\":{\"code\":\"brand_new\",\"message\":\"\"}}", PLAT_RETRY, "brand_new", 7000,
      7000 },
    { "graph token expired", &plat_graph_rules, 400, NULL,
      "{\"error\":{\"message\":\"Error validating access token: Session has expired\","
      "\"type\":\"OAuthException\",\"code\":190,\"error_subcode\":463,\"fbtrace_id\":\"A\"}}",
      PLAT_REAUTH, "190", 0, 0 },
    { "graph transient", &plat_graph_rules, 500, NULL,
      "{\"error\":{\"message\":\"An unknown error occurred\",\"code\":1}}", PLAT_RETRY, "1", 0, 0 },
    { "graph app limit with usage header", &plat_graph_rules, 400,
      "x-app-usage: {\"call_count\":100,\"total_cputime\":20,\"total_time\":30}\r\n"
      "x-business-use-case-usage: {\"1784\":[{\"type\":\"instagram\",\"call_count\":100,"
      "\"total_cputime\":1,\"total_time\":1,\"estimated_time_to_regain_access\":5}]}\r\n",
      "{\"error\":{\"message\":\"Application request limit reached\",\"code\":4}}", PLAT_DEFER,
      "4", 300000, 300000 },
    { "graph user limit without header", &plat_graph_rules, 400, NULL,
      "{\"error\":{\"message\":\"User request limit reached\",\"code\":17}}", PLAT_DEFER, "17",
      900000, 900000 },
    { "graph permission range", &plat_graph_rules, 403, NULL,
      "{\"error\":{\"message\":\"Permissions error\",\"code\":250}}", PLAT_FATAL, "250", 0, 0 },
    { "graph outside the permission range", &plat_graph_rules, 400, NULL,
      "{\"error\":{\"message\":\"?\",\"code\":300}}", PLAT_FATAL, "300", 0, 0 },
    { "graph business use case limit", &plat_graph_rules, 400, NULL,
      "{\"error\":{\"message\":\"limit\",\"code\":80002}}", PLAT_DEFER, "80002", 900000,
      900000 },
    { "graph policy block", &plat_graph_rules, 400, NULL,
      "{\"error\":{\"message\":\"blocked\",\"code\":368,\"error_subcode\":1390008}}", PLAT_FATAL,
      "368", 0, 0 },
    { "graph unknown 503", &plat_graph_rules, 503, NULL,
      "{\"error\":{\"message\":\"?\",\"code\":99999}}", PLAT_RETRY, "99999", 0, 0 },
    { "graph success", &plat_graph_rules, 200, NULL, "{\"id\":\"1\"}", PLAT_OK, "", 0, 0 },
    { "google invalid_grant", &plat_google_rules, 400, NULL,
      "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or revoked.\"}",
      PLAT_REAUTH, "invalid_grant", 0, 0 },
    { "google invalid_client in a 401", &plat_google_rules, 401, NULL,
      "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}", PLAT_FATAL,
      "invalid_client", 0, 0 },
    { "google authError", &plat_google_rules, 401, NULL,
      "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication credentials.\","
      "\"errors\":[{\"message\":\"Invalid Credentials\",\"domain\":\"global\","
      "\"reason\":\"authError\"}],\"status\":\"UNAUTHENTICATED\"}}", PLAT_REAUTH, "authError", 0,
      0 },
    { "google api 401 without errors", &plat_google_rules, 401, NULL,
      "{\"error\":{\"code\":401,\"message\":\"no\",\"status\":\"UNAUTHENTICATED\"}}", PLAT_REAUTH,
      "UNAUTHENTICATED", 0, 0 },
    { "google quota", &plat_google_rules, 403, NULL,
      "{\"error\":{\"code\":403,\"message\":\"quota\",\"errors\":[{\"reason\":\"quotaExceeded\","
      "\"domain\":\"youtube.quota\"}]}}", PLAT_DEFER, "quotaExceeded", 0, 0 },
    { "google backend with Retry-After", &plat_google_rules, 503, "Retry-After: 120\r\n",
      "{\"error\":{\"code\":503,\"message\":\"x\",\"errors\":[{\"reason\":\"backendError\"}]}}",
      PLAT_RETRY, "backendError", 120000, 120000 },
    { "x bad auth", &plat_x_rules, 401, NULL,
      "{\"errors\":[{\"code\":32,\"message\":\"Could not authenticate you.\"}]}", PLAT_REAUTH, "32",
      0, 0 },
    { "x expired token", &plat_x_rules, 401, NULL,
      "{\"errors\":[{\"code\":89,\"message\":\"Invalid or expired token.\"}]}", PLAT_REAUTH, "89",
      0, 0 },
    { "x clock", &plat_x_rules, 401, NULL,
      "{\"errors\":[{\"code\":135,\"message\":\"Timestamp out of bounds.\"}]}", PLAT_RETRY, "135",
      0, 0 },
    { "x callback not approved", &plat_x_rules, 403, NULL,
      "{\"errors\":[{\"code\":415,\"message\":\"Callback URL not approved\"}]}", PLAT_FATAL, "415",
      0, 0 },
    { "x oauth2 refresh refused", &plat_x_rules, 400, NULL,
      "{\"error\":\"invalid_request\",\"error_description\":\"Value passed for the token was "
      "invalid.\"}", PLAT_REAUTH, "invalid_request", 0, 0 },
    { "x v2 unauthorized", &plat_x_rules, 401, NULL,
      "{\"title\":\"Unauthorized\",\"type\":\"about:blank\",\"status\":401,\"detail\":"
      "\"Unauthorized\"}", PLAT_REAUTH, "Unauthorized", 0, 0 },
    { "x v2 usage capped", &plat_x_rules, 429, NULL,
      "{\"title\":\"UsageCapExceeded\",\"type\":\"https://api.twitter.com/2/problems/usage-capped\","
      "\"status\":429,\"detail\":\"Usage cap exceeded\"}", PLAT_DEFER, "usage-capped", 900000,
      900000 },
    { "x v2 data with partial errors", &plat_x_rules, 200, NULL,
      "{\"data\":{\"id\":\"1\"},\"errors\":[{\"message\":\"partial\"}]}", PLAT_OK, "", 0, 0 },
    { "x form success", &plat_x_rules, 200, NULL,
      "oauth_token=t&oauth_token_secret=s&oauth_callback_confirmed=true", PLAT_OK, "", 0, 0 },
    { "x 401 in text", &plat_x_rules, 401, NULL, "Invalid request token.", PLAT_REAUTH, "http_401",
      0, 0 },
};

static void test_classify_cases(void **state)
{
    for (size_t i = 0; i < sizeof classify_cases / sizeof classify_cases[0]; i++) {
        const struct classify_case *c = &classify_cases[i];
        struct http_response r;
        struct plat_error e;
        enum plat_outcome o;

        canned(&r, c->status, c->headers, c->body);
        o = plat_classify(c->rules, &r, "test call", &e);
        if (o != c->outcome)
            fail_msg("%s: got %s, want %s (%s)", c->name, plat_outcome_name(o),
                     plat_outcome_name(c->outcome), e.message);
        assert_int_equal(e.outcome, c->outcome);
        assert_string_equal(e.code, c->code);
        if (e.retry_after_ms < c->wait_min || e.retry_after_ms > c->wait_max)
            fail_msg("%s: retry_after_ms %lld", c->name, e.retry_after_ms);
        if (o == PLAT_OK)
            assert_string_equal(e.message, "");
        else
            assert_int_equal(e.http_status, c->status);
        http_response_free(&r);
    }
}

static void test_not_json_message(void **state)
{
    struct http_response r;
    struct plat_error e;

    canned(&r, 404, NULL, "<html>Not Found</html>");
    assert_int_equal(plat_classify(&plat_graph_rules, &r, "Facebook pages lookup", &e), PLAT_FATAL);
    assert_string_equal(e.message, "Facebook pages lookup: Facebook answered HTTP 404 with a body "
                                   "that is not its documented JSON");
    http_response_free(&r);
}

/* A platform that echoes a token in its message does not get it into ours. */
static void test_no_token_in_messages(void **state)
{
    static const char token[] = "ya29.a0AfH6SMBx3kq9ZtT0kEn5ecr3tVa1uE";
    struct http_response r;
    struct plat_error e;
    char body[512];

    snprintf(body, sizeof body,
             "{\"error\":\"invalid_grant\",\"error_description\":\"token %s is revoked\"}", token);
    canned(&r, 400, NULL, body);
    assert_int_equal(plat_classify(&plat_google_rules, &r, "Google token refresh", &e),
                     PLAT_REAUTH);
    assert_null(strstr(e.message, token));
    assert_null(strstr(e.message, "a0AfH6SMBx3kq9"));
    assert_non_null(strstr(e.message, "[redacted]"));
    assert_non_null(strstr(e.message, "is revoked"));
    http_response_free(&r);
}

static void test_x_rate_limit_reset(void **state)
{
    struct http_response r;
    struct plat_error e;
    char headers[256];
    long long now = (long long)time(NULL);

    snprintf(headers, sizeof headers,
             "x-rate-limit-limit: 100\r\nx-rate-limit-remaining: 0\r\nx-rate-limit-reset: %lld\r\n",
             now + 60);
    canned(&r, 429, headers,
           "{\"title\":\"Too Many Requests\",\"detail\":\"Too Many Requests\",\"type\":"
           "\"about:blank\",\"status\":429}");
    assert_int_equal(plat_classify(&plat_x_rules, &r, "X user lookup", &e), PLAT_DEFER);
    assert_true(e.retry_after_ms >= 58000 && e.retry_after_ms <= 60000);
    http_response_free(&r);
    /* a reset in the past says nothing: X's 15-minute window */
    snprintf(headers, sizeof headers, "x-rate-limit-reset: %lld\r\n", now - 10);
    canned(&r, 429, headers, "");
    assert_int_equal(plat_classify(&plat_x_rules, &r, "X user lookup", &e), PLAT_DEFER);
    assert_int_equal(e.retry_after_ms, 900000);
    http_response_free(&r);
}

static void test_retry_after(void **state)
{
    static const struct { const char *headers; long long min, max; } cases[] = {
        { "Retry-After: 120\r\n", 120000, 120000 },
        { "retry-after: 0\r\n", 0, 0 },
        { "Retry-After: soon\r\n", 0, 0 },
        { "Retry-After: -5\r\n", 0, 0 },
        { "Retry-After: 99999999999999999999\r\n", 0, 0 },
        { "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", 0, 0 },   /* past */
        { "X-Other: 1\r\n", 0, 0 },
        { NULL, 0, 0 },
    };
    struct http_response r;
    char headers[128], date[64];
    time_t later = time(NULL) + 90;
    struct tm tm;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long ms;

        canned(&r, 503, cases[i].headers, "");
        ms = plat_retry_after_ms(&r);
        if (ms < cases[i].min || ms > cases[i].max)
            fail_msg("case %zu: %lld", i, ms);
        http_response_free(&r);
    }
    gmtime_r(&later, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(headers, sizeof headers, "Retry-After: %s\r\n", date);
    canned(&r, 503, headers, "");
    assert_true(plat_retry_after_ms(&r) >= 85000 && plat_retry_after_ms(&r) <= 90000);
    http_response_free(&r);
    assert_int_equal(plat_retry_after_ms(NULL), 0);
}

static void test_transport(void **state)
{
    static const struct { int rc; enum plat_outcome o; const char *code; } cases[] = {
        { CP_ETIMEDOUT, PLAT_RETRY, "timeout" },
        { CP_EUNAVAIL, PLAT_RETRY, "unavailable" },
        { CP_EIO, PLAT_RETRY, "transport" },
        { CP_ETOOBIG, PLAT_FATAL, "response_too_big" },
        { CP_EINVAL, PLAT_FATAL, "bad_request" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_response r;
        struct plat_error e;

        memset(&r, 0, sizeof r);
        snprintf(r.error, sizeof r.error, "POST https://open.tiktokapis.com/v2/oauth/token/: x");
        assert_int_equal(plat_error_transport(&e, cases[i].rc, &r, "TikTok token exchange"),
                         cases[i].rc);
        assert_int_equal(e.outcome, cases[i].o);
        assert_string_equal(e.code, cases[i].code);
        assert_int_equal(e.http_status, 0);
        assert_non_null(strstr(e.message, "TikTok token exchange: POST"));
    }
}

static void test_error_set(void **state)
{
    struct plat_error e;
    char longtext[2000];

    plat_error_set(&e, PLAT_DEFER, 429, "rate", "waited %d s", 3);
    assert_int_equal(e.outcome, PLAT_DEFER);
    assert_int_equal(e.http_status, 429);
    assert_string_equal(e.code, "rate");
    assert_string_equal(e.message, "waited 3 s");
    assert_int_equal(e.retry_after_ms, 0);
    /* a long message is cut at a character, never inside one */
    memset(longtext, 0, sizeof longtext);
    for (size_t i = 0; i + 2 < sizeof longtext - 1; i += 2)
        memcpy(longtext + i, "\xc3\xa9", 2);
    plat_error_set(&e, PLAT_FATAL, 0, NULL, "xy%s", longtext);
    assert_true(strlen(e.message) < PLAT_MESSAGE_MAX);
    assert_int_equal(strlen(e.message) % 2, 0);
    assert_int_equal((unsigned char)e.message[strlen(e.message) - 1], 0xa9);
    assert_string_equal(e.code, "");
}

/* ------------------------------------------------------------ helpers -- */

static void test_form(void **state)
{
    static const char body[] = "oauth_token=a%2Bb&oauth_token_secret=c+d&user_id=42&bad=%zz"
                               "&empty=&screen_name=sandbox_x\n";
    struct buf b;
    char out[64];

    buf_init(&b, 256);
    assert_int_equal(plat_form_add(&b, "a b", "x&y=z/é"), 0);
    assert_int_equal(plat_form_add(&b, "k", ""), 0);
    assert_string_equal(buf_str(&b), "a%20b=x%26y%3Dz%2F%C3%A9&k=");
    buf_free(&b);
    buf_init(&b, 256);
    assert_int_equal(buf_adds(&b, "https://h/p?"), 0);
    assert_int_equal(plat_form_add(&b, "q", "1"), 0);
    assert_string_equal(buf_str(&b), "https://h/p?q=1");
    buf_free(&b);

    assert_int_equal(plat_form_get(body, strlen(body), "oauth_token", out, sizeof out), 0);
    assert_string_equal(out, "a+b");
    assert_int_equal(plat_form_get(body, strlen(body), "oauth_token_secret", out, sizeof out), 0);
    assert_string_equal(out, "c d");
    assert_int_equal(plat_form_get(body, strlen(body), "screen_name", out, sizeof out), 0);
    assert_string_equal(out, "sandbox_x");
    assert_int_equal(plat_form_get(body, strlen(body), "empty", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(plat_form_get(body, strlen(body), "bad", out, sizeof out), CP_EINVAL);
    assert_int_equal(plat_form_get(body, strlen(body), "user", out, sizeof out), CP_ENOTFOUND);
    assert_int_equal(plat_form_get(body, strlen(body), "user_id", out, 2), CP_ETOOBIG);
    assert_int_equal(plat_form_get("a=%4", 4, "a", out, sizeof out), CP_EINVAL);
    assert_int_equal(plat_form_get("a=%00", 5, "a", out, sizeof out), CP_EINVAL);
}

static void test_text_clean(void **state)
{
    static const struct { const char *in, *want; } cases[] = {
        { "Invalid OAuth access token.", "Invalid OAuth access token." },
        { "line\none\ttab", "line one tab" },
        { "token EAAGm0PX4ZCpsBAKZBgRkdV2ZC3ZBq1ZA was bad", "token [redacted] was bad" },
        { "https://developers.facebook.com/docs/graph-api", "https://developers.facebook.com/docs/graph-api" },
        { "abcdefghijklmnopqrstuvwxyzabcdefghij", "abcdefghijklmnopqrstuvwxyzabcdefghij" },
        { "", "" },
    };
    char out[128];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plat_text_clean(out, sizeof out, cases[i].in);
        assert_string_equal(out, cases[i].want);
    }
    plat_text_clean(out, 8, "0123456789");
    assert_string_equal(out, "0123456");
}

static void test_url(void **state)
{
    struct buf b;

    buf_init(&b, 256);
    assert_int_equal(plat_url(&b, "http://127.0.0.1:9/", "/v2/oauth/token/"), 0);
    assert_string_equal(buf_str(&b), "http://127.0.0.1:9/v2/oauth/token/");
    buf_reset(&b);
    assert_int_equal(plat_url(&b, "http://127.0.0.1:9", "/%s/me", "v21.0"), 0);
    assert_string_equal(buf_str(&b), "http://127.0.0.1:9/v21.0/me");
    buf_reset(&b);
    assert_int_equal(plat_url(&b, "", "/x"), CP_EINVAL);
    buf_free(&b);
}

/* ------------------------------------------------------------ parsers -- */

static void test_oauth2_tokens(void **state)
{
    struct plat_tokens t;
    struct plat_error e;
    char open_id[64];
    static const char rotated[] =
        "{\"open_id\":\"-000OAbc\",\"scope\":\"user.info.basic,video.list\",\"access_token\":"
        "\"act.new\",\"expires_in\":7200,\"refresh_token\":\"rft.rotated\","
        "\"refresh_expires_in\":15552000,\"token_type\":\"Bearer\"}";
    static const char no_refresh[] =
        "{\"access_token\":\"ya29.x\",\"expires_in\":3599,\"scope\":\"https://www.googleapis.com/"
        "auth/youtube.upload\",\"token_type\":\"Bearer\"}";

    assert_int_equal(tiktok_parse_tokens(rotated, strlen(rotated), &t, open_id, sizeof open_id,
                                         &e), 0);
    assert_string_equal(t.access_token, "act.new");
    assert_string_equal(t.refresh_token, "rft.rotated");
    assert_int_equal(t.access_expires_in_s, 7200);
    assert_int_equal(t.refresh_expires_in_s, 15552000);
    assert_string_equal(t.scopes, "user.info.basic,video.list");
    assert_string_equal(open_id, "-000OAbc");
    assert_null(t.token_secret);
    plat_tokens_clear(&t);

    assert_int_equal(youtube_parse_tokens(no_refresh, strlen(no_refresh), &t, &e), 0);
    assert_string_equal(t.access_token, "ya29.x");
    assert_null(t.refresh_token);      /* keep the stored one */
    assert_int_equal(t.access_expires_in_s, 3599);
    assert_int_equal(t.refresh_expires_in_s, 0);
    plat_tokens_clear(&t);

    /* an empty refresh token is no refresh token */
    {
        static const char empty[] = "{\"access_token\":\"a\",\"refresh_token\":\"\","
                                    "\"expires_in\":\"5184000\"}";
        assert_int_equal(x_parse_oauth2_tokens(empty, strlen(empty), &t, &e), 0);
        assert_null(t.refresh_token);
        assert_int_equal(t.access_expires_in_s, 5184000);
        plat_tokens_clear(&t);
    }

    static const struct { const char *body; } bad[] = {
        { "{\"token_type\":\"Bearer\",\"expires_in\":3600}" },
        { "{\"access_token\":\"\"}" },
        { "{\"access_token\":42}" },
        { "[\"access_token\"]" },
        { "access_token=abc" },
        { "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t.access_token = (char *)"garbage";
        assert_int_equal(youtube_parse_tokens(bad[i].body, strlen(bad[i].body), &t, &e),
                         CP_EPROTO);
        assert_null(t.access_token);
        assert_int_equal(e.outcome, PLAT_FATAL);
        assert_string_equal(e.code, "unexpected_response");
    }
}

static void test_tiktok_user(void **state)
{
    static const char ok[] =
        "{\"data\":{\"user\":{\"open_id\":\"-000OAbc\",\"union_id\":\"u-1\",\"avatar_url\":"
        "\"https://p16.example/a.jpg\",\"display_name\":\"Sandbox Creator\",\"username\":"
        "\"sandbox_creator\"}},\"error\":{\"code\":\"ok\",\"message\":\"\",\"log_id\":\"L\"}}";
    static const char no_id[] = "{\"data\":{\"user\":{\"display_name\":\"x\"}},"
                                "\"error\":{\"code\":\"ok\"}}";
    struct plat_account a;
    struct plat_error e;

    assert_int_equal(tiktok_parse_user(ok, strlen(ok), &a, &e), 0);
    assert_string_equal(a.remote_id, "-000OAbc");
    assert_string_equal(a.username, "sandbox_creator");
    assert_string_equal(a.display_name, "Sandbox Creator");
    assert_string_equal(a.avatar_url, "https://p16.example/a.jpg");
    assert_string_equal(a.meta, "{\"union_id\":\"u-1\"}");
    assert_int_equal(tiktok_parse_user(no_id, strlen(no_id), &a, &e), CP_EPROTO);
    assert_string_equal(a.remote_id, "");
    assert_string_equal(e.code, "unexpected_response");
}

static void test_tiktok_cookie_account(void **state)
{
    static const char ok[] =
        "{\"data\":{\"user_id_str\":\"6912345678901234567\",\"username\":\"sandbox_creator\","
        "\"screen_name\":\"Sandbox Creator\",\"avatar_url\":\"https://p16.example/b.jpg\"},"
        "\"message\":\"success\"}";
    static const char expired[] =
        "{\"data\":{\"description\":\"Session expired, please sign in again.\",\"error_code\":8},"
        "\"message\":\"error\"}";
    struct plat_account a;
    struct plat_error e;
    struct http_response r;

    assert_int_equal(tiktok_parse_cookie_account(ok, strlen(ok), &a, &e), 0);
    assert_string_equal(a.remote_id, "6912345678901234567");
    assert_string_equal(a.username, "sandbox_creator");
    assert_string_equal(a.display_name, "Sandbox Creator");
    assert_string_equal(a.avatar_url, "https://p16.example/b.jpg");
    assert_int_equal(tiktok_parse_cookie_account(expired, strlen(expired), &a, &e), CP_EPROTO);
    /* what the client sees first: the dead session is a reconnect */
    canned(&r, 200, NULL, expired);
    assert_int_equal(plat_classify(&plat_tiktok_rules, &r, "TikTok session check", &e),
                     PLAT_REAUTH);
    assert_non_null(strstr(e.message, "Session expired"));
    http_response_free(&r);
}

static void test_instagram_pages(void **state)
{
    static const char second[] =
        "{\"data\":[{\"id\":\"101\",\"name\":\"Plain Page\"},"
        "{\"id\":\"102\",\"name\":\"Sandbox Page\",\"instagram_business_account\":"
        "{\"id\":\"17841400000000001\",\"username\":\"sandbox_reels\",\"name\":\"Sandbox Reels\","
        "\"profile_picture_url\":\"https://scontent.example/p.jpg\"}},"
        "{\"id\":\"103\",\"instagram_business_account\":{\"id\":\"999\"}}],\"paging\":{}}";
    static const char more[] =
        "{\"data\":[{\"id\":\"101\",\"name\":\"Plain Page\"}],\"paging\":{\"cursors\":{\"before\":"
        "\"QVFIUb\",\"after\":\"QVFIUa\"},\"next\":\"https://graph.example/v21.0/me/accounts?after=QVFIUa\"}}";
    static const char none[] =
        "{\"data\":[{\"id\":\"101\",\"name\":\"No Business Page\"}],\"paging\":{\"cursors\":"
        "{\"before\":\"b\",\"after\":\"a\"}}}";
    static const char empty[] = "{\"data\":[]}";
    struct plat_account a;
    struct plat_error e;
    char after[64], id[64];
    static const char me[] = "{\"id\":\"1000001\",\"name\":\"Sandbox User\"}";

    assert_int_equal(instagram_parse_pages(second, strlen(second), "1000001", &a, after,
                                           sizeof after, &e), 0);
    assert_string_equal(a.remote_id, "17841400000000001");
    assert_string_equal(a.username, "sandbox_reels");
    assert_string_equal(a.display_name, "Sandbox Reels");
    assert_string_equal(a.avatar_url, "https://scontent.example/p.jpg");
    assert_string_equal(a.meta, "{\"page_id\":\"102\",\"facebook_user_id\":\"1000001\"}");

    assert_int_equal(instagram_parse_pages(more, strlen(more), NULL, &a, after, sizeof after, &e),
                     CP_ENOTFOUND);
    assert_string_equal(after, "QVFIUa");
    assert_int_equal(instagram_parse_pages(none, strlen(none), NULL, &a, after, sizeof after, &e),
                     CP_ENOTFOUND);
    assert_string_equal(after, "");
    assert_int_equal(e.outcome, PLAT_FATAL);
    assert_string_equal(e.code, "no_instagram_account");
    assert_string_equal(a.remote_id, "");
    assert_int_equal(instagram_parse_pages(empty, strlen(empty), NULL, &a, after, sizeof after,
                                           &e), CP_ENOTFOUND);
    assert_string_equal(e.code, "no_instagram_account");
    assert_int_equal(instagram_parse_pages("{}", 2, NULL, &a, after, sizeof after, &e), CP_EPROTO);
    assert_string_equal(e.code, "unexpected_response");

    assert_int_equal(instagram_parse_me(me, strlen(me), id, sizeof id, &e), 0);
    assert_string_equal(id, "1000001");
    assert_int_equal(instagram_parse_me("{\"name\":\"x\"}", 12, id, sizeof id, &e), CP_EPROTO);
}

static void test_youtube_channel(void **state)
{
    static const char ok[] =
        "{\"kind\":\"youtube#channelListResponse\",\"pageInfo\":{\"totalResults\":1},\"items\":"
        "[{\"kind\":\"youtube#channel\",\"id\":\"UCsandbox0000000000000\",\"snippet\":{\"title\":"
        "\"Sandbox Shorts\",\"customUrl\":\"@sandboxshorts\",\"thumbnails\":{\"default\":{\"url\":"
        "\"https://yt3.example/d.jpg\"}}}}]}";
    static const char none[] = "{\"kind\":\"youtube#channelListResponse\",\"pageInfo\":"
                               "{\"totalResults\":0},\"items\":[]}";
    static const char absent[] = "{\"kind\":\"youtube#channelListResponse\",\"pageInfo\":"
                                 "{\"totalResults\":0}}";
    struct plat_account a;
    struct plat_error e;

    assert_int_equal(youtube_parse_channel(ok, strlen(ok), &a, &e), 0);
    assert_string_equal(a.remote_id, "UCsandbox0000000000000");
    assert_string_equal(a.display_name, "Sandbox Shorts");
    assert_string_equal(a.username, "sandboxshorts");
    assert_string_equal(a.avatar_url, "https://yt3.example/d.jpg");
    assert_int_equal(youtube_parse_channel(none, strlen(none), &a, &e), CP_ENOTFOUND);
    assert_int_equal(e.outcome, PLAT_FATAL);
    assert_string_equal(e.code, "no_youtube_channel");
    assert_int_equal(youtube_parse_channel(absent, strlen(absent), &a, &e), CP_ENOTFOUND);
    assert_string_equal(e.code, "no_youtube_channel");
    assert_int_equal(youtube_parse_channel("{\"items\":[{}]}", 14, &a, &e), CP_EPROTO);
    assert_int_equal(youtube_parse_channel("{\"items\":{}}", 12, &a, &e), CP_EPROTO);
}

static void test_x_parsers(void **state)
{
    static const char access[] = "oauth_token=6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY"
                                 "&oauth_token_secret=2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU"
                                 "&user_id=6253282&screen_name=sandbox_x";
    static const char request[] = "oauth_token=Z6eEdO8MOmk394WozF5oKyuAv855l4Mlqo7hhlSLik"
                                  "&oauth_token_secret=Kd75W4OQfb2oJTV0vzGzeXftVAwgMnEK9MumzYcM"
                                  "&oauth_callback_confirmed=true";
    static const char unconfirmed[] = "oauth_token=a&oauth_token_secret=b"
                                      "&oauth_callback_confirmed=false";
    static const char user[] = "{\"data\":{\"id\":\"6253282\",\"name\":\"Sandbox X\",\"username\":"
                               "\"sandbox_x\",\"profile_image_url\":\"https://pbs.example/x.jpg\"}}";
    struct plat_tokens t;
    struct plat_account a;
    struct plat_error e;
    char token[AUTH_SECRET_MAX], secret[AUTH_SECRET_MAX];

    assert_int_equal(x_parse_access_token(access, strlen(access), &t, &a, &e), 0);
    assert_string_equal(t.access_token, "6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY");
    assert_string_equal(t.token_secret, "2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU");
    assert_null(t.refresh_token);
    assert_int_equal(t.access_expires_in_s, 0);
    assert_string_equal(a.remote_id, "6253282");
    assert_string_equal(a.username, "sandbox_x");
    plat_tokens_clear(&t);
    assert_int_equal(x_parse_access_token("oauth_token=a&user_id=1", 23, &t, &a, &e), CP_EPROTO);
    assert_null(t.access_token);
    assert_int_equal(x_parse_access_token("{\"errors\":[]}", 13, &t, &a, &e), CP_EPROTO);

    assert_int_equal(x_parse_request_token(request, strlen(request), token, sizeof token, secret,
                                           sizeof secret, &e), 0);
    assert_string_equal(token, "Z6eEdO8MOmk394WozF5oKyuAv855l4Mlqo7hhlSLik");
    assert_string_equal(secret, "Kd75W4OQfb2oJTV0vzGzeXftVAwgMnEK9MumzYcM");
    assert_int_equal(x_parse_request_token(unconfirmed, strlen(unconfirmed), token, sizeof token,
                                           secret, sizeof secret, &e), CP_EPROTO);
    assert_string_equal(e.code, "unexpected_response");
    assert_string_equal(token, "");

    assert_int_equal(x_parse_user(user, strlen(user), &a, &e), 0);
    assert_string_equal(a.remote_id, "6253282");
    assert_string_equal(a.username, "sandbox_x");
    assert_string_equal(a.display_name, "Sandbox X");
    assert_string_equal(a.avatar_url, "https://pbs.example/x.jpg");
    assert_int_equal(x_parse_user("{\"data\":{}}", 11, &a, &e), CP_EPROTO);
}

/* ------------------------------------------------------ authorize URLs -- */

static const char redirect[] = "http://127.0.0.1:8080/oauth/p/callback";
static const char redirect_enc[] = "http%3A%2F%2F127.0.0.1%3A8080%2Foauth%2Fp%2Fcallback";
static const char challenge[] = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

static void expect_url(int rc, struct buf *b, const char *want)
{
    assert_int_equal(rc, 0);
    assert_string_equal(buf_str(b), want);
    buf_reset(b);
}

static void test_authorize_urls(void **state)
{
    struct conf *c = test_conf("tiktok_client_key = ck test\n"
                               "facebook_app_id = 1234\n"
                               "google_client_id = gid.apps\n"
                               "x_client_id = xcid\n"
                               "tiktok_auth_url = http://127.0.0.1:9001/v2/auth/authorize/\n");
    struct buf b, want;

    buf_init(&b, 8192);
    buf_init(&want, 8192);
    buf_printf(&want, "http://127.0.0.1:9001/v2/auth/authorize/?client_key=ck%%20test"
                      "&scope=user.info.basic%%2Cuser.info.profile%%2Cvideo.list&response_type=code&redirect_uri=%s"
                      "&state=s%%2Ft&code_challenge=%s&code_challenge_method=S256",
               redirect_enc, challenge);
    expect_url(tiktok_authorize_url(c, "s/t", redirect, challenge, &b), &b, buf_str(&want));

    buf_reset(&want);
    buf_printf(&want, "https://www.facebook.com/v21.0/dialog/oauth?client_id=1234&redirect_uri=%s"
                      "&state=st&scope=instagram_basic%%2Cinstagram_content_publish%%2C"
                      "pages_show_list%%2Cpages_read_engagement%%2Cbusiness_management"
                      "&response_type=code", redirect_enc);
    expect_url(instagram_authorize_url(c, "st", redirect, &b), &b, buf_str(&want));

    buf_reset(&want);
    buf_printf(&want, "https://accounts.google.com/o/oauth2/v2/auth?client_id=gid.apps"
                      "&redirect_uri=%s&response_type=code&scope=https%%3A%%2F%%2Fwww.googleapis."
                      "com%%2Fauth%%2Fyoutube.upload%%20https%%3A%%2F%%2Fwww.googleapis.com%%2F"
                      "auth%%2Fyoutube.readonly&access_type=offline&prompt=consent"
                      "&include_granted_scopes=true&state=st&code_challenge=%s"
                      "&code_challenge_method=S256", redirect_enc, challenge);
    expect_url(youtube_authorize_url(c, "st", redirect, challenge, &b), &b, buf_str(&want));

    buf_reset(&want);
    buf_printf(&want, "https://x.com/i/oauth2/authorize?response_type=code&client_id=xcid"
                      "&redirect_uri=%s&scope=tweet.read%%20tweet.write%%20users.read%%20"
                      "media.write%%20offline.access&state=st&code_challenge=%s"
                      "&code_challenge_method=S256", redirect_enc, challenge);
    expect_url(x_authorize_url(c, "st", redirect, challenge, &b), &b, buf_str(&want));

    buf_free(&b);
    buf_free(&want);
    conf_free(c);
}

/* auth_begin through the table: state key, a fresh verifier whose
 * challenge is in the URL; nothing is sent for the OAuth 2 platforms. */
static void test_auth_begin(void **state)
{
    struct conf *c = test_conf(app_conf);
    struct conf *x2 = test_conf("x_auth_mode = oauth2\nx_client_id = xcid\n");
    struct conf *none = test_conf(NULL);
    const enum platform_id ids[] = { PLATFORM_TIKTOK, PLATFORM_INSTAGRAM, PLATFORM_YOUTUBE,
                                     PLATFORM_X };
    struct auth_begin_in in = { "state-123", redirect };

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const struct platform *p = platform_get(ids[i]);
        struct plat_ctx pc = { ids[i] == PLATFORM_X ? x2 : c, NULL };
        struct auth_begin_out out;
        struct plat_error e;
        char ch[PKCE_CHALLENGE_LEN + 1];

        assert_int_equal(p->auth_begin(&pc, &in, &out, &e), 0);
        assert_string_equal(out.state_key, "state-123");
        assert_non_null(strstr(buf_str(&out.url), "state=state-123"));
        assert_string_equal(out.request_secret, "");
        if (ids[i] == PLATFORM_INSTAGRAM) {
            assert_string_equal(out.verifier, "");
            assert_null(strstr(buf_str(&out.url), "code_challenge"));
        } else {
            assert_int_equal(strlen(out.verifier), PKCE_VERIFIER_LEN);
            assert_int_equal(pkce_challenge(out.verifier, ch), 0);
            assert_non_null(strstr(buf_str(&out.url), ch));
        }
        buf_free(&out.url);

        pc.conf = none;
        assert_int_not_equal(p->auth_begin(&pc, &in, &out, &e), 0);
        assert_int_equal(e.outcome, PLAT_FATAL);
        assert_string_equal(e.code, "not_configured");
        assert_int_equal(out.url.len, 0);
    }
    conf_free(c);
    conf_free(x2);
    conf_free(none);
}

/* refresh and check refuse what they cannot do without sending anything. */
static void test_refusals_offline(void **state)
{
    struct conf *c = test_conf(app_conf);
    struct plat_ctx pc = { c, NULL };
    struct plat_creds cookie = { AUTH_COOKIE, "", "", "", "# Netscape HTTP Cookie File\n" };
    struct plat_creds oauth1 = { AUTH_OAUTH1, "tok", "", "sec", NULL };
    struct plat_creds norefresh = { AUTH_OAUTH2, "tok", "", NULL, NULL };
    struct plat_tokens t;
    struct plat_account a;
    struct plat_error e;

    assert_int_not_equal(tiktok_refresh(&pc, &cookie, &t, &e), 0);
    assert_int_equal(e.outcome, PLAT_FATAL);
    assert_int_not_equal(x_refresh(&pc, &oauth1, &t, &e), 0);
    assert_string_equal(e.code, "not_refreshable");
    assert_int_not_equal(tiktok_refresh(&pc, &norefresh, &t, &e), 0);
    assert_int_equal(e.outcome, PLAT_REAUTH);
    assert_int_not_equal(youtube_refresh(&pc, &norefresh, &t, &e), 0);
    assert_int_equal(e.outcome, PLAT_REAUTH);
    assert_null(t.access_token);
    /* cookies without a session: reconnect, nothing sent */
    assert_int_not_equal(tiktok_check(&pc, &cookie, &a, &e), 0);
    assert_int_equal(e.outcome, PLAT_REAUTH);
    assert_string_equal(e.code, "cookies_invalid");
    conf_free(c);
}

/* ------------------------------------------------------ TikTok cookies -- */

struct cookie_case {
    const char *name;
    const char *text;
    int rc;
    const char *out;                  /* normalized cookies.txt, or what *why contains */
    const char *header;               /* tiktok_cookie_header of out, when rc == 0 */
};

static const struct cookie_case cookie_cases[] = {
    { "header form", "sessionid=abc123; tt_csrf_token=x-Y_z; msToken=a%2Fb==",
      0,
      "# Netscape HTTP Cookie File\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\tabc123\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\ttt_csrf_token\tx-Y_z\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tmsToken\ta%2Fb==\n",
      "sessionid=abc123; tt_csrf_token=x-Y_z; msToken=a%2Fb==" },
    { "Cookie: prefix, quotes, blanks", "  Cookie: sessionid=\"abc\";; sid_tt=1 ;\n", 0,
      "# Netscape HTTP Cookie File\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\tabc\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tsid_tt\t1\n",
      "sessionid=abc; sid_tt=1" },
    { "netscape file", "# Netscape HTTP Cookie File\n"
      "# https://curl.se/docs/http-cookies.html\n"
      "\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t4102444800\tsessionid\tdeadbeef\r\n"
      "#HttpOnly_.tiktok.com\tTRUE\t/\tTRUE\t4102444800\tsid_guard\tg%7C1\n"
      ".example.org\tTRUE\t/\tFALSE\t0\tsessionid\tnotours\n"
      "www.tiktok.com\tFALSE\t/\tFALSE\t0\tempty\t\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t1000\told\tgone\n"
      "evil-tiktok.com\tTRUE\t/\tTRUE\t0\tx\ty\n",
      0,
      "# Netscape HTTP Cookie File\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t4102444800\tsessionid\tdeadbeef\n"
      "#HttpOnly_.tiktok.com\tTRUE\t/\tTRUE\t4102444800\tsid_guard\tg%7C1\n"
      "www.tiktok.com\tFALSE\t/\tFALSE\t0\tempty\t\n",
      "sessionid=deadbeef; sid_guard=g%7C1; empty=" },
    { "netscape, no sessionid", ".tiktok.com\tTRUE\t/\tTRUE\t0\tsid_tt\tx\n", CP_EINVAL,
      "no sessionid cookie", NULL },
    { "netscape, only other sites", ".example.org\tTRUE\t/\tTRUE\t0\tsessionid\tx\n", CP_EINVAL,
      "no cookies for tiktok.com", NULL },
    { "netscape, expired session", ".tiktok.com\tTRUE\t/\tTRUE\t1000\tsessionid\tx\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tother\tx\n", CP_EINVAL, "expired", NULL },
    { "netscape, bad line", "# Netscape HTTP Cookie File\n.tiktok.com\tTRUE\t/\n", CP_EINVAL,
      "Line 2", NULL },
    { "netscape, bad flag", ".tiktok.com\tyes\t/\tTRUE\t0\tsessionid\tx\n", CP_EINVAL, "Line 1",
      NULL },
    { "netscape, bad expiry", ".tiktok.com\tTRUE\t/\tTRUE\tnever\tsessionid\tx\n", CP_EINVAL,
      "Line 1", NULL },
    { "header, no sessionid", "sid_tt=1; tt_webid=2", CP_EINVAL, "no sessionid cookie", NULL },
    { "header, empty sessionid", "sessionid=", CP_EINVAL, "no sessionid cookie", NULL },
    { "header with a tab", "sessionid=abc;\tsid_tt=1", 0,
      "# Netscape HTTP Cookie File\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\tabc\n"
      ".tiktok.com\tTRUE\t/\tTRUE\t0\tsid_tt\t1\n",
      "sessionid=abc; sid_tt=1" },
    { "junk words", "hello world", CP_EINVAL, "neither", NULL },
    { "junk lines", "sessionid=a\nfoo=b", CP_EINVAL, "neither", NULL },
    { "space in a value", "sessionid=a b", CP_EINVAL, "neither", NULL },
    { "JSON export", "[{\"name\":\"sessionid\",\"value\":\"x\"}]", CP_EINVAL, "neither", NULL },
    { "empty", "   \n", CP_EINVAL, "No cookies", NULL },
};

static void test_cookies(void **state)
{
    struct buf out, why, header;

    buf_init(&out, PLAT_COOKIES_MAX);
    buf_init(&why, 1024);
    buf_init(&header, PLAT_COOKIES_MAX);
    for (size_t i = 0; i < sizeof cookie_cases / sizeof cookie_cases[0]; i++) {
        const struct cookie_case *c = &cookie_cases[i];
        int rc = tiktok_cookies_normalize(c->text, &out, &why);

        if (rc != c->rc)
            fail_msg("%s: rc %d (%s)", c->name, rc, buf_str(&why));
        if (rc == 0) {
            assert_string_equal(buf_str(&out), c->out);
            assert_int_equal(tiktok_cookie_header(buf_str(&out), &header), 0);
            assert_string_equal(buf_str(&header), c->header);
            /* normalizing twice changes nothing */
            {
                struct buf again;

                buf_init(&again, PLAT_COOKIES_MAX);
                assert_int_equal(tiktok_cookies_normalize(c->out, &again, &why), 0);
                assert_string_equal(buf_str(&again), c->out);
                buf_free(&again);
            }
        } else {
            assert_int_equal(out.len, 0);
            if (!strstr(buf_str(&why), c->out))
                fail_msg("%s: why is \"%s\"", c->name, buf_str(&why));
        }
    }
    /* the header form is not what connections store */
    assert_int_equal(tiktok_cookie_header("sessionid=abc", &header), CP_EINVAL);
    assert_int_equal(tiktok_cookies_normalize(NULL, &out, &why), CP_EINVAL);
    assert_int_equal(tiktok_cookies_normalize("sessionid=a", &out, NULL), 0);
    buf_free(&out);
    buf_free(&why);
    buf_free(&header);
}

static void test_cookies_oversize(void **state)
{
    struct buf in, out, why;

    buf_init(&in, 4 * PLAT_COOKIES_MAX);
    buf_init(&out, PLAT_COOKIES_MAX);
    buf_init(&why, 1024);
    assert_int_equal(buf_adds(&in, "sessionid=abc"), 0);
    while (in.len <= PLAT_COOKIES_MAX)
        assert_int_equal(buf_adds(&in, "; a=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"), 0);
    assert_int_equal(tiktok_cookies_normalize(buf_str(&in), &out, &why), CP_EINVAL);
    assert_non_null(strstr(buf_str(&why), "longer than"));
    /* under the input cap, but too many cookies */
    buf_reset(&in);
    assert_int_equal(buf_adds(&in, "sessionid=abc"), 0);
    for (int i = 0; i < 400; i++)
        assert_int_equal(buf_printf(&in, "; c%d=v", i), 0);
    assert_int_equal(tiktok_cookies_normalize(buf_str(&in), &out, &why), CP_EINVAL);
    assert_non_null(strstr(buf_str(&why), "too many"));
    assert_int_equal(out.len, 0);
    buf_free(&in);
    buf_free(&out);
    buf_free(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_configured),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_every_row),
        cmocka_unit_test(test_classify_cases),
        cmocka_unit_test(test_not_json_message),
        cmocka_unit_test(test_no_token_in_messages),
        cmocka_unit_test(test_x_rate_limit_reset),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_text_clean),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_oauth2_tokens),
        cmocka_unit_test(test_tiktok_user),
        cmocka_unit_test(test_tiktok_cookie_account),
        cmocka_unit_test(test_instagram_pages),
        cmocka_unit_test(test_youtube_channel),
        cmocka_unit_test(test_x_parsers),
        cmocka_unit_test(test_authorize_urls),
        cmocka_unit_test(test_auth_begin),
        cmocka_unit_test(test_refusals_offline),
        cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_cookies_oversize),
    };

    return cmocka_run_group_tests_name("platforms", tests, NULL, NULL);
}
