//! Outbound texts (temporary passwords, security notices) behind one trait,
//! so a second provider slots in without touching the dialog.

pub mod console;
pub mod notify;
pub mod outbox;
pub mod twilio;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::UkMobile;

/// What a text is for. Body-based providers send the rendered body;
/// template-based ones (GOV.UK Notify) pick a template by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsKind {
    TempPassword,
    NoticeUnlocked,
    NoticeReset,
    /// The account was blocked after failed attempts (sent at most daily).
    NoticeBlocked,
}

impl SmsKind {
    /// The kind as stored by [`SmsKind::as_str`]; an unknown name reads as
    /// an unlock notice, the least sensitive kind.
    pub fn from_stored(name: &str) -> Self {
        match name {
            "temp_password" => Self::TempPassword,
            "notice_reset" => Self::NoticeReset,
            "notice_blocked" => Self::NoticeBlocked,
            _ => Self::NoticeUnlocked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TempPassword => "temp_password",
            Self::NoticeUnlocked => "notice_unlocked",
            Self::NoticeReset => "notice_reset",
            Self::NoticeBlocked => "notice_blocked",
        }
    }
}

/// A text to send. The body and the personalisation may hold a temporary
/// password, so they are secrets: they cannot be printed or logged by
/// accident.
#[derive(Debug)]
pub struct OutboundSms {
    pub to: UkMobile,
    pub kind: SmsKind,
    /// The whole text, for providers that send a body (Twilio, console).
    pub body: SecretString,
    /// Template values, for template providers (GOV.UK Notify): for a
    /// temporary password `password`; for notices `contact`.
    pub personalisation: Vec<(String, SecretString)>,
    /// Our id for the text (the outbox id), given to the provider as its
    /// reference where it takes one.
    pub reference: String,
}

impl OutboundSms {
    pub fn body(&self) -> &str {
        self.body.expose_secret()
    }
}

/// Why a text was not sent. Messages carry provider codes and statuses,
/// never the text's body.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Retrying will not help (invalid number, recipient opted out, bad
    /// credentials or configuration).
    #[error("provider refused the text permanently: {0}")]
    Permanent(String),
    /// Retrying later may help (5xx, rate limit, timeout, network).
    #[error("provider could not take the text now: {reason}")]
    Transient {
        reason: String,
        /// The provider asked us to wait this long.
        retry_after: Option<std::time::Duration>,
    },
}

impl SendError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Send one text; returns the provider's id for it.
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError>;

    /// After a crash between sending and recording: the ids of texts the
    /// provider took that may be this one (same number and content, or same
    /// reference, created since `since`). The worker skips ids already
    /// recorded for other texts. The default (for providers that cannot be
    /// asked) is none.
    async fn find_sent(
        &self,
        _sms: &OutboundSms,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, SendError> {
        Ok(Vec::new())
    }
}
