//! Bad input at the webhook and in the conversation: malformed requests get
//! 400 and change nothing; odd texts get a clear reply and harm nothing.

use unlockbot::channels::sms_twilio;

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456";
const NOT_VERIFIED: &str = "Sorry, we could not verify your identity, so we cannot unlock this account by text. After several failed tries, self-service pauses for 24 hours. If you don't know your security answers, or there is no mobile number on your account, please contact your Local Administrator.";
const SQL: &str = "'; DROP TABLE accounts; --";

fn signature_for(params: &[(String, String)]) -> String {
    sms_twilio::signature(
        AUTH_TOKEN,
        &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
        params,
    )
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(
        app.write_counts().await,
        [0; 5],
        "conversations, processed, audit, failures, blocks"
    );
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let app = spawn_app().await;
    let signature = signature_for(&[]);
    let response = app.post_raw(Vec::new(), Some(&signature)).await;
    assert_eq!(response.status(), 400);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_missing_from_body_or_message_sid_is_400() {
    let mut app = spawn_app().await;
    for field in ["From", "Body", "MessageSid"] {
        let sid = app.next_sid();
        let mut params = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
        params.retain(|(k, _)| k != field);
        let response = app.post_signed(&params).await;
        assert_eq!(response.status(), 400, "without {field}");
    }
    // And values that are there but unusable.
    for (field, value) in [("From", "not-a-number"), ("From", ""), ("MessageSid", "")] {
        let sid = app.next_sid();
        let mut params = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
        for (k, v) in &mut params {
            if k == field {
                *v = value.to_owned();
            }
        }
        let response = app.post_signed(&params).await;
        assert_eq!(response.status(), 400, "{field}={value:?}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_400_and_stores_nothing() {
    let mut app = spawn_app().await;
    let sid = app.next_sid();
    let raw = format!("Body=%FF%FE&From=%2B447811123456&MessageSid={sid}&To=%2B447400000001");
    // Signed as best anyone could (over the lossily decoded parameters).
    let lossy: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let response = app
        .post_raw(raw.into_bytes(), Some(&signature_for(&lossy)))
        .await;
    assert_eq!(response.status(), 400);
    // Raw non-UTF-8 bytes (not percent-encoded) too.
    let mut raw = b"Body=".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    raw.extend_from_slice(format!("&From=%2B447811123456&MessageSid={sid}").as_bytes());
    let response = app.post_raw(raw, Some(&signature_for(&lossy))).await;
    assert_eq!(response.status(), 400);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_10_kb_message_is_answered_clearly_as_invalid_input() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;
    let long = "A".repeat(10 * 1024);
    let sid = app.next_sid();
    let (status, content_type, raw) = app.text_with_sid(USER_PHONE, &long, &sid).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    let reply = twiml_text(&raw);
    assert!(reply.contains("too long"), "{reply}");
    assert!(reply.contains("email address"), "re-prompts: {reply}");
    assert!(
        reply.len() < 500,
        "the message is not echoed: {} bytes",
        reply.len()
    );
    assert_eq!(app.count("conversations").await, 1, "still talking");

    // A long message at the digits step is invalid input, not a failed
    // verification.
    app.text(EMAIL).await;
    let reply = app.text(&"1".repeat(10 * 1024)).await;
    assert!(reply.contains("too long"), "{reply}");
    assert!(reply.contains("4 digits"), "{reply}");
    assert_eq!(app.count("verification_failures").await, 0);
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    assert_eq!(app.account(EMAIL)["locked"], true);
}

#[tokio::test]
async fn unicode_and_emoji_get_a_clear_reply() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let greeting = app.text("🔓 UNLOCK 🙏").await;
    assert!(greeting.contains("email address"), "{greeting}");
    let hint = app.text("📧✉️😀").await;
    assert!(
        hint.contains("does not look like an email address"),
        "{hint}"
    );
    app.text(EMAIL).await;
    // Digits that are not ASCII digits: a hint, not a failed verification.
    for digits in ["٣٤٥٦", "３４５６"] {
        let hint = app.text(digits).await;
        assert!(hint.contains("exactly 4 digits"), "{digits}: {hint}");
    }
    assert_eq!(app.count("verification_failures").await, 0);
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    // An emoji answer is just a wrong answer.
    app.text("🐶🐱").await;
    assert_eq!(app.text("Ünïcödé 💥").await, NOT_VERIFIED);
    assert_eq!(app.account(EMAIL)["locked"], true);
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn non_ascii_answers_are_verified_case_insensitively() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow {
        qa: vec![
            ("Where did you go on honeymoon?".into(), "Ynys Môn".into()),
            ("Name of your first teacher?".into(), "Zoë 😀".into()),
        ],
        ..AccountRow::locked(EMAIL, MOBILE)
    }])
    .await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let mut reply = app.text("3456").await;
    for _ in 0..2 {
        let answer = if reply.contains("honeymoon") {
            "  YNYS   MÔN "
        } else if reply.contains("teacher") {
            "ZOË 😀"
        } else {
            panic!("no question: {reply}")
        };
        reply = app.text(answer).await;
    }
    assert!(reply.contains("Reply 1"), "{reply}");
    assert!(app.text("1").await.contains("Your account is unlocked"));
    assert_eq!(app.account(EMAIL)["locked"], false);
}

#[tokio::test]
async fn sql_looking_text_gets_a_clear_reply_and_the_tables_survive() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let accounts = app.count("accounts").await;
    let questions = app.count("enrolments").await;

    app.text("UNLOCK").await;
    let hint = app.text(SQL).await;
    assert!(
        hint.contains("does not look like an email address"),
        "{hint}"
    );
    app.text(EMAIL).await;
    let hint = app.text("1' OR '1'='1").await;
    assert!(hint.contains("exactly 4 digits"), "{hint}");
    app.text("3456").await;
    app.text(SQL).await;
    assert_eq!(app.text(SQL).await, NOT_VERIFIED);

    // A syntactically valid address full of quotes is just unknown.
    app.text("UNLOCK").await;
    app.text("x'or'1'='1'--@nhs.net").await;
    assert_eq!(app.text("3456").await, NOT_VERIFIED);

    assert_eq!(app.count("accounts").await, accounts);
    assert_eq!(app.count("enrolments").await, questions);
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], true);
    assert_eq!(account["must_change_password"], false);
    assert!(app.sent_texts().await.is_empty());
    // The answer typed is not in the audit trail.
    let audit = serde_json::to_string(&app.audit()).unwrap();
    assert!(!audit.contains("DROP TABLE"), "{audit}");
}

#[tokio::test]
async fn an_email_with_an_apostrophe_works() {
    let mut app = spawn_app().await;
    let email = "sean.o'brien@nhs.net";
    app.import(&[AccountRow::locked("Sean.O'Brien@NHS.net", MOBILE)])
        .await;
    let account = app.account(email);
    assert_eq!(account["email"], email);
    let options = app.verify("SEAN.O'BRIEN@nhs.net", "3456").await;
    assert!(options.contains("Reply 1"), "{options}");
    assert!(app.text("1").await.contains("Your account is unlocked"));
    assert_eq!(app.account(email)["locked"], false);
}
