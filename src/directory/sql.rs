//! The built-in directory: accounts in the service's own database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use super::{Account, Directory, DirectoryError, SecurityQuestion};
use crate::domain::{
    Email, RegisteredMobile, TempPassword, hash_password, parse_registered_mobile, verify_password,
};
use crate::store::sqlite::{from_millis, to_millis};

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
    pub questions: Vec<(String, String)>,
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

#[derive(Clone)]
pub struct SqlDirectory {
    pool: SqlitePool,
    allow_crown_dependencies: bool,
}

fn hashing_failed(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("password hashing failed: {e}"))
}

impl SqlDirectory {
    pub fn new(pool: SqlitePool, allow_crown_dependencies: bool) -> Self {
        Self {
            pool,
            allow_crown_dependencies,
        }
    }

    /// Insert or update (by email) one account and replace its questions.
    pub async fn upsert(&self, a: &NewAccount, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        let disabled_reason = match &a.mobile {
            Some(RegisteredMobile::NonUk { .. }) => {
                Some("registered mobile is not a UK mobile number")
            }
            _ => None,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (email, mobile, organisation, same_sign_on, synced_at, locked, disabled, disabled_reason, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (email) DO UPDATE SET mobile = excluded.mobile, organisation = excluded.organisation,
               same_sign_on = excluded.same_sign_on, synced_at = excluded.synced_at, locked = excluded.locked,
               disabled = excluded.disabled, disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at",
        )
        .bind(a.email.as_str())
        .bind(a.mobile.as_ref().map(|m| m.e164().to_owned()))
        .bind(&a.organisation)
        .bind(a.same_sign_on)
        .bind(a.synced_at.map(to_millis))
        .bind(a.locked)
        .bind(disabled_reason.is_some())
        .bind(disabled_reason)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM security_questions WHERE account_email = $1")
            .bind(a.email.as_str())
            .execute(&mut *tx)
            .await?;
        for (i, (question, hash)) in a.questions.iter().enumerate() {
            sqlx::query(
                "INSERT INTO security_questions (account_email, position, question, answer_hash) VALUES ($1, $2, $3, $4)",
            )
            .bind(a.email.as_str())
            .bind(i64::try_from(i).unwrap_or(i64::MAX) + 1)
            .bind(question)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lock an account, as the directory does after failed sign-ins.
    pub async fn lock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        let done = sqlx::query("UPDATE accounts SET locked = 1, updated_at = $2 WHERE email = $1")
            .bind(email.as_str())
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// Set a permanent password (operators and tests; the bot only ever sets
    /// temporary ones).
    pub async fn set_password(
        &self,
        email: &Email,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError> {
        let owned = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&owned))
            .await
            .map_err(hashing_failed)?
            .map_err(hashing_failed)?;
        let done = sqlx::query(
            "UPDATE accounts SET password_hash = $2, password_set_at = $3, must_change_password = 0, updated_at = $3 WHERE email = $1",
        )
        .bind(email.as_str())
        .bind(hash)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// Whether `password` is the account's current password.
    pub async fn verify_password(
        &self,
        email: &Email,
        password: &str,
    ) -> Result<bool, DirectoryError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM accounts WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(hash) = hash else {
            return Err(DirectoryError::NotFound);
        };
        let Some(hash) = hash else { return Ok(false) };
        let owned = password.to_owned();
        tokio::task::spawn_blocking(move || verify_password(&owned, &hash))
            .await
            .map_err(hashing_failed)
    }

    pub async fn view(&self, email: &Email) -> Result<Option<AccountView>, DirectoryError> {
        let Some(row) = sqlx::query(
            "SELECT email, mobile, organisation, same_sign_on, synced_at, locked, disabled, disabled_reason,
                    must_change_password, password_hash IS NOT NULL AS has_password, password_set_at
             FROM accounts WHERE email = $1",
        )
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let questions: Vec<String> = sqlx::query_scalar(
            "SELECT question FROM security_questions WHERE account_email = $1 ORDER BY position",
        )
        .bind(email.as_str())
        .fetch_all(&self.pool)
        .await?;
        let password_set_at = row
            .get::<Option<i64>, _>("password_set_at")
            .map(from_millis);
        Ok(Some(AccountView {
            email: row.get("email"),
            mobile: row.get("mobile"),
            organisation: row.get("organisation"),
            same_sign_on: row.get("same_sign_on"),
            synced_at: row.get::<Option<i64>, _>("synced_at").map(from_millis),
            locked: row.get("locked"),
            disabled: row.get("disabled"),
            disabled_reason: row.get("disabled_reason"),
            must_change_password: row.get("must_change_password"),
            has_password: row.get("has_password"),
            password_set_at,
            password_expires_at: password_set_at.map(|t| t + password_lifetime()),
            security_questions: questions,
        }))
    }
}

#[async_trait]
impl Directory for SqlDirectory {
    async fn find(&self, email: &Email) -> Result<Option<Account>, DirectoryError> {
        let Some(row) = sqlx::query(
            "SELECT mobile, organisation, same_sign_on, synced_at, locked, disabled, must_change_password, password_set_at
             FROM accounts WHERE email = $1",
        )
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let questions = sqlx::query(
            "SELECT position, question, answer_hash FROM security_questions WHERE account_email = $1 ORDER BY position",
        )
        .bind(email.as_str())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|q| SecurityQuestion {
            position: u32::try_from(q.get::<i64, _>("position")).unwrap_or_default(),
            text: q.get("question"),
            answer_hash: q.get("answer_hash"),
        })
        .collect();
        // A stored number that no longer parses (say, metadata changed) is
        // treated like no mobile at all: the user is sent to their Local
        // Administrator.
        let mobile = row
            .get::<Option<String>, _>("mobile")
            .and_then(|m| parse_registered_mobile(&m, self.allow_crown_dependencies).ok());
        let non_uk = matches!(mobile, Some(RegisteredMobile::NonUk { .. }));
        Ok(Some(Account {
            email: email.clone(),
            mobile,
            organisation: row.get("organisation"),
            same_sign_on: row.get("same_sign_on"),
            synced_at: row.get::<Option<i64>, _>("synced_at").map(from_millis),
            locked: row.get("locked"),
            disabled: row.get::<bool, _>("disabled") || non_uk,
            must_change_password: row.get("must_change_password"),
            password_set_at: row
                .get::<Option<i64>, _>("password_set_at")
                .map(from_millis),
            questions,
        }))
    }

    async fn unlock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        let done = sqlx::query("UPDATE accounts SET locked = 0, updated_at = $2 WHERE email = $1")
            .bind(email.as_str())
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    async fn set_temporary_password(
        &self,
        email: &Email,
        password: &TempPassword,
        now: DateTime<Utc>,
    ) -> Result<(), DirectoryError> {
        let secret = zeroize::Zeroizing::new(password.expose_secret().to_owned());
        let hash = tokio::task::spawn_blocking(move || hash_password(&secret))
            .await
            .map_err(hashing_failed)?
            .map_err(hashing_failed)?;
        let done = sqlx::query(
            "UPDATE accounts SET locked = 0, password_hash = $2, password_set_at = $3, must_change_password = 1, updated_at = $3
             WHERE email = $1",
        )
        .bind(email.as_str())
        .bind(hash)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }
}
