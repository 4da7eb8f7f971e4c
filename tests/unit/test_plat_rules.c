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
#include "http.h"
#include "plat_internal.h"
#include "platforms.h"

/*
 * The classification rows publishing relies on, one realistic answer of
 * the platform per row: outcome, code and how long to wait.
 */

#define MIN_MS (60 * 1000LL)
#define QUARTER_MS (15 * MIN_MS)
#define HOUR_MS (60 * MIN_MS)

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

#define GRAPH(code, sub, msg)                                                                  \
    "{\"error\":{\"message\":\"" msg "\",\"type\":\"OAuthException\",\"code\":" code sub    \
    ",\"fbtrace_id\":\"AbCdEf\"}}"
#define SUB(s) ",\"error_subcode\":" s
#define GOOGLE(status, reason, msg)                                                            \
    "{\"error\":{\"code\":" status ",\"message\":\"" msg "\",\"errors\":[{\"message\":\"" msg \
    "\",\"domain\":\"youtube.video\",\"reason\":\"" reason "\"}]}}"
#define APP_USAGE(n) "x-app-usage: {\"call_count\":" n ",\"total_cputime\":10,\"total_time\":12}\r\n"
#define BUC(min)                                                                               \
    "x-business-use-case-usage: {\"17841400000000000\":[{\"type\":\"instagram\","           \
    "\"call_count\":100,\"total_cputime\":5,\"total_time\":5,"                              \
    "\"estimated_time_to_regain_access\":" min "}]}\r\n"

struct rule_case {
    const char *name;
    const struct plat_rules *rules;
    long status;
    const char *headers;
    const char *body;
    enum plat_outcome outcome;
    const char *code;
    long long wait_min, wait_max;
};

static const struct rule_case cases[] = {
    /* ---- Graph (Instagram) */
    { "graph transient 1", &plat_graph_rules, 500, APP_USAGE("3"),
      GRAPH("1", "", "An unknown error occurred"), PLAT_RETRY, "1", 0, 0 },
    { "graph transient 2 with Retry-After", &plat_graph_rules, 503, "Retry-After: 20\r\n",
      GRAPH("2", "", "An unexpected error has occurred. Please retry your request later."),
      PLAT_RETRY, "2", 20000, 20000 },
    { "graph app limit 4, business usage says 12 min", &plat_graph_rules, 400,
      APP_USAGE("100") BUC("12"), GRAPH("4", "", "(#4) Application request limit reached"),
      PLAT_DEFER, "4", 12 * MIN_MS, 12 * MIN_MS },
    { "graph app limit 4, app usage full", &plat_graph_rules, 403, APP_USAGE("100"),
      GRAPH("4", "", "(#4) Application request limit reached"), PLAT_DEFER, "4", HOUR_MS,
      HOUR_MS },
    { "graph user limit 17, nothing said", &plat_graph_rules, 400, NULL,
      GRAPH("17", "", "(#17) User request limit reached"), PLAT_DEFER, "17", QUARTER_MS,
      QUARTER_MS },
    { "graph page limit 32 with Retry-After", &plat_graph_rules, 400, "Retry-After: 90\r\n",
      GRAPH("32", "", "(#32) Page request limit reached"), PLAT_DEFER, "32", 90000, 90000 },
    { "graph 613", &plat_graph_rules, 400, APP_USAGE("40"),
      GRAPH("613", "", "Calls to this api have exceeded the rate limit."), PLAT_DEFER, "613",
      QUARTER_MS, QUARTER_MS },
    { "graph publishing limit 9/2207042", &plat_graph_rules, 400, BUC("0"),
      GRAPH("9", SUB("2207042"), "Application request limit reached"), PLAT_DEFER, "9",
      QUARTER_MS, QUARTER_MS },
    { "graph media not ready 9007/2207027", &plat_graph_rules, 400, NULL,
      GRAPH("9007", SUB("2207027"), "Media ID is not available"), PLAT_RETRY, "9007", 10000,
      10000 },
    { "graph token expired 190/463", &plat_graph_rules, 400, NULL,
      GRAPH("190", SUB("463"), "Error validating access token: Session has expired"),
      PLAT_REAUTH, "190", 0, 0 },
    { "graph missing permission 10", &plat_graph_rules, 403, NULL,
      GRAPH("10", "", "(#10) Application does not have permission for this action"),
      PLAT_REAUTH, "10", 0, 0 },
    { "graph missing permission 200", &plat_graph_rules, 403, NULL,
      GRAPH("200", "", "(#200) Requires instagram_content_publish permission"), PLAT_REAUTH,
      "200", 0, 0 },
    { "graph permission 230 stays fatal", &plat_graph_rules, 403, NULL,
      GRAPH("230", "", "(#230) Requires pages_messaging permission"), PLAT_FATAL, "230", 0,
      0 },
    { "graph policy block 368", &plat_graph_rules, 400, NULL,
      GRAPH("368", SUB("1390008"), "The action attempted has been deemed abusive"),
      PLAT_FATAL, "368", 0, 0 },
    { "graph unsupported video 100/2207026", &plat_graph_rules, 400, NULL,
      GRAPH("100", SUB("2207026"), "The video format is not supported."), PLAT_FATAL, "100",
      0, 0 },
    { "graph caption 100/2207018", &plat_graph_rules, 400, NULL,
      GRAPH("100", SUB("2207018"), "The caption is too long"), PLAT_FATAL, "100", 0, 0 },
    { "graph html 502", &plat_graph_rules, 502, NULL, "<html>Bad Gateway</html>", PLAT_RETRY,
      "http_502", 0, 0 },
    { "graph bare 429", &plat_graph_rules, 429, "Retry-After: 45\r\n", "", PLAT_DEFER,
      "http_429", 45000, 45000 },
    { "graph bare 429, nothing said", &plat_graph_rules, 429, NULL, "", PLAT_DEFER, "http_429",
      QUARTER_MS, QUARTER_MS },
    /* ---- Google (YouTube) */
    { "google quotaExceeded", &plat_google_rules, 403, NULL,
      GOOGLE("403", "quotaExceeded", "The request cannot be completed because you have "
                                     "exceeded your quota."),
      PLAT_DEFER, "quotaExceeded", 0, 0 },
    { "google uploadLimitExceeded", &plat_google_rules, 400, NULL,
      GOOGLE("400", "uploadLimitExceeded", "The user has exceeded the number of videos they "
                                           "may upload."),
      PLAT_DEFER, "uploadLimitExceeded", 0, 0 },
    { "google rateLimitExceeded with Retry-After", &plat_google_rules, 403,
      "Retry-After: 30\r\n", GOOGLE("403", "rateLimitExceeded", "Rate Limit Exceeded"),
      PLAT_DEFER, "rateLimitExceeded", 30000, 30000 },
    { "google userRateLimitExceeded", &plat_google_rules, 403, NULL,
      GOOGLE("403", "userRateLimitExceeded", "User Rate Limit Exceeded"), PLAT_DEFER,
      "userRateLimitExceeded", MIN_MS, MIN_MS },
    { "google authError", &plat_google_rules, 401, NULL,
      GOOGLE("401", "authError", "Invalid Credentials"), PLAT_REAUTH, "authError", 0, 0 },
    { "google invalid_grant", &plat_google_rules, 400, NULL,
      "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or "
      "revoked.\"}", PLAT_REAUTH, "invalid_grant", 0, 0 },
    { "google forbidden", &plat_google_rules, 403, NULL,
      GOOGLE("403", "forbidden", "Forbidden"), PLAT_REAUTH, "forbidden", 0, 0 },
    { "google insufficientPermissions", &plat_google_rules, 403, NULL,
      GOOGLE("403", "insufficientPermissions", "Request had insufficient authentication "
                                               "scopes."),
      PLAT_REAUTH, "insufficientPermissions", 0, 0 },
    { "google invalidTitle", &plat_google_rules, 400, NULL,
      GOOGLE("400", "invalidTitle", "The request metadata specifies an invalid video title."),
      PLAT_FATAL, "invalidTitle", 0, 0 },
    { "google invalidDescription", &plat_google_rules, 400, NULL,
      GOOGLE("400", "invalidDescription", "The request metadata specifies an invalid video "
                                          "description."),
      PLAT_FATAL, "invalidDescription", 0, 0 },
    { "google invalidTags", &plat_google_rules, 400, NULL,
      GOOGLE("400", "invalidTags", "The request metadata specifies invalid video keywords."),
      PLAT_FATAL, "invalidTags", 0, 0 },
    { "google badRequest", &plat_google_rules, 400, NULL,
      GOOGLE("400", "badRequest", "Bad Request"), PLAT_FATAL, "badRequest", 0, 0 },
    { "google backendError", &plat_google_rules, 503, NULL,
      GOOGLE("503", "backendError", "Backend Error"), PLAT_RETRY, "backendError", 0, 0 },
    /* ---- X */
    { "x 429 with Retry-After only", &plat_x_rules, 429, "Retry-After: 120\r\n",
      "{\"title\":\"Too Many Requests\",\"detail\":\"Too Many Requests\",\"type\":"
      "\"about:blank\",\"status\":429}", PLAT_DEFER, "Too Many Requests", 120000, 120000 },
    { "x 429, nothing said", &plat_x_rules, 429, NULL,
      "{\"title\":\"Too Many Requests\",\"detail\":\"Too Many Requests\",\"type\":"
      "\"about:blank\",\"status\":429}", PLAT_DEFER, "Too Many Requests", QUARTER_MS,
      QUARTER_MS },
    { "x 401", &plat_x_rules, 401, NULL,
      "{\"title\":\"Unauthorized\",\"type\":\"about:blank\",\"status\":401,\"detail\":"
      "\"Unauthorized\"}", PLAT_REAUTH, "Unauthorized", 0, 0 },
    { "x duplicate (v2)", &plat_x_rules, 403, NULL,
      "{\"title\":\"Forbidden\",\"detail\":\"You are not allowed to create a Tweet with "
      "duplicate content.\",\"type\":\"about:blank\",\"status\":403}", PLAT_FATAL, "duplicate",
      0, 0 },
    { "x duplicate (errors list)", &plat_x_rules, 403, NULL,
      "{\"errors\":[{\"message\":\"You are not allowed to create a Tweet with duplicate "
      "content.\",\"code\":187}]}", PLAT_FATAL, "duplicate", 0, 0 },
    { "x 403 other", &plat_x_rules, 403, NULL,
      "{\"title\":\"Forbidden\",\"detail\":\"Missing required OAuth 2 scopes: tweet.write\","
      "\"type\":\"about:blank\",\"status\":403}", PLAT_FATAL, "Forbidden", 0, 0 },
    { "x 400 invalid request", &plat_x_rules, 400, NULL,
      "{\"errors\":[{\"message\":\"Your media IDs are invalid.\"}],\"title\":\"Invalid "
      "Request\",\"detail\":\"One or more parameters to your request was invalid.\",\"type\":"
      "\"https://api.twitter.com/2/problems/invalid-request\"}", PLAT_FATAL, "invalid-request",
      0, 0 },
    { "x 503", &plat_x_rules, 503, NULL,
      "{\"title\":\"Service Unavailable\",\"detail\":\"Service Unavailable\",\"type\":"
      "\"about:blank\",\"status\":503}", PLAT_RETRY, "Service Unavailable", 0, 0 },
    { "x v1.1 internal error 131", &plat_x_rules, 500, NULL,
      "{\"errors\":[{\"code\":131,\"message\":\"Internal error\"}]}", PLAT_RETRY, "131", 0, 0 },
};

static void test_named_cases(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct rule_case *c = &cases[i];
        struct http_response r;
        struct plat_error e;
        enum plat_outcome o;

        canned(&r, c->status, c->headers, c->body);
        o = plat_classify(c->rules, &r, "test call", &e);
        if (o != c->outcome || e.outcome != c->outcome)
            fail_msg("%s: got %s, want %s (%s)", c->name, plat_outcome_name(o),
                     plat_outcome_name(c->outcome), e.message);
        if (strcmp(e.code, c->code) != 0)
            fail_msg("%s: code %s, want %s", c->name, e.code, c->code);
        if (e.retry_after_ms < c->wait_min || e.retry_after_ms > c->wait_max)
            fail_msg("%s: retry_after_ms %lld, want %lld..%lld", c->name, e.retry_after_ms,
                     c->wait_min, c->wait_max);
        assert_int_equal(e.http_status, c->status);
        assert_non_null(strstr(e.message, "test call"));
        http_response_free(&r);
    }
}

/* X: the reset time wins over Retry-After. */
static void test_x_reset_first(void **state)
{
    struct http_response r;
    struct plat_error e;
    char headers[256];

    snprintf(headers, sizeof headers, "x-rate-limit-remaining: 0\r\nx-rate-limit-reset: %lld\r\n"
             "Retry-After: 5\r\n", (long long)time(NULL) + 300);
    canned(&r, 429, headers, "");
    assert_int_equal(plat_classify(&plat_x_rules, &r, "X post", &e), PLAT_DEFER);
    assert_true(e.retry_after_ms >= 298000 && e.retry_after_ms <= 300000);
    http_response_free(&r);
}

struct usage_case {
    const char *headers;
    int percent;
    int high;
    long long wait;
};

static void test_app_usage(void **state)
{
    static const struct usage_case u[] = {
        { APP_USAGE("95"), 90, 1, HOUR_MS },
        { APP_USAGE("90"), 90, 1, HOUR_MS },
        { APP_USAGE("89"), 90, 0, 0 },
        { "x-app-usage: {\"call_count\":5,\"total_cputime\":10,\"total_time\":93}\r\n", 90, 1,
          HOUR_MS },
        { APP_USAGE("95") BUC("7"), 90, 1, 7 * MIN_MS },
        { APP_USAGE("100"), 0, 0, 0 },                /* 0 = never */
        { "x-app-usage: not json\r\n", 90, 0, 0 },
        { "", 90, 0, 0 },
    };

    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        struct http_response r;
        long long wait = -1;
        int high;

        canned(&r, 200, u[i].headers, "{\"id\":\"1\"}");
        high = plat_graph_usage_high(&r, u[i].percent, &wait);
        if (high != u[i].high || wait != u[i].wait)
            fail_msg("usage case %zu: high %d wait %lld", i, high, wait);
        http_response_free(&r);
    }
}

/* A success with high usage is still a success. */
static void test_high_usage_success_classifies_ok(void **state)
{
    struct http_response r;
    struct plat_error e;

    canned(&r, 200, APP_USAGE("99"), "{\"id\":\"17900000000000000\"}");
    assert_int_equal(plat_classify(&plat_graph_rules, &r, "Instagram container", &e), PLAT_OK);
    assert_int_equal(e.retry_after_ms, 0);
    http_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_x_reset_first),
        cmocka_unit_test(test_app_usage),
        cmocka_unit_test(test_high_usage_success_classifies_ok),
    };

    return cmocka_run_group_tests_name("plat_rules", tests, NULL, NULL);
}
