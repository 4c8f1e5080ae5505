-- The sealed part of queued texts lives in a small table of its own, so
-- that erasing it can rewrite that table (VACUUM FULL) and leave no copy in
-- its pages, dead row versions or free space. The outbox itself then holds
-- no secret at all.
CREATE TABLE outbox_secrets (
    outbox_id UUID PRIMARY KEY REFERENCES outbox(id) ON DELETE CASCADE,
    sealed    BYTEA NOT NULL                     -- nonce + XChaCha20-Poly1305 ciphertext
);
-- Small values: kept in the table's own pages, never in a TOAST table.
ALTER TABLE outbox_secrets ALTER COLUMN sealed SET STORAGE PLAIN;

INSERT INTO outbox_secrets (outbox_id, sealed) SELECT id, sealed FROM outbox WHERE sealed IS NOT NULL;
ALTER TABLE outbox DROP COLUMN sealed;
