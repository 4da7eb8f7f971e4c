#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"
#include "publications.h"
#include "queue.h"
#include "videos.h"

#define TX_ATTEMPTS 5
#define LIST_LIMIT_MAX 200
#define ERROR_MAX 1024
/* Stored for text that is not UTF-8. */
#define UNREADABLE "(not readable text)"

#define MS(col) "COALESCE(CAST(UNIX_TIMESTAMP(" col ") * 1000 AS SIGNED), 0)"

static const char *const state_names[] = {
    [VIDEO_KNOWN] = "known", [VIDEO_NEW] = "new", [VIDEO_FETCHING] = "fetching",
    [VIDEO_STORED] = "stored", [VIDEO_READY] = "ready", [VIDEO_FAILED] = "failed",
};
#define NSTATES (sizeof state_names / sizeof state_names[0])

const char *video_state_name(enum video_state s)
{
    return (size_t)s < NSTATES ? state_names[s] : "unknown";
}

int video_state_parse(const char *name, enum video_state *out)
{
    for (size_t i = 0; name && i < NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum video_state)i;
            return 0;
        }
    return CP_EINVAL;
}

/* ----------------------------------------------------------- helpers -- */

static struct db_param opt_i64(long long v)
{
    return v > 0 ? DB_I64(v) : DB_NULL;
}

/* ---------------------------------------------------------- reading -- */

#define VIDEO_COLS \
    "id, user_id, connection_id, remote_id, state, " MS("remote_created_at") ", title," \
    " COALESCE(description, ''), COALESCE(duration_s, 0), COALESCE(width, 0)," \
    " COALESCE(height, 0), share_url, cover_url, embed_link, media_url," \
    " storage_key IS NOT NULL, COALESCE(storage_backend, ''), COALESCE(storage_key, '')," \
    " COALESCE(media_bytes, 0), COALESCE(media_sha256, ''), COALESCE(media_type, '')," \
    " COALESCE(thumbnail_key, ''), probed_at IS NOT NULL, COALESCE(probe_duration_ms, 0)," \
    " COALESCE(probe_width, 0), COALESCE(probe_height, 0), COALESCE(probe_rotation, 0)," \
    " COALESCE(probe_fps, 0), COALESCE(probe_video_codec, ''), COALESCE(probe_audio_codec, '')," \
    " COALESCE(probe_audio_rate, 0), COALESCE(probe_bitrate, 0), COALESCE(probe_container, '')," \
    " COALESCE(probe_moov_front, 0), " MS("fetched_at") ", " MS("probed_at") ", last_error, " \
    MS("created_at") ", " MS("updated_at")

static int row_to_video(const struct db_result *r, size_t i, struct video *v)
{
    const char *fps;

    memset(v, 0, sizeof *v);
    if (video_state_parse(db_result_get(r, i, 4), &v->state))
        return CP_EDB;
    v->id = db_result_int(r, i, 0);
    v->user_id = db_result_int(r, i, 1);
    v->connection_id = db_result_int(r, i, 2);
    db_result_text(r, i, 3, v->remote_id, sizeof v->remote_id);
    v->remote_created_at = db_result_int(r, i, 5);
    db_result_text(r, i, 6, v->title, sizeof v->title);
    db_result_text(r, i, 7, v->description, sizeof v->description);
    v->duration_s = db_result_int(r, i, 8);
    v->width = db_result_int(r, i, 9);
    v->height = db_result_int(r, i, 10);
    db_result_text(r, i, 11, v->share_url, sizeof v->share_url);
    db_result_text(r, i, 12, v->cover_url, sizeof v->cover_url);
    db_result_text(r, i, 13, v->embed_link, sizeof v->embed_link);
    db_result_text(r, i, 14, v->media_url, sizeof v->media_url);
    v->stored = db_result_int(r, i, 15) != 0;
    db_result_text(r, i, 16, v->storage_backend, sizeof v->storage_backend);
    db_result_text(r, i, 17, v->storage_key, sizeof v->storage_key);
    v->media_bytes = db_result_int(r, i, 18);
    db_result_text(r, i, 19, v->media_sha256, sizeof v->media_sha256);
    db_result_text(r, i, 20, v->media_type, sizeof v->media_type);
    db_result_text(r, i, 21, v->thumbnail_key, sizeof v->thumbnail_key);
    v->probed = db_result_int(r, i, 22) != 0;
    v->probe.duration_ms = db_result_int(r, i, 23);
    v->probe.width = db_result_int(r, i, 24);
    v->probe.height = db_result_int(r, i, 25);
    v->probe.rotation = (int)db_result_int(r, i, 26);
    fps = db_result_get(r, i, 27);
    v->probe.fps = fps ? strtod(fps, NULL) : 0;
    db_result_text(r, i, 28, v->probe.video_codec, sizeof v->probe.video_codec);
    db_result_text(r, i, 29, v->probe.audio_codec, sizeof v->probe.audio_codec);
    v->probe.audio_rate = db_result_int(r, i, 30);
    v->probe.bitrate = db_result_int(r, i, 31);
    db_result_text(r, i, 32, v->probe.container, sizeof v->probe.container);
    v->probe.moov_front = db_result_int(r, i, 33) != 0;
    v->fetched_at = db_result_int(r, i, 34);
    v->probed_at = db_result_int(r, i, 35);
    db_result_text(r, i, 36, v->last_error, sizeof v->last_error);
    v->created_at = db_result_int(r, i, 37);
    v->updated_at = db_result_int(r, i, 38);
    return 0;
}

static const char sql_get[] =
    "SELECT " VIDEO_COLS " FROM videos WHERE id = ? AND (? = 1 OR user_id = ?)";

int video_get(struct db *db, const struct conn_scope *scope, long long id, struct video *out)
{
    struct db_param p[] = { DB_I64(id), DB_I64(conn_scope_all(scope)), DB_I64(conn_scope_user(scope)) };
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (id <= 0)
        return CP_ENOTFOUND;
    rc = db_query_row(db, sql_get, p, 3, &r);
    if (!rc)
        rc = row_to_video(r, 0, out);
    if (rc)
        memset(out, 0, sizeof *out);
    db_result_free(r);
    return rc;
}

/* Newest first: the cursor is the last id of the previous page, and the
 * next page holds smaller ids. */
int video_list(struct db *db, const struct conn_scope *scope, const struct video_filter *f,
               struct video *out, size_t *n, int *more)
{
    struct db_param p[10];
    struct db_result *r = NULL;
    struct buf sql;
    size_t np = 0, rows;
    long long user = f->user_id;
    int rc;

    *n = 0;
    *more = 0;
    if (f->limit < 1 || f->limit > LIST_LIMIT_MAX || f->after_id < 0 || f->from_ms < 0 ||
        f->to_ms < 0 || (f->have_state && (size_t)f->state >= NSTATES))
        return CP_EINVAL;
    if (!conn_scope_all(scope)) {
        if (user && user != scope->user_id)
            return 0;
        user = scope->user_id;
    }
    buf_init(&sql, 8192);
    rc = buf_adds(&sql, "SELECT " VIDEO_COLS " FROM videos WHERE 1 = 1");
    if (!rc && f->after_id) {
        rc = buf_adds(&sql, " AND id < ?");
        p[np++] = DB_I64(f->after_id);
    }
    if (!rc && user) {
        rc = buf_adds(&sql, " AND user_id = ?");
        p[np++] = DB_I64(user);
    }
    if (!rc && f->connection_id) {
        rc = buf_adds(&sql, " AND connection_id = ?");
        p[np++] = DB_I64(f->connection_id);
    }
    if (!rc && f->have_state) {
        rc = buf_adds(&sql, " AND state = ?");
        p[np++] = DB_STR(state_names[f->state]);
    }
    if (!rc)
        rc = db_where_time_range(&sql, "remote_created_at", f->from_ms, f->to_ms, p, &np);
    if (!rc)
        rc = buf_adds(&sql, " ORDER BY id DESC LIMIT ?");
    p[np++] = DB_I64(f->limit + 1);
    if (!rc)
        rc = db_query(db, buf_str(&sql), p, np, &r);
    buf_free(&sql);
    if (rc)
        goto out;
    rows = db_result_page(r, f->limit, more);
    for (size_t i = 0; i < rows && !rc; i++)
        rc = row_to_video(r, i, &out[i]);
    if (!rc)
        *n = rows;
    else
        *more = 0;
out:
    db_result_free(r);
    return rc;
}

/* ---------------------------------------------------------- writing -- */

static const char sql_record[] =
    "INSERT IGNORE INTO videos (user_id, connection_id, remote_id, state, remote_created_at,"
    " title, description, duration_s, width, height, share_url, cover_url, embed_link, media_url)"
    " VALUES (?, ?, ?, ?, FROM_UNIXTIME(?), ?, ?, ?, ?, ?, ?, ?, ?, ?)";

struct record_tx {
    long long conn_id, user_id;
    const struct video_listing *v;
    size_t n;
    int fetch;
    size_t added;
};

/* A URL that does not fit its column is dropped rather than cut. */
static const char *fitting_url(const char *s, size_t cap)
{
    return s && strlen(s) < cap ? s : "";
}

static int record_tx(struct db *db, void *arg)
{
    struct record_tx *t = arg;

    t->added = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct video_listing *v = &t->v[i];
        char title[256], description[VIDEO_TEXT_MAX];
        unsigned long long affected = 0, id = 0;
        int rc;

        json_utf8_clip(title, sizeof title, v->title, UNREADABLE);
        json_utf8_clip(description, sizeof description, v->description, UNREADABLE);
        {
            struct db_param p[] = {
                DB_I64(t->user_id), DB_I64(t->conn_id), DB_STR(v->remote_id),
                DB_STR(t->fetch ? "new" : "known"), opt_i64(v->create_time_s), DB_STR(title),
                DB_STR(description), opt_i64(v->duration_s), opt_i64(v->width), opt_i64(v->height),
                DB_STR(fitting_url(v->share_url, 1025)), DB_STR(fitting_url(v->cover_url, 2049)),
                DB_STR(fitting_url(v->embed_link, 1025)), DB_STR(fitting_url(v->media_url, 2049)),
            };

            rc = db_exec(db, sql_record, p, sizeof p / sizeof p[0], &affected, &id);
        }
        if (rc)
            return rc;
        if (affected == 0)
            continue;                   /* recorded by an earlier sync */
        t->added++;
        if (t->fetch) {
            char payload[64], key[64];
            struct job_spec spec = { .kind = "video.fetch", .payload = payload, .unique_key = key,
                                     .user_id = t->user_id };
            long long job = 0;

            snprintf(payload, sizeof payload, "{\"video_id\":%llu}", id);
            snprintf(key, sizeof key, "video.fetch:%llu", id);
            rc = queue_enqueue(db, &spec, &job);
            if (rc && rc != CP_ECONFLICT)
                return rc;
        }
    }
    return 0;
}

int video_record(struct db *db, long long conn_id, long long user_id,
                 const struct video_listing *v, size_t n, int fetch, size_t *added)
{
    struct record_tx t = { conn_id, user_id, v, n, fetch, 0 };
    int rc;

    *added = 0;
    if (conn_id <= 0 || user_id <= 0 || (n && !v))
        return CP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!v[i].remote_id[0])
            return CP_EINVAL;
    if (n == 0)
        return 0;
    rc = db_transaction(db, record_tx, &t, TX_ATTEMPTS);
    if (!rc)
        *added = t.added;
    return rc;
}

/* The state of video id, without scope: CP_ENOTFOUND when gone. */
static int read_state(struct db *db, long long id, enum video_state *state, long long *user)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    int rc = db_query_row(db, "SELECT state, user_id FROM videos WHERE id = ? FOR UPDATE", p, 1, &r);
    if (!rc && video_state_parse(db_result_get(r, 0, 0), state))
        rc = CP_EDB;
    if (!rc && user)
        *user = db_result_int(r, 0, 1);
    db_result_free(r);
    return rc;
}

int video_begin_fetch(struct db *db, long long id, struct video *out)
{
    struct db_param p[] = { DB_I64(id) };
    int rc;

    memset(out, 0, sizeof *out);
    rc = db_exec(db, "UPDATE videos SET state = 'fetching', last_error = ''"
                     " WHERE id = ? AND state IN ('new', 'fetching', 'failed')", p, 1, NULL, NULL);
    if (rc)
        return rc;
    rc = video_get(db, NULL, id, out);
    if (rc)
        return rc;
    if (out->state != VIDEO_FETCHING) {
        memset(out, 0, sizeof *out);
        return CP_ECONFLICT;
    }
    return 0;
}

/* Not moved: CP_ECONFLICT when the row is in another state, CP_ENOTFOUND
 * when it is gone. */
static int not_moved(struct db *db, long long id)
{
    enum video_state s;
    int rc = read_state(db, id, &s, NULL);

    return rc ? rc : CP_ECONFLICT;
}

struct stored_tx {
    long long id;
    const char *backend, *key, *sha256, *type;
    long long bytes;
};

static int stored_tx(struct db *db, void *arg)
{
    struct stored_tx *t = arg;
    struct db_param p[] = { DB_STR(t->backend), DB_STR(t->key), DB_I64(t->bytes), DB_STR(t->sha256),
                            DB_STR(t->type), DB_I64(t->id) };
    unsigned long long affected = 0;
    enum video_state s;
    long long user = 0;
    char payload[64], ukey[64];
    struct job_spec spec = { .kind = "video.probe", .payload = payload, .unique_key = ukey };
    long long job = 0;
    int rc;

    if ((rc = read_state(db, t->id, &s, &user)))
        return rc;
    if (s != VIDEO_FETCHING)
        return CP_ECONFLICT;
    rc = db_exec(db, "UPDATE videos SET state = 'stored', storage_backend = ?, storage_key = ?,"
                     " media_bytes = ?, media_sha256 = ?, media_type = ?, fetched_at = NOW(3),"
                     " last_error = '' WHERE id = ? AND state = 'fetching'",
                 p, 6, &affected, NULL);
    if (rc)
        return rc;
    if (affected == 0)
        return CP_ECONFLICT;
    snprintf(payload, sizeof payload, "{\"video_id\":%lld}", t->id);
    snprintf(ukey, sizeof ukey, "video.probe:%lld", t->id);
    spec.user_id = user;
    rc = queue_enqueue(db, &spec, &job);
    return rc == CP_ECONFLICT ? 0 : rc;
}

int video_mark_stored(struct db *db, long long id, const char *backend, const char *key,
                      long long bytes, const char *sha256_hex, const char *media_type)
{
    struct stored_tx t = { id, backend, key, sha256_hex, media_type ? media_type : "", bytes };

    if (id <= 0 || !backend || (strcmp(backend, "local") && strcmp(backend, "s3")) || !key ||
        !*key || strlen(key) > 512 || bytes < 0 || !sha256_hex || strlen(sha256_hex) != 64 ||
        strlen(t.type) > 64)
        return CP_EINVAL;
    return db_transaction(db, stored_tx, &t, TX_ATTEMPTS);
}

struct probed_tx {
    long long id;
    const struct video_probe *pr;
    const char *thumb;
};

/* Ready and fanned out together: a video never sits ready without the
 * publications its rules call for. */
static int probed_tx(struct db *db, void *arg)
{
    struct probed_tx *t = arg;
    const struct video_probe *pr = t->pr;
    struct db_param p[] = {
        t->thumb ? DB_STR(t->thumb) : DB_NULL, DB_I64(pr->duration_ms), DB_I64(pr->width),
        DB_I64(pr->height), DB_I64(pr->rotation), DB_DOUBLE(pr->fps), DB_STR(pr->video_codec),
        DB_STR(pr->audio_codec), DB_I64(pr->audio_rate), DB_I64(pr->bitrate),
        DB_STR(pr->container), DB_I64(pr->moov_front ? 1 : 0), DB_I64(t->id),
    };
    unsigned long long affected = 0;
    int rc;

    rc = db_exec(db, "UPDATE videos SET state = 'ready', thumbnail_key = ?, probe_duration_ms = ?,"
                     " probe_width = ?, probe_height = ?, probe_rotation = ?, probe_fps = ?,"
                     " probe_video_codec = ?, probe_audio_codec = ?, probe_audio_rate = ?,"
                     " probe_bitrate = ?, probe_container = ?, probe_moov_front = ?,"
                     " probed_at = NOW(3), last_error = '' WHERE id = ? AND state = 'stored'",
                 p, sizeof p / sizeof p[0], &affected, NULL);
    if (rc)
        return rc;
    if (!affected)
        return not_moved(db, t->id);
    return pub_fanout(db, t->id, NULL);
}

int video_mark_probed(struct db *db, long long id, const struct video_probe *pr,
                      const char *thumbnail_key)
{
    struct probed_tx t = { id, pr, thumbnail_key && *thumbnail_key ? thumbnail_key : NULL };

    if (id <= 0 || (t.thumb && strlen(t.thumb) > 512) || pr->duration_ms < 0 || pr->width < 0 ||
        pr->height < 0 || pr->audio_rate < 0 || pr->bitrate < 0)
        return CP_EINVAL;
    return db_transaction(db, probed_tx, &t, TX_ATTEMPTS);
}

int video_mark_failed(struct db *db, long long id, const char *why)
{
    char text[ERROR_MAX + 1];
    unsigned long long affected = 0;
    int rc;

    json_utf8_clip(text, sizeof text, why && *why ? why : "failed", UNREADABLE);
    {
        struct db_param p[] = { DB_STR(text), DB_I64(id) };

        rc = db_exec(db, "UPDATE videos SET state = 'failed', last_error = ?"
                         " WHERE id = ? AND state IN ('new', 'fetching', 'stored')",
                     p, 2, &affected, NULL);
    }
    if (rc)
        return rc;
    return affected ? 0 : not_moved(db, id);
}

/* ------------------------------------------------------------- JSON -- */

static int j_str_or_null(struct buf *b, const char *key, const char *v)
{
    return v && *v ? json_member_str(b, key, v) : buf_printf(b, ",\"%s\":null", key);
}

/* ISO 8601 UTC with milliseconds, or null for 0. */
static int j_num_or_null(struct buf *b, const char *key, long long v)
{
    return v > 0 ? buf_printf(b, ",\"%s\":%lld", key, v) : buf_printf(b, ",\"%s\":null", key);
}

static int probe_json(const struct video *v, struct buf *out)
{
    const struct video_probe *p = &v->probe;
    int rc;

    if (!v->probed)
        return buf_adds(out, ",\"probe\":null");
    rc = buf_printf(out, ",\"probe\":{\"duration_ms\":%lld,\"width\":%lld,\"height\":%lld,"
                         "\"rotation\":%d,\"fps\":%.3f",
                    p->duration_ms, p->width, p->height, p->rotation, p->fps);
    if (!rc)
        rc = json_member_str(out, "video_codec", p->video_codec);
    if (!rc)
        rc = j_str_or_null(out, "audio_codec", p->audio_codec);
    if (!rc)
        rc = j_num_or_null(out, "audio_rate", p->audio_rate);
    if (!rc)
        rc = j_num_or_null(out, "bitrate", p->bitrate);
    if (!rc)
        rc = json_member_str(out, "container", p->container);
    if (!rc)
        rc = buf_printf(out, ",\"moov_front\":%s}", p->moov_front ? "true" : "false");
    return rc;
}

int video_to_json(const struct video *v, video_url_signer signer, void *arg, struct buf *out)
{
    int rc = buf_printf(out, "{\"id\":%lld,\"user_id\":%lld,\"connection_id\":%lld", v->id,
                        v->user_id, v->connection_id);

    if (!rc)
        rc = json_member_str(out, "remote_id", v->remote_id);
    if (!rc)
        rc = json_member_str(out, "state", video_state_name(v->state));
    if (!rc)
        rc = json_member_time(out, "remote_created_at", v->remote_created_at);
    if (!rc)
        rc = json_member_str(out, "title", v->title);
    if (!rc)
        rc = json_member_str(out, "description", v->description);
    if (!rc)
        rc = j_num_or_null(out, "duration_s", v->duration_s);
    if (!rc)
        rc = j_num_or_null(out, "width", v->width);
    if (!rc)
        rc = j_num_or_null(out, "height", v->height);
    if (!rc)
        rc = j_str_or_null(out, "share_url", v->share_url);
    if (!rc)
        rc = j_str_or_null(out, "cover_url", v->cover_url);
    if (!rc)
        rc = j_str_or_null(out, "embed_link", v->embed_link);
    if (!rc && v->stored)
        rc = buf_printf(out, ",\"storage\":{\"backend\":\"%s\",\"bytes\":%lld,\"sha256\":\"%s\"",
                        !strcmp(v->storage_backend, "s3") ? "s3" : "local", v->media_bytes,
                        v->media_sha256);
    if (!rc && v->stored)
        rc = json_member_str(out, "media_type", v->media_type);
    if (!rc && v->stored)
        rc = buf_addc(out, '}');
    if (!rc && !v->stored)
        rc = buf_adds(out, ",\"storage\":null");
    if (!rc)
        rc = probe_json(v, out);
    if (!rc && signer && v->thumbnail_key[0]) {
        struct buf url;

        buf_init(&url, 4096);
        rc = signer(arg, v->thumbnail_key, &url);
        if (!rc)
            rc = json_member_str(out, "thumbnail_url", buf_str(&url));
        buf_free(&url);
    } else if (!rc) {
        rc = buf_adds(out, ",\"thumbnail_url\":null");
    }
    if (!rc)
        rc = json_member_time(out, "fetched_at", v->fetched_at);
    if (!rc)
        rc = json_member_time(out, "probed_at", v->probed_at);
    if (!rc)
        rc = j_str_or_null(out, "last_error", v->last_error);
    if (!rc)
        rc = json_member_time(out, "created_at", v->created_at);
    if (!rc)
        rc = json_member_time(out, "updated_at", v->updated_at);
    if (!rc)
        rc = buf_addc(out, '}');
    return rc;
}

/* ------------------------------------------------------- scheduling -- */

#define HOUR_MS (3600LL * 1000)
#define DAY_MS (24 * HOUR_MS)

long long video_sync_interval_ms(const struct conf *c, long long conn_interval_s,
                                 long long last_video_at_ms, long long now_ms, double jitter)
{
    long long base = conn_interval_s > 0 ? conn_interval_s * 1000 : c->sync_interval;
    long long lo = c->sync_interval_min, hi = c->sync_interval_max, age, ms;

    if (hi < lo)
        hi = lo;
    age = last_video_at_ms > 0 ? now_ms - last_video_at_ms : -1;
    if (age < 0)
        ms = base;                      /* nothing seen yet: the plain interval */
    else if (age < HOUR_MS)
        ms = base / 4;
    else if (age < DAY_MS)
        ms = base / 2;
    else if (age < 7 * DAY_MS)
        ms = base;
    else if (age < 30 * DAY_MS)
        ms = base * 2;
    else
        ms = base * 4;
    if (jitter > 1)
        jitter = 1;
    if (jitter < -1)
        jitter = -1;
    ms += (long long)((double)ms * 0.1 * jitter);
    if (ms < lo)
        ms = lo;
    if (ms > hi)
        ms = hi;
    return ms;
}
