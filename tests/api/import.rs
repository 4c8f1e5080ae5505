//! Bulk import: an import killed part way (SIGKILL) and run again stores
//! every row once and correctly, and does not hash again the rows its
//! checkpoint says were finished (their stored argon2id hashes, salted at
//! random, are the very same afterwards). Both importers, on the backend the
//! suite runs on (SQLite, or PostgreSQL with `UNLOCKBOT_TEST_POSTGRES`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use unlockbot::domain::{Answer, AnswerHash, AnswerNormalisation};
use unlockbot::hashing::{HashSettings, Hasher};

use crate::helpers::*;

/// Enough rows that one hashing worker takes several seconds over them
/// (three argon2id hashes a row), so the import can be stopped part way.
const ROWS: usize = 60;

const QUESTIONS: [&str; 3] = [
    "What was the name of your first pet?",
    "In which town were you born?",
    "What was the make of your first car?",
];

fn email(row: usize) -> String {
    format!("user{row:03}@nhs.net")
}

/// A different answer for every row and position, so that an answer stored
/// against the wrong row or question would be caught.
fn answer(row: usize, position: usize) -> String {
    format!("answer {position} of row {row}")
}

fn questions_and_answers(row: usize) -> String {
    (1..=3)
        .map(|p| format!("\"{}\",\"{}\"", QUESTIONS[p - 1], answer(row, p)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `accounts import`'s CSV: ROWS accounts, with their questions or without.
fn accounts_csv(with_questions: bool) -> String {
    let mut csv = format!("{CSV_HEADER}\n");
    for row in 1..=ROWS {
        let qa = if with_questions {
            questions_and_answers(row)
        } else {
            ",,,,,".to_owned()
        };
        csv.push_str(&format!(
            "{},07700 9{row:05},Leeds Teaching Hospitals,false,,true,{qa}\n",
            email(row)
        ));
    }
    csv
}

/// `enrolment import`'s CSV for the same ROWS accounts.
fn enrolments_csv() -> String {
    let mut csv = String::from("email,question1,answer1,question2,answer2,question3,answer3\n");
    for row in 1..=ROWS {
        csv.push_str(&format!("{},{}\n", email(row), questions_and_answers(row)));
    }
    csv
}

/// The rows a file's checkpoint (`FILE.progress`, `… rows=N`) says are
/// finished, if there is one.
fn checkpoint_rows(file: &Path) -> Option<u64> {
    let mut checkpoint = file.as_os_str().to_owned();
    checkpoint.push(".progress");
    let text = std::fs::read_to_string(PathBuf::from(checkpoint)).ok()?;
    text.trim().rsplit_once(" rows=")?.1.parse().ok()
}

/// Run an import with one hashing worker (slow enough to stop part way),
/// kill it with SIGKILL once its checkpoint shows rows finished, and return
/// the rows the checkpoint it left says are finished.
fn kill_after_a_checkpoint(app: &TestApp, file: &Path, args: &[&str]) -> u64 {
    let (mut child, _, stderr) = app.cli_started(&[("HASH_WORKERS", "1")], args);
    let started = Instant::now();
    loop {
        if checkpoint_rows(file).is_some_and(|rows| rows > 0) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the import ended ({status}) before a checkpoint was seen: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint in two minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Read again: a batch may have committed between the look and the kill.
    let finished = checkpoint_rows(file).expect("the killed import left its checkpoint");
    assert!(
        finished < ROWS as u64,
        "the import finished every row ({finished}) before it was killed"
    );
    finished
}

/// Every enrolled question: email → [(position, question, normalisation, hash)].
async fn enrolled(app: &TestApp) -> HashMap<String, Vec<(i64, String, i64, String)>> {
    let rows = app
        .db
        .strings(
            "SELECT directory_id || '|' || email || '|' || position || '|' || question || '|' \
             || answer_normalisation || '|' || answer_hash FROM enrolments"
                .to_owned(),
        )
        .await;
    let mut by_email: HashMap<String, Vec<_>> = HashMap::new();
    for row in rows {
        let f: Vec<&str> = row.split('|').collect();
        assert_eq!(f[0], f[1], "the built-in directory's id is the email");
        by_email.entry(f[1].to_owned()).or_default().push((
            f[2].parse().unwrap(),
            f[3].to_owned(),
            f[4].parse().unwrap(),
            f[5].to_owned(),
        ));
    }
    for questions in by_email.values_mut() {
        questions.sort();
    }
    by_email
}

/// Kill the import part way, check what the checkpoint covers is stored,
/// run it again, and check every row is stored once and correctly and the
/// rows finished before the kill were not hashed again.
async fn killed_and_resumed(app: &TestApp, file: &Path, args: &[&str]) {
    let finished = kill_after_a_checkpoint(app, file, args);
    let before = enrolled(app).await;
    for row in 1..=finished as usize {
        assert_eq!(
            before.get(&email(row)).map(Vec::len),
            Some(3),
            "row {row} is before the checkpoint ({finished}) but not stored"
        );
    }

    let (status, stdout, stderr) = app.cli(args, None);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("resuming: the first {finished} rows")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{finished} rows skipped")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("{} imported, 0 rejected", ROWS as u64 - finished)),
        "only the rows after the checkpoint are imported again: {stdout}"
    );
    assert_eq!(
        checkpoint_rows(file),
        None,
        "a finished import's checkpoint goes"
    );

    assert_eq!(app.count("accounts").await, ROWS as i64);
    assert_eq!(app.count("enrolments").await, 3 * ROWS as i64);
    let after = enrolled(app).await;
    assert_eq!(after.len(), ROWS);
    for row in 1..=finished as usize {
        assert_eq!(
            after[&email(row)],
            before[&email(row)],
            "row {row} was finished before the kill but was hashed and stored again"
        );
    }

    // Every row's answers are its own, at their positions (one position a
    // row, in turn, to keep the test quick; and a wrong answer fails).
    let hasher = Hasher::new(HashSettings {
        workers: 2,
        queue_limit: 3 * ROWS,
    });
    let checks = (1..=ROWS).map(|row| {
        let questions = &after[&email(row)];
        assert_eq!(
            questions
                .iter()
                .map(|q| (q.0, q.1.as_str()))
                .collect::<Vec<_>>(),
            [(1, QUESTIONS[0]), (2, QUESTIONS[1]), (3, QUESTIONS[2])],
            "row {row}"
        );
        let position = row % 3 + 1;
        let (_, _, normalisation, phc) = questions[position - 1].clone();
        let stored = AnswerHash {
            phc,
            normalisation: AnswerNormalisation::from_stored(normalisation).unwrap(),
        };
        let hasher = hasher.clone();
        async move {
            let right = hasher
                .verify_answer(Answer::new(&answer(row, position)), stored.clone())
                .await
                .unwrap();
            let wrong = hasher
                .verify_answer(Answer::new(&answer(row % ROWS + 1, position)), stored)
                .await
                .unwrap();
            (row, right, wrong)
        }
    });
    for (row, right, wrong) in futures::future::join_all(checks).await {
        assert!(right, "row {row}'s answer does not verify");
        assert!(!wrong, "row {row}'s hash verifies another row's answer");
    }
}

#[tokio::test]
async fn accounts_import_killed_part_way_resumes_without_hashing_finished_rows_again() {
    let app = spawn_app().await;
    let file = app.dir.path().join("accounts.csv");
    std::fs::write(&file, accounts_csv(true)).unwrap();
    let path = file.to_str().unwrap();
    killed_and_resumed(&app, &file, &["accounts", "import", path]).await;
}

#[tokio::test]
async fn enrolment_import_killed_part_way_resumes_without_hashing_finished_rows_again() {
    let app = spawn_app().await;
    let (status, stdout, stderr) =
        app.cli(&["accounts", "import", "-"], Some(&accounts_csv(false)));
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(app.count("enrolments").await, 0);
    let file = app.dir.path().join("enrolments.csv");
    std::fs::write(&file, enrolments_csv()).unwrap();
    let path = file.to_str().unwrap();
    killed_and_resumed(&app, &file, &["enrolment", "import", path]).await;
}
