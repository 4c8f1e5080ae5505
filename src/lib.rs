//! unlockbot: self-service account unlock by text message.
//!
//! A channel (Twilio SMS webhook, terminal) turns an inbound message into an
//! [`dialog::Inbound`]; the [`dialog::Engine`] runs one turn of the
//! conversation defined in `dialogs/`, calling the unlock actions
//! ([`unlock`]) against the [`directory::Directory`], [`store::Store`] and
//! [`sms::SmsSender`] traits; the channel renders the reply.

pub mod accounts;
pub mod app;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod dialog;
pub mod directory;
pub mod domain;
pub mod engine;
pub mod enrolment;
pub mod hashing;
pub mod http;
pub mod import_progress;
pub mod retention;
pub mod serve;
pub mod settings;
pub mod sms;
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod unlock;
