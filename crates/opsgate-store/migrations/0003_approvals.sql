-- Durable approval requests: a write that policy sent to humans waits here, across restarts,
-- until enough approvers agree, someone rejects it or it expires; then it runs at most once.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    requester TEXT NOT NULL,
    requester_kind TEXT NOT NULL,
    requester_roles TEXT NOT NULL,
    client TEXT,
    tool TEXT NOT NULL,
    target TEXT,
    environment TEXT,
    -- Canonical JSON of exactly the arguments that will run, and its SHA-256.
    arguments TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    plan TEXT,
    reason TEXT NOT NULL,
    approvals_required BIGINT NOT NULL,
    approver_roles TEXT NOT NULL,
    -- pending, approved, rejected, expired, executing, executed, failed
    status TEXT NOT NULL,
    result TEXT,
    error TEXT
);

CREATE INDEX approvals_status ON approvals (status);

-- One row per human decision; the key stops a principal from counting twice.
CREATE TABLE approval_decisions (
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    principal TEXT NOT NULL,
    roles TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT,
    decided_at TEXT NOT NULL,
    PRIMARY KEY (approval_id, principal)
);

-- Who approved the call an audit record describes (comma-separated principal ids).
ALTER TABLE audit_log ADD COLUMN approvers TEXT;
