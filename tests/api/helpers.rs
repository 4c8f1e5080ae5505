//! `spawn_app()` and friends.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Duration, TimeZone, Utc};
use tokio::sync::oneshot;
use unlockbot::app::Application;
use unlockbot::channels::sms_twilio;
use unlockbot::clock::{Clock, ManualClock};
use unlockbot::hashing::Hasher;
use unlockbot::settings::Settings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub const BOT_NUMBER: &str = "+447400000001";
pub const PUBLIC_BASE: &str = "https://unlock.example.nhs.uk";

/// A user texting from their own phone.
pub const USER_PHONE: &str = "+447811123456";

/// Everything the code logs, from every test in this binary (so a test can
/// check that no secret was ever logged).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace,hyper=info,h2=info,sqlx=info,reqwest=info,wiremock=info")
            .with_writer(move || BufWriter(writer.clone()))
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One account row for the CSV importer.
#[derive(Clone)]
pub struct AccountRow {
    pub email: String,
    pub mobile: String,
    pub organisation: String,
    pub same_sign_on: bool,
    pub synced_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub qa: Vec<(String, String)>,
}

impl AccountRow {
    /// A locked account with three security questions.
    pub fn locked(email: &str, mobile: &str) -> Self {
        Self {
            email: email.into(),
            mobile: mobile.into(),
            organisation: "Leeds Teaching Hospitals".into(),
            same_sign_on: false,
            synced_at: None,
            locked: true,
            qa: vec![
                (
                    "What was the name of your first pet?".into(),
                    "Biscuit".into(),
                ),
                ("In which town were you born?".into(), "Leeds".into()),
                ("What was the make of your first car?".into(), "Mini".into()),
            ],
        }
    }

    fn csv_line(&self) -> String {
        let q = |i: usize| self.qa.get(i).cloned().unwrap_or_default();
        let esc = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut cols = vec![
            esc(&self.email),
            esc(&self.mobile),
            esc(&self.organisation),
            self.same_sign_on.to_string(),
            self.synced_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.locked.to_string(),
        ];
        for i in 0..3 {
            let (question, answer) = q(i);
            cols.push(esc(&question));
            cols.push(esc(&answer));
        }
        cols.join(",")
    }
}

pub const CSV_HEADER: &str = "email,mobile,organisation,same_sign_on,synced_at,locked,question1,answer1,question2,answer2,question3,answer3";

pub fn csv_of(rows: &[AccountRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&r.csv_line());
        out.push('\n');
    }
    out
}

/// The answer the security question `question` expects, for rows built by
/// [`AccountRow::locked`].
pub fn answer_for(reply: &str) -> &'static str {
    if reply.contains("first pet") {
        "Biscuit"
    } else if reply.contains("born") {
        "Leeds"
    } else if reply.contains("first car") {
        "Mini"
    } else {
        panic!("no security question in reply: {reply}")
    }
}

/// The database a test runs on: a fresh SQLite file, or a fresh PostgreSQL
/// database (dropped when the test ends) when `UNLOCKBOT_TEST_POSTGRES` is set.
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres { server: String, name: String },
}

/// The PostgreSQL server tests use, if any (`postgres://user@host:port`).
pub fn postgres_server() -> Option<String> {
    std::env::var("UNLOCKBOT_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_end_matches('/').to_owned())
}

/// The PostgreSQL server for a test that needs PostgreSQL, or `None` to
/// skip it. Without `UNLOCKBOT_TEST_POSTGRES` the whole run prints one line
/// (straight to standard error, past the test harness's capture) saying the
/// PostgreSQL-only tests were skipped; with `UNLOCKBOT_REQUIRE_POSTGRES=1`
/// (as in CI) a missing server is a failure instead.
pub fn postgres_or_skip() -> Option<String> {
    if let Some(server) = postgres_server() {
        return Some(server);
    }
    let required =
        std::env::var("UNLOCKBOT_REQUIRE_POSTGRES").is_ok_and(|v| matches!(v.trim(), "1" | "true"));
    assert!(
        !required,
        "UNLOCKBOT_REQUIRE_POSTGRES=1 but UNLOCKBOT_TEST_POSTGRES is not set: \
         the PostgreSQL tests cannot be skipped"
    );
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the PostgreSQL-only tests (several instances, database outage); \
             set UNLOCKBOT_TEST_POSTGRES=postgres://user@host:port to run them"
        );
    });
    None
}

impl TestDb {
    async fn create(dir: &Path) -> Self {
        match postgres_server() {
            None => TestDb::Sqlite(dir.join("unlockbot.sqlite")),
            Some(server) => {
                let name = format!("unlockbot_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
                    .await
                    .expect("UNLOCKBOT_TEST_POSTGRES is reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                TestDb::Postgres { server, name }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDb::Postgres { server, name } => format!("{server}/{name}"),
        }
    }

    /// One number from a query (SQL common to both backends).
    pub async fn scalar(&self, sql: String) -> i64 {
        match self {
            TestDb::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                n
            }
            TestDb::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                n
            }
        }
    }
}

impl TestDb {
    /// One text column of every row of a query (SQL common to both backends).
    pub async fn strings(&self, sql: String) -> Vec<String> {
        match self {
            TestDb::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
            TestDb::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
                let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
        }
    }

    /// Run one statement (SQL common to both backends).
    pub async fn execute(&self, sql: String) {
        match self {
            TestDb::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            TestDb::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { server, name } = self {
            let (server, name) = (server.clone(), name.clone());
            // Drop it from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&format!("{server}/postgres")).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A fixed OUTBOX_KEY for tests.
pub const OUTBOX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The key sender hashes are made with in tests (derived from OUTBOX_KEY,
/// as no SENDER_KEY is set).
pub fn sender_key() -> unlockbot::domain::SenderKey {
    unlockbot::sms::outbox::OutboxKey::from_hex(OUTBOX_KEY)
        .unwrap()
        .sender_key()
}

/// How a conversation key (`sms:+44…`) is stored.
pub fn stored_key(key: &str) -> String {
    sender_key().conversation(&unlockbot::domain::ConversationKey::parse(key).unwrap())
}

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub twilio: MockServer,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    env: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    /// The server runs on a runtime and thread of its own, so that a test
    /// blocking its own thread (waiting for a CLI process, say) never
    /// stalls the server half-way through a database transaction.
    server: Option<std::thread::JoinHandle<()>>,
    sid_counter: u64,
    /// The running server's hashing pool (to watch how much runs at once).
    pub hasher: Option<Hasher>,
    /// What the running server's unlock policy asked of its ports.
    pub work: Option<Arc<unlockbot::unlock::work::WorkCounter>>,
}

/// Options for a test server.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra or overriding environment variables.
    pub env: Vec<(&'static str, String)>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    log_buffer();
    let dir = tempfile::tempdir().expect("temp dir");
    let twilio = start_fake_twilio().await;
    let db = TestDb::create(dir.path()).await;
    let mut env = base_env(&db.url(), &twilio.uri());
    for (k, v) in options.env {
        env.insert(k.to_owned(), v);
    }
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 30, 0).unwrap(),
    ));
    let mut app = TestApp {
        address: String::new(),
        db,
        dir,
        twilio,
        clock,
        client: reqwest::Client::new(),
        env,
        stop: None,
        server: None,
        sid_counter: 0,
        hasher: None,
        work: None,
    };
    app.start().await;
    app
}

/// The environment a test server starts with: the given database, Twilio
/// (signed webhooks) against the fake at `twilio_uri`, a fixed outbox key
/// and quick outbox polling.
pub fn base_env(database_url: &str, twilio_uri: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", database_url.to_owned()),
        ("OUTBOX_KEY", OUTBOX_KEY.to_owned()),
        ("OUTBOX_RETRY_BASE_MS", "1000".to_owned()),
        ("OUTBOX_POLL_MS", "50".to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE.to_owned()),
        ("DIALOGS_DIR", dialogs_dir().display().to_string()),
        ("SMS_PROVIDER", "twilio".to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ("TWILIO_FROM_NUMBER", BOT_NUMBER.to_owned()),
        ("TWILIO_API_BASE", twilio_uri.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn dialogs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogs")
}

/// A fake Twilio Messages API: `POST …/Messages.json` creates a message
/// (201, Twilio's JSON) and remembers it; `GET …/Messages.json?To=…` lists
/// the messages created for that number, as Twilio does. Tests mount
/// higher-priority mocks on the server to script failures or delays.
pub async fn start_fake_twilio() -> MockServer {
    start_fake_twilio_with_texts().await.0
}

/// The messages a fake Twilio API has created (what its listing returns).
pub type CreatedTexts = Arc<Mutex<Vec<serde_json::Value>>>;

/// [`start_fake_twilio`], also handing out the messages it has created, so
/// that a test can mount scripted responders (see [`create_message_slowly`])
/// that create messages the listing then finds.
pub async fn start_fake_twilio_with_texts() -> (MockServer, CreatedTexts) {
    // A server of its own, not one from wiremock's pool: a server of an
    // earlier test may still be finishing a text when that test ends, and
    // must not reach a pooled fake that a later test now owns.
    let twilio = MockServer::builder().start().await;
    let created: CreatedTexts = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(CreateMessage(created.clone()))
        .with_priority(10)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(messages_path()))
        .respond_with(ListMessages(created.clone()))
        .with_priority(10)
        .mount(&twilio)
        .await;
    (twilio, created)
}

/// Creates the message at once, as the fake Twilio API does (so it is
/// listed), but answers only after `delay`: the provider took the text and
/// its answer is slow to come back.
pub fn create_message_slowly(
    created: CreatedTexts,
    delay: std::time::Duration,
) -> impl wiremock::Respond {
    struct Slowly(CreateMessage, std::time::Duration);
    impl wiremock::Respond for Slowly {
        fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
            wiremock::Respond::respond(&self.0, request).set_delay(self.1)
        }
    }
    Slowly(CreateMessage(created), delay)
}

struct CreateMessage(Arc<Mutex<Vec<serde_json::Value>>>);

impl wiremock::Respond for CreateMessage {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let mut created = self.0.lock().unwrap();
        let message = serde_json::json!({
            "sid": format!("SM{:032x}", created.len() + 1),
            "account_sid": ACCOUNT_SID,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "error_code": null,
            "error_message": null,
            "date_created": chrono::Utc::now().to_rfc2822(),
        });
        created.push(message.clone());
        ResponseTemplate::new(201).set_body_json(message)
    }
}

struct ListMessages(Arc<Mutex<Vec<serde_json::Value>>>);

impl wiremock::Respond for ListMessages {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let to = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned());
        let messages: Vec<serde_json::Value> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| to.is_none() || m["to"].as_str() == to.as_deref())
            .cloned()
            .collect();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": messages,
            "page": 0,
            "page_size": 100,
            "next_page_uri": null,
        }))
    }
}

/// The parameters of Twilio's inbound SMS webhook for a text.
pub fn twilio_inbound_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "GB"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("FromCountry", "GB"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", BOT_NUMBER),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A text the fake Twilio API received.
#[derive(Debug, Clone)]
pub struct SentText {
    pub to: String,
    pub from: String,
    pub body: String,
    pub basic_auth: Option<String>,
}

impl TestApp {
    pub fn settings(&self) -> Settings {
        Settings::from_map(&self.env).expect("test settings")
    }

    async fn start(&mut self) {
        let settings = self.settings();
        let clock = self.clock.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let app = Application::build_with(settings, clock, None)
                    .await
                    .expect("app builds");
                let _ = ready_tx.send((
                    app.port(),
                    app.services.hasher.clone(),
                    app.services.engine.work(),
                ));
                app.run_until(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("server runs");
            });
        });
        let (port, hasher, work) = ready_rx.await.expect("server started");
        self.hasher = Some(hasher);
        self.work = Some(work);
        self.address = format!("http://127.0.0.1:{port}");
        self.stop = Some(stop_tx);
        self.server = Some(server);
    }

    /// Stop the server and start a new one on the same database.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.join())
                .await
                .expect("joined")
                .expect("server stopped");
        }
        self.start().await;
    }

    /// Set a variable for the next (re)start of the server and for the CLI.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.insert(name.to_owned(), value.to_owned());
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn next_sid(&mut self) -> String {
        self.sid_counter += 1;
        format!("SM{:032x}", self.sid_counter)
    }

    /// Twilio's inbound parameters for a text.
    pub fn inbound_params(&self, from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
        twilio_inbound_params(from, body, sid)
    }

    /// POST a form to the webhook, signed as Twilio would sign it.
    pub async fn post_signed(&self, params: &[(String, String)]) -> reqwest::Response {
        let signature = sms_twilio::signature(
            AUTH_TOKEN,
            &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
            params,
        );
        self.client
            .post(format!("{}{}", self.address, sms_twilio::PATH))
            .header("X-Twilio-Signature", signature)
            .form(params)
            .send()
            .await
            .expect("request")
    }

    /// Text the bot from `from`; returns the reply text (TwiML unwrapped).
    pub async fn text_from(&mut self, from: &str, body: &str) -> String {
        let sid = self.next_sid();
        let params = self.inbound_params(from, body, &sid);
        let response = self.post_signed(&params).await;
        assert_eq!(response.status(), 200, "webhook answered");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        twiml_text(&response.text().await.unwrap())
    }

    /// Text the bot from the usual user phone.
    pub async fn text(&mut self, body: &str) -> String {
        self.text_from(USER_PHONE, body).await
    }

    pub async fn import(&self, rows: &[AccountRow]) {
        let (status, stdout, stderr) = self.cli(&["accounts", "import", "-"], Some(&csv_of(rows)));
        assert!(status.success(), "import failed: {stdout}\n{stderr}");
    }

    /// Run the real binary against this app's database.
    pub fn cli(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (std::process::ExitStatus, String, String) {
        run_cli(&self.env, self.dir.path(), args, stdin)
    }

    pub fn account(&self, email: &str) -> serde_json::Value {
        let (status, stdout, stderr) = self.cli(&["accounts", "show", email, "--json"], None);
        assert!(status.success(), "show failed: {stderr}");
        serde_json::from_str(&stdout).expect("accounts show --json prints JSON")
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        let (status, stdout, stderr) = self.cli(&["audit", "--json"], None);
        assert!(status.success(), "audit failed: {stderr}");
        serde_json::from_str(&stdout).expect("audit --json prints JSON")
    }

    pub fn password_is(&self, email: &str, password: &str) -> bool {
        let (status, _, _) = self.cli(&["accounts", "verify-password", email], Some(password));
        status.success()
    }

    /// The status of `GET path` on the server.
    pub async fn get_status(&self, path: &str) -> u16 {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Texts the fake Twilio API received, in order (once the outbox has
    /// nothing due).
    pub async fn sent_texts(&self) -> Vec<SentText> {
        self.outbox_settled().await;
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r.url.path().ends_with("/Messages.json") && r.method == wiremock::http::Method::POST
            })
            .map(|r| {
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(&r.body).into_owned().collect();
                SentText {
                    to: form.get("To").cloned().unwrap_or_default(),
                    from: form.get("From").cloned().unwrap_or_default(),
                    body: form.get("Body").cloned().unwrap_or_default(),
                    basic_auth: r
                        .headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned()),
                }
            })
            .collect()
    }

    /// Conversations in progress (an ended one is kept, marked ended,
    /// only to answer a message after its end).
    pub async fn live_conversations(&self) -> i64 {
        self.db
            .scalar(
                // TEXT on SQLite, JSONB on PostgreSQL (whose text form has a
                // space after the colon): compare without spaces on both.
                "SELECT COUNT(*) FROM conversations WHERE REPLACE(CAST(state AS TEXT), ' ', '') NOT LIKE '%\"ended\":true%'".into(),
            )
            .await
    }

    /// Rows in a table, straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .scalar(format!("SELECT COUNT(*) FROM {table}"))
            .await
    }

    /// Everything the database holds, as bytes, as someone with a copy of
    /// the server's files would read it: the SQLite files (main file,
    /// write-ahead log and shared-memory index), or on PostgreSQL a dump of
    /// the database plus every raw page of every table, index and TOAST
    /// table (dead row versions and free space included), read with
    /// `pageinspect`.
    pub async fn database_bytes(&self) -> Vec<u8> {
        match &self.db {
            TestDb::Sqlite(path) => {
                let mut out = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{suffix}", path.display()));
                    if let Ok(bytes) = std::fs::read(&p) {
                        out.extend(bytes);
                    }
                }
                out
            }
            TestDb::Postgres { .. } => {
                let dump = std::process::Command::new("pg_dump")
                    .arg("--no-owner")
                    .arg(self.db.url())
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    dump.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&dump.stderr)
                );
                let mut out = dump.stdout;
                let pool = sqlx::PgPool::connect(&self.db.url()).await.unwrap();
                sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
                    .execute(&pool)
                    .await
                    .unwrap();
                let relations: Vec<(String, i32)> = sqlx::query_as(
                    "SELECT c.oid::regclass::text, (pg_relation_size(c.oid) / current_setting('block_size')::int)::int
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't', 'm')",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                assert!(relations.iter().any(|(name, _)| name == "outbox"));
                for (relation, blocks) in relations {
                    for block in 0..blocks {
                        let page: Vec<u8> = sqlx::query_scalar("SELECT get_raw_page($1, $2)")
                            .bind(&relation)
                            .bind(block)
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                        out.extend(page);
                    }
                }
                pool.close().await;
                out
            }
        }
    }

    /// The sealed texts the outbox holds now (nonce + ciphertext).
    pub async fn sealed_texts(&self) -> Vec<Vec<u8>> {
        match &self.db {
            TestDb::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.db.url()).await.unwrap();
                let rows = sqlx::query_scalar("SELECT sealed FROM outbox WHERE sealed IS NOT NULL")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
            TestDb::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.db.url()).await.unwrap();
                let rows = sqlx::query_scalar("SELECT sealed FROM outbox_secrets")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
        }
    }

    /// Wait until the outbox has nothing due: every text that can be sent
    /// now has been sent or has finally failed.
    pub async fn outbox_settled(&self) {
        let now = self.clock.now();
        let due = match &self.db {
            TestDb::Sqlite(_) => format!(
                "SELECT COUNT(*) FROM outbox WHERE status = 'sending' OR (status = 'pending' AND next_attempt_at <= {})",
                now.timestamp_millis()
            ),
            TestDb::Postgres { .. } => format!(
                "SELECT COUNT(*) FROM outbox WHERE status = 'sending' OR (status = 'pending' AND next_attempt_at <= '{}')",
                now.to_rfc3339()
            ),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.db.scalar(due.clone()).await > 0 {
            assert!(std::time::Instant::now() < deadline, "outbox never settled");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Run a whole verification for `email` and return the options prompt.
    pub async fn verify(&mut self, email: &str, last4: &str) -> String {
        self.text("UNLOCK").await;
        self.text(email).await;
        let q1 = self.text(last4).await;
        let q2 = self.text(answer_for(&q1)).await;
        self.text(answer_for(&q2)).await
    }
}

pub fn run_cli(
    env: &HashMap<String, String>,
    cwd: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (std::process::ExitStatus, String, String) {
    use std::process::{Command, Stdio};
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut input = stdin.map(str::to_owned);
    // `accounts import -` reads the CSV from a file we write.
    if args.len() == 3 && args[0] == "accounts" && args[1] == "import" && args[2] == "-" {
        let file = cwd.join(format!("import-{}.csv", uuid::Uuid::new_v4()));
        std::fs::write(&file, input.take().unwrap_or_default()).unwrap();
        args[2] = file.display().to_string();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
        .args(&args)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text inside `<Response><Message>…</Message></Response>`, unescaped.
pub fn twiml_text(xml: &str) -> String {
    if xml == r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"# {
        return String::new();
    }
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#),
        "not TwiML: {xml}"
    );
    let Some(start) = xml.find("<Message>") else {
        return String::new();
    };
    let end = xml.rfind("</Message>").expect("closed Message");
    quick_xml::escape::unescape(&xml[start + "<Message>".len()..end])
        .expect("valid XML escapes")
        .into_owned()
}

// ------------------------------------------------------------------------
// Helpers for the policy, webhook, bad-input and CLI tests.

/// The temporary password in the text that carries it.
pub fn temp_password_in(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != "is")
        .nth(1)
        .unwrap_or_else(|| panic!("no password in the text: {text}"))
        .to_owned()
}

/// Twilio's error JSON, as its API sends it.
pub fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

/// The path of the fake Twilio Messages API.
pub fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

impl TestApp {
    /// The account, or `None` when `accounts show` finds none.
    pub fn account_opt(&self, email: &str) -> Option<serde_json::Value> {
        let (status, stdout, _) = self.cli(&["accounts", "show", email, "--json"], None);
        status
            .success()
            .then(|| serde_json::from_str(&stdout).expect("accounts show --json prints JSON"))
    }

    /// Start the binary with some variables set (overriding), its standard
    /// output and error going to files in the test's directory (returned
    /// with the running process), for a test that kills it part way.
    pub fn cli_started(
        &self,
        set: &[(&str, &str)],
        args: &[&str],
    ) -> (std::process::Child, PathBuf, PathBuf) {
        use std::process::{Command, Stdio};
        let id = uuid::Uuid::new_v4();
        let out_path = self.dir.path().join(format!("stdout-{id}"));
        let err_path = self.dir.path().join(format!("stderr-{id}"));
        let child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
            .args(args)
            .env_clear()
            .envs(&self.env)
            .envs(set.iter().copied())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("binary runs");
        (child, out_path, err_path)
    }

    /// Run the binary with some variables set (overriding) and some removed,
    /// killing it after `timeout` (a server that should have refused to start).
    /// Returns `None` as the status when it had to be killed.
    pub fn cli_with_env(
        &self,
        set: &[(&str, &str)],
        unset: &[&str],
        args: &[&str],
        timeout: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, String, String) {
        use std::process::{Command, Stdio};
        let mut env = self.env.clone();
        for name in unset {
            env.remove(*name);
        }
        for (name, value) in set {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        let id = uuid::Uuid::new_v4();
        let out_path = self.dir.path().join(format!("stdout-{id}"));
        let err_path = self.dir.path().join(format!("stderr-{id}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
            .args(args)
            .env_clear()
            .envs(&env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("binary runs");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        (
            status,
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    }

    /// POST `params` with an explicit signature header (or none).
    pub async fn post_form(
        &self,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{}", self.address, sms_twilio::PATH))
            .form(params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.expect("request")
    }

    /// POST raw bytes as a form body, with an explicit signature (or none).
    pub async fn post_raw(&self, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{}", self.address, sms_twilio::PATH))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.expect("request")
    }

    /// Text the bot with a given MessageSid; returns (status, content type,
    /// raw body).
    pub async fn text_with_sid(&self, from: &str, body: &str, sid: &str) -> (u16, String, String) {
        let params = self.inbound_params(from, body, sid);
        let response = self.post_signed(&params).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// Row counts of the tables a webhook call may write.
    pub async fn write_counts(&self) -> [i64; 5] {
        [
            self.count("conversations").await,
            self.count("processed_messages").await,
            self.count("audit_log").await,
            self.count("verification_failures").await,
            self.count("account_blocks").await,
        ]
    }
}
