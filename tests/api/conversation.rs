//! Whole conversations, end to end.

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456"; // +447811123456, ends 3456

#[tokio::test]
async fn unlock_keeps_the_password_and_texts_a_notice() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;

    let greeting = app.text("UNLOCK").await;
    assert!(greeting.contains("email address"), "{greeting}");
    let ask_digits = app.text("Jane.Smith@NHS.net").await;
    assert!(ask_digits.contains("last 4 digits"), "{ask_digits}");
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1 of 2: "), "{q1}");
    let q2 = app
        .text(&format!("  {}  ", answer_for(&q1).to_uppercase()))
        .await;
    assert!(q2.starts_with("Security question 2 of 2: "), "{q2}");
    assert_ne!(q1, q2, "two different questions");
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Your account is locked"), "{options}");
    assert!(
        options.contains("Reply 1") && options.contains("ending 3456"),
        "{options}"
    );

    let done = app.text("1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    assert!(
        done.contains("update the password saved"),
        "advice against the next lockout: {done}"
    );

    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], false);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1, "only the security notice: {texts:?}");
    assert_eq!(texts[0].to, "+447811123456");
    assert_eq!(texts[0].from, BOT_NUMBER);
    assert!(
        texts[0].body.contains("unlocked by self-service"),
        "{}",
        texts[0].body
    );
    assert!(
        texts[0]
            .basic_auth
            .as_deref()
            .unwrap_or_default()
            .starts_with("Basic ")
    );

    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "unlock" && e["outcome"] == "unlocked")
    );
    assert!(
        audit.iter().all(|e| e["sender"] != USER_PHONE),
        "sender is masked"
    );
    // The conversation has ended: the next text gets a short line, the
    // start word a new conversation.
    assert!(app.text("hello").await.contains("has ended"));
    assert!(app.text("UNLOCK").await.contains("email address"));
}

#[tokio::test]
async fn reset_sends_the_temporary_password_only_to_the_registered_mobile() {
    let mut app = spawn_app().await;
    // The registered mobile is not the phone the user is texting from.
    app.import(&[AccountRow::locked(EMAIL, "+44 (0)7400 123456")])
        .await;
    let options = app.verify(EMAIL, "3456").await;
    assert!(options.contains("ending 3456"), "{options}");

    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    assert!(done.contains("ending 3456"), "{done}");
    assert!(
        done.contains("every device"),
        "advice to update devices: {done}"
    );

    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.iter().all(|t| t.to == "+447400123456"), "{texts:?}");
    let password_text = &texts[0].body;
    let password = password_text
        .split_whitespace()
        .skip_while(|w| *w != "is")
        .nth(1)
        .expect("password in the text")
        .to_owned();
    assert!(password.len() >= 12, "{password}");
    assert!(password.chars().any(|c| c.is_ascii_uppercase()));
    assert!(password.chars().any(|c| c.is_ascii_lowercase()));
    assert!(password.chars().any(|c| c.is_ascii_digit()));
    assert!(!password.contains(['0', 'O', '1', 'l', 'I']), "{password}");
    assert!(texts[1].body.contains("new password was requested"));

    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], true);
    assert!(
        app.password_is(EMAIL, &password),
        "the texted password works"
    );
    assert!(!app.password_is(EMAIL, "not-the-password"));

    // The password appears nowhere but in the text to the registered mobile.
    assert!(!done.contains(&password));
    let db = app.database_bytes().await;
    assert!(
        !db.windows(password.len()).any(|w| w == password.as_bytes()),
        "temporary password found in the database files"
    );
    assert!(
        !captured_logs().contains(&password),
        "temporary password logged"
    );
    let audit = serde_json::to_string(&app.audit()).unwrap();
    assert!(!audit.contains(&password));
    assert!(audit.contains("temp_password_queued"));
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_conversation_loses_nothing() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;

    app.restart().await;

    let q2 = app.text(answer_for(&q1)).await;
    assert!(q2.starts_with("Security question 2 of 2"), "{q2}");
    app.restart().await;
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Reply 1"), "{options}");
    assert!(app.text("1").await.contains("unlocked"));
    assert_eq!(app.account(EMAIL)["locked"], false);
}

#[tokio::test]
async fn help_explains_without_losing_the_step_and_cancel_ends() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let help = app.text("help").await;
    assert!(help.contains("registered on your account"), "{help}");
    assert!(help.contains("last 4 digits"), "the prompt again: {help}");
    let q1 = app.text("3456").await;
    assert!(
        q1.starts_with("Security question 1"),
        "still at the digits step: {q1}"
    );
    let cancelled = app.text("Cancel").await;
    assert!(cancelled.contains("Cancelled"), "{cancelled}");
    assert_eq!(app.live_conversations().await, 0);
    assert_eq!(app.account(EMAIL)["locked"], true);
    assert!(
        app.text(answer_for(&q1)).await.contains("has ended"),
        "one short line after the end"
    );
    assert!(
        app.text("UNLOCK").await.contains("email address"),
        "starts afresh"
    );
}

#[tokio::test]
async fn an_idle_conversation_expires_and_starts_afresh() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    app.advance(chrono::Duration::minutes(14));
    assert!(app.text("3456").await.starts_with("Security question 1"));
    app.advance(chrono::Duration::minutes(16));
    let reply = app.text("Biscuit").await;
    assert!(reply.contains("timed out after 15 minutes"), "{reply}");
    assert!(reply.contains("email address"), "{reply}");
}

#[tokio::test]
async fn idle_timeout_is_configurable() {
    let mut app = spawn_app_with(Options {
        env: vec![("CONVERSATION_IDLE_MINUTES", "5".into())],
    })
    .await;
    app.text("UNLOCK").await;
    app.advance(chrono::Duration::minutes(6));
    assert!(app.text(EMAIL).await.contains("timed out after 5 minutes"));
}
