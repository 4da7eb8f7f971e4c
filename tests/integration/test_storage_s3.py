"""The storage layer against real servers: the S3 backend against s3rver
(single PUT, a multipart upload of three parts, read back with curl's own
SigV4 client, presigned URLs, delete, per-part retries and the abort of a
failed upload), and local storage's signed links through nginx's
secure_link."""
import hashlib
import http.client
import http.server
import os
import re
import subprocess
import threading
import time
import urllib.parse

import pytest

from s3server import S3Server, s3rver_script
from stack import BUILDDIR, ROOT, free_port

BENCH = os.path.join(BUILDDIR, "tests", "bench", "media_bench")
MIB = 1024 * 1024


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def random_file(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return sha256_of(path)


def driver(env, *args, check=True):
    full = dict(os.environ)
    full = {k: v for k, v in full.items() if not k.startswith("CROSSPOST_")}
    full.update(env)
    r = subprocess.run([BENCH] + list(args), env=full, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if not os.path.exists(BENCH):
        subprocess.run(["make", "-C", BUILDDIR, "-s", "tests/bench/media_bench"], check=True,
                       timeout=600)
    if not s3rver_script():
        pytest.fail("s3rver could not be installed (npm missing?)")
    work = tmp_path_factory.mktemp("s3")
    server = S3Server(str(work), free_port())
    server.start()
    yield server, work
    server.stop()


def test_single_put_round_trip(s3):
    server, work = s3
    env = server.env(str(work / "store"))
    path = str(work / "small.mp4")
    digest = random_file(path, 100 * 1024)
    driver(env, "put", "videos/7/small.mp4", path, "video/mp4")
    assert not os.path.exists(path), "an uploaded file is consumed"
    assert driver(env, "stat", "videos/7/small.mp4").stdout.strip() == str(100 * 1024)
    back = str(work / "small.curl")
    assert server.curl_get("videos/7/small.mp4", back) == 200
    assert sha256_of(back) == digest


def test_multipart_round_trip_presign_and_delete(s3):
    server, work = s3
    env = server.env(str(work / "store"), part_size="5M")
    path = str(work / "big.mp4")
    digest = random_file(path, 12 * MIB)
    log_before = os.path.getsize(os.path.join(str(work), "s3rver.log"))
    driver(env, "put", "videos/7/big.mp4", path, "video/mp4")
    with open(os.path.join(str(work), "s3rver.log"), errors="replace") as f:
        f.seek(log_before)
        log = f.read()
    parts = set(re.findall(r"partNumber=(\d+)&uploadId=", log))
    assert parts == {"1", "2", "3"}, log[-2000:]

    # Read back by an independent client (curl's SigV4) and by ours.
    back = str(work / "big.curl")
    assert server.curl_get("videos/7/big.mp4", back) == 200
    assert sha256_of(back) == digest
    ours = str(work / "big.ours")
    assert driver(env, "get", "videos/7/big.mp4", ours).stdout.strip() == str(12 * MIB)
    assert sha256_of(ours) == digest

    # A presigned URL works with plain curl.
    url = driver(env, "url", "videos/7/big.mp4", "300").stdout.strip()
    assert url.startswith(server.endpoint + "/media/videos/7/big.mp4?")
    plain = str(work / "big.presigned")
    r = subprocess.run(["curl", "-sS", "-o", plain, "-w", "%{http_code}", url],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "200" and sha256_of(plain) == digest
    # (s3rver serves presigned URLs without checking their signature, so
    # only the shape is checked here; tests/unit/test_sigv4.c pins it down.)
    assert "X-Amz-Expires=300&" in url and "X-Amz-SignedHeaders=host" in url

    driver(env, "delete", "videos/7/big.mp4")
    assert server.curl_get("videos/7/big.mp4", str(work / "gone")) == 404
    r = driver(env, "stat", "videos/7/big.mp4", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    driver(env, "delete", "videos/7/big.mp4")   # missing is not an error


class FaultyProxy(http.server.ThreadingHTTPServer):
    """Forwards to s3rver, but answers 500 to every upload of part 2."""
    daemon_threads = True

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.seen = []
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query,
                                      keep_blank_values=True)
        self.server.seen.append((self.command, query))
        if self.command == "PUT" and query.get("partNumber") == ["2"]:
            payload = (b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code>"
                       b"<Message>injected</Message></Error>")
            self.send_response(500)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        # The Host header is kept as signed.
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one


def test_failed_part_is_retried_then_upload_aborted(s3):
    server, work = s3
    proxy = FaultyProxy(server.port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = "http://127.0.0.1:%d" % proxy.server_address[1]
        env = server.env(str(work / "store"), part_size="5M", endpoint=endpoint)
        path = str(work / "doomed.mp4")
        random_file(path, 11 * MIB)
        r = driver(env, "put", "videos/7/doomed.mp4", path, check=False)
        assert r.returncode == 1 and "500" in r.stderr, r.stderr
        assert os.path.exists(path), "a file that was not stored is kept"
        part2 = [q for m, q in proxy.seen if m == "PUT" and q.get("partNumber") == ["2"]]
        assert len(part2) == 4, "part 2 is tried once and retried 3 times"
        assert not [q for m, q in proxy.seen if m == "PUT" and q.get("partNumber") == ["3"]]
        upload_ids = {q["uploadId"][0] for m, q in proxy.seen if "uploadId" in q}
        assert len(upload_ids) == 1
        aborts = [q for m, q in proxy.seen if m == "DELETE" and "uploadId" in q]
        assert len(aborts) == 1 and aborts[0]["uploadId"][0] in upload_ids
        assert not [q for m, q in proxy.seen if m == "POST" and "uploadId" in q], \
            "no completion after a failed part"
        assert server.curl_get("videos/7/doomed.mp4", str(work / "none")) == 404
    finally:
        proxy.shutdown()
        proxy.server_close()


def render_local_nginx(work, port, storage_dir, secret):
    """nginx with the local stack's configuration, as scripts/stack renders it."""
    ndir = work / "nginx"
    (ndir / "tmp").mkdir(parents=True)
    for name in ["security_headers", "api_headers", "ui_headers", "api_params", "errors.conf",
                 "locations.conf"]:
        with open(os.path.join(ROOT, "nginx", name)) as f:
            (ndir / name).write_text(f.read().replace("@NGINX_DIR@", str(ndir)))
    with open(os.path.join(ROOT, "nginx", "local.conf.in")) as f:
        text = f.read()
    for old, new in [("@VAR@", str(work)), ("@PORT@", str(port)), ("@NGINX_DIR@", str(ndir)),
                     ("@MEDIA_URL_SECRET@", secret), ("@STORAGE_DIR@", storage_dir),
                     ("@WEB_ROOT@", os.path.join(ROOT, "web")),
                     ("@API_SOCKET@", str(work / "api.sock")), ("@NGINX_WORKERS@", "1"),
                     ("@USER_DIRECTIVE@", "user root;" if os.getuid() == 0 else ""),
                     ("@ACCESS_LOG@", str(work / "access.log"))]:
        text = text.replace(old, new)
    (work / "run").mkdir()
    (work / "log").mkdir()
    (ndir / "nginx.conf").write_text(text)
    return ["-p", str(ndir), "-c", str(ndir / "nginx.conf"), "-e", str(work / "error.log")]


def test_local_signed_links_through_nginx(tmp_path):
    secret = "b" * 64
    store = tmp_path / "media"
    port = free_port()
    env = {"CROSSPOST_STORAGE_BACKEND": "local", "CROSSPOST_STORAGE_DIR": str(store),
           "CROSSPOST_MEDIA_URL_SECRET": secret,
           "CROSSPOST_PUBLIC_URL": "http://127.0.0.1:%d" % port}
    path = str(tmp_path / "clip.mp4")
    digest = random_file(path, 300 * 1024)
    driver(env, "put", "videos/3/clip.mp4", path, "video/mp4")
    assert sha256_of(str(store / "videos" / "3" / "clip.mp4")) == digest

    args = render_local_nginx(tmp_path, port, str(store), secret)
    subprocess.run(["nginx"] + args, check=True, timeout=30)
    try:
        base = "http://127.0.0.1:%d" % port
        for _ in range(50):
            if subprocess.run(["curl", "-s", "-o", "/dev/null", base + "/"]).returncode == 0:
                break
            time.sleep(0.1)

        def status(url, out="/dev/null"):
            r = subprocess.run(["curl", "-sS", "-o", out, "-w", "%{http_code}", url],
                               capture_output=True, text=True, timeout=30)
            return r.stdout

        url = driver(env, "url", "videos/3/clip.mp4", "300").stdout.strip()
        assert re.fullmatch(re.escape(base) + r"/media/videos/3/clip\.mp4\?md5=[A-Za-z0-9_-]{22}"
                            r"&expires=\d+", url), url
        got = str(tmp_path / "clip.back")
        assert status(url, got) == "200" and sha256_of(got) == digest

        expires = int(url.rsplit("=", 1)[1])
        assert status(url.replace("md5=", "md5=A", 1).replace("md5=AA", "md5=B")) == "403"
        assert status(url.rsplit("&", 1)[0] + "&expires=%d" % (expires + 1)) == "403"
        assert status(base + "/media/videos/3/clip.mp4") == "403"
        # An expired link, signed correctly.
        old = subprocess.run(["python3", "-c", "import base64,hashlib,sys;"
                              "s=sys.argv[1];print(base64.urlsafe_b64encode(hashlib.md5("
                              "s.encode()).digest()).decode().rstrip('='))",
                              "%d/media/videos/3/clip.mp4 %s" % (expires - 600, secret)],
                             capture_output=True, text=True).stdout.strip()
        assert status("%s/media/videos/3/clip.mp4?md5=%s&expires=%d" %
                      (base, old, expires - 600)) == "403"
        fresh = subprocess.run(["python3", "-c", "import base64,hashlib,sys;"
                                "s=sys.argv[1];print(base64.urlsafe_b64encode(hashlib.md5("
                                "s.encode()).digest()).decode().rstrip('='))",
                                "%d/media/videos/3/clip.mp4 %s" % (expires, secret)],
                               capture_output=True, text=True).stdout.strip()
        assert url.endswith("?md5=%s&expires=%d" % (fresh, expires))
    finally:
        subprocess.run(["nginx", "-s", "stop"] + args, timeout=30)
