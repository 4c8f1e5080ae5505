//! The support chat on Telegram, built on teloxide.
//!
//! The channel only turns updates into (conversation key, update id, text)
//! for the engine and delivers the engine's replies; verification and policy
//! live in the engine. Two modes: a webhook (`POST /telegram/webhook` on our
//! own axum server; the secret token is checked in constant time before the
//! body is parsed) and long polling (`getUpdates`).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use teloxide::ApiError;
use teloxide::Bot;
use teloxide::RequestError;
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::{
    AllowedUpdate, ButtonRequest, ChatId, InlineKeyboardButton, InlineKeyboardMarkup,
    KeyboardButton, KeyboardMarkup, KeyboardRemove, Message, MessageId, ReplyMarkup, Update,
    UpdateKind,
};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::domain::text::printable;
use crate::domain::{Channel, ConversationKey, parse_any_e164};
use crate::engine::{Engine, Inbound, Reply, TurnError};
use crate::settings::TelegramBot;
use crate::store::deletions::{ChatDeletions, DueDeletion};

pub const WEBHOOK_PATH: &str = "/telegram/webhook";

/// Prefix of the callback data of our option buttons.
const OPTION_PREFIX: &str = "option:";

/// How many times a Bot API call is tried before giving up.
const MAX_ATTEMPTS: u32 = 5;

/// Updates we ask Telegram for.
fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::EditedMessage,
        AllowedUpdate::CallbackQuery,
    ]
}

/// Why a Bot API call finally failed.
#[derive(Debug)]
enum CallError {
    /// The user blocked the bot or is gone: stop talking to them.
    Unreachable,
    /// Anything else, after retries.
    Failed(String),
}

fn is_unreachable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::ChatNotFound
    )
}

pub struct TelegramChannel {
    bot: Bot,
    engine: Arc<Engine>,
    /// Update ids seen lately, for updates the engine does not record
    /// (hints); the engine's store dedupes conversation turns.
    recent: Mutex<VecDeque<u32>>,
    retry_base: Duration,
    /// Send replies from a task of their own once the turn is committed
    /// (webhook mode), so that a slow Bot API (a 429 wait, retries) never
    /// holds the webhook request past its timeout; Telegram would then send
    /// the update again, and it would be skipped as already handled.
    background_replies: bool,
    /// The bot's messages that showed the last 4 digits of a registered
    /// mobile, deleted once the conversation ends.
    cleanup: Cleanup,
    /// How long a final reply that shows the last 4 digits stays
    /// (`TELEGRAM_LAST4_REPLY_KEPT_MINUTES`).
    last4_reply_kept: chrono::Duration,
}

/// Where the bot's messages that showed the last 4 digits are kept until
/// they are deleted, and when they are.
#[derive(Clone)]
pub struct Cleanup {
    pub queue: Arc<dyn ChatDeletions>,
    pub clock: Arc<dyn Clock>,
    /// A conversation idle this long has expired (`CONVERSATION_IDLE_MINUTES`).
    pub conversation_idle: chrono::Duration,
    /// How often the worker looks for due deletions (`OUTBOX_POLL_MS`); a
    /// conversation that ends on this instance wakes it at once.
    pub poll: Duration,
    /// Rung when a conversation ends here.
    pub wake: Arc<tokio::sync::Notify>,
}

/// Telegram lets a bot delete its own messages for 48 hours.
const DELETABLE_FOR: chrono::Duration = chrono::Duration::hours(48);

/// Attempts at deleting one message before it is given up (a message
/// already gone, too old, or in a chat that blocked the bot is given up at
/// once).
const MAX_DELETE_ATTEMPTS: u32 = 5;

/// How long a claimed deletion is reserved for its worker.
const DELETE_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// Deletions claimed at a time.
const DELETE_BATCH: u32 = 20;

/// How many times polling tries one update before giving up on it (a
/// database outage is retried; an update that can never be handled must
/// not stop every other chat).
const MAX_TRIES_PER_UPDATE: u32 = 10;

impl TelegramChannel {
    pub fn new(
        settings: &TelegramBot,
        engine: Arc<Engine>,
        poll_timeout: u32,
        cleanup: Cleanup,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(u64::from(poll_timeout) + 15))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let url = reqwest::Url::parse(&settings.api_url)?;
        let bot = Bot::with_client(settings.token.expose_secret(), client).set_api_url(url);
        Ok(Self {
            bot,
            engine,
            recent: Mutex::new(VecDeque::new()),
            retry_base: Duration::from_millis(250),
            background_replies: false,
            cleanup,
            last4_reply_kept: settings.last4_reply_kept,
        })
    }

    /// Reply from background tasks (webhook mode).
    pub fn replying_in_background(mut self) -> Self {
        self.background_replies = true;
        self
    }

    /// Call the Bot API with retries: honour 429's `retry_after`, back off
    /// exponentially on network and server errors, stop at once when the
    /// user can no longer be reached. Logs never carry message text.
    async fn call<T, F, Fut>(&self, what: &'static str, make: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: IntoFuture<Output = Result<T, RequestError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match make().await {
                Ok(value) => return Ok(value),
                Err(RequestError::RetryAfter(after)) => {
                    tracing::warn!(
                        method = what,
                        retry_after = after.seconds(),
                        "Telegram rate limit"
                    );
                    after.duration()
                }
                Err(RequestError::Api(e)) if is_unreachable(&e) => {
                    tracing::info!(method = what, "user cannot be reached on Telegram");
                    return Err(CallError::Unreachable);
                }
                Err(RequestError::Api(ApiError::Unknown(description))) => {
                    // Server errors arrive as descriptions teloxide doesn't know.
                    tracing::warn!(method = what, %description, attempt, "Telegram API error");
                    self.retry_base * 2u32.pow(attempt - 1)
                }
                Err(RequestError::Api(e)) => {
                    tracing::warn!(method = what, error = %e, "Telegram refused the call");
                    return Err(CallError::Failed(e.to_string()));
                }
                Err(e) => {
                    // Network, I/O or unreadable answers (teloxide hides the token).
                    tracing::warn!(method = what, error = %e, attempt, "Telegram call failed");
                    self.retry_base * 2u32.pow(attempt - 1)
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(CallError::Failed(format!(
                    "gave up after {attempt} attempts"
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Register `PUBLIC_BASE_URL/telegram/webhook` with its secret token.
    pub async fn register_webhook(&self, url: &str, secret: &SecretString) -> anyhow::Result<()> {
        let url = reqwest::Url::parse(url)?;
        self.call("setWebhook", || {
            self.bot
                .set_webhook(url.clone())
                .secret_token(secret.expose_secret().to_owned())
                .allowed_updates(allowed_updates())
        })
        .await
        .map_err(|e| anyhow::anyhow!("setWebhook failed: {e:?}"))?;
        tracing::info!("Telegram webhook registered");
        Ok(())
    }

    /// Long-poll `getUpdates` until `stop` changes. An update is confirmed
    /// (the offset moves past it) only once it has been handled.
    pub async fn run_polling(self: Arc<Self>, poll_timeout: u32, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self
            .call("deleteWebhook", || self.bot.delete_webhook())
            .await
        {
            tracing::warn!(error = ?e, "deleteWebhook failed; polling anyway");
        }
        let mut offset: i32 = 0;
        let mut failures: u32 = 0;
        loop {
            let request = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(poll_timeout)
                .allowed_updates(allowed_updates());
            let result = tokio::select! {
                _ = stop.changed() => return,
                r = request => r,
            };
            match result {
                Ok(updates) => {
                    failures = 0;
                    for update in updates {
                        let id = update.id.0;
                        // Keep trying an update until it is handled (the
                        // database may be down); never skip it silently.
                        let mut tries: u32 = 0;
                        while let Err(e) = self.process(update.clone()).await {
                            tries += 1;
                            if tries >= MAX_TRIES_PER_UPDATE {
                                tracing::error!(error = %e, update_id = id, "update could not be handled; skipping it");
                                break;
                            }
                            tracing::error!(error = %e, update_id = id, "update not handled; retrying");
                            let wait = self.retry_base * 2u32.pow(tries.min(6));
                            tokio::select! {
                                _ = stop.changed() => return,
                                () = tokio::time::sleep(wait) => {}
                            }
                        }
                        offset = i32::try_from(id).unwrap_or(i32::MAX).saturating_add(1);
                    }
                }
                Err(RequestError::RetryAfter(after)) => {
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(after.duration()) => {}
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "getUpdates failed");
                    let wait = self.retry_base * 2u32.pow(failures.min(6));
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Whether this update id was seen lately (and remember it).
    fn seen(&self, id: u32) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.contains(&id) {
            return true;
        }
        recent.push_back(id);
        if recent.len() > 4096 {
            recent.pop_front();
        }
        false
    }

    fn forget(&self, id: u32) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|seen| *seen != id);
    }

    /// Handle one update. An error means the engine could not complete the
    /// turn (nothing was stored); the caller should have Telegram retry.
    pub async fn process(self: &Arc<Self>, update: Update) -> Result<(), TurnError> {
        let id = update.id.0;
        if self.seen(id) {
            tracing::info!(update_id = id, "repeated update ignored");
            return Ok(());
        }
        let result = self.dispatch(id, update).await;
        if result.is_err() {
            self.forget(id);
        }
        result
    }

    async fn dispatch(self: &Arc<Self>, id: u32, update: Update) -> Result<(), TurnError> {
        match update.kind {
            UpdateKind::Message(message) => self.on_message(id, &message).await,
            UpdateKind::EditedMessage(message) => {
                self.hint(&message, "chat_edited_message").await;
                Ok(())
            }
            UpdateKind::CallbackQuery(query) => {
                let _ = self
                    .call("answerCallbackQuery", || {
                        self.bot.answer_callback_query(query.id.clone())
                    })
                    .await;
                let Some(message) = query.message.as_ref() else {
                    return Ok(());
                };
                let chat = message.chat();
                let value = query
                    .data
                    .as_deref()
                    .and_then(|d| d.strip_prefix(OPTION_PREFIX))
                    .filter(|v| matches!(*v, "1" | "2"));
                match value {
                    Some(value) if chat.is_private() => {
                        let language = query.from.language_code.as_deref();
                        let said = Said {
                            text: value.to_owned(),
                            start_over: false,
                            own_mobile: None,
                        };
                        self.converse(id, chat.id, said, None, language).await
                    }
                    _ => {
                        self.say(chat.id, "chat_unknown_button").await;
                        Ok(())
                    }
                }
            }
            _ => {
                tracing::debug!(update_id = id, "update kind not handled");
                Ok(())
            }
        }
    }

    async fn on_message(self: &Arc<Self>, id: u32, message: &Message) -> Result<(), TurnError> {
        if !message.chat.is_private() {
            self.say(message.chat.id, "chat_private_only").await;
            return Ok(());
        }
        let language = message
            .from
            .as_ref()
            .and_then(|u| u.language_code.as_deref());
        if let Some(contact) = message.contact() {
            // Only the sender's own contact card counts (Telegram fills in
            // `user_id` for a contact of a Telegram user; the contact button
            // sends the sender's own). Anyone else's, or one without a
            // user id, changes nothing.
            let sender = message.from.as_ref().map(|u| u.id);
            let own = contact.user_id.is_some() && contact.user_id == sender;
            let number = own.then(|| contact_number(&contact.phone_number)).flatten();
            let Some(number) = number else {
                tracing::info!(
                    update_id = id,
                    "refused a contact that is not the sender's own"
                );
                self.say(message.chat.id, "chat_contact_not_own").await;
                return Ok(());
            };
            let said = Said {
                text: String::new(),
                start_over: false,
                own_mobile: Some(number),
            };
            return self
                .converse(id, message.chat.id, said, Some(message), language)
                .await;
        }
        let Some(text) = message.text() else {
            self.say(message.chat.id, "chat_text_only").await;
            return Ok(());
        };
        let wording = &self.engine.dialog().wording;
        let command = text
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (text, start_over) = match command.as_str() {
            "/start" => (String::new(), true),
            "/help" => (wording.help_words[0].clone(), false),
            "/cancel" => (wording.cancel_words[0].clone(), false),
            _ => (text.to_owned(), false),
        };
        let said = Said {
            text,
            start_over,
            own_mobile: None,
        };
        self.converse(id, message.chat.id, said, Some(message), language)
            .await
    }

    /// One turn of the conversation in a private chat.
    async fn converse(
        self: &Arc<Self>,
        id: u32,
        chat: ChatId,
        said: Said,
        message: Option<&Message>,
        language: Option<&str>,
    ) -> Result<(), TurnError> {
        let Ok(key) = ConversationKey::new(Channel::Telegram, chat.0.to_string()) else {
            return Ok(());
        };
        let reply = self
            .engine
            .handle(Inbound {
                // Telegram says which language the user's app is set to.
                language: language.map(str::to_owned),
                key: key.clone(),
                message_id: Some(id.to_string()),
                text: said.text,
                start_over: said.start_over,
                own_mobile: said.own_mobile,
                can_share_number: true,
            })
            .await?;
        if reply.repeated {
            return Ok(());
        }
        // Answers should not linger on the user's device.
        let answer_message = message.filter(|_| reply.input_was_secret).map(|m| m.id);
        let this = Arc::clone(self);
        let send = async move {
            if let Some(message_id) = answer_message
                && let Err(e) = this
                    .call("deleteMessage", || {
                        this.bot.delete_message(chat, message_id)
                    })
                    .await
            {
                tracing::warn!(error = ?e, "could not delete an answer message");
            }
            this.deliver(&key, chat, &reply).await;
        };
        if self.background_replies {
            tokio::spawn(send);
        } else {
            send.await;
        }
        Ok(())
    }

    async fn deliver(&self, key: &ConversationKey, chat: ChatId, reply: &Reply) {
        let text = printable(&reply.text()).into_owned();
        if text.is_empty() {
            // Nothing to say (the sender's replies for the day are spent).
            return;
        }
        let keyboard: Option<ReplyMarkup> = if !reply.choices.is_empty() {
            Some(
                InlineKeyboardMarkup::new(reply.choices.iter().map(|c| {
                    vec![InlineKeyboardButton::callback(
                        c.label.clone(),
                        format!("{OPTION_PREFIX}{}", c.value),
                    )]
                }))
                .into(),
            )
        } else if let Some(label) = &reply.share_number {
            // Telegram's contact button: the user's app sends their own
            // number, as a contact whose user_id is theirs.
            Some(
                KeyboardMarkup::new([[
                    KeyboardButton::new(printable(label)).request(ButtonRequest::Contact)
                ]])
                .resize_keyboard()
                .one_time_keyboard()
                .into(),
            )
        } else if reply.number_shared {
            Some(KeyboardRemove::new().into())
        } else {
            None
        };
        let sent = self
            .call("sendMessage", || {
                let request = self.bot.send_message(chat, text.clone());
                match &keyboard {
                    Some(k) => request.reply_markup(k.clone()),
                    None => request,
                }
            })
            .await;
        let now = self.cleanup.clock.now();
        match sent {
            Ok(message) if reply.shows_last4 => {
                // Kept until the conversation ends; a final reply that
                // shows the digits stays a few minutes, to be read.
                let due = reply.ended.then(|| now + self.last4_reply_kept);
                if let Err(e) = self
                    .cleanup
                    .queue
                    .remember(key, i64::from(message.id.0), now, due)
                    .await
                {
                    tracing::error!(error = %e, "could not remember a message that showed the last 4 digits; it will not be deleted");
                }
            }
            Ok(_) => {}
            Err(CallError::Unreachable) => {
                // Nothing can be deleted in a chat the bot cannot reach:
                // its deletions fail and are dropped.
                if let Err(e) = self.engine.end_quietly(key, "user_unreachable").await {
                    tracing::warn!(error = %e, "could not end the conversation");
                }
                self.conversation_ended(key).await;
                return;
            }
            Err(CallError::Failed(e)) => tracing::error!(error = %e, "reply not delivered"),
        }
        if reply.ended {
            self.conversation_ended(key).await;
        }
    }

    /// The conversation has ended: its messages that showed the last 4
    /// digits are due for deletion (by the worker of any instance).
    async fn conversation_ended(&self, key: &ConversationKey) {
        let now = self.cleanup.clock.now();
        match self.cleanup.queue.conversation_ended(key, now).await {
            Ok(n) if n > 0 => self.cleanup.wake.notify_one(),
            Ok(_) => {}
            // The worker makes them due once the conversation has expired.
            Err(e) => {
                tracing::warn!(error = %e, "could not mark messages with the last 4 digits for deletion; they go once the conversation expires")
            }
        }
    }

    /// Delete the bot's messages that showed the last 4 digits once they
    /// are due, until `stop` changes: every `OUTBOX_POLL_MS`, and at once
    /// when a conversation ends on this instance. Every instance runs one;
    /// claims are exclusive.
    pub async fn run_deletions(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            loop {
                match self.delete_due().await {
                    Ok(true) if !*stop.borrow() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for messages to delete; will try again");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = self.cleanup.wake.notified() => {}
                () = tokio::time::sleep(self.cleanup.poll) => {}
            }
        }
    }

    /// One pass: make the messages of expired conversations due, forget
    /// those too old to delete, and delete a batch of due ones. True when
    /// a whole batch was claimed (there may be more).
    pub async fn delete_due(&self) -> Result<bool, crate::store::StoreError> {
        let queue = &self.cleanup.queue;
        let now = self.cleanup.clock.now();
        queue
            .expire(now - self.cleanup.conversation_idle, now)
            .await?;
        let old = queue.forget_sent_before(now - DELETABLE_FOR).await?;
        if old > 0 {
            tracing::warn!(
                count = old,
                "messages that showed the last 4 digits are older than 48 hours: Telegram no longer lets the bot delete them"
            );
        }
        let due = queue.claim(now, DELETE_LEASE, DELETE_BATCH).await?;
        let full = due.len() == DELETE_BATCH as usize;
        for item in due {
            self.delete_one(item).await?;
        }
        Ok(full)
    }

    async fn delete_one(&self, item: DueDeletion) -> Result<(), crate::store::StoreError> {
        let queue = &self.cleanup.queue;
        let chat = item.chat.as_deref().and_then(|c| c.parse::<i64>().ok());
        let (Some(chat), Ok(message_id)) = (chat, i32::try_from(item.message_id)) else {
            tracing::error!(
                "a message to delete has a chat id that cannot be opened (OUTBOX_KEY changed?); dropped"
            );
            return queue.forget(&item.id).await;
        };
        let (chat, message) = (ChatId(chat), MessageId(message_id));
        let wait = match self.bot.delete_message(chat, message).await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageToDeleteNotFound)) => {
                return queue.forget(&item.id).await;
            }
            Err(RequestError::Api(e)) if is_unreachable(&e) => {
                tracing::info!(
                    "a message that showed the last 4 digits is in a chat the bot cannot reach; dropped"
                );
                return queue.forget(&item.id).await;
            }
            Err(RequestError::Api(e @ ApiError::MessageCantBeDeleted)) => {
                tracing::warn!(error = %e, "could not delete a message that showed the last 4 digits; dropped");
                return queue.forget(&item.id).await;
            }
            Err(RequestError::RetryAfter(after)) => {
                chrono::Duration::from_std(after.duration()).unwrap_or(DELETE_LEASE)
            }
            Err(e) => {
                if item.attempts >= MAX_DELETE_ATTEMPTS {
                    tracing::error!(error = %e, attempts = item.attempts, "could not delete a message that showed the last 4 digits; giving up");
                    return queue.forget(&item.id).await;
                }
                tracing::warn!(error = %e, attempt = item.attempts, "could not delete a message that showed the last 4 digits; will try again");
                chrono::Duration::seconds(15 * 2_i64.pow(item.attempts.min(10)))
            }
        };
        queue
            .retry(&item.id, item.attempts, self.cleanup.clock.now() + wait)
            .await
    }

    async fn hint(&self, message: &Message, id: &str) {
        let id = if message.chat.is_private() {
            id
        } else {
            "chat_private_only"
        };
        self.say(message.chat.id, id).await;
    }

    /// Send one message of the wording (hints that need no conversation).
    async fn say(&self, chat: ChatId, message_id: &str) {
        let text = printable(self.engine.dialog().wording.text(message_id)).into_owned();
        if let Err(e) = self
            .call("sendMessage", || self.bot.send_message(chat, text.clone()))
            .await
        {
            tracing::warn!(error = ?e, "hint not delivered");
        }
    }
}

/// What the user said, for the engine.
struct Said {
    text: String,
    start_over: bool,
    /// The sender's own number (E.164), from their own contact card.
    own_mobile: Option<String>,
}

/// A contact's number as E.164. Telegram gives the digits of the
/// international form, with or without the leading `+`.
pub fn contact_number(raw: &str) -> Option<String> {
    let digits = raw.trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_any_e164(&format!("+{digits}"))
}

/// A webhook body as a Telegram update (fuzzed in `tests/fuzz.rs`).
pub fn parse_update(body: &[u8]) -> Result<Update, serde_json::Error> {
    serde_json::from_slice(body)
}

/// `POST /telegram/webhook`: constant-time secret check, then parse, then
/// handle. 503 when the turn could not be stored, so Telegram retries.
/// The webhook mode's channel and secret token; `None` when not in webhook
/// mode (the route then answers 404).
pub type TelegramWebhook = Option<(Arc<TelegramChannel>, SecretString)>;

/// The Telegram webhook's route.
pub fn routes(state: TelegramWebhook) -> axum::Router {
    axum::Router::new()
        .route(WEBHOOK_PATH, axum::routing::post(webhook))
        .with_state(state)
}

pub async fn webhook(
    State(app): State<TelegramWebhook>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((channel, secret)) = app.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(secret.expose_secret().as_bytes())) {
        tracing::warn!("refused a Telegram webhook with a missing or wrong secret token");
        return (StatusCode::UNAUTHORIZED, "invalid secret token").into_response();
    }
    let Ok(update) = parse_update(&body) else {
        return (StatusCode::BAD_REQUEST, "not a Telegram update").into_response();
    };
    match channel.process(update).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "update not handled; Telegram will retry");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
