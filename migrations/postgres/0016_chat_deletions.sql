-- The bot's own Telegram messages to delete (those that showed the last 4
-- digits of a registered mobile), kept until deleted so that a restart or
-- another instance still deletes them. The chat id is sealed under
-- OUTBOX_KEY (never in clear); the conversation is its keyed hash.
-- due_at is NULL while the conversation goes on.
CREATE TABLE chat_deletions (
    id               TEXT PRIMARY KEY,
    conversation_key TEXT NOT NULL,
    sealed_chat      BYTEA NOT NULL,
    message_id       BIGINT NOT NULL,
    sent_at          TIMESTAMPTZ NOT NULL,
    due_at           TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    not_before       TIMESTAMPTZ
);
CREATE INDEX chat_deletions_conversation ON chat_deletions (conversation_key);
CREATE INDEX chat_deletions_due ON chat_deletions (due_at);
