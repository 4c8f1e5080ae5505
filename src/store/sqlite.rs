//! The SQLite store: the embedded default, for one instance.
//!
//! One process owns the file, so a conversation is held by an in-process
//! lock for the length of a turn, and every commit is `BEGIN IMMEDIATE`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::OptionalExtension;
use rusqlite::types::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::OwnedMutexGuard;

use super::sqlite_direct::{DirectSqlite, Statement};
use super::{
    AuditEvent, ConversationChange, FailureCounts, Opening, OutboxItem, ProcessedPrune,
    ReplyWindow, Store, StoreError, StoredConversation, SweepCutoffs, Swept, TurnCommit, TurnTx,
    parse_failures,
};
use crate::domain::{Channel, ConversationKey, Email, SenderKey};
use crate::sms::SmsKind;
use crate::sql::{from_millis, to_millis};

/// Open (creating if needed) the SQLite database at `url` and apply the
/// migrations.
pub async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    connect_creating(url, true).await
}

/// [`connect`] to a database file that must already exist (read-only
/// commands: they must not leave an empty database behind a typo).
pub async fn connect_existing(url: &str) -> Result<SqlitePool, StoreError> {
    connect_creating(url, false).await
}

async fn connect_creating(url: &str, create: bool) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let file = options.get_filename();
    let in_memory = file.as_os_str() == ":memory:" || url.contains("mode=memory");
    if !create && !in_memory && !file.exists() {
        return Err(StoreError::Missing(format!(
            "the database file {} does not exist (nothing to read yet: `unlockbot accounts import FILE.csv` or `unlockbot serve` creates it; is DATABASE_URL right?)",
            file.display()
        )));
    }
    let options = options
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Deleted and overwritten content is zeroed in the file, not just
        // marked free: an erased text leaves no copy in free space.
        .pragma("secure_delete", "ON")
        .busy_timeout(StdDuration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        // The database is a file in this process: there is no connection
        // that can go stale, so no ping (a round trip to the connection's
        // thread) before every query.
        .test_before_acquire(false)
        .acquire_timeout(StdDuration::from_secs(5))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    truncate_wal(&pool).await?;
    Ok(pool)
}

/// The turns' direct access ([`DirectSqlite`]) to the database at `url`,
/// once [`connect`] has created and migrated it. A file: an in-memory
/// database would be another database on every connection.
pub fn open_direct(url: &str) -> Result<DirectSqlite, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let file = options.get_filename();
    if file.as_os_str() == ":memory:" || url.contains("mode=memory") {
        return Err(StoreError::Unsupported(
            "an in-memory SQLite database; use sqlite://FILE".into(),
        ));
    }
    DirectSqlite::open(file)
}

/// After a secret was erased: the erasure itself is committed; a
/// checkpoint that cannot run now is retried by the next one.
async fn after_erasure(pool: &SqlitePool) {
    if let Err(e) = truncate_wal(pool).await {
        tracing::warn!(error = %e, "write-ahead log not truncated; will try again");
    }
}

/// Copy the write-ahead log into the main file and truncate it to nothing,
/// so that earlier versions of erased rows (which the log keeps until a
/// checkpoint) are gone from disk. Returns false when readers kept the
/// checkpoint from completing (the next erasure or sweep tries again).
pub(crate) async fn truncate_wal(pool: &SqlitePool) -> Result<bool, StoreError> {
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    let busy: i64 = row.get(0);
    if busy != 0 {
        tracing::warn!("write-ahead log not truncated (readers active); will try again");
    }
    Ok(busy == 0)
}

/// Serialises turns of one conversation within this process.
#[derive(Default)]
struct KeyLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyLocks {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds, so the map does not grow without bound.
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(key.to_owned()).or_default().clone()
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// A turn's reads and writes, without sqlx's hand-offs.
    direct: Arc<DirectSqlite>,
    /// Conversation keys and message ids are stored as keyed hashes.
    senders: SenderKey,
    locks: Arc<KeyLocks>,
    account_locks: Arc<KeyLocks>,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool, direct: Arc<DirectSqlite>, senders: SenderKey) -> Self {
        Self {
            pool,
            direct,
            senders,
            locks: Arc::default(),
            account_locks: Arc::default(),
        }
    }
}

async fn insert_audit(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(
            "INSERT INTO audit_log (at, channel, sender, account, event, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(to_millis(e.at))
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

fn uuid_of(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap_or_default()
}

struct SqliteTurn {
    direct: Arc<DirectSqlite>,
    /// The conversation, as stored (keyed hash).
    key: String,
    senders: SenderKey,
    account_locks: Arc<KeyLocks>,
    _held: OwnedMutexGuard<()>,
    account_held: Option<OwnedMutexGuard<()>>,
}

/// The channel part of a stored conversation key (`sms:…`).
fn channel_of(key: &str) -> &str {
    key.split(':').next().unwrap_or_default()
}

/// Everything a turn reads, as one statement.
const OPEN: &str = "SELECT
       (SELECT reply FROM processed_messages WHERE channel = ?1 AND message_id = ?2) AS reply,
       c.state, c.updated_at,
       (SELECT group_concat(id || ' ' || kind, ',') FROM outbox
         WHERE conversation_key = ?3 AND status = 'failed' AND failure_reported = 0) AS failed,
       r.window_start, r.replies AS window_replies
     FROM (SELECT 1) AS one
     LEFT JOIN conversations AS c ON c.conversation_key = ?3
     LEFT JOIN sender_replies AS r ON r.conversation_key = ?3";

#[async_trait]
impl TurnTx for SqliteTurn {
    async fn open(&mut self, message_id: Option<&str>) -> Result<Opening, StoreError> {
        let channel = channel_of(&self.key);
        let message_id = message_id.map(|id| self.senders.message_id(channel, id));
        let (processed, state, updated_at, failed, window_start, window_replies) =
            self.direct.read(|conn| {
                conn.prepare_cached(OPEN)?.query_row(
                    rusqlite::params![channel, message_id, self.key],
                    |row| {
                        Ok((
                            row.get::<_, Option<String>>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, Option<i64>>(2)?,
                            row.get::<_, Option<String>>(3)?,
                            row.get::<_, Option<i64>>(4)?,
                            row.get::<_, Option<i64>>(5)?,
                        ))
                    },
                )
            })?;
        let conversation = match state {
            None => Ok(None),
            Some(state) => serde_json::from_str(&state).map(|state| {
                Some(StoredConversation {
                    state,
                    updated_at: from_millis(updated_at.unwrap_or_default()),
                })
            }),
        };
        Ok(Opening {
            processed,
            conversation,
            unreported_failures: parse_failures(failed.as_deref()),
            reply_window: window_start.map(|since| ReplyWindow {
                since: from_millis(since),
                replies: u32::try_from(window_replies.unwrap_or(0)).unwrap_or(u32::MAX),
            }),
        })
    }

    async fn lock_account(&mut self, account: &Email) -> Result<(), StoreError> {
        if self.account_held.is_none() {
            let lock = self.account_locks.get(account.as_str());
            self.account_held = Some(lock.lock_owned().await);
        }
        Ok(())
    }

    async fn commit(self: Box<Self>, c: TurnCommit) -> Result<(), StoreError> {
        let now = to_millis(c.now);
        let channel = channel_of(&self.key);
        let key = || Value::from(self.key.clone());
        let mut writes = Vec::new();
        match &c.state {
            ConversationChange::Keep => {}
            ConversationChange::Save(state) => writes.push(
                Statement::new(
                    "INSERT INTO conversations (conversation_key, state, created_at, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (conversation_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(key())
                .bind(serde_json::to_string(state)?)
                .bind(now)
                .bind(now),
            ),
            ConversationChange::Delete => writes.push(
                Statement::new("DELETE FROM conversations WHERE conversation_key = ?").bind(key()),
            ),
        }
        if let Some((message_id, reply)) = &c.processed {
            writes.push(
                Statement::new(
                    "INSERT INTO processed_messages (channel, message_id, reply, received_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (channel, message_id) DO NOTHING",
                )
                .bind(channel.to_owned())
                .bind(self.senders.message_id(channel, message_id))
                .bind(reply.clone())
                .bind(now),
            );
        }
        for account in &c.failures {
            // Counted after the insert above, in the same transaction: the
            // block is set by the failure that makes one too many.
            writes.push(
                Statement::new(
                    "INSERT INTO verification_failures (account_email, failed_at, sender) VALUES (?, ?, ?)",
                )
                .bind(account.as_str().to_owned())
                .bind(now)
                .bind(key()),
            );
            writes.push(
                Statement::new(
                    "INSERT INTO account_blocks (account_email, blocked_until)
                     SELECT ?1, ?2 WHERE (SELECT COUNT(*) FROM verification_failures WHERE account_email = ?1 AND failed_at > ?3) >= ?4
                     ON CONFLICT (account_email) DO UPDATE SET blocked_until = MAX(blocked_until, excluded.blocked_until)",
                )
                .bind(account.as_str().to_owned())
                .bind(to_millis(c.now + c.block_rule.block_for))
                .bind(to_millis(c.now - c.block_rule.window))
                .bind(i64::from(c.block_rule.max_failures)),
            );
        }
        for account in &c.block_notices {
            writes.push(
                Statement::new("UPDATE account_blocks SET notice_at = ? WHERE account_email = ?")
                    .bind(now)
                    .bind(account.as_str().to_owned()),
            );
        }
        for item in &c.outbox {
            writes.push(
                Statement::new(
                    "INSERT INTO outbox (id, kind, to_number, account_email, conversation_key, masked_sender, sealed, status, next_attempt_at, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                )
                .bind(item.id.to_string())
                .bind(item.kind.as_str().to_owned())
                .bind(item.to.clone())
                .bind(item.account.clone())
                .bind(key())
                .bind(item.masked_sender.clone())
                .bind(item.sealed.clone())
                .bind(now)
                .bind(now),
            );
        }
        for id in &c.reported_failures {
            writes.push(
                Statement::new("UPDATE outbox SET failure_reported = 1 WHERE id = ?")
                    .bind(id.to_string()),
            );
        }
        if let Some(window) = c.replies {
            writes.push(
                Statement::new(
                    "INSERT INTO sender_replies (conversation_key, window_start, replies) VALUES (?, ?, ?)
                     ON CONFLICT (conversation_key) DO UPDATE SET window_start = excluded.window_start, replies = excluded.replies",
                )
                .bind(key())
                .bind(to_millis(window.since))
                .bind(i64::from(window.replies)),
            );
        }
        for e in &c.audit {
            writes.push(
                Statement::new(
                    "INSERT INTO audit_log (at, channel, sender, account, event, outcome) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(to_millis(e.at))
                .bind(e.channel.clone())
                .bind(e.sender.clone())
                .bind(e.account.clone())
                .bind(e.event.clone())
                .bind(e.outcome.clone()),
            );
        }
        self.direct.write(writes).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin_turn(&self, key: &ConversationKey) -> Result<Box<dyn TurnTx>, StoreError> {
        let key = self.senders.conversation(key);
        let held = self.locks.get(&key).lock_owned().await;
        Ok(Box::new(SqliteTurn {
            direct: self.direct.clone(),
            key,
            senders: self.senders.clone(),
            account_locks: self.account_locks.clone(),
            _held: held,
            account_held: None,
        }))
    }

    async fn blocked_until(
        &self,
        account: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until: Option<i64> = self.direct.read(|conn| {
            conn.prepare_cached(
                "SELECT blocked_until FROM account_blocks WHERE account_email = ?1 AND blocked_until > ?2",
            )?
            .query_row(rusqlite::params![account.as_str(), to_millis(now)], |row| row.get(0))
            .optional()
        })?;
        Ok(until.map(from_millis))
    }

    async fn failure_counts(
        &self,
        account: &Email,
        sender: &ConversationKey,
        since: DateTime<Utc>,
        sender_since: DateTime<Utc>,
    ) -> Result<FailureCounts, StoreError> {
        let sender = self.senders.conversation(sender);
        let counts = self.direct.read(|conn| {
            conn.prepare_cached(
                "SELECT
                   (SELECT COUNT(*) FROM verification_failures WHERE account_email = ?1 AND failed_at > ?3),
                   (SELECT COUNT(*) FROM verification_failures WHERE account_email = ?1 AND failed_at > ?3 AND sender = ?2),
                   (SELECT COUNT(DISTINCT account_email) FROM verification_failures WHERE sender = ?2 AND failed_at > ?4 AND account_email <> ?1)",
            )?
            .query_row(
                rusqlite::params![account.as_str(), sender, to_millis(since), to_millis(sender_since)],
                |row| {
                    Ok(FailureCounts {
                        account: row.get(0)?,
                        account_by_sender: row.get(1)?,
                        other_accounts_by_sender: row.get(2)?,
                    })
                },
            )
        })?;
        Ok(counts)
    }

    async fn last_block_notice(
        &self,
        account: &Email,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<i64>> = self.direct.read(|conn| {
            conn.prepare_cached("SELECT notice_at FROM account_blocks WHERE account_email = ?1")?
                .query_row([account.as_str()], |row| row.get(0))
                .optional()
        })?;
        Ok(at.flatten().map(from_millis))
    }

    async fn prune_processed(&self, prune: &ProcessedPrune) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE processed_messages SET reply = '' WHERE received_at < $1 AND reply <> ''",
        )
        .bind(to_millis(prune.replies_before))
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "DELETE FROM processed_messages WHERE (channel = $1 AND received_at < $2) OR (channel <> $1 AND received_at < $3)",
        )
        .bind(Channel::Sms.as_str())
        .bind(to_millis(prune.sms_ids_before))
        .bind(to_millis(prune.other_ids_before))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn sweep(&self, c: SweepCutoffs) -> Result<Swept, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut delete = async |sql: &'static str, before: DateTime<Utc>| {
            sqlx::query(sql)
                .bind(to_millis(before))
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
        // Deleted rows are zeroed in the pages (secure_delete); their
        // earlier versions go with the log.
        after_erasure(&self.pool).await;
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
                at: from_millis(r.get("at")),
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "UPDATE outbox SET
               uncertain_claim = (status = 'sending'),
               status = 'sending', attempts = attempts + 1, lease_until = $2
             WHERE id IN (
               SELECT id FROM outbox
               WHERE ((status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until <= $1))
                 AND ($4 IS NULL OR conversation_key = $4)
               ORDER BY created_at, rowid LIMIT $3)
             RETURNING rowid AS seq, id, kind, to_number, account_email, conversation_key, masked_sender, sealed, attempts, uncertain_claim, created_at",
        )
        .bind(to_millis(now))
        .bind(to_millis(now + lease))
        .bind(i64::from(limit))
        .bind(only.map(|key| self.senders.conversation(key)))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // RETURNING comes in no particular order: send in queue order.
        let mut rows = rows;
        rows.sort_by_key(|r| r.get::<i64, _>("seq"));
        Ok(rows
            .into_iter()
            .map(|r| OutboxItem {
                id: uuid_of(r.get("id")),
                kind: SmsKind::from_stored(r.get("kind")),
                to: r.get("to_number"),
                account: r.get("account_email"),
                conversation_key: r.get("conversation_key"),
                masked_sender: r.get("masked_sender"),
                sealed: r.get::<Option<Vec<u8>>, _>("sealed").unwrap_or_default(),
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
                uncertain: r.get("uncertain_claim"),
                created_at: from_millis(r.get("created_at")),
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
        .bind(id.to_string())
        .bind(provider_id)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        after_erasure(&self.pool).await;
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
        .bind(id.to_string())
        .bind(to_millis(next_attempt_at))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE outbox SET status = 'failed', sealed = NULL, last_error = $2, finished_at = $3, lease_until = NULL
             WHERE id = $1 AND status = 'sending' AND attempts = $4",
        )
        .bind(id.to_string())
        .bind(error)
        .bind(to_millis(audit.at))
        .bind(i64::from(attempts))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Another worker has claimed it since: its verdict stands.
            return Ok(false);
        }
        insert_audit(&mut tx, &[audit]).await?;
        tx.commit().await?;
        after_erasure(&self.pool).await;
        Ok(true)
    }
}
