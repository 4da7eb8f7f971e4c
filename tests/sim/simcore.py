"""Shared framework of the platform simulators.

One Core per platform: an HTTP server on loopback, a route table, JSON state
persisted atomically under the state directory, OAuth helpers (codes, tokens,
PKCE, consent page), fault injection, a request log, a sliding-window rate
limiter and the control path /__control/.  A platform module supplies a
Platform subclass and `create(core)`; README.md documents the interface.
"""
import base64
import hashlib
import hmac
import html
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL_PREFIX = "/__control/"
# status: answer with that status and the platform's error body; drop:
# close without an answer; timeout: hold `seconds`, then close; and the
# two where the platform does the work but the answer is lost:
# drop_after (closed at once) and timeout_after (held, then closed).
FAULT_ACTIONS = ("status", "drop", "timeout", "drop_after", "timeout_after")
CONSENT_PATH = "/__consent"
DEFAULT_BODY_LIMIT = 16 * 1024 * 1024
DRAIN_LIMIT = 1024 * 1024
IO_CHUNK = 256 * 1024
REQUEST_LOG_KEEP = 20000
PENDING_TTL = 600
CODE_TTL = 600


# --------------------------------------------------------------------------
# Responses

class Response:
    """An answer: status, headers (list of pairs) and a body.

    The body is bytes, or a file slice (path, offset, length) streamed from
    disk.  `drop=True` closes the connection without answering."""

    def __init__(self, status=200, body=b"", headers=None, content_type=None):
        self.status = int(status)
        self.headers = list(headers.items() if isinstance(headers, dict)
                            else (headers or []))
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body
        self.file = None            # (path, offset, length)
        self.drop = False
        if content_type:
            self.set_header("Content-Type", content_type)

    def set_header(self, name, value):
        self.headers = [(k, v) for k, v in self.headers
                        if k.lower() != name.lower()]
        self.headers.append((name, str(value)))
        return self

    def add_header(self, name, value):
        self.headers.append((name, str(value)))
        return self

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def length(self):
        return self.file[2] if self.file else len(self.body)


def json_response(obj, status=200, headers=None):
    return Response(status, json.dumps(obj, separators=(",", ":")), headers,
                    "application/json; charset=UTF-8")


def form_response(fields, status=200, headers=None):
    return Response(status, urllib.parse.urlencode(fields), headers,
                    "application/x-www-form-urlencoded")


def text_response(text, status=200, headers=None):
    return Response(status, text, headers, "text/plain; charset=utf-8")


def html_response(markup, status=200, headers=None):
    return Response(status, markup, headers, "text/html; charset=utf-8")


def empty_response(status=204, headers=None):
    return Response(status, b"", headers)


def error_page(status, title, message):
    """The HTML error page a platform shows instead of redirecting."""
    return html_response(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title>"
        "</head><body><h1>%s</h1><p>%s</p></body></html>"
        % (html.escape(title), html.escape(title), html.escape(message)),
        status)


def add_query(url, params):
    """url with params (dict or pair list) appended to its query."""
    if not params:
        return url
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    pairs = [(k, v) for k, v in pairs if v is not None]
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode(pairs)


def redirect_response(url, params=None, status=302, headers=None):
    r = Response(status, b"", headers)
    r.set_header("Location", add_query(url, params))
    return r


def drop_response():
    r = Response(0)
    r.drop = True
    return r


def file_response(req, path, content_type, headers=None):
    """Serve a file with HEAD and single-range Range support (206/416)."""
    size = os.path.getsize(path)
    r = Response(200, b"", headers, content_type)
    r.set_header("Accept-Ranges", "bytes")
    rng = req.header("Range")
    first, last = 0, size - 1
    if rng:
        m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng)
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                first = int(m.group(1))
                last = int(m.group(2)) if m.group(2) else size - 1
                last = min(last, size - 1)
            else:
                first = max(0, size - int(m.group(2)))
            if first >= size or first > last:
                r = Response(416, b"", headers)
                r.set_header("Content-Range", "bytes */%d" % size)
                return r
            r.status = 206
            r.set_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
    r.file = (path, first, max(0, last - first + 1))
    return r


class Abort(Exception):
    """Raise from a handler to answer with `response` at once."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


class BodyTooLarge(Abort):
    """The request body passed the limit given to the reader (default 413)."""

    def __init__(self, limit):
        super().__init__(json_response(
            {"error": "request body larger than %d bytes" % limit}, 413))
        self.limit = limit


class ClientGone(Exception):
    """The client closed the connection before sending its whole body."""

    def __init__(self, received):
        super().__init__("client closed after %d bytes" % received)
        self.received = received


# --------------------------------------------------------------------------
# Requests

class Request:
    """One incoming request, as a handler sees it."""

    def __init__(self, handler, core, method, target):
        self._h = handler
        self.core = core
        self.method = method
        split = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(split.path) or "/"
        self.raw_path = split.path
        self.query_string = split.query
        self.query_list = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        self.query = {}
        for k, v in self.query_list:
            self.query.setdefault(k, v)
        self.headers = handler.headers
        self.client_ip = handler.client_address[0]
        self.params = {}
        self._body = None
        self._form = None
        self._consumed = False
        self._remaining = None      # bytes left to read when Content-Length
        te = (self.header("Transfer-Encoding") or "").lower()
        self.chunked = "chunked" in te
        cl = self.header("Content-Length")
        self.content_length = None
        if not self.chunked and cl is not None:
            try:
                self.content_length = max(0, int(cl))
            except ValueError:
                self.content_length = None
        if not self.chunked:
            self._remaining = self.content_length or 0

    # headers -------------------------------------------------------------
    def header(self, name, default=None):
        v = self.headers.get(name)
        return default if v is None else v

    def authorization(self, scheme):
        """Credentials after `Authorization: <scheme> ` (case-insensitive)."""
        v = self.header("Authorization") or ""
        parts = v.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() == scheme.lower():
            return parts[1].strip()
        return None

    def bearer(self):
        return self.authorization("Bearer")

    def basic_auth(self):
        """(user, password) from Basic auth, percent-decoded, or None."""
        v = self.authorization("Basic")
        if not v:
            return None
        try:
            raw = base64.b64decode(v, validate=True).decode("utf-8")
        except Exception:
            return None
        if ":" not in raw:
            return None
        user, pw = raw.split(":", 1)
        return urllib.parse.unquote(user), urllib.parse.unquote(pw)

    def cookies(self):
        out = {}
        for part in (self.header("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                out.setdefault(k.strip(), v.strip())
        return out

    @property
    def has_body(self):
        return self.chunked or bool(self.content_length)

    # body ----------------------------------------------------------------
    def _read_exact(self, n):
        data = self._h.rfile.read(n)
        if data is None or len(data) < n:
            raise ClientGone(len(data or b""))
        return data

    def _pieces(self, left, total, track=False):
        """Yield the next `left` bytes in pieces of at most IO_CHUNK;
        ClientGone (after `total` bytes in all) when the client stops
        short.  With track, what is left is kept in _remaining.  Returns
        the new total."""
        while left > 0:
            piece = self._h.rfile.read(min(IO_CHUNK, left))
            if not piece:
                self._h.close_connection = True
                raise ClientGone(total)
            left -= len(piece)
            if track:
                self._remaining = left
            total += len(piece)
            yield piece
        return total

    def body_chunks(self, limit=None):
        """Yield the body in pieces of at most IO_CHUNK bytes, decoding
        chunked transfer encoding; BodyTooLarge past `limit` bytes."""
        if self._consumed:
            raise RuntimeError("request body already read")
        self._consumed = True
        total = 0
        if not self.chunked:
            if limit is not None and (self.content_length or 0) > limit:
                self._h.close_connection = True
                raise BodyTooLarge(limit)
            yield from self._pieces(self.content_length or 0, total, track=True)
            return
        while True:
            line = self._h.rfile.readline(1024)
            if not line:
                self._h.close_connection = True
                raise ClientGone(total)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._h.close_connection = True
                raise Abort(text_response("bad chunk size", 400))
            if size == 0:
                while True:         # trailers up to the blank line
                    t = self._h.rfile.readline(8192)
                    if not t or t in (b"\r\n", b"\n"):
                        break
                return
            if limit is not None and total + size > limit:
                self._h.close_connection = True
                raise BodyTooLarge(limit)
            total = yield from self._pieces(size, total)
            self._h.rfile.readline(16)

    def body(self, limit=DEFAULT_BODY_LIMIT):
        """The whole body as bytes (cached); BodyTooLarge past `limit`."""
        if self._body is None:
            self._body = b"".join(self.body_chunks(limit)) if self.has_body else b""
            self._consumed = True
        return self._body

    def text(self, limit=DEFAULT_BODY_LIMIT):
        return self.body(limit).decode("utf-8", "replace")

    def json(self, limit=DEFAULT_BODY_LIMIT):
        """The body parsed as JSON, or None when absent or invalid."""
        raw = self.body(limit)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def form(self, limit=DEFAULT_BODY_LIMIT):
        """An urlencoded body as a dict (first value of each name)."""
        if self._form is None:
            self._form = {}
            ctype = (self.header("Content-Type") or "").lower()
            if "multipart/form-data" in ctype:
                for name, part in self.multipart(limit).items():
                    if part["filename"] is None:
                        self._form[name] = part["data"].decode("utf-8", "replace")
            else:
                for k, v in urllib.parse.parse_qsl(self.text(limit),
                                                   keep_blank_values=True):
                    self._form.setdefault(k, v)
        return self._form

    def values(self, limit=DEFAULT_BODY_LIMIT):
        """Query parameters overlaid with form fields (form wins)."""
        out = dict(self.query)
        ctype = (self.header("Content-Type") or "").lower()
        if self.has_body and ("urlencoded" in ctype or "multipart" in ctype):
            out.update(self.form(limit))
        return out

    def multipart(self, limit=DEFAULT_BODY_LIMIT):
        """multipart/form-data parts: {name: {"filename","content_type","data"}}."""
        ctype = self.header("Content-Type") or ""
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not m:
            return {}
        boundary = b"--" + m.group(1).encode()
        parts = {}
        for chunk in self.body(limit).split(boundary)[1:]:
            if chunk.startswith(b"--"):
                break
            chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
            head, _, data = chunk.partition(b"\r\n\r\n")
            if data.endswith(b"\r\n"):
                data = data[:-2]
            hdrs = {}
            for line in head.decode("utf-8", "replace").split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            disp = hdrs.get("content-disposition", "")
            nm = re.search(r'\bname="([^"]*)"', disp)
            fn = re.search(r'\bfilename="([^"]*)"', disp)
            if nm:
                parts[nm.group(1)] = {
                    "filename": fn.group(1) if fn else None,
                    "content_type": hdrs.get("content-type"),
                    "data": data}
        return parts

    def save_body(self, path, limit=None, offset=None):
        """Stream the body to `path` without holding it in memory.

        offset None truncates the file; an integer writes from that offset
        (creating the file if needed).  Returns (bytes_written, sha256 hex of
        the bytes written).  BodyTooLarge past `limit` (what was read so far
        stays in the file); ClientGone when the client stops early (the
        bytes received stay in the file; `.received` says how many)."""
        digest = hashlib.sha256()
        written = 0
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if offset is None:
            f = open(path, "wb")
        else:
            f = open(path, "r+b" if os.path.exists(path) else "w+b")
            f.seek(offset)
        try:
            try:
                for piece in self.body_chunks(limit) if self.has_body else ():
                    f.write(piece)
                    digest.update(piece)
                    written += len(piece)
            except ClientGone:
                raise ClientGone(written)
        finally:
            f.close()
        return written, digest.hexdigest()

    def unread_body(self):
        """Bytes still unread (None when unknown: chunked)."""
        if self._consumed and (self._remaining or 0) == 0:
            return 0
        if self.chunked:
            return None
        return self._remaining


# --------------------------------------------------------------------------
# Routing

class Router:
    def __init__(self):
        self.routes = []            # (method, regex, handler, lock)
        self.controls = {}          # (method, subpath) -> handler

    @staticmethod
    def _compile(pattern):
        out, pos = "", 0
        for m in re.finditer(r"\{(\w+)(\*)?\}", pattern):
            out += re.escape(pattern[pos:m.start()])
            out += "(?P<%s>%s)" % (m.group(1), ".+" if m.group(2) else "[^/]+")
            pos = m.end()
        out += re.escape(pattern[pos:])
        return re.compile(out + r"\Z")

    def route(self, method, pattern, handler, lock=True):
        """Register `handler(req) -> Response` for METHOD on a path pattern.
        `{name}` matches one segment (also inside one: "/@{user}/video/{id}"),
        `{name*}` the rest of the path; matches land in req.params.  With
        lock=False the handler runs without core.lock (long uploads)."""
        self.routes.append((method.upper(), self._compile(pattern), handler, lock))

    def control(self, method, subpath, handler, lock=True):
        """Register a control route at /__control/<subpath> (JSON in/out).
        lock=False runs it without core.lock (e.g. it calls out over HTTP)."""
        self.controls[(method.upper(), subpath.strip("/"))] = (handler, lock)

    def match(self, method, path):
        """(handler, params, lock) or (None, None, allowed_methods)."""
        allowed = set()
        for m, rx, handler, lock in self.routes:
            mm = rx.match(path)
            if not mm:
                continue
            if m == method or (method == "HEAD" and m == "GET"):
                return handler, mm.groupdict(), lock
            allowed.add(m)
        return None, None, allowed


# --------------------------------------------------------------------------
# Helpers used by platforms

def random_token(nbytes=24, prefix=""):
    return prefix + secrets.token_urlsafe(nbytes)


def random_digits(n=17):
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


def pkce_s256(verifier):
    return base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    ).rstrip(b"=").decode("ascii")


def pkce_matches(challenge, method, verifier):
    """RFC 7636 check of a verifier against a stored challenge."""
    if not challenge:
        return True
    if not verifier or not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier):
        return False
    if (method or "plain").upper() == "S256":
        return hmac.compare_digest(pkce_s256(verifier), challenge)
    return hmac.compare_digest(verifier, challenge)


def hmac_sha256_hex(key, data):
    if isinstance(key, str):
        key = key.encode()
    if isinstance(data, str):
        data = data.encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def file_sha256(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(IO_CHUNK)
            if not b:
                break
            d.update(b)
    return d.hexdigest()


def is_mp4(path):
    """True when the file starts with an ISO BMFF ftyp box."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] == b"ftyp"


def is_loopback_host(host):
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FetchError(Exception):
    pass


class RateResult:
    def __init__(self, allowed, limit, remaining, reset):
        self.allowed = allowed      # bool
        self.limit = limit
        self.remaining = remaining  # after this request
        self.reset = reset          # unix seconds when a slot frees up


# --------------------------------------------------------------------------
# Platform base class

class Platform:
    """Base for a platform module.  Override what the platform needs."""

    name = "platform"
    config_defaults = {}            # knobs settable by POST /__control/config

    def __init__(self, core):
        self.core = core

    def seed(self):
        """Fill core.state on first start (no state file yet)."""

    def routes(self, r):
        """Register routes and control routes on Router r."""

    def start(self):
        """Called once state is loaded, before serving (start threads)."""

    def create_account(self, body):
        """POST /__control/accounts: create and return an account."""
        raise Abort(json_response({"error": "accounts cannot be created"}, 400))

    def consent(self, pending, account, allowed):
        """Finish a consent page: `pending` is the dict given to
        core.consent_page, `account` the chosen account key.  Return a
        Response (a redirect to the client)."""
        raise Abort(error_page(400, "Error", "no consent flow"))

    def on_revoke(self, account):
        """POST /__control/tokens/revoke also calls this (grant removed)."""

    def fault_response(self, req, fault):
        """The body of an injected `status` fault in the platform's shape."""
        return json_response({"error": {"code": fault["status"],
                                        "message": "injected fault"}},
                             fault["status"])

    def not_found(self, req):
        return json_response({"error": {"code": 404, "message": "not found"}}, 404)

    def public_state(self):
        """Extra keys for GET /__control/state."""
        return {}


# --------------------------------------------------------------------------
# Core

class Core:
    """Everything one platform simulator shares with the others."""

    def __init__(self, name, state_dir, app, base_url, urls, host, httpd):
        self.name = name
        self.state_dir = state_dir
        self.app = app or {}
        self.base_url = base_url
        self.urls = urls            # every started platform -> base URL
        self.host = host
        self.httpd = httpd
        self.media_dir = os.path.join(state_dir, "media")
        self.data_dir = os.path.join(state_dir, name)
        os.makedirs(self.data_dir, exist_ok=True)
        self.state_path = os.path.join(state_dir, name + ".json")
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.plugin = None
        self.router = Router()
        self.faults = []
        self.requests = deque(maxlen=REQUEST_LOG_KEEP)
        self.request_seq = 0
        self._log_lock = threading.Lock()
        self._rate = {}
        self._saved = None
        self.state = None
        self.config = {}

    # state -----------------------------------------------------------------
    def _fresh_state(self):
        return {"accounts": {}, "tokens": {}, "codes": {}, "pending": {},
                "published": [], "config": {}, "clock_offset": 0, "counter": 0}

    def load(self):
        fresh = not os.path.exists(self.state_path)
        if fresh:
            self.state = self._fresh_state()
        else:
            with open(self.state_path) as f:
                self.state = json.load(f)
            for k, v in self._fresh_state().items():
                self.state.setdefault(k, v)
        self.config = dict(self.plugin.config_defaults)
        self.config.update(self.state.get("config", {}))
        if fresh:
            self.plugin.seed()
        self.save()

    def save(self):
        """Write state atomically when it changed since the last write."""
        with self.lock:
            self.state["config"] = {k: v for k, v in self.config.items()
                                    if self.plugin.config_defaults.get(k) != v}
            text = json.dumps(self.state, indent=1, sort_keys=True)
            if text == self._saved:
                return
            fd, tmp = tempfile.mkstemp(prefix="." + self.name, dir=self.state_dir)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
            self._saved = text

    def now(self):
        """Simulated time (unix seconds, float): real time + clock offset."""
        return time.time() + self.state.get("clock_offset", 0)

    def next_id(self):
        """A fresh increasing integer, persisted."""
        with self.lock:
            self.state["counter"] = self.state.get("counter", 0) + 1
            return self.state["counter"]

    def log(self, msg):
        with self._log_lock:
            sys.stderr.write("platformsim %s: %s\n" % (self.name, msg))
            sys.stderr.flush()

    def spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        return t

    # accounts, published ---------------------------------------------------
    def account(self, key):
        return self.state["accounts"].get(key)

    def publish(self, record):
        """Append a record to the published list (adds seq and time)."""
        with self.lock:
            rec = dict(record)
            rec.setdefault("time", int(self.now()))
            rec["seq"] = len(self.state["published"]) + 1
            self.state["published"].append(rec)
            return rec

    # OAuth -------------------------------------------------------------------
    def redirect_uri_registered(self, uri, key="redirect_uris"):
        return bool(uri) and uri in (self.app.get(key) or [])

    def consent_page(self, pending, accounts, title="Authorize", detail=""):
        """Store `pending` (a JSON dict the plugin gets back in consent())
        and answer the consent page.  accounts: [(value, label), ...]."""
        rid = random_token(16)
        with self.lock:
            now = self.now()
            for k in [k for k, v in self.state["pending"].items()
                      if v.get("_expires", 0) < now]:
                del self.state["pending"][k]
            p = dict(pending)
            p["_expires"] = now + PENDING_TTL
            self.state["pending"][rid] = p
        options = "".join('<option value="%s">%s</option>'
                          % (html.escape(v, True), html.escape(label))
                          for v, label in accounts)
        page = (
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title>"
            "</head><body><h1>%s</h1><p>%s</p>\n"
            '<form method="post" action="%s"><input type="hidden" name="request_id" value="%s">\n'
            '<select name="account">%s</select>\n'
            '<button name="decision" value="allow">Allow</button>'
            '<button name="decision" value="deny">Deny</button></form>\n'
            "</body></html>\n"
            % (html.escape(title), html.escape(title), html.escape(detail),
               CONSENT_PATH, rid, options))
        return html_response(page)

    def _consent_post(self, req):
        f = req.form()
        with self.lock:
            p = self.state["pending"].pop(f.get("request_id", ""), None)
        if not p or p.get("_expires", 0) < self.now():
            return error_page(400, "Authorization expired",
                              "This authorization request is unknown or expired.")
        p.pop("_expires", None)
        allowed = f.get("decision") == "allow"
        acct = f.get("account", "")
        if allowed and acct not in self.state["accounts"]:
            return error_page(400, "Unknown account", "No such account.")
        return self.plugin.consent(p, acct, allowed)

    def issue_code(self, client, redirect_uri, account, scopes, challenge=None,
                   challenge_method=None, ttl=CODE_TTL, value=None, **extra):
        """A single-use authorization code; returns the code string (value
        when given, else random)."""
        code = value or random_token(24)
        with self.lock:
            now = self.now()
            for k in [k for k, v in self.state["codes"].items()
                      if v["expires_at"] < now - 86400]:
                del self.state["codes"][k]
            rec = {"client": client, "redirect_uri": redirect_uri,
                   "account": account, "scopes": list(scopes or []),
                   "challenge": challenge, "challenge_method": challenge_method,
                   "expires_at": now + ttl, "used": False,
                   "grant": random_token(8)}
            rec.update(extra)
            self.state["codes"][code] = rec
        return code

    def redeem_code(self, code):
        """(record, problem): problem None, "unknown", "used" or "expired".
        A good code is marked used; the record keeps its "grant" id, which
        tokens issued for it should carry (revoke_tokens(grant=...))."""
        with self.lock:
            rec = self.state["codes"].get(code or "")
            if rec is None:
                return None, "unknown"
            if rec["used"]:
                return rec, "used"
            if rec["expires_at"] < self.now():
                return rec, "expired"
            rec["used"] = True
            return rec, None

    def issue_token(self, kind, account, ttl, client=None, scopes=None,
                    grant=None, prefix="", nbytes=32, value=None, **extra):
        """Store and return a new token value.  kind: "access", "refresh" or
        a platform kind; ttl None = never expires."""
        value = value or random_token(nbytes, prefix)
        with self.lock:
            now = self.now()
            rec = {"kind": kind, "account": account, "client": client,
                   "scopes": list(scopes or []), "grant": grant,
                   "issued_at": now,
                   "expires_at": None if ttl is None else now + ttl,
                   "revoked": False}
            rec.update(extra)
            self.state["tokens"][value] = rec
        return value

    def check_token(self, value, kind=None):
        """(record, problem): problem None, "unknown", "wrong_kind",
        "revoked" or "expired"."""
        with self.lock:
            rec = self.state["tokens"].get(value or "")
            if rec is None:
                return None, "unknown"
            if kind is not None and rec["kind"] != kind and (
                    not isinstance(kind, (list, tuple)) or rec["kind"] not in kind):
                return rec, "wrong_kind"
            if rec["revoked"]:
                return rec, "revoked"
            if rec["expires_at"] is not None and rec["expires_at"] < self.now():
                return rec, "expired"
            return rec, None

    def revoke_tokens(self, value=None, account=None, grant=None, client=None):
        """Revoke matching tokens (all given criteria must match); returns
        how many were revoked."""
        n = 0
        with self.lock:
            for v, rec in self.state["tokens"].items():
                if value is not None and v != value:
                    continue
                if account is not None and rec["account"] != account:
                    continue
                if grant is not None and rec.get("grant") != grant:
                    continue
                if client is not None and rec.get("client") != client:
                    continue
                if not rec["revoked"]:
                    rec["revoked"] = True
                    n += 1
        return n

    # rate limit ------------------------------------------------------------
    def rate_limit(self, key, limit, window):
        """Sliding window: count this request under `key` if fewer than
        `limit` were allowed in the last `window` seconds."""
        with self.lock:
            now = self.now()
            q = self._rate.setdefault(key, deque())
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= limit:
                return RateResult(False, limit, 0, int(q[0] + window) + 1)
            q.append(now)
            return RateResult(True, limit, limit - len(q), int(q[0] + window) + 1)

    # fetching --------------------------------------------------------------
    def fetch_to_file(self, url, path, limit, timeout=30):
        """GET a loopback http(s) URL into `path`; returns (bytes, sha256).
        FetchError on a non-loopback host, an HTTP error or past `limit`."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not is_loopback_host(u.hostname or ""):
            raise FetchError("only loopback http(s) URLs are fetched")
        digest, n = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    url, headers={"User-Agent": "platformsim"}), timeout=timeout) as r, \
                    open(path, "wb") as f:
                while True:
                    b = r.read(IO_CHUNK)
                    if not b:
                        break
                    n += len(b)
                    if n > limit:
                        raise FetchError("larger than %d bytes" % limit)
                    f.write(b)
                    digest.update(b)
        except FetchError:
            raise
        except Exception as e:
            raise FetchError(str(e))
        return n, digest.hexdigest()

    # control -----------------------------------------------------------------
    def _token_list(self):
        return [dict(rec, value=v) for v, rec in self.state["tokens"].items()]

    def _ctl_state(self, req):
        out = {"platform": self.name, "base_url": self.base_url,
               "now": self.now(), "config": self.config,
               "accounts": self.state["accounts"], "tokens": self._token_list(),
               "published": self.state["published"]}
        out.update(self.plugin.public_state())
        return json_response(out)

    def _ctl_accounts(self, req):
        body = req.json() or {}
        with self.lock:
            acct = self.plugin.create_account(body)
        return json_response(acct, 201)

    def _ctl_faults(self, req):
        if req.method == "DELETE":
            with self.lock:
                self.faults = []
            return json_response({"faults": []})
        body = req.json()
        if not isinstance(body, dict) or not body.get("match") or \
                body.get("action") not in FAULT_ACTIONS:
            return json_response({"error": "need match and action "
                                           + "|".join(FAULT_ACTIONS)}, 400)
        try:
            fault = {"match": str(body["match"]),
                     "method": str(body.get("method") or "").upper() or None,
                     "action": body["action"], "status": int(body.get("status", 500)),
                     "count": int(body.get("count", 1)),
                     "retry_after": None if body.get("retry_after") is None
                     else int(body["retry_after"]),
                     "seconds": float(body.get("seconds", 30))}
        except (TypeError, ValueError):
            return json_response({"error": "status, count, retry_after and seconds "
                                           "are numbers"}, 400)
        if not 100 <= fault["status"] <= 599 or fault["count"] < 1:
            return json_response({"error": "status 100..599, count >= 1"}, 400)
        with self.lock:
            self.faults.append(fault)
            return json_response({"faults": self.faults})

    def _ctl_config(self, req):
        body = req.json()
        if not isinstance(body, dict):
            return json_response({"error": "JSON object expected"}, 400)
        unknown = [k for k in body if k not in self.plugin.config_defaults]
        if unknown:
            return json_response({"error": "unknown keys", "keys": unknown,
                                  "known": sorted(self.plugin.config_defaults)}, 400)
        with self.lock:
            self.config.update(body)
            return json_response({"config": self.config})

    def _ctl_expire(self, req):
        body = req.json() or {}
        which = body.get("which", "access")
        n = 0
        with self.lock:
            past = self.now() - 1
            for v, rec in self.state["tokens"].items():
                if "token" in body and v != body["token"]:
                    continue
                if "account" in body and rec["account"] != body["account"]:
                    continue
                if which != "all" and rec["kind"] != which:
                    continue
                rec["expires_at"] = past
                n += 1
        return json_response({"expired": n})

    def _ctl_revoke(self, req):
        body = req.json() or {}
        if not body.get("account"):
            return json_response({"error": "need account"}, 400)
        with self.lock:
            n = self.revoke_tokens(account=body["account"])
            self.plugin.on_revoke(body["account"])
        return json_response({"revoked": n})

    def _ctl_requests(self, req):
        try:
            since = int(req.query.get("since", "0"))
        except ValueError:
            since = 0
        with self._log_lock:
            items = [r for r in self.requests if r["seq"] > since]
            nxt = self.request_seq
        return json_response({"requests": items, "next": nxt})

    def _ctl_published(self, req):
        return json_response({"published": self.state["published"]})

    def _ctl_clock(self, req):
        body = req.json() or {}
        try:
            advance = float(body.get("advance", 0))
        except (TypeError, ValueError):
            return json_response({"error": "advance: seconds"}, 400)
        with self.lock:
            self.state["clock_offset"] = self.state.get("clock_offset", 0) + advance
            return json_response({"now": self.now(),
                                  "clock_offset": self.state["clock_offset"]})

    def _register_core_controls(self):
        r = self.router
        r.control("GET", "state", self._ctl_state)
        r.control("POST", "accounts", self._ctl_accounts)
        r.control("POST", "faults", self._ctl_faults)
        r.control("DELETE", "faults", self._ctl_faults)
        r.control("POST", "config", self._ctl_config)
        r.control("POST", "tokens/expire", self._ctl_expire)
        r.control("POST", "tokens/revoke", self._ctl_revoke)
        r.control("GET", "requests", self._ctl_requests)
        r.control("GET", "published", self._ctl_published)
        r.control("POST", "clock", self._ctl_clock)

    # dispatch ----------------------------------------------------------------
    def _take_fault(self, req):
        with self.lock:
            for f in self.faults:
                if req.path.startswith(f["match"]) and \
                        (f["method"] is None or f["method"] == req.method):
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self.faults.remove(f)
                    return dict(f)
        return None

    def _record(self, req, status, note=None):
        with self._log_lock:
            sys.stderr.write("platformsim %s: %s %s %s\n"
                             % (self.name, req.method, req.path, status))
            sys.stderr.flush()
            if req.path.startswith(CONTROL_PREFIX):
                return
            self.request_seq += 1
            entry = {"seq": self.request_seq, "method": req.method,
                     "path": req.path, "status": status, "time": time.time()}
            if note:
                entry["fault"] = note
            self.requests.append(entry)

    def dispatch(self, req):
        """Return (Response, fault_note)."""
        if req.path.startswith(CONTROL_PREFIX):
            if not is_loopback_host(req.client_ip):
                return json_response({"error": "control is loopback only"}, 403), None
            sub = req.path[len(CONTROL_PREFIX):].strip("/")
            handler, lock = self.router.controls.get((req.method, sub), (None, True))
            if handler is None:
                return json_response({"error": "no such control"}, 404), None
            if not lock:
                return handler(req), None
            with self.lock:
                return handler(req), None
        fault = self._take_fault(req)
        if fault:
            if fault["action"] == "drop":
                return drop_response(), "drop"
            if fault["action"] == "timeout":
                self.stopping.wait(fault["seconds"])
                return drop_response(), "timeout"
            if fault["action"] in ("timeout_after", "drop_after"):
                # The platform did the work; only its answer is lost.
                resp, _ = self._handle(req)
                if fault["action"] == "timeout_after":
                    self.stopping.wait(fault["seconds"])
                return drop_response(), "%s(%s)" % (fault["action"], resp.status)
            resp = self.plugin.fault_response(req, fault)
            resp.status = fault["status"]
            if fault.get("retry_after") is not None:
                resp.set_header("Retry-After", int(fault["retry_after"]))
            return resp, "status"
        return self._handle(req)

    def _handle(self, req):
        """Route req to its handler: (Response, None)."""
        if req.path == CONSENT_PATH and req.method == "POST":
            with self.lock:
                return self._consent_post(req), None
        handler, params, lock = self.router.match(req.method, req.path)
        if handler is None:
            if params is None and lock:
                r = json_response({"error": {"code": 405, "message": "method not allowed"}}, 405)
                r.set_header("Allow", ", ".join(sorted(lock)))
                return r, None
            return self.plugin.not_found(req), None
        req.params = params
        if lock:
            with self.lock:
                return handler(req), None
        return handler(req), None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "platformsim/1"
    sys_version = ""
    timeout = 120

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return self.server_version

    def _serve(self):
        core = self.server.core
        req = Request(self, core, self.command, self.path)
        note = None
        try:
            try:
                resp, note = core.dispatch(req)
            except Abort as a:
                resp = a.response
        except ClientGone:
            self.close_connection = True
            core._record(req, 0, "client_gone")
            return
        except Exception:
            core.log("handler error on %s %s:\n%s"
                     % (req.method, req.path, traceback.format_exc()))
            resp = json_response({"error": "simulator error"}, 500)
        if resp.drop:
            core._record(req, 0, note)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._drain_or_close(req, resp)
        # Recorded before the answer leaves, so a client that reads the log
        # right after its response sees its request.
        core._record(req, resp.status, note)
        try:
            self._send(req, resp)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if not req.path.startswith(CONTROL_PREFIX + "requests"):
            try:
                core.save()
            except Exception:
                core.log("cannot save state:\n" + traceback.format_exc())

    def _drain_or_close(self, req, resp):
        left = req.unread_body()
        if left == 0:
            return
        if left is not None and left <= DRAIN_LIMIT and not req._consumed:
            try:
                for _ in req.body_chunks():
                    pass
                return
            except (ClientGone, Abort):
                pass
        self.close_connection = True
        resp.set_header("Connection", "close")

    def _send(self, req, resp):
        self.send_response(resp.status)
        for k, v in resp.headers:
            if k.lower() != "content-length":
                self.send_header(k, v)
        length = resp.length()
        if resp.status not in (204, 304) and not (100 <= resp.status < 200):
            self.send_header("Content-Length", str(length))
        if self.close_connection and resp.header("Connection") is None:
            self.send_header("Connection", "close")
        self.end_headers()
        if req.method == "HEAD" or resp.status in (204, 304):
            return
        if resp.file:
            path, offset, left = resp.file
            with open(path, "rb") as f:
                f.seek(offset)
                while left > 0:
                    b = f.read(min(IO_CHUNK, left))
                    if not b:
                        break
                    self.wfile.write(b)
                    left -= len(b)
        elif resp.body:
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr):
        import socket as _s
        if ":" in addr[0]:
            self.address_family = _s.AF_INET6
        super().__init__(addr, _Handler)
        self.core = None


def bind(host, port):
    """A listening server (not yet serving) on host:port (0 = any free)."""
    return SimServer((host, port))


def base_url_of(httpd, host):
    port = httpd.server_address[1]
    h = "[%s]" % host if ":" in host else host
    return "http://%s:%d" % (h, port)


def make_core(name, module, state_dir, app, httpd, host, urls):
    """Build the Core for `module` (which defines create(core)) on httpd."""
    core = Core(name, state_dir, app, base_url_of(httpd, host), urls, host, httpd)
    core.plugin = module.create(core)
    core._register_core_controls()
    core.plugin.routes(core.router)
    core.load()
    httpd.core = core
    core.plugin.start()
    return core
