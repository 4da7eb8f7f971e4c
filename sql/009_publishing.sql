-- Publishing: automation rules, one publication per video and destination,
-- media variants made for a platform's limits, and the quota ledger.

-- A rule: videos of one source connection that pass its filters go to its
-- destinations.
--   min_duration_s / max_duration_s  NULL: no bound (the probe's duration)
--   include_words / exclude_words    JSON arrays of words matched, without
--                                    case, against the description and title
--   backfill   0: only videos created after the rule (remote_created_at >=
--              created_at); 1: the source's earlier videos too
--   delay_s    the publish jobs start this long after the video is ready
CREATE TABLE IF NOT EXISTS rules (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    source_connection_id BIGINT UNSIGNED NOT NULL,
    enabled TINYINT(1) NOT NULL DEFAULT 1,
    min_duration_s INT UNSIGNED NULL,
    max_duration_s INT UNSIGNED NULL,
    include_words TEXT NULL,
    exclude_words TEXT NULL,
    backfill TINYINT(1) NOT NULL DEFAULT 0,
    delay_s INT UNSIGNED NOT NULL DEFAULT 0,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    KEY ix_rules_user (user_id, id),
    KEY ix_rules_source (source_connection_id, enabled),
    CONSTRAINT fk_rules_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_rules_source FOREIGN KEY (source_connection_id) REFERENCES connections (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A destination of a rule: a connection and its settings (a JSON object of
-- the platform's keys: caption_template, hashtags, share_to_feed, title
-- template, privacy, ... see docs/API.md).
CREATE TABLE IF NOT EXISTS rule_destinations (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    rule_id BIGINT UNSIGNED NOT NULL,
    connection_id BIGINT UNSIGNED NOT NULL,
    position SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    settings TEXT NOT NULL,
    UNIQUE KEY ux_rule_destinations (rule_id, connection_id),
    KEY ix_rule_destinations_connection (connection_id),
    CONSTRAINT fk_rule_destinations_rule FOREIGN KEY (rule_id) REFERENCES rules (id) ON DELETE CASCADE,
    CONSTRAINT fk_rule_destinations_connection FOREIGN KEY (connection_id) REFERENCES connections (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per video and destination account: a video never goes twice to
-- the same account, whatever rules point there.
--   pending     its publish job is queued (or scheduled after the delay)
--   preparing   media checked against the platform's limits, fixed if needed
--   uploading   bytes going up (bytes_sent / bytes_total)
--   processing  the platform is processing the upload (container, media)
--   publishing  the post call was sent: the outcome is checked remotely
--               before anything is sent again
--   deferred    waiting for a quota or rate window (deferred_until)
--   published   done: remote_id and remote_url
--   failed      gave up: error_code and last_error say why
--   cancelled   an operator stopped it
-- remote_state is the publisher's resumable state (JSON): container id,
-- upload session URI and confirmed offset, media id and segment, the time
-- a post was sent.  settings and the rendered caption are taken when the
-- publication is made, so editing a rule never changes one in flight.
CREATE TABLE IF NOT EXISTS publications (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    video_id BIGINT UNSIGNED NOT NULL,
    rule_id BIGINT UNSIGNED NULL,
    connection_id BIGINT UNSIGNED NOT NULL,
    platform ENUM('tiktok','instagram','youtube','x') NOT NULL,
    state ENUM('pending','preparing','uploading','processing','publishing','deferred',
               'published','failed','cancelled') NOT NULL DEFAULT 'pending',
    settings TEXT NOT NULL,
    caption TEXT NULL,
    title VARCHAR(255) NOT NULL DEFAULT '',
    media_profile VARCHAR(64) NOT NULL DEFAULT '',
    remote_state TEXT NULL,
    remote_id VARCHAR(128) NOT NULL DEFAULT '',
    remote_url VARCHAR(1024) NOT NULL DEFAULT '',
    bytes_sent BIGINT UNSIGNED NOT NULL DEFAULT 0,
    bytes_total BIGINT UNSIGNED NOT NULL DEFAULT 0,
    attempts INT UNSIGNED NOT NULL DEFAULT 0,
    error_code VARCHAR(64) NOT NULL DEFAULT '',
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    deferred_until DATETIME(3) NULL,
    job_id BIGINT UNSIGNED NULL,
    started_at DATETIME(3) NULL,
    published_at DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_publications_destination (video_id, connection_id),
    KEY ix_publications_user (user_id, id),
    KEY ix_publications_state (state, updated_at),
    KEY ix_publications_connection (connection_id, id),
    KEY ix_publications_rule (rule_id, id),
    CONSTRAINT fk_publications_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_publications_video FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE,
    CONSTRAINT fk_publications_rule FOREIGN KEY (rule_id) REFERENCES rules (id) ON DELETE SET NULL,
    CONSTRAINT fk_publications_connection FOREIGN KEY (connection_id) REFERENCES connections (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Media made from a stored video to fit a platform's limits, once per
-- video and profile (the canonical list of fixes, e.g. "faststart" or
-- "h264.scale-1280x1024.faststart"), shared by every destination that
-- needs the same fixes.
CREATE TABLE IF NOT EXISTS media_variants (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    video_id BIGINT UNSIGNED NOT NULL,
    profile VARCHAR(64) NOT NULL,
    storage_backend ENUM('local','s3') NOT NULL,
    storage_key VARCHAR(512) NOT NULL,
    media_bytes BIGINT UNSIGNED NOT NULL,
    media_sha256 CHAR(64) NOT NULL,
    width INT UNSIGNED NOT NULL DEFAULT 0,
    height INT UNSIGNED NOT NULL DEFAULT 0,
    duration_ms BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_media_variants (video_id, profile),
    CONSTRAINT fk_media_variants_video FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The quota ledger: what has been spent in the current window of each
-- budget, and what the platform said about it.
--   platform, scope, scope_key  e.g. youtube/project/<client id>,
--                               youtube/channel/<connection id>,
--                               x/user/<connection id>, x/app/<consumer key>,
--                               instagram/account/<connection id>
--   bucket       units, uploads, posts, media
--   window_start / window_end   the current window (end = when it frees)
--   used / quota the spent amount and the budget (quota 0 = unknown)
--   blocked_until  the platform said "exhausted" until then (429, quota
--                  errors, x-rate-limit-remaining 0); NULL = not blocked
CREATE TABLE IF NOT EXISTS quota_ledger (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    platform ENUM('tiktok','instagram','youtube','x') NOT NULL,
    scope VARCHAR(16) NOT NULL,
    scope_key VARCHAR(128) NOT NULL,
    bucket VARCHAR(16) NOT NULL,
    window_start DATETIME(3) NOT NULL,
    window_end DATETIME(3) NOT NULL,
    used BIGINT UNSIGNED NOT NULL DEFAULT 0,
    quota BIGINT UNSIGNED NOT NULL DEFAULT 0,
    blocked_until DATETIME(3) NULL,
    last_note VARCHAR(255) NOT NULL DEFAULT '',
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_quota_ledger (platform, scope, scope_key, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Publications with their video and destination, for the mysql client.
CREATE OR REPLACE VIEW publication_status AS
SELECT p.id, u.email AS owner, p.video_id, v.remote_id AS source_video, p.platform,
       c.username AS account, p.state, p.rule_id, p.remote_id, p.remote_url,
       p.bytes_sent, p.bytes_total, p.deferred_until, p.error_code, p.last_error,
       p.job_id, p.created_at, p.published_at
FROM publications p JOIN videos v ON v.id = p.video_id
JOIN connections c ON c.id = p.connection_id JOIN users u ON u.id = p.user_id;
