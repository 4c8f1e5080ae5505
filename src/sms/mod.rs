//! Outbound texts (temporary passwords, security notices) behind one trait,
//! so a second provider slots in without touching the dialog.

pub mod console;
pub mod twilio;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::UkMobile;

/// What a text is for; decides nothing about delivery, but is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsKind {
    TempPassword,
    SecurityNotice,
}

impl SmsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TempPassword => "temp_password",
            Self::SecurityNotice => "security_notice",
        }
    }
}

/// A text to send. The body may hold a temporary password, so it is a
/// secret: it cannot be printed or logged by accident.
#[derive(Debug)]
pub struct OutboundSms {
    pub to: UkMobile,
    pub body: SecretString,
    pub kind: SmsKind,
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
    /// Retrying will not help (invalid number, recipient opted out, bad credentials).
    #[error("provider refused the text permanently: {0}")]
    Permanent(String),
    /// Retrying later may help (5xx, rate limit, timeout, network).
    #[error("provider could not take the text now: {0}")]
    Transient(String),
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Send one text; returns the provider's id for it.
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError>;
}
