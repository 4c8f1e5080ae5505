//! Secrets: temporary passwords, security-question answers, and argon2id
//! hashing of both answers and account passwords.
//!
//! None of the secret types implement `Display` or `Serialize`, and their
//! `Debug` output is redacted, so they cannot end up in logs or JSON by
//! accident. Their memory is zeroed when dropped (best effort: copies made
//! by the allocator while a buffer grows are not).

use std::fmt;

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{
        self,
        phc::{Output, ParamsString, PasswordHash, Salt},
    },
};
use rand::{RngExt, seq::SliceRandom};
use zeroize::Zeroizing;

/// Minimum length, in characters, of any password we set or accept.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Upper bound on [`TempPassword::generate`]'s length (Active Directory
/// accepts up to 256 characters; nobody wants to type more than this).
pub const MAX_TEMP_PASSWORD_LEN: usize = 128;

/// Upper-case letters used in temporary passwords (no `O`, `I`).
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Lower-case letters used in temporary passwords (no `o`, `l`).
const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
/// Digits used in temporary passwords (no `0`, `1`).
const DIGITS: &[u8] = b"23456789";
/// The whole temporary-password alphabet: [`UPPER`] + [`LOWER`] + [`DIGITS`].
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Why a password does not meet our policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than [`MIN_PASSWORD_LEN`] characters.
    #[error("the password must be at least {min} characters long (it has {actual})")]
    TooShort {
        /// The minimum.
        min: usize,
        /// The length given, in characters.
        actual: usize,
    },
    /// Spaces, tabs, newlines and other whitespace are not allowed.
    #[error("the password must not contain spaces or other whitespace")]
    ContainsWhitespace,
    /// Control characters (which cannot be typed reliably) are not allowed.
    #[error("the password must not contain control characters")]
    ContainsControlCharacter,
}

/// Hashing failed (should not happen with the default parameters; would
/// mean the OS random number generator failed, or similar).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The argon2 implementation reported an error.
    #[error("could not hash the secret: {0}")]
    Hashing(password_hash::Error),
}

/// A freshly generated temporary password, to be set on the account and
/// sent to the user.
///
/// Built from an alphabet without look-alike characters (`0 O o 1 l I` are
/// excluded) and always containing at least one upper-case letter, one
/// lower-case letter and one digit, so it meets Active Directory's
/// complexity rule. No `Display`, no `Serialize`, redacted `Debug`, zeroed
/// on drop.
pub struct TempPassword(Zeroizing<String>);

impl TempPassword {
    /// Generates a password of `len` characters (clamped to
    /// [`MIN_PASSWORD_LEN`]..=[`MAX_TEMP_PASSWORD_LEN`]) using the thread-local
    /// CSPRNG.
    pub fn generate(len: usize) -> TempPassword {
        let len = len.clamp(MIN_PASSWORD_LEN, MAX_TEMP_PASSWORD_LEN);
        let mut rng = rand::rng();
        let mut pick = |set: &[u8]| set[rng.random_range(0..set.len())];

        let mut bytes = Zeroizing::new(Vec::with_capacity(len));
        // One of each required class, then fill from the whole alphabet.
        bytes.push(pick(UPPER));
        bytes.push(pick(LOWER));
        bytes.push(pick(DIGITS));
        while bytes.len() < len {
            bytes.push(pick(ALPHABET));
        }
        bytes.shuffle(&mut rng);

        let mut out = Zeroizing::new(String::with_capacity(len));
        out.extend(bytes.iter().map(|&b| char::from(b)));
        TempPassword(out)
    }

    /// The password itself. Only call this to set it on the account or to
    /// put it in the message to the user.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TempPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TempPassword(***)")
    }
}

/// Checks our own minimum policy: at least [`MIN_PASSWORD_LEN`] characters,
/// no whitespace, no control characters. (Active Directory's complexity rule
/// is separate: [`meets_ad_complexity`].)
///
/// # Errors
/// The first [`PolicyError`] found.
pub fn meets_password_policy(pw: &str) -> Result<(), PolicyError> {
    let actual = pw.chars().count();
    if actual < MIN_PASSWORD_LEN {
        return Err(PolicyError::TooShort {
            min: MIN_PASSWORD_LEN,
            actual,
        });
    }
    if pw.chars().any(char::is_whitespace) {
        return Err(PolicyError::ContainsWhitespace);
    }
    if pw.chars().any(char::is_control) {
        return Err(PolicyError::ContainsControlCharacter);
    }
    Ok(())
}

/// Active Directory's "complexity" rule: characters from at least three of
/// the four classes upper-case, lower-case, digit (0-9) and symbol
/// (anything else that is not a letter, digit or whitespace).
///
/// AD also checks the password does not contain the account name; that
/// needs the account, so it is not checked here.
pub fn meets_ad_complexity(pw: &str) -> bool {
    let (mut upper, mut lower, mut digit, mut symbol) = (false, false, false, false);
    for c in pw.chars() {
        if c.is_uppercase() {
            upper = true;
        } else if c.is_lowercase() {
            lower = true;
        } else if c.is_ascii_digit() {
            digit = true;
        } else if !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control() {
            symbol = true;
        }
    }
    [upper, lower, digit, symbol]
        .into_iter()
        .filter(|&b| b)
        .count()
        >= 3
}

/// How an answer is normalised before it is hashed. Each stored answer
/// records the normalisation it was made with, so that a change here never
/// stops an enrolled answer from verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerNormalisation {
    /// Unicode NFKC, whitespace trimmed and collapsed, lower-cased.
    V1,
    /// As [`V1`](Self::V1), and also: typographic quotes, apostrophes and
    /// dashes (what phones type by default) read as their plain forms, and
    /// full stops at the end ignored.
    V2,
}

impl AnswerNormalisation {
    /// What new answers are hashed with.
    pub const CURRENT: Self = Self::V2;

    /// The number stored beside a hash.
    pub fn as_stored(self) -> i32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The normalisation a stored number names, if this version knows it.
    pub fn from_stored(n: i64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The characters of `raw` one by one, as this normalisation reads
    /// them: compatibility-composed, typographic punctuation plain (from
    /// V2), lower-cased, whitespace dropped, and nothing trimmed (a full
    /// stop asked for is a character like any other). Characters mode
    /// compares a reply's characters read this way.
    pub fn characters(self, raw: &str) -> Zeroizing<Vec<char>> {
        use unicode_normalization::UnicodeNormalization;
        let composed: Zeroizing<String> = match self {
            Self::V1 => Zeroizing::new(raw.nfkc().collect()),
            Self::V2 => Zeroizing::new(raw.nfkc().map(plain_punctuation).collect()),
        };
        let lower = Zeroizing::new(composed.to_lowercase());
        Zeroizing::new(lower.chars().filter(|c| !c.is_whitespace()).collect())
    }

    /// `raw` as this normalisation makes it.
    pub fn apply(self, raw: &str) -> Zeroizing<String> {
        use unicode_normalization::UnicodeNormalization;
        // Compatibility-compose first, so that "é" typed as one character or
        // as "e" + accent (phones differ), and full-width letters, compare equal.
        let composed: Zeroizing<String> = match self {
            Self::V1 => Zeroizing::new(raw.nfkc().collect()),
            Self::V2 => Zeroizing::new(raw.nfkc().map(plain_punctuation).collect()),
        };
        let mut collapsed = Zeroizing::new(String::with_capacity(composed.len()));
        for (i, word) in composed.split_whitespace().enumerate() {
            if i > 0 {
                collapsed.push(' ');
            }
            collapsed.push_str(word);
        }
        let mut out = Zeroizing::new(collapsed.to_lowercase());
        if self == Self::V2 {
            // "LEEDS." (a phone adds the full stop after a double space).
            let kept = out
                .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
                .len();
            out.truncate(kept);
        }
        out
    }
}

/// The plain character for a typographic one a phone keyboard types in its
/// place (iOS and Android "smart punctuation").
fn plain_punctuation(c: char) -> char {
    match c {
        // ‘ ’ ‚ ‛ ′ ʼ ` ´
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '`'
        | '\u{00B4}' => '\'',
        // “ ” „ ‟ ″
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => '"',
        // ‐ ‑ ‒ – — ―  and the minus sign
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' => '-',
        other => other,
    }
}

/// A security-question answer as the user typed it, normalised only when it
/// is hashed or checked (with the normalisation the stored hash was made
/// with, see [`AnswerNormalisation`]), so that trivial differences in how
/// the user types it do not matter.
///
/// No `Display`, no `Serialize`, redacted `Debug`, zeroed on drop; only ever
/// hashed ([`hash_answer`]) or checked ([`verify_answer`]).
pub struct Answer(Zeroizing<String>);

impl Answer {
    /// Keeps `raw` for hashing or checking.
    pub fn new(raw: &str) -> Answer {
        Answer(Zeroizing::new(raw.to_owned()))
    }

    /// Whether the answer is empty after normalisation (the user sent only
    /// whitespace, or only a full stop).
    pub fn is_empty(&self) -> bool {
        self.normalised(AnswerNormalisation::CURRENT).is_empty()
    }

    pub(crate) fn normalised(&self, how: AnswerNormalisation) -> Zeroizing<String> {
        how.apply(&self.0)
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answer(***)")
    }
}

/// A stored answer: the argon2id PHC string of the normalised answer, and
/// the normalisation it was made with.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerHash {
    pub phc: String,
    pub normalisation: AnswerNormalisation,
}

impl fmt::Debug for AnswerHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerHash")
            .field("phc", &"***")
            .field("normalisation", &self.normalisation)
            .finish()
    }
}

/// The hasher: argon2id, version 0x13, the crate's default (OWASP-recommended)
/// cost parameters (19 MiB, 2 iterations, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// Working memory for one argon2id computation at our parameters (19 MiB),
/// kept and reused by a hashing worker instead of being allocated (and
/// returned to a fragmented heap) on every call.
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    /// Memory for the parameters [`hash_answer`] and [`hash_password`] use.
    pub fn new() -> Self {
        Self(vec![Block::new(); Params::DEFAULT.block_count()])
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashMemory({} KiB)", self.0.len())
    }
}

fn hash_bytes(memory: &mut HashMemory, secret: &[u8]) -> Result<String, HashError> {
    let salt_bytes = password_hash::try_generate_salt()
        .map_err(|_| HashError::Hashing(password_hash::Error::Crypto))?;
    let salt = Salt::new(&salt_bytes).map_err(|e| HashError::Hashing(e.into()))?;
    let argon2 = hasher();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(secret, &salt, &mut out, &mut memory.0[..])
        .map_err(|e| HashError::Hashing(e.into()))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(HashError::Hashing)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| HashError::Hashing(e.into()))?),
    };
    Ok(hash.to_string())
}

fn verify_bytes(memory: &mut HashMemory, secret: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::new(parsed.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let computed = if params.block_count() <= memory.0.len() {
        argon2.hash_password_into_with_memory(secret, salt, &mut out, &mut memory.0[..])
    } else {
        // A hash made with more memory than ours (not one we wrote).
        argon2.hash_password_into(secret, salt, &mut out)
    };
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
}

/// Hashes an answer, normalised the [current](AnswerNormalisation::CURRENT)
/// way, with argon2id and a fresh random salt (PHC string
/// `$argon2id$v=19$m=19456,t=2,p=1$…`).
///
/// # Errors
/// [`HashError`] if argon2 fails.
pub fn hash_answer(answer: &Answer) -> Result<AnswerHash, HashError> {
    hash_answer_with(&mut HashMemory::new(), answer)
}

/// [`hash_answer`] in the given working memory.
///
/// # Errors
/// [`HashError`] if argon2 fails.
pub fn hash_answer_with(memory: &mut HashMemory, answer: &Answer) -> Result<AnswerHash, HashError> {
    let normalisation = AnswerNormalisation::CURRENT;
    Ok(AnswerHash {
        phc: hash_bytes(memory, answer.normalised(normalisation).as_bytes())?,
        normalisation,
    })
}

/// Checks an answer against a stored hash, normalising it the way the hash
/// was made. An answer stored before [`AnswerNormalisation::V2`] is also
/// tried with typographic punctuation made plain and a final full stop
/// dropped (what the user most likely meant), so phones' curly apostrophes
/// are forgiven for it too. `false` on mismatch and on a malformed or
/// unsupported hash.
pub fn verify_answer(answer: &Answer, stored: &AnswerHash) -> bool {
    verify_answer_with(&mut HashMemory::new(), answer, stored)
}

/// [`verify_answer`] in the given working memory.
pub fn verify_answer_with(memory: &mut HashMemory, answer: &Answer, stored: &AnswerHash) -> bool {
    let first = answer.normalised(stored.normalisation);
    if verify_bytes(memory, first.as_bytes(), &stored.phc) {
        return true;
    }
    match stored.normalisation {
        AnswerNormalisation::V2 => false,
        AnswerNormalisation::V1 => {
            let plain = AnswerNormalisation::V1.apply(&AnswerNormalisation::V2.apply(&answer.0));
            *plain != *first && verify_bytes(memory, plain.as_bytes(), &stored.phc)
        }
    }
}

/// Hashes an account password with argon2id (as [`hash_answer`]; the
/// password is used exactly as given, not normalised).
///
/// # Errors
/// [`HashError`] if argon2 fails.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hash_password_with(&mut HashMemory::new(), password)
}

/// [`hash_password`] in the given working memory.
///
/// # Errors
/// [`HashError`] if argon2 fails.
pub fn hash_password_with(memory: &mut HashMemory, password: &str) -> Result<String, HashError> {
    hash_bytes(memory, password.as_bytes())
}

/// Checks an account password against a PHC string from [`hash_password`].
/// `false` on mismatch and on a malformed or unsupported hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_password_with(&mut HashMemory::new(), password, phc)
}

/// [`verify_password`] in the given working memory.
pub fn verify_password_with(memory: &mut HashMemory, password: &str, phc: &str) -> bool {
    verify_bytes(memory, password.as_bytes(), phc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXCLUDED: &[char] = &['0', 'O', 'o', '1', 'l', 'I'];

    #[test]
    fn alphabet_is_the_union_of_the_classes() {
        let union: Vec<u8> = [UPPER, LOWER, DIGITS].concat();
        assert_eq!(union.as_slice(), ALPHABET);
        assert!(ALPHABET.iter().all(|&b| !EXCLUDED.contains(&char::from(b))));
    }

    #[test]
    fn generated_passwords_meet_policy_and_complexity() {
        for i in 0..1000 {
            let len = 10 + i % 7;
            let pw = TempPassword::generate(len);
            let s = pw.expose_secret();
            assert_eq!(s.chars().count(), len);
            assert_eq!(meets_password_policy(s), Ok(()), "{s}");
            assert!(meets_ad_complexity(s), "{s}");
            assert!(s.chars().any(|c| c.is_ascii_uppercase()), "{s}");
            assert!(s.chars().any(|c| c.is_ascii_lowercase()), "{s}");
            assert!(s.chars().any(|c| c.is_ascii_digit()), "{s}");
            assert!(!s.chars().any(|c| EXCLUDED.contains(&c)), "{s}");
            assert!(s.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
        }
    }

    #[test]
    fn generated_length_is_clamped() {
        assert_eq!(TempPassword::generate(0).expose_secret().len(), 10);
        assert_eq!(TempPassword::generate(9).expose_secret().len(), 10);
        assert_eq!(TempPassword::generate(16).expose_secret().len(), 16);
        assert_eq!(
            TempPassword::generate(10_000).expose_secret().len(),
            MAX_TEMP_PASSWORD_LEN
        );
    }

    #[test]
    fn generated_passwords_differ() {
        let a = TempPassword::generate(12);
        let b = TempPassword::generate(12);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn temp_password_debug_is_redacted() {
        let pw = TempPassword::generate(12);
        let dbg = format!("{pw:?}");
        assert_eq!(dbg, "TempPassword(***)");
        assert!(!dbg.contains(pw.expose_secret()));
    }

    #[test]
    fn password_policy() {
        assert_eq!(meets_password_policy("Abcdefgh23"), Ok(()));
        assert_eq!(
            meets_password_policy("Abc123"),
            Err(PolicyError::TooShort { min: 10, actual: 6 })
        );
        assert_eq!(
            meets_password_policy("Abcd efgh23"),
            Err(PolicyError::ContainsWhitespace)
        );
        assert_eq!(
            meets_password_policy("Abcdefgh23\t"),
            Err(PolicyError::ContainsWhitespace)
        );
        assert_eq!(
            meets_password_policy("Abcdefgh23\u{7}"),
            Err(PolicyError::ContainsControlCharacter)
        );
        // Length is in characters, not bytes.
        assert!(meets_password_policy("ééééééééé").is_err());
        assert!(
            meets_password_policy("")
                .unwrap_err()
                .to_string()
                .contains("at least 10")
        );
    }

    #[test]
    fn ad_complexity() {
        assert!(meets_ad_complexity("Abcdefgh23"));
        assert!(meets_ad_complexity("abcdefgh2!"));
        assert!(meets_ad_complexity("ABCDEFGH2!"));
        assert!(meets_ad_complexity("Abcdefgh!!"));
        assert!(!meets_ad_complexity("abcdefgh23"));
        assert!(!meets_ad_complexity("ABCDEFGHIJ"));
        assert!(!meets_ad_complexity("1234567890"));
        assert!(!meets_ad_complexity("abc !!!!!!"));
        assert!(!meets_ad_complexity(""));
    }

    fn norm(raw: &str) -> String {
        AnswerNormalisation::CURRENT.apply(raw).to_string()
    }

    #[test]
    fn answer_normalisation() {
        assert_eq!(norm("  Fluffy   the  CAT "), "fluffy the cat");
        assert_eq!(norm("\tÉCOLE\n Straße "), "école straße");
        assert!(Answer::new(" \n\t ").is_empty());
        assert!(!Answer::new("Fluffy").is_empty());
        // Composed and decomposed accents, and full-width letters, are equal.
        assert_eq!(norm("Zoe\u{0301}"), norm("Zo\u{e9}"));
        assert_eq!(norm("\u{ff2c}eeds"), "leeds");
        // Welsh circumflexes are letters, kept.
        assert_eq!(norm("Caerdydd Ŵyr"), "caerdydd ŵyr");
    }

    #[test]
    fn phone_punctuation_is_read_as_plain() {
        assert_eq!(norm("O\u{2019}Neill"), "o'neill");
        assert_eq!(norm("\u{2018}Rover\u{2019}"), "'rover'");
        assert_eq!(norm("\u{201C}Bob\u{201D}"), "\"bob\"");
        assert_eq!(norm("Smith\u{2013}Jones"), "smith-jones");
        assert_eq!(norm("LEEDS."), "leeds");
        assert_eq!(norm("Leeds .  "), "leeds");
        assert_eq!(norm("St. Albans"), "st. albans", "only the end");
        assert!(Answer::new(" . ").is_empty());
        // The first normalisation did none of this.
        assert_eq!(
            &*AnswerNormalisation::V1.apply("O\u{2019}Neill."),
            "o\u{2019}neill."
        );
    }

    #[test]
    fn stored_numbers_round_trip() {
        for n in [AnswerNormalisation::V1, AnswerNormalisation::V2] {
            assert_eq!(
                AnswerNormalisation::from_stored(n.as_stored().into()),
                Some(n)
            );
        }
        assert_eq!(AnswerNormalisation::from_stored(0), None);
        assert_eq!(AnswerNormalisation::from_stored(3), None);
    }

    #[test]
    fn answers_typed_on_a_phone_verify() {
        let neill = hash_answer(&Answer::new("O'Neill")).unwrap();
        assert_eq!(neill.normalisation, AnswerNormalisation::CURRENT);
        assert!(verify_answer(&Answer::new("O\u{2019}Neill"), &neill));
        assert!(verify_answer(&Answer::new("o\u{2019}neill."), &neill));
        assert!(!verify_answer(&Answer::new("ONeill"), &neill));
        let leeds = hash_answer(&Answer::new("Leeds")).unwrap();
        assert!(verify_answer(&Answer::new("LEEDS."), &leeds));
        // Enrolled the phone's way, checked the plain way.
        let curly = hash_answer(&Answer::new("D\u{2019}Arcy.")).unwrap();
        assert!(verify_answer(&Answer::new("d'arcy"), &curly));
    }

    /// A hash as the first normalisation made it (before answers recorded
    /// their normalisation).
    fn v1_hash(raw: &str) -> AnswerHash {
        AnswerHash {
            phc: hash_bytes(
                &mut HashMemory::new(),
                AnswerNormalisation::V1.apply(raw).as_bytes(),
            )
            .unwrap(),
            normalisation: AnswerNormalisation::V1,
        }
    }

    #[test]
    fn answers_enrolled_before_keep_verifying() {
        let old = v1_hash("O'Neill");
        assert!(verify_answer(&Answer::new(" o'NEILL "), &old));
        // and are forgiven the phone's punctuation too
        assert!(verify_answer(&Answer::new("O\u{2019}Neill."), &old));
        assert!(!verify_answer(&Answer::new("O Neill"), &old));
        // An answer enrolled with a final full stop still wants it.
        let dotted = v1_hash("Leeds.");
        assert!(verify_answer(&Answer::new("leeds."), &dotted));
        // Enrolled with a curly apostrophe: typed the same way, it verifies.
        let curly = v1_hash("D\u{2019}Arcy");
        assert!(verify_answer(&Answer::new("d\u{2019}arcy"), &curly));
    }

    #[test]
    fn answer_debug_is_redacted() {
        let a = Answer::new("Fluffy");
        let dbg = format!("{a:?}");
        assert_eq!(dbg, "Answer(***)");
        assert!(!dbg.to_lowercase().contains("fluffy"));
        let h = hash_answer(&a).unwrap();
        assert!(!format!("{h:?}").contains(&h.phc));
    }

    #[test]
    fn answer_hash_roundtrip() {
        let hash = hash_answer(&Answer::new("Fluffy the Cat")).unwrap();
        assert!(hash.phc.starts_with("$argon2id$"), "{}", hash.phc);
        assert!(!hash.phc.contains("fluffy"));
        assert!(verify_answer(&Answer::new("  fluffy   THE cat"), &hash));
        assert!(!verify_answer(&Answer::new("fluffy the dog"), &hash));
        // Salted: same input, different hash.
        let again = hash_answer(&Answer::new("fluffy the cat")).unwrap();
        assert_ne!(hash.phc, again.phc);
        assert!(verify_answer(&Answer::new("fluffy the cat"), &again));
    }

    #[test]
    fn password_hash_roundtrip() {
        let phc = hash_password("Correct-Horse-9").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("Correct-Horse-9", &phc));
        // Passwords are not normalised.
        assert!(!verify_password("correct-horse-9", &phc));
        assert!(!verify_password("Correct-Horse-9 ", &phc));
    }

    #[test]
    fn reused_memory_agrees_with_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let mut memory = HashMemory::new();
        // Ours verifies the crate's own hashes, and the crate verifies ours,
        // with one memory block reused across all of them.
        let theirs = Argon2::default()
            .hash_password(b"Correct-Horse-9")
            .unwrap()
            .to_string();
        assert!(verify_password_with(
            &mut memory,
            "Correct-Horse-9",
            &theirs
        ));
        assert!(!verify_password_with(
            &mut memory,
            "Correct-Horse-8",
            &theirs
        ));
        let ours = hash_password_with(&mut memory, "Correct-Horse-9").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        Argon2::default()
            .verify_password(b"Correct-Horse-9", &PasswordHash::new(&ours).unwrap())
            .unwrap();
        assert!(verify_password_with(&mut memory, "Correct-Horse-9", &ours));
        // A hash with smaller parameters (not ours) still verifies.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-small-params")
        .unwrap()
        .to_string();
        assert!(verify_password_with(&mut memory, "pw-small-params", &small));
        assert!(!verify_password_with(
            &mut memory,
            "pw-small-paramz",
            &small
        ));
    }

    #[test]
    fn malformed_hash_does_not_verify() {
        for bad in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
        ] {
            assert!(!verify_password("whatever", bad), "{bad:?}");
            for normalisation in [AnswerNormalisation::V1, AnswerNormalisation::V2] {
                let stored = AnswerHash {
                    phc: bad.to_owned(),
                    normalisation,
                };
                assert!(!verify_answer(&Answer::new("whatever"), &stored), "{bad:?}");
            }
        }
    }
}
