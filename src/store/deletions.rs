//! The bot's own chat messages to delete later (on Telegram, those that
//! showed the last 4 digits of a registered mobile), kept in the database
//! so that a restart, another instance or an expired conversation still
//! deletes them. One logic for SQLite and PostgreSQL.
//!
//! A row holds the conversation as its keyed hash, the chat id sealed under
//! `OUTBOX_KEY` (never in clear), the message id, and when it is due:
//! never (NULL) while the conversation goes on, at once when it ends or
//! expires, a few minutes ahead for a final reply the user should read.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::StoreError;
use crate::domain::sealing::SealingKey;
use crate::domain::{ConversationKey, SenderKey};
use crate::sql::SqlPool;
use crate::with_pool;

/// A message whose deletion is due, claimed by one worker.
#[derive(Debug, Clone)]
pub struct DueDeletion {
    pub id: String,
    /// The chat's id on its channel, opened from its sealed form; `None`
    /// when it cannot be opened (another `OUTBOX_KEY`): drop the row.
    pub chat: Option<String>,
    pub message_id: i64,
    /// Attempts including this one.
    pub attempts: u32,
}

/// Messages to delete once their conversation is over.
#[async_trait]
pub trait ChatDeletions: Send + Sync {
    /// Remember message `message_id`, sent at `sent_at` in the chat of
    /// `key`: due at `due`, or (None) once the conversation ends.
    async fn remember(
        &self,
        key: &ConversationKey,
        message_id: i64,
        sent_at: DateTime<Utc>,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// The conversation of `key` has ended: its messages waiting for the
    /// end are due at `now` (those already given a time keep it).
    async fn conversation_ended(
        &self,
        key: &ConversationKey,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Messages waiting for the end of a conversation that no longer
    /// exists, or that has been idle since before `idle_since` (it
    /// expired, ended on an instance that died before saying so, or was
    /// swept), are due at `now`.
    async fn expire(
        &self,
        idle_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Forget messages sent before `sent_before` (Telegram refuses to
    /// delete a message older than 48 hours).
    async fn forget_sent_before(&self, sent_before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claim up to `limit` due messages until `now + lease`: no other
    /// worker (of any instance) claims them meanwhile.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DueDeletion>, StoreError>;
    /// The message is deleted (or gone, or will never be): forget it.
    async fn forget(&self, id: &str) -> Result<(), StoreError>;
    /// Try again at `at`, unless another worker claimed it since (its
    /// `attempts` moved on).
    async fn retry(&self, id: &str, attempts: u32, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// [`ChatDeletions`] on the service's database.
pub struct SqlChatDeletions {
    pool: SqlPool,
    senders: SenderKey,
    key: SealingKey,
}

impl SqlChatDeletions {
    /// Conversations are found by their hash under `senders`; chat ids are
    /// sealed under `key` (`OUTBOX_KEY`).
    pub fn new(pool: SqlPool, senders: SenderKey, key: SealingKey) -> Self {
        Self { pool, senders, key }
    }

    /// Associated data of a sealed chat id: its kind and its row.
    fn aad(id: &str) -> Vec<u8> {
        format!("chat_deletions.sealed_chat:{id}").into_bytes()
    }
}

/// The claim, with the row lock the dialect has.
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE chat_deletions SET attempts = attempts + 1, not_before = $2
              WHERE id IN (SELECT id FROM chat_deletions
                            WHERE due_at <= $1 AND (not_before IS NULL OR not_before <= $1)
                            ORDER BY due_at LIMIT $3 ",
            $lock,
            ")
                AND due_at <= $1 AND (not_before IS NULL OR not_before <= $1)
              RETURNING id, sealed_chat, message_id, attempts"
        )
    };
}

#[async_trait]
impl ChatDeletions for SqlChatDeletions {
    async fn remember(
        &self,
        key: &ConversationKey,
        message_id: i64,
        sent_at: DateTime<Utc>,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = self
            .key
            .seal(key.external_id().as_bytes(), &Self::aad(&id))
            .map_err(|e| StoreError::Unsupported(e.to_string()))?;
        let conversation = self.senders.conversation(key);
        with_pool!(&self.pool, |pool, ts| {
            sqlx::query(
                "INSERT INTO chat_deletions (id, conversation_key, sealed_chat, message_id, sent_at, due_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&conversation)
            .bind(&sealed)
            .bind(message_id)
            .bind(ts(sent_at))
            .bind(due.map(ts))
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    async fn conversation_ended(
        &self,
        key: &ConversationKey,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let conversation = self.senders.conversation(key);
        let done = with_pool!(&self.pool, |pool, ts| {
            sqlx::query(
                "UPDATE chat_deletions SET due_at = $1 WHERE conversation_key = $2 AND due_at IS NULL",
            )
            .bind(ts(now))
            .bind(&conversation)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }

    async fn expire(
        &self,
        idle_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = with_pool!(&self.pool, |pool, ts| {
            sqlx::query(
                "UPDATE chat_deletions SET due_at = $1
                  WHERE due_at IS NULL
                    AND NOT EXISTS (SELECT 1 FROM conversations AS c
                                     WHERE c.conversation_key = chat_deletions.conversation_key
                                       AND c.updated_at >= $2)",
            )
            .bind(ts(now))
            .bind(ts(idle_since))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }

    async fn forget_sent_before(&self, sent_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = with_pool!(&self.pool, |pool, ts| {
            sqlx::query("DELETE FROM chat_deletions WHERE sent_at < $1")
                .bind(ts(sent_before))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DueDeletion>, StoreError> {
        // PostgreSQL: skip rows another worker is claiming. SQLite runs one
        // writer at a time. On both, the outer conditions are checked again
        // on the row as it is when updated, so a row claimed meanwhile is
        // left out.
        let sql: &'static str = match self.pool {
            SqlPool::Postgres(_) => claim!("FOR UPDATE SKIP LOCKED"),
            SqlPool::Sqlite(..) => claim!(""),
        };
        let rows: Vec<(String, Vec<u8>, i64, i64)> = with_pool!(&self.pool, |pool, ts| {
            sqlx::query(sql)
                .bind(ts(now))
                .bind(ts(now + lease))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            (
                                r.get::<String, _>("id"),
                                r.get::<Vec<u8>, _>("sealed_chat"),
                                r.get::<i64, _>("message_id"),
                                i64::from(r.get::<i32, _>("attempts")),
                            )
                        })
                        .collect()
                })
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, sealed, message_id, attempts)| DueDeletion {
                chat: self
                    .key
                    .open(&sealed, &Self::aad(&id))
                    .ok()
                    .and_then(|plain| String::from_utf8(plain.to_vec()).ok()),
                id,
                message_id,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            })
            .collect())
    }

    async fn forget(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool, _ts| {
            sqlx::query("DELETE FROM chat_deletions WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn retry(&self, id: &str, attempts: u32, at: DateTime<Utc>) -> Result<(), StoreError> {
        with_pool!(&self.pool, |pool, ts| {
            sqlx::query("UPDATE chat_deletions SET not_before = $1 WHERE id = $2 AND attempts = $3")
                .bind(ts(at))
                .bind(id)
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }
}
