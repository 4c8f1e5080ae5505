//! Hashing as a bounded resource: every argon2id hash or verify in the
//! service (security answers, temporary passwords, `verify-password`, the
//! importers) runs on one fixed pool of `HASH_WORKERS` threads, each with
//! its own reused 19 MiB working memory, behind a queue of at most
//! `HASH_QUEUE_LIMIT` waiting jobs.
//!
//! A wave of answers therefore costs at most `workers × 19 MiB` of memory
//! however many arrive at once, never starves the async threads, and when
//! the queue is full the caller is told at once ([`HashingError::Busy`])
//! instead of waiting behind minutes of work: a turn then answers "busy,
//! send the same answer again" and changes nothing.
//!
//! [`Hasher`] is a cheap handle (clone it freely); the workers stop when
//! the last handle is dropped.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use zeroize::Zeroizing;

use crate::domain::{
    Answer, AnswerHash, HashMemory, hash_answer_with, hash_password_with, verify_answer_with,
    verify_password_with,
};

/// Default queue length per worker: about two seconds of work at the
/// ~20 ms one argon2id computation takes on a server core.
pub const DEFAULT_QUEUE_PER_WORKER: usize = 100;

/// A worker idle this long gives its argon2 memory back, and the allocator
/// returns free memory to the system, so the resident size falls back soon
/// after a wave. The next job allocates the block again (a few ms, against
/// the ~20 ms of the hash itself).
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Most workers accepted by the setting.
pub const MAX_WORKERS: usize = 256;

/// Hashing could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashingError {
    /// The queue is full: try again later. Nothing was computed.
    #[error("hashing is busy ({0} jobs already queued)")]
    Busy(usize),
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// How big the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashSettings {
    /// Worker threads (`HASH_WORKERS`).
    pub workers: usize,
    /// Jobs that may wait for a worker (`HASH_QUEUE_LIMIT`); beyond that
    /// new work is refused as busy.
    pub queue_limit: usize,
}

impl HashSettings {
    /// One worker per core, about two seconds of queue.
    pub fn for_this_machine() -> Self {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_WORKERS);
        Self {
            workers,
            queue_limit: workers * DEFAULT_QUEUE_PER_WORKER,
        }
    }
}

impl Default for HashSettings {
    fn default() -> Self {
        Self::for_this_machine()
    }
}

type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

struct Shared {
    queue: flume::Sender<Job>,
    /// One permit per job in the pool (running or waiting): `workers +
    /// queue_limit` in all.
    room: Arc<Semaphore>,
    settings: HashSettings,
    /// Jobs submitted and not yet picked up by a worker.
    queued: Arc<AtomicUsize>,
    /// Jobs running now, and the most ever running at once.
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
    /// Workers holding their argon2 memory now.
    holding: Arc<AtomicUsize>,
}

/// A handle on the hashing pool.
#[derive(Clone)]
pub struct Hasher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// Start the workers. Each allocates its working memory on its first
    /// job, so a process that never hashes never pays for it, and gives it
    /// back after [`IDLE_RELEASE`] without work.
    pub fn new(settings: HashSettings) -> Self {
        Self::with_idle_release(settings, IDLE_RELEASE)
    }

    /// [`Hasher::new`] with another idle time before a worker gives its
    /// memory back.
    pub fn with_idle_release(settings: HashSettings, idle_release: Duration) -> Self {
        let settings = HashSettings {
            workers: settings.workers.clamp(1, MAX_WORKERS),
            queue_limit: settings.queue_limit.max(1),
        };
        let (queue, jobs) = flume::unbounded::<Job>();
        let shared = Shared {
            queue,
            room: Arc::new(Semaphore::new(settings.workers + settings.queue_limit)),
            settings,
            queued: Arc::default(),
            running: Arc::default(),
            peak: Arc::default(),
            completed: Arc::default(),
            holding: Arc::default(),
        };
        for n in 0..settings.workers {
            let worker = Worker {
                jobs: jobs.clone(),
                queued: shared.queued.clone(),
                running: shared.running.clone(),
                peak: shared.peak.clone(),
                holding: shared.holding.clone(),
                idle_release,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("hash-{n}"))
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing worker");
            }
        }
        Self {
            shared: Arc::new(shared),
        }
    }

    pub fn settings(&self) -> HashSettings {
        self.shared.settings
    }

    /// The most jobs that ever ran at the same moment.
    pub fn peak_running(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Jobs finished so far.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Workers holding their argon2 working memory now (each gives it back
    /// when idle).
    pub fn holding_memory(&self) -> usize {
        self.shared.holding.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Run `work` (CPU-heavy, given the worker's argon2 memory) on a
    /// worker, or refuse at once when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let Ok(permit) = self.shared.room.clone().try_acquire_owned() else {
            return Err(HashingError::Busy(self.shared.settings.queue_limit));
        };
        self.submit(permit, work).await
    }

    /// Run `work` as [`Hasher::run`] does, but wait for room in the queue
    /// instead of refusing (batch work such as an import).
    pub async fn run_waiting<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = self
            .shared
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashingError::Failed("the hashing pool is closed".into()))?;
        self.submit(permit, work).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let (done, result) = oneshot::channel();
        let completed = self.shared.completed.clone();
        let job: Job = Box::new(move |memory| {
            let out = work(memory);
            drop(permit);
            // Counted before the caller hears of it.
            completed.fetch_add(1, Ordering::SeqCst);
            let _ = done.send(out);
        });
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if self.shared.queue.send(job).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(HashingError::Failed("no hashing worker is running".into()));
        }
        result
            .await
            .map_err(|_| HashingError::Failed("the hashing worker stopped".into()))
    }

    /// Whether `answer` matches the stored hash (false for a malformed hash).
    pub async fn verify_answer(
        &self,
        answer: Answer,
        stored: AnswerHash,
    ) -> Result<bool, HashingError> {
        self.run(move |memory| verify_answer_with(memory, &answer, &stored))
            .await
    }

    /// Hash a normalised security answer, waiting for room in the queue
    /// (the importers: batch work that should not be refused).
    pub async fn hash_answer(&self, answer: Answer) -> Result<AnswerHash, HashingError> {
        self.run_waiting(move |memory| hash_answer_with(memory, &answer))
            .await?
            .map_err(|e| HashingError::Failed(e.to_string()))
    }

    /// Hash an account password (used exactly as given).
    pub async fn hash_password(&self, password: &str) -> Result<String, HashingError> {
        let owned = Zeroizing::new(password.to_owned());
        self.run(move |memory| hash_password_with(memory, &owned))
            .await?
            .map_err(|e| HashingError::Failed(e.to_string()))
    }

    /// Whether `password` matches the stored hash.
    pub async fn verify_password(&self, password: &str, phc: String) -> Result<bool, HashingError> {
        let owned = Zeroizing::new(password.to_owned());
        self.run(move |memory| verify_password_with(memory, &owned, &phc))
            .await
    }
}

struct Worker {
    jobs: flume::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    holding: Arc<AtomicUsize>,
    idle_release: Duration,
}

impl Worker {
    fn run(self) {
        let mut memory: Option<HashMemory> = None;
        loop {
            let job = match self.jobs.recv_timeout(self.idle_release) {
                Ok(job) => job,
                Err(flume::RecvTimeoutError::Timeout) => {
                    if memory.take().is_some() {
                        self.holding.fetch_sub(1, Ordering::SeqCst);
                        release_free_memory();
                    }
                    continue;
                }
                // Every handle is gone: nothing more can come.
                Err(flume::RecvTimeoutError::Disconnected) => {
                    if memory.take().is_some() {
                        self.holding.fetch_sub(1, Ordering::SeqCst);
                    }
                    return;
                }
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let memory = memory.get_or_insert_with(|| {
                self.holding.fetch_add(1, Ordering::SeqCst);
                HashMemory::new()
            });
            // A panicking job drops its reply (the caller sees a failure);
            // the worker and its memory carry on.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(memory)));
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Ask the allocator to hand free memory back to the system. glibc's
/// malloc serves a freed 19 MiB block's successors from its heaps (its
/// mmap threshold rises after the first such free), and keeps freed heap
/// pages resident until asked.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the
    // allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::Receiver;

    #[tokio::test]
    async fn an_idle_worker_gives_its_memory_back_and_takes_it_again_for_the_next_job() {
        let hasher = Hasher::with_idle_release(
            HashSettings {
                workers: 2,
                queue_limit: 8,
            },
            Duration::from_millis(50),
        );
        assert_eq!(hasher.holding_memory(), 0, "nothing allocated before work");
        let hash = hasher.hash_answer(Answer::new("Biscuit")).await.unwrap();
        let mut waited = 0;
        while hasher.holding_memory() > 0 && waited < 2_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(hasher.holding_memory(), 0, "memory kept while idle");
        assert!(
            hasher
                .verify_answer(Answer::new("biscuit"), hash)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_and_verifies_on_the_workers() {
        let hasher = Hasher::new(HashSettings {
            workers: 2,
            queue_limit: 8,
        });
        let hash = hasher.hash_answer(Answer::new("Biscuit")).await.unwrap();
        assert!(
            hasher
                .verify_answer(Answer::new(" biscuit "), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify_answer(Answer::new("Leeds"), hash)
                .await
                .unwrap()
        );
        let pw = hasher.hash_password("Correct-Horse-9").await.unwrap();
        assert!(crate::domain::verify_password("Correct-Horse-9", &pw));
        assert!(hasher.verify_password("Correct-Horse-9", pw).await.unwrap());
    }

    #[tokio::test]
    async fn busy_beyond_the_queue_and_never_more_than_the_workers_at_once() {
        let hasher = Hasher::new(HashSettings {
            workers: 2,
            queue_limit: 3,
        });
        // Two jobs that hold both workers until released.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let job = |gate: Option<Arc<Mutex<Receiver<()>>>>| {
            let (now, most, started_tx) = (now.clone(), most.clone(), started_tx.clone());
            move |_: &mut HashMemory| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                let _ = started_tx.send(());
                if let Some(gate) = gate {
                    let _ = gate.lock().unwrap().recv();
                }
                now.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (h, j) = (hasher.clone(), job(Some(gate.clone())));
            running.spawn(async move { h.run(j).await });
        }
        started.recv().await.unwrap();
        started.recv().await.unwrap();
        // Both workers are held: three jobs may wait, the fourth is refused.
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let (h, j) = (hasher.clone(), job(None));
            waiting.spawn(async move { h.run(j).await });
        }
        while hasher.queued() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.run(job(None)).await, Err(HashingError::Busy(3)));
        release.send(()).unwrap();
        release.send(()).unwrap();
        while let Some(r) = running.join_next().await {
            r.unwrap().unwrap();
        }
        while let Some(r) = waiting.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(hasher.peak_running(), 2);
        assert_eq!(hasher.queued(), 0);
    }
}
