//! Security answers asked for by characters (`ANSWER_MODE=characters`):
//! each question asks for three characters of the answer at positions
//! chosen at random, so the whole answer never crosses the SMS network or
//! sits in a provider's logs.
//!
//! To check characters by position the service must be able to read the
//! answer, so in this mode answers are also kept sealed under `ANSWERS_KEY`
//! (the same authenticated encryption as the outbox, [`super::sealing`]),
//! bound to their enrolment (the directory id and position they were
//! enrolled under, and their normalisation), and padded so that the sealed
//! size does not tell the answer's length. The database alone reveals
//! nothing; the key is held outside it.
//!
//! Positions count the characters of the normalised answer (see
//! [`AnswerNormalisation`]), from 1, spaces not counted; a reply's
//! characters are read the same way.

use std::fmt;

use rand::seq::index::sample;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::sealing::{BadKey, OpenError, SealError, SealingKey};
use super::secret::{Answer, AnswerNormalisation};

/// Characters asked for per question.
pub const CHARACTERS_ASKED: usize = 3;

/// The fewest characters (normalised, spaces not counted) an answer needs
/// to be asked for by characters: three of six leaves the rest unknown.
pub const MIN_ANSWER_CHARACTERS: usize = 6;

/// Positions are chosen among the first this many characters (two digits
/// in a text; an answer longer than this is rare).
pub const MAX_POSITION: usize = 99;

/// Sealed answers are padded to a multiple of this many bytes.
const PAD_TO: usize = 64;

/// `ANSWERS_KEY`: 32 bytes, given as 64 hex characters. Redacted `Debug`,
/// zeroised on drop.
#[derive(Clone)]
pub struct AnswersKey(SealingKey);

impl fmt::Debug for AnswersKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswersKey(***)")
    }
}

/// Which enrolled answer a sealed answer is: bound into the seal, so that a
/// sealed answer moved to another account, question or normalisation does
/// not open.
#[derive(Debug, Clone, Copy)]
pub struct AnswerSlot<'a> {
    /// The directory id the answer is enrolled under (as stored).
    pub owner: &'a str,
    /// The question's position (1, 2, 3).
    pub position: u32,
    pub normalisation: AnswerNormalisation,
}

impl AnswerSlot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = b"unlockbot answer v1".to_vec();
        aad.extend((self.owner.len() as u64).to_be_bytes());
        aad.extend(self.owner.as_bytes());
        aad.extend(self.position.to_be_bytes());
        aad.extend(self.normalisation.as_stored().to_be_bytes());
        aad
    }
}

/// A sealed answer as stored (nonce + ciphertext). Redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAnswer(Vec<u8>);

impl fmt::Debug for SealedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedAnswer({} bytes)", self.0.len())
    }
}

impl SealedAnswer {
    /// As read from the database.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AnswersKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, BadKey> {
        SealingKey::from_hex(hex_key).map(Self)
    }

    pub fn generate() -> Self {
        Self(SealingKey::generate())
    }

    /// Seal `answer`, normalised as `slot` says, for that slot.
    pub fn seal(&self, answer: &Answer, slot: AnswerSlot<'_>) -> Result<SealedAnswer, SealError> {
        let normalised = answer.normalised(slot.normalisation);
        let bytes = normalised.as_bytes();
        let length = u32::try_from(bytes.len()).map_err(|_| SealError)?;
        // Length, answer, zeros: every answer under 60 bytes seals alike.
        let padded_len = (4 + bytes.len()).div_ceil(PAD_TO) * PAD_TO;
        let mut plain = Zeroizing::new(Vec::with_capacity(padded_len));
        plain.extend(length.to_be_bytes());
        plain.extend(bytes);
        plain.resize(padded_len, 0);
        self.0
            .seal(&plain, &slot.associated_data())
            .map(SealedAnswer)
    }

    /// Whether `sealed` was sealed under this key for `slot`.
    pub fn opens(&self, sealed: &SealedAnswer, slot: AnswerSlot<'_>) -> bool {
        self.0.open(&sealed.0, &slot.associated_data()).is_ok()
    }

    /// Seal again under `new` an answer sealed under this key for `slot`
    /// (rotating `ANSWERS_KEY`): the same padded answer, the same slot, a
    /// fresh nonce. The answer is never outside zeroised memory.
    pub fn reseal(
        &self,
        new: &AnswersKey,
        sealed: &SealedAnswer,
        slot: AnswerSlot<'_>,
    ) -> Result<SealedAnswer, ResealError> {
        let aad = slot.associated_data();
        let plain = self.0.open(&sealed.0, &aad).map_err(ResealError::Open)?;
        new.0
            .seal(&plain, &aad)
            .map(SealedAnswer)
            .map_err(ResealError::Seal)
    }

    /// Open a sealed answer of `slot` into its characters.
    pub fn open(
        &self,
        sealed: &SealedAnswer,
        slot: AnswerSlot<'_>,
    ) -> Result<AnswerCharacters, OpenError> {
        let plain = self.0.open(&sealed.0, &slot.associated_data())?;
        let (length, rest) = plain.split_first_chunk::<4>().ok_or(OpenError)?;
        let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| OpenError)?;
        let answer =
            std::str::from_utf8(rest.get(..length).ok_or(OpenError)?).map_err(|_| OpenError)?;
        Ok(AnswerCharacters(Zeroizing::new(
            answer.chars().filter(|c| !c.is_whitespace()).collect(),
        )))
    }
}

/// Why an answer could not be sealed again under a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResealError {
    /// It does not open under the old key.
    #[error(transparent)]
    Open(OpenError),
    #[error(transparent)]
    Seal(SealError),
}

/// The characters of an enrolled answer, normalised, spaces not counted.
/// No `Debug` of its content, zeroised on drop.
pub struct AnswerCharacters(Zeroizing<Vec<char>>);

impl fmt::Debug for AnswerCharacters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswerCharacters(***)")
    }
}

impl AnswerCharacters {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Long enough to be asked for by characters.
    pub fn usable(&self) -> bool {
        self.len() >= MIN_ANSWER_CHARACTERS
    }

    /// Fresh positions to ask for: [`CHARACTERS_ASKED`] different ones,
    /// counting from 1, in increasing order, at random within the answer
    /// (its first [`MAX_POSITION`] characters).
    pub fn choose_positions(&self) -> Vec<u32> {
        let within = self.len().min(MAX_POSITION);
        let count = CHARACTERS_ASKED.min(within);
        let mut positions: Vec<u32> = sample(&mut rand::rng(), within, count)
            .into_iter()
            .map(|i| u32::try_from(i + 1).unwrap_or(u32::MAX))
            .collect();
        positions.sort_unstable();
        positions
    }

    /// Whether `reply` gives the characters at `positions` (compared in
    /// constant time; any position outside the answer fails).
    pub fn matches(
        &self,
        positions: &[u32],
        reply: &Characters,
        normalisation: AnswerNormalisation,
    ) -> bool {
        let given = reply.read(normalisation);
        if positions.len() != CHARACTERS_ASKED || given.len() != CHARACTERS_ASKED {
            return false;
        }
        let mut same = subtle::Choice::from(1u8);
        for (position, typed) in positions.iter().zip(given.iter()) {
            let wanted = usize::try_from(*position)
                .ok()
                .and_then(|p| p.checked_sub(1))
                .and_then(|i| self.0.get(i));
            let Some(wanted) = wanted else {
                return false;
            };
            same &= u32::from(*wanted).ct_eq(&u32::from(*typed));
        }
        same.into()
    }
}

/// A reply that gives [`CHARACTERS_ASKED`] characters: `a k e`, `ake`,
/// `A K E`, in any spacing, typographic punctuation read as plain, and a
/// full stop a phone adds at the end ignored. Kept as typed (zeroised on
/// drop, no `Debug` of its content) and read under the normalisation of
/// the answer it is checked against.
pub struct Characters(Zeroizing<String>);

impl fmt::Debug for Characters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Characters(***)")
    }
}

/// A reply that is not [`CHARACTERS_ASKED`] characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{given} characters given where {CHARACTERS_ASKED} are asked for")]
pub struct CharactersError {
    pub given: usize,
}

impl Characters {
    pub fn parse(raw: &str) -> Result<Self, CharactersError> {
        let given = read_reply(raw, AnswerNormalisation::CURRENT).len();
        if given == CHARACTERS_ASKED {
            Ok(Self(Zeroizing::new(raw.to_owned())))
        } else {
            Err(CharactersError { given })
        }
    }

    fn read(&self, normalisation: AnswerNormalisation) -> Zeroizing<Vec<char>> {
        read_reply(&self.0, normalisation)
    }
}

/// The characters of a reply: more than asked for, with full stops at the
/// end (what a phone adds after a double space), loses those full stops.
fn read_reply(raw: &str, normalisation: AnswerNormalisation) -> Zeroizing<Vec<char>> {
    let mut chars = normalisation.characters(raw);
    while chars.len() > CHARACTERS_ASKED && chars.last() == Some(&'.') {
        chars.pop();
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: AnswerNormalisation = AnswerNormalisation::V2;

    fn slot(owner: &str) -> AnswerSlot<'_> {
        AnswerSlot {
            owner,
            position: 1,
            normalisation: V2,
        }
    }

    fn characters(answer: &str) -> AnswerCharacters {
        let key = AnswersKey::generate();
        let sealed = key.seal(&Answer::new(answer), slot("a@nhs.net")).unwrap();
        key.open(&sealed, slot("a@nhs.net")).unwrap()
    }

    fn read(raw: &str) -> String {
        Characters::parse(raw).unwrap().read(V2).iter().collect()
    }

    #[test]
    fn replies_are_read_in_any_case_and_spacing() {
        for raw in [
            "a k e",
            "ake",
            "A K E",
            " a  k\te ",
            "a\u{a0}k\u{2003}e",
            "A  K E.",
            "ak e .",
            "\u{ff21}ke",
        ] {
            assert_eq!(read(raw), "ake", "{raw:?}");
        }
        // Curly punctuation is read as plain; a full stop asked for counts.
        assert_eq!(read("o \u{2019} n"), "o'n");
        assert_eq!(read("t . a"), "t.a");
        assert_eq!(read("s t ."), "st.");
    }

    #[test]
    fn the_wrong_number_of_characters_is_refused() {
        for (raw, given) in [
            ("", 0),
            ("a", 1),
            ("a k", 2),
            ("a k e s", 4),
            ("akes", 4),
            ("a, k, e", 5),
            ("...", 3),
        ] {
            match Characters::parse(raw) {
                Err(e) => assert_eq!(e.given, given, "{raw:?}"),
                Ok(_) => assert_eq!(given, CHARACTERS_ASKED, "{raw:?} parsed"),
            }
        }
        assert!(Characters::parse("a k e s").is_err());
        assert!(Characters::parse("a, k, e").is_err());
    }

    #[test]
    fn characters_are_checked_by_position() {
        // "Jake Smith": j a k e s m i t h (spaces not counted).
        let answer = characters("  Jake   SMITH ");
        assert_eq!(answer.len(), 9);
        let positions = [2, 3, 4];
        let check = |raw: &str| answer.matches(&positions, &Characters::parse(raw).unwrap(), V2);
        assert!(check("a k e"));
        assert!(check("AKE"));
        assert!(!check("a k s"));
        assert!(!check("k a e"), "in the order asked");
        assert!(answer.matches(&[5, 6, 9], &Characters::parse("s m h").unwrap(), V2));
        // A position outside the answer, or too few, never matches.
        let reply = Characters::parse("h x y").unwrap();
        assert!(!answer.matches(&[9, 10, 11], &reply, V2));
        assert!(!answer.matches(&[2, 3], &Characters::parse("a k e").unwrap(), V2));
        assert!(!answer.matches(&[0, 2, 3], &Characters::parse("j a k").unwrap(), V2));
    }

    #[test]
    fn phone_punctuation_in_the_answer_and_the_reply_agree() {
        let answer = characters("O\u{2019}Neill-Smyth.");
        // o ' n e i l l - s m y t h  (the final full stop is normalised away)
        assert_eq!(answer.len(), 13);
        assert!(answer.matches(&[1, 2, 8], &Characters::parse("O ' -").unwrap(), V2));
        assert!(answer.matches(
            &[1, 2, 8],
            &Characters::parse("o\u{2019}\u{2013}").unwrap(),
            V2
        ));
    }

    #[test]
    fn positions_are_three_different_ones_within_the_answer_and_vary() {
        let answer = characters("Biscuit");
        assert!(answer.usable());
        assert!(!characters("Leeds").usable());
        assert!(!characters("Mini  Cooper").is_empty());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = answer.choose_positions();
            assert_eq!(p.len(), 3);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.iter().all(|&n| (1..=7).contains(&n)), "{p:?}");
            seen.insert(p);
        }
        assert!(seen.len() > 10, "only {} different choices", seen.len());
        let long = characters(&"abcdefghij".repeat(15));
        assert_eq!(long.len(), 150);
        for _ in 0..200 {
            assert!(long.choose_positions().iter().all(|&n| n <= 99));
        }
    }

    #[test]
    fn sealed_answers_are_bound_padded_and_reveal_nothing() {
        let key = AnswersKey::generate();
        let answer = Answer::new("Biscuit");
        let sealed = key.seal(&answer, slot("a@nhs.net")).unwrap();
        assert!(!sealed.as_bytes().windows(7).any(|w| w == b"biscuit"));
        assert_eq!(sealed.as_bytes().len(), 24 + 64 + 16);
        let longer = key
            .seal(
                &Answer::new("A much longer answer, still under sixty"),
                slot("a@nhs.net"),
            )
            .unwrap();
        assert_eq!(longer.as_bytes().len(), sealed.as_bytes().len(), "padded");
        assert!(
            key.open(&sealed, slot("b@nhs.net")).is_err(),
            "another account"
        );
        let other_position = AnswerSlot {
            position: 2,
            ..slot("a@nhs.net")
        };
        assert!(
            key.open(&sealed, other_position).is_err(),
            "another question"
        );
        let other_normalisation = AnswerSlot {
            normalisation: AnswerNormalisation::V1,
            ..slot("a@nhs.net")
        };
        assert!(key.open(&sealed, other_normalisation).is_err());
        assert!(
            AnswersKey::generate()
                .open(&sealed, slot("a@nhs.net"))
                .is_err()
        );
        assert_eq!(format!("{key:?}"), "AnswersKey(***)");
        assert!(!format!("{sealed:?}").contains("biscuit"));
        let opened = key.open(&sealed, slot("a@nhs.net")).unwrap();
        assert_eq!(format!("{opened:?}"), "AnswerCharacters(***)");
        assert!(AnswersKey::from_hex("abc").is_err());
    }

    #[test]
    fn resealing_moves_an_answer_to_the_new_key_only() {
        let (old, new) = (AnswersKey::generate(), AnswersKey::generate());
        let sealed = old
            .seal(&Answer::new("Biscuit"), slot("a@nhs.net"))
            .unwrap();
        let resealed = old.reseal(&new, &sealed, slot("a@nhs.net")).unwrap();
        assert!(new.opens(&resealed, slot("a@nhs.net")));
        assert!(!old.opens(&resealed, slot("a@nhs.net")));
        assert!(!new.opens(&resealed, slot("b@nhs.net")), "still bound");
        let chars = new.open(&resealed, slot("a@nhs.net")).unwrap();
        assert_eq!(chars.len(), 7);
        assert_eq!(
            resealed.as_bytes().len(),
            sealed.as_bytes().len(),
            "same padding"
        );
        assert!(matches!(
            new.reseal(&old, &sealed, slot("a@nhs.net")),
            Err(ResealError::Open(_))
        ));
        assert!(matches!(
            old.reseal(&new, &sealed, slot("b@nhs.net")),
            Err(ResealError::Open(_))
        ));
    }
}
