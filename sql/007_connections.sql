-- Connected platform accounts: one row per (user, platform, remote account).
--
-- Secrets (access_token, refresh_token, token_secret, cookies) are sealed
-- with AES-256-GCM by src/secretbox.c: version | key id | nonce | ciphertext
-- | tag, with associated data "connections.<column>:<id>:<user_id>", so a
-- value copied into another row or another user's row does not open.
-- secrets_key_id is the key id that sealed this row's secrets, so
-- `crosspostctl rotate-key` can find the rows still under an older key.
--
-- status is what the last credential check or refresh found:
--   active        working
--   needs_reauth  refused by the platform (revoked, expired, dead cookies):
--                 the user must connect the account again
--   error         the last refresh or check failed and ran out of retries
--   disabled      switched off by the user (enabled = 0)
-- "expiring" is derived when read: active, but a credential that cannot be
-- renewed automatically runs out within connection_expiring_window.
--
-- refresh_due_at is when the scheduler should next refresh or check the
-- credentials; NULL means nothing is due (needs_reauth, disabled).
CREATE TABLE IF NOT EXISTS connections (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    platform ENUM('tiktok','instagram','youtube','x') NOT NULL,
    auth_kind ENUM('oauth2','oauth1','cookie') NOT NULL,
    remote_id VARCHAR(128) NOT NULL,
    username VARCHAR(255) NOT NULL DEFAULT '',
    display_name VARCHAR(255) NOT NULL DEFAULT '',
    avatar_url VARCHAR(1024) NOT NULL DEFAULT '',
    remote_meta TEXT NULL,                       -- JSON object of platform extras
    status ENUM('active','needs_reauth','error','disabled') NOT NULL DEFAULT 'active',
    enabled TINYINT(1) NOT NULL DEFAULT 1,
    sync_interval_s INT UNSIGNED NULL,           -- NULL: sync_interval from the configuration
    scopes VARCHAR(1024) NOT NULL DEFAULT '',
    access_token VARBINARY(8192) NULL,           -- sealed
    refresh_token VARBINARY(8192) NULL,          -- sealed
    token_secret VARBINARY(1024) NULL,           -- sealed (OAuth 1.0a)
    cookies BLOB NULL,                           -- sealed (TikTok cookie connections)
    secrets_key_id INT UNSIGNED NOT NULL DEFAULT 0,
    access_expires_at DATETIME(3) NULL,
    refresh_expires_at DATETIME(3) NULL,
    refresh_due_at DATETIME(3) NULL,
    token_refreshed_at DATETIME(3) NULL,
    last_checked_at DATETIME(3) NULL,
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    last_error_at DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY ux_connections_account (user_id, platform, remote_id),
    KEY ix_connections_due (refresh_due_at, id),
    KEY ix_connections_key (secrets_key_id, id),
    CONSTRAINT fk_connections_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Connections without their secrets, for the mysql client.
CREATE OR REPLACE VIEW connection_status AS
SELECT c.id, u.email AS owner, c.platform, c.auth_kind, c.username, c.display_name,
       IF(c.enabled = 0, 'disabled', c.status) AS status,
       c.access_expires_at, c.refresh_expires_at, c.refresh_due_at,
       c.token_refreshed_at, c.last_checked_at, c.last_error, c.last_error_at,
       c.secrets_key_id
FROM connections c JOIN users u ON u.id = c.user_id;
