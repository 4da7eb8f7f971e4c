"""Small real MP4s for the simulators, made once with ffmpeg and cached.

H.264 (yuv420p) + AAC, moov atom first (faststart), 30 fps: two vertical
720x1280 clips and one square 720x720 clip, 3-4 s (Reels want >= 3 s), each
with a JPEG cover taken from its first frame.  stock_videos() returns these
three; TikTok's simulator rotates over them.

Extra clips, made on first use (stock_video(media_dir, name)), for the
media limits of the destinations:
  moov_end   720x1280, 3 s, moov atom after mdat (needs a fast-start remux)
  long_150s  180x320 at 10 fps, 150 s (too long for X's 140 s)
  landscape  1280x720, 3 s (not a YouTube Short)
"""
import hashlib
import json
import os
import subprocess
import tempfile
import threading

STOCK = [
    # name, lavfi video source, width, height, seconds, tone Hz
    ("vertical_bars", "testsrc2", 720, 1280, 3, 440),
    ("vertical_grid", "smptehdbars", 720, 1280, 4, 660),
    ("square_colors", "rgbtestsrc", 720, 720, 3, 550),
]

# name, lavfi video source, width, height, seconds, tone Hz, fps, faststart
EXTRA = [
    ("moov_end", "testsrc2", 720, 1280, 3, 440, 30, False),
    ("long_150s", "testsrc", 180, 320, 150, 330, 10, True),
    ("landscape", "testsrc2", 1280, 720, 3, 770, 30, True),
]

_lock = threading.Lock()


def _sha256(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 16), b""):
            d.update(b)
    return d.hexdigest()


def _run(args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
                   + args, check=True, stdin=subprocess.DEVNULL)


def _make(media_dir, name, source, w, h, secs, tone, fps=30, faststart=True):
    path = os.path.join(media_dir, name + ".mp4")
    cover = os.path.join(media_dir, name + ".jpg")
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=media_dir)
    os.close(fd)
    try:
        _run(["-f", "lavfi", "-i", "%s=size=%dx%d:rate=%d:duration=%d" % (source, w, h, fps, secs),
              "-f", "lavfi", "-i", "sine=frequency=%d:sample_rate=44100:duration=%d" % (tone, secs),
              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
              "-profile:v", "main", "-g", "30", "-crf", "30",
              "-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-shortest"]
             + (["-movflags", "+faststart"] if faststart else []) + [tmp])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fd, tmpc = tempfile.mkstemp(suffix=".jpg", dir=media_dir)
    os.close(fd)
    try:
        _run(["-i", path, "-frames:v", "1", "-vf", "scale=%d:%d" % (w // 2, h // 2),
              "-q:v", "6", tmpc])
        os.replace(tmpc, cover)
    finally:
        if os.path.exists(tmpc):
            os.unlink(tmpc)
    return {"name": name, "path": path, "cover": cover, "width": w, "height": h,
            "duration": secs, "bytes": os.path.getsize(path), "sha256": _sha256(path)}


def stock_videos(media_dir):
    """The stock clips (made on first use): list of dicts with name, path,
    cover, width, height, duration (s), bytes, sha256."""
    with _lock:
        os.makedirs(media_dir, exist_ok=True)
        index = os.path.join(media_dir, "index.json")
        if os.path.exists(index):
            with open(index) as f:
                items = json.load(f)
            if len(items) == len(STOCK) and all(
                    os.path.exists(i["path"]) and os.path.exists(i["cover"])
                    and os.path.getsize(i["path"]) == i["bytes"] for i in items):
                return items
        items = [_make(media_dir, *spec) for spec in STOCK]
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=media_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(items, f, indent=1)
        os.replace(tmp, index)
        return items


def stock_names():
    """Every clip name: the three rotated over, then the extra ones."""
    return [s[0] for s in STOCK] + [e[0] for e in EXTRA]


def stock_video(media_dir, name):
    """The clip called name (made on first use), as a dict like those of
    stock_videos(); KeyError for a name that is not a clip."""
    for item in stock_videos(media_dir):
        if item["name"] == name:
            return item
    spec = next((e for e in EXTRA if e[0] == name), None)
    if spec is None:
        raise KeyError(name)
    with _lock:
        index = os.path.join(media_dir, "extra-%s.json" % name)
        if os.path.exists(index):
            with open(index) as f:
                item = json.load(f)
            if (os.path.exists(item["path"]) and os.path.exists(item["cover"])
                    and os.path.getsize(item["path"]) == item["bytes"]):
                return item
        item = _make(media_dir, *spec)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=media_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(item, f, indent=1)
        os.replace(tmp, index)
        return item


if __name__ == "__main__":
    import sys
    print(json.dumps(stock_videos(sys.argv[1] if len(sys.argv) > 1 else "media"), indent=1))
