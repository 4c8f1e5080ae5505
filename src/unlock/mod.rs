//! The actions of the unlock flow and the service's policy, written against
//! the directory, store and SMS sender traits. The dialog decides where each
//! outcome leads; this module decides the outcome.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

pub mod turn;
pub mod work;

use crate::dialog::render::{Vars, render};
use crate::dialog::spec::TEMP_PASSWORD_MESSAGE;
use crate::dialog::{ActionKind, Dialog, Fact, Outcome};
use crate::directory::{
    Account, AccountCommand, Directory, DirectoryError, Disabled, SecurityQuestion,
};
use crate::domain::{
    Answer, AnswerCharacters, AnswerSlot, AnswersKey, Channel, Characters, Email, Last4,
    RegisteredMobile, SenderKey, TempPassword, UkMobile,
};
use crate::enrolment::Enrolments;
use crate::hashing::Hasher;
use crate::sms::outbox::{OutboxKey, queue};
use crate::sms::{OutboundSms, SmsKind};
use crate::store::{FailureCounts, Store};
use turn::{Input, KnownAccount, Turn, TurnError};
use work::{Work, WorkCounter};

/// How security answers are asked for (`ANSWER_MODE`).
#[derive(Debug, Clone, Default)]
pub enum AnswerMode {
    /// The whole answer, checked against its argon2id hash.
    #[default]
    Whole,
    /// Three characters at positions chosen at random, checked against the
    /// answer sealed under `ANSWERS_KEY`. An answer too short for this, or
    /// enrolled without the key, cannot be used.
    Characters(AnswersKey),
}

/// The service's rules, with the published procedure's values as defaults.
#[derive(Debug, Clone)]
pub struct UnlockPolicy {
    /// Security questions asked per conversation, chosen at random.
    pub questions_to_ask: usize,
    pub answer_mode: AnswerMode,
    pub temp_password_length: usize,
    /// Failed verifications within `failure_window` that block self-service.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub block_for: Duration,
    /// A sender (phone number or chat) that has failed verification against
    /// this many accounts within `sender_window` is stopped before it can
    /// fail against (and so block) another.
    pub sender_max_accounts: u32,
    pub sender_window: Duration,
    /// How long a verification lasts, however busy the conversation.
    pub verified_lifetime: Duration,
    /// New or transferred Same Sign On accounts wait this long before a reset.
    pub same_sign_on_wait: Duration,
    pub password_lifetime: Duration,
    /// Who to contact, in the security notice texts.
    pub contact: String,
}

impl Default for UnlockPolicy {
    fn default() -> Self {
        Self {
            questions_to_ask: 2,
            answer_mode: AnswerMode::Whole,
            temp_password_length: 12,
            max_failures: 3,
            failure_window: Duration::hours(24),
            block_for: Duration::hours(24),
            sender_max_accounts: 3,
            sender_window: Duration::hours(24),
            verified_lifetime: Duration::minutes(10),
            same_sign_on_wait: Duration::hours(24),
            password_lifetime: crate::directory::password_lifetime(),
            contact: DEFAULT_CONTACT.into(),
        }
    }
}

impl UnlockPolicy {
    /// The attempt limit, as the store applies it.
    pub fn block_rule(&self) -> crate::store::BlockRule {
        crate::store::BlockRule {
            max_failures: self.max_failures,
            window: self.failure_window,
            block_for: self.block_for,
        }
    }

    /// When a Same Sign On account that is too new may reset, if it must wait.
    pub fn reset_waits_until(
        &self,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !account.same_sign_on {
            return None;
        }
        let allowed = account.synced_at? + self.same_sign_on_wait;
        (now < allowed).then_some(allowed)
    }

    pub fn password_expired_on(
        &self,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if account.must_change_password {
            return None;
        }
        let expires = account.password_set_at? + self.password_lifetime;
        (expires <= now).then_some(expires)
    }
}

pub use crate::dialog::spec::DEFAULT_CONTACT;

/// The characters of an enrolled answer, opened from its seal under `key`;
/// `None` when it was enrolled without `ANSWERS_KEY` or does not open
/// (another key, or moved from another enrolment).
fn characters_of(key: &AnswersKey, question: &SecurityQuestion) -> Option<AnswerCharacters> {
    let sealed = question.answer_sealed.as_ref()?;
    let slot = AnswerSlot {
        owner: &question.owner,
        position: question.position,
        normalisation: question.answer_hash.normalisation,
    };
    match key.open(sealed, slot) {
        Ok(characters) => Some(characters),
        Err(e) => {
            tracing::warn!(error = %e, position = question.position, "a sealed security answer did not open (is ANSWERS_KEY the key it was imported with?)");
            None
        }
    }
}

/// How many temporary passwords are offered to a directory that refuses
/// them under its password policy before the reset is given up.
pub const TEMP_PASSWORD_TRIES: usize = 3;

/// Each password offered after a refusal is this much longer: a domain
/// whose policy wants longer passwords than ours accepts a later one.
const LONGER_AFTER_REFUSAL: usize = 4;

pub struct Unlock {
    directory: Arc<dyn Directory>,
    enrolments: Arc<dyn Enrolments>,
    hasher: Hasher,
    store: Arc<dyn Store>,
    outbox_key: OutboxKey,
    dialog: Arc<Dialog>,
    policy: UnlockPolicy,
    /// Numbers users share as their own are kept, and compared, as keyed
    /// hashes under this key.
    senders: SenderKey,
    /// What the policy asked of its ports (see [`work`]).
    work: Arc<WorkCounter>,
}

impl Unlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        directory: Arc<dyn Directory>,
        enrolments: Arc<dyn Enrolments>,
        hasher: Hasher,
        store: Arc<dyn Store>,
        outbox_key: OutboxKey,
        dialog: Arc<Dialog>,
        policy: UnlockPolicy,
        senders: SenderKey,
    ) -> Self {
        Self {
            directory,
            enrolments,
            hasher,
            store,
            outbox_key,
            dialog,
            policy,
            senders,
            work: Arc::default(),
        }
    }

    /// What the policy has asked of its ports since start-up.
    pub fn work(&self) -> Arc<WorkCounter> {
        self.work.clone()
    }

    /// How a number the user shared as their own is kept in the
    /// conversation (a keyed hash, never the number).
    pub fn own_mobile_hash(&self, e164: &str) -> String {
        self.senders.mobile(e164)
    }

    /// Queue a text in this turn's transaction.
    fn queue(&self, sms: OutboundSms, email: &Email, turn: &mut Turn) -> Result<(), TurnError> {
        let item = queue(&self.outbox_key, sms, email, turn.sender.clone())
            .map_err(|e| TurnError::Internal(e.to_string()))?;
        turn.outbox.push(item);
        Ok(())
    }

    /// The named account and its questions, looked up once per turn.
    async fn account(&self, turn: &mut Turn) -> Result<Option<KnownAccount>, TurnError> {
        if let Some(cached) = &turn.account {
            return Ok(cached.clone());
        }
        let found = match &turn.state.email {
            Some(email) => {
                self.work.note(Work::DirectoryFind);
                let account = self.directory.find(email).await?;
                // An unknown email is looked up in the enrolments too (under
                // the email, as the built-in directory's ids are), so that
                // it takes as long as a known one.
                self.work.note(Work::EnrolmentQuestions);
                match account {
                    Some(account) => {
                        let questions = self
                            .enrolments
                            .questions(&account.account.id, account.email())
                            .await?;
                        Some(KnownAccount { account, questions })
                    }
                    None => {
                        let id = crate::directory::AccountId::new(email.as_str());
                        let _ = self.enrolments.questions(&id, email).await?;
                        None
                    }
                }
            }
            None => None,
        };
        turn.account = Some(found.clone());
        Ok(found)
    }

    fn email(turn: &Turn) -> Result<Email, TurnError> {
        turn.state
            .email
            .clone()
            .ok_or_else(|| TurnError::Internal("no email in the conversation".into()))
    }

    /// Run an action on parsed input.
    pub async fn run(
        &self,
        action: ActionKind,
        input: Input,
        turn: &mut Turn,
    ) -> Result<Outcome, TurnError> {
        match (action, input) {
            (ActionKind::LookupAccount, Input::Email(email)) => {
                turn.state.email = Some(email);
                turn.state.questions.clear();
                turn.state.positions.clear();
                turn.state.answered = 0;
                turn.state.answers_ok = false;
                turn.state.verified = false;
                turn.state.verified_at = None;
                turn.account = None;
                Ok(Outcome::Next)
            }
            (ActionKind::CheckMobileDigits, Input::Last4(digits)) => {
                self.check_digits(digits, turn).await
            }
            (ActionKind::CheckAnswer, Input::Answer(answer)) => {
                self.check_answer(answer, turn).await
            }
            (ActionKind::CheckCharacters, Input::Characters(reply)) => {
                self.check_characters(reply, turn).await
            }
            (ActionKind::ChooseOption, Input::Option(choice)) => self.choose(choice, turn).await,
            (action, _) => Err(TurnError::Internal(format!(
                "action {} got the wrong kind of input",
                action.as_str()
            ))),
        }
    }

    async fn check_digits(&self, digits: Last4, turn: &mut Turn) -> Result<Outcome, TurnError> {
        let email = Self::email(turn)?;
        let counts = self.failure_counts(&email, turn).await?;
        if counts.other_accounts_by_sender >= i64::from(self.policy.sender_max_accounts) {
            turn.audit("refusal", "sender_paused");
            return Ok(Outcome::SenderPaused);
        }
        // An unknown email goes through the same steps as a known one with
        // the wrong digits (the same look-ups, block check, comparison and
        // counted failure), so that the reply does not come sooner for it.
        let known = self.account(turn).await?;
        let found = known.as_ref().map(|k| &k.account);
        if self.blocked(&email, found, counts, turn).await? {
            turn.audit("refusal", "blocked");
            return Ok(Outcome::Failed);
        }
        let registered = found.and_then(|a| a.mobile.clone());
        let expected = registered
            .as_ref()
            .map_or_else(Last4::placeholder, RegisteredMobile::last4);
        self.work.note(Work::DigitsCompared);
        let matched = expected.matches(&digits);
        let Some(KnownAccount { account, questions }) = known else {
            self.fail(&email, None, "unknown_account", counts, turn)
                .await?;
            return Ok(Outcome::Failed);
        };
        let Some(mobile) = registered else {
            turn.audit("verification", "failed:no_mobile");
            return Ok(Outcome::Failed);
        };
        if !matched {
            self.fail(&email, Some(&mobile), "wrong_digits", counts, turn)
                .await?;
            return Ok(Outcome::Failed);
        }
        match account.disabled {
            Some(Disabled::InDirectory) => {
                turn.audit("refusal", "disabled_in_directory");
                return Ok(Outcome::DirectoryDisabled);
            }
            Some(Disabled::NonUkMobile) => {
                turn.audit("refusal", "non_uk_mobile");
                return Ok(Outcome::Disabled);
            }
            None => {}
        }
        let need = self.policy.questions_to_ask.max(1);
        if questions.len() < need {
            turn.audit("verification", "failed:not_enough_questions");
            return Ok(Outcome::Failed);
        }
        // Asked for by characters, only answers sealed under ANSWERS_KEY
        // and long enough can be used; too few of them, and the account is
        // sent to its Local Administrator as one without questions is.
        let usable: Vec<u32> = match &self.policy.answer_mode {
            AnswerMode::Whole => questions.iter().map(|q| q.position).collect(),
            AnswerMode::Characters(key) => questions
                .iter()
                .filter(|q| characters_of(key, q).is_some_and(|c| c.usable()))
                .map(|q| q.position)
                .collect(),
        };
        if usable.len() < need {
            turn.audit("verification", "failed:answers_not_usable_by_characters");
            return Ok(Outcome::Failed);
        }
        let mut rng = rand::rng();
        let chosen = rand::seq::index::sample(&mut rng, usable.len(), need);
        turn.state.questions = chosen.into_iter().map(|i| usable[i]).collect();
        turn.state.answered = 0;
        turn.state.answers_ok = true;
        self.choose_positions(&questions, turn);
        turn.audit("verification", "digits_ok");
        Ok(Outcome::Verified)
    }

    /// `ANSWER_MODE=characters`: choose afresh the positions asked for in
    /// the question now to be asked (none in whole mode).
    fn choose_positions(&self, questions: &[SecurityQuestion], turn: &mut Turn) {
        turn.state.positions.clear();
        let AnswerMode::Characters(key) = &self.policy.answer_mode else {
            return;
        };
        let Some(position) = turn.state.questions.get(turn.state.answered) else {
            return;
        };
        if let Some(characters) = questions
            .iter()
            .find(|q| q.position == *position)
            .and_then(|q| characters_of(key, q))
        {
            turn.state.positions = characters.choose_positions();
        }
    }

    async fn check_answer(&self, answer: Answer, turn: &mut Turn) -> Result<Outcome, TurnError> {
        let account = self.account(turn).await?;
        let position = turn.state.questions.get(turn.state.answered).copied();
        let stored = account
            .as_ref()
            .and_then(|a| a.questions.iter().find(|q| Some(q.position) == position))
            .map(|q| q.answer_hash.clone());
        let right = match stored {
            Some(stored) => self.hasher.verify_answer(answer, stored).await?,
            None => false,
        };
        self.answered(right, account, turn).await
    }

    /// Characters of the answer to the question waiting, at the positions
    /// asked for: checked against the answer sealed under `ANSWERS_KEY`.
    async fn check_characters(
        &self,
        reply: Characters,
        turn: &mut Turn,
    ) -> Result<Outcome, TurnError> {
        let account = self.account(turn).await?;
        let position = turn.state.questions.get(turn.state.answered).copied();
        let question = account
            .as_ref()
            .and_then(|a| a.questions.iter().find(|q| Some(q.position) == position));
        let right = match (&self.policy.answer_mode, question) {
            (AnswerMode::Characters(key), Some(q)) => characters_of(key, q).is_some_and(|c| {
                c.usable() && c.matches(&turn.state.positions, &reply, q.answer_hash.normalisation)
            }),
            _ => false,
        };
        self.answered(right, account, turn).await
    }

    /// An answer (whole or by characters) has been checked: ask the next
    /// question, or once all are answered, verify or count a failure.
    async fn answered(
        &self,
        right: bool,
        account: Option<KnownAccount>,
        turn: &mut Turn,
    ) -> Result<Outcome, TurnError> {
        let email = Self::email(turn)?;
        turn.state.answers_ok &= right;
        turn.state.answered += 1;
        if turn.state.answered < turn.state.questions.len() {
            let questions = account.map(|a| a.questions).unwrap_or_default();
            self.choose_positions(&questions, turn);
            return Ok(Outcome::NextQuestion);
        }
        turn.state.positions.clear();
        let counts = self.failure_counts(&email, turn).await?;
        let known = account.map(|a| a.account);
        if !turn.state.answers_ok {
            let mobile = known.as_ref().and_then(|a| a.mobile.clone());
            self.fail(&email, mobile.as_ref(), "wrong_answers", counts, turn)
                .await?;
            return Ok(Outcome::Failed);
        }
        let blocked = match &known {
            Some(account) => self.blocked(&email, Some(account), counts, turn).await?,
            None => true,
        };
        if blocked {
            turn.audit("refusal", "blocked");
            return Ok(Outcome::Failed);
        }
        turn.state.verified = true;
        turn.state.verified_at = Some(turn.now);
        turn.audit("verification", "verified");
        Ok(Outcome::Verified)
    }

    /// Failures counted against the account and by this conversation's
    /// sender (the account is held for the turn, so they cannot change
    /// until it commits).
    async fn failure_counts(&self, email: &Email, turn: &Turn) -> Result<FailureCounts, TurnError> {
        self.work.note(Work::FailureCounts);
        Ok(self
            .store
            .failure_counts(
                email,
                &turn.key,
                turn.now - self.policy.failure_window,
                turn.now - self.policy.sender_window,
            )
            .await?)
    }

    /// Whether the account's self-service is blocked for this conversation.
    /// A conversation from the account's own registered mobile is blocked
    /// only by its own failures: others' failures cannot lock the owner out.
    async fn blocked(
        &self,
        email: &Email,
        account: Option<&Account>,
        counts: FailureCounts,
        turn: &Turn,
    ) -> Result<bool, TurnError> {
        if account.is_some_and(|a| self.comes_from_own_mobile(a, turn)) {
            return Ok(counts.account_by_sender >= i64::from(self.policy.max_failures));
        }
        self.work.note(Work::BlockedUntil);
        Ok(self.store.blocked_until(email, turn.now).await?.is_some())
    }

    /// The conversation comes from the account's registered mobile: an SMS
    /// whose sender is that number, or a chat whose user shared that number
    /// as their own (Telegram's contact button, checked by the channel to
    /// be the sender's own contact).
    fn comes_from_own_mobile(&self, account: &Account, turn: &Turn) -> bool {
        let Some(RegisteredMobile::Uk(mobile)) = &account.mobile else {
            return false;
        };
        match turn.key.channel() {
            Channel::Sms => mobile.as_e164() == turn.key.external_id(),
            Channel::Telegram => turn.state.own_mobile.as_deref().is_some_and(|shared| {
                let registered = self.senders.mobile(mobile.as_e164());
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    shared.as_bytes(),
                    registered.as_bytes(),
                ))
            }),
            Channel::Terminal => false,
        }
    }

    /// Count a failed verification; the store blocks the account when it
    /// is one too many (inside the commit, so instances agree). When this
    /// failure blocks the account, its registered mobile is told, at most
    /// once a day.
    async fn fail(
        &self,
        email: &Email,
        mobile: Option<&RegisteredMobile>,
        reason: &str,
        counts: FailureCounts,
        turn: &mut Turn,
    ) -> Result<(), TurnError> {
        turn.audit("verification", &format!("failed:{reason}"));
        turn.failures.push(email.clone());
        self.work.note(Work::FailureRecorded);
        if counts.account + 1 != i64::from(self.policy.max_failures) {
            return Ok(());
        }
        // Asked whether or not there is a mobile to tell (an unknown email
        // takes the same steps as a known one).
        self.work.note(Work::LastBlockNotice);
        let last = self.store.last_block_notice(email).await?;
        let Some(RegisteredMobile::Uk(mobile)) = mobile else {
            return Ok(());
        };
        if let Some(last) = last
            && turn.now - last < Duration::hours(24)
        {
            return Ok(());
        }
        let wording = self.dialog.wording_for(turn.state.language.as_deref());
        let until = wording.time(turn.now + self.policy.block_for);
        let contact = self.contact(turn);
        let mut vars = Vars::new();
        vars.insert("contact", contact.clone());
        vars.insert("until", until.clone());
        let sms = OutboundSms {
            to: mobile.clone(),
            body: SecretString::from(render(wording.text("sms_notice_blocked"), &vars)),
            kind: SmsKind::NoticeBlocked,
            personalisation: vec![
                ("contact".to_owned(), SecretString::from(contact)),
                ("until".to_owned(), SecretString::from(until)),
            ],
            reference: String::new(),
        };
        self.queue(sms, email, turn)?;
        turn.block_notices.push(email.clone());
        turn.audit("notice", "blocked_notice_queued");
        Ok(())
    }

    async fn choose(&self, choice: u8, turn: &mut Turn) -> Result<Outcome, TurnError> {
        if !turn.state.verified {
            return Err(TurnError::Internal(
                "options offered before verification".into(),
            ));
        }
        // Verification has an absolute lifetime, however often the user
        // writes meanwhile.
        if turn
            .state
            .verified_at
            .is_none_or(|at| turn.now - at >= self.policy.verified_lifetime)
        {
            turn.audit("refusal", "verification_expired");
            return Ok(Outcome::VerificationExpired);
        }
        let email = Self::email(turn)?;
        let account = self
            .account(turn)
            .await?
            .ok_or_else(|| TurnError::Internal("verified account vanished".into()))?
            .account;
        // A block set since the user verified (others' failures, unless this
        // is the registered mobile) stops the change too.
        let counts = self.failure_counts(&email, turn).await?;
        if self.blocked(&email, Some(&account), counts, turn).await? {
            turn.audit("refusal", "blocked");
            return Ok(Outcome::Failed);
        }
        if account.disabled == Some(Disabled::InDirectory) {
            turn.audit("refusal", "disabled_in_directory");
            return Ok(Outcome::DirectoryDisabled);
        }
        let Some(RegisteredMobile::Uk(mobile)) = account.mobile.clone() else {
            return Err(TurnError::Internal(
                "verified account has no UK mobile".into(),
            ));
        };
        if choice == 1 {
            if !account.locked {
                turn.audit("unlock", "not_locked");
                return Ok(Outcome::NotLocked);
            }
            let command = AccountCommand::Unlock {
                account: account.account.clone(),
            };
            match self.directory.apply(&command, turn.now).await {
                Ok(()) => {}
                Err(e @ DirectoryError::Busy(_)) => return Err(e.into()),
                Err(e) => return Ok(self.not_changed("unlock", &e, turn)),
            }
            turn.audit("unlock", "unlocked");
            self.notice(&mobile, SmsKind::NoticeUnlocked, &email, turn)?;
            return Ok(Outcome::Unlocked);
        }
        if self.policy.reset_waits_until(&account, turn.now).is_some() {
            turn.audit("refusal", "reset_waiting_same_sign_on");
            return Ok(Outcome::ResetWaiting);
        }
        let Some(password) = self.set_temporary_password(&account, turn).await? else {
            return Ok(Outcome::NotChanged);
        };
        let mut vars = Vars::new();
        vars.insert("password", password.expose_secret().to_owned());
        let body = SecretString::from(render(
            self.dialog
                .wording_for(turn.state.language.as_deref())
                .text(TEMP_PASSWORD_MESSAGE),
            &vars,
        ));
        drop(vars);
        let sms = OutboundSms {
            to: mobile.clone(),
            body,
            kind: SmsKind::TempPassword,
            personalisation: vec![(
                "password".to_owned(),
                SecretString::from(password.expose_secret().to_owned()),
            )],
            reference: String::new(),
        };
        // The directory has accepted exactly this password; the text carrying
        // it commits with this turn. If the text finally fails, the worker
        // asks the directory to put the previous password back.
        self.queue(sms, &email, turn)?;
        turn.audit("reset", "temp_password_queued");
        self.notice(&mobile, SmsKind::NoticeReset, &email, turn)?;
        Ok(Outcome::ResetSent)
    }

    /// Offer the directory temporary passwords until it accepts one (a
    /// refusal under its password policy gets a new, longer one), at most
    /// [`TEMP_PASSWORD_TRIES`] times. `None` when the account was left as it
    /// was (every password refused, or the directory failed).
    async fn set_temporary_password(
        &self,
        account: &Account,
        turn: &mut Turn,
    ) -> Result<Option<TempPassword>, TurnError> {
        for attempt in 0..TEMP_PASSWORD_TRIES {
            let length = self.policy.temp_password_length + attempt * LONGER_AFTER_REFUSAL;
            let command = AccountCommand::SetTemporaryPassword {
                account: account.account.clone(),
                password: TempPassword::generate(length),
            };
            match self.directory.apply(&command, turn.now).await {
                Ok(()) => {
                    let AccountCommand::SetTemporaryPassword { password, .. } = command else {
                        unreachable!("built as SetTemporaryPassword above");
                    };
                    return Ok(Some(password));
                }
                // Overloaded before anything changed: the turn is not processed.
                Err(e @ DirectoryError::Busy(_)) => return Err(e.into()),
                Err(DirectoryError::RefusedByPolicy(why)) => {
                    tracing::warn!(attempt, %why, "directory refused a temporary password");
                    turn.audit("reset", "password_refused_by_policy");
                }
                Err(e) => {
                    self.not_changed("reset", &e, turn);
                    return Ok(None);
                }
            }
        }
        turn.audit("reset", "not_changed:every_password_refused");
        Ok(None)
    }

    /// The directory did not make a change: say why in the audit (the user
    /// is told plainly that nothing changed).
    fn not_changed(&self, event: &str, e: &DirectoryError, turn: &mut Turn) -> Outcome {
        tracing::warn!(error = %e, "directory did not apply a change");
        let why = match e {
            DirectoryError::Unavailable(_) => "directory_unavailable",
            DirectoryError::RefusedByPolicy(_) => "refused_by_policy",
            DirectoryError::Refused(_) => "refused_by_directory",
            DirectoryError::NotFound => "account_not_found",
            DirectoryError::Busy(_) => "busy",
        };
        turn.audit(event, &format!("not_changed:{why}"));
        Outcome::NotChanged
    }

    /// Queue a security notice to the registered mobile.
    fn notice(
        &self,
        mobile: &UkMobile,
        kind: SmsKind,
        email: &Email,
        turn: &mut Turn,
    ) -> Result<(), TurnError> {
        let message = match kind {
            SmsKind::NoticeReset => "sms_notice_reset",
            _ => "sms_notice_unlocked",
        };
        let mut vars = Vars::new();
        vars.insert("contact", self.contact(turn));
        let sms = OutboundSms {
            to: mobile.clone(),
            body: SecretString::from(render(
                self.dialog
                    .wording_for(turn.state.language.as_deref())
                    .text(message),
                &vars,
            )),
            kind,
            personalisation: vec![("contact".to_owned(), SecretString::from(self.contact(turn)))],
            reference: String::new(),
        };
        self.queue(sms, email, turn)
    }

    /// Who to contact, in the conversation's language: `SUPPORT_CONTACT`,
    /// or when it is not set, the language's `default_contact`.
    fn contact(&self, turn: &Turn) -> String {
        if self.policy.contact == DEFAULT_CONTACT {
            self.dialog
                .wording_for(turn.state.language.as_deref())
                .text("default_contact")
                .to_owned()
        } else {
            self.policy.contact.clone()
        }
    }

    /// Facts about the named account, for the notes of a step.
    pub async fn facts(&self, turn: &mut Turn) -> Result<HashSet<Fact>, TurnError> {
        let mut facts = HashSet::new();
        if matches!(self.policy.answer_mode, AnswerMode::Characters(_)) {
            facts.insert(Fact::AnswersByCharacters);
        }
        let Some(KnownAccount { account, .. }) = self.account(turn).await? else {
            return Ok(facts);
        };
        facts.insert(if account.locked {
            Fact::AccountLocked
        } else {
            Fact::AccountNotLocked
        });
        if self
            .policy
            .password_expired_on(&account, turn.now)
            .is_some()
        {
            facts.insert(Fact::PasswordExpired);
        }
        if account.same_sign_on {
            facts.insert(Fact::SameSignOn);
        }
        facts.insert(
            if self.policy.reset_waits_until(&account, turn.now).is_some() {
                Fact::ResetWaiting
            } else {
                Fact::ResetAllowed
            },
        );
        Ok(facts)
    }

    /// Placeholder values that depend on the conversation.
    pub async fn vars(&self, turn: &mut Turn, vars: &mut Vars) -> Result<(), TurnError> {
        vars.insert("contact", self.contact(turn));
        // Nothing about the account is shown before the digits have matched.
        if turn.state.questions.is_empty() {
            return Ok(());
        }
        let Some(KnownAccount { account, questions }) = self.account(turn).await? else {
            return Ok(());
        };
        if let Some(mobile) = &account.mobile {
            vars.insert("last4", mobile.last4().to_string());
        }
        let count = turn.state.questions.len();
        if let Some(position) = turn.state.questions.get(turn.state.answered)
            && let Some(q) = questions.iter().find(|q| q.position == *position)
        {
            vars.insert("question", q.text.clone());
            vars.insert("question_number", (turn.state.answered + 1).to_string());
            vars.insert("question_count", count.to_string());
        }
        for (name, position) in ["position_1", "position_2", "position_3"]
            .into_iter()
            .zip(&turn.state.positions)
        {
            vars.insert(name, position.to_string());
        }
        if let Some(after) = self.policy.reset_waits_until(&account, turn.now) {
            vars.insert(
                "reset_after",
                self.dialog
                    .wording_for(turn.state.language.as_deref())
                    .time(after),
            );
        }
        if let Some(on) = self.policy.password_expired_on(&account, turn.now) {
            vars.insert(
                "password_expired_on",
                self.dialog
                    .wording_for(turn.state.language.as_deref())
                    .date(on),
            );
        }
        Ok(())
    }
}
