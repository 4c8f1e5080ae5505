//! The built-in directory on SQLite: accounts in the service's own database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use super::{
    Account, AccountDirectory, AccountView, Directory, DirectoryError, NewAccount,
    SecurityQuestion, password_lifetime, stored_answer, verify_password_blocking,
};
use crate::domain::{Email, RegisteredMobile, parse_registered_mobile};
use crate::store::sqlite::{from_millis, to_millis};

#[derive(Clone)]
pub struct SqliteDirectory {
    pool: SqlitePool,
    allow_crown_dependencies: bool,
}

impl SqliteDirectory {
    pub fn new(pool: SqlitePool, allow_crown_dependencies: bool) -> Self {
        Self {
            pool,
            allow_crown_dependencies,
        }
    }
}

fn affected(done: sqlx::sqlite::SqliteQueryResult) -> Result<(), DirectoryError> {
    if done.rows_affected() == 0 {
        return Err(DirectoryError::NotFound);
    }
    Ok(())
}

#[async_trait]
impl Directory for SqliteDirectory {
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
            "SELECT position, question, answer_hash, answer_normalisation FROM security_questions WHERE account_email = $1 ORDER BY position",
        )
        .bind(email.as_str())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|q| {
            Ok(SecurityQuestion {
                position: u32::try_from(q.get::<i64, _>("position")).unwrap_or_default(),
                text: q.get("question"),
                answer_hash: stored_answer(
                    q.get("answer_hash"),
                    q.get::<i64, _>("answer_normalisation"),
                )?,
            })
        })
        .collect::<Result<_, DirectoryError>>()?;
        // A stored number that no longer parses is treated like no mobile at
        // all: the user is sent to their Local Administrator.
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

    async fn revert_temporary_password(
        &self,
        email: &Email,
        set_at: DateTime<Utc>,
    ) -> Result<bool, DirectoryError> {
        let done = sqlx::query(
            "UPDATE accounts SET
               password_hash = previous_password_hash,
               password_set_at = previous_password_set_at,
               must_change_password = COALESCE(previous_must_change_password, 0),
               previous_password_hash = NULL, previous_password_set_at = NULL, previous_must_change_password = NULL
             WHERE email = $1 AND must_change_password = 1 AND password_set_at = $2",
        )
        .bind(email.as_str())
        .bind(to_millis(set_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl AccountDirectory for SqliteDirectory {
    async fn upsert(&self, a: &NewAccount, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        let disabled_reason = a.disabled_reason();
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
        for (position, (question, hash)) in (1_i64..).zip(&a.questions) {
            sqlx::query(
                "INSERT INTO security_questions (account_email, position, question, answer_hash, answer_normalisation) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(a.email.as_str())
            .bind(position)
            .bind(question)
            .bind(&hash.phc)
            .bind(hash.normalisation.as_stored())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn lock(&self, email: &Email, now: DateTime<Utc>) -> Result<(), DirectoryError> {
        affected(
            sqlx::query("UPDATE accounts SET locked = 1, updated_at = $2 WHERE email = $1")
                .bind(email.as_str())
                .bind(to_millis(now))
                .execute(&self.pool)
                .await?,
        )
    }

    async fn verify_password(&self, email: &Email, password: &str) -> Result<bool, DirectoryError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM accounts WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
        match hash {
            None => Err(DirectoryError::NotFound),
            Some(None) => Ok(false),
            Some(Some(hash)) => verify_password_blocking(password, hash).await,
        }
    }

    async fn view(&self, email: &Email) -> Result<Option<AccountView>, DirectoryError> {
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
