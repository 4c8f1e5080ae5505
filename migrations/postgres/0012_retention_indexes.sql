-- The maintenance sweep deletes by age.
CREATE INDEX conversations_by_updated_at ON conversations (updated_at);
CREATE INDEX outbox_by_finished_at ON outbox (finished_at);
CREATE INDEX verification_failures_by_time ON verification_failures (failed_at);
CREATE INDEX account_blocks_by_end ON account_blocks (blocked_until);
CREATE INDEX audit_log_by_time ON audit_log (at);
