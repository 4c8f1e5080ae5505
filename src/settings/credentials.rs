//! Credentials and provider identifiers, parsed once at start-up: a value
//! copied from an example (`change-me`, `ACxxxx…`, `your-token`) or of the
//! wrong shape is refused with the variable's name, instead of failing
//! later at the provider (or, for a webhook token, refusing every request).

use std::fmt;

use secrecy::SecretString;

/// Whether `raw` is an obvious placeholder rather than a real value:
/// empty, `change-me` / `changeme` / `replace-me` and the like, `xxx…`
/// (or any one character repeated), `your-…`, `<…>`, `{{…}}`, `TODO`.
pub fn is_placeholder(raw: &str) -> bool {
    let trimmed = raw.trim();
    let lower = trimmed.to_lowercase();
    let letters: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    if letters.is_empty() {
        return true;
    }
    const WORDS: [&str; 22] = [
        "changeme",
        "changethis",
        "replaceme",
        "replacethis",
        "placeholder",
        "todo",
        "tbd",
        "fixme",
        "secret",
        "password",
        "token",
        "key",
        "apikey",
        "authtoken",
        "none",
        "null",
        "undefined",
        "example",
        "dummy",
        "redacted",
        "notset",
        "unset",
    ];
    if WORDS.contains(&letters.as_str())
        || letters.contains("changeme")
        || letters.contains("replaceme")
    {
        return true;
    }
    let mut chars = letters.chars();
    let first = chars.next().unwrap_or('x');
    if letters.chars().count() >= 3 && chars.all(|c| c == first) {
        return true;
    }
    [
        "your-",
        "your_",
        "your ",
        "yourtoken",
        "yourkey",
        "yoursecret",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
        || (trimmed.starts_with('<') && trimmed.ends_with('>'))
        || (trimmed.starts_with("{{") && trimmed.ends_with("}}"))
        || (trimmed.starts_with("${") && trimmed.ends_with('}'))
}

/// A secret value (token, API key, password) that is not a placeholder.
/// It exists only as a [`SecretString`]: never printed or logged.
pub struct Credential(SecretString);

impl Credential {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if is_placeholder(raw) {
            return Err(
                "looks like a placeholder copied from an example, not a real value: set the real one (or remove the line)"
                    .to_owned(),
            );
        }
        Ok(Self(SecretString::from(raw.trim().to_owned())))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// A Twilio Account SID: `AC` followed by 32 hexadecimal digits.
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioAccountSid(String);

impl TwilioAccountSid {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let hex = raw.strip_prefix("AC").unwrap_or_default();
        if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw.to_owned()))
        } else if is_placeholder(raw) || raw.to_lowercase().contains("xxxx") {
            Err(
                "looks like a placeholder copied from an example: set your Account SID (AC and 32 hex digits, from the Twilio console)"
                    .to_owned(),
            )
        } else {
            Err(format!(
                "'{}' is not a Twilio Account SID (AC and 32 hex digits, from the Twilio console)",
                crate::domain::text::escaped(raw)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `AC…` and the last four digits, for logs.
    pub fn masked(&self) -> String {
        format!("AC…{}", &self.0[self.0.len() - 4..])
    }
}

impl fmt::Debug for TwilioAccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A telephone number in E.164 form: `+`, a country code not starting
/// with 0, and at most 15 digits in all.
#[derive(Clone, PartialEq, Eq)]
pub struct E164Number(String);

impl E164Number {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let digits = raw.strip_prefix('+').unwrap_or_default();
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "'{}' is not a number in E.164 form (+ and the country code, no spaces: +447700900123)",
                crate::domain::text::escaped(raw)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for E164Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "",
            "  ",
            "change-me",
            "CHANGE_ME",
            "changeme",
            "change me please",
            "replace-me",
            "xxx",
            "XXXXXXXXXXXX",
            "your-auth-token",
            "your_api_key",
            "<token>",
            "{{TOKEN}}",
            "${TWILIO_AUTH_TOKEN}",
            "TODO",
            "secret",
            "0000000000",
            "---",
        ] {
            assert!(is_placeholder(p), "{p:?}");
            assert!(Credential::parse(p).is_err(), "{p:?}");
        }
        for real in [
            "test-auth-token-0123456789abcdef",
            "5f4dcc3b5aa765d61d8327deb882cf99",
            "123456789:AAFakeTokenForTests_abcdefghijklmnop",
            "unlockbot_live-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0",
            "Tr0ub4dor&3",
        ] {
            assert!(!is_placeholder(real), "{real:?}");
        }
    }

    #[test]
    fn account_sids() {
        let sid = TwilioAccountSid::parse("AC0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(sid.masked(), "AC…CDEF");
        for bad in [
            "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "AC123",
            "SK0123456789abcdef0123456789abcdef",
            "ac0123456789abcdef0123456789abcdef",
            "AC0123456789abcdef0123456789abcdeg",
            "change-me",
        ] {
            assert!(TwilioAccountSid::parse(bad).is_err(), "{bad}");
        }
        let e = TwilioAccountSid::parse("ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").unwrap_err();
        assert!(e.contains("placeholder"), "{e}");
    }

    #[test]
    fn e164_numbers() {
        for good in ["+447400000001", "+14155550100", "+447700900123"] {
            assert_eq!(E164Number::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "07400000001",
            "447400000001",
            "+44 7400 000001",
            "+0447400000001",
            "+44740000000123456",
            "+4474",
            "change-me",
            "",
        ] {
            assert!(E164Number::parse(bad).is_err(), "{bad}");
        }
    }
}
