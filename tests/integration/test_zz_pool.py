"""The pool master under stress: crashed and recycled children, reloads,
graceful and fast stops, crash loops.  Each test leaves the stack as it
found it: three children of a running master, ready."""
import os
import signal
import threading
import time

import pytest

from stack import (cgi_params, fcgi_begin, fcgi_params_records, fcgi_read_response,
                   fcgi_record, FCGI_STDIN, metric_key, process_alive)

VERSION = "/api/v1/version"
CRASHED = metric_key("crosspost_api_child_exits_total", reason="crashed")
RECYCLED = metric_key("crosspost_api_child_exits_total", reason="recycled")


@pytest.fixture(autouse=True)
def healthy_after(stack):
    stack.wait_children(3)
    yield
    stack.heal()


def wait_gone(pids, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [p for p in pids if process_alive(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError("still running after %ss: %r" % (timeout, alive))


def test_killed_child_is_replaced(stack):
    crashed = stack.metrics()[CRASHED]
    master = stack.api_master()
    victim = stack.api_children()[0]
    os.kill(victim, signal.SIGKILL)
    statuses = [stack.get(VERSION).status for _ in range(100)]
    assert statuses == [200] * 100
    kids = stack.wait_children(3, exclude=[victim])
    assert victim not in kids
    assert stack.api_master() == master
    assert stack.metrics()[CRASHED] == crashed + 1
    assert "killed by signal 9" in stack.log("api.log")


class Hammer:
    """Requests in a loop in a thread, recording every failure."""

    def __init__(self, stack):
        self.stack = stack
        self.stop = threading.Event()
        self.done = 0
        self.failures = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                r = self.stack.get(VERSION, timeout=10)
                if r.status != 200:
                    self.failures.append(r)
            except Exception as e:          # noqa: BLE001 - any failure counts
                self.failures.append(e)
            self.done += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(20)


def test_reload_replaces_children_without_failures(stack):
    crashed = stack.metrics()[CRASHED]
    master = stack.api_master()
    old = stack.api_children()
    with Hammer(stack) as h:
        time.sleep(0.3)
        stack.signal_api(signal.SIGHUP)
        new = stack.wait_children(3, exclude=old)
        time.sleep(0.3)
        first = h.done
        # Keep going a little under the new generation.
        time.sleep(0.3)
    assert h.failures == []
    assert first > 10 and h.done > first, (first, h.done)
    assert not set(new) & set(old)
    assert stack.api_master() == master
    wait_gone(old, 10)
    assert stack.metrics()[CRASHED] == crashed
    assert "reloaded" in stack.log("api.log")


def test_children_recycled_after_request_budget(stack):
    try:
        stack.restart_api(env={"CROSSPOST_API_MAX_REQUESTS": "5"})
        recycled = stack.metrics()[RECYCLED]
        statuses = [stack.get(VERSION).status for _ in range(60)]
        assert statuses == [200] * 60
        stack.wait_children(3)
        m = stack.metrics()
        # 61 requests at 5 each across 3 children: about 12 exits.
        assert m[RECYCLED] - recycled >= 9, m[RECYCLED]
        assert m[CRASHED] == 0
    finally:
        stack.restart_api()


def test_graceful_stop_finishes_in_flight_request(stack):
    master = stack.api_master()
    kids = stack.api_children()
    params = fcgi_params_records(cgi_params("GET", VERSION))
    s = stack.fcgi_connect(timeout=15)
    try:
        # A child accepts and blocks reading the rest of the parameters.
        s.sendall(fcgi_begin() + params[:40])
        time.sleep(0.3)
        stack.signal_api(signal.SIGTERM)
        time.sleep(0.5)
        assert process_alive(master), "master left before its request was done"
        assert sum(process_alive(k) for k in kids) == 1, "idle children should be gone"
        s.sendall(params[40:] + fcgi_record(FCGI_STDIN, b""))
        r = fcgi_read_response(s)
        assert r.status == 200
        assert b'"name":"crosspost"' in r.body
    finally:
        s.close()
    wait_gone([master] + kids, 5)
    assert not os.path.exists(stack.api_socket)
    assert "graceful stop" in stack.log("api.log")
    stack.start("api")
    stack.wait_children(3)
    assert stack.get(VERSION).status == 200


def test_crash_loop_is_slowed_down_and_recovers(stack):
    stack.restart_api()
    crashed = stack.metrics()[CRASHED]
    try:
        kills = 0
        deadline = time.time() + 3
        while kills < 15 and time.time() < deadline:
            for pid in stack.api_children():
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        assert kills > 10, kills                      # past api_crash_limit (10)
        assert "children are crashing" in stack.log("api.log")
        # Backed off: not immediately back at full strength.
        assert len(stack.api_children()) < 3
        stack.wait_children(3, timeout=35)
        assert stack.metrics()[CRASHED] - crashed == kills
        assert [stack.get(VERSION).status for _ in range(10)] == [200] * 10
    finally:
        # A fresh master, without the crash history of this test.
        stack.restart_api()


def kill_children_at_once(stack):
    """SIGKILL every child while the master is stopped, so that it sees the
    exits together (one SIGCHLD) as in a real crash of the whole pool."""
    master = stack.api_master()
    kids = stack.api_children()
    os.kill(master, signal.SIGSTOP)
    try:
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        wait_gone(kids, 5)
    finally:
        os.kill(master, signal.SIGCONT)
    return kids


def time_to_full_pool(stack, gone):
    t0 = time.time()
    stack.wait_children(3, exclude=gone, timeout=10)
    return time.time() - t0


def test_respawn_at_full_speed_after_crash_loop_is_over(stack):
    window = 1.0
    env = {"CROSSPOST_API_CRASH_WINDOW": "1s", "CROSSPOST_API_CRASH_LIMIT": "4"}
    try:
        stack.restart_api(env=env)
        # 3 crashes stay under the limit: all three come back at once.
        gone = kill_children_at_once(stack)
        assert time_to_full_pool(stack, gone) < 0.5
        # A crash loop (4 within the window), then quiet well past it.
        time.sleep(window + 0.5)
        gone = kill_children_at_once(stack)
        stack.wait_children(3, exclude=gone, timeout=10)
        os.kill(stack.api_children()[0], signal.SIGKILL)
        stack.wait_for("the crash loop to be noticed",
                       lambda: "children are crashing" in stack.log("api.log"), timeout=5)
        stack.wait_children(3, timeout=20)
        time.sleep(window + 1)
        # Under the limit again: as prompt as the first time.
        gone = kill_children_at_once(stack)
        took = time_to_full_pool(stack, gone)
        assert took < 0.5, "took %.1fs" % took
    finally:
        stack.restart_api()


def test_fast_stop(stack):
    master = stack.api_master()
    kids = stack.api_children()
    stack.signal_api(signal.SIGINT)
    wait_gone([master] + kids, 2)
    assert "fast stop" in stack.log("api.log")
    stack.start("api")
    stack.wait_children(3)
    assert stack.get(VERSION).status == 200
