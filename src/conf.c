#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "err.h"
#include "log.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef PKGDATADIR
#define PKGDATADIR "/usr/share/crosspost"
#endif

#define CONF_FILE_MAX (256 * 1024)
#define CONF_VALUE_MAX 4096

enum conf_type { T_STR, T_INT, T_BOOL, T_SIZE, T_DURATION, T_MODE, T_ENUM };

#define F_SECRET 1u

struct conf_key {
    const char *name;
    enum conf_type type;
    size_t offset;
    const char *def;
    long long min, max;
    unsigned flags;
    const char *const *names;     /* T_ENUM: value i is names[i] */
    const char *help;
};

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const x_auth_modes[] = { "oauth1", "oauth2", NULL };
static const char *const instagram_uploads[] = { "resumable", "url", NULL };
static const char *const storage_backends[] = { "local", "s3", NULL };

#define OFF(f) offsetof(struct conf, f)
#define KB 1024LL
#define MB (1024LL * 1024)
#define GB (1024LL * 1024 * 1024)
#define SEC 1000LL
#define DAY (24 * 3600 * SEC)

static const struct conf_key keys[] = {
    { "log_level", T_ENUM, OFF(log_level), "info", 0, 3, 0, log_levels,
      "least severe level written: debug, info, warn or error" },
    { "log_file", T_STR, OFF(log_file), "", 0, 0, 0, NULL,
      "append JSON-lines logs to this file; empty = standard error" },

    { "db_host", T_STR, OFF(db_host), "localhost", 0, 0, 0, NULL,
      "MariaDB host (ignored when db_socket is set)" },
    { "db_port", T_INT, OFF(db_port), "3306", 1, 65535, 0, NULL, "MariaDB TCP port" },
    { "db_socket", T_STR, OFF(db_socket), "", 0, 0, 0, NULL,
      "MariaDB unix socket path; wins over db_host/db_port" },
    { "db_user", T_STR, OFF(db_user), "crosspost", 0, 0, 0, NULL, "MariaDB user" },
    { "db_password", T_STR, OFF(db_password), "", 0, 0, F_SECRET, NULL, "MariaDB password" },
    { "db_name", T_STR, OFF(db_name), "crosspost", 0, 0, 0, NULL, "database name" },
    { "db_connect_timeout", T_DURATION, OFF(db_connect_timeout), "2s", 100, 60 * SEC, 0, NULL,
      "give up connecting to MariaDB after this long" },
    { "db_read_timeout", T_DURATION, OFF(db_read_timeout), "30s", SEC, 3600 * SEC, 0, NULL,
      "give up waiting for a MariaDB answer after this long" },
    { "db_write_timeout", T_DURATION, OFF(db_write_timeout), "30s", SEC, 3600 * SEC, 0, NULL,
      "give up sending to MariaDB after this long" },

    { "memcached_servers", T_STR, OFF(memcached_servers), "127.0.0.1:11211", 0, 0, 0, NULL,
      "comma-separated host:port list (consistent hashing), or one unix socket path" },
    { "memcached_timeout", T_DURATION, OFF(memcached_timeout), "500ms", 10, 60 * SEC, 0, NULL,
      "connect and poll timeout for memcached" },

    { "api_listen", T_STR, OFF(api_listen), "unix:/run/crosspost/api.sock", 0, 0, 0, NULL,
      "FastCGI socket: unix:/path (recommended) or host:port" },
    { "api_socket_mode", T_MODE, OFF(api_socket_mode), "0660", 0, 0777, 0, NULL,
      "permissions of the unix socket (octal)" },
    { "api_socket_group", T_STR, OFF(api_socket_group), "", 0, 0, 0, NULL,
      "group given the unix socket, e.g. www-data; empty = unchanged" },
    { "api_children", T_INT, OFF(api_children), "4", 1, 256, 0, NULL,
      "FastCGI worker processes in the pool" },
    { "api_max_requests", T_INT, OFF(api_max_requests), "10000", 0, 100000000, 0, NULL,
      "recycle a child after this many requests; 0 = never" },
    { "api_max_body", T_SIZE, OFF(api_max_body), "1M", 1 * KB, 64 * MB, 0, NULL,
      "largest request body accepted" },
    { "api_graceful_timeout", T_DURATION, OFF(api_graceful_timeout), "30s", 100, 3600 * SEC, 0, NULL,
      "on a graceful stop, how long in-flight requests may take before children are killed" },
    { "api_crash_limit", T_INT, OFF(api_crash_limit), "10", 1, 10000, 0, NULL,
      "abnormal child exits within api_crash_window before respawns are slowed down" },
    { "api_crash_window", T_DURATION, OFF(api_crash_window), "10s", SEC, 3600 * SEC, 0, NULL,
      "window in which abnormal child exits are counted" },
    { "api_pid_file", T_STR, OFF(api_pid_file), "", 0, 0, 0, NULL,
      "write the master's pid here; empty = none" },

    { "json_max_depth", T_INT, OFF(json_max_depth), "32", 2, 1000, 0, NULL,
      "deepest nesting accepted in JSON input" },
    { "json_max_string", T_SIZE, OFF(json_max_string), "64k", 16, 64 * MB, 0, NULL,
      "longest string (or key) accepted in JSON input" },

    { "http_connect_timeout", T_DURATION, OFF(http_connect_timeout), "10s", 100, 600 * SEC, 0, NULL,
      "outbound HTTP: connect timeout" },
    { "http_timeout", T_DURATION, OFF(http_timeout), "60s", SEC, 24 * 3600 * SEC, 0, NULL,
      "outbound HTTP: whole-request timeout" },
    { "http_max_response", T_SIZE, OFF(http_max_response), "8M", 1 * KB, 1 * GB, 0, NULL,
      "outbound HTTP: largest response body kept in memory" },

    { "sql_dir", T_STR, OFF(sql_dir), PKGDATADIR "/sql", 0, 0, 0, NULL,
      "directory of the numbered schema migrations" },

    { "jwt_key_file", T_STR, OFF(jwt_key_file), SYSCONFDIR "/crosspost/jwt.key", 0, 0, 0, NULL,
      "key that signs access tokens (crosspostctl keygen makes it; mode 0600)" },
    { "public_url", T_STR, OFF(public_url), "http://127.0.0.1:8080", 0, 0, 0, NULL,
      "the URL browsers use to reach crosspost: token issuer and the only origin allowed to refresh" },
    { "jwt_audience", T_STR, OFF(jwt_audience), "crosspost-api", 0, 0, 0, NULL,
      "audience claim of access tokens" },
    { "access_token_ttl", T_DURATION, OFF(access_token_ttl), "15m", 60 * SEC, 15 * 60 * SEC, 0, NULL,
      "lifetime of an access token" },
    { "session_lifetime", T_DURATION, OFF(session_lifetime), "30d", 3600 * SEC, 365 * DAY, 0, NULL,
      "absolute lifetime of a sign-in (refresh tokens rotate within it)" },
    { "session_cookie_secure", T_BOOL, OFF(session_cookie_secure), "yes", 0, 1, 0, NULL,
      "mark the refresh cookie Secure; turn off only for local development over plain http" },
    { "signup_enabled", T_BOOL, OFF(signup_enabled), "no", 0, 1, 0, NULL,
      "let anyone create an account with POST /api/v1/auth/signup" },

    { "login_throttle_after", T_INT, OFF(login_throttle_after), "5", 1, 1000, 0, NULL,
      "failed sign-ins of one account before each further attempt waits 1 s, 2 s, 4 s ... (at most 5 min)" },
    { "login_throttle_addr_after", T_INT, OFF(login_throttle_addr_after), "20", 1, 1000000, 0, NULL,
      "failed sign-ins from one client address before each further attempt waits (at most 15 min)" },
    { "login_throttle_window", T_DURATION, OFF(login_throttle_window), "15m", SEC, DAY, 0, NULL,
      "failed sign-ins are counted for this long after the first one" },
    { "api_rate_limit", T_INT, OFF(api_rate_limit), "600", 0, 100000000, 0, NULL,
      "API requests one user or API key may make per api_rate_window; 0 = no limit" },
    { "api_rate_window", T_DURATION, OFF(api_rate_window), "1m", SEC, DAY, 0, NULL,
      "the window of api_rate_limit" },
    { "audit_retention", T_DURATION, OFF(audit_retention), "365d", DAY, 3650 * DAY, 0, NULL,
      "audit events older than this are deleted (daily by the maintenance.prune_audit job, or by `crosspostctl audit prune`)" },

    { "worker_queues", T_STR, OFF(worker_queues), "default:2,media:2,publish:2,maintenance:1", 0, 0, 0, NULL,
      "crosspost-worker's processes per queue, as queue:count pairs separated by commas" },
    { "worker_pid_file", T_STR, OFF(worker_pid_file), "", 0, 0, 0, NULL,
      "where crosspost-worker writes its pid; empty = nowhere" },
    { "worker_claim_batch", T_INT, OFF(worker_claim_batch), "256", 1, 256, 0, NULL,
      "most jobs one worker process claims at once (fewer when jobs are slow)" },
    { "worker_poll_interval", T_DURATION, OFF(worker_poll_interval), "1s", 10, 60 * SEC, 0, NULL,
      "how often an idle worker process looks for due jobs without being woken" },
    { "worker_wake_interval", T_DURATION, OFF(worker_wake_interval), "5ms", 0, 10 * SEC, 0, NULL,
      "how often the supervisor checks for new jobs to wake idle workers; 0 = never (poll only)" },
    { "worker_heartbeat_interval", T_DURATION, OFF(worker_heartbeat_interval), "2s", 100, 60 * SEC, 0, NULL,
      "how often the supervisor records heartbeats and renews the leases of running jobs" },
    { "worker_stale_after", T_DURATION, OFF(worker_stale_after), "15s", SEC, 3600 * SEC, 0, NULL,
      "a worker process whose last heartbeat is older than this counts as dead" },
    { "worker_stall_timeout", T_DURATION, OFF(worker_stall_timeout), "5m", SEC, DAY, 0, NULL,
      "a worker process that shows no sign of life for this long is killed and its jobs retried" },
    { "worker_graceful_timeout", T_DURATION, OFF(worker_graceful_timeout), "60s", 100, 3600 * SEC, 0, NULL,
      "on a graceful stop, running jobs get this long to finish before they are released" },
    { "worker_crash_limit", T_INT, OFF(worker_crash_limit), "10", 1, 10000, 0, NULL,
      "abnormal exits of worker processes within worker_crash_window before respawns slow down" },
    { "worker_crash_window", T_DURATION, OFF(worker_crash_window), "10s", SEC, 3600 * SEC, 0, NULL,
      "the window of worker_crash_limit" },
    { "job_lease", T_DURATION, OFF(job_lease), "30s", SEC, 3600 * SEC, 0, NULL,
      "a claimed job whose lease is not renewed for this long is run again elsewhere" },
    { "job_retry_base", T_DURATION, OFF(job_retry_base), "5s", 10, 3600 * SEC, 0, NULL,
      "the first retry waits up to this long; each later one up to twice as long (full jitter)" },
    { "job_retry_cap", T_DURATION, OFF(job_retry_cap), "1h", SEC, 7 * DAY, 0, NULL,
      "the longest wait before a retry" },
    { "job_retention", T_DURATION, OFF(job_retention), "7d", 60 * SEC, 3650 * DAY, 0, NULL,
      "succeeded and cancelled jobs are deleted this long after they finish" },
    { "dead_job_retention", T_DURATION, OFF(dead_job_retention), "30d", 60 * SEC, 3650 * DAY, 0, NULL,
      "dead jobs (the dead-letter queue) are deleted this long after they die" },
    { "scheduler_interval", T_DURATION, OFF(scheduler_interval), "250ms", 10, 60 * SEC, 0, NULL,
      "how often the scheduler makes due jobs ready and reaps expired leases" },

    { "secrets_key_file", T_STR, OFF(secrets_key_file), "", 0, 0, 0, NULL,
      "key ring that seals OAuth tokens and cookies at rest (AES-256-GCM); made by `crosspostctl keygen`, grown by `crosspostctl rotate-key`" },
    { "sandbox", T_BOOL, OFF(sandbox), "no", 0, 1, 0, NULL,
      "the platforms are crosspost's simulators (tests/sim), not the real ones; shown in /readyz, the API and the UI" },
    { "tiktok_client_key", T_STR, OFF(tiktok_client_key), "", 0, 0, 0, NULL,
      "TikTok app client key (Login Kit); empty = TikTok OAuth is not configured" },
    { "tiktok_client_secret", T_STR, OFF(tiktok_client_secret), "", 0, 0, F_SECRET, NULL,
      "TikTok app client secret; also the key of webhook signatures" },
    { "tiktok_auth_url", T_STR, OFF(tiktok_auth_url), "https://www.tiktok.com/v2/auth/authorize/", 0, 0, 0, NULL,
      "TikTok's authorization page" },
    { "tiktok_api_url", T_STR, OFF(tiktok_api_url), "https://open.tiktokapis.com", 0, 0, 0, NULL,
      "base URL of TikTok's OAuth and Display APIs" },
    { "tiktok_web_url", T_STR, OFF(tiktok_web_url), "https://www.tiktok.com", 0, 0, 0, NULL,
      "base URL of TikTok's web site, for cookie connections" },
    { "tiktok_scopes", T_STR, OFF(tiktok_scopes), "user.info.basic,user.info.profile,video.list", 0, 0, 0, NULL,
      "scopes asked of TikTok (comma-separated)" },
    { "facebook_app_id", T_STR, OFF(facebook_app_id), "", 0, 0, 0, NULL,
      "Meta app id for Instagram (Facebook Login); empty = Instagram is not configured" },
    { "facebook_app_secret", T_STR, OFF(facebook_app_secret), "", 0, 0, F_SECRET, NULL,
      "Meta app secret" },
    { "facebook_auth_url", T_STR, OFF(facebook_auth_url), "https://www.facebook.com", 0, 0, 0, NULL,
      "base URL of Facebook Login's dialog (/{version}/dialog/oauth)" },
    { "facebook_graph_url", T_STR, OFF(facebook_graph_url), "https://graph.facebook.com", 0, 0, 0, NULL,
      "base URL of the Graph API" },
    { "facebook_graph_version", T_STR, OFF(facebook_graph_version), "v21.0", 0, 0, 0, NULL,
      "Graph API version in every path" },
    { "instagram_upload_url", T_STR, OFF(instagram_upload_url), "https://rupload.facebook.com", 0, 0, 0, NULL,
      "base URL of Instagram's resumable uploads" },
    { "instagram_scopes", T_STR, OFF(instagram_scopes), "instagram_basic,instagram_content_publish,pages_show_list,pages_read_engagement,business_management", 0, 0, 0, NULL,
      "permissions asked of Facebook Login (comma-separated)" },
    { "google_client_id", T_STR, OFF(google_client_id), "", 0, 0, 0, NULL,
      "Google OAuth client id for YouTube; empty = YouTube is not configured" },
    { "google_client_secret", T_STR, OFF(google_client_secret), "", 0, 0, F_SECRET, NULL,
      "Google OAuth client secret" },
    { "google_auth_url", T_STR, OFF(google_auth_url), "https://accounts.google.com/o/oauth2/v2/auth", 0, 0, 0, NULL,
      "Google's authorization page" },
    { "google_token_url", T_STR, OFF(google_token_url), "https://oauth2.googleapis.com/token", 0, 0, 0, NULL,
      "Google's token endpoint" },
    { "youtube_api_url", T_STR, OFF(youtube_api_url), "https://www.googleapis.com", 0, 0, 0, NULL,
      "base URL of the YouTube Data API (/youtube/v3) and its uploads (/upload/youtube/v3)" },
    { "youtube_scopes", T_STR, OFF(youtube_scopes), "https://www.googleapis.com/auth/youtube.upload https://www.googleapis.com/auth/youtube.readonly", 0, 0, 0, NULL,
      "scopes asked of Google (space-separated)" },
    { "x_auth_mode", T_ENUM, OFF(x_auth_mode), "oauth1", 0, 1, 0, x_auth_modes,
      "how X accounts are authorised: oauth1 (three-legged OAuth 1.0a) or oauth2 (PKCE)" },
    { "x_consumer_key", T_STR, OFF(x_consumer_key), "", 0, 0, 0, NULL,
      "X app consumer key (OAuth 1.0a); empty = X OAuth 1.0a is not configured" },
    { "x_consumer_secret", T_STR, OFF(x_consumer_secret), "", 0, 0, F_SECRET, NULL,
      "X app consumer secret" },
    { "x_client_id", T_STR, OFF(x_client_id), "", 0, 0, 0, NULL,
      "X OAuth 2 client id (x_auth_mode = oauth2)" },
    { "x_client_secret", T_STR, OFF(x_client_secret), "", 0, 0, F_SECRET, NULL,
      "X OAuth 2 client secret (confidential clients; empty = public client)" },
    { "x_api_url", T_STR, OFF(x_api_url), "https://api.x.com", 0, 0, 0, NULL,
      "base URL of X's API, OAuth 1.0a endpoints and media uploads" },
    { "x_oauth2_auth_url", T_STR, OFF(x_oauth2_auth_url), "https://x.com/i/oauth2/authorize", 0, 0, 0, NULL,
      "X's OAuth 2 authorization page" },
    { "x_scopes", T_STR, OFF(x_scopes), "tweet.read tweet.write users.read media.write offline.access", 0, 0, 0, NULL,
      "scopes asked of X under OAuth 2 (space-separated)" },
    { "oauth_state_ttl", T_DURATION, OFF(oauth_state_ttl), "10m", 60 * SEC, 3600 * SEC, 0, NULL,
      "how long a started authorization may take before its state expires" },
    { "oauth_return_path", T_STR, OFF(oauth_return_path), "/connections", 0, 0, 0, NULL,
      "where the OAuth callback sends the browser, under public_url, with the outcome in the query" },
    { "token_refresh_margin", T_DURATION, OFF(token_refresh_margin), "10m", SEC, DAY, 0, NULL,
      "access tokens that live less than a day are refreshed this long before they expire" },
    { "token_refresh_margin_long", T_DURATION, OFF(token_refresh_margin_long), "7d", 60 * SEC, 30 * DAY, 0, NULL,
      "access tokens that live a day or more (Instagram's 60-day tokens) are refreshed this long before they expire" },
    { "connection_check_interval", T_DURATION, OFF(connection_check_interval), "6h", SEC, 7 * DAY, 0, NULL,
      "credentials that do not expire (cookies, X OAuth 1.0a) are checked this often" },
    { "connection_expiring_window", T_DURATION, OFF(connection_expiring_window), "7d", 0, 90 * DAY, 0, NULL,
      "a connection shows as expiring when a credential that cannot renew itself ends within this" },
    { "connection_scan_interval", T_DURATION, OFF(connection_scan_interval), "1m", SEC, 3600 * SEC, 0, NULL,
      "how often the scheduler looks for connections due a refresh or check" },
    { "sync_interval", T_DURATION, OFF(sync_interval), "5m", 60 * SEC, DAY, 0, NULL,
      "default time between syncs of a source account; each connection may set its own" },

    { "storage_backend", T_ENUM, OFF(storage_backend), "local", 0, 1, 0, storage_backends,
      "where fetched media is kept: local (files under storage_dir) or s3 (an S3-compatible bucket)" },
    { "storage_dir", T_STR, OFF(storage_dir), "/var/lib/crosspost/media", 0, 0, 0, NULL,
      "local storage: the directory of media files and thumbnails (nginx serves it under /media/ with signed links)" },
    { "media_url_secret", T_STR, OFF(media_url_secret), "", 0, 0, F_SECRET, NULL,
      "key of the expiring signed links to local media (nginx secure_link); platforms that fetch by URL get such links" },
    { "media_url_ttl", T_DURATION, OFF(media_url_ttl), "6h", 60 * SEC, 7 * DAY, 0, NULL,
      "how long a signed media link stays valid" },
    { "s3_endpoint", T_STR, OFF(s3_endpoint), "", 0, 0, 0, NULL,
      "S3-compatible endpoint URL (https://s3.us-east-1.amazonaws.com, http://127.0.0.1:4569, ...)" },
    { "s3_bucket", T_STR, OFF(s3_bucket), "", 0, 0, 0, NULL,
      "S3 bucket of media and thumbnails" },
    { "s3_region", T_STR, OFF(s3_region), "us-east-1", 0, 0, 0, NULL,
      "S3 region, part of every SigV4 signature" },
    { "s3_access_key", T_STR, OFF(s3_access_key), "", 0, 0, 0, NULL,
      "S3 access key id" },
    { "s3_secret_key", T_STR, OFF(s3_secret_key), "", 0, 0, F_SECRET, NULL,
      "S3 secret access key" },
    { "s3_part_size", T_SIZE, OFF(s3_part_size), "16M", 5 * MB, 5 * GB, 0, NULL,
      "S3 multipart upload part size (files larger than one part are sent in parts)" },
    { "media_max_bytes", T_SIZE, OFF(media_max_bytes), "2G", 1 * MB, 64 * GB, 0, NULL,
      "largest media file fetched; a larger one fails the fetch permanently" },
    { "fetch_command", T_STR, OFF(fetch_command), "yt-dlp", 0, 0, 0, NULL,
      "the downloader run with a video's share URL (yt-dlp or a compatible program)" },
    { "fetch_timeout", T_DURATION, OFF(fetch_timeout), "30m", 10 * SEC, DAY, 0, NULL,
      "longest a single media fetch may take" },
    { "ffprobe_command", T_STR, OFF(ffprobe_command), "ffprobe", 0, 0, 0, NULL,
      "ffprobe, for reading a stored video's streams" },
    { "ffmpeg_command", T_STR, OFF(ffmpeg_command), "ffmpeg", 0, 0, 0, NULL,
      "ffmpeg, for thumbnails (and, when publishing, fixing media)" },
    { "sync_interval_min", T_DURATION, OFF(sync_interval_min), "1m", 10 * SEC, DAY, 0, NULL,
      "shortest time between syncs of an account that has just posted" },
    { "sync_interval_max", T_DURATION, OFF(sync_interval_max), "1h", 60 * SEC, 7 * DAY, 0, NULL,
      "longest time between syncs of a quiet account" },
    { "webhook_max_age", T_DURATION, OFF(webhook_max_age), "5m", 10 * SEC, 3600 * SEC, 0, NULL,
      "webhook signatures whose timestamp is further than this from now, either way, are refused" },

    { "youtube_chunk_size", T_SIZE, OFF(youtube_chunk_size), "8M", 256 * KB, 1 * GB, 0, NULL,
      "YouTube resumable upload chunk size (rounded down to a multiple of 256 KiB)" },
    { "youtube_daily_units", T_INT, OFF(youtube_daily_units), "10000", 0, 100000000, 0, NULL,
      "YouTube Data API units the project may spend per day (resets at midnight Pacific); 0 = not budgeted" },
    { "youtube_insert_units", T_INT, OFF(youtube_insert_units), "1600", 0, 100000, 0, NULL,
      "units one videos.insert costs" },
    { "youtube_channel_daily_uploads", T_INT, OFF(youtube_channel_daily_uploads), "50", 0, 100000, 0, NULL,
      "uploads per channel per day before YouTube answers uploadLimitExceeded; 0 = not budgeted" },
    { "x_chunk_size", T_SIZE, OFF(x_chunk_size), "4M", 64 * KB, 8 * MB, 0, NULL,
      "X media upload APPEND segment size (at most 8 MiB; 1000 segments per media)" },
    { "x_user_posts", T_INT, OFF(x_user_posts), "100", 0, 1000000, 0, NULL,
      "posts per X account per x_user_window; 0 = not budgeted" },
    { "x_user_window", T_DURATION, OFF(x_user_window), "15m", 60 * SEC, DAY, 0, NULL,
      "the window of x_user_posts" },
    { "x_app_posts", T_INT, OFF(x_app_posts), "10000", 0, 100000000, 0, NULL,
      "posts per X app per 24 hours (all accounts together); 0 = not budgeted" },
    { "instagram_upload", T_ENUM, OFF(instagram_upload), "resumable", 0, 1, 0, instagram_uploads,
      "how Instagram gets the media: resumable (crosspost sends the bytes) or url (Instagram fetches a signed link, so public_url or S3 must be reachable from the internet)" },
    { "instagram_quota_recheck", T_DURATION, OFF(instagram_quota_recheck), "1h", SEC, DAY, 0, NULL,
      "when an Instagram account's 24-hour publishing limit is used up, look again after this long" },
    { "app_usage_defer_percent", T_INT, OFF(app_usage_defer_percent), "90", 1, 100, 0, NULL,
      "Facebook x-app-usage / x-business-use-case-usage at or above this percent defers publishing" },
    { "publish_poll_max", T_DURATION, OFF(publish_poll_max), "2m", SEC, 3600 * SEC, 0, NULL,
      "longest a publish job waits in one run for a platform to finish processing; then it is deferred and polls again later" },
    { "publish_processing_deadline", T_DURATION, OFF(publish_processing_deadline), "2h", 10 * SEC, DAY, 0, NULL,
      "a platform still processing an upload this long after it was sent: the publication fails with the status it last saw" },
    { "publication_stuck_after", T_DURATION, OFF(publication_stuck_after), "6h", 60 * SEC, 30 * DAY, 0, NULL,
      "a publication in work that has not moved for this long is failed as stuck (and can be retried)" },
    { "publication_sweep_interval", T_DURATION, OFF(publication_sweep_interval), "1m", SEC, 3600 * SEC, 0, NULL,
      "how often the scheduler sweeps publications without a job, due deferrals and stuck ones" },
    { "media_transcode_timeout", T_DURATION, OFF(media_transcode_timeout), "30m", 10 * SEC, DAY, 0, NULL,
      "longest ffmpeg may take to fix one video for a platform" },
    { "rule_backfill_max", T_INT, OFF(rule_backfill_max), "50", 0, 10000, 0, NULL,
      "a rule made with backfill publishes at most this many of the source's earlier videos (newest first)" },
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* The table's private companion: values above plus bookkeeping. */
struct conf_private {
    struct conf pub;              /* first, so a struct conf * converts */
    char *file;
    unsigned char source[NKEYS];
};

static struct conf_private *priv(const struct conf *c)
{
    return (struct conf_private *)(void *)c;
}

static const struct conf_key *find_key(const char *name, size_t *index)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0) {
            if (index)
                *index = i;
            return &keys[i];
        }
    return NULL;
}

static int parse_number(const char *s, long long *out, const char **rest)
{
    char *end;

    errno = 0;
    if (!isdigit((unsigned char)*s) && *s != '-')
        return CP_EINVAL;
    *out = strtoll(s, &end, 10);
    if (errno || end == s)
        return CP_EINVAL;
    *rest = end;
    return 0;
}

static int scale(long long v, long long mult, long long *out)
{
    if (v < 0 || (v > 0 && mult > LLONG_MAX / v))
        return CP_ETOOBIG;
    *out = v * mult;
    return 0;
}

/* Convert text to a value of the key's type; *why says what is wrong. */
static int parse_value(const struct conf_key *k, const char *s, long long *num,
                       const char **why)
{
    const char *rest;
    long long v = 0;

    switch (k->type) {
    case T_STR:
        return 0;
    case T_BOOL:
        if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on") || !strcmp(s, "1")) {
            *num = 1;
            return 0;
        }
        if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcmp(s, "0")) {
            *num = 0;
            return 0;
        }
        *why = "is not a boolean (yes/no, true/false, on/off, 1/0)";
        return CP_EINVAL;
    case T_ENUM:
        for (int i = 0; k->names[i]; i++)
            if (!strcasecmp(s, k->names[i])) {
                *num = i;
                return 0;
            }
        *why = "is not one of the allowed values";
        return CP_EINVAL;
    case T_MODE: {
        char *end;
        errno = 0;
        v = strtoll(s, &end, 8);
        if (!*s || *end || errno) {
            *why = "is not an octal mode such as 0660";
            return CP_EINVAL;
        }
        break;
    }
    case T_INT:
        if (parse_number(s, &v, &rest) || *rest) {
            *why = "is not a whole number";
            return CP_EINVAL;
        }
        break;
    case T_SIZE: {
        long long mult = 1;
        if (parse_number(s, &v, &rest)) {
            *why = "is not a size such as 512k, 8M or 1G";
            return CP_EINVAL;
        }
        if (!strcasecmp(rest, "k") || !strcasecmp(rest, "kb")) mult = KB;
        else if (!strcasecmp(rest, "m") || !strcasecmp(rest, "mb")) mult = MB;
        else if (!strcasecmp(rest, "g") || !strcasecmp(rest, "gb")) mult = GB;
        else if (*rest && strcasecmp(rest, "b")) {
            *why = "is not a size such as 512k, 8M or 1G";
            return CP_EINVAL;
        }
        if (scale(v, mult, &v)) {
            *why = "is out of range";
            return CP_EINVAL;
        }
        break;
    }
    case T_DURATION: {
        long long mult = SEC;
        if (parse_number(s, &v, &rest)) {
            *why = "is not a duration such as 250ms, 30s, 5m, 1h or 30d";
            return CP_EINVAL;
        }
        if (!strcmp(rest, "ms")) mult = 1;
        else if (!strcmp(rest, "s") || !*rest) mult = SEC;
        else if (!strcmp(rest, "m")) mult = 60 * SEC;
        else if (!strcmp(rest, "h")) mult = 3600 * SEC;
        else if (!strcmp(rest, "d")) mult = DAY;
        else {
            *why = "is not a duration such as 250ms, 30s, 5m, 1h or 30d";
            return CP_EINVAL;
        }
        if (scale(v, mult, &v)) {
            *why = "is out of range";
            return CP_EINVAL;
        }
        break;
    }
    }
    if (v < k->min || v > k->max) {
        *why = "is out of range";
        return CP_EINVAL;
    }
    *num = v;
    return 0;
}

static void describe_range(const struct conf_key *k, struct buf *err)
{
    switch (k->type) {
    case T_INT:
        buf_printf(err, " (allowed: %lld to %lld)", k->min, k->max);
        break;
    case T_SIZE:
        buf_printf(err, " (allowed: %lld to %lld bytes)", k->min, k->max);
        break;
    case T_DURATION:
        buf_printf(err, " (allowed: %lldms to %lldms)", k->min, k->max);
        break;
    case T_MODE:
        buf_printf(err, " (allowed: 0 to 0777)");
        break;
    case T_ENUM:
        buf_adds(err, " (allowed:");
        for (int i = 0; k->names[i]; i++)
            buf_printf(err, " %s", k->names[i]);
        buf_addc(err, ')');
        break;
    default:
        break;
    }
}

/* Store text into the key's field.  where names the origin for errors. */
static int set_value(struct conf_private *p, size_t idx, const char *s,
                     enum conf_source src, const char *where, struct buf *err)
{
    const struct conf_key *k = &keys[idx];
    char *field = (char *)&p->pub + k->offset;
    const char *why = "is invalid";
    long long num = 0;

    if (strlen(s) > CONF_VALUE_MAX) {
        buf_printf(err, "%s: value of '%s' is longer than %d bytes", where, k->name, CONF_VALUE_MAX);
        return CP_EINVAL;
    }
    if (parse_value(k, s, &num, &why)) {
        if (k->flags & F_SECRET)
            buf_printf(err, "%s: value of '%s' %s", where, k->name, why);
        else
            buf_printf(err, "%s: value '%s' of '%s' %s", where, s, k->name, why);
        describe_range(k, err);
        return CP_EINVAL;
    }
    if (k->type == T_STR) {
        char *copy = strdup(s);
        char **slot = (char **)(void *)field;
        if (!copy)
            return CP_ENOMEM;
        free(*slot);
        *slot = copy;
    } else {
        *(long long *)(void *)field = num;
    }
    p->source[idx] = (unsigned char)src;
    return 0;
}

int conf_defaults(struct conf **out)
{
    struct conf_private *p;
    struct buf err;
    int rc = 0;

    *out = NULL;
    p = calloc(1, sizeof *p);
    if (!p)
        return CP_ENOMEM;
    buf_init(&err, 1024);
    for (size_t i = 0; i < NKEYS && !rc; i++)
        rc = set_value(p, i, keys[i].def, CONF_FROM_DEFAULT, "default", &err);
    buf_free(&err);
    if (rc) {
        conf_free(&p->pub);
        return rc;
    }
    *out = &p->pub;
    return 0;
}

void conf_free(struct conf *c)
{
    struct conf_private *p;

    if (!c)
        return;
    p = priv(c);
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == T_STR)
            free(*(char **)(void *)((char *)c + keys[i].offset));
    free(p->file);
    free(p);
}

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int conf_parse_text(struct conf *c, const char *name, const char *text,
                    struct buf *err)
{
    struct conf_private *p = priv(c);
    char *copy = strdup(text), *line, *next;
    int lineno = 0, rc = 0;

    if (!copy)
        return CP_ENOMEM;
    for (line = copy; line && !rc; line = next) {
        char where[512], *eq, *key, *val;
        size_t idx;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        snprintf(where, sizeof where, "%s:%d", name, lineno);
        line = trim(line);
        if (!*line || *line == '#')
            continue;
        eq = strchr(line, '=');
        if (!eq) {
            buf_printf(err, "%s: expected 'key = value'", where);
            rc = CP_EINVAL;
            break;
        }
        *eq = '\0';
        key = trim(line);
        val = trim(eq + 1);
        if (*val == '"') {
            /* A quoted value ends at the next quote; only a comment may follow. */
            char *close = strchr(val + 1, '"'), *after;
            if (!close) {
                buf_printf(err, "%s: unterminated quoted value of '%s'", where, key);
                rc = CP_EINVAL;
                break;
            }
            *close = '\0';
            after = trim(close + 1);
            if (*after && *after != '#') {
                buf_printf(err, "%s: unexpected text after the quoted value of '%s'", where, key);
                rc = CP_EINVAL;
                break;
            }
            val++;
        } else {
            /* An unquoted value ends at a '#' that starts it or follows a blank. */
            for (char *hash = val; (hash = strchr(hash, '#')) != NULL; hash++)
                if (hash == val || isspace((unsigned char)hash[-1])) {
                    *hash = '\0';
                    val = trim(val);
                    break;
                }
        }
        if (!find_key(key, &idx)) {
            buf_printf(err, "%s: unknown key '%s'", where, key);
            rc = CP_EINVAL;
            break;
        }
        rc = set_value(p, idx, val, CONF_FROM_FILE, where, err);
    }
    free(copy);
    return rc;
}

/* CP_ENOTFOUND (with no message) when the file does not exist, so the
 * default path may be absent while any other failure is still reported. */
static int read_file(const char *path, char **out, struct buf *err)
{
    struct buf b;
    char chunk[4096];
    size_t n;
    FILE *fp = fopen(path, "r");
    int rc = 0;

    *out = NULL;
    if (!fp) {
        if (errno == ENOENT)
            return CP_ENOTFOUND;
        buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
        return CP_EIO;
    }
    buf_init(&b, CONF_FILE_MAX);
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        if ((rc = buf_add(&b, chunk, n)) != 0)
            break;
    if (!rc && ferror(fp)) {
        buf_printf(err, "%s: read error", path);
        rc = CP_EIO;
    } else if (rc == CP_ETOOBIG) {
        buf_printf(err, "%s: larger than %d bytes", path, CONF_FILE_MAX);
        rc = CP_EINVAL;
    }
    fclose(fp);
    if (!rc && memchr(buf_str(&b), '\0', b.len)) {
        /* The text is handled as a C string: a NUL would hide the rest. */
        buf_printf(err, "%s: contains a NUL byte", path);
        rc = CP_EINVAL;
    }
    if (!rc) {
        *out = buf_detach(&b, NULL);
        if (!*out)
            rc = CP_ENOMEM;
    }
    buf_free(&b);
    return rc;
}

int conf_apply_env(struct conf *c, char *const *envp, struct buf *err)
{
    struct conf_private *p = priv(c);

    for (size_t i = 0; i < NKEYS; i++) {
        char var[128];
        const char *val = NULL;
        size_t vlen;

        snprintf(var, sizeof var, "CROSSPOST_%s", keys[i].name);
        for (char *q = var; *q; q++)
            *q = (char)toupper((unsigned char)*q);
        vlen = strlen(var);
        if (envp) {
            for (char *const *e = envp; *e; e++)
                if (!strncmp(*e, var, vlen) && (*e)[vlen] == '=')
                    val = *e + vlen + 1;
        } else {
            val = getenv(var);
        }
        if (val) {
            int rc = set_value(p, i, val, CONF_FROM_ENV, var, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int conf_load(struct conf **out, const char *cli_path, struct buf *err)
{
    struct conf *c = NULL;
    const char *path = cli_path;
    int required = 1, rc;
    char *text = NULL;

    *out = NULL;
    if (!path || !*path)
        path = getenv("CROSSPOST_CONFIG");
    if (!path || !*path) {
        path = SYSCONFDIR "/crosspost/crosspost.conf";
        required = 0;
    }
    rc = conf_defaults(&c);
    if (rc)
        return rc;
    rc = read_file(path, &text, err);
    if (rc == CP_ENOTFOUND && !required) {
        rc = 0;
    } else if (rc == CP_ENOTFOUND) {
        buf_printf(err, "%s: cannot open: %s", path, strerror(ENOENT));
        rc = CP_EIO;
    } else if (!rc) {
        priv(c)->file = strdup(path);
        rc = conf_parse_text(c, path, text, err);
    }
    free(text);
    if (!rc)
        rc = conf_apply_env(c, NULL, err);
    if (rc) {
        conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

const char *conf_file_path(const struct conf *c)
{
    return priv(c)->file;
}

static void format_value(const struct conf_key *k, const char *field, struct buf *out)
{
    long long v = *(const long long *)(const void *)field;

    switch (k->type) {
    case T_STR:
        buf_adds(out, *(char *const *)(const void *)field);
        break;
    case T_BOOL:
        buf_adds(out, v ? "yes" : "no");
        break;
    case T_ENUM:
        buf_adds(out, k->names[v]);
        break;
    case T_MODE:
        buf_printf(out, "0%03llo", v);
        break;
    case T_INT:
        buf_printf(out, "%lld", v);
        break;
    case T_SIZE:
        if (v && v % GB == 0) buf_printf(out, "%lldG", v / GB);
        else if (v && v % MB == 0) buf_printf(out, "%lldM", v / MB);
        else if (v && v % KB == 0) buf_printf(out, "%lldk", v / KB);
        else buf_printf(out, "%lld", v);
        break;
    case T_DURATION:
        if (v && v % DAY == 0) buf_printf(out, "%lldd", v / DAY);
        else if (v && v % (3600 * SEC) == 0) buf_printf(out, "%lldh", v / (3600 * SEC));
        else if (v && v % (60 * SEC) == 0) buf_printf(out, "%lldm", v / (60 * SEC));
        else if (v && v % SEC == 0) buf_printf(out, "%llds", v / SEC);
        else buf_printf(out, "%lldms", v);
        break;
    }
}

int conf_get_text(const struct conf *c, const char *key, struct buf *out)
{
    size_t idx;
    const struct conf_key *k = find_key(key, &idx);

    if (!k)
        return CP_ENOTFOUND;
    if ((k->flags & F_SECRET) && *(*(char *const *)(const void *)((const char *)c + k->offset)))
        return buf_adds(out, "[redacted]");
    format_value(k, (const char *)c + k->offset, out);
    return 0;
}

void conf_print(const struct conf *c, FILE *fp)
{
    static const char *const from[] = { "default", "file", "environment" };
    const struct conf_private *p = priv(c);
    struct buf v;

    fprintf(fp, "# configuration file: %s\n", p->file ? p->file : "(none)");
    buf_init(&v, CONF_VALUE_MAX + 64);
    for (size_t i = 0; i < NKEYS; i++) {
        buf_reset(&v);
        conf_get_text(c, keys[i].name, &v);
        fprintf(fp, "%-22s = %-40s # %s\n", keys[i].name, buf_str(&v), from[p->source[i]]);
    }
    buf_free(&v);
}

void conf_print_defaults(FILE *fp)
{
    struct buf range;

    buf_init(&range, 1024);
    for (size_t i = 0; i < NKEYS; i++) {
        buf_reset(&range);
        describe_range(&keys[i], &range);
        fprintf(fp, "# %s%s\n", keys[i].help, buf_str(&range));
        fprintf(fp, "#%s = %s\n\n", keys[i].name, keys[i].def);
    }
    buf_free(&range);
}
