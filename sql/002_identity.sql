-- Accounts and the audit log.
--
-- users: one row per person.  Emails are stored lower-cased and are
-- unique.  password_hash is an argon2id PHC string.  token_version is
-- raised whenever existing sessions must stop working at once (logout
-- everywhere, password or role change, disabling): access tokens carry
-- the version they were issued under and are refused after a change.
CREATE TABLE IF NOT EXISTS users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(254) NOT NULL,
    display_name VARCHAR(100) NOT NULL DEFAULT '',
    password_hash VARCHAR(192) NOT NULL,
    role ENUM('user', 'operator', 'admin') NOT NULL DEFAULT 'user',
    disabled TINYINT(1) NOT NULL DEFAULT 0,
    token_version INT UNSIGNED NOT NULL DEFAULT 1,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    last_login_at DATETIME(3) NULL,
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- audit_log: every security-relevant event, newest last.  actor_id is
-- NULL for anonymous clients and for crosspostctl (actor_label says
-- which); owner_id is the user whose trail the event belongs to, so a
-- user can be shown their own events.
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    actor_id BIGINT UNSIGNED NULL,
    actor_label VARCHAR(254) NOT NULL DEFAULT '',
    action VARCHAR(64) NOT NULL,
    outcome ENUM('success', 'failure') NOT NULL DEFAULT 'success',
    target_type VARCHAR(32) NOT NULL DEFAULT '',
    target_id VARCHAR(64) NOT NULL DEFAULT '',
    owner_id BIGINT UNSIGNED NULL,
    client_addr VARCHAR(45) NOT NULL DEFAULT '',
    request_id VARCHAR(64) NOT NULL DEFAULT '',
    detail VARCHAR(1024) NOT NULL DEFAULT '',
    KEY audit_at (at, id),
    KEY audit_actor (actor_id, id),
    KEY audit_owner (owner_id, id),
    KEY audit_action (action, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- For people reading the log with the mariadb client.
CREATE OR REPLACE VIEW audit_recent AS
    SELECT a.id, a.at, COALESCE(u.email, a.actor_label) AS actor, a.action, a.outcome,
           a.target_type, a.target_id, a.client_addr, a.request_id, a.detail
    FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
    ORDER BY a.id DESC LIMIT 200;
