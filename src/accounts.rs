//! `unlockbot accounts import FILE.csv`: the operators' account feed.
//!
//! Header: `email,mobile,organisation,same_sign_on,synced_at,locked,
//! question1,answer1,question2,answer2,question3,answer3`. Bad rows are
//! rejected with their line number and reason; the others are imported
//! (re-import updates by email).

use std::io::Read;

use chrono::{DateTime, Utc};

use crate::directory::{AccountDirectory, AccountId, NewAccount};
use crate::domain::{Answer, Email, PhoneError, RegisteredMobile, parse_registered_mobile};
use crate::enrolment::{Enrolments, NewQuestion};
use crate::hashing::Hasher;

pub const COLUMNS: [&str; 12] = [
    "email",
    "mobile",
    "organisation",
    "same_sign_on",
    "synced_at",
    "locked",
    "question1",
    "answer1",
    "question2",
    "answer2",
    "question3",
    "answer3",
];

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: usize,
    /// Imported, but disabled (registered mobile outside the UK): (line, email).
    pub disabled: Vec<(u64, String)>,
    pub rejected: Vec<Rejected>,
}

/// A plain-text account row (questions with their answers in clear, which
/// are hashed before anything is stored).
struct Row<'a> {
    fields: &'a csv::StringRecord,
    index: &'a [usize; 12],
}

impl Row<'_> {
    fn get(&self, column: usize) -> &str {
        self.fields
            .get(self.index[column])
            .unwrap_or_default()
            .trim()
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "false" => Ok(false),
        "true" => Ok(true),
        _ => Err(format!("{name} must be true or false, not '{value}'")),
    }
}

/// A parsed row whose answers are not hashed yet.
struct ParsedRow {
    /// With no questions yet.
    account: NewAccount,
    /// (question text, answer as given)
    answers: Vec<(String, Answer)>,
}

fn parse_row(row: &Row<'_>, allow_crown_dependencies: bool) -> Result<ParsedRow, String> {
    let email =
        Email::parse(row.get(0)).map_err(|e| format!("invalid email '{}': {e}", row.get(0)))?;
    let mobile = match row.get(1) {
        "" => None,
        raw => Some(
            parse_registered_mobile(raw, allow_crown_dependencies).map_err(|e| match e {
                PhoneError::NotMobile { .. } => {
                    format!("mobile '{raw}' is not a mobile number: {e}")
                }
                _ => format!("invalid phone number '{raw}': {e}"),
            })?,
        ),
    };
    let synced_at = match row.get(4) {
        "" => None,
        raw => Some(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|e| format!("synced_at '{raw}' is not an RFC 3339 time: {e}"))?
                .with_timezone(&Utc),
        ),
    };
    let mut answers = Vec::new();
    for n in 0..3 {
        let (question, answer) = (row.get(6 + 2 * n), Answer::new(row.get(7 + 2 * n)));
        // An answer is empty if nothing is left once normalised (" . ").
        match (question.is_empty(), answer.is_empty()) {
            (true, true) => {}
            (true, false) => return Err(format!("answer{} has no question{}", n + 1, n + 1)),
            (false, true) => {
                return Err(format!("question{} has no answer{}", n + 1, n + 1));
            }
            (false, false) => answers.push((question.to_owned(), answer)),
        }
    }
    let account = NewAccount {
        email,
        mobile,
        organisation: row.get(2).to_owned(),
        same_sign_on: parse_bool("same_sign_on", row.get(3))?,
        synced_at,
        locked: parse_bool("locked", row.get(5))?,
        questions: Vec::new(),
    };
    Ok(ParsedRow { account, answers })
}

/// Hash a row's answers on the hashing workers, all at once.
async fn hash_answers(hasher: &Hasher, row: ParsedRow) -> Result<NewAccount, String> {
    let ParsedRow {
        mut account,
        answers,
    } = row;
    let hashes = futures::future::join_all(
        answers
            .into_iter()
            .map(|(question, answer)| async move { (question, hasher.hash_answer(answer).await) }),
    )
    .await;
    for (n, (question, hash)) in hashes.into_iter().enumerate() {
        let hash = hash.map_err(|e| format!("cannot hash answer{}: {e}", n + 1))?;
        account.questions.push((question, hash));
    }
    Ok(account)
}

/// Store one account in the built-in directory and enrol its questions
/// (the built-in directory's id for an account is its email).
pub async fn save(
    directory: &dyn AccountDirectory,
    enrolments: &dyn Enrolments,
    account: &NewAccount,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    directory.upsert(account, now).await?;
    let questions: Vec<NewQuestion> = account
        .questions
        .iter()
        .map(|(question, answer_hash)| NewQuestion {
            question: question.clone(),
            answer_hash: answer_hash.clone(),
        })
        .collect();
    enrolments
        .enrol(
            &AccountId::new(account.email.as_str()),
            &account.email,
            &questions,
            now,
        )
        .await?;
    Ok(())
}

/// Import accounts from CSV. Returns an error only when the file as a whole
/// cannot be read (or the database fails); bad rows are in the report.
pub async fn import_csv(
    directory: &dyn AccountDirectory,
    enrolments: &dyn Enrolments,
    hasher: &Hasher,
    input: impl Read,
    allow_crown_dependencies: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<ImportReport> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers()?.clone();
    let mut index = [0usize; 12];
    for (i, column) in COLUMNS.iter().enumerate() {
        index[i] = headers
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == *column)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "line 1: the header has no '{column}' column (expected: {})",
                    COLUMNS.join(",")
                )
            })?;
    }
    let mut report = ImportReport::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or_default();
                report.rejected.push(Rejected {
                    line,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let row = Row {
            fields: &record,
            index: &index,
        };
        let parsed = match parse_row(&row, allow_crown_dependencies) {
            Ok(parsed) => hash_answers(hasher, parsed).await,
            Err(reason) => Err(reason),
        };
        match parsed {
            Ok(account) => {
                save(directory, enrolments, &account, now).await?;
                if let Some(RegisteredMobile::NonUk { .. }) = account.mobile {
                    report
                        .disabled
                        .push((line, account.email.as_str().to_owned()));
                }
                report.imported += 1;
            }
            Err(reason) => report.rejected.push(Rejected { line, reason }),
        }
    }
    Ok(report)
}
