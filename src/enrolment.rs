//! Enrolled security questions: kept in the bot's own database (never in
//! the directory), keyed by the directory's stable id for the account and
//! by its email. One implementation for both SQL backends: the queries are
//! the same text, run through whichever pool is configured.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

pub use crate::directory::NewQuestion;
use crate::directory::{AccountId, DECOY_ANSWER_HASH, DECOY_QUESTION, SecurityQuestion};
use crate::domain::{
    AnswerHash, AnswerNormalisation, AnswerSlot, AnswersKey, Email, ResealError, SealedAnswer,
};
use crate::sql::SqlPool;

#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    #[error("enrolment store unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("enrolment store unavailable: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(
        "a security answer was stored with normalisation {0}, which this version of unlockbot does not know (was the database written by a newer one?)"
    )]
    UnknownNormalisation(i64),
    #[error("an answer could not be sealed under the new key")]
    Seal,
}

/// A stored answer hash and the number of the normalisation it was made
/// with (the `answer_normalisation` column).
fn stored_answer(phc: String, normalisation: i64) -> Result<AnswerHash, EnrolmentError> {
    let normalisation = AnswerNormalisation::from_stored(normalisation)
        .ok_or(EnrolmentError::UnknownNormalisation(normalisation))?;
    Ok(AnswerHash { phc, normalisation })
}

#[async_trait]
pub trait Enrolments: Send + Sync {
    /// The questions enrolled for an account: those under its directory id,
    /// else (enrolled before the directory's id was known, as the built-in
    /// directory's import did) those under its email.
    async fn questions(
        &self,
        id: &AccountId,
        email: &Email,
    ) -> Result<Vec<SecurityQuestion>, EnrolmentError>;
    /// Replace an account's questions.
    async fn enrol(
        &self,
        id: &AccountId,
        email: &Email,
        questions: &[NewQuestion],
        now: DateTime<Utc>,
    ) -> Result<(), EnrolmentError>;
    /// Replace the questions of many accounts, in one transaction: all of
    /// them or none (the importers' batches).
    async fn enrol_all(
        &self,
        enrolments: &[Enrolment],
        now: DateTime<Utc>,
    ) -> Result<(), EnrolmentError>;
}

/// One account's questions, for [`Enrolments::enrol_all`].
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub id: AccountId,
    pub email: Email,
    /// In order: enrolled at positions 1, 2, 3.
    pub questions: Vec<NewQuestion>,
}

pub struct SqlEnrolments {
    pool: SqlPool,
}

impl SqlEnrolments {
    pub fn new(pool: SqlPool) -> Self {
        Self { pool }
    }

    /// Seal every stored sealed answer again, from `old` to `new`
    /// (`ANSWERS_KEY` rotation), `batch` answers per transaction. An answer
    /// that already opens under `new` is left alone, so a run that stopped
    /// half way is simply run again; one that opens under neither key is
    /// left alone and counted. A row changed meanwhile (a re-enrolment) is
    /// not overwritten. `progress` is told after each batch.
    pub async fn reseal_answers(
        &self,
        old: &AnswersKey,
        new: &AnswersKey,
        batch: u32,
        progress: &mut (dyn FnMut(&ResealReport) + Send),
    ) -> Result<ResealReport, EnrolmentError> {
        let mut report = ResealReport::default();
        let mut after: (String, i32) = (String::new(), 0);
        loop {
            let done = crate::with_pool!(&self.pool, |pool, _ts| {
                let mut tx = pool.begin().await?;
                let rows = sqlx::query(
                    "SELECT directory_id, position, answer_normalisation, answer_sealed FROM enrolments
                      WHERE answer_sealed IS NOT NULL
                        AND (directory_id > $1 OR (directory_id = $1 AND position > $2))
                      ORDER BY directory_id, position LIMIT $3",
                )
                .bind(&after.0)
                .bind(after.1)
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?;
                for row in &rows {
                    let owner: String = row.get("directory_id");
                    let position: i32 = row.get("position");
                    let stored: Vec<u8> = row.get("answer_sealed");
                    let normalisation = i64::from(row.get::<i32, _>("answer_normalisation"));
                    after = (owner.clone(), position);
                    let (Some(normalisation), Ok(position_u32)) = (
                        AnswerNormalisation::from_stored(normalisation),
                        u32::try_from(position),
                    ) else {
                        report.unreadable.push((owner, position));
                        continue;
                    };
                    let slot = AnswerSlot {
                        owner: &owner,
                        position: position_u32,
                        normalisation,
                    };
                    let sealed = SealedAnswer::from_stored(stored);
                    if new.opens(&sealed, slot) {
                        report.already += 1;
                        continue;
                    }
                    match old.reseal(new, &sealed, slot) {
                        Ok(resealed) => {
                            let changed = sqlx::query(
                                "UPDATE enrolments SET answer_sealed = $1
                                  WHERE directory_id = $2 AND position = $3 AND answer_sealed = $4",
                            )
                            .bind(resealed.as_bytes())
                            .bind(&owner)
                            .bind(position)
                            .bind(sealed.as_bytes())
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                            if changed == 1 {
                                report.resealed += 1;
                            } else {
                                report.changed_meanwhile += 1;
                            }
                        }
                        Err(ResealError::Open(_)) => report.unreadable.push((owner, position)),
                        Err(ResealError::Seal(_)) => {
                            return Err(EnrolmentError::Seal);
                        }
                    }
                }
                tx.commit().await?;
                rows.len() < batch as usize
            });
            progress(&report);
            if done {
                return Ok(report);
            }
        }
    }
}

/// What [`SqlEnrolments::reseal_answers`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Sealed again under the new key.
    pub resealed: u64,
    /// Already under the new key (an earlier run): left alone.
    pub already: u64,
    /// Re-enrolled while the run went on (already sealed afresh): left alone.
    pub changed_meanwhile: u64,
    /// Opened under neither key: left alone. (directory id, position).
    pub unreadable: Vec<(String, i32)>,
}

/// Replace one account's questions inside a transaction the caller holds
/// (`$tx`, on either backend; `$ts` as [`crate::with_pool!`] gives it):
/// the one place the enrolments are written, for [`Enrolments::enrol`],
/// [`Enrolments::enrol_all`] and the built-in directory's batched import
/// (accounts and their questions in one transaction). Evaluates to
/// `Result<(), sqlx::Error>`.
#[macro_export]
macro_rules! write_enrolment {
    ($tx:expr, $ts:expr, $id:expr, $email:expr, $questions:expr, $now:expr) => {
        async {
            sqlx::query($crate::enrolment::DELETE)
                .bind($id)
                .bind($email)
                .execute(&mut *$tx)
                .await?;
            for (position, q) in (1_i32..).zip($questions) {
                sqlx::query($crate::enrolment::INSERT)
                    .bind($id)
                    .bind($email)
                    .bind(position)
                    .bind(&q.question)
                    .bind(&q.answer_hash.phc)
                    .bind(q.answer_hash.normalisation.as_stored())
                    .bind(q.answer_sealed.as_ref().map(|s| s.as_bytes().to_vec()))
                    .bind($ts($now))
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}

/// A row of [`SELECT_BY_ID`] or [`SELECT_BY_EMAIL`], as either backend
/// reads it.
struct Enrolled {
    /// False for the decoy rows of an id with nothing enrolled.
    enrolled: bool,
    owner: String,
    position: i64,
    question: String,
    answer_hash: String,
    normalisation: i64,
    answer_sealed: Option<Vec<u8>>,
}

impl Enrolled {
    fn into_question(self) -> Result<SecurityQuestion, EnrolmentError> {
        Ok(SecurityQuestion {
            owner: self.owner,
            answer_sealed: self.answer_sealed.map(SealedAnswer::from_stored),
            position: u32::try_from(self.position).unwrap_or_default(),
            text: self.question,
            answer_hash: stored_answer(self.answer_hash, self.normalisation)?,
        })
    }
}

fn enrolled(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Enrolled>, rusqlite::Error> {
    conn.prepare_cached(sql)?
        .query_map(params, |q| {
            Ok(Enrolled {
                enrolled: q.get("enrolled")?,
                owner: q.get("directory_id")?,
                position: q.get("position")?,
                question: q.get("question")?,
                answer_hash: q.get("answer_hash")?,
                normalisation: q.get("answer_normalisation")?,
                answer_sealed: q.get("answer_sealed")?,
            })
        })?
        .collect()
}

/// The questions enrolled under an id; when there are none, decoy rows of
/// the same shape (`enrolled` false: three, as the CSV import enrols; the
/// decoy's text, hash and normalisation bound as `$2`, `$3`, `$4`), decoded
/// as real ones and then dropped, so that an unknown email's look-up costs
/// what an enrolled account's does (see [`crate::directory::DECOY_MOBILE`]).
const SELECT_BY_ID: &str = "SELECT TRUE AS enrolled, directory_id, position, question, answer_hash, answer_normalisation, answer_sealed
     FROM enrolments WHERE directory_id = $1
     UNION ALL
     SELECT FALSE, $1, decoy.position, $2, $3, $4, NULL
     FROM (SELECT 1 AS position UNION ALL SELECT 2 UNION ALL SELECT 3) AS decoy
     WHERE NOT EXISTS (SELECT 1 FROM enrolments WHERE directory_id = $1)
     ORDER BY position";
const SELECT_BY_EMAIL: &str = "SELECT TRUE AS enrolled, directory_id, position, question, answer_hash, answer_normalisation, answer_sealed FROM enrolments WHERE directory_id = $1 AND email = $1 ORDER BY position";
#[doc(hidden)]
pub const DELETE: &str =
    "DELETE FROM enrolments WHERE directory_id = $1 OR (directory_id = $2 AND email = $2)";
#[doc(hidden)]
pub const INSERT: &str = "INSERT INTO enrolments (directory_id, email, position, question, answer_hash, answer_normalisation, answer_sealed, enrolled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

#[async_trait]
impl Enrolments for SqlEnrolments {
    async fn questions(
        &self,
        id: &AccountId,
        email: &Email,
    ) -> Result<Vec<SecurityQuestion>, EnrolmentError> {
        let rows = match &self.pool {
            // On a turn's path: read on this thread, no hand-off to sqlx's.
            SqlPool::Sqlite(_, direct) => direct.read(|conn| {
                let mut rows = enrolled(
                    conn,
                    SELECT_BY_ID,
                    rusqlite::params![
                        id.as_str(),
                        DECOY_QUESTION,
                        DECOY_ANSWER_HASH,
                        AnswerNormalisation::CURRENT.as_stored()
                    ],
                )?;
                if !rows.iter().any(|q| q.enrolled) && id.as_str() != email.as_str() {
                    rows = enrolled(conn, SELECT_BY_EMAIL, [email.as_str()])?;
                }
                Ok(rows)
            })?,
            SqlPool::Postgres(pool) => {
                let mut rows = sqlx::query(SELECT_BY_ID)
                    .bind(id.as_str())
                    .bind(DECOY_QUESTION)
                    .bind(DECOY_ANSWER_HASH)
                    .bind(AnswerNormalisation::CURRENT.as_stored())
                    .fetch_all(pool)
                    .await?;
                if !rows.iter().any(|q| q.get::<bool, _>("enrolled"))
                    && id.as_str() != email.as_str()
                {
                    rows = sqlx::query(SELECT_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_all(pool)
                        .await?;
                }
                rows.into_iter()
                    .map(|q| Enrolled {
                        enrolled: q.get("enrolled"),
                        owner: q.get("directory_id"),
                        position: q.get::<i32, _>("position").into(),
                        question: q.get("question"),
                        answer_hash: q.get("answer_hash"),
                        normalisation: q.get::<i32, _>("answer_normalisation").into(),
                        answer_sealed: q.get("answer_sealed"),
                    })
                    .collect()
            }
        };
        let questions = rows
            .into_iter()
            .map(|row| Ok((row.enrolled, row.into_question()?)))
            .collect::<Result<Vec<_>, EnrolmentError>>()?;
        // The decoys were decoded in full; they are not questions.
        Ok(std::hint::black_box(questions)
            .into_iter()
            .filter_map(|(enrolled, question)| enrolled.then_some(question))
            .collect())
    }

    async fn enrol(
        &self,
        id: &AccountId,
        email: &Email,
        questions: &[NewQuestion],
        now: DateTime<Utc>,
    ) -> Result<(), EnrolmentError> {
        crate::with_pool!(&self.pool, |pool, ts| {
            let mut tx = pool.begin().await?;
            crate::write_enrolment!(tx, ts, id.as_str(), email.as_str(), questions, now).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn enrol_all(
        &self,
        enrolments: &[Enrolment],
        now: DateTime<Utc>,
    ) -> Result<(), EnrolmentError> {
        if enrolments.is_empty() {
            return Ok(());
        }
        crate::with_pool!(&self.pool, |pool, ts| {
            let mut tx = pool.begin().await?;
            for e in enrolments {
                crate::write_enrolment!(tx, ts, e.id.as_str(), e.email.as_str(), &e.questions, now)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
