//! Several real `unlockbot serve` processes on one PostgreSQL database form
//! one service: a conversation may hop between them, concurrent deliveries
//! of one message are applied once, concurrent messages of one conversation
//! one after the other, and a queued text is delivered exactly once even
//! when the instance that queued or was sending it dies.
//!
//! PostgreSQL only: without `UNLOCKBOT_TEST_POSTGRES` each test prints one
//! `SKIPPED:` line and passes, unless `UNLOCKBOT_REQUIRE_POSTGRES=1` (CI).

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use unlockbot::channels::sms_twilio;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const JANE: &str = "jane.smith@nhs.net";
const JANE_MOBILE: &str = "07811 123456";
const JANE_PHONE: &str = "+447811123456";
const JOHN: &str = "john.jones@nhs.net";
const JOHN_MOBILE: &str = "07811 654321";
const JOHN_PHONE: &str = "+447811654321";

/// Longest wait for anything the tests expect to happen (generous: the
/// whole suite shares two cores).
const PATIENCE: Duration = Duration::from_secs(20);

/// The PostgreSQL server for these tests, or `None` when they are skipped
/// (after saying so on one line). With `UNLOCKBOT_REQUIRE_POSTGRES=1` (CI)
/// a missing server is a failure, not a skip.
/// One fresh database, a fake Twilio API, and the environment every
/// instance is started with.
struct Cluster {
    env: HashMap<String, String>,
    dir: tempfile::TempDir,
    twilio: MockServer,
    created: CreatedTexts,
    pool: PgPool,
    client: reqwest::Client,
    sids: AtomicU64,
    /// Last, so the database is dropped after everything else.
    db: TestDb,
}

/// A running `unlockbot serve` process.
struct Instance {
    name: &'static str,
    child: Child,
    address: String,
    logs: Arc<Mutex<String>>,
}

/// One outbox row, as the tests look at it.
#[derive(Debug, Clone)]
struct OutboxRow {
    kind: String,
    to: String,
    status: String,
    sealed_erased: bool,
    attempts: i32,
    provider_id: Option<String>,
}

impl Cluster {
    async fn new(server: &str, env: &[(&str, &str)]) -> Self {
        let name = format!("unlockbot_test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(&format!("{server}/postgres"))
            .await
            .expect("UNLOCKBOT_TEST_POSTGRES is reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let db = TestDb::Postgres {
            server: server.to_owned(),
            name,
        };
        let (twilio, created) = start_fake_twilio_with_texts().await;
        let mut vars = base_env(&db.url(), &twilio.uri());
        vars.insert("LOG_FORMAT".to_owned(), "json".to_owned());
        for (k, v) in env {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // The import applies the migrations before any instance starts.
        let (status, stdout, stderr) = run_cli(
            &vars,
            dir.path(),
            &["accounts", "import", "-"],
            Some(&csv_of(&[
                AccountRow::locked(JANE, JANE_MOBILE),
                AccountRow::locked(JOHN, JOHN_MOBILE),
            ])),
        );
        assert!(status.success(), "import failed: {stdout}\n{stderr}");
        let pool = PgPool::connect(&db.url()).await.expect("test database");
        Self {
            env: vars,
            dir,
            twilio,
            created,
            pool,
            client: reqwest::Client::new(),
            sids: AtomicU64::new(0),
            db,
        }
    }

    /// Start `unlockbot serve` and wait until it listens.
    async fn start(&self, name: &'static str) -> Instance {
        self.start_with(name, &[]).await
    }

    /// Start an instance with some settings of its own.
    async fn start_with(&self, name: &'static str, env: &[(&str, &str)]) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_unlockbot"))
            .arg("serve")
            .env_clear()
            .envs(&self.env)
            .envs(env.iter().copied())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("unlockbot serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let listening = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                logs.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(port) = listening_port(&line) {
                    return Some(port);
                }
            }
            None
        })
        .await;
        let Ok(Some(port)) = listening else {
            let _ = child.start_kill();
            panic!(
                "instance {name} did not log `unlockbot listening port=…`:\n{}",
                logs.lock().unwrap()
            );
        };
        // Keep reading, or the server would block on a full pipe.
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Instance {
            name,
            child,
            address: format!("http://127.0.0.1:{port}"),
            logs,
        }
    }

    fn next_sid(&self) -> String {
        format!("SM{:032x}", self.sids.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Deliver the inbound text `body` from `from` with MessageSid `sid` to
    /// `instance`, signed as Twilio signs it. The future owns everything, so
    /// it can be spawned.
    fn deliver(
        &self,
        instance: &Instance,
        from: &str,
        body: &str,
        sid: &str,
    ) -> impl Future<Output = (u16, String)> + Send + 'static {
        let params = twilio_inbound_params(from, body, sid);
        let signature = sms_twilio::signature(
            AUTH_TOKEN,
            &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
            &params,
        );
        let request = self
            .client
            .post(format!("{}{}", instance.address, sms_twilio::PATH))
            .header("X-Twilio-Signature", signature)
            .form(&params);
        async move {
            let response = request.send().await.expect("webhook request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("webhook body"))
        }
    }

    /// Text `instance` from `from` (a fresh MessageSid); the reply's text.
    async fn text(&self, instance: &Instance, from: &str, body: &str) -> String {
        let (status, xml) = self.deliver(instance, from, body, &self.next_sid()).await;
        assert_eq!(status, 200, "{} answered {status}: {xml}", instance.name);
        twiml_text(&xml)
    }

    /// UNLOCK, email, last 4 and both answers, message `i` going to
    /// `instances[i % len]`; returns the options prompt.
    async fn verify(
        &self,
        instances: &[&Instance],
        from: &str,
        email: &str,
        last4: &str,
    ) -> String {
        let on = |i: usize| instances[i % instances.len()];
        let greeting = self.text(on(0), from, "UNLOCK").await;
        assert!(greeting.contains("email address"), "{greeting}");
        let ask_digits = self.text(on(1), from, email).await;
        assert!(ask_digits.contains("last 4 digits"), "{ask_digits}");
        let q1 = self.text(on(2), from, last4).await;
        assert!(q1.starts_with("Security question 1 of 2"), "{q1}");
        let q2 = self.text(on(3), from, answer_for(&q1)).await;
        assert!(q2.starts_with("Security question 2 of 2"), "{q2}");
        let options = self.text(on(4), from, answer_for(&q2)).await;
        assert!(options.contains("Reply 1"), "{options}");
        options
    }

    fn password_is(&self, email: &str, password: &str) -> bool {
        let (status, _, _) = run_cli(
            &self.env,
            self.dir.path(),
            &["accounts", "verify-password", email],
            Some(password),
        );
        status.success()
    }

    fn account(&self, email: &str) -> serde_json::Value {
        let (status, stdout, stderr) = run_cli(
            &self.env,
            self.dir.path(),
            &["accounts", "show", email, "--json"],
            None,
        );
        assert!(status.success(), "accounts show failed: {stderr}");
        serde_json::from_str(&stdout).expect("accounts show --json prints JSON")
    }

    /// The forms of every `POST …/Messages.json` the fake Twilio received
    /// (answered or not, in order of arrival).
    async fn posts(&self) -> Vec<HashMap<String, String>> {
        self.requests("POST")
            .await
            .into_iter()
            .map(|r| url::form_urlencoded::parse(&r.body).into_owned().collect())
            .collect()
    }

    async fn requests(&self, verb: &str) -> Vec<wiremock::Request> {
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == messages_path() && r.method.as_str() == verb)
            .collect()
    }

    /// POSTs whose body is `body`.
    async fn posts_of(&self, body: &str) -> usize {
        self.posts()
            .await
            .iter()
            .filter(|f| f.get("Body").map(String::as_str) == Some(body))
            .count()
    }

    /// Messages the fake Twilio created (answered 201) with `body`, and their sids.
    fn created_sids(&self, body: &str) -> Vec<String> {
        self.created
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["body"].as_str() == Some(body))
            .map(|m| m["sid"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn outbox(&self) -> Vec<OutboxRow> {
        sqlx::query(
            "SELECT kind, to_number, status, attempts, provider_id,
               NOT EXISTS (SELECT 1 FROM outbox_secrets s WHERE s.outbox_id = outbox.id) AS erased
             FROM outbox ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| OutboxRow {
            kind: r.get("kind"),
            to: r.get("to_number"),
            status: r.get("status"),
            sealed_erased: r.get("erased"),
            attempts: r.get("attempts"),
            provider_id: r.get("provider_id"),
        })
        .collect()
    }

    /// Wait until `ready` holds for the outbox.
    async fn wait_outbox(
        &self,
        what: &str,
        ready: impl Fn(&[OutboxRow]) -> bool,
    ) -> Vec<OutboxRow> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let rows = self.outbox().await;
            if ready(&rows) {
                return rows;
            }
            assert!(Instant::now() < deadline, "outbox never {what}: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait until every queued text has been sent or has finally failed.
    async fn outbox_done(&self) -> Vec<OutboxRow> {
        self.wait_outbox("finished", |rows| {
            rows.iter()
                .all(|r| r.status == "sent" || r.status == "failed")
        })
        .await
    }

    /// Wait until the fake Twilio has received `n` POSTs.
    async fn wait_posts(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.requests("POST").await.len() < n {
            assert!(
                Instant::now() < deadline,
                "the fake Twilio never received {n} texts"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn count(&self, sql: &'static str, bind: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn scalar(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    async fn last_audit_id(&self) -> i64 {
        self.scalar("SELECT COALESCE(MAX(id), 0) FROM audit_log")
            .await
    }

    /// (at, event, outcome) of the audit rows after `after`.
    async fn audit_since(&self, after: i64) -> Vec<(String, String, String)> {
        sqlx::query(
            "SELECT at::text AS at, event, outcome FROM audit_log WHERE id > $1 ORDER BY id",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("at"), r.get("event"), r.get("outcome")))
        .collect()
    }

    /// A conversation's state while it is in progress (an ended one is
    /// kept, marked ended, only to answer a message after its end).
    async fn conversation(&self, phone: &str) -> Option<serde_json::Value> {
        let state: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT state FROM conversations WHERE conversation_key = $1")
                .bind(stored_key(&format!("sms:{phone}")))
                .fetch_optional(&self.pool)
                .await
                .unwrap();
        state.filter(|s| s["ended"] != true)
    }

    /// Hold the conversations table, so that every turn (on any instance)
    /// waits once it wants to read a conversation: requests sent meanwhile
    /// are all in flight at the same time. Released by committing.
    async fn hold_conversations(&self) -> PgConnection {
        let mut conn = PgConnection::connect(&self.db.url()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    async fn release(&self, mut held: PgConnection) {
        sqlx::query("COMMIT").execute(&mut held).await.unwrap();
        held.close().await.unwrap();
    }

    /// Wait until `n` sessions of the instances wait for a lock.
    async fn wait_lock_waiters(&self, n: i64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if waiting >= n {
                assert_eq!(waiting, n, "more sessions wait than requests were sent");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {waiting} of {n} requests reached the database"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Make the next `POST …/Messages.json` answer as `response` does.
    async fn script_next_post(&self, response: impl wiremock::Respond + 'static) {
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.twilio)
            .await;
    }
}

/// The port in the server's start-up line (JSON logs).
fn listening_port(line: &str) -> Option<u16> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    if entry["fields"]["message"] != "unlockbot listening" {
        return None;
    }
    u16::try_from(entry["fields"]["port"].as_u64()?).ok()
}

impl Instance {
    /// `kill -9`: no shutdown, no clean-up.
    async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self
            .child
            .wait()
            .await
            .expect("wait for the killed instance");
        assert!(!status.success(), "{} was killed", self.name);
    }

    /// `kill -TERM`: ask for a graceful shutdown.
    fn terminate(&self) {
        let pid = self.child.id().expect("instance is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "{} did not exit within {within:?}:\n{}",
                self.name,
                self.logs.lock().unwrap()
            ),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // `kill_on_drop` ends the process; show what it said if the test failed.
        if std::thread::panicking() {
            eprintln!(
                "----- log of instance {} -----\n{}",
                self.name,
                self.logs.lock().unwrap()
            );
        }
    }
}

/// The temporary password in the one text that carries it.
fn temp_password_text(posts: &[HashMap<String, String>], to: &str) -> String {
    let texts: Vec<&String> = posts
        .iter()
        .filter(|f| f["To"] == to && f["Body"].contains("temporary password"))
        .map(|f| &f["Body"])
        .collect();
    assert_eq!(texts.len(), 1, "one temporary password text: {texts:?}");
    texts[0].clone()
}

fn assert_each_once(posts: &[HashMap<String, String>]) {
    let mut bodies: Vec<(&str, &str)> = posts
        .iter()
        .map(|f| (f["To"].as_str(), f["Body"].as_str()))
        .collect();
    bodies.sort_unstable();
    let n = bodies.len();
    bodies.dedup();
    assert_eq!(bodies.len(), n, "a text was sent twice: {posts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_alternating_between_two_instances_completes() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::new(&server, &[]).await;
    let a = cluster.start("A").await;
    let b = cluster.start("B").await;

    // Jane resets (option 2), her messages going A, B, A, B, A, B.
    let options = cluster.verify(&[&a, &b], JANE_PHONE, JANE, "3456").await;
    assert!(options.contains("Your account is locked"), "{options}");
    let done = cluster.text(&b, JANE_PHONE, "2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    // John unlocks (option 1), his going B, A, B, A, B, A.
    cluster.verify(&[&b, &a], JOHN_PHONE, JOHN, "4321").await;
    let done = cluster.text(&a, JOHN_PHONE, "1").await;
    assert!(done.contains("Your account is unlocked"), "{done}");

    let outbox = cluster.outbox_done().await;
    assert_eq!(outbox.len(), 3, "{outbox:#?}");
    for row in &outbox {
        assert_eq!(row.status, "sent", "{row:?}");
        assert!(row.sealed_erased, "secret erased once sent: {row:?}");
        assert_eq!(row.attempts, 1, "{row:?}");
    }
    let kinds: Vec<(&str, &str)> = outbox
        .iter()
        .map(|r| (r.to.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (JANE_PHONE, "temp_password"),
            (JANE_PHONE, "notice_reset"),
            (JOHN_PHONE, "notice_unlocked"),
        ]
    );
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 3, "each text exactly once: {posts:#?}");
    assert_each_once(&posts);
    assert!(
        posts
            .iter()
            .any(|f| f["To"] == JOHN_PHONE && f["Body"].contains("unlocked by self-service"))
    );
    assert!(
        posts
            .iter()
            .any(|f| f["To"] == JANE_PHONE && f["Body"].contains("new password was requested"))
    );
    let password = temp_password_in(&temp_password_text(&posts, JANE_PHONE));
    assert!(
        cluster.password_is(JANE, &password),
        "the texted password works"
    );

    let jane = cluster.account(JANE);
    assert_eq!(jane["locked"], false);
    assert_eq!(jane["must_change_password"], true);
    let john = cluster.account(JOHN);
    assert_eq!(john["locked"], false);
    assert_eq!(john["must_change_password"], false);
    assert_eq!(
        cluster
            .scalar("SELECT COUNT(*) FROM conversations WHERE NOT (state @> '{\"ended\": true}')")
            .await,
        0,
        "both conversations ended"
    );
    eprintln!("alternating conversations: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_message_on_both_instances_is_applied_once() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::new(&server, &[]).await;
    let a = cluster.start("A").await;
    let b = cluster.start("B").await;

    // The option-2 message, delivered 10 times to each instance at once;
    // the conversations table is held until all 20 are in flight.
    cluster.verify(&[&a, &b], JANE_PHONE, JANE, "3456").await;
    let audit_before = cluster.last_audit_id().await;
    let sid = cluster.next_sid();
    let held = cluster.hold_conversations().await;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..20 {
        let instance = if i % 2 == 0 { &a } else { &b };
        burst.spawn(cluster.deliver(instance, JANE_PHONE, "2", &sid));
    }
    cluster.wait_lock_waiters(20).await;
    cluster.release(held).await;
    let replies = burst.join_all().await;
    assert_eq!(replies.len(), 20);
    for reply in &replies {
        assert_eq!(reply, &replies[0], "every delivery gets the same answer");
    }
    assert_eq!(replies[0].0, 200);
    assert!(
        twiml_text(&replies[0].1).contains("temporary password is on its way"),
        "{replies:?}"
    );

    let outbox = cluster.outbox_done().await;
    let kinds: Vec<&str> = outbox.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["temp_password", "notice_reset"], "queued once");
    assert!(outbox.iter().all(|r| r.status == "sent" && r.sealed_erased));
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 2, "one password text, one notice: {posts:#?}");
    assert_each_once(&posts);
    let password = temp_password_in(&temp_password_text(&posts, JANE_PHONE));
    assert!(cluster.password_is(JANE, &password), "the one reset stands");
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM processed_messages WHERE message_id = $1",
                &sender_key().message_id("sms", &sid)
            )
            .await,
        1
    );
    assert!(
        cluster.conversation(JANE_PHONE).await.is_none(),
        "ended once"
    );
    let audit = cluster.audit_since(audit_before).await;
    assert_one_turn(&audit);
    assert_eq!(
        audit
            .iter()
            .filter(|(_, e, o)| e == "reset" && o == "temp_password_queued")
            .count(),
        1,
        "{audit:?}"
    );

    // Wrong digits, 10 times to each instance at once (no help this time).
    let ask_digits = cluster.text(&b, JOHN_PHONE, "UNLOCK").await;
    assert!(ask_digits.contains("email address"), "{ask_digits}");
    cluster.text(&a, JOHN_PHONE, JOHN).await;
    let audit_before = cluster.last_audit_id().await;
    let sid = cluster.next_sid();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..20 {
        let instance = if i % 2 == 0 { &b } else { &a };
        burst.spawn(cluster.deliver(instance, JOHN_PHONE, "0000", &sid));
    }
    let replies = burst.join_all().await;
    for reply in &replies {
        assert_eq!(reply, &replies[0], "every delivery gets the same answer");
    }
    assert_eq!(replies[0].0, 200);
    assert!(
        twiml_text(&replies[0].1).contains("could not verify your identity"),
        "{replies:?}"
    );
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM verification_failures WHERE account_email = $1",
                JOHN
            )
            .await,
        1,
        "one failure counted"
    );
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM account_blocks WHERE account_email = $1",
                JOHN
            )
            .await,
        0
    );
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM processed_messages WHERE message_id = $1",
                &sender_key().message_id("sms", &sid)
            )
            .await,
        1
    );
    assert!(
        cluster.conversation(JOHN_PHONE).await.is_none(),
        "ended once"
    );
    let audit = cluster.audit_since(audit_before).await;
    assert_one_turn(&audit);
    assert!(
        audit
            .iter()
            .any(|(_, e, o)| e == "verification" && o == "failed:wrong_digits"),
        "{audit:?}"
    );
    assert_eq!(cluster.posts().await.len(), 2, "no text for a failure");
    eprintln!("bursts: {:?}", started.elapsed());
}

/// The audit rows of exactly one turn: one timestamp, nothing twice.
fn assert_one_turn(audit: &[(String, String, String)]) {
    assert!(!audit.is_empty());
    assert!(
        audit.iter().all(|(at, _, _)| *at == audit[0].0),
        "rows of more than one turn: {audit:#?}"
    );
    let mut events: Vec<(&str, &str)> = audit
        .iter()
        .map(|(_, e, o)| (e.as_str(), o.as_str()))
        .collect();
    events.sort_unstable();
    let n = events.len();
    events.dedup();
    assert_eq!(events.len(), n, "duplicated audit rows: {audit:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_messages_of_one_conversation_on_two_instances_apply_one_after_the_other() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::new(&server, &[]).await;
    let a = cluster.start("A").await;
    let b = cluster.start("B").await;

    // Two different wrong answers at the first question, one to each
    // instance, both in flight at once. One after the other, the first is
    // answer 1 of 2 and the second completes a failed verification; applied
    // side by side, both would be "answer 1" and the failure would be lost.
    cluster.text(&a, JANE_PHONE, "UNLOCK").await;
    cluster.text(&b, JANE_PHONE, JANE).await;
    let q1 = cluster.text(&a, JANE_PHONE, "3456").await;
    assert!(q1.starts_with("Security question 1 of 2"), "{q1}");
    let (sid1, sid2) = (cluster.next_sid(), cluster.next_sid());
    let held = cluster.hold_conversations().await;
    let first = tokio::spawn(cluster.deliver(&a, JANE_PHONE, "wrong one", &sid1));
    let second = tokio::spawn(cluster.deliver(&b, JANE_PHONE, "wrong two", &sid2));
    cluster.wait_lock_waiters(2).await;
    cluster.release(held).await;
    let replies = [first.await.unwrap(), second.await.unwrap()];
    assert!(
        replies.iter().all(|(status, _)| *status == 200),
        "{replies:?}"
    );
    let texts: Vec<String> = replies.iter().map(|(_, xml)| twiml_text(xml)).collect();
    let second_question = |t: &String| t.starts_with("Security question 2 of 2");
    let not_verified = |t: &String| t.contains("could not verify your identity");
    assert!(
        (second_question(&texts[0]) && not_verified(&texts[1]))
            || (not_verified(&texts[0]) && second_question(&texts[1])),
        "one turn after the other: {texts:?}"
    );
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM verification_failures WHERE account_email = $1",
                JANE
            )
            .await,
        1,
        "the failed verification counted once"
    );
    assert_eq!(
        cluster
            .count(
                "SELECT COUNT(*) FROM audit_log WHERE outcome = $1",
                "failed:wrong_answers"
            )
            .await,
        1
    );
    assert!(cluster.conversation(JANE_PHONE).await.is_none());

    // Two invalid replies at the digits step, at once: two turns, so the
    // invalid counter is 2 (not 1, a lost update), and a third ends it.
    cluster.text(&b, JOHN_PHONE, "UNLOCK").await;
    cluster.text(&a, JOHN_PHONE, JOHN).await;
    let (sid1, sid2) = (cluster.next_sid(), cluster.next_sid());
    let held = cluster.hold_conversations().await;
    let first = tokio::spawn(cluster.deliver(&a, JOHN_PHONE, "abc", &sid1));
    let second = tokio::spawn(cluster.deliver(&b, JOHN_PHONE, "xyz", &sid2));
    cluster.wait_lock_waiters(2).await;
    cluster.release(held).await;
    for (status, xml) in [first.await.unwrap(), second.await.unwrap()] {
        assert_eq!(status, 200, "{xml}");
        assert!(twiml_text(&xml).contains("exactly 4 digits"), "{xml}");
    }
    let state = cluster
        .conversation(JOHN_PHONE)
        .await
        .expect("conversation goes on");
    assert_eq!(state["step"], "ask_last4", "{state}");
    assert_eq!(state["invalid_in_a_row"], 2, "two turns recorded: {state}");
    for sid in [&sid1, &sid2] {
        assert_eq!(
            cluster
                .count(
                    "SELECT COUNT(*) FROM processed_messages WHERE message_id = $1",
                    &sender_key().message_id("sms", sid)
                )
                .await,
            1
        );
    }
    let third = cluster.text(&b, JOHN_PHONE, "not digits").await;
    assert!(third.contains("did not understand your replies"), "{third}");
    assert!(cluster.conversation(JOHN_PHONE).await.is_none());
    eprintln!("concurrent different messages: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_survives_the_death_of_the_instance_that_queued_it() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    // A's retry would come 3 s after its failed first attempt.
    let cluster = Cluster::new(&server, &[("OUTBOX_RETRY_BASE_MS", "3000")]).await;
    let mut a = cluster.start("A").await;
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;

    cluster
        .script_next_post(twilio_error(500, 20500, "Internal Server Error"))
        .await;
    let done = cluster.text(&a, JANE_PHONE, "2").await;
    assert!(done.contains("temporary password is on its way"), "{done}");
    // A's first attempt at the password failed (500): a retry is due later;
    // the notice behind it went out.
    let rows = cluster
        .wait_outbox("had a failed first attempt", |rows| {
            rows.len() == 2
                && rows[0].kind == "temp_password"
                && rows[0].status == "pending"
                && rows[0].attempts == 1
                && rows[1].status == "sent"
        })
        .await;
    assert!(!rows[0].sealed_erased, "kept for the retry");
    a.kill9().await;
    let posts_by_a = cluster.posts().await;
    assert_eq!(posts_by_a.len(), 2, "{posts_by_a:#?}");
    let password_text = temp_password_text(&posts_by_a, JANE_PHONE);
    assert!(
        cluster.created_sids(&password_text).is_empty(),
        "A's attempt was refused"
    );

    let _b = cluster.start("B").await;
    let rows = cluster
        .wait_outbox("delivered the password", |rows| {
            matches!(rows[0].status.as_str(), "sent" | "failed")
        })
        .await;
    assert_eq!(rows[0].status, "sent", "{rows:#?}");
    assert!(rows[0].sealed_erased, "secret erased once sent");
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(
        cluster.posts_of(&password_text).await,
        2,
        "one refused attempt by A, one delivery by B"
    );
    let created = cluster.created_sids(&password_text);
    assert_eq!(created.len(), 1, "delivered exactly once");
    assert_eq!(rows[0].provider_id.as_deref(), Some(created[0].as_str()));
    assert_eq!(
        cluster.posts().await.len(),
        3,
        "and nothing else sent again"
    );
    let password = temp_password_in(&password_text);
    assert!(cluster.password_is(JANE, &password));
    eprintln!(
        "survives the death of its instance: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_dying_between_sending_and_recording_does_not_cause_a_second_text() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::new(&server, &[("OUTBOX_LEASE_SECS", "2")]).await;
    let mut a = cluster.start("A").await;
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;

    // Twilio takes the password text at once but answers only after 6 s.
    cluster
        .script_next_post(create_message_slowly(
            cluster.created.clone(),
            Duration::from_secs(6),
        ))
        .await;
    cluster.text(&a, JANE_PHONE, "2").await;
    cluster.wait_posts(1).await;
    // A dies while waiting for the answer: the text was sent, not recorded.
    a.kill9().await;
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let password_text = temp_password_text(&posts, JANE_PHONE);
    let rows = cluster.outbox().await;
    assert_eq!(rows[0].status, "sending", "{rows:#?}");
    assert_eq!(rows[0].kind, "temp_password");

    // B takes both texts over once A's lease (2 s) runs out.
    let _b = cluster.start("B").await;
    let rows = cluster.outbox_done().await;
    for row in &rows {
        assert_eq!(row.status, "sent", "{rows:#?}");
        assert!(row.sealed_erased, "{rows:#?}");
    }
    assert_eq!(rows[0].attempts, 2, "claimed by A, then by B: {rows:#?}");
    assert_eq!(
        cluster.posts_of(&password_text).await,
        1,
        "the password was not sent again"
    );
    let created = cluster.created_sids(&password_text);
    assert_eq!(created.len(), 1);
    assert_eq!(
        rows[0].provider_id.as_deref(),
        Some(created[0].as_str()),
        "recorded as the text Twilio lists"
    );
    assert!(
        !cluster.requests("GET").await.is_empty(),
        "B asked Twilio before sending"
    );
    // The notice A had claimed but never sent is sent by B, once.
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert_each_once(&posts);
    assert!(posts[1]["Body"].contains("new password was requested"));
    let password = temp_password_in(&password_text);
    assert!(cluster.password_is(JANE, &password));
    eprintln!(
        "dies between sending and recording: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_and_the_text_being_sent() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::new(&server, &[]).await;
    let mut a = cluster.start("A").await;
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;

    // The password text takes Twilio 3 s to answer.
    cluster
        .script_next_post(create_message_slowly(
            cluster.created.clone(),
            Duration::from_secs(3),
        ))
        .await;
    cluster.text(&a, JANE_PHONE, "2").await;
    cluster.wait_posts(1).await;
    // Meanwhile a new message is in flight, held at the database.
    let held = cluster.hold_conversations().await;
    let in_flight = tokio::spawn(cluster.deliver(&a, JANE_PHONE, "UNLOCK", &cluster.next_sid()));
    cluster.wait_lock_waiters(1).await;

    a.terminate();
    // It stops taking requests …
    let deadline = Instant::now() + PATIENCE;
    loop {
        let fresh = reqwest::Client::new();
        if fresh
            .get(format!("{}/healthz", a.address))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still taking requests after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // … but finishes the one in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.exited().is_none(), "exited with a request in flight");
    assert!(!in_flight.is_finished());
    cluster.release(held).await;
    let (status, xml) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{xml}");
    assert!(twiml_text(&xml).contains("email address"), "{xml}");

    let exit = a.wait_exit(PATIENCE).await;
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
    // The text it was sending was recorded; nothing is left half-sent. The
    // notice queued behind it is not started after SIGTERM: it waits,
    // pending, for the next instance.
    let rows = cluster.outbox().await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0].kind, "temp_password", "{rows:#?}");
    assert_eq!(rows[0].status, "sent", "{rows:#?}");
    assert!(rows[0].sealed_erased, "{rows:#?}");
    assert_eq!(
        rows[1].status, "pending",
        "not started after SIGTERM: {rows:#?}"
    );
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let password_text = temp_password_text(&posts, JANE_PHONE);
    assert_eq!(
        rows[0].provider_id.as_deref(),
        Some(cluster.created_sids(&password_text)[0].as_str())
    );
    // The next instance sends it, once.
    let _b = cluster.start("B").await;
    let rows = cluster.outbox_done().await;
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.sealed_erased),
        "{rows:#?}"
    );
    let posts = cluster.posts().await;
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert_each_once(&posts);
    let state = cluster
        .conversation(JANE_PHONE)
        .await
        .expect("the turn in flight was committed");
    assert_eq!(state["step"], "ask_email");
    eprintln!("graceful shutdown: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_does_not_let_another_instance_send_a_claimed_text_again() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let started = Instant::now();
    // Each text takes Twilio 1.5 s, less than the 2 s lease on a claim.
    let cluster = Cluster::new(&server, &[("OUTBOX_LEASE_SECS", "2")]).await;
    // A looks for due texts only every 3 s, so its retries come due together.
    let a = cluster.start_with("A", &[("OUTBOX_POLL_MS", "3000")]).await;
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;
    cluster.verify(&[&a], JOHN_PHONE, JOHN, "4321").await;

    // Three texts, each refused once (500), then due again at about the
    // same time.
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&cluster.twilio)
        .await;
    cluster.text(&a, JANE_PHONE, "2").await;
    cluster.text(&a, JOHN_PHONE, "1").await;
    cluster
        .wait_outbox("had three failed first attempts", |rows| {
            rows.len() == 3
                && rows
                    .iter()
                    .all(|r| r.status == "pending" && r.attempts == 1)
        })
        .await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(create_message_slowly(
            cluster.created.clone(),
            Duration::from_millis(1500),
        ))
        .with_priority(2)
        .mount(&cluster.twilio)
        .await;
    // A starts on its retries; B joins while A is at it.
    cluster
        .wait_outbox("retried", |rows| rows.iter().any(|r| r.attempts == 2))
        .await;
    let _b = cluster.start("B").await;

    let rows = cluster.outbox_done().await;
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.sealed_erased),
        "{rows:#?}"
    );
    let posts = cluster.posts().await;
    let mut created: Vec<String> = cluster
        .created
        .lock()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(created.len(), 3, "each text delivered once: {created:#?}");
    created.sort();
    created.dedup();
    assert_eq!(created.len(), 3, "each text delivered once: {posts:#?}");
    assert_eq!(posts.len(), 6, "one refused and one delivered POST each");
    eprintln!("slow provider, two instances: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_identical_text_is_not_taken_for_an_uncertain_one() {
    let Some(server) = postgres_or_skip() else {
        return;
    };
    let cluster = Cluster::new(&server, &[("OUTBOX_LEASE_SECS", "2")]).await;
    let mut a = cluster.start("A").await;
    // Jane unlocks: the security notice goes out.
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;
    cluster.text(&a, JANE_PHONE, "1").await;
    let first = cluster.outbox_done().await;
    assert_eq!(first.len(), 1);
    // Locked again, she unlocks again; this time the notice's POST never
    // reaches Twilio (no record of it) and A dies waiting.
    let (status, _, stderr) = run_cli(
        &cluster.env,
        cluster.dir.path(),
        &["accounts", "lock", JANE],
        None,
    );
    assert!(status.success(), "{stderr}");
    cluster.verify(&[&a], JANE_PHONE, JANE, "3456").await;
    cluster
        .script_next_post(ResponseTemplate::new(503).set_delay(Duration::from_secs(6)))
        .await;
    cluster.text(&a, JANE_PHONE, "1").await;
    cluster.wait_posts(2).await;
    a.kill9().await;

    let _b = cluster.start("B").await;
    let rows = cluster.outbox_done().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].status, "sent");
    let notice = cluster.posts().await[0]["Body"].clone();
    assert_eq!(
        cluster.created_sids(&notice).len(),
        2,
        "the second notice was never sent, yet recorded as sent: {rows:#?}"
    );
    assert_ne!(
        rows[0].provider_id, rows[1].provider_id,
        "two texts recorded as one Twilio message"
    );
}
