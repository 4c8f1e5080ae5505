//! GOV.UK Notify: `POST /v2/notifications/sms`, authorised by a fresh HS256
//! JWT per request (`iss` = the service id, `iat` = now, signed with the
//! secret; both come from the API key). Notify allows 30 s of clock skew, so
//! a token is never reused.
//!
//! Notify sends templates, not bodies: the template is chosen by
//! [`SmsKind`] and filled from [`OutboundSms::personalisation`].

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{OutboundSms, SendError, SmsKind, SmsSender};

/// Notify's production API.
pub const DEFAULT_API_BASE: &str = "https://api.notifications.service.gov.uk";

const TIMEOUT: Duration = Duration::from_secs(15);

/// `{service id}-{secret}`: two UUIDs and a hyphen.
const KEY_TAIL_LEN: usize = 36 + 1 + 36;

/// What [`NotifySender`] needs. `Debug` shows the API key as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `NOTIFY_API_KEY`: `{name}-{service id}-{secret}`.
    pub api_key: SecretString,
    /// `NOTIFY_API_BASE`, e.g. [`DEFAULT_API_BASE`].
    pub api_base: String,
    /// `NOTIFY_TEMPLATE_TEMP_PASSWORD`: template with `((password))`.
    pub template_temp_password: String,
    /// `NOTIFY_TEMPLATE_NOTICE`: template for the security notices, with
    /// `((action))` ("unlocked" or "reset") and `((contact))`.
    pub template_notice: String,
}

/// Why the Notify settings cannot be used. Never quotes the API key.
#[derive(Debug, thiserror::Error)]
pub enum NotifyKeyError {
    #[error(
        "NOTIFY_API_KEY is too short ({len} characters): a GOV.UK Notify API key ends with \
         `{{service id}}-{{secret key}}`, {KEY_TAIL_LEN} characters"
    )]
    TooShort { len: usize },
    #[error(
        "NOTIFY_API_KEY is not a GOV.UK Notify API key (expected `{{name}}-{{service id}}-{{secret key}}` \
         with two UUIDs): {problem}"
    )]
    Malformed { problem: &'static str },
    #[error("{setting} is not a GOV.UK Notify template id (a UUID)")]
    TemplateId { setting: &'static str },
    #[error("NOTIFY_API_BASE is not an http(s) URL")]
    ApiBase,
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Sends texts through GOV.UK Notify. `Debug` never shows the secret.
pub struct NotifySender {
    client: reqwest::Client,
    api_base: String,
    service_id: String,
    /// HMAC key from the API key's secret part (zeroised on drop).
    signing_key: EncodingKey,
    template_temp_password: String,
    template_notice: String,
}

impl fmt::Debug for NotifySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySender")
            .field("api_base", &self.api_base)
            .field("service_id", &self.service_id)
            .field("signing_key", &"[REDACTED]")
            .field("template_temp_password", &self.template_temp_password)
            .field("template_notice", &self.template_notice)
            .finish_non_exhaustive()
    }
}

/// Splits an API key into its service id and secret: `key[len-73..len-37]`
/// and `key[len-36..]`. Surrounding whitespace (from an env file) is
/// ignored. A key of exactly 73 characters (no name) is accepted, as Notify's
/// own clients do.
fn split_api_key(key: &str) -> Result<(&str, &str), NotifyKeyError> {
    let key = key.trim();
    let len = key.len();
    if len < KEY_TAIL_LEN {
        return Err(NotifyKeyError::TooShort {
            len: key.chars().count(),
        });
    }
    // `get` rather than indexing: a non-ASCII key must not panic.
    let (Some(service_id), Some(separator), Some(secret)) = (
        key.get(len - 73..len - 37),
        key.get(len - 37..len - 36),
        key.get(len - 36..),
    ) else {
        return Err(NotifyKeyError::Malformed {
            problem: "it contains characters that cannot be in a key",
        });
    };
    if separator != "-" {
        return Err(NotifyKeyError::Malformed {
            problem: "no `-` between the service id and the secret key",
        });
    }
    if len > KEY_TAIL_LEN && key.get(len - 74..len - 73) != Some("-") {
        return Err(NotifyKeyError::Malformed {
            problem: "no `-` between the key name and the service id",
        });
    }
    if !uuid_shaped(service_id) {
        return Err(NotifyKeyError::Malformed {
            problem: "the service id is not UUID-shaped",
        });
    }
    if !uuid_shaped(secret) {
        return Err(NotifyKeyError::Malformed {
            problem: "the secret key is not UUID-shaped",
        });
    }
    Ok((service_id, secret))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hexadecimal digits.
fn uuid_shaped(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

impl NotifySender {
    /// Checks the settings (key shape, template ids, base URL) and builds
    /// the sender.
    ///
    /// # Errors
    /// [`NotifyKeyError`]; its messages never contain the key.
    pub fn new(settings: NotifySettings) -> Result<Self, NotifyKeyError> {
        Self::with_timeout(settings, TIMEOUT)
    }

    fn with_timeout(settings: NotifySettings, timeout: Duration) -> Result<Self, NotifyKeyError> {
        let (service_id, secret) = split_api_key(settings.api_key.expose_secret())?;
        let template_temp_password = settings.template_temp_password.trim().to_owned();
        if !uuid_shaped(&template_temp_password) {
            return Err(NotifyKeyError::TemplateId {
                setting: "NOTIFY_TEMPLATE_TEMP_PASSWORD",
            });
        }
        let template_notice = settings.template_notice.trim().to_owned();
        if !uuid_shaped(&template_notice) {
            return Err(NotifyKeyError::TemplateId {
                setting: "NOTIFY_TEMPLATE_NOTICE",
            });
        }
        let api_base = settings.api_base.trim().trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&api_base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => return Err(NotifyKeyError::ApiBase),
        }
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                // An API never redirects; do not follow one with our token.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(NotifyKeyError::HttpClient)?,
            api_base,
            service_id: service_id.to_owned(),
            signing_key: EncodingKey::from_secret(secret.as_bytes()),
            template_temp_password,
            template_notice,
        })
    }

    /// A fresh token: Notify refuses one whose `iat` is more than 30 s off.
    fn token(&self) -> Result<String, SendError> {
        let claims = Claims {
            iss: &self.service_id,
            iat: chrono::Utc::now().timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing_key)
            .map_err(|e| SendError::Permanent(format!("cannot sign the GOV.UK Notify token: {e}")))
    }

    /// The template and its values for this text.
    fn template_for<'a>(
        &'a self,
        sms: &'a OutboundSms,
    ) -> Result<(&'a str, BTreeMap<&'a str, &'a str>), SendError> {
        let mut values: BTreeMap<&str, &str> = sms
            .personalisation
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose_secret()))
            .collect();
        let (template, required) = match sms.kind {
            SmsKind::TempPassword => (self.template_temp_password.as_str(), "password"),
            SmsKind::NoticeUnlocked => {
                values.insert("action", "unlocked");
                (self.template_notice.as_str(), "contact")
            }
            SmsKind::NoticeReset => {
                values.insert("action", "reset");
                (self.template_notice.as_str(), "contact")
            }
            SmsKind::NoticeBlocked => {
                values.insert("action", "paused");
                (self.template_notice.as_str(), "contact")
            }
        };
        if !values.contains_key(required) {
            // Notify would refuse it with a 400; say why here instead.
            return Err(SendError::Permanent(format!(
                "{} text without the `{required}` personalisation",
                sms.kind.as_str()
            )));
        }
        Ok((template, values))
    }
}

#[derive(Serialize, Deserialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

#[derive(Serialize)]
struct SmsRequest<'a> {
    phone_number: &'a str,
    template_id: &'a str,
    personalisation: BTreeMap<&'a str, &'a str>,
    reference: &'a str,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct NotificationList {
    notifications: Vec<Notification>,
}

#[derive(Deserialize)]
struct Notification {
    id: String,
    reference: Option<String>,
}

/// Notify's error reply. Each error's `message` can quote the request (the
/// phone number), so only the `error` names are read.
#[derive(Deserialize)]
struct NotifyErrors {
    #[serde(default)]
    errors: Vec<NotifyErrorItem>,
}

#[derive(Deserialize)]
struct NotifyErrorItem {
    error: Option<String>,
}

/// A network error or timeout. reqwest's text can include the URL (with the
/// reference) but never the body or headers; drop the URL anyway.
fn request_failed(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        SendError::transient("GOV.UK Notify did not answer in time")
    } else {
        SendError::transient(format!(
            "request to GOV.UK Notify failed: {}",
            e.without_url()
        ))
    }
}

/// The `error` names of a Notify error reply, kept only when they look like
/// names (so nothing the request carried can slip into logs).
fn error_names(body: &[u8]) -> Vec<String> {
    let Ok(reply) = serde_json::from_slice::<NotifyErrors>(body) else {
        return Vec::new();
    };
    reply
        .errors
        .into_iter()
        .filter_map(|e| e.error)
        .map(|name| {
            let looks_like_a_name = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if looks_like_a_name {
                name
            } else {
                "unrecognised".to_owned()
            }
        })
        .collect()
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Maps a refusal to permanent or transient.
fn classify(status: StatusCode, names: &[String], retry_after: Option<Duration>) -> SendError {
    let what = if names.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), names.join(", "))
    };
    match status.as_u16() {
        429 => SendError::Transient {
            reason: format!("GOV.UK Notify is rate limiting us ({what})"),
            retry_after,
        },
        500..=599 => SendError::Transient {
            reason: format!("GOV.UK Notify server error ({what})"),
            retry_after,
        },
        408 => SendError::transient(format!("GOV.UK Notify timed out ({what})")),
        401 | 403 => SendError::Permanent(format!(
            "GOV.UK Notify refused our credentials ({what}): a configuration problem; check \
             NOTIFY_API_KEY and that this machine's clock is right"
        )),
        400 => SendError::Permanent(format!("GOV.UK Notify rejected the text ({what})")),
        _ if status.is_redirection() => SendError::Permanent(format!(
            "GOV.UK Notify answered with a redirect ({what}): a configuration problem; check \
             NOTIFY_API_BASE"
        )),
        _ if status.is_client_error() => SendError::Permanent(format!(
            "GOV.UK Notify refused the request ({what}); check NOTIFY_API_BASE and the template ids"
        )),
        _ => SendError::transient(format!("unexpected answer from GOV.UK Notify ({what})")),
    }
}

/// Reads an error reply, logs its status and error names (never its
/// messages) and classifies it.
async fn refusal(response: reqwest::Response, operation: &'static str) -> SendError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let names = error_names(&body);
    tracing::warn!(
        status = status.as_u16(),
        errors = %names.join(","),
        operation,
        "GOV.UK Notify refused the request"
    );
    classify(status, &names, retry_after)
}

#[async_trait]
impl SmsSender for NotifySender {
    #[tracing::instrument(
        skip_all,
        fields(to = %sms.to.masked(), kind = sms.kind.as_str(), reference = %sms.reference)
    )]
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        let (template_id, personalisation) = self.template_for(sms)?;
        let request = SmsRequest {
            phone_number: sms.to.as_e164(),
            template_id,
            personalisation,
            reference: &sms.reference,
        };
        let response = self
            .client
            .post(format!("{}/v2/notifications/sms", self.api_base))
            .bearer_auth(self.token()?)
            .json(&request)
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(response, "send").await);
        }
        let created: Created = response.json().await.map_err(|e| {
            tracing::warn!(
                status = status.as_u16(),
                "GOV.UK Notify took the text but its reply was unreadable"
            );
            SendError::transient(format!(
                "GOV.UK Notify answered HTTP {} with an unreadable reply ({}); it may have taken \
                 the text",
                status.as_u16(),
                e.without_url()
            ))
        })?;
        tracing::info!(notification_id = %created.id, "text accepted by GOV.UK Notify");
        Ok(created.id)
    }

    /// Asks Notify for a text with our reference. References are unique per
    /// text (the outbox id), so `since` is not used to filter: comparing
    /// Notify's clock with ours could only turn a sent text into a second
    /// one.
    #[tracing::instrument(
        skip_all,
        fields(kind = sms.kind.as_str(), reference = %sms.reference)
    )]
    async fn find_sent(
        &self,
        sms: &OutboundSms,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, SendError> {
        let response = self
            .client
            .get(format!("{}/v2/notifications", self.api_base))
            .query(&[
                ("reference", sms.reference.as_str()),
                ("template_type", "sms"),
            ])
            .bearer_auth(self.token()?)
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(response, "find_sent").await);
        }
        let list: NotificationList = response.json().await.map_err(|e| {
            SendError::transient(format!(
                "GOV.UK Notify's list of notifications was unreadable: {}",
                e.without_url()
            ))
        })?;
        // Check the reference ourselves: if the filter were ever ignored,
        // another text must not pass for this one (it would never be sent).
        let found: Vec<String> = list
            .notifications
            .into_iter()
            .filter(|n| n.reference.as_deref() == Some(sms.reference.as_str()))
            .map(|n| n.id)
            .collect();
        tracing::info!(
            found = !found.is_empty(),
            "asked GOV.UK Notify for the text"
        );
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::{Value, json};
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    const SERVICE_ID: &str = "11111111-2222-3333-4444-555555555555";
    const SECRET: &str = "66666666-7777-8888-9999-000000000000";
    const KEY: &str =
        "unlockbot_test-11111111-2222-3333-4444-555555555555-66666666-7777-8888-9999-000000000000";
    const WRONG_KEY: &str =
        "unlockbot_test-11111111-2222-3333-4444-555555555555-66666666-7777-8888-9999-00000000000f";
    const TEMPLATE_TEMP_PASSWORD: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const TEMPLATE_NOTICE: &str = "aaaaaaaa-0000-4000-8000-000000000002";
    const E164: &str = "+447811123456";
    const PASSWORD: &str = "Quartz-Lemon-4821";
    const CONTACT: &str = "the IT service desk on 0300 123 4567";

    fn settings(key: &str, api_base: &str) -> NotifySettings {
        NotifySettings {
            api_key: SecretString::from(key.to_owned()),
            api_base: api_base.to_owned(),
            template_temp_password: TEMPLATE_TEMP_PASSWORD.to_owned(),
            template_notice: TEMPLATE_NOTICE.to_owned(),
        }
    }

    fn sender(server: &MockServer) -> NotifySender {
        NotifySender::new(settings(KEY, &server.uri())).expect("valid settings")
    }

    fn sms(kind: SmsKind) -> OutboundSms {
        let personalisation = match kind {
            SmsKind::TempPassword => vec![("password".to_owned(), SecretString::from(PASSWORD))],
            SmsKind::NoticeUnlocked | SmsKind::NoticeReset | SmsKind::NoticeBlocked => {
                vec![("contact".to_owned(), SecretString::from(CONTACT))]
            }
        };
        OutboundSms {
            to: crate::domain::parse_uk_mobile("07811 123456", false).expect("fixture"),
            kind,
            body: SecretString::from("the whole text"),
            personalisation,
            reference: "outbox-42".to_owned(),
        }
    }

    fn notify_error(status: u16, error: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "status_code": status,
            "errors": [{"error": error, "message": message}],
        }))
    }

    /// What the fake answers once the request has passed its checks.
    #[derive(Clone)]
    enum Reply {
        /// 201 in Notify's shape, built from the request.
        Created,
        Fixed(ResponseTemplate),
    }

    /// A fake Notify API: checks the JWT with the secret (as Notify does)
    /// and, for a POST, the JSON body; answers 403 AuthError / 400
    /// ValidationError like Notify when they are wrong.
    struct FakeNotify {
        reply: Reply,
    }

    impl FakeNotify {
        fn created() -> Self {
            Self {
                reply: Reply::Created,
            }
        }

        fn fixed(reply: ResponseTemplate) -> Self {
            Self {
                reply: Reply::Fixed(reply),
            }
        }

        fn check_token(request: &Request) -> Result<(), String> {
            let auth = request
                .headers
                .get("authorization")
                .ok_or("no Authorization header")?
                .to_str()
                .map_err(|_| "Authorization is not ASCII")?;
            let token = auth
                .strip_prefix("Bearer ")
                .ok_or("Authorization is not a bearer token")?;
            // The header exactly as Notify documents it.
            let header = token.split('.').next().unwrap_or_default();
            let header =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                    .map_err(|e| e.to_string())?;
            let header: Value = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
            if header != json!({"typ": "JWT", "alg": "HS256"}) {
                return Err(format!("unexpected JWT header {header}"));
            }
            let mut validation = Validation::new(Algorithm::HS256);
            validation.validate_exp = false;
            validation.set_required_spec_claims(&["iss"]);
            validation.set_issuer(&[SERVICE_ID]);
            let data = jsonwebtoken::decode::<Value>(
                token,
                &DecodingKey::from_secret(SECRET.as_bytes()),
                &validation,
            )
            .map_err(|e| format!("Invalid token: {e}"))?;
            let claims = data.claims.as_object().ok_or("claims not an object")?;
            let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
            names.sort_unstable();
            if names != ["iat", "iss"] {
                return Err(format!("unexpected claims {names:?}"));
            }
            let iat = claims["iat"].as_i64().ok_or("iat is not an integer")?;
            if (chrono::Utc::now().timestamp() - iat).abs() > 30 {
                return Err(
                    "Error: Your system clock must be accurate to within 30 seconds".into(),
                );
            }
            Ok(())
        }

        fn check_body(request: &Request) -> Result<Value, String> {
            let body: Value = request.body_json().map_err(|e| e.to_string())?;
            let object = body.as_object().ok_or("body is not an object")?;
            let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
            names.sort_unstable();
            if names
                != [
                    "personalisation",
                    "phone_number",
                    "reference",
                    "template_id",
                ]
            {
                return Err(format!("unexpected fields {names:?}"));
            }
            if body["phone_number"] != E164 {
                return Err("phone_number is not the E.164 number".into());
            }
            let template = body["template_id"].as_str().ok_or("template_id")?;
            if uuid::Uuid::try_parse(template).is_err() {
                return Err("template_id is not a valid UUID".into());
            }
            let personalisation = body["personalisation"]
                .as_object()
                .ok_or("personalisation is not an object")?;
            if !personalisation.values().all(Value::is_string) {
                return Err("personalisation values must be strings".into());
            }
            body["reference"].as_str().ok_or("reference")?;
            Ok(body)
        }
    }

    impl Respond for FakeNotify {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            if let Err(message) = Self::check_token(request) {
                return notify_error(403, "AuthError", &message);
            }
            let body = if request.method == wiremock::http::Method::POST {
                match Self::check_body(request) {
                    Ok(body) => Some(body),
                    Err(message) => return notify_error(400, "ValidationError", &message),
                }
            } else {
                None
            };
            match (&self.reply, body) {
                (Reply::Created, Some(body)) => {
                    let template = body["template_id"].as_str().unwrap_or_default();
                    ResponseTemplate::new(201).set_body_json(json!({
                        "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
                        "reference": body["reference"],
                        "content": {
                            "body": "rendered template",
                            "from_number": "GOVUK",
                        },
                        "template": {
                            "id": template,
                            "version": 1,
                            "uri": format!("https://api.notifications.service.gov.uk/v2/template/{template}"),
                        },
                        "uri": "https://api.notifications.service.gov.uk/v2/notifications/740e5834-3a29-46b4-9a6f-16142fde533a",
                    }))
                }
                (Reply::Created, None) => ResponseTemplate::new(405),
                (Reply::Fixed(reply), _) => reply.clone(),
            }
        }
    }

    async fn fake_send(reply: FakeNotify) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/notifications/sms"))
            .respond_with(reply)
            .mount(&server)
            .await;
        server
    }

    async fn sent_body(server: &MockServer) -> Value {
        let requests = server.received_requests().await.expect("recording");
        assert_eq!(requests.len(), 1);
        requests[0].body_json().expect("JSON body")
    }

    // ---- key parsing ----

    #[test]
    fn key_splits_into_service_id_and_secret() {
        assert_eq!(split_api_key(KEY).unwrap(), (SERVICE_ID, SECRET));
        // Hyphens in the name are fine; only the last 73 characters count.
        let key = format!("my-key-name-{SERVICE_ID}-{SECRET}");
        assert_eq!(split_api_key(&key).unwrap(), (SERVICE_ID, SECRET));
        // A trailing newline from an env file is ignored.
        assert_eq!(
            split_api_key(&format!(" {KEY}\n")).unwrap(),
            (SERVICE_ID, SECRET)
        );
        // Without a name, as Notify's own clients accept.
        let bare = format!("{SERVICE_ID}-{SECRET}");
        assert_eq!(split_api_key(&bare).unwrap(), (SERVICE_ID, SECRET));
    }

    #[test]
    fn bad_keys_are_refused() {
        let too_short = &KEY[KEY.len() - 72..];
        assert!(matches!(
            split_api_key(too_short),
            Err(NotifyKeyError::TooShort { len: 72 })
        ));
        assert!(matches!(
            split_api_key(""),
            Err(NotifyKeyError::TooShort { .. })
        ));
        let cases = [
            // Service id not a UUID.
            format!("name-11111111-2222-3333-4444-55555555555x-{SECRET}"),
            // Secret not a UUID.
            format!("name-{SERVICE_ID}-66666666-7777-8888-9999-00000000000g"),
            format!("name-{SERVICE_ID}-666666667777888899990000000000000000"),
            // No separators.
            format!("name-{SERVICE_ID}_{SECRET}"),
            format!("name_{SERVICE_ID}-{SECRET}"),
            // Non-ASCII where the parts should be: refused, no panic.
            format!("name-{}", "é".repeat(40)),
            "ü".repeat(80),
        ];
        for key in &cases {
            assert!(
                matches!(split_api_key(key), Err(NotifyKeyError::Malformed { .. })),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn errors_never_show_the_key() {
        let wrong_secret = format!("name-{SERVICE_ID}-66666666-7777-8888-9999-00000000000g");
        let short = "secret-that-is-short".to_owned();
        for key in [wrong_secret, short, format!("name-{SERVICE_ID}_{SECRET}")] {
            let err = NotifySender::new(settings(&key, DEFAULT_API_BASE)).unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(&key), "{shown}");
                assert!(!shown.contains("66666666"), "{shown}");
                assert!(!shown.contains("secret-that"), "{shown}");
                assert!(!shown.contains(SERVICE_ID), "{shown}");
            }
        }
    }

    #[test]
    fn other_settings_are_checked() {
        let mut s = settings(KEY, DEFAULT_API_BASE);
        s.template_notice = "notice".into();
        assert!(matches!(
            NotifySender::new(s),
            Err(NotifyKeyError::TemplateId {
                setting: "NOTIFY_TEMPLATE_NOTICE"
            })
        ));
        let mut s = settings(KEY, DEFAULT_API_BASE);
        s.template_temp_password = String::new();
        assert!(matches!(
            NotifySender::new(s),
            Err(NotifyKeyError::TemplateId {
                setting: "NOTIFY_TEMPLATE_TEMP_PASSWORD"
            })
        ));
        for base in ["", "api.notifications.service.gov.uk", "ftp://example.org"] {
            assert!(matches!(
                NotifySender::new(settings(KEY, base)),
                Err(NotifyKeyError::ApiBase)
            ));
        }
        let sender = NotifySender::new(settings(KEY, "https://example.org/")).unwrap();
        assert_eq!(sender.api_base, "https://example.org");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = settings(KEY, DEFAULT_API_BASE);
        let shown = format!("{s:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        let sender = NotifySender::new(s).unwrap();
        let shown = format!("{sender:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("66666666"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    // ---- against a fake Notify ----

    #[tokio::test]
    async fn temp_password_is_sent_with_a_valid_token() {
        let server = fake_send(FakeNotify::created()).await;
        let id = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .expect("sent");
        assert_eq!(id, "740e5834-3a29-46b4-9a6f-16142fde533a");
        assert_eq!(
            sent_body(&server).await,
            json!({
                "phone_number": E164,
                "template_id": TEMPLATE_TEMP_PASSWORD,
                "personalisation": {"password": PASSWORD},
                "reference": "outbox-42",
            })
        );
    }

    #[tokio::test]
    async fn notices_use_the_notice_template_with_an_action() {
        for (kind, action) in [
            (SmsKind::NoticeUnlocked, "unlocked"),
            (SmsKind::NoticeReset, "reset"),
        ] {
            let server = fake_send(FakeNotify::created()).await;
            sender(&server).send(&sms(kind)).await.expect("sent");
            assert_eq!(
                sent_body(&server).await,
                json!({
                    "phone_number": E164,
                    "template_id": TEMPLATE_NOTICE,
                    "personalisation": {"contact": CONTACT, "action": action},
                    "reference": "outbox-42",
                })
            );
        }
    }

    #[tokio::test]
    async fn each_request_carries_a_valid_token() {
        let server = fake_send(FakeNotify::created()).await;
        let sender = sender(&server);
        sender.send(&sms(SmsKind::TempPassword)).await.unwrap();
        sender.send(&sms(SmsKind::NoticeReset)).await.unwrap();
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            FakeNotify::check_token(r).expect("valid token");
        }
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_by_the_fake_as_configuration() {
        let server = fake_send(FakeNotify::created()).await;
        let sender = NotifySender::new(settings(WRONG_KEY, &server.uri())).unwrap();
        let err = sender.send(&sms(SmsKind::TempPassword)).await.unwrap_err();
        let SendError::Permanent(reason) = &err else {
            panic!("expected permanent, got {err:?}");
        };
        assert!(reason.contains("AuthError"), "{reason}");
        assert!(reason.contains("configuration"), "{reason}");
        // The fake's message ("Invalid token: …") is not repeated.
        assert!(!reason.contains("Invalid token"), "{reason}");
    }

    #[tokio::test]
    async fn missing_personalisation_is_refused_before_sending() {
        let server = fake_send(FakeNotify::created()).await;
        let mut text = sms(SmsKind::TempPassword);
        text.personalisation.clear();
        let err = sender(&server).send(&text).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn validation_error_is_permanent_and_its_message_is_not_kept() {
        let server = fake_send(FakeNotify::fixed(notify_error(
            400,
            "ValidationError",
            "phone_number +447811123456 Not a UK mobile number",
        )))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        let SendError::Permanent(reason) = &err else {
            panic!("expected permanent, got {err:?}");
        };
        assert!(
            reason.contains("400") && reason.contains("ValidationError"),
            "{reason}"
        );
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("7811"), "{shown}");
            assert!(!shown.contains("Not a UK mobile"), "{shown}");
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }

    #[tokio::test]
    async fn bad_request_error_is_permanent() {
        let server = fake_send(FakeNotify::fixed(notify_error(
            400,
            "BadRequestError",
            "Can't send to this recipient using a team-only API key",
        )))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::NoticeUnlocked))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(r) if r.contains("BadRequestError")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn auth_error_is_permanent_configuration() {
        let server = fake_send(FakeNotify::fixed(notify_error(
            403,
            "AuthError",
            "Invalid token: API key not found",
        )))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        let SendError::Permanent(reason) = &err else {
            panic!("expected permanent, got {err:?}");
        };
        assert!(
            reason.contains("AuthError") && reason.contains("configuration"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn rate_limit_is_transient_with_retry_after() {
        let server = fake_send(FakeNotify::fixed(
            notify_error(
                429,
                "RateLimitError",
                "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds",
            )
            .insert_header("Retry-After", "7"),
        ))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        let SendError::Transient {
            reason,
            retry_after,
        } = &err
        else {
            panic!("expected transient, got {err:?}");
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(7)));
        assert!(reason.contains("RateLimitError"), "{reason}");

        // Without the header: transient, no hint.
        let server = fake_send(FakeNotify::fixed(notify_error(
            429,
            "TooManyRequestsError",
            "Exceeded send limits (250000) for today",
        )))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SendError::Transient {
                    retry_after: None,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn server_error_is_transient() {
        let server = fake_send(FakeNotify::fixed(notify_error(
            500,
            "Exception",
            "Internal server error",
        )))
        .await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Transient { reason, .. } if reason.contains("500")),
            "{err:?}"
        );
        // A 502 from a proxy, with no Notify body.
        let server = fake_send(FakeNotify::fixed(ResponseTemplate::new(502))).await;
        let err = sender(&server)
            .send(&sms(SmsKind::TempPassword))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn timeout_and_network_errors_are_transient() {
        let server = fake_send(FakeNotify::fixed(
            ResponseTemplate::new(201).set_delay(Duration::from_secs(5)),
        ))
        .await;
        let sender =
            NotifySender::with_timeout(settings(KEY, &server.uri()), Duration::from_millis(200))
                .unwrap();
        let err = sender.send(&sms(SmsKind::TempPassword)).await.unwrap_err();
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");

        // Nothing listens on the port.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let sender = NotifySender::new(settings(KEY, &format!("http://127.0.0.1:{port}"))).unwrap();
        let err = sender.send(&sms(SmsKind::TempPassword)).await.unwrap_err();
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
        assert!(!err.to_string().contains("7811"), "{err}");
    }

    async fn fake_list(notifications: Value) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/notifications"))
            .and(query_param("reference", "outbox-42"))
            .and(query_param("template_type", "sms"))
            .respond_with(FakeNotify::fixed(ResponseTemplate::new(200).set_body_json(
                json!({
                    "notifications": notifications,
                    "links": {"current": "https://api.notifications.service.gov.uk/v2/notifications"},
                }),
            )))
            .mount(&server)
            .await;
        server
    }

    fn listed(id: &str, reference: &str) -> Value {
        json!({
            "id": id,
            "reference": reference,
            "phone_number": E164,
            "type": "sms",
            "status": "delivered",
            "template": {"id": TEMPLATE_TEMP_PASSWORD, "version": 1, "uri": "https://example.org"},
            "body": "rendered template",
            "created_at": "2026-11-02T09:15:00.000000Z",
            "created_by_name": null,
            "sent_at": "2026-11-02T09:15:01.000000Z",
            "completed_at": null,
        })
    }

    #[tokio::test]
    async fn find_sent_finds_a_text_with_our_reference() {
        let server = fake_list(json!([listed("id-of-the-text", "outbox-42")])).await;
        let found = sender(&server)
            .find_sent(&sms(SmsKind::TempPassword), chrono::Utc::now())
            .await
            .expect("asked");
        assert_eq!(found, vec!["id-of-the-text".to_owned()]);
    }

    #[tokio::test]
    async fn find_sent_not_found() {
        let server = fake_list(json!([])).await;
        let found = sender(&server)
            .find_sent(&sms(SmsKind::TempPassword), chrono::Utc::now())
            .await
            .expect("asked");
        assert!(found.is_empty(), "{found:?}");

        // A text with another reference does not count.
        let server = fake_list(json!([listed("other", "outbox-41")])).await;
        let found = sender(&server)
            .find_sent(&sms(SmsKind::TempPassword), chrono::Utc::now())
            .await
            .expect("asked");
        assert!(found.is_empty(), "{found:?}");
    }

    #[tokio::test]
    async fn find_sent_maps_errors() {
        // Wrong secret: the fake's JWT check refuses it.
        let server = fake_list(json!([])).await;
        let sender_with_wrong_key = NotifySender::new(settings(WRONG_KEY, &server.uri())).unwrap();
        let err = sender_with_wrong_key
            .find_sent(&sms(SmsKind::TempPassword), chrono::Utc::now())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(r) if r.contains("AuthError")),
            "{err:?}"
        );

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/notifications"))
            .respond_with(FakeNotify::fixed(notify_error(503, "Exception", "down")))
            .mount(&server)
            .await;
        let err = sender(&server)
            .find_sent(&sms(SmsKind::TempPassword), chrono::Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    }

    #[test]
    fn other_statuses_are_classified() {
        let permanent = |code: u16| {
            matches!(
                classify(StatusCode::from_u16(code).unwrap(), &[], None),
                SendError::Permanent(_)
            )
        };
        // A wrong NOTIFY_API_BASE: retrying will not help.
        assert!(permanent(404));
        assert!(permanent(401));
        assert!(permanent(301));
        assert!(!permanent(408));
        assert!(!permanent(503));
    }

    #[test]
    fn error_names_keep_only_names() {
        let body = json!({
            "status_code": 400,
            "errors": [
                {"error": "ValidationError", "message": "+447811123456 is wrong"},
                {"error": "+447811123456", "message": "x"},
                {"message": "no name"},
            ],
        });
        let names = error_names(body.to_string().as_bytes());
        assert_eq!(names, ["ValidationError", "unrecognised"]);
        assert!(error_names(b"<html>bad gateway</html>").is_empty());
    }
}
