-- unlockbot schema for PostgreSQL, with native types.

-- The built-in account directory.
CREATE TABLE accounts (
    email                          TEXT PRIMARY KEY,
    mobile                         TEXT,             -- E.164, NULL when none registered
    organisation                   TEXT NOT NULL DEFAULT '',
    same_sign_on                   BOOLEAN NOT NULL DEFAULT FALSE,
    synced_at                      TIMESTAMPTZ,      -- created, synced or transferred
    locked                         BOOLEAN NOT NULL DEFAULT FALSE,
    disabled                       BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_reason                TEXT,
    password_hash                  TEXT,             -- argon2id PHC string
    password_set_at                TIMESTAMPTZ,
    must_change_password           BOOLEAN NOT NULL DEFAULT FALSE,
    -- The password a temporary one replaced, restored if its text finally fails.
    previous_password_hash         TEXT,
    previous_password_set_at       TIMESTAMPTZ,
    previous_must_change_password  BOOLEAN,
    updated_at                     TIMESTAMPTZ NOT NULL
);

CREATE TABLE security_questions (
    account_email TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    question      TEXT NOT NULL,
    answer_hash   TEXT NOT NULL,                     -- argon2id of the normalised answer
    PRIMARY KEY (account_email, position)
);

-- One row per live conversation; the state is the engine's JSON.
CREATE TABLE conversations (
    conversation_key TEXT PRIMARY KEY,
    state            JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- Inbound messages already processed, with the reply given.
CREATE TABLE processed_messages (
    channel     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reply       TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, message_id)
);

CREATE TABLE verification_failures (
    id            BIGSERIAL PRIMARY KEY,
    account_email TEXT NOT NULL,
    failed_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX verification_failures_by_account ON verification_failures (account_email, failed_at);

CREATE TABLE account_blocks (
    account_email TEXT PRIMARY KEY,
    blocked_until TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    channel  TEXT NOT NULL,
    sender   TEXT NOT NULL,                          -- masked
    account  TEXT,
    event    TEXT NOT NULL,
    outcome  TEXT NOT NULL
);

-- Outbound texts; `sealed` (nonce + XChaCha20-Poly1305 ciphertext) is erased
-- once the text is delivered or has finally failed.
CREATE TABLE outbox (
    id                UUID PRIMARY KEY,              -- also the provider reference
    seq               BIGSERIAL NOT NULL,            -- queue order within a turn
    kind              TEXT NOT NULL,
    to_number         TEXT NOT NULL,
    account_email     TEXT NOT NULL,
    conversation_key  TEXT NOT NULL,
    sealed            BYTEA,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    uncertain_claim   BOOLEAN NOT NULL DEFAULT FALSE,
    next_attempt_at   TIMESTAMPTZ NOT NULL,
    lease_until       TIMESTAMPTZ,
    last_error        TEXT,
    provider_id       TEXT,
    failure_reported  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_conversation ON outbox (conversation_key, status, failure_reported);
CREATE INDEX outbox_by_provider_id ON outbox (provider_id);
