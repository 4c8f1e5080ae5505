//! The start and the end of a conversation as people live them (issue 11,
//! findings 3 and 4).

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456"; // ends 3456

#[tokio::test]
async fn a_first_text_that_is_an_email_address_is_accepted() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let reply = app.text("Jane.Smith@nhs.net").await;
    assert!(reply.contains("EXIT"), "greeted: {reply}");
    assert!(reply.contains("last 4 digits"), "not asked again: {reply}");
    assert!(!reply.contains("email address"), "{reply}");
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
}

#[tokio::test]
async fn the_start_word_at_any_step_restarts_cleanly() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    // At a security question, the start word is not taken as an answer.
    let again = app.text("Unlock.").await;
    assert!(again.contains("email address"), "started again: {again}");
    assert!(!again.contains("Security question"), "{again}");
    assert_eq!(app.count("verification_failures").await, 0);
    // The new conversation really is at its start.
    assert!(
        app.text("3456")
            .await
            .contains("does not look like an email")
    );
    assert!(
        app.audit()
            .iter()
            .any(|e| e["event"] == "conversation" && e["outcome"] == "restarted")
    );
}

#[tokio::test]
async fn after_the_end_a_thanks_or_a_second_exit_gets_one_short_line() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.verify(EMAIL, "3456").await;
    assert!(app.text("1").await.contains("Your account is unlocked"));
    for text in ["Thanks!", "EXIT", "exit", "ok"] {
        let reply = app.text(text).await;
        assert!(reply.contains("has ended"), "{text}: {reply}");
        assert!(reply.contains("UNLOCK"), "{text}: {reply}");
        assert!(reply.chars().count() < 160, "one segment: {reply}");
        assert!(!reply.contains("email address"), "no new greeting: {reply}");
    }
    // Nothing about the account is kept for it.
    let kept = "SELECT COUNT(*) FROM conversations WHERE CAST(state AS TEXT) LIKE '%jane.smith%'";
    assert_eq!(app.db.scalar(kept.into()).await, 0);
    // The start word starts again, as the ending promised; so does an email.
    assert!(app.text("UNLOCK").await.contains("email address"));
    app.text("EXIT").await;
    assert!(app.text(EMAIL).await.contains("last 4 digits"));
    // Once the quiet period has passed, anything starts afresh.
    app.text("EXIT").await;
    app.advance(chrono::Duration::minutes(16));
    let reply = app.text("hello").await;
    assert!(reply.contains("email address"), "{reply}");
    assert!(
        !reply.contains("timed out"),
        "an ended conversation did not time out: {reply}"
    );
}

#[tokio::test]
async fn stop_is_understood_however_it_is_typed() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    for stop in ["Stop.", "stop", " STOP! ", "Exit."] {
        app.text("UNLOCK").await;
        app.text(EMAIL).await;
        let reply = app.text(stop).await;
        assert!(reply.starts_with("Cancelled"), "{stop}: {reply}");
        assert_eq!(app.live_conversations().await, 0, "{stop}");
    }
    assert_eq!(app.account(EMAIL)["locked"], true);
}
