"""Personal API keys through nginx: shown once, stored hashed, usable as
Bearer credentials with the owner's current role, revocable at once, and
never visible to another user."""
import hashlib
import json
import re

import pytest

from authlib import (add_user, assert_error, audit_rows, count, error_of, me, post_json, quote,
                     sign_in, sql)
from stack import cgi_params

KEYS = "/api/v1/me/api-keys"
ADMIN_ROUTE = "/api/v1/admin/users"
KEY_SHAPE = re.compile(r"^cpk_[A-Za-z0-9_-]{43}$")
LISTED = {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at"}


def bearer(credential):
    return {"Authorization": "Bearer %s" % credential}


def create(stack, token, name="script", body=None):
    return post_json(stack, KEYS, {"name": name} if body is None else body, bearer(token))


def new_key(stack, token, name="script"):
    r = create(stack, token, name)
    assert r.status == 201, r
    return r.json()


def listing(stack, credential, query=""):
    r = stack.get(KEYS + query, headers=bearer(credential))
    assert r.status == 200, r
    return r


def revoke(stack, credential, key_id):
    return stack.request("DELETE", "%s/%s" % (KEYS, key_id), headers=bearer(credential))


def person(stack, role=None):
    """A new account and a sign-in: (email, user id, access token)."""
    email, password, uid = add_user(stack, role=role)
    return email, uid, sign_in(stack, email, password).access


def test_a_key_signs_in_as_its_owner(stack):
    email, uid, token = person(stack)
    k = new_key(stack, token, "backup script")
    assert set(k) == LISTED | {"key"}, k
    assert KEY_SHAPE.match(k["key"]), k["key"]
    assert k["prefix"] == k["key"][:12]
    assert k["name"] == "backup script" and k["last_used_at"] is None and k["revoked_at"] is None
    r = me(stack, k["key"])
    assert r.status == 200, r
    assert r.json()["id"] == uid and r.json()["email"] == email


def test_list_shows_prefix_and_use_but_no_secret(stack):
    _, uid, token = person(stack)
    k = new_key(stack, token)
    assert me(stack, k["key"]).status == 200
    r = listing(stack, token)
    body = r.json()
    assert body["next_cursor"] is None
    assert len(body["data"]) == 1
    row = body["data"][0]
    assert set(row) == LISTED, row
    assert row["id"] == k["id"] and row["prefix"] == k["key"][:12]
    assert row["last_used_at"] is not None and row["revoked_at"] is None
    digest = hashlib.sha256(k["key"].encode()).hexdigest()
    text = r.body.decode()
    for secret in (k["key"], k["key"][12:], digest, digest.upper()):
        assert secret not in text
    # The key itself can list, and sees the same.
    assert listing(stack, k["key"]).json()["data"] == listing(stack, token).json()["data"]


def test_key_is_shown_only_once(stack):
    _, _, token = person(stack)
    k = new_key(stack, token)
    for credential in (token, k["key"]):
        r = listing(stack, credential)
        assert k["key"] not in r.body.decode() and '"key"' not in r.body.decode()
        r = me(stack, credential)
        assert k["key"] not in r.body.decode()


def test_key_is_stored_hashed(stack):
    _, uid, token = person(stack)
    k = new_key(stack, token)
    rows = sql(stack, "SELECT LENGTH(key_hash), HEX(key_hash), prefix FROM api_keys WHERE id = %d" % k["id"])
    assert rows == [["32", hashlib.sha256(k["key"].encode()).hexdigest().upper(), k["key"][:12]]]
    cols = [c[0] for c in sql(stack, "SELECT column_name FROM information_schema.columns WHERE "
                                     "table_schema = DATABASE() AND table_name = 'api_keys'")]
    assert sorted(cols) == sorted(["id", "user_id", "name", "prefix", "key_hash", "created_at",
                                   "last_used_at", "revoked_at"])
    every = sql(stack, "SELECT CONCAT_WS('|', %s) FROM api_keys WHERE id = %d"
                       % (", ".join("COALESCE(HEX(%s), '')" % c if c == "key_hash" else
                                    "COALESCE(%s, '')" % c for c in cols), k["id"]))
    assert k["key"] not in every[0][0] and k["key"][12:] not in every[0][0]
    # Nor does any other table, the audit log included.
    for table, column in (("audit_log", "detail"), ("audit_log", "actor_label")):
        assert count(stack, table, "%s LIKE %s" % (column, quote("%" + k["key"][12:] + "%"))) == 0


def test_revoked_key_is_refused_at_once(stack):
    _, uid, token = person(stack)
    k = new_key(stack, token)
    assert me(stack, k["key"]).status == 200
    r = revoke(stack, token, k["id"])
    assert r.status == 204 and r.body == b"", r
    r = me(stack, k["key"])
    assert_error(r, 401, "invalid_token")
    assert r.headers.get("www-authenticate", "").startswith("Bearer")
    # Listed as revoked; revoking twice names nothing.
    row = listing(stack, token).json()["data"][0]
    assert row["id"] == k["id"] and row["revoked_at"] is not None
    assert_error(revoke(stack, token, k["id"]), 404, "not_found")
    ev = audit_rows(stack, "action = 'api_key.revoke' AND target_id = '%d'" % k["id"])
    assert len(ev) == 1
    assert ev[0]["target_type"] == "api_key" and ev[0]["owner_id"] == str(uid)
    assert ev[0]["actor_id"] == str(uid) and ev[0]["outcome"] == "success"


def test_a_key_can_revoke_itself(stack):
    _, _, token = person(stack)
    k = new_key(stack, token)
    assert revoke(stack, k["key"], k["id"]).status == 204
    assert_error(me(stack, k["key"]), 401, "invalid_token")


def test_another_users_keys_are_invisible(stack):
    _, _, token_a = person(stack)
    _, _, token_b = person(stack)
    ka = new_key(stack, token_a, "a's key")
    kb = new_key(stack, token_b, "b's key")
    for key_owner, other, other_key, k in ((token_a, token_b, kb["key"], ka),
                                           (token_b, token_a, ka["key"], kb)):
        # Neither the other's token nor the other's key can see or revoke it,
        # and the answer is the one for an id that does not exist.
        for credential in (other, other_key):
            assert k["id"] not in [row["id"] for row in listing(stack, credential).json()["data"]]
            r = revoke(stack, credential, k["id"])
            assert_error(r, 404, "not_found")
            unknown = revoke(stack, credential, 9000000000000000000)
            assert_error(unknown, 404, "not_found")
            assert error_of(r)["message"].replace(str(k["id"]), "N") == \
                error_of(unknown)["message"].replace("9000000000000000000", "N")
        assert me(stack, k["key"]).status == 200
        assert listing(stack, key_owner).json()["data"][0]["revoked_at"] is None


@pytest.mark.parametrize("path_id", ["0", "abc", "-1", "01", "1.0", "99999999999999999999"])
def test_bad_ids_name_nothing(stack, path_id):
    _, _, token = person(stack)
    assert_error(revoke(stack, token, path_id), 404, "not_found")


MALFORMED = [
    "cpk_" + "A" * 42,
    "cpk_" + "A" * 44,
    "cpk_" + "A" * 46,
    "cpk_" + "A" * 42 + "!",
    "cpk_" + "A" * 42 + "=",
    "cpk_" + "A" * 41 + "+/",
    "cpk_" + "A" * 42 + "%",
    "cpk_",
    "cpk_" + "A" * 43,             # the right shape, but no such key
    "cpk_" + "A" * 4000,
]


@pytest.mark.parametrize("credential", MALFORMED, ids=lambda c: "%s..%d" % (c[:6], len(c)))
def test_malformed_keys_are_refused(stack, credential):
    r = me(stack, credential)
    assert_error(r, 401, "invalid_token")


def test_huge_and_binary_keys_never_fail_the_server(stack):
    # 10 KB is past nginx's header buffers: nginx refuses it (400) before
    # the API; straight to the pool, the API refuses it with 401.
    huge = "cpk_" + "A" * 10240
    r = me(stack, huge)
    assert r.status in (400, 401), r
    direct = stack.fcgi(cgi_params("GET", "/api/v1/me", extra={"HTTP_AUTHORIZATION": "Bearer " + huge}))
    assert direct.status == 401, direct
    assert json.loads(direct.body)["error"]["code"] == "invalid_token"
    binary = stack.fcgi(cgi_params("GET", "/api/v1/me", extra={
        "HTTP_AUTHORIZATION": b"Bearer cpk_" + b"\xff" * 41 + b"\xc3\xa9"}))
    assert binary.status == 401, binary


def test_disabled_users_keys_are_refused(stack):
    email, _, token = person(stack)
    k = new_key(stack, token)
    assert me(stack, k["key"]).status == 200
    assert stack.ctl("user", "disable", email).returncode == 0
    try:
        assert_error(me(stack, k["key"]), 401, "invalid_token")
    finally:
        assert stack.ctl("user", "enable", email).returncode == 0
    # Disabling ends sign-ins but not keys: re-enabled, the key works again.
    assert me(stack, k["key"]).status == 200


def test_a_key_acts_with_its_owners_current_role(stack):
    email, _, token = person(stack)
    k = new_key(stack, token)
    assert me(stack, k["key"]).json()["role"] == "user"
    assert_error(stack.get(ADMIN_ROUTE, headers=bearer(k["key"])), 403, "forbidden")
    assert stack.ctl("user", "role", email, "admin").returncode == 0
    try:
        assert me(stack, k["key"]).json()["role"] == "admin"
        assert stack.get(ADMIN_ROUTE, headers=bearer(k["key"])).status == 200
    finally:
        assert stack.ctl("user", "role", email, "user").returncode == 0
    assert me(stack, k["key"]).json()["role"] == "user"
    assert_error(stack.get(ADMIN_ROUTE, headers=bearer(k["key"])), 403, "forbidden")


def test_a_key_cannot_create_keys(stack):
    _, uid, token = person(stack)
    k = new_key(stack, token)
    before = count(stack, "api_keys", "user_id = %d" % uid)
    r = create(stack, k["key"], "minted")
    assert_error(r, 403, "session_required")
    assert count(stack, "api_keys", "user_id = %d" % uid) == before
    ev = audit_rows(stack, "action = 'api_key.create' AND owner_id = %d AND outcome = 'failure'" % uid)
    assert len(ev) == 1 and ("API key %d" % k["id"]) in ev[0]["detail"]


def test_creation_is_audited(stack):
    email, uid, token = person(stack)
    k = new_key(stack, token)
    ev = audit_rows(stack, "action = 'api_key.create' AND target_id = '%d'" % k["id"])
    assert len(ev) == 1
    e = ev[0]
    assert (e["actor_id"], e["actor_label"], e["owner_id"]) == (str(uid), email, str(uid))
    assert e["target_type"] == "api_key" and e["outcome"] == "success"
    assert e["request_id"] and k["key"][12:] not in e["detail"]


@pytest.mark.parametrize("body,code", [
    ({}, "missing_field"),
    ({"name": 5}, "invalid_field"),
    ({"name": None}, "missing_field"),
    ({"name": ["x"]}, "invalid_field"),
    ({"name": ""}, "invalid_field"),
    ({"name": "x" * 101}, "invalid_field"),
    ({"name": "\U0001F3AC" * 101}, "invalid_field"),
    ({"name": "line\nbreak"}, "invalid_field"),
    ({"name": "nul\u0000"}, "invalid_field"),
])
def test_bad_names_are_refused_and_nothing_is_written(stack, body, code):
    _, uid, token = person(stack)
    r = create(stack, token, body=body)
    assert r.status == 400, r
    assert error_of(r)["code"] in (code, "invalid_body", "invalid_json")
    assert count(stack, "api_keys", "user_id = %d" % uid) == 0


def test_longest_name_fits(stack):
    _, _, token = person(stack)
    for name in ("x" * 100, "\U0001F3AC" * 100, "Grüße – 日本"):
        assert new_key(stack, token, name)["name"] == name


def test_at_most_fifty_live_keys(stack):
    _, uid, token = person(stack)
    made = [new_key(stack, token, "k%d" % i) for i in range(50)]
    assert_error(create(stack, token, "one too many"), 409, "too_many_keys")
    assert count(stack, "api_keys", "user_id = %d" % uid) == 50
    assert revoke(stack, token, made[0]["id"]).status == 204
    new_key(stack, token, "room again")
    assert_error(create(stack, token, "full again"), 409, "too_many_keys")


def test_list_pages_with_a_cursor(stack):
    _, _, token = person(stack)
    made = [new_key(stack, token, "p%d" % i)["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        q = "?limit=2" + ("&cursor=%s" % cursor if cursor else "")
        body = listing(stack, token, q).json()
        assert len(body["data"]) <= 2
        seen += [row["id"] for row in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == made
    for q in ("?limit=0", "?limit=201", "?limit=x", "?cursor=abc", "?cursor=-1", "?limit=1&limit=2"):
        assert_error(stack.get(KEYS + q, headers=bearer(token)), 400, "invalid_parameter")


def test_last_use_is_written_at_most_once_a_minute(stack):
    _, _, token = person(stack)
    k = new_key(stack, token)
    where = "id = %d" % k["id"]
    assert me(stack, k["key"]).status == 200
    first = sql(stack, "SELECT last_used_at FROM api_keys WHERE " + where)[0][0]
    assert first != "NULL"
    # Within the minute: not written again.
    sql(stack, "UPDATE api_keys SET last_used_at = NOW(3) - INTERVAL 30 SECOND WHERE " + where)
    recent = sql(stack, "SELECT last_used_at FROM api_keys WHERE " + where)[0][0]
    assert me(stack, k["key"]).status == 200
    assert sql(stack, "SELECT last_used_at FROM api_keys WHERE " + where)[0][0] == recent
    # Older than a minute: refreshed on the next use.
    sql(stack, "UPDATE api_keys SET last_used_at = NOW(3) - INTERVAL 2 MINUTE WHERE " + where)
    assert me(stack, k["key"]).status == 200
    assert sql(stack, "SELECT last_used_at > NOW(3) - INTERVAL 10 SECOND FROM api_keys WHERE "
               + where) == [["1"]]


def test_keys_need_credentials(stack):
    assert_error(stack.get(KEYS), 401, "unauthenticated")
    assert_error(post_json(stack, KEYS, {"name": "x"}), 401, "unauthenticated")
    assert_error(stack.request("DELETE", KEYS + "/1"), 401, "unauthenticated")
