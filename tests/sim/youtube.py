"""YouTube Data API v3 + Google OAuth 2.0 simulator.

Paths (base = this server):
  GET  /o/oauth2/v2/auth                 consent (client_id, redirect_uri exact,
                                         response_type=code, scope, access_type,
                                         prompt, include_granted_scopes, state,
                                         code_challenge + S256|plain)
  POST /token                            authorization_code (+ code_verifier) and
                                         refresh_token grants (refresh answers carry
                                         no refresh_token)
  POST /revoke?token=                    revokes the whole grant (account + client)
  GET  /youtube/v3/channels?part=snippet&mine=true
  GET  /youtube/v3/videos?part=snippet,status&id=A,B
  POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status
                                         -> 200, Location = session URI
  PUT  <session URI>                     chunks (Content-Range bytes F-L/T, all but
                                         the last a multiple of 256 KiB) -> 308 with
                                         Range, final 200 + video; status query
                                         (Content-Range bytes */T, empty) -> 308 or
                                         the video; unknown/expired session -> 404
  GET  /ytimg/{channel}/s88.png          channel thumbnail

A refresh token is issued only with access_type=offline, and then only on the
first consent of that account for that client or with prompt=consent.  A
reused authorization code is invalid_grant and revokes what the code issued.
Quota: `daily_units` per project per Pacific day (videos.insert costs
`insert_cost`, list calls 1) -> 403 quotaExceeded; `channel_daily_uploads`
inserts per channel per day -> 400 uploadLimitExceeded.  Upload bodies are
streamed to disk under DIR/youtube/.

Control routes (besides the common ones):
  POST /__control/quota {"units_used"?: n, "channel_uploads"?: {channel_id: n},
                         "reset"?: true}      -> current usage
  POST /__control/uploads/expire {"upload_id"?: id}   expire one or every session
Config knobs: see config_defaults.  Accounts: POST /__control/accounts
{"username", "channel": true|false, "channel_title"?, "handle"?}.
"""
import datetime
import os
import re
import secrets
import threading

import simcore
from simcore import Abort, json_response, redirect_response, error_page

try:
    from zoneinfo import ZoneInfo
    _PACIFIC = ZoneInfo("America/Los_Angeles")
except Exception:                       # no tz database: fixed PST
    _PACIFIC = datetime.timezone(datetime.timedelta(hours=-8))

CHUNK_GRANULE = 256 * 1024
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
KNOWN_SCOPES = {
    SCOPE_PREFIX + s for s in (
        "youtube", "youtube.readonly", "youtube.upload", "youtube.force-ssl",
        "youtubepartner", "youtube.channel-memberships.creator",
        "userinfo.profile", "userinfo.email")
} | {"openid", "email", "profile"}
READ_SCOPES = {SCOPE_PREFIX + s for s in (
    "youtube", "youtube.readonly", "youtube.force-ssl", "youtubepartner")}
UPLOAD_SCOPES = {SCOPE_PREFIX + s for s in (
    "youtube", "youtube.upload", "youtube.force-ssl")}
CATEGORIES = {"1", "2", "10", "15", "17", "19", "20", "22", "23", "24", "25",
              "26", "27", "28", "29"}
PRIVACY = ("public", "unlisted", "private")
MAX_REFRESH_PER_GRANT = 100
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED",
                 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}
QUOTA_MESSAGE = ("The request cannot be completed because you have exceeded "
                 "your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.")
UPLOAD_LIMIT_MESSAGE = "The user has exceeded the number of videos they may upload."
# 1x1 PNG for channel thumbnails.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d8"
    "b2780000000049454e44ae426082")


def google_error(code, message, reason, domain="global", headers=None,
                 location=None, location_type=None):
    """Google API error body: {"error":{"code","message","errors":[..],"status"}}."""
    item = {"message": message, "domain": domain, "reason": reason}
    if location:
        item["location"] = location
        item["locationType"] = location_type or "parameter"
    return json_response({"error": {"code": code, "message": message,
                                    "errors": [item],
                                    "status": GOOGLE_STATUS.get(code, "UNKNOWN")}},
                         code, headers)


def oauth_error(status, error, description):
    return json_response({"error": error, "error_description": description}, status)


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def etag():
    return secrets.token_urlsafe(20)


def _alnum_id(n):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(secrets.choice(alphabet) for _ in range(n))


class YouTubeSim(simcore.Platform):
    name = "youtube"
    config_defaults = {
        "access_ttl": 3599,             # seconds
        "refresh_ttl": 0,               # 0 = refresh tokens never expire
        "daily_units": 10000,           # project quota per Pacific day
        "insert_cost": 1600,            # videos.insert units
        "list_cost": 1,                 # channels.list / videos.list units
        "channel_daily_uploads": 50,    # per-channel inserts per day
        "session_ttl": 7 * 86400,       # resumable session lifetime
        "max_video_bytes": 4 * 1024 ** 3,
        "upload_drop_after": 0,         # >0: the next data PUT is cut after n bytes
        "processing_seconds": 0,        # uploaded -> processed in videos.list
    }

    def __init__(self, core):
        super().__init__(core)
        self._session_locks = {}
        self._locks_guard = threading.Lock()

    # state -----------------------------------------------------------------
    def seed(self):
        self._new_account("sandbox", True, "Sandbox Shorts", "@sandboxshorts")
        self._new_account("no_channel", False)

    def start(self):
        st = self.core.state
        st.setdefault("grants", {})         # "account|client" -> {scopes, at}
        st.setdefault("uploads", {})        # upload_id -> session
        st.setdefault("videos", {})         # video id -> video record
        st.setdefault("quota", {"day": self._day(), "units": 0, "channels": {}})
        os.makedirs(os.path.join(self.core.data_dir, "uploads"), exist_ok=True)
        os.makedirs(os.path.join(self.core.data_dir, "videos"), exist_ok=True)

    def _new_account(self, username, with_channel, title=None, handle=None):
        acct = {"username": username, "sub": simcore.random_digits(21),
                "name": title or username.replace("_", " ").title(),
                "channel": None}
        if with_channel:
            title = title or username.replace("_", " ").title()
            handle = handle or "@" + re.sub(r"[^a-z0-9]", "", title.lower())
            acct["channel"] = {"id": "UC" + _alnum_id(22), "title": title,
                               "customUrl": handle.lower(),
                               "description": "",
                               "publishedAt": iso(self.core.now())}
        self.core.state["accounts"][username] = acct
        return acct

    def create_account(self, body):
        username = str(body.get("username") or "")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", username):
            raise Abort(json_response({"error": "username required ([A-Za-z0-9_.-])"}, 400))
        if username in self.core.state["accounts"]:
            raise Abort(json_response({"error": "account exists"}, 409))
        return self._new_account(username, body.get("channel", True) is not False,
                                 body.get("channel_title"), body.get("handle"))

    def public_state(self):
        self._roll_quota()
        return {"grants": self.core.state["grants"],
                "uploads": self.core.state["uploads"],
                "videos": self.core.state["videos"],
                "quota": self.core.state["quota"]}

    def on_revoke(self, account):
        for k in [k for k in self.core.state["grants"] if k.split("|")[0] == account]:
            del self.core.state["grants"][k]

    # responses for the framework --------------------------------------------
    def fault_response(self, req, fault):
        st = fault["status"]
        if req.path in ("/token", "/revoke"):
            return oauth_error(st, "internal_failure", "Backend Error")
        reason = {401: "authError", 403: "forbidden", 404: "notFound",
                  429: "rateLimitExceeded"}.get(st, "backendError")
        msg = {429: "Rate Limit Exceeded", 503: "Backend Error",
               500: "Backend Error"}.get(st, "Injected error")
        return google_error(st, msg, reason)

    def not_found(self, req):
        return google_error(404, "Not Found", "notFound")

    # routes ----------------------------------------------------------------
    def routes(self, r):
        r.route("GET", "/o/oauth2/v2/auth", self.authorize)
        r.route("GET", "/o/oauth2/auth", self.authorize)
        r.route("POST", "/token", self.token)
        r.route("POST", "/revoke", self.revoke)
        r.route("GET", "/youtube/v3/channels", self.channels)
        r.route("GET", "/youtube/v3/videos", self.videos_list)
        r.route("POST", "/upload/youtube/v3/videos", self.upload_start)
        r.route("PUT", "/upload/youtube/v3/videos", self.upload_put, lock=False)
        r.route("GET", "/ytimg/{channel}/s88.png", self.thumbnail)
        r.control("POST", "quota", self.ctl_quota)
        r.control("POST", "uploads/expire", self.ctl_expire_uploads)

    # OAuth: authorize ---------------------------------------------------------
    def authorize(self, req):
        q = req.query
        app = self.core.app
        if not app.get("client_id") or q.get("client_id") != app["client_id"]:
            return error_page(401, "Error 401: invalid_client",
                              "The OAuth client was not found.")
        redirect_uri = q.get("redirect_uri", "")
        if not self.core.redirect_uri_registered(redirect_uri):
            return error_page(400, "Error 400: redirect_uri_mismatch",
                              "You can't sign in to this app because it doesn't comply "
                              "with Google's OAuth 2.0 policy. redirect_uri is not "
                              "registered for this client.")

        def bad(msg):
            return error_page(400, "Error 400: invalid_request", msg)

        if q.get("response_type") != "code":
            return bad("Invalid response_type: %s" % q.get("response_type", ""))
        scopes = q.get("scope", "").split()
        if not scopes:
            return bad("Missing required parameter: scope")
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            return error_page(400, "Error 400: invalid_scope",
                              "Some requested scopes were invalid: %s" % " ".join(unknown))
        access_type = q.get("access_type", "online")
        if access_type not in ("online", "offline"):
            return bad("Invalid access_type: %s" % access_type)
        prompt = q.get("prompt", "").split()
        if any(p not in ("none", "consent", "select_account") for p in prompt) or \
                ("none" in prompt and len(prompt) > 1):
            return bad("Invalid prompt: %s" % q.get("prompt"))
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method")
        if method and not challenge:
            return bad("Missing code_challenge.")
        if challenge:
            method = method or "plain"
            if method not in ("S256", "plain"):
                return bad("Invalid code_challenge_method: %s" % method)
            if not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", challenge):
                return bad("Invalid code_challenge.")
        state = q.get("state")
        if "none" in prompt:
            # No browser session in the simulator: like a signed-out user.
            return redirect_response(redirect_uri, [("error", "login_required"),
                                                    ("state", state)])
        pending = {"client": app["client_id"], "redirect_uri": redirect_uri,
                   "scopes": scopes, "access_type": access_type,
                   "prompt": prompt, "state": state,
                   "include_granted_scopes": q.get("include_granted_scopes") == "true",
                   "challenge": challenge, "challenge_method": method}
        accounts = [(k, "%s (%s)" % (k, a["channel"]["title"] if a.get("channel")
                                     else "no channel"))
                    for k, a in sorted(self.core.state["accounts"].items())]
        return self.core.consent_page(pending, accounts, "Sign in with Google",
                                      "The app wants: " + " ".join(scopes))

    def consent(self, pending, account, allowed):
        uri = pending["redirect_uri"]
        if not allowed:
            return redirect_response(uri, [
                ("error", "access_denied"),
                ("error_description", "The user denied access."),
                ("state", pending.get("state"))])
        key = "%s|%s" % (account, pending["client"])
        grant = self.core.state["grants"].get(key)
        first_consent = grant is None
        scopes = list(pending["scopes"])
        if grant and pending.get("include_granted_scopes"):
            scopes += [s for s in grant["scopes"] if s not in scopes]
        self.core.state["grants"][key] = {
            "scopes": sorted(set(scopes) | set(grant["scopes"] if grant else [])),
            "at": self.core.now()}
        code = "4/0" + simcore.random_token(36)
        # Store under our own code value so the format looks like Google's.
        issued = self.core.issue_code(
            pending["client"], uri, account, scopes, pending.get("challenge"),
            pending.get("challenge_method"),
            access_type=pending["access_type"], first_consent=first_consent,
            prompt_consent="consent" in pending.get("prompt", []))
        with self.core.lock:
            self.core.state["codes"][code] = self.core.state["codes"].pop(issued)
        return redirect_response(uri, [
            ("state", pending.get("state")), ("code", code),
            ("scope", " ".join(scopes)), ("authuser", "0"),
            ("prompt", "consent")])

    # OAuth: token ----------------------------------------------------------------
    def _client_auth(self, req, form):
        app = self.core.app
        basic = req.basic_auth()
        cid, secret = (basic if basic else (form.get("client_id"), form.get("client_secret")))
        if not app.get("client_id") or cid != app["client_id"]:
            raise Abort(oauth_error(401, "invalid_client", "The OAuth client was not found."))
        if not secret or not secrets.compare_digest(
                secret.encode(), str(app.get("client_secret", "")).encode()):
            raise Abort(oauth_error(401, "invalid_client", "Unauthorized"))
        return cid

    def token(self, req):
        ctype = (req.header("Content-Type") or "").lower()
        if "application/x-www-form-urlencoded" not in ctype:
            return oauth_error(400, "invalid_request",
                               "Content-Type must be application/x-www-form-urlencoded")
        form = req.form(64 * 1024)
        grant_type = form.get("grant_type", "")
        if grant_type not in ("authorization_code", "refresh_token"):
            return oauth_error(400, "unsupported_grant_type",
                               "Invalid grant_type: %s" % grant_type)
        client = self._client_auth(req, form)
        if grant_type == "authorization_code":
            return self._token_code(form, client)
        return self._token_refresh(form, client)

    def _token_code(self, form, client):
        code = form.get("code")
        if not code:
            return oauth_error(400, "invalid_request", "Missing required parameter: code")
        rec, problem = self.core.redeem_code(code)
        if problem == "used":
            # Google treats a replayed code as an attack on the grant.
            self.core.revoke_tokens(grant=rec["grant"])
            return oauth_error(400, "invalid_grant", "Bad Request")
        if problem == "expired":
            return oauth_error(400, "invalid_grant", "Bad Request")
        if problem:
            return oauth_error(400, "invalid_grant", "Malformed auth code.")
        if rec["client"] != client:
            return oauth_error(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri") != rec["redirect_uri"]:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if rec.get("challenge"):
            if not form.get("code_verifier"):
                return oauth_error(400, "invalid_grant", "Missing code verifier.")
            if not simcore.pkce_matches(rec["challenge"], rec["challenge_method"],
                                        form["code_verifier"]):
                return oauth_error(400, "invalid_grant", "Invalid code verifier.")
        elif form.get("code_verifier"):
            return oauth_error(400, "invalid_grant", "Bad Request")
        cfg = self.core.config
        out = {"access_token": self.core.issue_token(
                   "access", rec["account"], cfg["access_ttl"], client=client,
                   scopes=rec["scopes"], grant=rec["grant"], prefix="ya29.a0"),
               "expires_in": int(cfg["access_ttl"]),
               "scope": " ".join(rec["scopes"]),
               "token_type": "Bearer"}
        if rec.get("access_type") == "offline" and (
                rec.get("first_consent") or rec.get("prompt_consent")):
            ttl = cfg["refresh_ttl"] or None
            out["refresh_token"] = self.core.issue_token(
                "refresh", rec["account"], ttl, client=client, scopes=rec["scopes"],
                grant=rec["grant"], prefix="1//0")
            if ttl:
                out["refresh_token_expires_in"] = int(ttl)
            self._cap_refresh_tokens(rec["account"], client)
        return json_response(out)

    def _cap_refresh_tokens(self, account, client):
        live = sorted(((r["issued_at"], v) for v, r in self.core.state["tokens"].items()
                       if r["kind"] == "refresh" and r["account"] == account
                       and r["client"] == client and not r["revoked"]))
        for _, v in live[:-MAX_REFRESH_PER_GRANT]:
            self.core.state["tokens"][v]["revoked"] = True

    def _token_refresh(self, form, client):
        value = form.get("refresh_token")
        if not value:
            return oauth_error(400, "invalid_request",
                               "Missing required parameter: refresh_token")
        rec, problem = self.core.check_token(value, "refresh")
        if problem == "wrong_kind":
            return oauth_error(400, "invalid_grant", "Bad Request")
        if problem:
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        if rec["client"] != client:
            return oauth_error(401, "unauthorized_client", "Unauthorized")
        cfg = self.core.config
        access = self.core.issue_token("access", rec["account"], cfg["access_ttl"],
                                       client=client, scopes=rec["scopes"],
                                       grant=rec["grant"], prefix="ya29.a0")
        return json_response({"access_token": access,
                              "expires_in": int(cfg["access_ttl"]),
                              "scope": " ".join(rec["scopes"]),
                              "token_type": "Bearer"})

    def revoke(self, req):
        value = req.values(64 * 1024).get("token")
        rec = self.core.state["tokens"].get(value or "")
        if rec is None or rec["revoked"] or (
                rec["expires_at"] is not None and rec["expires_at"] < self.core.now()):
            return oauth_error(400, "invalid_token", "Token expired or revoked")
        # Revoking either token ends the whole grant of that account for that client.
        self.core.revoke_tokens(account=rec["account"], client=rec["client"])
        self.core.state["grants"].pop("%s|%s" % (rec["account"], rec["client"]), None)
        return json_response({})

    # API helpers -------------------------------------------------------------------
    def _auth(self, req, needed):
        value = req.bearer()
        if not value:
            raise Abort(google_error(
                401, "Request is missing required authentication credential. Expected "
                "OAuth 2 access token, login cookie or other valid authentication "
                "credential.", "required", location="Authorization",
                location_type="header",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}))
        rec, problem = self.core.check_token(value, "access")
        if problem:
            raise Abort(google_error(
                401, "Request had invalid authentication credentials. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                "authError", location="Authorization", location_type="header",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                         'error="invalid_token"'}))
        if not set(rec["scopes"]) & needed:
            raise Abort(google_error(
                403, "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                         'error="insufficient_scope"'}))
        return rec, self.core.account(rec["account"])

    def _day(self):
        t = datetime.datetime.fromtimestamp(self.core.now(), _PACIFIC)
        return t.strftime("%Y-%m-%d")

    def _roll_quota(self):
        q = self.core.state["quota"]
        day = self._day()
        if q["day"] != day:
            q.update({"day": day, "units": 0, "channels": {}})
        return q

    def _charge(self, units):
        q = self._roll_quota()
        if q["units"] + units > int(self.core.config["daily_units"]):
            raise Abort(google_error(403, QUOTA_MESSAGE, "quotaExceeded",
                                     domain="youtube.quota"))
        q["units"] += units

    def _parts(self, req, allowed):
        part = req.query.get("part", "")
        if not part:
            raise Abort(google_error(400, "Required parameter: part", "required",
                                     location="part"))
        parts = [p.strip() for p in part.split(",") if p.strip()]
        bad = [p for p in parts if p not in allowed]
        if bad:
            raise Abort(google_error(
                400, "'%s'" % bad[0], "unknownPart", domain="youtube.part",
                location="part"))
        return parts

    def _thumb(self, channel_id):
        url = "%s/ytimg/%s/s88.png" % (self.core.base_url, channel_id)
        return {"default": {"url": url, "width": 88, "height": 88},
                "medium": {"url": url, "width": 240, "height": 240},
                "high": {"url": url, "width": 800, "height": 800}}

    # API: channels, videos ----------------------------------------------------------
    def channels(self, req):
        parts = self._parts(req, ("id", "snippet", "contentDetails", "statistics",
                                  "status", "brandingSettings"))
        _, acct = self._auth(req, READ_SCOPES)
        if req.query.get("mine") != "true" and not req.query.get("id"):
            raise Abort(google_error(
                400, "No filter selected. Expected one of: mine, id, forHandle, "
                "forUsername, managedByMe, categoryId", "missingRequiredParameter",
                domain="youtube.parameter"))
        self._charge(int(self.core.config["list_cost"]))
        items = []
        ch = acct.get("channel") if acct else None
        wanted = req.query.get("id")
        if ch and (req.query.get("mine") == "true" or
                   (wanted and ch["id"] in wanted.split(","))):
            items.append(self._channel_resource(ch, parts))
        out = {"kind": "youtube#channelListResponse", "etag": etag(),
               "pageInfo": {"totalResults": len(items), "resultsPerPage": 5}}
        if items:
            out["items"] = items
        return json_response(out)

    def _channel_resource(self, ch, parts):
        res = {"kind": "youtube#channel", "etag": etag(), "id": ch["id"]}
        if "snippet" in parts:
            res["snippet"] = {"title": ch["title"], "description": ch["description"],
                              "customUrl": ch["customUrl"],
                              "publishedAt": ch["publishedAt"],
                              "thumbnails": self._thumb(ch["id"]),
                              "localized": {"title": ch["title"],
                                            "description": ch["description"]}}
        if "contentDetails" in parts:
            res["contentDetails"] = {"relatedPlaylists": {"likes": "",
                                                          "uploads": "UU" + ch["id"][2:]}}
        if "statistics" in parts:
            n = sum(1 for v in self.core.state["videos"].values()
                    if v["channel_id"] == ch["id"])
            res["statistics"] = {"viewCount": "0", "subscriberCount": "0",
                                 "hiddenSubscriberCount": False, "videoCount": str(n)}
        if "status" in parts:
            res["status"] = {"privacyStatus": "public", "isLinked": True,
                             "longUploadsStatus": "allowed"}
        return res

    def videos_list(self, req):
        parts = self._parts(req, ("id", "snippet", "status", "contentDetails",
                                  "processingDetails"))
        rec, _ = self._auth(req, READ_SCOPES)
        ids = [i for i in req.query.get("id", "").split(",") if i]
        if not ids:
            raise Abort(google_error(
                400, "No filter selected. Expected one of: id, myRating, chart",
                "missingRequiredParameter", domain="youtube.parameter"))
        self._charge(int(self.core.config["list_cost"]))
        items = [self._video_resource(self.core.state["videos"][i], parts)
                 for i in ids if i in self.core.state["videos"]]
        out = {"kind": "youtube#videoListResponse", "etag": etag(), "items": items,
               "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)}}
        return json_response(out)

    def _video_resource(self, v, parts, just_uploaded=False):
        res = {"kind": "youtube#video", "etag": etag(), "id": v["id"]}
        if "snippet" in parts:
            sn = {"publishedAt": iso(v["time"]), "channelId": v["channel_id"],
                  "title": v["title"], "description": v["description"],
                  "thumbnails": {"default": {
                      "url": "%s/ytimg/%s/s88.png" % (self.core.base_url, v["channel_id"]),
                      "width": 120, "height": 90}},
                  "channelTitle": v["channel_title"], "categoryId": v["category_id"],
                  "liveBroadcastContent": "none",
                  "localized": {"title": v["title"], "description": v["description"]}}
            if v["tags"]:
                sn["tags"] = v["tags"]
            res["snippet"] = sn
        if "status" in parts:
            st = {"uploadStatus": "uploaded", "privacyStatus": v["privacy"],
                  "license": "youtube", "embeddable": True, "publicStatsViewable": True}
            if not just_uploaded and self.core.now() >= v["time"] + \
                    float(self.core.config["processing_seconds"]):
                if v["valid"]:
                    st["uploadStatus"] = "processed"
                else:
                    st["uploadStatus"] = "failed"
                    st["failureReason"] = "invalidFile"
            if v.get("made_for_kids") is not None:
                st["selfDeclaredMadeForKids"] = v["made_for_kids"]
            res["status"] = st
        if "processingDetails" in parts:
            done = self.core.now() >= v["time"] + float(self.core.config["processing_seconds"])
            res["processingDetails"] = {
                "processingStatus": ("succeeded" if v["valid"] else "failed")
                if done else "processing"}
        return res

    def thumbnail(self, req):
        return simcore.Response(200, PNG_1X1, {"Cache-Control": "max-age=86400"},
                                "image/png")

    # API: resumable upload ---------------------------------------------------------
    def _validate_metadata(self, meta, parts):
        def invalid(reason, msg):
            raise Abort(google_error(400, msg, reason, domain="youtube.video"))

        if not isinstance(meta, dict):
            raise Abort(google_error(400, "The request metadata is invalid.",
                                     "invalidVideoMetadata", domain="youtube.video"))
        sn = meta.get("snippet") or {}
        status = meta.get("status") or {}
        if not isinstance(sn, dict) or not isinstance(status, dict):
            invalid("invalidVideoMetadata", "The request metadata is invalid.")
        if "snippet" not in parts:
            invalid("invalidVideoMetadata",
                    "The request metadata does not specify a snippet part.")
        title = sn.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 100 \
                or "<" in title or ">" in title:
            invalid("invalidTitle",
                    "The request metadata specifies an invalid or empty video title.")
        desc = sn.get("description", "")
        if not isinstance(desc, str) or len(desc.encode("utf-8")) > 5000 \
                or "<" in desc or ">" in desc:
            invalid("invalidDescription",
                    "The request metadata specifies an invalid video description.")
        tags = sn.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            invalid("invalidTags", "The request metadata specifies invalid video keywords.")
        tag_len = sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)
        if tag_len > 500 or any("<" in t or ">" in t for t in tags):
            invalid("invalidTags", "The request metadata specifies invalid video keywords.")
        cat = str(sn.get("categoryId", "22"))
        if cat not in CATEGORIES:
            invalid("invalidCategoryId",
                    "The snippet.categoryId property specifies an invalid category ID.")
        privacy = status.get("privacyStatus", "public")
        if privacy not in PRIVACY:
            invalid("invalidVideoMetadata", "The request metadata is invalid.")
        if status and "status" not in parts:
            invalid("invalidVideoMetadata",
                    "The request metadata does not specify a status part.")
        kids = status.get("selfDeclaredMadeForKids")
        return {"title": title, "description": desc, "tags": tags,
                "category_id": cat, "privacy": privacy,
                "made_for_kids": kids if isinstance(kids, bool) else None}

    def upload_start(self, req):
        rec, acct = self._auth(req, UPLOAD_SCOPES)
        if req.query.get("uploadType") != "resumable":
            raise Abort(google_error(
                400, "Only uploadType=resumable is supported by this server.",
                "badRequest", location="uploadType"))
        parts = self._parts(req, ("snippet", "status", "id", "contentDetails",
                                  "recordingDetails", "localizations"))
        if not acct or not acct.get("channel"):
            raise Abort(google_error(
                401, "Unauthorized", "youtubeSignupRequired",
                domain="youtube.header", location="Authorization", location_type="header"))
        ctype = (req.header("Content-Type") or "").lower()
        if req.has_body and "application/json" not in ctype:
            raise Abort(google_error(400, "Metadata must be application/json.",
                                     "badContent"))
        meta = self._validate_metadata(req.json(1024 * 1024) if req.has_body else
                                       {"snippet": {}}, parts)
        total = None
        raw_len = req.header("X-Upload-Content-Length")
        if raw_len is not None:
            if not raw_len.strip().isdigit() or int(raw_len) <= 0:
                raise Abort(google_error(400, "Invalid X-Upload-Content-Length.",
                                         "badRequest"))
            total = int(raw_len)
            if total > int(self.core.config["max_video_bytes"]):
                raise Abort(google_error(
                    400, "The video is larger than the maximum size allowed.",
                    "uploadLimitExceeded", domain="youtube.video"))
        media_type = req.header("X-Upload-Content-Type") or "video/*"
        if not (media_type.startswith("video/") or media_type == "application/octet-stream"):
            raise Abort(google_error(
                400, "Media type '%s' is not supported. Valid media types: "
                "[video/*, application/octet-stream]" % media_type, "mediaTypeNotSupported"))
        ch = acct["channel"]
        q = self._roll_quota()
        if q["units"] + int(self.core.config["insert_cost"]) > int(self.core.config["daily_units"]):
            raise Abort(google_error(403, QUOTA_MESSAGE, "quotaExceeded",
                                     domain="youtube.quota"))
        if q["channels"].get(ch["id"], 0) >= int(self.core.config["channel_daily_uploads"]):
            raise Abort(google_error(400, UPLOAD_LIMIT_MESSAGE, "uploadLimitExceeded",
                                     domain="youtube.video"))
        self._charge(int(self.core.config["insert_cost"]))
        q["channels"][ch["id"]] = q["channels"].get(ch["id"], 0) + 1
        upload_id = "AHVAsd" + simcore.random_token(36)
        now = self.core.now()
        self.core.state["uploads"][upload_id] = {
            "account": rec["account"], "channel_id": ch["id"], "meta": meta,
            "parts": parts, "total": total, "received": 0, "media_type": media_type,
            "created_at": now, "expires_at": now + float(self.core.config["session_ttl"]),
            "video_id": None}
        location = "%s/upload/youtube/v3/videos?uploadType=resumable&part=%s&upload_id=%s" % (
            self.core.base_url, ",".join(parts), upload_id)
        return simcore.Response(200, b"", {"Location": location,
                                           "X-GUploader-UploadID": upload_id})

    def _session_path(self, upload_id):
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", upload_id)
        return os.path.join(self.core.data_dir, "uploads", safe + ".part")

    def _session_lock(self, upload_id):
        with self._locks_guard:
            return self._session_locks.setdefault(upload_id, threading.Lock())

    def _range_reply(self, upload_id, received):
        r = simcore.Response(308, b"", {"X-GUploader-UploadID": upload_id})
        if received > 0:
            r.set_header("Range", "bytes=0-%d" % (received - 1))
        return r

    def _final_reply(self, sess):
        v = self.core.state["videos"][sess["video_id"]]
        return json_response(self._video_resource(v, sess["parts"], just_uploaded=True))

    def _live_session(self, upload_id):
        sess = self.core.state["uploads"].get(upload_id or "")
        if sess is None or sess["expires_at"] < self.core.now():
            raise Abort(google_error(404, "Not Found", "notFound"))
        return sess

    def upload_put(self, req):
        upload_id = req.query.get("upload_id", "")
        with self.core.lock:
            sess = self._live_session(upload_id)
            total, received = sess["total"], sess["received"]
            done = sess["video_id"] is not None
        crange = (req.header("Content-Range") or "").strip()
        length = req.content_length if not req.chunked else None

        m_status = re.fullmatch(r"bytes \*/(\d+|\*)", crange)
        m_data = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", crange)
        if m_status:
            if req.has_body:
                raise Abort(google_error(400, "A status query must have an empty body.",
                                         "badRequest"))
            claimed = m_status.group(1)
            if claimed != "*" and total is not None and int(claimed) != total:
                raise Abort(google_error(400, "Content-Range total does not match the "
                                         "declared upload size.", "badRequest"))
            with self.core.lock:
                if done:
                    return self._final_reply(sess)
                if claimed != "*" and total is None and int(claimed) == received \
                        and received > 0:
                    sess["total"] = received
                    return self._complete(upload_id, sess)
                return self._range_reply(upload_id, received)
        if done:
            with self.core.lock:
                return self._final_reply(sess)
        if not crange:
            # A single request carrying the whole file.
            if length is None:
                raise Abort(google_error(400, "Content-Length or Content-Range is required.",
                                         "badRequest"))
            first, last, claimed = 0, length - 1, total if total is not None else length
        elif m_data:
            first, last = int(m_data.group(1)), int(m_data.group(2))
            claimed = None if m_data.group(3) == "*" else int(m_data.group(3))
        else:
            raise Abort(google_error(400, "Failed to parse Content-Range header.",
                                     "badRequest"))
        if last < first:
            raise Abort(google_error(400, "Failed to parse Content-Range header.",
                                     "badRequest"))
        if claimed is not None and total is not None and claimed != total:
            raise Abort(google_error(400, "Content-Range total does not match the "
                                     "declared upload size.", "badRequest"))
        final_total = claimed if claimed is not None else total
        if final_total is not None and last >= final_total:
            raise Abort(google_error(400, "Content-Range goes past the end of the upload.",
                                     "badRequest"))
        if first != received:
            raise Abort(google_error(
                400, "Content-Range starts at byte %d but the server has %d bytes; "
                "query the upload status and resume from there." % (first, received),
                "badRequest"))
        size = last - first + 1
        if length is not None and length != size:
            raise Abort(google_error(400, "Content-Length does not match Content-Range.",
                                     "badRequest"))
        is_last = final_total is not None and last + 1 == final_total
        if not is_last and size % CHUNK_GRANULE != 0:
            raise Abort(google_error(
                400, "Invalid request. The number of bytes uploaded is required to be equal "
                "or greater than 262144, except for the final request (it's recommended to "
                "be the exact multiple of 262144). The received request contained %d bytes, "
                "which does not meet this requirement." % size, "badRequest"))
        if final_total is not None and final_total > int(self.core.config["max_video_bytes"]):
            raise Abort(google_error(400, "The video is larger than the maximum size allowed.",
                                     "uploadLimitExceeded", domain="youtube.video"))
        lock = self._session_lock(upload_id)
        if not lock.acquire(blocking=False):
            raise Abort(google_error(503, "Another request is writing this upload.",
                                     "backendError"))
        try:
            return self._write_chunk(req, upload_id, sess, first, size, final_total, is_last)
        finally:
            lock.release()

    def _write_chunk(self, req, upload_id, sess, first, size, final_total, is_last):
        path = self._session_path(upload_id)
        with self.core.lock:
            drop_after = int(self.core.config["upload_drop_after"] or 0)
            if drop_after:
                self.core.config["upload_drop_after"] = 0
        written = 0                     # bytes of this chunk stored in the file
        gone = None                     # "drop", "client", "long" or None
        with open(path, "r+b" if os.path.exists(path) else "w+b") as f:
            f.seek(first)
            try:
                for piece in req.body_chunks():
                    if written + len(piece) > size:
                        gone = "long"   # a chunked body longer than its Content-Range
                        break
                    if drop_after and written + len(piece) >= drop_after:
                        f.write(piece[:drop_after - written])
                        written = drop_after
                        gone = "drop"
                        break
                    f.write(piece)
                    written += len(piece)
            except simcore.ClientGone:
                gone = "client"
            if gone or written != size:
                # Keep only whole 256 KiB granules, as the real server commits them.
                keep = first + (written // CHUNK_GRANULE) * CHUNK_GRANULE
                if gone == "long" or (gone is None and written != size):
                    keep = first
                f.truncate(keep)
                with self.core.lock:
                    sess["received"] = keep
                self.core.save()
                if gone == "drop":
                    return simcore.drop_response()
                if gone == "client":
                    raise simcore.ClientGone(written)
                raise Abort(google_error(400, "Request body is longer or shorter than "
                                         "Content-Range says.", "badRequest"))
            f.truncate(first + size)
        # Hash the finished file before taking the state lock: uploads can be
        # large and other requests must not wait for the digest.
        digest = (os.path.getsize(path), simcore.file_sha256(path),
                  simcore.is_mp4(path)) if is_last else None
        with self.core.lock:
            sess["received"] = first + size
            if not is_last:
                return self._range_reply(upload_id, sess["received"])
            sess["total"] = final_total
            return self._complete(upload_id, sess, digest)

    def _complete(self, upload_id, sess, digest=None):
        """Turn a fully received session into a video (caller holds core.lock).
        digest: (size, sha256, is_mp4) when already computed."""
        path = self._session_path(upload_id)
        if not os.path.exists(path):
            open(path, "wb").close()
        if digest is None:
            digest = (os.path.getsize(path), simcore.file_sha256(path), simcore.is_mp4(path))
        size, digest, valid = digest
        vid = _alnum_id(11)
        while vid in self.core.state["videos"]:
            vid = _alnum_id(11)
        dest = os.path.join(self.core.data_dir, "videos", vid + ".mp4")
        os.replace(path, dest)
        acct = self.core.account(sess["account"])
        ch = acct["channel"]
        meta = sess["meta"]
        now = int(self.core.now())
        video = dict(meta, id=vid, channel_id=ch["id"], channel_title=ch["title"],
                     account=sess["account"], bytes=size, sha256=digest, valid=valid,
                     time=now, upload_id=upload_id)
        self.core.state["videos"][vid] = video
        sess["video_id"] = vid
        self.core.publish({"account": sess["account"], "channel_id": ch["id"],
                           "remote_id": vid, "title": meta["title"],
                           "description": meta["description"], "tags": meta["tags"],
                           "category_id": meta["category_id"], "privacy": meta["privacy"],
                           "bytes": size, "sha256": digest, "valid_mp4": valid,
                           "time": now})
        return self._final_reply(sess)

    # control -------------------------------------------------------------------
    def ctl_quota(self, req):
        body = req.json() or {}
        q = self._roll_quota()
        if body.get("reset"):
            q.update({"units": 0, "channels": {}})
        if "units_used" in body:
            q["units"] = int(body["units_used"])
        for ch, n in (body.get("channel_uploads") or {}).items():
            q["channels"][ch] = int(n)
        return json_response({"quota": q, "daily_units": self.core.config["daily_units"]})

    def ctl_expire_uploads(self, req):
        body = req.json() or {}
        n = 0
        past = self.core.now() - 1
        for uid, sess in self.core.state["uploads"].items():
            if body.get("upload_id") and uid != body["upload_id"]:
                continue
            sess["expires_at"] = past
            try:
                os.unlink(self._session_path(uid))
            except OSError:
                pass
            n += 1
        return json_response({"expired": n})


def create(core):
    return YouTubeSim(core)
