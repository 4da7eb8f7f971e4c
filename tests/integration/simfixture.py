"""Start and drive tests/sim/platformsim for the simulator tests.

    from simfixture import sim            # module-scoped fixture
    SIM_PLATFORMS = ("tiktok",)           # optional, in the test module

    def test_x(sim):
        r = sim.request("tiktok", "GET", "/v2/user/info/", headers={...})
        sim.control("tiktok", "POST", "faults", {...})

One platformsim process per test module, on free loopback ports (port 0,
read back from the ready file), in a temporary state directory.  Stock
videos are cached per test session in a shared temporary directory.
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import pytest

ROOT = os.environ.get("CROSSPOST_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
PLATFORMSIM = os.path.join(ROOT, "tests", "sim", "platformsim")
ALL_PLATFORMS = ("tiktok", "instagram", "youtube", "x")
CALLBACK = "http://127.0.0.1:9/oauth/%s/callback"

DEFAULT_APPS = {
    "tiktok": {"client_key": "sim-tiktok-key", "client_secret": "sim-tiktok-secret",
               "redirect_uris": [CALLBACK % "tiktok"], "webhook_url": ""},
    "instagram": {"app_id": "100200300", "app_secret": "sim-fb-secret",
                  "redirect_uris": [CALLBACK % "instagram"]},
    "youtube": {"client_id": "sim-google.apps.googleusercontent.com",
                "client_secret": "sim-google-secret",
                "redirect_uris": [CALLBACK % "youtube"]},
    "x": {"consumer_key": "sim-x-consumer", "consumer_secret": "sim-x-consumer-secret",
          "client_id": "sim-x-client", "client_secret": "sim-x-client-secret",
          "callback_urls": [CALLBACK % "x"]},
}

_media_cache = None


def media_cache():
    """One stock-video cache for the whole test session."""
    global _media_cache
    if _media_cache is None:
        _media_cache = tempfile.mkdtemp(prefix="platformsim-media-")
        atexit.register(shutil.rmtree, _media_cache, True)
    return _media_cache


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # dict, lower-case names
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Resp %d %r>" % (self.status, self.body[:300])


def http_request(url, method="GET", body=None, headers=None, timeout=30):
    """One request with http.client (no redirects followed)."""
    u = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(u.hostname, u.port, timeout=timeout)
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


class SimProcess:
    """A platformsim process in its own state directory."""

    def __init__(self, platforms=ALL_PLATFORMS, apps=None, state_dir=None):
        self.platforms = tuple(platforms)
        self.apps = apps or DEFAULT_APPS
        self.own_dir = state_dir is None
        self.dir = state_dir or tempfile.mkdtemp(prefix="platformsim-")
        self.state_dir = os.path.join(self.dir, "state")
        self.apps_file = os.path.join(self.dir, "apps.json")
        self.ready_file = os.path.join(self.dir, "ready.json")
        self.log_file = os.path.join(self.dir, "platformsim.log")
        self.proc = None
        self.urls = {}
        self.ports = {p: 0 for p in self.platforms}

    def start(self, timeout=60):
        with open(self.apps_file, "w") as f:
            json.dump(self.apps, f)
        args = ["/usr/bin/python3", PLATFORMSIM, "--state-dir", self.state_dir,
                "--apps", self.apps_file, "--ready-file", self.ready_file]
        for p in self.platforms:
            args += ["--port", "%s=%d" % (p, self.ports[p])]
        env = dict(os.environ, PLATFORMSIM_MEDIA_CACHE=media_cache())
        log = open(self.log_file, "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.time() + timeout
        while not os.path.exists(self.ready_file):
            if self.proc.poll() is not None:
                raise RuntimeError("platformsim exited %d:\n%s"
                                   % (self.proc.returncode, self.log()))
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("platformsim not ready:\n" + self.log())
            time.sleep(0.05)
        with open(self.ready_file) as f:
            self.urls = json.load(f)
        for p, url in self.urls.items():
            self.ports[p] = urllib.parse.urlsplit(url).port
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def restart(self):
        """Stop and start again on the same ports with the same state."""
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_file) as f:
                return f.read()[-20000:]
        except OSError:
            return ""

    # HTTP ------------------------------------------------------------------
    def url(self, platform, path, query=None):
        u = self.urls[platform] + path
        if query:
            u += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        return u

    def request(self, platform, method, path, body=None, headers=None, query=None,
                form=None, json_body=None, token=None, timeout=30):
        headers = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json_body is not None:
            body = json.dumps(json_body)
            headers.setdefault("Content-Type", "application/json")
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return http_request(self.url(platform, path, query), method, body, headers, timeout)

    def get(self, platform, path, **kw):
        return self.request(platform, "GET", path, **kw)

    def post(self, platform, path, **kw):
        return self.request(platform, "POST", path, **kw)

    def control(self, platform, method, sub, body=None, expect=(200, 201)):
        """A control call; returns the decoded JSON (asserts the status)."""
        r = self.request(platform, method, "/__control/" + sub.lstrip("/"),
                         json_body=body)
        if expect is not None:
            assert r.status in expect, r
        return r.json()

    def consent(self, platform, authorize_url, account, decision="allow"):
        """Walk the consent page like a browser: returns (page, redirect).

        page is the authorize response; when it is not 200 redirect is None.
        redirect is the /__consent answer (302 with Location)."""
        page = http_request(authorize_url)
        if page.status != 200:
            return page, None
        m = re.search(r'name="request_id" value="([^"]+)"', page.text)
        assert m, page.text
        assert '<option value="%s">' % account in page.text or decision == "deny", page.text
        r = http_request(self.urls[platform] + "/__consent", "POST",
                         urllib.parse.urlencode({"request_id": m.group(1),
                                                 "account": account,
                                                 "decision": decision}),
                         {"Content-Type": "application/x-www-form-urlencoded"})
        return page, r


def location_params(resp):
    """The query of a redirect's Location as a dict."""
    loc = resp.headers.get("location", "")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query,
                                       keep_blank_values=True))


@pytest.fixture(scope="module")
def sim(request):
    """platformsim for this module (platforms from module SIM_PLATFORMS)."""
    platforms = getattr(request.module, "SIM_PLATFORMS", ALL_PLATFORMS)
    s = SimProcess(platforms)
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    failed = request.session.testsfailed > 0
    s.stop()
    log = s.log()
    if "Traceback" in log:
        failed = True
    if failed:
        print("platformsim state kept in %s\n%s" % (s.dir, s.log()[-3000:]))
    else:
        s.cleanup()
    assert "Traceback" not in log, "a simulator handler failed:\n" + log[-5000:]
