"""Connections, sealed secrets, OAuth state and the connection job
handlers against the stack: tests/integration/conn_layer.c, a cmocka
program that `make check` builds, run once; each of its tests is one case
here.  Then `crosspostctl rotate-key` on the rows that program left, and
the program again ("verify-rotated") to open them under the new key."""
import os
import re
import subprocess

import pytest

from stack import (BUILDDIR, ROOT, TapRun, run_tap_program, stack_sql,
                   tap_run_without_worker)

PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "conn_layer")
SOURCE = os.path.join(ROOT, "tests", "integration", "conn_layer.c")
ROTATE_USER = "zz-cr-rotate@example.test"

# The tests of conn_layer.c, in the order of its table in main().
TESTS = [
    "test_upsert_insert_and_reconnect",
    "test_upsert_other_user_is_another_row",
    "test_sealed_columns_are_ciphertext",
    "test_moved_sealed_value_does_not_open",
    "test_store_refresh",
    "test_mark_failed_and_checked",
    "test_needs_reauth_alerts_once",
    "test_due_order",
    "test_list_scope_and_update",
    "test_plan_enqueues_due",
    "test_refresh_task",
    "test_reseal_after_key_added",
    "test_oauth_state_single_use",
    "test_rows_for_rotate_key",
]


@pytest.fixture(scope="module")
def run(stack):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    # A running worker would refresh and check the program's connections
    # (connections.plan) under its feet: it is stopped for the run.
    return tap_run_without_worker(stack, PROGRAM)


def test_names_match_the_program_table():
    with open(SOURCE) as f:
        text = f.read()
    table = text[text.index("const struct CMUnitTest tests[]"):text.index("const struct CMUnitTest verify[]")]
    assert re.findall(r"cmocka_unit_test\w*\((test_\w+)", table) == TESTS


def test_program_passes(run):
    assert run.order == TESTS, run.report()
    assert run.proc.returncode == 0, run.report()


@pytest.mark.parametrize("name", TESTS)
def test_case(run, name):
    assert name in run.passed, "%s did not run\n%s" % (name, run.report())
    assert run.passed[name], run.report(name)


def key_ids(stack):
    return [int(row[0]) for row in stack_sql(
        stack, "SELECT c.secrets_key_id FROM connections c JOIN users u ON u.id = c.user_id"
               " WHERE u.email = '%s' ORDER BY c.id" % ROTATE_USER)]


def dump_connections(stack):
    """The connections table as mariadb-dump writes it (binary as is)."""
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    return subprocess.run(["mariadb-dump", "--no-defaults", "--socket",
                           os.path.join(stack.var, "run", "mysqld.sock"), "-u", user,
                           "--skip-extended-insert", "crosspost", "connections"],
                          capture_output=True, timeout=60, check=True).stdout


def test_ctl_rotate_key(stack, run):
    assert run.passed.get("test_rows_for_rotate_key"), run.report("test_rows_for_rotate_key")
    before = key_ids(stack)
    assert len(before) == 3 and len(set(before)) == 1, before
    dump = dump_connections(stack)
    assert b"ROTATE-PLAINTEXT" not in dump

    r = stack.ctl("rotate-key")
    assert r.returncode == 0, r
    m = re.search(r"^added key (\d+) to (\S+)$", r.stdout, re.M)
    assert m, r.stdout
    new_id = int(m.group(1))
    assert new_id > before[0]
    progress = re.findall(r"^re-sealed (\d+) of (\d+) connections$", r.stdout, re.M)
    assert progress, r.stdout
    done, total = map(int, progress[-1])
    assert done == total and total >= 3, r.stdout
    assert ("every connection is sealed under key %d" % new_id) in r.stdout
    assert "ROTATE-PLAINTEXT" not in r.stdout + r.stderr

    # Every row under the new key: key id column and the sealed bytes
    # (version 1, then the key id big-endian).
    assert key_ids(stack) == [new_id] * 3
    assert stack_sql(stack, "SELECT COUNT(*) FROM connections WHERE secrets_key_id < %d" % new_id) == [["0"]]
    prefix = "01%08X" % new_id
    for access, refresh in stack_sql(
            stack, "SELECT HEX(c.access_token), HEX(c.refresh_token) FROM connections c JOIN users u"
                   " ON u.id = c.user_id WHERE u.email = '%s'" % ROTATE_USER):
        assert access.startswith(prefix) and refresh.startswith(prefix)
    assert b"ROTATE-PLAINTEXT" not in dump_connections(stack)
    assert stack_sql(stack, "SELECT COUNT(*) FROM audit_log WHERE action = 'secrets.rotate_key'"
                            " AND actor_label = 'crosspostctl' AND detail LIKE 'added key %d;%%'" % new_id) \
        == [["1"]]

    # Resuming finds nothing left.
    r = stack.ctl("rotate-key", "--reseal-only")
    assert r.returncode == 0, r
    assert "re-sealed 0 of 0 connections" in r.stdout
    assert "added key" not in r.stdout

    # Operators see the connections, never their secrets.
    r = stack.ctl("connections", "list", "--user", ROTATE_USER)
    assert r.returncode == 0, r
    assert len(re.findall(r"@zz-rotate-\d", r.stdout)) == 3, r.stdout
    assert "ROTATE-PLAINTEXT" not in r.stdout
    conn_id = stack_sql(stack, "SELECT MIN(c.id) FROM connections c JOIN users u ON u.id = c.user_id"
                               " WHERE u.email = '%s'" % ROTATE_USER)[0][0]
    r = stack.ctl("connections", "show", conn_id)
    assert r.returncode == 0, r
    assert re.search(r"^secrets_key_id\s+%d$" % new_id, r.stdout, re.M), r.stdout
    assert re.search(r"^owner\s+%s" % re.escape(ROTATE_USER), r.stdout, re.M), r.stdout
    assert "ROTATE-PLAINTEXT" not in r.stdout

    # The program opens them under the new key (and deletes them).
    proc = run_tap_program(stack, PROGRAM, "verify-rotated")
    verify = TapRun(proc, "conn_layer verify-rotated")
    assert proc.returncode == 0 and verify.passed.get("test_rotated_rows_open"), verify.report()
    assert key_ids(stack) == []


@pytest.mark.parametrize("args", [
    ["rotate-key", "--bogus"], ["connections"], ["connections", "bogus"],
    ["connections", "show"], ["connections", "show", "x"], ["connections", "list", "--status", "odd"],
    ["connections", "list", "--platform", "myspace"], ["keygen", "--secrets", "--force"],
])
def test_ctl_usage_errors(stack, args):
    r = stack.ctl(*args)
    assert r.returncode == 2, r


def test_ctl_show_unknown_connection(stack):
    r = stack.ctl("connections", "show", "999999999999")
    assert r.returncode == 1 and "no connection" in r.stderr, r


def test_ctl_keygen_makes_what_is_missing(stack, tmp_path):
    jwt = tmp_path / "jwt.key"
    ring = tmp_path / "secrets.keys"
    conf = tmp_path / "crosspost.conf"
    conf.write_text("jwt_key_file = %s\nsecrets_key_file = %s\n" % (jwt, ring))
    r = stack.ctl("--config", str(conf), "keygen")
    # stack.ctl passes the stack's --config first; the later one wins.
    assert r.returncode == 0, r
    assert jwt.exists() and ring.exists(), r.stdout
    assert oct(ring.stat().st_mode & 0o777) == "0o600"
    assert re.match(r"^1 [0-9a-f]{64}$", [l for l in ring.read_text().splitlines() if not l.startswith("#")][0])
    key_before, ring_before = jwt.read_bytes(), ring.read_bytes()
    # Both exist: nothing is replaced, and that is not an error.
    r = stack.ctl("--config", str(conf), "keygen")
    assert r.returncode == 0, r
    assert r.stdout.count("kept") == 2, r.stdout
    assert jwt.read_bytes() == key_before and ring.read_bytes() == ring_before
    # Only the missing one is made.
    ring.unlink()
    r = stack.ctl("--config", str(conf), "keygen")
    assert r.returncode == 0 and ring.exists() and jwt.read_bytes() == key_before, r
    # An explicit ring that exists is refused; keygen FILE works as before.
    r = stack.ctl("--config", str(conf), "keygen", "--secrets")
    assert r.returncode == 1 and "rotate-key" in r.stderr, r
    other = tmp_path / "other.keys"
    r = stack.ctl("keygen", "--secrets", str(other))
    assert r.returncode == 0 and other.exists(), r
    r = stack.ctl("keygen", str(jwt))
    assert r.returncode == 1 and "--force" in r.stderr, r
