"""An S3-compatible server for the storage tests: s3rver from npm.

s3rver checks SigV4 header signatures and presigned URLs and implements
multipart uploads, which is what the S3 backend needs.  It is installed
once with `npm install --prefix` into a cache outside the source tree
($CROSSPOST_NPM_CACHE, default ~/.cache/crosspost/npm), and each test
starts its own on a free loopback port with a private data directory.
"""
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

S3RVER_VERSION = "3.7.1"
ACCESS_KEY = SECRET_KEY = "S3RVER"   # s3rver's built-in credentials
REGION = "us-east-1"

CACHE = os.environ.get("CROSSPOST_NPM_CACHE") or os.path.join(
    os.path.expanduser("~"), ".cache", "crosspost", "npm")


def s3rver_script():
    """The path of s3rver's entry point, installing it when missing;
    None when npm is not available."""
    script = os.path.join(CACHE, "node_modules", "s3rver", "bin", "s3rver.js")
    if os.path.exists(script):
        return script
    if not shutil.which("npm") or not shutil.which("node"):
        return None
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run(["npm", "install", "--prefix", CACHE, "--no-audit", "--no-fund",
                    "--loglevel=error", "s3rver@" + S3RVER_VERSION],
                   check=True, capture_output=True, timeout=600)
    return script if os.path.exists(script) else None


class S3Server:
    def __init__(self, workdir, port, bucket="media"):
        self.script = s3rver_script()
        self.workdir = workdir
        self.port = port
        self.bucket = bucket
        self.endpoint = "http://127.0.0.1:%d" % port
        self.proc = None

    def start(self):
        data = os.path.join(self.workdir, "s3data")
        os.makedirs(data, exist_ok=True)
        self.log = open(os.path.join(self.workdir, "s3rver.log"), "ab")
        self.proc = subprocess.Popen(
            ["node", self.script, "-d", data, "-a", "127.0.0.1", "-p", str(self.port),
             "--no-vhost-buckets", "--configure-bucket", self.bucket],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2)
                return
            except urllib.error.HTTPError:
                return          # answering (403 without a signature)
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("s3rver exited; see %s" % self.log.name)
                time.sleep(0.2)
        raise RuntimeError("s3rver did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            self.log.close()
        self.proc = None

    def env(self, storage_dir, part_size="5M", endpoint=None):
        """CROSSPOST_* settings of an S3 backend on this server."""
        return {
            "CROSSPOST_STORAGE_BACKEND": "s3",
            "CROSSPOST_STORAGE_DIR": storage_dir,
            "CROSSPOST_S3_ENDPOINT": endpoint or self.endpoint,
            "CROSSPOST_S3_BUCKET": self.bucket,
            "CROSSPOST_S3_REGION": REGION,
            "CROSSPOST_S3_ACCESS_KEY": ACCESS_KEY,
            "CROSSPOST_S3_SECRET_KEY": SECRET_KEY,
            "CROSSPOST_S3_PART_SIZE": part_size,
        }

    def curl_get(self, key, out_path):
        """GET an object with curl's own SigV4 signing (an independent
        client); returns the HTTP status."""
        r = subprocess.run(
            ["curl", "-sS", "-o", out_path, "-w", "%{http_code}",
             "--user", "%s:%s" % (ACCESS_KEY, SECRET_KEY),
             "--aws-sigv4", "aws:amz:%s:s3" % REGION,
             # curl 7.88 neither sends nor signs it by itself; S3 wants it.
             "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
             "%s/%s/%s" % (self.endpoint, self.bucket, key)],
            capture_output=True, text=True, timeout=120)
        return int(r.stdout or 0)
