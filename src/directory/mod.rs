//! The account directory: where accounts, their registered mobiles and
//! passwords live, behind the [`Directory`] trait. The built-in one is the
//! service's own database ([`builtin::BuiltinDirectory`]); a real directory
//! (Active Directory or OpenLDAP: [`ldap`]) is another implementation.
//! Security questions are not in the directory: see [`crate::enrolment`].

pub mod builtin;
pub mod ldap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{AnswerHash, Email, RegisteredMobile, SealedAnswer, TempPassword};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not be reached, or did not answer in time.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory refused a new password under its password policy
    /// (history, length, complexity). Nothing was changed.
    #[error("refused by the directory's password policy: {0}")]
    RefusedByPolicy(String),
    /// The directory refused the change for another reason (for example
    /// the service account may not write the attribute). Nothing was changed.
    #[error("refused by the directory: {0}")]
    Refused(String),
    #[error("no such account")]
    NotFound,
    /// Overloaded (hashing queue full, no database connection in time):
    /// nothing was done; try again later.
    #[error("busy: {0}")]
    Busy(String),
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        if crate::store::is_overload(&e) {
            Self::Busy(e.to_string())
        } else {
            Self::Unavailable(e.to_string())
        }
    }
}

impl From<crate::store::StoreError> for DirectoryError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_busy() {
            Self::Busy(e.to_string())
        } else {
            Self::Unavailable(e.to_string())
        }
    }
}

impl From<crate::hashing::HashingError> for DirectoryError {
    fn from(e: crate::hashing::HashingError) -> Self {
        match e {
            crate::hashing::HashingError::Busy(_) => Self::Busy(e.to_string()),
            crate::hashing::HashingError::Failed(_) => Self::Unavailable(e.to_string()),
        }
    }
}

/// The directory's stable identifier for an account (the built-in
/// directory's email, `objectGUID` on Active Directory, `entryUUID` on
/// OpenLDAP): enrolled security questions follow it when an account is
/// renamed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which account a command is for, as the directory found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    pub id: AccountId,
    pub email: Email,
    /// The directory's own handle for the account (the entry's DN on LDAP,
    /// the email in the built-in directory).
    pub locator: String,
}

/// A change to an account decided by a turn and applied by the configured
/// directory before the turn commits: a text announcing it is queued only
/// once the directory has accepted it.
#[derive(Debug)]
pub enum AccountCommand {
    /// Clear the lockout; the current password keeps working.
    Unlock { account: AccountRef },
    /// Unlock and set this temporary password, which must be changed at
    /// the next sign-in. Applied as one change: if the directory refuses the
    /// password, the account is left exactly as it was (still locked).
    SetTemporaryPassword {
        account: AccountRef,
        password: TempPassword,
    },
}

impl AccountCommand {
    pub fn account(&self) -> &AccountRef {
        match self {
            Self::Unlock { account } | Self::SetTemporaryPassword { account, .. } => account,
        }
    }
}

/// Why self-service is not allowed for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disabled {
    /// The registered mobile is not a UK mobile number.
    NonUkMobile,
    /// The directory reports the account disabled (Active Directory's
    /// ACCOUNTDISABLE bit, an OpenLDAP administrator's permanent lock, or
    /// the built-in directory's flag).
    InDirectory,
}

/// An enrolled security question. The answer exists as an argon2id hash
/// and, when it was enrolled with `ANSWERS_KEY` set, sealed under that key
/// (for `ANSWER_MODE=characters`); never in clear.
#[derive(Debug, Clone)]
pub struct SecurityQuestion {
    /// The directory id the question is enrolled under, as stored (the
    /// sealed answer is bound to it).
    pub owner: String,
    pub position: u32,
    pub text: String,
    pub answer_hash: AnswerHash,
    pub answer_sealed: Option<SealedAnswer>,
}

/// A question to enrol, with its answer's stored forms: the argon2id hash
/// of the normalised answer, and the answer sealed under `ANSWERS_KEY`
/// when that is set (for the position it will be enrolled at).
#[derive(Debug, Clone)]
pub struct NewQuestion {
    pub question: String,
    pub answer_hash: AnswerHash,
    pub answer_sealed: Option<SealedAnswer>,
}

impl NewQuestion {
    /// A question whose answer is kept only as a hash.
    pub fn hashed(question: impl Into<String>, answer_hash: AnswerHash) -> Self {
        Self {
            question: question.into(),
            answer_hash,
            answer_sealed: None,
        }
    }
}

/// What the unlock flow needs to know about an account, as the directory
/// reports it.
#[derive(Debug, Clone)]
pub struct Account {
    pub account: AccountRef,
    pub mobile: Option<RegisteredMobile>,
    pub organisation: String,
    pub same_sign_on: bool,
    /// When the account was created, synced or transferred into its organisation.
    pub synced_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub disabled: Option<Disabled>,
    pub must_change_password: bool,
    pub password_set_at: Option<DateTime<Utc>>,
}

impl Account {
    pub fn email(&self) -> &Email {
        &self.account.email
    }

    /// `disabled` for a registered mobile outside the UK, else what the
    /// directory said.
    pub fn disabled_given(
        mobile: &Option<RegisteredMobile>,
        in_directory: bool,
    ) -> Option<Disabled> {
        if in_directory {
            Some(Disabled::InDirectory)
        } else if matches!(mobile, Some(RegisteredMobile::NonUk { .. })) {
            Some(Disabled::NonUkMobile)
        } else {
            None
        }
    }
}

/// The seam between the bot and wherever accounts live. A new directory
/// (Microsoft Graph, say) is one new implementation of this trait; the
/// dialog and the policy do not change.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Look an account up by its email address. An unknown email should
    /// cost what a found account does (read and decode a decoy of the same
    /// shape: see [`DECOY_MOBILE`]), so that the reply's timing does not
    /// tell whether the account exists.
    async fn find(&self, email: &Email) -> Result<Option<Account>, DirectoryError>;
    /// Apply a command, completely or not at all. Called while the turn
    /// holds the conversation and the account, before it commits.
    async fn apply(
        &self,
        command: &AccountCommand,
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError>;
    /// The text carrying the temporary password set at `set_at` finally
    /// failed: restore the password it replaced, if the directory can and
    /// it is still the current one. True if restored. A directory that
    /// never learns the previous password (LDAP) answers false.
    async fn revert_temporary_password(
        &self,
        email: &Email,
        set_at: DateTime<Utc>,
    ) -> Result<bool, DirectoryError>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), DirectoryError>;
    /// What `unlockbot accounts show --json` prints.
    async fn view(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<AccountView>, DirectoryError>;
    /// Every account, in email order, as [`Directory::view`] shows each
    /// (`unlockbot accounts list`). `None`: this directory is not listed by
    /// the bot (an Active Directory or OpenLDAP estate has its own tools,
    /// and the bot's service account should not page through all of it).
    async fn list(&self, _now: DateTime<Utc>) -> Result<Option<Vec<AccountView>>, DirectoryError> {
        Ok(None)
    }
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
    /// In order: enrolled at positions 1, 2, 3.
    pub questions: Vec<NewQuestion>,
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

/// What a look-up of an unknown email decodes instead of a found account,
/// so that it costs what a found one does (issue 9, finding 8: otherwise the
/// reply at the last-4 step comes sooner for an email with no account).
/// An ordinary UK mobile (not one of Ofcom's drama numbers, which are parsed
/// by a shorter path), as a registered mobile is stored.
pub const DECOY_MOBILE: &str = "+447400123456";
/// The decoy account's organisation (any text of a usual length).
pub const DECOY_ORGANISATION: &str = "Decoy NHS Foundation Trust";
/// The decoy question's text (a usual length).
pub const DECOY_QUESTION: &str = "What was the name of your first pet?";
/// The decoy answer hash: an argon2id PHC string of the length and shape the
/// service stores (never compared with anything).
pub const DECOY_ANSWER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lkZWNveWRlY295ZA$ZGVjb3lkZWNveWRlY295ZGVjb3lkZWNveWRlY295ZGU";

/// How long a password lasts under the service's policy.
pub fn password_lifetime() -> chrono::Duration {
    chrono::Duration::days(365)
}

/// The built-in directory's administration, for the CLI and the importer.
#[async_trait]
pub trait AccountDirectory: Directory {
    /// Insert or update (by email) one account (its questions go to the
    /// enrolments).
    async fn upsert(&self, account: &NewAccount, now: DateTime<Utc>) -> Result<(), DirectoryError>;
    /// Insert or update (by email) many accounts and enrol each one's
    /// questions under its email (the built-in directory's id), all in one
    /// transaction: every account of the batch is stored, or none is
    /// (`accounts import`'s batches).
    async fn import(
        &self,
        accounts: &[NewAccount],
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError>;
    /// Lock an account, as the directory does after failed sign-ins.
    async fn lock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError>;
    /// Whether `password` is the account's current password.
    async fn verify_password(&self, email: &Email, password: &str) -> Result<bool, DirectoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AnswerNormalisation, parse_registered_mobile};

    /// The decoy's mobile takes the whole parse a registered mobile takes
    /// (phone-number validation and type: most of a found account's
    /// decoding): a valid UK mobile, and not one of the drama numbers, which
    /// are parsed by a shorter path.
    #[test]
    fn the_decoy_mobile_is_parsed_as_an_ordinary_registered_mobile() {
        let Ok(RegisteredMobile::Uk(mobile)) = parse_registered_mobile(DECOY_MOBILE, false) else {
            panic!("{DECOY_MOBILE} is not a UK mobile");
        };
        assert_eq!(mobile.as_e164(), DECOY_MOBILE);
        let number = phonenumber::parse(None, DECOY_MOBILE).expect("parses");
        assert!(!crate::domain::mobile::is_drama_number(&number));
        assert!(
            phonenumber::is_valid(&number),
            "valid, so not parsed as a drama number"
        );
    }

    /// The decoy answer hash has the shape and length of a stored one.
    #[test]
    fn the_decoy_answer_hash_looks_like_a_stored_one() {
        let real = crate::domain::hash_answer(&crate::domain::Answer::new("Biscuit")).unwrap();
        assert_eq!(real.normalisation, AnswerNormalisation::CURRENT);
        assert_eq!(DECOY_ANSWER_HASH.len(), real.phc.len());
        let (decoy, real) = (
            argon2::PasswordHash::new(DECOY_ANSWER_HASH).expect("a PHC string"),
            argon2::PasswordHash::new(&real.phc).unwrap(),
        );
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.params, real.params);
        assert_eq!(decoy.version, real.version);
    }
}
