-- Operational events in one shape, from webhooks and from opsgate itself (executed writes,
-- approval decisions). `source` + `delivery_id` identify a delivery: a redelivery is stored
-- once. Times are RFC 3339 UTC with milliseconds (fixed width, so text order is time order).
-- `attributes` is a JSON object of strings, `links` a JSON array of URLs.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT,
    environment TEXT,
    summary TEXT NOT NULL,
    attributes TEXT NOT NULL,
    links TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    UNIQUE (source, delivery_id)
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_service_time ON events (service, time);
