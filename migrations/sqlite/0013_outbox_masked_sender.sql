-- The sender of the conversation that queued a text, masked as in the audit
-- trail (the conversation key itself is now a keyed hash). Empty for rows
-- queued before: their key is still in clear.
ALTER TABLE outbox ADD COLUMN masked_sender TEXT NOT NULL DEFAULT '';
