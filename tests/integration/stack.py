"""A private crosspost stack for one test session.

Starts MariaDB, memcached, the platform simulators (sandbox mode), the API
pool, the worker supervisor and nginx through scripts/stack in a temporary
directory on free ports, and gives tests small helpers to talk to it: HTTP
through nginx, raw sockets, FastCGI straight to the pool, the simulators'
control paths, a browser with a cookie jar, and control over each service.
"""
import http.client
import http.cookiejar
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.environ.get("CROSSPOST_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILDDIR = os.environ.get("CROSSPOST_BUILDDIR") or os.path.join(ROOT, "build")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # dict, lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


class Stack:
    def __init__(self, api_children=3):
        self.var = tempfile.mkdtemp(prefix="cp-", dir="/tmp")
        self.port = free_port()
        self.sim_ports = distinct_free_ports(4, exclude=(self.port,))
        self.env = dict(os.environ)
        self.env.update({
            "CROSSPOST_VAR": self.var,
            "CROSSPOST_PORT": str(self.port),
            # TikTok, Instagram, YouTube and X simulators (sandbox mode).
            "CROSSPOST_SIM_PORTS": ",".join(str(p) for p in self.sim_ports),
            "CROSSPOST_BUILDDIR": BUILDDIR,
            "CROSSPOST_API_CHILDREN": str(api_children),
            # Every test signs in from 127.0.0.1, so the per-address login
            # throttle would couple unrelated tests; test_ratelimit.py sets
            # its own threshold where it tests that throttle.
            "CROSSPOST_LOGIN_THROTTLE_ADDR_AFTER": "1000",
        })
        # Programs of the stack must read only the stack's configuration.
        for key in list(self.env):
            if key.startswith("CROSSPOST_") and key not in (
                    "CROSSPOST_VAR", "CROSSPOST_PORT", "CROSSPOST_BUILDDIR",
                    "CROSSPOST_API_CHILDREN", "CROSSPOST_SRCDIR", "CROSSPOST_SIM_PORTS",
                    "CROSSPOST_LOGIN_THROTTLE_ADDR_AFTER"):
                del self.env[key]
        self.conf = os.path.join(self.var, "crosspost.conf")
        self.api_socket = os.path.join(self.var, "run", "api.sock")
        self.url = "http://127.0.0.1:%d" % self.port

    # -- services -------------------------------------------------------
    def run_stack(self, *args, env=None, timeout=180):
        e = dict(self.env)
        if env:
            e.update(env)
        subprocess.run([os.path.join(ROOT, "scripts", "stack")] + list(args),
                       env=e, check=True, timeout=timeout)

    def up(self):
        self.run_stack("up")

    def down(self):
        try:
            self.run_stack("down", timeout=120)
        except subprocess.SubprocessError:
            pass

    def stop(self, service):
        self.run_stack("stop", service)

    def start(self, service, env=None):
        self.run_stack("start", service, env=env)

    def cleanup(self, keep):
        if keep:
            print("stack state kept in", self.var)
        else:
            shutil.rmtree(self.var, ignore_errors=True)

    def pid(self, name):
        with open(os.path.join(self.var, "run", name + ".pid")) as f:
            return int(f.read().strip())

    def api_master(self):
        return self.pid("api")

    def api_children(self):
        out = subprocess.run(["pgrep", "-P", str(self.api_master())],
                             capture_output=True, text=True).stdout
        return sorted(int(p) for p in out.split())

    def wait_children(self, count, timeout=15, exclude=()):
        deadline = time.time() + timeout
        kids = None
        while time.time() < deadline:
            try:
                kids = self.api_children()
            except (OSError, ValueError):      # pid file not (yet) there
                kids = None
            if kids is not None and len(kids) == count and not set(kids) & set(exclude):
                return kids
            time.sleep(0.05)
        raise AssertionError("expected %d children, have %r" % (count, kids))

    def signal_api(self, sig):
        os.kill(self.api_master(), sig)

    def ctl(self, *args, env=None, check=False, input_text=None):
        e = dict(self.env)
        if env:
            e.update(env)
        if input_text is not None and not input_text.endswith("\n"):
            input_text += "\n"
        return subprocess.run([os.path.join(BUILDDIR, "crosspostctl"), "--config", self.conf] + list(args),
                              env=e, capture_output=True, text=True, timeout=60, check=check,
                              input=input_text if input_text is not None else "")

    def log(self, name):
        path = os.path.join(self.var, "log", name)
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    # -- the worker supervisor (crosspost-worker) --------------------------
    def worker_master(self):
        return self.pid("worker")

    def worker_children(self):
        """Pids of the supervisor's processes (scheduler and workers)."""
        out = subprocess.run(["pgrep", "-P", str(self.worker_master())],
                             capture_output=True, text=True).stdout
        return sorted(int(p) for p in out.split())

    def signal_worker(self, sig):
        os.kill(self.worker_master(), sig)

    def start_worker(self, env=None, timeout=15):
        """Start the supervisor through scripts/stack; env carries
        CROSSPOST_* overrides (CROSSPOST_WORKER_QUEUES, CROSSPOST_JOB_LEASE...).
        Returns once the pid file names a live process (a pid file left by
        a killed supervisor is replaced, not trusted)."""
        self.start("worker", env=env)
        deadline = time.time() + timeout
        while True:
            try:
                pid = self.worker_master()
                if process_alive(pid):
                    return pid
            except (OSError, ValueError):
                pid = None
            if time.time() > deadline:
                raise AssertionError("crosspost-worker did not start (pid file: %r); log tail:\n%s"
                                     % (pid, self.log("worker.log")[-2000:]))
            time.sleep(0.05)

    def stop_worker(self):
        self.stop("worker")

    def jobs_by_state(self, where="1"):
        """{state: count} of the jobs matching a SQL condition."""
        rows = stack_sql(self, "SELECT state, COUNT(*) FROM jobs WHERE %s GROUP BY state" % where)
        return {state: int(n) for state, n in rows}

    # -- HTTP through nginx ----------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=10, source=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def raw(self, data, timeout=10, half_close=True):
        """Send raw bytes to nginx; return the whole answer as bytes.

        half_close shuts the sending side after data; a request that nginx
        passes on to the API needs half_close=False, or nginx takes the
        early end of the connection for a client that went away (499).
        The request should then say "Connection: close"."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                try:
                    c = s.recv(65536)
                except ConnectionResetError:
                    break
                if not c:
                    break
                chunks.append(c)
        return b"".join(chunks)

    def metrics(self):
        """One scrape of /metrics, parsed (see parse_metrics)."""
        r = self.get("/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics: %r" % r)
        return parse_metrics(r.body.decode())

    def metric(self, name, **labels):
        """One sample of one scrape; 0 when the series is absent."""
        return self.metrics().get(metric_key(name, **labels), 0.0)

    def wait_for(self, what, check, timeout=15, interval=0.1):
        """Poll check() until it returns something true; return that."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = e
            time.sleep(interval)
        raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))

    def ready(self):
        """True when /readyz says 200."""
        return self.get("/readyz", timeout=5).status == 200

    def heal(self, children=3):
        """Bring every service back and wait until the stack is ready with
        a full pool; for tests that disturb the stack, in their finally."""
        for name, pidfile in (("mariadb", "mysqld"), ("memcached", "memcached"),
                              ("api", "api"), ("nginx", "nginx")):
            try:
                os.kill(self.pid(pidfile), 0)
            except (OSError, ValueError):
                self.start(name)
        self.wait_children(children, timeout=40)
        self.wait_for("/readyz 200", self.ready, timeout=30)

    def restart_api(self, env=None, children=3):
        """Stop the pool and start it again (with env, if given)."""
        self.stop("api")
        self.start("api", env=env)
        return self.wait_children(children, timeout=20)

    # -- the platform simulators (sandbox mode) ----------------------------
    def sim_urls(self):
        """{"tiktok": "http://127.0.0.1:P", "instagram": ..., "youtube": ...,
        "x": ...} from the simulators' ready file."""
        with open(os.path.join(self.var, "sim", "ready.json")) as f:
            return json.load(f)

    def sim_url(self, platform):
        return self.sim_urls()[platform]

    def sim_apps(self):
        """The sandbox apps the stack registered with the simulators."""
        with open(os.path.join(self.var, "sim", "apps.json")) as f:
            return json.load(f)

    def sim(self, platform, method, path, body=None, timeout=15):
        """Call a simulator's control path (/__control/...); the JSON
        answer, or AssertionError on a status other than 2xx."""
        r = self.sim_request(platform, method, path, body=body, timeout=timeout)
        if not 200 <= r.status < 300:
            raise AssertionError("%s %s on the %s simulator: %r" % (method, path, platform, r))
        return r.json() if r.body else None

    def sim_request(self, platform, method, path, body=None, headers=None, timeout=15):
        """Any request to a simulator, as a Response."""
        u = urllib.parse.urlsplit(self.sim_url(platform))
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def browser(self):
        """A new browser (its own cookie jar) talking to this stack."""
        return Browser(self)

    # -- FastCGI straight to the pool --------------------------------------
    def fcgi(self, params, body=b"", timeout=10):
        return fcgi_request(self.api_socket, params, body, timeout)

    def fcgi_connect(self, timeout=10):
        """A connected socket to the pool, for requests sent piece by piece."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.api_socket)
        except OSError:
            s.close()
            raise
        return s


def distinct_free_ports(n, exclude=()):
    """n free loopback ports, distinct from each other and from exclude."""
    ports = []
    while len(ports) < n:
        p = free_port()
        if p not in ports and p not in exclude:
            ports.append(p)
    return ports


# -- a browser: a cookie jar and redirects followed by hand ------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_CONSENT_FORM = re.compile(r'<form[^>]*action="/__consent"[^>]*>(.*?)</form>', re.S)
_REQUEST_ID = re.compile(r'name="request_id"\s+value="([^"]*)"')
_OPTION = re.compile(r'<option value="([^"]*)"')


class Browser:
    """What a person's browser does during a connection: signs in through
    nginx, starts an authorization with its bearer token, opens the
    platform's consent page, answers it, and follows the platform's
    redirect back to the stack's callback, carrying the cookies the stack
    set (cp_oauth).  Redirects are followed one at a time so tests can
    look at (or replay) each step."""

    def __init__(self, stack):
        self.stack = stack
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(_NoRedirect(),
                                                  urllib.request.HTTPCookieProcessor(self.jar))
        self.token = None
        self.user = None

    def open(self, method, url, body=None, headers=None, timeout=15):
        """One request (no redirect followed); a Response whatever the status."""
        if url.startswith("/"):
            url = self.stack.url + url
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(url, data=body, headers=h, method=method)
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def cookie(self, name):
        """The value of a cookie in the jar, or None."""
        for c in self.jar:
            if c.name == name:
                return c.value
        return None

    def sign_in(self, email, password):
        r = self.open("POST", "/api/v1/auth/login", {"email": email, "password": password})
        if r.status != 200:
            raise AssertionError("sign-in of %s: %r" % (email, r))
        body = r.json()
        self.token = body["access_token"]
        self.user = body["user"]
        return self

    def api(self, method, path, body=None, headers=None):
        """A call to the API with this browser's bearer token."""
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = {}
        return self.open(method, path, body, h)

    def authorize(self, platform):
        """POST /api/v1/connections/{platform}/authorize: the authorize URL
        (the response's cp_oauth cookie lands in the jar)."""
        r = self.api("POST", "/api/v1/connections/%s/authorize" % platform)
        if r.status != 200:
            raise AssertionError("authorize %s: %r" % (platform, r))
        return r.json()["authorize_url"]

    def consent_page(self, authorize_url):
        """Open the platform's consent page: (request_id, [account names])."""
        r = self.open("GET", authorize_url)
        if r.status != 200:
            raise AssertionError("consent page %s: %r" % (authorize_url.split("?")[0], r))
        form = _CONSENT_FORM.search(r.body.decode("utf-8", "replace"))
        if not form:
            raise AssertionError("no consent form in %r" % r.body[:500])
        rid = _REQUEST_ID.search(form.group(1))
        return rid.group(1), _OPTION.findall(form.group(1))

    def consent(self, authorize_url, account, decision="allow"):
        """Answer the consent page as account; the URL the platform sends
        the browser back to (the stack's callback)."""
        rid, _ = self.consent_page(authorize_url)
        u = urllib.parse.urlsplit(authorize_url)
        r = self.open("POST", "%s://%s/__consent" % (u.scheme, u.netloc),
                      urllib.parse.urlencode({"request_id": rid, "account": account,
                                              "decision": decision}),
                      {"Content-Type": "application/x-www-form-urlencoded"})
        if r.status not in (302, 303):
            raise AssertionError("consent of %s: %r" % (account, r))
        return r.headers["location"]

    def callback(self, url):
        """Follow the platform's redirect to the stack's callback; the
        outcome from the query of the stack's redirect to the UI
        ({"platform", "result", "connection_id"|"error", ...}), and the
        raw Location as "_location"."""
        r = self.open("GET", url)
        if r.status != 302:
            raise AssertionError("callback %s: %r" % (urllib.parse.urlsplit(url).path, r))
        loc = r.headers["location"]
        out = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
        out["_location"] = loc
        out["_set_cookie"] = r.headers.get("set-cookie", "")
        return out

    def connect(self, platform, account, decision="allow"):
        """The whole trip: authorize, consent as account, callback."""
        return self.callback(self.consent(self.authorize(platform), account, decision))


# -- Prometheus text format -------------------------------------------------
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_key(name, **labels):
    return (name, frozenset(labels.items()))


def parse_metrics(text):
    """Samples of a text exposition as {(name, frozenset(labels)): value}.
    Raises ValueError on a line that is neither a comment nor a sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("not a Prometheus sample: %r" % line)
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out[metric_key(m.group(1), **labels)] = float(m.group(3))
    return out


def process_alive(pid):
    """True while pid runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def parse_raw_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, body)


# -- a small FastCGI client (FastCGI 1.0 responder role) -----------------
FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def fcgi_record(rtype, content, request_id=1):
    pad = (8 - len(content) % 8) % 8
    return struct.pack("!BBHHBB", 1, rtype, request_id, len(content), pad, 0) + content + b"\0" * pad


def fcgi_pair(name, value):
    def length(n):
        return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def fcgi_begin():
    return fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", 1, 0))


def fcgi_params_records(params):
    """PARAMS records for params, ending with the empty one."""
    out = b""
    blob = b"".join(fcgi_pair(k.encode(), v.encode() if isinstance(v, str) else v)
                    for k, v in params.items())
    for i in range(0, len(blob), 65535):
        out += fcgi_record(FCGI_PARAMS, blob[i:i + 65535])
    return out + fcgi_record(FCGI_PARAMS, b"")


def fcgi_encode(params, body):
    out = fcgi_begin() + fcgi_params_records(params)
    for i in range(0, len(body), 65535):
        out += fcgi_record(FCGI_STDIN, body[i:i + 65535])
    out += fcgi_record(FCGI_STDIN, b"")
    return out


def fcgi_read_response(sock):
    buf = b""
    stdout = b""
    while True:
        c = sock.recv(65536)
        if not c:
            break
        buf += c
        while len(buf) >= 8:
            _, rtype, _, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            content = buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            if rtype == FCGI_STDOUT:
                stdout += content
            elif rtype == FCGI_END_REQUEST:
                return parse_cgi_response(stdout)
    raise ConnectionError("connection closed before FCGI_END_REQUEST")


def parse_cgi_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    status = 200
    for line in head.decode("latin-1").split("\r\n"):
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "status":
            status = int(v.split()[0])
        else:
            headers[k] = v.strip()
    return Response(status, headers, body)


def fcgi_request(path, params, body=b"", timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(fcgi_encode(params, body))
        return fcgi_read_response(s)


def cgi_params(method, path, body=b"", content_type="application/json", extra=None):
    p = {"REQUEST_METHOD": method, "DOCUMENT_URI": path, "QUERY_STRING": "",
         "REQUEST_ID": "%032x" % int(time.time() * 1e6)}
    if body or method in ("POST", "PUT", "PATCH"):
        p["CONTENT_LENGTH"] = str(len(body))
        p["CONTENT_TYPE"] = content_type
    if extra:
        p.update(extra)
    return p


def stack_sql(stack, query):
    """Run SQL as the database administrator of the stack; rows as lists."""
    out = subprocess.run(["mariadb", "--no-defaults", "--socket", os.path.join(stack.var, "run", "mysqld.sock"),
                          "-u", os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                                         text=True).stdout.strip(),
                          "--batch", "--skip-column-names", "crosspost", "-e", query],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


TAP_LINE = re.compile(r"^(ok|not ok) (\d+) - (\S+)")


class TapRun:
    """One run of a C test program of this suite (cmocka speaking TAP):
    its output and the outcome of each test, by name."""

    def __init__(self, proc, program):
        self.proc = proc
        self.program = program
        self.order = []             # test names as reported
        self.passed = {}            # name -> bool
        self.notes = {}             # name -> the "# ..." lines after it
        current = None
        for line in proc.stdout.splitlines():
            m = TAP_LINE.match(line)
            if m:
                current = m.group(3)
                self.order.append(current)
                self.passed[current] = m.group(1) == "ok"
                self.notes[current] = []
            elif line.startswith("#") and current:
                self.notes[current].append(line)

    def report(self, name=None):
        head = ""
        if name:
            head = "%s:\n%s\n\n" % (name, "\n".join(self.notes.get(name, [])) or "(no diagnostics)")
        return "%s%s exited with %d\n--- stdout\n%s\n--- stderr\n%s" % (
            head, self.program, self.proc.returncode, self.proc.stdout, self.proc.stderr[-20000:])


def worker_pid(stack):
    """The stack's crosspost-worker supervisor, if one runs."""
    try:
        pid = stack.pid("worker")
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def run_tap_program(stack, program, *args, timeout=300):
    """Run a C test program of this suite against the stack, cmocka
    speaking TAP; the finished process."""
    env = dict(stack.env)
    env.update(CROSSPOST_CONFIG=stack.conf, CMOCKA_MESSAGE_OUTPUT="TAP")
    return subprocess.run([program] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def tap_run_without_worker(stack, program):
    """The TapRun of program with the stack's worker stopped for the run
    (it would act on the program's rows under its feet) and started again
    after, when it was running."""
    had_worker = worker_pid(stack) is not None
    if had_worker:
        stack.stop("worker")
    try:
        proc = run_tap_program(stack, program)
    finally:
        if had_worker:
            stack.start("worker")
    return TapRun(proc, os.path.basename(program))
