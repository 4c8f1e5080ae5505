-- no-transaction
-- Texts queued before 0010 left sealed copies in the outbox's pages (old row
-- versions and free space): rewrite the table once.
VACUUM FULL outbox;
