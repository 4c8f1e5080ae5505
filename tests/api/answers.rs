//! Security answers as people type them on a phone (issue 11, finding 1).

use crate::helpers::*;

const EMAIL: &str = "siobhan.oneill@nhs.net";
const MOBILE: &str = "07811 123456"; // ends 3456

/// An account whose answers have an apostrophe and a town.
fn row() -> AccountRow {
    let mut row = AccountRow::locked(EMAIL, MOBILE);
    row.qa = vec![
        (
            "What is your mother's maiden name?".into(),
            "O'Neill".into(),
        ),
        ("In which town were you born?".into(), "Leeds".into()),
        ("What was the make of your first car?".into(), "Mini".into()),
    ];
    row
}

/// Each answer as a phone types it: a curly apostrophe, capitals and the
/// full stop a double space adds.
fn typed_on_a_phone(question: &str) -> &'static str {
    if question.contains("maiden name") {
        "O\u{2019}Neill"
    } else if question.contains("born") {
        "LEEDS."
    } else if question.contains("first car") {
        "Mini. "
    } else {
        panic!("no security question in: {question}")
    }
}

async fn verify_typing_on_a_phone(app: &mut TestApp) -> String {
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    assert!(q1.contains("question 1 of 2"), "{q1}");
    let q2 = app.text(typed_on_a_phone(&q1)).await;
    app.text(typed_on_a_phone(&q2)).await
}

#[tokio::test]
async fn curly_apostrophes_and_a_final_full_stop_are_forgiven() {
    let mut app = spawn_app().await;
    app.import(&[row()]).await;
    let options = verify_typing_on_a_phone(&mut app).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
    assert_eq!(app.count("verification_failures").await, 0);
    // Imported with the current normalisation, and recorded as such.
    let versions = "SELECT CAST(MIN(answer_normalisation) AS BIGINT) FROM enrolments";
    assert_eq!(app.db.scalar(versions.into()).await, 2);
}

#[tokio::test]
async fn answers_enrolled_before_the_change_keep_verifying() {
    let mut app = spawn_app().await;
    app.import(&[row()]).await;
    // Put the answers back as the first normalisation stored them (NFKC,
    // spaces collapsed, lower case: nothing else), marked as such, as the
    // migration leaves every answer enrolled before it.
    for (answer, position) in [("o'neill", 1), ("leeds", 2), ("mini", 3)] {
        let hash = unlockbot::domain::hash_password(answer).unwrap();
        app.db
            .execute(format!(
                "UPDATE enrolments SET answer_hash = '{hash}', answer_normalisation = 1 \
                 WHERE email = '{EMAIL}' AND position = {position}"
            ))
            .await;
    }
    // Typed as before, they verify.
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let plain = |q: &str| {
        if q.contains("maiden") {
            "o'neill"
        } else {
            answer_for(q)
        }
    };
    let q2 = app.text(plain(&q1)).await;
    let options = app.text(plain(&q2)).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
    app.text("EXIT").await;
    // And typed on a phone, they verify too.
    let options = verify_typing_on_a_phone(&mut app).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
    assert_eq!(app.count("verification_failures").await, 0);
}

#[tokio::test]
async fn a_lone_full_stop_is_no_answer_and_counts_nothing() {
    let mut app = spawn_app().await;
    app.import(&[row()]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let hint = app.text(" . ").await;
    assert!(hint.contains("answer"), "asked again: {hint}");
    // Still the first question.
    let q2 = app.text(typed_on_a_phone(&q1)).await;
    assert!(q2.contains("question 2 of 2"), "{q2}");
    assert_eq!(app.count("verification_failures").await, 0);
}
