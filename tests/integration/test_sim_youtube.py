"""The YouTube + Google OAuth simulator accepts what Google accepts and
refuses what Google refuses (tests/sim/youtube.py)."""
import base64
import hashlib
import http.client
import os
import secrets
import urllib.parse

from simfixture import http_request, location_params, sim  # noqa: F401

SIM_PLATFORMS = ("youtube",)
SCOPES = ("https://www.googleapis.com/auth/youtube.upload "
          "https://www.googleapis.com/auth/youtube.readonly")
GRANULE = 256 * 1024


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(sim, challenge, state="st-1", prompt="consent", **over):
    app = sim.apps["youtube"]
    q = {"client_id": app["client_id"], "redirect_uri": app["redirect_uris"][0],
         "response_type": "code", "scope": SCOPES, "access_type": "offline",
         "prompt": prompt, "include_granted_scopes": "true", "state": state,
         "code_challenge": challenge, "code_challenge_method": "S256"}
    q.update(over)
    q = {k: v for k, v in q.items() if v is not None}
    return sim.url("youtube", "/o/oauth2/v2/auth", q)


def get_code(sim, account, prompt="consent", state="st-1"):
    verifier, challenge = pkce_pair()
    page, r = sim.consent("youtube", authorize_url(sim, challenge, state, prompt), account)
    assert page.status == 200 and r.status == 302, (page, r)
    p = location_params(r)
    assert p["state"] == state and p["code"], p
    return p["code"], verifier


def exchange(sim, code, verifier, secret=None, redirect_uri=None):
    app = sim.apps["youtube"]
    return sim.post("youtube", "/token", form={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": redirect_uri or app["redirect_uris"][0],
        "client_id": app["client_id"],
        "client_secret": secret or app["client_secret"], "code_verifier": verifier})


def refresh(sim, token):
    app = sim.apps["youtube"]
    return sim.post("youtube", "/token", form={
        "grant_type": "refresh_token", "refresh_token": token,
        "client_id": app["client_id"], "client_secret": app["client_secret"]})


def new_account(sim, channel=True):
    name = "yt_" + secrets.token_hex(4)
    acct = sim.control("youtube", "POST", "accounts", {"username": name, "channel": channel,
                                                       "channel_title": "Chan " + name})
    return name, acct


def connect(sim, account):
    code, verifier = get_code(sim, account)
    r = exchange(sim, code, verifier)
    assert r.status == 200, r
    return r.json()


def channels(sim, token):
    return sim.get("youtube", "/youtube/v3/channels",
                   query={"part": "snippet", "mine": "true"}, token=token)


def google_reason(resp):
    body = resp.json()["error"]
    assert body["code"] == resp.status and body["message"] and body["status"]
    return body["errors"][0]["reason"], body["errors"][0].get("domain")


def fake_mp4(size):
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return head + os.urandom(size - len(head))


def start_upload(sim, token, size, title="Clip", **meta):
    body = {"snippet": {"title": title, "description": "desc #Shorts",
                        "tags": ["one", "two words"], "categoryId": "22"},
            "status": {"privacyStatus": "unlisted"}}
    body["snippet"].update(meta)
    return sim.request("youtube", "POST", "/upload/youtube/v3/videos",
                       query={"uploadType": "resumable", "part": "snippet,status"},
                       json_body=body, token=token,
                       headers={"X-Upload-Content-Length": str(size),
                                "X-Upload-Content-Type": "video/mp4"})


def put(url, data, first=None, total=None, status_query=False):
    if status_query:
        hdr = {"Content-Range": "bytes */%d" % total, "Content-Length": "0"}
        return http_request(url, "PUT", b"", hdr)
    hdr = {"Content-Range": "bytes %d-%d/%d" % (first, first + len(data) - 1, total)}
    return http_request(url, "PUT", data, hdr)


# --------------------------------------------------------------------------

def test_consent_exchange_and_channel(sim):
    code, verifier = get_code(sim, "sandbox")
    r = exchange(sim, code, verifier)
    assert r.status == 200, r
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3599
    assert tok["refresh_token"] and tok["scope"] == SCOPES
    c = channels(sim, tok["access_token"])
    assert c.status == 200, c
    item = c.json()["items"][0]
    assert item["snippet"]["title"] == "Sandbox Shorts"
    assert item["snippet"]["customUrl"] == "@sandboxshorts"
    assert item["id"].startswith("UC") and item["snippet"]["thumbnails"]["default"]["url"]
    assert http_request(item["snippet"]["thumbnails"]["default"]["url"]).status == 200


def test_authorize_refuses_bad_requests_without_redirect(sim):
    _, challenge = pkce_pair()
    cases = [
        ({"client_id": "other.apps.googleusercontent.com"}, 401),
        ({"redirect_uri": "http://127.0.0.1:9/oauth/youtube/callback/x"}, 400),
        ({"redirect_uri": "http://127.0.0.1:9/oauth/youtube/callback?a=1"}, 400),
        ({"response_type": "token"}, 400),
        ({"scope": None}, 400),
        ({"scope": "https://www.googleapis.com/auth/nope"}, 400),
        ({"code_challenge_method": "S512"}, 400),
        ({"access_type": "forever"}, 400),
    ]
    for over, status in cases:
        r = http_request(authorize_url(sim, challenge, **over))
        assert r.status == status, (over, r)
        assert "location" not in r.headers and "request_id" not in r.text, over


def test_denied_consent_redirects_access_denied(sim):
    _, challenge = pkce_pair()
    _, r = sim.consent("youtube", authorize_url(sim, challenge, "st-deny"), "sandbox", "deny")
    assert r.status == 302
    p = location_params(r)
    assert p["error"] == "access_denied" and p["state"] == "st-deny" and "code" not in p


def test_code_exchange_refusals(sim):
    app = sim.apps["youtube"]
    # Wrong PKCE verifier, then the right one: the code died with the first try.
    code, verifier = get_code(sim, "sandbox")
    r = exchange(sim, code, pkce_pair()[0])
    assert r.status == 400 and r.json()["error"] == "invalid_grant", r
    assert exchange(sim, code, verifier).json()["error"] == "invalid_grant"

    # Missing verifier, wrong redirect_uri, bad client secret, unknown client.
    code, verifier = get_code(sim, "sandbox")
    r = sim.post("youtube", "/token", form={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": app["redirect_uris"][0], "client_id": app["client_id"],
        "client_secret": app["client_secret"]})
    assert r.status == 400 and r.json()["error"] == "invalid_grant"
    code, verifier = get_code(sim, "sandbox")
    r = exchange(sim, code, verifier, redirect_uri=app["redirect_uris"][0] + "x")
    assert r.status == 400 and r.json()["error"] == "redirect_uri_mismatch"
    code, verifier = get_code(sim, "sandbox")
    r = exchange(sim, code, verifier, secret="wrong")
    assert r.status == 401 and r.json()["error"] == "invalid_client"
    r = sim.post("youtube", "/token", form={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": app["redirect_uris"][0], "client_id": "nobody",
        "client_secret": "x", "code_verifier": verifier})
    assert r.status == 401 and r.json()["error"] == "invalid_client"

    # A reused code is refused and what it issued is revoked.
    code, verifier = get_code(sim, "sandbox")
    first = exchange(sim, code, verifier)
    assert first.status == 200
    again = exchange(sim, code, verifier)
    assert again.status == 400 and again.json()["error"] == "invalid_grant"
    assert channels(sim, first.json()["access_token"]).status == 401
    r = refresh(sim, first.json()["refresh_token"])
    assert r.status == 400 and r.json()["error_description"] == \
        "Token has been expired or revoked."


def test_refresh_token_only_on_first_consent_or_prompt_consent(sim):
    name, _ = new_account(sim)
    first = connect(sim, name)
    assert first["refresh_token"]
    # Second consent without prompt=consent: no refresh token.
    code, verifier = get_code(sim, name, prompt=None)
    second = exchange(sim, code, verifier).json()
    assert "refresh_token" not in second and second["access_token"]
    # With prompt=consent: a new one.
    code, verifier = get_code(sim, name, prompt="consent")
    assert exchange(sim, code, verifier).json().get("refresh_token")
    # access_type=online never gets one.
    verifier, challenge = pkce_pair()
    _, r = sim.consent("youtube", authorize_url(sim, challenge, access_type="online"), name)
    online = exchange(sim, location_params(r)["code"], verifier).json()
    assert "refresh_token" not in online

    # The refresh grant answers without a refresh token; the old one stays good.
    r = refresh(sim, first["refresh_token"])
    assert r.status == 200, r
    body = r.json()
    assert "refresh_token" not in body and body["expires_in"] == 3599
    assert channels(sim, body["access_token"]).status == 200
    assert refresh(sim, first["refresh_token"]).status == 200
    # An access token is not a refresh token.
    assert refresh(sim, body["access_token"]).json()["error"] == "invalid_grant"


def test_revoke_and_expiry_give_invalid_grant(sim):
    name, _ = new_account(sim)
    tok = connect(sim, name)
    r = sim.post("youtube", "/revoke", query={"token": tok["refresh_token"]},
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, r
    r = refresh(sim, tok["refresh_token"])
    assert r.status == 400
    assert r.json() == {"error": "invalid_grant",
                        "error_description": "Token has been expired or revoked."}
    assert channels(sim, tok["access_token"]).status == 401
    assert sim.post("youtube", "/revoke", form={"token": tok["refresh_token"]}).status == 400
    # After a revoke the next consent is a first consent again.
    code, verifier = get_code(sim, name, prompt=None)
    tok = exchange(sim, code, verifier).json()
    assert tok["refresh_token"]

    # Control: expire the access token -> 401 authError; revoke the grant.
    sim.control("youtube", "POST", "tokens/expire", {"token": tok["access_token"]})
    c = channels(sim, tok["access_token"])
    assert c.status == 401 and google_reason(c)[0] == "authError"
    assert "invalid_token" in c.headers["www-authenticate"]
    assert refresh(sim, tok["refresh_token"]).status == 200
    sim.control("youtube", "POST", "tokens/revoke", {"account": name})
    assert refresh(sim, tok["refresh_token"]).json()["error"] == "invalid_grant"


def test_api_auth_errors_and_channelless_account(sim):
    r = sim.get("youtube", "/youtube/v3/channels", query={"part": "snippet", "mine": "true"})
    assert r.status == 401 and google_reason(r)[0] == "required"
    r = channels(sim, "ya29.not-a-token")
    assert r.status == 401 and google_reason(r)[0] == "authError"
    tok = connect(sim, "no_channel")
    r = channels(sim, tok["access_token"])
    assert r.status == 200 and "items" not in r.json()
    assert r.json()["pageInfo"]["totalResults"] == 0
    r = start_upload(sim, tok["access_token"], 1000)
    assert r.status == 401 and google_reason(r)[0] == "youtubeSignupRequired"
    sandbox = connect(sim, "sandbox")["access_token"]
    r = sim.get("youtube", "/youtube/v3/channels", query={"mine": "true"}, token=sandbox)
    assert r.status == 400 and google_reason(r)[0] == "required"
    r = start_upload(sim, sandbox, 1000, title="<bad>")
    assert r.status == 400 and google_reason(r)[0] == "invalidTitle"


def test_resumable_upload_chunks_resume_and_record(sim):
    name, acct = new_account(sim)
    token = connect(sim, name)["access_token"]
    data = fake_mp4(3 * GRANULE + 12345)
    total = len(data)
    r = start_upload(sim, token, total, title="Resumed upload")
    assert r.status == 200, r
    url = r.headers["location"]
    assert "upload_id=" in url

    # Not a multiple of 256 KiB and not the last chunk: refused, nothing stored.
    r = put(url, data[:100000], 0, total)
    assert r.status == 400 and google_reason(r)[0] == "badRequest"
    assert "262144" in r.json()["error"]["message"]
    r = put(url, None, total=total, status_query=True)
    assert r.status == 308 and "range" not in r.headers

    r = put(url, data[:GRANULE], 0, total)
    assert r.status == 308 and r.headers["range"] == "bytes=0-%d" % (GRANULE - 1)
    # A chunk that does not start where the server is: refused.
    r = put(url, data[2 * GRANULE:3 * GRANULE], 2 * GRANULE, total)
    assert r.status == 400

    # The connection drops in the middle of a 2-granule chunk: the server
    # keeps whole granules only; the status query says where to resume.
    sim.control("youtube", "POST", "config", {"upload_drop_after": GRANULE + 1000})
    try:
        r = put(url, data[GRANULE:3 * GRANULE], GRANULE, total)
        dropped = r.status == 0
    except (http.client.HTTPException, OSError):
        dropped = True
    assert dropped
    r = put(url, None, total=total, status_query=True)
    assert r.status == 308 and r.headers["range"] == "bytes=0-%d" % (2 * GRANULE - 1), r
    first = int(r.headers["range"].split("-")[1]) + 1
    r = put(url, data[first:], first, total)
    assert r.status in (200, 201), r
    video = r.json()
    assert video["kind"] == "youtube#video" and video["id"]
    assert video["snippet"]["title"] == "Resumed upload"
    assert video["snippet"]["channelId"] == acct["channel"]["id"]
    assert video["status"]["privacyStatus"] == "unlisted"

    # The status query of a finished upload returns the resource.
    r = put(url, None, total=total, status_query=True)
    assert r.status == 200 and r.json()["id"] == video["id"]

    pub = [p for p in sim.control("youtube", "GET", "published")["published"]
           if p["remote_id"] == video["id"]]
    assert len(pub) == 1
    rec = pub[0]
    assert rec["account"] == name and rec["bytes"] == total
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["tags"] == ["one", "two words"] and rec["privacy"] == "unlisted"
    assert rec["description"] == "desc #Shorts" and rec["valid_mp4"] is True

    r = sim.get("youtube", "/youtube/v3/videos", query={"part": "status", "id": video["id"]},
                token=token)
    assert r.json()["items"][0]["status"]["uploadStatus"] == "processed"


def test_single_request_upload_and_expired_session(sim):
    token = connect(sim, "sandbox")["access_token"]
    data = fake_mp4(5000)
    r = start_upload(sim, token, len(data), title="Small")
    url = r.headers["location"]
    r = put(url, data, 0, len(data))          # a last chunk may be any size
    assert r.status in (200, 201) and r.json()["snippet"]["title"] == "Small"

    r = start_upload(sim, token, 2 * GRANULE, title="Expires")
    url = r.headers["location"]
    assert put(url, b"\0" * GRANULE, 0, 2 * GRANULE).status == 308
    upload_id = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["upload_id"][0]
    assert sim.control("youtube", "POST", "uploads/expire",
                       {"upload_id": upload_id})["expired"] == 1
    r = put(url, None, total=2 * GRANULE, status_query=True)
    assert r.status == 404 and google_reason(r)[0] == "notFound"
    assert put(url, b"\0" * GRANULE, GRANULE, 2 * GRANULE).status == 404
    bogus = url.replace(upload_id, "unknown-session")
    assert put(bogus, None, total=10, status_query=True).status == 404


def test_quota_and_channel_upload_limit(sim):
    name, acct = new_account(sim)
    token = connect(sim, name)["access_token"]
    state = sim.control("youtube", "POST", "quota", {"reset": True})
    assert state["quota"]["units"] == 0 and state["daily_units"] == 10000
    assert start_upload(sim, token, 1000).status == 200
    assert sim.control("youtube", "GET", "state")["quota"]["units"] == 1600

    # Project quota: 10000 units a day, an insert costs 1600.
    sim.control("youtube", "POST", "quota", {"units_used": 10000 - 1599})
    r = start_upload(sim, token, 1000)
    assert r.status == 403
    assert google_reason(r) == ("quotaExceeded", "youtube.quota")
    r = channels(sim, token)                  # 1 unit still fits
    assert r.status == 200
    sim.control("youtube", "POST", "quota", {"units_used": 10000})
    assert google_reason(channels(sim, token))[0] == "quotaExceeded"

    # The channel's own daily cap is a different error (400).
    sim.control("youtube", "POST", "quota", {"reset": True})
    sim.control("youtube", "POST", "config", {"channel_daily_uploads": 1})
    try:
        assert start_upload(sim, token, 1000).status == 200
        r = start_upload(sim, token, 1000)
        assert r.status == 400 and google_reason(r)[0] == "uploadLimitExceeded"
        # A new Pacific day resets both.
        sim.control("youtube", "POST", "clock", {"advance": 86400})
        assert start_upload(sim, connect(sim, name)["access_token"], 1000).status == 200
    finally:
        sim.control("youtube", "POST", "config", {"channel_daily_uploads": 50})
        sim.control("youtube", "POST", "quota", {"reset": True})


def test_faults_and_restart_keep_state(sim):
    name, _ = new_account(sim)
    tok = connect(sim, name)
    sim.control("youtube", "POST", "faults", {"match": "/token", "action": "status",
                                              "status": 503, "count": 1})
    r = refresh(sim, tok["refresh_token"])
    assert r.status == 503 and r.json()["error"]
    assert refresh(sim, tok["refresh_token"]).status == 200
    sim.restart()
    r = refresh(sim, tok["refresh_token"])
    assert r.status == 200, r
    assert channels(sim, r.json()["access_token"]).status == 200
