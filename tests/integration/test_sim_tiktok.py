"""The TikTok simulator accepts the real flows and rejects what TikTok rejects."""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import secrets
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from simfixture import (DEFAULT_APPS, http_request, location_params,  # noqa: E402
                        sim)  # noqa: F401

SIM_PLATFORMS = ("tiktok",)
APP = DEFAULT_APPS["tiktok"]
REDIRECT = APP["redirect_uris"][0]
FIELDS = "id,create_time,cover_image_url,share_url,video_description,duration,height,width,title"


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(sim, challenge, state="st-1", **over):
    q = {"client_key": APP["client_key"], "scope": "user.info.basic,video.list",
         "response_type": "code", "redirect_uri": REDIRECT, "state": state,
         "code_challenge": challenge, "code_challenge_method": "S256"}
    q.update(over)
    return sim.url("tiktok", "/v2/auth/authorize/",
                   {k: v for k, v in q.items() if v is not None})


def get_code(sim, account="sandbox_creator", **over):
    verifier, challenge = pkce_pair()
    page, r = sim.consent("tiktok", authorize_url(sim, challenge, **over), account)
    assert page.status == 200, page
    assert r.status == 302, r
    p = location_params(r)
    assert r.headers["location"].startswith(REDIRECT + "?")
    return p["code"], verifier, p


def exchange(sim, code, verifier, redirect=REDIRECT, secret=APP["client_secret"]):
    return sim.post("tiktok", "/v2/oauth/token/", form={
        "client_key": APP["client_key"], "client_secret": secret, "code": code,
        "grant_type": "authorization_code", "redirect_uri": redirect,
        "code_verifier": verifier})


def refresh(sim, token):
    return sim.post("tiktok", "/v2/oauth/token/", form={
        "client_key": APP["client_key"], "client_secret": APP["client_secret"],
        "grant_type": "refresh_token", "refresh_token": token})


def connect(sim, account="sandbox_creator", **over):
    code, verifier, _ = get_code(sim, account, **over)
    r = exchange(sim, code, verifier)
    assert r.status == 200, r
    return r.json()


def user_info(sim, token, fields="open_id,union_id,avatar_url,display_name"):
    return sim.get("tiktok", "/v2/user/info/", query={"fields": fields}, token=token)


def video_list(sim, token, body=None, fields=FIELDS):
    return sim.post("tiktok", "/v2/video/list/", query={"fields": fields},
                    json_body=body if body is not None else {"max_count": 20}, token=token)


def test_full_oauth_flow_and_display_api(sim):
    code, verifier, p = get_code(sim, state="abc")
    assert p["state"] == "abc" and p["scopes"] == "user.info.basic,video.list"
    assert "*" in code and "!" in code          # must be percent-decoded by clients
    r = exchange(sim, code, verifier)
    assert r.status == 200, r
    t = r.json()
    assert set(t) == {"open_id", "scope", "access_token", "expires_in", "refresh_token",
                      "refresh_expires_in", "token_type"}
    assert t["token_type"] == "Bearer" and t["expires_in"] == 7200
    assert t["refresh_expires_in"] == 15552000

    r = user_info(sim, t["access_token"])
    assert r.status == 200, r
    body = r.json()
    assert body["error"]["code"] == "ok"
    assert set(body["data"]["user"]) == {"open_id", "union_id", "avatar_url", "display_name"}
    assert body["data"]["user"]["open_id"] == t["open_id"]
    assert body["data"]["user"]["display_name"] == "Sandbox Creator"

    r = video_list(sim, t["access_token"])
    assert r.status == 200, r
    data = r.json()["data"]
    vids = data["videos"]
    assert len(vids) >= 3 and data["has_more"] is False
    times = [v["create_time"] for v in vids]
    assert times == sorted(times, reverse=True)
    v = vids[0]
    assert set(v) == set(FIELDS.split(","))
    assert v["width"] == 720 and v["height"] in (720, 1280)

    share = v["share_url"]
    assert "/@sandbox_creator/video/%s" % v["id"] in share
    r = http_request(share)
    assert r.status == 200 and r.headers["content-type"] == "video/mp4"
    assert r.body[4:8] == b"ftyp"
    size = len(r.body)
    h = http_request(share, "HEAD")
    assert h.status == 200 and int(h.headers["content-length"]) == size and h.body == b""
    rg = http_request(share, headers={"Range": "bytes=4-7"})
    assert rg.status == 206 and rg.body == b"ftyp"
    assert rg.headers["content-range"] == "bytes 4-7/%d" % size
    assert http_request(share, headers={"Range": "bytes=%d-" % size}).status == 416
    other = share.replace("@sandbox_creator", "@sandbox_second")
    assert http_request(other).status == 404

    cover = http_request(v["cover_image_url"])
    assert cover.status == 200 and cover.body[:2] == b"\xff\xd8"
    forged = v["cover_image_url"].replace("x-signature=", "x-signature=0")
    assert http_request(forged).status == 403


def test_authorize_refuses_bad_requests(sim):
    _, challenge = pkce_pair()
    r = http_request(authorize_url(sim, challenge, redirect_uri="http://127.0.0.1:9/evil"))
    assert r.status == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    r = http_request(authorize_url(sim, challenge, redirect_uri=REDIRECT + "/"))
    assert r.status == 400 and "location" not in r.headers
    r = http_request(authorize_url(sim, challenge, client_key="nope"))
    assert r.status == 400 and "location" not in r.headers

    r = http_request(authorize_url(sim, None, code_challenge_method=None))
    assert r.status == 302 and location_params(r)["error"] == "invalid_request"
    r = http_request(authorize_url(sim, challenge, code_challenge_method="plain"))
    assert location_params(r)["error"] == "invalid_request"
    r = http_request(authorize_url(sim, challenge, scope="user.info.basic,everything"))
    assert location_params(r)["error"] == "invalid_scope"
    r = http_request(authorize_url(sim, challenge, response_type="token"))
    assert location_params(r)["error"] == "unsupported_response_type"

    page, r = sim.consent("tiktok", authorize_url(sim, challenge, state="s9"),
                          "sandbox_creator", "deny")
    p = location_params(r)
    assert r.status == 302 and p["error"] == "access_denied" and p["state"] == "s9"
    assert "code" not in p


@pytest.mark.parametrize("case", ["wrong_verifier", "no_verifier", "wrong_redirect",
                                  "bad_secret", "unknown_code"])
def test_token_exchange_rejections(sim, case):
    code, verifier, _ = get_code(sim)
    status, error = 400, "invalid_grant"
    if case == "wrong_verifier":
        r = exchange(sim, code, pkce_pair()[0])
    elif case == "no_verifier":
        r = exchange(sim, code, "")
    elif case == "wrong_redirect":
        r = exchange(sim, code, verifier, redirect="http://127.0.0.1:9/other")
    elif case == "bad_secret":
        r = exchange(sim, code, verifier, secret="wrong")
        status, error = 401, "invalid_client"
    else:
        r = exchange(sim, code + "x", verifier)
    assert r.status == status, r
    body = r.json()
    assert body["error"] == error and body["error_description"] and body["log_id"]


def test_code_is_single_use_and_replay_revokes(sim):
    code, verifier, _ = get_code(sim)
    r = exchange(sim, code, verifier)
    assert r.status == 200
    t = r.json()
    assert user_info(sim, t["access_token"]).status == 200
    again = exchange(sim, code, verifier)
    assert again.status == 400 and again.json()["error"] == "invalid_grant"
    r = user_info(sim, t["access_token"])
    assert r.status == 401 and r.json()["error"]["code"] == "access_token_invalid"
    assert refresh(sim, t["refresh_token"]).json()["error"] == "invalid_grant"


def test_expired_code_is_refused(sim):
    code, verifier, _ = get_code(sim)
    sim.control("tiktok", "POST", "clock", {"advance": 601})
    r = exchange(sim, code, verifier)
    assert r.status == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_refresh_dies(sim):
    t = connect(sim)
    r = refresh(sim, t["refresh_token"])
    assert r.status == 200, r
    t2 = r.json()
    assert t2["refresh_token"] != t["refresh_token"]
    assert t2["access_token"] != t["access_token"]
    assert t2["open_id"] == t["open_id"]
    old = refresh(sim, t["refresh_token"])
    assert old.status == 400 and old.json()["error"] == "invalid_grant"
    assert refresh(sim, t2["refresh_token"]).status == 200
    assert user_info(sim, t2["access_token"]).status == 200
    # access token used as a refresh token
    assert refresh(sim, t2["access_token"]).json()["error"] == "invalid_grant"
    bad = sim.post("tiktok", "/v2/oauth/token/", form={
        "client_key": APP["client_key"], "client_secret": APP["client_secret"],
        "grant_type": "password"})
    assert bad.json()["error"] == "unsupported_grant_type"


def test_expired_and_revoked_tokens(sim):
    acct = sim.control("tiktok", "POST", "accounts", {"username": "tok_user", "videos": 1})
    assert acct["sessionid"]
    t = connect(sim, "tok_user")
    sim.control("tiktok", "POST", "tokens/expire", {"token": t["access_token"]})
    r = user_info(sim, t["access_token"])
    assert r.status == 401 and r.json()["error"]["code"] == "access_token_invalid"
    t2 = refresh(sim, t["refresh_token"]).json()
    assert user_info(sim, t2["access_token"]).status == 200
    sim.control("tiktok", "POST", "tokens/expire", {"account": "tok_user", "which": "refresh"})
    assert refresh(sim, t2["refresh_token"]).json()["error"] == "invalid_grant"

    t3 = connect(sim, "tok_user")
    n = sim.control("tiktok", "POST", "tokens/revoke", {"account": "tok_user"})
    assert n["revoked"] >= 2
    assert user_info(sim, t3["access_token"]).status == 401
    assert refresh(sim, t3["refresh_token"]).status == 400

    t4 = connect(sim, "tok_user")
    r = sim.post("tiktok", "/v2/oauth/revoke/", form={
        "client_key": APP["client_key"], "client_secret": APP["client_secret"],
        "token": t4["access_token"]})
    assert r.status == 200
    assert user_info(sim, t4["access_token"]).status == 401
    assert refresh(sim, t4["refresh_token"]).status == 400
    assert user_info(sim, "act.nonsense").status == 401
    r = sim.get("tiktok", "/v2/user/info/", query={"fields": "open_id"})
    assert r.status == 401


def test_scopes_fields_and_params(sim):
    t = connect(sim, scope="user.info.basic")
    r = video_list(sim, t["access_token"])
    assert r.status == 401 and r.json()["error"]["code"] == "scope_not_authorized"
    r = user_info(sim, t["access_token"], "open_id,username")
    assert r.status == 401 and r.json()["error"]["code"] == "scope_not_authorized"
    r = user_info(sim, t["access_token"], "open_id,shoe_size")
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_params"
    r = user_info(sim, t["access_token"], "")
    assert r.status == 400

    t = connect(sim, scope="user.info.basic,user.info.profile,video.list")
    r = user_info(sim, t["access_token"], "open_id,username")
    assert r.status == 200 and r.json()["data"]["user"]["username"] == "sandbox_creator"
    for body in ({"max_count": 21}, {"max_count": 0}, {"cursor": "x"}):
        r = video_list(sim, t["access_token"], body)
        assert r.status == 400 and r.json()["error"]["code"] == "invalid_params", body
    assert video_list(sim, t["access_token"], fields="id,secret_url").status == 400


def test_paging_newest_first_with_short_pages(sim):
    sim.control("tiktok", "POST", "accounts", {"username": "pager", "videos": 5})
    t = connect(sim, "pager")
    new = sim.control("tiktok", "POST", "videos", {"account": "pager",
                                                   "description": "fresh one"})
    assert new["share_url"].endswith("/@pager/video/" + new["id"])
    sim.control("tiktok", "POST", "config", {"page_limit": 2})
    try:
        seen, cursor, pages = [], None, 0
        while True:
            body = {"max_count": 20}
            if cursor is not None:
                body["cursor"] = cursor
            d = video_list(sim, t["access_token"], body).json()["data"]
            pages += 1
            assert len(d["videos"]) <= 2
            seen += d["videos"]
            cursor = d["cursor"]
            if not d["has_more"]:
                break
        assert pages == 3 and len(seen) == 6
        assert seen[0]["id"] == new["id"] and seen[0]["video_description"] == "fresh one"
        times = [v["create_time"] for v in seen]
        assert times == sorted(times, reverse=True) and len(set(times)) == 6
        assert len({v["id"] for v in seen}) == 6
    finally:
        sim.control("tiktok", "POST", "config", {"page_limit": 0})
    d = video_list(sim, t["access_token"], {"max_count": 4}).json()["data"]
    assert len(d["videos"]) == 4 and d["has_more"] is True
    r = sim.request("tiktok", "POST", "/__control/config", json_body={"nonsense": 1})
    assert r.status == 400


def test_rate_limit_per_endpoint_and_token(sim):
    t = connect(sim)
    sim.control("tiktok", "POST", "config", {"rate_limit": 3})
    try:
        for _ in range(3):
            assert user_info(sim, t["access_token"]).status == 200
        r = user_info(sim, t["access_token"])
        assert r.status == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(r.headers["retry-after"]) >= 1
        assert video_list(sim, t["access_token"]).status == 200      # other endpoint
        t2 = connect(sim)
        assert user_info(sim, t2["access_token"]).status == 200       # other token
        sim.control("tiktok", "POST", "clock", {"advance": 61})
        assert user_info(sim, t["access_token"]).status == 200
    finally:
        sim.control("tiktok", "POST", "config", {"rate_limit": 600})


def test_web_cookie_check(sim):
    acct = sim.control("tiktok", "POST", "accounts", {"username": "cookie_user"})
    r = sim.get("tiktok", "/passport/web/account/info/",
                headers={"Cookie": "tt_csrf_token=x; sessionid=%s" % acct["sessionid"]})
    body = r.json()
    assert r.status == 200 and body["message"] == "success"
    assert body["data"]["username"] == "cookie_user" and body["data"]["user_id_str"]
    sim.control("tiktok", "POST", "cookies/expire", {"account": "cookie_user"})
    r = sim.get("tiktok", "/passport/web/account/info/",
                headers={"Cookie": "sessionid=%s" % acct["sessionid"]})
    assert r.status == 200 and r.json() == {"data": {
        "description": "Session expired, please sign in again.", "error_code": 8},
        "message": "error"}
    r = sim.get("tiktok", "/passport/web/account/info/")
    assert r.json()["message"] == "error"


def test_signed_webhook(sim):
    got = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            got.append((self.headers["TikTok-Signature"], self.rfile.read(n)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
        out = sim.control("tiktok", "POST", "webhook", {
            "event": "authorization.removed", "account": "sandbox_creator",
            "content": {"reason": 1}, "url": url})
        assert out["status"] == 200
        sim.control("tiktok", "POST", "webhook", {
            "event": "authorization.removed", "account": "sandbox_creator",
            "url": url, "bad_signature": True, "timestamp": 1700000000})
    finally:
        srv.shutdown()
        srv.server_close()
    (sig, body), (bad_sig, bad_body) = got
    parts = dict(p.split("=", 1) for p in sig.split(","))
    want = hmac.new(APP["client_secret"].encode(), parts["t"].encode() + b"." + body,
                    hashlib.sha256).hexdigest()
    assert parts["s"] == want
    payload = json.loads(body)
    assert payload["client_key"] == APP["client_key"]
    assert payload["event"] == "authorization.removed"
    assert json.loads(payload["content"]) == {"reason": 1}
    bparts = dict(p.split("=", 1) for p in bad_sig.split(","))
    assert bparts["t"] == "1700000000"
    assert bparts["s"] != hmac.new(APP["client_secret"].encode(),
                                   b"1700000000." + bad_body, hashlib.sha256).hexdigest()
    assert sim.request("tiktok", "POST", "/__control/webhook", json_body={
        "account": "sandbox_creator", "url": "http://192.0.2.1/x"}).status == 400


def test_faults(sim):
    t = connect(sim)
    sim.control("tiktok", "POST", "faults", {"match": "/v2/user/info/", "action": "status",
                                             "status": 500, "count": 2})
    for _ in range(2):
        r = user_info(sim, t["access_token"])
        assert r.status == 500 and r.json()["error"]["code"] == "internal_error"
    assert user_info(sim, t["access_token"]).status == 200

    sim.control("tiktok", "POST", "faults", {"match": "/v2/oauth/token/", "method": "POST",
                                             "action": "status", "status": 429,
                                             "retry_after": 30})
    r = refresh(sim, t["refresh_token"])
    assert r.status == 429 and r.headers["retry-after"] == "30"
    assert r.json()["error"] == "rate_limit_exceeded"
    assert refresh(sim, t["refresh_token"]).status == 200    # the fault did not rotate

    sim.control("tiktok", "POST", "faults", {"match": "/v2/video/", "action": "drop"})
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        video_list(sim, "x")

    sim.control("tiktok", "POST", "faults", {"match": "/v2/video/", "action": "timeout",
                                             "seconds": 5})
    start = time.time()
    with pytest.raises((socket.timeout, TimeoutError)):
        sim.post("tiktok", "/v2/video/list/", json_body={}, timeout=0.5)
    assert time.time() - start < 3

    sim.control("tiktok", "POST", "faults", {"match": "/v2/", "action": "status",
                                             "status": 503, "count": 5})
    sim.control("tiktok", "DELETE", "faults")
    assert user_info(sim, t["access_token"]).status == 200


def test_request_log_has_paths_without_queries(sim):
    nxt = sim.control("tiktok", "GET", "requests")["next"]
    user_info(sim, "act.zzz")
    log = sim.control("tiktok", "GET", "requests?since=%d" % nxt)
    mine = [(e["method"], e["path"], e["status"]) for e in log["requests"]
            if e["path"] == "/v2/user/info/"]
    assert mine == [("GET", "/v2/user/info/", 401)]
    assert log["next"] > nxt
    assert "act.zzz" not in sim.log()


def test_state_survives_restart(sim):
    t = connect(sim)
    state = sim.control("tiktok", "GET", "state")
    assert any(x["value"] == t["access_token"] for x in state["tokens"])
    share = video_list(sim, t["access_token"]).json()["data"]["videos"][0]["share_url"]
    sim.restart()
    assert user_info(sim, t["access_token"]).status == 200
    r = refresh(sim, t["refresh_token"])
    assert r.status == 200
    assert refresh(sim, t["refresh_token"]).status == 400
    assert http_request(share).status == 200
    again = sim.control("tiktok", "GET", "state")
    assert again["accounts"]["sandbox_creator"]["sessionid"] == \
        state["accounts"]["sandbox_creator"]["sessionid"]
