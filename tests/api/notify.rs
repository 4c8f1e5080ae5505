//! SMS_PROVIDER=notify: texts go to a fake GOV.UK Notify API that checks
//! the real request format, including the JWT signed with the key's secret.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const SERVICE_ID: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
const SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";
const TEMPLATE_PASSWORD: &str = "f33517ff-2a88-4f6e-b855-c550268ce08a";
const TEMPLATE_NOTICE: &str = "a2b3c4d5-1111-4222-8333-944455556666";
const EMAIL: &str = "jane.smith@nhs.net";

#[derive(Clone, Default)]
struct FakeNotify {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Respond for FakeNotify {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
            &validation,
        );
        let Ok(claims) = claims else {
            return ResponseTemplate::new(403).set_body_json(json!({"status_code": 403,
                "errors": [{"error": "AuthError", "message": "Invalid token: signature, api token not found"}]}));
        };
        let iat = claims.claims["iat"].as_i64().unwrap_or_default();
        if claims.claims["iss"] != SERVICE_ID || (chrono::Utc::now().timestamp() - iat).abs() > 30 {
            return ResponseTemplate::new(403).set_body_json(json!({"status_code": 403,
                "errors": [{"error": "AuthError", "message": "Invalid token: iss or iat"}]}));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.received.lock().unwrap().push(body.clone());
        ResponseTemplate::new(201).set_body_json(json!({
            "id": format!("740e5834-3a29-46b4-9a6f-16142fde{:04}", self.received.lock().unwrap().len()),
            "reference": body["reference"],
            "content": {"body": "rendered by Notify", "from_number": "NHSmail"},
            "template": {"id": body["template_id"], "version": 1,
                         "uri": format!("https://api.notifications.service.gov.uk/v2/template/{}", body["template_id"].as_str().unwrap_or_default())},
            "uri": "https://api.notifications.service.gov.uk/v2/notifications/740e5834"
        }))
    }
}

async fn notify_app(secret: &str) -> (TestApp, FakeNotify) {
    let server = MockServer::builder().start().await;
    let fake = FakeNotify::default();
    Mock::given(method("POST"))
        .and(path("/v2/notifications/sms"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let app = spawn_app_with(Options {
        env: vec![
            ("SMS_PROVIDER", "notify".into()),
            (
                "NOTIFY_API_KEY",
                format!("unlockbot_live-{SERVICE_ID}-{secret}"),
            ),
            ("NOTIFY_API_BASE", server.uri()),
            ("NOTIFY_TEMPLATE_TEMP_PASSWORD", TEMPLATE_PASSWORD.into()),
            ("NOTIFY_TEMPLATE_NOTICE", TEMPLATE_NOTICE.into()),
        ],
    })
    .await;
    // Keep the fake alive as long as the app.
    std::mem::forget(server);
    app.import(&[AccountRow::locked(EMAIL, "07811 123456")])
        .await;
    (app, fake)
}

#[tokio::test]
async fn a_reset_sends_the_temporary_password_through_notify() {
    let (mut app, fake) = notify_app(SECRET).await;
    app.verify(EMAIL, "3456").await;
    let done = app.text("2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    app.outbox_settled().await;
    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:?}");
    let password_text = &received[0];
    assert_eq!(password_text["phone_number"], "+447811123456");
    assert_eq!(password_text["template_id"], TEMPLATE_PASSWORD);
    let password = password_text["personalisation"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(app.password_is(EMAIL, &password));
    assert!(!done.contains(&password));
    assert!(!captured_logs().contains(&password));
    // The reference is the outbox id, and the row is sent with its secret erased.
    let reference = password_text["reference"].as_str().unwrap();
    assert_eq!(
        app.db
            .scalar(format!(
                "SELECT COUNT(*) FROM outbox WHERE id = '{reference}' AND status = 'sent'"
            ))
            .await,
        1
    );
    assert!(app.sealed_texts().await.is_empty(), "secrets erased");
    let notice = &received[1];
    assert_eq!(notice["template_id"], TEMPLATE_NOTICE);
    assert_eq!(notice["personalisation"]["action"], "reset");
    assert!(notice["personalisation"]["password"].is_null());
}

#[tokio::test]
async fn a_wrong_notify_secret_is_a_final_failure_and_the_password_is_restored() {
    let (mut app, fake) = notify_app("00000000-0000-4000-8000-000000000000").await;
    app.verify(EMAIL, "3456").await;
    app.text("2").await;
    app.outbox_settled().await;
    assert!(
        fake.received.lock().unwrap().is_empty(),
        "the fake refused the token"
    );
    let account = app.account(EMAIL);
    assert_eq!(account["has_password"], false, "{account}");
    assert_eq!(account["must_change_password"], false, "{account}");
    assert_eq!(app.count("outbox WHERE status = 'failed'").await, 2);
    assert!(app.sealed_texts().await.is_empty(), "secrets erased");
    let next = app.text("UNLOCK").await;
    assert!(
        next.contains("could not text your temporary password"),
        "{next}"
    );
}

#[tokio::test]
async fn without_a_twilio_auth_token_a_real_provider_takes_no_unsigned_webhooks() {
    let server = MockServer::builder().start().await;
    let app = spawn_app_with(Options {
        env: vec![
            ("SMS_PROVIDER", "notify".into()),
            ("TWILIO_AUTH_TOKEN", String::new()),
            (
                "NOTIFY_API_KEY",
                format!("unlockbot_live-{SERVICE_ID}-{SECRET}"),
            ),
            ("NOTIFY_API_BASE", server.uri()),
            ("NOTIFY_TEMPLATE_TEMP_PASSWORD", TEMPLATE_PASSWORD.into()),
            ("NOTIFY_TEMPLATE_NOTICE", TEMPLATE_NOTICE.into()),
        ],
    })
    .await;
    let params = app.inbound_params(USER_PHONE, "UNLOCK", "SM00000000000000000000000000000099");
    // Forged: no signature at all.
    let response = app
        .client
        .post(format!("{}/sms/twilio", app.address))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.count("conversations").await, 0);
    assert_eq!(app.count("processed_messages").await, 0);
}
