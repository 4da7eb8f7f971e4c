/*
 * query.h - query-string parameters, path ids and list paging.
 *
 * Query strings are read as nginx passes them (QUERY_STRING, still
 * percent-encoded).  A parameter given twice is refused rather than
 * guessed at.  Lists page with ?limit= (1..QUERY_LIMIT_MAX, default
 * QUERY_LIMIT_DEFAULT) and ?cursor=, an opaque token that is the last id
 * of the previous page as a decimal string.
 */
#ifndef CP_QUERY_H
#define CP_QUERY_H

#include <stddef.h>

#include "db.h"
#include "request.h"

#define QUERY_LIMIT_DEFAULT 50
#define QUERY_LIMIT_MAX 200

/* The value of parameter name in query (which may be NULL), percent-decoded
 * with '+' as a space, copied to out.  0; CP_ENOTFOUND when absent;
 * CP_EINVAL for a bad escape, a NUL byte, a value that is not UTF-8 or a
 * repeated name; CP_ETOOBIG
 * when the value needs more than cap-1 bytes.  out is "" on failure. */
int query_get(const char *query, const char *name, char *out, size_t cap);

/* A row id written strictly: 1 to 19 decimal digits, no sign, no
 * leading zero, 1..LLONG_MAX.  0 or CP_EINVAL. */
int parse_id(const char *s, long long *out);

/* An RFC 3339 time in UTC, "2026-11-22T05:00:00Z" with an optional
 * fraction of up to 6 digits, as a DATETIME literal for binding
 * ("2026-11-22 05:00:00.000000", cap >= QUERY_TIME_MAX).  Other offsets
 * are refused: times are kept in UTC and a query says so.  0 or
 * CP_EINVAL. */
#define QUERY_TIME_MAX 32
int parse_utc_time(const char *s, char *out, size_t cap);

/* parse_utc_time's literal ("2026-11-22 05:00:00.000000") as epoch
 * milliseconds, 0 when after 1970, else CP_EINVAL. */
int utc_literal_ms(const char *lit, long long *out);

/* For handlers.  Each replies itself when it returns non-zero. */

/* Path parameter name as an id: 0, or 1 after replying 404 (an id that
 * cannot exist names nothing). */
int req_path_id(struct request *req, const char *name, long long *out);

/* Query parameter name: 0 when present, CP_ENOTFOUND when absent (no
 * reply), or 1 after replying 400 invalid_parameter. */
int req_query(struct request *req, const char *name, char *out, size_t cap);

/* Query parameter name as a row id (parse_id): 0 when present (*out set)
 * or absent (*out untouched), or 1 after replying 400 invalid_parameter
 * ("must be what"). */
int req_query_id(struct request *req, const char *name, const char *what, long long *out);

/* 1 after replying 400 invalid_parameter: "The query parameter "name"
 * must be expected." */
int reply_bad_parameter(struct request *req, const char *name, const char *expected);

/* Replies 503 unavailable: the database is not answering. */
void reply_unavailable(struct request *req);

/* The app's database connection: 0, or 1 after reply_unavailable. */
int req_db(struct request *req, struct db **db);

/* Query parameter name as a UTC time (parse_utc_time): 0 when present,
 * CP_ENOTFOUND when absent (out ""), or 1 after replying 400. */
int req_query_time(struct request *req, const char *name, char *out, size_t cap);

/* ?limit= and ?cursor=: 0 with *limit (default QUERY_LIMIT_DEFAULT) and
 * *cursor (0 when absent), or 1 after replying 400 invalid_parameter. */
int req_paging(struct request *req, int *limit, long long *cursor);

/* Run a list query built by a handler (sql ready, or built_rc non-zero if
 * building it failed), turn its rows into the page with page_json, and
 * reply: 200 with the page, 503 when the database cannot answer.  Frees
 * sql. */
typedef int (*page_json_fn)(const struct db_result *r, int limit, struct buf *out);
void reply_list_query(struct request *req, int built_rc, struct buf *sql,
                      const struct db_param *params, size_t nparams, int limit,
                      page_json_fn page_json, size_t max_json);

#endif
