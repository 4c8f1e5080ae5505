//! `unlockbot chat` driven through its standard input (issue 11, finding 6).

use crate::helpers::*;

const EMAIL: &str = "chat.user@nhs.net";

#[tokio::test]
async fn chat_shows_its_own_texts_on_screen_and_sends_nothing_later() {
    let app = spawn_app().await;
    // The same answer to every question, so the script need not know which
    // questions the bot picks.
    let mut row = AccountRow::locked(EMAIL, "07811 123456");
    for qa in &mut row.qa {
        qa.1 = "Biscuit".into();
    }
    app.import(&[row]).await;

    let script = format!("UNLOCK\n{EMAIL}\n3456\nBiscuit\nBiscuit\n2\n");
    let (status, stdout, stderr) = app.cli(&["chat"], Some(&script));
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("temporary password is on its way"),
        "{stdout}"
    );
    // Both texts are on screen, as the demo shows them.
    assert!(stdout.contains("text to"), "{stdout}");
    let password = temp_password_in(
        stdout
            .lines()
            .find(|l| l.contains("temporary password is") && !l.contains("bot>"))
            .unwrap_or_else(|| panic!("no temporary password text on screen: {stdout}")),
    );
    assert!(
        app.password_is(EMAIL, &password),
        "the shown password works"
    );
    assert!(stdout.contains("new password was requested"), "{stdout}");

    // Nothing stays queued for a later `serve` to send to the real phone.
    let waiting = "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')";
    assert_eq!(app.db.scalar(waiting.into()).await, 0);
    assert_eq!(
        app.db
            .scalar("SELECT COUNT(*) FROM outbox WHERE status = 'sent'".into())
            .await,
        2
    );
    assert!(app.sent_texts().await.is_empty(), "nothing went to Twilio");
}
