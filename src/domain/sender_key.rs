//! Who texted, at rest: conversation keys (phone numbers, Telegram chat
//! ids) and inbound message ids are stored only as keyed hashes
//! (HMAC-SHA256 under a key held outside the database), so a copy of the
//! database alone does not reveal who used the service. The same key gives
//! the same hash, so rows are still found by the key they were written
//! under.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::ConversationKey;

/// The key sender hashes are made with (`SENDER_KEY`, or derived from
/// `OUTBOX_KEY`). Redacted `Debug`, zeroised on drop.
#[derive(Clone)]
pub struct SenderKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderKey(***)")
    }
}

/// `SENDER_KEY` is not 64 hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 64 hexadecimal characters (32 bytes); `unlockbot keygen` prints one")]
pub struct BadSenderKey;

impl SenderKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, BadSenderKey> {
        let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| BadSenderKey)?);
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| BadSenderKey)?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// A key derived from another secret (`OUTBOX_KEY`'s bytes), for
    /// deployments that set no `SENDER_KEY`: a different key for a
    /// different purpose, never the secret itself.
    pub fn derive_from(secret: &[u8]) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(&Self::mac(secret, &[b"unlockbot sender key v1"]));
        Self(Zeroizing::new(out))
    }

    fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        for part in parts {
            // Length-prefixed, so no two different inputs hash alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// How a conversation key is stored: the channel in clear (the store
    /// needs it) and the hash of the whole key, `sms:3f…` (64 hex digits).
    pub fn conversation(&self, key: &ConversationKey) -> String {
        let hash = Self::mac(
            self.0.as_slice(),
            &[b"conversation", key.to_string().as_bytes()],
        );
        format!("{}:{}", key.channel(), hex::encode(hash))
    }

    /// How a phone number a user shared as their own (Telegram's contact
    /// button) is kept in the conversation, and how a registered mobile is
    /// compared with it: the keyed hash of its E.164 form (64 hex digits).
    pub fn mobile(&self, e164: &str) -> String {
        hex::encode(Self::mac(self.0.as_slice(), &[b"mobile", e164.as_bytes()]))
    }

    /// How an inbound message id (Twilio `MessageSid`, Telegram
    /// `update_id`) of `channel` is stored.
    pub fn message_id(&self, channel: &str, id: &str) -> String {
        hex::encode(Self::mac(
            self.0.as_slice(),
            &[b"message", channel.as_bytes(), id.as_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    fn key(byte: u8) -> SenderKey {
        SenderKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn hashes_are_stable_keyed_and_reveal_nothing() {
        let sms = ConversationKey::new(Channel::Sms, "+447811123456").unwrap();
        let stored = key(1).conversation(&sms);
        assert_eq!(stored, key(1).conversation(&sms), "same key, same hash");
        assert_ne!(
            stored,
            key(2).conversation(&sms),
            "another key, another hash"
        );
        assert!(stored.starts_with("sms:"));
        assert_eq!(stored.len(), "sms:".len() + 64);
        assert!(!stored.contains("7811123456"));
        let other = ConversationKey::new(Channel::Sms, "+447811123457").unwrap();
        assert_ne!(stored, key(1).conversation(&other));
        let telegram = ConversationKey::new(Channel::Telegram, "123456789").unwrap();
        assert!(key(1).conversation(&telegram).starts_with("telegram:"));
        assert_ne!(
            key(1).message_id("sms", "SM1"),
            key(1).message_id("telegram", "SM1")
        );
        assert_eq!(key(1).message_id("sms", "SM1").len(), 64);
        let mobile = key(1).mobile("+447811123456");
        assert_eq!(mobile, key(1).mobile("+447811123456"));
        assert_ne!(mobile, key(2).mobile("+447811123456"));
        assert_ne!(mobile, key(1).mobile("+447811123457"));
        assert!(!mobile.contains("7811123456"));
        assert_eq!(mobile.len(), 64);
    }

    #[test]
    fn parsing_deriving_and_debug() {
        assert!(SenderKey::from_hex("abcd").is_err());
        assert!(SenderKey::from_hex(&"zz".repeat(32)).is_err());
        let derived = SenderKey::derive_from(&[7; 32]);
        let sms = ConversationKey::new(Channel::Sms, "+447811123456").unwrap();
        assert_eq!(
            derived.conversation(&sms),
            SenderKey::derive_from(&[7; 32]).conversation(&sms)
        );
        assert_ne!(derived.conversation(&sms), key(7).conversation(&sms));
        assert_eq!(format!("{derived:?}"), "SenderKey(***)");
    }
}
