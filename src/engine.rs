//! One turn of a conversation: load the state, run the current step against
//! the input, call the step's action, follow the transition, and store the
//! new state, the audit events and the attempt counters in one transaction.
//!
//! The engine knows nothing about channels: a channel hands it an
//! [`Inbound`] (conversation key, message id, text) and renders the
//! [`Reply`].

use std::sync::Arc;

use chrono::Duration;

use crate::clock::Clock;
use crate::dialog::ConversationState;
use crate::dialog::render::{Vars, render};
use crate::dialog::spec::{AskStep, Dialog, InputKind, Outcome, Step};
use crate::domain::{Answer, Channel, Characters, ConversationKey, Email, Last4};
use crate::sms::SmsKind;
use crate::store::{AuditEvent, BlockRule, ConversationChange, ReplyWindow, Store, TurnCommit};
use crate::unlock::Unlock;
pub use crate::unlock::turn::{Input, Turn, TurnError};

/// Longest message the engine reads (Twilio's own limit is 1600 characters).
pub const MAX_INPUT_CHARS: usize = 1600;

/// Settings of the conversation that are not wording or flow.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A conversation idle this long expires.
    pub idle_timeout: Duration,
    /// The attempt limit, applied when a turn commits.
    pub block_rule: BlockRule,
    /// Replies one sender (phone number or chat) gets in a day
    /// (`SENDER_REPLIES_PER_DAY`); then one line saying so, then silence.
    pub replies_per_day: u32,
    /// Turns one conversation may take (`CONVERSATION_MAX_TURNS`) before it
    /// is ended.
    pub max_turns: u32,
}

/// One inbound message, whatever the channel.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub key: ConversationKey,
    /// The channel's id for this message (Twilio `MessageSid`, Telegram
    /// `update_id`), used to answer a repeated delivery without processing
    /// it twice.
    pub message_id: Option<String>,
    pub text: String,
    /// The user asked to start over (Telegram's `/start`): any conversation
    /// in progress ends and a new one begins.
    pub start_over: bool,
    /// The language the channel knows the user prefers (Telegram's
    /// `language_code`), for a conversation that starts with this message.
    pub language: Option<String>,
    /// The sender shared this phone number (E.164) as their own: the
    /// channel has checked that it is the sender's own (Telegram: a contact
    /// whose `user_id` is the sender's). The conversation then counts as
    /// coming from that number. The text of such a message is ignored.
    pub own_mobile: Option<String>,
    /// The channel can take a number shared as the user's own (Telegram's
    /// contact button): a conversation that does not know it offers it.
    pub can_share_number: bool,
}

/// An answer the step now waiting accepts, with its button label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// The engine's answer, for the channel to render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The paragraphs of the reply, in order.
    pub parts: Vec<String>,
    /// The step now waiting expects one of these answers (for buttons).
    pub choices: Vec<Choice>,
    /// The inbound text was a security answer (a chat may delete it).
    pub input_was_secret: bool,
    /// The reply shows the last 4 digits of the registered mobile (a chat
    /// deletes such messages once the conversation ends).
    pub shows_last4: bool,
    /// The conversation ended with this reply.
    pub ended: bool,
    /// This was a repeated delivery, answered from the record.
    pub repeated: bool,
    /// Offer the user to share their own phone number, with a button of
    /// this label (channels that can, see [`Inbound::can_share_number`]).
    pub share_number: Option<String>,
    /// The user shared their own number with this message (a channel may
    /// take its button away).
    pub number_shared: bool,
}

impl Reply {
    /// A reply of these paragraphs and nothing else: no buttons, nothing
    /// shown or shared, the conversation not ended.
    pub fn plain(parts: Vec<String>) -> Self {
        Self {
            parts,
            ..Self::default()
        }
    }

    /// The whole reply as one text.
    pub fn text(&self) -> String {
        self.parts.join("\n\n")
    }
}

fn parse_input(step: &AskStep, text: &str) -> Option<Input> {
    let kind = step.input;
    match kind {
        InputKind::Email => Email::parse(text).ok().map(Input::Email),
        InputKind::Last4 => Last4::parse(text).ok().map(Input::Last4),
        InputKind::Answer => {
            // Nothing left once normalised (a lone full stop) is no answer.
            let answer = Answer::new(text);
            (!answer.is_empty()).then_some(Input::Answer(answer))
        }
        InputKind::Characters => Characters::parse(text).ok().map(Input::Characters),
        // Only the options this step offers.
        InputKind::Option => text
            .trim()
            .trim_end_matches('.')
            .parse::<u8>()
            .ok()
            .filter(|o| step.options.contains(o))
            .map(Input::Option),
    }
}

/// How a turn begins.
enum Begin {
    /// A new conversation (none, it timed out, or the user started over).
    Start,
    /// The conversation in progress.
    Live(ConversationState),
    /// After a conversation ended, a message that does not start another.
    AfterEnd,
    /// The conversation in progress, switched to another language.
    Switched(ConversationState),
    /// The conversation in progress; the user has just shared their own
    /// number.
    Shared(ConversationState),
}

pub struct Engine {
    dialog: Arc<Dialog>,
    store: Arc<dyn Store>,
    unlock: Unlock,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    /// Rung after a turn queued texts, so this instance's worker sends them at once.
    outbox_wake: Arc<tokio::sync::Notify>,
}

impl Engine {
    pub fn new(
        dialog: Arc<Dialog>,
        store: Arc<dyn Store>,
        unlock: Unlock,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        Self {
            dialog,
            store,
            unlock,
            clock,
            config,
            outbox_wake: Arc::default(),
        }
    }

    /// Notified whenever a turn queues a text.
    pub fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_wake.clone()
    }

    pub fn dialog(&self) -> &Dialog {
        &self.dialog
    }

    /// What the unlock policy has asked of its ports (for tests).
    pub fn work(&self) -> Arc<crate::unlock::work::WorkCounter> {
        self.unlock.work()
    }

    /// The reply to send when a turn fails: nothing was changed.
    pub fn unavailable_reply(&self) -> Reply {
        Reply::plain(vec![
            self.dialog.wording.text("service_unavailable").to_owned(),
        ])
    }

    /// The reply when the service is overloaded: the message was not
    /// processed, nothing changed, and no attempt was counted.
    pub fn busy_reply(&self) -> Reply {
        Reply::plain(vec![self.dialog.wording.text("service_busy").to_owned()])
    }

    /// Run one turn. When the service is overloaded (hashing queue full, no
    /// database connection in time) the turn is abandoned before anything
    /// is stored and the reply asks the user to send the same message again.
    pub async fn handle(&self, inbound: Inbound) -> Result<Reply, TurnError> {
        use tracing::Instrument;
        let sender = inbound.key.masked_sender();
        let span = tracing::info_span!(
            "handle",
            conversation = %sender,
            channel = inbound.key.channel().as_str()
        );
        match self.turn(inbound, sender).instrument(span).await {
            Err(e) if e.is_busy() => {
                tracing::warn!(error = %e, "overloaded: turn not processed, user asked to resend");
                Ok(self.busy_reply())
            }
            other => other,
        }
    }

    async fn turn(&self, inbound: Inbound, sender: String) -> Result<Reply, TurnError> {
        // Held exclusively, in every instance, until the turn commits.
        let mut tx = self.store.begin_turn(&inbound.key).await?;
        let opening = tx.open(inbound.message_id.as_deref()).await?;
        if let Some(text) = opening.processed {
            tracing::info!("repeated delivery answered from the record");
            return Ok(Reply {
                repeated: true,
                ..Reply::plain(vec![text])
            });
        }

        let now = self.clock.now();
        let stored = match opening.conversation {
            // A state this version cannot read (say, after an upgrade)
            // starts the conversation afresh rather than failing forever.
            Err(e) => {
                tracing::warn!(error = %e, "stored conversation unreadable; starting again");
                None
            }
            Ok(stored) => stored,
        };
        let mut unreported = opening.unreported_failures;
        let mut parts = Vec::new();
        let mut turn = Turn {
            key: inbound.key.clone(),
            sender,
            now,
            state: ConversationState::default(),
            audit: Vec::new(),
            failures: Vec::new(),
            block_notices: Vec::new(),
            outbox: Vec::new(),
            account: None,
            shows_last4: false,
        };
        let mut input_was_secret = false;
        let mut expired = false;
        let text = inbound.text.trim();
        // The conversation's language: as stored; else the channel's hint;
        // else the default. A start word or a language word in any
        // language chooses that language.
        let stored_language = stored.as_ref().and_then(|c| c.state.language.clone());
        // ("cy-GB" is cy. An app set to English says little about the
        // language a Welsh speaker wants: only other languages count.)
        let hinted = inbound
            .language
            .as_deref()
            .and_then(|tag| tag.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .filter(|code| code != "en" && self.dialog.has_language(code));
        let started_in = self
            .dialog
            .wordings()
            .find(|w| w.is_start(text))
            .map(|w| w.code.clone());
        let switched_to = self
            .dialog
            .wordings()
            .find(|w| w.is_language(text))
            .map(|w| w.code.clone());
        let language = started_in
            .clone()
            .or(switched_to.clone())
            .or(stored_language)
            .or(hinted);
        let start_word = inbound.start_over || started_in.is_some();

        // The sender's reply budget (every channel but the local terminal):
        // once it is spent, one line says so and later messages get no
        // reply at all until the day-long window ends.
        let metered = inbound.key.channel() != Channel::Terminal;
        let window = match opening.reply_window {
            Some(w) if now - w.since < Duration::days(1) => w,
            _ => ReplyWindow {
                since: now,
                replies: 0,
            },
        };
        let counted = ReplyWindow {
            replies: window.replies.saturating_add(1),
            ..window
        };
        if metered && window.replies >= self.config.replies_per_day {
            let mut parts = Vec::new();
            if window.replies == self.config.replies_per_day {
                turn.state.language = language.clone();
                turn.audit("refusal", "reply_budget_spent");
                parts.push(self.say("replies_spent", &mut turn).await?);
            }
            let reply = Reply::plain(parts);
            tx.commit(TurnCommit {
                state: ConversationChange::Keep,
                now,
                processed: inbound.message_id.map(|id| (id, reply.text())),
                audit: turn.audit,
                failures: Vec::new(),
                block_notices: Vec::new(),
                block_rule: self.config.block_rule,
                outbox: Vec::new(),
                reported_failures: Vec::new(),
                replies: Some(counted),
            })
            .await?;
            return Ok(reply);
        }
        // The number the user shared as their own: just now, or earlier in
        // this chat (a keyed hash, never the number).
        let shared = inbound
            .own_mobile
            .as_deref()
            .map(|e164| self.unlock.own_mobile_hash(e164));
        let own_mobile = shared
            .clone()
            .or_else(|| stored.as_ref().and_then(|c| c.state.own_mobile.clone()));
        let live = match stored {
            Some(c) if now - c.updated_at > self.config.idle_timeout => {
                // (An ended conversation kept only to answer "thanks" is
                // not one that timed out.)
                if !c.state.ended {
                    turn.state = c.state;
                    turn.audit("conversation", "expired");
                    expired = true;
                }
                Begin::Start
            }
            Some(c) if c.state.ended && switched_to.is_some() => {
                let _ = c;
                Begin::Start
            }
            Some(c) if c.state.ended => {
                // After a conversation has ended, only the start word or an
                // email address starts another; anything else ("Thanks!",
                // a second EXIT) gets one short line.
                let email = matches!(self.dialog.step(&self.dialog.start), Some(Step::Ask(a)) if parse_input(a, text).is_some());
                if start_word || email {
                    Begin::Start
                } else {
                    Begin::AfterEnd
                }
            }
            Some(c) if start_word => {
                turn.state = c.state;
                turn.audit("conversation", "restarted");
                Begin::Start
            }
            Some(mut c) if switched_to.is_some() => {
                c.state.language = language.clone();
                turn.audit("conversation", "language");
                Begin::Switched(c.state)
            }
            Some(c) => Begin::Live(c.state),
            None => Begin::Start,
        };
        // A shared number is noted in the conversation in progress (which
        // then goes on where it was) or starts one.
        let live = match (live, shared.is_some()) {
            (Begin::Live(mut state) | Begin::Switched(mut state), true) => {
                state.own_mobile = own_mobile.clone();
                Begin::Shared(state)
            }
            (Begin::AfterEnd, true) => Begin::Start,
            (live, _) => live,
        };
        if shared.is_some() {
            turn.audit("contact", "own_number_shared");
        }

        let mut reported_failures = Vec::new();
        let mut offered = false;
        let before = match &live {
            Begin::Live(state) => Some(state.clone()),
            _ => None,
        };
        let ran = async {
            Ok::<_, TurnError>(match live {
            Begin::AfterEnd => {
                turn.state.language = language.clone();
                parts.push(self.say("conversation_ended", &mut turn).await?);
                None
            }
            Begin::Switched(state) => {
                // Said again in the new language; nothing else changes.
                turn.state = state;
                turn.state.turns = turn.state.turns.saturating_add(1);
                let step = turn.state.step.clone();
                self.enter(&step, false, &mut turn, &mut parts).await?
            }
            Begin::Shared(state) => {
                // Thanked, then asked again where the conversation was.
                turn.state = state;
                turn.state.turns = turn.state.turns.saturating_add(1);
                parts.push(self.say("chat_number_shared", &mut turn).await?);
                let step = turn.state.step.clone();
                self.enter(&step, false, &mut turn, &mut parts).await?
            }
            Begin::Start => {
                // A text that finally failed since the user's last
                // conversation: say so first. (Reported only as a
                // conversation starts, where the SMS budget allows for it;
                // the user waiting for a password that never came texts
                // again.)
                let failed = std::mem::take(&mut unreported);
                if failed
                    .iter()
                    .any(|(_, kind)| *kind == SmsKind::TempPassword)
                {
                    parts.push(self.say("text_not_delivered", &mut turn).await?);
                }
                reported_failures = failed.into_iter().map(|(id, _)| id).collect();
                turn.state = ConversationState {
                    language: language.clone(),
                    own_mobile: own_mobile.clone(),
                    turns: 1,
                    ..ConversationState::default()
                };
                turn.audit("conversation", "started");
                if shared.is_some() {
                    parts.push(self.say("chat_number_shared", &mut turn).await?);
                }
                // A conversation that timed out says so instead of greeting.
                let opening = if expired { "expired" } else { "greeting" };
                parts.push(self.say(opening, &mut turn).await?);
                if inbound.can_share_number && own_mobile.is_none() {
                    parts.push(self.say("chat_share_number_offer", &mut turn).await?);
                    offered = true;
                }
                let start = self.dialog.start.clone();
                // A first text that already answers the first question (an
                // email address) is taken as its answer.
                let answers_start = matches!(self.dialog.step(&start), Some(Step::Ask(a)) if parse_input(a, text).is_some());
                if answers_start && !start_word && switched_to.is_none() && shared.is_none() {
                    turn.state.step = start;
                    self.advance(text, &mut turn, &mut parts, &mut input_was_secret)
                        .await?
                } else {
                    self.enter(&start, true, &mut turn, &mut parts).await?
                }
            }
            Begin::Live(state) => {
                turn.state = state;
                turn.state.turns = turn.state.turns.saturating_add(1);
                if turn.state.turns > self.config.max_turns {
                    // `?` (or anything) forever is not a conversation.
                    turn.audit("conversation", "too_many_turns");
                    parts.push(self.say("too_many_turns", &mut turn).await?);
                    None
                } else {
                    if let Some(account) = &turn.state.email {
                        tx.lock_account(account).await?;
                    }
                    self.advance(&inbound.text, &mut turn, &mut parts, &mut input_was_secret)
                        .await?
                }
            }
        })
        }
        .await;
        let next_state = match ran {
            Ok(next) => next,
            // The directory could not be read: nothing of this turn is kept
            // (the conversation stays where it was, no failure is counted,
            // nothing is queued) but a line in the audit, and the user is
            // told plainly, in a normal reply, to send it again.
            Err(TurnError::Directory(e)) => {
                tracing::warn!(error = %e, "directory unavailable; turn not applied");
                turn.audit.clear();
                turn.failures.clear();
                turn.outbox.clear();
                turn.audit("directory", "unavailable");
                parts.clear();
                turn.shows_last4 = false;
                parts.push(self.dialog.wording.text("directory_unavailable").to_owned());
                input_was_secret = false;
                before
            }
            Err(e) => return Err(e),
        };

        let choices = match next_state.as_ref().and_then(|s| self.dialog.step(&s.step)) {
            Some(Step::Ask(ask)) if ask.input == InputKind::Option => ask
                .options
                .iter()
                .map(|value| Choice {
                    value: value.to_string(),
                    label: self
                        .dialog
                        .wording_for(turn.state.language.as_deref())
                        .text(&format!("option_{value}_button"))
                        .to_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let ended = next_state.is_none();
        // An ended conversation is kept, with nothing of it but that it
        // ended, until it would have timed out: a "thanks" after it gets a
        // short line rather than a new greeting.
        let next_state = next_state.unwrap_or_else(|| {
            ConversationState::ended(turn.state.language.clone(), turn.state.own_mobile.clone())
        });
        // A chat that can share the user's own number is offered to, as a
        // conversation starts, until it has.
        let share_number = (offered && !next_state.ended).then(|| {
            self.dialog
                .wording_for(turn.state.language.as_deref())
                .text("chat_share_number_button")
                .to_owned()
        });
        let reply = Reply {
            parts,
            choices,
            input_was_secret,
            shows_last4: turn.shows_last4,
            ended,
            repeated: false,
            share_number,
            number_shared: shared.is_some(),
        };
        let queued = !turn.outbox.is_empty();
        tx.commit(TurnCommit {
            state: ConversationChange::Save(next_state),
            now,
            processed: inbound.message_id.map(|id| (id, reply.text())),
            audit: turn.audit,
            failures: turn.failures,
            block_notices: turn.block_notices,
            block_rule: self.config.block_rule,
            outbox: turn.outbox,
            reported_failures,
            replies: metered.then_some(counted),
        })
        .await?;
        if queued {
            self.outbox_wake.notify_waiters();
        }
        Ok(reply)
    }

    /// End a conversation without a reply (the user can no longer be
    /// reached, for example they blocked the bot).
    pub async fn end_quietly(&self, key: &ConversationKey, why: &str) -> Result<(), TurnError> {
        let mut tx = self.store.begin_turn(key).await?;
        let Some(stored) = tx.load_conversation().await? else {
            return Ok(());
        };
        let mut turn = Turn {
            key: key.clone(),
            sender: key.masked_sender(),
            now: self.clock.now(),
            state: stored.state,
            audit: Vec::new(),
            failures: Vec::new(),
            block_notices: Vec::new(),
            outbox: Vec::new(),
            account: None,
            shows_last4: false,
        };
        turn.audit("conversation", why);
        tx.commit(TurnCommit {
            state: ConversationChange::Delete,
            now: turn.now,
            processed: None,
            audit: turn.audit,
            failures: Vec::new(),
            block_notices: Vec::new(),
            block_rule: self.config.block_rule,
            outbox: Vec::new(),
            reported_failures: Vec::new(),
            replies: None,
        })
        .await?;
        Ok(())
    }

    /// A message the service does not answer at all (a sender outside
    /// `SMS_SENDER_COUNTRIES`): only an audit line records it.
    pub async fn not_answered(&self, key: &ConversationKey, why: &str) -> Result<(), TurnError> {
        self.store
            .record_audit(AuditEvent {
                at: self.clock.now(),
                channel: key.channel().as_str().to_owned(),
                sender: key.masked_sender(),
                account: None,
                event: "refusal".to_owned(),
                outcome: why.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Handle input in a live conversation. Returns the state to store, or
    /// `None` when the conversation ends.
    async fn advance(
        &self,
        raw: &str,
        turn: &mut Turn,
        parts: &mut Vec<String>,
        input_was_secret: &mut bool,
    ) -> Result<Option<ConversationState>, TurnError> {
        let text = raw.trim();
        let dialog = Arc::clone(&self.dialog);
        let wording = dialog.wording_for(turn.state.language.as_deref());
        let Some(Step::Ask(step)) = dialog.step(&turn.state.step) else {
            // The stored step no longer exists (the dialog was edited) or is
            // final: start afresh rather than fail.
            tracing::warn!(step = %turn.state.step, "stored step is not an open step; starting again");
            turn.state = ConversationState {
                language: turn.state.language.clone(),
                ..ConversationState::default()
            };
            parts.push(self.say("greeting", turn).await?);
            return self.enter(&dialog.start, true, turn, parts).await;
        };
        if wording.is_cancel(text) {
            turn.audit("conversation", "cancelled");
            parts.push(self.say("cancelled", turn).await?);
            return Ok(None);
        }
        if wording.is_help(text) {
            parts.push(self.say(&step.help, turn).await?);
            parts.push(self.say(&step.prompt, turn).await?);
            return Ok(Some(turn.state.clone()));
        }
        *input_was_secret = matches!(step.input, InputKind::Answer | InputKind::Characters);
        let input = if text.chars().count() > MAX_INPUT_CHARS {
            parts.push(self.say("message_too_long", turn).await?);
            None
        } else {
            parse_input(step, text)
        };
        let Some(input) = input else {
            return self.invalid(step, turn, parts).await;
        };
        turn.state.invalid_in_a_row = 0;
        let outcome = self.unlock.run(step.action, input, turn).await?;
        self.follow(step, outcome, turn, parts).await
    }

    async fn invalid(
        &self,
        step: &AskStep,
        turn: &mut Turn,
        parts: &mut Vec<String>,
    ) -> Result<Option<ConversationState>, TurnError> {
        turn.state.invalid_in_a_row += 1;
        if turn.state.invalid_in_a_row >= self.dialog.max_invalid {
            turn.audit("conversation", "too_many_invalid");
            parts.push(self.say("too_many_invalid", turn).await?);
            return Ok(None);
        }
        parts.push(self.say(&step.hint, turn).await?);
        Ok(Some(turn.state.clone()))
    }

    async fn follow(
        &self,
        step: &AskStep,
        outcome: Outcome,
        turn: &mut Turn,
        parts: &mut Vec<String>,
    ) -> Result<Option<ConversationState>, TurnError> {
        let transition = step.on.get(&outcome).ok_or_else(|| {
            TurnError::Internal(format!(
                "validated dialog lacks outcome {}",
                outcome.as_str()
            ))
        })?;
        for id in &transition.say {
            parts.push(self.say(id, turn).await?);
        }
        self.enter(&transition.to, transition.notes, turn, parts)
            .await
    }

    /// Enter a step: an end step says its message and ends the
    /// conversation; an asking step shows its notes (if wanted) and prompt;
    /// a route goes on to the first branch whose facts hold.
    async fn enter(
        &self,
        step_id: &str,
        with_notes: bool,
        turn: &mut Turn,
        parts: &mut Vec<String>,
    ) -> Result<Option<ConversationState>, TurnError> {
        let mut step_id = step_id.to_owned();
        if let Some(Step::Route(routes)) = self.dialog.step(&step_id) {
            let facts = self.unlock.facts(turn).await?;
            // Validated: the last branch always holds, and leads to no route.
            step_id = routes
                .iter()
                .find(|r| r.when.iter().all(|f| facts.contains(f)))
                .map(|r| r.to.clone())
                .ok_or_else(|| TurnError::Internal(format!("route {step_id} has no branch")))?;
        }
        let step_id = step_id.as_str();
        match self.dialog.step(step_id) {
            Some(Step::Route(_)) => Err(TurnError::Internal(format!(
                "route leads to route {step_id}"
            ))),
            Some(Step::End { say }) => {
                parts.push(self.say(say, turn).await?);
                Ok(None)
            }
            Some(Step::Ask(ask)) => {
                turn.state.step = step_id.to_owned();
                if with_notes && !ask.notes.is_empty() {
                    let facts = self.unlock.facts(turn).await?;
                    for note in &ask.notes {
                        if facts.contains(&note.when) {
                            parts.push(self.say(&note.say, turn).await?);
                        }
                    }
                }
                parts.push(self.say(&ask.prompt, turn).await?);
                Ok(Some(turn.state.clone()))
            }
            None => Err(TurnError::Internal(format!(
                "validated dialog lacks step {step_id}"
            ))),
        }
    }

    /// A message of the wording, rendered for this turn.
    async fn say(&self, id: &str, turn: &mut Turn) -> Result<String, TurnError> {
        let template = self
            .dialog
            .wording_for(turn.state.language.as_deref())
            .text(id);
        let mut vars = Vars::new();
        vars.insert(
            "idle_minutes",
            self.config.idle_timeout.num_minutes().to_string(),
        );
        if template.contains('{') {
            self.unlock.vars(turn, &mut vars).await?;
        }
        if template.contains("{last4}") && vars.contains_key("last4") {
            turn.shows_last4 = true;
        }
        Ok(render(template, &vars))
    }
}
