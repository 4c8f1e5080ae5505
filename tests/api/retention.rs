//! What the service keeps: secrets erased from every database file once a
//! text is settled, data swept when no longer needed, senders stored only
//! as keyed hashes.

use crate::helpers::*;
use wiremock::matchers::{method, path};

const EMAIL: &str = "jane.smith@nhs.net";
/// The registered mobile: not the phone the user texts from, so that the
/// sender's number has no reason to be in the directory.
const REGISTERED: &str = "07400 123456";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A reset whose texts wait in the outbox for a while (the provider fails
/// once), then go: afterwards no file of the database holds the password,
/// the text's wording around it, any piece of the sealed rows, the number
/// the user texted from, or any security answer (imported with
/// `ANSWERS_KEY`, so stored both hashed and sealed).
#[tokio::test]
async fn after_a_reset_no_database_file_holds_the_password_or_the_sealed_texts() {
    use crate::characters::{ANSWERS_KEY, LONG_ANSWERS, row_with_long_answers};
    let mut app = spawn_app_with(Options {
        env: vec![("ANSWERS_KEY", ANSWERS_KEY.into())],
    })
    .await;
    app.import(&[row_with_long_answers(EMAIL, REGISTERED)])
        .await;
    wiremock::Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    let answer = |q: &str| {
        LONG_ANSWERS
            .iter()
            .find(|(question, _)| q.contains(question))
            .unwrap_or_else(|| panic!("no question in {q}"))
            .1
    };
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let q2 = app.text(answer(&q1)).await;
    let options = app.text(answer(&q2)).await;
    assert!(options.contains("Reply 1"), "{options}");
    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    app.outbox_settled().await; // both texts tried once, waiting to retry
    let sealed = app.sealed_texts().await;
    assert_eq!(sealed.len(), 2, "the two texts are queued, sealed");

    app.advance(chrono::Duration::minutes(1));
    let texts = app.sent_texts().await;
    let password_text = texts
        .iter()
        .find(|t| t.body.contains("temporary password is"))
        .expect("password texted");
    let password = temp_password_in(&password_text.body);
    assert!(app.password_is(EMAIL, &password));
    assert!(app.sealed_texts().await.is_empty(), "erased once sent");

    // The erasure commits, then the table of secrets is rewritten (on
    // PostgreSQL, `VACUUM FULL`, again once any transaction older than the
    // erasure has ended): give that up to 20 s, then check every file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let files = app.database_bytes().await;
        let found = copies_in(&files, &password, &sealed);
        if found.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in the database files after 20 s: {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        app.count("enrolments").await,
        3,
        "the answers were imported (hashed and sealed)"
    );
    let audit = app.audit();
    assert!(
        audit.iter().all(|e| e["sender"] == "+44*******456"),
        "the audit keeps the masked sender: {audit:?}"
    );
}

/// What of a reset's secrets `files` still holds: the password, the text's
/// wording, the sender's number, any form of a security answer, any
/// 16-byte piece of a sealed text.
fn copies_in(files: &[u8], password: &str, sealed: &[Vec<u8>]) -> Vec<String> {
    use crate::characters::{LONG_ANSWERS, answer_forms};
    let mut found = Vec::new();
    if contains(files, password.as_bytes()) {
        found.push("the temporary password".to_owned());
    }
    if contains(files, b"You must change it when you next sign in") {
        found.push("the text's wording".to_owned());
    }
    if contains(files, &USER_PHONE.as_bytes()[3..]) {
        found.push("the sender's number".to_owned());
    }
    for (_, answer) in LONG_ANSWERS {
        for form in answer_forms(answer) {
            if contains(files, form.as_bytes()) {
                found.push(format!("the answer {answer:?} as {form:?}"));
            }
        }
    }
    for blob in sealed {
        // The nonce, and every 16-byte piece of the ciphertext.
        if blob
            .chunks(16)
            .filter(|c| c.len() == 16)
            .any(|piece| contains(files, piece))
        {
            found.push("a piece of a sealed text".to_owned());
        }
    }
    found
}

/// Restart the server (its worker sweeps at start-up) and wait until the
/// sweep, one transaction, has deleted every conversation: each test leaves
/// at least one expired conversation behind as the sign that it ran.
async fn sweep_now(app: &mut TestApp) {
    assert!(
        app.count("conversations").await > 0,
        "nothing to show the sweep ran"
    );
    app.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.count("conversations").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_conversations_are_deleted_once_they_expire() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, REGISTERED)]).await;
    app.text_from(USER_PHONE, "UNLOCK").await;
    app.text_from(USER_PHONE, EMAIL).await;
    app.advance(chrono::Duration::minutes(10));
    let other = "+447811654321";
    app.text_from(other, "UNLOCK").await;
    app.advance(chrono::Duration::minutes(6));
    // The first is idle for 16 minutes (expired), the second for 6.
    app.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.count("conversations").await > 1 {
        assert!(std::time::Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("conversations").await, 1);
    let reply = app.text_from(other, EMAIL).await;
    assert!(
        reply.contains("last 4 digits"),
        "the live one goes on: {reply}"
    );
    let reply = app.text_from(USER_PHONE, "3456").await;
    assert!(
        reply.contains("email address"),
        "the expired one starts afresh: {reply}"
    );
}

/// Failures count for 24 hours, a block lasts 24 hours, settled texts are
/// kept for OUTBOX_RETENTION_HOURS (24): all are kept while needed, and
/// deleted after.
#[tokio::test]
async fn failures_blocks_and_settled_texts_go_when_no_longer_needed() {
    let mut app = spawn_app().await;
    let other = "bob.jones@nhs.net";
    app.import(&[
        AccountRow::locked(EMAIL, REGISTERED),
        AccountRow::locked(other, "07400 654321"),
    ])
    .await;
    for _ in 0..3 {
        app.text_from("+447811000001", "UNLOCK").await;
        app.text_from("+447811000001", EMAIL).await;
        app.text_from("+447811000001", "0000").await;
    }
    assert_eq!(app.count("verification_failures").await, 3);
    assert_eq!(app.count("account_blocks").await, 1);
    let q1 = {
        app.text_from("+447811000002", "UNLOCK").await;
        app.text_from("+447811000002", other).await;
        app.text_from("+447811000002", "4321").await
    };
    let q2 = app.text_from("+447811000002", answer_for(&q1)).await;
    app.text_from("+447811000002", answer_for(&q2)).await;
    app.text_from("+447811000002", "2").await;
    // The block's notice to Jane's mobile, Bob's password and his notice.
    assert_eq!(app.sent_texts().await.len(), 3);
    assert_eq!(app.count("outbox").await, 3);

    app.text_from("+447811000003", "UNLOCK").await; // expires: the sign
    app.advance(chrono::Duration::hours(23));
    sweep_now(&mut app).await;
    assert_eq!(
        app.count("verification_failures").await,
        3,
        "still in the window"
    );
    assert_eq!(app.count("account_blocks").await, 1, "still blocked");
    assert_eq!(app.count("outbox").await, 3, "kept for 24 hours");

    app.text_from("+447811000003", "UNLOCK").await;
    app.advance(chrono::Duration::hours(2));
    sweep_now(&mut app).await;
    assert_eq!(app.count("verification_failures").await, 0);
    assert_eq!(app.count("account_blocks").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    assert!(app.count("audit_log").await > 0, "the audit trail stays");
}

#[tokio::test]
async fn the_audit_trail_is_kept_for_audit_retention_days() {
    let mut app = spawn_app_with(Options {
        env: vec![("AUDIT_RETENTION_DAYS", "30".into())],
    })
    .await;
    app.text_from(USER_PHONE, "UNLOCK").await;
    let first = app.audit().len();
    assert!(first > 0);
    app.advance(chrono::Duration::days(29));
    app.text_from("+447811000003", "UNLOCK").await; // the sign, and newer events
    let both = app.audit().len();
    app.advance(chrono::Duration::hours(23));
    sweep_now(&mut app).await;
    assert_eq!(app.audit().len(), both, "29 days old: kept");

    app.text_from("+447811000003", "UNLOCK").await;
    let all = app.audit().len();
    app.advance(chrono::Duration::days(1));
    sweep_now(&mut app).await;
    let left = app.audit();
    assert_eq!(left.len(), all - first, "30 days old: deleted");
    let oldest = chrono::DateTime::parse_from_rfc3339(left[0]["at"].as_str().unwrap()).unwrap();
    assert!(
        oldest > unlockbot::clock::Clock::now(app.clock.as_ref()) - chrono::Duration::days(30),
        "{left:?}"
    );
}
