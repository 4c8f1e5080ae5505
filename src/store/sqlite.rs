//! The SQLite store: the embedded default.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

use super::{AuditEvent, Store, StoreError, StoredConversation, TurnCommit};
use crate::domain::{Channel, ConversationKey, Email};

/// Milliseconds since the epoch, as stored.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Open (creating if needed) the SQLite database at `url` and apply the
/// migrations.
pub async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

async fn insert_audit(
    conn: &mut sqlx::SqliteConnection,
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

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn processed_reply(
        &self,
        channel: Channel,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT reply FROM processed_messages WHERE channel = $1 AND message_id = $2",
        )
        .bind(channel.as_str())
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get("reply")))
    }

    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError> {
        let row =
            sqlx::query("SELECT state, updated_at FROM conversations WHERE conversation_key = $1")
                .bind(key.to_string())
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(StoredConversation {
                state: serde_json::from_str(row.get::<&str, _>("state"))?,
                updated_at: from_millis(row.get("updated_at")),
            })),
        }
    }

    async fn failures_since(
        &self,
        account: &Email,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM verification_failures WHERE account_email = $1 AND failed_at >= $2",
        )
        .bind(account.as_str())
        .bind(to_millis(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn blocked_until(
        &self,
        account: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT blocked_until FROM account_blocks WHERE account_email = $1 AND blocked_until > $2",
        )
        .bind(account.as_str())
        .bind(to_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(until.map(from_millis))
    }

    async fn commit_turn(&self, c: TurnCommit) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let key = c.key.to_string();
        let now = to_millis(c.now);
        match &c.state {
            Some(state) => {
                sqlx::query(
                    "INSERT INTO conversations (conversation_key, state, created_at, updated_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (conversation_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(&key)
                .bind(serde_json::to_string(state)?)
                .bind(now)
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
            .bind(c.key.channel().as_str())
            .bind(message_id)
            .bind(reply)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for account in &c.failures {
            sqlx::query(
                "INSERT INTO verification_failures (account_email, failed_at) VALUES ($1, $2)",
            )
            .bind(account.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for (account, until) in &c.blocks {
            sqlx::query(
                "INSERT INTO account_blocks (account_email, blocked_until) VALUES ($1, $2)
                 ON CONFLICT (account_email) DO UPDATE SET blocked_until = excluded.blocked_until",
            )
            .bind(account.as_str())
            .bind(to_millis(*until))
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(&mut tx, &c.audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, events).await
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
}
