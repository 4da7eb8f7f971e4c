/* Job counters: shared-memory writer, JSON snapshot, summing reader and
 * its Prometheus text; snapshots that are not version 1 are refused whole. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "jobkinds.h"
#include "jobstats.h"

static struct jobstats *new_stats(void)
{
    void *p = mmap(NULL, jobstats_size(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(p != MAP_FAILED);
    return p;
}

static void free_stats(struct jobstats *s)
{
    munmap(s, jobstats_size());
}

static size_t kind_index(const char *name)
{
    const struct job_kind *k = job_kind_find(name);

    assert_non_null(k);
    return (size_t)(k - job_kinds);
}

static void test_kinds_fit(void **state)
{
    (void)state;
    assert_true(job_nkinds <= JOBSTATS_KINDS);
    for (size_t i = 1; i < JOBSTATS_BUCKETS; i++)
        assert_true(jobstats_bounds[i - 1] < jobstats_bounds[i]);
}

static void test_queue_table(void **state)
{
    struct jobstats *s = new_stats();
    char name[16];

    (void)state;
    assert_int_equal(jobstats_queue(s, "default"), 0);
    assert_int_equal(jobstats_queue(s, "maintenance"), 1);
    assert_int_equal(jobstats_queue(s, "default"), 0);
    assert_int_equal(jobstats_queue(s, "Default"), CP_EINVAL);
    assert_int_equal(jobstats_queue(s, ""), CP_EINVAL);
    for (int i = 2; i < JOBSTATS_QUEUES; i++) {
        snprintf(name, sizeof name, "q%d", i);
        assert_int_equal(jobstats_queue(s, name), i);
    }
    assert_int_equal(jobstats_queue(s, "one-too-many"), CP_ETOOBIG);
    assert_int_equal(jobstats_queue(s, "q7"), 7);
    free_stats(s);
}

/* Processes racing to add the same names end up with one slot each. */
static void test_queue_table_shared_by_processes(void **state)
{
    static const char *const names[] = { "a", "b", "c", "d", "e", "f", "g", "h" };
    struct jobstats *s = new_stats();
    size_t noop = kind_index("noop");
    struct buf out;
    pid_t pids[4];

    (void)state;
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            for (int i = 0; i < 8; i++) {
                int qi = jobstats_queue(s, names[(i + 3 * p) % 8]);
                if (qi < 0)
                    _exit(1);
                jobstats_finish(s, qi, noop, JOBSTATS_SUCCEEDED, 0.0001);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < 4; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    buf_init(&out, JOBSTATS_JSON_MAX);
    assert_int_equal(jobstats_to_json(s, &out), 0);
    for (int i = 0; i < 8; i++) {
        char want[128];
        snprintf(want, sizeof want, "{\"queue\":\"%s\",\"kind\":\"noop\",\"outcome\":\"succeeded\",\"n\":4}",
                 names[i]);
        const char *at = strstr(buf_str(&out), want);
        if (!at)
            fail_msg("%s not in %s", want, buf_str(&out));
        assert_null(strstr(at + 1, want));     /* once only */
    }
    buf_free(&out);
    free_stats(s);
}

/* One supervisor's counts, as the snapshot the test expects below. */
static struct jobstats *sample_stats(void)
{
    struct jobstats *s = new_stats();
    int def = jobstats_queue(s, "default");
    size_t noop = kind_index("noop"), sleep_kind = kind_index("sleep");

    jobstats_finish(s, def, noop, JOBSTATS_SUCCEEDED, 0.0002);   /* bucket 0.0005 */
    jobstats_finish(s, def, noop, JOBSTATS_SUCCEEDED, 0.003);    /* bucket 0.005 */
    jobstats_finish(s, def, noop, JOBSTATS_RETRIED, 2.0);        /* bucket 2.5 */
    jobstats_finish(s, def, sleep_kind, JOBSTATS_DEAD, 1000);    /* +Inf */
    jobstats_finish(s, def, noop, (enum jobstats_outcome)99, 1); /* ignored */
    jobstats_finish(s, 5, noop, JOBSTATS_SUCCEEDED, 1);          /* no such queue: ignored */
    jobstats_claim(s, 0.001, 5);
    jobstats_claim(s, 0.02, 0);
    jobstats_add(s, JOBSTATS_LEASES_REAPED, 2);
    jobstats_add(s, JOBSTATS_JOBS_PROMOTED, 7);
    jobstats_add(s, JOBSTATS_DB_RETRIES, 1);
    return s;
}

static const char sample_json[] =
    "{\"v\":1,\"finished\":["
    "{\"queue\":\"default\",\"kind\":\"noop\",\"outcome\":\"succeeded\",\"n\":2},"
    "{\"queue\":\"default\",\"kind\":\"noop\",\"outcome\":\"retried\",\"n\":1},"
    "{\"queue\":\"default\",\"kind\":\"sleep\",\"outcome\":\"dead\",\"n\":1}],"
    "\"duration\":["
    "{\"queue\":\"default\",\"kind\":\"noop\",\"buckets\":[1,0,0,1,0,0,0,0,0,0,0,1,0,0,0,0,0],"
    "\"sum\":2.003200,\"count\":3},"
    "{\"queue\":\"default\",\"kind\":\"sleep\",\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"
    "\"sum\":1000.000000,\"count\":1}],"
    "\"claim\":{\"buckets\":[0,1,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0],\"sum\":0.021000,\"count\":2,\"jobs\":5},"
    "\"counters\":{\"leases_reaped\":2,\"jobs_promoted\":7,\"released_on_exit\":0,\"db_retries\":1}}";

static void test_snapshot(void **state)
{
    struct jobstats *s = sample_stats();
    struct buf out;

    (void)state;
    buf_init(&out, JOBSTATS_JSON_MAX);
    assert_int_equal(jobstats_to_json(s, &out), 0);
    assert_string_equal(buf_str(&out), sample_json);
    buf_free(&out);
    free_stats(s);
}

static void test_empty_snapshot(void **state)
{
    struct jobstats *s = new_stats();
    struct buf out;

    (void)state;
    buf_init(&out, JOBSTATS_JSON_MAX);
    assert_int_equal(jobstats_to_json(s, &out), 0);
    assert_string_equal(buf_str(&out),
        "{\"v\":1,\"finished\":[],\"duration\":[],"
        "\"claim\":{\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"sum\":0.000000,\"count\":0,\"jobs\":0},"
        "\"counters\":{\"leases_reaped\":0,\"jobs_promoted\":0,\"released_on_exit\":0,\"db_retries\":0}}");
    buf_free(&out);
    free_stats(s);
}

/* A second supervisor: another queue, a kind this build does not know,
 * and more of the first one's noop successes. */
static const char other_json[] =
    "{\"v\":1,\"finished\":["
    "{\"queue\":\"media\",\"kind\":\"publish.x\",\"outcome\":\"lease_lost\",\"n\":3},"
    "{\"queue\":\"default\",\"kind\":\"noop\",\"outcome\":\"succeeded\",\"n\":10}],"
    "\"duration\":["
    "{\"queue\":\"default\",\"kind\":\"noop\",\"buckets\":[10,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
    "\"sum\":0.004,\"count\":10}],"
    "\"claim\":{\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3],\"sum\":900,\"count\":3,\"jobs\":10},"
    "\"counters\":{\"leases_reaped\":0,\"jobs_promoted\":1,\"released_on_exit\":4,\"db_retries\":0},"
    "\"future_member\":true}";

static const char *const expected_lines[] = {
    "# TYPE crosspost_jobs_finished_total counter",
    "crosspost_jobs_finished_total{queue=\"default\",kind=\"noop\",outcome=\"succeeded\"} 14",
    "crosspost_jobs_finished_total{queue=\"default\",kind=\"noop\",outcome=\"retried\"} 2",
    "crosspost_jobs_finished_total{queue=\"default\",kind=\"sleep\",outcome=\"dead\"} 2",
    "crosspost_jobs_finished_total{queue=\"media\",kind=\"publish.x\",outcome=\"lease_lost\"} 3",
    "# TYPE crosspost_job_duration_seconds histogram",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"0.0005\"} 12",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"0.001\"} 12",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"0.005\"} 14",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"2.5\"} 16",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"300\"} 16",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"+Inf\"} 16",
    "crosspost_job_duration_seconds_sum{queue=\"default\",kind=\"noop\"} 4.010400",
    "crosspost_job_duration_seconds_count{queue=\"default\",kind=\"noop\"} 16",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"sleep\",le=\"300\"} 0",
    "crosspost_job_duration_seconds_bucket{queue=\"default\",kind=\"sleep\",le=\"+Inf\"} 2",
    "crosspost_job_duration_seconds_sum{queue=\"default\",kind=\"sleep\"} 2000.000000",
    "crosspost_job_duration_seconds_count{queue=\"default\",kind=\"sleep\"} 2",
    "# TYPE crosspost_job_claim_seconds histogram",
    "crosspost_job_claim_seconds_bucket{le=\"0.0005\"} 0",
    "crosspost_job_claim_seconds_bucket{le=\"0.001\"} 2",
    "crosspost_job_claim_seconds_bucket{le=\"0.025\"} 4",
    "crosspost_job_claim_seconds_bucket{le=\"300\"} 4",
    "crosspost_job_claim_seconds_bucket{le=\"+Inf\"} 7",
    "crosspost_job_claim_seconds_sum 900.042000",
    "crosspost_job_claim_seconds_count 7",
    "# TYPE crosspost_jobs_claimed_total counter",
    "crosspost_jobs_claimed_total 20",
    "crosspost_job_leases_reaped_total 4",
    "crosspost_jobs_promoted_total 15",
    "crosspost_job_claims_released_on_exit_total 4",
    "crosspost_job_db_retries_total 2",
};

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static size_t count_prefix(const char *text, const char *prefix)
{
    size_t n = 0;

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

static void test_sum_and_render(void **state)
{
    struct jobstats *s = sample_stats();
    struct jobstats_sum *sum;
    struct buf snap, out;

    (void)state;
    buf_init(&snap, JOBSTATS_JSON_MAX);
    buf_init(&out, 1u << 20);
    assert_int_equal(jobstats_to_json(s, &snap), 0);
    assert_int_equal(jobstats_sum_new(&sum), 0);
    assert_int_equal(jobstats_sum_add_json(sum, buf_str(&snap)), 0);
    assert_int_equal(jobstats_sum_add_json(sum, sample_json), 0);
    assert_int_equal(jobstats_sum_add_json(sum, other_json), 0);
    assert_int_equal(jobstats_sum_render(sum, &out), 0);
    for (size_t i = 0; i < sizeof expected_lines / sizeof expected_lines[0]; i++)
        if (!has_line(buf_str(&out), expected_lines[i]))
            fail_msg("missing line: %s\n--- got:\n%s", expected_lines[i], buf_str(&out));
    /* Every family once; 17 buckets per histogram series; sorted series. */
    assert_int_equal(count_prefix(buf_str(&out), "# TYPE "), 8);
    assert_int_equal(count_prefix(buf_str(&out), "# HELP "), 8);
    assert_int_equal(count_prefix(buf_str(&out), "crosspost_job_duration_seconds_bucket{"), 2 * 17);
    assert_int_equal(count_prefix(buf_str(&out), "crosspost_job_claim_seconds_bucket{"), 17);
    assert_true(strstr(buf_str(&out), "outcome=\"succeeded\"") <
                strstr(buf_str(&out), "outcome=\"retried\""));
    assert_true(strstr(buf_str(&out), "queue=\"default\",kind=\"sleep\",outcome") <
                strstr(buf_str(&out), "queue=\"media\""));
    jobstats_sum_free(sum);
    buf_free(&snap);
    buf_free(&out);
    free_stats(s);
}

static void test_empty_sum_renders_every_family(void **state)
{
    struct jobstats_sum *sum;
    struct buf out;

    (void)state;
    buf_init(&out, 1u << 20);
    assert_int_equal(jobstats_sum_new(&sum), 0);
    assert_int_equal(jobstats_sum_render(sum, &out), 0);
    assert_int_equal(count_prefix(buf_str(&out), "# TYPE "), 8);
    assert_true(has_line(buf_str(&out), "crosspost_jobs_claimed_total 0"));
    assert_true(has_line(buf_str(&out), "crosspost_job_claim_seconds_count 0"));
    assert_int_equal(count_prefix(buf_str(&out), "crosspost_jobs_finished_total{"), 0);
    jobstats_sum_free(sum);
    buf_free(&out);
    jobstats_sum_free(NULL);
}

#define Z17 "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]"
#define CLAIM_OK "\"claim\":{\"buckets\":" Z17 ",\"sum\":0,\"count\":0,\"jobs\":0}"
#define COUNTERS_OK "\"counters\":{\"leases_reaped\":0,\"jobs_promoted\":0,\"released_on_exit\":0,\"db_retries\":0}"
#define FIN(q, k, o, n) "{\"v\":1,\"finished\":[{\"queue\":" q ",\"kind\":" k ",\"outcome\":" o ",\"n\":" n \
                        "}],\"duration\":[]," CLAIM_OK "," COUNTERS_OK "}"
#define DUR(b, s, c) "{\"v\":1,\"finished\":[],\"duration\":[{\"queue\":\"default\",\"kind\":\"noop\"," \
                     "\"buckets\":" b ",\"sum\":" s ",\"count\":" c "}]," CLAIM_OK "," COUNTERS_OK "}"

static const char *const malformed[] = {
    "",
    "not json",
    "[]",
    "{\"v\":1}",
    "{\"v\":2,\"finished\":[],\"duration\":[]," CLAIM_OK "," COUNTERS_OK "}",
    "{\"v\":\"1\",\"finished\":[],\"duration\":[]," CLAIM_OK "," COUNTERS_OK "}",
    "{\"v\":1,\"finished\":{},\"duration\":[]," CLAIM_OK "," COUNTERS_OK "}",
    "{\"v\":1,\"finished\":[],\"duration\":[]," COUNTERS_OK "}",
    "{\"v\":1,\"finished\":[],\"duration\":[]," CLAIM_OK "}",
    "{\"v\":1,\"finished\":[],\"duration\":[]," CLAIM_OK ",\"counters\":{\"leases_reaped\":0}}",
    "{\"v\":1,\"finished\":[],\"duration\":[]," CLAIM_OK ",\"counters\":{\"leases_reaped\":-1,"
        "\"jobs_promoted\":0,\"released_on_exit\":0,\"db_retries\":0}}",
    "{\"v\":1,\"finished\":[7],\"duration\":[]," CLAIM_OK "," COUNTERS_OK "}",
    FIN("\"Default\"", "\"noop\"", "\"succeeded\"", "1"),
    FIN("\"\"", "\"noop\"", "\"succeeded\"", "1"),
    FIN("\"a-queue-name-that-is-longer-than-32\"", "\"noop\"", "\"succeeded\"", "1"),
    FIN("\"default\\\"}\"", "\"noop\"", "\"succeeded\"", "1"),
    FIN("\"default\"", "\"no op\"", "\"succeeded\"", "1"),
    FIN("\"default\"", "\"noop\\n# TYPE x counter\"", "\"succeeded\"", "1"),
    FIN("\"default\"", "\"k2345678901234567890123456789012345678901234567890123456789012345\"",
        "\"succeeded\"", "1"),
    FIN("\"default\"", "\"\"", "\"succeeded\"", "1"),
    FIN("\"default\"", "7", "\"succeeded\"", "1"),
    FIN("\"default\"", "\"noop\"", "\"won\"", "1"),
    FIN("\"default\"", "\"noop\"", "\"succeeded\"", "-1"),
    FIN("\"default\"", "\"noop\"", "\"succeeded\"", "1.5"),
    FIN("\"default\"", "\"noop\"", "\"succeeded\"", "\"1\""),
    FIN("\"default\"", "\"noop\"", "\"succeeded\"", "null"),
    DUR("[1]", "0", "1"),
    DUR("[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "0", "0"),
    DUR("[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "0.1", "2"),
    DUR("[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "-0.1", "1"),
    DUR("[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "\"0.1\"", "1"),
    DUR("[-1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2]", "0.1", "1"),
    DUR("[1.5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", "0.1", "1"),
    "{\"v\":1,\"finished\":[],\"duration\":[],\"claim\":{\"buckets\":" Z17 ",\"sum\":0,\"count\":0},"
        COUNTERS_OK "}",
};

static void test_malformed_snapshots_are_refused_whole(void **state)
{
    struct jobstats_sum *sum;
    struct buf before, after;

    (void)state;
    assert_int_equal(jobstats_sum_new(&sum), 0);
    assert_int_equal(jobstats_sum_add_json(sum, sample_json), 0);
    buf_init(&before, 1u << 20);
    assert_int_equal(jobstats_sum_render(sum, &before), 0);
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        int rc = jobstats_sum_add_json(sum, malformed[i]);
        if (rc != CP_EPARSE)
            fail_msg("case %zu: %d for %s", i, rc, malformed[i]);
        buf_init(&after, 1u << 20);
        assert_int_equal(jobstats_sum_render(sum, &after), 0);
        if (strcmp(buf_str(&before), buf_str(&after)) != 0)
            fail_msg("case %zu changed the sum: %s", i, malformed[i]);
        buf_free(&after);
    }
    /* A good snapshot whose second series is bad adds nothing at all. */
    assert_int_equal(jobstats_sum_add_json(sum,
        "{\"v\":1,\"finished\":[{\"queue\":\"default\",\"kind\":\"noop\",\"outcome\":\"succeeded\",\"n\":5},"
        "{\"queue\":\"default\",\"kind\":\"noop\",\"outcome\":\"bogus\",\"n\":5}],\"duration\":[],"
        CLAIM_OK "," COUNTERS_OK "}"), CP_EPARSE);
    buf_init(&after, 1u << 20);
    assert_int_equal(jobstats_sum_render(sum, &after), 0);
    assert_string_equal(buf_str(&before), buf_str(&after));
    buf_free(&after);
    buf_free(&before);
    jobstats_sum_free(sum);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_fit),
        cmocka_unit_test(test_queue_table),
        cmocka_unit_test(test_queue_table_shared_by_processes),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_empty_snapshot),
        cmocka_unit_test(test_sum_and_render),
        cmocka_unit_test(test_empty_sum_renders_every_family),
        cmocka_unit_test(test_malformed_snapshots_are_refused_whole),
    };

    return cmocka_run_group_tests_name("jobstats", tests, NULL, NULL);
}
