/*
 * Publications: fan-out of ready videos to rule destinations, the
 * worker's state writes, the API's reads and retry, and the sweeper.
 *
 * Words of a rule match without ASCII case as substrings of the title or
 * description ("cat" matches "Cats"): creators tag loosely, and a
 * substring match never misses a tag glued to punctuation or emoji.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "audit.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "publications.h"
#include "queue.h"

#define TX_ATTEMPTS 5
#define LIST_LIMIT_MAX 200
#define ALERT_MESSAGE_MAX 1024
#define ALERT_WHY_MAX 512
#define WORDS_TEXT_MAX 65535
/* Stored for text that is not UTF-8. */
#define UNREADABLE "(not readable text)"

#define MS(col) "COALESCE(CAST(UNIX_TIMESTAMP(" col ") * 1000 AS SIGNED), 0)"

/* Every column struct publication holds, in row_to_pub's order. */
#define PUB_COLS \
    "p.id, p.user_id, p.video_id, COALESCE(p.rule_id, 0), p.connection_id, p.platform, p.state," \
    " p.settings, COALESCE(p.caption, ''), p.title, p.media_profile," \
    " COALESCE(p.remote_state, '{}'), p.remote_id, p.remote_url, p.bytes_sent, p.bytes_total," \
    " p.attempts, p.error_code, p.last_error, " MS("p.deferred_until") ", COALESCE(p.job_id, 0)," \
    " " MS("p.started_at") ", " MS("p.published_at") ", " MS("p.created_at") ", " \
    MS("p.updated_at")

/* A job that may still run: the queue's unfinished states. */
#define JOB_UNFINISHED "('scheduled','ready','running','failed')"

static const char *const state_names[] = {
    [PUB_PENDING] = "pending",       [PUB_PREPARING] = "preparing",
    [PUB_UPLOADING] = "uploading",   [PUB_PROCESSING] = "processing",
    [PUB_PUBLISHING] = "publishing", [PUB_DEFERRED] = "deferred",
    [PUB_PUBLISHED] = "published",   [PUB_FAILED] = "failed",
    [PUB_CANCELLED] = "cancelled",
};
#define NSTATES (sizeof state_names / sizeof state_names[0])

const char *pub_state_name(enum pub_state s)
{
    return (size_t)s < NSTATES ? state_names[s] : "unknown";
}

int pub_state_parse(const char *name, enum pub_state *out)
{
    for (size_t i = 0; name && i < NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum pub_state)i;
            return 0;
        }
    return CP_EINVAL;
}

/* ----------------------------------------------------------- helpers -- */

static int is_final(const char *state)
{
    return state && (strcmp(state, "published") == 0 || strcmp(state, "cancelled") == 0);
}

static int row_to_pub(const struct db_result *r, size_t i, struct publication *p)
{
    const struct platform *pl = platform_find(db_result_get(r, i, 5) ? db_result_get(r, i, 5) : "");

    memset(p, 0, sizeof *p);
    if (!pl || pub_state_parse(db_result_get(r, i, 6), &p->state))
        return CP_EDB;
    p->id = db_result_int(r, i, 0);
    p->user_id = db_result_int(r, i, 1);
    p->video_id = db_result_int(r, i, 2);
    p->rule_id = db_result_int(r, i, 3);
    p->connection_id = db_result_int(r, i, 4);
    p->platform = pl->id;
    db_result_text(r, i, 7, p->settings, sizeof p->settings);
    db_result_text(r, i, 8, p->caption, sizeof p->caption);
    db_result_text(r, i, 9, p->title, sizeof p->title);
    db_result_text(r, i, 10, p->media_profile, sizeof p->media_profile);
    db_result_text(r, i, 11, p->remote_state, sizeof p->remote_state);
    db_result_text(r, i, 12, p->remote_id, sizeof p->remote_id);
    db_result_text(r, i, 13, p->remote_url, sizeof p->remote_url);
    p->bytes_sent = db_result_int(r, i, 14);
    p->bytes_total = db_result_int(r, i, 15);
    p->attempts = db_result_int(r, i, 16);
    db_result_text(r, i, 17, p->error_code, sizeof p->error_code);
    db_result_text(r, i, 18, p->last_error, sizeof p->last_error);
    p->deferred_until = db_result_int(r, i, 19);
    p->job_id = db_result_int(r, i, 20);
    p->started_at = db_result_int(r, i, 21);
    p->published_at = db_result_int(r, i, 22);
    p->created_at = db_result_int(r, i, 23);
    p->updated_at = db_result_int(r, i, 24);
    if (!p->settings[0])
        snprintf(p->settings, sizeof p->settings, "{}");
    if (!p->remote_state[0])
        snprintf(p->remote_state, sizeof p->remote_state, "{}");
    return 0;
}

/* After an UPDATE that matched nothing: CP_ENOTFOUND when the row is
 * gone, CP_ECONFLICT when it is final, 0 when it was already as asked
 * (MariaDB counts changed rows, not matched ones). */
static int settle(struct db *db, long long id)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    int rc = db_query_row(db, "SELECT state FROM publications WHERE id = ?", p, 1, &r);

    if (!rc && is_final(db_result_get(r, 0, 0)))
        rc = CP_ECONFLICT;
    db_result_free(r);
    return rc;
}

/* One UPDATE ... WHERE id = ? AND state NOT IN (final) by the worker. */
static int update_live(struct db *db, long long id, const char *sql, struct db_param *p, size_t n)
{
    unsigned long long affected = 0;
    int rc;

    if (id <= 0)
        return CP_EINVAL;
    rc = db_exec(db, sql, p, n, &affected, NULL);
    if (rc)
        return rc;
    return affected ? 0 : settle(db, id);
}

/* Enqueue the publish job of publication id and store its id on the row.
 * A job already holding the key is kept (its id stored). */
static int enqueue_publish(struct db *db, long long id, long long user_id, long long delay_ms,
                           long long *job_out)
{
    char payload[64], key[64];
    struct job_spec spec = { .kind = "publish.post", .payload = payload, .unique_key = key,
                             .delay_ms = delay_ms, .user_id = user_id };
    long long job = 0;
    int rc;

    snprintf(payload, sizeof payload, "{\"publication_id\":%lld}", id);
    snprintf(key, sizeof key, "publish:%lld", id);
    rc = queue_enqueue(db, &spec, &job);
    if (rc == CP_ECONFLICT && job > 0)
        rc = 0;
    if (rc)
        return rc;
    {
        struct db_param p[] = { DB_I64(job), DB_I64(id) };

        rc = db_exec(db, "UPDATE publications SET job_id = ? WHERE id = ?", p, 2, NULL, NULL);
    }
    if (!rc && job_out)
        *job_out = job;
    return rc;
}

/* ------------------------------------------------------- fan-out -- */

struct fan_video {
    long long id, connection_id, user_id;
    long long created_s;          /* remote_created_at, else when it was found */
    double duration_s;            /* < 0: unknown */
    char title[256];
    char description[8192];
};

/* One word list (a JSON array of strings, NULL/empty = none): *hit 1
 * when a word occurs in the title or description, *words the count. */
static int words_match(const char *list, const struct fan_video *v, int *hit, int *words)
{
    static const struct json_limits lim = {
        .max_size = WORDS_TEXT_MAX, .max_depth = 4, .max_string = 1024,
    };
    struct json_object *arr = NULL;
    int rc;

    *hit = 0;
    *words = 0;
    if (!list || !*list)
        return 0;
    rc = json_parse(list, strlen(list), &lim, &arr, NULL);
    if (rc)
        return rc;
    if (!json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return CP_EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *w = json_object_array_get_idx(arr, i);
        const char *s = json_object_is_type(w, json_type_string) ? json_object_get_string(w) : NULL;

        if (!s || !*s)
            continue;
        (*words)++;
        if (strcasestr(v->title, s) || strcasestr(v->description, s)) {
            *hit = 1;
            break;
        }
    }
    json_object_put(arr);
    return 0;
}

enum {
    R_ID, R_MIN, R_MAX, R_INCLUDE, R_EXCLUDE, R_BACKFILL, R_DELAY, R_CREATED,
};

/* Whether rule row i of r takes video v. */
static int rule_takes(const struct db_result *r, size_t i, const struct fan_video *v)
{
    long long bound;
    int hit, words;

    if (db_result_i64(r, i, R_MIN, &bound) == 0 && (v->duration_s < 0 || v->duration_s < bound))
        return 0;
    if (db_result_i64(r, i, R_MAX, &bound) == 0 && (v->duration_s < 0 || v->duration_s > bound))
        return 0;
    /* A word list the rules API let through but that does not parse
     * keeps the rule from taking anything, rather than everything. */
    if (words_match(db_result_get(r, i, R_INCLUDE), v, &hit, &words) || (words && !hit))
        return 0;
    if (words_match(db_result_get(r, i, R_EXCLUDE), v, &hit, &words) || hit)
        return 0;
    /* The platform gives creation times in whole seconds: a video posted
     * in the second the rule was made counts as after it. */
    if (!db_result_int(r, i, R_BACKFILL) && v->created_s < db_result_int(r, i, R_CREATED) / 1000)
        return 0;
    return 1;
}

static int load_fan_video(struct db *db, long long video_id, struct fan_video *v)
{
    struct db_param p[] = { DB_I64(video_id) };
    struct db_result *r = NULL;
    long long ms;
    int rc;

    memset(v, 0, sizeof *v);
    rc = db_query_row(db,
                      "SELECT state, connection_id, user_id,"
                      " CAST(UNIX_TIMESTAMP(COALESCE(remote_created_at, created_at)) AS SIGNED),"
                      " probe_duration_ms, duration_s, title, description FROM videos WHERE id = ?",
                      p, 1, &r);
    if (!rc && strcmp(db_result_get(r, 0, 0) ? db_result_get(r, 0, 0) : "", "ready") != 0)
        rc = CP_ECONFLICT;
    if (rc)
        goto out;
    v->id = video_id;
    v->connection_id = db_result_int(r, 0, 1);
    v->user_id = db_result_int(r, 0, 2);
    v->created_s = db_result_int(r, 0, 3);
    if (db_result_i64(r, 0, 4, &ms) == 0)
        v->duration_s = (double)ms / 1000.0;
    else if (db_result_i64(r, 0, 5, &ms) == 0)
        v->duration_s = (double)ms;
    else
        v->duration_s = -1;
    db_result_text(r, 0, 6, v->title, sizeof v->title);
    db_result_text(r, 0, 7, v->description, sizeof v->description);
out:
    db_result_free(r);
    return rc;
}

static const char sql_destinations[] =
    "SELECT d.connection_id, c.platform, d.settings FROM rule_destinations d"
    " JOIN connections c ON c.id = d.connection_id"
    " WHERE d.rule_id = ? AND c.enabled = 1 AND c.user_id = ?"
    " ORDER BY d.position, d.id";

static const char sql_insert_pub[] =
    "INSERT IGNORE INTO publications (user_id, video_id, rule_id, connection_id, platform, state,"
    " settings) VALUES (?, ?, ?, ?, ?, 'pending', ?)";

/* The publications of one rule (row i of r) for v. */
static int fan_rule(struct db *db, const struct db_result *rules, size_t i,
                    const struct fan_video *v, size_t *added)
{
    long long rule_id = db_result_int(rules, i, R_ID);
    long long delay_ms = db_result_int(rules, i, R_DELAY) * 1000;
    struct db_param q[] = { DB_I64(rule_id), DB_I64(v->user_id) };
    struct db_result *r = NULL;
    int rc = db_query(db, sql_destinations, q, 2, &r);

    for (size_t d = 0; !rc && d < db_result_rows(r); d++) {
        const char *platform = db_result_get(r, d, 1);
        const char *settings = db_result_get(r, d, 2);
        unsigned long long affected = 0, id = 0;
        struct db_param p[] = {
            DB_I64(v->user_id), DB_I64(v->id), DB_I64(rule_id), DB_I64(db_result_int(r, d, 0)),
            DB_STR(platform ? platform : ""), DB_STR(settings && *settings ? settings : "{}"),
        };

        rc = db_exec(db, sql_insert_pub, p, sizeof p / sizeof p[0], &affected, &id);
        if (rc || affected == 0)
            continue;                   /* this account already has the video */
        rc = enqueue_publish(db, (long long)id, v->user_id, delay_ms, NULL);
        if (!rc)
            (*added)++;
    }
    db_result_free(r);
    return rc;
}

#define RULE_COLS \
    "id, min_duration_s, max_duration_s, include_words, exclude_words, backfill, delay_s, " \
    MS("created_at")

/* Fan video_id out to the enabled rules of its source (only rule_id when
 * non-zero). */
static int fan_video(struct db *db, long long video_id, long long rule_id, size_t *added)
{
    struct fan_video *v = malloc(sizeof *v);
    struct db_result *r = NULL;
    int rc;

    if (!v)
        return CP_ENOMEM;
    rc = load_fan_video(db, video_id, v);
    if (!rc) {
        struct db_param p[] = { DB_I64(v->connection_id), DB_I64(rule_id), DB_I64(rule_id) };

        rc = db_query(db,
                      "SELECT " RULE_COLS " FROM rules WHERE source_connection_id = ?"
                      " AND enabled = 1 AND (? = 0 OR id = ?) ORDER BY id",
                      p, 3, &r);
    }
    for (size_t i = 0; !rc && i < db_result_rows(r); i++)
        if (rule_takes(r, i, v))
            rc = fan_rule(db, r, i, v, added);
    db_result_free(r);
    free(v);
    return rc;
}

int pub_fanout(struct db *db, long long video_id, size_t *added)
{
    size_t n = 0;
    int rc;

    if (added)
        *added = 0;
    if (video_id <= 0)
        return CP_EINVAL;
    rc = fan_video(db, video_id, 0, &n);
    if (!rc && added)
        *added = n;
    if (!rc && n)
        log_info("video %lld: %zu publication(s) queued", video_id, n);
    return rc;
}

struct rule_fan {
    long long rule_id;
    int limit;
    size_t added;
};

static int fanout_rule_tx(struct db *db, void *arg)
{
    struct rule_fan *t = arg;
    struct db_param p[] = { DB_I64(t->rule_id), DB_I64(t->limit) };
    struct db_result *r = NULL;
    int rc;

    t->added = 0;
    rc = db_query(db,
                  "SELECT v.id FROM rules ru JOIN videos v ON v.connection_id = ru.source_connection_id"
                  " WHERE ru.id = ? AND ru.enabled = 1 AND v.state = 'ready'"
                  " ORDER BY v.remote_created_at DESC, v.id DESC LIMIT ?",
                  p, 2, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        rc = fan_video(db, db_result_int(r, i, 0), t->rule_id, &t->added);
        if (rc == CP_ECONFLICT || rc == CP_ENOTFOUND)
            rc = 0;                     /* it stopped being ready meanwhile */
    }
    db_result_free(r);
    return rc;
}

int pub_fanout_rule(struct db *db, long long rule_id, int limit, size_t *added)
{
    struct rule_fan t = { rule_id, limit, 0 };
    int rc;

    if (added)
        *added = 0;
    if (rule_id <= 0 || limit < 0)
        return CP_EINVAL;
    if (limit == 0)
        return 0;
    rc = db_transaction(db, fanout_rule_tx, &t, TX_ATTEMPTS);
    if (!rc && added)
        *added = t.added;
    if (!rc && t.added)
        log_info("rule %lld: %zu publication(s) queued for earlier videos", rule_id, t.added);
    return rc;
}

/* ------------------------------------------------------ the worker -- */

int pub_load(struct db *db, long long id, struct publication *out)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (id <= 0)
        return CP_ENOTFOUND;
    rc = db_query_row(db, "SELECT " PUB_COLS " FROM publications p WHERE p.id = ?", p, 1, &r);
    if (!rc)
        rc = row_to_pub(r, 0, out);
    if (rc)
        memset(out, 0, sizeof *out);
    db_result_free(r);
    return rc;
}

int pub_set_state(struct db *db, long long id, enum pub_state state)
{
    const char *name = pub_state_name(state);
    struct db_param p[] = { DB_STR(name), DB_STR(name), DB_I64(state == PUB_PREPARING), DB_I64(id) };

    if ((size_t)state >= NSTATES)
        return CP_EINVAL;
    return update_live(db, id,
                       "UPDATE publications SET state = ?, deferred_until = NULL,"
                       " started_at = IF(started_at IS NULL AND ? <> 'pending', NOW(3), started_at),"
                       " attempts = attempts + ?"
                       " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                       p, 4);
}

int pub_set_texts(struct db *db, long long id, const char *caption, const char *title,
                  const char *media_profile)
{
    char *cap = malloc(PUB_CAPTION_MAX);
    char t[256], profile[64];
    int rc;

    if (!cap)
        return CP_ENOMEM;
    json_utf8_clip(cap, PUB_CAPTION_MAX, caption, UNREADABLE);
    json_utf8_clip(t, sizeof t, title, UNREADABLE);
    json_utf8_clip(profile, sizeof profile, media_profile, UNREADABLE);
    {
        struct db_param p[] = { DB_STR(cap), DB_STR(t), DB_STR(profile), DB_I64(id) };

        rc = update_live(db, id,
                         "UPDATE publications SET caption = ?, title = ?, media_profile = ?"
                         " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                         p, 4);
    }
    free(cap);
    return rc;
}

int pub_save_remote(struct db *db, long long id, const char *remote_state)
{
    const char *s = remote_state && *remote_state ? remote_state : "{}";
    struct db_param p[] = { DB_STR(s), DB_I64(id) };

    if (strlen(s) >= PUB_REMOTE_STATE_MAX)
        return CP_ETOOBIG;
    return update_live(db, id,
                       "UPDATE publications SET remote_state = ?"
                       " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                       p, 2);
}

int pub_progress(struct db *db, long long id, long long sent, long long total)
{
    struct db_param p[] = { DB_I64(sent), DB_I64(total), DB_I64(id) };

    if (sent < 0 || total < 0)
        return CP_EINVAL;
    return update_live(db, id,
                       "UPDATE publications SET bytes_sent = ?, bytes_total = ?"
                       " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                       p, 3);
}

int pub_mark_published(struct db *db, long long id, const char *remote_id, const char *url)
{
    char rid[PLAT_REMOTE_ID_MAX], u[1024];

    if (!remote_id || !*remote_id || strlen(remote_id) >= sizeof rid)
        return CP_EINVAL;
    snprintf(rid, sizeof rid, "%s", remote_id);
    json_utf8_clip(u, sizeof u, url && strlen(url) < sizeof u ? url : "", UNREADABLE);
    {
        struct db_param p[] = { DB_STR(rid), DB_STR(u), DB_I64(id) };

        return update_live(db, id,
                           "UPDATE publications SET state = 'published', remote_id = ?,"
                           " remote_url = ?, published_at = NOW(3), deferred_until = NULL,"
                           " error_code = '', last_error = ''"
                           " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                           p, 3);
    }
}

int pub_mark_deferred(struct db *db, long long id, long long until_ms, const char *code,
                      const char *why)
{
    char full[64], text[PUB_ERROR_MAX + 1];

    if (until_ms <= 0)
        return CP_EINVAL;
    snprintf(full, sizeof full, "deferred:%s", code && *code ? code : "quota");
    json_utf8_clip(text, sizeof text, why, UNREADABLE);
    {
        struct db_param p[] = { DB_DOUBLE((double)until_ms), DB_STR(full), DB_STR(text), DB_I64(id) };

        return update_live(db, id,
                           "UPDATE publications SET state = 'deferred',"
                           " deferred_until = FROM_UNIXTIME(? / 1000), error_code = ?,"
                           " last_error = ?"
                           " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                           p, 4);
    }
}

int pub_note_error(struct db *db, long long id, const char *code, const char *why)
{
    char c[64], text[PUB_ERROR_MAX + 1];

    json_utf8_clip(c, sizeof c, code && *code ? code : "error", UNREADABLE);
    json_utf8_clip(text, sizeof text, why, UNREADABLE);
    {
        struct db_param p[] = { DB_STR(c), DB_STR(text), DB_I64(id) };

        return update_live(db, id,
                           "UPDATE publications SET error_code = ?, last_error = ?"
                           " WHERE id = ? AND state NOT IN ('published', 'cancelled')",
                           p, 3);
    }
}

struct fail {
    long long id;
    const char *code, *why;
};

/* The alert of a failed publication: its message is a JSON object. */
static int write_fail_alert(struct db *db, long long id, long long owner, long long video_id,
                            const char *platform, long long conn_id, const char *code,
                            const char *why)
{
    char text[ALERT_WHY_MAX + 1];
    struct buf m;
    int rc;

    json_utf8_clip(text, sizeof text, why, UNREADABLE);
    buf_init(&m, ALERT_MESSAGE_MAX);
    rc = buf_printf(&m, "{\"publication_id\":%lld,\"video_id\":%lld", id, video_id);
    rc = rc ? rc : json_member_str(&m, "platform", platform ? platform : "");
    rc = rc ? rc : buf_printf(&m, ",\"connection_id\":%lld", conn_id);
    rc = rc ? rc : json_member_str(&m, "error_code", code);
    rc = rc ? rc : json_member_str(&m, "message", text);
    rc = rc ? rc : buf_addc(&m, '}');
    if (!rc)
        rc = alert_write(db, "publication.failed", "publication", id, owner, buf_str(&m));
    buf_free(&m);
    return rc;
}

/* In the caller's transaction: failed with code and why, and its alert
 * (none when it had already failed, so a repeat says nothing twice). */
static int fail_locked(struct db *db, long long id, const char *code, const char *why)
{
    struct db_param q[] = { DB_I64(id) };
    struct db_result *r = NULL;
    char c[64], text[PUB_ERROR_MAX + 1];
    const char *state;
    int rc;

    rc = db_query_row(db,
                      "SELECT state, user_id, video_id, platform, connection_id FROM publications"
                      " WHERE id = ? FOR UPDATE",
                      q, 1, &r);
    if (rc)
        goto out;
    state = db_result_get(r, 0, 0);
    if (is_final(state)) {
        rc = CP_ECONFLICT;
        goto out;
    }
    json_utf8_clip(c, sizeof c, code && *code ? code : "failed", UNREADABLE);
    json_utf8_clip(text, sizeof text, why && *why ? why : "failed", UNREADABLE);
    {
        struct db_param p[] = { DB_STR(c), DB_STR(text), DB_I64(id) };

        rc = db_exec(db,
                     "UPDATE publications SET state = 'failed', deferred_until = NULL,"
                     " error_code = ?, last_error = ? WHERE id = ?",
                     p, 3, NULL, NULL);
    }
    if (!rc && strcmp(state ? state : "", "failed") != 0)
        rc = write_fail_alert(db, id, db_result_int(r, 0, 1), db_result_int(r, 0, 2),
                              db_result_get(r, 0, 3), db_result_int(r, 0, 4), c, text);
out:
    db_result_free(r);
    return rc;
}

static int fail_tx(struct db *db, void *arg)
{
    struct fail *f = arg;

    return fail_locked(db, f->id, f->code, f->why);
}

int pub_mark_failed(struct db *db, long long id, const char *code, const char *why)
{
    struct fail f = { id, code, why };
    int rc;

    if (id <= 0)
        return CP_EINVAL;
    rc = db_transaction(db, fail_tx, &f, TX_ATTEMPTS);
    if (!rc)
        log_warn("publication %lld failed: %s", id, code && *code ? code : "failed");
    return rc;
}

/* ---------------------------------------------------------- the API -- */

int pub_get(struct db *db, const struct conn_scope *scope, long long id, struct publication *out)
{
    struct db_param p[] = { DB_I64(id), DB_I64(conn_scope_all(scope)), DB_I64(conn_scope_user(scope)) };
    struct db_result *r = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (id <= 0)
        return CP_ENOTFOUND;
    rc = db_query_row(db,
                      "SELECT " PUB_COLS " FROM publications p WHERE p.id = ? AND (? = 1 OR p.user_id = ?)",
                      p, 3, &r);
    if (!rc)
        rc = row_to_pub(r, 0, out);
    if (rc)
        memset(out, 0, sizeof *out);
    db_result_free(r);
    return rc;
}

/* Newest first: the cursor is the last id of the previous page. */
int pub_list(struct db *db, const struct conn_scope *scope, const struct pub_filter *f,
             struct publication *out, size_t *n, int *more)
{
    struct db_param p[12];
    struct db_result *r = NULL;
    struct buf sql;
    size_t np = 0, rows;
    long long user = f->user_id;
    const struct platform *pl = NULL;
    int rc;

    *n = 0;
    *more = 0;
    if (f->limit < 1 || f->limit > LIST_LIMIT_MAX || f->after_id < 0 || f->from_ms < 0 ||
        f->to_ms < 0 || (f->have_state && (size_t)f->state >= NSTATES))
        return CP_EINVAL;
    if (f->have_platform && !(pl = platform_get(f->platform)))
        return CP_EINVAL;
    if (!conn_scope_all(scope)) {
        if (user && user != scope->user_id)
            return 0;
        user = scope->user_id;
    }
    buf_init(&sql, 8192);
    rc = buf_adds(&sql, "SELECT " PUB_COLS " FROM publications p WHERE 1 = 1");
    if (!rc && f->after_id) {
        rc = buf_adds(&sql, " AND p.id < ?");
        p[np++] = DB_I64(f->after_id);
    }
    if (!rc && user) {
        rc = buf_adds(&sql, " AND p.user_id = ?");
        p[np++] = DB_I64(user);
    }
    if (!rc && pl) {
        rc = buf_adds(&sql, " AND p.platform = ?");
        p[np++] = DB_STR(pl->name);
    }
    if (!rc && f->have_state) {
        rc = buf_adds(&sql, " AND p.state = ?");
        p[np++] = DB_STR(state_names[f->state]);
    }
    if (!rc && f->connection_id) {
        rc = buf_adds(&sql, " AND p.connection_id = ?");
        p[np++] = DB_I64(f->connection_id);
    }
    if (!rc && f->rule_id) {
        rc = buf_adds(&sql, " AND p.rule_id = ?");
        p[np++] = DB_I64(f->rule_id);
    }
    if (!rc && f->video_id) {
        rc = buf_adds(&sql, " AND p.video_id = ?");
        p[np++] = DB_I64(f->video_id);
    }
    if (!rc)
        rc = db_where_time_range(&sql, "p.created_at", f->from_ms, f->to_ms, p, &np);
    if (!rc)
        rc = buf_adds(&sql, " ORDER BY p.id DESC LIMIT ?");
    p[np++] = DB_I64(f->limit + 1);
    if (!rc)
        rc = db_query(db, buf_str(&sql), p, np, &r);
    buf_free(&sql);
    if (rc)
        goto out;
    rows = db_result_page(r, f->limit, more);
    for (size_t i = 0; i < rows && !rc; i++)
        rc = row_to_pub(r, i, &out[i]);
    if (!rc)
        *n = rows;
    else
        *more = 0;
out:
    db_result_free(r);
    return rc;
}

static int j_id_or_null(struct buf *b, const char *key, long long v)
{
    return v > 0 ? buf_printf(b, ",\"%s\":%lld", key, v) : buf_printf(b, ",\"%s\":null", key);
}

static int j_str_or_null(struct buf *b, const char *key, const char *v)
{
    return v && *v ? json_member_str(b, key, v) : buf_printf(b, ",\"%s\":null", key);
}

/* The stored settings re-read, so a row that is not a JSON object shows
 * as {} instead of breaking the answer. */
static int j_settings(struct buf *b, const char *text)
{
    static const struct json_limits lim = {
        .max_size = PUB_SETTINGS_MAX, .max_depth = 32, .max_string = PUB_SETTINGS_MAX,
    };
    struct json_object *obj = NULL;
    int rc = buf_adds(b, ",\"settings\":");

    if (rc)
        return rc;
    if (json_parse(text, strlen(text), &lim, &obj, NULL) ||
        !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return buf_adds(b, "{}");
    }
    rc = json_to_buf(obj, b);
    json_object_put(obj);
    return rc;
}

int pub_to_json(const struct publication *p, struct buf *out)
{
    const struct platform *pl = platform_get(p->platform);
    int rc = buf_printf(out, "{\"id\":%lld,\"user_id\":%lld,\"video_id\":%lld", p->id, p->user_id,
                        p->video_id);

    rc = rc ? rc : j_id_or_null(out, "rule_id", p->rule_id);
    rc = rc ? rc : buf_printf(out, ",\"connection_id\":%lld", p->connection_id);
    rc = rc ? rc : json_member_str(out, "platform", pl ? pl->name : "");
    rc = rc ? rc : json_member_str(out, "state", pub_state_name(p->state));
    rc = rc ? rc : j_str_or_null(out, "caption", p->caption);
    rc = rc ? rc : j_str_or_null(out, "title", p->title);
    rc = rc ? rc : j_str_or_null(out, "media_profile", p->media_profile);
    rc = rc ? rc : j_str_or_null(out, "remote_id", p->remote_id);
    rc = rc ? rc : j_str_or_null(out, "remote_url", p->remote_url);
    rc = rc ? rc : buf_printf(out, ",\"progress\":{\"sent\":%lld,\"total\":%lld}", p->bytes_sent,
                              p->bytes_total);
    rc = rc ? rc : buf_printf(out, ",\"attempts\":%lld", p->attempts);
    rc = rc ? rc : j_str_or_null(out, "error_code", p->error_code);
    rc = rc ? rc : j_str_or_null(out, "last_error", p->last_error);
    rc = rc ? rc : json_member_time(out, "deferred_until", p->deferred_until);
    rc = rc ? rc : j_id_or_null(out, "job_id", p->job_id);
    rc = rc ? rc : json_member_time(out, "started_at", p->started_at);
    rc = rc ? rc : json_member_time(out, "published_at", p->published_at);
    rc = rc ? rc : json_member_time(out, "created_at", p->created_at);
    rc = rc ? rc : json_member_time(out, "updated_at", p->updated_at);
    rc = rc ? rc : j_settings(out, p->settings);
    return rc ? rc : buf_addc(out, '}');
}

int pub_video_destinations_json(struct db *db, long long video_id, struct buf *out)
{
    struct db_param p[] = { DB_I64(video_id) };
    struct db_result *r = NULL;
    struct publication *row = malloc(sizeof *row);
    int rc;

    if (!row)
        return CP_ENOMEM;
    rc = db_query(db, "SELECT " PUB_COLS " FROM publications p WHERE p.video_id = ? ORDER BY p.id",
                  p, 1, &r);
    rc = rc ? rc : buf_addc(out, '[');
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        if (i)
            rc = buf_addc(out, ',');
        rc = rc ? rc : row_to_pub(r, i, row);
        rc = rc ? rc : pub_to_json(row, out);
    }
    rc = rc ? rc : buf_addc(out, ']');
    db_result_free(r);
    free(row);
    return rc;
}

/* The state of publication id's unfinished publish job, if any: by its
 * job_id, else by the unique key an unfinished job holds.  *state "" when
 * none. */
static int unfinished_job(struct db *db, long long id, long long job_id, char *state, size_t cap)
{
    char key[64];
    struct db_param p[2];
    struct db_result *r = NULL;
    int rc;

    snprintf(key, sizeof key, "publish:%lld", id);
    p[0] = DB_I64(job_id);
    p[1] = DB_STR(key);
    state[0] = '\0';
    rc = db_query(db,
                  "SELECT state FROM jobs WHERE (id = ? OR active_key = ?) AND state IN "
                  JOB_UNFINISHED " LIMIT 1",
                  p, 2, &r);
    if (!rc && db_result_rows(r) == 1)
        db_result_text(r, 0, 0, state, cap);
    db_result_free(r);
    return rc;
}

struct retry {
    const struct conn_scope *scope;
    long long id, job_id;
};

static int retry_tx(struct db *db, void *arg)
{
    struct retry *t = arg;
    struct db_param q[] = { DB_I64(t->id), DB_I64(conn_scope_all(t->scope)),
                            DB_I64(conn_scope_user(t->scope)) };
    struct db_result *r = NULL;
    char job_state[16];
    const char *state;
    long long owner;
    int rc;

    t->job_id = 0;
    rc = db_query_row(db,
                      "SELECT state, user_id, COALESCE(job_id, 0) FROM publications"
                      " WHERE id = ? AND (? = 1 OR user_id = ?) FOR UPDATE",
                      q, 3, &r);
    if (rc)
        goto out;
    state = db_result_get(r, 0, 0);
    owner = db_result_int(r, 0, 1);
    if (strcmp(state ? state : "", "published") == 0) {
        rc = CP_ECONFLICT;
        goto out;
    }
    rc = unfinished_job(db, t->id, db_result_int(r, 0, 2), job_state, sizeof job_state);
    if (!rc && job_state[0])
        rc = CP_ECONFLICT;              /* still queued or running */
    if (rc)
        goto out;
    if (!strcmp(state, "failed") || !strcmp(state, "cancelled") || !strcmp(state, "deferred")) {
        struct db_param p[] = { DB_I64(t->id) };

        rc = db_exec(db,
                     "UPDATE publications SET state = 'pending', deferred_until = NULL WHERE id = ?",
                     p, 1, NULL, NULL);
    }
    if (!rc)
        rc = enqueue_publish(db, t->id, owner, 0, &t->job_id);
out:
    db_result_free(r);
    return rc;
}

int pub_retry(struct db *db, const struct conn_scope *scope, long long id, long long *job_id)
{
    struct retry t = { scope, id, 0 };
    int rc;

    *job_id = 0;
    if (id <= 0)
        return CP_ENOTFOUND;
    rc = db_transaction(db, retry_tx, &t, TX_ATTEMPTS);
    if (!rc)
        *job_id = t.job_id;
    return rc;
}

/* ------------------------------------------------------ the sweeper -- */

/* Candidates: in work and no unfinished job by id or key. */
static const char sql_sweep_candidates[] =
    "SELECT p.id FROM publications p"
    " WHERE p.state NOT IN ('published', 'failed', 'cancelled')"
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = p.job_id AND j.state IN " JOB_UNFINISHED ")"
    " AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.active_key = CONCAT('publish:', p.id))"
    " AND (p.state <> 'deferred' OR p.deferred_until IS NULL OR p.deferred_until <= NOW(3))"
    " ORDER BY p.id LIMIT ?";

enum sweep_outcome { SWEEP_NONE, SWEEP_REQUEUED, SWEEP_FAILED };

struct sweep_one {
    long long id;
    long long stuck_us;
    enum sweep_outcome outcome;
};

static int sweep_tx(struct db *db, void *arg)
{
    struct sweep_one *t = arg;
    struct db_param q[] = { DB_I64(t->stuck_us), DB_I64(t->id) };
    struct db_result *r = NULL, *j = NULL;
    char job_state[16], why[PUB_ERROR_MAX + 1];
    const char *state;
    int rc;

    t->outcome = SWEEP_NONE;
    rc = db_query(db,
                  "SELECT state, user_id, COALESCE(job_id, 0),"
                  " updated_at < NOW(3) - INTERVAL ? MICROSECOND,"
                  " deferred_until IS NULL OR deferred_until <= NOW(3)"
                  " FROM publications WHERE id = ? FOR UPDATE",
                  q, 2, &r);
    if (rc || db_result_rows(r) != 1)
        goto out;
    state = db_result_get(r, 0, 0);
    if (!state || is_final(state) || !strcmp(state, "failed"))
        goto out;
    rc = unfinished_job(db, t->id, db_result_int(r, 0, 2), job_state, sizeof job_state);
    if (rc || job_state[0])
        goto out;                       /* a job took it up meanwhile */
    if (db_result_int(r, 0, 2) > 0) {
        struct db_param jp[] = { DB_I64(db_result_int(r, 0, 2)) };

        rc = db_query(db, "SELECT state, attempts, COALESCE(last_error, '') FROM jobs WHERE id = ?",
                      jp, 1, &j);
        if (rc)
            goto out;
    }
    if (j && db_result_rows(j) == 1 && !strcmp(db_result_get(j, 0, 0), "dead")) {
        snprintf(why, sizeof why, "gave up after %lld attempts: %s", db_result_int(j, 0, 1),
                 db_result_get(j, 0, 2));
        rc = fail_locked(db, t->id, "gave_up", why);
        if (!rc)
            t->outcome = SWEEP_FAILED;
    } else if (strcmp(state, "deferred") && db_result_int(r, 0, 3)) {
        rc = fail_locked(db, t->id, "stuck", "no progress for longer than publication_stuck_after");
        if (!rc)
            t->outcome = SWEEP_FAILED;
    } else if (db_result_int(r, 0, 4)) {
        rc = enqueue_publish(db, t->id, db_result_int(r, 0, 1), 0, NULL);
        if (!rc)
            t->outcome = SWEEP_REQUEUED;
    }
out:
    db_result_free(j);
    db_result_free(r);
    return rc;
}

int pub_sweep(struct db *db, const struct conf *c, int limit, size_t *requeued, size_t *failed)
{
    struct db_param p[] = { DB_I64(limit) };
    struct db_result *r = NULL;
    size_t nr = 0, nf = 0;
    int rc;

    if (requeued)
        *requeued = 0;
    if (failed)
        *failed = 0;
    if (limit <= 0)
        return CP_EINVAL;
    rc = db_query(db, sql_sweep_candidates, p, 1, &r);
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        struct sweep_one t = { db_result_int(r, i, 0), c->publication_stuck_after * 1000,
                               SWEEP_NONE };

        rc = db_transaction(db, sweep_tx, &t, TX_ATTEMPTS);
        if (rc == CP_ECONFLICT || rc == CP_ENOTFOUND)
            rc = 0;                     /* moved on meanwhile */
        if (rc)
            break;
        if (t.outcome == SWEEP_REQUEUED)
            nr++;
        else if (t.outcome == SWEEP_FAILED)
            nf++;
    }
    db_result_free(r);
    if (nr || nf)
        log_info("publication sweep: %zu requeued, %zu failed", nr, nf);
    if (!rc && requeued)
        *requeued = nr;
    if (!rc && failed)
        *failed = nf;
    return rc;
}
