//! The rules of the published procedure: who may be verified, attempts and
//! blocks, non-UK numbers, Same Sign On, accounts that are not locked,
//! invalid input, and failures to send the temporary password.

use chrono::{DateTime, Duration, Utc};
use unlockbot::clock::Clock;
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456"; // +447811123456, ends 3456

/// The one reply for anyone who cannot be verified, word for word.
const NOT_VERIFIED: &str = "Sorry, we could not verify your identity, so we cannot unlock this account by text. After several failed tries, self-service pauses for 24 hours. If you don't know your security answers, or there is no mobile number on your account, please contact your Local Administrator.";

fn row(email: &str, mobile: &str) -> AccountRow {
    AccountRow::locked(email, mobile)
}

/// Assert nothing about `email` has changed: still locked, no password set.
fn assert_untouched(app: &TestApp, email: &str) {
    let account = app.account(email);
    assert_eq!(account["locked"], true, "{account}");
    assert_eq!(account["must_change_password"], false, "{account}");
    assert_eq!(account["has_password"], false, "{account}");
}

/// One attempt with the wrong last 4 digits (a counted failure).
async fn fail_with_wrong_digits(app: &mut TestApp, from: &str, email: &str) {
    app.text_from(from, "UNLOCK").await;
    app.text_from(from, email).await;
    let reply = app.text_from(from, "9999").await;
    assert_eq!(reply, NOT_VERIFIED);
}

/// One attempt with the right digits and wrong answers (a counted failure).
async fn fail_with_wrong_answers(app: &mut TestApp, from: &str, email: &str) {
    app.text_from(from, "UNLOCK").await;
    app.text_from(from, email).await;
    let q1 = app.text_from(from, "3456").await;
    assert!(q1.starts_with("Security question 1 of 2"), "{q1}");
    let q2 = app.text_from(from, "Rover").await;
    assert!(
        q2.starts_with("Security question 2 of 2"),
        "a wrong first answer is not revealed: {q2}"
    );
    let reply = app.text_from(from, "Nowhere").await;
    assert_eq!(reply, NOT_VERIFIED);
}

/// Whether a full, correct verification reaches the options.
async fn verifies(app: &mut TestApp, email: &str) -> Result<String, String> {
    verifies_from(app, USER_PHONE, email).await
}

async fn verifies_from(app: &mut TestApp, from: &str, email: &str) -> Result<String, String> {
    app.text_from(from, "UNLOCK").await;
    app.text_from(from, email).await;
    let q1 = app.text_from(from, "3456").await;
    if !q1.starts_with("Security question 1") {
        return Err(q1);
    }
    let q2 = app.text_from(from, answer_for(&q1)).await;
    let options = app.text_from(from, answer_for(&q2)).await;
    if options.contains("You are verified") {
        Ok(options)
    } else {
        Err(options)
    }
}

#[tokio::test]
async fn every_unverifiable_user_gets_the_same_generic_reply_and_nothing_changes() {
    let mut app = spawn_app().await;
    let no_mobile = row("no.mobile@nhs.net", "");
    let mut one_question = row("one.question@nhs.net", "07400 123456");
    one_question.qa.truncate(1);
    app.import(&[
        row(EMAIL, MOBILE),
        row("answers.wrong@nhs.net", "07911 223456"),
        no_mobile,
        one_question,
    ])
    .await;
    let mut replies = Vec::new();

    // Wrong digits.
    app.text("UNLOCK").await;
    let ask_digits_known = app.text(EMAIL).await;
    replies.push(("wrong digits", app.text("3457").await));

    // Unknown email: asked for the digits like anyone else, then refused.
    app.text("UNLOCK").await;
    let ask_digits_unknown = app.text("nobody.here@nhs.net").await;
    assert_eq!(
        ask_digits_unknown, ask_digits_known,
        "an unknown email is not revealed at the email step"
    );
    replies.push(("unknown email", app.text("3456").await));

    // Wrong answers (both wrong; and, separately, only the second wrong).
    app.text("UNLOCK").await;
    app.text("answers.wrong@nhs.net").await;
    app.text("3456").await;
    app.text("wrong").await;
    replies.push(("wrong answers", app.text("also wrong").await));
    app.text("UNLOCK").await;
    app.text("answers.wrong@nhs.net").await;
    let q1 = app.text("3456").await;
    app.text(answer_for(&q1)).await;
    replies.push(("second answer wrong", app.text("wrong").await));

    // From another phone: this one has now failed against three accounts
    // (an unknown email counts as one), which stops it (SENDER_MAX_ACCOUNTS).
    let other = "+447811654321";
    // No mobile on the account (any digits).
    app.text_from(other, "UNLOCK").await;
    app.text_from(other, "no.mobile@nhs.net").await;
    replies.push(("no mobile", app.text_from(other, "3456").await));

    // One enrolled question, two needed.
    app.text_from(other, "UNLOCK").await;
    app.text_from(other, "one.question@nhs.net").await;
    replies.push(("too few questions", app.text_from(other, "3456").await));

    for (case, reply) in &replies {
        assert_eq!(reply, NOT_VERIFIED, "{case}");
        assert!(reply.contains("Local Administrator"), "{case}: {reply}");
    }
    assert_eq!(app.live_conversations().await, 0, "each conversation ended");
    for email in [
        EMAIL,
        "answers.wrong@nhs.net",
        "no.mobile@nhs.net",
        "one.question@nhs.net",
    ] {
        assert_untouched(&app, email);
    }
    assert!(app.account_opt("nobody.here@nhs.net").is_none());
    assert!(app.sent_texts().await.is_empty(), "no text sent");
    let audit = app.audit();
    assert!(
        !audit
            .iter()
            .any(|e| e["event"] == "unlock" || e["event"] == "reset"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn three_questions_asked_when_configured_and_too_few_enrolled_is_generic() {
    let mut app = spawn_app_with(Options {
        env: vec![("QUESTIONS_TO_ASK", "3".into())],
    })
    .await;
    let mut two_questions = row("two.questions@nhs.net", "07400 123456");
    two_questions.qa.truncate(2);
    app.import(&[row(EMAIL, MOBILE), two_questions]).await;

    // Two enrolled, three needed: the generic reply, nothing changed.
    app.text("UNLOCK").await;
    app.text("two.questions@nhs.net").await;
    let reply = app.text("3456").await;
    assert_eq!(reply, NOT_VERIFIED);
    assert_untouched(&app, "two.questions@nhs.net");

    // Three enrolled: all three are asked, each once.
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1 of 3: "), "{q1}");
    let q2 = app.text(answer_for(&q1)).await;
    assert!(q2.starts_with("Security question 2 of 3: "), "{q2}");
    let q3 = app.text(answer_for(&q2)).await;
    assert!(q3.starts_with("Security question 3 of 3: "), "{q3}");
    let asked = [&q1, &q2, &q3].map(|q| answer_for(q));
    assert!(
        asked[0] != asked[1] && asked[1] != asked[2] && asked[0] != asked[2],
        "three different questions: {q1} / {q2} / {q3}"
    );
    // Before the third answer nothing is unlocked.
    assert_untouched(&app, EMAIL);
    let options = app.text(answer_for(&q3)).await;
    assert!(options.contains("Reply 1"), "{options}");
    assert!(app.text("1").await.contains("Your account is unlocked"));
    assert_eq!(app.account(EMAIL)["locked"], false);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1, "the security notice: {texts:?}");
    assert_eq!(texts[0].to, "+447811123456");
}

/// A phone that is not the account's registered mobile.
const COLLEAGUE: &str = "+447911223456";

#[tokio::test]
async fn three_failures_in_24_hours_block_the_account_for_24_hours() {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE)]).await;

    // Three failures, from different phones, of both kinds, within 24 hours.
    fail_with_wrong_digits(&mut app, "+447911223456", EMAIL).await;
    app.advance(Duration::hours(10));
    fail_with_wrong_answers(&mut app, "+447123456789", EMAIL).await;
    app.advance(Duration::hours(13));
    fail_with_wrong_digits(&mut app, USER_PHONE, "Jane.Smith@NHS.net").await;

    // A fourth attempt with all the right data, from a phone that is not
    // the registered mobile (whose own conversations only its own failures
    // block), is refused, generically, whether it stops at the digits or not.
    app.advance(Duration::minutes(5));
    app.text_from(COLLEAGUE, "UNLOCK").await;
    app.text_from(COLLEAGUE, EMAIL).await;
    let refused = app.text_from(COLLEAGUE, "3456").await;
    assert_eq!(refused, NOT_VERIFIED);
    assert!(refused.contains("Local Administrator"));
    assert_untouched(&app, EMAIL);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1, "only the block notice: {texts:?}");
    assert!(
        app.audit()
            .iter()
            .any(|e| e["event"] == "refusal" && e["outcome"] == "blocked"),
        "the refusal is audited"
    );

    // Still blocked just before 24 hours after the third failure.
    app.advance(Duration::hours(23) + Duration::minutes(50));
    assert!(
        verifies_from(&mut app, COLLEAGUE, EMAIL).await.is_err(),
        "still blocked"
    );
    assert_untouched(&app, EMAIL);

    // 24 hours after the block began, self-service works again.
    app.advance(Duration::minutes(10));
    let options = verifies_from(&mut app, COLLEAGUE, EMAIL)
        .await
        .expect("unblocked");
    assert!(options.contains("ending 3456"), "{options}");
    assert!(
        app.text_from(COLLEAGUE, "1")
            .await
            .contains("Your account is unlocked")
    );
    assert_eq!(app.account(EMAIL)["locked"], false);
    assert_eq!(
        app.sent_texts().await.len(),
        2,
        "the block notice and the security notice"
    );
}

#[tokio::test]
async fn failures_older_than_24_hours_do_not_count() {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE), row("other@nhs.net", "07400 123456")])
        .await;

    // Two failures, then a third just over 24 hours after them: no block.
    fail_with_wrong_digits(&mut app, USER_PHONE, EMAIL).await;
    fail_with_wrong_answers(&mut app, USER_PHONE, EMAIL).await;
    app.advance(Duration::hours(24) + Duration::minutes(1));
    fail_with_wrong_digits(&mut app, USER_PHONE, EMAIL).await;
    let options = verifies(&mut app, EMAIL)
        .await
        .expect("two failures more than 24 hours old and one recent do not block");
    assert!(options.contains("Reply 1"));
    assert!(app.text("1").await.contains("Your account is unlocked"));
    assert_eq!(app.account(EMAIL)["locked"], false);

    // The same three failures inside 24 hours do block (the control case),
    // and only the account they were for.
    fail_with_wrong_digits(&mut app, USER_PHONE, "other@nhs.net").await;
    fail_with_wrong_digits(&mut app, USER_PHONE, "other@nhs.net").await;
    app.advance(Duration::hours(23) + Duration::minutes(59));
    fail_with_wrong_digits(&mut app, USER_PHONE, "other@nhs.net").await;
    assert_eq!(
        verifies(&mut app, "other@nhs.net").await,
        Err(NOT_VERIFIED.to_owned())
    );
    assert_untouched(&app, "other@nhs.net");
}

#[tokio::test]
async fn a_non_uk_registered_number_disables_self_service() {
    let mut app = spawn_app().await;
    let jersey = "islander@nhs.net";
    let (status, stdout, stderr) = app.cli(
        &["accounts", "import", "-"],
        Some(&csv_of(&[row(jersey, "07797 123456")])),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let account = app.account(jersey);
    assert_eq!(account["disabled"], true, "{account}");
    assert_eq!(account["mobile"], "+447797123456", "{account}");

    // The right last 4: told to get a UK number registered; nothing unlocked.
    app.text("UNLOCK").await;
    app.text(jersey).await;
    let reply = app.text("3456").await;
    assert!(
        reply.contains("mobile number outside the UK") && reply.contains("Local Administrator"),
        "{reply}"
    );
    assert!(reply.contains("register a UK mobile"), "{reply}");
    assert_ne!(reply, NOT_VERIFIED);
    assert!(!reply.contains("Security question"), "{reply}");
    assert_eq!(app.live_conversations().await, 0, "conversation ended");
    assert_untouched(&app, jersey);
    assert!(app.sent_texts().await.is_empty());

    // The wrong last 4: the generic reply (the disabled state is not revealed).
    app.text("UNLOCK").await;
    app.text(jersey).await;
    assert_eq!(app.text("1234").await, NOT_VERIFIED);
    assert_untouched(&app, jersey);
    assert!(app.sent_texts().await.is_empty());
}

fn sso_row(email: &str, synced_at: Option<DateTime<Utc>>) -> AccountRow {
    AccountRow {
        same_sign_on: true,
        synced_at,
        ..row(email, MOBILE)
    }
}

#[tokio::test]
async fn same_sign_on_notice_comes_before_the_options_and_an_established_account_resets() {
    let mut app = spawn_app().await;
    let now = app.clock.now();
    app.import(&[sso_row(EMAIL, Some(now - Duration::days(30)))])
        .await;
    let options = verifies(&mut app, EMAIL).await.expect("verified");
    let notice = options
        .find("Same Sign On")
        .unwrap_or_else(|| panic!("Same Sign On notice: {options}"));
    assert!(options.contains("computer password"), "{options}");
    let offer = options.find("Reply 1").expect("options");
    assert!(
        notice < offer,
        "the notice comes before the options: {options}"
    );
    assert!(!options.contains("cannot be reset yet"), "{options}");

    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], true);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(app.password_is(EMAIL, &temp_password_in(&texts[0].body)));
}

#[tokio::test]
async fn a_same_sign_on_account_synced_2_hours_ago_cannot_reset_but_can_unlock() {
    let mut app = spawn_app().await;
    // The test clock starts at 08:30 UTC on 23 November 2026 (GMT = UTC).
    let now = app.clock.now();
    app.import(&[sso_row(EMAIL, Some(now - Duration::hours(2)))])
        .await;
    let after = "06:30 on 24 November 2026 (UK time)";

    let options = verifies(&mut app, EMAIL).await.expect("verified");
    assert!(options.contains("Same Sign On"), "{options}");
    assert!(options.contains(after), "{options}");
    // Only what can happen is offered.
    assert!(options.contains("Reply 1"), "{options}");
    assert!(
        !options.contains("Reply 2") && !options.contains("or 2"),
        "{options}"
    );

    // A 2 typed anyway is told why, and offered only 1 again.
    let refused = app.text("2").await;
    assert!(
        refused.contains(&format!("not possible until {after}")),
        "{refused}"
    );
    assert!(
        refused.contains("Reply 1") && !refused.contains("Reply 2"),
        "option 1 still offered, 2 not: {refused}"
    );
    let account = app.account(EMAIL);
    assert_eq!(account["has_password"], false, "no password set: {account}");
    assert_eq!(account["must_change_password"], false, "{account}");
    assert_eq!(account["locked"], true, "{account}");
    assert!(app.sent_texts().await.is_empty(), "no text sent");

    // Option 1 still works in the same conversation.
    let done = app.text("1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], false);
    assert_eq!(account["has_password"], false);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].body.contains("unlocked by self-service"));

    // Once 24 hours have passed since the sync, it may reset.
    app.advance(Duration::hours(22) + Duration::minutes(1));
    app.cli(&["accounts", "lock", EMAIL], None);
    let options = verifies(&mut app, EMAIL).await.expect("verified");
    assert!(!options.contains("cannot be reset yet"), "{options}");
    assert!(
        app.text("2")
            .await
            .contains("temporary password is on its way")
    );
    assert_eq!(app.account(EMAIL)["must_change_password"], true);
}

#[tokio::test]
async fn the_reset_time_is_given_in_uk_summer_time() {
    let mut app = spawn_app().await;
    // Move the clock to 08:30 UTC on 11 June 2027 (British Summer Time).
    let start = app.clock.now();
    let summer: DateTime<Utc> = "2027-06-11T08:30:00Z".parse().unwrap();
    app.advance(summer - start);
    app.import(&[sso_row(EMAIL, Some(summer - Duration::hours(2)))])
        .await;
    // 06:30 UTC on 12 June is 07:30 in the UK.
    verifies(&mut app, EMAIL).await.expect("verified");
    let refused = app.text("2").await;
    assert!(
        refused.contains("not possible until 07:30 on 12 June 2027 (UK time)"),
        "{refused}"
    );
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn a_new_account_without_same_sign_on_can_reset() {
    let mut app = spawn_app().await;
    let now = app.clock.now();
    app.import(&[AccountRow {
        synced_at: Some(now - Duration::hours(2)),
        ..row(EMAIL, MOBILE)
    }])
    .await;
    let options = verifies(&mut app, EMAIL).await.expect("verified");
    assert!(!options.contains("Same Sign On"), "{options}");
    assert!(!options.contains("cannot be reset"), "{options}");
    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], true);
    assert_eq!(app.sent_texts().await.len(), 2);
}

#[tokio::test]
async fn an_account_that_is_not_locked_is_told_so_and_may_still_reset() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow {
        locked: false,
        ..row(EMAIL, MOBILE)
    }])
    .await;
    let options = verifies(&mut app, EMAIL).await.expect("verified");
    assert!(options.contains("Your account is not locked"), "{options}");
    assert!(!options.contains("Your account is locked"), "{options}");
    // Unlocking is not offered.
    assert!(!options.contains("Reply 1"), "{options}");
    assert!(options.contains("Reply 2"), "{options}");

    // A 1 typed anyway changes nothing, sends nothing, offers only 2, and
    // does not loop.
    let reply = app.text("1").await;
    assert!(
        reply.contains("Your account is not locked, so there is nothing to unlock"),
        "{reply}"
    );
    assert!(
        reply.contains("Reply 2") && !reply.contains("Reply 1"),
        "{reply}"
    );
    assert!(!reply.contains("Your account is unlocked"), "{reply}");
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], false);
    assert_eq!(account["must_change_password"], false);
    assert_eq!(account["has_password"], false);
    assert!(app.sent_texts().await.is_empty(), "no notice for no change");
    assert_eq!(app.live_conversations().await, 1, "still talking");
    assert!(
        app.audit()
            .iter()
            .all(|e| !(e["event"] == "unlock" && e["outcome"] == "unlocked"))
    );

    // Option 2 still resets, and the reply says only what happened.
    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    assert!(!done.to_lowercase().contains("unlocked"), "{done}");
    let account = app.account(EMAIL);
    assert_eq!(account["must_change_password"], true);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(app.password_is(EMAIL, &temp_password_in(&texts[0].body)));
}

#[tokio::test]
async fn invalid_input_re_prompts_with_a_hint_at_each_step() {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;

    let hint = app.text("jane smith").await;
    assert!(
        hint.contains("does not look like an email address"),
        "{hint}"
    );
    app.text(EMAIL).await;

    for not_digits in ["34a6", "34567"] {
        let hint = app.text(not_digits).await;
        assert!(hint.contains("exactly 4 digits"), "{not_digits}: {hint}");
        assert!(!hint.contains("Local Administrator"), "{hint}");
    }
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    let hint = app.text("   ").await;
    assert!(hint.contains("reply with your answer"), "{hint}");
    let q2 = app.text(answer_for(&q1)).await;
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Reply 1"), "{options}");

    let hint = app.text("3").await;
    assert!(hint.contains("Please reply 1 or 2"), "{hint}");
    let hint = app.text("yes please").await;
    assert!(hint.contains("Please reply 1 or 2"), "{hint}");
    assert_eq!(app.account(EMAIL)["locked"], true, "nothing changed yet");
    assert!(app.sent_texts().await.is_empty());
    assert_eq!(app.count("verification_failures").await, 0);
    assert!(app.text("1").await.contains("Your account is unlocked"));
}

#[tokio::test]
async fn three_invalid_inputs_in_a_row_end_the_conversation() {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    assert!(app.text("12").await.contains("exactly 4 digits"));
    assert!(app.text("abcd").await.contains("exactly 4 digits"));
    assert_eq!(app.live_conversations().await, 1);
    let ended = app.text("twelve").await;
    assert!(
        ended.contains("did not understand your replies")
            && ended.contains("Nothing has been changed"),
        "{ended}"
    );
    assert_eq!(app.live_conversations().await, 0, "conversation ended");
    assert_untouched(&app, EMAIL);
    assert_eq!(app.count("verification_failures").await, 0);
    // The next message gets one short line, even the right digits.
    assert!(app.text("3456").await.contains("conversation has ended"));

    // At the options step too (an email address starts afresh).
    assert!(app.text(EMAIL).await.contains("last 4 digits"));
    let q1 = app.text("3456").await;
    let q2 = app.text(answer_for(&q1)).await;
    app.text(answer_for(&q2)).await;
    app.text("3").await;
    app.text("one").await;
    assert!(
        app.text("1 please")
            .await
            .contains("did not understand your replies")
    );
    assert_eq!(app.live_conversations().await, 0);
    assert!(app.text("1").await.contains("conversation has ended"));
    assert!(app.text("UNLOCK").await.contains("email address"));
    assert_untouched(&app, EMAIL);
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn a_valid_input_resets_the_invalid_count() {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    assert!(app.text("not an email").await.contains("email address"));
    assert!(app.text("still not").await.contains("email address"));
    app.text(EMAIL).await;
    // Two more invalid inputs: four in all, but never three in a row.
    let hint = app.text("12").await;
    assert!(hint.contains("exactly 4 digits"), "{hint}");
    let hint = app.text("1 2 3").await;
    assert!(hint.contains("exactly 4 digits"), "{hint}");
    assert_eq!(app.count("conversations").await, 1);
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
}

/// Verify, then choose option 2 while the fake Twilio answers `failure`.
async fn reset_while_twilio_fails(failure: wiremock::ResponseTemplate, permanent: bool) {
    let mut app = spawn_app().await;
    app.import(&[row(EMAIL, MOBILE)]).await;
    // Twilio fails the first text only.
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(failure)
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&app.twilio)
        .await;
    verifies(&mut app, EMAIL).await.expect("verified");
    let reply = app.text("2").await;
    assert!(
        reply.contains("temporary password is on its way"),
        "{reply}"
    );
    // The outbox tried the password text first, and Twilio refused it.
    let texts = app.sent_texts().await;
    let attempted = temp_password_in(&texts[0].body);
    assert!(!reply.contains(&attempted));

    if permanent {
        // A permanent error is final at once: the previous password is
        // back (the account had none), nothing must be changed at sign-in.
        let account = app.account(EMAIL);
        assert_eq!(account["must_change_password"], false, "{account}");
        assert_eq!(account["has_password"], false, "{account}");
        assert!(!app.password_is(EMAIL, &attempted));
        let audit = app.audit();
        assert!(
            audit
                .iter()
                .any(|e| e["event"] == "sms" && e["outcome"] == "temp_password_failed"),
            "{audit:?}"
        );
        // The user's next message says so, once.
        let next = app.text("UNLOCK").await;
        assert!(
            next.starts_with("Sorry, we could not text your temporary password"),
            "{next}"
        );
        assert!(
            next.contains("email address"),
            "and a new conversation starts: {next}"
        );
        let again = app.text("CANCEL").await;
        assert!(!again.contains("could not text"), "{again}");

        // Once Twilio works again, a new attempt resets.
        verifies(&mut app, EMAIL).await.expect("verified");
        let done = app.text("2").await;
        assert!(done.contains("temporary password is on its way"), "{done}");
        let texts = app.sent_texts().await;
        let password = texts
            .iter()
            .rev()
            .find(|t| t.body.contains("temporary password is"))
            .map(|t| temp_password_in(&t.body))
            .unwrap();
        assert!(app.password_is(EMAIL, &password));
        assert!(!app.password_is(EMAIL, &attempted));
    } else {
        // A server error is retried after a backoff, and the same text then
        // arrives: the password in it works.
        assert_eq!(app.account(EMAIL)["must_change_password"], true);
        app.advance(chrono::Duration::seconds(2));
        let texts = app.sent_texts().await;
        let retried: Vec<_> = texts
            .iter()
            .filter(|t| t.body.contains(&attempted))
            .collect();
        assert_eq!(retried.len(), 2, "tried twice: {texts:?}");
        assert!(app.password_is(EMAIL, &attempted));
        assert!(!app.text("UNLOCK").await.contains("could not text"));
    }
    assert!(!captured_logs().contains(&attempted), "password logged");
}

#[tokio::test]
async fn a_twilio_400_error_on_the_password_text_changes_no_password() {
    reset_while_twilio_fails(
        twilio_error(400, 21211, "The 'To' number is not a valid phone number."),
        true,
    )
    .await;
}

#[tokio::test]
async fn a_twilio_500_error_on_the_password_text_changes_no_password() {
    reset_while_twilio_fails(twilio_error(500, 20500, "Internal Server Error"), false).await;
}

#[tokio::test]
async fn temp_password_length_is_configurable() {
    let mut app = spawn_app_with(Options {
        env: vec![("TEMP_PASSWORD_LENGTH", "16".into())],
    })
    .await;
    app.import(&[row(EMAIL, MOBILE)]).await;
    verifies(&mut app, EMAIL).await.expect("verified");
    assert!(
        app.text("2")
            .await
            .contains("temporary password is on its way")
    );
    let texts = app.sent_texts().await;
    let password = temp_password_in(&texts[0].body);
    assert_eq!(password.chars().count(), 16, "{password}");
    assert!(app.password_is(EMAIL, &password));
}
