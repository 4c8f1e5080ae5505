//! Under load: hashing runs on a bounded pool, and an overloaded service
//! answers "busy" without changing anything. Nothing here is timed; the
//! figures are the load tool's (`examples/load.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::join_all;
use sqlx::Connection;

use crate::helpers::*;

const ACCOUNTS: usize = 20;
const PHONES: usize = 200;
const BUSY: &str = "very busy";

fn email(i: usize) -> String {
    format!("wave.user{i}@nhs.net")
}

fn mobile(i: usize) -> String {
    format!("07811{:06}", 100_000 + i)
}

fn last4(i: usize) -> String {
    let m = mobile(i);
    m[m.len() - 4..].to_owned()
}

fn phone(j: usize) -> String {
    format!("+447812{:06}", 200_000 + j)
}

/// Signed webhook posts from many phones at once (the app's own
/// `text_from` needs `&mut`).
struct Texter<'a> {
    app: &'a TestApp,
    sid: AtomicU64,
}

impl Texter<'_> {
    async fn text(&self, from: &str, body: &str) -> (u16, String) {
        let sid = format!("SMfeed{:028x}", self.sid.fetch_add(1, Ordering::SeqCst));
        let response = self
            .app
            .post_signed(&self.app.inbound_params(from, body, &sid))
            .await;
        let status = response.status().as_u16();
        (status, twiml_text(&response.text().await.unwrap()))
    }

    /// UNLOCK, email, last 4 digits: returns the first security question.
    async fn to_first_question(&self, from: &str, account: usize) -> String {
        self.text(from, "UNLOCK").await;
        self.text(from, &email(account)).await;
        let (status, q1) = self.text(from, &last4(account)).await;
        assert_eq!(status, 200);
        assert!(q1.contains("Security question 1 of 2"), "{q1}");
        q1
    }
}

async fn wave_app(env: Vec<(&'static str, String)>) -> TestApp {
    let app = spawn_app_with(Options { env }).await;
    let rows: Vec<AccountRow> = (0..ACCOUNTS)
        .map(|i| AccountRow::locked(&email(i), &mobile(i)))
        .collect();
    app.import(&rows).await;
    app
}

#[tokio::test]
async fn two_hundred_answers_at_once_all_get_a_reply_and_hashing_stays_within_its_workers() {
    let app = wave_app(vec![("HASH_WORKERS", "2".into())]).await;
    let texter = &Texter {
        app: &app,
        sid: AtomicU64::new(0),
    };
    let questions = join_all(
        (0..PHONES).map(|j| async move { texter.to_first_question(&phone(j), j % ACCOUNTS).await }),
    )
    .await;
    let hasher = app.hasher.clone().unwrap();
    let hashed_before = hasher.completed();

    // The wave: every phone answers its first question at the same moment.
    let replies = join_all(
        questions
            .iter()
            .enumerate()
            .map(|(j, q1)| async move { texter.text(&phone(j), answer_for(q1)).await }),
    )
    .await;

    // Every one is answered: the next question, or (when the database
    // or the hashing queue could not take it in time) "busy", which
    // changed nothing, so the same answer again goes through.
    assert_eq!(replies.len(), PHONES);
    let mut busy = 0;
    for (j, (status, reply)) in replies.iter().enumerate() {
        assert_eq!(*status, 200, "{reply}");
        if reply.contains(BUSY) {
            busy += 1;
            let (_, again) = texter.text(&phone(j), answer_for(&questions[j])).await;
            assert!(again.contains("Security question 2 of 2"), "{again}");
        } else {
            assert!(reply.contains("Security question 2 of 2"), "{reply}");
        }
    }
    assert!(busy < PHONES, "every answer was refused as busy");
    assert!(hasher.completed() - hashed_before >= PHONES - busy);
    assert!(
        hasher.peak_running() <= 2,
        "{} hashes ran at once with HASH_WORKERS=2",
        hasher.peak_running()
    );
    assert_eq!(hasher.settings().workers, 2);
}

/// Both workers held and the queue full: turns that need hashing are
/// answered "busy" at once, change nothing and count no failure.
#[tokio::test]
async fn a_full_hashing_queue_answers_busy_and_changes_nothing() {
    let app = wave_app(vec![
        ("HASH_WORKERS", "1".into()),
        ("HASH_QUEUE_LIMIT", "1".into()),
    ])
    .await;
    let texter = Texter {
        app: &app,
        sid: AtomicU64::new(0),
    };
    let from = phone(0);
    let q1 = texter.to_first_question(&from, 0).await;
    let hasher = app.hasher.clone().unwrap();

    // Hold the only worker, and fill the one place in the queue.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let holder = {
        let hasher = hasher.clone();
        tokio::spawn(async move {
            hasher
                .run(move |_| {
                    let _ = started_tx.send(());
                    let _ = gate.recv();
                })
                .await
        })
    };
    started.await.unwrap();
    let waiting = {
        let hasher = hasher.clone();
        tokio::spawn(async move { hasher.run(|_| ()).await })
    };
    while hasher.queued() < 1 {
        tokio::task::yield_now().await;
    }
    let audit_before = app.audit().len();
    let counts_before = app.write_counts().await;

    // Wrong answers, more than the attempt limit: each is refused as busy.
    for _ in 0..4 {
        let (status, reply) = texter.text(&from, "not my answer").await;
        assert_eq!(status, 200);
        assert!(reply.contains(BUSY), "{reply}");
        assert!(reply.contains("send the same reply again"), "{reply}");
    }
    assert_eq!(app.audit().len(), audit_before, "nothing audited");
    assert_eq!(app.write_counts().await, counts_before, "nothing written");

    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    waiting.await.unwrap().unwrap();

    // The conversation is where it was, and no failure was counted: the
    // right answers now verify.
    let (_, q2) = texter.text(&from, answer_for(&q1)).await;
    assert!(q2.contains("Security question 2 of 2"), "{q2}");
    let (_, options) = texter.text(&from, answer_for(&q2)).await;
    assert!(
        options.to_lowercase().contains("you are verified"),
        "{options}"
    );
    assert!(
        !app.audit().iter().any(|e| e["outcome"]
            .as_str()
            .unwrap_or_default()
            .starts_with("failed")),
        "a busy turn was counted as a failure"
    );
}

/// SQLite's write lock held elsewhere past its busy timeout: the turn is
/// answered "busy" (not a bare 503) and changes nothing.
#[tokio::test]
async fn a_locked_database_answers_busy() {
    if postgres_server().is_some() {
        return; // SQLite's write lock; PostgreSQL's outage has its own test
    }
    let mut app = spawn_app().await;
    app.text("UNLOCK").await;
    let counts_before = app.write_counts().await;
    let mut other = sqlx::SqliteConnection::connect(&app.db.url())
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let sid = app.next_sid();
    let (status, content_type, body) = app.text_with_sid(USER_PHONE, "jane@nhs.net", &sid).await;
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert!(twiml_text(&body).contains(BUSY), "{body}");
    assert_eq!(app.write_counts().await, counts_before);
    // The same message again, once the database is free, is processed.
    let (_, _, body) = app.text_with_sid(USER_PHONE, "jane@nhs.net", &sid).await;
    assert!(twiml_text(&body).contains("last 4 digits"), "{body}");
}
