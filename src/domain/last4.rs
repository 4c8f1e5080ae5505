//! The last four digits of a mobile number, as typed by a user to prove they
//! know which phone the account is registered to.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Why a string was rejected as a [`Last4`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Last4Error {
    /// Nothing (or only spaces) was given.
    #[error("please enter the last 4 digits of your mobile number")]
    Empty,
    /// Something other than the digits 0-9 (after removing spaces).
    #[error("the last 4 digits must be digits 0-9 only")]
    NotDigits,
    /// Digits only, but not exactly four of them.
    #[error("expected exactly 4 digits, got {got}")]
    WrongLength {
        /// How many digits were given.
        got: usize,
    },
}

/// Exactly four ASCII digits, such as the `3456` of `+447911223456`.
///
/// (Internally, a value built from an unvalidated number with fewer than
/// four digits may hold `?` placeholders; see `of_e164_or_unmatchable`.)
///
/// Not a secret (the bot tells users "your mobile ending 3456"), so it has a
/// plain `Display`; but comparisons against user input should use
/// [`Last4::matches`], which is constant-time (`==` uses it too).
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Last4([u8; 4]);

impl Last4 {
    /// Parses user input: surrounding and inner whitespace is ignored
    /// (`" 3 4 5 6 "` is accepted), then exactly four ASCII digits must
    /// remain.
    ///
    /// # Errors
    /// [`Last4Error::Empty`], [`Last4Error::NotDigits`] or
    /// [`Last4Error::WrongLength`].
    pub fn parse(raw: &str) -> Result<Last4, Last4Error> {
        let mut digits = [0u8; 4];
        let mut count = 0usize;
        let mut saw_non_digit = false;
        for c in raw.chars().filter(|c| !c.is_whitespace()) {
            if c.is_ascii_digit() {
                if let Some(slot) = digits.get_mut(count) {
                    // `c` is ASCII, so this cast cannot truncate.
                    *slot = c as u8;
                }
                count += 1;
            } else {
                saw_non_digit = true;
            }
        }
        if saw_non_digit {
            return Err(Last4Error::NotDigits);
        }
        match count {
            0 => Err(Last4Error::Empty),
            4 => Ok(Last4(digits)),
            got => Err(Last4Error::WrongLength { got }),
        }
    }

    /// The last four digits of a phone number such as `+447911223456`. All
    /// non-digits are ignored. Returns `None` if it has fewer than four
    /// digits.
    pub fn of_e164(e164: &str) -> Option<Last4> {
        let (out, filled) = Self::tail(e164);
        (filled == 4).then_some(Last4(out))
    }

    /// Like [`Last4::of_e164`], but infallible: if there are fewer than four
    /// digits, the missing leading positions are filled with `?`, which
    /// [`Last4::parse`] never produces, so the result never
    /// [`matches`](Last4::matches) user input. Only for numbers that were
    /// not validated (a hand-built `RegisteredMobile::NonUk`).
    pub(crate) fn of_e164_or_unmatchable(e164: &str) -> Last4 {
        Last4(Self::tail(e164).0)
    }

    /// Up to the last four ASCII digits, right-aligned and padded with `?`,
    /// and how many were found.
    fn tail(e164: &str) -> ([u8; 4], usize) {
        let mut out = [b'?'; 4];
        let mut filled = 0usize;
        for b in e164.bytes().rev().filter(u8::is_ascii_digit) {
            if filled == 4 {
                break;
            }
            filled += 1;
            out[4 - filled] = b;
        }
        (out, filled)
    }

    /// Constant-time comparison (does not leak how many leading digits
    /// matched).
    /// Four digits that stand in for a registered mobile's when there is
    /// none (an unknown email is compared as a known one is).
    pub fn placeholder() -> Last4 {
        Last4(*b"0000")
    }

    pub fn matches(&self, other: &Last4) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The four digits as a string slice.
    pub fn as_str(&self) -> &str {
        // Always four ASCII bytes (digits or `?`), so always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl PartialEq for Last4 {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for Last4 {}

impl std::hash::Hash for Last4 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for Last4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Last4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Last4({})", self.as_str())
    }
}

impl std::str::FromStr for Last4 {
    type Err = Last4Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Last4::parse(s)
    }
}

impl TryFrom<String> for Last4 {
    type Error = Last4Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Last4::parse(&value)
    }
}

impl From<Last4> for String {
    fn from(value: Last4) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_four_digits() {
        let l = Last4::parse("3456").unwrap();
        assert_eq!(l.to_string(), "3456");
        assert_eq!(l.as_str(), "3456");
    }

    #[test]
    fn trims_and_strips_inner_spaces() {
        assert_eq!(Last4::parse("  3456 \n").unwrap().to_string(), "3456");
        assert_eq!(Last4::parse("3 4 5 6").unwrap().to_string(), "3456");
        assert_eq!(Last4::parse("34 56").unwrap().to_string(), "3456");
        assert_eq!(Last4::parse("0007").unwrap().to_string(), "0007");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Last4::parse(""), Err(Last4Error::Empty));
        assert_eq!(Last4::parse("   "), Err(Last4Error::Empty));
        assert_eq!(Last4::parse("345"), Err(Last4Error::WrongLength { got: 3 }));
        assert_eq!(
            Last4::parse("34567"),
            Err(Last4Error::WrongLength { got: 5 })
        );
        assert_eq!(Last4::parse("34a6"), Err(Last4Error::NotDigits));
        assert_eq!(Last4::parse("34-56"), Err(Last4Error::NotDigits));
        assert_eq!(Last4::parse("+3456"), Err(Last4Error::NotDigits));
        // Non-ASCII digits (Arabic-Indic) are not accepted.
        assert_eq!(Last4::parse("٣٤٥٦"), Err(Last4Error::NotDigits));
    }

    #[test]
    fn of_e164_takes_the_last_four_digits() {
        assert_eq!(Last4::of_e164("+447911223456").unwrap().to_string(), "3456");
        assert_eq!(
            Last4::of_e164("+1 (202) 555-0123").unwrap().to_string(),
            "0123"
        );
        assert_eq!(Last4::of_e164("1234").unwrap().to_string(), "1234");
        assert_eq!(Last4::of_e164("+123"), None);
        assert_eq!(Last4::of_e164(""), None);
    }

    #[test]
    fn unmatchable_fallback_never_matches_input() {
        let short = Last4::of_e164_or_unmatchable("+123");
        assert_eq!(short.to_string(), "?123");
        assert!(!short.matches(&Last4::parse("0123").unwrap()));
        let full = Last4::of_e164_or_unmatchable("+447911223456");
        assert_eq!(full, Last4::parse("3456").unwrap());
    }

    #[test]
    fn matches_is_equality() {
        let a = Last4::parse("3456").unwrap();
        let b = Last4::of_e164("+447911223456").unwrap();
        let c = Last4::parse("3457").unwrap();
        assert!(a.matches(&b));
        assert!(!a.matches(&c));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn debug_and_error_messages() {
        assert_eq!(
            format!("{:?}", Last4::parse("3456").unwrap()),
            "Last4(3456)"
        );
        let msg = Last4::parse("12").unwrap_err().to_string();
        assert!(msg.contains("4 digits"), "{msg}");
    }

    #[test]
    fn serde_roundtrip_validates() {
        let l = Last4::parse("3456").unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"3456\"");
        assert_eq!(serde_json::from_str::<Last4>("\"3456\"").unwrap(), l);
        assert!(serde_json::from_str::<Last4>("\"34x6\"").is_err());
    }
}
