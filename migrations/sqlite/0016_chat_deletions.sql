-- The bot's own Telegram messages to delete (those that showed the last 4
-- digits of a registered mobile), kept until deleted so that a restart or
-- another instance still deletes them. The chat id is sealed under
-- OUTBOX_KEY (never in clear); the conversation is its keyed hash.
-- due_at is NULL while the conversation goes on.
CREATE TABLE chat_deletions (
    id               TEXT PRIMARY KEY NOT NULL,
    conversation_key TEXT NOT NULL,
    sealed_chat      BLOB NOT NULL,
    message_id       INTEGER NOT NULL,
    sent_at          INTEGER NOT NULL,
    due_at           INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    not_before       INTEGER
);
CREATE INDEX chat_deletions_conversation ON chat_deletions (conversation_key);
CREATE INDEX chat_deletions_due ON chat_deletions (due_at);
