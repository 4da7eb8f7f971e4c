/*
 * quota.c - the quota ledger: budgets from the configuration, reservations
 * counted in quota_ledger under row locks, windows that roll at midnight
 * Pacific or after a fixed length, and blocks set by what platforms say.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "quota.h"

#define SEC_MS 1000LL
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define NOTE_MAX 255            /* quota_ledger.last_note */
#define TX_ATTEMPTS 8

/* Where a budget's scope_key comes from. */
enum key_source {
    KEY_CONNECTION,             /* the destination connection's id */
    KEY_GOOGLE_CLIENT,          /* google_client_id, or "default" */
    KEY_X_APP,                  /* x_consumer_key, x_client_id, or "default" */
};

#define CONF_NONE ((size_t)-1)
#define CONF_AT(c, off) (*(const long long *)(const void *)((const char *)(c) + (off)))

/* Every budget a publish spends from.  Values are read from struct conf
 * at the offsets given; CONF_NONE means the fixed value next to it. */
static const struct quota_budget {
    enum platform_id platform;
    const char *scope;
    const char *bucket;
    enum key_source key;
    size_t quota_off;
    size_t cost_off;
    long long cost_fixed;
    int pacific_day;
    size_t window_off;
    long long window_fixed;
    const char *label;          /* for people, in why texts */
} quota_budgets[] = {
    { PLATFORM_YOUTUBE, "project", "units", KEY_GOOGLE_CLIENT,
      offsetof(struct conf, youtube_daily_units), offsetof(struct conf, youtube_insert_units), 0,
      1, CONF_NONE, 0, "YouTube project quota" },
    { PLATFORM_YOUTUBE, "channel", "uploads", KEY_CONNECTION,
      offsetof(struct conf, youtube_channel_daily_uploads), CONF_NONE, 1,
      1, CONF_NONE, 0, "YouTube uploads for this channel" },
    { PLATFORM_X, "user", "posts", KEY_CONNECTION,
      offsetof(struct conf, x_user_posts), CONF_NONE, 1,
      0, offsetof(struct conf, x_user_window), 0, "X posts for this account" },
    { PLATFORM_X, "app", "posts", KEY_X_APP,
      offsetof(struct conf, x_app_posts), CONF_NONE, 1,
      0, CONF_NONE, DAY_MS, "X posts for this app" },
};
#define BUDGET_COUNT (sizeof quota_budgets / sizeof quota_budgets[0])

static const char *conf_text_or(const char *v, const char *fallback)
{
    return v && v[0] ? v : fallback;
}

static int copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        return CP_ETOOBIG;
    memcpy(dst, src, n + 1);
    return 0;
}

int quota_charges_for(const struct conf *c, enum platform_id platform, long long conn_id,
                      struct quota_charge *out, size_t cap, size_t *n)
{
    size_t count = 0;
    int rc;

    *n = 0;
    if (platform == PLATFORM_TIKTOK || (unsigned)platform >= PLATFORM_COUNT)
        return CP_EINVAL;
    for (size_t i = 0; i < BUDGET_COUNT; i++) {
        const struct quota_budget *b = &quota_budgets[i];
        struct quota_charge ch;
        const char *key;
        char id[24];

        if (b->platform != platform || CONF_AT(c, b->quota_off) <= 0)
            continue;
        if (count == cap)
            return CP_ETOOBIG;
        memset(&ch, 0, sizeof ch);
        ch.platform = platform;
        if ((rc = copy_text(ch.scope, sizeof ch.scope, b->scope)) ||
            (rc = copy_text(ch.bucket, sizeof ch.bucket, b->bucket)))
            return rc;
        switch (b->key) {
        case KEY_CONNECTION:
            if (conn_id <= 0)
                return CP_EINVAL;
            snprintf(id, sizeof id, "%lld", conn_id);
            key = id;
            break;
        case KEY_GOOGLE_CLIENT:
            key = conf_text_or(c->google_client_id, "default");
            break;
        default:
            key = conf_text_or(c->x_consumer_key, conf_text_or(c->x_client_id, "default"));
            break;
        }
        if ((rc = copy_text(ch.scope_key, sizeof ch.scope_key, key)))
            return rc;
        ch.quota = CONF_AT(c, b->quota_off);
        ch.cost = b->cost_off == CONF_NONE ? b->cost_fixed : CONF_AT(c, b->cost_off);
        ch.pacific_day = b->pacific_day;
        ch.window_ms = b->pacific_day ? 0
                     : b->window_off == CONF_NONE ? b->window_fixed : CONF_AT(c, b->window_off);
        out[count++] = ch;
    }
    *n = count;
    return 0;
}

/* ------------------------------------------------------ Pacific time -- */

static long long floor_div(long long a, long long b)
{
    long long q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(long long y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static long long year_of_days(long long days)
{
    long long z = days + 719468, era = floor_div(z, 146097);
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;

    return yoe + era * 400 + (mp >= 10);
}

/* The day (days since the epoch) of the nth Sunday of month in year. */
static long long nth_sunday(long long year, int month, int nth)
{
    long long first = days_from_civil(year, month, 1);
    long long weekday = ((first + 4) % 7 + 7) % 7;     /* 1970-01-01 was a Thursday; Sunday is 0 */

    return first + (7 - weekday) % 7 + 7 * (nth - 1);
}

/* Pacific time's offset from UTC in ms at the instant t_ms. */
static long long pacific_offset_at(long long t_ms)
{
    long long year = year_of_days(floor_div(t_ms, DAY_MS));
    /* 02:00 PST is 10:00 UTC; 02:00 PDT is 09:00 UTC. */
    long long dst_start = nth_sunday(year, 3, 2) * DAY_MS + 10 * HOUR_MS;
    long long dst_end = nth_sunday(year, 11, 1) * DAY_MS + 9 * HOUR_MS;

    return t_ms >= dst_start && t_ms < dst_end ? -7 * HOUR_MS : -8 * HOUR_MS;
}

long long quota_pacific_midnight_after(long long now_ms)
{
    long long local_day = floor_div(now_ms + pacific_offset_at(now_ms), DAY_MS) + 1;
    long long year = year_of_days(local_day);
    /* Midnight is before the 2 am change, so on both change days it still
     * has the offset of the day before. */
    int daylight = local_day > nth_sunday(year, 3, 2) && local_day <= nth_sunday(year, 11, 1);

    return local_day * DAY_MS + (daylight ? 7 : 8) * HOUR_MS;
}

/* --------------------------------------------------------- why texts -- */

static const struct quota_budget *budget_of(const struct quota_charge *ch)
{
    for (size_t i = 0; i < BUDGET_COUNT; i++)
        if (quota_budgets[i].platform == ch->platform && !strcmp(quota_budgets[i].scope, ch->scope) &&
            !strcmp(quota_budgets[i].bucket, ch->bucket))
            return &quota_budgets[i];
    return NULL;
}

/* "2026-11-23 08:00 UTC" (seconds only when there are some). */
static void format_utc(long long ms, char *out, size_t cap)
{
    time_t sec = (time_t)floor_div(ms, SEC_MS);
    struct tm tm;

    if (!gmtime_r(&sec, &tm) ||
        !strftime(out, cap, tm.tm_sec ? "%Y-%m-%d %H:%M:%S UTC" : "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(out, cap, "%lld ms after the epoch", ms);
}

/* "15 min", "24 h", "1 h 30 min", "90 s". */
static void format_window(long long ms, char *out, size_t cap)
{
    if (ms % MIN_MS)
        snprintf(out, cap, "%lld s", ms / SEC_MS);
    else if (ms % HOUR_MS == 0)
        snprintf(out, cap, "%lld h", ms / HOUR_MS);
    else if (ms > HOUR_MS)
        snprintf(out, cap, "%lld h %lld min", ms / HOUR_MS, ms % HOUR_MS / MIN_MS);
    else
        snprintf(out, cap, "%lld min", ms / MIN_MS);
}

/* One ledger row as read under its lock, and what the reservation makes
 * of it. */
struct ledger_row {
    long long id;
    long long used;
    long long window_start;
    long long window_end;
    long long blocked_until;    /* 0: not blocked */
    char note[4 * NOTE_MAX + 1];   /* 255 characters of up to 4 bytes */
};

static void explain(const struct quota_charge *ch, const struct ledger_row *row, long long now,
                    char *why, size_t why_cap)
{
    const struct quota_budget *b = budget_of(ch);
    const char *label = b ? b->label : ch->scope;
    char when[48], span[32];

    if (!why || why_cap == 0)
        return;
    if (row->blocked_until > now) {
        format_utc(row->blocked_until, when, sizeof when);
        snprintf(why, why_cap, "%s: blocked by the platform until %s%s%s", label, when,
                 row->note[0] ? ": " : "", row->note);
        return;
    }
    format_utc(row->window_end, when, sizeof when);
    if (ch->pacific_day && !strcmp(ch->bucket, "units"))
        snprintf(why, why_cap, "%s: %lld of %lld %s used; frees at %s (midnight Pacific)", label,
                 row->used, ch->quota, ch->bucket, when);
    else if (ch->pacific_day)
        snprintf(why, why_cap, "%s: %lld of %lld today; frees at %s (midnight Pacific)", label,
                 row->used, ch->quota, when);
    else {
        format_window(ch->window_ms, span, sizeof span);
        snprintf(why, why_cap, "%s: %lld of %lld in %s; frees at %s", label, row->used, ch->quota,
                 span, when);
    }
}

/* ---------------------------------------------------------- the rows -- */

#define MS(col) "COALESCE(CAST(UNIX_TIMESTAMP(" col ") * 1000 AS SIGNED), 0)"
#define FROM_MS "FROM_UNIXTIME(? / 1000)"
#define ROW_KEY "platform = ? AND scope = ? AND scope_key = ? AND bucket = ?"

static int check_charge(const struct quota_charge *ch)
{
    if ((unsigned)ch->platform >= PLATFORM_COUNT || ch->cost < 0 || ch->quota < 0 ||
        !memchr(ch->scope, '\0', sizeof ch->scope) || !memchr(ch->bucket, '\0', sizeof ch->bucket) ||
        !memchr(ch->scope_key, '\0', sizeof ch->scope_key) || !ch->scope[0] || !ch->bucket[0] ||
        (!ch->pacific_day && ch->window_ms <= 0))
        return CP_EINVAL;
    return 0;
}

static void key_params(const struct quota_charge *ch, struct db_param *p)
{
    p[0] = DB_STR(platform_get(ch->platform)->name);
    p[1] = DB_STR(ch->scope);
    p[2] = DB_STR(ch->scope_key);
    p[3] = DB_STR(ch->bucket);
}

static int db_now_ms(struct db *db, long long *now)
{
    struct db_result *r = NULL;
    int rc = db_query(db, "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)", NULL, 0, &r);

    if (!rc)
        rc = db_result_rows(r) == 1 ? db_result_i64(r, 0, 0, now) : CP_EDB;
    db_result_free(r);
    return rc;
}

static long long window_end_after(const struct quota_charge *ch, long long now)
{
    return ch->pacific_day ? quota_pacific_midnight_after(now) : now + ch->window_ms;
}

/* Lock the row of ch, creating it with a window from now when missing;
 * a window that has ended is rolled and a block that has passed is
 * cleared in *row (the caller writes it back). */
static int lock_row(struct db *db, const struct quota_charge *ch, long long now,
                    struct ledger_row *row)
{
    struct db_param p[7];
    struct db_result *r = NULL;
    int rc;

    key_params(ch, p);
    p[4] = DB_I64(now);
    p[5] = DB_I64(window_end_after(ch, now));
    p[6] = DB_I64(ch->quota);
    rc = db_exec(db, "INSERT INTO quota_ledger (platform, scope, scope_key, bucket, window_start,"
                     " window_end, used, quota) VALUES (?, ?, ?, ?, " FROM_MS ", " FROM_MS ", 0, ?)"
                     " ON DUPLICATE KEY UPDATE id = id", p, 7, NULL, NULL);
    if (rc)
        return rc;
    rc = db_query(db, "SELECT id, used, " MS("window_start") ", " MS("window_end") ", "
                      MS("blocked_until") ", last_note FROM quota_ledger WHERE " ROW_KEY
                      " FOR UPDATE", p, 4, &r);
    if (rc)
        return rc;
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        return CP_EDB;
    }
    row->id = db_result_int(r, 0, 0);
    row->used = db_result_int(r, 0, 1);
    row->window_start = db_result_int(r, 0, 2);
    row->window_end = db_result_int(r, 0, 3);
    row->blocked_until = db_result_int(r, 0, 4);
    db_result_text(r, 0, 5, row->note, sizeof row->note);
    db_result_free(r);
    if (row->window_end <= now) {
        row->used = 0;
        row->window_start = now;
        row->window_end = window_end_after(ch, now);
    }
    if (row->blocked_until <= now)
        row->blocked_until = 0;
    return 0;
}

static int write_row(struct db *db, const struct ledger_row *row, long long quota, const char *note)
{
    struct db_param p[] = {
        DB_I64(row->used), DB_I64(quota), DB_I64(row->window_start), DB_I64(row->window_end),
        row->blocked_until > 0 ? DB_I64(row->blocked_until) : DB_NULL,
        DB_STR(note ? note : row->note), DB_I64(row->id),
    };

    return db_exec(db, "UPDATE quota_ledger SET used = ?, quota = ?, window_start = " FROM_MS ","
                       " window_end = " FROM_MS ", blocked_until = " FROM_MS ", last_note = ?"
                       " WHERE id = ?", p, sizeof p / sizeof p[0], NULL, NULL);
}

/* -------------------------------------------------------- reservation -- */

struct reserve_tx {
    const struct quota_charge *charges;
    size_t n;
    long long until;
    char *why;
    size_t why_cap;
};

static int reserve_tx(struct db *db, void *arg)
{
    struct reserve_tx *tx = arg;
    struct ledger_row rows[QUOTA_CHARGES_MAX];
    long long now = 0;
    int rc;

    tx->until = 0;
    if (tx->why && tx->why_cap)
        tx->why[0] = '\0';
    if ((rc = db_now_ms(db, &now)))
        return rc;
    for (size_t i = 0; i < tx->n; i++) {
        const struct quota_charge *ch = &tx->charges[i];
        struct ledger_row *row = &rows[i];
        long long frees = 0;

        if ((rc = lock_row(db, ch, now, row)))
            return rc;
        if (row->blocked_until > now)
            frees = row->blocked_until;
        if (row->used + ch->cost > ch->quota && row->window_end > frees)
            frees = row->window_end;
        /* Every refusing budget must free before the publish can go:
         * the answer is the latest of them, named in why. */
        if (frees > tx->until) {
            tx->until = frees;
            explain(ch, row, now, tx->why, tx->why_cap);
        }
    }
    if (tx->until)
        return CP_EBUSY;
    for (size_t i = 0; i < tx->n; i++) {
        rows[i].used += tx->charges[i].cost;
        if ((rc = write_row(db, &rows[i], tx->charges[i].quota, NULL)))
            return rc;
    }
    return 0;
}

int quota_reserve(struct db *db, const struct quota_charge *charges, size_t n,
                  long long *until_ms, char *why, size_t why_cap)
{
    struct reserve_tx tx = { .charges = charges, .n = n, .why = why, .why_cap = why_cap };
    int rc;

    *until_ms = 0;
    if (why && why_cap)
        why[0] = '\0';
    if (n > QUOTA_CHARGES_MAX)
        return CP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((rc = check_charge(&charges[i])))
            return rc;
    if (n == 0)
        return 0;
    rc = db_transaction(db, reserve_tx, &tx, TX_ATTEMPTS);
    if (rc == CP_EBUSY) {
        *until_ms = tx.until;
        return rc;
    }
    if (why && why_cap)
        why[0] = '\0';
    return rc;
}

/* ----------------------------------------------------------- release -- */

struct release_tx {
    const struct quota_charge *charges;
    size_t n;
};

static int release_tx(struct db *db, void *arg)
{
    struct release_tx *tx = arg;
    int rc;

    for (size_t i = 0; i < tx->n; i++) {
        struct db_param p[6];

        p[0] = DB_I64(tx->charges[i].cost);
        key_params(&tx->charges[i], p + 1);
        /* Only the window the reservation was made in: a rolled window
         * starts from 0 and owes nothing back. */
        rc = db_exec(db, "UPDATE quota_ledger SET used = GREATEST(CAST(used AS SIGNED) - ?, 0)"
                         " WHERE " ROW_KEY " AND window_end > NOW(3)", p, 5, NULL, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

int quota_release(struct db *db, const struct quota_charge *charges, size_t n)
{
    struct release_tx tx = { .charges = charges, .n = n };
    int rc;

    for (size_t i = 0; i < n; i++)
        if ((rc = check_charge(&charges[i])))
            return rc;
    if (n == 0)
        return 0;
    rc = db_transaction(db, release_tx, &tx, TX_ATTEMPTS);
    if (rc)
        log_warn("quota: giving back %zu reservation(s) failed: %s", n, cp_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------- block -- */

struct block_tx {
    const struct quota_charge *charge;
    long long until;
    const char *note;
};

static int block_tx(struct db *db, void *arg)
{
    struct block_tx *tx = arg;
    struct ledger_row row;
    long long now = 0;
    int rc;

    if ((rc = db_now_ms(db, &now)) || (rc = lock_row(db, tx->charge, now, &row)))
        return rc;
    row.blocked_until = tx->until > 0 ? tx->until : row.window_end;
    if (row.used < tx->charge->quota)
        row.used = tx->charge->quota;
    return write_row(db, &row, tx->charge->quota, tx->note);
}

/* The note as last_note can hold it: valid UTF-8 (other bytes become
 * '?'), cut at NOTE_MAX bytes on a character boundary. */
static void note_text(const char *note, char *out, size_t cap)
{
    size_t n = 0;

    for (const unsigned char *s = (const unsigned char *)(note ? note : ""); *s && n + 1 < cap;) {
        size_t len = *s < 0x80 ? 1 : (*s & 0xe0) == 0xc0 ? 2 : (*s & 0xf0) == 0xe0 ? 3
                   : (*s & 0xf8) == 0xf0 ? 4 : 0;
        size_t have = 0;

        while (have < len && s[have])
            have++;
        if (len == 0 || have < len || !json_utf8_valid((const char *)s, len)) {
            out[n++] = '?';
            s++;
            continue;
        }
        if (n + len + 1 > cap)
            break;
        memcpy(out + n, s, len);
        n += len;
        s += len;
    }
    out[n] = '\0';
}

int quota_block(struct db *db, const struct quota_charge *charge, long long until_ms,
                const char *note)
{
    char text[NOTE_MAX + 1];
    struct quota_charge ch = *charge;
    struct block_tx tx = { .charge = &ch, .until = until_ms, .note = text };
    int rc;

    /* Budgets not counted here (Instagram's) have no window of their
     * own: a day, like the platform's. */
    if (!ch.pacific_day && ch.window_ms <= 0)
        ch.window_ms = DAY_MS;
    if ((rc = check_charge(&ch)))
        return rc;
    note_text(note, text, sizeof text);
    rc = db_transaction(db, block_tx, &tx, TX_ATTEMPTS);
    if (rc)
        log_warn("quota: blocking %s %s %s failed: %s", platform_get(charge->platform)->name,
                 charge->scope, charge->bucket, cp_strerror(rc));
    return rc;
}

/* -------------------------------------------------------------- list -- */

int quota_list_json(struct db *db, long long scope_user, struct buf *out)
{
    /* A window that has ended counts nothing any more, and a block that
     * has passed holds nothing: shown as such before the next spend
     * writes it back. */
    static const char sql[] =
        "SELECT q.platform, q.scope, q.scope_key, q.bucket,"
        " IF(q.window_end <= NOW(3), 0, q.used), q.quota, " MS("q.window_start") ","
        " " MS("q.window_end") ","
        " IF(q.blocked_until > NOW(3), " MS("q.blocked_until") ", 0), q.last_note"
        " FROM quota_ledger q"
        " WHERE ? <= 0 OR q.scope IN ('project', 'app')"
        " OR q.scope_key IN (SELECT CAST(c.id AS CHAR CHARACTER SET utf8mb4)"
        " COLLATE utf8mb4_unicode_ci FROM connections c WHERE c.user_id = ?)"
        " ORDER BY q.platform, q.scope, q.scope_key, q.bucket";
    struct db_param p[] = { DB_I64(scope_user), DB_I64(scope_user) };
    struct db_result *r = NULL;
    int rc;

    rc = db_query(db, sql, p, 2, &r);
    if (!rc)
        rc = buf_adds(out, "{\"data\":[");
    for (size_t i = 0; !rc && i < db_result_rows(r); i++) {
        const char *note = db_result_get(r, i, 9);

        rc = buf_printf(out, "%s{\"platform\":\"%s\"", i ? "," : "", db_result_get(r, i, 0));
        if (!rc)
            rc = json_member_str(out, "scope", db_result_get(r, i, 1));
        if (!rc)
            rc = json_member_str(out, "scope_key", db_result_get(r, i, 2));
        if (!rc)
            rc = json_member_str(out, "bucket", db_result_get(r, i, 3));
        if (!rc)
            rc = buf_printf(out, ",\"used\":%lld,\"quota\":%lld", db_result_int(r, i, 4),
                            db_result_int(r, i, 5));
        if (!rc)
            rc = json_member_time(out, "window_start", db_result_int(r, i, 6));
        if (!rc)
            rc = json_member_time(out, "window_end", db_result_int(r, i, 7));
        if (!rc)
            rc = json_member_time(out, "blocked_until", db_result_int(r, i, 8));
        if (!rc && note && note[0])
            rc = json_member_str(out, "note", note);
        else if (!rc)
            rc = buf_adds(out, ",\"note\":null");
        if (!rc)
            rc = buf_addc(out, '}');
    }
    if (!rc)
        rc = buf_adds(out, "]}");
    db_result_free(r);
    return rc;
}
