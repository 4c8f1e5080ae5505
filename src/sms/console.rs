//! The `log` provider: prints texts on the console instead of sending them.
//! For local use and demonstrations only; it prints a loud warning.

use async_trait::async_trait;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{OutboundSms, SendError, SmsSender};

/// Prints each text as it would arrive on the phone, to standard output
/// (never through the log, which must not carry secrets).
#[derive(Default)]
pub struct ConsoleSender {
    counter: AtomicU64,
}

impl ConsoleSender {
    pub const WARNING: &'static str = "SMS_PROVIDER=log: texts are PRINTED ON THIS CONSOLE, not sent. Temporary passwords will appear here. Never use this provider in production.";
}

#[async_trait]
impl SmsSender for ConsoleSender {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\n  ┌─ 📱 text to {} ({}) ─\n  │ {}\n  └──────────",
            sms.to.masked(),
            sms.kind.as_str(),
            sms.body()
        );
        let _ = out.flush();
        Ok(format!("console-{n}"))
    }
}
