-- Issue 9: failures are counted per sender as well as per account, and the
-- notice texted to an account's mobile when it is blocked is sent at most
-- once a day.
ALTER TABLE verification_failures ADD COLUMN sender TEXT NOT NULL DEFAULT '';
CREATE INDEX verification_failures_by_sender ON verification_failures (sender, failed_at);
ALTER TABLE account_blocks ADD COLUMN notice_at INTEGER;
