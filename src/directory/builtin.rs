//! The built-in directory: accounts in the service's own database (SQLite
//! or PostgreSQL, the same queries on both). For trials, the demo and
//! estates that feed accounts from a CSV export.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::Row;

use super::{
    Account, AccountCommand, AccountDirectory, AccountId, AccountRef, AccountView, DECOY_MOBILE,
    DECOY_ORGANISATION, Directory, DirectoryError, NewAccount, password_lifetime,
};
use crate::domain::{Email, RegisteredMobile, parse_registered_mobile};
use crate::hashing::Hasher;
use crate::sql::SqlPool;
use crate::with_pool;

#[derive(Clone)]
pub struct BuiltinDirectory {
    pool: SqlPool,
    allow_crown_dependencies: bool,
    hasher: Hasher,
}

impl BuiltinDirectory {
    pub fn new(pool: SqlPool, allow_crown_dependencies: bool, hasher: Hasher) -> Self {
        Self {
            pool,
            allow_crown_dependencies,
            hasher,
        }
    }
}

/// The built-in directory's id for an account is its email.
fn builtin_ref(email: &Email) -> AccountRef {
    AccountRef {
        id: AccountId::new(email.as_str()),
        email: email.clone(),
        locator: email.as_str().to_owned(),
    }
}

fn affected(rows: u64) -> Result<(), DirectoryError> {
    if rows == 0 {
        return Err(DirectoryError::NotFound);
    }
    Ok(())
}

/// The account's row; for an unknown email, a decoy row of the same shape
/// (`found` false, the decoy's mobile and organisation bound as `$2`, `$3`)
/// that is decoded exactly as a found one and then dropped: the look-up
/// costs the same either way (see [`DECOY_MOBILE`]).
const FIND: &str = "SELECT TRUE AS found, mobile, organisation, same_sign_on, synced_at, locked, disabled, must_change_password, password_set_at
     FROM accounts WHERE email = $1
     UNION ALL
     SELECT FALSE, $2, $3, FALSE, NULL, FALSE, FALSE, FALSE, NULL
     WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE email = $1)";

/// A row of [`FIND`], as either backend reads it.
struct Found {
    /// False for the decoy row of an unknown email.
    found: bool,
    mobile: Option<String>,
    organisation: String,
    same_sign_on: bool,
    synced_at: Option<DateTime<Utc>>,
    locked: bool,
    disabled: bool,
    must_change_password: bool,
    password_set_at: Option<DateTime<Utc>>,
}

impl Found {
    fn into_account(self, email: &Email, allow_crown_dependencies: bool) -> Account {
        // A stored number that no longer parses is treated like no mobile
        // at all: the user is sent to their Local Administrator.
        let mobile = self
            .mobile
            .and_then(|m| parse_registered_mobile(&m, allow_crown_dependencies).ok());
        let non_uk = matches!(mobile, Some(RegisteredMobile::NonUk { .. }));
        // The import disables an account whose mobile is not a UK one; any
        // other disabled account was disabled here.
        let disabled = Account::disabled_given(&mobile, self.disabled && !non_uk);
        Account {
            account: builtin_ref(email),
            mobile,
            organisation: self.organisation,
            same_sign_on: self.same_sign_on,
            synced_at: self.synced_at,
            locked: self.locked,
            disabled,
            must_change_password: self.must_change_password,
            password_set_at: self.password_set_at,
        }
    }
}

const UNLOCK: &str = "UPDATE accounts SET locked = $2, updated_at = $3 WHERE email = $1";

/// Keeps the password it replaces, restored if the text finally fails.
const SET_TEMPORARY: &str = "UPDATE accounts SET
       previous_password_hash = password_hash,
       previous_password_set_at = password_set_at,
       previous_must_change_password = must_change_password,
       locked = $4, password_hash = $2, password_set_at = $3, must_change_password = $5, updated_at = $3
     WHERE email = $1";

const REVERT: &str = "UPDATE accounts SET
       password_hash = previous_password_hash,
       password_set_at = previous_password_set_at,
       must_change_password = COALESCE(previous_must_change_password, $4),
       previous_password_hash = NULL, previous_password_set_at = NULL, previous_must_change_password = NULL
     WHERE email = $1 AND must_change_password = $3 AND password_set_at = $2";

const UPSERT: &str = "INSERT INTO accounts (email, mobile, organisation, same_sign_on, synced_at, locked, disabled, disabled_reason, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (email) DO UPDATE SET mobile = excluded.mobile, organisation = excluded.organisation,
       same_sign_on = excluded.same_sign_on, synced_at = excluded.synced_at, locked = excluded.locked,
       disabled = excluded.disabled, disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at";

/// Insert or update one account (by email) on `$conn` (a connection or a
/// transaction of either backend): for [`AccountDirectory::upsert`] and
/// [`AccountDirectory::import`].
macro_rules! write_account {
    ($conn:expr, $ts:expr, $a:expr, $now:expr) => {
        async {
            let a: &NewAccount = $a;
            let disabled_reason = a.disabled_reason();
            sqlx::query(UPSERT)
                .bind(a.email.as_str())
                .bind(a.mobile.as_ref().map(|m| m.e164().to_owned()))
                .bind(&a.organisation)
                .bind(a.same_sign_on)
                .bind(a.synced_at.map($ts))
                .bind(a.locked)
                .bind(disabled_reason.is_some())
                .bind(disabled_reason)
                .bind($ts($now))
                .execute(&mut *$conn)
                .await?;
            Ok::<(), sqlx::Error>(())
        }
    };
}

const VIEW: &str = "SELECT email, mobile, organisation, same_sign_on, synced_at, locked, disabled, disabled_reason,
            must_change_password, password_hash IS NOT NULL AS has_password, password_set_at
     FROM accounts WHERE email = $1";

const LIST: &str = "SELECT email, mobile, organisation, same_sign_on, synced_at, locked, disabled, disabled_reason,
            must_change_password, password_hash IS NOT NULL AS has_password, password_set_at
     FROM accounts ORDER BY email";

/// An [`AccountView`] from a row of [`VIEW`] or [`LIST`] (`$time` reads a
/// time the backend's way; see [`with_pool!`]).
macro_rules! view_of {
    ($row:expr, $time:ident) => {{
        let row = $row;
        let password_set_at = $time(&row, "password_set_at");
        AccountView {
            email: row.get("email"),
            mobile: row.get("mobile"),
            organisation: row.get("organisation"),
            same_sign_on: row.get("same_sign_on"),
            synced_at: $time(&row, "synced_at"),
            locked: row.get("locked"),
            disabled: row.get("disabled"),
            disabled_reason: row.get("disabled_reason"),
            must_change_password: row.get("must_change_password"),
            has_password: row.get("has_password"),
            password_set_at,
            password_expires_at: password_set_at.map(|t| t + password_lifetime()),
            security_questions: Vec::new(),
        }
    }};
}

#[async_trait]
impl Directory for BuiltinDirectory {
    async fn find(&self, email: &Email) -> Result<Option<Account>, DirectoryError> {
        let found = match &self.pool {
            // On a turn's path: read on this thread, no hand-off to sqlx's.
            SqlPool::Sqlite(_, direct) => direct
                .read(|conn| {
                    conn.prepare_cached(FIND)?
                        .query_row([email.as_str(), DECOY_MOBILE, DECOY_ORGANISATION], |row| {
                            let time = |column: &str| {
                                row.get::<_, Option<i64>>(column)
                                    .map(|t| t.map(crate::sql::from_millis))
                            };
                            Ok(Found {
                                found: row.get("found")?,
                                mobile: row.get("mobile")?,
                                organisation: row.get("organisation")?,
                                same_sign_on: row.get("same_sign_on")?,
                                synced_at: time("synced_at")?,
                                locked: row.get("locked")?,
                                disabled: row.get("disabled")?,
                                must_change_password: row.get("must_change_password")?,
                                password_set_at: time("password_set_at")?,
                            })
                        })
                        .optional()
                })
                .map_err(DirectoryError::from)?,
            SqlPool::Postgres(pool) => sqlx::query(FIND)
                .bind(email.as_str())
                .bind(DECOY_MOBILE)
                .bind(DECOY_ORGANISATION)
                .fetch_optional(pool)
                .await?
                .map(|row| Found {
                    found: row.get("found"),
                    mobile: row.get("mobile"),
                    organisation: row.get("organisation"),
                    same_sign_on: row.get("same_sign_on"),
                    synced_at: row.get("synced_at"),
                    locked: row.get("locked"),
                    disabled: row.get("disabled"),
                    must_change_password: row.get("must_change_password"),
                    password_set_at: row.get("password_set_at"),
                }),
        };
        Ok(found.and_then(|f| {
            let real = f.found;
            let account = f.into_account(email, self.allow_crown_dependencies);
            // The decoy was decoded in full; it is not an account.
            real.then_some(std::hint::black_box(account))
        }))
    }

    async fn apply(
        &self,
        command: &AccountCommand,
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError> {
        let email = command.account().email.as_str();
        let rows = match command {
            AccountCommand::Unlock { .. } => with_pool!(&self.pool, |pool, ts| {
                sqlx::query(UNLOCK)
                    .bind(email)
                    .bind(false)
                    .bind(ts(now))
                    .execute(pool)
                    .await?
                    .rows_affected()
            }),
            AccountCommand::SetTemporaryPassword { password, .. } => {
                let hash = self.hasher.hash_password(password.expose_secret()).await?;
                with_pool!(&self.pool, |pool, ts| {
                    sqlx::query(SET_TEMPORARY)
                        .bind(email)
                        .bind(&hash)
                        .bind(ts(now))
                        .bind(false)
                        .bind(true)
                        .execute(pool)
                        .await?
                        .rows_affected()
                })
            }
        };
        affected(rows)
    }

    async fn revert_temporary_password(
        &self,
        email: &Email,
        set_at: DateTime<Utc>,
    ) -> Result<bool, DirectoryError> {
        let rows = with_pool!(&self.pool, |pool, ts| {
            sqlx::query(REVERT)
                .bind(email.as_str())
                .bind(ts(set_at))
                .bind(true)
                .bind(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(rows > 0)
    }

    async fn ping(&self) -> Result<(), DirectoryError> {
        with_pool!(&self.pool, |pool, ts| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    async fn view(
        &self,
        email: &Email,
        _now: DateTime<Utc>,
    ) -> Result<Option<AccountView>, DirectoryError> {
        Ok(with_pool!(&self.pool, |pool, ts, time| {
            sqlx::query(VIEW)
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
                .map(|row| view_of!(row, time))
        }))
    }

    async fn list(&self, _now: DateTime<Utc>) -> Result<Option<Vec<AccountView>>, DirectoryError> {
        Ok(Some(with_pool!(&self.pool, |pool, ts, time| {
            sqlx::query(LIST)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| view_of!(row, time))
                .collect()
        })))
    }
}

#[async_trait]
impl AccountDirectory for BuiltinDirectory {
    async fn upsert(&self, a: &NewAccount, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        with_pool!(&self.pool, |pool, ts| {
            let mut connection = pool.acquire().await?;
            write_account!(connection, ts, a, now).await?;
        });
        Ok(())
    }

    async fn import(
        &self,
        accounts: &[NewAccount],
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError> {
        if accounts.is_empty() {
            return Ok(());
        }
        with_pool!(&self.pool, |pool, ts| {
            let mut tx = pool.begin().await?;
            for a in accounts {
                write_account!(tx, ts, a, now).await?;
                crate::write_enrolment!(
                    tx,
                    ts,
                    a.email.as_str(),
                    a.email.as_str(),
                    &a.questions,
                    now
                )
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn lock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        let rows = with_pool!(&self.pool, |pool, ts| {
            sqlx::query(UNLOCK)
                .bind(email.as_str())
                .bind(true)
                .bind(ts(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        affected(rows)
    }

    async fn verify_password(&self, email: &Email, password: &str) -> Result<bool, DirectoryError> {
        let hash: Option<Option<String>> = with_pool!(&self.pool, |pool, ts| {
            sqlx::query_scalar("SELECT password_hash FROM accounts WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
        });
        match hash {
            None => Err(DirectoryError::NotFound),
            Some(None) => Ok(false),
            Some(Some(hash)) => Ok(self.hasher.verify_password(password, hash).await?),
        }
    }
}
