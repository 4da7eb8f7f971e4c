/*
 * handlers.h - the route table and the handlers it names.
 *
 * routes.c holds the table: one place to read what the API is.  Handlers
 * are grouped by area in h_<area>.c.
 */
#ifndef CP_HANDLERS_H
#define CP_HANDLERS_H

#include <stddef.h>

#include "request.h"
#include "router.h"

extern const struct route api_routes[];
extern const size_t api_nroutes;

/* reply_error() with more top-level members (JSON text) after "error". */
void reply_error_extra(struct request *req, int status, const char *code,
                       const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* h_ops.c: liveness, readiness, version, metrics */
void h_healthz(struct request *req);
void h_readyz(struct request *req);
void h_version(struct request *req);
void h_metrics(struct request *req);

/* h_auth.c: sign-in, sessions, the caller's own account */
void h_login(struct request *req);
void h_signup(struct request *req);
void h_refresh(struct request *req);
void h_logout(struct request *req);
void h_me(struct request *req);
void h_me_password(struct request *req);

/* h_apikeys.c: the caller's API keys */
void h_apikeys_list(struct request *req);
void h_apikeys_create(struct request *req);
void h_apikeys_revoke(struct request *req);

/* h_admin.c: account administration (admins only) */
void h_admin_users_list(struct request *req);
void h_admin_user_create(struct request *req);
void h_admin_user_get(struct request *req);
void h_admin_user_update(struct request *req);
void h_admin_user_delete(struct request *req);
void h_admin_user_revoke_sessions(struct request *req);

/* h_audit.c: reading the audit log */
void h_audit_list(struct request *req);

/* h_jobs.c: the job queue (users see their own jobs) */
void h_jobs_list(struct request *req);
void h_jobs_dead_list(struct request *req);
void h_jobs_dead_retry(struct request *req);
void h_job_get(struct request *req);
void h_job_retry(struct request *req);
void h_job_cancel(struct request *req);

/* h_workers.c: the processes of crosspost-worker (operators and admins) */
void h_workers_list(struct request *req);

/* h_connections.c: platforms and connected accounts (users see their own) */
void h_platforms_list(struct request *req);
void h_connections_list(struct request *req);
void h_connection_get(struct request *req);
void h_connection_update(struct request *req);
void h_connection_delete(struct request *req);
void h_connection_refresh(struct request *req);
void h_connection_tiktok_cookie(struct request *req);
void h_connection_authorize(struct request *req);

/* h_rules.c: automation rules (users see their own; changes audited) */
void h_rules_list(struct request *req);
void h_rule_create(struct request *req);
void h_rule_get(struct request *req);
void h_rule_update(struct request *req);
void h_rule_delete(struct request *req);

/* h_posts.c: publications of videos to destinations, retrying one, and
 * the quota ledger */
void h_posts_list(struct request *req);
void h_post_get(struct request *req);
void h_post_retry(struct request *req);
void h_quotas_list(struct request *req);

/* h_videos.c: videos found on source accounts, and syncing one now
 * (users see their own) */
void h_videos_list(struct request *req);
void h_video_get(struct request *req);
void h_connection_sync(struct request *req);

/* h_webhooks.c: platforms' signed event deliveries (public) */
void h_webhook_tiktok(struct request *req);

/* h_oauth.c: where the platforms send the browser back (public) */
void h_oauth_callback(struct request *req);

/* The browser binding of an authorization in flight (oauthstate.h): set
 * by authorize, required and cleared by the callback.  SameSite=Lax, so
 * the platform's top-level redirect back brings it along. */
#define OAUTH_COOKIE "cp_oauth"
#define OAUTH_COOKIE_PATH "/oauth"

#endif
