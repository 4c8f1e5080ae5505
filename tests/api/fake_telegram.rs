//! A fake Telegram Bot API: `POST /bot<token>/<method>` with `{"ok": …}`
//! envelopes, recording every call, serving queued updates to `getUpdates`
//! and answering with scripted failures when told to.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The methods the fake answers (anything else gets 404).
const KNOWN_METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "sendMessage",
    "deleteMessage",
    "setWebhook",
    "deleteWebhook",
    "answerCallbackQuery",
];

pub const BOT_TOKEN: &str = "123456789:AAFakeTokenForTests_abcdefghijklmnop";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The JSON body (multipart bodies are kept as a string under "raw").
    pub body: Value,
    pub at: Instant,
    /// The HTTP status the fake answered with: a scripted failure's, 404
    /// for a method it does not know, else 200.
    pub status: u16,
    /// The id of the message a successful `sendMessage` created.
    pub message_id: Option<i64>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    /// Scripted answers per method, used before the normal answer.
    failures: HashMap<String, VecDeque<(u16, Value)>>,
    next_message_id: i64,
}

#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    pub url: String,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let fake = FakeTelegram {
            inner: Arc::new(Mutex::new(Inner {
                next_message_id: 1000,
                ..Inner::default()
            })),
            notify: Arc::new(Notify::new()),
            url: String::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{bot}/{method}", post(handle))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeTelegram { url, ..fake }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Texts the bot sent to `chat` (delivered ones: calls answered with a
    /// scripted failure do not count).
    pub fn sent_to(&self, chat: i64) -> Vec<String> {
        self.calls_to("sendMessage")
            .into_iter()
            .filter(|c| c.status == 200 && c.body["chat_id"] == json!(chat))
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Messages the bot sent to `chat`, with the ids Telegram gave them.
    pub fn sent_messages(&self, chat: i64) -> Vec<(i64, String)> {
        self.calls_to("sendMessage")
            .into_iter()
            .filter(|c| c.status == 200 && c.body["chat_id"] == json!(chat))
            .map(|c| {
                (
                    c.message_id.expect("a sent message has an id"),
                    c.body["text"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Queue an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.inner.lock().unwrap().updates.push_back(update);
        self.notify.notify_waiters();
    }

    /// Answer the next call of `method` with this status and body.
    pub fn fail_next(&self, method: &str, status: u16, body: Value) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back((status, body));
    }

    /// Wait until `count` messages were sent to `chat` (or panic after 30 s).
    pub async fn wait_for_messages(&self, chat: i64, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = self.sent_to(chat);
            if sent.len() >= count {
                return sent;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages to {chat}: {sent:?}",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn ok(result: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": true, "result": result})),
    )
        .into_response()
}

async fn handle(
    State(fake): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Telegram's method names are case-insensitive (teloxide sends
    // "SendMessage"); record them as the documentation spells them.
    let mut chars = method.chars();
    let method: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    if bot != format!("bot{BOT_TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed: Value = if is_json {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        json!({"raw": String::from_utf8_lossy(&body)})
    };
    let (scripted, message_id) = {
        let mut inner = fake.inner.lock().unwrap();
        let scripted = inner.failures.get_mut(&method).and_then(|q| q.pop_front());
        // A message created gets the next id, as Telegram gives one.
        let message_id = (method == "sendMessage" && scripted.is_none()).then(|| {
            inner.next_message_id += 1;
            inner.next_message_id
        });
        inner.calls.push(Call {
            message_id,
            method: method.clone(),
            body: parsed.clone(),
            at: Instant::now(),
            status: scripted.as_ref().map_or_else(
                || {
                    if KNOWN_METHODS.contains(&method.as_str()) {
                        200
                    } else {
                        404
                    }
                },
                |(status, _)| *status,
            ),
        });
        (scripted, message_id)
    };
    if let Some((status, body)) = scripted {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    match method.as_str() {
        "getMe" => ok(json!({
            "id": 123456789, "is_bot": true, "first_name": "Unlock", "username": "unlock_test_bot",
            "can_join_groups": false, "can_read_all_group_messages": false, "supports_inline_queries": false
        })),
        "getUpdates" => {
            let offset = parsed["offset"].as_i64().unwrap_or(0);
            let wait = parsed["timeout"].as_u64().unwrap_or(0).min(1);
            let deadline = Instant::now() + Duration::from_secs(wait);
            loop {
                let ready: Vec<Value> = {
                    let mut inner = fake.inner.lock().unwrap();
                    // Updates below the offset are confirmed: drop them.
                    inner.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    inner.updates.iter().cloned().collect()
                };
                if !ready.is_empty() || Instant::now() >= deadline {
                    return ok(Value::Array(ready));
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), fake.notify.notified()).await;
            }
        }
        "sendMessage" => {
            let id = message_id.unwrap_or_default();
            let chat_id = parsed["chat_id"].as_i64().unwrap_or(0);
            ok(json!({
                "message_id": id,
                "date": 1_795_000_000,
                "chat": {"id": chat_id, "type": "private", "first_name": "Jane"},
                "from": {"id": 123456789, "is_bot": true, "first_name": "Unlock"},
                "text": parsed["text"],
            }))
        }
        "deleteMessage" | "setWebhook" | "deleteWebhook" | "answerCallbackQuery" => ok(json!(true)),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"})),
        )
            .into_response(),
    }
}

/// Builders for updates as Telegram sends them.
pub mod updates {
    use serde_json::{Value, json};

    pub fn user(id: i64) -> Value {
        json!({"id": id, "is_bot": false, "first_name": "Jane", "language_code": "en"})
    }

    pub fn private_chat(id: i64) -> Value {
        json!({"id": id, "type": "private", "first_name": "Jane"})
    }

    pub fn message(chat: Value, from: i64, message_id: i64, extra: Value) -> Value {
        let mut m = json!({
            "message_id": message_id,
            "date": 1_795_000_000,
            "chat": chat,
            "from": user(from),
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    }

    pub fn text(update_id: i64, chat: i64, message_id: i64, text: &str) -> Value {
        let mut extra = json!({"text": text});
        if text.starts_with('/') {
            let len = text.split_whitespace().next().unwrap().len();
            extra["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        json!({"update_id": update_id, "message": message(private_chat(chat), chat, message_id, extra)})
    }

    pub fn group_text(update_id: i64, group: i64, from: i64, text: &str) -> Value {
        json!({"update_id": update_id, "message": message(
            json!({"id": group, "type": "group", "title": "Ward 7 staff"}), from, 77, json!({"text": text}))})
    }

    pub fn sticker(update_id: i64, chat: i64) -> Value {
        json!({"update_id": update_id, "message": message(private_chat(chat), chat, 5, json!({"sticker": {
            "file_id": "CAACAgIAAxkBAAIB", "file_unique_id": "AgADBAAD", "type": "regular",
            "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "👍"
        }}))})
    }

    pub fn photo(update_id: i64, chat: i64) -> Value {
        json!({"update_id": update_id, "message": message(private_chat(chat), chat, 6, json!({"photo": [
            {"file_id": "AgACAgQAAxkBAAIC", "file_unique_id": "AQADx", "width": 90, "height": 90, "file_size": 1000}
        ]}))})
    }

    pub fn voice(update_id: i64, chat: i64) -> Value {
        json!({"update_id": update_id, "message": message(private_chat(chat), chat, 7, json!({"voice": {
            "file_id": "AwACAgQAAxkBAAID", "file_unique_id": "AgADy", "duration": 3, "mime_type": "audio/ogg"
        }}))})
    }

    /// A contact card sent in a private chat by its user (`chat`): their
    /// own, as the contact button sends it (`user_id` = the sender), or
    /// anyone's (another `user_id`, or none for a card not linked to a
    /// Telegram user).
    pub fn contact(update_id: i64, chat: i64, user_id: Option<i64>, phone_number: &str) -> Value {
        let mut contact = json!({"phone_number": phone_number, "first_name": "Jane"});
        if let Some(user_id) = user_id {
            contact["user_id"] = json!(user_id);
        }
        json!({"update_id": update_id, "message": message(private_chat(chat), chat, 9, json!({"contact": contact}))})
    }

    pub fn edited(update_id: i64, chat: i64, text: &str) -> Value {
        let mut m = message(private_chat(chat), chat, 8, json!({"text": text}));
        m["edit_date"] = json!(1_795_000_100);
        json!({"update_id": update_id, "edited_message": m})
    }

    pub fn button(update_id: i64, chat: i64, data: &str) -> Value {
        json!({"update_id": update_id, "callback_query": {
            "id": format!("cbq{update_id}"),
            "from": user(chat),
            "message": message(private_chat(chat), 123456789, 1001, json!({"text": "Reply 1 or 2"})),
            "chat_instance": "-1234567890",
            "data": data,
        }})
    }
}
