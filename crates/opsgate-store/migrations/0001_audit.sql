-- The audit chain. One row per call; written only by the audit writer, never updated.
-- The SQL here is the common subset of SQLite and PostgreSQL: one set of migrations for both.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    time TEXT NOT NULL,
    principal TEXT NOT NULL,
    principal_kind TEXT NOT NULL,
    client TEXT,
    tool TEXT NOT NULL,
    server TEXT,
    target TEXT,
    environment TEXT,
    arguments TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT,
    approval_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    result_bytes BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_log_tool ON audit_log (tool);

-- The head of the chain: the last sequence number and hash. Writers lock this row, which
-- serialises appends across processes, and verify compares it with the last row so that
-- deleting records from the end is detected too.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
