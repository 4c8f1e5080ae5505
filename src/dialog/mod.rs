//! The conversation as data (`dialogs/`), loaded and validated by [`spec`],
//! its wording rendered by [`render`], and the state a conversation keeps.
//! It is run one turn at a time by [`crate::engine`].

pub mod budget;
pub mod graph;
pub mod render;
pub mod segments;
pub mod spec;

pub use spec::{ActionKind, Dialog, DialogError, Fact, InputKind, Outcome};

use serde::{Deserialize, Serialize};

use crate::domain::Email;

/// Everything a conversation has collected so far, stored (as JSON) after
/// every turn. It never holds a secret: answers are checked as they arrive
/// and only the verdict is kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConversationState {
    /// The step waiting for input.
    pub step: String,
    /// Turns this conversation has taken (capped by
    /// `CONVERSATION_MAX_TURNS`).
    #[serde(default)]
    pub turns: u32,
    /// Invalid inputs in a row at this step.
    #[serde(default)]
    pub invalid_in_a_row: u32,
    /// The account the user named (whether or not it exists).
    #[serde(default)]
    pub email: Option<Email>,
    /// Positions of the security questions chosen for this conversation.
    #[serde(default)]
    pub questions: Vec<u32>,
    /// How many of them have been answered.
    #[serde(default)]
    pub answered: usize,
    /// `ANSWER_MODE=characters`: the positions (from 1) of the characters
    /// asked for in the question now waiting, chosen afresh each time a
    /// question is asked and kept here, so that a restart or another
    /// instance checks the same ones. Not a secret: positions only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<u32>,
    /// Whether every answer so far was right (revealed only at the end).
    #[serde(default)]
    pub answers_ok: bool,
    /// Email, digits and answers all checked out.
    #[serde(default)]
    pub verified: bool,
    /// When they did: verification lasts `VERIFIED_LIFETIME_MINUTES`
    /// however busy the conversation is kept.
    #[serde(default)]
    pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The conversation has ended; it is kept (with nothing else) only so
    /// that a message after the end gets a short line, not a new greeting.
    #[serde(default)]
    pub ended: bool,
    /// The conversation's language (a wording file's code); `None` is the
    /// default language.
    #[serde(default)]
    pub language: Option<String>,
    /// The phone number the user shared as their own (Telegram's contact
    /// button, a contact whose user id is the sender's), as a keyed hash
    /// (never the number): the conversation then counts as coming from
    /// that number. Kept from one conversation of the chat to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_mobile: Option<String>,
}

impl ConversationState {
    /// What is kept of a conversation that has ended: that it ended, its
    /// language, and the (hashed) number the user shared as their own.
    pub fn ended(language: Option<String>, own_mobile: Option<String>) -> Self {
        Self {
            ended: true,
            language,
            own_mobile,
            ..Self::default()
        }
    }
}
