//! Wiring: settings in, a bound server (and its parts) out.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::channels::sms_twilio;
use crate::channels::telegram::{self, TelegramChannel};
use crate::clock::{Clock, SystemClock};
use crate::dialog;
use crate::directory::builtin::BuiltinDirectory;
use crate::directory::ldap::LdapDirectory;
use crate::directory::{AccountDirectory, Directory};
use crate::domain::SenderKey;
use crate::engine::{Engine, EngineConfig};
use crate::enrolment::{Enrolments, SqlEnrolments};
use crate::hashing::Hasher;
use crate::http::{AppState, router};
use crate::settings::{DirectoryChoice, Settings, SmsProvider, TelegramMode};
use crate::sms::SmsSender;
use crate::sms::console::ConsoleSender;
use crate::sms::notify::NotifySender;
use crate::sms::outbox::{OutboxKey, OutboxWorker};
use crate::sms::twilio::TwilioSender;
use crate::sql::SqlPool;
use crate::store::deletions::{ChatDeletions, SqlChatDeletions};
use crate::store::{Store, StoreError};
use crate::unlock::{Unlock, UnlockPolicy};

/// The bot's own database: the store, the built-in account directory and
/// the enrolled security questions, on one connection pool.
pub struct Database {
    pub store: Arc<dyn Store>,
    pub builtin: Arc<BuiltinDirectory>,
    pub enrolments: Arc<dyn Enrolments>,
    /// The argon2id worker pool every hash and verify runs on.
    pub hasher: Hasher,
    /// The connection pool, for the other SQL adapters.
    pub pool: SqlPool,
}

impl Database {
    /// Connect to `url` (`sqlite://…` or `postgres://…`), applying migrations.
    /// Sender numbers, chat ids and message ids are stored as hashes under
    /// `senders`.
    pub async fn connect(
        url: &str,
        allow_crown_dependencies: bool,
        hasher: Hasher,
        senders: SenderKey,
    ) -> Result<Self, StoreError> {
        Self::open(url, true, allow_crown_dependencies, hasher, senders).await
    }

    /// [`Database::connect`] to a database that must exist already (for
    /// commands that only read: an SQLite file is never created by them; a
    /// PostgreSQL server says itself that the database does not exist).
    pub async fn connect_existing(
        url: &str,
        allow_crown_dependencies: bool,
        hasher: Hasher,
        senders: SenderKey,
    ) -> Result<Self, StoreError> {
        Self::open(url, false, allow_crown_dependencies, hasher, senders).await
    }

    async fn open(
        url: &str,
        create: bool,
        allow_crown_dependencies: bool,
        hasher: Hasher,
        senders: SenderKey,
    ) -> Result<Self, StoreError> {
        let (store, pool): (Arc<dyn Store>, SqlPool) = if url.starts_with("sqlite:") {
            let pool = if create {
                crate::store::sqlite::connect(url).await?
            } else {
                crate::store::sqlite::connect_existing(url).await?
            };
            let direct = Arc::new(crate::store::sqlite::open_direct(url)?);
            (
                Arc::new(crate::store::sqlite::SqliteStore::new(
                    pool.clone(),
                    direct.clone(),
                    senders,
                )),
                SqlPool::Sqlite(pool, direct),
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = crate::store::postgres::connect(url).await?;
            (
                Arc::new(crate::store::postgres::PgStore::new(pool.clone(), url, senders).await?),
                SqlPool::Postgres(pool),
            )
        } else {
            return Err(StoreError::Unsupported(
                "use sqlite://FILE or postgres://USER@HOST/DB".into(),
            ));
        };
        Ok(Self {
            store,
            builtin: Arc::new(BuiltinDirectory::new(
                pool.clone(),
                allow_crown_dependencies,
                hasher.clone(),
            )),
            enrolments: Arc::new(SqlEnrolments::new(pool.clone())),
            hasher,
            pool,
        })
    }

    /// The directory the settings choose (`DIRECTORY`). An LDAP directory
    /// that cannot be reached and bound over TLS stops start-up.
    pub async fn directory(&self, settings: &Settings) -> anyhow::Result<Arc<dyn Directory>> {
        Ok(match &settings.directory {
            DirectoryChoice::Builtin => self.builtin.clone(),
            DirectoryChoice::Ldap(config) => Arc::new(
                LdapDirectory::connect((**config).clone())
                    .await
                    .context("cannot use the LDAP directory (DIRECTORY=ldap)")?,
            ),
        })
    }
}

/// The service's parts, built from settings; shared by `serve` and `chat`.
pub struct Services {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    /// The configured directory (`DIRECTORY`).
    pub directory: Arc<dyn Directory>,
    /// The built-in directory's administration (import, demo).
    pub accounts: Arc<dyn AccountDirectory>,
    pub enrolments: Arc<dyn Enrolments>,
    /// The argon2id worker pool every hash and verify runs on.
    pub hasher: Hasher,
    /// Delivers queued texts; `Application` runs it beside the server.
    pub worker: Option<OutboxWorker>,
    /// Chat messages to delete once their conversation is over.
    pub deletions: Arc<dyn ChatDeletions>,
}

impl Services {
    /// Load and validate the dialog, open the database (applying
    /// migrations), and build the engine and the outbox worker. `sms`
    /// overrides the configured provider (the terminal chat shows texts on
    /// screen).
    pub async fn build(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        sms: Option<Arc<dyn SmsSender>>,
    ) -> anyhow::Result<Self> {
        let dialog = Arc::new(dialog::spec::load(
            &settings.dialogs_dir,
            &settings.language,
        )?);
        let outbox_key = settings.outbox_key.clone().unwrap_or_else(|| {
            tracing::warn!("OUTBOX_KEY is not set: using a random key for this run (texts still queued at exit cannot be sent, and conversations cannot be continued, after a restart)");
            OutboxKey::generate()
        });
        let database = Database::connect(
            &settings.database_url,
            settings.allow_crown_dependencies,
            Hasher::new(settings.hashing),
            settings.sender_key_for(&outbox_key),
        )
        .await
        .with_context(|| "cannot open the database (DATABASE_URL)")?;
        let sms = match sms {
            Some(sms) => sms,
            None => sms_sender(settings)?,
        };
        let policy = UnlockPolicy {
            questions_to_ask: settings.questions_to_ask,
            answer_mode: settings.answer_mode.clone(),
            sender_max_accounts: settings.sender_max_accounts,
            sender_window: settings.sender_window,
            verified_lifetime: settings.verified_lifetime,
            temp_password_length: settings.temp_password_length,
            contact: settings.support_contact.clone(),
            ..UnlockPolicy::default()
        };
        let block_rule = policy.block_rule();
        let directory = database.directory(settings).await?;
        let unlock = Unlock::new(
            directory.clone(),
            database.enrolments.clone(),
            database.hasher.clone(),
            database.store.clone(),
            outbox_key.clone(),
            dialog.clone(),
            policy,
            settings.sender_key_for(&outbox_key),
        );
        let engine = Arc::new(Engine::new(
            dialog,
            database.store.clone(),
            unlock,
            clock.clone(),
            EngineConfig {
                idle_timeout: settings.idle_timeout,
                block_rule,
                replies_per_day: settings.sender_replies_per_day,
                max_turns: settings.conversation_max_turns,
            },
        ));
        if settings.outbox.lease < chrono::Duration::seconds(20) {
            tracing::warn!(
                "OUTBOX_LEASE_SECS is shorter than a provider request may take (15 s): a slow send may be taken over by another instance and sent twice"
            );
        }
        let deletions: Arc<dyn ChatDeletions> = Arc::new(SqlChatDeletions::new(
            database.pool.clone(),
            settings.sender_key_for(&outbox_key),
            outbox_key.sealing_key().clone(),
        ));
        let worker = OutboxWorker {
            store: database.store.clone(),
            sender: sms,
            directory: directory.clone(),
            key: outbox_key,
            clock,
            policy: settings.outbox.clone(),
            wake: engine.outbox_wake(),
            only_conversation: None,
            sms_ids_kept: settings.inbound_id_retention,
            retention: crate::retention::Retention {
                // Failures count per account and per sender: keep them for
                // the longer window.
                failure_window: block_rule.window.max(settings.sender_window),
                ..settings.retention.clone()
            },
        };
        Ok(Self {
            engine,
            store: database.store,
            directory,
            accounts: database.builtin,
            enrolments: database.enrolments,
            hasher: database.hasher,
            worker: Some(worker),
            deletions,
        })
    }
}

/// The configured SMS provider.
pub fn sms_sender(settings: &Settings) -> anyhow::Result<Arc<dyn SmsSender>> {
    Ok(match &settings.sms {
        SmsProvider::Log => {
            tracing::warn!("{}", ConsoleSender::WARNING);
            eprintln!("\n!!! {} !!!\n", ConsoleSender::WARNING);
            Arc::new(ConsoleSender::default())
        }
        SmsProvider::Notify(n) => Arc::new(
            NotifySender::new(n.clone())
                .map_err(|e| anyhow::anyhow!("GOV.UK Notify settings: {e}"))?,
        ),
        SmsProvider::Twilio(t) => Arc::new(
            TwilioSender::new(
                &t.api_base,
                t.account_sid.as_str().to_owned(),
                t.auth_token.clone(),
                t.from_number.as_str().to_owned(),
            )
            .context("cannot build the HTTP client for Twilio")?,
        ),
    })
}

/// Say at start-up which provider, channels and checks are on, so that an
/// operator can tell why a webhook is accepted or refused. No secret is
/// printed: only which variable is in use.
pub fn log_checks(settings: &Settings) {
    let provider = match &settings.sms {
        SmsProvider::Log => {
            "log: texts, temporary passwords included, are printed on the console (local use only)"
                .to_owned()
        }
        SmsProvider::Twilio(t) => format!(
            "twilio: texts sent from {} through {} with account {}",
            t.from_number.as_str(),
            t.api_base,
            t.account_sid.masked()
        ),
        SmsProvider::Notify(n) => {
            format!("notify: texts sent through GOV.UK Notify at {}", n.api_base)
        }
    };
    tracing::info!(sms_provider = %provider, "start-up: SMS provider");
    let webhook = sms_twilio::PATH;
    match (&settings.twilio_auth_token, &settings.sms) {
        (Some(_), sms) => {
            let account = settings
                .twilio_account_sid
                .as_ref()
                .map(|sid| sid.masked())
                .unwrap_or_default();
            tracing::info!(
                "start-up: inbound SMS webhook {webhook}: signature checking ON (X-Twilio-Signature with TWILIO_AUTH_TOKEN, over {}{webhook}; AccountSid must be {account}); unsigned or wrongly signed requests are refused (403)",
                settings.public_base_url.as_deref().unwrap_or_default()
            );
            if matches!(sms, SmsProvider::Log) {
                tracing::warn!(
                    "start-up: SMS_PROVIDER=log but TWILIO_AUTH_TOKEN is set: inbound webhooks are still signature-checked, so unsigned local requests are refused (403); remove TWILIO_AUTH_TOKEN to try the webhook locally"
                );
            }
        }
        (None, SmsProvider::Log) => tracing::warn!(
            "start-up: inbound SMS webhook {webhook}: signature checking OFF (TWILIO_AUTH_TOKEN is not set): unsigned requests are accepted (local use only)"
        ),
        (None, _) => tracing::info!(
            "start-up: inbound SMS webhook {webhook}: OFF, answers 404 (TWILIO_AUTH_TOKEN is not set)"
        ),
    }
    match &settings.telegram {
        TelegramMode::Off => tracing::info!("start-up: Telegram: off"),
        TelegramMode::Webhook { .. } => tracing::info!(
            "start-up: Telegram: webhook {}: every update must carry TELEGRAM_WEBHOOK_SECRET in X-Telegram-Bot-Api-Secret-Token (403 otherwise)",
            telegram::WEBHOOK_PATH
        ),
        TelegramMode::Polling { .. } => {
            tracing::info!("start-up: Telegram: polling getUpdates (no webhook)")
        }
    }
    match &settings.directory {
        DirectoryChoice::Builtin => {
            tracing::info!("start-up: directory: builtin (accounts in the bot's own database)")
        }
        DirectoryChoice::Ldap(config) => tracing::info!(
            "start-up: directory: ldap ({:?}) at {}",
            config.flavour,
            config.url
        ),
    }
}

/// A bound, not yet running, HTTP server (and the Telegram poller, if any).
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    connections: crate::serve::ConnectionLimits,
    pub services: Services,
    background: Vec<BackgroundTask>,
}

/// A task started with the server and stopped with it.
type BackgroundTask = Box<dyn FnOnce(watch::Receiver<bool>) -> tokio::task::JoinHandle<()> + Send>;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Arc::new(SystemClock), None).await
    }

    /// Build with a given clock and SMS sender (tests move time).
    pub async fn build_with(
        settings: Settings,
        clock: Arc<dyn Clock>,
        sms: Option<Arc<dyn SmsSender>>,
    ) -> anyhow::Result<Self> {
        let mut services = Services::build(&settings, clock.clone(), sms).await?;
        log_checks(&settings);
        let mut background: Vec<BackgroundTask> = Vec::new();
        if let Some(worker) = services.worker.take() {
            background.push(Box::new(move |stop| tokio::spawn(worker.run(stop))));
        }
        let mut webhook = None;
        let cleanup = telegram::Cleanup {
            queue: services.deletions.clone(),
            clock: clock.clone(),
            conversation_idle: settings.idle_timeout,
            poll: settings.outbox.poll,
            wake: Arc::default(),
        };
        match &settings.telegram {
            TelegramMode::Off => {}
            TelegramMode::Webhook { bot, secret } => {
                let channel = Arc::new(
                    TelegramChannel::new(bot, services.engine.clone(), 0, cleanup)?
                        .replying_in_background(),
                );
                let deleter = channel.clone();
                background.push(Box::new(move |stop| {
                    tokio::spawn(deleter.run_deletions(stop))
                }));
                let url = format!(
                    "{}{}",
                    settings.public_base_url.as_deref().unwrap_or_default(),
                    telegram::WEBHOOK_PATH
                );
                let (registrar, secret_for_registration) = (channel.clone(), secret.clone());
                // Registration is retried in the background so that a
                // Telegram outage does not stop the SMS service starting.
                background.push(Box::new(move |mut stop| {
                    tokio::spawn(async move {
                        let mut wait = std::time::Duration::from_secs(1);
                        loop {
                            match registrar.register_webhook(&url, &secret_for_registration).await {
                                Ok(()) => return,
                                Err(e) => tracing::error!(error = %e, "Telegram webhook not registered; retrying"),
                            }
                            tokio::select! {
                                _ = stop.changed() => return,
                                () = tokio::time::sleep(wait) => {}
                            }
                            wait = (wait * 2).min(std::time::Duration::from_secs(300));
                        }
                    })
                }));
                webhook = Some((channel, secret.clone()));
            }
            TelegramMode::Polling { bot, poll_timeout } => {
                let channel = Arc::new(TelegramChannel::new(
                    bot,
                    services.engine.clone(),
                    *poll_timeout,
                    cleanup,
                )?);
                let poll_timeout = *poll_timeout;
                let deleter = channel.clone();
                background.push(Box::new(move |stop| {
                    tokio::spawn(deleter.run_deletions(stop))
                }));
                background.push(Box::new(move |stop| {
                    tokio::spawn(channel.run_polling(poll_timeout, stop))
                }));
            }
        }
        let state = AppState {
            store: services.store.clone(),
            directory: services.directory.clone(),
        };
        let channels = sms_twilio::routes(sms_twilio::TwilioWebhook {
            engine: services.engine.clone(),
            auth_token: settings.twilio_auth_token.clone(),
            account_sid: settings
                .twilio_account_sid
                .as_ref()
                .map(|sid| sid.as_str().to_owned()),
            accept_unsigned: matches!(settings.sms, SmsProvider::Log),
            public_base_url: settings.public_base_url.clone(),
            sender_countries: settings.sms_sender_countries.clone(),
        })
        .merge(telegram::routes(webhook));
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("cannot listen on {} (BIND_ADDR)", settings.bind_addr))?;
        Ok(Self {
            listener,
            router: router(state, channels, settings.request_timeout),
            connections: settings.connections,
            services,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serve until SIGTERM or Ctrl-C, then finish the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` resolves, then finish the requests in flight and
    /// stop the background tasks.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks: Vec<_> = self
            .background
            .into_iter()
            .map(|start| start(stop_rx.clone()))
            .collect();
        let served = crate::serve::serve(self.listener, self.router, self.connections, stop).await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        served
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
