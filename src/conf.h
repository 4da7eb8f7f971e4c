/*
 * conf.h - the configuration of every crosspost program.
 *
 * One table (conf.c) declares each key: name, type, default, limits and
 * whether it is a secret.  The same table parses the file, applies the
 * CROSSPOST_* environment overrides, validates, and prints both the
 * documented defaults and the effective values (secrets redacted).
 *
 * The file is found through, in order: the --config argument, the
 * CROSSPOST_CONFIG environment variable, then SYSCONFDIR/crosspost/
 * crosspost.conf (which may be absent: defaults then apply).  Its lines are
 * `key = value`; `#` starts a comment; values may be "double quoted".
 * Every key can be overridden by CROSSPOST_<KEY> (upper case).
 *
 * Sizes take k/M/G suffixes (1024-based); durations take ms/s/m/h (a bare
 * number is seconds); modes are octal.  Durations are stored in ms.
 */
#ifndef CP_CONF_H
#define CP_CONF_H

#include <stdio.h>

#include "buf.h"

struct conf {
    /* logging */
    long long log_level;          /* enum cp_log_level */
    char *log_file;               /* "" = stderr */

    /* MariaDB */
    char *db_host;
    long long db_port;
    char *db_socket;              /* unix socket; wins over host/port */
    char *db_user;
    char *db_password;            /* secret */
    char *db_name;
    long long db_connect_timeout; /* ms */
    long long db_read_timeout;    /* ms */
    long long db_write_timeout;   /* ms */

    /* memcached */
    char *memcached_servers;      /* "host:port,..." or "/path/to.sock" */
    long long memcached_timeout;  /* ms */

    /* the FastCGI pool */
    char *api_listen;             /* "unix:/path" or "host:port" */
    long long api_socket_mode;
    char *api_socket_group;
    long long api_children;
    long long api_max_requests;   /* recycle a child after this many; 0 = never */
    long long api_max_body;       /* bytes */
    long long api_graceful_timeout; /* ms */
    long long api_crash_limit;    /* abnormal exits per api_crash_window ... */
    long long api_crash_window;   /* ms ... before respawns are throttled */
    char *api_pid_file;

    /* limits on JSON input */
    long long json_max_depth;
    long long json_max_string;    /* bytes */

    /* outbound HTTP defaults for platform clients */
    long long http_connect_timeout; /* ms */
    long long http_timeout;         /* ms */
    long long http_max_response;    /* bytes */

    /* where `crosspostctl migrate` and /readyz find the schema files */
    char *sql_dir;

    /* identity */
    char *jwt_key_file;           /* made by `crosspostctl keygen` */
    char *public_url;             /* how browsers reach crosspost; the token issuer */
    char *jwt_audience;
    long long access_token_ttl;   /* ms, at most 15 minutes */
    long long session_lifetime;   /* ms: absolute lifetime of a refresh-token family */
    long long session_cookie_secure; /* bool: Secure flag on the refresh cookie */
    long long signup_enabled;     /* bool */
    long long audit_retention;    /* ms: audit events older than this are pruned */

    /* rate limits (ratelimit.h) */
    long long login_throttle_after;      /* failures of one account before delays */
    long long login_throttle_addr_after; /* failures from one address before delays */
    long long login_throttle_window;     /* ms: how long failures are counted */
    long long api_rate_limit;            /* requests per window per principal; 0 = off */
    long long api_rate_window;           /* ms */

    /* the job queue and crosspost-worker (see src/queue.h, workers/) */
    char *worker_queues;                 /* "queue:processes,..." */
    char *worker_pid_file;
    long long worker_claim_batch;        /* most jobs one claim takes */
    long long worker_poll_interval;      /* ms: idle poll of the jobs table */
    long long worker_wake_interval;      /* ms: new-job check that wakes idle workers; 0 = off */
    long long worker_heartbeat_interval; /* ms */
    long long worker_stale_after;        /* ms: a heartbeat older than this is a dead process */
    long long worker_stall_timeout;      /* ms: a child silent this long is killed */
    long long worker_graceful_timeout;   /* ms: running jobs get this long on a graceful stop */
    long long worker_crash_limit;        /* abnormal exits per worker_crash_window ... */
    long long worker_crash_window;       /* ms ... before respawns are throttled */
    long long job_lease;                 /* ms: a claim's lease, renewed by heartbeats */
    long long job_retry_base;            /* ms: first retry delay before jitter */
    long long job_retry_cap;             /* ms: longest retry delay */
    long long job_retention;             /* ms: succeeded and cancelled jobs are pruned after */
    long long dead_job_retention;        /* ms: dead jobs are pruned after */
    long long scheduler_interval;        /* ms: promotion and lease reaping tick */

    /* secrets at rest and the platforms (src/platforms.h, src/connections.h) */
    char *secrets_key_file;
    long long sandbox;
    char *tiktok_client_key;
    char *tiktok_client_secret;
    char *tiktok_auth_url;
    char *tiktok_api_url;
    char *tiktok_web_url;
    char *tiktok_scopes;
    char *facebook_app_id;
    char *facebook_app_secret;
    char *facebook_auth_url;
    char *facebook_graph_url;
    char *facebook_graph_version;
    char *instagram_upload_url;
    char *instagram_scopes;
    char *google_client_id;
    char *google_client_secret;
    char *google_auth_url;
    char *google_token_url;
    char *youtube_api_url;
    char *youtube_scopes;
    long long x_auth_mode;
    char *x_consumer_key;
    char *x_consumer_secret;
    char *x_client_id;
    char *x_client_secret;
    char *x_api_url;
    char *x_oauth2_auth_url;
    char *x_scopes;
    long long oauth_state_ttl;
    char *oauth_return_path;
    long long token_refresh_margin;
    long long token_refresh_margin_long;
    long long connection_check_interval;
    long long connection_expiring_window;
    long long connection_scan_interval;
    long long sync_interval;

    /* ingestion: media storage, fetching, probing, syncs, webhooks */
    long long storage_backend;
    char *storage_dir;
    char *media_url_secret;
    long long media_url_ttl;
    char *s3_endpoint;
    char *s3_bucket;
    char *s3_region;
    char *s3_access_key;
    char *s3_secret_key;
    long long s3_part_size;
    long long media_max_bytes;
    char *fetch_command;
    long long fetch_timeout;
    char *ffprobe_command;
    char *ffmpeg_command;
    long long sync_interval_min;
    long long sync_interval_max;
    long long webhook_max_age;

    /* publishing: uploads, polling, quotas, media fixes, the sweeper */
    long long youtube_chunk_size;
    long long youtube_daily_units;
    long long youtube_insert_units;
    long long youtube_channel_daily_uploads;
    long long x_chunk_size;
    long long x_user_posts;
    long long x_user_window;
    long long x_app_posts;
    long long instagram_upload;
    long long instagram_quota_recheck;
    long long app_usage_defer_percent;
    long long publish_poll_max;
    long long publish_processing_deadline;
    long long publication_stuck_after;
    long long publication_sweep_interval;
    long long media_transcode_timeout;
    long long rule_backfill_max;
};

/* Where the value of one key came from. */
enum conf_source { CONF_FROM_DEFAULT, CONF_FROM_FILE, CONF_FROM_ENV };

/*
 * Load the configuration: defaults, then the file (see above; cli_path may
 * be NULL), then the environment.  On failure returns CP_EINVAL, CP_EIO or
 * CP_ENOMEM with a sentence naming the file, line and key in *err.
 * The caller frees *out with conf_free().
 */
int conf_load(struct conf **out, const char *cli_path, struct buf *err);

/* Load only the defaults (for tests and `crosspostctl config --defaults`). */
int conf_defaults(struct conf **out);

/* Parse configuration text as if it were a file named name (tests). */
int conf_parse_text(struct conf *c, const char *name, const char *text,
                    struct buf *err);

/* Apply CROSSPOST_* variables from envp (NULL = the process environment). */
int conf_apply_env(struct conf *c, char *const *envp, struct buf *err);

/* Free everything; NULL is a no-op. */
void conf_free(struct conf *c);

/* The file that was read, or NULL when none was. */
const char *conf_file_path(const struct conf *c);

/* Print `key = value` lines with their source; secrets are redacted. */
void conf_print(const struct conf *c, FILE *fp);

/* Print the documented defaults with each key's help text. */
void conf_print_defaults(FILE *fp);

/* Append the value of one key as text (secrets redacted); CP_ENOTFOUND
 * when there is no such key. */
int conf_get_text(const struct conf *c, const char *key, struct buf *out);

#endif
