//! An operator's first steps (issue 11, finding 7): `.env.example` works as
//! copied, malformed credentials are refused by name, `serve` says which
//! checks are on, and read-only commands never create a database.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A directory laid out as a fresh checkout the operator has just run
/// `cp .env.example .env` in: the example as `.env`, and the dialogs.
fn checkout_with_env_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_file(".env.example"), dir.path().join(".env")).unwrap();
    let dialogs = dir.path().join("dialogs");
    std::fs::create_dir(&dialogs).unwrap();
    for entry in std::fs::read_dir(dialogs_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dialogs.join(entry.file_name())).unwrap();
    }
    dir
}

/// Run the binary in `dir` with nothing in its environment but `env` (and
/// PATH): whatever it needs comes from `dir/.env`.
fn run_in(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> (std::process::ExitStatus, String, String) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    run_cli(&env, dir, args, stdin)
}

/// `serve` started in `dir`; killed when dropped.
struct Served {
    child: Child,
    stderr: PathBuf,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Start `serve` in `dir` (JSON logs, any free port) and wait until it
/// listens; panics with its output if it stops instead.
fn serve_in(dir: &Path, env: &[(&str, &str)]) -> Served {
    let stderr = dir.join(format!("serve-{}.log", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("binary runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        let port = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["fields"]["message"] == "unlockbot listening")
            .and_then(|l| l["fields"]["port"].as_u64());
        if let Some(port) = port {
            return Served {
                child,
                stderr,
                port: u16::try_from(port).unwrap(),
            };
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let _ = std::fs::File::open(&stderr)
                .unwrap()
                .read_to_string(&mut out);
            panic!("serve stopped ({status}) instead of listening:\n{out}");
        }
        assert!(Instant::now() < deadline, "serve never listened:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `unlockbot chat` in `dir`, answering each reply as `answer` decides
/// (None: leave), as a person at the terminal would. Returns the screen.
fn chat_in(dir: &Path, first: &str, mut answer: impl FnMut(&str) -> Option<String>) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
        .arg("chat")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary runs");
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let prompts = |screen: &str| screen.matches("you> ").count();
    let wait_for_prompt = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = screen.lock().unwrap().clone();
            if prompts(&now) >= count {
                return now;
            }
            assert!(Instant::now() < deadline, "chat stopped answering:\n{now}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut seen = wait_for_prompt(1);
    let mut next = Some(first.to_owned());
    while let Some(line) = next {
        writeln!(stdin, "{line}").unwrap();
        let count = prompts(&seen) + 1;
        seen = wait_for_prompt(count);
        let reply = seen.rsplit("you> ").nth(1).unwrap_or_default().to_owned();
        next = answer(&reply);
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let screen = screen.lock().unwrap().clone();
    assert!(status.success(), "{screen}");
    screen
}

#[tokio::test]
async fn env_example_works_as_copied() {
    // The README's first steps, in a fresh checkout: copy the example,
    // import the sample accounts, list them, unlock one in the terminal.
    let dir = checkout_with_env_example();
    let path = dir.path();
    std::fs::copy(repo_file("accounts.csv"), path.join("accounts.csv")).unwrap();

    let (status, stdout, stderr) = run_in(path, &[], &["dialog", "check"], None);
    assert!(status.success(), "dialog check: {stdout}\n{stderr}");
    let (status, stdout, stderr) = run_in(path, &[], &["accounts", "import", "accounts.csv"], None);
    assert!(status.success(), "accounts import: {stdout}\n{stderr}");
    assert!(stdout.contains("6 imported, 0 rejected"), "{stdout}");
    assert!(
        path.join("unlockbot.sqlite").exists(),
        "the database is the SQLite file the example names"
    );
    let (status, stdout, stderr) = run_in(path, &[], &["accounts", "list"], None);
    assert!(status.success(), "accounts list: {stdout}\n{stderr}");
    assert!(stdout.contains("alex.morgan@nhsmail.example"), "{stdout}");
    let email = "alex.morgan@nhsmail.example";
    let (status, stdout, stderr) = run_in(path, &[], &["accounts", "show", email, "--json"], None);
    assert!(status.success(), "accounts show: {stdout}\n{stderr}");
    let account: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(account["mobile"], "+447700900001");
    assert_eq!(account["locked"], true);

    // A whole conversation in the terminal: the texts are shown, not sent.
    let mut steps = vec![email.to_owned(), "0001".to_owned()].into_iter();
    let shown = chat_in(path, "UNLOCK", |reply| {
        if let Some(step) = steps.next() {
            return Some(step);
        }
        if reply.contains('?') && (reply.contains("first") || reply.contains("born")) {
            return Some(answer_for(reply).to_owned());
        }
        if reply.contains("Reply 1") {
            return Some("1".to_owned());
        }
        None
    });
    assert!(
        shown.contains("text to"),
        "the notice is on screen: {shown}"
    );
    let (_, stdout, _) = run_in(path, &[], &["accounts", "show", email, "--json"], None);
    let account: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(account["locked"], false, "chat unlocked it: {shown}");

    let (status, stdout, stderr) = run_in(path, &[], &["audit", "--json"], None);
    assert!(status.success(), "audit: {stdout}\n{stderr}");
    let audit: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert!(audit.iter().any(|e| e["outcome"] == "unlocked"), "{stdout}");
    let (status, stdout, _) = run_in(path, &[], &["keygen"], None);
    assert!(status.success() && stdout.trim().len() == 64, "{stdout}");

    // `serve` starts, says which checks are on, and takes an unsigned
    // webhook (local use) as its log says.
    let served = serve_in(path, &[]);
    let log = served.log();
    assert!(log.contains("start-up: SMS provider"), "{log}");
    assert!(log.contains("signature checking OFF"), "{log}");
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/sms/twilio", served.port))
        .form(&[
            ("From", "+447811123456"),
            ("Body", "UNLOCK"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("AccountSid", ACCOUNT_SID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", served.log());
    let reply = twiml_text(&response.text().await.unwrap());
    assert!(reply.contains("email"), "{reply}");
}

#[tokio::test]
async fn malformed_credentials_are_refused_with_the_variables_name() {
    let dir = checkout_with_env_example();
    let path = dir.path();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("TWILIO_AUTH_TOKEN", "change-me")], "TWILIO_AUTH_TOKEN"),
        (&[("TWILIO_AUTH_TOKEN", "changeme")], "TWILIO_AUTH_TOKEN"),
        (&[("TWILIO_AUTH_TOKEN", "xxx")], "TWILIO_AUTH_TOKEN"),
        (
            &[("TWILIO_AUTH_TOKEN", "your-auth-token")],
            "TWILIO_AUTH_TOKEN",
        ),
        (
            &[("TWILIO_ACCOUNT_SID", "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")],
            "TWILIO_ACCOUNT_SID",
        ),
        (&[("TWILIO_ACCOUNT_SID", "AC123")], "TWILIO_ACCOUNT_SID"),
        (
            &[("TWILIO_FROM_NUMBER", "07700 900123")],
            "TWILIO_FROM_NUMBER",
        ),
        (
            &[("TWILIO_FROM_NUMBER", "+44 7700 900123")],
            "TWILIO_FROM_NUMBER",
        ),
        (
            &[
                ("SMS_PROVIDER", "notify"),
                ("NOTIFY_API_KEY", "change-me"),
                ("NOTIFY_TEMPLATE_TEMP_PASSWORD", "t"),
                ("NOTIFY_TEMPLATE_NOTICE", "n"),
                ("OUTBOX_KEY", OUTBOX_KEY),
            ],
            "NOTIFY_API_KEY",
        ),
        (
            &[
                ("TELEGRAM_MODE", "polling"),
                ("TELEGRAM_BOT_TOKEN", "<token from BotFather>"),
            ],
            "TELEGRAM_BOT_TOKEN",
        ),
    ];
    for (env, variable) in cases {
        for command in [&["audit"][..], &["serve"][..]] {
            let (status, stdout, stderr) = run_in(path, env, command, None);
            assert_eq!(
                status.code(),
                Some(2),
                "{env:?} {command:?}: {stdout}\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("unlockbot: {variable}: ")),
                "{env:?} {command:?}: names {variable}: {stderr}"
            );
        }
    }
    // A line the .env parser cannot read stops every command, by line and
    // name, without printing the value.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join(".env"),
        "SMS_PROVIDER=log\nLDAP_BIND_PASSWORD=open sesame\nSUPPORT_CONTACT=\"the IT desk\"\n",
    )
    .unwrap();
    let (status, _, stderr) = run_in(broken.path(), &[], &["audit"], None);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(".env: line 2 (LDAP_BIND_PASSWORD)"),
        "{stderr}"
    );
    assert!(!stderr.contains("sesame"), "{stderr}");

    // Well-formed values pass.
    let (status, stdout, stderr) = run_in(
        path,
        &[
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_FROM_NUMBER", BOT_NUMBER),
            ("PUBLIC_BASE_URL", PUBLIC_BASE),
        ],
        &["dialog", "check"],
        None,
    );
    assert!(status.success(), "{stdout}\n{stderr}");
}

#[tokio::test]
async fn serve_logs_which_checks_are_on_without_secrets() {
    let dir = checkout_with_env_example();
    // The local provider, but a token left set: webhooks are checked.
    let served = serve_in(
        dir.path(),
        &[
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("PUBLIC_BASE_URL", PUBLIC_BASE),
        ],
    );
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/sms/twilio", served.port))
        .form(&[
            ("From", "+447811123456"),
            ("Body", "UNLOCK"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("AccountSid", ACCOUNT_SID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let log = served.log();
    let messages: Vec<(String, String)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| {
            (
                l["level"].as_str().unwrap_or_default().to_owned(),
                l["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let said = |needle: &str| {
        messages
            .iter()
            .find(|(_, m)| m.contains(needle))
            .unwrap_or_else(|| panic!("nothing about {needle:?} in:\n{log}"))
            .clone()
    };
    let (level, signature) = said("inbound SMS webhook /sms/twilio");
    assert_eq!(level, "INFO");
    assert!(
        signature.contains("signature checking ON")
            && signature.contains("TWILIO_AUTH_TOKEN")
            && signature.contains(&format!("{PUBLIC_BASE}/sms/twilio")),
        "{signature}"
    );
    let (level, warning) = said("SMS_PROVIDER=log but TWILIO_AUTH_TOKEN is set");
    assert_eq!(level, "WARN", "{warning}");
    assert!(said("start-up: SMS provider").1.contains("SMS provider"));
    assert!(said("start-up: Telegram").1.contains("off"));
    assert!(said("start-up: directory").1.contains("builtin"));
    assert!(log.contains("sms_provider"), "{log}");
    assert!(
        !log.contains(AUTH_TOKEN),
        "the token is never logged: {log}"
    );
    assert!(!log.contains(ACCOUNT_SID), "the SID is masked: {log}");
}

#[tokio::test]
async fn read_only_commands_on_a_missing_database_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.sqlite");
    let url = format!("sqlite://{}", file.display());
    let dialogs = dialogs_dir().display().to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DIALOGS_DIR", dialogs.as_str()),
    ];
    for command in [
        &["accounts", "show", "jane.smith@nhs.net"][..],
        &["accounts", "show", "jane.smith@nhs.net", "--json"][..],
        &["audit"][..],
        &["audit", "--json"][..],
        &["accounts", "lock", "jane.smith@nhs.net"][..],
        &["accounts", "verify-password", "jane.smith@nhs.net"][..],
    ] {
        let (status, stdout, stderr) = run_in(dir.path(), &env, command, Some(""));
        assert_eq!(status.code(), Some(2), "{command:?}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{command:?}: {stdout}");
        assert!(
            stderr.contains("does not exist") && stderr.contains("typo.sqlite"),
            "{command:?} names the database: {stderr}"
        );
        assert_eq!(
            stderr.matches("does not exist").count(),
            1,
            "said once: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!file.exists(), "{command:?} created the database");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{command:?} left files: {left:?}");
    }

    // PostgreSQL says so too, once, and without the password.
    if let Ok(server) = std::env::var("UNLOCKBOT_TEST_POSTGRES") {
        let name = format!("missing_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", server.trim_end_matches('/')).replacen(
            "postgres://postgres@",
            "postgres://postgres:hunter2@",
            1,
        );
        let env = [("DATABASE_URL", url.as_str()), ("DIALOGS_DIR", &dialogs)];
        let (status, stdout, stderr) = run_in(dir.path(), &env, &["audit"], None);
        assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(stderr.contains(&name), "{stderr}");
        assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
