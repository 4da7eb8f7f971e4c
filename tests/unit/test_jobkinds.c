#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jobkinds.h"
#include "jobstats.h"
#include "tasks.h"

/* A kind name: lowercase words joined by dots, at most JOB_KIND_MAX bytes. */
static int kind_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > JOB_KIND_MAX || name[0] == '.' || name[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return 0;
        if (c == '.' && name[i + 1] == '.')
            return 0;
    }
    return 1;
}

static void test_kinds_well_formed(void **state)
{
    assert_true(job_nkinds > 0);
    for (size_t i = 0; i < job_nkinds; i++) {
        const struct job_kind *k = &job_kinds[i];

        assert_non_null(k->name);
        if (!kind_name_ok(k->name))
            fail_msg("kind %zu: bad name \"%s\"", i, k->name);
        if (!job_queue_name_ok(k->queue))
            fail_msg("%s: bad default queue \"%s\"", k->name, k->queue ? k->queue : "(null)");
        if (k->max_attempts < 1 || k->max_attempts > 100)
            fail_msg("%s: max_attempts %d outside 1..100", k->name, k->max_attempts);
        if (k->timeout_ms < 1000)
            fail_msg("%s: timeout %lld ms", k->name, k->timeout_ms);
        if (k->internal != 0 && k->internal != 1)
            fail_msg("%s: internal %d", k->name, k->internal);
        if (!k->summary || !k->summary[0])
            fail_msg("%s: no summary", k->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(job_kinds[j].name, k->name) == 0)
                fail_msg("kind \"%s\" appears twice", k->name);
    }
}

/* The table of jobs.md, row by row. */
struct expected_kind {
    const char *name, *queue;
    int max_attempts;
    long long timeout_ms;
    int internal;
};

static const struct expected_kind expected_kinds[] = {
    { "connection.refresh", "default", 5, 60000, 0 },
    { "connections.plan", "maintenance", 3, 600000, 0 },
    { "maintenance.prune_jobs", "maintenance", 3, 600000, 0 },
    { "maintenance.prune_workers", "maintenance", 3, 600000, 0 },
    { "maintenance.prune_audit", "maintenance", 3, 600000, 0 },
    { "maintenance.prune_sessions", "maintenance", 3, 600000, 0 },
    { "noop", "default", 5, 60000, 1 },
    { "publications.sweep", "maintenance", 3, 600000, 0 },
    { "publish.post", "publish", 8, 3600000, 0 },
    { "sleep", "default", 5, 600000, 1 },
    { "sync.plan", "maintenance", 3, 600000, 0 },
    { "tiktok.sync", "default", 5, 600000, 0 },
    { "video.fetch", "media", 5, 3600000, 0 },
    { "video.probe", "media", 5, 600000, 0 },
};

static void test_kinds_find(void **state)
{
    size_t n = sizeof expected_kinds / sizeof expected_kinds[0];

    assert_int_equal(job_nkinds, n);
    for (size_t i = 0; i < n; i++) {
        const struct expected_kind *e = &expected_kinds[i];
        const struct job_kind *k = job_kind_find(e->name);

        if (!k)
            fail_msg("kind %s not found", e->name);
        assert_string_equal(k->queue, e->queue);
        assert_int_equal(k->max_attempts, e->max_attempts);
        assert_int_equal(k->timeout_ms, e->timeout_ms);
        assert_int_equal(k->internal, e->internal);
    }
    assert_null(job_kind_find(NULL));
    assert_null(job_kind_find(""));
    assert_null(job_kind_find("NOOP"));
    assert_null(job_kind_find("noop "));
    assert_null(job_kind_find("maintenance"));
    assert_null(job_kind_find("maintenance.prune_jobsx"));
}

struct queue_case {
    const char *name;
    int ok;
};

static const struct queue_case queue_cases[] = {
    { "default", 1 },
    { "maintenance", 1 },
    { "a", 1 },
    { "upload_x-2", 1 },
    { "0123456789abcdef0123456789abcdef", 1 },     /* 32 bytes */
    { "0123456789abcdef0123456789abcdefg", 0 },    /* 33 */
    { "", 0 },
    { "Default", 0 },
    { "de fault", 0 },
    { "de.fault", 0 },
    { "de/fault", 0 },
    { "de'fault", 0 },
    { "caf\xc3\xa9", 0 },
};

static void test_queue_names(void **state)
{
    for (size_t i = 0; i < sizeof queue_cases / sizeof queue_cases[0]; i++)
        if (job_queue_name_ok(queue_cases[i].name) != queue_cases[i].ok)
            fail_msg("\"%s\": expected %d", queue_cases[i].name, queue_cases[i].ok);
    assert_false(job_queue_name_ok(NULL));
}

/* The per-kind counters of jobstats have room for every kind. */
static void test_kind_names(void **state)
{
    static const struct { const char *name; int ok; } cases[] = {
        { "noop", 1 }, { "maintenance.prune_jobs", 1 }, { "tiktok.sync-v2", 1 }, { "a", 1 },
        { "", 0 }, { "Noop", 0 }, { "no op", 0 }, { "kind/x", 0 }, { "k\xc3\xa9", 0 },
        { "0123456789012345678901234567890123456789012345678901234567890123", 1 },
        { "01234567890123456789012345678901234567890123456789012345678901234", 0 },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (job_kind_name_ok(cases[i].name) != cases[i].ok)
            fail_msg("job_kind_name_ok(\"%s\") != %d", cases[i].name, cases[i].ok);
    assert_false(job_kind_name_ok(NULL));
    for (size_t i = 0; i < job_nkinds; i++)
        assert_true(job_kind_name_ok(job_kinds[i].name));
}

static void test_stats_have_room(void **state)
{
    assert_true(JOBSTATS_KINDS >= job_nkinds);
}

/* The workers' task table and the kinds table name the same kinds. */
static void test_every_kind_has_a_handler(void **state)
{
    for (size_t i = 0; i < job_nkinds; i++) {
        const struct task *t = task_find(job_kinds[i].name);

        if (!t || !t->run)
            fail_msg("kind %s has no handler in workers/tasks.c", job_kinds[i].name);
        assert_string_equal(t->kind, job_kinds[i].name);
    }
    for (size_t i = 0; i < ntasks; i++)
        if (!job_kind_find(tasks[i].kind))
            fail_msg("handler for %s has no row in job_kinds", tasks[i].kind);
    assert_int_equal(ntasks, job_nkinds);
    assert_null(task_find("no.such_kind"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_well_formed),
        cmocka_unit_test(test_kinds_find),
        cmocka_unit_test(test_queue_names),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_stats_have_room),
        cmocka_unit_test(test_every_kind_has_a_handler),
    };

    return cmocka_run_group_tests_name("jobkinds", tests, NULL, NULL);
}
