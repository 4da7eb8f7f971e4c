"""X (Twitter) simulator: OAuth 1.0a three-legged, OAuth 2 with PKCE, users,
media upload v2, posts, rate limits.

Paths (base = x_api_url; x_oauth2_auth_url = {base}/i/oauth2/authorize):
  POST /oauth/request_token          OAuth 1.0a signed, oauth_callback must be a
                                     registered callback_url (or "oob") else 403/415
  GET  /oauth/authorize?oauth_token= consent page (also /oauth/authenticate)
  POST /oauth/access_token           signed with the request token + oauth_verifier
  POST /1.1/oauth/invalidate_token   signed; revokes the access token
  GET  /i/oauth2/authorize           OAuth 2 consent (PKCE required)
  POST /2/oauth2/token               authorization_code | refresh_token (rotating);
                                     Basic auth when the app has a client_secret,
                                     else client_id in the body
  POST /2/oauth2/revoke
  GET  /2/users/me?user.fields=
  GET  /2/users/{id}/tweets?max_results=&since_id=&until_id=&pagination_token=
  POST /2/tweets                     {"text","media":{"media_ids":[...]}} -> 201
  POST /2/media/upload/initialize    {"media_type","total_bytes","media_category"}
  POST /2/media/upload/{id}/append   multipart (media, segment_index) or JSON base64
  POST /2/media/upload/{id}/finalize
  GET  /2/media/upload?command=STATUS&media_id=
  GET  /profile_images/{id}/normal.png

Every OAuth 1.0a request is verified with python3-oauthlib's signature code
(query + urlencoded body + oauth_* header parameters; JSON and multipart bodies
are not signed): bad signature or reused nonce -> 401 code 32, timestamp more
than `timestamp_window` s from real time -> 401 code 135, unknown or revoked
token -> 401 code 89.  Every response carries x-rate-limit-limit/-remaining/
-reset; posts also x-app-limit-24hour-*.  Media bodies are streamed to disk.

Control routes (besides the common ones): none.  Config knobs: see
config_defaults.  Accounts: POST /__control/accounts {"username","name"?}.
"""
import base64
import math
import os
import re
import secrets
import shutil
import threading
import time
import unicodedata
import urllib.parse
from collections import deque

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

import simcore
from simcore import Abort, error_page, json_response, redirect_response

OAUTH2_SCOPES = {"tweet.read", "tweet.write", "tweet.moderate.write", "users.read",
                 "follows.read", "follows.write", "offline.access", "space.read",
                 "mute.read", "mute.write", "like.read", "like.write", "list.read",
                 "list.write", "block.read", "block.write", "bookmark.read",
                 "bookmark.write", "media.write", "dm.read", "dm.write"}
MEDIA_TYPES = {"video/mp4": "video", "video/quicktime": "video", "video/webm": "video",
               "image/jpeg": "image", "image/png": "image", "image/webp": "image",
               "image/bmp": "image", "image/pjpeg": "image", "image/tiff": "image",
               "image/gif": "gif", "text/srt": "subtitles", "text/vtt": "subtitles"}
MEDIA_CATEGORIES = {"tweet_video": "video", "amplify_video": "video", "dm_video": "video",
                    "tweet_image": "image", "dm_image": "image",
                    "tweet_gif": "gif", "dm_gif": "gif", "subtitles": "subtitles"}
MEDIA_KEY_PREFIX = {"video": "7", "image": "3", "gif": "16", "subtitles": "13"}
TWITTER_EPOCH_MS = 1288834974657
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d8"
    "b2780000000049454e44ae426082")
NONCE_KEEP = 900

# twitter-text v3 weighting: these code point ranges weigh 1, others 2; a URL
# weighs 23; an emoji sequence weighs 2.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL_RE = re.compile(
    r"(?i)\b(?:https?://[^\s<>\"]+|(?:[a-z0-9-]+\.)+(?:com|net|org|io|co|tv|me|ly|app|"
    r"dev|info|biz|us|uk|de|fr|jp|be|gl|gg|so|xyz)\b(?:/[^\s<>\"]*)?)")


def _is_emoji(cp):
    return 0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF


def weighted_length(text):
    """Tweet length as X counts it (twitter-text v3 configuration)."""
    text = unicodedata.normalize("NFC", text)
    weight = 0
    pos = 0
    for m in _URL_RE.finditer(text):
        weight += _plain_weight(text[pos:m.start()]) + 23
        pos = m.end()
    return weight + _plain_weight(text[pos:])


def _plain_weight(s):
    w, i, n = 0, 0, len(s)
    while i < n:
        cp = ord(s[i])
        if _is_emoji(cp):
            i += 1
            # modifiers, variation selectors, ZWJ continuations, tags, keycaps
            while i < n:
                c = ord(s[i])
                if c in (0xFE0F, 0x20E3) or 0x1F3FB <= c <= 0x1F3FF or 0xE0020 <= c <= 0xE007F:
                    i += 1
                elif c == 0x200D and i + 1 < n:
                    i += 2
                else:
                    break
            w += 2
            continue
        w += 1 if any(a <= cp <= b for a, b in _LIGHT_RANGES) else 2
        i += 1
    return w


def v1_error(status, code, message, headers=None):
    return json_response({"errors": [{"code": code, "message": message}]}, status, headers)


def problem(status, title, detail, type_="about:blank", extra=None):
    body = {"title": title, "detail": detail, "type": type_, "status": status}
    if extra:
        body.update(extra)
    return json_response(body, status)


def invalid_request(message, parameter=None, value=None):
    err = {"message": message}
    if parameter:
        err["parameters"] = {parameter: [value] if value is not None else []}
    return json_response({"errors": [err], "title": "Invalid Request",
                          "detail": "One or more parameters to your request was invalid.",
                          "type": "https://api.twitter.com/2/problems/invalid-request"}, 400)


def unauthorized():
    return problem(401, "Unauthorized", "Unauthorized")


def oauth2_error(status, error, description):
    return json_response({"error": error, "error_description": description}, status)


def signature_valid(method, uri, authorization, form_body, consumer_secret, token_secret):
    """Check an OAuth 1.0a HMAC-SHA1 signature with oauthlib (RFC 5849 3.4).

    uri: the absolute request URI as the client addressed it (with query);
    form_body: the urlencoded body when the request is
    application/x-www-form-urlencoded, else ''."""
    try:
        headers = {"Authorization": authorization}
        params = oauth_signature.collect_parameters(
            uri_query=urllib.parse.urlsplit(uri).query, body=form_body or [],
            headers=headers, exclude_oauth_signature=True, with_realm=False)
        oauth = dict(oauth_utils.parse_authorization_header(authorization))
        request = OAuthRequest(uri, method, form_body or "", headers)
        request.params = params
        request.signature = oauth_utils.unescape(oauth.get("oauth_signature", ""))
        return oauth_signature.verify_hmac_sha1(request, consumer_secret, token_secret or "")
    except (ValueError, TypeError):
        return False


class Windows:
    """Sliding-window counters on the simulated clock, with a peek."""

    def __init__(self, core):
        self.core = core
        self.hits = {}
        self.lock = threading.Lock()

    def check(self, key, limit, window, count=True):
        """(allowed, limit, remaining, reset); counts the hit when allowed
        and count is true."""
        with self.lock:
            now = self.core.now()
            q = self.hits.setdefault(key, deque())
            while q and q[0] <= now - window:
                q.popleft()
            allowed = len(q) < limit
            if allowed and count:
                q.append(now)
            reset = int((q[0] if q else now) + window) + 1
            return allowed, limit, max(0, limit - len(q)), reset


class _Sink:
    """A multipart part's destination: a file or a small bounded buffer."""

    def __init__(self, name, path=None, cap=1024 * 1024):
        self.name, self.path, self.cap, self.size = name, path, cap, 0
        self.f = open(path, "wb") if path else None
        self.data = bytearray()

    def write(self, b):
        self.size += len(b)
        if self.size > self.cap:
            raise Abort(invalid_request("Segment is larger than %d bytes." % self.cap,
                                        "media"))
        if self.f:
            self.f.write(b)
        else:
            self.data += b

    def close(self):
        if self.f:
            self.f.close()
            self.f = None


def stream_multipart(req, sink_for, limit):
    """Parse multipart/form-data from the body stream without holding file
    parts in memory.  sink_for(name, filename) -> _Sink.  Returns {name: sink}."""
    m = re.search(r'boundary="?([^";]+)"?', req.header("Content-Type") or "")
    if not m:
        raise Abort(invalid_request("multipart boundary missing"))
    delim = b"\r\n--" + m.group(1).encode()
    buf = b"\r\n"
    state, sink, parts = "pre", None, {}
    try:
        for piece in req.body_chunks(limit):
            buf += piece
            while state != "end":
                if state == "pre":
                    i = buf.find(delim)
                    if i < 0:
                        buf = buf[-len(delim):]
                        break
                    buf, state = buf[i + len(delim):], "after"
                if state == "after":
                    if len(buf) < 2:
                        break
                    if buf[:2] == b"--":
                        state = "end"
                        break
                    if buf[:2] != b"\r\n":
                        raise Abort(invalid_request("malformed multipart body"))
                    buf, state = buf[2:], "head"
                if state == "head":
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        if len(buf) > 16384:
                            raise Abort(invalid_request("malformed multipart body"))
                        break
                    head = buf[:i].decode("utf-8", "replace")
                    buf = buf[i + 4:]
                    disp = ""
                    for line in head.split("\r\n"):
                        if line.lower().startswith("content-disposition:"):
                            disp = line.split(":", 1)[1]
                    nm = re.search(r'\bname="([^"]*)"', disp)
                    fn = re.search(r'\bfilename="([^"]*)"', disp)
                    sink = sink_for(nm.group(1) if nm else "", fn.group(1) if fn else None)
                    parts[sink.name] = sink
                    state = "data"
                if state == "data":
                    i = buf.find(delim)
                    if i < 0:
                        keep = len(delim) - 1
                        if len(buf) > keep:
                            sink.write(buf[:-keep])
                            buf = buf[-keep:]
                        break
                    sink.write(buf[:i])
                    sink.close()
                    buf, state = buf[i + len(delim):], "after"
            if state == "end":
                buf = b""
    finally:
        for s in parts.values():
            s.close()
    if state != "end":
        raise Abort(invalid_request("multipart body ended early"))
    return parts


class XSim(simcore.Platform):
    name = "x"
    config_defaults = {
        "access_ttl": 7200,             # OAuth 2 access tokens
        "refresh_ttl": 0,               # 0 = OAuth 2 refresh tokens live until used
        "rotate_refresh": True,
        "request_token_ttl": 900,
        "code_ttl": 600,                # OAuth 2 authorization codes
        "timestamp_window": 300,        # OAuth 1.0a clock skew allowed (real time)
        "tweet_user_limit": 100, "tweet_user_window": 900,
        "tweet_app_limit": 10000, "tweet_app_window": 86400,
        "media_limit": 1875, "media_window": 900,
        "users_me_limit": 75, "timeline_limit": 900, "read_window": 900,
        "default_limit": 900,           # other endpoints: headers only, never 429
        "processing_seconds": 3,        # finalize -> succeeded
        "processing_fail": False,       # every finalize fails processing
        "media_expire_secs": 86400,
        "max_video_bytes": 512 * 1024 * 1024,
        "max_image_bytes": 5 * 1024 * 1024,
        "max_gif_bytes": 15 * 1024 * 1024,
        "append_max_bytes": 8 * 1024 * 1024,
        "max_tweet_weight": 280,
    }

    def __init__(self, core):
        super().__init__(core)
        self.windows = Windows(core)
        self.nonces = {}                # (consumer, token, timestamp, nonce) -> seen at
        self.nonce_lock = threading.Lock()

    # state -----------------------------------------------------------------
    def seed(self):
        self._new_account("sandbox_x", "Sandbox X")

    def start(self):
        st = self.core.state
        st.setdefault("media", {})
        st.setdefault("tweets", {})
        os.makedirs(os.path.join(self.core.data_dir, "media"), exist_ok=True)

    def _new_account(self, username, name=None):
        acct = {"username": username, "id": simcore.random_digits(18),
                "name": name or username.replace("_", " ").title(),
                "created_at": self._iso(self.core.now())}
        self.core.state["accounts"][username] = acct
        return acct

    def create_account(self, body):
        username = str(body.get("username") or "")
        if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", username):
            raise Abort(json_response({"error": "username: 1-15 of [A-Za-z0-9_]"}, 400))
        if username in self.core.state["accounts"]:
            raise Abort(json_response({"error": "account exists"}, 409))
        return self._new_account(username, body.get("name"))

    def public_state(self):
        return {"media": self.core.state["media"], "tweets": self.core.state["tweets"]}

    @staticmethod
    def _iso(ts):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + \
            ".%03dZ" % int((ts % 1) * 1000)

    def _account_by_id(self, uid):
        for k, a in self.core.state["accounts"].items():
            if a["id"] == uid:
                return k, a
        return None, None

    # framework hooks ------------------------------------------------------------
    def fault_response(self, req, fault):
        st = fault["status"]
        if req.path.startswith("/oauth/") or req.path.startswith("/1.1/"):
            resp = v1_error(st, 131, "Internal error")
        elif req.path.startswith("/2/oauth2/"):
            resp = oauth2_error(st, "server_error", "Internal error")
        elif st == 429:
            resp = problem(429, "Too Many Requests", "Too Many Requests")
        elif st == 503:
            resp = problem(503, "Service Unavailable", "Service Unavailable")
        else:
            resp = problem(st, "Error", "Injected error")
        reset = int(self.core.now()) + int(fault.get("retry_after") or 900)
        resp.set_header("x-rate-limit-limit", self.core.config["default_limit"])
        resp.set_header("x-rate-limit-remaining", 0 if st == 429 else 1)
        resp.set_header("x-rate-limit-reset", reset)
        return resp

    def not_found(self, req):
        resp = problem(404, "Not Found Error", "Sorry, that page does not exist.")
        self._rate_headers(req, resp)
        return resp

    # routes ---------------------------------------------------------------------
    def routes(self, r):
        w = self._wrap
        r.route("POST", "/oauth/request_token", w(self.request_token))
        r.route("GET", "/oauth/authorize", w(self.oauth1_authorize))
        r.route("GET", "/oauth/authenticate", w(self.oauth1_authorize))
        r.route("POST", "/oauth/access_token", w(self.access_token))
        r.route("POST", "/1.1/oauth/invalidate_token", w(self.invalidate_token))
        r.route("GET", "/i/oauth2/authorize", w(self.oauth2_authorize))
        r.route("POST", "/2/oauth2/token", w(self.oauth2_token))
        r.route("POST", "/2/oauth2/revoke", w(self.oauth2_revoke))
        r.route("GET", "/2/users/me", w(self.users_me))
        r.route("GET", "/2/users/{id}/tweets", w(self.user_tweets))
        r.route("POST", "/2/tweets", w(self.create_tweet))
        r.route("POST", "/2/media/upload/initialize", w(self.media_initialize))
        r.route("POST", "/2/media/upload/{id}/append", w(self.media_append), lock=False)
        r.route("POST", "/2/media/upload/{id}/finalize", w(self.media_finalize))
        r.route("GET", "/2/media/upload", w(self.media_status))
        r.route("GET", "/profile_images/{id}/normal.png", w(self.profile_image))

    def _wrap(self, fn):
        def handler(req):
            req.rate = None
            try:
                resp = fn(req)
            except Abort as a:
                resp = a.response
            self._rate_headers(req, resp)
            return resp
        handler.__name__ = fn.__name__
        return handler

    # rate limits ---------------------------------------------------------------
    def _rate_headers(self, req, resp):
        rate = getattr(req, "rate", None)
        if rate is None:
            _, limit, remaining, reset = self.windows.check(
                ("default", req.path, req.client_ip), int(self.core.config["default_limit"]),
                900)
            rate = (limit, remaining, reset)
        resp.set_header("x-rate-limit-limit", rate[0])
        resp.set_header("x-rate-limit-remaining", rate[1])
        resp.set_header("x-rate-limit-reset", rate[2])
        app = getattr(req, "app_rate", None)
        if app:
            resp.set_header("x-app-limit-24hour-limit", app[0])
            resp.set_header("x-app-limit-24hour-remaining", app[1])
            resp.set_header("x-app-limit-24hour-reset", app[2])

    def _limit(self, req, bucket, who, limit_key, window_key):
        cfg = self.core.config
        ok, limit, remaining, reset = self.windows.check(
            (bucket, who), int(cfg[limit_key]), float(cfg[window_key]))
        req.rate = (limit, remaining, reset)
        if not ok:
            raise Abort(problem(429, "Too Many Requests", "Too Many Requests"))

    # OAuth 1.0a -------------------------------------------------------------------
    def _signed_uri(self, req):
        host = req.header("Host") or urllib.parse.urlsplit(self.core.base_url).netloc
        return "http://%s%s%s" % (host, req.raw_path,
                                  "?" + req.query_string if req.query_string else "")

    def _oauth1(self, req, token_kinds):
        """Verify an OAuth 1.0a request.  token_kinds None: no token (request
        token step).  Returns (oauth params dict, token record or None)."""
        header = req.header("Authorization") or ""
        if not header.lower().startswith("oauth "):
            raise Abort(v1_error(400, 215, "Bad Authentication data."))
        try:
            pairs = oauth_utils.parse_authorization_header(header)
        except ValueError:
            raise Abort(v1_error(400, 215, "Bad Authentication data."))
        oauth = {k: oauth_utils.unescape(v) for k, v in pairs if k != "realm"}
        need = ("oauth_consumer_key", "oauth_nonce", "oauth_signature",
                "oauth_signature_method", "oauth_timestamp")
        if not all(oauth.get(k) for k in need):
            raise Abort(v1_error(400, 215, "Bad Authentication data."))
        app = self.core.app
        if not app.get("consumer_key") or oauth["oauth_consumer_key"] != app["consumer_key"]:
            raise Abort(v1_error(401, 32, "Could not authenticate you."))
        if oauth["oauth_signature_method"] != "HMAC-SHA1" or \
                oauth.get("oauth_version", "1.0") != "1.0" or \
                not oauth["oauth_timestamp"].isdigit():
            raise Abort(v1_error(401, 32, "Could not authenticate you."))
        # The client signs with its wall clock: compare with real time, not
        # the simulated clock.
        if abs(time.time() - int(oauth["oauth_timestamp"])) > \
                float(self.core.config["timestamp_window"]):
            raise Abort(v1_error(401, 135, "Timestamp out of bounds."))
        rec, token_secret = None, ""
        token = oauth.get("oauth_token")
        if token_kinds is not None:
            if not token:
                raise Abort(v1_error(401, 89, "Invalid or expired token."))
            rec, prob = self.core.check_token(token, token_kinds)
            if prob:
                raise Abort(v1_error(401, 89, "Invalid or expired token."))
            token_secret = rec["token_secret"]
        form_body = ""
        ctype = (req.header("Content-Type") or "").lower()
        if req.has_body and "application/x-www-form-urlencoded" in ctype:
            form_body = req.text(64 * 1024)
        if not signature_valid(req.method, self._signed_uri(req), header, form_body,
                               app.get("consumer_secret", ""), token_secret):
            raise Abort(v1_error(401, 32, "Could not authenticate you."))
        key = (oauth["oauth_consumer_key"], token or "", oauth["oauth_timestamp"],
               oauth["oauth_nonce"])
        now = time.time()
        with self.nonce_lock:
            for k in [k for k, t in self.nonces.items() if t < now - NONCE_KEEP]:
                del self.nonces[k]
            if key in self.nonces:
                raise Abort(v1_error(401, 32, "Could not authenticate you."))
            self.nonces[key] = now
        return oauth, rec

    def _callback_approved(self, callback):
        if callback == "oob":
            return True
        urls = self.core.app.get("callback_urls") or []
        return callback in urls or callback.split("?", 1)[0] in urls

    def request_token(self, req):
        oauth, _ = self._oauth1(req, None)
        callback = oauth.get("oauth_callback") or req.values(64 * 1024).get("oauth_callback")
        if not callback:
            return v1_error(400, 215, "Bad Authentication data.")
        if not self._callback_approved(callback):
            return v1_error(403, 415, "Callback URL not approved for this client "
                            "application. Approved callback URLs can be adjusted in "
                            "your application settings")
        value = self.core.issue_token(
            "oauth1_request", None, float(self.core.config["request_token_ttl"]),
            client=self.core.app["consumer_key"], nbytes=24,
            token_secret=simcore.random_token(24), callback=callback, verifier=None)
        rec = self.core.state["tokens"][value]
        return self._form_text({"oauth_token": value,
                                "oauth_token_secret": rec["token_secret"],
                                "oauth_callback_confirmed": "true"})

    @staticmethod
    def _form_text(fields):
        # X answers the OAuth 1.0a token steps form-encoded but labelled text/html.
        return simcore.Response(200, urllib.parse.urlencode(fields), None,
                                "text/html; charset=utf-8")

    def oauth1_authorize(self, req):
        token = req.query.get("oauth_token", "")
        rec, prob = self.core.check_token(token, "oauth1_request")
        if prob or rec.get("verifier"):
            return error_page(400, "This page is no longer valid",
                              "It looks like someone already used the token information "
                              "you provided. Please return to the application and try again.")
        accounts = [(k, "@%s" % k) for k in sorted(self.core.state["accounts"])]
        return self.core.consent_page({"flow": "oauth1", "request_token": token}, accounts,
                                      "Authorize app to access your account", "")

    def consent(self, pending, account, allowed):
        if pending.get("flow") == "oauth2":
            return self._consent_oauth2(pending, account, allowed)
        token = pending["request_token"]
        rec, prob = self.core.check_token(token, "oauth1_request")
        if prob or rec.get("verifier"):
            return error_page(400, "This page is no longer valid",
                              "The request token is unknown or expired.")
        cb = rec["callback"]
        if not allowed:
            rec["revoked"] = True
            if cb == "oob":
                return simcore.html_response("<p>You did not authorize the app.</p>")
            return redirect_response(cb, [("denied", token)])
        rec["account"] = account
        if cb == "oob":
            rec["verifier"] = simcore.random_digits(7)
            return simcore.html_response("<p>PIN: <code>%s</code></p>" % rec["verifier"])
        rec["verifier"] = simcore.random_token(24)
        return redirect_response(cb, [("oauth_token", token),
                                      ("oauth_verifier", rec["verifier"])])

    def access_token(self, req):
        oauth, rec = self._oauth1(req, ("oauth1_request",))
        verifier = oauth.get("oauth_verifier") or req.values(64 * 1024).get("oauth_verifier")
        if not rec.get("verifier") or not verifier or \
                not secrets.compare_digest(verifier.encode(), rec["verifier"].encode()):
            return simcore.text_response("Error processing your OAuth request: Invalid "
                                         "oauth_verifier parameter", 401)
        rec["revoked"] = True            # a request token is good for one exchange
        account = rec["account"]
        acct = self.core.account(account)
        consumer = self.core.app["consumer_key"]
        value = None
        for v, t in self.core.state["tokens"].items():
            if t["kind"] == "oauth1_access" and t["account"] == account and \
                    t["client"] == consumer and not t["revoked"]:
                value = v                # X keeps one access token per user and app
                break
        if value is None:
            value = self.core.issue_token(
                "oauth1_access", account, None, client=consumer,
                value="%s-%s" % (acct["id"], secrets.token_urlsafe(30)[:40]),
                token_secret=simcore.random_token(30), grant=rec.get("grant"))
        t = self.core.state["tokens"][value]
        return self._form_text({"oauth_token": value, "oauth_token_secret": t["token_secret"],
                                "user_id": acct["id"], "screen_name": acct["username"]})

    def invalidate_token(self, req):
        oauth, rec = self._oauth1(req, ("oauth1_access",))
        rec["revoked"] = True
        return json_response({"access_token": oauth["oauth_token"]})

    # OAuth 2 ------------------------------------------------------------------------
    def oauth2_authorize(self, req):
        q = req.query
        app = self.core.app

        def bad(msg):
            return error_page(400, "Something went wrong",
                              "You weren't able to give access to the App. " + msg)

        if not app.get("client_id") or q.get("client_id") != app["client_id"]:
            return bad("Unknown client_id.")
        redirect_uri = q.get("redirect_uri", "")
        if not self.core.redirect_uri_registered(redirect_uri, "callback_urls"):
            return bad("redirect_uri is not registered.")
        if q.get("response_type") != "code":
            return bad("response_type must be code.")
        scopes = q.get("scope", "").split()
        if not scopes or any(s not in OAUTH2_SCOPES for s in scopes):
            return bad("Invalid scope.")
        if not q.get("state") or len(q["state"]) > 500:
            return bad("state is required.")
        challenge = q.get("code_challenge", "")
        method = q.get("code_challenge_method", "")
        if not challenge or method not in ("S256", "plain") or \
                not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", challenge):
            return bad("PKCE code_challenge with code_challenge_method S256 or plain "
                       "is required.")
        pending = {"flow": "oauth2", "client": app["client_id"],
                   "redirect_uri": redirect_uri, "scopes": scopes, "state": q["state"],
                   "challenge": challenge, "challenge_method": method}
        accounts = [(k, "@%s" % k) for k in sorted(self.core.state["accounts"])]
        return self.core.consent_page(pending, accounts, "Authorize app",
                                      "The app wants: " + " ".join(scopes))

    def _consent_oauth2(self, pending, account, allowed):
        uri = pending["redirect_uri"]
        if not allowed:
            return redirect_response(uri, [
                ("error", "access_denied"),
                ("error_description", "The user denied the request."),
                ("state", pending["state"])])
        code = self.core.issue_code(pending["client"], uri, account, pending["scopes"],
                                    pending["challenge"], pending["challenge_method"],
                                    ttl=float(self.core.config["code_ttl"]))
        return redirect_response(uri, [("state", pending["state"]), ("code", code)])

    def _oauth2_client(self, req, form):
        app = self.core.app
        if not app.get("client_id"):
            raise Abort(oauth2_error(401, "unauthorized_client", "Unknown client"))
        basic = req.basic_auth()
        if app.get("client_secret"):
            if not basic:
                raise Abort(oauth2_error(401, "unauthorized_client",
                                         "Missing valid authorization header"))
            if basic[0] != app["client_id"] or not secrets.compare_digest(
                    basic[1].encode(), app["client_secret"].encode()):
                raise Abort(oauth2_error(401, "unauthorized_client",
                                         "Missing valid authorization header"))
            return basic[0]
        cid = basic[0] if basic else form.get("client_id")
        if cid != app["client_id"]:
            raise Abort(oauth2_error(400, "invalid_request",
                                     "Missing required parameter [client_id]."))
        return cid

    def oauth2_token(self, req):
        if "application/x-www-form-urlencoded" not in (req.header("Content-Type") or "").lower():
            return oauth2_error(400, "invalid_request",
                                "Content-Type must be application/x-www-form-urlencoded")
        form = req.form(64 * 1024)
        client = self._oauth2_client(req, form)
        bad = oauth2_error(400, "invalid_request", "Value passed for the token was invalid.")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            rec, prob = self.core.redeem_code(form.get("code"))
            if prob == "used":
                self.core.revoke_tokens(grant=rec["grant"])
                return bad
            if prob or rec["client"] != client:
                return bad
            if form.get("redirect_uri") != rec["redirect_uri"]:
                return oauth2_error(400, "invalid_request", "Value passed for the redirect "
                                    "uri did not match the uri of the authorization code.")
            if not simcore.pkce_matches(rec["challenge"], rec["challenge_method"],
                                        form.get("code_verifier")):
                return bad
            return json_response(self._oauth2_tokens(rec["account"], client, rec["scopes"],
                                                     rec["grant"]))
        if grant_type == "refresh_token":
            rec, prob = self.core.check_token(form.get("refresh_token"), "refresh")
            if prob or rec["client"] != client:
                return bad
            if self.core.config["rotate_refresh"]:
                rec["revoked"] = True
                rec["rotated"] = True
            out = self._oauth2_tokens(rec["account"], client, rec["scopes"], rec["grant"],
                                      refresh=self.core.config["rotate_refresh"])
            if not self.core.config["rotate_refresh"]:
                out["refresh_token"] = form["refresh_token"]
            return json_response(out)
        return oauth2_error(400, "unsupported_grant_type", "grant_type not supported")

    def _oauth2_tokens(self, account, client, scopes, grant, refresh=True):
        cfg = self.core.config
        out = {"token_type": "bearer", "expires_in": int(cfg["access_ttl"]),
               "access_token": self.core.issue_token(
                   "access", account, cfg["access_ttl"], client=client, scopes=scopes,
                   grant=grant, nbytes=48),
               "scope": " ".join(scopes)}
        if refresh and "offline.access" in scopes:
            out["refresh_token"] = self.core.issue_token(
                "refresh", account, cfg["refresh_ttl"] or None, client=client,
                scopes=scopes, grant=grant, nbytes=48)
        return out

    def oauth2_revoke(self, req):
        form = req.form(64 * 1024)
        client = self._oauth2_client(req, form)
        rec = self.core.state["tokens"].get(form.get("token") or "")
        if rec and rec["client"] == client and rec["kind"] in ("access", "refresh"):
            self.core.revoke_tokens(grant=rec["grant"])
        return json_response({"revoked": True})

    # API auth --------------------------------------------------------------------------
    def _auth(self, req, scopes=()):
        """The calling user: OAuth 1.0a user context or an OAuth 2 user token.
        Returns (account key, account dict, app key)."""
        header = req.header("Authorization") or ""
        if header.lower().startswith("oauth "):
            _, rec = self._oauth1(req, ("oauth1_access",))
            return rec["account"], self.core.account(rec["account"]), "app"
        value = req.bearer()
        if not value:
            raise Abort(unauthorized())
        rec, prob = self.core.check_token(value, "access")
        if prob:
            raise Abort(unauthorized())
        missing = [s for s in scopes if s not in rec["scopes"]]
        if missing:
            raise Abort(problem(403, "Forbidden", "Missing required OAuth 2 scopes: "
                                + " ".join(missing)))
        return rec["account"], self.core.account(rec["account"]), "app"

    # users ------------------------------------------------------------------------------
    def _user_json(self, acct, fields):
        out = {"id": acct["id"], "name": acct["name"], "username": acct["username"]}
        extra = {"profile_image_url": "%s/profile_images/%s/normal.png"
                 % (self.core.base_url, acct["id"]),
                 "created_at": acct["created_at"], "description": "",
                 "protected": False, "verified": False,
                 "public_metrics": {"followers_count": 0, "following_count": 0,
                                    "tweet_count": sum(
                                        1 for t in self.core.state["tweets"].values()
                                        if t["author_id"] == acct["id"]),
                                    "listed_count": 0}}
        for f in fields:
            if f in extra:
                out[f] = extra[f]
        return out

    def users_me(self, req):
        account, acct, _ = self._auth(req, ("users.read", "tweet.read"))
        self._limit(req, "users_me", account, "users_me_limit", "read_window")
        fields = [f for f in req.query.get("user.fields", "").split(",") if f]
        return json_response({"data": self._user_json(acct, fields)})

    def profile_image(self, req):
        return simcore.Response(200, PNG_1X1, None, "image/png")

    # tweets ---------------------------------------------------------------------------
    def _tweet_json(self, t, fields):
        out = {"id": t["id"], "text": t["text"], "edit_history_tweet_ids": [t["id"]]}
        if "created_at" in fields:
            out["created_at"] = self._iso(t["created_at"])
        if "author_id" in fields:
            out["author_id"] = t["author_id"]
        if "attachments" in fields and t["media_keys"]:
            out["attachments"] = {"media_keys": t["media_keys"]}
        return out

    def user_tweets(self, req):
        account, _, _ = self._auth(req, ("tweet.read", "users.read"))
        self._limit(req, "timeline", account, "timeline_limit", "read_window")
        uid = req.params["id"]
        if not uid.isdigit():
            return invalid_request("The `id` query parameter value [%s] is not valid" % uid,
                                   "id", uid)
        try:
            max_results = int(req.query.get("max_results", "10"))
        except ValueError:
            max_results = -1
        if not 5 <= max_results <= 100:
            return invalid_request("The `max_results` query parameter value [%s] is not "
                                   "between 5 and 100" % req.query.get("max_results"),
                                   "max_results", req.query.get("max_results"))
        _, owner = self._account_by_id(uid)
        if owner is None:
            return json_response({"errors": [{
                "value": uid, "detail": "Could not find user with id: [%s]." % uid,
                "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                "resource_id": uid,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]})
        tweets = sorted((t for t in self.core.state["tweets"].values()
                         if t["author_id"] == uid), key=lambda t: -int(t["id"]))
        since = req.query.get("since_id")
        until = req.query.get("until_id")
        token = req.query.get("pagination_token")
        if token:
            try:
                until = base64.urlsafe_b64decode(token.encode() + b"==").decode()
            except Exception:
                return invalid_request("The `pagination_token` query parameter value is "
                                       "not valid", "pagination_token", token)
        if since and since.isdigit():
            tweets = [t for t in tweets if int(t["id"]) > int(since)]
        if until and until.isdigit():
            tweets = [t for t in tweets if int(t["id"]) < int(until)]
        page = tweets[:max_results]
        fields = [f for f in req.query.get("tweet.fields", "").split(",") if f]
        meta = {"result_count": len(page)}
        if page:
            meta["newest_id"] = page[0]["id"]
            meta["oldest_id"] = page[-1]["id"]
            if len(tweets) > len(page):
                meta["next_token"] = base64.urlsafe_b64encode(
                    page[-1]["id"].encode()).decode().rstrip("=")
            return json_response({"data": [self._tweet_json(t, fields) for t in page],
                                  "meta": meta})
        return json_response({"meta": meta})

    def _tweet_id(self):
        ms = int(self.core.now() * 1000) - TWITTER_EPOCH_MS
        return str((ms << 22) | (self.core.next_id() & 0x3FFFFF))

    def create_tweet(self, req):
        account, acct, app = self._auth(req, ("tweet.write", "tweet.read", "users.read"))
        cfg = self.core.config
        self._limit(req, "tweets", account, "tweet_user_limit", "tweet_user_window")
        ok, limit, remaining, reset = self.windows.check(
            ("tweets_app", app), int(cfg["tweet_app_limit"]), float(cfg["tweet_app_window"]))
        req.app_rate = (limit, remaining, reset)
        if not ok:
            return problem(429, "Too Many Requests", "Too Many Requests")
        body = req.json(1024 * 1024)
        if not isinstance(body, dict):
            return invalid_request("Request body must be a JSON object.")
        text = body.get("text")
        media = body.get("media") or {}
        media_ids = media.get("media_ids") if isinstance(media, dict) else None
        if text is not None and not isinstance(text, str):
            return invalid_request("`text` must be a string.", "text")
        if media_ids is not None and (not isinstance(media_ids, list) or not media_ids or
                                      not all(isinstance(m, str) for m in media_ids)):
            return invalid_request("`media.media_ids` must be a list of strings.",
                                   "media.media_ids")
        if not text and not media_ids:
            return invalid_request("You must specify a text or media.", "text")
        text = text or ""
        if weighted_length(text) > int(cfg["max_tweet_weight"]):
            return invalid_request("Your Tweet text is too long.", "text", text)
        items = []
        for mid in media_ids or []:
            m = self.core.state["media"].get(mid)
            if m is None or m["account"] != account or \
                    self._processing(m)["state"] != "succeeded" or \
                    m["expires_at"] < self.core.now():
                return invalid_request("Your media IDs are invalid.", "media.media_ids", mid)
            items.append(m)
        kinds = [m["kind"] for m in items]
        if len(items) > 4 or (len(items) > 1 and ("video" in kinds or "gif" in kinds)):
            return invalid_request("Your media IDs are invalid.", "media.media_ids")
        if text.strip():
            for t in self.core.state["tweets"].values():
                if t["author_id"] == acct["id"] and t["text"] == text:
                    return problem(403, "Forbidden", "You are not allowed to create a Tweet "
                                   "with duplicate content.")
        tid = self._tweet_id()
        now = self.core.now()
        self.core.state["tweets"][tid] = {
            "id": tid, "text": text, "author_id": acct["id"], "account": account,
            "created_at": now, "media_keys": [m["media_key"] for m in items]}
        self.core.publish({"account": account, "user_id": acct["id"], "remote_id": tid,
                           "text": text,
                           "media": [{"media_id": m["id"], "media_key": m["media_key"],
                                      "media_type": m["media_type"], "bytes": m["bytes"],
                                      "sha256": m["sha256"]} for m in items],
                           "time": int(now)})
        return json_response({"data": {"id": tid, "text": text,
                                       "edit_history_tweet_ids": [tid]}}, 201)

    # media ------------------------------------------------------------------------------
    def _media_auth(self, req):
        account, acct, _ = self._auth(req, ("media.write",))
        self._limit(req, "media", account, "media_limit", "media_window")
        return account, acct

    def _media_dir(self, mid):
        return os.path.join(self.core.data_dir, "media", mid)

    def _media_record(self, mid, account):
        m = self.core.state["media"].get(mid or "")
        if m is None or m["account"] != account or m["expires_at"] < self.core.now():
            raise Abort(invalid_request("Invalid media_id.", "media_id", mid))
        return m

    def media_initialize(self, req):
        account, _ = self._media_auth(req)
        body = req.json(64 * 1024)
        if not isinstance(body, dict):
            return invalid_request("Request body must be a JSON object.")
        mtype = body.get("media_type")
        total = body.get("total_bytes")
        category = body.get("media_category", "tweet_image")
        kind = MEDIA_TYPES.get(mtype)
        if kind is None:
            return invalid_request("Unsupported media_type.", "media_type", mtype)
        if MEDIA_CATEGORIES.get(category) != kind:
            return invalid_request("media_category does not match media_type.",
                                   "media_category", category)
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            return invalid_request("total_bytes must be a positive integer.",
                                   "total_bytes", total)
        cap = int(self.core.config.get("max_%s_bytes" % kind, self.core.config["max_video_bytes"]))
        if total > cap:
            return invalid_request("File size exceeds %d bytes." % cap, "total_bytes", total)
        mid = simcore.random_digits(19)
        while mid in self.core.state["media"]:
            mid = simcore.random_digits(19)
        now = self.core.now()
        exp = int(self.core.config["media_expire_secs"])
        self.core.state["media"][mid] = {
            "id": mid, "media_key": "%s_%s" % (MEDIA_KEY_PREFIX[kind], mid),
            "account": account, "media_type": mtype, "category": category, "kind": kind,
            "total_bytes": total, "segments": {}, "created_at": now,
            "expires_at": now + exp, "finalized_at": None, "bytes": None, "sha256": None,
            "valid": None}
        os.makedirs(self._media_dir(mid), exist_ok=True)
        return json_response({"data": {"id": mid, "media_key": "%s_%s" % (
            MEDIA_KEY_PREFIX[kind], mid), "expires_after_secs": exp}})

    def media_append(self, req):
        with self.core.lock:
            account, _ = self._media_auth(req)
            m = self._media_record(req.params["id"], account)
            if m["finalized_at"] is not None:
                return invalid_request("Media was already finalized.", "media_id", m["id"])
            seg_max = int(self.core.config["append_max_bytes"])
            mid = m["id"]
        limit = seg_max * 4 // 3 + 64 * 1024
        if req.content_length is not None and req.content_length > limit:
            return invalid_request("Segment is larger than %d bytes." % seg_max, "media")
        tmp = os.path.join(self._media_dir(mid), "incoming-%s" % secrets.token_hex(8))
        ctype = (req.header("Content-Type") or "").lower()
        try:
            if "multipart/form-data" in ctype:
                def sink_for(name, filename):
                    if name == "media":
                        return _Sink(name, tmp, seg_max)
                    return _Sink(name, None, limit)
                parts = stream_multipart(req, sink_for, limit)
                fields = {k: bytes(v.data).decode("utf-8", "replace")
                          for k, v in parts.items() if v.path is None}
                if "media" not in parts:
                    if "media_data" not in fields:
                        return invalid_request("media is required.", "media")
                    self._write_b64(fields["media_data"], tmp, seg_max)
            elif "application/json" in ctype:
                body = req.json(limit)
                if not isinstance(body, dict):
                    return invalid_request("Request body must be a JSON object.")
                fields = {"segment_index": str(body.get("segment_index", ""))}
                data = body.get("media") or body.get("media_data")
                if not isinstance(data, str):
                    return invalid_request("media is required.", "media")
                self._write_b64(data, tmp, seg_max)
            else:
                return invalid_request("Content-Type must be multipart/form-data or "
                                       "application/json.")
            idx = fields.get("segment_index", "")
            if not idx.isdigit() or not 0 <= int(idx) <= 999:
                return invalid_request("segment_index must be an integer 0-999.",
                                       "segment_index", idx)
            size = os.path.getsize(tmp)
            with self.core.lock:
                m = self._media_record(mid, account)
                if m["finalized_at"] is not None:
                    return invalid_request("Media was already finalized.", "media_id", mid)
                os.replace(tmp, os.path.join(self._media_dir(mid), "seg-%04d" % int(idx)))
                m["segments"][str(int(idx))] = size
                if sum(m["segments"].values()) > m["total_bytes"]:
                    return invalid_request("Segments exceed total_bytes.", "media_id", mid)
                return json_response({"data": {"expires_at": int(m["expires_at"])}})
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _write_b64(text, path, cap):
        try:
            data = base64.b64decode(text, validate=False)
        except ValueError:
            raise Abort(invalid_request("media_data is not valid base64.", "media_data"))
        if len(data) > cap:
            raise Abort(invalid_request("Segment is larger than %d bytes." % cap, "media"))
        with open(path, "wb") as f:
            f.write(data)

    def _looks_valid(self, m, path):
        if self.core.config["processing_fail"]:
            return False
        with open(path, "rb") as f:
            head = f.read(16)
        if m["kind"] == "video":
            return len(head) >= 8 and head[4:8] == b"ftyp"
        if m["kind"] == "gif":
            return head.startswith(b"GIF8")
        if m["kind"] == "image":
            return head.startswith(b"\xff\xd8") or head.startswith(b"\x89PNG") or \
                head[8:12] == b"WEBP" or head.startswith(b"BM") or head[:2] in (b"II", b"MM")
        return True

    def _processing(self, m):
        """processing_info for a finalized media record."""
        if m["finalized_at"] is None:
            return {"state": "pending"}
        if m["kind"] in ("image", "subtitles"):
            return {"state": "succeeded" if m["valid"] else "failed"}
        p = float(m.get("processing_seconds", 0))
        t = self.core.now() - m["finalized_at"]
        if not m["valid"] and t >= p / 2:
            return {"state": "failed", "progress_percent": 100,
                    "error": {"code": 1, "name": "InvalidMedia",
                              "message": "Invalid or Unsupported media, Reason: "
                              "UnsupportedMedia."}}
        if t >= p:
            return {"state": "succeeded", "progress_percent": 100}
        if t < p / 3:
            return {"state": "pending", "check_after_secs": max(1, math.ceil(p / 3 - t)),
                    "progress_percent": 0}
        return {"state": "in_progress", "check_after_secs": max(1, math.ceil(p - t)),
                "progress_percent": int(100 * t / p)}

    def media_finalize(self, req):
        account, _ = self._media_auth(req)
        m = self._media_record(req.params["id"], account)
        if m["finalized_at"] is not None:
            return invalid_request("Media was already finalized.", "media_id", m["id"])
        got = sum(m["segments"].values())
        if got != m["total_bytes"]:
            return invalid_request("File size mismatch: received %d of total_bytes %d."
                                   % (got, m["total_bytes"]), "media_id", m["id"])
        d = self._media_dir(m["id"])
        final = os.path.join(d, "media")
        with open(final, "wb") as out:
            for idx in sorted(m["segments"], key=int):
                seg = os.path.join(d, "seg-%04d" % int(idx))
                with open(seg, "rb") as f:
                    shutil.copyfileobj(f, out, 1024 * 1024)
                os.unlink(seg)
        m["bytes"] = os.path.getsize(final)
        m["sha256"] = simcore.file_sha256(final)
        m["valid"] = self._looks_valid(m, final)
        m["finalized_at"] = self.core.now()
        m["processing_seconds"] = float(self.core.config["processing_seconds"])
        data = {"id": m["id"], "media_key": m["media_key"], "size": m["bytes"],
                "expires_after_secs": max(0, int(m["expires_at"] - self.core.now()))}
        if m["kind"] in ("video", "gif"):
            data["processing_info"] = self._processing(m)
        elif not m["valid"]:
            return invalid_request("Invalid or Unsupported media.", "media_id", m["id"])
        return json_response({"data": data})

    def media_status(self, req):
        account, _ = self._media_auth(req)
        if req.query.get("command") != "STATUS":
            return invalid_request("command must be STATUS.", "command",
                                   req.query.get("command"))
        m = self._media_record(req.query.get("media_id"), account)
        if m["finalized_at"] is None:
            return invalid_request("Media is not finalized.", "media_id", m["id"])
        return json_response({"data": {"id": m["id"], "media_key": m["media_key"],
                                       "processing_info": self._processing(m)}})


def create(core):
    return XSim(core)
