#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "err.h"
#include "mediaspec.h"
#include "probe.h"

#define MB (1000LL * 1000)

/* A probe: w x h as stored, rotation, seconds (ms), fps, codecs. */
static struct video_probe mk(long long w, long long h, int rot, long long ms, double fps,
                             const char *vc, const char *ac, long long rate, int moov_front)
{
    struct video_probe p;

    memset(&p, 0, sizeof p);
    p.width = w;
    p.height = h;
    p.rotation = rot;
    p.duration_ms = ms;
    p.fps = fps;
    snprintf(p.video_codec, sizeof p.video_codec, "%s", vc);
    snprintf(p.audio_codec, sizeof p.audio_codec, "%s", ac);
    p.audio_rate = rate;
    p.moov_front = moov_front;
    snprintf(p.container, sizeof p.container, "mov,mp4,m4a,3gp,3g2,mj2");
    return p;
}

/* A phone's vertical clip: 1080x1920 H.264/AAC 30 fps, moov first. */
#define PHONE(ms) mk(1080, 1920, 0, ms, 30, "h264", "aac", 44100, 1)

static void test_spec_table(void **state)
{
    const struct media_spec *ig = media_spec_find(PLATFORM_INSTAGRAM);
    const struct media_spec *yt = media_spec_find(PLATFORM_YOUTUBE);
    const struct media_spec *x = media_spec_find(PLATFORM_X);

    (void)state;
    assert_int_equal(media_nspecs, 3);
    assert_null(media_spec_find(PLATFORM_TIKTOK));
    assert_non_null(ig);
    assert_non_null(yt);
    assert_non_null(x);
    assert_int_equal(ig->min_duration_ms, 3000);
    assert_int_equal(ig->max_duration_ms, 900000);
    assert_int_equal(ig->max_bytes, 300 * MB);
    assert_int_equal(ig->max_width, 1920);
    assert_true(ig->needs_faststart);
    assert_int_equal(yt->max_duration_ms, 180000);
    assert_false(yt->needs_faststart);
    assert_int_equal(x->min_duration_ms, 500);
    assert_int_equal(x->max_duration_ms, 140000);
    assert_int_equal(x->max_bytes, 512 * MB);
    assert_int_equal(x->max_width, 1280);
    assert_int_equal(x->max_height, 1024);
}

struct check_case {
    const char *name;
    enum platform_id platform;
    struct video_probe p;
    long long bytes;
    enum media_verdict verdict;
    unsigned fixes;
    const char *profile;        /* FIX: exact; else "" */
    long long tw, th;           /* SCALE targets */
    double fps;                 /* FPS target */
    const char *reason_has;     /* a piece of the reason, or NULL */
};

static void run_cases(const struct check_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct check_case *k = &cases[i];
        const struct media_spec *spec = media_spec_find(k->platform);
        struct media_decision d;

        print_message("# %s\n", k->name);
        memset(&d, 0x5a, sizeof d);
        media_check(spec, &k->p, k->bytes, &d);
        if (d.verdict != k->verdict || d.fixes != k->fixes)
            print_error("%s: verdict %d fixes %#x, reason: %s\n", k->name, (int)d.verdict,
                        d.fixes, d.reason);
        assert_int_equal(d.verdict, k->verdict);
        assert_int_equal(d.fixes, k->fixes);
        assert_string_equal(d.profile, k->profile ? k->profile : "");
        assert_true(strlen(d.profile) < MEDIA_PROFILE_MAX);
        if (k->fixes & MEDIA_FIX_SCALE) {
            assert_int_equal(d.target_width, k->tw);
            assert_int_equal(d.target_height, k->th);
            assert_int_equal(d.target_width % 2, 0);
            assert_int_equal(d.target_height % 2, 0);
        }
        if (k->fixes & MEDIA_FIX_FPS)
            assert_true(d.target_fps > k->fps - 1e-9 && d.target_fps < k->fps + 1e-9);
        if (k->verdict == MEDIA_FITS)
            assert_string_equal(d.reason, "");
        else
            assert_true(d.reason[0] != '\0');
        if (k->reason_has && !strstr(d.reason, k->reason_has))
            fail_msg("%s: reason \"%s\" lacks \"%s\"", k->name, d.reason, k->reason_has);
    }
}

static void test_fits(void **state)
{
    const struct check_case cases[] = {
        { "ig phone", PLATFORM_INSTAGRAM, PHONE(15000), 20 * MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "yt phone", PLATFORM_YOUTUBE, PHONE(15000), 20 * MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "x 720p landscape", PLATFORM_X, mk(1280, 720, 0, 10000, 30, "h264", "aac", 48000, 1),
          5 * MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "ig no audio", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 25, "hevc", "", 0, 1), MB,
          MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "ig fps unknown", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 5000, 0, "h264", "aac", 44100, 1),
          MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "ig 23.976 fps", PLATFORM_INSTAGRAM,
          mk(720, 1280, 0, 5000, 24000.0 / 1001, "h264", "aac", 48000, 1), MB, MEDIA_FITS, 0,
          NULL, 0, 0, 0, NULL },
        { "yt moov last is fine", PLATFORM_YOUTUBE,
          mk(720, 1280, 0, 3000, 30, "vp9", "opus", 48000, 0), MB, MEDIA_FITS, 0, NULL, 0, 0, 0,
          NULL },
        { "yt square", PLATFORM_YOUTUBE, mk(1080, 1080, 0, 60000, 30, "h264", "aac", 44100, 1),
          MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "yt 4k vertical 120 fps", PLATFORM_YOUTUBE,
          mk(2160, 3840, 0, 60000, 120, "av1", "aac", 96000, 1), 900 * MB, MEDIA_FITS, 0, NULL,
          0, 0, 0, NULL },
        { "yt exactly 3 min", PLATFORM_YOUTUBE, PHONE(180000), MB, MEDIA_FITS, 0, NULL, 0, 0, 0,
          NULL },
        { "x exactly 140 s", PLATFORM_X, mk(720, 720, 0, 140000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
        { "ig landscape", PLATFORM_INSTAGRAM, mk(1280, 720, 0, 3000, 30, "h264", "aac", 44100, 1),
          MB, MEDIA_FITS, 0, NULL, 0, 0, 0, NULL },
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_fixes(void **state)
{
    const struct check_case cases[] = {
        { "ig moov last", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 30, "h264", "aac", 44100, 0),
          MB, MEDIA_FIX, MEDIA_FIX_FASTSTART, "faststart", 0, 0, 0, "moved to the front" },
        { "x 720x1280", PLATFORM_X, mk(720, 1280, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_SCALE, "scale-576x1024.h264.faststart", 576, 1024, 0,
          "height 1280 is over X's 1024: scaled to 576x1024" },
        { "x 720x1280 moov last", PLATFORM_X, mk(720, 1280, 0, 3000, 30, "h264", "aac", 44100, 0),
          MB, MEDIA_FIX, MEDIA_FIX_SCALE | MEDIA_FIX_FASTSTART, "scale-576x1024.h264.faststart",
          576, 1024, 0, "moov" },
        { "x phone", PLATFORM_X, PHONE(15000), 20 * MB, MEDIA_FIX, MEDIA_FIX_SCALE,
          "scale-576x1024.h264.faststart", 576, 1024, 0, NULL },
        { "x 1920x1080", PLATFORM_X, mk(1920, 1080, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_SCALE, "scale-1280x720.h264.faststart", 1280, 720, 0,
          "1920x1080 is over X's 1280x1024: scaled to 1280x720" },
        { "x 1920x1000", PLATFORM_X, mk(1920, 1000, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_SCALE, "scale-1280x666.h264.faststart", 1280, 666, 0,
          "width 1920 is over X's 1280: scaled to 1280x666" },
        { "x square", PLATFORM_X, mk(1080, 1080, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_SCALE, "scale-1024x1024.h264.faststart", 1024, 1024, 0, NULL },
        { "x odd result rounds to even", PLATFORM_X,
          mk(1000, 1999, 0, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FIX, MEDIA_FIX_SCALE,
          "scale-512x1024.h264.faststart", 512, 1024, 0, NULL },
        { "ig 4k vertical", PLATFORM_INSTAGRAM,
          mk(2160, 3840, 0, 30000, 30, "h264", "aac", 48000, 1), 400 * MB, MEDIA_FIX,
          MEDIA_FIX_SCALE, "scale-1080x1920.h264.faststart", 1080, 1920, 0,
          "3840 is over Instagram Reels' 1920" },
        { "ig very wide", PLATFORM_INSTAGRAM, mk(4000, 1000, 0, 3000, 30, "h264", "aac", 44100, 1),
          MB, MEDIA_FIX, MEDIA_FIX_SCALE, "scale-1920x480.h264.faststart", 1920, 480, 0, NULL },
        { "ig vp9", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 30, "vp9", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_VIDEO, "h264.faststart", 0, 0, 0, "video codec vp9" },
        { "x hevc", PLATFORM_X, mk(720, 720, 0, 3000, 30, "hevc", "aac", 44100, 1), MB, MEDIA_FIX,
          MEDIA_FIX_VIDEO, "h264.faststart", 0, 0, 0, "re-encoded to H.264" },
        { "yt wmv", PLATFORM_YOUTUBE, mk(720, 1280, 0, 3000, 30, "wmv3", "wmav2", 44100, 0), MB,
          MEDIA_FIX, MEDIA_FIX_VIDEO | MEDIA_FIX_AUDIO, "h264.aac.faststart", 0, 0, 0, "wmav2" },
        { "ig opus", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 30, "h264", "opus", 48000, 1), MB,
          MEDIA_FIX, MEDIA_FIX_AUDIO, "aac.faststart", 0, 0, 0, "audio codec opus" },
        { "x 96 kHz", PLATFORM_X, mk(720, 720, 0, 3000, 30, "h264", "aac", 96000, 1), MB,
          MEDIA_FIX, MEDIA_FIX_AUDIO, "aac.faststart", 0, 0, 0, "96000 Hz is over X's 48000" },
        { "ig 120 fps", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 120, "h264", "aac", 44100, 1),
          MB, MEDIA_FIX, MEDIA_FIX_FPS, "fps-60.h264.faststart", 0, 0, 60, "set to 60 fps" },
        { "ig 15 fps", PLATFORM_INSTAGRAM, mk(720, 1280, 0, 3000, 15, "h264", "aac", 44100, 1), MB,
          MEDIA_FIX, MEDIA_FIX_FPS, "fps-23.h264.faststart", 0, 0, 23,
          "15 fps is under Instagram Reels' 23" },
        { "x 90 fps moov last", PLATFORM_X, mk(720, 720, 0, 3000, 90, "h264", "aac", 44100, 0), MB,
          MEDIA_FIX, MEDIA_FIX_FPS | MEDIA_FIX_FASTSTART, "fps-60.h264.faststart", 0, 0, 60, NULL },
        { "ig long small clip at 10 fps", PLATFORM_INSTAGRAM,
          mk(180, 320, 0, 150000, 10, "h264", "aac", 44100, 1), MB, MEDIA_FIX, MEDIA_FIX_FPS,
          "fps-23.h264.faststart", 0, 0, 23, NULL },
        { "x everything", PLATFORM_X, mk(1920, 1080, 0, 3000, 120, "vp9", "opus", 48000, 0), MB,
          MEDIA_FIX,
          MEDIA_FIX_SCALE | MEDIA_FIX_VIDEO | MEDIA_FIX_AUDIO | MEDIA_FIX_FPS | MEDIA_FIX_FASTSTART,
          "scale-1280x720.fps-60.h264.aac.faststart", 1280, 720, 60, "; " },
        { "ig too big but scaled", PLATFORM_INSTAGRAM,
          mk(2160, 3840, 0, 60000, 30, "h264", "aac", 48000, 0), 800 * MB, MEDIA_FIX,
          MEDIA_FIX_SCALE | MEDIA_FIX_FASTSTART, "scale-1080x1920.h264.faststart", 1080, 1920, 0,
          NULL },
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_refusals(void **state)
{
    const struct check_case cases[] = {
        { "x 150 s", PLATFORM_X, mk(180, 320, 0, 150000, 10, "h264", "aac", 44100, 1), MB,
          MEDIA_REFUSE, 0, NULL, 0, 0, 0, "X accepts videos of 0.5 s to 140 s; this one is 150.0 s" },
        { "x 0.4 s", PLATFORM_X, mk(720, 720, 0, 400, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_REFUSE, 0, NULL, 0, 0, 0, "this one is 0.4 s" },
        { "ig 2 s", PLATFORM_INSTAGRAM, PHONE(2000), MB, MEDIA_REFUSE, 0, NULL, 0, 0, 0,
          "Instagram Reels accepts videos of 3 s to 15 min; this one is 2.0 s" },
        { "ig 16 min", PLATFORM_INSTAGRAM, PHONE(960000), MB, MEDIA_REFUSE, 0, NULL, 0, 0, 0,
          "this one is 960.0 s" },
        { "yt 200 s", PLATFORM_YOUTUBE, PHONE(200000), MB, MEDIA_REFUSE, 0, NULL, 0, 0, 0,
          "YouTube Shorts accepts videos of 1 s to 3 min; this one is 200.0 s" },
        { "yt 0.5 s", PLATFORM_YOUTUBE, PHONE(500), MB, MEDIA_REFUSE, 0, NULL, 0, 0, 0, "1 s" },
        { "yt landscape", PLATFORM_YOUTUBE, mk(1280, 720, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_REFUSE, 0, NULL, 0, 0, 0, "Shorts must be vertical or square" },
        { "x too wide", PLATFORM_X, mk(1280, 400, 0, 3000, 30, "h264", "aac", 44100, 1), MB,
          MEDIA_REFUSE, 0, NULL, 0, 0, 0, "X accepts width/height ratios of 0.33 to 3.00" },
        { "x too tall", PLATFORM_X, mk(100, 1000, 0, 3000, 30, "h264", "aac", 44100, 0), MB,
          MEDIA_REFUSE, 0, NULL, 0, 0, 0, "100x1000 (0.10)" },
        { "ig beyond 10:1", PLATFORM_INSTAGRAM,
          mk(1920, 100, 0, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_REFUSE, 0, NULL, 0, 0,
          0, "Instagram Reels accepts width/height ratios" },
        { "ig over 300 MB", PLATFORM_INSTAGRAM, PHONE(60000), 301 * MB, MEDIA_REFUSE, 0, NULL, 0,
          0, 0, "Instagram Reels accepts files of up to 300 MB; this one is 301.0 MB" },
        { "ig over 300 MB, re-encode only", PLATFORM_INSTAGRAM,
          mk(1080, 1920, 0, 60000, 30, "vp9", "aac", 44100, 0), 400 * MB, MEDIA_REFUSE, 0, NULL,
          0, 0, 0, "300 MB" },
        { "x over 512 MB", PLATFORM_X, mk(720, 720, 0, 60000, 30, "h264", "aac", 44100, 1),
          513 * MB, MEDIA_REFUSE, 0, NULL, 0, 0, 0, "512 MB" },
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_rotation(void **state)
{
    const struct check_case cases[] = {
        /* A phone recording stored landscape, shown upright. */
        { "yt 1920x1080 turned 90", PLATFORM_YOUTUBE,
          mk(1920, 1080, 90, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FITS, 0, NULL, 0, 0,
          0, NULL },
        { "yt 1280x720 turned 270", PLATFORM_YOUTUBE,
          mk(1280, 720, 270, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FITS, 0, NULL, 0, 0,
          0, NULL },
        { "yt 1280x720 turned 180 stays landscape", PLATFORM_YOUTUBE,
          mk(1280, 720, 180, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_REFUSE, 0, NULL, 0, 0,
          0, "1280x720 (landscape)" },
        { "yt 720x1280 turned 90 is landscape", PLATFORM_YOUTUBE,
          mk(720, 1280, 90, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_REFUSE, 0, NULL, 0, 0,
          0, "Shorts must be vertical or square" },
        { "x 1920x1080 turned 90", PLATFORM_X,
          mk(1920, 1080, 90, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FIX, MEDIA_FIX_SCALE,
          "scale-576x1024.h264.faststart", 576, 1024, 0, "height 1920 is over X's 1024" },
        { "x 1280x720 turned 270 fits displayed, not stored", PLATFORM_X,
          mk(1280, 720, 270, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FIX, MEDIA_FIX_SCALE,
          "scale-576x1024.h264.faststart", 576, 1024, 0, NULL },
        { "x 1024x1280 turned 90 fits", PLATFORM_X,
          mk(1024, 1280, 90, 3000, 30, "h264", "aac", 44100, 1), MB, MEDIA_FITS, 0, NULL, 0, 0, 0,
          NULL },
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* Same fixes, same profile, whichever destination asked. */
static void test_profiles_shared(void **state)
{
    struct video_probe p = mk(720, 1280, 0, 3000, 30, "vp9", "aac", 44100, 0);
    struct media_decision ig, yt;

    (void)state;
    media_check(media_spec_find(PLATFORM_INSTAGRAM), &p, MB, &ig);
    p.video_codec[0] = '\0';
    snprintf(p.video_codec, sizeof p.video_codec, "wmv3");
    media_check(media_spec_find(PLATFORM_YOUTUBE), &p, MB, &yt);
    assert_int_equal(ig.verdict, MEDIA_FIX);
    assert_int_equal(yt.verdict, MEDIA_FIX);
    /* YouTube does not ask for the moov move, but a re-encode makes it. */
    assert_int_equal(yt.fixes, MEDIA_FIX_VIDEO);
    assert_int_equal(ig.fixes, MEDIA_FIX_VIDEO | MEDIA_FIX_FASTSTART);
    assert_string_equal(ig.profile, "h264.faststart");
    assert_string_equal(yt.profile, ig.profile);
}

/* ---------------------------------------------------------- arguments -- */

static int has_pair(const char **argv, size_t n, const char *a, const char *b)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (strcmp(argv[i], a) == 0 && (!b || strcmp(argv[i + 1], b) == 0))
            return 1;
    return 0;
}

struct args_case {
    const char *name;
    unsigned fixes;
    long long tw, th;
    double fps;
    const char *want[5][2];     /* pairs that must be there */
    const char *absent[3];      /* options that must not be */
};

static void test_args_table(void **state)
{
    static const struct args_case cases[] = {
        { "faststart", MEDIA_FIX_FASTSTART, 0, 0, 0,
          { { "-map", "0" }, { "-c", "copy" }, { "-movflags", "+faststart" } },
          { "-c:v", "-vf", "-r" } },
        { "scale", MEDIA_FIX_SCALE | MEDIA_FIX_FASTSTART, 576, 1024, 0,
          { { "-c:v", "libx264" }, { "-vf", "scale=576:1024" }, { "-c:a", "copy" },
            { "-pix_fmt", "yuv420p" }, { "-movflags", "+faststart" } },
          { "-r", "-ar", "-c" } },
        { "video only keeps the size, even", MEDIA_FIX_VIDEO, 0, 0, 0,
          { { "-c:v", "libx264" }, { "-preset", "veryfast" }, { "-crf", "20" },
            { "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2" }, { "-movflags", "+faststart" } },
          { "-r", "-b:a", NULL } },
        { "fps", MEDIA_FIX_FPS, 0, 0, 60,
          { { "-r", "60" }, { "-c:v", "libx264" }, { "-c:a", "copy" } }, { "-ar", NULL, NULL } },
        { "audio only", MEDIA_FIX_AUDIO | MEDIA_FIX_FASTSTART, 0, 0, 0,
          { { "-c:v", "copy" }, { "-c:a", "aac" }, { "-b:a", "128k" }, { "-ar", "48000" },
            { "-movflags", "+faststart" } },
          { "-vf", "-r", "-crf" } },
        { "everything", MEDIA_FIX_SCALE | MEDIA_FIX_VIDEO | MEDIA_FIX_AUDIO | MEDIA_FIX_FPS |
                            MEDIA_FIX_FASTSTART, 1280, 720, 23.976,
          { { "-vf", "scale=1280:720" }, { "-r", "23.976" }, { "-c:a", "aac" },
            { "-c:v", "libx264" }, { "-map", "0:a:0?" } },
          { "-c", NULL, NULL } },
    };
    struct media_decision d;
    const char *argv[MEDIA_ARGS_MAX];
    struct buf storage;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct args_case *k = &cases[i];

        print_message("# args %s\n", k->name);
        memset(&d, 0, sizeof d);
        d.verdict = MEDIA_FIX;
        d.fixes = k->fixes;
        d.target_width = k->tw;
        d.target_height = k->th;
        d.target_fps = k->fps;
        /* A tiny first allocation: the strings move as storage grows. */
        buf_init(&storage, 4096);
        assert_int_equal(media_ffmpeg_args(&d, "/in dir/a.mp4", "/out/b.mp4", &storage, argv,
                                           MEDIA_ARGS_MAX, &n), 0);
        assert_true(n >= 10);
        assert_string_equal(argv[0], "-nostdin");
        assert_true(has_pair(argv, n, "-hide_banner", "-loglevel"));
        assert_true(has_pair(argv, n, "-loglevel", "error"));
        assert_true(has_pair(argv, n, "-y", "-i"));
        assert_true(has_pair(argv, n, "-i", "/in dir/a.mp4"));
        assert_string_equal(argv[n - 1], "/out/b.mp4");
        for (size_t j = 0; j < 5 && k->want[j][0]; j++)
            if (!has_pair(argv, n, k->want[j][0], k->want[j][1]))
                fail_msg("%s: no %s %s", k->name, k->want[j][0], k->want[j][1]);
        for (size_t j = 0; j < 3 && k->absent[j]; j++)
            for (size_t m = 0; m < n; m++)
                if (strcmp(argv[m], k->absent[j]) == 0)
                    fail_msg("%s: unexpected %s", k->name, k->absent[j]);
        buf_free(&storage);
    }
}

static void test_args_limits(void **state)
{
    struct media_decision d;
    const char *argv[MEDIA_ARGS_MAX];
    struct buf storage;
    size_t n = 99;

    (void)state;
    memset(&d, 0, sizeof d);
    d.verdict = MEDIA_FIX;
    d.fixes = MEDIA_FIX_FASTSTART;
    buf_init(&storage, 4096);
    assert_int_equal(media_ffmpeg_args(&d, "in", "out.mp4", &storage, argv, 5, &n), CP_ETOOBIG);
    assert_int_equal(n, 0);
    buf_free(&storage);

    buf_init(&storage, 40);
    assert_int_equal(media_ffmpeg_args(&d, "in", "out.mp4", &storage, argv, MEDIA_ARGS_MAX, &n),
                     CP_ETOOBIG);
    buf_free(&storage);

    buf_init(&storage, 4096);
    d.fixes = 0;
    assert_int_equal(media_ffmpeg_args(&d, "in", "out.mp4", &storage, argv, MEDIA_ARGS_MAX, &n),
                     CP_EINVAL);
    d.fixes = MEDIA_FIX_SCALE;
    assert_int_equal(media_ffmpeg_args(&d, "in", "out.mp4", &storage, argv, MEDIA_ARGS_MAX, &n),
                     CP_EINVAL);
    d.fixes = MEDIA_FIX_FPS;
    assert_int_equal(media_ffmpeg_args(&d, "in", "out.mp4", &storage, argv, MEDIA_ARGS_MAX, &n),
                     CP_EINVAL);
    buf_free(&storage);
}

/* ------------------------------------------------- a real ffmpeg run -- */

static int run_ffmpeg(const struct conf *c, const char *const *args, size_t n)
{
    struct probe_run_result r;
    int rc = probe_run(c->ffmpeg_command, args, n, 60000, 4096, NULL, NULL, &r);

    if (rc == 0 && (!r.exited || r.exit_code != 0)) {
        print_error("ffmpeg failed: %s\n", r.err_tail);
        rc = CP_EPROTO;
    }
    probe_run_result_free(&r);
    return rc;
}

static void fix_and_probe(const struct conf *c, const struct media_decision *d, const char *in,
                          const char *out, struct video_probe *p)
{
    const char *argv[MEDIA_ARGS_MAX];
    struct buf storage, err;
    size_t n;

    buf_init(&storage, 16384);
    buf_init(&err, 1024);
    assert_int_equal(media_ffmpeg_args(d, in, out, &storage, argv, MEDIA_ARGS_MAX, &n), 0);
    assert_int_equal(run_ffmpeg(c, argv, n), 0);
    if (probe_file(c, out, p, &err) != 0)
        fail_msg("probe %s: %s", out, buf_str(&err));
    buf_free(&storage);
    buf_free(&err);
}

static void test_ffmpeg_fixes(void **state)
{
    struct conf *c = NULL;
    struct probe_run_result r;
    struct video_probe p;
    struct media_decision d;
    struct media_spec tight;
    struct buf err;
    char dir[] = "/tmp/test_mediaspec_XXXXXX", src[128], fast[128], scaled[128],
        rotated[128];
    const char *version[] = { "-version" };
    int rc;

    (void)state;
    assert_int_equal(conf_defaults(&c), 0);
    rc = probe_run(c->ffmpeg_command, version, 1, 10000, 4096, NULL, NULL, &r);
    probe_run_result_free(&r);
    if (rc == CP_EIO) {
        print_message("# ffmpeg (%s) is not installed: the real transcode test is skipped\n",
                      c->ffmpeg_command);
        conf_free(c);
        skip();
    }
    assert_non_null(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/src.mp4", dir);
    snprintf(fast, sizeof fast, "%s/fast.mp4", dir);
    snprintf(scaled, sizeof scaled, "%s/scaled.mp4", dir);
    snprintf(rotated, sizeof rotated, "%s/rotated.mp4", dir);

    {
        /* 1 s of 320x640 H.264/AAC; ffmpeg writes the moov atom last
         * unless told otherwise. */
        const char *make[] = {
            "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=320x640:rate=25:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", src,
        };

        assert_int_equal(run_ffmpeg(c, make, sizeof make / sizeof make[0]), 0);
    }
    buf_init(&err, 1024);
    assert_int_equal(probe_file(c, src, &p, &err), 0);
    buf_free(&err);
    assert_int_equal(p.width, 320);
    assert_int_equal(p.height, 640);
    assert_int_equal(p.moov_front, 0);

    /* X: only the moov atom is wrong. */
    media_check(media_spec_find(PLATFORM_X), &p, 100000, &d);
    assert_int_equal(d.verdict, MEDIA_FIX);
    assert_int_equal(d.fixes, MEDIA_FIX_FASTSTART);
    fix_and_probe(c, &d, src, fast, &p);
    assert_int_equal(p.moov_front, 1);
    assert_int_equal(p.width, 320);
    assert_int_equal(p.height, 640);
    assert_string_equal(p.audio_codec, "aac");
    media_check(media_spec_find(PLATFORM_X), &p, 100000, &d);
    assert_int_equal(d.verdict, MEDIA_FITS);

    /* A spec with X's limits but 320 px high: scale and fast start. */
    tight = *media_spec_find(PLATFORM_X);
    tight.max_height = 320;
    buf_init(&err, 1024);
    assert_int_equal(probe_file(c, src, &p, &err), 0);
    buf_free(&err);
    media_check(&tight, &p, 100000, &d);
    assert_int_equal(d.verdict, MEDIA_FIX);
    assert_int_equal(d.fixes, MEDIA_FIX_SCALE | MEDIA_FIX_FASTSTART);
    assert_string_equal(d.profile, "scale-160x320.h264.faststart");
    fix_and_probe(c, &d, src, scaled, &p);
    assert_int_equal(p.moov_front, 1);
    assert_int_equal(p.width, 160);
    assert_int_equal(p.height, 320);
    assert_string_equal(p.video_codec, "h264");
    media_check(&tight, &p, 100000, &d);
    assert_int_equal(d.verdict, MEDIA_FITS);

    /* Stored 320x640 turned a quarter: shown 640x320, scaled as shown. */
    {
        const char *turn[] = {
            "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src,
            "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated,
        };

        assert_int_equal(run_ffmpeg(c, turn, sizeof turn / sizeof turn[0]), 0);
    }
    buf_init(&err, 1024);
    assert_int_equal(probe_file(c, rotated, &p, &err), 0);
    buf_free(&err);
    assert_true(p.rotation == 90 || p.rotation == 270);
    tight = *media_spec_find(PLATFORM_X);
    tight.max_width = 320;
    media_check(&tight, &p, 100000, &d);
    assert_int_equal(d.verdict, MEDIA_FIX);
    assert_string_equal(d.profile, "scale-320x160.h264.faststart");
    fix_and_probe(c, &d, rotated, scaled, &p);
    assert_int_equal(p.rotation, 0);
    assert_int_equal(p.width, 320);
    assert_int_equal(p.height, 160);

    unlink(src);
    unlink(fast);
    unlink(scaled);
    unlink(rotated);
    assert_int_equal(rmdir(dir), 0);
    conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table),
        cmocka_unit_test(test_fits),
        cmocka_unit_test(test_fixes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_profiles_shared),
        cmocka_unit_test(test_args_table),
        cmocka_unit_test(test_args_limits),
        cmocka_unit_test(test_ffmpeg_fixes),
    };

    return cmocka_run_group_tests_name("mediaspec", tests, NULL, NULL);
}
