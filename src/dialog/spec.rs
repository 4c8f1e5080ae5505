//! Loading and validating the dialog files in `dialogs/`.
//!
//! `flow.toml` holds the steps and transitions; one file per language
//! (`en.toml`, …) holds the wording. Both are parsed into raw serde types and
//! then turned into a [`Dialog`] that the engine can trust: every transition
//! goes to a step that exists, every outcome of every action is handled, every
//! message exists and uses only known placeholders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Europe::London;
use serde::Deserialize;

use super::segments::Encoding;

/// The file that holds the flow, inside the dialogs directory.
pub const FLOW_FILE: &str = "flow.toml";

/// What kind of input a step expects. Parsing lives in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Email,
    Last4,
    Answer,
    /// Three characters of an answer (`ANSWER_MODE=characters`).
    Characters,
    Option,
}

impl InputKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "email" => Self::Email,
            "last4" => Self::Last4,
            "answer" => Self::Answer,
            "characters" => Self::Characters,
            "option" => Self::Option,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Last4 => "last4",
            Self::Answer => "answer",
            Self::Characters => "characters",
            Self::Option => "option",
        }
    }
}

/// The actions the code supplies, each with the input it takes and the
/// outcomes it can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    LookupAccount,
    CheckMobileDigits,
    CheckAnswer,
    CheckCharacters,
    ChooseOption,
}

impl ActionKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lookup_account" => Self::LookupAccount,
            "check_mobile_digits" => Self::CheckMobileDigits,
            "check_answer" => Self::CheckAnswer,
            "check_characters" => Self::CheckCharacters,
            "choose_option" => Self::ChooseOption,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LookupAccount => "lookup_account",
            Self::CheckMobileDigits => "check_mobile_digits",
            Self::CheckAnswer => "check_answer",
            Self::CheckCharacters => "check_characters",
            Self::ChooseOption => "choose_option",
        }
    }
    pub fn input(self) -> InputKind {
        match self {
            Self::LookupAccount => InputKind::Email,
            Self::CheckMobileDigits => InputKind::Last4,
            Self::CheckAnswer => InputKind::Answer,
            Self::CheckCharacters => InputKind::Characters,
            Self::ChooseOption => InputKind::Option,
        }
    }
    pub fn outcomes(self) -> &'static [Outcome] {
        use Outcome::*;
        match self {
            Self::LookupAccount => &[Next],
            Self::CheckMobileDigits => {
                &[Verified, Failed, Disabled, DirectoryDisabled, SenderPaused]
            }
            Self::CheckAnswer | Self::CheckCharacters => &[NextQuestion, Verified, Failed],
            Self::ChooseOption => &[
                Failed,
                VerificationExpired,
                Unlocked,
                NotLocked,
                ResetSent,
                ResetWaiting,
                NotChanged,
                DirectoryDisabled,
            ],
        }
    }
}

/// What an action decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Next,
    Verified,
    Failed,
    Disabled,
    NextQuestion,
    Unlocked,
    NotLocked,
    ResetSent,
    ResetWaiting,
    /// The directory did not make the change (unreachable, timed out, or
    /// refused every temporary password): the account is as it was.
    NotChanged,
    /// The directory reports the account disabled.
    DirectoryDisabled,
    /// This sender has failed against too many accounts lately.
    SenderPaused,
    /// The verification is older than its lifetime.
    VerificationExpired,
}

impl Outcome {
    const ALL: [Outcome; 13] = [
        Self::Next,
        Self::Verified,
        Self::Failed,
        Self::Disabled,
        Self::NextQuestion,
        Self::Unlocked,
        Self::NotLocked,
        Self::ResetSent,
        Self::ResetWaiting,
        Self::NotChanged,
        Self::DirectoryDisabled,
        Self::SenderPaused,
        Self::VerificationExpired,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
            Self::NextQuestion => "next_question",
            Self::Unlocked => "unlocked",
            Self::NotLocked => "not_locked",
            Self::ResetSent => "reset_sent",
            Self::ResetWaiting => "reset_waiting",
            Self::NotChanged => "not_changed",
            Self::DirectoryDisabled => "directory_disabled",
            Self::SenderPaused => "sender_paused",
            Self::VerificationExpired => "verification_expired",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Facts about the verified account that a note may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    AccountLocked,
    AccountNotLocked,
    PasswordExpired,
    SameSignOn,
    /// A temporary password is not possible yet (new Same Sign On account).
    ResetWaiting,
    /// A temporary password is possible now.
    ResetAllowed,
    /// Security answers are asked for by characters (`ANSWER_MODE`).
    AnswersByCharacters,
}

impl Fact {
    pub const ALL: [Fact; 7] = [
        Self::AccountLocked,
        Self::AccountNotLocked,
        Self::PasswordExpired,
        Self::SameSignOn,
        Self::ResetWaiting,
        Self::ResetAllowed,
        Self::AnswersByCharacters,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountLocked => "account_locked",
            Self::AccountNotLocked => "account_not_locked",
            Self::PasswordExpired => "password_expired",
            Self::SameSignOn => "same_sign_on",
            Self::ResetWaiting => "reset_waiting",
            Self::ResetAllowed => "reset_allowed",
            Self::AnswersByCharacters => "answers_by_characters",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// The options a choosing step can offer: 1 unlocks, 2 unlocks and texts a
/// temporary password. Each leads to its own outcomes.
pub const OPTIONS: [u8; 2] = [1, 2];

/// The outcomes choosing `option` can have.
pub fn option_outcomes(option: u8) -> &'static [Outcome] {
    use Outcome::*;
    match option {
        1 => &[Unlocked, NotLocked, NotChanged, DirectoryDisabled],
        _ => &[ResetSent, ResetWaiting, NotChanged, DirectoryDisabled],
    }
}

/// Placeholders a message may use.
pub const PLACEHOLDERS: &[&str] = &[
    "last4",
    "question",
    "question_number",
    "question_count",
    "position_1",
    "position_2",
    "position_3",
    "reset_after",
    "password_expired_on",
    "until",
    "contact",
    "idle_minutes",
    "password",
];

/// `SUPPORT_CONTACT` when it is not set: each language then names the
/// Local Administrator in its own words (its `default_contact` message).
pub const DEFAULT_CONTACT: &str = "your Local Administrator";

/// The only message allowed to contain the temporary password.
pub const TEMP_PASSWORD_MESSAGE: &str = "sms_temp_password";

/// Messages the engine uses outside the flow; every language must have them.
pub const SYSTEM_MESSAGES: &[&str] = &[
    "greeting",
    "expired",
    "cancelled",
    "too_many_invalid",
    "service_unavailable",
    "service_busy",
    "directory_unavailable",
    "message_too_long",
    "too_many_turns",
    "replies_spent",
    "text_not_delivered",
    "conversation_ended",
    "default_contact",
    TEMP_PASSWORD_MESSAGE,
    "sms_notice_unlocked",
    "sms_notice_reset",
    "option_1_button",
    "option_2_button",
    "chat_private_only",
    "chat_text_only",
    "chat_edited_message",
    "chat_unknown_button",
    "chat_share_number_offer",
    "chat_share_number_button",
    "chat_number_shared",
    "chat_contact_not_own",
];

/// A note shown when a step is entered, if a fact holds.
#[derive(Debug, Clone)]
pub struct Note {
    pub when: Fact,
    pub say: String,
}

/// Where an outcome leads.
#[derive(Debug, Clone)]
pub struct Transition {
    pub to: String,
    /// Messages said before the target step's notes and prompt.
    pub say: Vec<String>,
    /// Whether the target step's notes are shown again.
    pub notes: bool,
}

/// A step that asks for input.
#[derive(Debug, Clone)]
pub struct AskStep {
    pub prompt: String,
    pub input: InputKind,
    pub action: ActionKind,
    /// For an `option` step, the options it offers (see [`OPTIONS`]); any
    /// other is not understood there.
    pub options: Vec<u8>,
    pub hint: String,
    pub help: String,
    pub notes: Vec<Note>,
    pub on: HashMap<Outcome, Transition>,
}

/// One branch of a route: taken when every fact holds (an empty list
/// always holds).
#[derive(Debug, Clone)]
pub struct Route {
    pub when: Vec<Fact>,
    pub to: String,
}

/// One step of the flow.
#[derive(Debug, Clone)]
pub enum Step {
    Ask(Box<AskStep>),
    /// Asks nothing: goes on at once to the first branch whose facts hold
    /// (the last branch holds always).
    Route(Vec<Route>),
    /// The conversation ends with this message.
    End {
        say: String,
    },
}

/// Placeholders of the date and time formats in a language file.
pub const DATE_PLACEHOLDERS: &[&str] = &["hour", "minute", "day", "month", "year"];

/// How a language writes dates and times (always UK time).
#[derive(Debug, Clone)]
pub struct DateWords {
    pub months: Vec<String>,
    /// With {hour} {minute} {day} {month} {year}.
    pub time: String,
    pub date: String,
}

impl DateWords {
    fn fill(&self, format: &str, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&London);
        let month = usize::try_from(local.month0()).unwrap_or_default();
        format
            .replace("{hour}", &format!("{:02}", local.hour()))
            .replace("{minute}", &format!("{:02}", local.minute()))
            .replace("{day}", &local.day().to_string())
            .replace(
                "{month}",
                self.months.get(month).map(String::as_str).unwrap_or(""),
            )
            .replace("{year}", &local.year().to_string())
    }
}

/// A language's wording.
#[derive(Debug, Clone)]
pub struct Wording {
    pub code: String,
    /// The SMS alphabet the wording is written for: a character outside
    /// GSM-7 in a GSM-7 language is a fault (it would make the whole text
    /// UCS-2, less than half as many characters a segment).
    pub alphabet: Encoding,
    pub start_words: Vec<String>,
    /// Words that switch a conversation to this language at any step.
    pub language_words: Vec<String>,
    pub cancel_words: Vec<String>,
    pub help_words: Vec<String>,
    pub dates: DateWords,
    messages: HashMap<String, String>,
}

impl Wording {
    /// A time as people in the UK read it, in this language.
    pub fn time(&self, t: DateTime<Utc>) -> String {
        self.dates.fill(&self.dates.time, t)
    }
    /// A date, in this language.
    pub fn date(&self, t: DateTime<Utc>) -> String {
        self.dates.fill(&self.dates.date, t)
    }
    /// Every message id, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.messages.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
    /// The text of a message. Ids are checked at load time, so a missing id
    /// is a bug; it renders as the id rather than panicking.
    pub fn text<'a>(&'a self, id: &'a str) -> &'a str {
        self.messages.get(id).map(String::as_str).unwrap_or(id)
    }
    /// The start word people are told to use.
    pub fn start_word(&self) -> &str {
        self.start_words.first().map(String::as_str).unwrap_or("")
    }
    pub fn is_start(&self, input: &str) -> bool {
        is_word(&self.start_words, input)
    }
    pub fn is_language(&self, input: &str) -> bool {
        is_word(&self.language_words, input)
    }
    pub fn is_cancel(&self, input: &str) -> bool {
        is_word(&self.cancel_words, input)
    }
    pub fn is_help(&self, input: &str) -> bool {
        is_word(&self.help_words, input)
    }
}

/// Whether `input` is one of `words`, as people type it: any case, spaces
/// around it, and a full stop or exclamation mark after it (`Stop.`,
/// `stop!`) do not matter.
fn is_word(words: &[String], input: &str) -> bool {
    let trimmed = input.trim();
    let bare = trimmed.trim_end_matches(['.', '!']).trim_end();
    words.iter().any(|w| {
        let w = w.trim();
        // The word itself may be punctuation ("?").
        w.eq_ignore_ascii_case(trimmed) || (!bare.is_empty() && w.eq_ignore_ascii_case(bare))
    })
}

/// A validated dialog: the flow plus the wording of the default language
/// and of every other language beside it (the flow is the same in all).
#[derive(Debug, Clone)]
pub struct Dialog {
    pub start: String,
    pub max_invalid: u32,
    steps: BTreeMap<String, Step>,
    /// The default language's wording (`DIALOG_LANGUAGE`).
    pub wording: Wording,
    /// Every other language's, by code.
    others: BTreeMap<String, Wording>,
}

impl Dialog {
    /// The wording of a conversation's language (the default when it has
    /// none, or one no longer shipped).
    pub fn wording_for(&self, code: Option<&str>) -> &Wording {
        code.and_then(|c| self.others.get(c))
            .unwrap_or(&self.wording)
    }
    /// Every language's wording, the default first.
    pub fn wordings(&self) -> impl Iterator<Item = &Wording> {
        std::iter::once(&self.wording).chain(self.others.values())
    }
    /// Whether a language is shipped.
    pub fn has_language(&self, code: &str) -> bool {
        self.wordings().any(|w| w.code == code)
    }
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.get(id)
    }
    /// Every step, by id.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &Step)> {
        self.steps.iter().map(|(id, step)| (id.as_str(), step))
    }
}

/// A fault in a dialog file, naming the file, the step (if any) and the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogError {
    pub file: PathBuf,
    pub step: Option<String>,
    pub fault: String,
}

impl fmt::Display for DialogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(step) = &self.step {
            write!(f, "step '{step}': ")?;
        }
        f.write_str(&self.fault)
    }
}

impl std::error::Error for DialogError {}

// ---------------------------------------------------------------- raw files

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    dialog: RawDialogHeader,
    steps: BTreeMap<String, RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialogHeader {
    start: String,
    max_invalid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    prompt: Option<String>,
    input: Option<String>,
    action: Option<String>,
    options: Option<Vec<u8>>,
    route: Option<Vec<RawRoute>>,
    hint: Option<String>,
    help: Option<String>,
    #[serde(default)]
    notes: Vec<RawNote>,
    #[serde(default)]
    on: BTreeMap<String, RawTransition>,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    when: Vec<String>,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNote {
    when: String,
    say: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTransition {
    To(String),
    Full {
        to: String,
        #[serde(default)]
        say: Vec<String>,
        #[serde(default = "yes")]
        notes: bool,
    },
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWording {
    language: RawLanguage,
    commands: RawCommands,
    dates: RawDates,
    messages: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLanguage {
    code: String,
    #[allow(dead_code)]
    name: String,
    sms_alphabet: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDates {
    months: Vec<String>,
    time: String,
    date: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    start: Vec<String>,
    language: Vec<String>,
    cancel: Vec<String>,
    help: Vec<String>,
}

// ---------------------------------------------------------------- loading

fn read(path: &Path) -> Result<String, DialogError> {
    std::fs::read_to_string(path).map_err(|e| DialogError {
        file: path.to_owned(),
        step: None,
        fault: format!("cannot read the file: {e}"),
    })
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, DialogError> {
    toml::from_str(text).map_err(|e| DialogError {
        file: path.to_owned(),
        step: None,
        fault: format!("not a valid dialog file: {}", e.to_string().trim_end()),
    })
}

/// The language codes for which `dir` has a wording file.
pub fn languages(dir: &Path) -> Result<Vec<String>, DialogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DialogError {
        file: dir.to_owned(),
        step: None,
        fault: format!("cannot read the dialogs directory: {e}"),
    })?;
    let mut codes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != FLOW_FILE))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    codes.sort();
    Ok(codes)
}

/// Load the flow and every language from `dir`, `language` the default,
/// validating the flow against each.
pub fn load(dir: &Path, language: &str) -> Result<Dialog, DialogError> {
    let mut dialog = load_one(dir, language)?;
    for code in languages(dir)? {
        if code != language {
            let other = load_one(dir, &code)?;
            dialog.others.insert(code, other.wording);
        }
    }
    Ok(dialog)
}

/// The flow with one language.
fn load_one(dir: &Path, language: &str) -> Result<Dialog, DialogError> {
    let flow_path = dir.join(FLOW_FILE);
    let raw_flow: RawFlow = parse_toml(&flow_path, &read(&flow_path)?)?;
    let wording_path = dir.join(format!("{language}.toml"));
    let raw_wording: RawWording = parse_toml(&wording_path, &read(&wording_path)?)?;
    let wording = validate_wording(&wording_path, raw_wording, language)?;
    validate_flow(&flow_path, &wording_path, raw_flow, wording)
}

/// Validate the flow against every language file in `dir` (what
/// `unlockbot dialog check` runs). Returns the language codes checked.
pub fn check_all(dir: &Path) -> Result<Vec<String>, DialogError> {
    let codes = languages(dir)?;
    if codes.is_empty() {
        return Err(DialogError {
            file: dir.to_owned(),
            step: None,
            fault: "no language file (such as en.toml) beside flow.toml".into(),
        });
    }
    for code in &codes {
        load_one(dir, code)?;
    }
    Ok(codes)
}

/// Faults of a language file measured against the English one: a message
/// English has that it lacks (or the reverse), or a message whose
/// placeholders differ.
pub fn compare_with_english(dir: &Path, language: &str) -> Result<Vec<String>, DialogError> {
    let english = load(dir, "en")?;
    let other = load(dir, language)?;
    let mut out = Vec::new();
    let names = |text: &str| -> BTreeSet<String> {
        placeholders(text).into_iter().map(str::to_owned).collect()
    };
    for id in english.wording.ids() {
        if !other.wording.messages.contains_key(id) {
            out.push(format!("message '{id}' is missing (en.toml has it)"));
            continue;
        }
        let (want, have) = (
            names(english.wording.text(id)),
            names(other.wording.text(id)),
        );
        if want != have {
            let list = |s: &BTreeSet<String>| {
                s.iter()
                    .map(|n| format!("{{{n}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push(format!(
                "message '{id}' has placeholders [{}], en.toml has [{}]",
                list(&have),
                list(&want)
            ));
        }
    }
    for id in other.wording.ids() {
        if !english.wording.messages.contains_key(id) {
            out.push(format!("message '{id}' is not in en.toml"));
        }
    }
    Ok(out)
}

fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push(&after[..close]);
                rest = &after[close + 1..];
            }
            None => {
                out.push(after);
                break;
            }
        }
    }
    out
}

fn validate_wording(path: &Path, raw: RawWording, language: &str) -> Result<Wording, DialogError> {
    let fault = |fault: String| DialogError {
        file: path.to_owned(),
        step: None,
        fault,
    };
    if raw.language.code != language {
        return Err(fault(format!(
            "language code '{}' does not match the file name '{language}.toml'",
            raw.language.code
        )));
    }
    let alphabet = match raw.language.sms_alphabet.as_str() {
        "gsm7" => Encoding::Gsm7,
        "ucs2" => Encoding::Ucs2,
        other => {
            return Err(fault(format!(
                "language.sms_alphabet is '{other}': it must be \"gsm7\" or \"ucs2\""
            )));
        }
    };
    if raw.dates.months.len() != 12 || raw.dates.months.iter().any(|m| m.trim().is_empty()) {
        return Err(fault("dates.months needs the 12 month names".into()));
    }
    for (field, format) in [("time", &raw.dates.time), ("date", &raw.dates.date)] {
        for name in placeholders(format) {
            if !DATE_PLACEHOLDERS.contains(&name) {
                return Err(fault(format!(
                    "dates.{field} uses unknown placeholder {{{name}}} (known: {})",
                    DATE_PLACEHOLDERS.join(", ")
                )));
            }
        }
    }
    if raw.commands.start.is_empty()
        || raw.commands.language.is_empty()
        || raw.commands.cancel.is_empty()
        || raw.commands.help.is_empty()
    {
        return Err(fault(
            "commands.start, commands.language, commands.cancel and commands.help each need at least one word".into(),
        ));
    }
    let mut ids: Vec<&String> = raw.messages.keys().collect();
    ids.sort();
    for id in ids {
        let text = &raw.messages[id];
        if text.trim().is_empty() {
            return Err(fault(format!("message '{id}' is empty")));
        }
        for name in placeholders(text) {
            if !PLACEHOLDERS.contains(&name) {
                return Err(fault(format!(
                    "message '{id}' uses unknown placeholder {{{name}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                )));
            }
            if name == "password" && id != TEMP_PASSWORD_MESSAGE {
                return Err(fault(format!(
                    "message '{id}' uses {{password}}, which only '{TEMP_PASSWORD_MESSAGE}' may use: the temporary password goes to the registered mobile and nowhere else"
                )));
            }
        }
    }
    for id in SYSTEM_MESSAGES {
        if !raw.messages.contains_key(*id) {
            return Err(fault(format!("required message '{id}' is missing")));
        }
    }
    if !placeholders(&raw.messages[TEMP_PASSWORD_MESSAGE]).contains(&"password") {
        return Err(fault(format!(
            "message '{TEMP_PASSWORD_MESSAGE}' must contain {{password}}"
        )));
    }
    Ok(Wording {
        code: raw.language.code,
        alphabet,
        start_words: raw.commands.start,
        language_words: raw.commands.language,
        cancel_words: raw.commands.cancel,
        help_words: raw.commands.help,
        dates: DateWords {
            months: raw.dates.months,
            time: raw.dates.time,
            date: raw.dates.date,
        },
        messages: raw.messages,
    })
}

fn validate_flow(
    flow_path: &Path,
    wording_path: &Path,
    raw: RawFlow,
    wording: Wording,
) -> Result<Dialog, DialogError> {
    let err = |step: &str, fault: String| DialogError {
        file: flow_path.to_owned(),
        step: Some(step.to_owned()),
        fault,
    };
    let message = |step: &str, field: &str, id: &str| -> Result<String, DialogError> {
        if wording.messages.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(DialogError {
                file: wording_path.to_owned(),
                step: Some(step.to_owned()),
                fault: format!("{field} names message '{id}', which this language does not have"),
            })
        }
    };
    if raw.dialog.max_invalid == 0 {
        return Err(DialogError {
            file: flow_path.to_owned(),
            step: None,
            fault: "dialog.max_invalid must be at least 1".into(),
        });
    }
    let names: BTreeSet<&String> = raw.steps.keys().collect();
    let mut steps = BTreeMap::new();
    for (id, raw_step) in &raw.steps {
        let asks = raw_step.prompt.is_some()
            || raw_step.input.is_some()
            || raw_step.action.is_some()
            || raw_step.options.is_some()
            || raw_step.hint.is_some()
            || raw_step.help.is_some()
            || !raw_step.notes.is_empty()
            || !raw_step.on.is_empty();
        let step = if let Some(end) = &raw_step.end {
            if asks || raw_step.route.is_some() {
                return Err(err(id, "an end step has only `end = \"message\"`".into()));
            }
            Step::End {
                say: message(id, "end", end)?,
            }
        } else if let Some(raw_routes) = &raw_step.route {
            if asks {
                return Err(err(id, "a route step has only `route = [...]`".into()));
            }
            let mut routes = Vec::new();
            for r in raw_routes {
                let when = r
                    .when
                    .iter()
                    .map(|f| {
                        Fact::parse(f)
                            .ok_or_else(|| err(id, format!("route depends on unknown fact '{f}'")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if !names.contains(&r.to) {
                    return Err(err(
                        id,
                        format!("route goes to step '{}', which does not exist", r.to),
                    ));
                }
                if raw.steps.get(&r.to).is_some_and(|s| s.route.is_some()) {
                    return Err(err(
                        id,
                        format!("route goes to step '{}', another route", r.to),
                    ));
                }
                routes.push(Route {
                    when,
                    to: r.to.clone(),
                });
            }
            if routes.last().is_none_or(|r| !r.when.is_empty()) {
                return Err(err(
                    id,
                    "the last branch of a route must have no `when`, so that one always holds"
                        .into(),
                ));
            }
            Step::Route(routes)
        } else {
            let need = |field: &str, v: &Option<String>| {
                v.clone().ok_or_else(|| {
                    err(id, format!("missing `{field}` (or `end` for a final step)"))
                })
            };
            let input_name = need("input", &raw_step.input)?;
            let input = InputKind::parse(&input_name).ok_or_else(|| {
                err(
                    id,
                    format!(
                        "unknown input kind '{input_name}' (known: email, last4, answer, characters, option)"
                    ),
                )
            })?;
            let action_name = need("action", &raw_step.action)?;
            let action = ActionKind::parse(&action_name).ok_or_else(|| {
                err(id, format!("unknown action '{action_name}' (known: lookup_account, check_mobile_digits, check_answer, check_characters, choose_option)"))
            })?;
            if action.input() != input {
                return Err(err(
                    id,
                    format!(
                        "action '{action_name}' takes input '{}', not '{input_name}'",
                        action.input().as_str()
                    ),
                ));
            }
            let mut notes = Vec::new();
            for note in &raw_step.notes {
                let when = Fact::parse(&note.when).ok_or_else(|| {
                    err(id, format!("note depends on unknown fact '{}'", note.when))
                })?;
                notes.push(Note {
                    when,
                    say: message(id, "note", &note.say)?,
                });
            }
            let options = match (&raw_step.options, input) {
                (None, InputKind::Option) => OPTIONS.to_vec(),
                (None, _) => Vec::new(),
                (Some(_), kind) if kind != InputKind::Option => {
                    return Err(err(id, "only an `option` step has `options`".into()));
                }
                (Some(list), _) => {
                    if list.is_empty() || list.iter().any(|o| !OPTIONS.contains(o)) {
                        return Err(err(
                            id,
                            "options must list 1 (unlock), 2 (temporary password) or both".into(),
                        ));
                    }
                    let mut list = list.clone();
                    list.sort_unstable();
                    list.dedup();
                    list
                }
            };
            // The outcomes this step can meet: all of the action's, or for
            // an option step, those of the options it offers.
            let reachable: Vec<Outcome> = if input == InputKind::Option {
                let mut all: Vec<Outcome> = options
                    .iter()
                    .flat_map(|o| option_outcomes(*o).iter().copied())
                    .collect();
                all.sort();
                all.dedup();
                all
            } else {
                action.outcomes().to_vec()
            };
            let mut on = HashMap::new();
            for (outcome_name, transition) in &raw_step.on {
                let outcome = Outcome::parse(outcome_name)
                    .filter(|o| action.outcomes().contains(o))
                    .ok_or_else(|| {
                        err(
                            id,
                            format!(
                                "action '{action_name}' has no outcome '{outcome_name}' (its outcomes: {})",
                                outcome_list(action)
                            ),
                        )
                    })?;
                let (to, say, notes) = match transition {
                    RawTransition::To(to) => (to.clone(), Vec::new(), true),
                    RawTransition::Full { to, say, notes } => (to.clone(), say.clone(), *notes),
                };
                if !names.contains(&to) {
                    return Err(err(
                        id,
                        format!(
                            "outcome '{outcome_name}' goes to step '{to}', which does not exist"
                        ),
                    ));
                }
                let say = say
                    .iter()
                    .map(|m| message(id, "say", m))
                    .collect::<Result<Vec<_>, _>>()?;
                on.insert(outcome, Transition { to, say, notes });
            }
            for outcome in &reachable {
                if !on.contains_key(outcome) {
                    return Err(err(
                        id,
                        format!(
                            "outcome '{}' of action '{action_name}' has no transition (add on.{} = \"step\")",
                            outcome.as_str(),
                            outcome.as_str()
                        ),
                    ));
                }
            }
            Step::Ask(Box::new(AskStep {
                prompt: message(id, "prompt", &need("prompt", &raw_step.prompt)?)?,
                input,
                action,
                options,
                hint: message(id, "hint", &need("hint", &raw_step.hint)?)?,
                help: message(id, "help", &need("help", &raw_step.help)?)?,
                notes,
                on,
            }))
        };
        steps.insert(id.clone(), step);
    }
    let start = raw.dialog.start;
    match steps.get(&start) {
        Some(Step::Ask(_)) => {}
        Some(Step::End { .. } | Step::Route(_)) => {
            return Err(err(&start, "the start step must ask for input".into()));
        }
        None => {
            return Err(DialogError {
                file: flow_path.to_owned(),
                step: None,
                fault: format!("dialog.start names step '{start}', which does not exist"),
            });
        }
    }
    // Every step must be reachable from the start.
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.clone()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        match steps.get(&id) {
            Some(Step::Ask(ask)) => todo.extend(ask.on.values().map(|t| t.to.clone())),
            Some(Step::Route(routes)) => todo.extend(routes.iter().map(|r| r.to.clone())),
            _ => {}
        }
    }
    if let Some(orphan) = steps.keys().find(|k| !seen.contains(*k)) {
        return Err(err(orphan, "no transition leads to this step".into()));
    }
    Ok(Dialog {
        start,
        max_invalid: raw.dialog.max_invalid,
        steps,
        wording,
        others: BTreeMap::new(),
    })
}

fn outcome_list(action: ActionKind) -> String {
    action
        .outcomes()
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogs")
    }

    fn copy_with(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(shipped()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let flow = std::fs::read_to_string(dir.path().join(FLOW_FILE)).unwrap();
        std::fs::write(dir.path().join(FLOW_FILE), edit(&flow)).unwrap();
        dir
    }

    #[test]
    fn every_shipped_dialog_loads() {
        let codes = check_all(&shipped()).unwrap();
        assert!(codes.contains(&"en".to_string()));
    }

    #[test]
    fn transition_to_missing_step_names_file_step_and_fault() {
        let dir = copy_with(|f| f.replace("on.next = \"ask_last4\"", "on.next = \"ask_lastfour\""));
        let e = load(dir.path(), "en").unwrap_err();
        assert!(e.file.ends_with(FLOW_FILE));
        assert_eq!(e.step.as_deref(), Some("ask_email"));
        assert!(e.fault.contains("ask_lastfour"), "{e}");
    }

    #[test]
    fn unhandled_outcome_is_refused() {
        let dir = copy_with(|f| f.replace("on.disabled = \"account_disabled\"\n", ""));
        let e = load(dir.path(), "en").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("ask_last4"));
        assert!(e.fault.contains("disabled"), "{e}");
    }

    #[test]
    fn unknown_action_and_mismatched_input_are_refused() {
        let dir = copy_with(|f| f.replace("action = \"lookup_account\"", "action = \"lookup\""));
        assert!(
            load(dir.path(), "en")
                .unwrap_err()
                .fault
                .contains("unknown action")
        );
        let dir = copy_with(|f| f.replacen("input = \"email\"", "input = \"last4\"", 1));
        assert!(
            load(dir.path(), "en")
                .unwrap_err()
                .fault
                .contains("takes input")
        );
    }

    #[test]
    fn syntax_error_names_the_file() {
        let dir = copy_with(|f| format!("{f}\n[steps.broken\n"));
        let e = load(dir.path(), "en").unwrap_err();
        assert!(e.to_string().contains("flow.toml"), "{e}");
    }

    #[test]
    fn password_placeholder_only_in_its_message() {
        let dir = copy_with(|f| f.to_string());
        let en = dir.path().join("en.toml");
        let text = std::fs::read_to_string(&en).unwrap();
        std::fs::write(
            &en,
            text.replace(
                "Your account is unlocked and your",
                "Your password {password} and your",
            ),
        )
        .unwrap();
        let e = load(dir.path(), "en").unwrap_err();
        assert!(e.fault.contains("{password}"), "{e}");
        assert_eq!(e.file, en);
    }

    #[test]
    fn command_words_forgive_case_spaces_and_a_final_full_stop() {
        let words = vec!["STOP".to_owned(), "?".to_owned()];
        for yes in ["stop", "Stop.", " STOP! ", "stop .", "?"] {
            assert!(is_word(&words, yes), "{yes}");
        }
        for no in ["stop it", "st op", ".", "", "!"] {
            assert!(!is_word(&words, no), "{no}");
        }
    }

    #[test]
    fn a_route_needs_a_last_branch_that_always_holds() {
        let dir = copy_with(|f| f.replace("  { to = \"nothing_to_do\" },\n", ""));
        let e = load(dir.path(), "en").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("verified"), "{e}");
        assert!(e.fault.contains("last branch"), "{e}");
        let dir = copy_with(|f| f.replace("when = [\"reset_allowed\"]", "when = [\"sunny\"]"));
        assert!(load(dir.path(), "en").unwrap_err().fault.contains("sunny"));
    }

    #[test]
    fn an_option_step_handles_the_outcomes_of_the_options_it_offers() {
        // offer_reset offers only 2: it needs no transition for unlocked.
        let dir = copy_with(|f| f.replace("options = [2]\n", "options = [1, 2]\n"));
        let e = load(dir.path(), "en").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("offer_reset"), "{e}");
        assert!(e.fault.contains("unlocked"), "{e}");
        let dir = copy_with(|f| f.replace("options = [2]\n", "options = [3]\n"));
        assert!(
            load(dir.path(), "en")
                .unwrap_err()
                .fault
                .contains("options")
        );
    }

    #[test]
    fn welsh_and_english_dates() {
        let en = load(&shipped(), "en").unwrap().wording;
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 7, 3, 13, 5, 0).unwrap();
        assert_eq!(en.time(t), "14:05 on 3 July 2026 (UK time)", "BST");
        assert_eq!(en.date(t), "3 July 2026");
    }

    #[test]
    fn unreachable_step_is_refused() {
        let dir = copy_with(|f| format!("{f}\n[steps.orphan]\nend = \"cancelled\"\n"));
        let e = load(dir.path(), "en").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("orphan"));
    }
}
