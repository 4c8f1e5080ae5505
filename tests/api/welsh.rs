//! The service in Welsh (issue 11): a whole conversation over SMS, the
//! language switch at any step, dates in Welsh, texts to the mobile in the
//! conversation's language, and DIALOG_LANGUAGE as the default only.

use unlockbot::clock::Clock;

use crate::helpers::*;

const EMAIL: &str = "sian.jones@wales.nhs.uk";
const MOBILE: &str = "07811 123456"; // ends 3456

/// The temporary password in the Welsh text that carries it.
fn welsh_password_in(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != "yw")
        .nth(1)
        .unwrap_or_else(|| panic!("no password in the text: {text}"))
        .to_owned()
}

#[tokio::test]
async fn a_whole_conversation_in_welsh_resets_and_texts_in_welsh() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;

    let greeting = app.text("Datgloi").await;
    assert!(greeting.contains("Datgloi cyfrif NHSmail"), "{greeting}");
    assert!(greeting.contains("cyfeiriad e-bost"), "{greeting}");
    let ask = app.text(EMAIL).await;
    assert!(ask.contains("4 digid olaf"), "{ask}");
    let q1 = app.text("3456").await;
    // The question is the operator's text, shown as enrolled.
    assert!(q1.starts_with("Cwestiwn diogelwch 1 o 2: "), "{q1}");
    let q2 = app.text(answer_for(&q1)).await;
    assert!(q2.starts_with("Cwestiwn diogelwch 2 o 2: "), "{q2}");
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Rydych wedi'ch dilysu"), "{options}");
    assert!(options.contains("sy'n gorffen 3456"), "{options}");
    let done = app.text("2").await;
    assert!(done.contains("cyfrinair dros dro ar ei ffordd"), "{done}");

    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0]
            .body
            .starts_with("Eich cyfrinair dros dro NHSmail yw "),
        "{}",
        texts[0].body
    );
    let password = welsh_password_in(&texts[0].body);
    assert!(app.password_is(EMAIL, &password));
    assert!(
        texts[1].body.contains("gofynnwyd am gyfrinair newydd"),
        "{}",
        texts[1].body
    );
    // {contact} in Welsh when SUPPORT_CONTACT is not set.
    assert!(
        texts[1].body.contains("eich Gweinyddwr Lleol"),
        "{}",
        texts[1].body
    );
    assert_eq!(app.account(EMAIL)["must_change_password"], true);

    // After the end, the short line is Welsh too.
    let after = app.text("Diolch!").await;
    assert!(after.contains("DATGLOI"), "{after}");
}

#[tokio::test]
async fn cymraeg_and_english_switch_at_any_step_without_losing_it() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    assert!(app.text(EMAIL).await.contains("last 4 digits"));
    // Switch to Welsh at the digits step: asked again, in Welsh.
    let cy = app.text("Cymraeg").await;
    assert!(cy.contains("4 digid olaf"), "{cy}");
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Cwestiwn diogelwch 1"), "{q1}");
    // And back to English at a security question: the same question.
    let en = app.text("ENGLISH").await;
    assert!(en.starts_with("Security question 1 of 2"), "{en}");
    assert_eq!(
        en.split(": ").nth(1),
        q1.split(": ").nth(1),
        "same question"
    );
    assert_eq!(app.count("verification_failures").await, 0, "not an answer");
    let q2 = app.text(answer_for(&q1)).await;
    let cy = app.text("CYMRAEG").await;
    assert!(cy.starts_with("Cwestiwn diogelwch 2"), "{cy}");
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Rydych wedi'ch dilysu"), "{options}");
    let done = app.text("1").await;
    assert!(done.contains("wedi'i ddatgloi"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].body.contains("cafodd eich cyfrif ei ddatgloi"),
        "{}",
        texts[0].body
    );
}

#[tokio::test]
async fn dates_are_written_in_welsh() {
    let mut app = spawn_app().await;
    // The test clock starts at 08:30 UTC on 23 November 2026.
    let now = app.clock.now();
    app.import(&[AccountRow {
        same_sign_on: true,
        synced_at: Some(now - chrono::Duration::hours(2)),
        ..AccountRow::locked(EMAIL, MOBILE)
    }])
    .await;
    app.text("DATGLOI").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let q2 = app.text(answer_for(&q1)).await;
    let options = app.text(answer_for(&q2)).await;
    assert!(
        options.contains("06:30 ar 24 Tachwedd 2026 (amser y DU)"),
        "{options}"
    );
    assert!(
        !options.contains("Atebwch 1 i'w ddatgloi, neu 2"),
        "only 1: {options}"
    );
}

#[tokio::test]
async fn dialog_language_is_the_default_not_the_only_language() {
    let mut app = spawn_app_with(Options {
        env: vec![("DIALOG_LANGUAGE", "cy".into())],
    })
    .await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let greeting = app.text("Helo").await;
    assert!(greeting.contains("Datgloi cyfrif NHSmail"), "{greeting}");
    app.text("GADAEL").await;
    let english = app.text("UNLOCK").await;
    assert!(english.contains("NHSmail account unlock"), "{english}");
    assert!(app.text(EMAIL).await.contains("last 4 digits"));
}
