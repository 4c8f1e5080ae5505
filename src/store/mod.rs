//! Storage of conversations, processed inbound messages, verification
//! failures, blocks and the audit trail, behind one trait so that a second
//! backend (PostgreSQL) slots in without touching the engine.

pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::dialog::ConversationState;
use crate::domain::{Channel, ConversationKey, Email};

/// The store could not be reached or refused the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored conversation state is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A conversation as stored after its last turn.
#[derive(Debug, Clone)]
pub struct StoredConversation {
    pub state: ConversationState,
    pub updated_at: DateTime<Utc>,
}

/// One line of the audit trail. Never holds a secret: no answer, no password,
/// no full phone number (the sender is masked).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub sender: String,
    pub account: Option<String>,
    pub event: String,
    pub outcome: String,
}

/// Everything one turn writes, committed in one transaction.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    pub key: ConversationKey,
    /// `None` ends the conversation (the row is deleted).
    pub state: Option<ConversationState>,
    pub now: DateTime<Utc>,
    /// The inbound message's id (Twilio `MessageSid`, Telegram `update_id`)
    /// and the reply given, so a repeated delivery gets the same answer.
    pub processed: Option<(String, String)>,
    pub audit: Vec<AuditEvent>,
    /// Accounts for which this turn was a failed verification.
    pub failures: Vec<Email>,
    /// Accounts to block, and until when.
    pub blocks: Vec<(Email, DateTime<Utc>)>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The reply already given to this inbound message, if it was processed.
    async fn processed_reply(
        &self,
        channel: Channel,
        message_id: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn load_conversation(
        &self,
        key: &ConversationKey,
    ) -> Result<Option<StoredConversation>, StoreError>;
    /// Failed verifications for an account at or after `since`.
    async fn failures_since(
        &self,
        account: &Email,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
    /// When the account's self-service block ends, if it is blocked at `now`.
    async fn blocked_until(
        &self,
        account: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Write everything a turn decided, atomically.
    async fn commit_turn(&self, commit: TurnCommit) -> Result<(), StoreError>;
    /// Append audit events outside a turn (for example a failed text).
    async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// The audit trail, oldest first.
    async fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError>;
}
