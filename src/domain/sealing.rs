//! Sealing: the one authenticated encryption the service uses for secrets
//! it must read back (queued texts under `OUTBOX_KEY`, security answers
//! under `ANSWERS_KEY`): XChaCha20-Poly1305 with a fresh random 24-byte
//! nonce, and associated data that binds a sealed value to its row, so
//! that a ciphertext moved to another row does not open.

use std::fmt;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Length of the nonce at the front of every sealed value.
pub const NONCE_LEN: usize = 24;

/// A 32-byte sealing key. Redacted `Debug`, zeroised on drop.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

/// The key is not 64 hexadecimal characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 64 hexadecimal characters (32 bytes); `unlockbot keygen` prints one")]
pub struct BadKey;

/// A sealed value did not open: wrong key, tampered with, or sealed for
/// another row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value could not be opened (wrong key, tampered, or moved from another row)")]
pub struct OpenError;

/// Sealing failed (the random number generator or the cipher failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a value could not be sealed")]
pub struct SealError;

impl SealingKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, BadKey> {
        let bytes = Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| BadKey)?);
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| BadKey)?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let key = chacha20poly1305::Key::generate();
        Self(Zeroizing::new(key.into()))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    /// The key's bytes, to derive other keys from (never stored).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.0))
    }

    /// Seal `plain` bound to `aad`: nonce (24 bytes) + ciphertext and tag.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher()
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| SealError)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// Open what [`seal`](Self::seal) made with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError)?;
        self.cipher()
            .decrypt(&nonce, Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_another_key_row_or_tampering() {
        let key = SealingKey::generate();
        let sealed = key.seal(b"secret", b"row 1").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 6 + 16);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(&**key.open(&sealed, b"row 1").unwrap(), b"secret");
        assert_eq!(key.open(&sealed, b"row 2"), Err(OpenError));
        assert_eq!(
            SealingKey::generate().open(&sealed, b"row 1"),
            Err(OpenError)
        );
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert_eq!(key.open(&tampered, b"row 1"), Err(OpenError));
        assert_eq!(key.open(&sealed[..10], b"row 1"), Err(OpenError));
        assert_ne!(
            sealed,
            key.seal(b"secret", b"row 1").unwrap(),
            "fresh nonce"
        );
    }

    #[test]
    fn hex_round_trip_and_redacted_debug() {
        let key = SealingKey::generate();
        assert_eq!(key.to_hex().len(), 64);
        assert!(SealingKey::from_hex(&key.to_hex()).is_ok());
        assert_eq!(SealingKey::from_hex("abcd").unwrap_err(), BadKey);
        assert!(SealingKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{key:?}"), "SealingKey(***)");
    }
}
