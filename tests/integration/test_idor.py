"""Objects that belong to one user are invisible to another.

OWNED lists, for every route that takes an id of an object a user owns,
how user A creates one; user B then gets 404 (never 403, never the object)
on every method of that route, and A can still use it.  ADMIN_ONLY lists
routes whose ids are reachable only by admins (their role checks are in
test_admin.py).  A route with {id} in fcgi/routes.c that is in neither
table fails the suite, so new areas extend these tables.
"""
import json
import os
import re
import uuid

import pytest

from authlib import add_user, sign_in
from stack import ROOT, stack_sql


def bearer(token):
    return {"Authorization": "Bearer " + token, "Content-Type": "application/json"}


def make_api_key(stack, owner):
    r = stack.request("POST", "/api/v1/me/api-keys", body=json.dumps({"name": "idor"}),
                      headers=bearer(owner.access))
    assert r.status == 201, r
    return r.json()["id"]


def make_job(stack, owner, cancelled=False):
    """A job of the owner's that no worker runs (delayed, on a queue of its
    own); cancelled so that it can be retried."""
    r = stack.ctl("jobs", "enqueue", "noop", "--user", owner.user["email"], "--delay", "1h",
                  "--queue", "idor")
    assert r.returncode == 0, r.stderr
    job = int(r.stdout.strip())
    if cancelled:
        r = stack.ctl("jobs", "cancel", str(job))
        assert r.returncode == 0, r.stderr
    return job


def job_state(stack, owner, job):
    r = stack.request("GET", "/api/v1/jobs/%d" % job, headers=bearer(owner.access))
    return r.json()["state"] if r.status == 200 else None


def make_connection(stack, owner):
    """A TikTok connection of the owner's, through the sandbox's OAuth flow."""
    account = "idor_" + uuid.uuid4().hex[:10]
    stack.sim("tiktok", "POST", "/__control/accounts", {"username": account})
    browser = stack.browser()
    browser.token, browser.user = owner.access, owner.user
    out = browser.connect("tiktok", account)
    assert out.get("result") == "connected", out
    return int(out["connection_id"])


def make_video(stack, owner):
    """A video of the owner's, recorded on one of their connections."""
    cid = make_connection(stack, owner)
    remote = str(uuid.uuid4().int)[:19]
    stack_sql(stack, "INSERT INTO videos (user_id, connection_id, remote_id, state)"
                     " SELECT user_id, id, '%s', 'known' FROM connections WHERE id = %d" % (remote, cid))
    rows = stack_sql(stack, "SELECT id FROM videos WHERE connection_id = %d AND remote_id = '%s'"
                            % (cid, remote))
    return int(rows[0][0])


def make_rule(stack, owner):
    """A rule of the owner's from their TikTok connection to their X account."""
    source = make_connection(stack, owner)
    account = "idor_" + uuid.uuid4().hex[:10]
    stack.sim("x", "POST", "/__control/accounts", {"username": account})
    browser = stack.browser()
    browser.token, browser.user = owner.access, owner.user
    out = browser.connect("x", account)
    assert out.get("result") == "connected", out
    body = {"source_connection_id": source,
            "destinations": [{"connection_id": int(out["connection_id"])}]}
    r = stack.request("POST", "/api/v1/rules", body=json.dumps(body), headers=bearer(owner.access))
    assert r.status == 201, r
    return r.json()["id"]


def rule_unchanged(stack, owner, rid):
    r = stack.request("GET", "/api/v1/rules/%d" % rid, headers=bearer(owner.access))
    return r.status == 200 and r.json()["name"] == ""


def video_there(stack, owner, vid):
    return stack.request("GET", "/api/v1/videos/%d" % vid,
                         headers=bearer(owner.access)).status == 200


def connection_there(stack, owner, cid):
    return stack.request("GET", "/api/v1/connections/%d" % cid,
                         headers=bearer(owner.access)).status == 200


def make_post(stack, owner):
    """A failed publication of the owner's video (no job), so that a retry
    would change it."""
    vid = make_video(stack, owner)
    stack_sql(stack, "INSERT INTO publications (user_id, video_id, connection_id, platform, state,"
                     " settings) SELECT user_id, id, connection_id, 'tiktok', 'failed', '{}'"
                     " FROM videos WHERE id = %d" % vid)
    rows = stack_sql(stack, "SELECT id FROM publications WHERE video_id = %d" % vid)
    return int(rows[0][0])


def post_untouched(stack, owner, pid):
    r = stack.request("GET", "/api/v1/posts/%d" % pid, headers=bearer(owner.access))
    return r.status == 200 and r.json()["state"] == "failed" and r.json()["job_id"] is None


# pattern -> (create(stack, owner_session) -> id, [(method, body)] tried by the other user,
#             probe(stack, owner_session, id) -> True while the owner still has it)
OWNED = {
    "/api/v1/me/api-keys/{id}": (
        make_api_key,
        [("DELETE", None)],
        lambda stack, owner, i: any(k["id"] == i and k.get("revoked_at") is None for k in
                                    stack.request("GET", "/api/v1/me/api-keys?limit=200",
                                                  headers=bearer(owner.access)).json()["data"]),
    ),
    "/api/v1/jobs/{id}": (
        make_job,
        [("GET", None)],
        lambda stack, owner, i: job_state(stack, owner, i) == "scheduled",
    ),
    "/api/v1/jobs/{id}/cancel": (
        make_job,
        [("POST", {})],
        lambda stack, owner, i: job_state(stack, owner, i) == "scheduled",
    ),
    "/api/v1/jobs/{id}/retry": (
        lambda stack, owner: make_job(stack, owner, cancelled=True),
        [("POST", {})],
        lambda stack, owner, i: job_state(stack, owner, i) == "cancelled",
    ),
    "/api/v1/connections/{id}": (
        make_connection,
        [("GET", None), ("PATCH", {"display_name": "not yours"}), ("DELETE", None)],
        connection_there,
    ),
    "/api/v1/connections/{id}/refresh": (
        make_connection,
        [("POST", {})],
        connection_there,
    ),
    "/api/v1/connections/{id}/sync": (
        make_connection,
        [("POST", {})],
        connection_there,
    ),
    "/api/v1/videos/{id}": (
        make_video,
        [("GET", None)],
        video_there,
    ),
    "/api/v1/posts/{id}": (
        make_post,
        [("GET", None)],
        post_untouched,
    ),
    "/api/v1/posts/{id}/retry": (
        make_post,
        [("POST", {})],
        post_untouched,
    ),
    "/api/v1/rules/{id}": (
        make_rule,
        [("GET", None), ("PATCH", {"name": "not yours"}), ("DELETE", None)],
        rule_unchanged,
    ),
}

ADMIN_ONLY = {
    "/api/v1/admin/users/{id}",
    "/api/v1/admin/users/{id}/revoke-sessions",
}


def routes_with_ids():
    with open(os.path.join(ROOT, "fcgi", "routes.c")) as f:
        return set(re.findall(r'"(/[^"]*\{id\}[^"]*)"', f.read()))


def test_every_route_with_an_id_is_covered():
    missing = routes_with_ids() - set(OWNED) - ADMIN_ONLY
    assert not missing, "add these routes to OWNED or ADMIN_ONLY in test_idor.py: %s" % sorted(missing)


@pytest.fixture(scope="module")
def two_users(stack):
    a = sign_in(stack, *add_user(stack)[:2])
    b = sign_in(stack, *add_user(stack)[:2])
    return a, b


@pytest.mark.parametrize("pattern", sorted(OWNED))
def test_another_users_object_is_not_found(stack, two_users, pattern):
    owner, other = two_users
    create, attempts, still_there = OWNED[pattern]
    obj = create(stack, owner)
    path = pattern.replace("{id}", str(obj))
    for method, body in attempts:
        r = stack.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=bearer(other.access))
        assert r.status == 404, (method, path, r)
        assert r.json()["error"]["code"] == "not_found"
        assert still_there(stack, owner, obj), (method, path, "changed the owner's object")
    # The same call by the owner works, so the 404 above is about ownership.
    method, body = attempts[0]
    r = stack.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers=bearer(owner.access))
    assert r.status in (200, 202, 204), r


@pytest.mark.parametrize("pattern", sorted(ADMIN_ONLY))
def test_admin_only_ids_are_forbidden_to_users(stack, two_users, pattern):
    owner, other = two_users
    path = pattern.replace("{id}", str(owner.user["id"]))
    for method in ("GET", "PATCH", "DELETE", "POST"):
        r = stack.request(method, path, body=b"{}" if method in ("PATCH", "POST") else None,
                          headers=bearer(other.access))
        assert r.status in (403, 405), (method, path, r)
