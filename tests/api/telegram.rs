//! The support chat on Telegram: same dialog, same rules, same store, driven
//! through a fake Bot API in both webhook and polling mode.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_telegram::{BOT_TOKEN, FakeTelegram, updates};
use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07400 123456"; // ends 3456
const CHAT: i64 = 555_000_111;
const SECRET: &str = "webhook-secret_0123456789";

async fn webhook_app() -> (TestApp, FakeTelegram) {
    let fake = FakeTelegram::start().await;
    let app = spawn_app_with(Options {
        env: vec![
            ("TELEGRAM_MODE", "webhook".into()),
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.into()),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET.into()),
            ("TELEGRAM_API_URL", fake.url.clone()),
        ],
    })
    .await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    (app, fake)
}

async fn polling_app() -> (TestApp, FakeTelegram) {
    let fake = FakeTelegram::start().await;
    let app = spawn_app_with(Options {
        env: vec![
            ("TELEGRAM_MODE", "polling".into()),
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.into()),
            ("TELEGRAM_API_URL", fake.url.clone()),
            ("TELEGRAM_POLL_TIMEOUT_SECS", "1".into()),
        ],
    })
    .await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
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

/// Drives a chat through the webhook or the poller, one update at a time,
/// returning the bot's reply to each.
struct Chat<'a> {
    client: reqwest::Client,
    address: String,
    fake: &'a FakeTelegram,
    chat: i64,
    polling: bool,
    next_update: i64,
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
            next_update: 10_000,
            next_message: 1,
        }
    }

    async fn send_update(&mut self, update: Value) -> String {
        let before = self.fake.sent_to(self.chat).len();
        if self.polling {
            self.fake.push_update(update);
        } else {
            let status = post_update_to(&self.client, &self.address, Some(SECRET), &update).await;
            assert_eq!(status, 200);
        }
        self.fake.wait_for_messages(self.chat, before + 1).await[before].clone()
    }

    async fn say(&mut self, text: &str) -> String {
        self.next_update += 1;
        self.next_message += 1;
        let update = updates::text(self.next_update, self.chat, self.next_message, text);
        self.send_update(update).await
    }

    async fn press(&mut self, data: &str) -> String {
        self.next_update += 1;
        let update = updates::button(self.next_update, self.chat, data);
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
    let (app, fake) = if polling {
        polling_app().await
    } else {
        webhook_app().await
    };
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
    let (app, fake) = if polling {
        polling_app().await
    } else {
        webhook_app().await
    };
    let mut chat = Chat::new(&app, &fake, CHAT, polling);
    chat.verify().await;
    let done = chat.say("2").await; // typed, not pressed
    assert!(
        done.contains("on its way by text to your mobile ending 3456"),
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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.calls_to("setWebhook").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "setWebhook never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = fake.calls_to("setWebhook")[0].body.to_string();
    assert!(
        raw.contains(&format!("{PUBLIC_BASE}/telegram/webhook")),
        "{raw}"
    );
    assert!(raw.contains(SECRET), "{raw}");

    let (_app, fake) = polling_app().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.calls_to("getUpdates").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "getUpdates never called"
        );
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
    assert_eq!(app.count("conversations").await, 0);
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

#[tokio::test]
async fn a_repeated_update_id_is_not_processed_twice() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    let email = updates::text(50, CHAT, 60, EMAIL);
    assert_eq!(post_update(&app, Some(SECRET), &email).await, 200);
    assert_eq!(post_update(&app, Some(SECRET), &email).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.sent_to(CHAT).len(), 2, "{:?}", fake.sent_to(CHAT));
    // Still at the digits step, not asked again.
    assert!(chat.say("3456").await.starts_with("Security question 1"));
}

#[tokio::test]
async fn group_chats_are_refused_and_nothing_is_collected() {
    let (app, fake) = webhook_app().await;
    let group = -100_200_300;
    let update = updates::group_text(1, group, CHAT, EMAIL);
    assert_eq!(post_update(&app, Some(SECRET), &update).await, 200);
    let sent = fake.wait_for_messages(group, 1).await;
    assert!(sent[0].contains("only help in a private chat"), "{sent:?}");
    assert_eq!(app.count("conversations").await, 0);
    assert!(app.audit().is_empty());
}

#[tokio::test]
async fn non_text_updates_get_a_short_hint() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    let hint = chat.send_update(updates::sticker(101, CHAT)).await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat.send_update(updates::photo(102, CHAT)).await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat.send_update(updates::voice(103, CHAT)).await;
    assert!(hint.contains("only read text"), "{hint}");
    let hint = chat.send_update(updates::edited(104, CHAT, EMAIL)).await;
    assert!(hint.contains("edited"), "{hint}");
    let hint = chat
        .send_update(updates::button(105, CHAT, "something-else"))
        .await;
    assert!(hint.contains("no longer in use"), "{hint}");
    // The conversation is still waiting for the email address.
    assert!(chat.say(EMAIL).await.contains("last 4 digits"));
}

#[tokio::test]
async fn answer_messages_are_deleted_and_others_are_not() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await; // message 2
    chat.say(EMAIL).await; // 3
    let q1 = chat.say("3456").await; // 4
    let q2 = chat.say(answer_for(&q1)).await; // 5
    chat.say(answer_for(&q2)).await; // 6
    let deleted: Vec<i64> = fake
        .calls_to("deleteMessage")
        .iter()
        .map(|c| c.body["message_id"].as_i64().unwrap())
        .collect();
    assert_eq!(deleted, vec![5, 6]);
    assert!(
        fake.calls_to("deleteMessage")
            .iter()
            .all(|c| c.body["chat_id"] == json!(CHAT))
    );
}

#[tokio::test]
async fn a_failed_deletion_does_not_stop_the_conversation() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    chat.say(EMAIL).await;
    let q1 = chat.say("3456").await;
    fake.fail_next(
        "deleteMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: message can't be deleted"}),
    );
    let q2 = chat.say(answer_for(&q1)).await;
    assert!(q2.starts_with("Security question 2"), "{q2}");
}

#[tokio::test]
async fn commands_map_to_start_help_and_cancel() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
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
    assert_eq!(app.count("conversations").await, 0);
}

#[tokio::test]
async fn conversations_do_not_cross_channels_but_attempt_limits_do() {
    let (mut app, fake) = webhook_app().await;
    // A conversation started by SMS does not continue in the chat.
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    let first = chat.say("3456").await;
    assert!(
        first.contains("email address"),
        "a new chat conversation: {first}"
    );

    // Two failures by SMS and one in the chat block the account everywhere.
    assert!(app.text("0000").await.contains("could not verify"));
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    assert!(app.text("1111").await.contains("could not verify"));
    chat.say(EMAIL).await;
    assert!(chat.say("2222").await.contains("could not verify"));
    // Now even the right digits and answers fail, on both channels.
    chat.say("/start").await;
    chat.say(EMAIL).await;
    assert!(chat.say("3456").await.contains("could not verify"));
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    assert!(app.text("3456").await.contains("could not verify"));
    assert_eq!(app.account(EMAIL)["locked"], true);
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured() {
    let (app, fake) = webhook_app().await;
    fake.fail_next(
        "sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
               "parameters": {"retry_after": 1}}),
    );
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("email address"));
    let sends = fake.calls_to("sendMessage");
    assert_eq!(sends.len(), 2, "one refused, one delivered");
    assert!(
        sends[1].at - sends[0].at >= Duration::from_millis(950),
        "waited retry_after"
    );
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (app, fake) = webhook_app().await;
    fake.fail_next(
        "sendMessage",
        500,
        json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
    );
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    let greeting = chat.say("/start").await;
    assert!(greeting.contains("email address"));
    assert_eq!(fake.calls_to("sendMessage").len(), 2);
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_ends_the_conversation_quietly() {
    let (app, fake) = webhook_app().await;
    let mut chat = Chat::new(&app, &fake, CHAT, false);
    chat.say("/start").await;
    assert_eq!(app.count("conversations").await, 1);
    fake.fail_next(
        "sendMessage",
        403,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
    );
    let update = updates::text(900, CHAT, 900, EMAIL);
    assert_eq!(post_update(&app, Some(SECRET), &update).await, 200);
    assert_eq!(app.count("conversations").await, 0);
    assert_eq!(fake.calls_to("sendMessage").len(), 2, "no retry after 403");
}
