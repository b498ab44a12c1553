-- API keys for HTTP callers. Only the SHA-256 of a key is kept; the key itself is shown once, at
-- creation. A revoked key stays as a row (revoked_at set) so that its name is never reused for a
-- different holder and the audit log's "key:NAME" principals keep meaning one key.
-- Times are RFC 3339 text, like the audit log; roles are a JSON array of strings.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
