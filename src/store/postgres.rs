//! The PostgreSQL store: several instances on one database.
//!
//! A turn holds its conversation with a transaction-scoped advisory lock, so
//! two messages of one conversation arriving at two instances are applied
//! one after the other; failures are counted under a per-account advisory
//! lock; outbox texts are claimed with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

use super::{
    AuditEvent, FailureCounts, OutboxItem, ProcessedPrune, Store, StoreError, StoredConversation,
    TurnCommit, TurnTx,
};
use crate::domain::{Channel, ConversationKey, Email};
use crate::sms::SmsKind;

/// Connect to PostgreSQL at `url` and apply the migrations.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(StdDuration::from_secs(5))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

#[derive(Clone)]
pub struct PgStore {
    /// Everything but the turns' own transactions.
    pool: PgPool,
    /// Connections that hold a turn's transaction (and its advisory lock)
    /// for the length of the turn. Kept apart from `pool`: a turn also reads
    /// through `pool` (the directory, blocks) while it holds its own
    /// connection, and with one shared pool enough turns in flight would
    /// hold every connection and wait for each other until the acquire
    /// timeout. More turns than this pool's connections simply queue.
    turns: PgPool,
}

impl PgStore {
    /// `pool` is shared with the directory; the turns' pool is opened here.
    pub async fn new(pool: PgPool, url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let turns = PgPoolOptions::new()
            .max_connections(16)
            // Waiting here is queueing behind other turns, not a fault:
            // allow most of the request timeout.
            .acquire_timeout(StdDuration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool, turns })
    }
}

async fn insert_audit(conn: &mut PgConnection, events: &[AuditEvent]) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(
            "INSERT INTO audit_log (at, channel, sender, account, event, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.at)
        .bind(&e.channel)
        .bind(&e.sender)
        .bind(&e.account)
        .bind(&e.event)
        .bind(&e.outcome)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

struct PgTurn {
    tx: Transaction<'static, Postgres>,
    key: String,
}

#[async_trait]
impl TurnTx for PgTurn {
    async fn processed_reply(&mut self, message_id: &str) -> Result<Option<String>, StoreError> {
        let channel = self.key.split(':').next().unwrap_or_default().to_owned();
        Ok(sqlx::query_scalar(
            "SELECT reply FROM processed_messages WHERE channel = $1 AND message_id = $2",
        )
        .bind(channel)
        .bind(message_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn load_conversation(&mut self) -> Result<Option<StoredConversation>, StoreError> {
        let row =
            sqlx::query("SELECT state, updated_at FROM conversations WHERE conversation_key = $1")
                .bind(&self.key)
                .fetch_optional(&mut *self.tx)
                .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(StoredConversation {
                state: serde_json::from_value(row.get("state"))?,
                updated_at: row.get("updated_at"),
            })),
        }
    }

    async fn lock_account(&mut self, account: &Email) -> Result<(), StoreError> {
        // The same lock the commit takes to count failures (re-entrant).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn unreported_failures(&mut self) -> Result<Vec<(uuid::Uuid, SmsKind)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind FROM outbox WHERE conversation_key = $1 AND status = 'failed' AND NOT failure_reported",
        )
        .bind(&self.key)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("id"), SmsKind::from_stored(r.get("kind"))))
            .collect())
    }

    async fn commit(self: Box<Self>, c: TurnCommit) -> Result<(), StoreError> {
        let PgTurn { mut tx, key } = *self;
        let channel = key.split(':').next().unwrap_or_default().to_owned();
        match &c.state {
            Some(state) => {
                sqlx::query(
                    "INSERT INTO conversations (conversation_key, state, created_at, updated_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (conversation_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(&key)
                .bind(serde_json::to_value(state)?)
                .bind(c.now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM conversations WHERE conversation_key = $1")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some((message_id, reply)) = &c.processed {
            sqlx::query(
                "INSERT INTO processed_messages (channel, message_id, reply, received_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (channel, message_id) DO NOTHING",
            )
            .bind(&channel)
            .bind(message_id)
            .bind(reply)
            .bind(c.now)
            .execute(&mut *tx)
            .await?;
        }
        for account in &c.failures {
            // Conversations on other channels (or instances) may fail for
            // the same account at the same moment: count under a lock.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
                .bind(account.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO verification_failures (account_email, failed_at, sender) VALUES ($1, $2, $3)",
            )
            .bind(account.as_str())
            .bind(c.now)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
            let recent: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM verification_failures WHERE account_email = $1 AND failed_at > $2",
            )
            .bind(account.as_str())
            .bind(c.now - c.block_rule.window)
            .fetch_one(&mut *tx)
            .await?;
            if recent >= i64::from(c.block_rule.max_failures) {
                sqlx::query(
                    "INSERT INTO account_blocks (account_email, blocked_until) VALUES ($1, $2)
                     ON CONFLICT (account_email) DO UPDATE
                     SET blocked_until = GREATEST(account_blocks.blocked_until, excluded.blocked_until)",
                )
                .bind(account.as_str())
                .bind(c.now + c.block_rule.block_for)
                .execute(&mut *tx)
                .await?;
            }
        }
        for account in &c.block_notices {
            sqlx::query("UPDATE account_blocks SET notice_at = $2 WHERE account_email = $1")
                .bind(account.as_str())
                .bind(c.now)
                .execute(&mut *tx)
                .await?;
        }
        for item in &c.outbox {
            sqlx::query(
                "INSERT INTO outbox (id, kind, to_number, account_email, conversation_key, sealed, status, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
            )
            .bind(item.id)
            .bind(item.kind.as_str())
            .bind(&item.to)
            .bind(&item.account)
            .bind(&item.conversation_key)
            .bind(&item.sealed)
            .bind(c.now)
            .execute(&mut *tx)
            .await?;
        }
        for id in &c.reported_failures {
            sqlx::query("UPDATE outbox SET failure_reported = TRUE WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, &c.audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin_turn(&self, key: &ConversationKey) -> Result<Box<dyn TurnTx>, StoreError> {
        let key = key.to_string();
        let mut tx = self.turns.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        Ok(Box::new(PgTurn { tx, key }))
    }

    async fn blocked_until(
        &self,
        account: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT blocked_until FROM account_blocks WHERE account_email = $1 AND blocked_until > $2",
        )
        .bind(account.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn failure_counts(
        &self,
        account: &Email,
        sender: &str,
        since: DateTime<Utc>,
        sender_since: DateTime<Utc>,
    ) -> Result<FailureCounts, StoreError> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM verification_failures WHERE account_email = $1 AND failed_at > $3),
               (SELECT COUNT(*) FROM verification_failures WHERE account_email = $1 AND failed_at > $3 AND sender = $2),
               (SELECT COUNT(DISTINCT account_email) FROM verification_failures WHERE sender = $2 AND failed_at > $4 AND account_email <> $1)",
        )
        .bind(account.as_str())
        .bind(sender)
        .bind(since)
        .bind(sender_since)
        .fetch_one(&self.pool)
        .await?;
        Ok(FailureCounts {
            account: row.get(0),
            account_by_sender: row.get(1),
            other_accounts_by_sender: row.get(2),
        })
    }

    async fn last_block_notice(
        &self,
        account: &Email,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT notice_at FROM account_blocks WHERE account_email = $1")
                .bind(account.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten())
    }

    async fn prune_processed(&self, prune: &ProcessedPrune) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE processed_messages SET reply = '' WHERE received_at < $1 AND reply <> ''",
        )
        .bind(prune.replies_before)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "DELETE FROM processed_messages WHERE (channel = $1 AND received_at < $2) OR (channel <> $1 AND received_at < $3)",
        )
        .bind(Channel::Sms.as_str())
        .bind(prune.sms_ids_before)
        .bind(prune.other_ids_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, channel, sender, account, event, outcome FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                at: r.get("at"),
                channel: r.get("channel"),
                sender: r.get("sender"),
                account: r.get("account"),
                event: r.get("event"),
                outcome: r.get("outcome"),
            })
            .collect())
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        only: Option<&str>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "UPDATE outbox SET
               uncertain_claim = (status = 'sending'),
               status = 'sending', attempts = attempts + 1, lease_until = $2
             WHERE id IN (
               SELECT id FROM outbox
               WHERE ((status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until <= $1))
                 AND ($4::text IS NULL OR conversation_key = $4)
               ORDER BY created_at, seq LIMIT $3
               FOR UPDATE SKIP LOCKED)
             RETURNING id, seq, kind, to_number, account_email, conversation_key, sealed, attempts, uncertain_claim, created_at",
        )
        .bind(now)
        .bind(now + lease)
        .bind(i64::from(limit))
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        // RETURNING comes in no particular order: send in queue order.
        let mut rows = rows;
        rows.sort_by_key(|r| r.get::<i64, _>("seq"));
        Ok(rows
            .into_iter()
            .map(|r| OutboxItem {
                id: r.get("id"),
                kind: SmsKind::from_stored(r.get("kind")),
                to: r.get("to_number"),
                account: r.get("account_email"),
                conversation_key: r.get("conversation_key"),
                sealed: r.get::<Option<Vec<u8>>, _>("sealed").unwrap_or_default(),
                attempts: u32::try_from(r.get::<i32, _>("attempts")).unwrap_or(u32::MAX),
                uncertain: r.get("uncertain_claim"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    async fn outbox_delivered(
        &self,
        id: uuid::Uuid,
        provider_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sealed = NULL, provider_id = $2, finished_at = $3, lease_until = NULL, last_error = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(provider_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn provider_ids_recorded(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut recorded = Vec::new();
        for id in ids {
            let found: Option<String> =
                sqlx::query_scalar("SELECT provider_id FROM outbox WHERE provider_id = $1 LIMIT 1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            recorded.extend(found);
        }
        Ok(recorded)
    }

    async fn outbox_retry(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $2, last_error = $3, lease_until = NULL
             WHERE id = $1 AND status = 'sending' AND attempts = $4",
        )
        .bind(id)
        .bind(next_attempt_at)
        .bind(error)
        .bind(i64::from(attempts))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        error: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE outbox SET status = 'failed', sealed = NULL, last_error = $2, finished_at = $3, lease_until = NULL
             WHERE id = $1 AND status = 'sending' AND attempts = $4",
        )
        .bind(id)
        .bind(error)
        .bind(audit.at)
        .bind(i64::from(attempts))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Another worker has claimed it since: its verdict stands.
            return Ok(false);
        }
        insert_audit(&mut tx, &[audit]).await?;
        tx.commit().await?;
        Ok(true)
    }
}
