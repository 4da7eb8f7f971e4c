"""crosspostctl and crosspost-api on the command line, against the stack's
configuration and database."""
import glob
import os
import pwd
import re
import shutil
import subprocess
import time

import pytest

from stack import BUILDDIR, ROOT, metric_key

CTL = os.path.join(BUILDDIR, "crosspostctl")
API = os.path.join(BUILDDIR, "crosspost-api")
MIGRATIONS = sorted(glob.glob(os.path.join(ROOT, "sql", "[0-9]*_*.sql")))


def run(stack, argv, env=None, drop=(), timeout=30):
    e = dict(stack.env)
    for key in drop:
        e.pop(key, None)
    if env:
        e.update(env)
    return subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout)


def conf_keys():
    """The key names of the configuration table in src/conf.c."""
    with open(os.path.join(ROOT, "src", "conf.c")) as f:
        return re.findall(r'^\s*\{ "([a-z_]+)", T_[A-Z]+,', f.read(), re.M)


def db_password(stack):
    with open(stack.conf) as f:
        m = re.search(r'^db_password\s*=\s*"(.*)"\s*$', f.read(), re.M)
    assert m and len(m.group(1)) >= 16
    return m.group(1)


def sql(stack, statement):
    """Run SQL as the administrator of the stack's MariaDB (socket auth, as
    scripts/stack does)."""
    socket_path = os.path.join(stack.var, "run", "mysqld.sock")
    r = subprocess.run(["mariadb", "--no-defaults", "--socket=" + socket_path, "-u", pwd.getpwuid(os.getuid()).pw_name,
                        "-N", "-B", "crosspost", "-e", statement],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_config_redacts_password(stack):
    secret = db_password(stack)
    r = stack.ctl("config")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^db_password\s+= \[redacted\]", r.stdout, re.M), r.stdout
    assert secret not in r.stdout + r.stderr
    # The effective values are there (and where they came from).
    assert re.search(r"^api_children\s+= 3\b", r.stdout, re.M)
    assert "# configuration file: " + stack.conf in r.stdout


def test_config_lists_every_key(stack):
    keys = conf_keys()
    assert len(keys) >= 25, keys
    effective = stack.ctl("config").stdout
    defaults = stack.ctl("config", "--defaults")
    assert defaults.returncode == 0
    for key in keys:
        assert re.search(r"^#%s = " % key, defaults.stdout, re.M), key
        assert re.search(r"^%s\s+= " % key, effective, re.M), key


def test_unknown_key_is_refused(stack, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("log_level = info\n# a comment\n\ndb_pasword = x\n")
    r = run(stack, [CTL, "--config", str(conf), "config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "%s:4" % conf in r.stderr, r.stderr
    assert "db_pasword" in r.stderr


def test_migrate_status_and_noop(stack):
    r = stack.ctl("migrate", "--status")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s*1\s+001_instance\.sql\s+applied\b", r.stdout, re.M), r.stdout
    assert "0 pending" in r.stdout and "0 changed" in r.stdout
    r = stack.ctl("migrate")
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
    assert sql(stack, "SELECT COUNT(*) FROM schema_migrations").strip() == str(len(MIGRATIONS))


@pytest.fixture
def sql_copy(tmp_path):
    d = tmp_path / "sql"
    shutil.copytree(os.path.join(ROOT, "sql"), d)
    return d


def test_changed_migration_is_refused(stack, sql_copy):
    with open(sql_copy / "001_instance.sql", "a") as f:
        f.write("-- edited after it was applied\n")
    r = stack.ctl("migrate", env={"CROSSPOST_SQL_DIR": str(sql_copy)})
    assert r.returncode != 0
    assert "001_instance.sql" in r.stderr and "changed" in r.stderr, r.stderr
    r = stack.ctl("migrate", "--status", env={"CROSSPOST_SQL_DIR": str(sql_copy)})
    assert re.search(r"001_instance\.sql\s+changed", r.stdout, re.I), r.stdout
    assert "1 changed" in r.stdout
    # Nothing was recorded, and the running API still sees its own files.
    assert sql(stack, "SELECT COUNT(*) FROM schema_migrations").strip() == str(len(MIGRATIONS))
    assert stack.get("/readyz").status == 200


def test_new_migration_applies(stack, sql_copy):
    (sql_copy / "999_zz_probe.sql").write_text(
        "-- 999_zz_probe.sql - a table for the integration test.\n"
        "CREATE TABLE IF NOT EXISTS zz_probe (id INT NOT NULL PRIMARY KEY) ENGINE=InnoDB;\n"
        "INSERT IGNORE INTO zz_probe (id) VALUES (7);\n")
    env = {"CROSSPOST_SQL_DIR": str(sql_copy)}
    try:
        r = stack.ctl("migrate", env=env)
        assert r.returncode == 0, r.stderr
        assert "999_zz_probe.sql" in r.stdout
        assert sql(stack, "SELECT id FROM zz_probe").strip() == "7"
        r = stack.ctl("migrate", "--status", env=env)
        assert re.search(r"^\s*999\s+999_zz_probe\.sql\s+applied\b", r.stdout, re.M), r.stdout
        r = stack.ctl("migrate", env=env)
        assert r.returncode == 0 and "up to date" in r.stdout
    finally:
        sql(stack, "DROP TABLE IF EXISTS zz_probe; DELETE FROM schema_migrations WHERE version = 999")
    assert stack.get("/readyz").status == 200


def test_api_check(stack, tmp_path):
    r = run(stack, [API, "--config", stack.conf, "--check"])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    r = run(stack, [API, "--config", stack.conf, "--check"], env={"CROSSPOST_API_CHILDREN": "0"})
    assert r.returncode == 2
    assert "api_children" in r.stderr
    conf = tmp_path / "c.conf"
    conf.write_text("api_children = 0\n")
    r = run(stack, [API, "--config", str(conf), "--check"], drop=["CROSSPOST_API_CHILDREN"])
    assert r.returncode == 2
    assert "%s:1" % conf in r.stderr and "api_children" in r.stderr, r.stderr


def test_api_refuses_socket_in_use(stack, tmp_path):
    crashed = metric_key("crosspost_api_child_exits_total", reason="crashed")
    before = stack.metrics()[crashed]
    master = stack.api_master()
    kids = stack.api_children()
    pid_file = tmp_path / "other.pid"
    t0 = time.time()
    r = run(stack, [API, "--config", stack.conf], env={"CROSSPOST_API_PID_FILE": str(pid_file)}, timeout=15)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert time.time() - t0 < 5
    assert "in use" in r.stderr, r.stderr
    assert not pid_file.exists()
    # The running pool is untouched and still serves.
    assert os.path.exists(stack.api_socket)
    assert stack.api_master() == master
    assert stack.get("/api/v1/version").status == 200
    assert stack.api_children() == kids
    assert stack.metrics()[crashed] == before
