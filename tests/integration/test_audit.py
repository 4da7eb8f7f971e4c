"""Reading the audit log through nginx: admins see every event, anyone
else only their own trail; filters by actor, action (exact or prefix),
target and time; newest-first cursor paging; bad parameters refused; a
user's page stays cheap on a large log."""
import datetime
import json
import re
import urllib.parse

import pytest

from authlib import (ADMIN, admin_password, assert_error, login, new_password, sign_in, sql,
                     unique_email, user_id)

AUDIT = "/api/v1/audit"
ITEM_KEYS = {"id", "at", "actor_id", "actor", "action", "outcome", "target_type", "target_id",
             "client_addr", "request_id", "detail"}
AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def call(stack, token, method, path, obj=None):
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    body = None
    if obj is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(obj).encode()
    return stack.request(method, path, body=body, headers=headers)


def audit(stack, token, **query):
    r = call(stack, token, "GET", AUDIT + ("?" + urllib.parse.urlencode(query) if query else ""))
    assert r.status == 200, r
    page = r.json()
    assert set(page) == {"data", "next_cursor"}, page
    for item in page["data"]:
        assert set(item) == ITEM_KEYS, item
        assert AT.match(item["at"]), item
    return page


def every(stack, token, **query):
    """All items over every page, following next_cursor."""
    items, cursor = [], None
    for _ in range(1000):
        q = dict(query)
        if cursor:
            q["cursor"] = cursor
        page = audit(stack, token, **q)
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def ids(items):
    return [i["id"] for i in items]


def sql_ids(stack, where):
    return [int(r[0]) for r in sql(stack, "SELECT id FROM audit_log WHERE %s ORDER BY id DESC" % where)]


@pytest.fixture(scope="module")
def world(stack):
    """An admin who creates two users A and B through the API; both sign
    in, B also fails once.  {"admin","a","b"}: (token, id, email, password),
    plus the create responses' request ids."""
    admin_token = sign_in(stack, ADMIN, admin_password(stack)).access
    out = {"admin": (admin_token, user_id(stack, ADMIN), ADMIN, None), "create_rid": {}}
    for name in ("a", "b"):
        email, pw = unique_email("aud-" + name), new_password()
        r = call(stack, admin_token, "POST", "/api/v1/admin/users", {"email": email, "password": pw})
        assert r.status == 201, r
        uid = r.json()["id"]
        out["create_rid"][name] = r.headers["x-request-id"]
        out[name] = (sign_in(stack, email, pw).access, uid, email, pw)
    assert login(stack, out["b"][2], "not the password").status == 401
    r = call(stack, admin_token, "PATCH", "/api/v1/admin/users/%d" % out["a"][1],
             {"display_name": "Audited A"})
    assert r.status == 200, r
    return out


def test_admin_sees_events_with_their_details(stack, world):
    admin_token, admin_id, _, _ = world["admin"]
    _, a_id, a_email, _ = world["a"]
    _, b_id, b_email, _ = world["b"]
    created = audit(stack, admin_token, action="user.create", target="user:%d" % a_id)["data"]
    assert len(created) == 1
    ev = created[0]
    assert ev["actor_id"] == admin_id and ev["actor"] == ADMIN
    assert (ev["action"], ev["outcome"], ev["target_type"], ev["target_id"]) == \
        ("user.create", "success", "user", str(a_id))
    assert ev["request_id"] == world["create_rid"]["a"]
    assert ev["client_addr"] == "127.0.0.1" and ev["detail"] == "user"

    failed = audit(stack, admin_token, action="auth.login", target="user:%d" % b_id)["data"]
    bad = [e for e in failed if e["outcome"] == "failure"]
    assert len(bad) == 1 and bad[0]["actor_id"] is None and bad[0]["actor"] == b_email
    good = [e for e in failed if e["outcome"] == "success"]
    assert len(good) == 1 and good[0]["actor_id"] == b_id and good[0]["actor"] == b_email
    assert a_email not in json.dumps(failed)


def test_admin_filters(stack, world):
    admin_token, admin_id, _, _ = world["admin"]
    a_id = world["a"][1]
    # An action prefix ends in '.'; anything else is an exact action.
    users = every(stack, admin_token, action="user.", limit=200)
    assert users and all(e["action"].startswith("user.") for e in users)
    assert ids(users) == sql_ids(stack, "action LIKE 'user.%'")
    auth = every(stack, admin_token, action="auth.", limit=200)
    assert {e["action"] for e in auth} >= {"auth.login"}
    assert ids(auth) == sql_ids(stack, "action LIKE 'auth.%'")
    assert audit(stack, admin_token, action="auth")["data"] == []
    assert audit(stack, admin_token, action="auth.log")["data"] == []

    mine = every(stack, admin_token, actor=admin_id, limit=200)
    assert mine and all(e["actor_id"] == admin_id for e in mine)
    assert ids(mine) == sql_ids(stack, "actor_id = %d" % admin_id)

    about_a = every(stack, admin_token, target="user:%d" % a_id)
    assert ids(about_a) == sql_ids(stack, "target_type = 'user' AND target_id = '%d'" % a_id)
    assert [e["action"] for e in reversed(about_a)] == ["user.create", "auth.login", "user.update"]

    both = audit(stack, admin_token, actor=admin_id, action="user.update", target="user:%d" % a_id)
    assert [e["detail"] for e in both["data"]] == ["display_name changed"]
    assert audit(stack, admin_token, target="user:0")["data"] == []
    assert audit(stack, admin_token, target="nothing:%d" % a_id)["data"] == []


def parse_at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def fmt(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def test_time_range(stack, world):
    admin_token = world["admin"][0]
    target = "user:%d" % world["a"][1]
    events = every(stack, admin_token, target=target)
    first = events[-1]
    t = parse_at(first["at"])
    # from is inclusive, to exclusive.
    assert first["id"] in ids(every(stack, admin_token, target=target, **{"from": first["at"]}))
    assert first["id"] not in ids(every(stack, admin_token, target=target, to=first["at"]))
    later = fmt(t + datetime.timedelta(milliseconds=1))
    assert first["id"] in ids(every(stack, admin_token, target=target, to=later))
    assert first["id"] not in ids(every(stack, admin_token, target=target, **{"from": later}))
    window = every(stack, admin_token, target=target, **{"from": "2000-01-01T00:00:00Z",
                                                         "to": "9999-12-31T23:59:59.999Z"})
    assert ids(window) == ids(events)
    assert audit(stack, admin_token, **{"from": "9999-01-01T00:00:00Z"})["data"] == []
    assert audit(stack, admin_token, to="2000-01-01T00:00:00z")["data"] == []
    whole_seconds = t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["id"] in ids(every(stack, admin_token, target=target, **{"from": whole_seconds}))


def test_paging_is_newest_first_without_gaps(stack, world):
    admin_token = world["admin"][0]
    seen, cursor, pages = [], None, 0
    while True:
        q = {"limit": 2, "action": "user."}
        if cursor:
            q["cursor"] = cursor
        page = audit(stack, admin_token, **q)
        pages += 1
        assert len(page["data"]) <= 2
        seen += ids(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == str(page["data"][-1]["id"])
    assert seen == sql_ids(stack, "action LIKE 'user.%'")
    assert len(seen) >= 3 and pages == (len(seen) + 1) // 2
    everything = audit(stack, admin_token, limit=200)["data"]
    assert ids(everything) == sql_ids(stack, "1")[:200]
    assert len(audit(stack, admin_token)["data"]) == min(50, len(sql_ids(stack, "1")))


def trail(stack, uid):
    return sql_ids(stack, "owner_id = %d OR actor_id = %d" % (uid, uid))


def test_a_user_sees_only_their_own_trail(stack, world):
    a_token, a_id, _, _ = world["a"]
    b_token, b_id, b_email, _ = world["b"]
    admin_id = world["admin"][1]
    for token, uid, other in ((a_token, a_id, b_id), (b_token, b_id, a_id)):
        items = every(stack, token, limit=3)
        assert ids(items) == trail(stack, uid)
        # Another user's rows stay out of reach, whatever the filters say.
        assert every(stack, token, actor=other) == []
        assert every(stack, token, target="user:%d" % other) == []
    a_items = every(stack, a_token)
    # The admin's changes to A's account are part of A's trail.
    assert {"user.create", "user.update"} <= {e["action"] for e in a_items if e["actor_id"] == admin_id}
    assert b_email not in json.dumps(a_items)
    # B sees the failed sign-in on their account.
    b_logins = every(stack, b_token, action="auth.login")
    assert sorted(e["outcome"] for e in b_logins) == ["failure", "success"]
    assert every(stack, a_token, actor=admin_id, action="user.") != []


def test_an_operator_sees_only_their_own_trail(stack, world):
    admin_token = world["admin"][0]
    email, pw = unique_email("aud-op"), new_password()
    r = call(stack, admin_token, "POST", "/api/v1/admin/users",
             {"email": email, "password": pw, "role": "operator"})
    assert r.status == 201, r
    uid = r.json()["id"]
    token = sign_in(stack, email, pw).access
    assert ids(every(stack, token)) == trail(stack, uid)
    assert every(stack, token, actor=world["a"][1]) == []


def test_audit_needs_a_sign_in(stack):
    assert_error(stack.get(AUDIT), 401, "unauthenticated")


@pytest.mark.parametrize("query", [
    "from=yesterday", "from=2026-11-22", "from=2026-11-22T05:00:00", "from=2026-13-01T00:00:00Z",
    "from=2026-02-29T00:00:00Z", "from=2026-11-22T24:00:00Z", "from=2026-11-22T05:00:60Z",
    "from=2026-11-22T05:00:00%2B01:00", "from=2026-11-22T05:00:00.Z", "from=2026-11-22T05:00:00.1234567Z",
    "from=0999-01-01T00:00:00Z", "from=", "to=2026-11-22%2005:00:00Z", "to=2026-11-22T05:00:00ZZ",
    "limit=0", "limit=201", "limit=x", "limit=", "cursor=x", "cursor=0", "cursor=-1",
    "cursor=99999999999999999999", "actor=abc", "actor=0", "target=user", "target=:5", "target=user:",
    "target=user:%FF", "target=" + "t" * 33 + ":1", "target=user:" + "1" * 65,
    "action=AUTH.", "action=auth%25", "action=", "action=" + "a" * 65, "limit=1&limit=2",
])
def test_bad_parameters_are_400(stack, world, query):
    for token in (world["admin"][0], world["a"][0]):
        r = call(stack, token, "GET", AUDIT + "?" + query)
        assert_error(r, 400, "invalid_parameter")


def test_a_leap_day_is_a_date(stack, world):
    assert audit(stack, world["admin"][0], **{"from": "2028-02-29T00:00:00Z"})["data"] == []


def handler_reads(stack):
    rows = sql(stack, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_read_next', "
                      "'Handler_read_prev', 'Handler_read_rnd_next', 'Handler_read_key')")
    return sum(int(v) for _, v in rows)


def test_pages_stay_cheap_on_a_large_log(stack, world):
    """100 000 events of nobody's: a user's page and the admin's indexed
    filters read a few rows, not the log."""
    a_token, a_id, _, _ = world["a"]
    admin_token, admin_id = world["admin"][0], world["admin"][1]
    sql(stack, "INSERT INTO audit_log (actor_label, action, detail) "
               "SELECT 'filler', 'test.filler', 'x' FROM seq_1_to_100000")
    try:
        cases = [
            (a_token, {}),
            (a_token, {"action": "auth.login"}),
            (a_token, {"limit": 200, "action": "user."}),
            (admin_token, {"actor": a_id}),
            (admin_token, {"action": "user.create"}),
            (admin_token, {"actor": admin_id, "action": "user."}),
        ]
        for token, query in cases:
            audit(stack, token, **query)           # warm the connection and statement
            before = handler_reads(stack)
            page = audit(stack, token, **query)
            reads = handler_reads(stack) - before
            assert page["data"], query
            assert reads < 5000, (query, reads)
    finally:
        sql(stack, "DELETE FROM audit_log WHERE action = 'test.filler'")
