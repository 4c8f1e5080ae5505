//! Twilio's inbound SMS webhook: `POST /sms/twilio`.
//!
//! The raw body is parsed strictly (percent-decoded UTF-8), the
//! `X-Twilio-Signature` is checked over `PUBLIC_BASE_URL` + path + the sorted
//! parameters exactly as Twilio computes it, and only then is the message
//! handed to the engine. The reply goes back as TwiML.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha1::Sha1;

use crate::domain::{Channel, ConversationKey, SenderCountries, parse_any_e164};
use std::sync::Arc;

use secrecy::SecretString;

use crate::engine::{Engine, Inbound};

pub const PATH: &str = "/sms/twilio";

/// A body that is not a well-formed form.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedForm;

/// Parse `application/x-www-form-urlencoded` bytes, refusing anything that
/// does not decode to UTF-8 (rather than silently replacing it), and any
/// empty or repeated parameter name: Twilio sends neither, and the
/// signature, which joins names and values with no separator, cannot tell
/// `a=bc` from `ab=c`, so the form's shape must be checked apart from it.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, MalformedForm> {
    let params = parse_pairs(body)?;
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.first().is_some_and(|n| n.is_empty()) || names.windows(2).any(|w| w[0] == w[1]) {
        return Err(MalformedForm);
    }
    Ok(params)
}

/// Whether `sid` has the shape of a Twilio message id: `SM` (SMS) or `MM`
/// (MMS) and 32 hexadecimal digits.
pub fn is_message_sid(sid: &str) -> bool {
    sid.len() == 34
        && (sid.starts_with("SM") || sid.starts_with("MM"))
        && sid.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

fn parse_pairs(body: &[u8]) -> Result<Vec<(String, String)>, MalformedForm> {
    let decode = |part: &[u8]| -> Result<String, MalformedForm> {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus_as_space)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| MalformedForm)
    };
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            // Twilio writes every parameter as `name=value`, an empty value
            // included. A pair without `=` is refused: one `&` inserted
            // into a signed value would otherwise cut it short and make the
            // rest a parameter of its own with the signature still valid
            // (it joins names and values with no separator).
            let mut it = pair.splitn(2, |&b| b == b'=');
            let name = decode(it.next().unwrap_or_default())?;
            let value = decode(it.next().ok_or(MalformedForm)?)?;
            Ok((name, value))
        })
        .collect()
}

/// HMAC-SHA1 keyed with the auth token over the URL and each parameter's
/// name and value, sorted by name: what Twilio signs.
fn signed_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio sends for `url` and `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(signed_mac(auth_token, url, params).finalize().into_bytes())
}

/// The URL as Twilio may have signed it: as configured, and with the
/// default port added or removed (Twilio's own validators try both).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(host) = parsed.host_str()
        && let Some(default) = parsed.port_or_known_default()
        && parsed.port().is_none()
    {
        // `Url` drops a default port, so its text is the form without one;
        // splice the port in after the host for the other form.
        let without = parsed.to_string();
        let with = without.replacen(host, &format!("{host}:{default}"), 1);
        for candidate in [without, with] {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// Constant-time check of `X-Twilio-Signature` against every URL variant.
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header_value: &str,
) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header_value.trim()) else {
        return false;
    };
    url_variants(url).iter().any(|candidate| {
        signed_mac(auth_token, candidate, params)
            .verify_slice(&given)
            .is_ok()
    })
}

/// A TwiML reply; an empty text sends nothing. Control and invisible
/// characters are dropped (XML 1.0 cannot carry most of them at all).
pub fn twiml(text: &str) -> String {
    let text = crate::domain::text::printable(text);
    if text.is_empty() {
        return r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#.to_owned();
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>"#,
        quick_xml::escape::escape(text.as_ref())
    )
}

fn twiml_response(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        twiml(text),
    )
        .into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// How a request was signed: what the signature is checked against.
pub struct Signed<'a> {
    pub auth_token: &'a str,
    /// The public URL Twilio posted to (with the query string).
    pub url: String,
    /// `X-Twilio-Signature` (empty when missing).
    pub signature: &'a str,
}

/// An inbound text, as the webhook accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    pub key: ConversationKey,
    /// The sender, E.164.
    pub sender: String,
    pub body: String,
    pub message_sid: String,
}

/// Why a webhook request is refused (nothing is processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a well-formed form (bad encoding, an empty or repeated name).
    Malformed,
    /// The signature is missing or wrong.
    Signature,
    /// `From`, `Body` or `MessageSid` is missing.
    MissingFields,
    /// `AccountSid` is not this service's account.
    OtherAccount,
    /// `From` is not a phone number.
    BadFrom,
    /// `MessageSid` does not have Twilio's shape.
    BadMessageSid,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Signature | Refused::OtherAccount => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed form body",
            Refused::Signature => "invalid signature",
            Refused::MissingFields => "From, Body and MessageSid are required",
            Refused::OtherAccount => "AccountSid is not this service's account",
            Refused::BadFrom => "From is not a phone number",
            Refused::BadMessageSid => "MessageSid is not valid",
        }
    }
}

/// Check a webhook body, in order: a strict form, the signature (when
/// `signed`), the fields the bot uses, the account (when `account_sid`),
/// the sender and the message id. The same checks in the same order as
/// the route, as a function (fuzzed in `tests/fuzz.rs`).
pub fn accept(
    body: &[u8],
    signed: Option<&Signed<'_>>,
    account_sid: Option<&str>,
) -> Result<InboundSms, Refused> {
    let params = parse_form(body).map_err(|_| Refused::Malformed)?;
    if let Some(signed) = signed
        && (signed.signature.is_empty()
            || !verify(signed.auth_token, &signed.url, &params, signed.signature))
    {
        return Err(Refused::Signature);
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(from), Some(text), Some(sid)) = (field("From"), field("Body"), field("MessageSid"))
    else {
        return Err(Refused::MissingFields);
    };
    if let Some(account) = account_sid
        && field("AccountSid") != Some(account)
    {
        return Err(Refused::OtherAccount);
    }
    let sender = parse_any_e164(from).ok_or(Refused::BadFrom)?;
    let key = ConversationKey::new(Channel::Sms, &sender).map_err(|_| Refused::BadFrom)?;
    if !is_message_sid(sid) {
        return Err(Refused::BadMessageSid);
    }
    Ok(InboundSms {
        key,
        sender,
        body: text.to_owned(),
        message_sid: sid.to_owned(),
    })
}

/// What the SMS webhook needs; its routes are its own.
#[derive(Clone)]
pub struct TwilioWebhook {
    pub engine: Arc<Engine>,
    pub auth_token: Option<SecretString>,
    /// Inbound webhooks must name this account (`AccountSid`), when set.
    pub account_sid: Option<String>,
    /// Without an auth token, unsigned webhooks are taken only for local use
    /// (the `log` provider); otherwise the route answers 404.
    pub accept_unsigned: bool,
    pub public_base_url: Option<String>,
    /// Texts from numbers of other countries get no reply.
    pub sender_countries: SenderCountries,
}

/// The SMS webhook's route.
pub fn routes(state: TwilioWebhook) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::post(webhook))
        .with_state(state)
}

#[tracing::instrument(skip_all, fields(message_sid))]
pub async fn webhook(
    State(app): State<TwilioWebhook>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if app.auth_token.is_none() && !app.accept_unsigned {
        // No way to tell Twilio from a forger: the SMS channel is off.
        return plain(StatusCode::NOT_FOUND, "the SMS channel is not configured");
    }
    let signed = app.auth_token.as_ref().map(|token| {
        let base = app.public_base_url.as_deref().unwrap_or_default();
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(PATH);
        let given = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Signed {
            auth_token: token.expose_secret(),
            url: format!("{base}{path_and_query}"),
            signature: given,
        }
    });
    let inbound = match accept(&body, signed.as_ref(), app.account_sid.as_deref()) {
        Ok(inbound) => inbound,
        Err(refused) => {
            if matches!(refused, Refused::Signature | Refused::OtherAccount) {
                tracing::warn!(why = ?refused, "refused a webhook");
            }
            return plain(refused.status(), refused.message());
        }
    };
    let InboundSms {
        key,
        sender,
        body: text,
        message_sid: sid,
    } = inbound;
    tracing::Span::current().record("message_sid", sid.as_str());
    if !app.sender_countries.allows(&sender) {
        // No reply at all (an empty TwiML answer, so Twilio neither
        // retries nor sends anything): replies abroad cost the most.
        tracing::info!("no reply to a sender outside SMS_SENDER_COUNTRIES");
        if let Err(e) = app.engine.not_answered(&key, "sender_country").await {
            tracing::warn!(error = %e, "could not audit an unanswered text");
        }
        return twiml_response(StatusCode::OK, "");
    }
    let inbound = Inbound {
        language: None,
        key,
        message_id: Some(sid),
        start_over: false,
        own_mobile: None,
        can_share_number: false,
        text,
    };
    match app.engine.handle(inbound).await {
        Ok(reply) => twiml_response(StatusCode::OK, &reply.text()),
        Err(e) => {
            tracing::error!(error = %e, "turn failed; nothing was stored");
            // Twilio treats a non-2xx answer as a failed delivery.
            twiml_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &app.engine.unavailable_reply().text(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn signature_matches_twilio_documented_example() {
        // The example from Twilio's webhook security documentation.
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("12346", url, &params, &sig));
        assert!(!verify("12345", url, &p(&[("Digits", "1235")]), &sig));
    }

    #[test]
    fn default_port_variants_verify() {
        let params = p(&[("Body", "UNLOCK")]);
        let sig = signature("tok", "https://bot.example.org:443/sms/twilio", &params);
        assert!(verify(
            "tok",
            "https://bot.example.org/sms/twilio",
            &params,
            &sig
        ));
        let sig = signature("tok", "https://bot.example.org/sms/twilio", &params);
        assert!(verify(
            "tok",
            "https://bot.example.org:443/sms/twilio",
            &params,
            &sig
        ));
    }

    #[test]
    fn form_parsing_is_strict_about_utf8() {
        assert_eq!(
            parse_form(b"Body=caf%C3%A9+ok&From=%2B44").unwrap(),
            p(&[("Body", "café ok"), ("From", "+44")])
        );
        assert_eq!(parse_form(b"Body=%FF%FE"), Err(MalformedForm));
        assert_eq!(parse_form(b""), Ok(vec![]));
        assert_eq!(parse_form(b"=x&Body=a"), Err(MalformedForm));
        assert_eq!(parse_form(b"Body=a&Body=b"), Err(MalformedForm));
        assert_eq!(
            parse_form(b"Body=a&From="),
            Ok(p(&[("Body", "a"), ("From", "")]))
        );
    }

    #[test]
    fn message_sids_have_twilios_shape() {
        assert!(is_message_sid("SM0123456789abcdef0123456789ABCDEF"));
        assert!(is_message_sid("MM0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "SM0123456789abcdef0123456789abcde",
            "SM0123456789abcdef0123456789abcdef0",
            "SM0123456789abcdef0123456789abcdefNumMedia0",
            "CA0123456789abcdef0123456789abcdef",
            "SM0123456789abcdef0123456789abcdeg",
            "SM0123456789abcdef0123456789abcdé",
        ] {
            assert!(!is_message_sid(bad), "{bad}");
        }
    }

    #[test]
    fn twiml_escapes() {
        assert_eq!(
            twiml("a<b & \"c\""),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>a&lt;b &amp; &quot;c&quot;</Message></Response>"#
        );
        assert!(twiml("").ends_with("<Response/>"));
        assert_eq!(
            twiml("Q\u{7}\u{202E}?\n"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Q?
</Message></Response>"#
        );
    }
}
