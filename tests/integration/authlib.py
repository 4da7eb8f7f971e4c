"""Helpers for sign-in tests: accounts, logins, cookies, hand-made JWTs
and the audit log, all through the private stack."""
import base64
import hashlib
import hmac
import json
import os
import uuid

from stack import stack_sql

JSON = {"Content-Type": "application/json"}
ADMIN = "admin@localhost"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def real_key(stack):
    """The raw HS256 secret the stack signs with (jwt.key: "hs256:<base64url>")."""
    with open(os.path.join(stack.var, "jwt.key")) as f:
        text = f.read().strip()
    assert text.startswith("hs256:"), "the stack's key is not an HS256 key"
    return unb64url(text[len("hs256:"):])


def admin_password(stack):
    with open(os.path.join(stack.var, "admin-password")) as f:
        return f.read().strip()


def sign_hs256(header, payload, key):
    """A compact JWS of header and payload (dicts) signed with key."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(key, ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64url(sig))


def unsigned(header, payload):
    """header.payload. with an empty signature."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    return "%s.%s." % (h, p)


def claims_of(token):
    """The payload of a token, unverified."""
    return json.loads(unb64url(token.split(".")[1]))


def new_jti():
    return b64url(os.urandom(16))


def sql(stack, query):
    return stack_sql(stack, query)


def quote(s):
    """A SQL string literal for the test's own values."""
    return "'" + str(s).replace("\\", "\\\\").replace("'", "''") + "'"


def count(stack, table, where="1"):
    return int(sql(stack, "SELECT COUNT(*) FROM %s WHERE %s" % (table, where))[0][0])


def unique_email(tag="auth"):
    return "%s-%s@example.com" % (tag, uuid.uuid4().hex[:12])


def new_password():
    return "pw-" + uuid.uuid4().hex


def add_user(stack, email=None, password=None, role=None):
    """Create an account with crosspostctl; (email, password, id)."""
    email = email or unique_email()
    password = password or new_password()
    args = ["user", "add", email, "--password-stdin"]
    if role:
        args += ["--role", role]
    r = stack.ctl(*args, input_text=password)
    assert r.returncode == 0, r.stderr
    return email, password, user_id(stack, email)


def user_id(stack, email):
    rows = sql(stack, "SELECT id FROM users WHERE email = %s" % quote(email))
    assert len(rows) == 1, rows
    return int(rows[0][0])


def post_json(stack, path, obj=None, headers=None, body=None):
    h = dict(JSON)
    h.update(headers or {})
    if body is None:
        body = json.dumps(obj if obj is not None else {}).encode()
    return stack.request("POST", path, body=body, headers=h)


def login(stack, email, password, headers=None):
    return post_json(stack, "/api/v1/auth/login", {"email": email, "password": password}, headers)


class Session:
    """One sign-in: its access token and refresh cookie value."""

    def __init__(self, response):
        assert response.status in (200, 201), response
        body = response.json()
        self.response = response
        self.access = body["access_token"]
        self.user = body["user"]
        self.cookie = cookie_value(response)
        assert self.cookie, response.headers.get("set-cookie")

    @property
    def sid(self):
        return claims_of(self.access)["sid"]


def sign_in(stack, email, password):
    return Session(login(stack, email, password))


def set_cookie(response):
    """The Set-Cookie header of a response (the API sends at most one)."""
    return response.headers.get("set-cookie", "")


def cookie_attrs(response):
    """(name, value, {attribute lower-case: value or True})."""
    parts = [p.strip() for p in set_cookie(response).split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip() if eq else True
    return name, value, attrs


def cookie_value(response):
    name, value, _ = cookie_attrs(response)
    return value if name == "cp_refresh" else ""


def refresh(stack, cookie, headers=None):
    h = {"Cookie": "cp_refresh=%s" % cookie}
    h.update(headers or {})
    return post_json(stack, "/api/v1/auth/refresh", headers=h, body=b"")


def logout(stack, cookie, headers=None):
    h = {"Cookie": "cp_refresh=%s" % cookie}
    h.update(headers or {})
    return post_json(stack, "/api/v1/auth/logout", headers=h, body=b"")


def me(stack, token):
    return stack.get("/api/v1/me", headers={"Authorization": "Bearer %s" % token})


def error_of(response):
    """The error object of a response, after checking the documented shape:
    {"error":{"code","message","request_id"}} with request_id = X-Request-Id."""
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] and err["request_id"] == response.headers.get("x-request-id"), \
        (err, response.headers)
    return err


def assert_error(response, status, code):
    assert response.status == status, response
    err = error_of(response)
    assert err["code"] == code, err
    return err


def masked(response):
    """The body with its request_id blanked, for byte comparisons."""
    rid = response.headers.get("x-request-id", "")
    assert rid and rid.encode() in response.body, response
    return response.body.replace(rid.encode(), b"<request_id>")


def audit_rows(stack, where):
    """Audit rows as dicts, oldest first."""
    cols = ["id", "actor_id", "actor_label", "action", "outcome", "target_type", "target_id",
            "owner_id", "client_addr", "request_id", "detail"]
    rows = sql(stack, "SELECT %s FROM audit_log WHERE %s ORDER BY id" % (", ".join(cols), where))
    return [dict(zip(cols, r)) for r in rows]
