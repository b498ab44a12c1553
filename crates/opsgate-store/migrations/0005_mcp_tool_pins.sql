-- Pins of federated servers' tools: the SHA-256 of each tool's definition (name, title,
-- description, schemas, annotations) as first seen, or as last trusted with `opsgate mcp trust`.
-- A listing whose hash differs from its pin is quarantined: hidden from clients and denied.
-- `definition` is the canonical JSON the hash was taken over, kept to show what changed.
CREATE TABLE mcp_tool_pins (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    hash TEXT NOT NULL,
    definition TEXT NOT NULL,
    pinned_at TEXT NOT NULL,
    -- Who trusted this definition; NULL when it was pinned on first sight.
    trusted_by TEXT,
    PRIMARY KEY (server, tool)
);
