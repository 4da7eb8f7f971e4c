/*
 * videos.h - videos found on source accounts (sql/008_ingestion.sql).
 *
 * The data layer of ingestion, shared by the sync, fetch and probe tasks
 * and the API.  Rules kept here:
 *  - A video is recorded once per connection and remote id; recording it
 *    and queueing its fetch job happen in one transaction (so a crash
 *    leaves either both or neither, and a repeated sync adds nothing).
 *  - State moves forward only: known | new -> fetching -> stored -> ready,
 *    or failed; each move is a compare-and-set on the state it expects,
 *    so a job that runs twice does no harm.
 *  - A user sees their own videos; operators and admins all (the scope
 *    of connections.h); another user's video is CP_ENOTFOUND.
 */
#ifndef CP_VIDEOS_H
#define CP_VIDEOS_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "connections.h"
#include "db.h"

enum video_state {
    VIDEO_KNOWN, VIDEO_NEW, VIDEO_FETCHING, VIDEO_STORED, VIDEO_READY, VIDEO_FAILED,
};

const char *video_state_name(enum video_state s);
int video_state_parse(const char *name, enum video_state *out);   /* 0 or CP_EINVAL */

#define VIDEO_REMOTE_ID_MAX 64
#define VIDEO_TEXT_MAX 4096            /* description bytes kept */

/* A video as the platform lists it (the sync's input). */
struct video_listing {
    char remote_id[VIDEO_REMOTE_ID_MAX];
    long long create_time_s;           /* unix seconds */
    char title[256];
    char description[VIDEO_TEXT_MAX];
    long long duration_s;
    long long width, height;
    char share_url[1024];
    char cover_url[2048];
    char embed_link[1024];
    char media_url[2048];              /* "" when the platform gives none */
};

/* What ffprobe and the box scan found (probe.h fills it). */
struct video_probe {
    long long duration_ms;
    long long width, height;           /* as stored, before rotation */
    int rotation;                      /* degrees: 0, 90, 180, 270 */
    double fps;
    char video_codec[32];
    char audio_codec[32];              /* "" when no audio */
    long long audio_rate;
    long long bitrate;                 /* bits per second, container */
    char container[64];                /* format_name */
    int moov_front;                    /* 1: moov before mdat (fast start) */
};

/* One video as read.  Times are epoch ms, 0 = NULL. */
struct video {
    long long id, user_id, connection_id;
    char remote_id[VIDEO_REMOTE_ID_MAX];
    enum video_state state;
    long long remote_created_at;
    char title[256];
    char description[VIDEO_TEXT_MAX];
    long long duration_s, width, height;
    char share_url[1024];
    char cover_url[2048];
    char embed_link[1024];
    char media_url[2048];
    int stored;                        /* storage fields are set */
    char storage_backend[8];
    char storage_key[512];
    long long media_bytes;
    char media_sha256[65];
    char media_type[64];
    char thumbnail_key[512];
    int probed;                        /* probe fields are set */
    struct video_probe probe;
    long long fetched_at, probed_at;
    char last_error[1025];
    long long created_at, updated_at;
};

/*
 * Record the listings of one sync of connection conn (owner user_id):
 * in one transaction, each listing not yet recorded is inserted, as
 * VIDEO_NEW with a video.fetch job (unique key "video.fetch:<id>") when
 * fetch is set, else as VIDEO_KNOWN (a first sync's back catalogue);
 * listings already recorded are left alone.  *added counts new rows.
 */
int video_record(struct db *db, long long conn_id, long long user_id,
                 const struct video_listing *v, size_t n, int fetch, size_t *added);

/* Fetch side: new|fetching|failed -> fetching (a retried or re-run job
 * finds it fetching and carries on).  CP_ECONFLICT when the video is
 * past fetching (stored or ready: nothing to do), CP_ENOTFOUND. */
int video_begin_fetch(struct db *db, long long id, struct video *out);

/* fetching -> stored with the storage fields, and its video.probe job
 * (unique key "video.probe:<id>"), in one transaction. */
int video_mark_stored(struct db *db, long long id, const char *backend, const char *key,
                      long long bytes, const char *sha256_hex, const char *media_type);

/* stored -> ready with the probe results and thumbnail key, and the
 * video's publications and publish jobs (pub_fanout), in one
 * transaction.  CP_ECONFLICT when the video is not stored (already ready,
 * or failed), CP_ENOTFOUND. */
int video_mark_probed(struct db *db, long long id, const struct video_probe *p,
                      const char *thumbnail_key);

/* Any unfinished state -> failed with why (kept for people). */
int video_mark_failed(struct db *db, long long id, const char *why);

/* Reading. */
int video_get(struct db *db, const struct conn_scope *scope, long long id, struct video *out);

struct video_filter {
    long long user_id;                 /* 0 = any (when scope allows) */
    long long connection_id;           /* 0 = any */
    int have_state;
    enum video_state state;
    long long from_ms, to_ms;          /* remote_created_at range; 0 = open */
    long long after_id;                /* cursor */
    int limit;                         /* 1..200 */
};

int video_list(struct db *db, const struct conn_scope *scope, const struct video_filter *f,
               struct video *out, size_t *n, int *more);

/* The API's JSON of a video: probe data, storage state, and a signed
 * thumbnail_url when signer is not NULL (storage_signed_url()). */
typedef int (*video_url_signer)(void *arg, const char *key, struct buf *out);
int video_to_json(const struct video *v, video_url_signer signer, void *arg, struct buf *out);

/* The delay before a connection's next sync, in ms: the connection's own
 * interval (conn_interval_s, 0 = the configured sync_interval), shorter
 * when its newest video is recent (a quarter within an hour, half within
 * a day), longer when quiet (twice after a week, four times after a
 * month), moved by jitter * 10 % (jitter in -1..1), and kept within
 * sync_interval_min..sync_interval_max.  last_video_at_ms 0: no video
 * seen, the plain interval. */
long long video_sync_interval_ms(const struct conf *c, long long conn_interval_s,
                                 long long last_video_at_ms, long long now_ms, double jitter);

#endif
