-- Agent memory: a knowledge graph of entities, the relations between them and observations about
-- them, kept across sessions and shared by every agent and person (the tools mirror the reference
-- server-memory's). Ids are UUIDv7, so id order is insertion order. Times are RFC 3339 UTC with
-- milliseconds; `created_by` is a principal id. The tools bound names and types to 200 characters
-- and observations to 2,000.
CREATE TABLE memory_entities (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    entity_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- An observation is stored once per entity. The uniqueness is on the SHA-256 of the content: a
-- PostgreSQL btree entry is capped at about 2,700 bytes, which 2,000 characters of UTF-8 can
-- exceed. Deleting an entity deletes its observations first, in the same transaction.
CREATE TABLE memory_observations (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL REFERENCES memory_entities (name),
    content TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (entity, content_hash)
);

-- Relations name their ends, as server-memory's do, and like them may name an entity that does
-- not exist (yet): no foreign key. Deleting an entity deletes the relations to and from it.
CREATE TABLE memory_relations (
    id TEXT PRIMARY KEY,
    from_entity TEXT NOT NULL,
    to_entity TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (from_entity, to_entity, relation_type)
);
CREATE INDEX memory_relations_to ON memory_relations (to_entity);
