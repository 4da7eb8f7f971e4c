/*
 * rules.h - automation rules (sql/009_publishing.sql: rules,
 * rule_destinations): which videos of a TikTok source go to which
 * destination accounts, with what settings.
 *
 * Two layers:
 *  - rule_parse() validates a rule body (the JSON resource of
 *    docs/API.md) without a database: connections are looked up through a
 *    callback, so the checks are testable alone.  A problem comes back as
 *    the HTTP status, error code, field path and sentence the API sends.
 *  - rule_create/update/delete/get/list are the data layer.  Ownership:
 *    a rule belongs to the user who made it; reads take a struct
 *    conn_scope (operators and admins see all), changes only the owner's
 *    rules; anything the caller may not see is CP_ENOTFOUND.
 *
 * Backfill: a rule made with backfill (or changed to it) moves up to
 * conf->rule_backfill_max of the source's 'known' videos (newest first) to
 * 'new' with a video.fetch job each, in the transaction that writes the
 * rule; after the commit pub_fanout_rule() covers videos already ready.
 */
#ifndef CP_RULES_H
#define CP_RULES_H

#include <stddef.h>

#include <json-c/json.h>

#include "buf.h"
#include "conf.h"
#include "connections.h"
#include "db.h"
#include "platforms.h"

#define RULE_NAME_MAX 255              /* bytes, no control characters */
#define RULE_DESTINATIONS_MAX 10
#define RULE_WORDS_MAX 50              /* per list */
#define RULE_WORD_MAX 100              /* bytes per word */
#define RULE_DELAY_MAX 86400           /* seconds */
#define RULE_SETTINGS_MAX 16384        /* a destination's settings as JSON text */
#define RULE_FIELD_MAX 96
#define RULE_MESSAGE_MAX 400

/* What rule_parse() needs to know of a connection. */
struct rule_conn {
    long long id;
    long long user_id;
    enum platform_id platform;
};

/* Find connection id: 0 with *out, CP_ENOTFOUND, or another error (the
 * database's) that rule_parse() passes on. */
typedef int (*rule_conn_lookup_fn)(void *ctx, long long id, struct rule_conn *out);

/* The lookup over the connections table; ctx is a struct db *. */
int rule_conn_lookup_db(void *ctx, long long id, struct rule_conn *out);

/* Why a body was refused: status 400 (invalid_body, invalid_field,
 * missing_field) or 422 (unknown_field, invalid_field,
 * invalid_connection, invalid_template); field is a path such as
 * "destinations[1].settings.text_template" ("" for the whole body). */
struct rule_problem {
    int status;
    char code[32];
    char field[RULE_FIELD_MAX];
    char message[RULE_MESSAGE_MAX];
};

struct rule_destination {
    long long connection_id;
    enum platform_id platform;
    char *settings;                    /* JSON object text, defaults filled in */
};

/* A valid rule as parsed (no id, owner or times). */
struct rule_input {
    char name[RULE_NAME_MAX + 1];
    long long source_connection_id;
    int enabled;
    long long min_duration_s;          /* -1: no bound */
    long long max_duration_s;          /* -1: no bound */
    char *include_words;               /* JSON array text */
    char *exclude_words;               /* JSON array text */
    int backfill;
    long long delay_s;
    size_t ndestinations;
    struct rule_destination destinations[RULE_DESTINATIONS_MAX];
};

void rule_input_init(struct rule_input *in);
void rule_input_free(struct rule_input *in);   /* frees the texts; init again to reuse */

/*
 * Validate body, a rule resource owned by user_id, into out (which the
 * caller has initialised and frees).  Members: source_connection_id and
 * destinations required; name (""), enabled (true), filters, backfill
 * (false), delay_s (0) optional.  0, CP_EINVAL with *why filled, or the lookup's
 * error.  Pure but for the lookup.
 */
int rule_parse(struct json_object *body, long long user_id, rule_conn_lookup_fn lookup,
               void *lookup_ctx, struct rule_input *out, struct rule_problem *why);

/*
 * A PATCH applied to a stored rule resource (as rule_get() gives it):
 * a new object with the writable members of stored replaced by those of
 * patch (filters member by member, destinations as a whole), for
 * rule_parse().  Members rule_parse() does not know are carried over so it
 * can name them.  CP_EINVAL when patch is not an object, CP_ENOMEM.
 */
int rule_merge_patch(struct json_object *stored, struct json_object *patch,
                     struct json_object **out);

/* ------------------------------------------------------ data layer -- */

/* Insert the rule of user_id (backfill as above).  *id_out. */
int rule_create(struct db *db, const struct conf *c, long long user_id,
                const struct rule_input *in, long long *id_out);

/* Replace every member of rule id (owned by user_id) with in; the
 * destinations as a whole.  run_backfill: backfill now (the change set it
 * true).  CP_ENOTFOUND. */
int rule_update(struct db *db, const struct conf *c, long long user_id, long long id,
                const struct rule_input *in, int run_backfill);

/* Delete rule id of user_id (publications keep their rows with rule_id
 * NULL).  CP_ENOTFOUND. */
int rule_delete(struct db *db, long long user_id, long long id);

/* The rule resource (a new object) of rule id if scope sees it; *owner
 * its user (may be NULL).  CP_ENOTFOUND. */
int rule_get(struct db *db, const struct conn_scope *scope, long long id,
             struct json_object **out, long long *owner);

struct rule_filter {
    long long source_connection_id;    /* 0 = any */
    int have_enabled;
    int enabled;
    long long after_id;                /* cursor */
    int limit;                         /* 1..200 */
};

/* A page of visible rules in id order: {"data":[...],"next_cursor":...}
 * appended to out. */
int rule_list(struct db *db, const struct conn_scope *scope, const struct rule_filter *f,
              struct buf *out);

#endif
