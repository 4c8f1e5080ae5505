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

use serde::Deserialize;

/// The file that holds the flow, inside the dialogs directory.
pub const FLOW_FILE: &str = "flow.toml";

/// What kind of input a step expects. Parsing lives in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Email,
    Last4,
    Answer,
    Option,
}

impl InputKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "email" => Self::Email,
            "last4" => Self::Last4,
            "answer" => Self::Answer,
            "option" => Self::Option,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Last4 => "last4",
            Self::Answer => "answer",
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
    ChooseOption,
}

impl ActionKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lookup_account" => Self::LookupAccount,
            "check_mobile_digits" => Self::CheckMobileDigits,
            "check_answer" => Self::CheckAnswer,
            "choose_option" => Self::ChooseOption,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LookupAccount => "lookup_account",
            Self::CheckMobileDigits => "check_mobile_digits",
            Self::CheckAnswer => "check_answer",
            Self::ChooseOption => "choose_option",
        }
    }
    pub fn input(self) -> InputKind {
        match self {
            Self::LookupAccount => InputKind::Email,
            Self::CheckMobileDigits => InputKind::Last4,
            Self::CheckAnswer => InputKind::Answer,
            Self::ChooseOption => InputKind::Option,
        }
    }
    pub fn outcomes(self) -> &'static [Outcome] {
        use Outcome::*;
        match self {
            Self::LookupAccount => &[Next],
            Self::CheckMobileDigits => &[Verified, Failed, Disabled, DirectoryDisabled],
            Self::CheckAnswer => &[NextQuestion, Verified, Failed],
            Self::ChooseOption => &[
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
}

impl Outcome {
    const ALL: [Outcome; 11] = [
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
    ResetWaiting,
}

impl Fact {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "account_locked" => Self::AccountLocked,
            "account_not_locked" => Self::AccountNotLocked,
            "password_expired" => Self::PasswordExpired,
            "same_sign_on" => Self::SameSignOn,
            "reset_waiting" => Self::ResetWaiting,
            _ => return None,
        })
    }
}

/// Placeholders a message may use.
pub const PLACEHOLDERS: &[&str] = &[
    "last4",
    "question",
    "question_number",
    "question_count",
    "reset_after",
    "password_expired_on",
    "contact",
    "idle_minutes",
    "password",
];

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
    "message_too_long",
    "text_not_delivered",
    TEMP_PASSWORD_MESSAGE,
    "sms_notice_unlocked",
    "sms_notice_reset",
    "option_1_button",
    "option_2_button",
    "chat_private_only",
    "chat_text_only",
    "chat_edited_message",
    "chat_unknown_button",
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
    pub hint: String,
    pub help: String,
    pub notes: Vec<Note>,
    pub on: HashMap<Outcome, Transition>,
}

/// One step of the flow.
#[derive(Debug, Clone)]
pub enum Step {
    Ask(Box<AskStep>),
    /// The conversation ends with this message.
    End {
        say: String,
    },
}

/// A language's wording.
#[derive(Debug, Clone)]
pub struct Wording {
    pub code: String,
    pub cancel_words: Vec<String>,
    pub help_words: Vec<String>,
    messages: HashMap<String, String>,
}

impl Wording {
    /// The text of a message. Ids are checked at load time, so a missing id
    /// is a bug; it renders as the id rather than panicking.
    pub fn text<'a>(&'a self, id: &'a str) -> &'a str {
        self.messages.get(id).map(String::as_str).unwrap_or(id)
    }
    pub fn is_cancel(&self, input: &str) -> bool {
        self.cancel_words
            .iter()
            .any(|w| w.eq_ignore_ascii_case(input))
    }
    pub fn is_help(&self, input: &str) -> bool {
        self.help_words
            .iter()
            .any(|w| w.eq_ignore_ascii_case(input))
    }
}

/// A validated dialog: the flow plus one language's wording.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub start: String,
    pub max_invalid: u32,
    steps: BTreeMap<String, Step>,
    pub wording: Wording,
}

impl Dialog {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.get(id)
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
    messages: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLanguage {
    code: String,
    #[allow(dead_code)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
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

/// Load the flow and one language from `dir`, validating both.
pub fn load(dir: &Path, language: &str) -> Result<Dialog, DialogError> {
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
        load(dir, code)?;
    }
    Ok(codes)
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
    if raw.commands.cancel.is_empty() || raw.commands.help.is_empty() {
        return Err(fault(
            "commands.cancel and commands.help each need at least one word".into(),
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
        cancel_words: raw.commands.cancel,
        help_words: raw.commands.help,
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
        let step = if let Some(end) = &raw_step.end {
            let extra = raw_step.prompt.is_some()
                || raw_step.input.is_some()
                || raw_step.action.is_some()
                || raw_step.hint.is_some()
                || raw_step.help.is_some()
                || !raw_step.notes.is_empty()
                || !raw_step.on.is_empty();
            if extra {
                return Err(err(id, "an end step has only `end = \"message\"`".into()));
            }
            Step::End {
                say: message(id, "end", end)?,
            }
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
                        "unknown input kind '{input_name}' (known: email, last4, answer, option)"
                    ),
                )
            })?;
            let action_name = need("action", &raw_step.action)?;
            let action = ActionKind::parse(&action_name).ok_or_else(|| {
                err(id, format!("unknown action '{action_name}' (known: lookup_account, check_mobile_digits, check_answer, choose_option)"))
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
            for outcome in action.outcomes() {
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
        Some(Step::End { .. }) => {
            return Err(err(
                &start,
                "the start step must ask for input, not end".into(),
            ));
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
        if let Some(Step::Ask(ask)) = steps.get(&id) {
            todo.extend(ask.on.values().map(|t| t.to.clone()));
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
                "Your account is unlocked; your",
                "Your password {password}; your",
            ),
        )
        .unwrap();
        let e = load(dir.path(), "en").unwrap_err();
        assert!(e.fault.contains("{password}"), "{e}");
        assert_eq!(e.file, en);
    }

    #[test]
    fn unreachable_step_is_refused() {
        let dir = copy_with(|f| format!("{f}\n[steps.orphan]\nend = \"cancelled\"\n"));
        let e = load(dir.path(), "en").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("orphan"));
    }
}
