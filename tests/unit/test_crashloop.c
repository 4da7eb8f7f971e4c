#include "config.h"
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>
#include <sys/wait.h>
#include "crashloop.h"
#include "shared.h"
#include "err.h"

static void test_backoff_doubles_and_caps(void **state)
{
    struct crashloop cl;
    static const struct { long long t; int want; } steps[] = {
        { 0, 0 }, { 100, 0 }, { 200, 1000 }, { 300, 2000 }, { 400, 4000 }, { 500, 8000 },
        { 600, 16000 }, { 700, 30000 }, { 800, 30000 },
    };
    crashloop_reset(&cl);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(crashloop_note(&cl, steps[i].t, 10000, 3), steps[i].want);
        if (steps[i].want) {
            assert_true(crashloop_throttled(&cl));
            assert_int_equal(crashloop_respawn_at(&cl), steps[i].t + steps[i].want);
            assert_false(crashloop_may_spawn(&cl, steps[i].t));
        }
    }
    assert_int_equal(crashloop_prune(&cl, 10700, 10000), 0);
    assert_int_equal(crashloop_exits(&cl), 2);
    assert_int_equal(crashloop_prune(&cl, 10801, 10000), 1);
    assert_false(crashloop_throttled(&cl));
    assert_true(crashloop_may_spawn(&cl, 10801));
    assert_int_equal(crashloop_note(&cl, 20000, 10000, 3), 0);
}

static void test_window_drops_old_exits(void **state)
{
    struct crashloop cl;
    crashloop_reset(&cl);
    for (int i = 0; i < 100; i++)
        assert_int_equal(crashloop_note(&cl, i * 2000LL, 3000, 3), 0);
    assert_int_equal(crashloop_exits(&cl), 2);
    crashloop_reset(&cl);
    for (int i = 0; i < 100; i++)
        crashloop_note(&cl, i, 100000, 1000);
    assert_int_equal(crashloop_exits(&cl), CRASHLOOP_MAX_EXITS);
}

static void test_shared_wake_and_slots(void **state)
{
    struct shared *sh = NULL;
    struct slot_view v;
    long long ids[3] = { 7, 8, 9 };
    assert_int_equal(shared_create(0, &sh), CP_EINVAL);
    assert_int_equal(shared_create(4, &sh), 0);
    struct worker_slot *s = shared_slot(sh, 3);
    assert_null(shared_slot(sh, 4));
    slot_prepare(s);
    slot_publish(s, ids, 3, 8, 100, 200);
    slot_set_worker_id(s, 42);
    slot_add_done(s, 5);
    assert_int_equal(slot_read(s, &v), 0);
    assert_int_equal(v.worker_id, 42);
    assert_int_equal(v.nheld, 3);
    assert_int_equal(v.held[2], 9);
    assert_int_equal(v.job_id, 8);
    assert_int_equal(v.job_deadline_ms, 200);
    assert_int_equal(v.jobs_done, 5);
    slot_request_stop(s, SLOT_STOP_FAST);
    slot_request_stop(s, SLOT_STOP_GRACEFUL);
    assert_int_equal(slot_stop_requested(s), SLOT_STOP_FAST);
    /* a child waits; the parent wakes it long before the timeout */
    unsigned seen = shared_wake_seq(sh);
    pid_t pid = fork();
    if (pid == 0) {
        long long t = shared_now_ms();
        shared_wait(sh, seen, 5000);
        _exit(shared_now_ms() - t < 2000 ? 0 : 1);
    }
    usleep(200000);
    shared_wake_all(sh);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* a stale seen returns at once */
    long long t = shared_now_ms();
    shared_wait(sh, seen, 2000);
    assert_true(shared_now_ms() - t < 100);
    /* nobody wakes: the timeout */
    t = shared_now_ms();
    shared_wait(sh, shared_wake_seq(sh), 150);
    assert_true(shared_now_ms() - t >= 140);
    shared_destroy(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_and_caps),
        cmocka_unit_test(test_window_drops_old_exits),
        cmocka_unit_test(test_shared_wake_and_slots),
    };
    return cmocka_run_group_tests_name("crashloop", tests, NULL, NULL);
}
