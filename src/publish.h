/*
 * publish.h - the publishers: one per destination platform, behind one
 * table (publishers[] in publish.c; each in pub_<platform>.c).
 *
 * A publisher takes one prepared publication (media file, rendered text,
 * settings, opened credentials) and puts it on the platform.  It is a
 * state machine over a JSON object, the publication's remote_state:
 * after every step the platform acknowledged (container made, chunk
 * confirmed, media finalized, post sent) it calls hooks->save() so the
 * state survives a crash, and on the next run it continues from there:
 *
 *   Instagram  {"container_id","container_at","upload":"url|resumable",
 *               "uploaded":bool,"publish_sent_at","media_id","permalink"}
 *              a container already PUBLISHED is never published again
 *              (its media is looked up among the account's recent media);
 *              EXPIRED or ERROR containers are dropped and, for EXPIRED,
 *              made again; status is polled with backoff up to a deadline.
 *   YouTube    {"session_uri","total","offset","video_id"}
 *              chunks are multiples of 256 KiB; after a drop or a 5xx it
 *              asks the session for the confirmed offset (PUT bytes
 *              STAR/TOTAL); 404 drops the session and starts a new one.
 *   X          {"media_id","media_expires_at","segment","appended":N,
 *              "finalized":bool,"tweet_sent_at","tweet_id"}
 *              processing polled honouring check_after_secs; a post whose
 *              outcome is unknown (timeout, drop, 5xx after sending) is
 *              looked for among the account's recent posts before any
 *              resend.
 *
 * A publisher clears *res, *quota and *err first, then returns 0 when
 * the post is live (*res filled), or a CP_E*
 * code with *err classified (enum plat_outcome):
 *   PLAT_RETRY   transient; the state saved so far is kept, run again;
 *   PLAT_DEFER   rate limited / out of quota / still processing: come back
 *                after err->retry_after_ms without spending an attempt;
 *   PLAT_REAUTH  the credentials were refused: reconnect;
 *   PLAT_FATAL   permanent (bad media, policy, deadline passed).
 * Outcomes of quota errors also fill *quota so the caller can record the
 * exhaustion in the ledger (quota.h).
 */
#ifndef CP_PUBLISH_H
#define CP_PUBLISH_H

#include <json-c/json.h>

#include "buf.h"
#include "conf.h"
#include "platforms.h"

/* What is being published. */
struct pub_media {
    const char *path;                 /* a local file holding the media */
    long long bytes;
    const char *content_type;         /* "video/mp4" */
    const char *sha256;               /* hex, for logs and checks */
    const char *url;                  /* a URL the platform may fetch, or NULL
                                         (Instagram video_url uploads) */
    long long duration_ms;
};

struct pub_request {
    long long publication_id;
    const struct plat_creds *creds;   /* opened credentials of the destination */
    const char *account_id;           /* the destination's remote id: IG user,
                                         channel, X user */
    const char *caption;              /* rendered text: IG caption, YouTube
                                         description, X post text */
    const char *title;                /* YouTube title; "" elsewhere */
    struct json_object *settings;     /* the destination settings (object) */
    struct pub_media media;
};

/* Calls a publisher makes into its caller. */
struct pub_hooks {
    void *arg;
    /* Persist state now (a step was acknowledged).  Non-zero: stop. */
    int (*save)(void *arg, struct json_object *state);
    /* Bytes sent so far of total; also a sign of life.  Non-zero: stop
     * (the job lost its lease or must stop). */
    int (*progress)(void *arg, long long sent, long long total);
    /* 1 when the publisher should return now (PLAT_RETRY "stopped"). */
    int (*should_stop)(void *arg);
};

#define PUB_URL_MAX 1024

struct pub_result {
    char remote_id[PLAT_REMOTE_ID_MAX];
    char url[PUB_URL_MAX];
};

/* Quota information a platform gave while publishing. */
struct pub_quota {
    int exhausted;                    /* a quota error or remaining 0 */
    char bucket[16];                  /* "units", "uploads", "posts", "media" */
    char scope[16];                   /* "project", "channel", "account", "user", "app" */
    long long reset_ms;               /* epoch ms when it frees, 0 = unknown */
    long long remaining;              /* -1 = not said */
    long long limit;                  /* 0 = not said */
};

struct publisher {
    enum platform_id platform;
    int (*publish)(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
                   const struct pub_hooks *hooks, struct pub_result *res,
                   struct pub_quota *quota, struct plat_error *err);
};

/* The publisher of a destination platform, or NULL (TikTok is a source). */
const struct publisher *publisher_find(enum platform_id platform);

/* Platform entry points (pub_<platform>.c). */
int pub_instagram(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
                  const struct pub_hooks *hooks, struct pub_result *res,
                  struct pub_quota *quota, struct plat_error *err);
int pub_youtube(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
                const struct pub_hooks *hooks, struct pub_result *res, struct pub_quota *quota,
                struct plat_error *err);
int pub_x(struct plat_ctx *pc, const struct pub_request *rq, struct json_object *state,
          const struct pub_hooks *hooks, struct pub_result *res, struct pub_quota *quota,
          struct plat_error *err);

/*
 * Instagram's live publishing limit: GET /{ig}/content_publishing_limit
 * ?fields=quota_usage,config.  *used and *total (0 when not said) and
 * *duration_s.  Failures classified by the Graph table.
 */
int pub_instagram_limit(struct plat_ctx *pc, const struct plat_creds *creds,
                        const char *ig_user_id, long long *used, long long *total,
                        long long *duration_s, struct plat_error *err);

/* ----------------------------------------- pure parts, for the tests -- */

/* YouTube: the Range header of a 308 ("bytes=0-N") -> the next offset
 * N+1; no header -> 0.  CP_EPARSE for anything else. */
int pub_youtube_next_offset(const char *range, long long *next);

/* YouTube: the length of the chunk starting at offset: chunk_size (a
 * multiple of 256 KiB) or the rest of the file when that is shorter. */
long long pub_youtube_chunk_len(long long offset, long long total, long long chunk_size);

/* YouTube: the insert body {"snippet":{title,description,tags,categoryId},
 * "status":{privacyStatus,selfDeclaredMadeForKids}} from the request. */
int pub_youtube_metadata(const struct pub_request *rq, struct buf *out);

/* X: processing_info of a FINALIZE or STATUS answer: state ("pending",
 * "in_progress", "succeeded", "failed", or "" when absent = ready),
 * check_after_secs, progress_percent, and the error message if failed. */
struct x_processing {
    char state[16];
    long long check_after_s;
    int progress_percent;
    char error[256];
};
int pub_x_processing(const char *body, size_t len, struct x_processing *out);

/* X: in a GET /2/users/{id}/tweets answer, the id of a post made at or
 * after since_s (unix s) whose text equals text (compared after X's
 * URL shortening is undone: any t.co link matches any URL) or that
 * carries media_key.  CP_ENOTFOUND when none does. */
int pub_x_find_post(const char *body, size_t len, const char *text, const char *media_key,
                    long long since_s, char *id_out, size_t cap);

#endif
