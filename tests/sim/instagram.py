"""Instagram (Facebook Login + Graph API + rupload) simulator.

Routes ({ver} like v21.0; base = facebook_auth_url = facebook_graph_url =
instagram_upload_url):
  GET  /{ver}/dialog/oauth                   consent (client_id, redirect_uri, state, scope)
  GET  /{ver}/oauth/access_token             code exchange (short-lived) or
                                             grant_type=fb_exchange_token (long-lived; renews)
  GET  /{ver}/me?fields=id,name
  GET  /{ver}/me/accounts?fields=id,name,instagram_business_account{id,username,name,profile_picture_url}
  GET  /{ver}/{id}?fields=...                IG user, page, container (status_code,status) or media
  POST /{ver}/{ig-user-id}/media             REELS container: video_url (fetched over loopback)
                                             or upload_type=resumable (-> uri)
  POST /ig-api-upload/{ver}/{container}      Authorization: OAuth <token>, offset, file_size, bytes
  POST /{ver}/{ig-user-id}/media_publish     creation_id
  GET  /{ver}/{ig-user-id}/media             published media, newest first
  GET  /{ver}/{ig-user-id}/content_publishing_limit?fields=quota_usage,config
Tokens: `Authorization: Bearer` or the access_token parameter.  Every Graph
answer carries x-app-usage; IG user endpoints x-business-use-case-usage.
Control (besides the common ones):
  POST /__control/accounts {"login","name"?,"page_name"?,"ig_username"?,"with_instagram":true}
  POST /__control/containers/expire {"id"}   a container becomes EXPIRED
Config knobs: short_ttl, long_ttl, processing_seconds, container_ttl,
container_limit, publish_limit, publish_window, max_video_bytes,
app_call_limit (calls/hour behind x-app-usage), fetch_timeout.
"""
import json
import os
import re
import struct
import time
import zlib

import simcore
from simcore import Abort, error_page, json_response, redirect_response

SCOPES = ("public_profile", "email", "instagram_basic", "instagram_content_publish",
          "instagram_manage_comments", "instagram_manage_insights",
          "pages_show_list", "pages_read_engagement", "pages_manage_posts",
          "business_management")

VERSION_RE = re.compile(r"v\d+\.\d+\Z")

STATUS_TEXT = {
    "IN_PROGRESS": "In Progress: Media is still being processed.",
    "FINISHED": "Finished: Media has been uploaded and it is ready to be published.",
    "PUBLISHED": "Published: Media has been successfully published.",
    "EXPIRED": "Expired: The media container was not published within 24 hours.",
}

IG_USER_FIELDS = ("id", "ig_id", "username", "name", "profile_picture_url",
                  "followers_count", "follows_count", "media_count", "biography",
                  "website")


def tiny_png(rgb=(225, 48, 108)):
    """A 1x1 PNG (profile pictures)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"\x00" + bytes(rgb)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def fbtrace():
    return "A" + simcore.random_token(15).replace("-", "x").replace("_", "y")[:20]


def parse_fields(text):
    """Graph field expansion: "a,b{c,d},e" -> {"a": None, "b": {"c":..,"d":..}, "e": None}."""
    def parse(i):
        res, name = {}, ""
        while i < len(text):
            ch = text[i]
            if ch == ",":
                if name.strip():
                    res[name.strip()] = None
                name = ""
            elif ch == "{":
                sub, i = parse(i + 1)
                res[name.strip()] = sub
                name = ""
                continue
            elif ch == "}":
                if name.strip():
                    res[name.strip()] = None
                return res, i + 1
            else:
                name += ch
            i += 1
        if name.strip():
            res[name.strip()] = None
        return res, i
    return parse(0)[0]


class GraphError(Abort):
    def __init__(self, message, code, subcode=None, etype="OAuthException",
                 status=400, transient=None, user_title=None, user_msg=None):
        err = {"message": message, "type": etype, "code": code}
        if subcode is not None:
            err["error_subcode"] = subcode
        if transient is not None:
            err["is_transient"] = transient
        if user_title:
            err["error_user_title"] = user_title
        if user_msg:
            err["error_user_msg"] = user_msg
        err["fbtrace_id"] = fbtrace()
        super().__init__(json_response({"error": err}, status))


def no_object(oid, method="get"):
    return GraphError("Unsupported %s request. Object with ID '%s' does not exist, cannot "
                      "be loaded due to missing permissions, or does not support this "
                      "operation. Please read the Graph API documentation at "
                      "https://developers.facebook.com/docs/graph-api" % (method, oid),
                      100, 33, "GraphMethodException")


def permission_error(perm):
    return GraphError("(#10) Application does not have permission for this action "
                      "(requires %s)" % perm, 10)


SEED = [
    # login, name, page name, IG username (None = page without IG account)
    ("sandbox_user", "Sandbox User", "Sandbox Page", "sandbox_reels"),
    ("no_business", "No Business", "Plain Page", None),
]


class InstagramSim(simcore.Platform):
    name = "instagram"
    config_defaults = {
        "short_ttl": 3600, "long_ttl": 5184000, "processing_seconds": 3,
        "container_ttl": 86400, "container_limit": 400, "publish_limit": 50,
        "publish_window": 86400, "max_video_bytes": 300 * 1024 * 1024,
        "app_call_limit": 4800, "fetch_timeout": 60,
    }

    # state -------------------------------------------------------------------
    def _st(self, key):
        return self.core.state.setdefault(key, {})

    def seed(self):
        for login, name, page, ig in SEED:
            self._new_account(login, name, page, ig)

    def start(self):
        for k in ("pages", "ig_users", "containers", "media"):
            self._st(k)
        # A fetch cut short by a restart fails like a real download would.
        for c in self._st("containers").values():
            if c["state"] == "fetching":
                c["state"] = "error"
                c["error"] = "Media download has failed."

    def _new_account(self, login, name, page_name, ig_username):
        core = self.core
        fb_id = simcore.random_digits(16)
        page_id = simcore.random_digits(15)
        core.state["accounts"][login] = {"login": login, "name": name,
                                         "fb_user_id": fb_id, "pages": [page_id]}
        ig_id = None
        if ig_username:
            ig_id = "178414" + simcore.random_digits(11)
            self._st("ig_users")[ig_id] = {
                "id": ig_id, "ig_id": int(simcore.random_digits(10)),
                "username": ig_username, "name": name + " Reels",
                "page_id": page_id, "followers_count": 321, "follows_count": 12,
                "biography": "Sandbox business account", "website": ""}
        self._st("pages")[page_id] = {"id": page_id, "name": page_name,
                                      "owner": login, "ig_user_id": ig_id,
                                      "category": "Creator"}
        return self._account_json(login)

    def _account_json(self, login):
        a = self.core.account(login)
        page = self._st("pages")[a["pages"][0]]
        ig = self._st("ig_users").get(page["ig_user_id"] or "")
        return {"login": login, "name": a["name"], "fb_user_id": a["fb_user_id"],
                "page": {"id": page["id"], "name": page["name"]},
                "instagram": {"id": ig["id"], "username": ig["username"]} if ig else None}

    def create_account(self, body):
        login = body.get("login") or ""
        if not re.fullmatch(r"[A-Za-z0-9._]{1,64}", login):
            raise Abort(json_response({"error": "login: letters, digits, . and _"}, 400))
        if login in self.core.state["accounts"]:
            raise Abort(json_response({"error": "account exists"}, 409))
        ig = None
        if body.get("with_instagram", True):
            ig = body.get("ig_username") or login + "_ig"
        self._new_account(login, body.get("name") or login,
                          body.get("page_name") or login + " Page", ig)
        return self._account_json(login)

    def public_state(self):
        return {k: self._st(k) for k in ("pages", "ig_users", "containers", "media")}

    # routes ------------------------------------------------------------------
    def routes(self, r):
        r.route("GET", "/pictures/{file}", self.picture)
        r.route("GET", "/{ver}/dialog/oauth", self.dialog)
        r.route("GET", "/{ver}/oauth/access_token", self.access_token)
        r.route("GET", "/{ver}/me", self.me)
        r.route("GET", "/{ver}/me/accounts", self.me_accounts)
        r.route("POST", "/ig-api-upload/{ver}/{container}", self.rupload, lock=False)
        r.route("GET", "/{ver}/{oid}", self.get_object)
        r.route("POST", "/{ver}/{oid}/media", self.create_container)
        r.route("GET", "/{ver}/{oid}/media", self.list_media)
        r.route("POST", "/{ver}/{oid}/media_publish", self.media_publish)
        r.route("GET", "/{ver}/{oid}/content_publishing_limit", self.publishing_limit)
        r.control("POST", "containers/expire", self.ctl_expire_container)

    def not_found(self, req):
        return json_response({"error": {
            "message": "Unknown path components: %s" % req.path, "type": "OAuthException",
            "code": 2500, "fbtrace_id": fbtrace()}}, 400)

    def fault_response(self, req, fault):
        st = fault["status"]
        if st == 429 or st == 403:
            code, msg = 4, "(#4) Application request limit reached"
        elif st >= 500:
            code, msg = 2, "An unexpected error has occurred. Please retry your request later."
        else:
            code, msg = 1, "An unknown error occurred"
        return json_response({"error": {"message": msg, "type": "OAuthException",
                                        "code": code, "is_transient": True,
                                        "fbtrace_id": fbtrace()}}, st)

    # helpers -----------------------------------------------------------------
    def _version(self, req):
        if not VERSION_RE.match(req.params.get("ver", "")):
            raise Abort(self.not_found(req))

    def _graph_params(self, req):
        vals = dict(req.query)
        ctype = (req.header("Content-Type") or "").lower()
        if req.has_body:
            if "json" in ctype:
                body = req.json()
                if isinstance(body, dict):
                    vals.update({k: v if isinstance(v, str) else json.dumps(v)
                                 for k, v in body.items()})
            elif "urlencoded" in ctype or "multipart" in ctype:
                vals.update(req.form())
        return vals

    def _usage(self, req):
        """Count the call for x-app-usage; code 4 at 100 %."""
        core = self.core
        limit = max(1, int(core.config["app_call_limit"]))
        rl = core.rate_limit(("fb-app",), limit, 3600)
        used = 100 if not rl.allowed else int(100 * (limit - rl.remaining) / limit)
        req.app_usage = json.dumps({"call_count": used, "total_cputime": used // 2,
                                    "total_time": used // 2}, separators=(",", ":"))
        if not rl.allowed:
            raise GraphError("(#4) Application request limit reached", 4,
                             transient=True)

    def _auth(self, req, vals=None):
        """The token record of the request's user token (raises 190/2500):
        Authorization: Bearer, else the access_token parameter."""
        token = req.bearer()
        if token is None:
            token = (vals if vals is not None else req.query).get("access_token")
        return self._check_user_token(token)

    def _check_user_token(self, token):
        core = self.core
        if not token:
            raise GraphError("An active access token must be used to query information "
                             "about the current user.", 2500)
        rec, problem = core.check_token(token, "access")
        if problem in ("unknown", "wrong_kind"):
            raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
        if problem == "revoked":
            raise GraphError("Error validating access token: The user has not authorized "
                             "application %s." % core.app.get("app_id", ""), 190, 458)
        if problem == "expired":
            when = time.strftime("%A, %d-%b-%y %H:%M:%S PST", time.gmtime(rec["expires_at"]))
            raise GraphError("Error validating access token: Session has expired on %s. "
                             "The current time is %s." % (
                                 when, time.strftime("%A, %d-%b-%y %H:%M:%S PST",
                                                     time.gmtime(core.now()))), 190, 463)
        return rec

    def _need(self, rec, *perms):
        for p in perms:
            if p not in rec["scopes"]:
                raise permission_error(p)

    def _owned_ig(self, rec, oid):
        ig = self._st("ig_users").get(oid)
        if ig is None or self._st("pages")[ig["page_id"]]["owner"] != rec["account"]:
            return None
        return ig

    def _reply(self, req, obj, status=200):
        r = json_response(obj, status)
        self._usage_headers(req, r)
        return r

    def _usage_headers(self, req, r):
        if getattr(req, "app_usage", None):
            r.set_header("x-app-usage", req.app_usage)
        if getattr(req, "buc_usage", None):
            r.set_header("x-business-use-case-usage", req.buc_usage)
        return r

    def _buc(self, req, ig):
        used = self._published_in_window(ig["id"])
        pct = int(100 * used / max(1, int(self.core.config["publish_limit"])))
        req.buc_usage = json.dumps({ig["id"]: [{
            "type": "instagram", "call_count": pct, "total_cputime": pct // 2,
            "total_time": pct // 2, "estimated_time_to_regain_access": 0}]},
            separators=(",", ":"))

    def _graph(self, req, fn):
        """Run a Graph handler: usage accounting and headers on every answer."""
        self._version(req)
        try:
            self._usage(req)
            return self._usage_headers(req, fn())
        except Abort as a:
            raise Abort(self._usage_headers(req, a.response))

    def picture(self, req):
        if req.params["file"][:-4] not in self._st("ig_users"):
            return simcore.text_response("Not Found", 404)
        return simcore.Response(200, tiny_png(), content_type="image/png")

    # Facebook Login ------------------------------------------------------------
    def dialog(self, req):
        self._version(req)
        core = self.core
        q = req.query
        if not core.app or q.get("client_id") != core.app.get("app_id"):
            return error_page(400, "Invalid App ID",
                              "The provided app ID does not look like a valid app ID.")
        redirect_uri = q.get("redirect_uri", "")
        if not core.redirect_uri_registered(redirect_uri):
            return error_page(400, "URL blocked",
                              "This redirect failed because the redirect URI is not "
                              "whitelisted in the app's Client OAuth Settings.")
        if q.get("response_type", "code") != "code":
            return error_page(400, "Error", "response_type must be code for this app.")
        scopes = [s for s in re.split(r"[,\s]+", q.get("scope", "")) if s]
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            return error_page(400, "Invalid Scopes", "Invalid Scopes: " + ", ".join(bad))
        pending = {"redirect_uri": redirect_uri, "state": q.get("state"),
                   "scopes": sorted(set(scopes + ["public_profile"])),
                   "client": q["client_id"]}
        accounts = [(k, a["name"]) for k, a in sorted(core.state["accounts"].items())]
        return core.consent_page(pending, accounts, "Log in With Facebook",
                                 "The app would like: " + ", ".join(scopes))

    def consent(self, p, account, allowed):
        if not allowed:
            r = redirect_response(p["redirect_uri"], {
                "error": "access_denied", "error_reason": "user_denied",
                "error_description": "Permissions error", "state": p["state"]})
        else:
            code = self.core.issue_code(p["client"], p["redirect_uri"], account,
                                        p["scopes"], value=simcore.random_token(96))
            r = redirect_response(p["redirect_uri"], {"code": code, "state": p["state"]})
        r.set_header("Location", r.header("Location") + "#_=_")
        return r

    def access_token(self, req):
        return self._graph(req, lambda: self._access_token(req))

    def _access_token(self, req):
        core = self.core
        q = req.query
        app = core.app
        if not app or q.get("client_id") != app.get("app_id"):
            raise GraphError("Error validating application. Invalid application ID.", 101)
        if not app.get("app_secret") or q.get("client_secret") != app["app_secret"]:
            raise GraphError("Error validating client secret.", 1)
        if q.get("grant_type") == "fb_exchange_token":
            rec = self._check_user_token(q.get("fb_exchange_token", ""))
            if rec["client"] != app.get("app_id"):
                raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
            tok = core.issue_token("access", rec["account"], core.config["long_ttl"],
                                   rec["client"], rec["scopes"], rec["grant"],
                                   nbytes=96, prefix="EAA", lifetime="long")
            return json_response({"access_token": tok, "token_type": "bearer",
                                  "expires_in": int(core.config["long_ttl"])})
        if "code" not in q:
            raise GraphError("Missing authorization code", 1)
        rec, problem = core.redeem_code(q.get("code"))
        if problem == "used":
            core.revoke_tokens(grant=rec["grant"])
            raise GraphError("This authorization code has been used.", 100, 36009)
        if problem == "expired":
            raise GraphError("This authorization code has expired.", 100, 36007)
        if problem or rec["client"] != app.get("app_id"):
            raise GraphError("Invalid verification code format.", 100)
        if q.get("redirect_uri") != rec["redirect_uri"]:
            raise GraphError("Error validating verification code. Please make sure your "
                             "redirect_uri is identical to the one you used in the OAuth "
                             "dialog request", 100, 36008)
        tok = core.issue_token("access", rec["account"], core.config["short_ttl"],
                               rec["client"], rec["scopes"], rec["grant"],
                               nbytes=96, prefix="EAA", lifetime="short")
        return json_response({"access_token": tok, "token_type": "bearer",
                              "expires_in": int(core.config["short_ttl"])})

    # Graph reads -------------------------------------------------------------
    def me(self, req):
        def run():
            rec = self._auth(req)
            a = self.core.account(rec["account"])
            fields = parse_fields(req.query.get("fields") or "id,name")
            full = {"id": a["fb_user_id"], "name": a["name"]}
            return json_response({k: full[k] for k in fields if k in full})
        return self._graph(req, run)

    def _page_json(self, page, fields):
        out = {}
        for f, sub in fields.items():
            if f in ("id", "name", "category"):
                out[f] = page[f]
            elif f == "instagram_business_account" and page["ig_user_id"]:
                ig = self._st("ig_users")[page["ig_user_id"]]
                out[f] = self._ig_json(ig, sub or {"id": None})
        return out

    def _ig_json(self, ig, fields):
        media = [m for m in self._st("media").values() if m["ig_user_id"] == ig["id"]]
        full = dict(ig, media_count=len(media),
                    profile_picture_url="%s/pictures/%s.png" % (self.core.base_url, ig["id"]))
        return {f: full[f] for f in fields if f in IG_USER_FIELDS}

    def me_accounts(self, req):
        def run():
            rec = self._auth(req)
            self._need(rec, "pages_show_list")
            fields = parse_fields(req.query.get("fields") or "id,name")
            if "instagram_business_account" in fields:
                self._need(rec, "instagram_basic")
            a = self.core.account(rec["account"])
            data = [self._page_json(self._st("pages")[p], fields) for p in a["pages"]]
            return json_response({"data": data, "paging": {"cursors": {
                "before": simcore.random_token(12), "after": simcore.random_token(12)}}})
        return self._graph(req, run)

    def get_object(self, req):
        def run():
            rec = self._auth(req)
            oid = req.params["oid"]
            fields = parse_fields(req.query.get("fields") or "id")
            ig = self._owned_ig(rec, oid)
            if ig is not None:
                self._need(rec, "instagram_basic")
                self._buc(req, ig)
                return json_response(self._ig_json(ig, fields))
            page = self._st("pages").get(oid)
            if page is not None and page["owner"] == rec["account"]:
                return json_response(self._page_json(page, fields))
            c = self._st("containers").get(oid)
            if c is not None and self._owned_ig(rec, c["ig_user_id"]):
                status = self._container_status(c)
                full = {"id": c["id"], "status_code": status,
                        "status": self._status_text(c, status)}
                return json_response({k: full[k] for k in fields if k in full} or
                                     {"id": c["id"]})
            m = self._st("media").get(oid)
            if m is not None and self._owned_ig(rec, m["ig_user_id"]):
                full = self._media_json(m)
                return json_response({k: full[k] for k in fields if k in full} or
                                     {"id": m["id"]})
            raise no_object(oid)
        return self._graph(req, run)

    def _media_json(self, m):
        return {"id": m["id"], "caption": m["caption"], "media_type": "VIDEO",
                "media_product_type": "REELS", "timestamp": time.strftime(
                    "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(m["time"])),
                "permalink": "%s/reel/%s/" % (self.core.base_url, m["shortcode"]),
                "shortcode": m["shortcode"], "username": m["username"]}

    def list_media(self, req):
        def run():
            rec = self._auth(req)
            ig = self._owned_ig(rec, req.params["oid"])
            if ig is None:
                raise no_object(req.params["oid"])
            self._need(rec, "instagram_basic")
            self._buc(req, ig)
            fields = parse_fields(req.query.get("fields") or "id")
            items = sorted((m for m in self._st("media").values()
                            if m["ig_user_id"] == ig["id"]),
                           key=lambda m: m["time"], reverse=True)
            data = [{k: v for k, v in self._media_json(m).items() if k in fields} or
                    {"id": m["id"]} for m in items]
            return json_response({"data": data, "paging": {}})
        return self._graph(req, run)

    # containers --------------------------------------------------------------
    def _container_status(self, c):
        now = self.core.now()
        if c["state"] == "published":
            return "PUBLISHED"
        if c["state"] == "error":
            return "ERROR"
        if c["state"] == "expired" or now >= c["created_at"] + \
                float(self.core.config["container_ttl"]):
            return "EXPIRED"
        if c["state"] == "ready" and now >= c["ready_at"]:
            return "FINISHED"
        return "IN_PROGRESS"

    def _status_text(self, c, status):
        if status == "ERROR":
            return "Error: " + (c.get("error") or "Media upload has failed.")
        return STATUS_TEXT[status]

    def _published_in_window(self, ig_id):
        since = self.core.now() - float(self.core.config["publish_window"])
        return sum(1 for m in self._st("media").values()
                   if m["ig_user_id"] == ig_id and m["time"] > since)

    def _publishing_account(self, req):
        """The parameters, token record and Instagram account of a
        publishing call on /{ig-user-id}/..., its permissions checked and
        its business use case usage counted."""
        vals = self._graph_params(req)
        rec = self._auth(req, vals)
        ig = self._owned_ig(rec, req.params["oid"])
        if ig is None:
            raise no_object(req.params["oid"], "post")
        self._need(rec, "instagram_basic", "instagram_content_publish")
        self._buc(req, ig)
        return vals, rec, ig

    def create_container(self, req):
        def run():
            core = self.core
            vals, rec, ig = self._publishing_account(req)
            mtype = vals.get("media_type", "")
            if mtype != "REELS":
                raise GraphError("The parameter media_type must be REELS for video "
                                 "(VIDEO is no longer supported).", 100, 2207023,
                                 user_title="Unsupported media type")
            resumable = vals.get("upload_type") == "resumable"
            url = vals.get("video_url")
            if not resumable and not url:
                raise GraphError("(#100) The parameter video_url is required", 100)
            caption = vals.get("caption", "")
            if len(caption) > 2200 or caption.count("#") > 30:
                raise GraphError("(#100) The caption is too long or has too many hashtags",
                                 100, 2207018)
            now = core.now()
            recent = sum(1 for c in self._st("containers").values()
                         if c["ig_user_id"] == ig["id"] and c["created_at"] > now - 86400)
            if recent >= int(core.config["container_limit"]):
                raise GraphError("Application request limit reached: too many containers "
                                 "in 24 hours", 9, 2207042, transient=True)
            cid = simcore.random_digits(17)
            c = {"id": cid, "ig_user_id": ig["id"], "account": rec["account"],
                 "created_at": now, "caption": caption,
                 "share_to_feed": vals.get("share_to_feed", "true").lower() != "false",
                 "cover_url": vals.get("cover_url"),
                 "thumb_offset": vals.get("thumb_offset"),
                 "state": "fetching" if url and not resumable else "uploading",
                 "source": "resumable" if resumable else "video_url",
                 "path": os.path.join(core.data_dir, "containers", cid + ".mp4"),
                 "bytes": 0, "sha256": None, "ready_at": None, "error": None,
                 "file_size": None, "media_id": None}
            self._st("containers")[cid] = c
            if resumable:
                return json_response({"id": cid, "uri": "%s/ig-api-upload/%s/%s" % (
                    core.base_url, req.params["ver"], cid)})
            core.spawn(self._fetch, cid, url)
            return json_response({"id": cid})
        return self._graph(req, run)

    def _accept_file(self, c, nbytes, digest):
        """After the bytes are in: check them and start processing."""
        c["bytes"] = nbytes
        c["sha256"] = digest
        if not simcore.is_mp4(c["path"]):
            c["state"] = "error"
            c["error"] = "The video file is not an MP4/MOV container (2207026)."
            return
        c["state"] = "ready"
        # Processing time counts from creation, so a test can advance the
        # clock without waiting for the fetch first.
        c["ready_at"] = c["created_at"] + float(self.core.config["processing_seconds"])

    def _fetch(self, cid, url):
        core = self.core
        with core.lock:
            c = self._st("containers")[cid]
            path = c["path"]
            limit = int(core.config["max_video_bytes"])
            timeout = float(core.config["fetch_timeout"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            n, digest = core.fetch_to_file(url, path, limit, timeout)
        except simcore.FetchError as e:
            with core.lock:
                c["state"] = "error"
                c["error"] = "Media download has failed. The media URI doesn't meet " \
                             "our requirements. (%s)" % e
            core.log("container %s: video_url fetch failed: %s" % (cid, e))
            core.save()
            return
        with core.lock:
            self._accept_file(c, n, digest)
        core.save()

    def rupload(self, req):
        core = self.core
        self._version(req)
        cid = req.params["container"]

        def fail(status, etype, message):
            return json_response({"debug_info": {"retriable": False, "type": etype,
                                                 "message": message}}, status)
        with core.lock:
            token = req.authorization("OAuth")
            if not token:
                return fail(401, "AuthException", "Authorization: OAuth <token> required")
            rec, problem = core.check_token(token, "access")
            if problem:
                return fail(401, "AuthException", "Invalid OAuth access token")
            c = self._st("containers").get(cid)
            if c is None or c["source"] != "resumable" or \
                    self._owned_ig(rec, c["ig_user_id"]) is None:
                return fail(404, "NotFoundError", "Unknown upload session")
            if c["state"] not in ("uploading",):
                return fail(400, "ProcessingFailedError", "Upload already complete")
            try:
                offset = int(req.header("offset", "0"))
                file_size = int(req.header("file_size", ""))
            except ValueError:
                return fail(400, "BadRequestError", "offset and file_size headers required")
            limit = int(core.config["max_video_bytes"])
            if file_size <= 0 or file_size > limit:
                return fail(400, "BadRequestError", "file_size must be 1..%d" % limit)
            if c["file_size"] not in (None, file_size):
                return fail(400, "BadRequestError", "file_size changed")
            if offset != c["bytes"] and offset != 0:
                return fail(400, "BadRequestError",
                            "offset must be 0 or %d" % c["bytes"])
            if req.content_length is not None and offset + req.content_length > file_size:
                return fail(400, "BadRequestError", "more bytes than file_size")
            c["file_size"] = file_size
            path = c["path"]
        try:
            n, _ = req.save_body(path, limit=file_size - offset, offset=offset)
        except simcore.BodyTooLarge:
            return fail(400, "BadRequestError", "more bytes than file_size")
        except simcore.ClientGone as g:
            with core.lock:
                c["bytes"] = offset + g.received
            core.save()
            raise
        with core.lock:
            c["bytes"] = offset + n
            if c["bytes"] < file_size:
                return json_response({"success": False, "offset": c["bytes"],
                                      "message": "Partial upload; resume at offset"}, 200)
            os.truncate(path, file_size)
            self._accept_file(c, file_size, simcore.file_sha256(path))
            if c["state"] == "error":
                return fail(400, "ProcessingFailedError", c["error"])
        return json_response({"success": True, "message": "Upload successful."})

    def media_publish(self, req):
        def run():
            core = self.core
            vals, rec, ig = self._publishing_account(req)
            cid = vals.get("creation_id", "")
            if not cid:
                raise GraphError("(#100) The parameter creation_id is required", 100)
            c = self._st("containers").get(cid)
            if c is None or c["ig_user_id"] != ig["id"]:
                raise no_object(cid, "post")
            status = self._container_status(c)
            if status != "FINISHED":
                raise GraphError("Media ID is not available", 9007, 2207027,
                                 user_title="Media not ready for publishing",
                                 user_msg="The media is not ready for publishing "
                                          "(status %s)." % status)
            if self._published_in_window(ig["id"]) >= int(core.config["publish_limit"]):
                raise GraphError("Application request limit reached", 9, 2207042,
                                 user_title="Cannot publish",
                                 user_msg="You reached maximum number of posts that is "
                                          "allowed to be published by Content Publishing API.")
            mid = simcore.random_digits(17)
            now = core.now()
            m = {"id": mid, "ig_user_id": ig["id"], "username": ig["username"],
                 "container_id": cid, "caption": c["caption"], "time": int(now),
                 "shortcode": simcore.random_token(8).replace("-", "A").replace("_", "b")[:11]}
            self._st("media")[mid] = m
            c["state"] = "published"
            c["media_id"] = mid
            core.publish({"account": ig["username"], "ig_user_id": ig["id"],
                          "facebook_user": rec["account"], "remote_id": mid,
                          "container_id": cid, "caption": c["caption"],
                          "share_to_feed": c["share_to_feed"], "source": c["source"],
                          "media_sha256": c["sha256"], "bytes": c["bytes"]})
            return json_response({"id": mid})
        return self._graph(req, run)

    def publishing_limit(self, req):
        def run():
            rec = self._auth(req)
            ig = self._owned_ig(rec, req.params["oid"])
            if ig is None:
                raise no_object(req.params["oid"])
            self._need(rec, "instagram_basic", "instagram_content_publish")
            self._buc(req, ig)
            fields = parse_fields(req.query.get("fields") or "quota_usage")
            full = {"quota_usage": self._published_in_window(ig["id"]),
                    "config": {"quota_total": int(self.core.config["publish_limit"]),
                               "quota_duration": int(self.core.config["publish_window"])}}
            return json_response({"data": [{k: full[k] for k in fields if k in full}]})
        return self._graph(req, run)

    # control -------------------------------------------------------------------
    def ctl_expire_container(self, req):
        b = req.json() or {}
        c = self._st("containers").get(str(b.get("id", "")))
        if c is None:
            return json_response({"error": "unknown container"}, 404)
        if c["state"] != "published":
            c["state"] = "expired"
        return json_response({"id": c["id"], "status_code": self._container_status(c)})


def create(core):
    return InstagramSim(core)
