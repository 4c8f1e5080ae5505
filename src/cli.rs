//! The command line: `serve`, `chat`, `demo`, `accounts …`, `audit`,
//! `dialog check`.
//!
//! Exit statuses: 0 done; 1 a "no" (a password that does not match, rows
//! rejected by an import, faults found by a check); 2 an error (settings,
//! database, directory); 3 no such account, the same message from every
//! command that takes one ([`NO_SUCH_ACCOUNT`]).

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
use crate::import_progress::ImportProgress;
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
    /// Print the audit trail (time, channel, masked sender, account, event,
    /// outcome).
    Audit {
        /// Print one JSON array of objects (at, channel, sender, account,
        /// event, outcome) instead of lines.
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
    /// Import accounts from CSV into the built-in directory (re-import
    /// updates by email).
    #[command(after_help = accounts::IMPORT_HELP)]
    Import {
        /// The CSV file (its header is shown below).
        file: std::path::PathBuf,
    },
    /// Show one account of the configured directory, with its enrolled
    /// security questions.
    Show {
        /// The account's email address (any case).
        email: String,
        /// Print one JSON object (the fields are in the README) instead of
        /// a summary.
        #[arg(long)]
        json: bool,
    },
    /// List every account of the built-in directory (not supported with
    /// DIRECTORY=ldap: use the directory's own tools).
    List {
        /// Print one JSON array of objects, each as `accounts show --json`
        /// prints it, instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lock an account in the built-in directory, as a directory does after
    /// failed sign-ins.
    Lock {
        /// The account's email address (any case).
        email: String,
    },
    /// Read a password on standard input; exit 0 when it is the account's
    /// current password, 1 when it is not.
    VerifyPassword {
        /// The account's email address (any case).
        email: String,
    },
}

#[derive(Subcommand)]
pub enum EnrolmentCommand {
    /// Import questions from CSV (`email,question1,answer1,…,answer3`);
    /// re-import replaces an account's questions.
    Import {
        /// The CSV file: header
        /// `email,question1,answer1,question2,answer2,question3,answer3`
        /// (any order, any case); every email must be an account of the
        /// configured directory.
        file: std::path::PathBuf,
    },
    /// Rotate ANSWERS_KEY: seal every stored sealed answer again under the
    /// new key (ANSWERS_KEY) from the old one (ANSWERS_KEY_OLD, read from
    /// the environment only, never from the command line, which `ps`
    /// shows). One transaction per batch; an answer already under the new
    /// key is left alone, so an interrupted run is simply run again. Exit
    /// status 0 when every sealed answer is under the new key, 1 when some
    /// open under neither key (left alone, listed), 2 on an error.
    RotateKey {
        /// Answers sealed again per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
    },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Bind, find one account, print what was read and whether the service
    /// account may write what unlock and reset need.
    Check {
        /// The email address of an account to look up.
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

/// The exit status of every command that finds no account for the email
/// it was given.
pub const NO_SUCH_ACCOUNT: u8 = 3;

/// No account for `email`: the same line and exit status from every command.
fn no_such_account(email: &Email) -> ExitCode {
    eprintln!("unlockbot: no account {email} in the directory");
    ExitCode::from(NO_SUCH_ACCOUNT)
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
    for (line, email) in &report.without_questions {
        println!(
            "line {line}: warning: {email} imported WITHOUT security questions: it cannot use self-service until questions are enrolled"
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

/// `enrolment rotate-key`: from `ANSWERS_KEY_OLD` to `ANSWERS_KEY`.
async fn rotate_answers_key(settings: &Settings, batch: u32) -> anyhow::Result<ExitCode> {
    let Some(new) = settings.answers_key.as_ref() else {
        anyhow::bail!(
            "ANSWERS_KEY is not set: set it to the new key (`unlockbot keygen` prints one)"
        );
    };
    let old_hex = SecretString::from(std::env::var("ANSWERS_KEY_OLD").unwrap_or_default());
    let old_hex = old_hex.expose_secret().trim();
    if old_hex.is_empty() {
        anyhow::bail!(
            "ANSWERS_KEY_OLD is not set: set it to the key the answers are sealed under now (in the environment, never on the command line)"
        );
    }
    let old = crate::domain::AnswersKey::from_hex(old_hex)
        .map_err(|e| anyhow::anyhow!("ANSWERS_KEY_OLD {e}"))?;
    let new_hex = std::env::var("ANSWERS_KEY").unwrap_or_default();
    if new_hex.trim().eq_ignore_ascii_case(old_hex) {
        anyhow::bail!(
            "ANSWERS_KEY_OLD is the same key as ANSWERS_KEY: set ANSWERS_KEY to the new key"
        );
    }
    let database = open_database(settings, Open::Existing).await?;
    let enrolments = crate::enrolment::SqlEnrolments::new(database.pool.clone());
    let report = enrolments
        .reseal_answers(&old, new, batch, &mut |so_far| {
            eprintln!(
                "... {} sealed again, {} already under the new key",
                so_far.resealed, so_far.already
            );
        })
        .await?;
    println!(
        "{} answers sealed again under the new ANSWERS_KEY; {} already under it (left alone); {} re-enrolled meanwhile (left alone)",
        report.resealed, report.already, report.changed_meanwhile
    );
    if report.unreadable.is_empty() {
        println!("every sealed answer is now under the new key: ANSWERS_KEY_OLD can be destroyed");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} answers open under neither ANSWERS_KEY_OLD nor ANSWERS_KEY and were left alone (import them again to use them with ANSWER_MODE=characters):",
        report.unreadable.len()
    );
    for (owner, position) in &report.unreadable {
        eprintln!("  {owner}, question {position}");
    }
    Ok(ExitCode::FAILURE)
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
            let mut progress = ImportProgress::start(&file, "enrolment import")?;
            let report = accounts::import_enrolments_csv_resuming(
                directory.as_ref(),
                database.enrolments.as_ref(),
                accounts::AnswerStorage {
                    hasher: &database.hasher,
                    key: settings.answers_key.as_ref(),
                },
                input,
                clock.now(),
                accounts::ImportRows {
                    skip: progress.resume_after(),
                    done: &mut |rows| progress.rows_done(rows),
                },
            )
            .await?;
            progress.finish();
            return Ok(print_report(&report));
        }
        Command::Enrolment(EnrolmentCommand::RotateKey { batch }) => {
            return rotate_answers_key(&settings, batch).await;
        }
        Command::Directory(DirectoryCommand::Check { email }) => {
            let email = parse_email(&email)?;
            let DirectoryChoice::Ldap(config) = &settings.directory else {
                println!(
                    "DIRECTORY=builtin: accounts are in the bot's own database ({})",
                    settings.database_url
                );
                let database = open_database(&settings, Open::Existing).await?;
                if database.builtin.find(&email).await?.is_none() {
                    return Ok(no_such_account(&email));
                }
                println!("{email}: found");
                return Ok(ExitCode::SUCCESS);
            };
            let directory = LdapDirectory::connect((**config).clone()).await?;
            let lines = directory.check(&email).await?;
            for line in &lines {
                println!("{line}");
            }
            if lines.iter().any(|l| l.starts_with("no account")) {
                return Ok(no_such_account(&email));
            }
            let ok = !lines.iter().any(|l| l.contains(": NO "));
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
            let mut progress = ImportProgress::start(&file, "accounts import")?;
            let report = accounts::import_csv_resuming(
                directory,
                accounts::AnswerStorage {
                    hasher: &database.hasher,
                    key: settings.answers_key.as_ref(),
                },
                input,
                settings.allow_crown_dependencies,
                clock.now(),
                accounts::ImportRows {
                    skip: progress.resume_after(),
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
                return Ok(no_such_account(&email));
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
                print!("{}", summary(&view));
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::List { json } => {
            // Decided before connecting: an LDAP directory is never listed.
            let configured = match &settings.directory {
                DirectoryChoice::Ldap(_) => None,
                DirectoryChoice::Builtin => Some(database.directory(settings).await?),
            };
            let listed = match configured {
                Some(directory) => directory.list(clock.now()).await?,
                None => None,
            };
            let Some(mut views) = listed else {
                eprintln!(
                    "unlockbot: accounts list is not supported with DIRECTORY=ldap: list accounts with the directory's own tools; `unlockbot accounts show EMAIL` and `unlockbot directory check --email EMAIL` read one account"
                );
                return Ok(ExitCode::from(2));
            };
            for view in &mut views {
                if let Ok(email) = Email::parse(&view.email) {
                    view.security_questions = database
                        .enrolments
                        .questions(&crate::directory::AccountId::new(email.as_str()), &email)
                        .await?
                        .into_iter()
                        .map(|q| q.text)
                        .collect();
                }
            }
            if json {
                println!("{}", serde_json::to_string(&views)?);
            } else {
                print!("{}", table(&views));
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Lock { email } => {
            let email = parse_email(&email)?;
            match directory.lock(&email, clock.now()).await {
                Err(crate::directory::DirectoryError::NotFound) => {
                    return Ok(no_such_account(&email));
                }
                other => other?,
            }
            println!("{email} locked");
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::VerifyPassword { email } => {
            let email = parse_email(&email)?;
            let mut raw = String::new();
            std::io::stdin().read_to_string(&mut raw)?;
            let password = SecretString::from(raw.trim_end_matches(['\r', '\n']).to_owned());
            drop(raw);
            let ok = match directory
                .verify_password(&email, password.expose_secret())
                .await
            {
                Err(crate::directory::DirectoryError::NotFound) => {
                    return Ok(no_such_account(&email));
                }
                other => other?,
            };
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

/// `accounts show` without `--json`: one field a line, stored text escaped.
fn summary(view: &crate::directory::AccountView) -> String {
    use crate::domain::text::escaped;
    use std::fmt::Write;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<22}{value}");
    };
    line(
        "mobile",
        view.mobile.as_deref().unwrap_or("none registered"),
    );
    line(
        "organisation",
        &format!(
            "{}{}",
            escaped(&view.organisation),
            if view.same_sign_on {
                " (Same Sign On)"
            } else {
                ""
            }
        ),
    );
    line(
        "synced",
        &when(view.synced_at).unwrap_or_else(|| "-".to_owned()),
    );
    line("locked", yes_no(view.locked));
    line(
        "self-service",
        &if view.disabled {
            format!(
                "DISABLED: {}",
                escaped(
                    view.disabled_reason
                        .as_deref()
                        .unwrap_or("disabled in the directory")
                )
            )
        } else if view.security_questions.is_empty() {
            "not possible: no security questions enrolled".to_owned()
        } else if view.mobile.is_none() {
            "not possible: no registered mobile".to_owned()
        } else {
            "allowed".to_owned()
        },
    );
    line("must change password", yes_no(view.must_change_password));
    line(
        "password",
        &match (view.has_password, when(view.password_set_at)) {
            (false, _) => "none set".to_owned(),
            (true, Some(set)) => format!(
                "set {set}, expires {}",
                when(view.password_expires_at).unwrap_or_default()
            ),
            (true, None) => "set".to_owned(),
        },
    );
    line(
        "security questions",
        &format!("{} enrolled", view.security_questions.len()),
    );
    for (n, q) in view.security_questions.iter().enumerate() {
        let _ = writeln!(out, "    {}. {}", n + 1, escaped(q));
    }
    format!("{}\n{out}", escaped(&view.email))
}

/// `accounts list` without `--json`: one account a line.
fn table(views: &[crate::directory::AccountView]) -> String {
    use crate::domain::text::escaped;
    use std::fmt::Write;
    let mut out = format!(
        "{:<40} {:<15} {:<6} {:<8} {:<9} {}\n",
        "EMAIL", "MOBILE", "LOCKED", "DISABLED", "QUESTIONS", "ORGANISATION"
    );
    for v in views {
        let _ = writeln!(
            out,
            "{:<40} {:<15} {:<6} {:<8} {:<9} {}",
            escaped(&v.email),
            v.mobile.as_deref().unwrap_or("-"),
            if v.locked { "yes" } else { "no" },
            if v.disabled { "yes" } else { "no" },
            v.security_questions.len(),
            escaped(&v.organisation)
        );
    }
    let _ = writeln!(out, "{} account(s)", views.len());
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and flag of every command says what it is for.
    #[test]
    fn every_argument_and_command_has_a_description() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "unlockbot", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }
}
