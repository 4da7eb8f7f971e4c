"""Media fetch and probe end to end: yt-dlp against the TikTok simulator.

Each test connects a sandbox TikTok account by cookies (so yt-dlp gets a
cookies file), makes a video on the simulator, records it as a new video
row and queues its video.fetch job directly (independent of the sync
task), then watches the row go new -> fetching -> stored -> ready, or
fail with a clear, permanent error.  The simulator serves each video's
MP4 at its share_url; the tests change those bytes on disk to make a
corrupt or an oversized file, and slow a download down to kill the
worker in the middle of it.
"""
import hashlib
import json
import os
import signal
import struct
import subprocess
import uuid

import pytest

from authlib import add_user, quote, sql

MAX_BYTES = 2 * 1024 * 1024


def unique(tag):
    return "%s_%s" % (tag, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def media_worker(stack):
    """A worker serving the media queue with a 2 MiB media cap, a short
    lease and quick retries; the session's default worker afterwards."""
    env = {"CROSSPOST_WORKER_QUEUES": "default:1,maintenance:1,media:1",
           "CROSSPOST_MEDIA_MAX_BYTES": "2M",
           "CROSSPOST_JOB_LEASE": "5s",
           "CROSSPOST_JOB_RETRY_BASE": "200ms",
           "CROSSPOST_JOB_RETRY_CAP": "1s"}
    stack.stop_worker()
    stack.start_worker(env=env)
    yield env
    stack.stop_worker()
    stack.start_worker()


def sim_video_path(stack, vid):
    return os.path.join(stack.var, "sim", "tiktok", "videos", "%s.mp4" % vid)


def storage_dir(stack):
    found = os.path.join(stack.var, "media")
    with open(os.path.join(stack.var, "crosspost.conf")) as f:
        for line in f:
            if line.split("=", 1)[0].strip() == "storage_dir":
                found = line.split("=", 1)[1].strip()
    return found


def sha256_file(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 16), b""):
            d.update(b)
    return d.hexdigest()


def cookie_connection(stack):
    """A cookie connection of a fresh simulator account, kept out of the
    sync schedule; (user_id, connection_id, account name)."""
    email, password, _ = add_user(stack)
    b = stack.browser().sign_in(email, password)
    name = unique("cpmedia")
    acct = stack.sim("tiktok", "POST", "/__control/accounts", {"username": name})
    r = b.api("POST", "/api/v1/connections/tiktok/cookie",
              {"cookies": acct["cookies"] + "; msToken=xyz"})
    assert r.status == 201, r
    cid = int(r.json()["id"])
    sql(stack, "UPDATE connections SET enabled = 0, next_sync_at = NULL WHERE id = %d" % cid)
    uid = int(sql(stack, "SELECT user_id FROM connections WHERE id = %d" % cid)[0][0])
    return uid, cid, name


def new_video(stack, conn):
    """A new video of the connection's account on the simulator."""
    name = conn[2]
    v = stack.sim("tiktok", "POST", "/__control/videos",
                  {"account": name, "description": "media test"})
    return v


def record(stack, conn, v, queue=True):
    """v recorded as a new video row, its fetch job queued; the row id."""
    uid, cid, _ = conn
    remote = "m" + v["id"]
    sql(stack, "INSERT INTO videos (user_id, connection_id, remote_id, state, share_url)"
               " VALUES (%d, %d, %s, 'new', %s)" % (uid, cid, quote(remote), quote(v["share_url"])))
    vid = int(sql(stack, "SELECT id FROM videos WHERE connection_id = %d AND remote_id = %s"
                         % (cid, quote(remote)))[0][0])
    if queue:
        enqueue(stack, vid)
    return vid


def enqueue(stack, vid):
    r = stack.ctl("jobs", "enqueue", "video.fetch", "--payload", json.dumps({"video_id": vid}))
    assert r.returncode == 0, r.stderr


def video_row(stack, vid):
    cols = ("state", "media_bytes", "media_sha256", "storage_key", "thumbnail_key",
            "probe_width", "probe_height", "probe_duration_ms", "probe_fps",
            "probe_video_codec", "probe_audio_codec", "probe_moov_front", "last_error",
            "storage_backend", "media_type", "probe_rotation", "probe_container")
    rows = sql(stack, "SELECT %s FROM videos WHERE id = %d" % (", ".join(
        "COALESCE(%s, '')" % c for c in cols), vid))
    return dict(zip(cols, rows[0]))


def wait_state(stack, vid, states, timeout=90):
    got = {}

    def check():
        got.update(video_row(stack, vid))
        return got["state"] in states
    try:
        stack.wait_for("video %d in %s" % (vid, states), check, timeout=timeout, interval=0.3)
    except AssertionError:
        raise AssertionError("video %d is %r; worker log tail:\n%s"
                             % (vid, got, stack.log("worker.log")[-3000:]))
    return got


def fetch_jobs(stack, vid):
    return sql(stack, "SELECT id, state, attempts, COALESCE(last_error, '') FROM jobs"
                      " WHERE kind = 'video.fetch' AND JSON_VALUE(payload, '$.video_id') = %d"
               % vid)


def probe_jobs(stack, vid):
    return int(sql(stack, "SELECT COUNT(*) FROM jobs WHERE kind = 'video.probe'"
                          " AND JSON_VALUE(payload, '$.video_id') = %d" % vid)[0][0])


def scratch_left(stack, vid):
    d = os.path.join(storage_dir(stack), ".scratch")
    if not os.path.isdir(d):
        return []
    return [f for f in os.listdir(d) if ("-%d." % vid) in f]


# -- tests -------------------------------------------------------------------

def test_fetch_probe_ready(stack, media_worker):
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    vid = record(stack, conn, v)
    row = wait_state(stack, vid, ("ready", "failed"))
    assert row["state"] == "ready", row
    assert int(row["media_bytes"]) == v["bytes"], row
    assert row["media_sha256"] == v["sha256"], row
    assert row["storage_backend"] == "local" and row["media_type"] == "video/mp4", row
    assert row["storage_key"] == "videos/%d/%d.mp4" % (conn[0], vid), row
    stored = os.path.join(storage_dir(stack), row["storage_key"])
    assert sha256_file(stored) == v["sha256"]
    # Probe data as the simulator made the clip: H.264 + AAC, 30 fps, fast start.
    assert int(row["probe_width"]) == v["width"] and int(row["probe_height"]) == v["height"], row
    assert abs(int(row["probe_duration_ms"]) - v["duration"] * 1000) < 300, row
    assert abs(float(row["probe_fps"]) - 30) < 0.1, row
    assert row["probe_video_codec"] == "h264" and row["probe_audio_codec"] == "aac", row
    assert int(row["probe_moov_front"]) == 1 and int(row["probe_rotation"]) == 0, row
    assert "mp4" in row["probe_container"], row
    # A thumbnail, 320 px wide, in storage.
    assert row["thumbnail_key"] == "thumbs/%d/%d.jpg" % (conn[0], vid), row
    thumb = os.path.join(storage_dir(stack), row["thumbnail_key"])
    with open(thumb, "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width",
                          "-of", "csv=p=0", thumb], capture_output=True, text=True)
    assert out.stdout.strip() == "320", out
    # yt-dlp really fetched it from the share URL (its generic extractor).
    reqs = stack.sim("tiktok", "GET", "/__control/requests")
    reqs = reqs.get("requests", reqs) if isinstance(reqs, dict) else reqs
    path = "/@%s/video/%s" % (conn[2], v["id"])
    assert any(r["path"] == path and r["status"] in (200, 206) for r in reqs), reqs[-5:]
    jobs = fetch_jobs(stack, vid)
    assert len(jobs) == 1 and jobs[0][1] == "succeeded", jobs
    assert not scratch_left(stack, vid)
    # The worker never logged the cookies.
    acct = stack.sim("tiktok", "GET", "/__control/state")["accounts"][conn[2]]
    assert acct["sessionid"] not in stack.log("worker.log")
    # Running the fetch again changes nothing.
    enqueue(stack, vid)
    stack.wait_for("second fetch done", lambda: all(
        j[1] == "succeeded" for j in fetch_jobs(stack, vid)) and len(fetch_jobs(stack, vid)) == 2,
        timeout=30)
    assert video_row(stack, vid)["state"] == "ready"
    assert probe_jobs(stack, vid) == 1


def test_corrupt_file_fails_permanently(stack, media_worker):
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    with open(sim_video_path(stack, v["id"]), "wb") as f:
        f.write(b"<html>this is not a video</html>\n" * 200)
    vid = record(stack, conn, v)
    row = wait_state(stack, vid, ("failed", "ready"))
    assert row["state"] == "failed", row
    assert "not a video" in row["last_error"], row
    jobs = fetch_jobs(stack, vid)
    assert len(jobs) == 1 and jobs[0][1] == "dead" and int(jobs[0][2]) == 1, jobs
    assert "not a video" in jobs[0][3], jobs
    assert not scratch_left(stack, vid)


def test_oversized_file_fails_permanently(stack, media_worker):
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    # Still a valid MP4: a large trailing free box takes it past the cap.
    pad = MAX_BYTES + 512 * 1024
    with open(sim_video_path(stack, v["id"]), "ab") as f:
        f.write(struct.pack(">I", 8 + pad) + b"free" + b"\0" * pad)
    vid = record(stack, conn, v)
    row = wait_state(stack, vid, ("failed", "ready"))
    assert row["state"] == "failed", row
    assert "too large" in row["last_error"], row
    jobs = fetch_jobs(stack, vid)
    assert len(jobs) == 1 and jobs[0][1] == "dead" and int(jobs[0][2]) == 1, jobs
    assert not scratch_left(stack, vid)


def test_missing_video_fails_permanently(stack, media_worker):
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    v = dict(v, share_url=v["share_url"].rsplit("/", 1)[0] + "/1" + v["id"][1:] + "0")
    vid = record(stack, conn, v)
    row = wait_state(stack, vid, ("failed", "ready"))
    assert row["state"] == "failed" and "missing" in row["last_error"], row


def test_kill_worker_mid_fetch(stack, media_worker):
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    path = "/@%s/video/%s" % (conn[2], v["id"])
    # The first request for the video hangs for a while: the fetch is under way.
    stack.sim_request("tiktok", "POST", "/__control/faults",
                      {"match": path, "action": "timeout", "seconds": 6, "count": 1})
    vid = record(stack, conn, v)
    wait_state(stack, vid, ("fetching",), timeout=30)
    stack.wait_for("yt-dlp running", lambda: subprocess.run(
        ["pgrep", "-f", "yt-dlp.*%s" % v["id"]], capture_output=True).returncode == 0,
        timeout=15)
    children = stack.worker_children()
    assert children
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    # The downloader dies with its worker.
    stack.wait_for("yt-dlp gone", lambda: subprocess.run(
        ["pgrep", "-f", "yt-dlp.*%s" % v["id"]], capture_output=True).returncode != 0,
        timeout=10)
    row = wait_state(stack, vid, ("ready", "failed"), timeout=120)
    assert row["state"] == "ready", row
    assert row["media_sha256"] == v["sha256"], row
    # One row, one fetch job (run twice), one probe job, no stray files.
    assert int(sql(stack, "SELECT COUNT(*) FROM videos WHERE connection_id = %d" % conn[1])[0][0]) == 1
    jobs = fetch_jobs(stack, vid)
    assert len(jobs) == 1 and jobs[0][1] == "succeeded" and int(jobs[0][2]) >= 2, jobs
    assert probe_jobs(stack, vid) == 1
    assert not scratch_left(stack, vid)


def test_direct_media_url(stack, media_worker):
    """A known media URL is fetched by the worker's own HTTP client."""
    conn = cookie_connection(stack)
    v = new_video(stack, conn)
    uid, cid, _ = conn
    rows = []
    for remote, url in (("d" + v["id"], v["share_url"]),
                        ("x" + v["id"], v["share_url"].rsplit("/", 1)[0] + "/404404")):
        sql(stack, "INSERT INTO videos (user_id, connection_id, remote_id, state, media_url)"
                   " VALUES (%d, %d, %s, 'new', %s)" % (uid, cid, quote(remote), quote(url)))
        rows.append(int(sql(stack, "SELECT id FROM videos WHERE connection_id = %d AND remote_id = %s"
                                   % (cid, quote(remote)))[0][0]))
        enqueue(stack, rows[-1])
    row = wait_state(stack, rows[0], ("ready", "failed"))
    assert row["state"] == "ready" and row["media_sha256"] == v["sha256"], row
    assert int(row["media_bytes"]) == v["bytes"], row
    row = wait_state(stack, rows[1], ("ready", "failed"))
    assert row["state"] == "failed" and "missing" in row["last_error"], row
    assert not scratch_left(stack, rows[0]) and not scratch_left(stack, rows[1])
