-- Personal API keys, for scripts.  A key is "cpk_" + 43 base64url
-- characters (32 random bytes); only its SHA-256 is stored, so the key
-- itself is shown once, when it is made.  prefix keeps its first 12
-- characters so people can tell their keys apart.  A revoked key stays
-- listed (revoked_at set) and never works again.  last_used_at is
-- refreshed at most once a minute per key.
CREATE TABLE IF NOT EXISTS api_keys (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    name VARCHAR(100) NOT NULL,
    prefix CHAR(12) NOT NULL,
    key_hash BINARY(32) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_used_at DATETIME(3) NULL,
    revoked_at DATETIME(3) NULL,
    UNIQUE KEY api_keys_hash (key_hash),
    KEY api_keys_user (user_id, id),
    CONSTRAINT api_keys_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
