"""TikTok simulator: Login Kit v2 (OAuth 2 + PKCE), Display API, web session
check, share_url video files, covers and signed webhooks.

Routes (base = tiktok_auth_url host = tiktok_api_url = tiktok_web_url):
  GET  /v2/auth/authorize/             consent page (client_key, scope, response_type,
                                       redirect_uri, state, code_challenge[_method])
  POST /v2/oauth/token/                authorization_code | refresh_token (rotating)
  POST /v2/oauth/revoke/               revoke the grant of an access token
  GET  /v2/user/info/?fields=          Bearer; fields checked against scopes
  POST /v2/video/list/?fields=         Bearer; {"cursor","max_count"<=20}, newest first
  GET  /passport/web/account/info/     Cookie sessionid=... check
  GET|HEAD /@{user}/video/{id}         the MP4 (Range)
  GET  /cover/{id}.jpeg?x-expires=..   cover image (expires, signed)
  GET  /avatar/{user}.jpeg             avatar image
Control (besides the common ones):
  GET  /__control/state adds "videos" {id: {..., account, share_url, bytes, sha256}}
  POST /__control/accounts {"username","display_name"?,"videos":N?}
  POST /__control/videos {"account","description","title"?,"create_time"?,"stock"?}
       "stock" picks the clip by name (media.stock_names(): 400 for another);
       without it the three stock_videos() clips take turns.
  POST /__control/cookies/expire {"account"}
  POST /__control/webhook {"event","account","content":{},"url"?,"bad_signature"?,"timestamp"?}
Config knobs: access_ttl, refresh_ttl, rotate_refresh, rate_limit, rate_window,
page_limit (0 = pages as large as max_count; N = at most N videos a page),
require_pkce, strict_field_scopes, cover_ttl, webhook_timeout.
"""
import json
import os
import shutil
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

import media
import simcore
from simcore import (Abort, error_page, file_response, json_response,
                     redirect_response)

SCOPES = ("user.info.basic", "user.info.profile", "user.info.stats",
          "video.list", "video.upload", "video.publish")

USER_FIELDS = {
    "open_id": "user.info.basic", "union_id": "user.info.basic",
    "avatar_url": "user.info.basic", "avatar_url_100": "user.info.basic",
    "avatar_large_url": "user.info.basic", "display_name": "user.info.basic",
    "bio_description": "user.info.profile", "profile_deep_link": "user.info.profile",
    "is_verified": "user.info.profile", "username": "user.info.profile",
    "profile_web_link": "user.info.profile",
    "follower_count": "user.info.stats", "following_count": "user.info.stats",
    "likes_count": "user.info.stats", "video_count": "user.info.stats",
}

VIDEO_FIELDS = ("id", "create_time", "cover_image_url", "share_url",
                "video_description", "duration", "height", "width", "title",
                "embed_html", "embed_link", "like_count", "comment_count",
                "share_count", "view_count")

STATUS_OF = {"ok": 200, "access_token_invalid": 401, "scope_not_authorized": 401,
             "invalid_params": 400, "rate_limit_exceeded": 429,
             "internal_error": 500}

ERROR_MESSAGES = {
    "access_token_invalid": "The access token is invalid or not found in the request.",
    "scope_not_authorized": "The user did not authorize the scope required for completing this request.",
    "invalid_params": "The request parameters are invalid.",
    "rate_limit_exceeded": "The API rate limit was exceeded. Please try again later.",
    "internal_error": "Something went wrong. Please try again later.",
}

SEED = [("sandbox_creator", "Sandbox Creator", [
            "Morning light over the harbour #sandbox",
            "Three ways to fold a paper boat",
            "Test pattern, but make it vertical"]),
        ("sandbox_second", "Second Sandbox", ["Square one"])]


def log_id(core):
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(core.now())) + \
        simcore.random_token(8).encode().hex()[:20].upper()


class TikTokSim(simcore.Platform):
    name = "tiktok"
    config_defaults = {
        "access_ttl": 7200, "refresh_ttl": 15552000, "rotate_refresh": True,
        "rate_limit": 600, "rate_window": 60, "page_limit": 0,
        "require_pkce": True, "strict_field_scopes": True,
        "cover_ttl": 21600, "webhook_timeout": 10,
    }

    def __init__(self, core):
        super().__init__(core)
        self.stock = []

    # setup -------------------------------------------------------------------
    def _stock(self):
        if not self.stock:
            cache = os.environ.get("PLATFORMSIM_MEDIA_CACHE") or self.core.media_dir
            self.stock = media.stock_videos(cache)
        return self.stock

    def _clip(self, name):
        """Any stock clip by name, the extra ones made on first use."""
        for s in self._stock():
            if s["name"] == name:
                return s
        cache = os.environ.get("PLATFORMSIM_MEDIA_CACHE") or self.core.media_dir
        return media.stock_video(cache, name)

    def seed(self):
        self.core.state["videos"] = {}
        base = int(self.core.now()) - 86400 * 10
        for name, display, descs in SEED:
            self._new_account(name, display)
            for i, d in enumerate(descs):
                base += 3600
                self._new_video(name, d, create_time=base)

    def start(self):
        self.core.state.setdefault("videos", {})
        self._stock()
        for vid, v in self.core.state["videos"].items():
            if not os.path.exists(self._video_path(vid)):
                self._write_video_file(vid, v["stock"])

    def routes(self, r):
        r.route("GET", "/v2/auth/authorize/", self.authorize)
        r.route("POST", "/v2/oauth/token/", self.token)
        r.route("POST", "/v2/oauth/revoke/", self.revoke)
        r.route("GET", "/v2/user/info/", self.user_info)
        r.route("POST", "/v2/video/list/", self.video_list)
        r.route("GET", "/passport/web/account/info/", self.web_account_info)
        r.route("GET", "/@{user}/video/{id}", self.share, lock=False)
        r.route("GET", "/cover/{file}", self.cover, lock=False)
        r.route("GET", "/avatar/{file}", self.avatar, lock=False)
        r.control("POST", "videos", self.ctl_video)
        r.control("POST", "cookies/expire", self.ctl_cookies_expire)
        r.control("POST", "webhook", self.ctl_webhook, lock=False)

    # accounts and videos -----------------------------------------------------
    def _new_account(self, username, display_name):
        core = self.core
        acct = {"username": username, "display_name": display_name,
                "open_id": "-000" + simcore.random_token(18).replace("_", "x"),
                "union_id": "c9c6" + simcore.random_token(16).replace("_", "x"),
                "user_id": simcore.random_digits(19),
                "sessionid": simcore.random_token(16).encode().hex()[:32],
                "cookies_valid": True,
                "bio_description": "Sandbox account %s" % username,
                "is_verified": False, "follower_count": 12, "following_count": 3,
                "likes_count": 40}
        acct["cookies"] = "sessionid=%s; sessionid_ss=%s; tt_csrf_token=%s" % (
            acct["sessionid"], acct["sessionid"], simcore.random_token(12))
        core.state["accounts"][username] = acct
        return acct

    def _video_path(self, vid):
        return os.path.join(self.core.data_dir, "videos", vid + ".mp4")

    def _write_video_file(self, vid, stock_name):
        """Each video gets its own bytes: the stock clip plus a trailing
        top-level `free` box naming the video (valid ISO BMFF)."""
        src = self._clip(stock_name)
        path = self._video_path(vid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        shutil.copyfile(src["path"], tmp)
        tag = ("platformsim tiktok video " + vid).encode()
        with open(tmp, "ab") as f:
            f.write(struct.pack(">I", 8 + len(tag)) + b"free" + tag)
        os.replace(tmp, path)
        return path

    def _new_video(self, username, description, title=None, create_time=None, stock_name=None):
        core = self.core
        stock = self._stock()
        videos = core.state["videos"]
        mine = [v for v in videos.values() if v["account"] == username]
        latest = max([v["create_time"] for v in mine] or [0])
        ct = int(create_time if create_time is not None else core.now())
        if ct <= latest:
            ct = latest + 1             # distinct seconds keep cursors exact
        src = self._clip(stock_name) if stock_name else stock[len(videos) % len(stock)]
        vid = simcore.random_digits(19)
        self._write_video_file(vid, src["name"])
        v = {"id": vid, "account": username, "create_time": ct,
             "video_description": description, "title": title or description[:60],
             "stock": src["name"], "duration": src["duration"],
             "width": src["width"], "height": src["height"],
             "bytes": os.path.getsize(self._video_path(vid)),
             "sha256": simcore.file_sha256(self._video_path(vid)),
             "like_count": 7, "comment_count": 1, "share_count": 0,
             "view_count": 120}
        videos[vid] = v
        return v

    def _video_json(self, v, fields=VIDEO_FIELDS):
        core = self.core
        acct = core.account(v["account"])
        share = "%s/@%s/video/%s" % (core.base_url, acct["username"], v["id"])
        exp = int(core.now()) + int(core.config["cover_ttl"])
        full = dict((k, v[k]) for k in ("id", "create_time", "video_description",
                                         "duration", "height", "width", "title",
                                         "like_count", "comment_count",
                                         "share_count", "view_count"))
        full["share_url"] = share
        full["cover_image_url"] = "%s/cover/%s.jpeg?x-expires=%d&x-signature=%s" % (
            core.base_url, v["id"], exp, self._cover_sig(v["id"], exp))
        full["embed_link"] = "%s/player/v1/%s" % (core.base_url, v["id"])
        full["embed_html"] = ('<blockquote class="tiktok-embed" cite="%s" data-video-id="%s">'
                              '</blockquote>' % (share, v["id"]))
        return {k: full[k] for k in fields}

    def _cover_sig(self, vid, exp):
        key = self.core.app.get("client_secret") or "platformsim"
        return simcore.hmac_sha256_hex(key, "%s:%d" % (vid, exp))[:24]

    def _avatar_url(self, username):
        return "%s/avatar/%s.jpeg" % (self.core.base_url, username)

    def create_account(self, body):
        name = body.get("username") or ""
        if not name or not all(c.isalnum() or c in "._" for c in name):
            raise Abort(json_response({"error": "username: letters, digits, . and _"}, 400))
        if name in self.core.state["accounts"]:
            raise Abort(json_response({"error": "account exists"}, 409))
        acct = self._new_account(name, body.get("display_name") or name)
        for i in range(int(body.get("videos", 0))):
            self._new_video(name, "Video %d of %s" % (i + 1, name),
                            create_time=int(self.core.now()) - 3600 * (int(body["videos"]) - i))
        return acct

    def public_state(self):
        videos = {}
        for vid, v in self.core.state["videos"].items():
            videos[vid] = dict(v, share_url="%s/@%s/video/%s" % (
                self.core.base_url, v["account"], vid))
        return {"videos": videos}

    # OAuth -------------------------------------------------------------------
    def _oauth_error(self, error, description, status=400):
        return json_response({"error": error, "error_description": description,
                              "log_id": log_id(self.core)}, status)

    def authorize(self, req):
        core = self.core
        q = req.query
        if not core.app or q.get("client_key") != core.app.get("client_key"):
            return error_page(400, "Something went wrong",
                              "client_key: the app is unknown (error code 10003).")
        redirect_uri = q.get("redirect_uri", "")
        if not core.redirect_uri_registered(redirect_uri):
            return error_page(400, "Something went wrong",
                              "redirect_uri: this URL is not registered for the app (error code 10007).")
        state = q.get("state")

        def fail(error, desc):
            return redirect_response(redirect_uri, {"error": error,
                                                    "error_description": desc,
                                                    "state": state})
        if q.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        scopes = [s for s in q.get("scope", "").split(",") if s]
        if not scopes or any(s not in SCOPES for s in scopes):
            return fail("invalid_scope", "scope is missing or unknown")
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method")
        if challenge:
            if method != "S256":
                return fail("invalid_request", "code_challenge_method must be S256")
        elif core.config["require_pkce"]:
            return fail("invalid_request", "code_challenge is required")
        pending = {"client": q["client_key"], "redirect_uri": redirect_uri,
                   "scopes": scopes, "state": state, "challenge": challenge,
                   "method": method}
        accounts = [(k, "%s (@%s)" % (a["display_name"], k))
                    for k, a in sorted(core.state["accounts"].items())]
        return core.consent_page(pending, accounts, "Log in to TikTok",
                                 "The app would like to: " + ", ".join(scopes))

    def consent(self, p, account, allowed):
        if not allowed:
            return redirect_response(p["redirect_uri"], {
                "error": "access_denied",
                "error_description": "The user denied the authorization.",
                "state": p["state"]})
        # Real codes carry characters that must be percent-decoded.
        value = simcore.random_token(30) + "*0!" + simcore.random_token(6)
        code = self.core.issue_code(p["client"], p["redirect_uri"], account,
                                    p["scopes"], p["challenge"], p["method"],
                                    value=value)
        return redirect_response(p["redirect_uri"], {
            "code": code, "scopes": ",".join(p["scopes"]), "state": p["state"]})

    def _client_ok(self, f):
        app = self.core.app
        return bool(app) and f.get("client_key") == app.get("client_key") and \
            f.get("client_secret") == app.get("client_secret")

    def _issue_pair(self, account, scopes, client, grant):
        core = self.core
        cfg = core.config
        access = core.issue_token("access", account, cfg["access_ttl"], client,
                                  scopes, grant, prefix="act.")
        refresh = core.issue_token("refresh", account, cfg["refresh_ttl"], client,
                                   scopes, grant, prefix="rft.")
        return access, refresh

    def _token_body(self, account, scopes, access, refresh):
        core = self.core
        arec = core.state["tokens"][access]
        rrec = core.state["tokens"][refresh]
        return {"open_id": core.account(account)["open_id"],
                "scope": ",".join(scopes), "access_token": access,
                "expires_in": int(round(arec["expires_at"] - core.now())),
                "refresh_token": refresh,
                "refresh_expires_in": int(round(rrec["expires_at"] - core.now())),
                "token_type": "Bearer"}

    def token(self, req):
        core = self.core
        ctype = (req.header("Content-Type") or "").lower()
        if "application/x-www-form-urlencoded" not in ctype:
            return self._oauth_error("invalid_request",
                                     "Content-Type must be application/x-www-form-urlencoded")
        f = req.form()
        if not self._client_ok(f):
            return self._oauth_error("invalid_client",
                                     "Client key or secret is incorrect.", 401)
        grant = f.get("grant_type")
        if grant == "authorization_code":
            code = f.get("code", "")
            rec, problem = core.redeem_code(code)
            if problem == "used":
                # A replayed code revokes what it issued (RFC 6749 4.1.2).
                core.revoke_tokens(grant=rec["grant"])
                return self._oauth_error("invalid_grant",
                                         "Authorization code has been used.")
            if problem:
                return self._oauth_error("invalid_grant",
                                         "Authorization code is expired or invalid.")
            if rec["client"] != f.get("client_key"):
                return self._oauth_error("invalid_grant", "Authorization code is invalid.")
            if rec["redirect_uri"] != f.get("redirect_uri"):
                return self._oauth_error("invalid_grant",
                                         "redirect_uri does not match the authorization request.")
            if not simcore.pkce_matches(rec["challenge"], rec["challenge_method"],
                                        f.get("code_verifier")):
                return self._oauth_error("invalid_grant",
                                         "Code verifier or code challenge is invalid.")
            access, refresh = self._issue_pair(rec["account"], rec["scopes"],
                                               rec["client"], rec["grant"])
            return json_response(self._token_body(rec["account"], rec["scopes"],
                                                  access, refresh))
        if grant == "refresh_token":
            old = f.get("refresh_token", "")
            rec, problem = core.check_token(old, "refresh")
            if problem or rec["client"] != f.get("client_key"):
                return self._oauth_error("invalid_grant",
                                         "Refresh token is invalid or expired.")
            cfg = core.config
            access = core.issue_token("access", rec["account"], cfg["access_ttl"],
                                      rec["client"], rec["scopes"], rec["grant"],
                                      prefix="act.")
            if cfg["rotate_refresh"]:
                core.revoke_tokens(value=old)
                refresh = core.issue_token("refresh", rec["account"], cfg["refresh_ttl"],
                                           rec["client"], rec["scopes"], rec["grant"],
                                           prefix="rft.")
            else:
                refresh = old
            return json_response(self._token_body(rec["account"], rec["scopes"],
                                                  access, refresh))
        if not grant:
            return self._oauth_error("invalid_request", "grant_type is required")
        return self._oauth_error("unsupported_grant_type",
                                 "grant_type is not supported")

    def revoke(self, req):
        f = req.form()
        if not self._client_ok(f):
            return self._oauth_error("invalid_client",
                                     "Client key or secret is incorrect.", 401)
        rec, problem = self.core.check_token(f.get("token", ""), ("access", "refresh"))
        if rec is None or problem == "wrong_kind":
            return self._oauth_error("invalid_request", "token is invalid")
        self.core.revoke_tokens(grant=rec["grant"])
        return json_response({})

    # Display API ---------------------------------------------------------------
    def _api_error(self, code, message=None, headers=None):
        return json_response({"data": {}, "error": {
            "code": code, "message": message or ERROR_MESSAGES[code],
            "log_id": log_id(self.core)}}, STATUS_OF[code], headers)

    def _api_auth(self, req, scope):
        core = self.core
        token = req.bearer()
        rec, problem = core.check_token(token, "access")
        if problem:
            raise Abort(self._api_error("access_token_invalid"))
        cfg = core.config
        rl = core.rate_limit(("tiktok", req.path, token), int(cfg["rate_limit"]),
                             float(cfg["rate_window"]))
        if not rl.allowed:
            raise Abort(self._api_error("rate_limit_exceeded", headers={
                "Retry-After": str(max(1, int(rl.reset - core.now())))}))
        if scope and scope not in rec["scopes"]:
            raise Abort(self._api_error("scope_not_authorized"))
        return rec

    def _fields(self, req, allowed):
        raw = req.query.get("fields", "")
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        if not fields:
            raise Abort(self._api_error("invalid_params", "fields is required"))
        bad = [f for f in fields if f not in allowed]
        if bad:
            raise Abort(self._api_error("invalid_params",
                                        "unknown fields: " + ",".join(bad)))
        return fields

    def user_info(self, req):
        rec = self._api_auth(req, "user.info.basic")
        fields = self._fields(req, USER_FIELDS)
        if self.core.config["strict_field_scopes"]:
            missing = [f for f in fields if USER_FIELDS[f] not in rec["scopes"]]
            if missing:
                return self._api_error("scope_not_authorized",
                                       "fields need scopes not granted: " + ",".join(missing))
        a = self.core.account(rec["account"])
        n_videos = sum(1 for v in self.core.state["videos"].values()
                       if v["account"] == rec["account"])
        full = {"open_id": a["open_id"], "union_id": a["union_id"],
                "avatar_url": self._avatar_url(a["username"]),
                "avatar_url_100": self._avatar_url(a["username"]),
                "avatar_large_url": self._avatar_url(a["username"]), "display_name": a["display_name"],
                "bio_description": a["bio_description"],
                "profile_deep_link": "%s/@%s" % (self.core.base_url, a["username"]),
                "profile_web_link": "%s/@%s" % (self.core.base_url, a["username"]),
                "is_verified": a["is_verified"], "username": a["username"],
                "follower_count": a["follower_count"],
                "following_count": a["following_count"],
                "likes_count": a["likes_count"], "video_count": n_videos}
        return json_response({"data": {"user": {f: full[f] for f in fields}},
                              "error": {"code": "ok", "message": "",
                                        "log_id": log_id(self.core)}})

    def video_list(self, req):
        rec = self._api_auth(req, "video.list")
        fields = self._fields(req, VIDEO_FIELDS)
        body = req.json()
        if req.has_body and req.body().strip() and not isinstance(body, dict):
            return self._api_error("invalid_params", "body must be a JSON object")
        body = body or {}
        max_count = body.get("max_count", 10)
        cursor = body.get("cursor")
        if not isinstance(max_count, int) or isinstance(max_count, bool) or \
                not 1 <= max_count <= 20:
            return self._api_error("invalid_params", "max_count must be 1..20")
        if cursor is not None and (not isinstance(cursor, int) or isinstance(cursor, bool)
                                   or cursor < 0):
            return self._api_error("invalid_params", "cursor must be an int64")
        if not cursor:
            cursor = int(self.core.now() * 1000) + 1
        mine = sorted((v for v in self.core.state["videos"].values()
                       if v["account"] == rec["account"]
                       and v["create_time"] * 1000 < cursor),
                      key=lambda v: (v["create_time"], v["id"]), reverse=True)
        size = max_count
        if int(self.core.config["page_limit"]) > 0:
            size = min(size, int(self.core.config["page_limit"]))
        page = mine[:size]
        next_cursor = page[-1]["create_time"] * 1000 if page else cursor
        return json_response({"data": {
            "videos": [self._video_json(v, fields) for v in page],
            "cursor": next_cursor, "has_more": len(mine) > len(page)},
            "error": {"code": "ok", "message": "", "log_id": log_id(self.core)}})

    # web ---------------------------------------------------------------------
    def web_account_info(self, req):
        sid = req.cookies().get("sessionid")
        for a in self.core.state["accounts"].values():
            if sid and a["sessionid"] == sid and a["cookies_valid"]:
                return json_response({"data": {
                    "user_id_str": a["user_id"], "username": a["username"],
                    "screen_name": a["display_name"],
                    "avatar_url": self._avatar_url(a["username"])},
                    "message": "success"})
        return json_response({"data": {
            "description": "Session expired, please sign in again.",
            "error_code": 8}, "message": "error"})

    def share(self, req):
        with self.core.lock:
            v = self.core.state["videos"].get(req.params["id"])
            ok = v is not None and v["account"] == req.params["user"]
        if not ok:
            return error_page(404, "Video currently unavailable",
                              "This video is unavailable.")
        return file_response(req, self._video_path(v["id"]), "video/mp4")

    def cover(self, req):
        vid = req.params["file"].rsplit(".", 1)[0]
        with self.core.lock:
            v = self.core.state["videos"].get(vid)
            now = self.core.now()
        try:
            exp = int(req.query.get("x-expires", ""))
        except ValueError:
            exp = -1
        if v is None or exp < now or req.query.get("x-signature") != self._cover_sig(vid, exp):
            return simcore.text_response("Access Denied", 403)
        src = self._clip(v["stock"])
        return file_response(req, src["cover"], "image/jpeg")

    def avatar(self, req):
        name = req.params["file"].rsplit(".", 1)[0]
        if self.core.account(name) is None:
            return simcore.text_response("Not Found", 404)
        return file_response(req, self._stock()[0]["cover"], "image/jpeg")

    # errors ------------------------------------------------------------------
    def fault_response(self, req, fault):
        st = fault["status"]
        if req.path.startswith("/v2/oauth/"):
            err = {429: "rate_limit_exceeded", 401: "invalid_client"}.get(
                st, "invalid_request" if st < 500 else "server_error")
            return self._oauth_error(err, "injected fault", st)
        code = {429: "rate_limit_exceeded", 401: "access_token_invalid",
                400: "invalid_params"}.get(st, "internal_error")
        r = self._api_error(code)
        r.status = st
        return r

    def not_found(self, req):
        if req.path.startswith("/v2/"):
            return json_response({"data": {}, "error": {
                "code": "invalid_params", "message": "Unknown endpoint.",
                "log_id": log_id(self.core)}}, 404)
        return error_page(404, "Page not available", "Couldn't find this page.")

    # control -----------------------------------------------------------------
    def ctl_video(self, req):
        b = req.json() or {}
        if self.core.account(b.get("account", "")) is None:
            return json_response({"error": "unknown account"}, 404)
        name = b.get("stock")
        if name is not None and name not in media.stock_names():
            return json_response({"error": "unknown stock clip",
                                  "stock": media.stock_names()}, 400)
        v = self._new_video(b["account"], b.get("description") or "", b.get("title"),
                            b.get("create_time"), stock_name=name)
        out = self._video_json(v)
        out.update({"account": v["account"], "bytes": v["bytes"], "sha256": v["sha256"]})
        return json_response(out, 201)

    def ctl_cookies_expire(self, req):
        b = req.json() or {}
        a = self.core.account(b.get("account", ""))
        if a is None:
            return json_response({"error": "unknown account"}, 404)
        a["cookies_valid"] = False
        return json_response({"account": a["username"], "cookies_valid": False})

    def ctl_webhook(self, req):
        core = self.core
        b = req.json() or {}
        with core.lock:
            a = core.account(b.get("account", ""))
            url = b.get("url") or core.app.get("webhook_url")
            secret = core.app.get("client_secret", "")
            if a is None:
                return json_response({"error": "unknown account"}, 404)
            if not url or not simcore.is_loopback_host(
                    urllib.parse.urlsplit(url).hostname or ""):
                return json_response({"error": "webhook url missing or not loopback"}, 400)
            ts = int(b.get("timestamp") or core.now())
            body = json.dumps({"client_key": core.app.get("client_key", ""),
                               "event": b.get("event", "authorization.removed"),
                               "create_time": ts, "user_openid": a["open_id"],
                               "content": json.dumps(b.get("content", {"reason": 1}))})
            key = secret + "-wrong" if b.get("bad_signature") else secret
            sig = "t=%d,s=%s" % (ts, simcore.hmac_sha256_hex(key, "%d.%s" % (ts, body)))
            timeout = float(core.config["webhook_timeout"])
        r = urllib.request.Request(url, data=body.encode(), method="POST", headers={
            "Content-Type": "application/json", "TikTok-Signature": sig,
            "User-Agent": "platformsim-tiktok-webhook"})
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                return json_response({"status": resp.status,
                                      "body": resp.read(4096).decode("utf-8", "replace")})
        except urllib.error.HTTPError as e:
            return json_response({"status": e.code,
                                  "body": e.read(4096).decode("utf-8", "replace")})
        except Exception as e:
            return json_response({"status": 0, "error": str(e)})


def create(core):
    return TikTokSim(core)
