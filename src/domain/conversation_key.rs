//! Identifies a conversation: which channel, and who on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::mobile::{mask_keep_last3, mask_phone_number};

/// Maximum length of an external id, in characters.
pub const MAX_EXTERNAL_ID_LEN: usize = 128;

/// A channel through which a user talks to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Text messages; the external id is the sender's number (E.164).
    Sms,
    /// Telegram; the external id is the chat id.
    Telegram,
    /// A local terminal session (development and support staff).
    Terminal,
}

impl Channel {
    /// All channels.
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Telegram, Channel::Terminal];

    /// `"sms"`, `"telegram"` or `"terminal"` (the same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Telegram => "telegram",
            Channel::Terminal => "terminal",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = KeyError;

    /// The inverse of [`Channel::as_str`] (exact, lower-case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| KeyError::UnknownChannel {
                channel: s.chars().take(32).collect(),
            })
    }
}

/// Why a conversation key could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The external id is empty.
    #[error("the conversation id is empty")]
    Empty,
    /// The external id is longer than [`MAX_EXTERNAL_ID_LEN`] characters.
    #[error("the conversation id is too long ({len} characters, at most {max})")]
    TooLong {
        /// Its length, in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The external id contains a control character (newline, NUL, ...).
    #[error("the conversation id contains a control character")]
    ControlCharacter,
    /// Not one of `sms`, `telegram`, `terminal`.
    #[error("unknown channel {channel:?} (expected sms, telegram or terminal)")]
    UnknownChannel {
        /// What was given (truncated to 32 characters).
        channel: String,
    },
    /// [`ConversationKey::parse`] input without a `:`.
    #[error("a conversation key looks like channel:id (no ':' found)")]
    MissingSeparator,
}

/// A conversation: a channel plus the id of the other party on it
/// (a phone number for SMS, a chat id for Telegram).
///
/// The string form (`Display`, [`ConversationKey::parse`], serde) is
/// `channel:external_id`, e.g. `sms:+447811123456`. It contains the full
/// id; use [`ConversationKey::masked_sender`] in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationKey {
    channel: Channel,
    external_id: String,
}

impl ConversationKey {
    /// Builds a key. The external id is used exactly as given (not trimmed
    /// or otherwise normalised: normalise phone numbers first, e.g. with
    /// [`super::mobile::parse_any_e164`]).
    ///
    /// # Errors
    /// [`KeyError::Empty`], [`KeyError::TooLong`] or
    /// [`KeyError::ControlCharacter`].
    pub fn new(channel: Channel, external_id: impl Into<String>) -> Result<Self, KeyError> {
        let external_id = external_id.into();
        if external_id.is_empty() {
            return Err(KeyError::Empty);
        }
        let len = external_id.chars().count();
        if len > MAX_EXTERNAL_ID_LEN {
            return Err(KeyError::TooLong {
                len,
                max: MAX_EXTERNAL_ID_LEN,
            });
        }
        if external_id.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        Ok(ConversationKey {
            channel,
            external_id,
        })
    }

    /// Parses the `channel:external_id` form produced by `Display`. Only the
    /// first `:` separates, so the id may itself contain colons.
    ///
    /// # Errors
    /// [`KeyError::MissingSeparator`], [`KeyError::UnknownChannel`], or any
    /// error from [`ConversationKey::new`].
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (channel, id) = s.split_once(':').ok_or(KeyError::MissingSeparator)?;
        ConversationKey::new(channel.parse()?, id)
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The id of the other party on the channel.
    pub fn external_id(&self) -> &str {
        &self.external_id
    }

    /// The sender in a form fit for logs: for SMS the number masked like a
    /// phone number (`+44*******456`), for Telegram the chat id with all but
    /// its last 3 characters replaced by `*`, and for the terminal just
    /// `terminal`.
    pub fn masked_sender(&self) -> String {
        match self.channel {
            Channel::Sms => mask_phone_number(&self.external_id),
            Channel::Telegram => mask_keep_last3(&self.external_id),
            Channel::Terminal => "terminal".to_owned(),
        }
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.external_id)
    }
}

impl FromStr for ConversationKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConversationKey::parse(s)
    }
}

impl TryFrom<String> for ConversationKey {
    type Error = KeyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ConversationKey::parse(&value)
    }
}

impl From<ConversationKey> for String {
    fn from(value: ConversationKey) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_strings() {
        assert_eq!(Channel::Sms.as_str(), "sms");
        assert_eq!(Channel::Telegram.as_str(), "telegram");
        assert_eq!(Channel::Terminal.as_str(), "terminal");
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert_eq!(
            serde_json::from_str::<Channel>("\"telegram\"").unwrap(),
            Channel::Telegram
        );
        assert!(matches!(
            "SMS".parse::<Channel>(),
            Err(KeyError::UnknownChannel { .. })
        ));
    }

    #[test]
    fn new_validates() {
        let k = ConversationKey::new(Channel::Sms, "+447811123456").unwrap();
        assert_eq!(k.channel(), Channel::Sms);
        assert_eq!(k.external_id(), "+447811123456");
        assert_eq!(ConversationKey::new(Channel::Sms, ""), Err(KeyError::Empty));
        assert_eq!(
            ConversationKey::new(Channel::Telegram, "1".repeat(129)),
            Err(KeyError::TooLong { len: 129, max: 128 })
        );
        assert!(ConversationKey::new(Channel::Telegram, "é".repeat(128)).is_ok());
        assert_eq!(
            ConversationKey::new(Channel::Telegram, "12\n34"),
            Err(KeyError::ControlCharacter)
        );
        assert_eq!(
            ConversationKey::new(Channel::Telegram, "12\u{0}34"),
            Err(KeyError::ControlCharacter)
        );
    }

    #[test]
    fn display_and_parse_roundtrip() {
        let cases = [
            (Channel::Sms, "+447811123456", "sms:+447811123456"),
            (
                Channel::Telegram,
                "-1001234567890",
                "telegram:-1001234567890",
            ),
            (Channel::Terminal, "local", "terminal:local"),
            (Channel::Terminal, "a:b:c", "terminal:a:b:c"),
        ];
        for (channel, id, text) in cases {
            let k = ConversationKey::new(channel, id).unwrap();
            assert_eq!(k.to_string(), text);
            assert_eq!(ConversationKey::parse(text).unwrap(), k);
            assert_eq!(text.parse::<ConversationKey>().unwrap(), k);
        }
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(
            ConversationKey::parse("sms+447811123456"),
            Err(KeyError::MissingSeparator)
        );
        assert_eq!(ConversationKey::parse("sms:"), Err(KeyError::Empty));
        assert!(matches!(
            ConversationKey::parse("whatsapp:+447811123456"),
            Err(KeyError::UnknownChannel { channel }) if channel == "whatsapp"
        ));
        assert!(matches!(
            ConversationKey::parse(":123"),
            Err(KeyError::UnknownChannel { .. })
        ));
    }

    #[test]
    fn masked_sender() {
        let sms = ConversationKey::new(Channel::Sms, "+447811123456").unwrap();
        assert_eq!(sms.masked_sender(), "+44*******456");
        let tg = ConversationKey::new(Channel::Telegram, "123456789").unwrap();
        assert_eq!(tg.masked_sender(), "******789");
        let short = ConversationKey::new(Channel::Telegram, "42").unwrap();
        assert_eq!(short.masked_sender(), "***");
        let term = ConversationKey::new(Channel::Terminal, "alice").unwrap();
        assert_eq!(term.masked_sender(), "terminal");
        // An SMS sender that is not a valid number (e.g. alphanumeric).
        let alpha = ConversationKey::new(Channel::Sms, "NHSALERTS").unwrap();
        assert_eq!(alpha.masked_sender(), "******RTS");
    }

    #[test]
    fn serde_as_string() {
        let k = ConversationKey::new(Channel::Sms, "+447811123456").unwrap();
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, "\"sms:+447811123456\"");
        assert_eq!(serde_json::from_str::<ConversationKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<ConversationKey>("\"fax:123\"").is_err());
    }

    #[test]
    fn error_messages_are_readable() {
        let msg = ConversationKey::parse("fax:1").unwrap_err().to_string();
        assert!(msg.contains("unknown channel"), "{msg}");
    }
}
