//! A small pool of Mamut connections, so the watcher, order writes and the product sync do not
//! wait on each other, with the rule that keeps transactions from leaking between uses:
//!
//! - a connection goes back to the pool only when the work that used it finished and left no
//!   transaction open ([`Pooled::release`]); a connection whose work failed, timed out or was
//!   cancelled at any await point (its future dropped, e.g. when a relay session ends) is
//!   closed instead, and SQL Server rolls back whatever was open on it;
//! - [`in_transaction`] marks the connection as inside a transaction before `BEGIN TRAN` is
//!   sent and clears the mark only after `COMMIT` or `ROLLBACK` completed, so a connection
//!   whose transaction state is in doubt is never reused.
//!
//! Generic over the connection so tests can check the rule without a server.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// The batches that open and close a transaction.
pub const BEGIN: &str = "BEGIN TRAN";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens connections for a [`Pool`].
pub trait Connector: Send + Sync {
    type Conn: Session;
    /// A new connection, ready for work (session settings applied).
    fn connect(&self) -> BoxFuture<'_, Result<Self::Conn, String>>;
}

/// What [`in_transaction`] needs of a connection: running a batch without results.
pub trait Session: Send {
    type Error: std::fmt::Display;
    fn batch<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), Self::Error>>;
}

/// Why the pool could not run the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// No connection could be opened.
    Unreachable(String),
    /// The work took longer than the statement timeout; its connection was closed.
    TimedOut(Duration),
}

pub struct Pool<C: Connector> {
    connector: C,
    idle: Mutex<Vec<C::Conn>>,
    permits: Semaphore,
    /// Connections opened and closed so far, for tests and diagnostics.
    opened: AtomicU64,
    discarded: AtomicU64,
}

impl<C: Connector> Pool<C> {
    pub fn new(connector: C, size: usize) -> Self {
        Self {
            connector,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            opened: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// How many connections were opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// How many connections were closed instead of reused so far.
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }

    /// A connection for one piece of work: an idle one, or a new one; waits while all are busy.
    pub async fn get(&self) -> Result<Pooled<'_, C>, PoolError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Unreachable("the connection pool is closed".into()))?;
        let idle = self.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = self
                    .connector
                    .connect()
                    .await
                    .map_err(PoolError::Unreachable)?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                conn
            }
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
            in_transaction: false,
            _permit: permit,
        })
    }

    /// Runs `work` on a connection within `timeout`. The connection goes back to the pool only
    /// when `work` succeeded and left no transaction open; after an error, a timeout or a
    /// cancellation it is closed.
    pub async fn run<T, E>(
        &self,
        timeout: Duration,
        work: impl AsyncFnOnce(&mut Pooled<'_, C>) -> Result<T, E>,
        fail: impl FnOnce(PoolError) -> E,
    ) -> Result<T, E> {
        let mut conn = match self.get().await {
            Ok(conn) => conn,
            Err(e) => return Err(fail(e)),
        };
        match tokio::time::timeout(timeout, work(&mut conn)).await {
            Ok(Ok(value)) => {
                conn.release();
                Ok(value)
            }
            // Dropping the connection closes it: its state after an error is unknown.
            Ok(Err(e)) => Err(e),
            Err(_) => Err(fail(PoolError::TimedOut(timeout))),
        }
    }
}

/// A connection checked out of a [`Pool`]. Dropped without [`Pooled::release`], it is closed.
pub struct Pooled<'a, C: Connector> {
    pool: &'a Pool<C>,
    conn: Option<C::Conn>,
    in_transaction: bool,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connector> Pooled<'_, C> {
    /// Whether a transaction may be open on the connection.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Gives the connection back for reuse, unless a transaction may still be open on it.
    pub fn release(mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.in_transaction {
            self.pool.discarded.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("a Mamut connection left inside a transaction was closed");
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(conn);
        }
    }
}

impl<C: Connector> Drop for Pooled<'_, C> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.discarded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                in_transaction = self.in_transaction,
                "Mamut connection closed instead of reused"
            );
        }
    }
}

impl<C: Connector> Deref for Pooled<'_, C> {
    type Target = C::Conn;
    fn deref(&self) -> &C::Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until released")
    }
}

impl<C: Connector> DerefMut for Pooled<'_, C> {
    fn deref_mut(&mut self) -> &mut C::Conn {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until released")
    }
}

/// Runs `f` between `BEGIN TRAN` and `COMMIT`, or `ROLLBACK` when it fails. The connection
/// counts as inside a transaction from before `BEGIN TRAN` is sent until `COMMIT` or
/// `ROLLBACK` completed: cancelled anywhere in between, it is closed, not reused.
pub async fn in_transaction<C: Connector, T, E>(
    conn: &mut Pooled<'_, C>,
    f: impl AsyncFnOnce(&mut C::Conn) -> Result<T, E>,
    error: impl Fn(<C::Conn as Session>::Error) -> E,
) -> Result<T, E> {
    conn.in_transaction = true;
    conn.batch(BEGIN).await.map_err(&error)?;
    match f(conn).await {
        Ok(value) => {
            conn.batch(COMMIT).await.map_err(&error)?;
            conn.in_transaction = false;
            Ok(value)
        }
        Err(e) => {
            // SQL Server may have rolled back already (a deadlock victim); the first error is
            // the one that explains what happened. A failed rollback leaves the mark set, so
            // the connection is closed.
            match conn.batch(ROLLBACK).await {
                Ok(()) => conn.in_transaction = false,
                Err(rollback) => {
                    tracing::debug!(error = %rollback, "rollback after a failed transaction");
                }
            }
            Err(e)
        }
    }
}
