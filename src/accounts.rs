//! `unlockbot accounts import FILE.csv`: the operators' account feed.
//!
//! Header: [`HEADER`] (column names in any order and any case). Bad rows
//! are rejected with their line number and reason; the others are imported
//! (re-import updates by email). An email on two rows of one file is
//! imported from the first and the second is rejected, naming both lines;
//! an account with no security question is imported with a warning (it
//! cannot use self-service until questions are enrolled).

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::directory::{AccountDirectory, AccountId, Directory, NewAccount};
use crate::domain::{
    Answer, AnswerSlot, AnswersKey, Email, PhoneError, RegisteredMobile, parse_registered_mobile,
};
use crate::enrolment::{Enrolment, Enrolments, NewQuestion};
use crate::hashing::Hasher;

/// The header `accounts import` expects, as `accounts import --help` shows it.
pub const HEADER: &str = "email,mobile,organisation,same_sign_on,synced_at,locked,question1,answer1,question2,answer2,question3,answer3";

/// `accounts import --help`: the header and what each column holds.
pub const IMPORT_HELP: &str = "The CSV file's first line is this header (columns in any order, names in any case):

  email,mobile,organisation,same_sign_on,synced_at,locked,question1,answer1,question2,answer2,question3,answer3

  email          the account's address (stored in lower case); one row per email per file
  mobile         the registered mobile, as spreadsheets write it (07700 900123, +44 (0)7700 900123, ...); empty: none
  organisation   the account's organisation
  same_sign_on   true or false (empty: false)
  synced_at      when the account was created, synced or moved into its organisation (RFC 3339), or empty
  locked         true or false (empty: false)
  questionN, answerN   up to three security questions with their answers (never stored in clear)

Rejected rows are reported with their line number and reason (exit status 1); the other rows are
imported, and a re-import updates by email. A row with no security question is imported with a
warning: that account cannot use self-service until questions are enrolled.
The repository's accounts.csv is a sample of fictional accounts.";

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
    /// Imported without any security question, so it cannot use
    /// self-service: (line, email).
    pub without_questions: Vec<(u64, String)>,
    pub rejected: Vec<Rejected>,
}

/// A plain-text account row (questions with their answers in clear, which
/// are hashed before anything is stored).
struct Row<'a> {
    fields: &'a csv::StringRecord,
    index: &'a [usize],
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
    let answers = parse_answers(row, 6)?;
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

/// The three question/answer column pairs starting at `first`, answers
/// normalised (hashed later, on the hashing workers).
fn parse_answers(row: &Row<'_>, first: usize) -> Result<Vec<(String, Answer)>, String> {
    let mut answers = Vec::new();
    for n in 0..3 {
        let (question, answer) = (
            row.get(first + 2 * n),
            Answer::new(row.get(first + 1 + 2 * n)),
        );
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
    Ok(answers)
}

/// How the importers store answers: always as argon2id hashes (on the
/// hashing workers), and also sealed under `ANSWERS_KEY` when it is set,
/// so that an estate can switch `ANSWER_MODE` without anyone enrolling
/// again.
#[derive(Clone, Copy)]
pub struct AnswerStorage<'a> {
    pub hasher: &'a Hasher,
    pub key: Option<&'a AnswersKey>,
}

impl<'a> AnswerStorage<'a> {
    /// Hashes only.
    pub fn hashed(hasher: &'a Hasher) -> Self {
        Self { hasher, key: None }
    }
}

/// Hash (and seal) a row's answers; the built-in directory enrols them
/// under the account's email.
async fn hash_answers(storage: AnswerStorage<'_>, row: ParsedRow) -> Result<NewAccount, String> {
    let ParsedRow {
        mut account,
        answers,
    } = row;
    let owner = AccountId::new(account.email.as_str());
    account.questions = hash_questions(storage, &owner, answers).await?;
    Ok(account)
}

/// Hash one row's answers on the hashing workers, all at once, and seal
/// each under `ANSWERS_KEY` (if set) for the position it is enrolled at
/// under `owner` (both importers).
async fn hash_questions(
    storage: AnswerStorage<'_>,
    owner: &AccountId,
    answers: Vec<(String, Answer)>,
) -> Result<Vec<NewQuestion>, String> {
    let hasher = storage.hasher;
    let mut sealed = Vec::with_capacity(answers.len());
    for (position, (_, answer)) in (1_u32..).zip(&answers) {
        sealed.push(
            storage
                .key
                .map(|key| {
                    key.seal(
                        answer,
                        AnswerSlot {
                            owner: owner.as_str(),
                            position,
                            normalisation: crate::domain::AnswerNormalisation::CURRENT,
                        },
                    )
                })
                .transpose()
                .map_err(|e| format!("cannot seal answer{position}: {e}"))?,
        );
    }
    let hashes = futures::future::join_all(
        answers
            .into_iter()
            .map(|(question, answer)| async move { (question, hasher.hash_answer(answer).await) }),
    )
    .await;
    hashes
        .into_iter()
        .zip(sealed)
        .enumerate()
        .map(|(n, ((question, hash), answer_sealed))| {
            let answer_hash = hash.map_err(|e| format!("cannot hash answer{}: {e}", n + 1))?;
            Ok(NewQuestion {
                question,
                answer_hash,
                answer_sealed,
            })
        })
        .collect()
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
    enrolments
        .enrol(
            &AccountId::new(account.email.as_str()),
            &account.email,
            &account.questions,
            now,
        )
        .await?;
    Ok(())
}

/// One data row of an operators' CSV file: its line as a text editor shows
/// it, and its fields, or why it cannot be used.
pub struct CsvRow {
    pub line: u64,
    pub fields: Result<csv::StringRecord, String>,
}

/// Read an operators' CSV file (`accounts import`, `enrolment import`): the
/// header must name every column in `columns` (in any order; a byte-order
/// mark is ignored); returns, for each column, its index in a row, and the
/// data rows. Every row is checked here, for both importers:
///
/// * it has exactly as many fields as the header (an unquoted comma in a
///   question would otherwise shift an answer into a column that is stored
///   in clear and shown);
/// * no field holds a control, direction-changing or invisible character
///   (reported by column and code point; never for an answer, whose
///   content is never echoed);
/// * line numbers count `\n`, `\r\n` and a lone `\r` each as one line
///   break, as a text editor does, from the start of the row.
///
/// Blank rows are skipped. The error is for a file that cannot be read at
/// all (no header, a missing column).
pub fn read_csv(
    mut input: impl Read,
    columns: &[&str],
) -> anyhow::Result<(Vec<usize>, Vec<CsvRow>)> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let headers = reader.headers()?.clone();
    let mut index = Vec::with_capacity(columns.len());
    for column in columns {
        index.push(
            headers
                .iter()
                .position(|h| {
                    h.trim()
                        .trim_start_matches('\u{feff}')
                        .eq_ignore_ascii_case(column)
                })
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "line 1: the header has no '{column}' column (expected: {})",
                        columns.join(",")
                    )
                })?,
        );
    }
    let lines = LineIndex::new(&bytes);
    let mut rows = Vec::new();
    for record in reader.records() {
        let row = match record {
            Ok(record) => {
                let line = lines.line_at(&bytes, record.position().map(|p| p.byte()).unwrap_or(0));
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                CsvRow {
                    line,
                    fields: check_fields(record, &headers),
                }
            }
            Err(e) => CsvRow {
                line: lines.line_at(&bytes, e.position().map(|p| p.byte()).unwrap_or(0)),
                // csv's messages name positions, never field contents.
                fields: Err(format!("unreadable row: {e}")),
            },
        };
        rows.push(row);
    }
    Ok((index, rows))
}

fn check_fields(
    record: csv::StringRecord,
    headers: &csv::StringRecord,
) -> Result<csv::StringRecord, String> {
    if record.len() != headers.len() {
        return Err(format!(
            "{} fields where the header has {} (is there an unquoted comma or quote in a field?); row not imported",
            record.len(),
            headers.len()
        ));
    }
    for (field, name) in record.iter().zip(headers.iter()) {
        if let Some(c) = crate::domain::text::first_unsafe_char(field) {
            let name = name.trim().trim_start_matches('\u{feff}');
            return Err(if name.to_ascii_lowercase().starts_with("answer") {
                format!("{name} contains a control or invisible character")
            } else {
                format!(
                    "{name} contains a control or invisible character (U+{:04X})",
                    u32::from(c)
                )
            });
        }
    }
    Ok(record)
}

/// A second row for an email already on an earlier row of the same file is
/// rejected, naming both lines (the first is the one imported): two rows
/// for one account would otherwise leave whichever came last, silently.
/// `email` is the email column's index in a row.
fn reject_repeated_emails(rows: &mut [CsvRow], email: usize) {
    let mut first_line = std::collections::HashMap::new();
    for row in rows.iter_mut() {
        let Ok(fields) = &row.fields else {
            continue;
        };
        let Ok(address) = Email::parse(fields.get(email).unwrap_or_default().trim()) else {
            continue;
        };
        match first_line.get(&address) {
            Some(first) => {
                row.fields = Err(format!(
                    "{address} is also on line {first} of this file: the row on line {first} is imported, this one is not"
                ));
            }
            None => {
                first_line.insert(address, row.line);
            }
        }
    }
}

/// Line numbers of byte offsets, counting line breaks as an editor does.
struct LineIndex {
    /// Byte offsets where each line after the first starts.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(bytes: &[u8]) -> Self {
        let mut starts = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    starts.push(i + 2);
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        Self { starts }
    }

    /// The 1-based line of the row that csv says starts at `byte`. csv's
    /// position may point at line breaks before the row (the `\n` of a
    /// `\r\n`, skipped blank lines): the row starts after them.
    fn line_at(&self, bytes: &[u8], byte: u64) -> u64 {
        let mut byte = usize::try_from(byte).unwrap_or(usize::MAX);
        while matches!(bytes.get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        let before = self.starts.partition_point(|&start| start <= byte);
        u64::try_from(before).unwrap_or(u64::MAX) + 1
    }
}

/// Import accounts from CSV. Returns an error only when the file as a whole
/// cannot be read (or the database fails); bad rows are in the report.
pub async fn import_csv(
    directory: &dyn AccountDirectory,
    answers: AnswerStorage<'_>,
    input: impl Read,
    allow_crown_dependencies: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<ImportReport> {
    let rows = ImportRows {
        skip: 0,
        done: &mut |_| {},
    };
    import_csv_resuming(
        directory,
        answers,
        input,
        allow_crown_dependencies,
        now,
        rows,
    )
    .await
}

/// Where an import starts, and who hears of its progress.
pub struct ImportRows<'a> {
    /// Data rows already imported by an earlier, interrupted run of the
    /// same file: passed over without hashing or writing them.
    pub skip: u64,
    /// Called with the number of data rows finished (imported or rejected,
    /// in file order, and every one before it too) each time a batch has
    /// committed: a checkpoint and a progress bar.
    pub done: &'a mut (dyn FnMut(u64) + Send),
}

/// Rows stored in one transaction at most ...
pub const BATCH_ROWS: usize = 250;
/// ... and the longest the first row of a batch waits for the others
/// (so that a checkpoint is never far behind, however slow the rows come).
pub const BATCH_WAIT: Duration = Duration::from_secs(1);

/// What the shared import pipeline gives each importer back, once a row's
/// batch has committed.
trait Stored {
    /// Note what the report says of a stored row (beyond "imported").
    fn note(&self, _line: u64, _report: &mut ImportReport) {}
}

/// The importers' shared machinery. Rows after the first `rows.skip` are
/// prepared (parsed, looked up, answers hashed) `in_flight` at a time, so
/// that every hashing worker is busy; prepared rows are handed on in file
/// order and stored by `write` in batches of up to [`BATCH_ROWS`] rows or
/// [`BATCH_WAIT`], one transaction per batch, while the next rows hash.
/// `rows.done` hears of a batch only after it has committed, so "rows
/// finished" is always a prefix of the file that is in the database.
async fn run_import<T, P, PF, W, WF>(
    data: Vec<CsvRow>,
    in_flight: usize,
    mut prepare: P,
    mut write: W,
    rows: ImportRows<'_>,
) -> anyhow::Result<ImportReport>
where
    T: Stored,
    P: FnMut(CsvRow) -> PF,
    PF: Future<Output = anyhow::Result<(u64, Result<T, String>)>>,
    W: FnMut(Vec<T>) -> WF,
    WF: Future<Output = anyhow::Result<()>>,
{
    use futures::stream::{FuturesOrdered, StreamExt};

    let skip = usize::try_from(rows.skip).unwrap_or(usize::MAX);
    let mut finished = rows.skip.min(data.len() as u64);
    let done = rows.done;
    let (send, mut received) = tokio::sync::mpsc::channel(BATCH_ROWS * 2);

    let hashing = async move {
        let mut data = data.into_iter().skip(skip);
        let mut pending = FuturesOrdered::new();
        loop {
            // Keep every hashing worker busy.
            while pending.len() < in_flight {
                let Some(row) = data.next() else {
                    break;
                };
                pending.push_back(prepare(row));
            }
            let Some(prepared) = pending.next().await else {
                break;
            };
            let failed = prepared.is_err();
            if send.send(prepared).await.is_err() || failed {
                // The writer stopped (a database error): so do we.
                break;
            }
        }
    };

    let storing = async move {
        let mut report = ImportReport::default();
        let mut batch: Vec<(u64, Result<T, String>)> = Vec::new();
        let mut deadline = None;
        loop {
            let next = match deadline {
                None => Some(received.recv().await),
                Some(at) => tokio::time::timeout_at(at, received.recv()).await.ok(),
            };
            let end = matches!(next, Some(None));
            if let Some(Some(row)) = next {
                // A row that cannot be prepared for a reason other than
                // its content (the directory or the hashing is down) ends
                // the import; what is committed stays, and a rerun resumes.
                let row = row?;
                if batch.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + BATCH_WAIT);
                }
                batch.push(row);
                if batch.len() < BATCH_ROWS {
                    continue;
                }
            }
            if !batch.is_empty() {
                let mut stored = Vec::with_capacity(batch.len());
                for (line, outcome) in batch.drain(..) {
                    match outcome {
                        Ok(row) => {
                            row.note(line, &mut report);
                            report.imported += 1;
                            stored.push(row);
                        }
                        Err(reason) => report.rejected.push(Rejected { line, reason }),
                    }
                    finished += 1;
                }
                if !stored.is_empty() {
                    write(stored).await?;
                }
                done(finished);
            }
            deadline = None;
            if end {
                return Ok(report);
            }
        }
    };

    let ((), report) = futures::join!(hashing, storing);
    report
}

impl Stored for NewAccount {
    fn note(&self, line: u64, report: &mut ImportReport) {
        if let Some(RegisteredMobile::NonUk { .. }) = self.mobile {
            report.disabled.push((line, self.email.as_str().to_owned()));
        }
        if self.questions.is_empty() {
            report
                .without_questions
                .push((line, self.email.as_str().to_owned()));
        }
    }
}

impl Stored for Enrolment {}

/// [`import_csv`], starting after `rows.skip` data rows and reporting
/// progress (see [`run_import`]): the answers of up to
/// `2 × HASH_WORKERS` rows hash at once, and the accounts are stored with
/// their questions in batches, one transaction each.
pub async fn import_csv_resuming(
    directory: &dyn AccountDirectory,
    answers: AnswerStorage<'_>,
    input: impl Read,
    allow_crown_dependencies: bool,
    now: DateTime<Utc>,
    rows: ImportRows<'_>,
) -> anyhow::Result<ImportReport> {
    let (columns, mut data) = read_csv(input, &COLUMNS)?;
    reject_repeated_emails(&mut data, columns[0]);
    let index = &columns;
    run_import(
        data,
        answers.hasher.settings().workers * 2,
        |CsvRow { line, fields }| {
            let parsed = fields.and_then(|record| {
                let row = Row {
                    fields: &record,
                    index,
                };
                parse_row(&row, allow_crown_dependencies)
            });
            async move {
                let account = match parsed {
                    Ok(parsed) => hash_answers(answers, parsed).await,
                    Err(reason) => Err(reason),
                };
                Ok((line, account))
            }
        },
        |accounts: Vec<NewAccount>| async move {
            directory.import(&accounts, now).await?;
            Ok(())
        },
        rows,
    )
    .await
}

/// The columns of `unlockbot enrolment import`.
pub const ENROLMENT_COLUMNS: [&str; 7] = [
    "email",
    "question1",
    "answer1",
    "question2",
    "answer2",
    "question3",
    "answer3",
];

/// Enrol security questions for accounts the configured directory knows
/// (any directory: the questions are kept in the bot's database, under the
/// directory's stable id for the account). A row whose email the directory
/// does not know is rejected with its line number.
pub async fn import_enrolments_csv(
    directory: &dyn Directory,
    enrolments: &dyn Enrolments,
    storage: AnswerStorage<'_>,
    input: impl Read,
    now: DateTime<Utc>,
) -> anyhow::Result<ImportReport> {
    let rows = ImportRows {
        skip: 0,
        done: &mut |_| {},
    };
    import_enrolments_csv_resuming(directory, enrolments, storage, input, now, rows).await
}

/// [`import_enrolments_csv`], starting after `rows.skip` data rows and
/// reporting progress, as [`import_csv_resuming`] does: rows are looked up
/// in the directory and their answers hashed `2 × HASH_WORKERS` at once,
/// and enrolled in batches, one transaction each.
pub async fn import_enrolments_csv_resuming(
    directory: &dyn Directory,
    enrolments: &dyn Enrolments,
    storage: AnswerStorage<'_>,
    input: impl Read,
    now: DateTime<Utc>,
    rows: ImportRows<'_>,
) -> anyhow::Result<ImportReport> {
    let (index, mut data) = read_csv(input, &ENROLMENT_COLUMNS)?;
    reject_repeated_emails(&mut data, index[0]);
    let index = &index;
    run_import(
        data,
        storage.hasher.settings().workers * 2,
        |CsvRow { line, fields }| {
            let parsed = fields.and_then(|record| {
                let row = Row {
                    fields: &record,
                    index,
                };
                let email = Email::parse(row.get(0))
                    .map_err(|e| format!("invalid email '{}': {e}", row.get(0)))?;
                match parse_answers(&row, 1)? {
                    answers if answers.is_empty() => Err("no question and answer".to_owned()),
                    answers => Ok((email, answers)),
                }
            });
            async move {
                let (email, answers) = match parsed {
                    Ok(parsed) => parsed,
                    Err(reason) => return Ok((line, Err(reason))),
                };
                let Some(account) = directory.find(&email).await? else {
                    return Ok((
                        line,
                        Err(format!("{email} is not an account in the directory")),
                    ));
                };
                let id = account.account.id;
                let questions = hash_questions(storage, &id, answers)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok((
                    line,
                    Ok(Enrolment {
                        id,
                        email,
                        questions,
                    }),
                ))
            }
        },
        |batch: Vec<Enrolment>| async move {
            enrolments.enrol_all(&batch, now).await?;
            Ok(())
        },
        rows,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_and_reasons(csv: &str) -> Vec<(u64, Result<(), String>)> {
        let (_, rows) = read_csv(csv.as_bytes(), &["a", "answer1"]).unwrap();
        rows.into_iter()
            .map(|r| (r.line, r.fields.map(|_| ())))
            .collect()
    }

    #[test]
    fn the_help_shows_the_header_of_the_columns() {
        assert_eq!(COLUMNS.join(","), HEADER);
        assert!(IMPORT_HELP.contains(&format!("\n  {HEADER}\n")));
    }

    #[test]
    fn the_header_is_read_in_any_case_and_a_repeated_email_names_both_lines() {
        let csv = "EMAIL,Answer1\nJane@nhs.net,1\nbob@nhs.net,2\njane@NHS.net,3\n";
        let (index, mut rows) = read_csv(csv.as_bytes(), &["email", "answer1"]).unwrap();
        assert_eq!(index, [0, 1]);
        reject_repeated_emails(&mut rows, index[0]);
        assert!(rows[0].fields.is_ok() && rows[1].fields.is_ok());
        let reason = rows[2].fields.as_ref().unwrap_err();
        assert_eq!(rows[2].line, 4);
        assert!(
            reason.contains("jane@nhs.net is also on line 2"),
            "{reason}"
        );
    }

    #[test]
    fn line_numbers_are_an_editors_whatever_the_line_endings() {
        for eol in ["\n", "\r\n", "\r"] {
            let csv = ["a,answer1", "x,1", "", "\"multi", "line\",2", "y,3"].join(eol) + eol;
            let got: Vec<u64> = lines_and_reasons(&csv).iter().map(|r| r.0).collect();
            assert_eq!(got, [2, 4, 6], "line endings {eol:?}");
        }
    }

    #[test]
    fn rows_with_the_wrong_field_count_or_unsafe_characters_are_refused() {
        let csv = "a,answer1\r\nx,Biscuit,extra\r\nx\r\nq\u{7},1\r\nok,Bisc\u{202E}uit\r\n";
        let got = lines_and_reasons(csv);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 2);
        let reason = got[0].1.clone().unwrap_err();
        assert!(
            reason.contains("3 fields where the header has 2"),
            "{reason}"
        );
        assert!(!reason.contains("Biscuit"), "{reason}");
        assert!(got[1].1.clone().unwrap_err().contains("1 fields"));
        assert_eq!(
            got[2].1.clone().unwrap_err(),
            "a contains a control or invisible character (U+0007)"
        );
        let reason = got[3].1.clone().unwrap_err();
        assert_eq!(reason, "answer1 contains a control or invisible character");
    }
}
