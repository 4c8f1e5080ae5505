//! How long the service keeps what it stores. The outbox worker applies
//! these rules in its maintenance sweep; the store deletes by age.

use chrono::{DateTime, Duration, Utc};

use crate::store::SweepCutoffs;

/// Retention rules, from settings and the unlock policy.
#[derive(Debug, Clone)]
pub struct Retention {
    /// A conversation idle this long has expired (`CONVERSATION_IDLE_MINUTES`).
    pub conversation_idle: Duration,
    /// Delivered and finally failed texts are kept this long after they
    /// settle (`OUTBOX_RETENTION_HOURS`): long enough to tell the user
    /// that a text failed and to recognise a text already sent after a
    /// crash. Texts not yet settled are never swept.
    pub outbox_kept: Duration,
    /// Verification failures are read over this long (the longer of the
    /// account's and the sender's windows); after it they are deleted.
    pub failure_window: Duration,
    /// The audit trail is kept this long (`AUDIT_RETENTION_DAYS`).
    pub audit_kept: Duration,
    /// How often the sweep runs (`RETENTION_SWEEP_MINUTES`), and once at start-up.
    pub sweep_every: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            conversation_idle: Duration::minutes(15),
            outbox_kept: Duration::hours(24),
            failure_window: Duration::hours(24),
            audit_kept: Duration::days(400),
            sweep_every: std::time::Duration::from_secs(5 * 60),
        }
    }
}

impl Retention {
    /// What a sweep at `now` deletes. Blocks go once they have ended.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> SweepCutoffs {
        SweepCutoffs {
            conversations_idle_since: now - self.conversation_idle,
            outbox_finished_before: now - self.outbox_kept,
            failures_before: now - self.failure_window,
            blocks_ended_before: now,
            audit_before: now - self.audit_kept,
            reply_windows_before: now - Duration::days(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_rules() {
        let now = Utc::now();
        let c = Retention::default().cutoffs(now);
        assert_eq!(c.conversations_idle_since, now - Duration::minutes(15));
        assert_eq!(c.outbox_finished_before, now - Duration::hours(24));
        assert_eq!(c.failures_before, now - Duration::hours(24));
        assert_eq!(c.blocks_ended_before, now);
        assert_eq!(c.audit_before, now - Duration::days(400));
    }
}
