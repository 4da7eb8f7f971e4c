"""The Instagram publisher (src/pub_instagram.c) against the stack's
Instagram simulator: tests/integration/ig_layer.c, a cmocka program that
`make check` builds, run once; each of its tests is one case here.

This module connects a fresh simulator account through the simulator's
OAuth flow (consent page, code exchange, long-lived token) and hands the
token, the Instagram user id and a stock clip (also served over loopback
for video_url containers) to the program in its environment."""
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from stack import BUILDDIR, ROOT, TapRun

sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
sys.path.insert(0, os.path.dirname(__file__))
import media  # noqa: E402
from simfixture import media_cache  # noqa: E402

PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "ig_layer")
SOURCE = os.path.join(ROOT, "tests", "integration", "ig_layer.c")
SCOPES = "instagram_basic,instagram_content_publish,pages_show_list,pages_read_engagement"

# The tests of ig_layer.c, in the order of its table in main().
TESTS = [
    "test_resumable_once",
    "test_video_url",
    "test_resume_after_progress_stop",
    "test_publish_answer_lost",
    "test_expired_container",
    "test_publishing_limit",
    "test_bad_token_reauth",
    "test_container_error_is_fatal",
    "test_processing_defers_then_deadline",
    "test_app_usage_defers",
]


def graph_version(stack):
    with open(stack.conf) as f:
        m = re.search(r"^facebook_graph_version\s*=\s*(\S+)", f.read(), re.M)
    return m.group(1) if m else "v21.0"


def connect(stack):
    """A new simulator account with an Instagram business account: its
    long-lived token and Instagram user id."""
    login = "zz_ig_layer_%d" % int(time.time() * 1000)
    stack.sim("instagram", "POST", "/__control/accounts", {"login": login, "with_instagram": True})
    app = stack.sim_apps()["instagram"]
    ver = "/" + graph_version(stack)
    redirect = app["redirect_uris"][0]
    q = urllib.parse.urlencode({"client_id": app["app_id"], "redirect_uri": redirect,
                                "state": "igl", "scope": SCOPES, "response_type": "code"})
    page = stack.sim_request("instagram", "GET", ver + "/dialog/oauth?" + q)
    assert page.status == 200, page
    rid = re.search(rb'name="request_id" value="([^"]+)"', page.body).group(1).decode()
    r = stack.sim_request("instagram", "POST", "/__consent",
                          urllib.parse.urlencode({"request_id": rid, "account": login,
                                                  "decision": "allow"}),
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 302, r
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["location"]).query))["code"]

    def token_call(params):
        params = dict(params, client_id=app["app_id"], client_secret=app["app_secret"])
        t = stack.sim_request("instagram", "GET",
                              ver + "/oauth/access_token?" + urllib.parse.urlencode(params))
        assert t.status == 200, t
        return t.json()["access_token"]

    short = token_call({"redirect_uri": redirect, "code": code})
    token = token_call({"grant_type": "fb_exchange_token", "fb_exchange_token": short})
    pages = stack.sim_request("instagram", "GET", ver + "/me/accounts?fields=id,"
                              "instagram_business_account%7Bid%7D",
                              headers={"Authorization": "Bearer " + token})
    assert pages.status == 200, pages
    ig = next(p["instagram_business_account"]["id"] for p in pages.json()["data"]
              if "instagram_business_account" in p)
    return token, ig


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def clip_server():
    """The stock clip and a loopback URL serving it."""
    clip = media.stock_videos(media_cache())[0]
    handler = functools.partial(_Quiet, directory=os.path.dirname(clip["path"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield clip["path"], "http://127.0.0.1:%d/%s" % (server.server_address[1],
                                                    urllib.parse.quote(os.path.basename(clip["path"])))
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def run(stack, clip_server):
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))
    token, ig = connect(stack)
    path, url = clip_server
    env = dict(stack.env)
    env.update(CROSSPOST_CONFIG=stack.conf, CMOCKA_MESSAGE_OUTPUT="TAP", IG_LAYER_TOKEN=token,
               IG_LAYER_USER=ig, IG_LAYER_MEDIA=path, IG_LAYER_MEDIA_URL=url)
    try:
        proc = subprocess.run([PROGRAM], env=env, capture_output=True, text=True, timeout=600)
    finally:
        stack.sim("instagram", "DELETE", "/__control/faults")
    result = TapRun(proc, "ig_layer")
    result.token = token
    return result


def test_names_match_the_program_table():
    with open(SOURCE) as f:
        text = f.read()
    table = text[text.index("const struct CMUnitTest tests[]"):]
    assert re.findall(r"cmocka_unit_test\w*\((test_\w+)", table) == TESTS


def test_program_passes(run):
    assert run.order == TESTS, run.report()
    assert run.proc.returncode == 0, run.report()


@pytest.mark.parametrize("name", TESTS)
def test_case(run, name):
    assert name in run.passed, "%s did not run\n%s" % (name, run.report())
    assert run.passed[name], run.report(name)


def test_token_never_printed(run):
    assert run.token not in run.proc.stdout + run.proc.stderr
