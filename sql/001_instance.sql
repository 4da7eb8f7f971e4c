-- 001_instance.sql - the identity of this installation.
--
-- One row (id = 1) holding a UUID generated when the schema is first
-- created.  GET /readyz reports it, so an operator or a health check can
-- tell which database each host is really talking to.  INSERT IGNORE keeps
-- the first UUID if the statements are ever run again.

CREATE TABLE IF NOT EXISTS instance (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    instance_id CHAR(36) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO instance (id, instance_id) VALUES (1, UUID());
