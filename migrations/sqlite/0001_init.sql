-- unlockbot schema for SQLite. Times are Unix milliseconds (INTEGER) so that
-- comparisons are numeric; booleans are 0/1.

-- The built-in account directory.
CREATE TABLE accounts (
    email                TEXT PRIMARY KEY NOT NULL,
    mobile               TEXT,               -- E.164, NULL when none registered
    organisation         TEXT NOT NULL DEFAULT '',
    same_sign_on         INTEGER NOT NULL DEFAULT 0,
    synced_at            INTEGER,            -- created, synced or transferred
    locked               INTEGER NOT NULL DEFAULT 0,
    disabled             INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    password_hash        TEXT,               -- argon2id PHC string
    password_set_at      INTEGER,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE security_questions (
    account_email TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    question      TEXT NOT NULL,
    answer_hash   TEXT NOT NULL,             -- argon2id of the normalised answer
    PRIMARY KEY (account_email, position)
);

-- One row per live conversation; the state is the engine's JSON.
CREATE TABLE conversations (
    conversation_key TEXT PRIMARY KEY NOT NULL,
    state            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Inbound messages already processed (Twilio MessageSid, Telegram update_id),
-- with the reply given, so retries are answered without being processed twice.
CREATE TABLE processed_messages (
    channel     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reply       TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (channel, message_id)
);

CREATE TABLE verification_failures (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_email TEXT NOT NULL,
    failed_at     INTEGER NOT NULL
);
CREATE INDEX verification_failures_by_account ON verification_failures (account_email, failed_at);

CREATE TABLE account_blocks (
    account_email TEXT PRIMARY KEY NOT NULL,
    blocked_until INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    channel  TEXT NOT NULL,
    sender   TEXT NOT NULL,                  -- masked
    account  TEXT,
    event    TEXT NOT NULL,
    outcome  TEXT NOT NULL
);
