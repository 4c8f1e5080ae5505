//! Logging. Logs go to standard error (standard output carries command
//! output and, with the console provider, texts). Message bodies, answers,
//! passwords and full phone numbers never go into a log field.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Install the global subscriber; `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
