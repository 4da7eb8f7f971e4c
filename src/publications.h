/*
 * publications.h - one video on one destination account
 * (sql/009_publishing.sql, publications).
 *
 * Rules kept here:
 *  - Fan-out: when a video becomes ready, every enabled rule of its source
 *    connection whose filters it passes gives each of its destinations a
 *    publication (unique per video and destination connection: a second
 *    rule to the same account adds nothing) and a publish.post job
 *    (unique key "publish:<id>", delayed by the rule's delay), in the
 *    transaction that made the video ready.
 *  - States (see the SQL): pending -> preparing -> uploading ->
 *    processing -> publishing -> published, with deferred beside them and
 *    failed / cancelled at the end.  published is final: nothing moves a
 *    publication out of it, so a repeated job never posts twice.
 *  - A user sees their own publications; operators and admins all
 *    (struct conn_scope); another user's is CP_ENOTFOUND.
 *  - Failing or sweeping a publication records an alert event
 *    (publication.failed) in the same transaction.
 */
#ifndef CP_PUBLICATIONS_H
#define CP_PUBLICATIONS_H

#include <stddef.h>

#include "buf.h"
#include "conf.h"
#include "connections.h"
#include "db.h"
#include "platforms.h"

enum pub_state {
    PUB_PENDING, PUB_PREPARING, PUB_UPLOADING, PUB_PROCESSING, PUB_PUBLISHING,
    PUB_DEFERRED, PUB_PUBLISHED, PUB_FAILED, PUB_CANCELLED,
};

const char *pub_state_name(enum pub_state s);
int pub_state_parse(const char *name, enum pub_state *out);   /* 0 or CP_EINVAL */

#define PUB_SETTINGS_MAX 16384
#define PUB_CAPTION_MAX 8192
#define PUB_REMOTE_STATE_MAX 8192
#define PUB_ERROR_MAX 1024

/* One publication as read.  Times are epoch ms, 0 = NULL. */
struct publication {
    long long id, user_id, video_id, rule_id, connection_id;   /* rule_id 0 = rule deleted */
    enum platform_id platform;
    enum pub_state state;
    char settings[PUB_SETTINGS_MAX];          /* JSON object */
    char caption[PUB_CAPTION_MAX];            /* "" until rendered */
    char title[256];
    char media_profile[64];
    char remote_state[PUB_REMOTE_STATE_MAX];  /* JSON object, "{}" when none */
    char remote_id[PLAT_REMOTE_ID_MAX];
    char remote_url[1024];
    long long bytes_sent, bytes_total;
    long long attempts;
    char error_code[64];
    char last_error[PUB_ERROR_MAX + 1];
    long long deferred_until;
    long long job_id;
    long long started_at, published_at, created_at, updated_at;
};

/* ------------------------------------------------------- fan-out -- */

/* In the caller's transaction: the publications and jobs of video_id
 * (which must be ready) for every matching rule; *added counts new
 * publications (may be NULL).  Rules created after the video are
 * skipped unless they backfill. */
int pub_fanout(struct db *db, long long video_id, size_t *added);

/* The same for one rule over its source's ready videos (a rule made or
 * enabled with backfill): at most limit videos, newest first. */
int pub_fanout_rule(struct db *db, long long rule_id, int limit, size_t *added);

/* ------------------------------------------------------ the worker -- */

/* Read by id with no scope (the worker's view). */
int pub_load(struct db *db, long long id, struct publication *out);

/* Move to state (not from published/cancelled: CP_ECONFLICT), clearing
 * deferred_until; started_at set on the first move out of pending,
 * attempts + 1 when state is PUB_PREPARING. */
int pub_set_state(struct db *db, long long id, enum pub_state state);

/* Store the rendered texts and the media profile used. */
int pub_set_texts(struct db *db, long long id, const char *caption, const char *title,
                  const char *media_profile);

/* Persist the publisher's remote state (a JSON object text). */
int pub_save_remote(struct db *db, long long id, const char *remote_state);

/* Bytes sent of total. */
int pub_progress(struct db *db, long long id, long long sent, long long total);

/* Final: published with the remote id and URL, error fields cleared. */
int pub_mark_published(struct db *db, long long id, const char *remote_id, const char *url);

/* deferred until until_ms with why (error_code "deferred:<code>"). */
int pub_mark_deferred(struct db *db, long long id, long long until_ms, const char *code,
                      const char *why);

/* An attempt failed and will be retried: the state stays, error fields set. */
int pub_note_error(struct db *db, long long id, const char *code, const char *why);

/* Final: failed with code and why, plus the publication.failed alert
 * event, in one transaction.  Published rows are left alone. */
int pub_mark_failed(struct db *db, long long id, const char *code, const char *why);

/* ---------------------------------------------------------- the API -- */

int pub_get(struct db *db, const struct conn_scope *scope, long long id, struct publication *out);

struct pub_filter {
    long long user_id;                /* 0 = any (when scope allows) */
    int have_platform;
    enum platform_id platform;
    int have_state;
    enum pub_state state;
    long long connection_id, rule_id, video_id;    /* 0 = any */
    long long from_ms, to_ms;         /* created_at range; 0 = open */
    long long after_id;               /* cursor */
    int limit;                        /* 1..200 */
};

int pub_list(struct db *db, const struct conn_scope *scope, const struct pub_filter *f,
             struct publication *out, size_t *n, int *more);

/* The API's JSON of one publication (settings as an object, remote_state
 * left out, progress {sent,total}). */
int pub_to_json(const struct publication *p, struct buf *out);

/* The destinations of a video as a JSON array of pub_to_json objects. */
int pub_video_destinations_json(struct db *db, long long video_id, struct buf *out);

/*
 * Retry: a failed, cancelled or deferred publication goes back to
 * pending (error kept for history, deferred_until cleared) with a new
 * publish.post job due now.  A publication still in work whose job is
 * dead, cancelled or missing gets a new job too.  CP_ECONFLICT for a
 * published one, or one whose job is still queued or running.
 * *job_id the new job.
 */
int pub_retry(struct db *db, const struct conn_scope *scope, long long id, long long *job_id);

/* ------------------------------------------------------ the sweeper -- */

/*
 * Publications in work (not published, failed or cancelled) with no
 * unfinished publish.post job: when the last job died, failed with its
 * error ("gave up after N attempts: ..."); deferred ones whose time has
 * come and others with no job get a job again; anything not moved for
 * publication_stuck_after is failed as stuck.  At most limit rows;
 * *requeued, *failed counted.
 */
int pub_sweep(struct db *db, const struct conf *c, int limit, size_t *requeued, size_t *failed);

#endif
