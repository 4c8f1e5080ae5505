//! What one turn has decided so far: the policy's actions add to it and
//! the engine commits it.

use chrono::{DateTime, Utc};

use crate::dialog::ConversationState;
use crate::directory::{Account, DirectoryError, SecurityQuestion};
use crate::domain::{Answer, Characters, ConversationKey, Email, Last4};
use crate::enrolment::EnrolmentError;
use crate::store::{AuditEvent, NewOutboxItem, StoreError};

/// A turn could not be completed; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Enrolment(#[from] EnrolmentError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The service is overloaded (hashing queue full, no database
    /// connection in time): the turn was not processed and changed
    /// nothing; the user is asked to send the same message again.
    #[error("busy: {0}")]
    Busy(String),
}

impl TurnError {
    /// The service was overloaded and the turn changed nothing.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Busy(_) | Self::Directory(DirectoryError::Busy(_)) => true,
            Self::Store(e) | Self::Enrolment(EnrolmentError::Store(e)) => e.is_busy(),
            Self::Enrolment(EnrolmentError::Database(e)) => crate::store::is_overload(e),
            _ => false,
        }
    }
}

impl From<crate::hashing::HashingError> for TurnError {
    fn from(e: crate::hashing::HashingError) -> Self {
        match e {
            crate::hashing::HashingError::Busy(_) => Self::Busy(e.to_string()),
            crate::hashing::HashingError::Failed(_) => Self::Internal(e.to_string()),
        }
    }
}

/// A parsed input.
pub enum Input {
    Email(Email),
    Last4(Last4),
    Answer(Answer),
    Characters(Characters),
    Option(u8),
}

/// What a turn has decided so far; the actions add to it.
pub struct Turn {
    pub key: ConversationKey,
    /// The sender as logs and the audit trail show it
    /// ([`ConversationKey::masked_sender`], worked out once per turn: for
    /// SMS it parses the number).
    pub sender: String,
    pub now: DateTime<Utc>,
    pub state: ConversationState,
    pub audit: Vec<AuditEvent>,
    pub failures: Vec<Email>,
    /// Accounts whose block notice this turn queued.
    pub block_notices: Vec<Email>,
    /// Texts this turn causes, sealed for the outbox.
    pub outbox: Vec<NewOutboxItem>,
    /// The named account and its enrolled questions, fetched at most once
    /// per turn.
    pub account: Option<Option<KnownAccount>>,
    /// A message of this turn's reply shows the last 4 digits of the
    /// registered mobile.
    pub shows_last4: bool,
}

impl Turn {
    /// Record an audit event about this conversation.
    pub fn audit(&mut self, event: &str, outcome: &str) {
        self.audit.push(AuditEvent {
            at: self.now,
            channel: self.key.channel().as_str().to_owned(),
            sender: self.sender.clone(),
            account: self.state.email.as_ref().map(|e| e.as_str().to_owned()),
            event: event.to_owned(),
            outcome: outcome.to_owned(),
        });
    }
}

/// An account as the directory reports it, with the security questions
/// enrolled for it.
#[derive(Debug, Clone)]
pub struct KnownAccount {
    pub account: Account,
    pub questions: Vec<SecurityQuestion>,
}
