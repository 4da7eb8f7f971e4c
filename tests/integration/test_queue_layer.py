"""The job queue (src/queue.c) against the stack's MariaDB:
tests/integration/queue_layer.c, a cmocka program that `make check`
builds, run once; each of its tests is one case here.  The query plans of
the queue's locking reads are checked with EXPLAIN, on the statements as
written in src/queue.c."""
import os
import re

import pytest

from stack import BUILDDIR, ROOT, stack_sql, tap_run_without_worker

PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "queue_layer")
SOURCE = os.path.join(ROOT, "tests", "integration", "queue_layer.c")
QUEUE_C = os.path.join(ROOT, "src", "queue.c")

# The tests of queue_layer.c, in the order of its table in main().
TESTS = [
    "test_enqueue",
    "test_enqueue_refusals",
    "test_enqueue_in_transaction",
    "test_enqueue_many",
    "test_unique_key",
    "test_claim_order",
    "test_concurrent_claims",
    "test_fenced_completion",
    "test_fail_retries_later",
    "test_last_attempt_dies",
    "test_defer_refunds",
    "test_release_refunds",
    "test_heartbeat",
    "test_release_owner_refunds_unstarted",
    "test_release_owner",
    "test_promote_due",
    "test_reap_expired",
    "test_prune",
    "test_cancel_and_retry_rules",
    "test_user_scope",
    "test_retry_restores_key",
    "test_retry_dead",
    "test_recurring",
]

@pytest.fixture(scope="module")
def run(stack):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    # A running worker would claim, promote, reap and prune under the
    # program's feet: it is stopped for the run and started again after.
    return tap_run_without_worker(stack, PROGRAM)


def test_names_match_the_program_table():
    with open(SOURCE) as f:
        table = re.findall(r"^\s*cmocka_unit_test\w*\((test_\w+)", f.read(), re.M)
    assert table == TESTS


def test_program_passes(run):
    assert run.order == TESTS, run.report()
    assert run.proc.returncode == 0, run.report()


@pytest.mark.parametrize("name", TESTS)
def test_case(run, name):
    assert name in run.passed, "%s did not run\n%s" % (name, run.report())
    assert run.passed[name], run.report(name)


# -- query plans -------------------------------------------------------------

def statement(name):
    """The text of `static const char name[] = "..." "...";` in src/queue.c."""
    with open(QUEUE_C) as f:
        src = f.read()
    m = re.search(r"static const char %s\[\] =\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+);" % re.escape(name), src)
    assert m, "%s not found in src/queue.c" % name
    return "".join(re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1)))


def bind(sql, values):
    """Put literal values where the placeholders are, in order."""
    parts = sql.split("?")
    assert len(parts) == len(values) + 1, (sql, values)
    out = parts[0]
    for value, rest in zip(values, parts[1:]):
        out += (str(value) if isinstance(value, int) else "'%s'" % value) + rest
    return out


def explain(stack, sql):
    """EXPLAIN rows as dicts with the columns of MariaDB's tabular EXPLAIN."""
    cols = ["id", "select_type", "table", "type", "possible_keys", "key", "key_len", "ref",
            "rows", "Extra"]
    return [dict(zip(cols, row)) for row in stack_sql(stack, "EXPLAIN " + sql)]


PLANS = [
    # (statement, values for its placeholders, the index it must read)
    ("sql_claim_select", ["default", 10], "ix_jobs_claim"),
    ("sql_promote_select", ["scheduled", 100], "ix_jobs_due"),
    ("sql_promote_select", ["failed", 100], "ix_jobs_due"),
    ("sql_reap_select", [100], "ix_jobs_due"),
    ("sql_owner_running", [1, 100], "ix_jobs_due"),
    ("sql_prune_select", [86400000000, "succeeded", "cancelled", 500], "ix_jobs_finished"),
]


@pytest.mark.parametrize("name,values,index", PLANS,
                         ids=["%s-%s" % (p[0], p[1][0]) for p in PLANS])
def test_locking_reads_use_their_index(stack, name, values, index):
    sql = statement(name)
    assert "FOR UPDATE SKIP LOCKED" in sql
    rows = explain(stack, bind(sql, values))
    assert len(rows) == 1, rows
    plan = rows[0]
    assert plan["table"] == "jobs", plan
    assert plan["key"] == index, plan
    assert "filesort" not in plan["Extra"], plan
    assert "temporary" not in plan["Extra"], plan


def test_claim_reads_in_index_order(stack):
    """The claim's WHERE and ORDER BY are exactly the index's columns."""
    sql = statement("sql_claim_select")
    assert "WHERE queue = ? AND state = 'ready' ORDER BY priority, id LIMIT ?" in sql
    key = stack_sql(stack, "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index)"
                           " FROM information_schema.statistics WHERE table_schema = DATABASE()"
                           " AND table_name = 'jobs' AND index_name = 'ix_jobs_claim'")
    assert key == [["queue,state,priority,id"]]
