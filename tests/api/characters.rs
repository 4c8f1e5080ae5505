//! Security answers asked for by characters (`ANSWER_MODE=characters`,
//! issue 10): three characters at random positions, never the whole answer;
//! answers sealed under `ANSWERS_KEY`, never in clear.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07400 123456"; // ends 3456
pub const ANSWERS_KEY: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

/// Questions whose answers are long enough to be asked for by characters.
pub const LONG_ANSWERS: [(&str, &str); 3] = [
    ("What was the name of your first pet?", "Biscuit the Dog"),
    ("In which town were you born?", "Harrogate"),
    ("What was the make of your first car?", "Morris  Minor"),
];

pub fn row_with_long_answers(email: &str, mobile: &str) -> AccountRow {
    let mut row = AccountRow::locked(email, mobile);
    row.qa = LONG_ANSWERS
        .iter()
        .map(|(q, a)| ((*q).to_owned(), (*a).to_owned()))
        .collect();
    row
}

pub fn characters_mode() -> Options {
    Options {
        env: vec![
            ("ANSWER_MODE", "characters".into()),
            ("ANSWERS_KEY", ANSWERS_KEY.into()),
        ],
    }
}

/// The positions a prompt asks for ("Enter characters 2, 5 and 7 of your
/// answer to: …"), and the question.
pub fn asked(prompt: &str) -> (Vec<usize>, String) {
    let start = prompt
        .find("Enter characters ")
        .unwrap_or_else(|| panic!("no characters asked for: {prompt}"))
        + "Enter characters ".len();
    let (list, question) = prompt[start..]
        .split_once(" of your answer to: ")
        .unwrap_or_else(|| panic!("no question: {prompt}"));
    let positions = list
        .replace(" and ", ", ")
        .split(", ")
        .map(|n| n.trim().parse().expect("a position"))
        .collect();
    (positions, question.to_owned())
}

/// The characters of an answer as positions count them: lower case,
/// spaces not counted.
fn characters_of(answer: &str) -> Vec<char> {
    answer
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The right reply to a prompt for one of [`LONG_ANSWERS`], written the
/// way `style` says: 0 `a k e`, 1 `AKE`, 2 `a  K e.`.
pub fn reply_to(prompt: &str, style: usize) -> String {
    let (positions, question) = asked(prompt);
    let answer = LONG_ANSWERS
        .iter()
        .find(|(q, _)| question.starts_with(q))
        .unwrap_or_else(|| panic!("unknown question: {question}"))
        .1;
    let chars = characters_of(answer);
    let picked: Vec<char> = positions.iter().map(|p| chars[p - 1]).collect();
    match style % 3 {
        0 => picked
            .iter()
            .map(char::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        1 => picked.iter().collect::<String>().to_uppercase(),
        _ => format!("{}  {} {}.", picked[0], picked[1].to_uppercase(), picked[2]),
    }
}

/// A reply that gives three characters, none of them right where asked.
fn wrong_reply_to(prompt: &str) -> String {
    let (positions, _) = asked(prompt);
    assert_eq!(positions.len(), 3);
    "7 7 7".to_owned()
}

#[tokio::test]
async fn a_partial_character_conversation_unlocks_an_account_over_sms() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    assert!(
        q1.starts_with("Security question 1 of 2. Enter characters "),
        "{q1}"
    );
    let q2 = app.text(&reply_to(&q1, 0)).await;
    assert!(
        q2.starts_with("Security question 2 of 2. Enter characters "),
        "{q2}"
    );
    assert_ne!(asked(&q1).1, asked(&q2).1, "two different questions");
    let options = app.text(&reply_to(&q2, 1)).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
    let done = app.text("1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);
    assert_eq!(app.count("verification_failures").await, 0);
    // No reply asked for a whole answer.
    for answer in LONG_ANSWERS.map(|(_, a)| a) {
        assert!(!q1.contains(answer) && !q2.contains(answer));
    }
}

#[tokio::test]
async fn positions_are_kept_across_a_restart_and_help_and_asked_afresh_each_question() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    // Help shows the same question with the same positions: asking again
    // cannot fish for other characters.
    let help = app.text("?").await;
    assert!(help.ends_with(&q1), "{help}");
    let hint = app.text("Biscuit the Dog").await;
    assert!(hint.contains("3 characters"), "{hint}");
    // Another instance (here, the server restarted) checks the positions
    // the state holds.
    app.restart().await;
    let q2 = app.text(&reply_to(&q1, 2)).await;
    assert!(q2.contains("question 2 of 2"), "{q2}");
    let options = app.text(&reply_to(&q2, 0)).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
}

#[tokio::test]
async fn random_positions_differ_across_asks_and_are_within_the_answer() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    let mut seen = HashSet::new();
    for _ in 0..8 {
        app.text("UNLOCK").await;
        app.text(EMAIL).await;
        let mut prompt = app.text("3456").await;
        for n in 0..2 {
            let (positions, question) = asked(&prompt);
            let answer = LONG_ANSWERS
                .iter()
                .find(|(q, _)| question.starts_with(q))
                .unwrap()
                .1;
            let length = characters_of(answer).len();
            assert_eq!(positions.len(), 3, "{prompt}");
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{prompt}");
            assert!(
                positions.iter().all(|p| (1..=length).contains(p)),
                "{positions:?} outside 1..={length}: {prompt}"
            );
            seen.insert((question.clone(), positions));
            if n == 0 {
                prompt = app.text(&reply_to(&prompt, n)).await;
            }
        }
        app.text("EXIT").await;
    }
    // 16 asks over three questions: the positions differ between asks.
    assert!(seen.len() >= 6, "positions barely vary: {seen:?}");
}

#[tokio::test]
async fn wrong_characters_count_as_failures_like_a_wrong_answer() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    for attempt in 1..=3 {
        app.text("UNLOCK").await;
        app.text(EMAIL).await;
        let q1 = app.text("3456").await;
        // The first right, the second wrong: nothing tells which was wrong.
        let q2 = app.text(&reply_to(&q1, attempt)).await;
        assert!(q2.contains("question 2 of 2"), "{q2}");
        let reply = app.text(&wrong_reply_to(&q2)).await;
        assert!(reply.contains("could not verify"), "{reply}");
        assert_eq!(app.count("verification_failures").await, attempt as i64);
    }
    assert_eq!(app.count("account_blocks").await, 1, "blocked after three");
    let audit = app.audit();
    let failed = audit
        .iter()
        .filter(|e| e["outcome"] == "failed:wrong_answers")
        .count();
    assert_eq!(failed, 3, "{audit:?}");
    // Blocked: even the right characters no longer verify.
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    if q1.contains("Enter characters") {
        let q2 = app.text(&reply_to(&q1, 0)).await;
        let reply = app.text(&reply_to(&q2, 0)).await;
        assert!(!reply.contains("Reply 1"), "{reply}");
    }
    assert_eq!(app.account(EMAIL)["locked"], true);
}

#[tokio::test]
async fn replies_with_the_wrong_number_of_characters_are_asked_again() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    for bad in ["a k", "a k e s"] {
        let hint = app.text(bad).await;
        assert!(hint.contains("3 characters asked for"), "{hint}");
    }
    assert_eq!(app.count("verification_failures").await, 0);
    let q2 = app.text(&reply_to(&q1, 0)).await;
    assert!(q2.contains("question 2 of 2"), "{q2}");
}

#[tokio::test]
async fn an_account_with_short_answers_is_sent_to_its_local_administrator() {
    let mut app = spawn_app_with(characters_mode()).await;
    // Biscuit (7), Leeds (5) and Mini (4): only one usable, two are asked.
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let reply = app.text("3456").await;
    assert!(reply.contains("Local Administrator"), "{reply}");
    assert!(!reply.contains("Enter characters"), "{reply}");
    assert_eq!(app.count("verification_failures").await, 0);
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "failed:answers_not_usable_by_characters"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn answers_imported_with_answers_key_serve_both_modes_without_enrolling_again() {
    // Whole mode, with ANSWERS_KEY: the import stores both forms.
    let mut app = spawn_app_with(Options {
        env: vec![("ANSWERS_KEY", ANSWERS_KEY.into())],
    })
    .await;
    let mut whole_row = row_with_long_answers(EMAIL, MOBILE);
    whole_row.locked = false;
    app.import(&[whole_row]).await;
    let sealed = "SELECT COUNT(*) FROM enrolments WHERE answer_sealed IS NOT NULL";
    assert_eq!(app.db.scalar(sealed.into()).await, 3);
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let answer = |q: &str| {
        LONG_ANSWERS
            .iter()
            .find(|(question, _)| q.contains(question))
            .unwrap()
            .1
    };
    let q2 = app.text(answer(&q1)).await;
    let options = app.text(answer(&q2)).await;
    assert!(options.contains("You are verified"), "{options}");
    app.text("EXIT").await;
    // The same database in characters mode.
    app.set_env("ANSWER_MODE", "characters");
    app.restart().await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let q2 = app.text(&reply_to(&q1, 0)).await;
    let options = app.text(&reply_to(&q2, 0)).await;
    assert!(options.contains("You are verified"), "{options}");
}

#[tokio::test]
async fn answers_imported_without_answers_key_cannot_be_asked_for_by_characters() {
    let mut app = spawn_app().await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    let sealed = "SELECT COUNT(*) FROM enrolments WHERE answer_sealed IS NOT NULL";
    assert_eq!(app.db.scalar(sealed.into()).await, 0);
    app.set_env("ANSWER_MODE", "characters");
    app.set_env("ANSWERS_KEY", ANSWERS_KEY);
    app.restart().await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let reply = app.text("3456").await;
    assert!(reply.contains("Local Administrator"), "{reply}");
}

#[tokio::test]
async fn a_sealed_answer_moved_to_another_account_does_not_open() {
    let mut app = spawn_app_with(characters_mode()).await;
    let other = "bob.jones@nhs.net";
    app.import(&[
        row_with_long_answers(EMAIL, MOBILE),
        row_with_long_answers(other, "07400 654321"),
    ])
    .await;
    // Someone with write access copies Jane's sealed answers over Bob's.
    app.db
        .execute(format!(
            "UPDATE enrolments SET answer_sealed = (SELECT s.answer_sealed FROM enrolments s \
             WHERE s.directory_id = '{EMAIL}' AND s.position = enrolments.position) \
             WHERE directory_id = '{other}'"
        ))
        .await;
    app.text("UNLOCK").await;
    app.text(other).await;
    let reply = app.text("4321").await;
    assert!(reply.contains("Local Administrator"), "{reply}");
}

#[tokio::test]
async fn start_up_refuses_characters_mode_without_answers_key() {
    let app = spawn_app().await;
    let (status, stdout, stderr) = app.cli_with_env(
        &[("ANSWER_MODE", "characters")],
        &["ANSWERS_KEY"],
        &["serve"],
        Duration::from_secs(30),
    );
    let status = status.expect("serve refused to start");
    assert!(!status.success());
    let output = format!("{stdout}\n{stderr}");
    assert!(output.contains("ANSWERS_KEY"), "{output}");
}

/// After an import and a characters conversation that resets the password,
/// no file of the database holds any answer in a readable form.
#[tokio::test]
async fn no_database_file_holds_an_answer_after_a_characters_reset() {
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let q2 = app.text(&reply_to(&q1, 0)).await;
    app.text(&reply_to(&q2, 0)).await;
    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    app.sent_texts().await;
    let files = app.database_bytes().await;
    for (_, answer) in LONG_ANSWERS {
        for form in answer_forms(answer) {
            assert!(
                !contains(&files, form.as_bytes()),
                "the answer {answer:?} is in the database files as {form:?}"
            );
        }
    }
}

/// The forms an answer could be stored in readably: as given, lower and
/// upper case, normalised (spaces collapsed), and without spaces.
pub fn answer_forms(answer: &str) -> Vec<String> {
    let collapsed = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    let bare: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
    let mut forms = Vec::new();
    for form in [answer.to_owned(), collapsed, bare] {
        forms.push(form.to_lowercase());
        forms.push(form.to_uppercase());
        forms.push(form);
    }
    forms
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
