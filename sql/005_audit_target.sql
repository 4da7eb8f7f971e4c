-- GET /api/v1/audit?target=type:id reads by target: index it so the filter
-- stays fast on a long log (newest first, like every audit query).
CREATE INDEX IF NOT EXISTS audit_target ON audit_log (target_type, target_id, id);
