//! SQLite on a turn's path without a round trip to another thread per
//! statement: reads run on the calling thread, on connections of their own
//! (in WAL mode a reader never waits for the writer), and a turn's writes go
//! to one writer thread that commits every turn waiting at that moment in
//! one transaction (group commit), each turn in a savepoint of its own so
//! that one turn's failure leaves the others' writes intact.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, so every
//! statement is a message to that thread and a wake-up back; with a turn's
//! read, `BEGIN IMMEDIATE`, its writes and `COMMIT`, those hand-offs cost
//! far more than SQLite's own work (see README, "Fast turns"). Here a turn
//! costs one hand-off for its writes, shared with the turns committed with
//! it, and none for its reads. A turn's writes are still committed before
//! its reply, so kill -9 loses nothing that was answered.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Connections for reads on the calling thread: the runtime's workers and a
/// few blocking threads at once.
const READERS: usize = 4;
/// Turns waiting for the writer; beyond this a turn is refused as busy
/// (nothing written) rather than queued without bound.
const QUEUE: usize = 4096;
/// Turns committed in one transaction at most.
const GROUP: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One statement of a turn's writes, with its parameters in order.
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<Value>,
}

impl Statement {
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql,
            params: Vec::new(),
        }
    }

    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.params.push(value.into());
        self
    }
}

struct Job {
    statements: Vec<Statement>,
    done: tokio::sync::oneshot::Sender<Result<(), rusqlite::Error>>,
}

/// Direct access to one SQLite database file (after sqlx has migrated it).
pub struct DirectSqlite {
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    writer: flume::Sender<Job>,
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The same settings as the sqlx pool's connections (see `connect`).
    // (A memory map of the file, tried, saved little CPU per turn and
    // counted the mapped file in the process's RSS.)
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl DirectSqlite {
    /// Open the readers and start the writer thread on the database at
    /// `path`, which must exist and be in WAL mode already.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let readers = (0..READERS)
            .map(|_| {
                let conn = open(path)?;
                conn.execute_batch("PRAGMA query_only = ON")?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()?;
        let writer = open(path)?;
        let (tx, rx) = flume::bounded(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Unsupported(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            readers,
            next: AtomicUsize::new(0),
            writer: tx,
        })
    }

    /// Run a read on this thread, on a reader that is free (or the next one,
    /// waiting for it, when every reader is in use). Reads are short: one
    /// statement on an indexed row or two.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Ok(conn) = self.readers[(start + i) % READERS].try_lock() {
                return Ok(f(&conn)?);
            }
        }
        let conn = self.readers[start % READERS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Commit `statements` as one unit (all or nothing), with the turns
    /// that wait at the same moment. Returns once committed.
    pub async fn write(&self, statements: Vec<Statement>) -> Result<(), StoreError> {
        if statements.is_empty() {
            return Ok(());
        }
        let (done, committed) = tokio::sync::oneshot::channel();
        self.writer
            .try_send(Job { statements, done })
            .map_err(|e| match e {
                flume::TrySendError::Full(_) => {
                    StoreError::Busy("the SQLite writer's queue is full".into())
                }
                flume::TrySendError::Disconnected(_) => {
                    StoreError::Busy("the SQLite writer has stopped".into())
                }
            })?;
        match committed.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Busy("the SQLite writer has stopped".into())),
        }
    }
}

fn write_loop(conn: Connection, jobs: flume::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let results = commit_group(&conn, &group);
        for (job, result) in group.into_iter().zip(results) {
            // A turn that stopped waiting (its request dropped) is still
            // committed: its reply will be the stored one on a retry.
            let _ = job.done.send(result);
        }
    }
}

/// The same error for every turn of a group whose transaction failed.
fn for_each(e: &rusqlite::Error, n: usize) -> Vec<Result<(), rusqlite::Error>> {
    (0..n)
        .map(|_| {
            Err(match e {
                rusqlite::Error::SqliteFailure(code, message) => {
                    rusqlite::Error::SqliteFailure(*code, message.clone())
                }
                other => rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(other.to_string()),
                ),
            })
        })
        .collect()
}

fn commit_group(conn: &Connection, group: &[Job]) -> Vec<Result<(), rusqlite::Error>> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return for_each(&e, group.len());
    }
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        match in_savepoint(conn, &job.statements) {
            Ok(result) => results.push(result),
            // The transaction is in an unknown state: undo all of it.
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return for_each(&e, group.len());
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return for_each(&e, group.len());
    }
    results
}

/// One turn's statements: all of them or, on an error, none (the inner
/// result). The outer error: the savepoint itself failed, and the
/// transaction can no longer be trusted.
fn in_savepoint(
    conn: &Connection,
    statements: &[Statement],
) -> Result<Result<(), rusqlite::Error>, rusqlite::Error> {
    conn.prepare_cached("SAVEPOINT turn")?.execute([])?;
    let run = || -> Result<(), rusqlite::Error> {
        for s in statements {
            conn.prepare_cached(s.sql)?
                .execute(rusqlite::params_from_iter(s.params.iter()))?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => {
            conn.prepare_cached("RELEASE turn")?.execute([])?;
            Ok(Ok(()))
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO turn; RELEASE turn")?;
            Ok(Err(e))
        }
    }
}

/// Whether SQLite reported its lock taken past the busy timeout.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
