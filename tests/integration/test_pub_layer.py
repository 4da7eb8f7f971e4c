"""The YouTube and X publishers (src/pub_youtube.c, src/pub_x.c) against
the platform simulators: tests/integration/pub_layer.c runs one publisher
once and prints what it returned; this file sets the scene (accounts,
tokens from the simulators' OAuth endpoints, faults, quota), runs it,
and checks what the simulator recorded."""
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from simfixture import DEFAULT_APPS, ROOT, media_cache, sim  # noqa: F401
from test_sim_x import oauth1_connect, oauth2_connect
from test_sim_youtube import connect as youtube_connect

sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
import media  # noqa: E402

SIM_PLATFORMS = ("youtube", "x")
BUILDDIR = os.environ.get("CROSSPOST_BUILDDIR") or os.path.join(ROOT, "build")
PROGRAM = os.path.join(BUILDDIR, "tests", "integration", "pub_layer")
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module", autouse=True)
def program():
    if not os.access(PROGRAM, os.X_OK):
        pytest.fail("%s is not built (make -C %s check builds it)" % (PROGRAM, BUILDDIR))


@pytest.fixture
def clean(sim):
    sim.control("youtube", "DELETE", "faults")
    sim.control("x", "DELETE", "faults")
    yield
    sim.control("youtube", "DELETE", "faults")
    sim.control("x", "DELETE", "faults")
    sim.control("youtube", "POST", "quota", {"reset": True})
    sim.control("youtube", "POST", "config", {"upload_drop_after": 0})
    sim.control("x", "POST", "config", {"processing_fail": False})


def fake_mp4(path, size):
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    with open(path, "wb") as f:
        f.write(head + os.urandom(size - len(head)))
    return path


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stock_clip():
    return media.stock_videos(media_cache())[0]["path"]


def run(sim, platform, media_path, state_path, stop_at=None, chunk="256K", **req):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CROSSPOST_") and not k.startswith("PUB_")}
    x = DEFAULT_APPS["x"]
    env.update({
        "CROSSPOST_YOUTUBE_API_URL": sim.urls["youtube"],
        "CROSSPOST_X_API_URL": sim.urls["x"],
        "CROSSPOST_X_CONSUMER_KEY": x["consumer_key"],
        "CROSSPOST_X_CONSUMER_SECRET": x["consumer_secret"],
        "CROSSPOST_YOUTUBE_CHUNK_SIZE": chunk,
        "CROSSPOST_X_CHUNK_SIZE": "64K",
        "CROSSPOST_PUBLISH_POLL_MAX": req.pop("poll_max", "30s"),
        "CROSSPOST_LOG_LEVEL": "warn",
    })
    for k, v in req.items():
        if v is not None:
            env["PUB_" + k.upper()] = v
    args = [PROGRAM, platform, media_path, state_path]
    if stop_at is not None:
        args.append(str(stop_at))
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def published(sim, platform, **match):
    rows = sim.control(platform, "GET", "published")["published"]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def requests_since(sim, platform, seq):
    return sim.control(platform, "GET", "requests?since=%d" % seq)["requests"]


def last_seq(sim, platform):
    return sim.control(platform, "GET", "requests?since=0")["next"]


# -------------------------------------------------------------- YouTube --

@pytest.fixture
def yt(sim, tmp_path):
    """A fresh account with a channel: (token, channel id, state path)."""
    name = "yt_" + secrets.token_hex(4)
    acct = sim.control("youtube", "POST", "accounts",
                       {"username": name, "channel": True, "channel_title": "Chan " + name})
    tok = youtube_connect(sim, name)["access_token"]
    return {"token": tok, "account": name, "channel": acct["channel"]["id"],
            "state": str(tmp_path / "state.json"), "dir": tmp_path}


def yt_run(sim, yt, path, **kw):
    kw.setdefault("token", yt["token"])
    kw.setdefault("title", "Clip " + secrets.token_hex(3))
    kw.setdefault("caption", "A clip #Shorts")
    kw.setdefault("settings", json.dumps({"privacy": "unlisted", "tags": ["a", "b"]}))
    return run(sim, "youtube", path, yt["state"], **kw)


def yt_published(sim, yt):
    return published(sim, "youtube", account=yt["account"])


def test_youtube_whole_upload(sim, yt, clean):
    clip = stock_clip()
    r = yt_run(sim, yt, clip, title="Whole")
    assert r["rc"] == 0, r
    rows = yt_published(sim, yt)
    assert len(rows) == 1
    assert rows[0]["sha256"] == sha256(clip) and rows[0]["bytes"] == os.path.getsize(clip)
    assert rows[0]["title"] == "Whole" and rows[0]["privacy"] == "unlisted"
    assert rows[0]["tags"] == ["a", "b"] and rows[0]["category_id"] == "22"
    assert r["remote_id"] == rows[0]["remote_id"]
    assert r["url"] == "https://youtube.com/shorts/" + r["remote_id"]
    assert r["state"]["video_id"] == r["remote_id"]
    # Done is done: another run makes no call.
    seq = last_seq(sim, "youtube")
    again = yt_run(sim, yt, clip)
    assert again["rc"] == 0 and again["remote_id"] == r["remote_id"]
    assert requests_since(sim, "youtube", seq) == []


def test_youtube_resumes_after_stop(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 3 * MIB + 1000)
    seq = last_seq(sim, "youtube")
    first = yt_run(sim, yt, path, stop_at=3 * MIB // 2)
    assert first["rc"] != 0 and first["outcome"] == "retry" and first["code"] == "stopped"
    saved = first["state"]
    assert saved["session_uri"] and saved["total"] == 3 * MIB + 1000
    assert saved["offset"] >= 3 * MIB // 2 and saved["offset"] % (256 * KIB) == 0
    assert yt_published(sim, yt) == []
    second = yt_run(sim, yt, path)
    assert second["rc"] == 0, second
    assert second["first_sent"] == saved["offset"]      # continued, not restarted
    rows = yt_published(sim, yt)
    assert len(rows) == 1 and rows[0]["sha256"] == sha256(path)
    puts = [q for q in requests_since(sim, "youtube", seq) if q["method"] == "PUT"]
    chunks = (3 * MIB + 1000 + 256 * KIB - 1) // (256 * KIB)
    # Every chunk once, plus the status query of the resumed run.
    assert len(puts) == chunks + 1, puts
    posts = [q for q in requests_since(sim, "youtube", seq) if q["method"] == "POST"]
    assert len(posts) == 1


def test_youtube_drop_mid_chunk(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 3 * MIB)
    sim.control("youtube", "POST", "config", {"upload_drop_after": 300000})
    r = yt_run(sim, yt, path, chunk="1M")
    assert r["rc"] == 0, r
    rows = yt_published(sim, yt)
    assert len(rows) == 1 and rows[0]["sha256"] == sha256(path)


def test_youtube_500_on_chunk(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 1 * MIB + 5)
    sim.control("youtube", "POST", "faults", {"match": "/upload/youtube/v3/videos",
                                              "method": "PUT", "action": "status",
                                              "status": 500, "count": 2})
    r = yt_run(sim, yt, path)
    assert r["rc"] == 0, r
    rows = yt_published(sim, yt)
    assert len(rows) == 1 and rows[0]["sha256"] == sha256(path)


def test_youtube_gives_up_after_repeated_failures(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 1 * MIB)
    sim.control("youtube", "POST", "faults", {"match": "/upload/youtube/v3/videos",
                                              "method": "PUT", "action": "status",
                                              "status": 503, "count": 50})
    r = yt_run(sim, yt, path)
    assert r["rc"] != 0 and r["outcome"] == "retry", r
    assert r["state"]["session_uri"]                      # kept for the next run
    sim.control("youtube", "DELETE", "faults")
    r = yt_run(sim, yt, path)
    assert r["rc"] == 0, r
    assert len(yt_published(sim, yt)) == 1


def test_youtube_expired_session_starts_over(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 2 * MIB)
    first = yt_run(sim, yt, path, stop_at=MIB)
    assert first["code"] == "stopped"
    old = first["state"]["session_uri"]
    sim.control("youtube", "POST", "uploads/expire", {})
    second = yt_run(sim, yt, path)
    assert second["rc"] == 0, second
    assert second["state"]["session_uri"] != old
    assert second["first_sent"] == 0
    rows = yt_published(sim, yt)
    assert len(rows) == 1 and rows[0]["sha256"] == sha256(path)


@pytest.mark.parametrize("action", ["drop_after", "timeout_after"])
def test_youtube_final_chunk_answer_lost(sim, yt, clean, action):
    # One chunk: the first PUT is the final one.
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 200 * KIB)
    sim.control("youtube", "POST", "faults", {"match": "/upload/youtube/v3/videos",
                                              "method": "PUT", "action": action,
                                              "seconds": 2, "count": 1})
    r = yt_run(sim, yt, path)
    assert r["rc"] == 0, r
    rows = yt_published(sim, yt)
    assert len(rows) == 1, rows
    assert rows[0]["remote_id"] == r["remote_id"] and rows[0]["sha256"] == sha256(path)


def test_youtube_project_quota(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 100 * KIB)
    sim.control("youtube", "POST", "quota", {"units_used": 10000})
    r = yt_run(sim, yt, path)
    assert r["rc"] != 0 and r["outcome"] == "defer" and r["code"] == "quotaExceeded", r
    q = r["quota"]
    assert q["exhausted"] and q["bucket"] == "units" and q["scope"] == "project"
    assert q["reset_ms"] == 0
    assert "session_uri" not in r["state"]
    assert yt_published(sim, yt) == []


def test_youtube_channel_upload_limit(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 100 * KIB)
    sim.control("youtube", "POST", "quota", {"channel_uploads": {yt["channel"]: 50}})
    r = yt_run(sim, yt, path)
    assert r["outcome"] == "defer" and r["code"] == "uploadLimitExceeded", r
    assert r["quota"]["bucket"] == "uploads" and r["quota"]["scope"] == "channel"


def test_youtube_refused_token(sim, yt, clean):
    path = fake_mp4(str(yt["dir"] / "v.mp4"), 100 * KIB)
    r = yt_run(sim, yt, path, token="ya29.not-a-token")
    assert r["outcome"] == "reauth", r


# -------------------------------------------------------------------- X --

@pytest.fixture
def xa(sim, tmp_path):
    """A fresh X account connected with OAuth 1.0a."""
    name = "x" + secrets.token_hex(5)
    acct = sim.control("x", "POST", "accounts", {"username": name})
    token, secret, _ = oauth1_connect(sim, name)
    return {"token": token, "secret": secret, "account": name, "id": acct["id"],
            "state": str(tmp_path / "state.json"), "dir": tmp_path}


def x_run(sim, xa, path, **kw):
    kw.setdefault("token", xa["token"])
    kw.setdefault("token_secret", xa["secret"])
    kw.setdefault("account_id", xa["id"])
    kw.setdefault("caption", "Post " + secrets.token_hex(4) + " https://example.com/v")
    kw.setdefault("settings", json.dumps({"username": xa["account"]}))
    return run(sim, "x", path, xa["state"], **kw)


def x_published(sim, xa):
    return published(sim, "x", account=xa["account"])


def test_x_whole_flow(sim, xa, clean):
    clip = stock_clip()
    seq = last_seq(sim, "x")
    r = x_run(sim, xa, clip, caption="Hello from crosspost")
    assert r["rc"] == 0, r
    rows = x_published(sim, xa)
    assert len(rows) == 1 and rows[0]["text"] == "Hello from crosspost"
    assert rows[0]["media"][0]["sha256"] == sha256(clip)
    assert r["remote_id"] == rows[0]["remote_id"]
    assert r["url"] == "https://x.com/%s/status/%s" % (xa["account"], r["remote_id"])
    st = r["state"]
    assert st["finalized"] is True and st["appended"] == os.path.getsize(clip)
    assert st["tweet_id"] == r["remote_id"] and st["tweet_sent_at"] > 0
    reqs = requests_since(sim, "x", seq)
    polls = [q for q in reqs if q["method"] == "GET" and q["path"] == "/2/media/upload"]
    assert polls, reqs                                  # processing was polled
    appends = [q for q in reqs if q["path"].endswith("/append")]
    assert len(appends) == (os.path.getsize(clip) + 64 * KIB - 1) // (64 * KIB)


def test_x_oauth2_token(sim, tmp_path, clean):
    name = "x" + secrets.token_hex(5)
    acct = sim.control("x", "POST", "accounts", {"username": name})
    tok = oauth2_connect(sim, name)["access_token"]
    path = fake_mp4(str(tmp_path / "v.mp4"), 100 * KIB)
    r = run(sim, "x", path, str(tmp_path / "state.json"), token=tok, account_id=acct["id"],
            caption="oauth2 " + secrets.token_hex(4))
    assert r["rc"] == 0, r
    assert r["url"] == "https://x.com/i/web/status/" + r["remote_id"]
    assert len(published(sim, "x", account=name)) == 1


def test_x_append_failure_resumes_at_saved_segment(sim, xa, clean):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 640 * KIB)
    first = x_run(sim, xa, path, stop_at=256 * KIB)
    assert first["code"] == "stopped", first
    st = first["state"]
    assert st["segment"] == 4 and st["appended"] == 256 * KIB
    sim.control("x", "POST", "faults", {"match": "/2/media/upload/%s/append" % st["media_id"],
                                        "action": "status", "status": 503, "count": 1})
    second = x_run(sim, xa, path)
    assert second["outcome"] == "retry", second
    assert second["state"]["segment"] == 4 and second["state"]["media_id"] == st["media_id"]
    caption = "resumed " + secrets.token_hex(4)
    third = x_run(sim, xa, path, caption=caption)
    assert third["rc"] == 0, third
    assert third["first_sent"] == 256 * KIB and third["state"]["media_id"] == st["media_id"]
    rows = x_published(sim, xa)
    assert len(rows) == 1 and rows[0]["media"][0]["sha256"] == sha256(path)


def test_x_expired_media_starts_over(sim, xa, clean):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 256 * KIB)
    first = x_run(sim, xa, path, stop_at=128 * KIB)
    old = first["state"]["media_id"]
    sim.control("x", "POST", "clock", {"advance": 86400 + 60})
    r = x_run(sim, xa, path)
    assert r["rc"] == 0, r
    assert r["state"]["media_id"] != old
    rows = x_published(sim, xa)
    assert len(rows) == 1 and rows[0]["media"][0]["sha256"] == sha256(path)


@pytest.mark.parametrize("action", ["timeout_after", "drop_after"])
def test_x_post_answer_lost(sim, xa, clean, action):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 100 * KIB)
    sim.control("x", "POST", "faults", {"match": "/2/tweets", "method": "POST",
                                        "action": action, "seconds": 2, "count": 1})
    caption = "lost answer " + secrets.token_hex(4)
    r = x_run(sim, xa, path, caption=caption)
    assert r["rc"] == 0, r
    rows = x_published(sim, xa)
    assert len(rows) == 1 and rows[0]["text"] == caption
    assert r["remote_id"] == rows[0]["remote_id"]


def test_x_sent_post_found_on_a_later_run(sim, xa, clean):
    """A run that died after sending: the next one looks before posting."""
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 100 * KIB)
    caption = "later run " + secrets.token_hex(4)
    sim.control("x", "POST", "faults", {"match": "/2/tweets", "method": "POST",
                                        "action": "drop_after", "count": 1})
    sim.control("x", "POST", "faults", {"match": "/2/users/", "action": "status",
                                        "status": 503, "count": 1})
    first = x_run(sim, xa, path, caption=caption)
    assert first["outcome"] == "retry", first
    assert first["state"]["tweet_sent_at"] > 0 and "tweet_id" not in first["state"]
    second = x_run(sim, xa, path, caption=caption)
    assert second["rc"] == 0, second
    assert len(x_published(sim, xa)) == 1


def test_x_rate_limited(sim, xa, clean):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 100 * KIB)
    sim.control("x", "POST", "faults", {"match": "/2/tweets", "method": "POST",
                                        "action": "status", "status": 429,
                                        "retry_after": 600, "count": 1})
    r = x_run(sim, xa, path)
    assert r["outcome"] == "defer", r
    q = r["quota"]
    assert q["exhausted"] and q["bucket"] == "posts" and q["scope"] == "user"
    assert q["remaining"] == 0
    # The reset is on the simulator's clock (other tests move it on).
    now_ms = sim.control("x", "GET", "state")["now"] * 1000
    assert now_ms + 500e3 < q["reset_ms"] < now_ms + 700e3
    skew_ms = now_ms - time.time() * 1000
    assert 500e3 < r["retry_after_ms"] - skew_ms <= 601e3
    assert x_published(sim, xa) == []
    # The media stays ready: the next run only posts.
    assert r["state"]["finalized"] is True
    again = x_run(sim, xa, path)
    assert again["rc"] == 0, again
    assert again["state"]["media_id"] == r["state"]["media_id"]


def test_x_processing_failed(sim, xa, clean):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 100 * KIB)
    sim.control("x", "POST", "config", {"processing_fail": True})
    r = x_run(sim, xa, path)
    assert r["outcome"] == "fatal" and r["code"] == "processing_failed", r
    assert "Invalid or Unsupported media" in r["message"]


def test_x_processing_past_poll_max_defers(sim, xa, clean):
    path = fake_mp4(str(xa["dir"] / "v.mp4"), 100 * KIB)
    sim.control("x", "POST", "config", {"processing_seconds": 30})
    try:
        r = x_run(sim, xa, path, poll_max="1s")
    finally:
        sim.control("x", "POST", "config", {"processing_seconds": 3})
    assert r["outcome"] == "defer" and r["retry_after_ms"] > 0, r
    assert r["state"]["finalized"] is True
    sim.control("x", "POST", "clock", {"advance": 60})
    again = x_run(sim, xa, path)
    assert again["rc"] == 0, again
    assert len(x_published(sim, xa)) == 1
