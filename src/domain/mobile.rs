//! Mobile phone numbers as registered against an account.
//!
//! Registered numbers usually arrive from a spreadsheet, so
//! [`normalise_spreadsheet_number`] first undoes the usual damage (lost
//! leading `0` or `+`, `(0)` trunk prefixes, `0044`, punctuation, numbers
//! turned into floats) before the `phonenumber` crate (libphonenumber
//! metadata) decides what the number is.
//!
//! Country code 44 is shared by the UK (`GB`) and the Crown Dependencies:
//! Guernsey (`GG`, e.g. 07781, 07839, 07911 1xxxxx), Jersey (`JE`, e.g.
//! 07797) and the Isle of Man (`IM`, e.g. 07624). Those are not the UK, so
//! they only count as UK mobiles when the caller allows it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use phonenumber::{Mode, PhoneNumber, Type, country, metadata::DATABASE};
use serde::{Deserialize, Serialize};

use super::last4::Last4;

/// Why a string was rejected as a (UK) mobile number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing (or only punctuation/whitespace) was given.
    #[error("no phone number was given")]
    Empty,
    /// Could not be parsed, or parsed but is not a valid, allocated-looking
    /// number. (Ofcom's drama numbers, 07700 900000 to 900999, are the one
    /// unallocated range accepted as a registered mobile: see
    /// [`is_drama_number`].)
    #[error("not a valid phone number")]
    Invalid,
    /// A valid UK number, but not a mobile (so it cannot receive our SMS).
    #[error("not a mobile number (it looks like a {kind})")]
    NotMobile {
        /// What kind of number it is, in words ("landline", "personal number", ...).
        kind: String,
    },
    /// A valid number, but not a UK one (or a Crown Dependency one that is
    /// not allowed).
    #[error("not a UK mobile number (region: {})", region.as_deref().unwrap_or("unknown"))]
    NotUk {
        /// ISO region of the number (`US`, `JE`, ...), if known.
        region: Option<String>,
    },
}

/// A UK mobile number in E.164 form (`+447…`).
///
/// Only constructible through [`parse_uk_mobile`] / [`parse_registered_mobile`]
/// (also used when deserialising). Depending on the caller's choice this may
/// include Crown Dependency mobiles (Guernsey, Jersey, Isle of Man), which
/// share the +44 country code.
///
/// Phone numbers are personal data: `Debug` shows the masked form; use
/// [`UkMobile::as_e164`] when the full number is needed (e.g. to send an SMS).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UkMobile {
    e164: String,
    last4: Last4,
}

impl UkMobile {
    /// The number in E.164 form, e.g. `+447811123456`.
    pub fn as_e164(&self) -> &str {
        &self.e164
    }

    /// The last four digits, e.g. `3456`.
    pub fn last4(&self) -> Last4 {
        self.last4
    }

    /// A form for logs and for showing to users: `+44*******456`.
    pub fn masked(&self) -> String {
        mask_phone_number(&self.e164)
    }
}

impl fmt::Debug for UkMobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UkMobile({})", self.masked())
    }
}

impl TryFrom<String> for UkMobile {
    type Error = PhoneError;

    /// Re-validates. Crown Dependency mobiles are accepted here, because a
    /// stored value may have been created with them allowed.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        parse_uk_mobile(&value, true)
    }
}

impl From<UkMobile> for String {
    fn from(value: UkMobile) -> Self {
        value.e164
    }
}

/// A number as registered against an account.
///
/// `NonUk` numbers are not used for sending codes; accounts registered with
/// one are typically disabled for SMS unlock (the caller decides).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RegisteredMobile {
    /// A UK mobile we can text.
    Uk(UkMobile),
    /// A valid number outside the UK (including Crown Dependencies when they
    /// are not allowed).
    NonUk {
        /// The number in E.164 form.
        e164: String,
        /// ISO region (`US`, `JE`, ...), if the metadata knows it.
        region: Option<String>,
    },
}

impl RegisteredMobile {
    /// The number in E.164 form.
    pub fn e164(&self) -> &str {
        match self {
            RegisteredMobile::Uk(m) => m.as_e164(),
            RegisteredMobile::NonUk { e164, .. } => e164,
        }
    }

    /// The last four digits.
    ///
    /// Values produced by [`parse_registered_mobile`] always have four
    /// digits. For a hand-built `NonUk` whose `e164` has fewer, the missing
    /// positions are `?` placeholders that never match user input.
    pub fn last4(&self) -> Last4 {
        match self {
            RegisteredMobile::Uk(m) => m.last4(),
            RegisteredMobile::NonUk { e164, .. } => Last4::of_e164_or_unmatchable(e164),
        }
    }

    /// Masked for logs: `+44*******456`, `+1*******123`.
    pub fn masked(&self) -> String {
        mask_phone_number(self.e164())
    }

    /// The UK mobile, if this is one.
    pub fn as_uk(&self) -> Option<&UkMobile> {
        match self {
            RegisteredMobile::Uk(m) => Some(m),
            RegisteredMobile::NonUk { .. } => None,
        }
    }

    /// Whether this is a UK mobile.
    pub fn is_uk(&self) -> bool {
        matches!(self, RegisteredMobile::Uk(_))
    }
}

impl fmt::Debug for RegisteredMobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisteredMobile::Uk(m) => f.debug_tuple("Uk").field(m).finish(),
            RegisteredMobile::NonUk { region, .. } => f
                .debug_struct("NonUk")
                .field("e164", &mask_phone_number(self.e164()))
                .field("region", region)
                .finish(),
        }
    }
}

/// Characters that are dropped wherever they appear: whitespace is handled
/// separately; these are the punctuation spreadsheets and people use.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '.' | '(' | ')' | '[' | ']' | '/' | '_'
    )
}

/// Invisible characters that survive copy-and-paste (zero-width spaces and
/// joiners, word joiner, BOM, soft hyphen, bidi marks).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{202A}'..='\u{202E}'
    )
}

/// Maps full-width digits and plus (from some phone keyboards / CJK input)
/// to ASCII.
fn fold_fullwidth(c: char) -> char {
    match c {
        '\u{FF10}'..='\u{FF19}' => {
            char::from_u32(u32::from(c) - 0xFF10 + u32::from('0')).unwrap_or(c)
        }
        '\u{FF0B}' => '+',
        _ => c,
    }
}

/// Undoes a spreadsheet turning the number into a float: `7911123456.0`
/// becomes `7911123456`, and `7.911123456E+09` becomes `7911123456`.
///
/// Scientific notation is only expanded when the mantissa carries every
/// digit (no zero padding needed): `4.47911E+11` has lost digits and is left
/// alone (it will then fail to parse) rather than guessed at.
fn undo_float(s: &str) -> Option<String> {
    if let Some((int, frac)) = s.split_once('.') {
        let all_digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if all_digits(int) && !frac.is_empty() && frac.bytes().all(|b| b == b'0') {
            return Some(int.to_owned());
        }
    }
    let (mantissa, exp) = s.split_once(['e', 'E'])?;
    let exp: usize = exp.strip_prefix('+').unwrap_or(exp).parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Trailing zeros of the fraction are harmless ("7.9111234560E+09").
    let frac = frac.trim_end_matches('0');
    if frac.len() != exp && !(frac.is_empty() && exp == 0) {
        return None;
    }
    Some(format!("{int}{frac}"))
}

/// Cleans up a phone number as found in a spreadsheet, returning a string
/// suitable for `phonenumber::parse(Some(country::Id::GB), …)`.
///
/// Handles:
/// * surrounding/inner whitespace (including non-breaking and zero-width
///   spaces), dashes (ASCII and Unicode), dots, brackets, slashes;
/// * Excel's text markers: a leading `'` and the `="0791…"` formula form;
/// * numbers turned into floats: `7911123456.0`, `7.911123456E+09`;
/// * the `(0)` trunk prefix: `+44 (0)7911 123456` → `+447911123456`
///   (without a country code, `(0)7911…` keeps its `0`);
/// * a trunk `0` after the country code: `+44 07911…` → `+447911…`;
/// * `0044…` → `+44…` (any `00` international prefix);
/// * a lost leading `+`: 11 or more digits not starting with `0` cannot be a
///   UK national number, so `447911123456` → `+447911123456`;
/// * a lost leading `0`: exactly 10 digits not starting with `0`, so
///   `7911123456` → `07911123456`.
///
/// Anything else (letters, say) is left in place for the parser to reject.
/// The output is not validated; an empty output means there was nothing there.
pub fn normalise_spreadsheet_number(raw: &str) -> String {
    // Fold full-width characters, drop whitespace and invisible characters.
    let compact: String = raw
        .chars()
        .map(fold_fullwidth)
        .filter(|c| !c.is_whitespace() && !is_invisible(*c))
        .collect();
    let mut s = compact.as_str();

    // Excel text markers.
    s = s.strip_prefix('\'').unwrap_or(s);
    s = s.strip_prefix('=').unwrap_or(s);
    if let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        s = inner;
    }
    s = s.strip_prefix("tel:").unwrap_or(s);

    let unfloated = undo_float(s);
    let s = unfloated.as_deref().unwrap_or(s);

    // The "(0)" trunk prefix: dropped after a country code, otherwise it is
    // the leading 0 of a national number.
    let international = s.starts_with('+') || s.starts_with("00") || s.starts_with("44");
    let s = if international {
        s.replace("(0)", "")
    } else {
        s.replace("(0)", "0")
    };

    let cleaned: String = s.chars().filter(|c| !is_separator(*c)).collect();
    let all_digits = !cleaned.is_empty() && cleaned.bytes().all(|b| b.is_ascii_digit());

    let international_digits = if let Some(rest) = cleaned.strip_prefix('+') {
        Some(rest)
    } else if let Some(rest) = cleaned.strip_prefix("00") {
        Some(rest)
    } else if all_digits && !cleaned.starts_with('0') && cleaned.len() >= 11 {
        Some(cleaned.as_str())
    } else {
        None
    };

    match international_digits {
        Some(rest) => {
            // A UK national significant number never starts with 0, so a 0
            // straight after +44 is a trunk prefix someone kept.
            let rest = match rest.strip_prefix("440") {
                Some(nsn) if nsn.bytes().all(|b| b.is_ascii_digit()) => format!("44{nsn}"),
                _ => rest.to_owned(),
            };
            format!("+{rest}")
        }
        None if all_digits && !cleaned.starts_with('0') && cleaned.len() == 10 => {
            format!("0{cleaned}")
        }
        None => cleaned,
    }
}

/// Results of parsing and validating numbers, remembered. libphonenumber
/// runs dozens of regular expressions (each looked up by its pattern in a
/// shared cache) to parse, validate and type a number: measured, the
/// largest share of a turn's CPU after the HTTP exchange. The same few
/// numbers come back turn after turn (a conversation's sender on every
/// turn, its account's registered mobile at each check), and the answer
/// for a given string never changes, so it is kept, up to a bound (the
/// whole table is dropped when full: no order to keep, nothing to tune).
/// Numbers are held in memory only, as they already are while a turn runs.
struct Memo<V> {
    map: Mutex<HashMap<String, V>>,
}

const MEMO_CAPACITY: usize = 4096;

impl<V: Clone> Memo<V> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get_or(&self, key: &str, compute: impl FnOnce() -> V) -> V {
        if let Some(v) = self.lock().get(key) {
            return v.clone();
        }
        let v = compute();
        let mut map = self.lock();
        if map.len() >= MEMO_CAPACITY {
            map.clear();
        }
        map.insert(key.to_owned(), v.clone());
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, V>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Normalises and parses with GB as the default region; the result is a
/// valid number.
fn parse_valid(raw: &str) -> Result<PhoneNumber, PhoneError> {
    static PARSED: LazyLock<Memo<Result<PhoneNumber, PhoneError>>> = LazyLock::new(Memo::new);
    PARSED.get_or(raw, || parse_valid_uncached(raw))
}

/// A parsed number and the region it belongs to.
type WithRegion = (PhoneNumber, Option<country::Id>);

/// An international (`+…`) number, if it is a valid one, and its region
/// (working that out runs the regions' patterns too).
fn parse_valid_international(e164: &str) -> Option<WithRegion> {
    static PARSED: LazyLock<Memo<Option<WithRegion>>> = LazyLock::new(Memo::new);
    PARSED.get_or(e164, || {
        phonenumber::parse(None, e164)
            .ok()
            .filter(PhoneNumber::is_valid)
            .map(|n| {
                let region = n.country().id();
                (n, region)
            })
    })
}

fn parse_valid_uncached(raw: &str) -> Result<PhoneNumber, PhoneError> {
    let cleaned = normalise_spreadsheet_number(raw);
    if cleaned.is_empty() {
        return Err(PhoneError::Empty);
    }
    let number =
        phonenumber::parse(Some(country::Id::GB), &cleaned).map_err(|_| PhoneError::Invalid)?;
    // An extension ("x123") cannot receive an SMS.
    if !(number.is_valid() || is_drama_number(&number)) || number.extension().is_some() {
        return Err(PhoneError::Invalid);
    }
    Ok(number)
}

fn to_e164(number: &PhoneNumber) -> String {
    number.format().mode(Mode::E164).to_string()
}

/// Human-readable name of a number type, for [`PhoneError::NotMobile`].
fn describe_type(kind: Type) -> &'static str {
    match kind {
        Type::FixedLine => "landline",
        Type::Mobile => "mobile",
        Type::FixedLineOrMobile => "landline or mobile",
        Type::TollFree => "freephone number",
        Type::PremiumRate => "premium-rate number",
        Type::SharedCost => "shared-cost number",
        Type::PersonalNumber => "personal (070) number",
        Type::Voip => "internet (VoIP) number",
        Type::Pager => "pager number",
        Type::Uan => "non-geographic company number",
        Type::Emergency => "emergency number",
        Type::Voicemail => "voicemail access number",
        Type::ShortCode => "short code",
        Type::StandardRate => "standard-rate number",
        Type::Carrier => "carrier-specific number",
        Type::NoInternational => "number that cannot be reached from abroad",
        Type::Unknown => "number of unknown type",
    }
}

/// Parses a registered number.
///
/// The input is cleaned with [`normalise_spreadsheet_number`] and parsed
/// with GB as the default region; it must be a valid number. Then:
///
/// * region `GB` (or `GG`/`JE`/`IM` when `allow_crown_dependencies`): it
///   must be a mobile ([`Type::Mobile`] only), giving
///   [`RegisteredMobile::Uk`], else [`PhoneError::NotMobile`];
/// * any other region, including `GG`/`JE`/`IM` when not allowed:
///   [`RegisteredMobile::NonUk`], whatever its type.
///
/// # Errors
/// [`PhoneError::Empty`], [`PhoneError::Invalid`] or
/// [`PhoneError::NotMobile`].
///
/// Not remembered (unlike a sender's number): a found account's mobile and
/// an unknown email's decoy must cost the same at the last-4 step, and a
/// remembered decoy would answer sooner than an account seen for the first
/// time (measured: +0.046 ms per pair with it, see SECURITY.md).
pub fn parse_registered_mobile(
    raw: &str,
    allow_crown_dependencies: bool,
) -> Result<RegisteredMobile, PhoneError> {
    let number = parse_valid_uncached(raw)?;
    if is_drama_number(&number) {
        let e164 = to_e164(&number);
        let last4 = Last4::of_e164(&e164).ok_or(PhoneError::Invalid)?;
        return Ok(RegisteredMobile::Uk(UkMobile { e164, last4 }));
    }
    let region = number.country().id();
    let is_uk = match region {
        Some(country::Id::GB) => true,
        Some(country::Id::GG | country::Id::JE | country::Id::IM) => allow_crown_dependencies,
        _ => false,
    };
    let e164 = to_e164(&number);
    if !is_uk {
        return Ok(RegisteredMobile::NonUk {
            e164,
            region: region.map(|id| id.as_ref().to_owned()),
        });
    }
    let kind = number.number_type(&DATABASE);
    if kind != Type::Mobile {
        return Err(PhoneError::NotMobile {
            kind: describe_type(kind).to_owned(),
        });
    }
    let last4 = Last4::of_e164(&e164).ok_or(PhoneError::Invalid)?;
    Ok(RegisteredMobile::Uk(UkMobile { e164, last4 }))
}

/// Like [`parse_registered_mobile`], but a non-UK number is an error.
///
/// # Errors
/// As [`parse_registered_mobile`], plus [`PhoneError::NotUk`].
pub fn parse_uk_mobile(raw: &str, allow_crown_dependencies: bool) -> Result<UkMobile, PhoneError> {
    match parse_registered_mobile(raw, allow_crown_dependencies)? {
        RegisteredMobile::Uk(m) => Ok(m),
        RegisteredMobile::NonUk { region, .. } => Err(PhoneError::NotUk { region }),
    }
}

/// Any valid number (international, or national with GB as the default
/// region) in E.164 form, e.g. for the sender of an inbound SMS. `None` if
/// it is not a valid number.
pub fn parse_any_e164(raw: &str) -> Option<String> {
    parse_valid(raw)
        .ok()
        .filter(|n| !is_drama_number(n))
        .map(|n| to_e164(&n))
}

/// Whether `number` is in Ofcom's range of mobile numbers reserved for
/// drama (07700 900000 to 07700 900999). They are never allocated, so they
/// are nobody's phone: sample and trial data use them (libphonenumber calls
/// them invalid). A registered mobile may be one (texts to it go nowhere);
/// a sender never is.
pub fn is_drama_number(number: &PhoneNumber) -> bool {
    number.code().value() == 44
        && (7_700_900_000..=7_700_900_999).contains(&number.national().value())
}

/// The regions (ISO 3166 codes, as libphonenumber assigns numbers to them)
/// whose numbers may text the service (`SMS_SENDER_COUNTRIES`); a text from
/// anywhere else gets no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderCountries(Vec<phonenumber::country::Id>);

impl SenderCountries {
    /// The default: the UK and the Crown Dependencies.
    pub const DEFAULT: &'static str = "GB,GG,JE,IM";

    /// A comma-separated list of region codes (`GB,GG,JE,IM`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut ids = Vec::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let upper = code.to_ascii_uppercase();
            let id = upper
                .parse::<phonenumber::country::Id>()
                .map_err(|_| format!("'{code}' is not a country code (ISO 3166, like GB)"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err("name at least one country (ISO 3166 codes, like GB,GG,JE,IM)".into());
        }
        Ok(Self(ids))
    }

    /// Whether `e164` is a valid number of one of these regions.
    pub fn allows(&self, e164: &str) -> bool {
        parse_valid_international(e164)
            .and_then(|(_, region)| region)
            .is_some_and(|id| self.0.contains(&id))
    }
}

impl Default for SenderCountries {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).unwrap_or_else(|_| unreachable!("the default parses"))
    }
}

/// Masks a phone number for logs, keeping the country code and the last 3
/// digits: `+447911223456` → `+44*******456`.
///
/// If the input is not a valid E.164 number, everything but a leading `+`
/// and the last 3 characters is replaced by `*` (all of it when it has 3
/// characters or fewer).
pub fn mask_phone_number(e164: &str) -> String {
    let parsed = parse_valid_international(e164).map(|(n, _)| (n.country().code(), to_e164(&n)));
    if let Some((code, formatted)) = parsed {
        let prefix = format!("+{code}");
        if let Some(national) = formatted.strip_prefix(&prefix) {
            return format!("{prefix}{}", mask_keep_last3(national));
        }
    }
    match e164.strip_prefix('+') {
        Some(rest) => format!("+{}", mask_keep_last3(rest)),
        None => mask_keep_last3(e164),
    }
}

/// Replaces all but the last 3 characters with `*`; all of them if there
/// are 3 or fewer.
pub(crate) fn mask_keep_last3(s: &str) -> String {
    let len = s.chars().count();
    if len <= 3 {
        return "*".repeat(len.max(3));
    }
    let mut out = "*".repeat(len - 3);
    out.extend(s.chars().skip(len - 3));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid GB mobile per the crate's metadata (07811 is a GB range).
    const GB: &str = "+447811123456";

    fn uk(raw: &str) -> UkMobile {
        match parse_registered_mobile(raw, false) {
            Ok(RegisteredMobile::Uk(m)) => m,
            other => panic!("{raw:?}: expected a UK mobile, got {other:?}"),
        }
    }

    #[test]
    fn fixtures_are_what_we_think() {
        // Chosen by testing against the crate's metadata.
        for gb in [
            "07811 123456",
            "07400 123456",
            "07911 223456",
            "07123 456789",
        ] {
            assert!(parse_uk_mobile(gb, false).is_ok(), "{gb}");
        }
    }

    #[test]
    fn normalise_spreadsheet_forms() {
        let cases = [
            ("07811 123456", "07811123456"),
            ("07811-123-456", "07811123456"),
            ("07811.123.456", "07811123456"),
            ("(07811) 123456", "07811123456"),
            ("+44 (0)7811 123456", "+447811123456"),
            ("+44(0)7811-123456", "+447811123456"),
            ("0044 7811 123456", "+447811123456"),
            ("447811123456", "+447811123456"),
            ("44 (0)7811 123456", "+447811123456"),
            ("7811123456", "07811123456"),
            ("+44 07811 123456", "+447811123456"),
            ("'07811123456", "07811123456"),
            ("=\"07811123456\"", "07811123456"),
            ("7811123456.0", "07811123456"),
            ("7.811123456E+09", "07811123456"),
            ("4.47811123456e11", "+447811123456"),
            (" 07811\u{a0}123\u{200b}456 ", "07811123456"),
            ("+44 7811 – 123456", "+447811123456"),
            ("\u{FF0B}\u{FF14}\u{FF14}7811123456", "+447811123456"),
            ("+1 (202) 555-0123", "+12025550123"),
            ("12025550123", "+12025550123"),
            ("", ""),
            ("  - ", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise_spreadsheet_number(raw), want, "input {raw:?}");
        }
    }

    #[test]
    fn every_spreadsheet_form_parses_to_the_same_mobile() {
        for raw in [
            "07811 123456",
            "07811123456",
            "07811-123-456",
            "07811.123.456",
            "(07811) 123456",
            "+44 (0)7811 123456",
            "+44 (0) 7811 123456",
            "+447811123456",
            "+44 7811 123456",
            "0044 7811 123456",
            "00447811123456",
            "447811123456",
            "7811123456",
            "+44 07811 123456",
            "'07811123456",
            "=\"07811123456\"",
            "7811123456.0",
            "7.811123456E+09",
            "\t07811 123 456\n",
        ] {
            assert_eq!(uk(raw).as_e164(), GB, "input {raw:?}");
        }
    }

    #[test]
    fn lossy_float_is_not_guessed() {
        // Excel showing 4.47811E+11 has lost digits: never pad with zeros.
        assert_eq!(
            parse_registered_mobile("4.47811E+11", false),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn uk_mobile_accessors() {
        let m = uk("07811 123456");
        assert_eq!(m.as_e164(), "+447811123456");
        assert_eq!(m.last4().to_string(), "3456");
        assert_eq!(m.masked(), "+44*******456");
        assert_eq!(format!("{m:?}"), "UkMobile(+44*******456)");
    }

    #[test]
    fn crown_dependencies_are_non_uk_by_default() {
        for (raw, region) in [
            ("07797 123456", "JE"),
            ("07781 123456", "GG"),
            ("07911 123456", "GG"),
            ("07839 123456", "GG"),
            ("07624 123456", "IM"),
        ] {
            match parse_registered_mobile(raw, false) {
                Ok(RegisteredMobile::NonUk { e164, region: r }) => {
                    assert_eq!(r.as_deref(), Some(region), "{raw}");
                    assert!(e164.starts_with("+447"), "{raw}");
                }
                other => panic!("{raw}: expected NonUk, got {other:?}"),
            }
            assert_eq!(
                parse_uk_mobile(raw, false),
                Err(PhoneError::NotUk {
                    region: Some(region.to_owned())
                })
            );
        }
    }

    #[test]
    fn crown_dependencies_are_uk_when_allowed() {
        for (raw, e164) in [
            ("07797 123456", "+447797123456"),
            ("07781 123456", "+447781123456"),
            ("07624 123456", "+447624123456"),
        ] {
            let m = parse_uk_mobile(raw, true).unwrap();
            assert_eq!(m.as_e164(), e164);
        }
    }

    #[test]
    fn foreign_numbers_are_non_uk() {
        let us = parse_registered_mobile("+1 202 555 0123", false).unwrap();
        assert_eq!(
            us,
            RegisteredMobile::NonUk {
                e164: "+12025550123".to_owned(),
                region: Some("US".to_owned())
            }
        );
        assert_eq!(us.e164(), "+12025550123");
        assert_eq!(us.last4().to_string(), "0123");
        assert_eq!(us.masked(), "+1*******123");
        assert!(!us.is_uk());
        assert!(us.as_uk().is_none());
        // Even with crown dependencies allowed.
        assert!(
            !parse_registered_mobile("+1 202 555 0123", true)
                .unwrap()
                .is_uk()
        );
        // An Irish mobile given with 00.
        let ie = parse_registered_mobile("00353 87 123 4567", false).unwrap();
        assert_eq!(ie.e164(), "+353871234567");
        assert!(!ie.is_uk());
    }

    #[test]
    fn hand_built_non_uk_with_too_few_digits() {
        let bogus = RegisteredMobile::NonUk {
            e164: "+12".to_owned(),
            region: None,
        };
        assert_eq!(bogus.last4().to_string(), "??12");
        assert!(!bogus.last4().matches(&Last4::parse("0012").unwrap()));
        assert_eq!(bogus.masked(), "+***");
    }

    #[test]
    fn debug_of_non_uk_is_masked() {
        let us = parse_registered_mobile("+1 202 555 0123", false).unwrap();
        let dbg = format!("{us:?}");
        assert!(!dbg.contains("2025550123"), "{dbg}");
        assert!(dbg.contains("US"), "{dbg}");
        let gb = parse_registered_mobile("07811 123456", false).unwrap();
        assert!(!format!("{gb:?}").contains("7811123456"));
    }

    #[test]
    fn landline_is_not_mobile() {
        assert_eq!(
            parse_registered_mobile("020 7946 0000", false),
            Err(PhoneError::NotMobile {
                kind: "landline".to_owned()
            })
        );
    }

    #[test]
    fn personal_number_is_not_mobile() {
        let err = parse_registered_mobile("070 1234 5678", false).unwrap_err();
        assert_eq!(
            err,
            PhoneError::NotMobile {
                kind: "personal (070) number".to_owned()
            }
        );
        assert!(err.to_string().contains("not a mobile"), "{err}");
    }

    #[test]
    fn pager_is_not_mobile() {
        assert!(matches!(
            parse_registered_mobile("076 2345 6789", false),
            Err(PhoneError::NotMobile { .. })
        ));
    }

    #[test]
    fn garbage_is_invalid() {
        for raw in [
            "garbage",
            "12",
            "0781112345",
            "078111234567",
            "+44 1234",
            "07811 123456 x12",
        ] {
            assert_eq!(
                parse_registered_mobile(raw, false),
                Err(PhoneError::Invalid),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn drama_numbers_are_fictional_uk_mobiles_and_never_senders() {
        for raw in ["07700 900123", "+44 7700 900000", "07700900999"] {
            let Ok(RegisteredMobile::Uk(m)) = parse_registered_mobile(raw, false) else {
                panic!("{raw} is a (fictional) UK mobile");
            };
            assert!(m.as_e164().starts_with("+447700900"), "{raw}");
        }
        for outside in ["07700 901000", "07700 899999", "07811 123456"] {
            let number = phonenumber::parse(Some(country::Id::GB), outside).unwrap();
            assert!(!is_drama_number(&number), "{outside}");
        }
        assert_eq!(parse_any_e164("07700 900123"), None);
    }

    #[test]
    fn empty_is_empty() {
        assert_eq!(parse_registered_mobile("", false), Err(PhoneError::Empty));
        assert_eq!(
            parse_registered_mobile("   ", false),
            Err(PhoneError::Empty)
        );
        assert_eq!(parse_uk_mobile(" ( ) ", false), Err(PhoneError::Empty));
    }

    #[test]
    fn parse_any_e164_accepts_any_valid_number() {
        assert_eq!(parse_any_e164("+447811123456").as_deref(), Some(GB));
        assert_eq!(parse_any_e164("447811123456").as_deref(), Some(GB));
        assert_eq!(parse_any_e164("07811 123456").as_deref(), Some(GB));
        assert_eq!(
            parse_any_e164("+1 202 555 0123").as_deref(),
            Some("+12025550123")
        );
        assert_eq!(
            parse_any_e164("020 7946 0000").as_deref(),
            Some("+442079460000")
        );
        assert_eq!(
            parse_any_e164("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(parse_any_e164("garbage"), None);
        assert_eq!(parse_any_e164(""), None);
    }

    #[test]
    fn sender_countries() {
        let uk = SenderCountries::default();
        for allowed in [GB, "+447797123456", "+447781123456", "+447624123456"] {
            assert!(uk.allows(allowed), "{allowed}");
        }
        for refused in [
            "+12025550123",
            "+33612345678",
            "+353861234567",
            "garbage",
            "",
        ] {
            assert!(!uk.allows(refused), "{refused}");
        }
        let with_france = SenderCountries::parse(" gb, FR ,").unwrap();
        assert!(with_france.allows("+33612345678"));
        assert!(!with_france.allows("+447797123456"), "Jersey is not GB");
        assert!(SenderCountries::parse("").is_err());
        assert!(SenderCountries::parse("GB,XX1").is_err());
    }

    #[test]
    fn masking() {
        assert_eq!(mask_phone_number("+447811123456"), "+44*******456");
        assert_eq!(mask_phone_number("+33612345678"), "+33******678");
        // Not a valid number: generic masking.
        assert_eq!(mask_phone_number("+999123456"), "+******456");
        assert_eq!(mask_phone_number("12"), "***");
        assert_eq!(mask_phone_number(""), "***");
    }

    #[test]
    fn serde_roundtrip_revalidates() {
        let m = uk("07811 123456");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"+447811123456\"");
        assert_eq!(serde_json::from_str::<UkMobile>(&json).unwrap(), m);
        // Stored Crown Dependency mobiles still load.
        assert!(serde_json::from_str::<UkMobile>("\"+447797123456\"").is_ok());
        for bad in ["\"+442079460000\"", "\"+12025550123\"", "\"nope\"", "\"\""] {
            assert!(serde_json::from_str::<UkMobile>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            PhoneError::NotUk {
                region: Some("JE".to_owned())
            }
            .to_string(),
            "not a UK mobile number (region: JE)"
        );
        assert_eq!(
            PhoneError::NotUk { region: None }.to_string(),
            "not a UK mobile number (region: unknown)"
        );
    }
}
