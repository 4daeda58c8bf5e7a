-- tandem's own tables (standalone directory and document history), SQLite flavour.
-- Keep this file parallel to ../postgres/0001_init.sql: only column types differ.
-- Timestamps are epoch milliseconds unless the column name says otherwise.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('pending', 'user', 'admin')),
    last_active_at BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE channels (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE channel_members (
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    joined_at    BIGINT NOT NULL,
    last_read_at BIGINT,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_by_user ON channel_members (user_id);

CREATE TABLE documents (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT,
    -- Open WebUI's access_control JSON; NULL means any signed-in user may read and write.
    access_control TEXT,
    -- The last saved {md, html, json} rendering, as JSON.
    content        TEXT,
    -- Highest update seq handed out; bumping it under the row lock serialises appends.
    last_seq       BIGINT NOT NULL DEFAULT 0,
    last_version   BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE document_updates (
    doc_id     TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    data       BLOB NOT NULL,
    author     TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE document_snapshots (
    doc_id       TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    -- The last update seq folded into this state.
    seq          BIGINT NOT NULL,
    state        BLOB NOT NULL,
    state_vector BLOB NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('auto', 'compact', 'restore', 'manual')),
    label        TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (doc_id, version)
);
