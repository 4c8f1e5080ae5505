//! The database under stress: an outage (readiness fails, webhooks answer
//! 503 and change nothing, and the conversation goes on when the database is
//! back; PostgreSQL only, since an embedded SQLite file cannot be taken away
//! from a running process in a test), more turns at once than connections,
//! simultaneous guesses for one account, claims limited to one
//! conversation, and pruning of old message ids.

use crate::helpers::*;
use unlockbot::hashing::{HashSettings, Hasher};

const EMAIL: &str = "jane.smith@nhs.net";

async fn admin(server: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap()
}

async fn set_allow_connections(server: &str, name: &str, allow: bool) {
    let admin = admin(server).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    if !allow {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
}

#[tokio::test]
async fn while_the_database_is_down_webhooks_answer_503_and_nothing_is_half_done() {
    if postgres_or_skip().is_none() {
        return;
    }
    let mut app = spawn_app().await;
    let TestDb::Postgres { server, name } = &app.db else {
        unreachable!("UNLOCKBOT_TEST_POSTGRES is set, so the test database is PostgreSQL");
    };
    let (server, name) = (server.clone(), name.clone());
    app.import(&[AccountRow::locked(EMAIL, "07811 123456")])
        .await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;

    set_allow_connections(&server, &name, false).await;
    assert_eq!(app.get_status("/readyz").await, 503);
    assert_eq!(
        app.get_status("/healthz").await,
        200,
        "the process itself is fine"
    );
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "3456", &sid);
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 503, "Twilio should retry later");

    set_allow_connections(&server, &name, true).await;
    assert_eq!(app.get_status("/readyz").await, 200);
    // Twilio's retry of the same message is processed now, from the step
    // the conversation was at.
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 200);
    let reply = twiml_text(&response.text().await.unwrap());
    assert!(reply.starts_with("Security question 1 of 2"), "{reply}");
    assert_eq!(app.count("processed_messages").await, 3);
}

/// More turns in flight than the pool has connections: each turn holds a
/// connection for its transaction and reads the directory through another,
/// so with one shared pool they would wait for each other until the
/// acquire timeout (503s). Found by the load benchmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_turns_at_once_than_connections_all_complete() {
    if postgres_or_skip().is_none() {
        return;
    }
    const USERS: usize = 40;
    let mut app = spawn_app().await;
    let rows: Vec<AccountRow> = (0..USERS)
        .map(|i| {
            let mut row =
                AccountRow::locked(&format!("user{i}@nhs.net"), &format!("07400 1{i:05}"));
            row.qa.truncate(2);
            row
        })
        .collect();
    app.import(&rows).await;
    let phone = |i: usize| format!("+447811{i:06}");
    for i in 0..USERS {
        app.text_from(&phone(i), "UNLOCK").await;
        app.text_from(&phone(i), &format!("user{i}@nhs.net")).await;
    }
    // Every user sends the last 4 digits at the same moment.
    let requests: Vec<_> = (0..USERS)
        .map(|i| {
            let sid = app.next_sid();
            // The mobile is 07400 1iiiii: its last 4 digits are i's, padded.
            app.inbound_params(&phone(i), &format!("{i:04}"), &sid)
        })
        .collect();
    let replies = futures::future::join_all(requests.iter().map(|p| app.post_signed(p))).await;
    for response in replies {
        assert_eq!(response.status(), 200);
        let reply = twiml_text(&response.text().await.unwrap());
        assert!(reply.starts_with("Security question 1 of 2"), "{reply}");
    }
}

/// The terminal chat's worker claims only its own conversation's texts, so
/// pointing `unlockbot chat` at a database that `serve` also uses can never
/// print (and swallow) a text meant for a real phone.
#[tokio::test]
async fn a_claim_for_one_conversation_takes_no_other_texts() {
    use wiremock::matchers::{method, path};
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, "07811 123456")])
        .await;
    wiremock::Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    app.verify(EMAIL, "3456").await;
    app.text("1").await;
    app.outbox_settled().await; // tried once, now waiting for its retry
    let database = unlockbot::app::Database::connect(
        &app.db.url(),
        false,
        Hasher::new(HashSettings::default()),
        sender_key(),
    )
    .await
    .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let lease = chrono::Duration::seconds(60);
    let terminal = database
        .store
        .claim_outbox(
            later,
            lease,
            10,
            Some(&unlockbot::channels::terminal::conversation_key()),
        )
        .await
        .unwrap();
    assert!(terminal.is_empty(), "{terminal:?}");
    let own = database
        .store
        .claim_outbox(
            later,
            lease,
            10,
            Some(&unlockbot::domain::ConversationKey::parse(&format!("sms:{USER_PHONE}")).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
}

/// Guesses for one account from many phones at the same moment are checked
/// one after the other: no more than the limit are ever counted, and every
/// guess after the third is refused as blocked, even the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_for_one_account_cannot_exceed_the_limit() {
    const PHONES: usize = 8;
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, "07811 123456")])
        .await;
    let phone = |i: usize| format!("+447400{i:06}");
    for i in 0..PHONES {
        app.text_from(&phone(i), "UNLOCK").await;
        app.text_from(&phone(i), EMAIL).await;
    }
    // Seven wrong guesses and the right one, all at once.
    let requests: Vec<_> = (0..PHONES)
        .map(|i| {
            let sid = app.next_sid();
            let guess = if i == PHONES - 1 {
                "3456".to_owned()
            } else {
                format!("{:04}", 1000 + i)
            };
            app.inbound_params(&phone(i), &guess, &sid)
        })
        .collect();
    let replies = futures::future::join_all(requests.iter().map(|p| app.post_signed(p))).await;
    let mut verified = 0;
    for response in replies {
        assert_eq!(response.status(), 200);
        if twiml_text(&response.text().await.unwrap()).starts_with("Security question 1") {
            verified += 1;
        }
    }
    let failures = app.count("verification_failures").await;
    assert!(failures <= 3, "{failures} failures counted");
    assert_eq!(app.count("account_blocks").await, 1);
    // The right guess only passes if it came before the third wrong one.
    assert!(verified <= 1);
    if verified == 1 {
        assert!(failures <= 3);
    }
}

/// The stored reply to an inbound message is dropped after two days (a
/// repeated delivery is then still recognised, and answered with nothing);
/// SMS ids are forgotten only after `INBOUND_ID_RETENTION_DAYS`, Telegram's
/// after two days (it reuses an `update_id` after a quiet week).
#[tokio::test]
async fn old_inbound_replies_and_ids_are_pruned() {
    use unlockbot::store::ProcessedPrune;
    let mut app = spawn_app().await;
    app.text("UNLOCK").await;
    assert_eq!(app.count("processed_messages").await, 1);
    let database = unlockbot::app::Database::connect(
        &app.db.url(),
        false,
        Hasher::new(HashSettings::default()),
        sender_key(),
    )
    .await
    .unwrap();
    let now = unlockbot::clock::Clock::now(app.clock.as_ref());
    let later = now + chrono::Duration::seconds(1);
    let prune = |replies_before, sms_ids_before| ProcessedPrune {
        replies_before,
        sms_ids_before,
        other_ids_before: later,
    };
    let removed = database
        .store
        .prune_processed(&prune(now - chrono::Duration::days(2), now))
        .await
        .unwrap();
    assert_eq!(removed, 0, "recent ids are kept");
    let non_empty = "SELECT COUNT(*) FROM processed_messages WHERE reply <> ''";
    assert_eq!(app.db.scalar(non_empty.into()).await, 1);
    let removed = database
        .store
        .prune_processed(&prune(later, now))
        .await
        .unwrap();
    assert_eq!(removed, 0, "an SMS id outlives its reply");
    assert_eq!(app.db.scalar(non_empty.into()).await, 0, "reply dropped");
    assert_eq!(app.count("processed_messages").await, 1);
    let removed = database
        .store
        .prune_processed(&prune(later, later))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(app.count("processed_messages").await, 0);
}
