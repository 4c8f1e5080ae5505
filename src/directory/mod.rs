//! The account directory: where accounts, their registered mobiles, security
//! questions and passwords live. The built-in one is the service's own
//! database ([`sqlite::SqliteDirectory`], [`postgres::PgDirectory`]); a real
//! directory (LDAP / Active Directory) is another implementation of
//! [`Directory`].

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{AnswerHash, AnswerNormalisation, Email, RegisteredMobile};

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

/// A change to an account decided by a turn. The built-in directory lives
/// in the service's own database, so the store applies these in the turn's
/// transaction, together with the texts they cause: an unlock or a reset
/// and its outbox rows commit together or not at all.
#[derive(Debug, Clone)]
pub enum AccountChange {
    /// Clear the lockout; the current password keeps working.
    Unlock { email: Email },
    /// Unlock and set a temporary password (argon2id hash) that must be
    /// changed at next sign-in, keeping the one it replaces so that it can
    /// be restored if the text carrying the new one finally fails.
    SetTemporaryPassword { email: Email, password_hash: String },
}

/// An enrolled security question. The answer exists only as an argon2id hash.
#[derive(Debug, Clone)]
pub struct SecurityQuestion {
    pub position: u32,
    pub text: String,
    pub answer_hash: AnswerHash,
}

/// A stored answer hash and the number of the normalisation it was made
/// with (the `answer_normalisation` column).
pub(crate) fn stored_answer(phc: String, normalisation: i64) -> Result<AnswerHash, DirectoryError> {
    let normalisation = AnswerNormalisation::from_stored(normalisation).ok_or_else(|| {
        DirectoryError::Unavailable(format!(
            "a security answer was stored with normalisation {normalisation}, which this version of unlockbot does not know (was the database written by a newer one?)"
        ))
    })?;
    Ok(AnswerHash { phc, normalisation })
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
    /// The text carrying the temporary password set at `set_at` finally
    /// failed: restore the password it replaced, if it is still the current
    /// one (nobody has signed in and changed it since). True if restored.
    async fn revert_temporary_password(
        &self,
        email: &Email,
        set_at: DateTime<Utc>,
    ) -> Result<bool, DirectoryError>;
}

/// An account as imported from the operators' CSV, already parsed.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub email: Email,
    pub mobile: Option<RegisteredMobile>,
    pub organisation: String,
    pub same_sign_on: bool,
    pub synced_at: Option<DateTime<Utc>>,
    pub locked: bool,
    /// (question text, argon2id hash of the normalised answer)
    pub questions: Vec<(String, AnswerHash)>,
}

impl NewAccount {
    /// Why the account is disabled, if it is.
    pub fn disabled_reason(&self) -> Option<&'static str> {
        match &self.mobile {
            Some(RegisteredMobile::NonUk { .. }) => {
                Some("registered mobile is not a UK mobile number")
            }
            _ => None,
        }
    }
}

/// What `unlockbot accounts show --json` prints. No secret in it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub email: String,
    pub mobile: Option<String>,
    pub organisation: String,
    pub same_sign_on: bool,
    pub synced_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub must_change_password: bool,
    pub has_password: bool,
    pub password_set_at: Option<DateTime<Utc>>,
    pub password_expires_at: Option<DateTime<Utc>>,
    pub security_questions: Vec<String>,
}

/// How long a password lasts under the service's policy.
pub fn password_lifetime() -> chrono::Duration {
    chrono::Duration::days(365)
}

fn hashing_failed(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("password hashing failed: {e}"))
}

/// Hash a password off the async threads (argon2 is deliberately slow).
pub(crate) async fn hash_password_blocking(password: &str) -> Result<String, DirectoryError> {
    let owned = zeroize::Zeroizing::new(password.to_owned());
    tokio::task::spawn_blocking(move || crate::domain::hash_password(&owned))
        .await
        .map_err(hashing_failed)?
        .map_err(hashing_failed)
}

/// Check a password against a hash off the async threads.
pub(crate) async fn verify_password_blocking(
    password: &str,
    hash: String,
) -> Result<bool, DirectoryError> {
    let owned = zeroize::Zeroizing::new(password.to_owned());
    tokio::task::spawn_blocking(move || crate::domain::verify_password(&owned, &hash))
        .await
        .map_err(hashing_failed)
}

/// The built-in directory's administration, for the CLI and the importer.
#[async_trait]
pub trait AccountDirectory: Directory {
    /// Insert or update (by email) one account and replace its questions.
    async fn upsert(&self, account: &NewAccount, now: DateTime<Utc>) -> Result<(), DirectoryError>;
    /// Lock an account, as the directory does after failed sign-ins.
    async fn lock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError>;
    /// Whether `password` is the account's current password.
    async fn verify_password(&self, email: &Email, password: &str) -> Result<bool, DirectoryError>;
    async fn view(&self, email: &Email) -> Result<Option<AccountView>, DirectoryError>;
}
