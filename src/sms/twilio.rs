//! Twilio's Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

use super::{OutboundSms, SendError, SmsSender};

pub struct TwilioSender {
    client: reqwest::Client,
    api_base: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct MessageList {
    #[serde(default)]
    messages: Vec<ListedMessage>,
}

#[derive(Deserialize)]
struct ListedMessage {
    sid: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    body: Option<String>,
    /// RFC 2822, as Twilio writes it.
    #[serde(default)]
    date_created: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// Twilio error codes that retrying cannot fix.
const PERMANENT_CODES: &[i64] = &[
    20003, // authentication
    21211, // invalid To number
    21408, // region not enabled
    21610, // recipient replied STOP
    21612, // cannot route to this number
    21614, // not SMS-capable
];

impl TwilioSender {
    pub fn new(
        api_base: &str,
        account_sid: String,
        auth_token: SecretString,
        from: String,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            api_base: api_base.trim_end_matches('/').to_owned(),
            account_sid,
            auth_token,
            from,
        })
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    #[tracing::instrument(skip_all, fields(to = %sms.to.masked(), kind = sms.kind.as_str()))]
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api_base, self.account_sid
        );
        let response = self
            .client
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[
                ("To", sms.to.as_e164()),
                ("From", self.from.as_str()),
                ("Body", sms.body()),
            ])
            .send()
            .await
            // reqwest's error text can include the URL but never the form body.
            .map_err(|e| SendError::transient(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            let created: Created = response.json().await.map_err(|e| {
                SendError::transient(format!("unreadable reply: {}", e.without_url()))
            })?;
            tracing::info!(sid = %created.sid, "text accepted by Twilio");
            return Ok(created.sid);
        }
        // Twilio's error message can quote the request; log only its code.
        let error: Option<TwilioError> = response.json().await.ok();
        let code = error.as_ref().and_then(|e| e.code);
        let has_message = error.as_ref().and_then(|e| e.message.as_ref()).is_some();
        tracing::warn!(
            status = status.as_u16(),
            code,
            has_message,
            "Twilio refused the text"
        );
        let what = format!(
            "HTTP {}{}",
            status.as_u16(),
            code.map(|c| format!(", Twilio code {c}"))
                .unwrap_or_default()
        );
        if status.is_server_error() || status.as_u16() == 429 || code == Some(20429) {
            Err(SendError::transient(what))
        } else if code.is_some_and(|c| PERMANENT_CODES.contains(&c)) || status.is_client_error() {
            Err(SendError::Permanent(what))
        } else {
            Err(SendError::transient(what))
        }
    }

    /// Twilio takes no idempotency key for Messages, so after a crash
    /// between sending and recording, list the texts sent to the number
    /// since the text was queued and look for this exact body.
    #[tracing::instrument(skip_all, fields(to = %sms.to.masked(), kind = sms.kind.as_str()))]
    async fn find_sent(
        &self,
        sms: &OutboundSms,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api_base, self.account_sid
        );
        // DateSent>= takes a day; a day early covers clock skew.
        let day = (since - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let response = self
            .client
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .query(&[
                ("To", sms.to.as_e164()),
                ("From", self.from.as_str()),
                ("DateSent>", day.as_str()),
                ("PageSize", "100"),
            ])
            .send()
            .await
            .map_err(|e| SendError::transient(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SendError::transient(format!(
                "listing texts: HTTP {}",
                status.as_u16()
            )));
        }
        let list: MessageList = response
            .json()
            .await
            .map_err(|e| SendError::transient(format!("unreadable list: {}", e.without_url())))?;
        // Only a text created after this one was queued can be it (a minute
        // of grace for clock skew): notices have the same wording every
        // time, and an earlier one must not be taken for this one.
        let earliest = since - chrono::Duration::minutes(1);
        Ok(list
            .messages
            .into_iter()
            .filter(|m| {
                m.date_created
                    .as_deref()
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                    .is_some_and(|created| created >= earliest)
            })
            .filter(|m| m.to == sms.to.as_e164() && m.body.as_deref() == Some(sms.body()))
            .map(|m| m.sid)
            .collect())
    }
}
