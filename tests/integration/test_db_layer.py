"""The MariaDB layer, the memcached wrapper and migrations against the
stack's servers: tests/integration/db_layer.c, a cmocka program that
`make check` builds, run once; each of its tests is one case here."""
import os
import re
import subprocess

import pytest

from stack import BUILDDIR, ROOT

PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "db_layer")
SOURCE = os.path.join(ROOT, "tests", "integration", "db_layer.c")

# The tests of db_layer.c, in the order of its table in main().
TESTS = [
    "test_params_and_results",
    "test_refusals",
    "test_lock_wait_timeout",
    "test_deadlock_retried",
    "test_transaction_rollback",
    "test_statement_cache",
    "test_reconnect_after_kill",
    "test_kill_inside_transaction",
    "test_read_committed_kept",
    "test_exec_script",
    "test_cache_set_get_delete",
    "test_cache_add",
    "test_cache_incr_and_ttl",
    "test_cache_keys",
    "test_cache_big_values",
    "test_migrations",
]

TAP_LINE = re.compile(r"^(ok|not ok) (\d+) - (\S+)")


class Run:
    """One run of the program: its output and the outcome of each test."""

    def __init__(self, proc):
        self.proc = proc
        self.order = []             # test names as reported
        self.passed = {}            # name -> bool
        self.notes = {}             # name -> the "# ..." lines after it
        current = None
        for line in proc.stdout.splitlines():
            m = TAP_LINE.match(line)
            if m:
                current = m.group(3)
                self.order.append(current)
                self.passed[current] = m.group(1) == "ok"
                self.notes[current] = []
            elif line.startswith("#") and current:
                self.notes[current].append(line)

    def report(self, name=None):
        head = ""
        if name:
            head = "%s:\n%s\n\n" % (name, "\n".join(self.notes.get(name, [])) or "(no diagnostics)")
        return "%sdb_layer exited with %d\n--- stdout\n%s\n--- stderr\n%s" % (
            head, self.proc.returncode, self.proc.stdout, self.proc.stderr[-20000:])


@pytest.fixture(scope="module")
def run(stack):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    env = dict(stack.env)
    env.update(CROSSPOST_CONFIG=stack.conf, CMOCKA_MESSAGE_OUTPUT="TAP")
    proc = subprocess.run([PROGRAM], env=env, capture_output=True, text=True, timeout=60)
    return Run(proc)


def test_names_match_the_program_table():
    with open(SOURCE) as f:
        table = re.findall(r"^\s*cmocka_unit_test\w*\((test_\w+)", f.read(), re.M)
    assert table == TESTS


def test_program_passes(run):
    assert run.order == TESTS, run.report()
    status = run.proc.returncode
    assert status == 0, run.report()


@pytest.mark.parametrize("name", TESTS)
def test_case(run, name):
    assert name in run.passed, "%s did not run\n%s" % (name, run.report())
    assert run.passed[name], run.report(name)
