//! `unlockbot demo`: try the bot with no configuration. Uses its own
//! database file (never the configured one), fills it with clearly marked
//! sample accounts, and starts a terminal conversation whose texts are shown
//! on screen.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;

use crate::app::Services;
use crate::clock::{Clock, SystemClock};
use crate::directory::NewAccount;
use crate::domain::{Answer, Email, hash_answer, parse_registered_mobile};
use crate::settings::Settings;
use crate::sms::console::ConsoleSender;
use crate::sms::outbox::OutboxKey;

/// The demo's own database file, beside (never instead of) the real one.
pub const DEMO_DATABASE_FILE: &str = "unlockbot-demo.sqlite";
pub const DEMO_DATABASE_URL: &str = "sqlite://unlockbot-demo.sqlite";

struct Sample {
    email: &'static str,
    mobile: Option<&'static str>,
    same_sign_on: bool,
    synced_hours_ago: Option<i64>,
    locked: bool,
    questions: &'static [(&'static str, &'static str)],
    what: &'static str,
}

const QUESTIONS: &[(&str, &str)] = &[
    ("What was the name of your first pet?", "Biscuit"),
    ("In which town were you born?", "Leeds"),
    ("What was the make of your first car?", "Mini"),
];

const SAMPLES: &[Sample] = &[
    Sample {
        email: "sample.locked@demo.nhs.net",
        mobile: Some("07400 123456"),
        same_sign_on: false,
        synced_hours_ago: None,
        locked: true,
        questions: QUESTIONS,
        what: "locked; try option 1 (unlock) or 2 (temporary password)",
    },
    Sample {
        email: "sample.sso@demo.nhs.net",
        mobile: Some("07400 654321"),
        same_sign_on: true,
        synced_hours_ago: Some(24 * 90),
        locked: true,
        questions: QUESTIONS,
        what: "locked, Same Sign On organisation",
    },
    Sample {
        email: "sample.newstarter@demo.nhs.net",
        mobile: Some("07400 111222"),
        same_sign_on: true,
        synced_hours_ago: Some(2),
        locked: true,
        questions: QUESTIONS,
        what: "Same Sign On, moved in 2 hours ago: reset refused for now",
    },
    Sample {
        email: "sample.jersey@demo.nhs.net",
        mobile: Some("07797 700123"),
        same_sign_on: false,
        synced_hours_ago: None,
        locked: true,
        questions: QUESTIONS,
        what: "registered mobile in Jersey: account disabled",
    },
    Sample {
        email: "sample.nomobile@demo.nhs.net",
        mobile: None,
        same_sign_on: false,
        synced_hours_ago: None,
        locked: true,
        questions: QUESTIONS,
        what: "no mobile: sent to the Local Administrator",
    },
];

/// The demo's settings: its own database, texts on the console, a fresh
/// outbox key; only the dialog and conversation settings come from the
/// environment.
pub fn settings() -> anyhow::Result<Settings> {
    let _ = dotenvy::dotenv();
    let mut env: HashMap<String, String> = [
        "DIALOGS_DIR",
        "DIALOG_LANGUAGE",
        "QUESTIONS_TO_ASK",
        "CONVERSATION_IDLE_MINUTES",
        "TEMP_PASSWORD_LENGTH",
        "SUPPORT_CONTACT",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_owned(), v)))
    .collect();
    env.insert("DATABASE_URL".into(), DEMO_DATABASE_URL.into());
    env.insert("SMS_PROVIDER".into(), "log".into());
    env.insert(
        "OUTBOX_KEY".into(),
        OutboxKey::generate().to_hex().to_string(),
    );
    Ok(Settings::from_map(&env)?)
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // A fresh demo database every time: no conversation, block or password
    // is left over from an earlier run.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DATABASE_FILE}{suffix}"));
    }
    let clock = SystemClock;
    let mut services = Services::build(
        &settings,
        Arc::new(SystemClock),
        Some(Arc::new(ConsoleSender::default())),
    )
    .await?;
    let now = clock.now();
    for s in SAMPLES {
        let questions = s
            .questions
            .iter()
            .map(|(q, a)| {
                Ok(crate::directory::NewQuestion::hashed(
                    *q,
                    hash_answer(&Answer::new(a))?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let account = NewAccount {
            email: Email::parse(s.email)?,
            mobile: s
                .mobile
                .map(|m| parse_registered_mobile(m, false))
                .transpose()?,
            organisation: "Demo Trust (SAMPLE DATA)".to_owned(),
            same_sign_on: s.same_sign_on,
            synced_at: s.synced_hours_ago.map(|h| now - Duration::hours(h)),
            locked: s.locked,
            questions,
        };
        crate::accounts::save(
            services.accounts.as_ref(),
            services.enrolments.as_ref(),
            &account,
            now,
        )
        .await?;
    }
    println!(
        "=== unlockbot DEMO: separate database unlockbot-demo.sqlite, SAMPLE accounts only ==="
    );
    println!("Texts to the registered mobile are printed here instead of being sent.\n");
    println!("Sample accounts (the demo database is made afresh every time the demo starts):");
    for s in SAMPLES {
        let last4 = s
            .mobile
            .map(|m| m.chars().filter(char::is_ascii_digit).collect::<String>())
            .map(|d| d[d.len() - 4..].to_owned())
            .unwrap_or_else(|| "----".into());
        println!("  {:<34} mobile ending {last4}  {}", s.email, s.what);
    }
    println!("Security answers for all of them:");
    for (q, a) in QUESTIONS {
        println!("  {q:<40} {a}");
    }
    println!(
        "\nTo check a temporary password afterwards:\n  DATABASE_URL={DEMO_DATABASE_URL} unlockbot accounts verify-password EMAIL   (password on standard input)\n"
    );
    crate::cli::chat(&mut services).await
}
