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
    AuditEvent, ConversationChange, FailureCounts, Opening, OutboxItem, ProcessedPrune,
    ReplyWindow, Store, StoreError, StoredConversation, SweepCutoffs, Swept, TurnCommit, TurnTx,
    parse_failures,
};
use crate::domain::{Channel, ConversationKey, Email, SenderKey};
use crate::sms::SmsKind;

/// Connect to PostgreSQL at `url` and apply the migrations.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = pool_options()
        .max_connections(16)
        .acquire_timeout(StdDuration::from_secs(5))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

fn pool_options() -> PgPoolOptions {
    // Every connection is pinged before use (sqlx's default). Pinging only
    // connections idle for a while saved a round trip per turn, but after
    // the server dropped its connections (a restart, a failover) the first
    // turn on each stale connection then failed with a 503.
    PgPoolOptions::new().test_before_acquire(true)
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
    /// Conversation keys and message ids are stored as keyed hashes.
    senders: SenderKey,
}

impl PgStore {
    /// `pool` is shared with the directory; the turns' pool is opened here.
    pub async fn new(pool: PgPool, url: &str, senders: SenderKey) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let turns = pool_options()
            .max_connections(16)
            // Waiting here is queueing behind other turns, not a fault:
            // allow most of the request timeout.
            .acquire_timeout(StdDuration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            turns,
            senders,
        })
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

async fn erase_secret(conn: &mut PgConnection, id: uuid::Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox_secrets WHERE outbox_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PgStore {
    /// Rewrite the table of sealed texts into fresh pages. A `DELETE` (even
    /// followed by a plain `VACUUM`) leaves the bytes of the erased row in
    /// the table's pages; `VACUUM FULL` copies only live rows into a new
    /// file and drops the old one. It must copy too any row version that a
    /// transaction still running may see, so it first waits (briefly) until
    /// no snapshot of this database may see the erased rows; if one still
    /// may, the table is rewritten again as soon as none does
    /// (checked every second, for up to 10 minutes; after that the next
    /// erasure or the retention sweep does it).
    pub(crate) async fn rewrite_secrets(&self) {
        // Transaction ids below `horizon` had all ended when this rewrite
        // began: the erasure among them.
        let horizon = match sqlx::query_scalar::<_, i64>(
            "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::numeric % 4294967296)::bigint",
        )
        .fetch_one(&self.pool)
        .await
        {
            Ok(horizon) => horizon,
            Err(e) => {
                tracing::warn!(error = %e, "cannot see the transactions in flight; rewriting anyway");
                vacuum_secrets(&self.pool).await;
                return;
            }
        };
        let mut clear = false;
        for _ in 0..100 {
            match older_snapshots(&self.pool, horizon).await {
                Ok(0) => {
                    clear = true;
                    break;
                }
                Ok(_) => tokio::time::sleep(StdDuration::from_millis(20)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot see the transactions in flight; rewriting anyway");
                    break;
                }
            }
        }
        vacuum_secrets(&self.pool).await;
        if clear {
            return;
        }
        tracing::info!(
            "a snapshot older than an erasure is open; the sealed texts are rewritten again once it is gone"
        );
        let pool = self.pool.clone();
        tokio::spawn(async move {
            for _ in 0..600 {
                tokio::time::sleep(StdDuration::from_secs(1)).await;
                if let Ok(0) = older_snapshots(&pool, horizon).await {
                    vacuum_secrets(&pool).await;
                    return;
                }
            }
            tracing::warn!(
                "a snapshot older than an erasure is still open after 10 minutes; the retention sweep rewrites the sealed texts later"
            );
        });
    }
}

/// `VACUUM FULL outbox_secrets` (see [`PgStore::rewrite_secrets`]).
async fn vacuum_secrets(pool: &PgPool) {
    if let Err(e) = sqlx::query("VACUUM FULL outbox_secrets")
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "outbox_secrets not rewritten; will try again");
    }
}

/// Backends (other than ours) whose snapshot may still see a row version
/// deleted by a transaction below `horizon` (their snapshot's xmin, or
/// their own transaction id, is older than `horizon`), and replication
/// slots holding such an xmin: while one exists, `VACUUM FULL` may copy
/// such a row version. Counting the snapshot rather than when a
/// transaction began also catches a newer transaction whose snapshot was
/// taken while an older one still ran. Every database counts, not only
/// ours: some backends hold the horizon of all of them (measured: a
/// `CREATE DATABASE` or `DROP DATABASE` in progress elsewhere made `VACUUM
/// FULL` keep the erased rows; so does a standby's `hot_standby_feedback`).
async fn older_snapshots(pool: &PgPool, horizon: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM pg_stat_activity
                  WHERE pid <> pg_backend_pid()
                    AND (age(backend_xmin) > age($1::text::xid) OR age(backend_xid) > age($1::text::xid)))
              + (SELECT COUNT(*) FROM pg_replication_slots
                  WHERE age(xmin) > age($1::text::xid) OR age(catalog_xmin) > age($1::text::xid))",
    )
    .bind(horizon.to_string())
    .fetch_one(pool)
    .await
}

struct PgTurn {
    tx: Transaction<'static, Postgres>,
    /// The conversation, as stored (keyed hash).
    key: String,
    senders: SenderKey,
}

/// Everything a turn reads, as one statement (taken after the
/// conversation's lock, so it sees the previous turn's commit).
const OPEN: &str = "SELECT
       (SELECT reply FROM processed_messages WHERE channel = $1 AND message_id = $2) AS reply,
       c.state, c.updated_at,
       (SELECT string_agg(id::text || ' ' || kind, ',') FROM outbox
         WHERE conversation_key = $3 AND status = 'failed' AND NOT failure_reported) AS failed,
       r.window_start, r.replies AS window_replies
     FROM (SELECT 1) AS one
     LEFT JOIN conversations AS c ON c.conversation_key = $3
     LEFT JOIN sender_replies AS r ON r.conversation_key = $3";

/// The conversation's new state (or its deletion, or neither), the inbound
/// message's id and the reply, the sender's reply window, and the audit
/// events (as arrays), written by one statement.
const SAVE_TURN: &str = "WITH
       saved AS (
         INSERT INTO conversations (conversation_key, state, created_at, updated_at)
         SELECT $1, $2, $3, $3 WHERE $2::jsonb IS NOT NULL
         ON CONFLICT (conversation_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at),
       ended AS (
         DELETE FROM conversations WHERE conversation_key = $1 AND $13::boolean),
       replies AS (
         INSERT INTO sender_replies (conversation_key, window_start, replies)
         SELECT $1, $14, $15 WHERE $14::timestamptz IS NOT NULL
         ON CONFLICT (conversation_key) DO UPDATE SET window_start = excluded.window_start, replies = excluded.replies),
       processed AS (
         INSERT INTO processed_messages (channel, message_id, reply, received_at)
         SELECT $4, $5, $6, $3 WHERE $5::text IS NOT NULL
         ON CONFLICT (channel, message_id) DO NOTHING)
     INSERT INTO audit_log (at, channel, sender, account, event, outcome)
     SELECT * FROM unnest($7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";

/// The channel part of a stored conversation key (`sms:…`).
fn channel_of(key: &str) -> &str {
    key.split(':').next().unwrap_or_default()
}

#[async_trait]
impl TurnTx for PgTurn {
    async fn open(&mut self, message_id: Option<&str>) -> Result<Opening, StoreError> {
        let channel = channel_of(&self.key);
        let row = sqlx::query(OPEN)
            .bind(channel)
            .bind(message_id.map(|id| self.senders.message_id(channel, id)))
            .bind(&self.key)
            .fetch_one(&mut *self.tx)
            .await?;
        let conversation = match row.get::<Option<serde_json::Value>, _>("state") {
            None => Ok(None),
            Some(state) => serde_json::from_value(state).map(|state| {
                Some(StoredConversation {
                    state,
                    updated_at: row.get("updated_at"),
                })
            }),
        };
        Ok(Opening {
            processed: row.get("reply"),
            conversation,
            unreported_failures: parse_failures(row.get("failed")),
            reply_window: row
                .get::<Option<chrono::DateTime<chrono::Utc>>, _>("window_start")
                .map(|since| ReplyWindow {
                    since,
                    replies: u32::try_from(
                        row.get::<Option<i32>, _>("window_replies").unwrap_or(0),
                    )
                    .unwrap_or(u32::MAX),
                }),
        })
    }

    async fn lock_account(&mut self, account: &Email) -> Result<(), StoreError> {
        // The same lock the commit takes to count failures (re-entrant).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>, c: TurnCommit) -> Result<(), StoreError> {
        let PgTurn {
            mut tx,
            key,
            senders: self_senders,
        } = *self;
        let channel = channel_of(&key).to_owned();
        let (state, delete) = match &c.state {
            ConversationChange::Save(state) => (Some(serde_json::to_value(state)?), false),
            ConversationChange::Delete => (None, true),
            ConversationChange::Keep => (None, false),
        };
        let (message_id, reply) = match &c.processed {
            Some((id, reply)) => (
                Some(self_senders.message_id(&channel, id)),
                Some(reply.as_str()),
            ),
            None => (None, None),
        };
        let audit = &c.audit;
        sqlx::query(SAVE_TURN)
            .bind(&key)
            .bind(state)
            .bind(c.now)
            .bind(&channel)
            .bind(message_id)
            .bind(reply)
            .bind(audit.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(audit.iter().map(|e| e.channel.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|e| e.sender.as_str()).collect::<Vec<_>>())
            .bind(
                audit
                    .iter()
                    .map(|e| e.account.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(audit.iter().map(|e| e.event.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>())
            .bind(delete)
            .bind(c.replies.map(|w| w.since))
            .bind(
                c.replies
                    .map(|w| i32::try_from(w.replies).unwrap_or(i32::MAX)),
            )
            .execute(&mut *tx)
            .await?;
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
                "INSERT INTO outbox (id, kind, to_number, account_email, conversation_key, masked_sender, status, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
            )
            .bind(item.id)
            .bind(item.kind.as_str())
            .bind(&item.to)
            .bind(&item.account)
            .bind(&key)
            .bind(&item.masked_sender)
            .bind(c.now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO outbox_secrets (outbox_id, sealed) VALUES ($1, $2)")
                .bind(item.id)
                .bind(&item.sealed)
                .execute(&mut *tx)
                .await?;
        }
        for id in &c.reported_failures {
            sqlx::query("UPDATE outbox SET failure_reported = TRUE WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
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
        let key = self.senders.conversation(key);
        // The stored key is `channel:hex`: as a literal, the lock goes in
        // the same round trip as BEGIN (a simple query takes no
        // parameters). Anything else would be bound, in a second trip.
        let tx = if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':') {
            self.turns
                .begin_with(sqlx::AssertSqlSafe(format!(
                    "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{key}', 0))"
                )))
                .await?
        } else {
            let mut tx = self.turns.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            tx
        };
        Ok(Box::new(PgTurn {
            tx,
            key,
            senders: self.senders.clone(),
        }))
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
        sender: &ConversationKey,
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
        .bind(self.senders.conversation(sender))
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

    async fn sweep(&self, c: SweepCutoffs) -> Result<Swept, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut delete = async |sql: &'static str, before: DateTime<Utc>| {
            sqlx::query(sql)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
        };
        let swept = Swept {
            conversations: delete(
                "DELETE FROM conversations WHERE updated_at < $1",
                c.conversations_idle_since,
            )
            .await?,
            outbox: delete(
                "DELETE FROM outbox WHERE status IN ('sent', 'failed') AND finished_at < $1",
                c.outbox_finished_before,
            )
            .await?,
            verification_failures: delete(
                "DELETE FROM verification_failures WHERE failed_at < $1",
                c.failures_before,
            )
            .await?,
            account_blocks: delete(
                "DELETE FROM account_blocks WHERE blocked_until < $1",
                c.blocks_ended_before,
            )
            .await?,
            audit_log: delete("DELETE FROM audit_log WHERE at < $1", c.audit_before).await?,
            sender_replies: delete(
                "DELETE FROM sender_replies WHERE window_start < $1",
                c.reply_windows_before,
            )
            .await?,
        };
        tx.commit().await?;
        // Also catches row versions an earlier rewrite had to keep for a
        // transaction then running.
        self.rewrite_secrets().await;
        Ok(swept)
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

    async fn record_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &[event]).await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        only: Option<&ConversationKey>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            // The rows are chosen and locked once, in a CTE of their own: as
            // `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` the
            // planner may run the sub-select again per row, and each run
            // skips the rows this statement has just updated, so more than
            // `n` rows were claimed (seen with the join below).
            "WITH next AS MATERIALIZED (
               SELECT id FROM outbox
               WHERE ((status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until <= $1))
                 AND ($4::text IS NULL OR conversation_key = $4)
               ORDER BY created_at, seq LIMIT $3
               FOR UPDATE SKIP LOCKED),
             claimed AS (
               UPDATE outbox o SET
                 uncertain_claim = (o.status = 'sending'),
                 status = 'sending', attempts = o.attempts + 1, lease_until = $2
               FROM next WHERE o.id = next.id
               RETURNING o.id, o.seq, o.kind, o.to_number, o.account_email, o.conversation_key, o.masked_sender, o.attempts, o.uncertain_claim, o.created_at)
             SELECT c.*, s.sealed FROM claimed c LEFT JOIN outbox_secrets s ON s.outbox_id = c.id",
        )
        .bind(now)
        .bind(now + lease)
        .bind(i64::from(limit))
        .bind(only.map(|key| self.senders.conversation(key)))
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
                masked_sender: r.get("masked_sender"),
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE outbox SET status = 'sent', provider_id = $2, finished_at = $3, lease_until = NULL, last_error = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(provider_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        erase_secret(&mut tx, id).await?;
        tx.commit().await?;
        self.rewrite_secrets().await;
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
            "UPDATE outbox SET status = 'failed', last_error = $2, finished_at = $3, lease_until = NULL
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
        erase_secret(&mut tx, id).await?;
        insert_audit(&mut tx, &[audit]).await?;
        tx.commit().await?;
        self.rewrite_secrets().await;
        Ok(true)
    }
}
