//! Load benchmark: the whole service, end to end, over loopback.
//!
//! ```sh
//! cargo run --release --example load -- [--conversations 200] [--concurrency 16]
//!     [--time-limit 120] [--duplicates 0] [--postgres postgres://postgres@127.0.0.1:5432]
//! cargo run --release --example load -- --last4-timing 2000 [--postgres URL]
//! ```
//!
//! `--last4-timing` is a separate mode (see its section at the end): the
//! last-4 step's latency for known against unknown emails.
//!
//! Starts the real server in-process on 127.0.0.1 (a fresh SQLite file in a
//! temporary directory, or a fresh PostgreSQL database `unlockbot_load_<uuid>`
//! that is dropped at the end), with `SMS_PROVIDER=twilio` pointed at a tiny
//! in-process fake of Twilio's Messages API, so the outbox worker really
//! sends. Seeds one locked account per conversation, then runs simulated
//! users, each a whole conversation from its own phone (UNLOCK, email, last
//! 4 digits, two security answers, then 1 or 2), every turn a
//! Twilio-signed webhook with a fresh `MessageSid`. Prints a Markdown
//! report: throughput, per-turn latency by step, errors, texts delivered.
//!
//! Everything is bounded: the number of conversations, the turns in each,
//! every request (client timeout), the whole run (`--time-limit`, after
//! which no new turn starts and what was measured is reported), and the
//! wait for the outbox to drain.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use unlockbot::app::Application;
use unlockbot::channels::sms_twilio;
use unlockbot::clock::SystemClock;
use unlockbot::directory::NewAccount;
use unlockbot::domain::{Answer, Email, RegisteredMobile, hash_answer, parse_registered_mobile};
use unlockbot::settings::{LogFormat, Settings};

const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
const BOT_NUMBER: &str = "+447400000001";
/// Only used to compute webhook signatures; nothing is ever sent there.
const PUBLIC_BASE: &str = "https://unlock.example.nhs.uk";
/// Registered mobiles are 07400 1xxxxx, so at most 100 000 accounts.
const MAX_CONVERSATIONS: usize = 100_000;
/// What the bot says when it is overloaded (`service_busy`).
const BUSY: &str = "very busy";
/// Every request (and every duplicate) gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The three security questions every seeded account has, with answers.
const QUESTIONS: [(&str, &str); 3] = [
    ("What was the name of your first pet?", "Biscuit"),
    ("In which town were you born?", "Leeds"),
    ("What was the make of your first car?", "Mini"),
];

#[derive(Parser, Debug)]
#[command(about = "End-to-end load benchmark of unlockbot over loopback")]
struct Args {
    /// Conversations to run in total (one seeded account each).
    #[arg(long, default_value_t = 200)]
    conversations: usize,
    /// Simulated users texting at the same time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop starting turns after this many seconds and report what was measured.
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// Re-post every webhook this many extra times, concurrently, with the
    /// same MessageSid, and check that every reply is identical.
    #[arg(long, default_value_t = 0)]
    duplicates: usize,
    /// A PostgreSQL server on loopback (postgres://user@127.0.0.1:5432) on
    /// which to create, and finally drop, a fresh database; SQLite otherwise.
    #[arg(long)]
    postgres: Option<String>,
    /// How long to wait, after the last turn, for the outbox to deliver.
    #[arg(long, default_value_t = 15)]
    drain_secs: u64,
    /// Seconds each of the closed-loop phases (the bare floor, the turns
    /// that do no hashing) runs.
    #[arg(long, default_value_t = 5)]
    phase_secs: u64,
    /// Burst mode: bring every conversation to its first security question,
    /// then send all the answers at the same moment (instead of the
    /// whole-conversation phase).
    #[arg(long)]
    burst: bool,
    /// HASH_WORKERS for the server (default: its own, the number of cores).
    #[arg(long)]
    hash_workers: Option<usize>,
    /// Timing mode (issue 9, finding 8): instead of the load run, send this
    /// many pairs of last-4 turns with wrong digits, one for a known email
    /// and one for an unknown email, interleaved, one at a time, and report
    /// both latency distributions and their paired difference with a 95 %
    /// bootstrap interval.
    #[arg(long)]
    last4_timing: Option<usize>,
    /// With --last4-timing: send only this kind of pair member (for counting
    /// instructions of one path, e.g. under valgrind --tool=callgrind).
    #[arg(long, value_enum, requires = "last4_timing")]
    last4_only: Option<Last4Kind>,
}

#[tokio::main]
async fn main() -> ExitCode {
    unlockbot::telemetry::init(LogFormat::Text, "warn");
    let args = Args::parse();
    if let Err(e) = check_args(&args) {
        eprintln!("load: {e:#}");
        return ExitCode::from(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("load: interrupted; finishing the turns in flight");
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let db = match TempDatabase::create(args.postgres.as_deref()).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("load: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(pairs) = args.last4_timing {
        let outcome = last4_timing(&args, pairs, &db).await;
        db.destroy().await;
        return match outcome {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("load: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let outcome = run(&args, &db, stop).await;
    db.destroy().await;
    match outcome {
        Ok(report) => {
            println!("{}", report.markdown());
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    if !(1..=MAX_CONVERSATIONS).contains(&args.conversations) {
        bail!("--conversations must be 1..={MAX_CONVERSATIONS}");
    }
    if !(1..=1024).contains(&args.concurrency) {
        bail!("--concurrency must be 1..=1024");
    }
    if !(1..=3600).contains(&args.time_limit) {
        bail!("--time-limit must be 1..=3600 seconds");
    }
    if args.duplicates > 20 {
        bail!("--duplicates must be 0..=20");
    }
    if args.drain_secs > 300 {
        bail!("--drain-secs must be 0..=300");
    }
    if !(1..=300).contains(&args.phase_secs) {
        bail!("--phase-secs must be 1..=300");
    }
    if args.conversations < args.concurrency {
        bail!(
            "--conversations must be at least --concurrency (each simulated user has an account of its own)"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------
// The database.

enum TempDatabase {
    Sqlite {
        dir: tempfile::TempDir,
    },
    Postgres {
        /// The server with `/postgres` as its path, for CREATE/DROP DATABASE.
        admin: url::Url,
        /// The fresh database.
        url: url::Url,
        name: String,
        version: String,
    },
}

impl TempDatabase {
    async fn create(postgres: Option<&str>) -> anyhow::Result<Self> {
        let Some(server) = postgres else {
            return Ok(Self::Sqlite {
                dir: tempfile::tempdir().context("cannot create a temporary directory")?,
            });
        };
        let mut admin = url::Url::parse(server).context("--postgres is not a URL")?;
        if !matches!(admin.scheme(), "postgres" | "postgresql") {
            bail!("--postgres must start with postgres://");
        }
        let loopback = match admin.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            // Not a special scheme, so the url crate leaves IP addresses
            // as opaque host names.
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        };
        if !loopback {
            bail!("--postgres must be on a loopback address (127.0.0.1, ::1 or localhost)");
        }
        admin.set_path("/postgres");
        let name = format!("unlockbot_load_{}", uuid::Uuid::new_v4().simple());
        let mut url = admin.clone();
        url.set_path(&format!("/{name}"));
        let pool = sqlx::PgPool::connect(admin.as_str())
            .await
            .context("cannot connect to the --postgres server")?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await
            .context("SHOW server_version")?;
        // The name is ours (a fixed prefix and a UUID's hex), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        pool.close().await;
        Ok(Self::Postgres {
            admin,
            url,
            name,
            version,
        })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("load.sqlite").display())
            }
            Self::Postgres { url, .. } => url.to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Sqlite { .. } => "SQLite (WAL, a fresh file in a temporary directory)".to_owned(),
            Self::Postgres { version, .. } => {
                format!("PostgreSQL {version} on loopback (a fresh database)")
            }
        }
    }

    async fn destroy(self) {
        match self {
            Self::Sqlite { dir } => drop(dir),
            Self::Postgres { admin, name, .. } => {
                let dropped = async {
                    let pool = sqlx::PgPool::connect(admin.as_str()).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await?;
                    pool.close().await;
                    Ok::<_, sqlx::Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(30), dropped).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("load: could not drop database {name}: {e}"),
                    Err(_) => eprintln!("load: timed out dropping database {name}"),
                }
            }
        }
    }
}

// ------------------------------------------------------------------------
// The fake Twilio Messages API.

#[derive(Clone, Default)]
struct FakeTwilio {
    created: Arc<AtomicU64>,
    temp_passwords: Arc<AtomicU64>,
    /// (message sid, To) of every message created, for the list endpoint.
    messages: Arc<Mutex<Vec<(String, String)>>>,
}

async fn create_message(
    State(fake): State<FakeTwilio>,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (to, text) = (field("To"), field("Body"));
    if to.is_empty() || text.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                serde_json::json!({"code": 21604, "message": "A 'To' phone number is required.", "status": 400}),
            ),
        );
    }
    let n = fake.created.fetch_add(1, Ordering::SeqCst) + 1;
    if text.contains("temporary password is") {
        fake.temp_passwords.fetch_add(1, Ordering::SeqCst);
    }
    let sid = format!("SM{n:032x}");
    fake.messages
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((sid.clone(), to.clone()));
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": to,
            "from": field("From"),
            "body": text,
            "status": "queued",
            "error_code": null,
            "error_message": null,
        })),
    )
}

/// `GET …/Messages.json?To=…`: what the worker asks after a crash.
async fn list_messages(
    State(fake): State<FakeTwilio>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let to = query.get("To");
    let messages: Vec<serde_json::Value> = fake
        .messages
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, m_to)| to.is_none_or(|t| t == m_to))
        .map(|(sid, m_to)| serde_json::json!({"sid": sid, "to": m_to, "status": "queued"}))
        .collect();
    Json(
        serde_json::json!({"messages": messages, "page": 0, "page_size": 100, "next_page_uri": null}),
    )
}

async fn start_fake_twilio(
    fake: FakeTwilio,
) -> anyhow::Result<(SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>)> {
    let router = axum::Router::new()
        .route(
            &format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"),
            post(create_message).get(list_messages),
        )
        .with_state(fake);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("fake Twilio cannot listen on 127.0.0.1")?;
    let address = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok((address, tx, handle))
}

// ------------------------------------------------------------------------
// Accounts.

struct SeedAccount {
    email: String,
    mobile: String,
    last4: String,
}

/// Account `i`: a distinct email and a distinct, valid GB mobile 07400 1xxxxx.
fn seed_account(i: usize) -> anyhow::Result<(SeedAccount, NewAccount)> {
    let national = format!("074001{i:05}");
    let mobile = parse_registered_mobile(&national, false)
        .map_err(|e| anyhow::anyhow!("{national} is not a valid mobile: {e}"))?;
    if !matches!(mobile, RegisteredMobile::Uk(_)) {
        bail!("{national} is not a UK mobile");
    }
    let email = format!("load.user{i:05}@nhs.net");
    let seed = SeedAccount {
        email: email.clone(),
        mobile: mobile.e164().to_owned(),
        last4: national[national.len() - 4..].to_owned(),
    };
    let account = NewAccount {
        email: Email::parse(&email).map_err(|e| anyhow::anyhow!("{email}: {e}"))?,
        mobile: Some(mobile),
        organisation: "Load Test NHS Trust".to_owned(),
        same_sign_on: false,
        synced_at: None,
        locked: true,
        questions: Vec::new(),
    };
    Ok((seed, account))
}

/// The answer to whichever seeded question `reply` asks, if any.
fn answer_for(reply: &str) -> Option<&'static str> {
    QUESTIONS
        .iter()
        .find(|(question, _)| reply.contains(question))
        .map(|(_, answer)| *answer)
}

// ------------------------------------------------------------------------
// Measurements.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Start,
    Email,
    Last4,
    Answer,
    Unlock,
    Reset,
    Exit,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Start,
        Step::Email,
        Step::Last4,
        Step::Answer,
        Step::Unlock,
        Step::Reset,
        Step::Exit,
    ];

    fn label(self) -> &'static str {
        match self {
            Step::Start => "`UNLOCK` (start)",
            Step::Email => "email (account lookup)",
            Step::Last4 => "last 4 digits",
            Step::Answer => "security answer (argon2id verify)",
            Step::Unlock => "`1` unlock (+ notice queued)",
            Step::Reset => "`2` reset (argon2id hash, 2 texts queued)",
            Step::Exit => "`EXIT`",
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Turn latency by step: from sending the webhook (and its duplicates)
    /// until every reply is in.
    turns: BTreeMap<Step, Vec<Duration>>,
    /// Every single HTTP request, duplicates included.
    requests: Vec<Duration>,
    non_200: u64,
    transport_errors: u64,
    unexpected_replies: u64,
    /// "Busy, send the same reply again" answers (overload).
    busy: u64,
    duplicate_groups: u64,
    duplicate_mismatches: u64,
    unlocked: u64,
    reset: u64,
    cut_off: u64,
    failed: u64,
}

struct Ctx {
    client: reqwest::Client,
    webhook: String,
    auth_token: String,
    accounts: Vec<SeedAccount>,
    duplicates: usize,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    stats: Mutex<Stats>,
}

impl Ctx {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn out_of_time(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

/// One HTTP answer: status (None on a transport error) and body.
#[derive(PartialEq, Eq)]
struct Answered {
    status: Option<u16>,
    body: String,
}

async fn post_once(
    client: reqwest::Client,
    url: String,
    params: Arc<Vec<(String, String)>>,
    signature: Arc<str>,
) -> (Answered, Duration) {
    let started = Instant::now();
    let result = async {
        let response = client
            .post(&url)
            .header("X-Twilio-Signature", &*signature)
            .form(&*params)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>(Answered {
            status: Some(status),
            body,
        })
    };
    let answered = result.await.unwrap_or(Answered {
        status: None,
        body: String::new(),
    });
    (answered, started.elapsed())
}

/// Twilio's inbound parameters for a text.
fn inbound_params(from: &str, body: &str, sid: &str) -> Vec<(String, String)> {
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

/// The text inside `<Response><Message>…</Message></Response>`, unescaped.
fn twiml_text(xml: &str) -> Option<String> {
    let start = xml.find("<Message>")? + "<Message>".len();
    let end = xml.rfind("</Message>")?;
    let inner = xml.get(start..end)?;
    quick_xml::escape::unescape(inner)
        .ok()
        .map(|s| s.into_owned())
}

/// One turn: a signed webhook (plus `duplicates` concurrent copies with the
/// same MessageSid). The reply text, or None when the turn failed.
async fn turn(ctx: &Arc<Ctx>, from: &str, text: &str, step: Step) -> Option<String> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params = inbound_params(from, text, &sid);
    let signature: Arc<str> = sms_twilio::signature(
        &ctx.auth_token,
        &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
        &params,
    )
    .into();
    let params = Arc::new(params);
    let started = Instant::now();
    let answers: Vec<(Answered, Duration)> = if ctx.duplicates == 0 {
        vec![post_once(ctx.client.clone(), ctx.webhook.clone(), params, signature).await]
    } else {
        let mut set = JoinSet::new();
        for _ in 0..=ctx.duplicates {
            set.spawn(post_once(
                ctx.client.clone(),
                ctx.webhook.clone(),
                params.clone(),
                signature.clone(),
            ));
        }
        let mut out = Vec::with_capacity(ctx.duplicates + 1);
        while let Some(joined) = set.join_next().await {
            if let Ok(answer) = joined {
                out.push(answer);
            }
        }
        out
    };
    let elapsed = started.elapsed();
    let mut stats = ctx.stats();
    stats.requests.extend(answers.iter().map(|(_, d)| *d));
    let Some((first, _)) = answers.first() else {
        stats.transport_errors += 1;
        return None;
    };
    if ctx.duplicates > 0 {
        stats.duplicate_groups += 1;
        if answers.len() != ctx.duplicates + 1 || answers.iter().any(|(a, _)| a != first) {
            stats.duplicate_mismatches += 1;
        }
    }
    for (answer, _) in &answers {
        match answer.status {
            None => stats.transport_errors += 1,
            Some(200) => {}
            Some(_) => stats.non_200 += 1,
        }
    }
    if first.status != Some(200) {
        return None;
    }
    let reply = twiml_text(&first.body);
    match &reply {
        None => stats.unexpected_replies += 1,
        Some(text) if text.contains(BUSY) => stats.busy += 1,
        Some(_) => stats.turns.entry(step).or_default().push(elapsed),
    }
    reply
}

/// A turn, sent again (as a user would, after a moment) while the answer
/// is "busy".
async fn turn_until_served(ctx: &Arc<Ctx>, from: &str, text: &str, step: Step) -> Option<String> {
    for _ in 0..50 {
        let reply = turn(ctx, from, text, step).await;
        match &reply {
            Some(r) if r.contains(BUSY) => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => return reply,
        }
    }
    None
}

enum Ended {
    Unlocked,
    Reset,
    CutOff,
    Failed,
}

/// One user's whole conversation, for account `i`.
async fn conversation(ctx: &Arc<Ctx>, i: usize) -> Ended {
    let account = &ctx.accounts[i];
    let from = account.mobile.as_str();
    let reset = i % 2 == 1;
    let expect = |reply: &Option<String>, wanted: &str| -> bool {
        match reply {
            Some(text) if text.contains(wanted) => true,
            Some(_) => {
                ctx.stats().unexpected_replies += 1;
                false
            }
            None => false,
        }
    };
    macro_rules! step {
        ($text:expr, $step:expr, $wanted:expr) => {{
            if ctx.out_of_time() {
                return Ended::CutOff;
            }
            let reply = turn_until_served(ctx, from, $text, $step).await;
            if !expect(&reply, $wanted) {
                return Ended::Failed;
            }
            reply.unwrap_or_default()
        }};
    }
    step!("UNLOCK", Step::Start, "email");
    step!(&account.email, Step::Email, "last 4");
    let mut reply = step!(&account.last4, Step::Last4, "question");
    for n in 1..=2 {
        let Some(answer) = answer_for(&reply) else {
            ctx.stats().unexpected_replies += 1;
            return Ended::Failed;
        };
        let wanted = if n == 1 { "question" } else { "Reply 1" };
        reply = step!(answer, Step::Answer, wanted);
    }
    if reset {
        step!("2", Step::Reset, "temporary password");
        Ended::Reset
    } else {
        step!("1", Step::Unlock, "unlocked");
        Ended::Unlocked
    }
}

// ------------------------------------------------------------------------
// Memory, from /proc/self/status (the server runs in this process).

/// A `/proc/self/status` field in MiB (VmHWM: peak resident; VmRSS: now).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Start a new peak: VmHWM restarts from the current RSS (Linux).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[derive(Clone, Copy, Default)]
struct Memory {
    before: Option<f64>,
    peak: Option<f64>,
    /// RSS a few seconds after the phase.
    after: Option<f64>,
}

/// Memory of a phase: RSS before, peak during, RSS `settle` after.
async fn measure_memory<T>(settle: Duration, phase: impl Future<Output = T>) -> (T, Memory) {
    reset_peak();
    let before = status_mib("VmRSS:");
    let out = phase.await;
    let peak = status_mib("VmHWM:");
    tokio::time::sleep(settle).await;
    let after = status_mib("VmRSS:");
    (
        out,
        Memory {
            before,
            peak,
            after,
        },
    )
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"))
}

// ------------------------------------------------------------------------
// The bare floor: an axum handler in this process that only checks the
// Twilio signature and answers a constant TwiML.

async fn floor_handler(
    State(token): State<Arc<str>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(params) = sms_twilio::parse_form(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = format!("{PUBLIC_BASE}{}", sms_twilio::PATH);
    if !sms_twilio::verify(&token, &url, &params, given) {
        return StatusCode::FORBIDDEN.into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        sms_twilio::twiml("ok"),
    )
        .into_response()
}

// ------------------------------------------------------------------------
// CPU time: what a request costs, whatever else the machine is doing.

/// User + system CPU time this whole process (server, load client and
/// fake Twilio) has used so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time used so far by the PostgreSQL backends serving this run's
/// database (found in `pg_stat_activity`, read from `/proc`, so only when
/// the server runs on this machine), by process id.
async fn database_cpu(db: &TempDatabase) -> Option<HashMap<u32, Duration>> {
    let TempDatabase::Postgres { admin, name, .. } = db else {
        return None;
    };
    let pool = sqlx::PgPool::connect(admin.as_str()).await.ok()?;
    let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .fetch_all(&pool)
        .await
        .ok()?;
    pool.close().await;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = pids
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name: state is the first, utime the
            // 12th and stime the 13th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let used: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((
                u32::try_from(pid).ok()?,
                Duration::from_secs_f64(used as f64 / ticks),
            ))
        })
        .collect::<HashMap<_, _>>();
    (!cpu.is_empty()).then_some(cpu)
}

/// CPU used during a phase: by this process, and by the database's backends.
#[derive(Default, Clone, Copy)]
struct Cpu {
    process: Duration,
    database: Option<Duration>,
}

/// Run `phase`, and the CPU it used.
async fn measure_cpu<T>(db: &TempDatabase, phase: impl Future<Output = T>) -> (T, Cpu) {
    let db_before = database_cpu(db).await;
    let before = process_cpu();
    let out = phase.await;
    let process = process_cpu().saturating_sub(before);
    let database = database_cpu(db).await.map(|after| {
        after
            .iter()
            .map(|(pid, used)| {
                used.saturating_sub(
                    db_before
                        .as_ref()
                        .and_then(|b| b.get(pid).copied())
                        .unwrap_or_default(),
                )
            })
            .sum()
    });
    (out, Cpu { process, database })
}

/// Throughput and latency of a closed-loop phase.
#[derive(Default)]
struct Phase {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Cpu,
}

impl Phase {
    fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// CPU microseconds per request: this process, and the database's
    /// backends when known.
    fn cpu_per_request(&self) -> String {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / (self.requests.max(1) as f64);
        match self.cpu.database {
            Some(db) => format!("{:.0} + {:.0} (PostgreSQL)", per(self.cpu.process), per(db)),
            None => format!("{:.0}", per(self.cpu.process)),
        }
    }

    fn pct(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        percentile(&sorted, p)
    }
}

/// `concurrency` clients posting signed webhooks to the bare handler for
/// `secs`.
async fn floor_phase(
    client: &reqwest::Client,
    auth_token: &str,
    concurrency: usize,
    secs: u64,
) -> anyhow::Result<Phase> {
    let token: Arc<str> = auth_token.into();
    let router = axum::Router::new()
        .route(sms_twilio::PATH, post(floor_handler))
        .with_state(token.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{}", listener.local_addr()?, sms_twilio::PATH);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..concurrency {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        clients.spawn(async move {
            let mut phase = Phase::default();
            let from = format!("+4474009{c:05}");
            while Instant::now() < deadline {
                let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
                let params = inbound_params(&from, "UNLOCK", &sid);
                let signature: Arc<str> = sms_twilio::signature(
                    &token,
                    &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
                    &params,
                )
                .into();
                let (answered, took) =
                    post_once(client.clone(), url.clone(), Arc::new(params), signature).await;
                phase.requests += 1;
                if answered.status != Some(200) {
                    phase.errors += 1;
                }
                phase.latencies.push(took);
            }
            phase
        });
    }
    let mut total = Phase::default();
    while let Some(joined) = clients.join_next().await {
        let phase = joined?;
        total.requests += phase.requests;
        total.errors += phase.errors;
        total.latencies.extend(phase.latencies);
    }
    total.elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = server.await;
    Ok(total)
}

/// `concurrency` users, each on an account of its own, looping UNLOCK,
/// email, last 4 digits, EXIT (no hashing) for `secs`; every cycle is
/// finished, so no conversation is left open.
async fn fast_phase(ctx: &Arc<Ctx>, concurrency: usize, secs: u64) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut users = JoinSet::new();
    for u in 0..concurrency {
        let ctx = ctx.clone();
        users.spawn(async move {
            let account = &ctx.accounts[u];
            let from = account.mobile.as_str();
            let mut ok = true;
            while ok && Instant::now() < deadline && !ctx.stop.load(Ordering::SeqCst) {
                for (text, step, wanted) in [
                    ("UNLOCK", Step::Start, "email"),
                    (account.email.as_str(), Step::Email, "last 4"),
                    (account.last4.as_str(), Step::Last4, "question"),
                    ("EXIT", Step::Exit, "Cancelled"),
                ] {
                    let reply = turn_until_served(&ctx, from, text, step).await;
                    if !reply.is_some_and(|r| r.contains(wanted)) {
                        ctx.stats().unexpected_replies += 1;
                        ok = false;
                        break;
                    }
                }
            }
        });
    }
    while let Some(joined) = users.join_next().await {
        joined?;
    }
    let elapsed = started.elapsed();
    let stats = std::mem::take(&mut *ctx.stats());
    let latencies: Vec<Duration> = stats.turns.values().flatten().copied().collect();
    Ok(Phase {
        requests: latencies.len() as u64,
        errors: stats.non_200 + stats.transport_errors + stats.unexpected_replies,
        elapsed,
        latencies,
        cpu: Cpu::default(),
    })
}

/// Burst: every conversation brought to its first security question
/// (`concurrency` at a time), then all answers sent at the same moment.
/// Returns the replies: (served, busy, other).
async fn burst_phase(ctx: &Arc<Ctx>, concurrency: usize) -> anyhow::Result<(u64, u64, u64)> {
    let n = ctx.accounts.len();
    let questions = Arc::new(Mutex::new(vec![String::new(); n]));
    let next = Arc::new(AtomicUsize::new(0));
    let mut users = JoinSet::new();
    for _ in 0..concurrency.min(n) {
        let (ctx, next, questions) = (ctx.clone(), next.clone(), questions.clone());
        users.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let account = &ctx.accounts[i];
                let from = account.mobile.as_str();
                turn_until_served(&ctx, from, "UNLOCK", Step::Start).await;
                turn_until_served(&ctx, from, &account.email, Step::Email).await;
                let q = turn_until_served(&ctx, from, &account.last4, Step::Last4)
                    .await
                    .unwrap_or_default();
                questions.lock().unwrap_or_else(|p| p.into_inner())[i] = q;
            }
        });
    }
    while let Some(joined) = users.join_next().await {
        joined?;
    }
    // Only the wave is reported.
    *ctx.stats() = Stats::default();
    let questions = std::mem::take(&mut *questions.lock().unwrap_or_else(|p| p.into_inner()));
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut wave = JoinSet::new();
    for (i, q) in questions.into_iter().enumerate() {
        let (ctx, barrier) = (ctx.clone(), barrier.clone());
        wave.spawn(async move {
            let answer = answer_for(&q).unwrap_or("no question");
            barrier.wait().await;
            turn(&ctx, &ctx.accounts[i].mobile, answer, Step::Answer).await
        });
    }
    let (mut served, mut busy, mut other) = (0, 0, 0);
    while let Some(joined) = wave.join_next().await {
        match joined? {
            Some(r) if r.contains("Security question 2") => served += 1,
            Some(r) if r.contains(BUSY) => busy += 1,
            _ => other += 1,
        }
    }
    Ok((served, busy, other))
}

// ------------------------------------------------------------------------
// The run.

struct Report {
    backend: String,
    args_line: String,
    concurrency: usize,
    duplicates: usize,
    requested: usize,
    seeded_in: Duration,
    /// One argon2id hash, timed alone while seeding.
    argon2_hash: Duration,
    /// The 1-minute load average before the run (other work on the machine).
    loadavg: Option<String>,
    elapsed: Duration,
    hit_time_limit: bool,
    stats: Stats,
    expected_texts: u64,
    delivered: u64,
    temp_password_texts: u64,
    drained_in: Option<Duration>,
    floor: Option<Phase>,
    fast: Option<Phase>,
    fast_memory: Memory,
    /// Burst replies: (next question, busy, other).
    burst: Option<(u64, u64, u64)>,
    burst_memory: Memory,
    conversations_memory: Memory,
    hash_workers: Option<usize>,
    burst_mode: bool,
}

/// The seeded accounts' three questions, their answers hashed once (off
/// the runtime's threads) and shared by every account.
async fn hashed_questions() -> anyhow::Result<Vec<unlockbot::directory::NewQuestion>> {
    Ok(tokio::task::spawn_blocking(|| {
        QUESTIONS
            .iter()
            .map(|(q, a)| {
                Ok(unlockbot::directory::NewQuestion::hashed(
                    *q,
                    hash_answer(&Answer::new(a))?,
                ))
            })
            .collect::<Result<Vec<_>, unlockbot::domain::HashError>>()
    })
    .await??)
}

/// The server's settings for a run: a fresh outbox key, the fake Twilio at
/// `twilio`, webhooks signed with `auth_token`.
fn server_env(
    db: &TempDatabase,
    twilio: std::net::SocketAddr,
    auth_token: &str,
) -> HashMap<String, String> {
    let outbox_key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    [
        ("DATABASE_URL", db.url()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE.to_owned()),
        (
            "DIALOGS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dialogs").to_owned(),
        ),
        ("SMS_PROVIDER", "twilio".to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", auth_token.to_owned()),
        ("TWILIO_FROM_NUMBER", BOT_NUMBER.to_owned()),
        ("TWILIO_API_BASE", format!("http://{twilio}")),
        ("OUTBOX_KEY", outbox_key),
        // Each simulated user sends hundreds of turns a phase from its one
        // phone: lift the per-sender daily reply budget (an abuse guard, 40
        // by default) to its maximum, or the phases would be cut off by it.
        ("SENDER_REPLIES_PER_DAY", "10000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn run(args: &Args, db: &TempDatabase, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let fake = FakeTwilio::default();
    let (twilio_addr, twilio_stop, twilio_task) = start_fake_twilio(fake.clone()).await?;
    let auth_token = format!("load-{}", uuid::Uuid::new_v4().simple());
    let mut env = server_env(db, twilio_addr, &auth_token);
    env.extend(
        args.hash_workers
            .map(|n| ("HASH_WORKERS".to_owned(), n.to_string())),
    );
    let settings = Settings::from_map(&env).context("settings")?;
    let app = Application::build_with(settings, Arc::new(SystemClock), None)
        .await
        .context("the server does not build")?;
    let port = app.port();

    // Seed: hashing is slow, so hash the three answers once for everyone.
    let seeding = Instant::now();
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    let hashes = hashed_questions().await?;
    let argon2_hash = seeding.elapsed() / QUESTIONS.len() as u32;
    let (directory, enrolments) = (
        app.services.accounts.clone(),
        app.services.enrolments.clone(),
    );
    let now = chrono::Utc::now();
    let mut accounts = Vec::with_capacity(args.conversations);
    for i in 0..args.conversations {
        let (seed, mut account) = seed_account(i)?;
        account.questions = hashes.clone();
        unlockbot::accounts::save(directory.as_ref(), enrolments.as_ref(), &account, now)
            .await
            .with_context(|| format!("cannot seed {}", seed.email))?;
        accounts.push(seed);
    }
    let seeded_in = seeding.elapsed();
    drop((directory, enrolments));

    let (server_stop, server_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = server_rx.await;
    }));

    let limit = Duration::from_secs(args.time_limit);
    let ctx = Arc::new(Ctx {
        client: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(args.concurrency * (args.duplicates + 1))
            .build()
            .context("HTTP client")?,
        webhook: format!("http://127.0.0.1:{port}{}", sms_twilio::PATH),
        auth_token,
        accounts,
        duplicates: args.duplicates,
        deadline: Instant::now() + limit,
        stop,
        stats: Mutex::new(Stats::default()),
    });

    // Memory is read a few seconds after each phase.
    let settle = Duration::from_secs(5);
    let (floor, fast, fast_memory) = if args.burst {
        (None, None, Memory::default())
    } else {
        let (floor, cpu) = measure_cpu(
            db,
            floor_phase(
                &ctx.client,
                &ctx.auth_token,
                args.concurrency,
                args.phase_secs,
            ),
        )
        .await;
        let mut floor = floor?;
        floor.cpu = cpu;
        let ((fast, cpu), memory) = measure_memory(
            settle,
            measure_cpu(db, fast_phase(&ctx, args.concurrency, args.phase_secs)),
        )
        .await;
        let mut fast = fast?;
        fast.cpu = cpu;
        (Some(floor), Some(fast), memory)
    };

    let (burst, burst_memory) = if args.burst {
        let (out, memory) = measure_memory(settle, burst_phase(&ctx, args.concurrency)).await;
        (Some(out?), memory)
    } else {
        (None, Memory::default())
    };
    reset_peak();
    let conversations_rss_before = status_mib("VmRSS:");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(if args.burst { usize::MAX } else { 0 }));
    let mut users = JoinSet::new();
    for _ in 0..args.concurrency.min(args.conversations) {
        let (ctx, next) = (ctx.clone(), next.clone());
        users.spawn(async move {
            loop {
                let i = next.load(Ordering::SeqCst);
                if i >= ctx.accounts.len() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= ctx.accounts.len() {
                    return;
                }
                let ended = conversation(&ctx, i).await;
                let mut stats = ctx.stats();
                match ended {
                    Ended::Unlocked => stats.unlocked += 1,
                    Ended::Reset => stats.reset += 1,
                    Ended::CutOff => stats.cut_off += 1,
                    Ended::Failed => stats.failed += 1,
                }
            }
        });
    }
    // The time limit stops new turns; turns in flight end within the
    // request timeout. Past both, the users are aborted.
    let all_done = async { while users.join_next().await.is_some() {} };
    if tokio::time::timeout(limit + REQUEST_TIMEOUT + Duration::from_secs(5), all_done)
        .await
        .is_err()
    {
        users.abort_all();
    }
    let elapsed = started.elapsed();
    let conversations_peak = status_mib("VmHWM:");
    let hit_time_limit = Instant::now() >= ctx.deadline;
    let stats = std::mem::take(&mut *ctx.stats());
    let not_started = if args.burst {
        0
    } else {
        ctx.accounts
            .len()
            .saturating_sub(next.load(Ordering::SeqCst).min(ctx.accounts.len()))
    };

    // Wait for the outbox: one notice per unlock; a temporary password and
    // a notice per reset.
    let expected_texts = stats.unlocked + 2 * stats.reset;
    let drain_started = Instant::now();
    let drain_deadline = drain_started + Duration::from_secs(args.drain_secs);
    let mut drained_in = None;
    loop {
        if fake.created.load(Ordering::SeqCst) >= expected_texts {
            drained_in = Some(drain_started.elapsed());
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A moment more, so that a text sent twice would show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conversations_memory = Memory {
        before: conversations_rss_before,
        peak: conversations_peak,
        after: {
            tokio::time::sleep(settle.saturating_sub(Duration::from_millis(300))).await;
            status_mib("VmRSS:")
        },
    };

    let _ = server_stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("load: the server stopped with an error: {e}"),
        Ok(Err(e)) => eprintln!("load: the server task failed: {e}"),
        Err(_) => eprintln!("load: the server did not stop within 30 s"),
    }
    let _ = twilio_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), twilio_task).await;

    let mut args_line = format!(
        "--conversations {} --concurrency {} --time-limit {}",
        args.conversations, args.concurrency, args.time_limit
    );
    if args.duplicates > 0 {
        args_line.push_str(&format!(" --duplicates {}", args.duplicates));
    }
    if args.burst {
        args_line.push_str(" --burst");
    }
    if let Some(n) = args.hash_workers {
        args_line.push_str(&format!(" --hash-workers {n}"));
    }
    if args.phase_secs != 5 {
        args_line.push_str(&format!(" --phase-secs {}", args.phase_secs));
    }
    if let Some(pg) = &args.postgres {
        args_line.push_str(&format!(" --postgres {pg}"));
    }
    let mut stats = stats;
    stats.cut_off += not_started as u64;
    Ok(Report {
        backend: db.describe(),
        args_line,
        concurrency: args.concurrency,
        duplicates: args.duplicates,
        requested: args.conversations,
        seeded_in,
        argon2_hash,
        loadavg,
        elapsed,
        hit_time_limit,
        expected_texts,
        delivered: fake.created.load(Ordering::SeqCst),
        temp_password_texts: fake.temp_passwords.load(Ordering::SeqCst),
        drained_in,
        stats,
        floor,
        fast,
        fast_memory,
        burst,
        burst_memory,
        conversations_memory,
        hash_workers: args.hash_workers,
        burst_mode: args.burst,
    })
}

// ------------------------------------------------------------------------
// The report.

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn latency_row(label: &str, samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    format!(
        "| {label} | {} | {} | {} | {} | {} |",
        sorted.len(),
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 90.0)),
        ms(percentile(&sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default()),
    )
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        });
    match model {
        Some(model) => format!(
            "{cpus} CPU{} ({model}), {}",
            if cpus == 1 { "" } else { "s" },
            std::env::consts::OS
        ),
        None => format!("{cpus} CPUs, {}", std::env::consts::OS),
    }
}

impl Report {
    fn clean(&self) -> bool {
        let s = &self.stats;
        s.non_200 == 0
            && s.transport_errors == 0
            && s.unexpected_replies == 0
            && self.floor.as_ref().is_none_or(|f| f.errors == 0)
            && self.fast.as_ref().is_none_or(|f| f.errors == 0)
            && self.burst.is_none_or(|(_, _, other)| other == 0)
            && s.duplicate_mismatches == 0
            && s.failed == 0
            && self.delivered == self.expected_texts
    }

    fn markdown(&self) -> String {
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let completed = s.unlocked + s.reset;
        let turns: usize = s.turns.values().map(Vec::len).sum();
        let all_turns: Vec<Duration> = s.turns.values().flatten().copied().collect();
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!(
            "`cargo run --release --example load -- {}`",
            self.args_line
        ));
        line(String::new());
        line(format!(
            "- machine: {}{}; one argon2id hash alone: {} ms",
            machine(),
            match &self.loadavg {
                Some(l) => format!(", load average {l} before the run"),
                None => String::new(),
            },
            ms(self.argon2_hash)
        ));
        line(format!(
            "- backend: {}; HASH_WORKERS {}",
            self.backend,
            self.hash_workers
                .map_or_else(|| "default (number of cores)".to_owned(), |n| n.to_string())
        ));
        line(String::new());
        line(format!(
            "| {} at once | requests or turns/s | p50 ms | p99 ms | errors | CPU µs per request | RSS before / peak (VmHWM) / 5 s after, MiB |",
            self.concurrency
        ));
        line("|---|---:|---:|---:|---:|---:|---|".to_owned());
        let mem = |m: &Memory| format!("{} / {} / {}", mib(m.before), mib(m.peak), mib(m.after));
        if let Some(floor) = &self.floor {
            line(format!(
                "| bare floor: axum handler, Twilio signature check, constant TwiML | {:.0} | {} | {} | {} | {} | |",
                floor.per_sec(),
                ms(floor.pct(50.0)),
                ms(floor.pct(99.0)),
                floor.errors,
                floor.cpu_per_request()
            ));
        }
        if let Some(fast) = &self.fast {
            let ratio = self
                .floor
                .as_ref()
                .map(|f| 100.0 * fast.per_sec() / f.per_sec().max(f64::EPSILON))
                .unwrap_or_default();
            line(format!(
                "| turns without hashing (UNLOCK, email, last 4, EXIT): {ratio:.0} % of the floor | {:.0} | {} | {} | {} | {} | {} |",
                fast.per_sec(),
                ms(fast.pct(50.0)),
                ms(fast.pct(99.0)),
                fast.errors,
                fast.cpu_per_request(),
                mem(&self.fast_memory)
            ));
        }
        if let Some((served, busy, other)) = self.burst {
            let mut answers = s.turns.get(&Step::Answer).cloned().unwrap_or_default();
            answers.sort();
            line(format!(
                "| burst: {} answers (argon2id verify) sent at the same moment: {served} answered, {busy} busy, {other} other | {:.0} | {} | {} | {} | {} | {} |",
                self.requested,
                served as f64 / answers.last().map_or(f64::EPSILON, |d| d.as_secs_f64()),
                ms(percentile(&answers, 50.0)),
                ms(percentile(&answers, 99.0)),
                other + s.non_200 + s.transport_errors,
                "",
                mem(&self.burst_memory)
            ));
        }
        if !self.burst_mode {
            line(format!(
                "| whole conversations (2 answers, then unlock or reset): conversations/s | {:.1} | {} | {} | {} | | {} |",
                (s.unlocked + s.reset) as f64 / secs,
                ms(percentile(
                    &{
                        let mut a = all_turns.clone();
                        a.sort();
                        a
                    },
                    50.0
                )),
                ms(percentile(
                    &{
                        let mut a = all_turns.clone();
                        a.sort();
                        a
                    },
                    99.0
                )),
                s.non_200 + s.transport_errors + s.unexpected_replies + s.failed,
                mem(&self.conversations_memory)
            ));
        }
        line(format!(
            "- load: {} conversations requested, {} at a time{}; {} completed ({} unlock, {} reset), {} not finished within the time limit, {} failed",
            self.requested,
            self.concurrency,
            if self.duplicates > 0 {
                format!(
                    ", every webhook posted {} times at once with the same MessageSid",
                    self.duplicates + 1
                )
            } else {
                String::new()
            },
            completed,
            s.unlocked,
            s.reset,
            s.cut_off,
            s.failed,
        ));
        line(format!(
            "- wall time {:.1} s{} (seeding {} accounts beforehand: {:.1} s)",
            secs,
            if self.hit_time_limit {
                ", stopped by the time limit"
            } else {
                ""
            },
            self.requested,
            self.seeded_in.as_secs_f64(),
        ));
        line(String::new());
        line("| measure | value |".to_owned());
        line("|---|---|".to_owned());
        line(format!(
            "| conversations/s | {:.1} |",
            completed as f64 / secs
        ));
        line(format!("| turns/s | {:.1} |", turns as f64 / secs));
        if self.duplicates > 0 {
            line(format!(
                "| webhook requests/s (duplicates included) | {:.1} |",
                s.requests.len() as f64 / secs
            ));
        }
        line(format!(
            "| errors (non-200 / transport / unexpected reply) | {} / {} / {} |",
            s.non_200, s.transport_errors, s.unexpected_replies
        ));
        line(format!(
            "| \"very busy\" replies (sent again) | {} |",
            s.busy
        ));
        line(format!(
            "| texts delivered by the outbox | {} of {} expected ({} temporary passwords){} |",
            self.delivered,
            self.expected_texts,
            self.temp_password_texts,
            match self.drained_in {
                Some(d) => format!(", all in by {} ms after the last turn", ms(d)),
                None => ", NOT all delivered in time".to_owned(),
            }
        ));
        if self.duplicates > 0 {
            line(format!(
                "| duplicate groups with identical replies | {} of {} |",
                s.duplicate_groups - s.duplicate_mismatches,
                s.duplicate_groups
            ));
        }
        line(String::new());
        line("| step | turns | p50 ms | p90 ms | p99 ms | max ms |".to_owned());
        line("|---|---:|---:|---:|---:|---:|".to_owned());
        line(latency_row("**every turn**", &all_turns));
        for step in Step::ALL {
            if let Some(samples) = s.turns.get(&step) {
                line(latency_row(step.label(), samples));
            }
        }
        if self.duplicates > 0 {
            line(latency_row(
                "each single request (duplicates included)",
                &s.requests,
            ));
        }
        out
    }
}

// ------------------------------------------------------------------------
// `--last4-timing`: does the last-4 step answer as fast for an unknown email
// as for a known one with the wrong digits (issue 9, finding 8)?
//
// Every sample is a pair of conversations, each from a fresh phone: one
// names a seeded account (used once, so it is never blocked) and one an
// email with no account; both then send wrong last 4 digits, and only that
// turn is timed. The two are sent one after the other, in an order chosen
// at random per pair, so that drifts of the machine's load fall on both.
// A paired difference (known minus unknown) per sample is reported with a
// bootstrap confidence interval of its median.

/// The kinds of conversation `--last4-only` can restrict the run to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Last4Kind {
    Known,
    Unknown,
}

/// Pairs sent first and not counted (caches, connection pools, the
/// phone-number library's lazily built tables).
const LAST4_WARMUP: usize = 50;
/// Bootstrap resamples for the confidence interval.
const BOOTSTRAP_RESAMPLES: usize = 2000;

/// A small deterministic generator (xorshift64*): the run's order and the
/// bootstrap are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One signed text to the webhook: the reply's text and how long it took.
async fn last4_text(
    client: &reqwest::Client,
    webhook: &str,
    auth_token: &str,
    from: &str,
    body: &str,
) -> anyhow::Result<(String, Duration)> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params = inbound_params(from, body, &sid);
    let signature: Arc<str> = sms_twilio::signature(
        auth_token,
        &format!("{PUBLIC_BASE}{}", sms_twilio::PATH),
        &params,
    )
    .into();
    let (answered, took) = post_once(
        client.clone(),
        webhook.to_owned(),
        Arc::new(params),
        signature,
    )
    .await;
    if answered.status != Some(200) {
        bail!("{body:?} from {from} answered {:?}", answered.status);
    }
    let text = twiml_text(&answered.body)
        .with_context(|| format!("{body:?} from {from}: no reply in {}", answered.body))?;
    if text.contains(BUSY) {
        bail!("{body:?} from {from}: the server said it was busy");
    }
    Ok((text, took))
}

/// Median, p10 and p90 of a set of samples, in milliseconds.
fn spread_ms(samples: &[f64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    (at(50.0), at(10.0), at(90.0))
}

fn median_of(samples: &[f64]) -> f64 {
    spread_ms(samples).0
}

/// A 95 % bootstrap interval of `statistic` over resamples of `samples`.
fn bootstrap_95(
    samples: &[f64],
    rng: &mut XorShift,
    statistic: impl Fn(&[f64]) -> f64,
) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let mut stats: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let resample: Vec<f64> = (0..samples.len())
                .map(|_| samples[rng.below(samples.len())])
                .collect();
            statistic(&resample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * stats.len() as f64) as usize).min(stats.len() - 1)];
    (at(0.025), at(0.975))
}

async fn last4_timing(args: &Args, pairs: usize, db: &TempDatabase) -> anyhow::Result<String> {
    if !(1..=20_000).contains(&pairs) {
        bail!("--last4-timing must be 1..=20000 pairs");
    }
    let fake = FakeTwilio::default();
    let (twilio_addr, twilio_stop, twilio_task) = start_fake_twilio(fake).await?;
    let auth_token = format!("load-{}", uuid::Uuid::new_v4().simple());
    let env = server_env(db, twilio_addr, &auth_token);
    let settings = Settings::from_map(&env).context("settings")?;
    let app = Application::build_with(settings, Arc::new(SystemClock), None)
        .await
        .context("the server does not build")?;
    let port = app.port();

    // One account per known conversation, each with the three questions.
    let total = LAST4_WARMUP + pairs;
    let hashes = hashed_questions().await?;
    let now = chrono::Utc::now();
    let mut accounts = Vec::with_capacity(total);
    for i in 0..total {
        let (seed, mut account) = seed_account(i)?;
        account.questions = hashes.clone();
        unlockbot::accounts::save(
            app.services.accounts.as_ref(),
            app.services.enrolments.as_ref(),
            &account,
            now,
        )
        .await
        .with_context(|| format!("cannot seed {}", seed.email))?;
        accounts.push(seed);
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));

    let (server_stop, server_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = server_rx.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("HTTP client")?;
    let webhook = format!("http://127.0.0.1:{port}{}", sms_twilio::PATH);

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut known_ms, mut unknown_ms, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    let mut replies_differ = 0usize;
    let started = Instant::now();
    let outcome: anyhow::Result<()> = async {
        for (i, account) in accounts.iter().enumerate() {
            // Digits that are not the account's.
            let wrong = if account.last4 == "0000" {
                "1111"
            } else {
                "0000"
            };
            let unknown_email = format!("load.nobody{i:05}@nhs.net");
            let mut kinds = [Last4Kind::Known, Last4Kind::Unknown];
            if rng.next() & 1 == 1 {
                kinds.swap(0, 1);
            }
            let mut took = [None, None];
            let mut texts = [String::new(), String::new()];
            for kind in kinds {
                if args.last4_only.is_some_and(|only| only != kind) {
                    continue;
                }
                let slot = kind as usize;
                // Fresh phones 07400 2xxxxx (known) and 07400 3xxxxx (unknown).
                let from = if slot == 0 {
                    format!("+4474002{i:05}")
                } else {
                    format!("+4474003{i:05}")
                };
                let email = if slot == 0 {
                    account.email.as_str()
                } else {
                    unknown_email.as_str()
                };
                last4_text(&client, &webhook, &auth_token, &from, "UNLOCK").await?;
                let (asked, _) = last4_text(&client, &webhook, &auth_token, &from, email).await?;
                if !asked.contains("last 4") {
                    bail!("{email}: not asked for the last 4 digits: {asked}");
                }
                let (text, d) = last4_text(&client, &webhook, &auth_token, &from, wrong).await?;
                took[slot] = Some(d.as_secs_f64() * 1000.0);
                texts[slot] = text;
            }
            if i < LAST4_WARMUP {
                continue;
            }
            if let Some(k) = took[0] {
                known_ms.push(k);
            }
            if let Some(u) = took[1] {
                unknown_ms.push(u);
            }
            if let [Some(k), Some(u)] = took {
                paired.push(k - u);
                if texts[0] != texts[1] {
                    replies_differ += 1;
                }
            }
        }
        Ok(())
    }
    .await;
    let elapsed = started.elapsed();
    let _ = server_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    let _ = twilio_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), twilio_task).await;
    outcome?;

    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let mut args_line = format!("--last4-timing {pairs}");
    if let Some(only) = args.last4_only {
        args_line.push_str(&format!(" --last4-only {only:?}").to_lowercase());
    }
    if let Some(pg) = &args.postgres {
        args_line.push_str(&format!(" --postgres {pg}"));
    }
    line(format!(
        "`cargo run --release --example load -- {args_line}`"
    ));
    line(String::new());
    line(format!(
        "- machine: {}{}; backend: {}",
        machine(),
        loadavg.map_or_else(String::new, |l| format!(
            ", load average {l} before the run"
        )),
        db.describe()
    ));
    line(format!(
        "- {pairs} pairs after {LAST4_WARMUP} not counted, one turn at a time, in {:.1} s; \
         the last-4 turn (wrong digits) timed from sending the webhook to the whole reply",
        elapsed.as_secs_f64()
    ));
    line(String::new());
    line("| last-4 turn | samples | median ms | p10 ms | p90 ms |".to_owned());
    line("|---|---:|---:|---:|---:|".to_owned());
    for (label, samples) in [
        ("known email, wrong digits", &known_ms),
        ("unknown email", &unknown_ms),
    ] {
        if samples.is_empty() {
            continue;
        }
        let (median, p10, p90) = spread_ms(samples);
        line(format!(
            "| {label} | {} | {median:.3} | {p10:.3} | {p90:.3} |",
            samples.len()
        ));
    }
    if !paired.is_empty() {
        let (median, p10, p90) = spread_ms(&paired);
        let (low, high) = bootstrap_95(&paired, &mut rng, median_of);
        line(format!(
            "| known minus unknown, per pair | {} | {median:+.3} | {p10:+.3} | {p90:+.3} |",
            paired.len()
        ));
        line(String::new());
        line(format!(
            "Median of the paired differences: {median:+.3} ms, 95 % bootstrap interval \
             [{low:+.3}, {high:+.3}] ms ({BOOTSTRAP_RESAMPLES} resamples){}.",
            if low <= 0.0 && 0.0 <= high {
                ": no difference measured (the interval holds 0)"
            } else {
                ": a difference (the interval does not hold 0)"
            }
        ));
        let known_median = median_of(&known_ms);
        let unknown_median = median_of(&unknown_ms);
        let (dl, dh) = {
            let mut pairs_rng = XorShift(rng.next() | 1);
            let stats: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
                .map(|_| {
                    let k: Vec<f64> = (0..known_ms.len())
                        .map(|_| known_ms[pairs_rng.below(known_ms.len())])
                        .collect();
                    let u: Vec<f64> = (0..unknown_ms.len())
                        .map(|_| unknown_ms[pairs_rng.below(unknown_ms.len())])
                        .collect();
                    median_of(&k) - median_of(&u)
                })
                .collect();
            let mut stats = stats;
            stats.sort_by(f64::total_cmp);
            let at = |q: f64| stats[((q * stats.len() as f64) as usize).min(stats.len() - 1)];
            (at(0.025), at(0.975))
        };
        line(format!(
            "Difference of the medians: {:+.3} ms, 95 % bootstrap interval [{dl:+.3}, {dh:+.3}] ms.",
            known_median - unknown_median
        ));
        line(format!(
            "Replies that differed between the two: {replies_differ} of {}.",
            paired.len()
        ));
    }
    Ok(out)
}
