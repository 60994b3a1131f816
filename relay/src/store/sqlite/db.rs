//! The SQLite connection thread with group commit.
//!
//! One thread owns the connection. Callers send closures; the thread takes every closure that
//! is waiting (up to [`MAX_BATCH`]), runs each inside its own savepoint of one transaction and
//! commits once, so a burst of webhooks costs one fsync instead of one each. A caller's result is
//! handed back only after the commit succeeded: "committed" really means on disk.

use std::path::Path;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::store::Result;

/// Largest number of jobs committed together.
const MAX_BATCH: usize = 256;

/// Jobs that may wait for the connection thread; beyond them callers wait to hand theirs in
/// (a burst slows down instead of growing memory without bound).
const MAX_WAITING: usize = 8 * MAX_BATCH;

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A job gets the connection inside an open transaction, or the error that kept the
/// transaction from opening; it returns whether it failed and how to report the outcome.
type Job = Box<dyn FnOnce(Result<&Connection>) -> (bool, Completion) + Send>;

/// A handle to the connection thread; cheap to clone.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies migrations and starts the
    /// connection thread.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Open(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Open(format!("cannot open {}: {e}", path.display())))?;
        let failed = |what: &str, e: rusqlite::Error| {
            StoreError::Open(format!("{}: {what}: {e}", path.display()))
        };
        // First, so that another process opening the same database at the same time (the
        // journal mode switch, the migrations) is waited for rather than an error.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| failed("setting the busy timeout", e))?;
        switch_to_wal(&conn).map_err(|e| failed("switching to WAL", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| failed("setting synchronous", e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| failed("turning on foreign keys", e))?;
        super::schema::migrate(&mut conn)?;

        let (jobs, receiver) = mpsc::channel::<Job>(MAX_WAITING);
        std::thread::Builder::new()
            .name("relay-store".into())
            .spawn(move || run(conn, receiver))
            .map_err(|e| StoreError::Open(format!("cannot start the store thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the next group-commit transaction and returns its result once committed.
    /// An `Err` from `f` rolls back only `f`'s own changes.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(f);
            let failed = result.is_err();
            let completion: Completion = Box::new(move |commit: Result<()>| {
                // The caller may have gone away (request cancelled); nothing to do then.
                let _ = reply.send(commit.and(result));
            });
            (failed, completion)
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Puts the database in WAL mode. On a fresh database that another process is opening at the
/// same moment, SQLite answers "database is locked" at once rather than wait (its busy handler
/// is not called when waiting could deadlock), so this tries again for up to ten seconds.
fn switch_to_wal(conn: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(
                    5 + rand::random::<u64>() % 20,
                ));
            }
            other => return other,
        }
    }
}

fn run(conn: Connection, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
    }
    tracing::debug!("store thread stopped: all handles dropped");
}

fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = StoreError::from(e);
        for job in batch {
            let (_, done) = job(Err(error.clone()));
            done(Ok(()));
        }
        return;
    }
    let mut completions = Vec::with_capacity(batch.len());
    for job in batch {
        let (failed, done) = match conn.execute_batch("SAVEPOINT job") {
            Ok(()) => job(Ok(conn)),
            Err(e) => {
                completions.push(job(Err(e.into())).1);
                continue;
            }
        };
        let close = if failed {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        } else {
            conn.execute_batch("RELEASE job")
        };
        if let Err(e) = close {
            tracing::error!(error = %e, "store: savepoint could not be closed");
        }
        completions.push(done);
    }
    let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if commit.is_err() {
        // Leave no transaction open for the next batch.
        let _ = conn.execute_batch("ROLLBACK");
    }
    for done in completions {
        done(commit.clone());
    }
}
