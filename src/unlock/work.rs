//! What the policy asks of its ports, counted: a test can then prove that
//! two paths (a known and an unknown email at the last-4 step) do the same
//! work, without timing anything. One atomic add per call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A call the policy makes to a port, or a comparison it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    DirectoryFind,
    EnrolmentQuestions,
    FailureCounts,
    BlockedUntil,
    LastBlockNotice,
    DigitsCompared,
    FailureRecorded,
}

impl Work {
    const ALL: [Work; 7] = [
        Work::DirectoryFind,
        Work::EnrolmentQuestions,
        Work::FailureCounts,
        Work::BlockedUntil,
        Work::LastBlockNotice,
        Work::DigitsCompared,
        Work::FailureRecorded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Work::DirectoryFind => "directory.find",
            Work::EnrolmentQuestions => "enrolments.questions",
            Work::FailureCounts => "store.failure_counts",
            Work::BlockedUntil => "store.blocked_until",
            Work::LastBlockNotice => "store.last_block_notice",
            Work::DigitsCompared => "digits_compared",
            Work::FailureRecorded => "failure_recorded",
        }
    }
}

/// How many times each [`Work`] was done since start-up.
#[derive(Debug, Default)]
pub struct WorkCounter([AtomicU64; 7]);

impl WorkCounter {
    pub fn note(&self, work: Work) {
        self.0[work as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Work::ALL
            .iter()
            .map(|w| (w.as_str(), self.0[*w as usize].load(Ordering::Relaxed)))
            .collect()
    }
}
