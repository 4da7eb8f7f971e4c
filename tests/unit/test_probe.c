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

#include "err.h"
#include "fetch.h"
#include "probe.h"

/* ------------------------------------------------------- ffprobe JSON -- */

static const char PHONE_JSON[] =
    "{\"streams\":[{\"index\":0,\"codec_name\":\"h264\",\"codec_type\":\"video\","
    "\"width\":1920,\"height\":1080,\"r_frame_rate\":\"30000/1001\","
    "\"avg_frame_rate\":\"30000/1001\",\"duration\":\"12.345000\","
    "\"side_data_list\":[{\"side_data_type\":\"Display Matrix\","
    "\"displaymatrix\":\"...\",\"rotation\":-90}],"
    "\"disposition\":{\"default\":1,\"attached_pic\":0}},"
    "{\"index\":1,\"codec_name\":\"aac\",\"codec_type\":\"audio\",\"sample_rate\":\"44100\"}],"
    "\"format\":{\"filename\":\"x.mp4\",\"format_name\":\"mov,mp4,m4a,3gp,3g2,mj2\","
    "\"duration\":\"12.345000\",\"size\":\"1000\",\"bit_rate\":\"2500000\"}}";

static const char TAG_ROTATE_JSON[] =
    "{\"streams\":[{\"codec_name\":\"hevc\",\"codec_type\":\"video\",\"width\":720,"
    "\"height\":1280,\"avg_frame_rate\":\"0/0\",\"r_frame_rate\":\"25/1\","
    "\"tags\":{\"rotate\":\"270\"}}],"
    "\"format\":{\"format_name\":\"mov,mp4,m4a,3gp,3g2,mj2\",\"duration\":\"3.000000\"}}";

static const char COVER_ONLY_JSON[] =
    "{\"streams\":[{\"codec_name\":\"mjpeg\",\"codec_type\":\"video\",\"width\":500,"
    "\"height\":500,\"disposition\":{\"attached_pic\":1}},"
    "{\"codec_name\":\"mp3\",\"codec_type\":\"audio\",\"sample_rate\":\"48000\"}],"
    "\"format\":{\"format_name\":\"mp3\",\"duration\":\"200.0\"}}";

static const char NO_AUDIO_JSON[] =
    "{\"streams\":[{\"codec_name\":\"vp9\",\"codec_type\":\"video\",\"width\":640,"
    "\"height\":360,\"avg_frame_rate\":\"60\","
    "\"side_data_list\":[{\"side_data_type\":\"Display Matrix\",\"rotation\":180}]}],"
    "\"format\":{\"format_name\":\"matroska,webm\"}}";

static void test_parse_phone(void **state)
{
    struct video_probe p;

    (void)state;
    assert_int_equal(probe_parse_json(PHONE_JSON, strlen(PHONE_JSON), &p), 0);
    assert_int_equal(p.width, 1920);
    assert_int_equal(p.height, 1080);
    assert_int_equal(p.rotation, 90);
    assert_int_equal(p.duration_ms, 12345);
    assert_true(p.fps > 29.96 && p.fps < 29.98);
    assert_string_equal(p.video_codec, "h264");
    assert_string_equal(p.audio_codec, "aac");
    assert_int_equal(p.audio_rate, 44100);
    assert_int_equal(p.bitrate, 2500000);
    assert_string_equal(p.container, "mov,mp4,m4a,3gp,3g2,mj2");
}

static void test_parse_variants(void **state)
{
    struct video_probe p;

    (void)state;
    assert_int_equal(probe_parse_json(TAG_ROTATE_JSON, strlen(TAG_ROTATE_JSON), &p), 0);
    assert_int_equal(p.rotation, 270);
    assert_true(p.fps > 24.99 && p.fps < 25.01);   /* avg 0/0: falls back to r_frame_rate */
    assert_string_equal(p.video_codec, "hevc");
    assert_string_equal(p.audio_codec, "");
    assert_int_equal(p.duration_ms, 3000);

    assert_int_equal(probe_parse_json(NO_AUDIO_JSON, strlen(NO_AUDIO_JSON), &p), 0);
    assert_int_equal(p.rotation, 180);
    assert_true(p.fps > 59.99 && p.fps < 60.01);
    assert_int_equal(p.duration_ms, 0);
    assert_int_equal(p.audio_rate, 0);
    assert_string_equal(p.container, "matroska,webm");
}

static void test_parse_refusals(void **state)
{
    static const struct {
        const char *json;
        int rc;
    } cases[] = {
        { COVER_ONLY_JSON, CP_ENOTFOUND },
        { "{\"streams\":[],\"format\":{}}", CP_ENOTFOUND },
        { "{}", CP_ENOTFOUND },
        { "[1,2]", CP_EPARSE },
        { "{\"streams\":[", CP_EPARSE },
        { "not json", CP_EPARSE },
        { "", CP_EPARSE },
    };
    struct video_probe p;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p.width = 99;
        assert_int_equal(probe_parse_json(cases[i].json, strlen(cases[i].json), &p), cases[i].rc);
        assert_int_equal(p.width, 0);
    }
}

static void test_rotation(void **state)
{
    static const struct {
        double matrix;
        int want;
    } m[] = {
        { 0, 0 }, { -90, 90 }, { 90, 270 }, { 180, 180 }, { -180, 180 }, { -270, 270 },
        { 270, 90 }, { -89.9, 90 }, { 360, 0 }, { -450, 90 },
    };
    static const struct {
        long long tag;
        int want;
    } t[] = { { 0, 0 }, { 90, 90 }, { 180, 180 }, { 270, 270 }, { -90, 270 }, { 450, 90 } };

    (void)state;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        assert_int_equal(probe_rotation_from_matrix(m[i].matrix), m[i].want);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(probe_rotation_from_tag(t[i].tag), t[i].want);
}

static void test_rates(void **state)
{
    static const struct {
        const char *s;
        double lo, hi;
    } cases[] = {
        { "30000/1001", 29.97, 29.98 }, { "30/1", 30, 30 }, { "25", 25, 25 },
        { "24000/1001", 23.976, 23.977 }, { "60000/1000", 60, 60 },
        { "0/0", 0, 0 }, { "1/0", 0, 0 }, { "", 0, 0 }, { "abc", 0, 0 }, { "30/x", 0, 0 },
        { "-30/1", 0, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double r = probe_parse_rate(cases[i].s);

        assert_true(r >= cases[i].lo - 1e-9 && r <= cases[i].hi + 1e-9);
    }
    assert_true(probe_parse_rate(NULL) == 0);
}

/* ------------------------------------------------------------ box scan -- */

/* Append a box of type with a 32-bit size (or a 64-bit one) and body_len
 * zero bytes of body. */
static size_t put_box(unsigned char *p, const char *type, size_t body_len, int large)
{
    size_t header = large ? 16 : 8, size = header + body_len;

    memset(p, 0, size);
    if (large) {
        p[3] = 1;
        for (int i = 0; i < 8; i++)
            p[8 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
    } else {
        p[0] = (unsigned char)(size >> 24);
        p[1] = (unsigned char)(size >> 16);
        p[2] = (unsigned char)(size >> 8);
        p[3] = (unsigned char)size;
    }
    memcpy(p + 4, type, 4);
    return size;
}

static void test_scan_layouts(void **state)
{
    unsigned char b[512];
    size_t n;
    struct mp4_layout l;

    (void)state;
    /* Fast start: ftyp moov mdat. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "moov", 40, 0);
    n += put_box(b + n, "mdat", 100, 0);
    assert_int_equal(probe_scan_mem(b, n, &l), 0);
    assert_true(l.has_ftyp && l.has_moov && l.has_mdat);
    assert_int_equal(l.moov_front, 1);
    assert_int_equal(l.boxes, 3);
    assert_int_equal(l.truncated, 0);
    assert_int_equal(l.moov_offset, 24);

    /* Moov at the end. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "free", 4, 0);
    n += put_box(b + n, "mdat", 100, 0);
    n += put_box(b + n, "moov", 40, 0);
    assert_int_equal(probe_scan_mem(b, n, &l), 0);
    assert_int_equal(l.moov_front, 0);
    assert_true(l.moov_offset > l.mdat_offset);
    assert_int_equal(l.boxes, 4);

    /* A 64-bit mdat size, moov after it. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "mdat", 200, 1);
    n += put_box(b + n, "moov", 20, 0);
    assert_int_equal(probe_scan_mem(b, n, &l), 0);
    assert_int_equal(l.boxes, 3);
    assert_true(l.has_moov);
    assert_int_equal(l.moov_front, 0);
    assert_int_equal(l.moov_offset, 24 + 216);

    /* Size 0: the last box runs to the end of the file. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "moov", 20, 0);
    {
        size_t at = n;

        n += put_box(b + n, "mdat", 60, 0);
        b[at] = b[at + 1] = b[at + 2] = b[at + 3] = 0;
    }
    assert_int_equal(probe_scan_mem(b, n, &l), 0);
    assert_int_equal(l.moov_front, 1);
    assert_int_equal(l.truncated, 0);
    assert_int_equal(l.boxes, 3);
}

static void test_scan_broken(void **state)
{
    unsigned char b[512];
    size_t n;
    struct mp4_layout l;
    static const unsigned char text[] = "<html><body>Not here</body></html>";

    (void)state;
    /* Truncated: mdat claims more than there is, moov never comes. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "mdat", 100, 0);
    assert_int_equal(probe_scan_mem(b, n - 50, &l), 0);
    assert_int_equal(l.truncated, 1);
    assert_int_equal(l.has_moov, 0);
    assert_int_equal(l.moov_front, 0);

    /* A header cut short after a whole box. */
    n = put_box(b, "ftyp", 16, 0);
    assert_int_equal(probe_scan_mem(b, n + 5, &l), 0);
    assert_int_equal(l.truncated, 1);

    /* A size below the header is impossible. */
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "moov", 20, 0);
    b[24 + 3] = 4;
    assert_int_equal(probe_scan_mem(b, n, &l), CP_EPARSE);

    /* A 64-bit size below 16. */
    n = put_box(b, "mdat", 20, 1);
    b[15] = 12;
    assert_int_equal(probe_scan_mem(b, n, &l), CP_EPARSE);

    /* Not boxes at all. */
    assert_int_equal(probe_scan_mem(text, sizeof text - 1, &l), CP_EPARSE);
    assert_int_equal(probe_scan_mem(b, 0, &l), CP_EPARSE);
}

static void test_scan_fd(void **state)
{
    unsigned char b[256];
    char path[] = "/tmp/test_probe_XXXXXX";
    size_t n;
    int fd;
    struct mp4_layout l;

    (void)state;
    n = put_box(b, "ftyp", 16, 0);
    n += put_box(b + n, "mdat", 100, 0);
    n += put_box(b + n, "moov", 40, 0);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    assert_int_equal(probe_scan_fd(fd, &l), 0);
    assert_int_equal(l.boxes, 3);
    assert_int_equal(l.moov_front, 0);
    close(fd);
}

/* ------------------------------------------------------ program runs -- */

static void test_run(void **state)
{
    const char *echo_args[] = { "-c", "printf hello; printf 'oops\\nERROR: last words\\n' >&2; exit 3" };
    const char *sleep_args[] = { "-c", "sleep 5" };
    const char *big_args[] = { "-c", "head -c 100000 /dev/zero" };
    struct probe_run_result r;

    (void)state;
    assert_int_equal(probe_run("sh", echo_args, 2, 5000, 1024, NULL, NULL, &r), 0);
    assert_true(r.exited);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(buf_str(&r.out), "hello");
    assert_non_null(strstr(r.err_tail, "ERROR: last words"));
    probe_run_result_free(&r);

    assert_int_equal(probe_run("sh", sleep_args, 2, 300, 1024, NULL, NULL, &r), CP_ETIMEDOUT);
    assert_true(r.timed_out);
    probe_run_result_free(&r);

    assert_int_equal(probe_run("sh", big_args, 2, 5000, 1000, NULL, NULL, &r), 0);
    assert_true(r.out_overflow);
    probe_run_result_free(&r);

    assert_int_equal(probe_run("/nonexistent/program", NULL, 0, 5000, 1024, NULL, NULL, &r), CP_EIO);
    probe_run_result_free(&r);
}

static void test_hash_file(void **state)
{
    char path[] = "/tmp/test_probe_hash_XXXXXX";
    char hex[65];
    long long bytes;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    assert_int_equal(fetch_hash_file(path, &bytes, hex), 0);
    assert_int_equal(bytes, 3);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(fetch_hash_file(path, &bytes, hex), CP_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_phone),
        cmocka_unit_test(test_parse_variants),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_scan_layouts),
        cmocka_unit_test(test_scan_broken),
        cmocka_unit_test(test_scan_fd),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_hash_file),
    };

    return cmocka_run_group_tests_name("probe", tests, NULL, NULL);
}
