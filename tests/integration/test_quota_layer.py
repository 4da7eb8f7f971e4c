"""The quota ledger against the stack: tests/integration/quota_layer.c, a
cmocka program that `make check` builds, run once; each of its tests is
one case here."""
import os
import re

import pytest

from stack import BUILDDIR, ROOT, TapRun, run_tap_program

PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "quota_layer")
SOURCE = os.path.join(ROOT, "tests", "integration", "quota_layer.c")

# The tests of quota_layer.c, in the order of its table in main().
TESTS = [
    "test_reserve_until_exhausted",
    "test_all_or_nothing",
    "test_release",
    "test_block",
    "test_window_rolls",
    "test_concurrent_reservations",
    "test_list_json_scoping",
]


@pytest.fixture(scope="module")
def run(stack):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    # The program's connections are switched off and its ledger keys are
    # its own, so the stack's worker can keep running.
    return TapRun(run_tap_program(stack, PROGRAM), os.path.basename(PROGRAM))


def test_names_match_the_program_table():
    with open(SOURCE) as f:
        text = f.read()
    table = text[text.index("const struct CMUnitTest tests[]"):]
    assert re.findall(r"cmocka_unit_test\w*\((test_\w+)", table) == TESTS


def test_program_passes(run):
    assert run.order == TESTS, run.report()
    assert run.proc.returncode == 0, run.report()


@pytest.mark.parametrize("name", TESTS)
def test_case(run, name):
    assert name in run.passed, "%s did not run\n%s" % (name, run.report())
    assert run.passed[name], run.report(name)

