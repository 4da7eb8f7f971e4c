/*
 * quota.h - the quota ledger (sql/009_publishing.sql, quota_ledger).
 *
 * Before a publisher spends a platform's budget, the caller reserves it
 * here; when a budget would be exceeded the answer is "come back at T",
 * and the job is deferred to T (no attempt spent), never failed.  The
 * budgets come from one table (quota_budgets[] in quota.c) filled from
 * the configuration:
 *
 *   youtube  project  units    youtube_daily_units per Pacific day,
 *                              youtube_insert_units per upload
 *   youtube  channel  uploads  youtube_channel_daily_uploads per Pacific day
 *   x        user     posts    x_user_posts per x_user_window (15 min)
 *   x        app      posts    x_app_posts per 24 h
 *   instagram account posts    not budgeted here: read live from
 *                              content_publishing_limit before each
 *                              publish; an exhaustion it reports is noted
 *                              with quota_block()
 *
 * Windows: YouTube's reset at midnight Pacific time (America/Los_Angeles,
 * with US daylight saving rules); the others are fixed-length windows
 * that start with the first spend.  What a platform says wins over our
 * count: a 429, quotaExceeded, uploadLimitExceeded, x-rate-limit-remaining
 * 0 with its reset, or a high x-app-usage block the budget until then
 * (quota_block).  A reservation that is not used (the upload failed
 * before the platform counted it) is given back with quota_release.
 *
 * Every function runs its own short transaction (SELECT ... FOR UPDATE on
 * the ledger row), so never call them inside another transaction.
 */
#ifndef CP_QUOTA_H
#define CP_QUOTA_H

#include <stddef.h>

#include "conf.h"
#include "db.h"
#include "platforms.h"

#define QUOTA_KEY_MAX 128

/* One budget a publish spends from. */
struct quota_charge {
    enum platform_id platform;
    char scope[16];                   /* "project", "channel", "user", "app", "account" */
    char scope_key[QUOTA_KEY_MAX];    /* client id, connection id, ... */
    char bucket[16];                  /* "units", "uploads", "posts" */
    long long cost;
    long long quota;                  /* budget per window */
    int pacific_day;                  /* 1: the window ends at midnight Pacific */
    long long window_ms;              /* otherwise its length */
};

#define QUOTA_CHARGES_MAX 4

/* The budgets a publish to platform spends from, for the destination
 * connection conn_id (client ids and consumer keys from the
 * configuration).  *n may be 0 (Instagram).  CP_EINVAL for TikTok. */
int quota_charges_for(const struct conf *c, enum platform_id platform, long long conn_id,
                      struct quota_charge *out, size_t cap, size_t *n);

/*
 * Reserve every charge of charges[0..n) at now (database clock), all or
 * nothing, in one transaction.  0 when reserved; CP_EBUSY when one would
 * be exceeded or is blocked: *until_ms (epoch ms) is when the first
 * blocking window frees, and why (may be NULL) names it for people:
 * "YouTube project quota: 9600 of 10000 units used; frees at midnight
 * Pacific (2026-11-23 08:00 UTC)".
 */
int quota_reserve(struct db *db, const struct quota_charge *charges, size_t n,
                  long long *until_ms, char *why, size_t why_cap);

/* Give back reservations that were not spent (the call never reached
 * the platform).  Best effort. */
int quota_release(struct db *db, const struct quota_charge *charges, size_t n);

/* The platform said this budget is exhausted until until_ms (0 = the end
 * of the current window): block it, with note for people.  Creates the
 * ledger row when needed. */
int quota_block(struct db *db, const struct quota_charge *charge, long long until_ms,
                const char *note);

/* Epoch ms of the next midnight in America/Los_Angeles strictly after
 * now_ms (US rules since 2007: daylight time from the second Sunday of
 * March 02:00 to the first Sunday of November 02:00). */
long long quota_pacific_midnight_after(long long now_ms);

/* The ledger as JSON for GET /api/v1/quotas: {"data":[{platform, scope,
 * scope_key, bucket, used, quota, window_start, window_end,
 * blocked_until, note}]}.  For a user (scope_user > 0) only rows keyed
 * by their own connections and the shared project/app rows. */
struct buf;
int quota_list_json(struct db *db, long long scope_user, struct buf *out);

#endif
