//! The support chat on Telegram: same dialog, same rules, same store, driven
//! through a fake Bot API in both webhook and polling mode.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_telegram::{BOT_TOKEN, FakeTelegram, updates};
use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07400 123456"; // ends 3456
const CHAT: i64 = 555_000_111;
const SECRET: &str = "webhook-secret_0123456789";

async fn webhook_app() -> (TestApp, FakeTelegram) {
    telegram_app_with(false, Vec::new(), AccountRow::locked(EMAIL, MOBILE)).await
}

async fn polling_app() -> (TestApp, FakeTelegram) {
    telegram_app_with(true, Vec::new(), AccountRow::locked(EMAIL, MOBILE)).await
}

async fn telegram_app(polling: bool) -> (TestApp, FakeTelegram) {
    if polling {
        polling_app().await
    } else {
        webhook_app().await
    }
}

/// A Telegram bot (webhook or polling) with more settings and `row`
/// imported.
async fn telegram_app_with(
    polling: bool,
    mut env: Vec<(&'static str, String)>,
    row: AccountRow,
) -> (TestApp, FakeTelegram) {
    let fake = FakeTelegram::start().await;
    env.extend([
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.into()),
        ("TELEGRAM_API_URL", fake.url.clone()),
    ]);
    if polling {
        env.extend([
            ("TELEGRAM_MODE", "polling".into()),
            ("TELEGRAM_POLL_TIMEOUT_SECS", "1".into()),
        ]);
    } else {
        env.extend([
            ("TELEGRAM_MODE", "webhook".into()),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET.into()),
        ]);
    }
    let app = spawn_app_with(Options { env }).await;
    app.import(&[row]).await;
    (app, fake)
}

async fn post_update(app: &TestApp, secret: Option<&str>, update: &Value) -> u16 {
    post_update_to(&app.client, &app.address, secret, update).await
}

async fn post_update_to(
    client: &reqwest::Client,
    address: &str,
    secret: Option<&str>,
    update: &Value,
) -> u16 {
    let mut request = client
        .post(format!("{address}/telegram/webhook"))
        .json(update);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Update ids as Telegram hands them out: increasing, never reused. Shared
/// by every `Chat` so that several chats in one test never collide (the
/// poller confirms by offset, so an id below one already seen is dropped).
fn next_update_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(10_000);
    NEXT.fetch_add(1, Ordering::Relaxed) + 1
}

/// Time for a reply that should NOT come to show up (replies may be sent
/// after the webhook has answered 200).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Wait until `check` holds (or panic after 10 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drives a chat through the webhook or the poller, one update at a time,
/// returning the bot's reply to each.
struct Chat<'a> {
    client: reqwest::Client,
    address: String,
    fake: &'a FakeTelegram,
    chat: i64,
    polling: bool,
    next_message: i64,
}

impl<'a> Chat<'a> {
    fn new(app: &TestApp, fake: &'a FakeTelegram, chat: i64, polling: bool) -> Self {
        Self {
            client: app.client.clone(),
            address: app.address.clone(),
            fake,
            chat,
            polling,
            next_message: 1,
        }
    }

    /// Follow the app to its new address after a restart.
    fn reattach(&mut self, app: &TestApp) {
        self.client = app.client.clone();
        self.address = app.address.clone();
    }

    /// A text message from this chat, with fresh update and message ids.
    fn text(&mut self, text: &str) -> Value {
        self.next_message += 1;
        updates::text(next_update_id(), self.chat, self.next_message, text)
    }

    /// Hand an update to the bot without waiting for a reply: post it to
    /// the webhook (which must answer 200) or queue it for `getUpdates`.
    async fn deliver(&self, update: Value) {
        if self.polling {
            self.fake.push_update(update);
        } else {
            let status = post_update_to(&self.client, &self.address, Some(SECRET), &update).await;
            assert_eq!(status, 200);
        }
    }

    async fn send_update(&mut self, update: Value) -> String {
        let before = self.fake.sent_to(self.chat).len();
        self.deliver(update).await;
        self.fake.wait_for_messages(self.chat, before + 1).await[before].clone()
    }

    async fn say(&mut self, text: &str) -> String {
        let update = self.text(text);
        self.send_update(update).await
    }

    async fn press(&mut self, data: &str) -> String {
        let update = updates::button(next_update_id(), self.chat, data);
        self.send_update(update).await
    }

    /// Through verification to the options.
    async fn verify(&mut self) -> String {
        let greeting = self.say("/start").await;
        assert!(greeting.contains("email address"), "{greeting}");
        assert!(self.say(EMAIL).await.contains("last 4 digits"));
        let q1 = self.say("3456").await;
        let q2 = self.say(answer_for(&q1)).await;
        self.say(answer_for(&q2)).await
    }
}

async fn full_unlock(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    let options = chat.verify().await;
    assert!(options.contains("Your account is locked"), "{options}");
    // The options step shows two buttons.
    let last = fake.calls_to("sendMessage").pop().unwrap();
    let buttons = &last.body["reply_markup"]["inline_keyboard"];
    assert_eq!(buttons[0][0]["callback_data"], "option:1", "{buttons}");
    assert_eq!(buttons[1][0]["callback_data"], "option:2", "{buttons}");
    let done = chat.press("option:1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0].to, "+447400123456");
    assert!(!fake.calls_to("answerCallbackQuery").is_empty());
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["channel"] == "telegram" && e["outcome"] == "unlocked")
    );
    assert!(
        audit
            .iter()
            .all(|e| !e["sender"].as_str().unwrap().contains(&CHAT.to_string())),
        "chat id is masked in the audit"
    );
    let files = app.database_bytes().await;
    let chat_id = CHAT.to_string();
    assert!(
        !files
            .windows(chat_id.len())
            .any(|w| w == chat_id.as_bytes()),
        "the chat id is stored only as a keyed hash"
    );
}

#[tokio::test]
async fn webhook_full_unlock_with_buttons() {
    full_unlock(false).await;
}

#[tokio::test]
async fn polling_full_unlock_with_buttons() {
    full_unlock(true).await;
}

async fn full_reset(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.verify().await;
    let done = chat.say("2").await; // typed, not pressed
    assert!(
        done.contains("on its way to your mobile ending 3456"),
        "{done}"
    );
    let texts = app.sent_texts().await;
    assert!(texts.iter().all(|t| t.to == "+447400123456"), "{texts:?}");
    let password = texts[0]
        .body
        .split_whitespace()
        .skip_while(|w| *w != "is")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(app.password_is(EMAIL, &password));
    for call in fake.calls() {
        let body = call.body.to_string();
        assert!(
            !body.contains(&password),
            "password sent to Telegram in {}",
            call.method
        );
        assert!(
            !body.contains("7400123456"),
            "full phone number sent to Telegram"
        );
    }
    assert!(!captured_logs().contains(&password));
    assert!(!captured_logs().contains(BOT_TOKEN), "bot token logged");
}

#[tokio::test]
async fn webhook_full_reset_texts_the_password_only_to_the_registered_mobile() {
    full_reset(false).await;
}

#[tokio::test]
async fn polling_full_reset_texts_the_password_only_to_the_registered_mobile() {
    full_reset(true).await;
}

#[tokio::test]
async fn webhook_is_registered_with_its_secret_and_polling_deletes_it() {
    let (_app, fake) = webhook_app().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.calls_to("setWebhook").is_empty() {
        assert!(Instant::now() < deadline, "setWebhook never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = fake.calls_to("setWebhook")[0].body.to_string();
    assert!(
        raw.contains(&format!("{PUBLIC_BASE}/telegram/webhook")),
        "{raw}"
    );
    assert!(raw.contains(SECRET), "{raw}");

    let (_app, fake) = polling_app().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.calls_to("getUpdates").is_empty() {
        assert!(Instant::now() < deadline, "getUpdates never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!fake.calls_to("deleteWebhook").is_empty());
    assert!(fake.calls_to("setWebhook").is_empty());
}

#[tokio::test]
async fn wrong_or_missing_secret_token_is_refused_and_changes_nothing() {
    let (app, fake) = webhook_app().await;
    let update = updates::text(1, CHAT, 1, "UNLOCK");
    assert_eq!(post_update(&app, None, &update).await, 401);
    assert_eq!(post_update(&app, Some("wrong-secret"), &update).await, 401);
    assert_eq!(
        post_update(&app, Some(&SECRET[..SECRET.len() - 1]), &update).await,
        401
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.sent_to(CHAT).is_empty());
    assert_eq!(app.live_conversations().await, 0);
    assert_eq!(app.count("processed_messages").await, 0);
    // A body that is not an update, with the right secret: 400.
    let status = app
        .client
        .post(format!("{}/telegram/webhook", app.address))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body("not json")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400);
}

/// Telegram delivers an update again when it has no sign that the bot got
/// it: a webhook post without a timely 200 is retried, and `getUpdates`
/// serves every update the poller has not confirmed by moving its offset
/// past it. Two cases: a copy arriving while the bot runs (posted twice;
/// queued twice, so one `getUpdates` answer carries it twice), and a copy
/// arriving after a restart (the poller stopped after handling the update
/// but before its next `getUpdates` confirmed it; the restarted poller
/// starts from offset 0 and is served it again), when only the store can
/// tell. Either way the bot answers once and the turn is taken once.
async fn repeated_update_id(polling: bool) {
    let (mut app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await;
    let email = chat.text(EMAIL);
    chat.deliver(email.clone()).await;
    chat.deliver(email.clone()).await;
    let sent = fake.wait_for_messages(CHAT, 2).await;
    assert!(sent[1].contains("last 4 digits"), "{sent:?}");
    settle().await;
    assert_eq!(fake.sent_to(CHAT).len(), 2, "{:?}", fake.sent_to(CHAT));

    app.restart().await;
    chat.reattach(&app);
    chat.deliver(email).await;
    // Still at the digits step: the email was not taken as wrong digits.
    let q1 = chat.say("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    settle().await;
    let sent = fake.sent_to(CHAT);
    assert_eq!(sent.len(), 3, "one answer per update: {sent:?}");
    assert_eq!(app.count("processed_messages").await, 3);
}

#[tokio::test]
async fn webhook_a_repeated_update_id_is_not_processed_twice() {
    repeated_update_id(false).await;
}

#[tokio::test]
async fn polling_a_repeated_update_id_is_not_processed_twice() {
    repeated_update_id(true).await;
}

async fn group_chat(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    // Replies go to the group, so wait on the group's chat id.
    let group = -100_200_300;
    let mut in_group = Chat::new(&app, &fake, group, polling);
    let refused = in_group
        .send_update(updates::group_text(next_update_id(), group, CHAT, EMAIL))
        .await;
    assert!(refused.contains("only help in a private chat"), "{refused}");
    let refused = in_group
        .send_update(updates::group_text(next_update_id(), group, CHAT, "3456"))
        .await;
    assert!(refused.contains("only help in a private chat"), "{refused}");
    let supergroup = -1_001_234_567_890;
    let mut in_supergroup = Chat::new(&app, &fake, supergroup, polling);
    let update = json!({"update_id": next_update_id(), "message": updates::message(
        json!({"id": supergroup, "type": "supergroup", "title": "Trust IT"}),
        CHAT, 78, json!({"text": "UNLOCK"}))});
    let refused = in_supergroup.send_update(update).await;
    assert!(refused.contains("only help in a private chat"), "{refused}");

    settle().await;
    assert_eq!(fake.sent_to(group).len(), 2, "{:?}", fake.sent_to(group));
    assert_eq!(fake.sent_to(supergroup).len(), 1);
    assert!(fake.sent_to(CHAT).is_empty(), "nothing sent privately");
    assert!(fake.calls_to("deleteMessage").is_empty());
    assert_eq!(app.live_conversations().await, 0);
    assert_eq!(app.count("processed_messages").await, 0);
    assert!(app.audit().is_empty());
    // Nothing from the group carries over into a private chat.
    let mut private = Chat::new(&app, &fake, CHAT, polling);
    let greeting = private.say("3456").await;
    assert!(greeting.contains("email address"), "{greeting}");
}

#[tokio::test]
async fn webhook_group_chats_are_refused_and_nothing_is_collected() {
    group_chat(false).await;
}

#[tokio::test]
async fn polling_group_chats_are_refused_and_nothing_is_collected() {
    group_chat(true).await;
}

async fn non_text_updates(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await;
    let hint = chat
        .send_update(updates::sticker(next_update_id(), CHAT))
        .await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat
        .send_update(updates::photo(next_update_id(), CHAT))
        .await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat
        .send_update(updates::voice(next_update_id(), CHAT))
        .await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat
        .send_update(updates::edited(next_update_id(), CHAT, EMAIL))
        .await;
    assert!(hint.contains("edited"), "{hint}");
    let hint = chat
        .send_update(updates::button(next_update_id(), CHAT, "something-else"))
        .await;
    assert!(hint.contains("no longer in use"), "{hint}");
    // The conversation is still waiting for the email address.
    assert!(chat.say(EMAIL).await.contains("last 4 digits"));
    settle().await;
    // One answer per update: no error, no retry, no second reply.
    let sent = fake.sent_to(CHAT);
    assert_eq!(sent.len(), 7, "{sent:?}");
    assert!(fake.calls_to("deleteMessage").is_empty());
    assert_eq!(app.count("conversations").await, 1);
}

#[tokio::test]
async fn webhook_non_text_updates_get_a_short_hint() {
    non_text_updates(false).await;
}

#[tokio::test]
async fn polling_non_text_updates_get_a_short_hint() {
    non_text_updates(true).await;
}

fn deleted_message_ids(fake: &FakeTelegram) -> Vec<i64> {
    fake.calls_to("deleteMessage")
        .iter()
        .map(|c| c.body["message_id"].as_i64().unwrap())
        .collect()
}

async fn answer_deletion(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await; // message 2
    chat.say(EMAIL).await; // 3
    let q1 = chat.say("3456").await; // 4
    let q2 = chat.say(answer_for(&q1)).await; // 5
    let options = chat.say(answer_for(&q2)).await; // 6
    assert!(options.contains("Your account is locked"), "{options}");
    chat.say("1").await; // 7
    settle().await;
    // The answers, and (once the conversation ended) the bot's offer that
    // showed the last 4 digits.
    let offer = fake.sent_messages(CHAT)[4].0;
    assert_eq!(deleted_message_ids(&fake), vec![5, 6, offer]);
    assert!(
        fake.calls_to("deleteMessage")
            .iter()
            .all(|c| c.body["chat_id"] == json!(CHAT))
    );
}

/// ANSWER_MODE=characters over Telegram: three characters per question,
/// the replies deleted like answers.
async fn characters_unlock(polling: bool) {
    use crate::characters::{characters_mode, reply_to, row_with_long_answers};
    let (app, fake) = telegram_app_with(
        polling,
        characters_mode().env,
        row_with_long_answers(EMAIL, MOBILE),
    )
    .await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await; // message 2
    chat.say(EMAIL).await; // 3
    let q1 = chat.say("3456").await; // 4
    assert!(q1.contains("Enter characters"), "{q1}");
    let q2 = chat.say(&reply_to(&q1, 0)).await; // 5
    assert!(q2.contains("question 2 of 2"), "{q2}");
    let options = chat.say(&reply_to(&q2, 2)).await; // 6
    assert!(options.contains("Your account is locked"), "{options}");
    let done = chat.press("option:1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);
    eventually("the replies with characters are deleted", || async {
        let deleted = deleted_message_ids(&fake);
        deleted.contains(&5) && deleted.contains(&6)
    })
    .await;
}

#[tokio::test]
async fn webhook_a_partial_character_conversation_unlocks_an_account() {
    characters_unlock(false).await;
}

#[tokio::test]
async fn polling_a_partial_character_conversation_unlocks_an_account() {
    characters_unlock(true).await;
}

/// The bot's own messages that repeat the last 4 digits (the offer, a help
/// reply) are deleted once the conversation ends, and no others; a
/// deletion Telegram refuses is logged and the rest go on. The final reply,
/// which shows the digits too, stays for TELEGRAM_LAST4_REPLY_KEPT_MINUTES
/// (10) so it can be read, then goes.
async fn last4_deletion(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.verify().await;
    let help = chat.say("?").await;
    assert!(help.contains("mobile ending 3456"), "{help}");
    settle().await;
    let before_end = deleted_message_ids(&fake);
    let sent = fake.sent_messages(CHAT);
    let with_digits: Vec<i64> = sent
        .iter()
        .filter(|(_, text)| text.contains("3456"))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(with_digits.len(), 2, "the offer and the help: {sent:?}");
    assert!(
        before_end.iter().all(|id| !with_digits.contains(id)),
        "deleted before the end: {before_end:?}"
    );
    assert_eq!(app.count("chat_deletions").await, 2, "both remembered");
    fake.fail_next(
        "deleteMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: message can't be deleted"}),
    );
    let done = chat.press("option:2").await;
    assert!(done.contains("mobile ending 3456"), "{done}");
    eventually("the messages with the digits are deleted", || async {
        deleted_message_ids(&fake).len() == before_end.len() + 2
    })
    .await;
    settle().await;
    let after: Vec<i64> = deleted_message_ids(&fake)[before_end.len()..].to_vec();
    assert_eq!(after, with_digits, "exactly those, the failed one included");
    let (final_id, _) = fake.sent_messages(CHAT).pop().unwrap();
    assert!(
        !deleted_message_ids(&fake).contains(&final_id),
        "the last reply stays a while"
    );
    // The conversation went on despite the failed deletion.
    assert_eq!(
        app.sent_texts().await.len(),
        2,
        "password and notice texted"
    );
    assert!(captured_logs().contains("could not delete a message that showed the last 4 digits"));
    app.advance(chrono::Duration::minutes(9));
    settle().await;
    assert!(
        !deleted_message_ids(&fake).contains(&final_id),
        "the last reply stays 10 minutes"
    );
    app.advance(chrono::Duration::minutes(2));
    eventually("the last reply, with the digits, is deleted", || async {
        deleted_message_ids(&fake).contains(&final_id)
    })
    .await;
    eventually("nothing is left to delete", || async {
        app.count("chat_deletions").await == 0
    })
    .await;
    settle().await;
    assert_eq!(
        deleted_message_ids(&fake).len(),
        before_end.len() + 3,
        "each deleted once"
    );
}

#[tokio::test]
async fn webhook_the_bots_messages_with_the_last_4_digits_are_deleted_at_the_end() {
    last4_deletion(false).await;
}

#[tokio::test]
async fn polling_the_bots_messages_with_the_last_4_digits_are_deleted_at_the_end() {
    last4_deletion(true).await;
}

#[tokio::test]
async fn webhook_answer_messages_are_deleted_and_others_are_not() {
    answer_deletion(false).await;
}

#[tokio::test]
async fn polling_answer_messages_are_deleted_and_others_are_not() {
    answer_deletion(true).await;
}

async fn failed_deletion(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await;
    chat.say(EMAIL).await;
    let q1 = chat.say("3456").await;
    fake.fail_next(
        "deleteMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: message can't be deleted"}),
    );
    let q2 = chat.say(answer_for(&q1)).await; // message 5, not deleted
    assert!(q2.starts_with("Security question 2"), "{q2}");
    let options = chat.say(answer_for(&q2)).await; // 6
    assert!(options.contains("Your account is locked"), "{options}");
    assert_eq!(deleted_message_ids(&fake).last(), Some(&6));
    settle().await;
    assert_eq!(fake.sent_to(CHAT).len(), 5, "{:?}", fake.sent_to(CHAT));
}

#[tokio::test]
async fn webhook_a_failed_deletion_does_not_stop_the_conversation() {
    failed_deletion(false).await;
}

#[tokio::test]
async fn polling_a_failed_deletion_does_not_stop_the_conversation() {
    failed_deletion(true).await;
}

async fn commands(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await;
    chat.say(EMAIL).await;
    let help = chat.say("/help").await;
    assert!(help.contains("registered on your account"), "{help}");
    let restarted = chat.say("/start").await;
    assert!(
        restarted.contains("email address"),
        "/start starts afresh: {restarted}"
    );
    let cancelled = chat.say("/cancel").await;
    assert!(cancelled.contains("Cancelled"), "{cancelled}");
    assert_eq!(app.live_conversations().await, 0);
}

#[tokio::test]
async fn webhook_commands_map_to_start_help_and_cancel() {
    commands(false).await;
}

#[tokio::test]
async fn polling_commands_map_to_start_help_and_cancel() {
    commands(true).await;
}

/// A colleague's phone: not the account's registered mobile.
const COLLEAGUE_PHONE: &str = "+447911223456";

async fn cross_channel(polling: bool) {
    let (mut app, fake) = telegram_app(polling).await;
    // From a phone that is not the account's registered mobile (whose own
    // conversations others' failures never block).
    // A conversation started by SMS does not continue in the chat.
    app.text_from(COLLEAGUE_PHONE, "UNLOCK").await;
    app.text_from(COLLEAGUE_PHONE, EMAIL).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    let first = chat.say("3456").await;
    assert!(
        first.contains("email address"),
        "a new chat conversation: {first}"
    );

    // Two failures by SMS and one in the chat block the account everywhere.
    assert!(
        app.text_from(COLLEAGUE_PHONE, "0000")
            .await
            .contains("could not verify")
    );
    app.text_from(COLLEAGUE_PHONE, "UNLOCK").await;
    app.text_from(COLLEAGUE_PHONE, EMAIL).await;
    assert!(
        app.text_from(COLLEAGUE_PHONE, "1111")
            .await
            .contains("could not verify")
    );
    chat.say(EMAIL).await;
    assert!(chat.say("2222").await.contains("could not verify"));
    // Now even the right digits and answers fail, on both channels.
    chat.say("/start").await;
    chat.say(EMAIL).await;
    assert!(chat.say("3456").await.contains("could not verify"));
    app.text_from(COLLEAGUE_PHONE, "UNLOCK").await;
    app.text_from(COLLEAGUE_PHONE, EMAIL).await;
    assert!(
        app.text_from(COLLEAGUE_PHONE, "3456")
            .await
            .contains("could not verify")
    );
    assert_eq!(app.account(EMAIL)["locked"], true);
    let texts = app.sent_texts().await;
    assert_eq!(texts.len(), 1, "only the block notice: {texts:?}");
    assert!(
        texts[0].body.contains("self-service is paused"),
        "{texts:?}"
    );
}

#[tokio::test]
async fn webhook_conversations_do_not_cross_channels_but_attempt_limits_do() {
    cross_channel(false).await;
}

#[tokio::test]
async fn polling_conversations_do_not_cross_channels_but_attempt_limits_do() {
    cross_channel(true).await;
}

async fn rate_limit(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    fake.fail_next(
        "sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
               "parameters": {"retry_after": 1}}),
    );
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("email address"));
    settle().await;
    let sends = fake.calls_to("sendMessage");
    assert_eq!(sends.len(), 2, "one refused, one delivered");
    assert!(
        sends[1].at - sends[0].at >= Duration::from_millis(950),
        "waited retry_after"
    );
    assert_eq!(sends[0].status, 429);
    assert_eq!(fake.sent_to(CHAT).len(), 1, "delivered once");
}

#[tokio::test]
async fn webhook_rate_limit_retry_after_is_honoured() {
    rate_limit(false).await;
}

#[tokio::test]
async fn polling_rate_limit_retry_after_is_honoured() {
    rate_limit(true).await;
}

/// The poller's own `getUpdates` may be refused with 429 too: it waits
/// `retry_after` (2 s here; its back-off after other errors is shorter)
/// before it polls again, and then picks up what is waiting.
#[tokio::test]
async fn polling_rate_limited_get_updates_waits_retry_after() {
    let (app, fake) = polling_app().await;
    fake.fail_next(
        "getUpdates",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2",
               "parameters": {"retry_after": 2}}),
    );
    let refused = || {
        fake.calls_to("getUpdates")
            .into_iter()
            .find(|c| c.status == 429)
    };
    eventually("a poll is refused", || async { refused().is_some() }).await;
    let refused = refused().unwrap();
    // Queued after the refusal, so only the next poll can carry it.
    let mut chat = Chat::new(&app, &fake, CHAT, true);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("email address"), "{greeting}");
    let next = fake
        .calls_to("getUpdates")
        .into_iter()
        .find(|c| c.at > refused.at)
        .unwrap();
    let waited = next.at - refused.at;
    assert!(
        waited >= Duration::from_millis(1900),
        "polled again after {waited:?}"
    );
    assert_eq!(fake.sent_to(CHAT).len(), 1);
}

/// teloxide waits 10 s on any 5xx before it reports it: one test per mode.
async fn server_error(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    fake.fail_next(
        "sendMessage",
        500,
        json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
    );
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("email address"));
    settle().await;
    assert_eq!(fake.calls_to("sendMessage").len(), 2);
    // The conversation goes on.
    assert!(chat.say(EMAIL).await.contains("last 4 digits"));
}

#[tokio::test]
async fn webhook_server_errors_are_retried() {
    server_error(false).await;
}

#[tokio::test]
async fn polling_server_errors_are_retried() {
    server_error(true).await;
}

async fn blocked_bot(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.say("/start").await;
    assert_eq!(app.count("conversations").await, 1);
    fake.fail_next(
        "sendMessage",
        403,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
    );
    let update = chat.text(EMAIL);
    chat.deliver(update).await;
    eventually("the conversation ends", || async {
        app.count("conversations").await == 0
    })
    .await;
    settle().await;
    assert_eq!(fake.calls_to("sendMessage").len(), 2, "no retry after 403");
}

#[tokio::test]
async fn webhook_a_user_who_blocked_the_bot_ends_the_conversation_quietly() {
    blocked_bot(false).await;
}

#[tokio::test]
async fn polling_a_user_who_blocked_the_bot_ends_the_conversation_quietly() {
    blocked_bot(true).await;
}

#[tokio::test]
async fn webhook_a_welsh_app_gets_the_conversation_in_welsh() {
    let (app, fake) = telegram_app(false).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    let say_cy = |chat: &mut Chat<'_>, text: &str| {
        let mut update = chat.text(text);
        update["message"]["from"]["language_code"] = serde_json::json!("cy");
        update
    };
    let update = say_cy(&mut chat, "/start");
    let greeting = chat.send_update(update).await;
    assert!(greeting.contains("Datgloi cyfrif NHSmail"), "{greeting}");
    assert!(chat.say(EMAIL).await.contains("4 digid olaf"));
    let q1 = chat.say("3456").await;
    assert!(q1.starts_with("Cwestiwn diogelwch 1"), "{q1}");
    let q2 = chat.say(answer_for(&q1)).await;
    let options = chat.say(answer_for(&q2)).await;
    assert!(options.contains("Rydych wedi'ch dilysu"), "{options}");
    // The buttons are in Welsh.
    let markup = fake
        .calls_to("sendMessage")
        .last()
        .map(|c| c.body.to_string())
        .unwrap_or_default();
    assert!(markup.contains("cadw fy nghyfrinair"), "{markup}");
    let done = chat.press("option:1").await;
    assert!(done.contains("wedi'i ddatgloi"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);
    let texts = app.sent_texts().await;
    assert!(
        texts[0].body.contains("cafodd eich cyfrif ei ddatgloi"),
        "{}",
        texts[0].body
    );

    // Locked again: a reset, still in Welsh (the language is kept).
    app.cli(&["accounts", "lock", EMAIL], None);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("Datgloi cyfrif NHSmail"), "{greeting}");
    chat.say(EMAIL).await;
    let q1 = chat.say("3456").await;
    let q2 = chat.say(answer_for(&q1)).await;
    chat.say(answer_for(&q2)).await;
    let done = chat.press("option:2").await;
    assert!(done.contains("cyfrinair dros dro ar ei ffordd"), "{done}");
    let texts = app.sent_texts().await;
    let password_text = texts
        .iter()
        .find(|t| t.body.starts_with("Eich cyfrinair dros dro NHSmail yw "))
        .unwrap_or_else(|| panic!("{texts:?}"));
    let password = password_text
        .body
        .split_whitespace()
        .skip_while(|w| *w != "yw")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(app.password_is(EMAIL, &password));
}

// ------------------------------------------------------------------------
// Issue 9, finding 1: Telegram's contact button.

/// A phone that is not the account's registered mobile.
const ATTACKER_PHONE: &str = "+447911223456";

/// Someone texting from another phone fails three times against the
/// account: its self-service is blocked for everyone but its own mobile.
async fn blocked_by_someone_else(app: &mut TestApp) {
    for _ in 0..3 {
        app.text_from(ATTACKER_PHONE, "UNLOCK").await;
        app.text_from(ATTACKER_PHONE, EMAIL).await;
        let reply = app.text_from(ATTACKER_PHONE, "0000").await;
        assert!(reply.contains("could not verify"), "{reply}");
    }
}

/// Conversations whose stored state holds `pattern` (SQL LIKE), on either
/// backend (JSONB's text form has spaces after colons: compared without).
async fn states_like(app: &TestApp, pattern: &str) -> i64 {
    app.db
        .scalar(format!(
            "SELECT COUNT(*) FROM conversations WHERE REPLACE(CAST(state AS TEXT), ' ', '') LIKE '{pattern}'"
        ))
        .await
}

/// The bot offers Telegram's contact button (a reply keyboard with
/// `request_contact`); the owner's own contact, whose number is the
/// registered mobile, makes the chat count as that phone: a block set by
/// someone else's failures does not stop it. The number is kept only as a
/// keyed hash.
#[tokio::test]
async fn webhook_the_owner_sharing_their_own_number_is_not_blocked_by_others() {
    let (mut app, fake) = webhook_app().await;
    blocked_by_someone_else(&mut app).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);

    let greeting = chat.say("/start").await;
    assert!(
        greeting.contains("share it with the button below"),
        "{greeting}"
    );
    let offer = fake.calls_to("sendMessage").pop().unwrap();
    let markup = &offer.body["reply_markup"];
    assert_eq!(
        markup["keyboard"][0][0]["request_contact"], true,
        "{markup}"
    );
    assert_eq!(
        markup["keyboard"][0][0]["text"], "Share my phone number",
        "{markup}"
    );
    assert_eq!(markup["one_time_keyboard"], true, "{markup}");

    // Without the shared number, the chat is blocked like anyone else.
    chat.say(EMAIL).await;
    let refused = chat.say("3456").await;
    assert!(refused.contains("could not verify"), "{refused}");

    // The owner shares their own contact (Telegram's digits, no '+').
    let update = updates::contact(next_update_id(), CHAT, Some(CHAT), "447400123456");
    let thanks = chat.send_update(update).await;
    assert!(thanks.contains("now counts as your phone"), "{thanks}");
    let sent = fake.calls_to("sendMessage").pop().unwrap();
    assert_eq!(
        sent.body["reply_markup"]["remove_keyboard"], true,
        "{}",
        sent.body
    );

    // A new conversation in this chat keeps it, and is not offered again.
    let greeting = chat.say("/start").await;
    assert!(!greeting.contains("button below"), "{greeting}");
    assert!(chat.say(EMAIL).await.contains("last 4 digits"));
    let q1 = chat.say("3456").await;
    assert!(q1.starts_with("Security question 1"), "{q1}");
    let q2 = chat.say(answer_for(&q1)).await;
    let options = chat.say(answer_for(&q2)).await;
    assert!(options.contains("You are verified"), "{options}");
    let done = chat.press("option:1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");
    assert_eq!(app.account(EMAIL)["locked"], false);

    // Kept as a keyed hash: never the number.
    assert_eq!(states_like(&app, "%own_mobile%").await, 1);
    assert_eq!(states_like(&app, "%7400123456%").await, 0);
    assert!(
        app.audit()
            .iter()
            .any(|e| e["outcome"] == "own_number_shared")
    );
}

/// A Telegram user whose own number is not the registered mobile gains
/// nothing by sharing it.
#[tokio::test]
async fn webhook_sharing_a_number_that_is_not_the_registered_mobile_does_not_lift_a_block() {
    let (mut app, fake) = webhook_app().await;
    blocked_by_someone_else(&mut app).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    let update = updates::contact(next_update_id(), CHAT, Some(CHAT), "+447400999999");
    let thanks = chat.send_update(update).await;
    assert!(thanks.contains("now counts as your phone"), "{thanks}");
    chat.say(EMAIL).await;
    let refused = chat.say("3456").await;
    assert!(refused.contains("could not verify"), "{refused}");
}

/// Someone else's contact card (another user, or a card with no Telegram
/// user), even one carrying the registered mobile, is refused with a clear
/// reply and changes nothing: the chat stays blocked.
#[tokio::test]
async fn webhook_someone_elses_contact_is_refused_and_changes_nothing() {
    let (mut app, fake) = webhook_app().await;
    blocked_by_someone_else(&mut app).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    assert!(chat.say(EMAIL).await.contains("last 4 digits"));
    let audit_before = app.audit().len();
    for card in [
        updates::contact(next_update_id(), CHAT, Some(CHAT + 1), "447400123456"),
        updates::contact(next_update_id(), CHAT, None, "447400123456"),
    ] {
        let reply = chat.send_update(card).await;
        assert!(reply.contains("only your own number counts"), "{reply}");
        assert!(reply.contains("Nothing has been changed"), "{reply}");
    }
    assert_eq!(states_like(&app, "%own_mobile%").await, 0);
    assert_eq!(app.audit().len(), audit_before, "nothing recorded");
    // Still at the digits step, and still blocked.
    let refused = chat.say("3456").await;
    assert!(refused.contains("could not verify"), "{refused}");
}

/// The ids of the bot's messages that showed the last 4 digits.
fn with_digits(fake: &FakeTelegram) -> Vec<i64> {
    fake.sent_messages(CHAT)
        .iter()
        .filter(|(_, text)| text.contains("3456"))
        .map(|(id, _)| *id)
        .collect()
}

/// The messages to delete are kept in the database: a restart between the
/// message that showed the digits and the end of the conversation still
/// deletes it.
async fn last4_deletion_after_restart(polling: bool) {
    let (mut app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.verify().await;
    settle().await;
    let offer = with_digits(&fake);
    assert_eq!(offer.len(), 1, "the offer");
    app.restart().await;
    chat.reattach(&app);
    let done = chat.press("option:1").await;
    assert!(done.contains("unlocked"), "{done}");
    eventually("the offer is deleted after the restart", || async {
        deleted_message_ids(&fake).contains(&offer[0])
    })
    .await;
    eventually("nothing is left to delete", || async {
        app.count("chat_deletions").await == 0
    })
    .await;
}

#[tokio::test]
async fn webhook_a_restart_before_the_end_still_deletes_the_digits() {
    last4_deletion_after_restart(false).await;
}

#[tokio::test]
async fn polling_a_restart_before_the_end_still_deletes_the_digits() {
    last4_deletion_after_restart(true).await;
}

/// A conversation that is left to expire (the user goes away) still has
/// its messages with the digits deleted, by the worker, without a restart
/// and without another message.
async fn last4_deletion_on_expiry(polling: bool) {
    let (app, fake) = telegram_app(polling).await;
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.verify().await;
    settle().await;
    let offer = with_digits(&fake);
    assert_eq!(offer.len(), 1, "the offer");
    app.advance(chrono::Duration::minutes(14));
    settle().await;
    assert!(
        !deleted_message_ids(&fake).contains(&offer[0]),
        "kept while the conversation may go on"
    );
    app.advance(chrono::Duration::minutes(2));
    eventually(
        "the offer is deleted once the conversation expired",
        || async { deleted_message_ids(&fake).contains(&offer[0]) },
    )
    .await;
    eventually("nothing is left to delete", || async {
        app.count("chat_deletions").await == 0
    })
    .await;
}

#[tokio::test]
async fn webhook_an_expired_conversation_still_deletes_the_digits() {
    last4_deletion_on_expiry(false).await;
}

#[tokio::test]
async fn polling_an_expired_conversation_still_deletes_the_digits() {
    last4_deletion_on_expiry(true).await;
}

/// A deletion that fails for a reason that may pass (an error Telegram
/// does not name; a 5xx costs teloxide 10 s, so the test uses a 400) is
/// tried again later, at most 5 times, then dropped and logged; a
/// message Telegram says is already gone counts as deleted.
#[tokio::test]
async fn a_failed_deletion_of_the_digits_is_retried_then_given_up() {
    let (app, fake) = telegram_app(false).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.verify().await;
    let help = chat.say("?").await;
    assert!(help.contains("mobile ending 3456"), "{help}");
    settle().await;
    let ids = with_digits(&fake);
    assert_eq!(ids.len(), 2, "the offer and the help");
    let calls = || {
        fake.calls_to("deleteMessage")
            .iter()
            .filter(|c| ids.iter().any(|id| c.body["message_id"] == json!(id)))
            .count()
    };
    // One is already gone (whichever is tried first); the other fails
    // every time.
    fake.fail_next(
        "deleteMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: message to delete not found"}),
    );
    for _ in 0..5 {
        fake.fail_next(
            "deleteMessage",
            400,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: try again later"}),
        );
    }
    let done = chat.press("option:1").await;
    assert!(done.contains("unlocked"), "{done}");
    eventually("both tried once", || async { calls() == 2 }).await;
    eventually("the gone one is done", || async {
        app.count("chat_deletions").await == 1
    })
    .await;
    for attempt in 2..=5 {
        app.advance(chrono::Duration::minutes(5));
        eventually("tried again", || async { calls() == 1 + attempt }).await;
    }
    eventually("given up", || async {
        app.count("chat_deletions").await == 0
    })
    .await;
    app.advance(chrono::Duration::minutes(30));
    settle().await;
    assert_eq!(calls(), 6, "the gone one once, the other 5 times");
    assert!(captured_logs().contains("giving up"));
}

/// The chat id is never at rest in clear: not in any database file, while
/// messages with the digits wait for the end of the conversation (their
/// chat sealed) and after.
#[tokio::test]
async fn no_database_file_holds_the_chat_id_in_clear() {
    let (app, fake) = telegram_app(false).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.verify().await;
    settle().await;
    assert_eq!(app.count("chat_deletions").await, 1, "the offer waits");
    let chat_id = CHAT.to_string();
    let contains = |files: &[u8]| {
        files
            .windows(chat_id.len())
            .any(|w| w == chat_id.as_bytes())
    };
    assert!(
        !contains(&app.database_bytes().await),
        "the chat id is in the database files"
    );
    chat.press("option:1").await;
    eventually("nothing is left to delete", || async {
        app.count("chat_deletions").await == 0
    })
    .await;
    assert!(
        !contains(&app.database_bytes().await),
        "the chat id is in the database files"
    );
}
