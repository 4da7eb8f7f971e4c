"""The MariaDB layer, the memcached wrapper and migrations against the
stack's servers: tests/integration/db_layer.c, a cmocka program that
`make check` builds, run once; each of its tests is one case here."""
import os
import re
import subprocess

import pytest

from stack import BUILDDIR, ROOT, TapRun

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

@pytest.fixture(scope="module")
def run(stack):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    env = dict(stack.env)
    env.update(CROSSPOST_CONFIG=stack.conf, CMOCKA_MESSAGE_OUTPUT="TAP")
    proc = subprocess.run([PROGRAM], env=env, capture_output=True, text=True, timeout=60)
    return TapRun(proc, "db_layer")


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
