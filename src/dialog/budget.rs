//! SMS segment budgets: every reply the flow can send, with its
//! placeholders at their longest, must fit in a few segments.
//!
//! A reply is all the messages the bot sends in answer to one text, joined
//! by a blank line. Staff read them on a phone between patients, and every
//! segment is charged, so:
//! - a conversation reply fits in [`REPLY_SEGMENTS_GSM7`] segments when it
//!   is GSM-7 (306 characters) or [`REPLY_SEGMENTS_UCS2`] when it needs
//!   UCS-2 (201 characters);
//! - a reply that ends the conversation should fit in one (reported, not
//!   enforced: some endings must carry advice);
//! - a language written for GSM-7 must not contain a character outside it
//!   (one curly apostrophe makes the whole text UCS-2).
//!
//! The replies are enumerated from the flow the way the engine builds them
//! (see `engine.rs`); a change to what the engine puts together in one
//! reply must be mirrored in [`replies`].

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};

use super::render::{Vars, render};
use super::segments::{Encoding, Size, non_gsm7};
use super::spec::{AskStep, Dialog, Fact, SYSTEM_MESSAGES, Step, TEMP_PASSWORD_MESSAGE, Wording};

/// Segments a conversation reply may take in GSM-7.
pub const REPLY_SEGMENTS_GSM7: usize = 2;
/// Segments a conversation reply may take in UCS-2.
pub const REPLY_SEGMENTS_UCS2: usize = 3;
/// Characters a security question is counted as.
pub const QUESTION_CHARS: usize = 100;
/// How the engine joins the messages of one reply.
pub const SEPARATOR: &str = "\n\n";

/// Settings that fill placeholders.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub idle_minutes: i64,
    pub temp_password_length: usize,
    pub questions_to_ask: usize,
    /// `SUPPORT_CONTACT`.
    pub contact: String,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            idle_minutes: 15,
            temp_password_length: 12,
            questions_to_ask: 2,
            contact: "your Local Administrator".into(),
        }
    }
}

/// What a reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A reply in a conversation that goes on.
    Reply,
    /// A reply that ends the conversation.
    Ending,
    /// A text to the registered mobile (not a reply).
    Text,
}

/// One reply the flow can send: its messages in order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub kind: Kind,
    /// When it is sent, for people.
    pub when: String,
    pub messages: Vec<String>,
}

/// A reply measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub shape: Shape,
    pub size: Size,
    /// Segments allowed.
    pub budget: usize,
}

impl Measured {
    pub fn over_budget(&self) -> bool {
        self.size.segments > self.budget
    }
    /// An ending that takes more than one segment.
    pub fn long_ending(&self) -> bool {
        self.shape.kind == Kind::Ending && self.size.segments > 1
    }
}

/// Every consistent set of facts about an account.
fn fact_sets() -> Vec<Vec<Fact>> {
    let mut out = Vec::new();
    for locked in [Fact::AccountLocked, Fact::AccountNotLocked] {
        for expired in [true, false] {
            for (sso, waiting, characters) in [
                (false, false, false),
                (true, false, false),
                (true, true, false),
                (false, false, true),
            ] {
                let mut set = vec![locked];
                if characters {
                    set.push(Fact::AnswersByCharacters);
                }
                if expired {
                    set.push(Fact::PasswordExpired);
                }
                if sso {
                    set.push(Fact::SameSignOn);
                }
                set.push(if waiting {
                    Fact::ResetWaiting
                } else {
                    Fact::ResetAllowed
                });
                out.push(set);
            }
        }
    }
    out
}

/// What entering a step says, for each set of facts: for an asking step,
/// its notes and prompt; for an end step, its message (and `true`); a
/// route goes on to its branch.
fn entering(dialog: &Dialog, step_id: &str, with_notes: bool) -> Vec<(Vec<String>, bool)> {
    let mut seen = BTreeSet::new();
    for facts in fact_sets() {
        let mut id = step_id.to_owned();
        if let Some(Step::Route(routes)) = dialog.step(&id)
            && let Some(r) = routes
                .iter()
                .find(|r| r.when.iter().all(|f| facts.contains(f)))
        {
            id = r.to.clone();
        }
        match dialog.step(&id) {
            Some(Step::End { say }) => {
                seen.insert((vec![say.clone()], true));
            }
            Some(Step::Ask(ask)) => {
                let mut messages: Vec<String> = if with_notes {
                    ask.notes
                        .iter()
                        .filter(|n| facts.contains(&n.when))
                        .map(|n| n.say.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                messages.push(ask.prompt.clone());
                seen.insert((messages, false));
            }
            _ => {}
        }
    }
    seen.into_iter().collect()
}

/// Every reply the engine can build from this dialog.
pub fn replies(dialog: &Dialog) -> Vec<Shape> {
    let mut out = BTreeSet::new();
    let mut add = |kind: Kind, when: String, messages: Vec<String>| {
        out.insert(Shape {
            kind,
            when,
            messages,
        });
    };
    // A conversation starts: a text that finally failed is reported first;
    // an expired conversation says so instead of greeting. A first text
    // that answers the first step is taken as its answer.
    let mut openings: Vec<(String, Vec<String>, bool)> = entering(dialog, &dialog.start, true)
        .into_iter()
        .map(|(m, ends)| ("".to_owned(), m, ends))
        .collect();
    if let Some(Step::Ask(start)) = dialog.step(&dialog.start) {
        let mut outcomes: Vec<_> = start.on.iter().collect();
        outcomes.sort_by_key(|(outcome, _)| **outcome);
        for (outcome, transition) in outcomes {
            for (messages, ends) in entering(dialog, &transition.to, transition.notes) {
                let mut all = transition.say.clone();
                all.extend(messages);
                openings.push((
                    format!(
                        " with the answer to {} ({})",
                        dialog.start,
                        outcome.as_str()
                    ),
                    all,
                    ends,
                ));
            }
        }
    }
    for (how, messages, ends) in openings {
        for failed in [false, true] {
            for opening in ["greeting", "expired"] {
                let mut all = Vec::new();
                if failed {
                    all.push("text_not_delivered".to_owned());
                }
                all.push(opening.to_owned());
                all.extend(messages.iter().cloned());
                let when = format!(
                    "a conversation starts{how}{}{}",
                    if opening == "expired" {
                        " after one timed out"
                    } else {
                        ""
                    },
                    if failed {
                        ", after a temporary password text failed"
                    } else {
                        ""
                    }
                );
                add(if ends { Kind::Ending } else { Kind::Reply }, when, all);
            }
        }
    }
    add(
        Kind::Ending,
        "a message after the conversation ended".into(),
        vec!["conversation_ended".into()],
    );
    for (id, step) in dialog.steps() {
        let Step::Ask(ask) = step else { continue };
        step_replies(dialog, id, ask, &mut add);
    }
    add(
        Kind::Ending,
        "the service cannot store a turn".into(),
        vec!["service_unavailable".into()],
    );
    add(
        Kind::Ending,
        "a conversation takes too many turns".into(),
        vec!["too_many_turns".into()],
    );
    add(
        Kind::Reply,
        "the sender's replies for the day are spent".into(),
        vec!["replies_spent".into()],
    );
    for id in [
        TEMP_PASSWORD_MESSAGE,
        "sms_notice_unlocked",
        "sms_notice_reset",
    ] {
        add(
            Kind::Text,
            "a text to the registered mobile".into(),
            vec![id.into()],
        );
    }
    for id in SYSTEM_MESSAGES.iter().filter(|id| id.starts_with("chat_")) {
        add(
            Kind::Reply,
            "a Telegram chat hint".into(),
            vec![(*id).into()],
        );
    }
    out.into_iter().collect()
}

fn step_replies(
    dialog: &Dialog,
    id: &str,
    ask: &AskStep,
    add: &mut impl FnMut(Kind, String, Vec<String>),
) {
    add(
        Kind::Ending,
        format!("{id}: the user cancels"),
        vec!["cancelled".into()],
    );
    add(
        Kind::Reply,
        format!("{id}: the user asks for help"),
        vec![ask.help.clone(), ask.prompt.clone()],
    );
    for too_long in [false, true] {
        let mut first = Vec::new();
        if too_long {
            first.push("message_too_long".to_owned());
        }
        let mut hint = first.clone();
        hint.push(ask.hint.clone());
        add(Kind::Reply, format!("{id}: input not understood"), hint);
        let mut ended = first;
        ended.push("too_many_invalid".to_owned());
        add(
            Kind::Ending,
            format!("{id}: too many inputs not understood"),
            ended,
        );
    }
    let mut outcomes: Vec<_> = ask.on.iter().collect();
    outcomes.sort_by_key(|(outcome, _)| **outcome);
    for (outcome, transition) in outcomes {
        for (messages, ends) in entering(dialog, &transition.to, transition.notes) {
            let mut all = transition.say.clone();
            all.extend(messages);
            add(
                if ends { Kind::Ending } else { Kind::Reply },
                format!("{id}: {} -> {}", outcome.as_str(), transition.to),
                all,
            );
        }
    }
}

/// Placeholder values at their longest, for a language.
pub fn longest_vars(wording: &Wording, settings: &BudgetSettings) -> Vars {
    let mut vars = Vars::new();
    vars.insert("last4", "9999".into());
    // A question is the operator's text, shown as enrolled. In a GSM-7
    // language it is counted as GSM-7; in a UCS-2 one it may need UCS-2.
    let filler = match wording.alphabet {
        Encoding::Gsm7 => "x",
        Encoding::Ucs2 => "\u{175}",
    };
    vars.insert("question", filler.repeat(QUESTION_CHARS));
    vars.insert("question_number", settings.questions_to_ask.to_string());
    vars.insert("question_count", settings.questions_to_ask.to_string());
    // Positions of characters asked for: at most two digits each.
    let most = crate::domain::characters::MAX_POSITION.to_string();
    for name in ["position_1", "position_2", "position_3"] {
        vars.insert(name, most.clone());
    }
    // The longest time and date this language writes: every month, a
    // two-digit day.
    let (mut time, mut date) = (String::new(), String::new());
    for month in 1..=12 {
        let t = Utc.with_ymd_and_hms(2026, month, 28, 22, 59, 0).unwrap();
        let (a, b) = (wording.time(t), wording.date(t));
        if a.chars().count() > time.chars().count() {
            time = a;
        }
        if b.chars().count() > date.chars().count() {
            date = b;
        }
    }
    vars.insert("reset_after", time);
    vars.insert("password_expired_on", date);
    vars.insert(
        "contact",
        if settings.contact == super::spec::DEFAULT_CONTACT {
            wording.text("default_contact").to_owned()
        } else {
            settings.contact.clone()
        },
    );
    vars.insert("idle_minutes", settings.idle_minutes.to_string());
    vars.insert("password", "X".repeat(settings.temp_password_length));
    vars
}

/// Every reply of a dialog, measured against its budget.
pub fn measure(dialog: &Dialog, settings: &BudgetSettings) -> Vec<Measured> {
    let vars = longest_vars(&dialog.wording, settings);
    replies(dialog)
        .into_iter()
        .map(|shape| {
            let text = shape
                .messages
                .iter()
                .map(|id| render(dialog.wording.text(id), &vars))
                .collect::<Vec<_>>()
                .join(SEPARATOR);
            let size = Size::of(&text);
            let budget = match size.encoding {
                Encoding::Gsm7 => REPLY_SEGMENTS_GSM7,
                Encoding::Ucs2 => REPLY_SEGMENTS_UCS2,
            };
            Measured {
                shape,
                size,
                budget,
            }
        })
        .collect()
}

/// The faults: replies over budget, and characters outside a GSM-7
/// language's alphabet.
pub fn faults(dialog: &Dialog, settings: &BudgetSettings) -> Vec<String> {
    let wording = &dialog.wording;
    let mut out = Vec::new();
    if wording.alphabet == Encoding::Gsm7 {
        for id in wording.ids() {
            let bad = non_gsm7(wording.text(id));
            if !bad.is_empty() {
                let list: Vec<String> = bad
                    .iter()
                    .map(|c| format!("'{c}' (U+{:04X})", u32::from(*c)))
                    .collect();
                out.push(format!(
                    "message '{id}' has {}, outside the GSM-7 alphabet this language is written for: any text with it goes as UCS-2, 70 characters a segment instead of 160",
                    list.join(", ")
                ));
            }
        }
    }
    for m in measure(dialog, settings) {
        if m.over_budget() {
            out.push(format!(
                "{} ({}) takes {} {} segments ({} characters at the longest), over the budget of {}",
                m.shape.when,
                m.shape.messages.join(" + "),
                m.size.segments,
                m.size.encoding,
                m.size.units,
                m.budget
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dialog::spec::{check_all, load};

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogs")
    }

    fn with_message(id: &str, text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(shipped()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let en = dir.path().join("en.toml");
        let wording = std::fs::read_to_string(&en).unwrap();
        let start = wording.find(&format!("\n{id} = ")).unwrap() + 1;
        let end = start + wording[start..].find('\n').unwrap();
        let replaced = format!(
            "{}{id} = {}{}",
            &wording[..start],
            toml::Value::String(text.into()),
            &wording[end..]
        );
        std::fs::write(&en, replaced).unwrap();
        dir
    }

    #[test]
    fn every_shipped_language_is_within_budget() {
        for code in check_all(&shipped()).unwrap() {
            let dialog = load(&shipped(), &code).unwrap();
            let faults = faults(&dialog, &BudgetSettings::default());
            assert!(faults.is_empty(), "{code}: {faults:#?}");
        }
    }

    #[test]
    fn the_greeting_with_the_first_question_was_250_characters() {
        // The wording before segment budgets, as the issue measured it.
        let dir = with_message(
            "greeting",
            "NHSmail self-service unlock. You can unlock your account, or unlock it and get a temporary password by text. Reply EXIT at any time to stop, or ? for help.",
        );
        let dir2 = {
            let p = dir.path().join("en.toml");
            let w = std::fs::read_to_string(&p).unwrap().replace(
                "What is the email address of the account to unlock? For example jane.smith@nhs.net",
                "What is the email address of the account you want to unlock (for example jane.smith@nhs.net)?",
            );
            std::fs::write(&p, w).unwrap();
            dir
        };
        let dialog = load(dir2.path(), "en").unwrap();
        let m = measure(&dialog, &BudgetSettings::default());
        let start = m
            .iter()
            .find(|m| m.shape.messages == ["greeting", "ask_email"])
            .unwrap();
        assert_eq!(start.size.units, 250);
        assert_eq!(start.size.segments, 2);
        // With a failed text reported first, it is over budget.
        let faults = faults(&dialog, &BudgetSettings::default());
        assert!(
            faults
                .iter()
                .any(|f| f.contains("text_not_delivered + greeting + ask_email")),
            "{faults:#?}"
        );
    }

    #[test]
    fn a_long_note_is_measured_with_every_reply_that_shows_it() {
        let dir = with_message("same_sign_on_notice", &"Same Sign On. ".repeat(12));
        let dialog = load(dir.path(), "en").unwrap();
        let faults = faults(&dialog, &BudgetSettings::default());
        assert!(
            faults
                .iter()
                .any(|f| f.contains("same_sign_on_notice + offer_both") && f.contains("3 GSM-7")),
            "{faults:#?}"
        );
    }

    #[test]
    fn a_curly_quote_in_english_is_refused_by_name() {
        let dir = with_message(
            "hint_last4",
            "Please reply with 4 digits \u{2018}like 3456\u{2019}.",
        );
        let dialog = load(dir.path(), "en").unwrap();
        let faults = faults(&dialog, &BudgetSettings::default());
        assert!(
            faults
                .iter()
                .any(|f| f.contains("'hint_last4'") && f.contains("U+2018")),
            "{faults:#?}"
        );
    }

    #[test]
    fn a_question_counts_as_100_characters() {
        let dialog = load(&shipped(), "en").unwrap();
        let m = measure(&dialog, &BudgetSettings::default());
        let q = m
            .iter()
            .find(|m| m.shape.messages == ["ask_question"])
            .unwrap();
        assert_eq!(
            q.size.units,
            "Security question 2 of 2: ".len() + QUESTION_CHARS
        );
    }
}
