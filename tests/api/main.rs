//! Black-box tests: the real server over loopback HTTP, a fresh database per
//! test, and a fake Twilio REST API speaking Twilio's wire format.

mod directory_servers;
mod fake_telegram;
mod helpers;
mod notify;

mod abuse;
mod answers;
mod bad_input;
mod characters;
mod chat;
mod cli;
mod conversation;
mod database;
mod directory;
mod first_steps;
mod import;
mod instances;
mod load;
mod policy;
mod retention;
mod start_and_end;
mod telegram;
mod webhook;
mod welsh;
