"""Account administration through nginx: only admins get in; listing with
filters and cursor paging; create, read, change, delete; sessions that end
with a role change, a disable or a revoke; the last admin stays; bad input
is refused naming what was wrong."""
import json
import urllib.parse
import uuid

import pytest

from authlib import (ADMIN, add_user, admin_password, assert_error, login, me, new_password,
                     quote, sign_in, sql, unique_email, user_id)

USERS = "/api/v1/admin/users"
USER_KEYS = {"id", "email", "display_name", "role", "disabled", "created_at", "last_login_at"}


class Client:
    """Requests with one access token (or none)."""

    def __init__(self, stack, token=None):
        self.stack = stack
        self.token = token

    def call(self, method, path, obj=None, body=None):
        headers = {}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        if obj is not None or body is not None:
            headers["Content-Type"] = "application/json"
            if body is None:
                body = json.dumps(obj).encode()
        elif method in ("POST", "PATCH", "PUT"):
            headers["Content-Type"] = "application/json"
            body = b""
        return self.stack.request(method, path, body=body, headers=headers)

    def get(self, path):
        return self.call("GET", path)

    def ok(self, method, path, obj=None, status=200):
        r = self.call(method, path, obj)
        assert r.status == status, r
        return r.json() if r.body else None


@pytest.fixture(scope="module")
def admin(stack):
    return Client(stack, sign_in(stack, ADMIN, admin_password(stack)).access)


@pytest.fixture(scope="module")
def people(stack):
    """A plain user and an operator, signed in: {role: (client, id)}."""
    out = {}
    for role in ("user", "operator"):
        email, pw, uid = add_user(stack, unique_email("adm-" + role), role=role)
        out[role] = (Client(stack, sign_in(stack, email, pw).access), uid)
    return out


def create(admin, tag="adm", **fields):
    body = {"email": unique_email(tag)}
    body.update(fields)
    return admin.ok("POST", USERS, body, status=201)


def admin_routes(victim):
    base = "%s/%d" % (USERS, victim)
    return [
        ("GET", USERS, None),
        ("POST", USERS, {"email": unique_email("never"), "role": "admin"}),
        ("GET", base, None),
        ("PATCH", base, {"role": "admin"}),
        ("DELETE", base, None),
        ("POST", base + "/revoke-sessions", None),
    ]


# -- who may call ---------------------------------------------------------------

@pytest.mark.parametrize("who", ["user", "operator", "anonymous"])
def test_admin_routes_are_for_admins_only(stack, admin, people, who):
    victim = people["user"][1]
    before = admin.ok("GET", "%s/%d" % (USERS, victim))
    client = Client(stack) if who == "anonymous" else people[who][0]
    for method, path, obj in admin_routes(victim):
        r = client.call(method, path, obj)
        if who == "anonymous":
            assert_error(r, 401, "unauthenticated")
        else:
            assert_error(r, 403, "forbidden")
    # Nothing happened to the account the refused calls named.
    assert admin.ok("GET", "%s/%d" % (USERS, victim)) == before
    assert me(stack, people["user"][0].token).status == 200
    assert sql(stack, "SELECT COUNT(*) FROM users WHERE email LIKE 'never-%'") == [["0"]]


# -- listing ------------------------------------------------------------------

def all_pages(admin, query):
    """Follow next_cursor from the first page; (items, pages)."""
    items, pages, cursor = [], 0, None
    while True:
        q = dict(query)
        if cursor is not None:
            q["cursor"] = cursor
        page = admin.ok("GET", USERS + "?" + urllib.parse.urlencode(q))
        assert set(page) == {"data", "next_cursor"}, page
        pages += 1
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert isinstance(cursor, str) and page["data"]
        assert pages < 1000


def test_list_pages_through_every_user_once(stack, admin):
    tag = "page" + uuid.uuid4().hex[:8]
    made = [create(admin, tag)["id"] for _ in range(5)]
    items, pages = all_pages(admin, {"q": tag, "limit": 2})
    assert [u["id"] for u in items] == made and pages == 3
    for u in items:
        assert set(u) == USER_KEYS and u["role"] == "user" and u["disabled"] is False

    everyone, _ = all_pages(admin, {"limit": 2})
    ids = [u["id"] for u in everyone]
    assert ids == sorted(set(ids)), "duplicates or out of order"
    assert ids == [int(r[0]) for r in sql(stack, "SELECT id FROM users ORDER BY id")]

    page = admin.ok("GET", USERS + "?limit=200")
    assert len(page["data"]) == min(200, len(ids))
    default = admin.ok("GET", USERS)
    assert len(default["data"]) == min(50, len(ids))


def test_list_filters(stack, admin, people):
    tag = uuid.uuid4().hex[:8]
    under = create(admin, "us_er" + tag)
    create(admin, "usXer" + tag)
    pct = create(admin, "pct%" + tag)
    found = admin.ok("GET", USERS + "?q=" + urllib.parse.quote("us_er" + tag))["data"]
    assert [u["id"] for u in found] == [under["id"]]
    found = admin.ok("GET", USERS + "?q=" + urllib.parse.quote("%" + tag))["data"]
    assert [u["id"] for u in found] == [pct["id"]]
    upper = admin.ok("GET", USERS + "?q=" + urllib.parse.quote("US_ER" + tag.upper()))["data"]
    assert [u["id"] for u in upper] == [under["id"]]

    ops, _ = all_pages(admin, {"role": "operator", "limit": 200})
    assert ops and all(u["role"] == "operator" for u in ops)
    assert people["operator"][1] in [u["id"] for u in ops]
    admins, _ = all_pages(admin, {"role": "admin"})
    assert ADMIN in [u["email"] for u in admins]

    off = create(admin, "off" + tag)
    admin.ok("PATCH", "%s/%d" % (USERS, off["id"]), {"disabled": True})
    disabled, _ = all_pages(admin, {"disabled": "true", "limit": 200})
    assert off["id"] in [u["id"] for u in disabled] and all(u["disabled"] for u in disabled)
    enabled, _ = all_pages(admin, {"disabled": "false", "limit": 200})
    assert off["id"] not in [u["id"] for u in enabled] and not any(u["disabled"] for u in enabled)
    both = admin.ok("GET", USERS + "?" + urllib.parse.urlencode(
        {"q": "off" + tag, "role": "user", "disabled": "true"}))["data"]
    assert [u["id"] for u in both] == [off["id"]]


@pytest.mark.parametrize("query", [
    "limit=0", "limit=201", "limit=abc", "limit=-1", "limit=", "cursor=abc", "cursor=0",
    "cursor=-5", "cursor=99999999999999999999", "role=emperor", "disabled=yes", "disabled=1",
    "q=%zz", "q=%FF", "q=a%00", "limit=2&limit=3", "q=" + "a" * 300,
])
def test_list_refuses_bad_parameters(admin, query):
    assert_error(admin.get(USERS + "?" + query), 400, "invalid_parameter")


# -- create -------------------------------------------------------------------

def test_create_with_and_without_a_password(stack, admin):
    email, pw = unique_email("mk"), new_password()
    u = admin.ok("POST", USERS, {"email": email.upper(), "password": pw, "role": "operator",
                                 "display_name": "Ana Lys\u00e9"}, status=201)
    assert set(u) == USER_KEYS, u
    assert u["email"] == email and u["role"] == "operator" and u["display_name"] == "Ana Lys\u00e9"
    assert u["disabled"] is False and u["last_login_at"] is None
    assert login(stack, email, pw).status == 200

    email2 = unique_email("mk")
    u2 = admin.ok("POST", USERS, {"email": email2}, status=201)
    assert set(u2) == USER_KEYS | {"password"} and u2["role"] == "user"
    generated = u2["password"]
    assert len(generated) >= 32
    assert generated not in sql(stack, "SELECT password_hash FROM users WHERE id = %d" % u2["id"])[0][0]
    assert login(stack, email2, generated).status == 200
    # Shown once: reading the account never shows it again.
    assert "password" not in admin.ok("GET", "%s/%d" % (USERS, u2["id"]))

    me_id = user_id(stack, ADMIN)
    rows = sql(stack, "SELECT actor_id, action, outcome, target_type, owner_id, detail FROM audit_log "
                      "WHERE target_id = '%d' AND action = 'user.create'" % u["id"])
    assert rows == [[str(me_id), "user.create", "success", "user", str(u["id"]), "operator"]]


@pytest.mark.parametrize("body,status,code,names", [
    ({"email": "not-an-email"}, 422, "invalid_email", None),
    ({"email": "@example.com"}, 422, "invalid_email", None),
    ({"email": "NEW", "role": "emperor"}, 422, "invalid_role", "role"),
    ({"email": "NEW", "role": 5}, 400, "invalid_field", "role"),
    ({"email": "NEW", "password": "password"}, 422, "weak_password", None),
    ({"email": "NEW", "password": "short"}, 422, "weak_password", None),
    ({"email": "NEW", "password": 12345678}, 400, "invalid_field", "password"),
    ({"email": "NEW", "display_name": "x" * 101}, 422, "invalid_field", "display_name"),
    ({"email": "NEW", "display_name": "a\nb"}, 422, "invalid_field", "display_name"),
    ({"email": "NEW", "display_name": None}, 400, "invalid_field", "display_name"),
    ({"email": "NEW", "is_admin": True}, 422, "unknown_field", "is_admin"),
    ({"email": 7}, 400, "invalid_field", "email"),
    ({}, 400, "missing_field", "email"),
    ([], 400, "invalid_body", None),
])
def test_create_refuses_bad_bodies(stack, admin, body, status, code, names):
    if isinstance(body, dict) and body.get("email") == "NEW":
        body = dict(body, email=unique_email("bad"))
    before = sql(stack, "SELECT COUNT(*) FROM users")
    err = assert_error(admin.call("POST", USERS, body), status, code)
    if names:
        assert names in err["message"], err
    assert sql(stack, "SELECT COUNT(*) FROM users") == before


def test_create_refuses_a_taken_email(admin):
    assert_error(admin.call("POST", USERS, {"email": "  Admin@LocalHost "}), 409, "email_taken")


# -- read, change, delete -----------------------------------------------------------

@pytest.mark.parametrize("ident", ["abc", "0", "99999999999999999999", "9223372036854775808",
                                   "-1", "012", "99999999"])
def test_unknown_ids_are_404(admin, ident):
    base = "%s/%s" % (USERS, ident)
    for method, path, obj in [("GET", base, None), ("PATCH", base, {"role": "user"}),
                              ("DELETE", base, None), ("POST", base + "/revoke-sessions", None)]:
        assert_error(admin.call(method, path, obj), 404, "not_found")


def test_get_shows_the_same_account_as_me(stack, admin):
    email, pw, uid = add_user(stack, unique_email("same"))
    own = me(stack, sign_in(stack, email, pw).access).json()
    assert admin.ok("GET", "%s/%d" % (USERS, uid)) == own
    assert own["last_login_at"] is not None


def test_patch_changes_role_access_and_name(stack, admin):
    email, pw, uid = add_user(stack, unique_email("patch"))
    path = "%s/%d" % (USERS, uid)
    token = sign_in(stack, email, pw).access
    assert me(stack, token).status == 200

    u = admin.ok("PATCH", path, {"display_name": "Pat Smith"})
    assert u["display_name"] == "Pat Smith" and u["role"] == "user"
    assert me(stack, token).status == 200, "a name change keeps sessions"

    u = admin.ok("PATCH", path, {"role": "operator"})
    assert u["role"] == "operator"
    assert me(stack, token).status == 401, "a role change ends sessions"

    token = sign_in(stack, email, pw).access
    u = admin.ok("PATCH", path, {"disabled": True})
    assert u["disabled"] is True
    assert me(stack, token).status == 401
    assert login(stack, email, pw).status == 401

    u = admin.ok("PATCH", path, {"disabled": False, "role": "admin", "display_name": ""})
    assert (u["disabled"], u["role"], u["display_name"]) == (False, "admin", "")
    assert login(stack, email, pw).status == 200
    admin.ok("PATCH", path, {"role": "user"})

    actions = [r[0] for r in sql(stack, "SELECT action FROM audit_log WHERE target_type = 'user' "
                                        "AND target_id = '%d' AND outcome = 'success' "
                                        "AND action LIKE 'user.%%' ORDER BY id" % uid)]
    assert actions == ["user.create", "user.update", "user.role", "user.disable", "user.role",
                       "user.enable", "user.update", "user.role"]
    details = [r[0] for r in sql(stack, "SELECT detail FROM audit_log WHERE target_id = '%d' "
                                        "AND action = 'user.role' ORDER BY id" % uid)]
    assert details == ["user -> operator", "operator -> admin", "admin -> user"]


@pytest.mark.parametrize("body,status,code,field", [
    ({"role": 5}, 400, "invalid_field", "role"),
    ({"role": "emperor"}, 422, "invalid_role", "role"),
    ({"role": None}, 400, "invalid_field", "role"),
    ({"disabled": "yes"}, 400, "invalid_field", "disabled"),
    ({"disabled": 1}, 400, "invalid_field", "disabled"),
    ({"display_name": "x" * 300}, 422, "invalid_field", "display_name"),
    ({"display_name": "\u00e9" * 101}, 422, "invalid_field", "display_name"),
    ({"display_name": ["a"]}, 400, "invalid_field", "display_name"),
    ({"email": "x@example.com"}, 422, "unknown_field", "email"),
    ({"role": "admin", "password_hash": "x"}, 422, "unknown_field", "password_hash"),
    ({}, 422, "nothing_to_change", None),
    ([], 400, "invalid_body", None),
    ("role", 400, "invalid_body", None),
])
def test_patch_refuses_bad_bodies(stack, admin, people, body, status, code, field):
    uid = people["user"][1]
    path = "%s/%d" % (USERS, uid)
    before = admin.ok("GET", path)
    err = assert_error(admin.call("PATCH", path, body), status, code)
    if field:
        assert '"%s"' % field in err["message"], err
    assert admin.ok("GET", path) == before


def test_patch_without_a_body_is_refused(admin, people):
    path = "%s/%d" % (USERS, people["user"][1])
    assert_error(admin.call("PATCH", path), 400, "invalid_body")
    r = admin.call("PATCH", path, body=b"{not json")
    assert_error(r, 400, "invalid_json")


def test_a_display_name_of_100_characters_is_kept(admin):
    u = create(admin)
    name = "\u00e9" * 100
    assert admin.ok("PATCH", "%s/%d" % (USERS, u["id"]), {"display_name": name})["display_name"] == name


def test_delete(stack, admin):
    email, pw, uid = add_user(stack, unique_email("del"))
    token = sign_in(stack, email, pw).access
    path = "%s/%d" % (USERS, uid)
    r = admin.call("DELETE", path)
    assert r.status == 204 and r.body == b"", r
    assert_error(admin.get(path), 404, "not_found")
    assert_error(admin.call("DELETE", path), 404, "not_found")
    assert me(stack, token).status == 401
    assert sql(stack, "SELECT COUNT(*) FROM sessions WHERE user_id = %d" % uid) == [["0"]]
    rows = sql(stack, "SELECT actor_id, detail FROM audit_log WHERE action = 'user.delete' "
                      "AND target_id = '%d'" % uid)
    assert rows == [[str(user_id(stack, ADMIN)), email]]


def test_revoke_sessions_ends_every_sign_in(stack, admin):
    email, pw, uid = add_user(stack, unique_email("revoke"))
    first, second = sign_in(stack, email, pw), sign_in(stack, email, pw)
    assert me(stack, first.access).status == 200 and me(stack, second.access).status == 200
    r = admin.call("POST", "%s/%d/revoke-sessions" % (USERS, uid))
    assert r.status == 204 and r.body == b"", r
    assert me(stack, first.access).status == 401 and me(stack, second.access).status == 401
    assert sql(stack, "SELECT COUNT(*) FROM sessions WHERE user_id = %d AND revoked_at IS NULL"
               % uid) == [["0"]]
    # The account itself is untouched: its holder signs in again.
    assert me(stack, sign_in(stack, email, pw).access).status == 200
    assert sql(stack, "SELECT COUNT(*) FROM audit_log WHERE action = 'user.revoke_sessions' "
                      "AND target_id = '%d'" % uid) == [["1"]]


# -- the last admin -------------------------------------------------------------

def enabled_admins(stack):
    return [int(r[0]) for r in sql(stack, "SELECT id FROM users WHERE role = 'admin' AND disabled = 0")]


def test_the_last_admin_cannot_be_removed(stack, admin):
    me_id = user_id(stack, ADMIN)
    path = "%s/%d" % (USERS, me_id)
    others = [i for i in enabled_admins(stack) if i != me_id]
    before = admin.ok("GET", path)
    try:
        for i in others:
            admin.ok("PATCH", "%s/%d" % (USERS, i), {"disabled": True})
        assert enabled_admins(stack) == [me_id]
        for method, obj in [("PATCH", {"role": "operator"}), ("PATCH", {"role": "user"}),
                            ("PATCH", {"disabled": True}),
                            ("PATCH", {"disabled": True, "display_name": "gone"}),
                            ("DELETE", None)]:
            assert_error(admin.call(method, path, obj), 409, "last_admin")
        assert admin.ok("GET", path) == before
        assert me(stack, admin.token).status == 200, "refusals end no session"
        assert int(sql(stack, "SELECT COUNT(*) FROM audit_log WHERE target_id = '%d' "
                              "AND outcome = 'failure' AND detail LIKE '%%last enabled admin%%'"
                              % me_id)[0][0]) >= 5
        # A no-op change of the last admin is fine.
        assert admin.ok("PATCH", path, {"role": "admin", "disabled": False})["role"] == "admin"
    finally:
        for i in others:
            admin.ok("PATCH", "%s/%d" % (USERS, i), {"disabled": False})
    assert set(enabled_admins(stack)) == set(others) | {me_id}


def test_an_admin_may_step_down_or_leave_while_another_remains(stack, admin):
    pw = new_password()
    second = create(admin, "adm2", password=pw, role="admin")
    second_email = second["email"]
    client = Client(stack, sign_in(stack, second_email, pw).access)
    path = "%s/%d" % (USERS, second["id"])
    # Stepping down ends the admin's own sessions like any role change.
    assert client.ok("PATCH", path, {"role": "operator"})["role"] == "operator"
    assert client.get(USERS).status == 401
    admin.ok("PATCH", path, {"role": "admin"})
    client = Client(stack, sign_in(stack, second_email, pw).access)
    r = client.call("DELETE", path)
    assert r.status == 204, r
    assert_error(admin.get(path), 404, "not_found")
    u = admin.ok("GET", "%s/%d" % (USERS, user_id(stack, ADMIN)))
    assert u["role"] == "admin" and u["disabled"] is False


def test_admin_at_localhost_is_left_an_enabled_admin(stack):
    rows = sql(stack, "SELECT role, disabled FROM users WHERE email = %s" % quote(ADMIN))
    assert rows == [["admin", "0"]]
