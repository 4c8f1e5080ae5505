//! A database that goes away: readiness fails, webhooks answer 503 and
//! change nothing, and the conversation goes on when the database is back.
//! PostgreSQL only (an embedded SQLite file cannot be taken away from under
//! a running process in a test).

use crate::helpers::*;

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
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let healthy = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "the process itself is fine");
    let sid = app.next_sid();
    let params = app.inbound_params(USER_PHONE, "3456", &sid);
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 503, "Twilio should retry later");

    set_allow_connections(&server, &name, true).await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Twilio's retry of the same message is processed now, from the step
    // the conversation was at.
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 200);
    let reply = twiml_text(&response.text().await.unwrap());
    assert!(reply.starts_with("Security question 1 of 2"), "{reply}");
    assert_eq!(app.count("processed_messages").await, 3);
}
