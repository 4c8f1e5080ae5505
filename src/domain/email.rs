//! Email addresses, normalised for use as an account identifier.

use std::fmt;

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};

/// Maximum length of an address in characters (RFC 5321 path limit minus the
/// angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Why a string was rejected as an [`Email`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing (or only whitespace) was given.
    #[error("the email address is empty")]
    Empty,
    /// Longer than [`MAX_EMAIL_LEN`] characters.
    #[error("the email address is too long ({len} characters, at most {max} allowed)")]
    TooLong {
        /// Length of the rejected input, in characters, after trimming.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Whitespace inside the address (leading/trailing whitespace is trimmed).
    #[error("the email address contains a control, direction-changing or invisible character")]
    UnsafeCharacter,
    #[error("the email address contains a space or other whitespace")]
    ContainsWhitespace,
    /// No `@`.
    #[error("the email address has no '@'")]
    MissingAt,
    /// A `"quoted local part"@example.org`: valid per RFC 5322 but not
    /// something any real directory account uses.
    #[error("quoted email addresses are not supported")]
    QuotedLocalPart,
    /// `user@[192.0.2.1]`.
    #[error("email addresses with an IP address as the domain are not supported")]
    DomainLiteral,
    /// `user@localhost`: the domain must contain a dot.
    #[error("the email address domain must contain a dot (like nhs.net)")]
    DomainWithoutDot,
    /// Any other syntax problem, as reported by the `email_address` crate.
    #[error("not a valid email address: {reason}")]
    Invalid {
        /// Human-readable reason.
        reason: String,
    },
}

/// A validated, normalised (trimmed, lower-cased) email address.
///
/// Only constructible through [`Email::parse`] (also used when
/// deserialising), so any `Email` value is known to be valid. Email addresses
/// are not secrets: `Display` and `Debug` show the address in full; use
/// [`Email::masked`] when writing logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and normalises an email address.
    ///
    /// The input is trimmed and lower-cased (Unicode-aware), then must:
    /// be at most [`MAX_EMAIL_LEN`] characters, contain no whitespace, not
    /// have a quoted local part or an IP-literal domain, have a domain
    /// containing a dot, and be valid according to
    /// [`email_address::EmailAddress`] (display names like
    /// `Jo <jo@nhs.net>` are rejected).
    ///
    /// # Errors
    /// An [`EmailError`] describing the first problem found.
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if crate::domain::text::first_unsafe_char(trimmed).is_some() {
            return Err(EmailError::UnsafeCharacter);
        }
        let normalised = trimmed.to_lowercase();
        let len = normalised.chars().count();
        if len > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong {
                len,
                max: MAX_EMAIL_LEN,
            });
        }
        if normalised.chars().any(char::is_whitespace) {
            return Err(EmailError::ContainsWhitespace);
        }
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err(EmailError::MissingAt);
        };
        if local.starts_with('"') {
            return Err(EmailError::QuotedLocalPart);
        }
        if domain.starts_with('[') {
            return Err(EmailError::DomainLiteral);
        }
        if !domain.contains('.') {
            return Err(EmailError::DomainWithoutDot);
        }
        let options = Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        if let Err(e) = EmailAddress::parse_with_options(&normalised, options) {
            return Err(EmailError::Invalid {
                reason: e.to_string(),
            });
        }
        // Belt and braces: the crate's default (more permissive) check must
        // agree too.
        if !EmailAddress::is_valid(&normalised) {
            return Err(EmailError::Invalid {
                reason: "rejected by the address validator".to_owned(),
            });
        }
        Ok(Email(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the last `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }

    /// The part after the last `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// A form for logs that hides most of the local part:
    /// `jane.doe@nhs.net` becomes `j***@nhs.net`.
    ///
    /// The number of asterisks is fixed so the length of the local part is
    /// not revealed.
    pub fn masked(&self) -> String {
        let first = self.local_part().chars().next().unwrap_or('*');
        format!("{first}***@{}", self.domain())
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl TryFrom<&str> for Email {
    type Error = EmailError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Email::parse(value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases() {
        let e = Email::parse("  Jane.Doe@NHS.Net \n").unwrap();
        assert_eq!(e.as_str(), "jane.doe@nhs.net");
        assert_eq!(e.to_string(), "jane.doe@nhs.net");
        assert_eq!(e.local_part(), "jane.doe");
        assert_eq!(e.domain(), "nhs.net");
    }

    #[test]
    fn lowercases_unicode() {
        let e = Email::parse("ÉLODIE@Example.ORG").unwrap();
        assert_eq!(e.as_str(), "élodie@example.org");
    }

    #[test]
    fn accepts_common_forms() {
        for ok in [
            "a@b.co",
            "first.last@nhs.net",
            "first.last+tag@sub.nhs.uk",
            "o'brien@nhs.net",
            "x_y-z@trust.nhs.uk",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        assert_eq!(Email::parse("   \t"), Err(EmailError::Empty));
    }

    #[test]
    fn rejects_inner_whitespace() {
        assert_eq!(
            Email::parse("jane doe@nhs.net"),
            Err(EmailError::ContainsWhitespace)
        );
        assert_eq!(
            Email::parse("Jane <jane@nhs.net>"),
            Err(EmailError::ContainsWhitespace)
        );
        assert_eq!(
            Email::parse("jane@nhs\u{a0}.net"),
            Err(EmailError::ContainsWhitespace)
        );
    }

    #[test]
    fn rejects_missing_at() {
        assert_eq!(Email::parse("jane.nhs.net"), Err(EmailError::MissingAt));
    }

    #[test]
    fn rejects_domain_without_dot() {
        assert_eq!(
            Email::parse("jane@localhost"),
            Err(EmailError::DomainWithoutDot)
        );
    }

    #[test]
    fn rejects_quoted_local_part() {
        assert_eq!(
            Email::parse("\"jane\"@nhs.net"),
            Err(EmailError::QuotedLocalPart)
        );
    }

    #[test]
    fn rejects_domain_literal() {
        assert_eq!(
            Email::parse("jane@[192.0.2.1]"),
            Err(EmailError::DomainLiteral)
        );
    }

    #[test]
    fn rejects_other_invalid_syntax() {
        for bad in [
            "@nhs.net",
            "jane@",
            "jane@.net",
            "jane@nhs..net",
            "jane@nhs.net.",
            "ja,ne@nhs.net",
            "jane@@nhs.net",
            "<jane@nhs.net>",
            "jane@-nhs.net",
        ] {
            let err = Email::parse(bad).expect_err(bad);
            assert!(
                matches!(
                    err,
                    EmailError::Invalid { .. }
                        | EmailError::DomainWithoutDot
                        | EmailError::MissingAt
                ),
                "{bad}: unexpected {err:?}"
            );
        }
    }

    #[test]
    fn rejects_too_long() {
        let local = "a".repeat(60);
        let domain = format!("{}.com", "b".repeat(60));
        // 60 + 1 + 64 = 125, so repeat the domain labels to exceed 254.
        let long = format!("{local}@{}", [domain.as_str(); 3].join("."));
        assert!(long.len() > MAX_EMAIL_LEN);
        assert!(matches!(
            Email::parse(&long),
            Err(EmailError::TooLong { max: 254, .. })
        ));
    }

    #[test]
    fn masked_hides_local_part() {
        let e = Email::parse("jane.doe@nhs.net").unwrap();
        assert_eq!(e.masked(), "j***@nhs.net");
        let e = Email::parse("j@nhs.net").unwrap();
        assert_eq!(e.masked(), "j***@nhs.net");
    }

    #[test]
    fn errors_are_human_readable() {
        let msg = Email::parse("jane@localhost").unwrap_err().to_string();
        assert!(msg.contains("dot"), "{msg}");
    }

    #[test]
    fn serde_is_a_transparent_string_and_validates() {
        let e = Email::parse("Jane@NHS.net").unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"jane@nhs.net\"");
        let back: Email = serde_json::from_str("\" JANE@nhs.net \"").unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_str::<Email>("\"not an email\"").is_err());
        assert!(serde_json::from_str::<Email>("\"jane@localhost\"").is_err());
    }
}
