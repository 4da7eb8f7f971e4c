"""The Instagram (Facebook Login + Graph) simulator accepts the real flows and
rejects what Graph rejects."""
import http.client
import json
import os
import sys
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from simfixture import (DEFAULT_APPS, http_request, location_params,  # noqa: E402
                        sim)  # noqa: F401

SIM_PLATFORMS = ("tiktok", "instagram")
APP = DEFAULT_APPS["instagram"]
REDIRECT = APP["redirect_uris"][0]
V = "/v21.0"
SCOPES = "instagram_basic,instagram_content_publish,pages_show_list,pages_read_engagement"
IG_FIELDS = "id,name,instagram_business_account{id,username,name,profile_picture_url}"


def dialog_url(sim, state="fbstate", **over):
    q = {"client_id": APP["app_id"], "redirect_uri": REDIRECT, "state": state,
         "scope": SCOPES, "response_type": "code"}
    q.update(over)
    return sim.url("instagram", V + "/dialog/oauth", q)


def get_code(sim, account="sandbox_user", **over):
    page, r = sim.consent("instagram", dialog_url(sim, **over), account)
    assert page.status == 200, page
    assert r.status == 302, r
    assert r.headers["location"].startswith(REDIRECT + "?")
    return location_params(r)


def graph(sim, method, path, token=None, query=None, form=None, headers=None):
    return sim.request("instagram", method, V + path, token=token, query=query,
                       form=form, headers=headers)


def exchange(sim, code, redirect=REDIRECT, secret=APP["app_secret"]):
    return graph(sim, "GET", "/oauth/access_token", query={
        "client_id": APP["app_id"], "redirect_uri": redirect,
        "client_secret": secret, "code": code})


def long_lived(sim, token):
    return graph(sim, "GET", "/oauth/access_token", query={
        "grant_type": "fb_exchange_token", "client_id": APP["app_id"],
        "client_secret": APP["app_secret"], "fb_exchange_token": token})


def connect(sim, account="sandbox_user"):
    short = exchange(sim, get_code(sim, account)["code"]).json()["access_token"]
    r = long_lived(sim, short)
    assert r.status == 200, r
    return r.json()["access_token"]


def ig_account(sim, token):
    r = graph(sim, "GET", "/me/accounts", token, {"fields": IG_FIELDS})
    assert r.status == 200, r
    return next(p["instagram_business_account"] for p in r.json()["data"]
                if "instagram_business_account" in p)


def err(r):
    e = r.json()["error"]
    assert r.status == 400 and e["fbtrace_id"] and e["type"] and e["message"], r
    return e["code"], e.get("error_subcode")


def tiktok_video(sim):
    st = sim.control("tiktok", "GET", "state")
    return next(v for v in st["videos"].values() if v["account"] == "sandbox_creator")


def share_url(sim, v):
    return "%s/@%s/video/%s" % (sim.urls["tiktok"], v["account"], v["id"])


def container(sim, token, ig_id, **fields):
    f = {"media_type": "REELS", "caption": "hello #reels"}
    f.update(fields)
    return graph(sim, "POST", "/%s/media" % ig_id, token, form=f)


def status_of(sim, token, cid):
    r = graph(sim, "GET", "/" + cid, token, {"fields": "status_code,status"})
    assert r.status == 200, r
    return r.json()["status_code"]


def settled(sim, token, cid):
    """The status once the sim's own fetch is done (it runs in the background)."""
    for _ in range(200):
        s = status_of(sim, token, cid)
        if s != "IN_PROGRESS":
            return s
        time.sleep(0.02)
    return s


def test_facebook_login_long_lived_and_instagram_account(sim):
    p = get_code(sim, state="xyz")
    assert p["state"] == "xyz"
    r = exchange(sim, p["code"])
    assert r.status == 200, r
    short = r.json()
    assert short["token_type"] == "bearer" and short["expires_in"] == 3600
    r = long_lived(sim, short["access_token"])
    assert r.status == 200
    long = r.json()
    assert long["expires_in"] == 5184000 and long["access_token"] != short["access_token"]
    # renewal: the same exchange with the current long-lived token
    renewed = long_lived(sim, long["access_token"]).json()
    assert renewed["expires_in"] == 5184000

    tok = renewed["access_token"]
    r = graph(sim, "GET", "/me", tok, {"fields": "id,name"})
    assert r.status == 200 and r.json()["name"] == "Sandbox User"
    assert json.loads(r.headers["x-app-usage"]).keys() == {"call_count", "total_cputime",
                                                           "total_time"}
    r = graph(sim, "GET", "/me/accounts", tok, {"fields": IG_FIELDS})
    body = r.json()
    assert body["paging"] is not None
    page = body["data"][0]
    assert page["name"] == "Sandbox Page"
    ig = page["instagram_business_account"]
    assert ig["username"] == "sandbox_reels" and ig["id"] and ig["profile_picture_url"]
    assert http_request(ig["profile_picture_url"]).body[:4] == b"\x89PNG"
    r = graph(sim, "GET", "/" + ig["id"], tok, {"fields": "id,username,media_count"})
    assert r.status == 200 and r.json()["username"] == "sandbox_reels"
    assert "x-business-use-case-usage" in r.headers

    nb = connect(sim, "no_business")
    r = graph(sim, "GET", "/me/accounts", nb, {"fields": IG_FIELDS})
    assert r.status == 200
    assert all("instagram_business_account" not in p for p in r.json()["data"])


def test_dialog_refusals_and_denial(sim):
    for over in ({"redirect_uri": "http://127.0.0.1:9/evil"}, {"client_id": "999"},
                 {"scope": "instagram_basic,root_access"}):
        r = http_request(dialog_url(sim, **over))
        assert r.status == 400 and "location" not in r.headers, over
    page, r = sim.consent("instagram", dialog_url(sim, state="d1"), "sandbox_user", "deny")
    p = location_params(r)
    assert p == {"error": "access_denied", "error_reason": "user_denied",
                 "error_description": "Permissions error", "state": "d1"}


def test_code_exchange_refusals(sim):
    code = get_code(sim)["code"]
    assert err(exchange(sim, code, redirect="http://127.0.0.1:9/x")) == (100, 36008)
    code = get_code(sim)["code"]
    assert err(exchange(sim, code, secret="nope"))[0] == 1
    r = exchange(sim, code)
    assert r.status == 200
    tok = r.json()["access_token"]
    assert err(exchange(sim, code)) == (100, 36009)      # reused
    assert err(graph(sim, "GET", "/me", tok))[0] == 190   # and what it issued is gone
    assert err(exchange(sim, "garbage"))[0] == 100


def test_token_transport_and_token_errors(sim):
    tok = connect(sim)
    assert graph(sim, "GET", "/me", tok).status == 200
    assert graph(sim, "GET", "/me", query={"access_token": tok}).status == 200
    assert err(graph(sim, "GET", "/me"))[0] == 2500
    assert err(graph(sim, "GET", "/me", "EAAgarbage")) == (190, None)

    acct = sim.control("instagram", "POST", "accounts", {"login": "tok_fb"})
    assert acct["instagram"]["id"]
    t1 = connect(sim, "tok_fb")
    sim.control("instagram", "POST", "tokens/expire", {"token": t1})
    assert err(graph(sim, "GET", "/me", t1)) == (190, 463)
    assert err(long_lived(sim, t1)) == (190, 463)        # no renewal once expired
    t2 = connect(sim, "tok_fb")
    sim.control("instagram", "POST", "tokens/revoke", {"account": "tok_fb"})
    assert err(graph(sim, "GET", "/me", t2)) == (190, 458)

    # a token without the IG permissions
    page, r = sim.consent("instagram", dialog_url(sim, scope="public_profile"), "sandbox_user")
    short = exchange(sim, location_params(r)["code"]).json()["access_token"]
    assert err(graph(sim, "GET", "/me/accounts", short, {"fields": IG_FIELDS}))[0] == 10


def test_video_url_container_publish_once(sim):
    tok = connect(sim)
    ig = ig_account(sim, tok)
    v = tiktok_video(sim)
    r = container(sim, tok, ig["id"], video_url=share_url(sim, v), share_to_feed="true")
    assert r.status == 200, r
    cid = r.json()["id"]
    assert status_of(sim, tok, cid) == "IN_PROGRESS"
    r = graph(sim, "POST", "/%s/media_publish" % ig["id"], tok, form={"creation_id": cid})
    assert err(r) == (9007, 2207027)
    sim.control("instagram", "POST", "clock", {"advance": 10})
    assert settled(sim, tok, cid) == "FINISHED"
    before = graph(sim, "GET", "/%s/content_publishing_limit" % ig["id"], tok,
                   {"fields": "quota_usage,config"}).json()["data"][0]
    assert before["config"] == {"quota_total": 50, "quota_duration": 86400}
    r = graph(sim, "POST", "/%s/media_publish" % ig["id"], tok, form={"creation_id": cid})
    assert r.status == 200, r
    mid = r.json()["id"]
    assert status_of(sim, tok, cid) == "PUBLISHED"
    r = graph(sim, "POST", "/%s/media_publish" % ig["id"], tok, form={"creation_id": cid})
    assert err(r)[0] == 9007
    after = graph(sim, "GET", "/%s/content_publishing_limit" % ig["id"], tok,
                  {"fields": "quota_usage,config"}).json()["data"][0]
    assert after["quota_usage"] == before["quota_usage"] + 1
    pub = [p for p in sim.control("instagram", "GET", "published")["published"]
           if p["container_id"] == cid]
    assert len(pub) == 1
    assert pub[0]["remote_id"] == mid and pub[0]["account"] == "sandbox_reels"
    assert pub[0]["media_sha256"] == v["sha256"] and pub[0]["bytes"] == v["bytes"]
    assert pub[0]["caption"] == "hello #reels"
    media = graph(sim, "GET", "/%s/media" % ig["id"], tok, {"fields": "id,caption,permalink"})
    assert media.json()["data"][0]["id"] == mid


def test_bad_video_urls_end_in_error(sim):
    tok = connect(sim)
    ig = ig_account(sim, tok)
    v = tiktok_video(sim)
    bad = [share_url(sim, v).replace(v["id"], "404"),                       # 404
           "%s/avatar/sandbox_creator.jpeg" % sim.urls["tiktok"],           # not an MP4
           "http://192.0.2.7/video.mp4"]                                    # not loopback
    cids = [container(sim, tok, ig["id"], video_url=u).json()["id"] for u in bad]
    sim.control("instagram", "POST", "clock", {"advance": 10})
    for cid in cids:
        assert settled(sim, tok, cid) == "ERROR"
        r = graph(sim, "POST", "/%s/media_publish" % ig["id"], tok,
                  form={"creation_id": cid})
        assert err(r) == (9007, 2207027)
    assert err(container(sim, tok, ig["id"]))[0] == 100                      # no source
    assert err(container(sim, tok, ig["id"], media_type="VIDEO",
                         video_url=share_url(sim, v)))[0] == 100


def test_resumable_upload_and_expiry(sim):
    tok = connect(sim)
    ig = ig_account(sim, tok)
    r = container(sim, tok, ig["id"], upload_type="resumable")
    assert r.status == 200, r
    cid, uri = r.json()["id"], r.json()["uri"]
    assert uri == "%s/ig-api-upload/v21.0/%s" % (sim.urls["instagram"], cid)
    data = http_request(share_url(sim, tiktok_video(sim))).body
    r = http_request(uri, "POST", data, {"Authorization": "Bearer " + tok, "offset": "0",
                                         "file_size": str(len(data))})
    assert r.status == 401                                   # rupload wants OAuth <token>
    half = len(data) // 2
    r = http_request(uri, "POST", data[:half], {"Authorization": "OAuth " + tok,
                                                "offset": "0", "file_size": str(len(data))})
    assert r.status == 200 and r.json()["success"] is False
    r = http_request(uri, "POST", data[half:], {"Authorization": "OAuth " + tok,
                                                "offset": str(half),
                                                "file_size": str(len(data))})
    assert r.status == 200 and r.json() == {"success": True, "message": "Upload successful."}
    sim.control("instagram", "POST", "clock", {"advance": 10})
    assert status_of(sim, tok, cid) == "FINISHED"

    r2 = container(sim, tok, ig["id"], upload_type="resumable").json()
    r = http_request(r2["uri"], "POST", b"not a video at all",
                     {"Authorization": "OAuth " + tok, "offset": "0", "file_size": "18"})
    assert r.status == 400
    assert status_of(sim, tok, r2["id"]) == "ERROR"

    sim.control("instagram", "POST", "containers/expire", {"id": cid})
    assert status_of(sim, tok, cid) == "EXPIRED"
    r = graph(sim, "POST", "/%s/media_publish" % ig["id"], tok, form={"creation_id": cid})
    assert err(r) == (9007, 2207027)


def test_publishing_limit_and_foreign_objects(sim):
    acct = sim.control("instagram", "POST", "accounts", {"login": "limited"})
    tok = connect(sim, "limited")
    ig_id = acct["instagram"]["id"]
    v = tiktok_video(sim)
    sim.control("instagram", "POST", "config", {"publish_limit": 1, "processing_seconds": 0})
    try:
        ids = [container(sim, tok, ig_id, video_url=share_url(sim, v)).json()["id"]
               for _ in range(2)]
        for cid in ids:
            assert settled(sim, tok, cid) == "FINISHED"
        ok = graph(sim, "POST", "/%s/media_publish" % ig_id, tok, form={"creation_id": ids[0]})
        assert ok.status == 200
        r = graph(sim, "POST", "/%s/media_publish" % ig_id, tok, form={"creation_id": ids[1]})
        assert err(r) == (9, 2207042)
        q = graph(sim, "GET", "/%s/content_publishing_limit" % ig_id, tok,
                  {"fields": "quota_usage,config"}).json()["data"][0]
        assert q == {"quota_usage": 1, "config": {"quota_total": 1, "quota_duration": 86400}}
    finally:
        sim.control("instagram", "POST", "config", {"publish_limit": 50,
                                                    "processing_seconds": 3})
    other = connect(sim)               # sandbox_user may not touch limited's account
    assert err(graph(sim, "GET", "/" + ig_id, other, {"fields": "id"})) == (100, 33)
    assert err(container(sim, other, ig_id, video_url=share_url(sim, v))) == (100, 33)


def test_app_usage_limit_and_faults(sim):
    tok = connect(sim)
    sim.control("instagram", "POST", "config", {"app_call_limit": 1000000})
    try:
        usage = json.loads(graph(sim, "GET", "/me", tok).headers["x-app-usage"])
        assert usage["call_count"] <= 1
    finally:
        sim.control("instagram", "POST", "config", {"app_call_limit": 4800})
    sim.control("instagram", "POST", "faults", {"match": V + "/me", "action": "status",
                                                "status": 500})
    r = graph(sim, "GET", "/me", tok)
    assert r.status == 500 and r.json()["error"]["code"] == 2
    sim.control("instagram", "POST", "faults", {"match": V + "/me", "action": "drop"})
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        graph(sim, "GET", "/me", tok)
    assert graph(sim, "GET", "/me", tok).status == 200
    log = sim.control("instagram", "GET", "requests")["requests"]
    assert all("?" not in e["path"] and tok not in e["path"] for e in log)
    assert tok not in sim.log()


def test_state_survives_restart(sim):
    tok = connect(sim)
    ig = ig_account(sim, tok)
    sim.restart()
    assert graph(sim, "GET", "/me", tok).status == 200
    assert ig_account(sim, tok)["id"] == ig["id"]
    assert long_lived(sim, tok).status == 200
    assert urllib.parse.urlsplit(sim.urls["instagram"]).hostname == "127.0.0.1"
