#include "config.h"

#include "handlers.h"

/*
 * Every endpoint of crosspost-api: methods, path pattern, least role,
 * handler.  Paths are as nginx passes them (DOCUMENT_URI: decoded and
 * normalised).  Ops endpoints sit outside /api/v1; nginx restricts
 * /metrics to its allow list.  A literal segment wins over a {parameter}
 * in the same place (router.c), so /jobs/dead is never taken for a job id.
 * /oauth/ is the way back from the platforms' consent pages: public, the
 * saved state of the authorization says whose it is.
 */
const struct route api_routes[] = {
    { M_GET, "/healthz", ROLE_PUBLIC, h_healthz, 0 },
    { M_GET, "/readyz", ROLE_PUBLIC, h_readyz, 0 },
    { M_GET, "/metrics", ROLE_PUBLIC, h_metrics, 0 },
    { M_GET, "/api/v1/version", ROLE_PUBLIC, h_version, 0 },

    { M_POST, "/api/v1/auth/login", ROLE_PUBLIC, h_login, 0 },
    { M_POST, "/api/v1/auth/signup", ROLE_PUBLIC, h_signup, 0 },
    { M_POST, "/api/v1/auth/refresh", ROLE_PUBLIC, h_refresh, 0 },
    { M_POST, "/api/v1/auth/logout", ROLE_PUBLIC, h_logout, 0 },
    { M_GET, "/api/v1/me", ROLE_USER, h_me, 0 },
    { M_POST, "/api/v1/me/password", ROLE_USER, h_me_password, 0 },
    { M_GET, "/api/v1/me/api-keys", ROLE_USER, h_apikeys_list, 0 },
    { M_POST, "/api/v1/me/api-keys", ROLE_USER, h_apikeys_create, 0 },
    { M_DELETE, "/api/v1/me/api-keys/{id}", ROLE_USER, h_apikeys_revoke, 0 },

    { M_GET, "/api/v1/admin/users", ROLE_ADMIN, h_admin_users_list, 0 },
    { M_POST, "/api/v1/admin/users", ROLE_ADMIN, h_admin_user_create, 0 },
    { M_GET, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_get, 0 },
    { M_PATCH, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_update, 0 },
    { M_DELETE, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_delete, 0 },
    { M_POST, "/api/v1/admin/users/{id}/revoke-sessions", ROLE_ADMIN, h_admin_user_revoke_sessions, 0 },

    { M_GET, "/api/v1/audit", ROLE_USER, h_audit_list, 0 },

    { M_GET, "/api/v1/jobs", ROLE_USER, h_jobs_list, 0 },
    { M_GET, "/api/v1/jobs/dead", ROLE_USER, h_jobs_dead_list, 0 },
    { M_POST, "/api/v1/jobs/dead/retry", ROLE_USER, h_jobs_dead_retry, 0 },
    { M_GET, "/api/v1/jobs/{id}", ROLE_USER, h_job_get, 0 },
    { M_POST, "/api/v1/jobs/{id}/retry", ROLE_USER, h_job_retry, 0 },
    { M_POST, "/api/v1/jobs/{id}/cancel", ROLE_USER, h_job_cancel, 0 },
    { M_GET, "/api/v1/workers", ROLE_OPERATOR, h_workers_list, 0 },

    { M_GET, "/api/v1/platforms", ROLE_USER, h_platforms_list, 0 },
    { M_GET, "/api/v1/connections", ROLE_USER, h_connections_list, 0 },
    { M_POST, "/api/v1/connections/tiktok/cookie", ROLE_USER, h_connection_tiktok_cookie, 0 },
    { M_POST, "/api/v1/connections/{platform}/authorize", ROLE_USER, h_connection_authorize, 0 },
    { M_GET, "/api/v1/connections/{id}", ROLE_USER, h_connection_get, 0 },
    { M_PATCH, "/api/v1/connections/{id}", ROLE_USER, h_connection_update, 0 },
    { M_DELETE, "/api/v1/connections/{id}", ROLE_USER, h_connection_delete, 0 },
    { M_POST, "/api/v1/connections/{id}/refresh", ROLE_USER, h_connection_refresh, 0 },
    { M_POST, "/api/v1/connections/{id}/sync", ROLE_USER, h_connection_sync, 0 },
    { M_GET, "/api/v1/videos", ROLE_USER, h_videos_list, 0 },
    { M_GET, "/api/v1/videos/{id}", ROLE_USER, h_video_get, 0 },
    { M_GET, "/api/v1/rules", ROLE_USER, h_rules_list, 0 },
    { M_POST, "/api/v1/rules", ROLE_USER, h_rule_create, 0 },
    { M_GET, "/api/v1/rules/{id}", ROLE_USER, h_rule_get, 0 },
    { M_PATCH, "/api/v1/rules/{id}", ROLE_USER, h_rule_update, 0 },
    { M_DELETE, "/api/v1/rules/{id}", ROLE_USER, h_rule_delete, 0 },
    { M_GET, "/api/v1/posts", ROLE_USER, h_posts_list, 0 },
    { M_GET, "/api/v1/posts/{id}", ROLE_USER, h_post_get, 0 },
    { M_POST, "/api/v1/posts/{id}/retry", ROLE_USER, h_post_retry, 0 },
    { M_GET, "/api/v1/quotas", ROLE_USER, h_quotas_list, 0 },
    { M_POST, "/api/v1/webhooks/tiktok", ROLE_PUBLIC, h_webhook_tiktok, ROUTE_RAW_BODY },
    { M_GET, "/oauth/{platform}/callback", ROLE_PUBLIC, h_oauth_callback, 0 },
};

const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];
