"""Accounts managed with crosspostctl: policy, hashing, roles, the last
admin, session ends and the audit trail."""
import os
import stat

import pytest

from stack import stack_sql


def sql(stack, q):
    return stack_sql(stack, q)


def add(stack, email, password=None, role=None):
    args = ["user", "add", email]
    if role:
        args += ["--role", role]
    if password is not None:
        args.append("--password-stdin")
    return stack.ctl(*args, input_text=password)


def user_row(stack, email):
    rows = sql(stack, "SELECT id, role, disabled, token_version, password_hash FROM users "
                      "WHERE email = '%s'" % email)
    assert len(rows) == 1, rows
    return rows[0]


def test_up_made_the_first_admin_and_key(stack):
    pw_file = os.path.join(stack.var, "admin-password")
    assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
    with open(pw_file) as f:
        assert len(f.read().strip()) >= 32
    key = os.path.join(stack.var, "jwt.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    uid, role, disabled, _, pwhash = user_row(stack, "admin@localhost")
    assert role == "admin" and disabled == "0"
    assert pwhash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    listing = stack.ctl("user", "list").stdout
    assert "admin@localhost" in listing and "admin" in listing


def test_keygen_does_not_replace_a_key_silently(stack):
    r = stack.ctl("keygen", os.path.join(stack.var, "jwt.key"))
    assert r.returncode == 1 and "--force" in r.stderr


@pytest.mark.parametrize("password,why", [
    ("short1!", "at least 8"),
    ("password", "common"),
    ("Password1", "common"),
    ("x" * 129, "at most 128"),
    ("ctl-policy@example.com", "email"),
])
def test_weak_passwords_are_refused(stack, password, why):
    r = add(stack, "ctl-policy@example.com", password)
    assert r.returncode == 1, r.stdout
    assert why in r.stderr.lower()
    assert sql(stack, "SELECT COUNT(*) FROM users WHERE email = 'ctl-policy@example.com'") == [["0"]]


def test_add_normalises_email_and_refuses_duplicates(stack):
    r = add(stack, "  Ctl-Case@Example.COM ", "a good long passphrase")
    assert r.returncode == 0, r.stderr
    assert "password:" not in r.stdout        # given on stdin: never echoed
    user_row(stack, "ctl-case@example.com")
    r = add(stack, "ctl-case@example.com", "another good passphrase")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = add(stack, "not-an-email", "a good long passphrase")
    assert r.returncode == 1 and "not an email" in r.stderr


def test_generated_password_is_printed_once_and_hashed(stack):
    r = add(stack, "ctl-gen@example.com")
    assert r.returncode == 0, r.stderr
    printed = [l.split(": ", 1)[1] for l in r.stdout.splitlines() if l.startswith("password: ")]
    assert len(printed) == 1 and len(printed[0]) >= 32
    assert printed[0] not in user_row(stack, "ctl-gen@example.com")[4]


def test_changes_end_sessions_and_are_audited(stack):
    assert add(stack, "ctl-life@example.com", "correct horse battery staple").returncode == 0
    uid, _, _, v0, h0 = user_row(stack, "ctl-life@example.com")
    assert stack.ctl("user", "passwd", "ctl-life@example.com", "--password-stdin",
                     input_text="another horse battery staple\n").returncode == 0
    _, _, _, v1, h1 = user_row(stack, "ctl-life@example.com")
    assert int(v1) == int(v0) + 1 and h1 != h0
    assert stack.ctl("user", "role", "ctl-life@example.com", "operator").returncode == 0
    assert stack.ctl("user", "disable", "ctl-life@example.com").returncode == 0
    _, role, disabled, v3, _ = user_row(stack, "ctl-life@example.com")
    assert role == "operator" and disabled == "1" and int(v3) == int(v0) + 3
    assert stack.ctl("user", "enable", "ctl-life@example.com").returncode == 0
    actions = [r[0] for r in sql(stack, "SELECT action FROM audit_log WHERE target_type = 'user' "
                                        "AND target_id = '%s' ORDER BY id" % uid)]
    assert actions == ["user.create", "user.password", "user.role", "user.disable", "user.enable"]
    labels = {r[0] for r in sql(stack, "SELECT actor_label FROM audit_log WHERE target_type = 'user'"
                                       " AND target_id = '%s'" % uid)}
    assert labels == {"crosspostctl"}


def test_the_last_admin_cannot_be_removed(stack):
    assert stack.ctl("user", "role", "admin@localhost", "user").returncode == 1
    r = stack.ctl("user", "disable", "admin@localhost")
    assert r.returncode == 1 and "last enabled admin" in r.stderr
    assert user_row(stack, "admin@localhost")[1:3] == ["admin", "0"]
    # With a second admin the first may step down, and back up again.
    assert add(stack, "ctl-admin2@example.com", "a second admin passphrase", role="admin").returncode == 0
    try:
        assert stack.ctl("user", "role", "admin@localhost", "operator").returncode == 0
        assert stack.ctl("user", "disable", "ctl-admin2@example.com").returncode == 1
    finally:
        assert stack.ctl("user", "role", "admin@localhost", "admin").returncode == 0
        assert stack.ctl("user", "disable", "ctl-admin2@example.com").returncode == 0


def test_unknown_user_and_bad_arguments(stack):
    r = stack.ctl("user", "role", "nobody@example.com", "admin")
    assert r.returncode == 1 and "no user" in r.stderr
    assert stack.ctl("user", "role", "admin@localhost", "emperor").returncode == 2
    assert stack.ctl("user", "frobnicate").returncode == 2


def test_audit_prune_keeps_recent_events(stack):
    sql(stack, "INSERT INTO audit_log (at, actor_label, action, detail) VALUES "
               "(NOW(3) - INTERVAL 400 DAY, 'crosspostctl', 'zz.prune_probe', 'old'), "
               "(NOW(3) - INTERVAL 10 DAY, 'crosspostctl', 'zz.prune_probe', 'recent')")
    r = stack.ctl("audit", "prune")
    assert r.returncode == 0, r.stderr
    assert "older than 365 days" in r.stdout
    left = [row[0] for row in sql(stack, "SELECT detail FROM audit_log WHERE action = 'zz.prune_probe'")]
    assert left == ["recent"]
    r = stack.ctl("audit", "prune", env={"CROSSPOST_AUDIT_RETENTION": "5d"})
    assert r.returncode == 0, r.stderr
    assert sql(stack, "SELECT COUNT(*) FROM audit_log WHERE action = 'zz.prune_probe'") == [["0"]]
    assert stack.ctl("audit", "vacuum").returncode == 2
