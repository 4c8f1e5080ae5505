//! `POST /sms/twilio` as Twilio calls it: signatures, retries, TwiML; and
//! the health endpoints and body cap.

use unlockbot::channels::sms_twilio;

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456";

fn webhook_url() -> String {
    format!("{PUBLIC_BASE}{}", sms_twilio::PATH)
}

/// Nothing was written by any webhook call.
async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(
        app.write_counts().await,
        [0; 5],
        "conversations, processed, audit, failures, blocks"
    );
}

#[tokio::test]
async fn a_missing_signature_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
    let response = app.post_form(&params, None).await;
    assert_eq!(response.status(), 403);
    let response = app.post_form(&params, Some("")).await;
    assert_eq!(response.status(), 403, "an empty signature");
    assert_nothing_stored(&app).await;
    assert!(app.sent_texts().await.is_empty());
}

#[tokio::test]
async fn a_wrong_signature_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
    let cases = [
        (
            "another auth token",
            sms_twilio::signature("not-the-auth-token", &webhook_url(), &params),
        ),
        (
            "another URL",
            sms_twilio::signature(
                AUTH_TOKEN,
                &format!("https://attacker.example.com{}", sms_twilio::PATH),
                &params,
            ),
        ),
        (
            "http instead of https",
            sms_twilio::signature(
                AUTH_TOKEN,
                &webhook_url().replace("https://", "http://"),
                &params,
            ),
        ),
        ("not base64", "not a signature!".to_owned()),
        ("garbage base64", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()),
    ];
    for (case, signature) in &cases {
        let response = app.post_form(&params, Some(signature)).await;
        assert_eq!(response.status(), 403, "{case}");
    }
    assert_nothing_stored(&app).await;
    assert_eq!(app.account(EMAIL)["locked"], true);
}

#[tokio::test]
async fn a_signature_for_other_parameters_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let sid = app.next_sid();
    let signed = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
    let signature = sms_twilio::signature(AUTH_TOKEN, &webhook_url(), &signed);
    // Same signature, but another body, another sender, an extra field.
    let other_body = app.inbound_params(USER_PHONE, "HELLO", &sid);
    let other_sender = app.inbound_params("+447911223456", "UNLOCK", &sid);
    let mut extra = signed.clone();
    extra.push(("Injected".to_owned(), "1".to_owned()));
    let mut missing = signed.clone();
    missing.retain(|(k, _)| k != "ApiVersion");
    for (case, params) in [
        ("other body", other_body),
        ("other sender", other_sender),
        ("extra field", extra),
        ("missing field", missing),
    ] {
        let response = app.post_form(&params, Some(&signature)).await;
        assert_eq!(response.status(), 403, "{case}");
    }
    assert_nothing_stored(&app).await;
    // The signed parameters themselves are accepted (the control case).
    let response = app.post_form(&signed, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.count("conversations").await, 1);
}

#[tokio::test]
async fn a_repeated_message_sid_is_answered_identically_and_processed_once() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    app.text("UNLOCK").await;

    // The email, delivered twice.
    let sid = app.next_sid();
    let first = app.text_with_sid(USER_PHONE, EMAIL, &sid).await;
    let counts = app.write_counts().await;
    let audit_len = app.audit().len();
    let second = app.text_with_sid(USER_PHONE, EMAIL, &sid).await;
    assert_eq!(first.0, 200);
    assert_eq!(second, first, "identical status, content type and body");
    assert!(twiml_text(&first.2).contains("last 4 digits"));
    assert_eq!(app.write_counts().await, counts, "nothing more stored");
    assert_eq!(app.audit().len(), audit_len);
    // Processed once: the conversation is at the digits step, with no
    // invalid input counted (the repeat was not read as bad digits).
    let q1 = app.text("3456").await;
    assert!(q1.starts_with("Security question 1 of 2"), "{q1}");

    // The answer to question 1, delivered three times: read once (read twice,
    // it would also have answered question 2, wrongly).
    let sid = app.next_sid();
    let first = app.text_with_sid(USER_PHONE, answer_for(&q1), &sid).await;
    for _ in 0..2 {
        assert_eq!(
            app.text_with_sid(USER_PHONE, answer_for(&q1), &sid).await,
            first
        );
    }
    let q2 = twiml_text(&first.2);
    assert!(q2.starts_with("Security question 2 of 2"), "{q2}");
    let options = app.text(answer_for(&q2)).await;
    assert!(options.contains("Reply 1"), "{options}");

    // Option 2, delivered twice: one reset, one password text, one notice.
    let sid = app.next_sid();
    let first = app.text_with_sid(USER_PHONE, "2", &sid).await;
    let second = app.text_with_sid(USER_PHONE, "2", &sid).await;
    assert_eq!(second, first);
    assert!(twiml_text(&first.2).contains("temporary password is on its way"));
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 2, "password and notice, once each: {texts:?}");
    let audit = app.audit();
    assert_eq!(
        audit.iter().filter(|e| e["event"] == "reset").count(),
        1,
        "{audit:?}"
    );
    let password = temp_password_in(&texts[0].body);
    assert!(
        app.password_is(EMAIL, &password),
        "the one password sent works"
    );
    assert!(!first.2.contains(&password));

    // The same MessageSid after the conversation ended is still answered from
    // the record, and does not start a new conversation.
    let again = app.text_with_sid(USER_PHONE, "2", &sid).await;
    assert_eq!(again, first);
    assert_eq!(app.live_conversations().await, 0);
}

#[tokio::test]
async fn replies_are_twiml_and_xml_escaped() {
    let mut app = spawn_app().await;
    let question = "Favourite R&B <artist>?";
    app.import(&[AccountRow {
        qa: vec![
            (question.into(), "Prince".into()),
            ("In which town were you born?".into(), "Leeds".into()),
        ],
        ..AccountRow::locked(EMAIL, MOBILE)
    }])
    .await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let sid = app.next_sid();
    let (status, content_type, mut raw) = app.text_with_sid(USER_PHONE, "3456", &sid).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    if !raw.contains("R&amp;B") {
        // The other question came first: answer it.
        let sid = app.next_sid();
        raw = app.text_with_sid(USER_PHONE, "Leeds", &sid).await.2;
    }
    assert!(
        raw.contains("Favourite R&amp;B &lt;artist&gt;?"),
        "escaped in the raw body: {raw}"
    );
    assert!(!raw.contains("R&B"), "{raw}");
    assert!(!raw.contains("<artist>"), "{raw}");
    assert!(
        raw.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>"#)
            && raw.ends_with("</Message></Response>"),
        "{raw}"
    );
    // Well-formed XML whose text is the question, verbatim.
    let mut reader = quick_xml::Reader::from_str(&raw);
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Text(t) => {
                text.push_str(&t.xml10_content());
            }
            quick_xml::events::Event::GeneralRef(r) => {
                let name = r.xml10_content();
                text.push_str(
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .expect("only predefined entities"),
                );
            }
            _ => {}
        }
    }
    assert!(text.contains(question), "{text}");
    assert!(twiml_text(&raw).contains(question));

    let mut options = app.text("prince").await;
    if options.contains("In which town were you born?") {
        // The R&B question came first: answer the other one.
        options = app.text("Leeds").await;
    }
    assert!(options.contains("Reply 1"), "{options}");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get_status("/healthz").await, 200);
    assert_eq!(app.get_status("/readyz").await, 200);
}

#[tokio::test]
async fn a_body_over_the_cap_gets_413_and_changes_nothing() {
    let mut app = spawn_app().await;
    let sid = app.next_sid();
    let big = "A".repeat(40 * 1024);
    let params = app.inbound_params(USER_PHONE, &big, &sid);
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 413);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_public_base_url_with_the_default_port_verifies_signatures_without_it() {
    let mut app = spawn_app_with(Options {
        env: vec![(
            "PUBLIC_BASE_URL",
            "https://unlock.example.nhs.uk:443".into(),
        )],
    })
    .await;
    // `text` signs over PUBLIC_BASE, without the port.
    assert!(app.text("UNLOCK").await.contains("email address"));
    // Signed with the port, as configured, is accepted too.
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, EMAIL, &sid);
    let signature = sms_twilio::signature(
        AUTH_TOKEN,
        &format!("https://unlock.example.nhs.uk:443{}", sms_twilio::PATH),
        &params,
    );
    assert_eq!(app.post_form(&params, Some(&signature)).await.status(), 200);
    // But another port is not the same URL.
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "3456", &sid);
    let signature = sms_twilio::signature(
        AUTH_TOKEN,
        &format!("https://unlock.example.nhs.uk:8443{}", sms_twilio::PATH),
        &params,
    );
    assert_eq!(app.post_form(&params, Some(&signature)).await.status(), 403);
}

#[tokio::test]
async fn a_signature_computed_with_the_default_port_verifies_against_a_base_url_without_it() {
    let mut app = spawn_app().await;
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "UNLOCK", &sid);
    let signature = sms_twilio::signature(
        AUTH_TOKEN,
        &format!("https://unlock.example.nhs.uk:443{}", sms_twilio::PATH),
        &params,
    );
    assert_eq!(app.post_form(&params, Some(&signature)).await.status(), 200);
    assert_eq!(app.count("conversations").await, 1);
}
