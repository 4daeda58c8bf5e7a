-- Chat messages touched by the event emitter and the chat streaming API, and channel messages.
-- Keep parallel to ../postgres/0002_chat_and_channel_messages.sql.

CREATE TABLE chat_messages (
    chat_id        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    user_id        TEXT,
    content        TEXT NOT NULL DEFAULT '',
    -- JSON arrays, as Open WebUI keeps them on the message.
    status_history TEXT NOT NULL DEFAULT '[]',
    embeds         TEXT NOT NULL DEFAULT '[]',
    files          TEXT NOT NULL DEFAULT '[]',
    sources        TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);

CREATE TABLE channel_messages (
    id         TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX channel_messages_by_channel ON channel_messages (channel_id, created_at);
