"""The X simulator accepts what X accepts and refuses what X refuses
(tests/sim/xsim.py).  OAuth 1.0a requests are signed here with
python3-oauthlib's client, independently of the simulator."""
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.parse

from oauthlib.oauth1 import Client

from simfixture import ROOT, SimProcess, http_request, location_params, sim  # noqa: F401

sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
import xsim  # noqa: E402

SIM_PLATFORMS = ("x",)
SCOPES = "tweet.read tweet.write users.read media.write offline.access"


def app(sim):
    return sim.apps["x"]


def signed(sim, method, path, token=None, secret=None, query=None, form=None,
           json_body=None, callback=None, verifier=None, timestamp=None, nonce=None,
           consumer_secret=None, tamper=None):
    """Send an OAuth 1.0a request signed by oauthlib; tamper(url, headers, body)
    may change it after signing."""
    a = app(sim)
    client = Client(a["consumer_key"], client_secret=consumer_secret or a["consumer_secret"],
                    resource_owner_key=token, resource_owner_secret=secret,
                    callback_uri=callback, verifier=verifier,
                    timestamp=timestamp, nonce=nonce)
    url = sim.url("x", path, query)
    headers, body = {}, None
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode(form)
        url, headers, body = client.sign(url, method, body, headers)
    else:
        url, headers, _ = client.sign(url, method)
        if json_body is not None:
            body = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
    if tamper:
        url, headers, body = tamper(url, headers, body)
    return http_request(url, method, body, headers)


def v1_code(resp):
    return resp.json()["errors"][0]["code"]


def new_account(sim):
    name = "x" + secrets.token_hex(5)
    return sim.control("x", "POST", "accounts", {"username": name})


def oauth1_connect(sim, account):
    """The three-legged flow; returns (token, secret, access answer)."""
    cb = app(sim)["callback_urls"][0]
    r = signed(sim, "POST", "/oauth/request_token", callback=cb)
    assert r.status == 200, r
    rt = dict(urllib.parse.parse_qsl(r.text))
    assert rt["oauth_callback_confirmed"] == "true"
    page, r = sim.consent("x", sim.url("x", "/oauth/authorize",
                                       {"oauth_token": rt["oauth_token"]}), account)
    assert page.status == 200 and r.status == 302, (page, r)
    assert r.headers["location"].startswith(cb + "?")
    back = location_params(r)
    assert back["oauth_token"] == rt["oauth_token"]
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret=rt["oauth_token_secret"], verifier=back["oauth_verifier"])
    assert r.status == 200, r
    at = dict(urllib.parse.parse_qsl(r.text))
    return at["oauth_token"], at["oauth_token_secret"], at


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def oauth2_code(sim, account, scopes=SCOPES, state="xs-1"):
    verifier, challenge = pkce_pair()
    url = sim.url("x", "/i/oauth2/authorize", {
        "response_type": "code", "client_id": app(sim)["client_id"],
        "redirect_uri": app(sim)["callback_urls"][0], "scope": scopes, "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    page, r = sim.consent("x", url, account)
    assert page.status == 200 and r.status == 302, (page, r)
    p = location_params(r)
    assert p["state"] == state
    return p["code"], verifier


def basic(sim):
    a = app(sim)
    raw = "%s:%s" % (a["client_id"], a["client_secret"])
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def oauth2_token(sim, form, auth=True):
    return sim.post("x", "/2/oauth2/token", form=form, headers=basic(sim) if auth else None)


def oauth2_connect(sim, account):
    code, verifier = oauth2_code(sim, account)
    r = oauth2_token(sim, {"grant_type": "authorization_code", "code": code,
                           "redirect_uri": app(sim)["callback_urls"][0],
                           "code_verifier": verifier})
    assert r.status == 200, r
    return r.json()


def fake_mp4(size):
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return head + os.urandom(size - len(head))


def multipart(fields, boundary="simXboundary1234"):
    out = b""
    for name, value in fields:
        disp = 'form-data; name="%s"' % name
        ctype = b""
        if isinstance(value, bytes):
            disp += '; filename="blob"'
            ctype = b"Content-Type: application/octet-stream\r\n"
        else:
            value = str(value).encode()
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + \
            b"\r\n" + ctype + b"\r\n" + value + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary


def append(sim, token, secret, media_id, index, data):
    body, ctype = multipart([("segment_index", index), ("media", data)])
    a = app(sim)
    client = Client(a["consumer_key"], client_secret=a["consumer_secret"],
                    resource_owner_key=token, resource_owner_secret=secret)
    url, headers, _ = client.sign(sim.url("x", "/2/media/upload/%s/append" % media_id), "POST")
    headers["Content-Type"] = ctype
    return http_request(url, "POST", body, headers)


# --------------------------------------------------------------------------

def test_signature_check_matches_published_vectors():
    # X's documented example and RFC 5849 1.2 (platforms.md test vectors).
    c = Client("xvz1evFS4wEEPTGEFPHBog",
               client_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
               resource_owner_key="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
               resource_owner_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
               nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", timestamp="1318622958")
    body = "status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21"
    url, h, b = c.sign("https://api.x.com/1.1/statuses/update.json?include_entities=true",
                       "POST", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert 'oauth_signature="Ls93hJiZbQ3akF3HF3x1Bz8%2FzU4%3D"' in h["Authorization"]
    args = ("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE")
    assert xsim.signature_valid("POST", url, h["Authorization"], b, *args)
    assert not xsim.signature_valid("POST", url, h["Authorization"], b.replace("Hello", "Hi"),
                                    *args)
    assert not xsim.signature_valid("POST", url.replace("api.x.com", "api.twitter.com"),
                                    h["Authorization"], b, *args)
    rfc = ('OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", '
           'oauth_token="nnch734d00sl2jdk", oauth_signature_method="HMAC-SHA1", '
           'oauth_timestamp="137131202", oauth_nonce="chapoH", '
           'oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D"')
    u = "http://photos.example.net/photos?file=vacation.jpg&size=original"
    assert xsim.signature_valid("GET", u, rfc, "", "kd94hf93k423kf44", "pfkkdhi9sl3r4s00")
    assert not xsim.signature_valid("GET", u, rfc, "", "kd94hf93k423kf44", "other")


def test_weighted_length():
    assert xsim.weighted_length("a" * 280) == 280
    assert xsim.weighted_length("日本") == 4
    assert xsim.weighted_length("see https://example.com/" + "p" * 80) == 4 + 23
    assert xsim.weighted_length("👍🏽") == 2


def test_oauth1_three_legged_flow_and_users_me(sim):
    token, secret, at = oauth1_connect(sim, "sandbox_x")
    assert at["screen_name"] == "sandbox_x" and at["user_id"].isdigit()
    assert token.startswith(at["user_id"] + "-")
    r = signed(sim, "GET", "/2/users/me", token, secret,
               query={"user.fields": "profile_image_url"})
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["username"] == "sandbox_x" and data["id"] == at["user_id"]
    assert data["profile_image_url"].startswith("http://127.0.0.1:")
    assert int(r.headers["x-rate-limit-limit"]) == 75
    assert int(r.headers["x-rate-limit-remaining"]) < 75
    assert int(r.headers["x-rate-limit-reset"]) > time.time()
    # Connecting again returns the same access token (X keeps one per user+app).
    assert oauth1_connect(sim, "sandbox_x")[0] == token


def test_oauth1_request_token_refusals(sim):
    r = signed(sim, "POST", "/oauth/request_token", callback="http://127.0.0.1:9/evil")
    assert r.status == 403 and v1_code(r) == 415
    r = signed(sim, "POST", "/oauth/request_token", callback=app(sim)["callback_urls"][0],
               consumer_secret="wrong")
    assert r.status == 401 and v1_code(r) == 32
    r = sim.post("x", "/oauth/request_token")
    assert r.status == 400 and v1_code(r) == 215
    assert "x-rate-limit-remaining" in r.headers


def test_oauth1_denied_and_verifier_checks(sim):
    cb = app(sim)["callback_urls"][0]
    rt = dict(urllib.parse.parse_qsl(
        signed(sim, "POST", "/oauth/request_token", callback=cb).text))
    _, r = sim.consent("x", sim.url("x", "/oauth/authorize",
                                    {"oauth_token": rt["oauth_token"]}), "sandbox_x", "deny")
    assert r.status == 302 and location_params(r) == {"denied": rt["oauth_token"]}
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret=rt["oauth_token_secret"], verifier="x")
    assert r.status == 401 and v1_code(r) == 89

    rt = dict(urllib.parse.parse_qsl(
        signed(sim, "POST", "/oauth/request_token", callback=cb).text))
    _, r = sim.consent("x", sim.url("x", "/oauth/authorize",
                                    {"oauth_token": rt["oauth_token"]}), "sandbox_x")
    good = location_params(r)["oauth_verifier"]
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret=rt["oauth_token_secret"], verifier=good + "x")
    assert r.status == 401
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret="wrong-secret", verifier=good)
    assert r.status == 401 and v1_code(r) == 32
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret=rt["oauth_token_secret"], verifier=good)
    assert r.status == 200
    # A request token is good for one exchange; its page is gone too.
    r = signed(sim, "POST", "/oauth/access_token", token=rt["oauth_token"],
               secret=rt["oauth_token_secret"], verifier=good)
    assert r.status == 401 and v1_code(r) == 89
    page = http_request(sim.url("x", "/oauth/authorize", {"oauth_token": rt["oauth_token"]}))
    assert page.status == 400 and "request_id" not in page.text


def test_oauth1_signed_request_refusals(sim):
    acct = new_account(sim)
    token, secret, _ = oauth1_connect(sim, acct["username"])
    q = {"user.fields": "profile_image_url"}

    def tamper_query(url, headers, body):
        return url.replace("profile_image_url", "created_at"), headers, body

    def tamper_signature(url, headers, body):
        auth = headers["Authorization"]
        i = auth.index('oauth_signature="') + len('oauth_signature="')
        flipped = "B" if auth[i] != "B" else "C"
        headers["Authorization"] = auth[:i] + flipped + auth[i + 1:]
        return url, headers, body

    for tamper in (tamper_query, tamper_signature):
        r = signed(sim, "GET", "/2/users/me", token, secret, query=q, tamper=tamper)
        assert r.status == 401, (tamper.__name__, r)
        assert r.json() == {"errors": [{"code": 32, "message": "Could not authenticate you."}]}
        assert "x-rate-limit-limit" in r.headers

    r = signed(sim, "GET", "/2/users/me", token, secret, query=q,
               timestamp=str(int(time.time()) - 1000))
    assert r.status == 401 and v1_code(r) == 135
    r = signed(sim, "GET", "/2/users/me", token, secret, query=q,
               timestamp=str(int(time.time()) + 400))
    assert r.status == 401 and v1_code(r) == 135
    assert signed(sim, "GET", "/2/users/me", token, secret, query=q,
                  timestamp=str(int(time.time()) - 200)).status == 200

    nonce = secrets.token_hex(16)
    ts = str(int(time.time()))
    assert signed(sim, "GET", "/2/users/me", token, secret, query=q, nonce=nonce,
                  timestamp=ts).status == 200
    r = signed(sim, "GET", "/2/users/me", token, secret, query=q, nonce=nonce, timestamp=ts)
    assert r.status == 401 and v1_code(r) == 32

    r = signed(sim, "GET", "/2/users/me", token, "wrong-secret", query=q)
    assert r.status == 401 and v1_code(r) == 32
    r = signed(sim, "GET", "/2/users/me", "123-unknown", secret, query=q)
    assert r.status == 401 and v1_code(r) == 89
    sim.control("x", "POST", "tokens/revoke", {"account": acct["username"]})
    r = signed(sim, "GET", "/2/users/me", token, secret, query=q)
    assert r.status == 401 and v1_code(r) == 89
    r = sim.get("x", "/2/users/me")
    assert r.status == 401 and r.json()["title"] == "Unauthorized"


def test_oauth2_pkce_flow_and_rotation(sim):
    a = app(sim)
    tok = oauth2_connect(sim, "sandbox_x")
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 7200
    assert tok["scope"] == SCOPES and tok["refresh_token"]
    r = sim.get("x", "/2/users/me", token=tok["access_token"])
    assert r.status == 200 and r.json()["data"]["username"] == "sandbox_x"

    r = oauth2_token(sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status == 200, r
    new = r.json()
    assert new["refresh_token"] != tok["refresh_token"] and new["access_token"]
    # The rotated refresh token is dead.
    r = oauth2_token(sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r.status == 400 and r.json() == {
        "error": "invalid_request",
        "error_description": "Value passed for the token was invalid."}
    r = oauth2_token(sim, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert r.status == 200
    # Confidential client without Basic auth.
    r = oauth2_token(sim, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"],
                           "client_id": a["client_id"]}, auth=False)
    assert r.status == 401 and r.json()["error"] == "unauthorized_client"

    # Expired access token.
    sim.control("x", "POST", "tokens/expire", {"token": new["access_token"]})
    assert sim.get("x", "/2/users/me", token=new["access_token"]).status == 401


def test_oauth2_code_refusals(sim):
    a = app(sim)
    code, verifier = oauth2_code(sim, "sandbox_x")
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": a["callback_urls"][0], "code_verifier": pkce_pair()[0]}
    r = oauth2_token(sim, form)
    assert r.status == 400 and r.json()["error"] == "invalid_request"
    form["code_verifier"] = verifier
    assert oauth2_token(sim, form).status == 400   # that code was spent

    code, verifier = oauth2_code(sim, "sandbox_x")
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": a["callback_urls"][0], "code_verifier": verifier}
    first = oauth2_token(sim, form)
    assert first.status == 200
    again = oauth2_token(sim, form)
    assert again.status == 400 and again.json()["error"] == "invalid_request"
    assert sim.get("x", "/2/users/me", token=first.json()["access_token"]).status == 401

    # Authorize refusals: an HTML page, never a redirect.
    _, challenge = pkce_pair()
    base = {"response_type": "code", "client_id": a["client_id"],
            "redirect_uri": a["callback_urls"][0], "scope": SCOPES, "state": "s",
            "code_challenge": challenge, "code_challenge_method": "S256"}
    for over in ({"redirect_uri": "http://127.0.0.1:9/other"}, {"client_id": "nope"},
                 {"code_challenge": None}, {"scope": "tweet.read bogus.scope"},
                 {"state": None}):
        q = {k: v for k, v in dict(base, **over).items() if v is not None}
        r = http_request(sim.url("x", "/i/oauth2/authorize", q))
        assert r.status == 400 and "location" not in r.headers, over

    verifier, challenge = pkce_pair()
    _, r = sim.consent("x", sim.url("x", "/i/oauth2/authorize",
                                    dict(base, code_challenge=challenge, state="dn")),
                       "sandbox_x", "deny")
    p = location_params(r)
    assert p["error"] == "access_denied" and p["state"] == "dn" and "code" not in p


def test_oauth2_public_client_sends_client_id():
    apps = json.loads(json.dumps(SimProcess().apps))
    apps["x"]["client_secret"] = ""
    s = SimProcess(("x",), apps=apps).start()
    try:
        code, verifier = oauth2_code(s, "sandbox_x")
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": apps["x"]["callback_urls"][0], "code_verifier": verifier}
        r = s.post("x", "/2/oauth2/token", form=form)
        assert r.status == 400, r                 # no client_id
        code, verifier = oauth2_code(s, "sandbox_x")
        form.update(code=code, code_verifier=verifier, client_id=apps["x"]["client_id"])
        r = s.post("x", "/2/oauth2/token", form=form)
        assert r.status == 200 and r.json()["refresh_token"], r
    finally:
        s.cleanup()


def test_media_upload_and_tweet_with_video(sim):
    acct = new_account(sim)
    token, secret, at = oauth1_connect(sim, acct["username"])
    seg = 1024 * 1024
    data = fake_mp4(2 * seg + 4321)
    r = signed(sim, "POST", "/2/media/upload/initialize", token, secret, json_body={
        "media_type": "video/mp4", "total_bytes": len(data), "media_category": "tweet_video"})
    assert r.status == 200, r
    media = r.json()["data"]
    mid = media["id"]
    assert media["media_key"] == "7_" + mid and media["expires_after_secs"] > 0
    assert int(r.headers["x-rate-limit-limit"]) == 1875

    r = append(sim, token, secret, mid, 1000, b"x")
    assert r.status == 400
    r = append(sim, token, secret, mid, 0, os.urandom(8 * 1024 * 1024 + 1))
    assert r.status == 400
    assert append(sim, token, secret, mid, 0, data[:seg]).status == 200
    assert append(sim, token, secret, mid, 1, data[seg:2 * seg]).status == 200
    # finalize with a segment missing: size mismatch
    r = signed(sim, "POST", "/2/media/upload/%s/finalize" % mid, token, secret)
    assert r.status == 400
    assert append(sim, token, secret, mid, 2, data[2 * seg:]).status == 200

    # Not finalized yet: cannot be attached.
    r = signed(sim, "POST", "/2/tweets", token, secret,
               json_body={"text": "too early", "media": {"media_ids": [mid]}})
    assert r.status == 400 and "media IDs are invalid" in r.text

    r = signed(sim, "POST", "/2/media/upload/%s/finalize" % mid, token, secret)
    assert r.status == 200, r
    info = r.json()["data"]["processing_info"]
    assert info["state"] == "pending" and info["check_after_secs"] >= 1
    r = signed(sim, "POST", "/2/tweets", token, secret,
               json_body={"text": "still processing", "media": {"media_ids": [mid]}})
    assert r.status == 400
    r = signed(sim, "GET", "/2/media/upload", token, secret,
               query={"command": "STATUS", "media_id": mid})
    assert r.status == 200 and r.json()["data"]["processing_info"]["state"] in (
        "pending", "in_progress")
    sim.control("x", "POST", "clock", {"advance": 10})
    r = signed(sim, "GET", "/2/media/upload", token, secret,
               query={"command": "STATUS", "media_id": mid})
    assert r.json()["data"]["processing_info"]["state"] == "succeeded"

    r = signed(sim, "POST", "/2/tweets", token, secret,
               json_body={"text": "a video", "media": {"media_ids": [mid]}})
    assert r.status == 201, r
    tweet = r.json()["data"]
    assert tweet["text"] == "a video" and tweet["edit_history_tweet_ids"] == [tweet["id"]]
    pub = [p for p in sim.control("x", "GET", "published")["published"]
           if p["remote_id"] == tweet["id"]]
    assert pub and pub[0]["account"] == acct["username"]
    assert pub[0]["media"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert pub[0]["media"][0]["bytes"] == len(data)

    # Another user cannot use this media id.
    other = new_account(sim)
    t2, s2, _ = oauth1_connect(sim, other["username"])
    r = signed(sim, "POST", "/2/tweets", t2, s2,
               json_body={"text": "stolen", "media": {"media_ids": [mid]}})
    assert r.status == 400

    # A non-video fails processing.
    r = signed(sim, "POST", "/2/media/upload/initialize", token, secret, json_body={
        "media_type": "video/mp4", "total_bytes": 100, "media_category": "tweet_video"})
    bad = r.json()["data"]["id"]
    assert append(sim, token, secret, bad, 0, b"\0" * 100).status == 200
    signed(sim, "POST", "/2/media/upload/%s/finalize" % bad, token, secret)
    sim.control("x", "POST", "clock", {"advance": 10})
    r = signed(sim, "GET", "/2/media/upload", token, secret,
               query={"command": "STATUS", "media_id": bad})
    assert r.json()["data"]["processing_info"]["state"] == "failed"


def test_tweet_text_rules_duplicates_and_timeline(sim):
    acct = new_account(sim)
    tok = oauth2_connect(sim, acct["username"])["access_token"]

    def post(text):
        return sim.post("x", "/2/tweets", json_body={"text": text}, token=tok)

    assert post("a" * 281).status == 400
    assert post("é" * 280).status == 201
    url = "https://example.com/" + "x" * 200
    assert post("b" * 256 + " " + url).status == 201          # 256 + 1 + 23
    assert post("c" * 257 + " " + url).status == 400
    r = post("hello world")
    assert r.status == 201
    first = r.json()["data"]["id"]
    r = post("hello world")
    assert r.status == 403
    assert r.json()["detail"] == "You are not allowed to create a Tweet with duplicate content."
    ids = [first] + [post("post %d" % i).json()["data"]["id"] for i in range(5)]

    r = sim.get("x", "/2/users/%s/tweets" % acct["id"], token=tok,
                query={"max_results": "5", "tweet.fields": "created_at"})
    assert r.status == 200, r
    body = r.json()
    got = [t["id"] for t in body["data"]]
    assert got == sorted(got, key=int, reverse=True) and got[0] == ids[-1]
    assert body["data"][0]["text"] == "post 4" and body["data"][0]["created_at"]
    assert body["meta"]["result_count"] == 5 and body["meta"]["next_token"]
    r = sim.get("x", "/2/users/%s/tweets" % acct["id"], token=tok,
                query={"max_results": "5", "pagination_token": body["meta"]["next_token"]})
    older = [t["id"] for t in r.json()["data"]]
    assert first in older and not set(older) & set(got)
    r = sim.get("x", "/2/users/%s/tweets" % acct["id"], token=tok,
                query={"since_id": ids[-2], "max_results": "5"})
    assert [t["id"] for t in r.json()["data"]] == [ids[-1]]
    assert sim.get("x", "/2/users/%s/tweets" % acct["id"], token=tok,
                   query={"max_results": "3"}).status == 400


def test_rate_limits_answer_429_with_headers(sim):
    acct = new_account(sim)
    tok = oauth2_connect(sim, acct["username"])["access_token"]
    sim.control("x", "POST", "config", {"tweet_user_limit": 3})
    try:
        remaining = []
        for i in range(3):
            r = sim.post("x", "/2/tweets", json_body={"text": "limited %d" % i}, token=tok)
            assert r.status == 201
            assert r.headers["x-rate-limit-limit"] == "3"
            assert r.headers["x-app-limit-24hour-limit"] == "10000"
            remaining.append(int(r.headers["x-rate-limit-remaining"]))
        assert remaining == [2, 1, 0]
        r = sim.post("x", "/2/tweets", json_body={"text": "one too many"}, token=tok)
        assert r.status == 429 and r.json()["title"] == "Too Many Requests"
        assert r.headers["x-rate-limit-remaining"] == "0"
        reset = int(r.headers["x-rate-limit-reset"])
        assert time.time() < reset <= sim.control("x", "GET", "state")["now"] + 901
        assert not [p for p in sim.control("x", "GET", "published")["published"]
                    if p["text"] == "one too many"]
        sim.control("x", "POST", "clock", {"advance": 901})
        tok = oauth2_connect(sim, acct["username"])["access_token"]
        assert sim.post("x", "/2/tweets", json_body={"text": "after the window"},
                        token=tok).status == 201
    finally:
        sim.control("x", "POST", "config", {"tweet_user_limit": 100})

    other = new_account(sim)
    tok = oauth2_connect(sim, other["username"])["access_token"]
    sim.control("x", "POST", "config", {"tweet_app_limit": 1, "media_limit": 1})
    try:
        r = sim.post("x", "/2/tweets", json_body={"text": "app limit 1"}, token=tok)
        r = sim.post("x", "/2/tweets", json_body={"text": "app limit 2"}, token=tok)
        assert r.status == 429 and r.headers["x-app-limit-24hour-remaining"] == "0"
        init = {"media_type": "image/png", "total_bytes": 10, "media_category": "tweet_image"}
        sim.post("x", "/2/media/upload/initialize", json_body=init, token=tok)
        r = sim.post("x", "/2/media/upload/initialize", json_body=init, token=tok)
        assert r.status == 429 and r.headers["x-rate-limit-remaining"] == "0"
    finally:
        sim.control("x", "POST", "config", {"tweet_app_limit": 10000, "media_limit": 1875})
