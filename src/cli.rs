//! The command line: `serve`, `chat`, `demo`, `accounts …`, `audit`,
//! `dialog check`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::accounts;
use crate::app::{Application, Database, Services};
use crate::clock::{Clock, SystemClock};
use crate::demo;
use crate::dialog;
use crate::directory::AccountDirectory;
use crate::directory::Directory;
use crate::directory::ldap::LdapDirectory;
use crate::domain::Email;
use crate::settings::{DirectoryChoice, Settings};
use crate::sms::console::ConsoleSender;
use crate::sms::outbox::OutboxKey;
use crate::telemetry;

#[derive(Parser)]
#[command(
    name = "unlockbot",
    version,
    about = "Self-service account unlock by text message"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server (webhooks, health).
    Serve,
    /// Talk to the bot in this terminal, against the configured database;
    /// texts to the registered mobile are shown on screen.
    Chat,
    /// Try the bot with no configuration: a separate demo database with
    /// clearly marked sample accounts, and a terminal conversation.
    Demo,
    /// Manage accounts in the built-in directory.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Enrol security questions for accounts of the configured directory.
    #[command(subcommand)]
    Enrolment(EnrolmentCommand),
    /// Check the configured directory before going live.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// Print the audit trail.
    Audit {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Check the dialog files.
    #[command(subcommand)]
    Dialog(DialogCommand),
    /// Print a fresh random key (for OUTBOX_KEY, SENDER_KEY or ANSWERS_KEY).
    Keygen,
}

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Import accounts from CSV (re-import updates by email).
    Import { file: std::path::PathBuf },
    /// Show one account.
    Show {
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Lock an account, as the directory would after failed sign-ins.
    Lock { email: String },
    /// Read a password on standard input; exit 0 when it is the account's
    /// current password, 1 when it is not.
    VerifyPassword { email: String },
}

#[derive(Subcommand)]
pub enum EnrolmentCommand {
    /// Import questions from CSV (`email,question1,answer1,…,answer3`);
    /// re-import replaces an account's questions.
    Import { file: std::path::PathBuf },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Bind, find one account, print what was read and whether the service
    /// account may write what unlock and reset need.
    Check {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum DialogCommand {
    /// Validate the flow and every language file in DIALOGS_DIR: structure,
    /// every message of en.toml in every language with the same
    /// placeholders, and the SMS segment budget of every reply the flow can
    /// send (placeholders at their longest).
    Check {
        /// Also print the size of every reply.
        #[arg(long)]
        sizes: bool,
    },
    /// Print the flow as Graphviz DOT (steps, outcomes, routes, notes), for
    /// example `unlockbot dialog graph | dot -Tsvg > flow.svg`.
    Graph,
}

/// A CSV file to import.
fn open_input(file: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))
}

/// What an import did; failure when any row was rejected.
fn print_report(report: &accounts::ImportReport) -> ExitCode {
    for (line, email) in &report.disabled {
        println!(
            "line {line}: {email} imported but DISABLED: registered mobile is not a UK mobile number"
        );
    }
    for r in &report.rejected {
        eprintln!("line {}: rejected: {}", r.line, r.reason);
    }
    println!(
        "{} imported, {} rejected",
        report.imported,
        report.rejected.len()
    );
    if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_email(raw: &str) -> anyhow::Result<Email> {
    Email::parse(raw).map_err(|e| anyhow::anyhow!("'{raw}' is not a valid email address: {e}"))
}

/// Whether a command may create the database it is pointed at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    /// Import: creates the database (and applies migrations).
    Creating,
    /// Show, list, audit, lock, verify: a database that does not exist is
    /// an error naming it, and is not created.
    Existing,
}

async fn open_database(settings: &Settings, open: Open) -> anyhow::Result<Database> {
    // These commands never look a sender up; without any key a random one
    // does no harm.
    let outbox_key = settings
        .outbox_key
        .clone()
        .unwrap_or_else(crate::sms::outbox::OutboxKey::generate);
    let (url, hasher, senders) = (
        &settings.database_url,
        crate::hashing::Hasher::new(settings.hashing),
        settings.sender_key_for(&outbox_key),
    );
    let allow = settings.allow_crown_dependencies;
    match open {
        Open::Creating => Database::connect(url, allow, hasher, senders).await,
        Open::Existing => Database::connect_existing(url, allow, hasher, senders).await,
    }
    .with_context(|| format!("cannot open the database {} (DATABASE_URL)", shown_url(url)))
}

/// A database URL as it may be printed: without its password.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// An error and its causes on one line, each said once (a database error
/// repeats its cause in its own message, which would print it three times).
pub fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// A terminal conversation, with the outbox worker delivering texts to the
/// screen meanwhile.
pub async fn chat(services: &mut Services) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The terminal's worker sends only the terminal conversation's texts,
    // and to the screen: it must never take a text meant for a real phone
    // from a database that `serve` also uses.
    let worker = services.worker.take().map(|mut w| {
        w.only_conversation = Some(crate::channels::terminal::conversation_key());
        tokio::spawn(async move {
            w.run_borrowed(stop_rx).await;
            w
        })
    });
    let result = crate::channels::terminal::run(
        services.engine.clone(),
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(worker) = worker {
        // Texts queued by the last turns go out before leaving (those
        // waiting for a retry stay queued, for the next chat).
        let worker = worker.await.context("the outbox worker failed")?;
        while worker.deliver_next().await? {}
    }
    result
}

/// Run a command; the exit code follows each command's contract.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Keygen) {
        println!("{}", OutboxKey::generate().to_hex().as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let settings = match cli.command {
        // The demo needs no configuration, and must not pick up a real
        // provider or database from the environment.
        Command::Demo => demo::settings()?,
        _ => Settings::from_env()?,
    };
    let quiet = matches!(cli.command, Command::Chat | Command::Demo);
    telemetry::init(
        settings.log_format,
        if quiet { "warn" } else { "info,unlockbot=info" },
    );
    let clock = SystemClock;
    match cli.command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "unlockbot listening");
            app.run_until_stopped().await?;
        }
        Command::Chat => {
            eprintln!("!!! {} !!!", ConsoleSender::WARNING);
            let mut services = Services::build(
                &settings,
                Arc::new(SystemClock),
                Some(Arc::new(ConsoleSender::default())),
            )
            .await?;
            chat(&mut services).await?;
        }
        Command::Demo => demo::run(settings).await?,
        Command::Accounts(command) => return accounts_command(&settings, command, &clock).await,
        Command::Enrolment(EnrolmentCommand::Import { file }) => {
            let database = open_database(&settings, Open::Creating).await?;
            let directory = database.directory(&settings).await?;
            let input = open_input(&file)?;
            let report = accounts::import_enrolments_csv(
                directory.as_ref(),
                database.enrolments.as_ref(),
                accounts::AnswerStorage {
                    hasher: &database.hasher,
                    key: settings.answers_key.as_ref(),
                },
                input,
                clock.now(),
            )
            .await?;
            return Ok(print_report(&report));
        }
        Command::Directory(DirectoryCommand::Check { email }) => {
            let email = parse_email(&email)?;
            let DirectoryChoice::Ldap(config) = &settings.directory else {
                println!(
                    "DIRECTORY=builtin: accounts are in the bot's own database ({})",
                    settings.database_url
                );
                let database = open_database(&settings, Open::Existing).await?;
                let found = database.builtin.find(&email).await?;
                println!(
                    "{email}: {}",
                    if found.is_some() {
                        "found"
                    } else {
                        "no such account"
                    }
                );
                return Ok(if found.is_some() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            };
            let directory = LdapDirectory::connect((**config).clone()).await?;
            let lines = directory.check(&email).await?;
            for line in &lines {
                println!("{line}");
            }
            let ok = !lines
                .iter()
                .any(|l| l.starts_with("no account") || l.contains(": NO "));
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Audit { json } => {
            let events = open_database(&settings, Open::Existing)
                .await?
                .store
                .audit_events()
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                // Stored values are shown with any control or invisible
                // character escaped, never raw (they could drive the
                // terminal or disguise an address).
                use crate::domain::text::escaped;
                for e in events {
                    println!(
                        "{}  {:<8} {:<16} {:<32} {:<12} {}",
                        e.at.to_rfc3339(),
                        escaped(&e.channel),
                        escaped(&e.sender),
                        escaped(e.account.as_deref().unwrap_or("-")),
                        escaped(&e.event),
                        escaped(&e.outcome)
                    );
                }
            }
        }
        Command::Keygen => {}
        Command::Dialog(DialogCommand::Check { sizes }) => {
            return Ok(dialog_check(&settings, sizes));
        }
        Command::Dialog(DialogCommand::Graph) => {
            match dialog::spec::load(&settings.dialogs_dir, &settings.language) {
                Ok(d) => print!("{}", dialog::graph::dot(&d)),
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn accounts_command(
    settings: &Settings,
    command: AccountsCommand,
    clock: &dyn Clock,
) -> anyhow::Result<ExitCode> {
    let open = match command {
        AccountsCommand::Import { .. } => Open::Creating,
        _ => Open::Existing,
    };
    let database = open_database(settings, open).await?;
    let directory: &dyn AccountDirectory = database.builtin.as_ref();
    match command {
        AccountsCommand::Import { file } => {
            let input = open_input(&file)?;
            let mut progress = crate::import_progress::ImportProgress::start(&file)?;
            let skip = progress.resume_after();
            if skip > 0 {
                eprintln!(
                    "resuming: the first {skip} rows were imported by an interrupted run of this file"
                );
            }
            let report = accounts::import_csv_resuming(
                directory,
                database.enrolments.as_ref(),
                accounts::AnswerStorage {
                    hasher: &database.hasher,
                    key: settings.answers_key.as_ref(),
                },
                input,
                settings.allow_crown_dependencies,
                clock.now(),
                accounts::ImportRows {
                    skip,
                    done: &mut |rows| progress.rows_done(rows),
                },
            )
            .await?;
            progress.finish();
            Ok(print_report(&report))
        }
        AccountsCommand::Show { email, json } => {
            let email = parse_email(&email)?;
            let configured = database.directory(settings).await?;
            let Some(mut view) = configured.view(&email, clock.now()).await? else {
                eprintln!("no account {email}");
                return Ok(ExitCode::FAILURE);
            };
            view.security_questions = match configured.find(&email).await? {
                Some(account) => database
                    .enrolments
                    .questions(&account.account.id, &email)
                    .await?
                    .into_iter()
                    .map(|q| q.text)
                    .collect(),
                None => Vec::new(),
            };
            if json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&view)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Lock { email } => {
            let email = parse_email(&email)?;
            directory.lock(&email, clock.now()).await?;
            println!("{email} locked");
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::VerifyPassword { email } => {
            let email = parse_email(&email)?;
            let mut raw = String::new();
            std::io::stdin().read_to_string(&mut raw)?;
            let password = SecretString::from(raw.trim_end_matches(['\r', '\n']).to_owned());
            drop(raw);
            let ok = directory
                .verify_password(&email, password.expose_secret())
                .await?;
            eprintln!(
                "{}",
                if ok {
                    "password matches"
                } else {
                    "password does NOT match"
                }
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `unlockbot dialog check`.
fn dialog_check(settings: &Settings, sizes: bool) -> ExitCode {
    use dialog::budget::{self, BudgetSettings};
    let dir = &settings.dialogs_dir;
    let codes = match dialog::spec::check_all(dir) {
        Ok(codes) => codes,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let budget_settings = BudgetSettings {
        idle_minutes: settings.idle_timeout.num_minutes(),
        temp_password_length: settings.temp_password_length,
        questions_to_ask: settings.questions_to_ask,
        contact: settings.support_contact.clone(),
    };
    let mut failed = false;
    for code in &codes {
        let file = dir.join(format!("{code}.toml"));
        let dialog = match dialog::spec::load(dir, code) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let mut faults = Vec::new();
        if code != "en" {
            match dialog::spec::compare_with_english(dir, code) {
                Ok(found) => faults.extend(found),
                Err(e) => faults.push(e.to_string()),
            }
        }
        faults.extend(budget::faults(&dialog, &budget_settings));
        for fault in &faults {
            eprintln!("{}: {fault}", file.display());
        }
        failed |= !faults.is_empty();
        let measured = budget::measure(&dialog, &budget_settings);
        if sizes {
            for m in &measured {
                println!(
                    "{code}  {:>2} x {}  {:>4} chars  {:<7} {}: {}",
                    m.size.segments,
                    m.size.encoding,
                    m.size.units,
                    format!("{:?}", m.shape.kind).to_lowercase(),
                    m.shape.when,
                    m.shape.messages.join(" + ")
                );
            }
        }
        for m in measured
            .iter()
            .filter(|m| m.long_ending() && !m.over_budget())
        {
            println!(
                "{}: note: {} ends the conversation in {} segments ({} characters); 1 is better",
                file.display(),
                m.shape.when,
                m.size.segments,
                m.size.units
            );
        }
        if let Some(longest) = measured
            .iter()
            .filter(|m| m.shape.kind != budget::Kind::Text)
            .max_by_key(|m| (m.size.segments, m.size.units))
        {
            println!(
                "{code}: {} replies checked; the longest takes {} {} segment(s) ({} characters): {}",
                measured.len(),
                longest.size.segments,
                longest.size.encoding,
                longest.size.units,
                longest.shape.when
            );
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!(
        "{}: flow.toml and {} language file(s) ({}) are valid and within their SMS budgets",
        dir.display(),
        codes.len(),
        codes.join(", ")
    );
    ExitCode::SUCCESS
}
