//! Typed settings from the environment (and a `.env` file if present),
//! checked at start-up: a bad or missing value stops the program with the
//! variable's name in the message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};

use crate::directory::ldap::{Flavour, LdapConfig};
use crate::domain::{AnswersKey, SenderCountries, SenderKey};
use crate::retention::Retention;
use crate::sms::notify::{DEFAULT_API_BASE as NOTIFY_DEFAULT_API_BASE, NotifySettings};
use crate::sms::outbox::{OutboxKey, RetryPolicy};

mod credentials;
pub use credentials::{Credential, E164Number, TwilioAccountSid, is_placeholder};

/// The default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://unlockbot.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        problem: problem.into(),
    }
}

/// How outbound texts are sent.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// Print texts on the console (local use only).
    Log,
    Twilio(TwilioSettings),
    /// GOV.UK Notify.
    Notify(NotifySettings),
}

#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub account_sid: TwilioAccountSid,
    pub auth_token: SecretString,
    pub from_number: E164Number,
    pub api_base: String,
}

/// The Telegram support chat.
#[derive(Debug, Clone)]
pub enum TelegramMode {
    Off,
    /// Telegram posts updates to `POST /telegram/webhook`.
    Webhook {
        bot: TelegramBot,
        secret: SecretString,
    },
    /// Long-polling `getUpdates` (local use; no public URL needed).
    Polling {
        bot: TelegramBot,
        /// Seconds each `getUpdates` call waits for updates.
        poll_timeout: u32,
    },
}

#[derive(Debug, Clone)]
pub struct TelegramBot {
    pub token: SecretString,
    pub api_url: String,
    /// How long the reply that ends a conversation stays in the chat when
    /// it shows the last 4 digits of the registered mobile, so the user can
    /// read it (`TELEGRAM_LAST4_REPLY_KEPT_MINUTES`); then it is deleted.
    pub last4_reply_kept: chrono::Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub bind_addr: SocketAddr,
    /// The externally visible base URL (no trailing slash), for signatures.
    pub public_base_url: Option<String>,
    pub dialogs_dir: PathBuf,
    pub language: String,
    pub sms: SmsProvider,
    /// Checks `X-Twilio-Signature` on inbound webhooks when set.
    pub twilio_auth_token: Option<SecretString>,
    /// The account inbound webhooks must name (`TWILIO_ACCOUNT_SID`).
    pub twilio_account_sid: Option<TwilioAccountSid>,
    pub idle_timeout: Duration,
    /// How long inbound SMS ids are remembered, so that a replayed request
    /// is never processed twice (`INBOUND_ID_RETENTION_DAYS`).
    pub inbound_id_retention: Duration,
    pub questions_to_ask: usize,
    /// Accounts one sender may fail against within `sender_window` before
    /// it is stopped (`SENDER_MAX_ACCOUNTS`, `SENDER_WINDOW_HOURS`).
    pub sender_max_accounts: u32,
    pub sender_window: Duration,
    /// `VERIFIED_LIFETIME_MINUTES`.
    pub verified_lifetime: Duration,
    /// Replies one sender gets in a day (`SENDER_REPLIES_PER_DAY`).
    pub sender_replies_per_day: u32,
    /// Turns one conversation may take (`CONVERSATION_MAX_TURNS`).
    pub conversation_max_turns: u32,
    /// Inbound texts from numbers of other countries get no reply
    /// (`SMS_SENDER_COUNTRIES`).
    pub sms_sender_countries: SenderCountries,
    pub temp_password_length: usize,
    pub allow_crown_dependencies: bool,
    pub support_contact: String,
    pub request_timeout: std::time::Duration,
    /// Header-read timeout, keep-alive idle timeout and connection cap.
    pub connections: crate::serve::ConnectionLimits,
    pub log_format: LogFormat,
    pub telegram: TelegramMode,
    /// Seals the secret part of queued texts. `None` only with the console
    /// provider (a random key is then made at start-up).
    pub outbox_key: Option<OutboxKey>,
    /// Sender numbers, chat ids and message ids are stored as keyed hashes
    /// under this key. `None`: derived from `OUTBOX_KEY`.
    pub sender_key: Option<SenderKey>,
    /// How security answers are asked for (`ANSWER_MODE`); characters mode
    /// carries `ANSWERS_KEY`.
    pub answer_mode: crate::unlock::AnswerMode,
    /// `ANSWERS_KEY`: with it, the importers also store every answer sealed
    /// under it (whatever the mode).
    pub answers_key: Option<AnswersKey>,
    pub outbox: RetryPolicy,
    /// The argon2id worker pool (`HASH_WORKERS`, `HASH_QUEUE_LIMIT`).
    pub hashing: crate::hashing::HashSettings,
    /// How long stored data is kept (`conversation_idle` is `idle_timeout`).
    pub retention: Retention,
    /// Where accounts live (`DIRECTORY`).
    pub directory: DirectoryChoice,
}

/// `DIRECTORY`: the bot's own table, or an LDAP directory.
#[derive(Debug, Clone)]
pub enum DirectoryChoice {
    Builtin,
    Ldap(Box<LdapConfig>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The key sender hashes are made with: `SENDER_KEY`, or derived from
    /// the outbox key in use.
    pub fn sender_key_for(&self, outbox_key: &OutboxKey) -> SenderKey {
        self.sender_key
            .clone()
            .unwrap_or_else(|| outbox_key.sender_key())
    }

    /// Read the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Self, SettingsError> {
        // A `.env` that cannot be parsed would otherwise be read only up to
        // the bad line, silently.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(bad(".env", dotenv_problem(&e))),
        }
        Self::from_map(&std::env::vars().collect())
    }

    /// Read settings from a map of variables (the environment, or a test's).
    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            env.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number =
            |name: &'static str, default: i64, min: i64, max: i64| -> Result<i64, SettingsError> {
                match get(name) {
                    None => Ok(default),
                    Some(v) => {
                        let n: i64 = v
                            .parse()
                            .map_err(|_| bad(name, format!("'{v}' is not a whole number")))?;
                        if n < min || n > max {
                            return Err(bad(name, format!("{n} is outside {min}..={max}")));
                        }
                        Ok(n)
                    }
                }
            };
        let flag = |name: &'static str| -> Result<bool, SettingsError> {
            match get(name).as_deref() {
                None | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(v) => Err(bad(name, format!("'{v}' is not true or false"))),
            }
        };

        // A secret that is set must not be a placeholder copied from an
        // example; one that is empty counts as not set.
        let credential = |name: &'static str| -> Result<Option<SecretString>, SettingsError> {
            get(name)
                .map(|v| {
                    Credential::parse(&v)
                        .map(Credential::into_secret)
                        .map_err(|e| bad(name, e))
                })
                .transpose()
        };
        let twilio_account_sid = get("TWILIO_ACCOUNT_SID")
            .map(|v| TwilioAccountSid::parse(&v).map_err(|e| bad("TWILIO_ACCOUNT_SID", e)))
            .transpose()?;
        let twilio_from_number = get("TWILIO_FROM_NUMBER")
            .map(|v| E164Number::parse(&v).map_err(|e| bad("TWILIO_FROM_NUMBER", e)))
            .transpose()?;

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(bad(
                "DATABASE_URL",
                "must start with sqlite:// (an embedded file) or postgres://",
            ));
        }
        let bind_addr = get("BIND_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse()
            .map_err(|e| bad("BIND_ADDR", format!("not a socket address: {e}")))?;
        let public_base_url = match get("PUBLIC_BASE_URL") {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|e| bad("PUBLIC_BASE_URL", format!("not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad(
                        "PUBLIC_BASE_URL",
                        "must start with https:// or http://",
                    ));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
        };

        let twilio_auth_token = credential("TWILIO_AUTH_TOKEN")?;
        let provider = get("SMS_PROVIDER");
        let sms = match provider.as_deref() {
            None | Some("log") => {
                // A provider half set up must not fall back to printing
                // temporary passwords on the console.
                let provider_variables = [
                    "TWILIO_ACCOUNT_SID",
                    "TWILIO_AUTH_TOKEN",
                    "TWILIO_FROM_NUMBER",
                    "NOTIFY_API_KEY",
                    "NOTIFY_TEMPLATE_TEMP_PASSWORD",
                    "NOTIFY_TEMPLATE_NOTICE",
                ];
                if provider.is_none()
                    && let Some(set) = provider_variables.iter().find(|v| get(v).is_some())
                {
                    return Err(bad(
                        "SMS_PROVIDER",
                        format!(
                            "{set} is set but SMS_PROVIDER is not: set SMS_PROVIDER=twilio or notify (or log, which prints texts on the console)"
                        ),
                    ));
                }
                SmsProvider::Log
            }
            Some("twilio") => {
                let required = |name: &'static str| bad(name, "required when SMS_PROVIDER=twilio");
                let account_sid = twilio_account_sid
                    .clone()
                    .ok_or_else(|| required("TWILIO_ACCOUNT_SID"))?;
                let auth_token = twilio_auth_token
                    .clone()
                    .ok_or_else(|| required("TWILIO_AUTH_TOKEN"))?;
                let from_number = twilio_from_number
                    .clone()
                    .ok_or_else(|| required("TWILIO_FROM_NUMBER"))?;
                if public_base_url.is_none() {
                    return Err(bad(
                        "PUBLIC_BASE_URL",
                        "required when SMS_PROVIDER=twilio: webhook signatures are computed over it",
                    ));
                }
                let api_base =
                    get("TWILIO_API_BASE").unwrap_or_else(|| "https://api.twilio.com".to_owned());
                reqwest::Url::parse(&api_base)
                    .map_err(|e| bad("TWILIO_API_BASE", format!("not a URL: {e}")))?;
                SmsProvider::Twilio(TwilioSettings {
                    account_sid,
                    auth_token,
                    from_number,
                    api_base: api_base.trim_end_matches('/').to_owned(),
                })
            }
            Some("notify") => {
                let need = |name: &'static str| {
                    let value =
                        get(name).ok_or_else(|| bad(name, "required when SMS_PROVIDER=notify"))?;
                    if is_placeholder(&value) {
                        return Err(bad(
                            name,
                            "looks like a placeholder copied from an example, not a real value",
                        ));
                    }
                    Ok(value)
                };
                SmsProvider::Notify(NotifySettings {
                    api_key: credential("NOTIFY_API_KEY")?.ok_or_else(|| {
                        bad("NOTIFY_API_KEY", "required when SMS_PROVIDER=notify")
                    })?,
                    api_base: get("NOTIFY_API_BASE")
                        .unwrap_or_else(|| NOTIFY_DEFAULT_API_BASE.to_owned())
                        .trim_end_matches('/')
                        .to_owned(),
                    template_temp_password: need("NOTIFY_TEMPLATE_TEMP_PASSWORD")?,
                    template_notice: need("NOTIFY_TEMPLATE_NOTICE")?,
                })
            }
            Some(other) => {
                return Err(bad(
                    "SMS_PROVIDER",
                    format!("'{other}' is not one of: twilio, notify, log"),
                ));
            }
        };
        if twilio_auth_token.is_some() && twilio_account_sid.is_none() {
            return Err(bad(
                "TWILIO_ACCOUNT_SID",
                "required when TWILIO_AUTH_TOKEN is set: inbound webhooks must name this account",
            ));
        }
        if twilio_auth_token.is_some() && public_base_url.is_none() {
            return Err(bad(
                "PUBLIC_BASE_URL",
                "required when TWILIO_AUTH_TOKEN is set: webhook signatures are computed over it",
            ));
        }

        let allow_crown_dependencies = flag("ALLOW_CROWN_DEPENDENCY_MOBILES")?;
        let directory = match get("DIRECTORY").as_deref() {
            None | Some("builtin") => DirectoryChoice::Builtin,
            Some("ldap") => {
                let need = |name: &'static str| {
                    get(name).ok_or_else(|| bad(name, "required when DIRECTORY=ldap"))
                };
                let url = need("LDAP_URL")?;
                if !(url.starts_with("ldaps://") || url.starts_with("ldap://")) {
                    return Err(bad(
                        "LDAP_URL",
                        "must be ldaps://HOST[:PORT] or ldap://HOST[:PORT] (which always uses StartTLS): simple binds never go in clear",
                    ));
                }
                let flavour = need("LDAP_FLAVOUR")?;
                let flavour = Flavour::parse(&flavour).ok_or_else(|| {
                    bad(
                        "LDAP_FLAVOUR",
                        format!("'{flavour}' is not one of: active_directory, openldap"),
                    )
                })?;
                let user_filter = get("LDAP_USER_FILTER")
                    .unwrap_or_else(|| flavour.default_user_filter().to_owned());
                if !user_filter.contains("{email}") {
                    return Err(bad(
                        "LDAP_USER_FILTER",
                        "must contain {email}, where the address goes",
                    ));
                }
                DirectoryChoice::Ldap(Box::new(LdapConfig {
                    url,
                    flavour,
                    bind_dn: need("LDAP_BIND_DN")?,
                    bind_password: credential("LDAP_BIND_PASSWORD")?
                        .ok_or_else(|| bad("LDAP_BIND_PASSWORD", "required when DIRECTORY=ldap"))?,
                    base_dn: need("LDAP_BASE_DN")?,
                    ca_file: PathBuf::from(need("LDAP_CA_FILE")?),
                    user_filter,
                    mobile_attribute: get("LDAP_MOBILE_ATTRIBUTE")
                        .unwrap_or_else(|| "mobile".to_owned()),
                    organisation_attribute: get("LDAP_ORGANISATION_ATTRIBUTE")
                        .unwrap_or_else(|| "company".to_owned()),
                    synced_at_attribute: get("LDAP_SYNCED_AT_ATTRIBUTE")
                        .unwrap_or_else(|| flavour.default_synced_at_attribute().to_owned()),
                    same_sign_on_organisations: get("SAME_SIGN_ON_ORGANISATIONS")
                        .map(|list| {
                            list.split(',')
                                .map(|o| o.trim().to_owned())
                                .filter(|o| !o.is_empty())
                                .collect()
                        })
                        .unwrap_or_default(),
                    timeout: std::time::Duration::from_secs(
                        number("LDAP_TIMEOUT_SECS", 5, 1, 60)? as u64
                    ),
                    pool_size: number("LDAP_POOL_SIZE", 8, 1, 64)? as usize,
                    allow_crown_dependencies,
                }))
            }
            Some(other) => {
                return Err(bad(
                    "DIRECTORY",
                    format!("'{other}' is not one of: builtin, ldap"),
                ));
            }
        };

        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("LOG_FORMAT", format!("'{other}' is not text or json"))),
        };

        let telegram = {
            let token = credential("TELEGRAM_BOT_TOKEN")?;
            let api_url =
                get("TELEGRAM_API_URL").unwrap_or_else(|| "https://api.telegram.org".to_owned());
            reqwest::Url::parse(&api_url)
                .map_err(|e| bad("TELEGRAM_API_URL", format!("not a URL: {e}")))?;
            let api_url = api_url.trim_end_matches('/').to_owned();
            // Telegram lets a bot delete its messages for 48 hours only.
            let last4_reply_kept = chrono::Duration::minutes(number(
                "TELEGRAM_LAST4_REPLY_KEPT_MINUTES",
                10,
                0,
                24 * 60,
            )?);
            let mode = get("TELEGRAM_MODE");
            match (mode.as_deref(), token) {
                (None | Some("off"), None) => TelegramMode::Off,
                (Some("off"), Some(_)) => TelegramMode::Off,
                (None, Some(_)) => {
                    return Err(bad(
                        "TELEGRAM_MODE",
                        "required when TELEGRAM_BOT_TOKEN is set: webhook, polling or off",
                    ));
                }
                (Some("webhook" | "polling"), None) => {
                    return Err(bad(
                        "TELEGRAM_BOT_TOKEN",
                        "required when TELEGRAM_MODE is webhook or polling",
                    ));
                }
                (Some("webhook"), Some(token)) => {
                    let secret = credential("TELEGRAM_WEBHOOK_SECRET")?.ok_or_else(|| {
                        bad(
                            "TELEGRAM_WEBHOOK_SECRET",
                            "required when TELEGRAM_MODE=webhook",
                        )
                    })?;
                    let secret = secret.expose_secret();
                    let valid = (1..=256).contains(&secret.len())
                        && secret
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !valid {
                        return Err(bad(
                            "TELEGRAM_WEBHOOK_SECRET",
                            "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
                        ));
                    }
                    if public_base_url.is_none() {
                        return Err(bad(
                            "PUBLIC_BASE_URL",
                            "required when TELEGRAM_MODE=webhook: the webhook is registered at PUBLIC_BASE_URL/telegram/webhook",
                        ));
                    }
                    TelegramMode::Webhook {
                        bot: TelegramBot {
                            token,
                            api_url,
                            last4_reply_kept,
                        },
                        secret: SecretString::from(secret.to_owned()),
                    }
                }
                (Some("polling"), Some(token)) => TelegramMode::Polling {
                    bot: TelegramBot {
                        token,
                        api_url,
                        last4_reply_kept,
                    },
                    poll_timeout: u32::try_from(number("TELEGRAM_POLL_TIMEOUT_SECS", 25, 0, 50)?)
                        .unwrap_or(25),
                },
                (Some(other), _) => {
                    return Err(bad(
                        "TELEGRAM_MODE",
                        format!("'{other}' is not one of: webhook, polling, off"),
                    ));
                }
            }
        };

        let outbox_key = match get("OUTBOX_KEY") {
            Some(hex) => {
                Some(OutboxKey::from_hex(&hex).map_err(|e| bad("OUTBOX_KEY", e.to_string()))?)
            }
            None if matches!(sms, SmsProvider::Log) => None,
            None => {
                return Err(bad(
                    "OUTBOX_KEY",
                    "required with a real SMS provider: 64 hex characters; `unlockbot keygen` prints one",
                ));
            }
        };
        let outbox = RetryPolicy {
            base: Duration::milliseconds(number("OUTBOX_RETRY_BASE_MS", 2000, 10, 600_000)?),
            max_attempts: u32::try_from(number("OUTBOX_MAX_ATTEMPTS", 8, 1, 100)?).unwrap_or(8),
            lease: Duration::seconds(number("OUTBOX_LEASE_SECS", 60, 1, 3600)?),
            poll: std::time::Duration::from_millis(
                u64::try_from(number("OUTBOX_POLL_MS", 1000, 10, 60_000)?).unwrap_or(1000),
            ),
            ..RetryPolicy::default()
        };

        let machine = crate::hashing::HashSettings::for_this_machine();
        let workers = usize::try_from(number(
            "HASH_WORKERS",
            machine.workers as i64,
            1,
            crate::hashing::MAX_WORKERS as i64,
        )?)
        .unwrap_or(machine.workers);
        let hashing = crate::hashing::HashSettings {
            workers,
            queue_limit: usize::try_from(number(
                "HASH_QUEUE_LIMIT",
                (workers * crate::hashing::DEFAULT_QUEUE_PER_WORKER) as i64,
                1,
                1_000_000,
            )?)
            .unwrap_or(workers * crate::hashing::DEFAULT_QUEUE_PER_WORKER),
        };

        let idle_timeout = Duration::minutes(number("CONVERSATION_IDLE_MINUTES", 15, 1, 24 * 60)?);
        let retention = Retention {
            conversation_idle: idle_timeout,
            outbox_kept: Duration::hours(number("OUTBOX_RETENTION_HOURS", 24, 1, 24 * 366)?),
            audit_kept: Duration::days(number("AUDIT_RETENTION_DAYS", 400, 1, 3660)?),
            sweep_every: std::time::Duration::from_secs(
                u64::try_from(number("RETENTION_SWEEP_MINUTES", 5, 1, 24 * 60)?).unwrap_or(5) * 60,
            ),
            ..Retention::default()
        };

        let sender_key = get("SENDER_KEY")
            .map(|hex| SenderKey::from_hex(&hex).map_err(|e| bad("SENDER_KEY", e.to_string())))
            .transpose()?;

        let answers_key = get("ANSWERS_KEY")
            .map(|hex| AnswersKey::from_hex(&hex).map_err(|e| bad("ANSWERS_KEY", e.to_string())))
            .transpose()?;
        let answer_mode = match (get("ANSWER_MODE").as_deref(), &answers_key) {
            (None | Some("whole"), _) => crate::unlock::AnswerMode::Whole,
            (Some("characters"), Some(key)) => crate::unlock::AnswerMode::Characters(key.clone()),
            (Some("characters"), None) => {
                return Err(bad(
                    "ANSWERS_KEY",
                    "required when ANSWER_MODE=characters: 64 hex characters (`unlockbot keygen` prints one), the key the answers were sealed with at import",
                ));
            }
            (Some(other), _) => {
                return Err(bad(
                    "ANSWER_MODE",
                    format!("'{other}' is not one of: whole, characters"),
                ));
            }
        };

        Ok(Self {
            hashing,
            outbox_key,
            sender_key,
            answer_mode,
            answers_key,
            outbox,
            retention,
            telegram,
            database_url,
            bind_addr,
            public_base_url,
            dialogs_dir: PathBuf::from(get("DIALOGS_DIR").unwrap_or_else(|| "dialogs".to_owned())),
            language: get("DIALOG_LANGUAGE").unwrap_or_else(|| "en".to_owned()),
            sms,
            twilio_auth_token,
            twilio_account_sid,
            inbound_id_retention: Duration::days(number(
                "INBOUND_ID_RETENTION_DAYS",
                3650,
                30,
                36_500,
            )?),
            idle_timeout,
            sender_max_accounts: u32::try_from(number("SENDER_MAX_ACCOUNTS", 3, 1, 100)?)
                .unwrap_or(3),
            sender_window: Duration::hours(number("SENDER_WINDOW_HOURS", 24, 1, 24 * 30)?),
            verified_lifetime: Duration::minutes(number(
                "VERIFIED_LIFETIME_MINUTES",
                10,
                1,
                24 * 60,
            )?),
            sender_replies_per_day: u32::try_from(number("SENDER_REPLIES_PER_DAY", 40, 1, 10_000)?)
                .unwrap_or(40),
            conversation_max_turns: u32::try_from(number("CONVERSATION_MAX_TURNS", 30, 5, 1000)?)
                .unwrap_or(30),
            sms_sender_countries: match get("SMS_SENDER_COUNTRIES") {
                None => SenderCountries::default(),
                Some(list) => {
                    SenderCountries::parse(&list).map_err(|e| bad("SMS_SENDER_COUNTRIES", e))?
                }
            },
            questions_to_ask: usize::try_from(number("QUESTIONS_TO_ASK", 2, 1, 3)?).unwrap_or(2),
            temp_password_length: usize::try_from(number("TEMP_PASSWORD_LENGTH", 12, 10, 64)?)
                .unwrap_or(12),
            allow_crown_dependencies,
            directory,
            support_contact: get("SUPPORT_CONTACT")
                .unwrap_or_else(|| crate::unlock::DEFAULT_CONTACT.to_owned()),
            request_timeout: std::time::Duration::from_secs(
                u64::try_from(number("REQUEST_TIMEOUT_SECS", 15, 1, 300)?).unwrap_or(15),
            ),
            connections: crate::serve::ConnectionLimits {
                header_read_timeout: std::time::Duration::from_secs(
                    u64::try_from(number("HTTP_HEADER_READ_TIMEOUT_SECS", 10, 1, 300)?)
                        .unwrap_or(10),
                ),
                keepalive_idle: std::time::Duration::from_secs(
                    u64::try_from(number("HTTP_KEEPALIVE_IDLE_SECS", 30, 1, 3600)?).unwrap_or(30),
                ),
                max_connections: usize::try_from(number(
                    "HTTP_MAX_CONNECTIONS",
                    1024,
                    1,
                    1_000_000,
                )?)
                .unwrap_or(1024),
            },
            log_format,
        })
    }
}

/// Where a `.env` file went wrong, by line and variable: never its content
/// (the line may hold a secret).
fn dotenv_problem(error: &dotenvy::Error) -> String {
    const HINT: &str =
        "each line must be NAME=value, and a value with spaces must be quoted (NAME=\"a value\")";
    let dotenvy::Error::LineParse(text, _) = error else {
        return format!("cannot be read: {HINT}");
    };
    let file = std::fs::read_to_string(".env").unwrap_or_default();
    let found = file
        .lines()
        .enumerate()
        .find(|(_, line)| !text.is_empty() && line.contains(text.as_str()));
    match found {
        Some((n, line)) => {
            let name = line.split('=').next().unwrap_or_default().trim();
            let name = if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                name
            } else {
                "?"
            };
            format!("line {} ({name}) cannot be read: {HINT}", n + 1)
        }
        None => format!("a line cannot be read: {HINT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::from_map(&env(&[])).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8080");
        assert!(matches!(s.sms, SmsProvider::Log));
        assert_eq!(s.questions_to_ask, 2);
        assert_eq!(s.idle_timeout, Duration::minutes(15));
        assert_eq!(s.hashing, crate::hashing::HashSettings::for_this_machine());
        let s = Settings::from_map(&env(&[("HASH_WORKERS", "3")])).unwrap();
        assert_eq!(s.hashing.workers, 3);
        assert_eq!(s.hashing.queue_limit, 300);
        assert_eq!(s.retention.conversation_idle, Duration::minutes(15));
        assert_eq!(s.retention.audit_kept, Duration::days(400));
        assert_eq!(s.retention.outbox_kept, Duration::hours(24));
        assert_eq!(s.retention.sweep_every, std::time::Duration::from_secs(300));
    }

    #[test]
    fn the_example_env_file_is_a_working_local_set_up() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example");
        let vars: HashMap<String, String> = dotenvy::from_path_iter(path)
            .unwrap()
            .map(|item| item.unwrap())
            .collect();
        let s = Settings::from_map(&vars).unwrap();
        assert!(matches!(s.sms, SmsProvider::Log));
        assert!(s.twilio_auth_token.is_none() && s.outbox_key.is_none());
        assert!(matches!(s.telegram, TelegramMode::Off));
        assert!(matches!(s.directory, DirectoryChoice::Builtin));
    }

    #[test]
    fn placeholders_and_malformed_provider_values_are_refused_by_name() {
        let twilio = |sid: &str, token: &str, from: &str| {
            Settings::from_map(&env(&[
                ("SMS_PROVIDER", "twilio"),
                ("TWILIO_ACCOUNT_SID", sid),
                ("TWILIO_AUTH_TOKEN", token),
                ("TWILIO_FROM_NUMBER", from),
                ("PUBLIC_BASE_URL", "https://bot.example.org"),
                ("OUTBOX_KEY", &"ab".repeat(32)),
            ]))
        };
        let sid = "AC0123456789abcdef0123456789abcdef";
        let s = twilio(sid, "a-real-token-4f9c", "+447700900001").unwrap();
        let SmsProvider::Twilio(t) = s.sms else {
            panic!("twilio")
        };
        assert_eq!(t.account_sid.as_str(), sid);
        assert_eq!(t.from_number.as_str(), "+447700900001");
        for (sid, token, from, variable) in [
            (
                "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "tok-4f9c",
                "+447700900001",
                "TWILIO_ACCOUNT_SID",
            ),
            ("AC123", "tok-4f9c", "+447700900001", "TWILIO_ACCOUNT_SID"),
            (sid, "change-me", "+447700900001", "TWILIO_AUTH_TOKEN"),
            (sid, "your-auth-token", "+447700900001", "TWILIO_AUTH_TOKEN"),
            (sid, "xxxxxxxx", "+447700900001", "TWILIO_AUTH_TOKEN"),
            (sid, "tok-4f9c", "07700900001", "TWILIO_FROM_NUMBER"),
            (sid, "tok-4f9c", "+44 7700 900001", "TWILIO_FROM_NUMBER"),
        ] {
            let e = twilio(sid, token, from).unwrap_err();
            assert_eq!(e.variable, variable, "{sid} {token} {from}: {e}");
            assert!(!e.to_string().contains(token), "{e}");
        }
        for (name, value) in [
            ("TELEGRAM_BOT_TOKEN", "change-me"),
            ("LDAP_BIND_PASSWORD", "changeme"),
        ] {
            let mut vars = vec![(name, value), ("TELEGRAM_MODE", "polling")];
            if name.starts_with("LDAP") {
                vars = vec![
                    ("DIRECTORY", "ldap"),
                    ("LDAP_URL", "ldaps://dc.example.org"),
                    ("LDAP_FLAVOUR", "openldap"),
                    ("LDAP_BIND_DN", "cn=bot"),
                    (name, value),
                ];
            }
            let e = Settings::from_map(&env(&vars)).unwrap_err();
            assert_eq!(e.variable, name, "{e}");
        }
    }

    #[test]
    fn retention_settings() {
        let s = Settings::from_map(&env(&[
            ("AUDIT_RETENTION_DAYS", "30"),
            ("OUTBOX_RETENTION_HOURS", "2"),
            ("RETENTION_SWEEP_MINUTES", "1"),
            ("CONVERSATION_IDLE_MINUTES", "5"),
        ]))
        .unwrap();
        assert_eq!(s.retention.audit_kept, Duration::days(30));
        assert_eq!(s.retention.outbox_kept, Duration::hours(2));
        assert_eq!(s.retention.sweep_every, std::time::Duration::from_secs(60));
        assert_eq!(s.retention.conversation_idle, Duration::minutes(5));
        for (name, value) in [
            ("AUDIT_RETENTION_DAYS", "0"),
            ("AUDIT_RETENTION_DAYS", "forever"),
            ("OUTBOX_RETENTION_HOURS", "0"),
            ("RETENTION_SWEEP_MINUTES", "0"),
        ] {
            let e = Settings::from_map(&env(&[(name, value)])).unwrap_err();
            assert_eq!(e.variable, name);
        }
    }

    #[test]
    fn half_configured_twilio_names_the_missing_variable() {
        let e = Settings::from_map(&env(&[
            ("SMS_PROVIDER", "twilio"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "TWILIO_AUTH_TOKEN");
        let e = Settings::from_map(&env(&[
            ("SMS_PROVIDER", "twilio"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "tok"),
            ("TWILIO_FROM_NUMBER", "+447400000001"),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "OUTBOX_KEY");
        let e = Settings::from_map(&env(&[(
            "TWILIO_ACCOUNT_SID",
            "AC0123456789abcdef0123456789abcdef",
        )]))
        .unwrap_err();
        assert_eq!(e.variable, "SMS_PROVIDER");
        for lone in ["TWILIO_AUTH_TOKEN", "NOTIFY_API_KEY"] {
            let e = Settings::from_map(&env(&[
                (lone, "x"),
                ("PUBLIC_BASE_URL", "https://b.example"),
            ]))
            .unwrap_err();
            assert_eq!(e.variable, "SMS_PROVIDER", "{lone} alone");
            assert!(e.problem.contains(lone));
        }
        let e = Settings::from_map(&env(&[("TELEGRAM_BOT_TOKEN", "123:abc")])).unwrap_err();
        assert_eq!(e.variable, "TELEGRAM_MODE");
        let e = Settings::from_map(&env(&[("TELEGRAM_MODE", "polling")])).unwrap_err();
        assert_eq!(e.variable, "TELEGRAM_BOT_TOKEN");
        let e = Settings::from_map(&env(&[
            ("TELEGRAM_MODE", "webhook"),
            ("TELEGRAM_BOT_TOKEN", "123:abc"),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "TELEGRAM_WEBHOOK_SECRET");
        let e = Settings::from_map(&env(&[
            ("TELEGRAM_MODE", "webhook"),
            ("TELEGRAM_BOT_TOKEN", "123:abc"),
            ("TELEGRAM_WEBHOOK_SECRET", "has space"),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "TELEGRAM_WEBHOOK_SECRET");
        let e = Settings::from_map(&env(&[
            ("SMS_PROVIDER", "notify"),
            ("NOTIFY_API_KEY", "k"),
            ("NOTIFY_TEMPLATE_TEMP_PASSWORD", "t"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "NOTIFY_TEMPLATE_NOTICE");
        let e = Settings::from_map(&env(&[("OUTBOX_KEY", "not-hex")])).unwrap_err();
        assert_eq!(e.variable, "OUTBOX_KEY");
        let e = Settings::from_map(&env(&[("SENDER_KEY", "abcd")])).unwrap_err();
        assert_eq!(e.variable, "SENDER_KEY");
        assert!(
            Settings::from_map(&env(&[("SENDER_KEY", &"ab".repeat(32))]))
                .unwrap()
                .sender_key
                .is_some()
        );
        let e = Settings::from_map(&env(&[("ANSWER_MODE", "characters")])).unwrap_err();
        assert_eq!(e.variable, "ANSWERS_KEY");
        let e = Settings::from_map(&env(&[("ANSWER_MODE", "letters")])).unwrap_err();
        assert_eq!(e.variable, "ANSWER_MODE");
        let e = Settings::from_map(&env(&[("ANSWERS_KEY", "abcd")])).unwrap_err();
        assert_eq!(e.variable, "ANSWERS_KEY");
        let key = "cd".repeat(32);
        let s = Settings::from_map(&env(&[("ANSWERS_KEY", &key)])).unwrap();
        assert!(matches!(s.answer_mode, crate::unlock::AnswerMode::Whole));
        assert!(s.answers_key.is_some());
        let s = Settings::from_map(&env(&[
            ("ANSWER_MODE", "characters"),
            ("ANSWERS_KEY", &key),
        ]))
        .unwrap();
        assert!(matches!(
            s.answer_mode,
            crate::unlock::AnswerMode::Characters(_)
        ));
        let e = Settings::from_map(&env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        let e = Settings::from_map(&env(&[("QUESTIONS_TO_ASK", "many")])).unwrap_err();
        assert_eq!(e.variable, "QUESTIONS_TO_ASK");
        let e = Settings::from_map(&env(&[("HASH_WORKERS", "0")])).unwrap_err();
        assert_eq!(e.variable, "HASH_WORKERS");
        let e = Settings::from_map(&env(&[("HASH_QUEUE_LIMIT", "none")])).unwrap_err();
        assert_eq!(e.variable, "HASH_QUEUE_LIMIT");
    }
}
