//! The account directory: where accounts, their registered mobiles, security
//! questions and passwords live. The built-in one is the service's own
//! database ([`sql::SqlDirectory`]); a real directory (LDAP / Active
//! Directory) is another implementation of [`Directory`].

pub mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Email, RegisteredMobile, TempPassword};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    #[error("no such account")]
    NotFound,
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// An enrolled security question. The answer exists only as an argon2id hash.
#[derive(Debug, Clone)]
pub struct SecurityQuestion {
    pub position: u32,
    pub text: String,
    pub answer_hash: String,
}

/// What the unlock flow needs to know about an account.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: Email,
    pub mobile: Option<RegisteredMobile>,
    pub organisation: String,
    pub same_sign_on: bool,
    /// When the account was created, synced or transferred into its organisation.
    pub synced_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub disabled: bool,
    pub must_change_password: bool,
    pub password_set_at: Option<DateTime<Utc>>,
    pub questions: Vec<SecurityQuestion>,
}

#[async_trait]
pub trait Directory: Send + Sync {
    async fn find(&self, email: &Email) -> Result<Option<Account>, DirectoryError>;
    /// Clear the lockout; the current password keeps working.
    async fn unlock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError>;
    /// Unlock and set a temporary password that must be changed at next sign-in.
    async fn set_temporary_password(
        &self,
        email: &Email,
        password: &TempPassword,
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError>;
}
