-- Ingestion: the videos found on source accounts, their stored media and
-- probe results, the sync schedule of each source connection, and the
-- webhook deliveries already seen.

-- The sync schedule of a source connection (TikTok).
--   next_sync_at     when the scheduler enqueues the next sync (NULL: not
--                    scheduled: not a source, needs reauth, disabled)
--   last_sync_at     when the last sync finished; last_sync_error its error
--   last_video_at    the newest video's create time: recent activity
--                    shortens the interval, quiet lengthens it
--   initial_sync_done 0 until the first sync recorded the back catalogue
--   backfill         1: the first sync reposts the back catalogue too
ALTER TABLE connections
    ADD COLUMN last_sync_at DATETIME(3) NULL,
    ADD COLUMN next_sync_at DATETIME(3) NULL,
    ADD COLUMN last_sync_error VARCHAR(1024) NOT NULL DEFAULT '',
    ADD COLUMN last_video_at DATETIME(3) NULL,
    ADD COLUMN videos_seen INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN initial_sync_done TINYINT(1) NOT NULL DEFAULT 0,
    ADD COLUMN backfill TINYINT(1) NOT NULL DEFAULT 0,
    ADD KEY ix_connections_sync (next_sync_at, id);

-- One row per video per source connection.
--   known     the back catalogue found by a first sync: listed, not fetched,
--             not reposted (unless backfill)
--   new       recorded; its fetch job is queued
--   fetching  a worker is downloading it
--   stored    media stored; its probe job is queued
--   ready     probed, thumbnail made: publishing may use it
--   failed    fetch or probe failed for good (last_error says why)
CREATE TABLE IF NOT EXISTS videos (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    connection_id BIGINT UNSIGNED NOT NULL,
    remote_id VARCHAR(64) NOT NULL,
    state ENUM('known','new','fetching','stored','ready','failed') NOT NULL,
    remote_created_at DATETIME(3) NULL,
    title VARCHAR(255) NOT NULL DEFAULT '',
    description TEXT NULL,
    duration_s INT UNSIGNED NULL,                -- as the platform lists it
    width INT UNSIGNED NULL,
    height INT UNSIGNED NULL,
    share_url VARCHAR(1024) NOT NULL DEFAULT '',
    cover_url VARCHAR(2048) NOT NULL DEFAULT '',
    embed_link VARCHAR(1024) NOT NULL DEFAULT '',
    media_url VARCHAR(2048) NOT NULL DEFAULT '', -- a direct media URL when one is known
    storage_backend ENUM('local','s3') NULL,
    storage_key VARCHAR(512) NULL,
    media_bytes BIGINT UNSIGNED NULL,
    media_sha256 CHAR(64) NULL,
    media_type VARCHAR(64) NULL,
    thumbnail_key VARCHAR(512) NULL,
    probe_duration_ms BIGINT UNSIGNED NULL,
    probe_width INT UNSIGNED NULL,
    probe_height INT UNSIGNED NULL,
    probe_rotation SMALLINT NULL,
    probe_fps DOUBLE NULL,
    probe_video_codec VARCHAR(32) NULL,
    probe_audio_codec VARCHAR(32) NULL,
    probe_audio_rate INT UNSIGNED NULL,
    probe_bitrate BIGINT UNSIGNED NULL,
    probe_container VARCHAR(64) NULL,
    probe_moov_front TINYINT(1) NULL,
    fetched_at DATETIME(3) NULL,
    probed_at DATETIME(3) NULL,
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_videos_remote (connection_id, remote_id),
    KEY ix_videos_user (user_id, id),
    KEY ix_videos_state (state, id),
    CONSTRAINT fk_videos_connection FOREIGN KEY (connection_id) REFERENCES connections (id) ON DELETE CASCADE,
    CONSTRAINT fk_videos_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Webhook deliveries already taken, so a retried or replayed delivery is
-- processed once: the key is the SHA-256 of the raw body.
CREATE TABLE IF NOT EXISTS webhook_events (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source VARCHAR(16) NOT NULL,                 -- tiktok
    dedupe_key CHAR(64) NOT NULL,
    event VARCHAR(64) NOT NULL,
    remote_user VARCHAR(128) NOT NULL DEFAULT '',
    received_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_webhook_events (source, dedupe_key),
    KEY ix_webhook_events_received (received_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Videos with their source, for the mysql client.
CREATE OR REPLACE VIEW video_status AS
SELECT v.id, u.email AS owner, c.platform, c.username AS account, v.remote_id, v.state,
       v.remote_created_at, v.media_bytes, v.probe_duration_ms, v.probe_width, v.probe_height,
       v.probe_video_codec, v.probe_moov_front, v.last_error, v.created_at
FROM videos v JOIN connections c ON c.id = v.connection_id JOIN users u ON u.id = v.user_id;
