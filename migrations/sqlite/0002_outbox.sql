-- The password a temporary one replaced, restored if its text finally fails.
ALTER TABLE accounts ADD COLUMN previous_password_hash TEXT;
ALTER TABLE accounts ADD COLUMN previous_password_set_at INTEGER;
ALTER TABLE accounts ADD COLUMN previous_must_change_password INTEGER;

-- Outbound texts, written in the same transaction as the turn that causes
-- them and delivered by a worker. `sealed` holds the body and template
-- values encrypted (XChaCha20-Poly1305 under OUTBOX_KEY) and is erased once
-- the text is delivered or has finally failed.
CREATE TABLE outbox (
    id                TEXT PRIMARY KEY NOT NULL,       -- UUID, also the provider reference
    kind              TEXT NOT NULL,                   -- temp_password, notice_unlocked, notice_reset
    to_number         TEXT NOT NULL,                   -- E.164 of the registered mobile
    account_email     TEXT NOT NULL,
    conversation_key  TEXT NOT NULL,
    sealed            BLOB,
    status            TEXT NOT NULL,                   -- pending, sending, sent, failed
    attempts          INTEGER NOT NULL DEFAULT 0,
    uncertain_claim   INTEGER NOT NULL DEFAULT 0,      -- claimed while an earlier attempt's outcome was unknown
    next_attempt_at   INTEGER NOT NULL,
    lease_until       INTEGER,
    last_error        TEXT,
    provider_id       TEXT,
    failure_reported  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_conversation ON outbox (conversation_key, status, failure_reported);
CREATE INDEX outbox_by_provider_id ON outbox (provider_id);
