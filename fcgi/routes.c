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
    { M_GET, "/healthz", ROLE_PUBLIC, h_healthz },
    { M_GET, "/readyz", ROLE_PUBLIC, h_readyz },
    { M_GET, "/metrics", ROLE_PUBLIC, h_metrics },
    { M_GET, "/api/v1/version", ROLE_PUBLIC, h_version },

    { M_POST, "/api/v1/auth/login", ROLE_PUBLIC, h_login },
    { M_POST, "/api/v1/auth/signup", ROLE_PUBLIC, h_signup },
    { M_POST, "/api/v1/auth/refresh", ROLE_PUBLIC, h_refresh },
    { M_POST, "/api/v1/auth/logout", ROLE_PUBLIC, h_logout },
    { M_GET, "/api/v1/me", ROLE_USER, h_me },
    { M_POST, "/api/v1/me/password", ROLE_USER, h_me_password },
    { M_GET, "/api/v1/me/api-keys", ROLE_USER, h_apikeys_list },
    { M_POST, "/api/v1/me/api-keys", ROLE_USER, h_apikeys_create },
    { M_DELETE, "/api/v1/me/api-keys/{id}", ROLE_USER, h_apikeys_revoke },

    { M_GET, "/api/v1/admin/users", ROLE_ADMIN, h_admin_users_list },
    { M_POST, "/api/v1/admin/users", ROLE_ADMIN, h_admin_user_create },
    { M_GET, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_get },
    { M_PATCH, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_update },
    { M_DELETE, "/api/v1/admin/users/{id}", ROLE_ADMIN, h_admin_user_delete },
    { M_POST, "/api/v1/admin/users/{id}/revoke-sessions", ROLE_ADMIN, h_admin_user_revoke_sessions },

    { M_GET, "/api/v1/audit", ROLE_USER, h_audit_list },

    { M_GET, "/api/v1/jobs", ROLE_USER, h_jobs_list },
    { M_GET, "/api/v1/jobs/dead", ROLE_USER, h_jobs_dead_list },
    { M_POST, "/api/v1/jobs/dead/retry", ROLE_USER, h_jobs_dead_retry },
    { M_GET, "/api/v1/jobs/{id}", ROLE_USER, h_job_get },
    { M_POST, "/api/v1/jobs/{id}/retry", ROLE_USER, h_job_retry },
    { M_POST, "/api/v1/jobs/{id}/cancel", ROLE_USER, h_job_cancel },
    { M_GET, "/api/v1/workers", ROLE_OPERATOR, h_workers_list },

    { M_GET, "/api/v1/platforms", ROLE_USER, h_platforms_list },
    { M_GET, "/api/v1/connections", ROLE_USER, h_connections_list },
    { M_POST, "/api/v1/connections/tiktok/cookie", ROLE_USER, h_connection_tiktok_cookie },
    { M_POST, "/api/v1/connections/{platform}/authorize", ROLE_USER, h_connection_authorize },
    { M_GET, "/api/v1/connections/{id}", ROLE_USER, h_connection_get },
    { M_PATCH, "/api/v1/connections/{id}", ROLE_USER, h_connection_update },
    { M_DELETE, "/api/v1/connections/{id}", ROLE_USER, h_connection_delete },
    { M_POST, "/api/v1/connections/{id}/refresh", ROLE_USER, h_connection_refresh },
    { M_GET, "/oauth/{platform}/callback", ROLE_PUBLIC, h_oauth_callback },
};

const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];
