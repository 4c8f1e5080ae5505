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

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, DirectSqlite) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v INTEGER NOT NULL);",
            )
            .unwrap();
        drop(setup);
        let direct = DirectSqlite::open(&path).unwrap();
        (dir, direct)
    }

    fn insert(k: &str, v: i64) -> Statement {
        Statement::new("INSERT INTO t (k, v) VALUES (?, ?)")
            .bind(k.to_owned())
            .bind(v)
    }

    fn count(direct: &DirectSqlite, sql: &'static str) -> i64 {
        direct
            .read(|c| c.query_row(sql, [], |row| row.get(0)))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_committed_together_fail_alone_and_every_answered_write_is_read_back() {
        let (_dir, direct) = database();
        let direct = std::sync::Arc::new(direct);
        direct.write(vec![insert("taken", 0)]).await.unwrap();
        // Many turns at once, so that the writer commits them in groups;
        // every tenth writes a row and then breaks the key's uniqueness.
        let mut turns = tokio::task::JoinSet::new();
        for i in 0..200i64 {
            let direct = direct.clone();
            turns.spawn(async move {
                let mut writes = vec![insert(&format!("row{i}"), i)];
                if i % 10 == 0 {
                    writes.push(insert("taken", i));
                }
                let result = direct.write(writes).await;
                // Answered: its write is visible to every reader now.
                if result.is_ok() {
                    let seen: i64 = direct
                        .read(|c| {
                            c.query_row("SELECT v FROM t WHERE k = ?1", [format!("row{i}")], |r| {
                                r.get(0)
                            })
                        })
                        .unwrap();
                    assert_eq!(seen, i);
                }
                (i, result.is_ok())
            });
        }
        while let Some(done) = turns.join_next().await {
            let (i, ok) = done.unwrap();
            assert_eq!(ok, i % 10 != 0, "turn {i}");
        }
        // The 20 failing turns left nothing, not even their first row (and
        // every answered one was read back above).
        assert_eq!(
            count(&direct, "SELECT COUNT(*) FROM t WHERE k LIKE 'row%'"),
            180
        );
        assert_eq!(count(&direct, "SELECT v FROM t WHERE k = 'taken'"), 0);
    }

    #[test]
    fn in_one_group_a_failing_turn_is_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v INTEGER NOT NULL);")
            .unwrap();
        let job = |statements| Job {
            statements,
            done: tokio::sync::oneshot::channel().0,
        };
        let group = [
            job(vec![insert("a", 1)]),
            job(vec![insert("b", 2), insert("a", 3)]),
            job(vec![insert("c", 4)]),
        ];
        let results = commit_group(&conn, &group);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        let rows: Vec<(String, i64)> = conn
            .prepare("SELECT k, v FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [("a".to_owned(), 1), ("c".to_owned(), 4)]);
    }

    #[test]
    fn readers_cannot_write() {
        let (_dir, direct) = database();
        let refused = direct.read(|c| c.execute("INSERT INTO t (k, v) VALUES ('x', 1)", []));
        assert!(refused.is_err());
    }
}
