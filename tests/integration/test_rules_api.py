"""Automation rules through the API: create, read, list, change and delete
a rule over sandbox connections; 422 naming the field for each class of
bad value; another user's connection refused; another user's rule is 404
on every method; every change audited; a backfilling rule moves the
source's known videos to new with a fetch job each."""
import uuid

import pytest

from authlib import add_user, assert_error, audit_rows, sql


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


def new_browser(stack, role=None):
    email, password, _ = add_user(stack, role=role)
    return stack.browser().sign_in(email, password)


def connect(stack, browser, platform):
    name = unique("cpr" + platform[:2])
    body = {"login": name} if platform == "instagram" else {"username": name}
    stack.sim(platform, "POST", "/__control/accounts", body)
    out = browser.connect(platform, name)
    assert out.get("result") == "connected", out
    return int(out["connection_id"])


class Owner:
    """A signed-in user with a connection on every platform."""

    def __init__(self, stack, role=None):
        self.b = new_browser(stack, role)
        self.tiktok = connect(stack, self.b, "tiktok")
        self.instagram = connect(stack, self.b, "instagram")
        self.youtube = connect(stack, self.b, "youtube")
        self.x = connect(stack, self.b, "x")

    def api(self, method, path, body=None):
        return self.b.api(method, path, body)

    def rule(self, **extra):
        body = {"name": "cats", "source_connection_id": self.tiktok,
                "destinations": [{"connection_id": self.instagram}]}
        body.update(extra)
        return body


@pytest.fixture(scope="module")
def alice(stack):
    return Owner(stack)


@pytest.fixture(scope="module")
def bob(stack):
    return Owner(stack)


def create(owner, **extra):
    r = owner.api("POST", "/api/v1/rules", owner.rule(**extra))
    assert r.status == 201, r
    return r.json()


def field_error(response, status, code, field):
    """The documented error shape with the member at fault:
    {"error":{"code","message","field","request_id"}}."""
    assert response.status == status, response
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "field", "request_id"}, err
    assert err["request_id"] == response.headers.get("x-request-id"), (err, response.headers)
    assert err["code"] == code and err["field"] == field and err["message"], err
    return err


def test_crud(stack, alice):
    body = alice.rule(
        enabled=False, delay_s=120, backfill=False,
        filters={"min_duration_s": 5, "max_duration_s": 180, "include_words": ["cat"],
                 "exclude_words": ["dog"]},
        destinations=[
            {"connection_id": alice.instagram,
             "settings": {"caption_template": "{description} {hashtags}", "hashtags_add": ["#cats"]}},
            {"connection_id": alice.youtube,
             "settings": {"title_template": "{title}", "privacy": "unlisted"}},
            {"connection_id": alice.x, "settings": {"text_template": "{description} {share_url}"}},
        ])
    r = alice.api("POST", "/api/v1/rules", body)
    assert r.status == 201, r
    rule = r.json()
    rid = rule["id"]
    assert rule["name"] == "cats" and rule["enabled"] is False and rule["delay_s"] == 120
    assert rule["source_connection_id"] == alice.tiktok
    assert rule["filters"] == body["filters"]
    assert [d["platform"] for d in rule["destinations"]] == ["instagram", "youtube", "x"]
    assert rule["destinations"][0]["settings"]["share_to_feed"] is True
    yt = rule["destinations"][1]["settings"]
    assert yt["privacy"] == "unlisted" and yt["category_id"] == "22" and yt["made_for_kids"] is False
    assert rule["created_at"].endswith("Z") and rule["updated_at"].endswith("Z")

    r = alice.api("GET", "/api/v1/rules/%d" % rid)
    assert r.status == 200 and r.json() == rule, r

    r = alice.api("PATCH", "/api/v1/rules/%d" % rid,
                  {"enabled": True, "filters": {"max_duration_s": None},
                   "destinations": [{"connection_id": alice.x}]})
    assert r.status == 200, r
    changed = r.json()
    assert changed["enabled"] is True and changed["name"] == "cats"
    assert changed["filters"]["min_duration_s"] == 5 and changed["filters"]["max_duration_s"] is None
    assert changed["filters"]["include_words"] == ["cat"]
    assert [d["connection_id"] for d in changed["destinations"]] == [alice.x]

    r = alice.api("GET", "/api/v1/rules?limit=200&source_connection_id=%d" % alice.tiktok)
    assert r.status == 200, r
    assert rid in [x["id"] for x in r.json()["data"]]
    r = alice.api("GET", "/api/v1/rules?limit=200&enabled=false")
    assert rid not in [x["id"] for x in r.json()["data"]]

    r = alice.api("DELETE", "/api/v1/rules/%d" % rid)
    assert r.status == 204, r
    assert_error(alice.api("GET", "/api/v1/rules/%d" % rid), 404, "not_found")
    assert_error(alice.api("DELETE", "/api/v1/rules/%d" % rid), 404, "not_found")


def test_list_pages(stack):
    owner = Owner(stack)
    ids = [create(owner, name="r%d" % i)["id"] for i in range(3)]
    r = owner.api("GET", "/api/v1/rules?limit=2")
    page = r.json()
    assert [x["id"] for x in page["data"]] == ids[:2] and page["next_cursor"] == str(ids[1])
    page = owner.api("GET", "/api/v1/rules?limit=2&cursor=%s" % page["next_cursor"]).json()
    assert [x["id"] for x in page["data"]] == ids[2:] and page["next_cursor"] is None
    assert_error(owner.api("GET", "/api/v1/rules?enabled=maybe"), 400, "invalid_parameter")
    assert_error(owner.api("GET", "/api/v1/rules?source_connection_id=x"), 400, "invalid_parameter")


@pytest.mark.parametrize("extra, status, code, field", [
    ({"name": 5}, 400, "invalid_field", "name"),
    ({"name": "x" * 256}, 422, "invalid_field", "name"),
    ({"colour": "red"}, 422, "unknown_field", "colour"),
    ({"delay_s": 86401}, 422, "invalid_field", "delay_s"),
    ({"filters": {"min_duration_s": 60, "max_duration_s": 10}}, 422, "invalid_field",
     "filters.max_duration_s"),
    ({"filters": {"include_words": ["w"] * 51}}, 422, "invalid_field", "filters.include_words"),
    ({"destinations": []}, 422, "invalid_field", "destinations"),
    ({"destinations": [{"connection_id": 0, "settings": {}}]}, 422, "invalid_connection",
     "destinations[0].connection_id"),
])
def test_field_refusals(stack, alice, extra, status, code, field):
    field_error(alice.api("POST", "/api/v1/rules", alice.rule(**extra)), status, code, field)


def test_connection_and_settings_refusals(stack, alice, bob):
    def post(**extra):
        return alice.api("POST", "/api/v1/rules", alice.rule(**extra))
    field_error(post(source_connection_id=bob.tiktok), 422, "invalid_connection", "source_connection_id")
    field_error(post(source_connection_id=alice.instagram), 422, "invalid_connection",
                "source_connection_id")
    field_error(post(destinations=[{"connection_id": alice.instagram}, {"connection_id": bob.x}]),
                422, "invalid_connection", "destinations[1].connection_id")
    field_error(post(destinations=[{"connection_id": alice.tiktok}]), 422, "invalid_connection",
                "destinations[0].connection_id")
    field_error(post(destinations=[{"connection_id": alice.x}, {"connection_id": alice.x}]),
                422, "invalid_field", "destinations[1].connection_id")
    field_error(post(destinations=[{"connection_id": alice.instagram},
                                   {"connection_id": alice.x, "settings": {"text_template": "{nope}"}}]),
                422, "invalid_template", "destinations[1].settings.text_template")
    field_error(post(destinations=[{"connection_id": alice.x,
                                    "settings": {"text_template": "x" * 281 + "{description}"}}]),
                422, "invalid_template", "destinations[0].settings.text_template")
    field_error(post(destinations=[{"connection_id": alice.youtube, "settings": {"share_to_feed": True}}]),
                422, "unknown_field", "destinations[0].settings.share_to_feed")
    field_error(post(destinations=[{"connection_id": alice.youtube, "settings": {"privacy": "friends"}}]),
                422, "invalid_field", "destinations[0].settings.privacy")
    field_error(post(destinations=[{"connection_id": alice.instagram,
                                    "settings": {"hashtags_max": "5"}}]),
                400, "invalid_field", "destinations[0].settings.hashtags_max")
    assert_error(alice.api("POST", "/api/v1/rules", [1]), 400, "invalid_body")


def test_operator_rule_is_their_own(stack, alice):
    # An operator sees every user's rows as an admin does (the suite keeps
    # admin@localhost the only admin).
    admin = Owner(stack, role="operator")
    field_error(admin.api("POST", "/api/v1/rules", alice.rule()), 422, "invalid_connection",
                "source_connection_id")
    rule = create(alice)
    # Operators and admins read every rule but change only their own.
    r = admin.api("GET", "/api/v1/rules/%d" % rule["id"])
    assert r.status == 200 and r.json()["id"] == rule["id"], r
    assert_error(admin.api("PATCH", "/api/v1/rules/%d" % rule["id"], {"enabled": False}), 404, "not_found")


def test_other_users_rule_is_404(stack, alice, bob):
    rule = create(alice)
    path = "/api/v1/rules/%d" % rule["id"]
    assert_error(bob.api("GET", path), 404, "not_found")
    assert_error(bob.api("PATCH", path, {"name": "mine"}), 404, "not_found")
    assert_error(bob.api("DELETE", path), 404, "not_found")
    assert rule["id"] not in [x["id"] for x in bob.api("GET", "/api/v1/rules?limit=200").json()["data"]]
    r = alice.api("GET", path)
    assert r.status == 200 and r.json()["name"] == "cats", r


def test_changes_are_audited(stack, alice):
    rule = create(alice)
    rid = rule["id"]
    assert alice.api("PATCH", "/api/v1/rules/%d" % rid, {"name": "renamed"}).status == 200
    assert alice.api("DELETE", "/api/v1/rules/%d" % rid).status == 204
    rows = audit_rows(stack, "target_type = 'rule' AND target_id = %d" % rid)
    assert [a["action"] for a in rows] == ["rule.create", "rule.update", "rule.delete"], rows
    assert all(a["actor_id"] == str(alice.b.user["id"]) for a in rows), rows
    assert all(a["outcome"] == "success" for a in rows), rows


def test_backfill_moves_known_videos_to_new(stack):
    owner = Owner(stack)
    uid = owner.b.user["id"]
    ids = []
    for i in range(3):
        sql(stack, "INSERT INTO videos (user_id, connection_id, remote_id, state, remote_created_at)"
                   " VALUES (%d, %d, '%s', 'known', NOW(3) - INTERVAL %d DAY)"
                   % (uid, owner.tiktok, unique("bf"), i + 1))
        ids.append(int(sql(stack, "SELECT MAX(id) FROM videos WHERE connection_id = %d"
                                  % owner.tiktok)[0][0]))
    create(owner, backfill=False)
    states = sql(stack, "SELECT state FROM videos WHERE connection_id = %d" % owner.tiktok)
    assert [s[0] for s in states] == ["known"] * 3

    rule = create(owner, backfill=True)
    assert rule["backfill"] is True
    rows = sql(stack, "SELECT id, state FROM videos WHERE connection_id = %d ORDER BY id" % owner.tiktok)
    assert [int(r[0]) for r in rows] == ids
    assert all(r[1] != "known" for r in rows), rows
    jobs = sql(stack, "SELECT COUNT(*) FROM jobs WHERE kind = 'video.fetch' AND unique_key IN (%s)"
                      % ", ".join("'video.fetch:%d'" % i for i in ids))
    assert jobs[0] == ["3"], jobs
