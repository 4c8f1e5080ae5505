//! Storage of conversations, processed inbound messages, verification
//! failures, blocks, the outbox and the audit trail, behind one trait with
//! an SQLite and a PostgreSQL implementation, so no feature of the bot exists
//! on one backend only.

pub mod deletions;
pub mod postgres;
pub mod sqlite;
pub mod sqlite_direct;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::dialog::ConversationState;
use crate::domain::{ConversationKey, Email};
use crate::sms::SmsKind;

/// The store could not be reached or refused the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Overloaded: the turn was not processed and nothing was written.
    #[error("busy: {0}")]
    Busy(String),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored conversation state is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("unsupported DATABASE_URL: {0}")]
    Unsupported(String),
    /// A command that only reads found no database to read.
    #[error("{0}")]
    Missing(String),
}

impl StoreError {
    /// Overloaded, nothing was done: the turn can be sent again.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Busy(_) => true,
            Self::Sqlite(e) => sqlite_direct::is_busy(e),
            Self::Database(e) => is_overload(e),
            _ => false,
        }
    }
}

/// Whether a database error means "overloaded, nothing was done": no
/// connection came free in time, or SQLite's write lock stayed taken past
/// its busy timeout.
pub fn is_overload(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "261" | "262" | "517" | "773")
                )
        }
        _ => false,
    }
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

/// The attempt rule, applied inside the commit so that instances sharing a
/// database count every failure exactly once.
#[derive(Debug, Clone, Copy)]
pub struct BlockRule {
    /// Failed verifications within `window` that block self-service.
    pub max_failures: u32,
    pub window: Duration,
    pub block_for: Duration,
}

/// A text to queue, its secret part already sealed.
#[derive(Debug, Clone)]
pub struct NewOutboxItem {
    pub id: uuid::Uuid,
    pub kind: SmsKind,
    /// E.164 of the registered mobile.
    pub to: String,
    pub account: String,
    /// The sender of the conversation that caused it, masked, for the audit
    /// trail if delivery finally fails. The conversation itself (told of
    /// such a failure) is the turn's, stored as a keyed hash.
    pub masked_sender: String,
    /// Body and personalisation, encrypted (see `sms::outbox`).
    pub sealed: Vec<u8>,
}

/// A claimed text, for the outbox worker.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: uuid::Uuid,
    pub kind: SmsKind,
    pub to: String,
    pub account: String,
    /// The conversation that caused it, as stored: `channel:` and a keyed hash.
    pub conversation_key: String,
    /// Its sender, masked (`+44*******456`).
    pub masked_sender: String,
    pub sealed: Vec<u8>,
    /// Attempts including this one.
    pub attempts: u32,
    /// An earlier attempt was started and its outcome never recorded (the
    /// instance died while sending): ask the provider before sending again.
    pub uncertain: bool,
    pub created_at: DateTime<Utc>,
}

/// What a turn does to the conversation's stored state.
#[derive(Debug, Clone)]
pub enum ConversationChange {
    /// Store this state.
    Save(ConversationState),
    /// Delete the conversation's row.
    Delete,
    /// Leave the row as it was (a message the service does not answer).
    Keep,
}

/// Replies given to one sender since the start of its current day-long
/// window: the per-sender reply budget (`SENDER_REPLIES_PER_DAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyWindow {
    pub since: DateTime<Utc>,
    pub replies: u32,
}

/// Everything one turn writes, committed in one transaction.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    pub state: ConversationChange,
    pub now: DateTime<Utc>,
    /// The inbound message's id (Twilio `MessageSid`, Telegram `update_id`)
    /// and the reply given, so a repeated delivery gets the same answer.
    pub processed: Option<(String, String)>,
    pub audit: Vec<AuditEvent>,
    /// Accounts for which this turn was a failed verification (counted
    /// against the account and against this conversation's sender).
    pub failures: Vec<Email>,
    /// Accounts whose block notice this turn queued (recorded, so that at
    /// most one goes out a day).
    pub block_notices: Vec<Email>,
    pub block_rule: BlockRule,
    /// Texts caused by this turn.
    pub outbox: Vec<NewOutboxItem>,
    /// Failed texts this turn told the user about.
    pub reported_failures: Vec<uuid::Uuid>,
    /// The sender's reply window after this turn, when it is counted.
    pub replies: Option<ReplyWindow>,
}

/// What the maintenance sweep deletes: everything older than these times.
#[derive(Debug, Clone, Copy)]
pub struct SweepCutoffs {
    /// Conversations last touched before this have expired.
    pub conversations_idle_since: DateTime<Utc>,
    /// Texts delivered or finally failed before this.
    pub outbox_finished_before: DateTime<Utc>,
    /// Verification failures before this no longer count towards a block.
    pub failures_before: DateTime<Utc>,
    /// Blocks that ended before this.
    pub blocks_ended_before: DateTime<Utc>,
    /// Audit events before this.
    pub audit_before: DateTime<Utc>,
    /// Reply windows that started before this have ended.
    pub reply_windows_before: DateTime<Utc>,
}

/// Rows the sweep deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub conversations: u64,
    pub outbox: u64,
    pub verification_failures: u64,
    pub account_blocks: u64,
    pub audit_log: u64,
    pub sender_replies: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.conversations
            + self.outbox
            + self.verification_failures
            + self.account_blocks
            + self.audit_log
            + self.sender_replies
    }
}

/// What a turn reads before it decides, in one query (one round trip to
/// the database instead of three).
#[derive(Debug)]
pub struct Opening {
    /// The reply already given to this inbound message, if it was processed.
    pub processed: Option<String>,
    /// The conversation as stored; an error when this version cannot read
    /// its state (say, after an upgrade).
    pub conversation: Result<Option<StoredConversation>, serde_json::Error>,
    /// Texts of this conversation that finally failed and that the user has
    /// not been told about yet: (outbox id, kind).
    pub unreported_failures: Vec<(uuid::Uuid, SmsKind)>,
    /// This sender's reply window as stored (it may have ended).
    pub reply_window: Option<ReplyWindow>,
}

/// The unreported failures as both backends aggregate them into one
/// column: `id kind` pairs separated by commas (neither a UUID nor a kind
/// contains either).
fn parse_failures(aggregated: Option<&str>) -> Vec<(uuid::Uuid, SmsKind)> {
    aggregated
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once(' '))
        .filter_map(|(id, kind)| {
            Some((uuid::Uuid::parse_str(id).ok()?, SmsKind::from_stored(kind)))
        })
        .collect()
}

/// A turn in progress: the conversation is held exclusively (by every
/// instance sharing the database) until the turn commits or is dropped.
#[async_trait]
pub trait TurnTx: Send {
    /// Everything the turn starts from: whether `message_id` was already
    /// processed (and the reply given), the conversation, and its texts
    /// that failed unreported.
    async fn open(&mut self, message_id: Option<&str>) -> Result<Opening, StoreError>;
    async fn load_conversation(&mut self) -> Result<Option<StoredConversation>, StoreError> {
        Ok(self.open(None).await?.conversation?)
    }
    /// Hold the named account too, until the turn ends: verification turns
    /// of one account (other conversations, channels or instances) are then
    /// applied one after the other, so the attempt limit is checked and
    /// counted atomically. Always taken after the conversation, never
    /// before, so two turns cannot wait for each other.
    async fn lock_account(&mut self, account: &Email) -> Result<(), StoreError>;
    /// Write everything the turn decided, atomically, and release the conversation.
    async fn commit(self: Box<Self>, commit: TurnCommit) -> Result<(), StoreError>;
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Start a turn on `key`, waiting while another turn (in any instance)
    /// holds it.
    async fn begin_turn(&self, key: &ConversationKey) -> Result<Box<dyn TurnTx>, StoreError>;
    /// When the account's self-service block ends, if it is blocked at `now`.
    async fn blocked_until(
        &self,
        account: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Failures counted since `since` against `account`, and how many of
    /// them came from `sender` (a conversation, compared by its keyed hash); and the number of
    /// other accounts `sender` has failed against since `sender_since`.
    async fn failure_counts(
        &self,
        account: &Email,
        sender: &ConversationKey,
        since: DateTime<Utc>,
        sender_since: DateTime<Utc>,
    ) -> Result<FailureCounts, StoreError>;
    /// When the last block notice for `account` was queued, if ever.
    async fn last_block_notice(&self, account: &Email)
    -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Drop the stored replies to inbound messages, and forget the
    /// messages' ids, as `prune` says. Returns how many ids were forgotten.
    async fn prune_processed(&self, prune: &ProcessedPrune) -> Result<u64, StoreError>;
    /// Delete what is no longer needed (see [`SweepCutoffs`]), in one
    /// transaction, and leave no copy of it in the database's files where
    /// the backend allows (see SECURITY.md).
    async fn sweep(&self, cutoffs: SweepCutoffs) -> Result<Swept, StoreError>;
    /// The audit trail, oldest first.
    async fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError>;
    /// Record an event outside any turn (a message the service does not
    /// answer at all).
    async fn record_audit(&self, event: AuditEvent) -> Result<(), StoreError>;

    /// Claim up to `limit` texts that are due (pending and due, or whose
    /// sending lease has run out), leasing them until `now + lease`. Each
    /// claim is committed before the text is sent, and no two workers
    /// claim the same text.
    /// `only` restricts the claim to one conversation's texts (the terminal
    /// chat, which must never take texts meant for real phones).
    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        only: Option<&ConversationKey>,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// The provider took the text: never send it again; erase its secret.
    async fn outbox_delivered(
        &self,
        id: uuid::Uuid,
        provider_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Which of these provider ids are already recorded for a sent text.
    async fn provider_ids_recorded(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Try again at `next_attempt_at`. `attempts` is the claim's count: if
    /// another worker has claimed the text since (a lease ran out), this
    /// worker's verdict is stale and changes nothing.
    async fn outbox_retry(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Give up: erase the secret and record the failure in the audit trail.
    /// False (and nothing changed) if another worker has claimed the text
    /// since, as above.
    async fn outbox_failed(
        &self,
        id: uuid::Uuid,
        attempts: u32,
        error: &str,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
}

/// What [`Store::prune_processed`] drops: the stored reply of every inbound
/// message received before `replies_before` (a repeated delivery after that
/// is still recognised, and answered with nothing), and the ids themselves
/// of SMS received before `sms_ids_before` and of other channels' messages
/// before `other_ids_before`.
///
/// SMS ids are kept long (`INBOUND_ID_RETENTION_DAYS`): a captured, signed
/// Twilio request can be replayed at any time, and is refused only while
/// its id is remembered. Telegram's ids go sooner, because Telegram starts
/// numbering afresh after a quiet week and its webhook is not replayable
/// without the secret token.
#[derive(Debug, Clone, Copy)]
pub struct ProcessedPrune {
    pub replies_before: DateTime<Utc>,
    pub sms_ids_before: DateTime<Utc>,
    pub other_ids_before: DateTime<Utc>,
}

/// See [`Store::failure_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub account: i64,
    pub account_by_sender: i64,
    pub other_accounts_by_sender: i64,
}
