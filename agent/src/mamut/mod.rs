//! The Mamut boundary: everything the agent writes to or reads from Mamut goes through
//! [`Mamut`]. [`sqlserver::SqlServer`] is the real implementation (tiberius, tables and
//! columns from [`mapping::Mapping`]); [`recorder::Recorder`] is a test and development
//! stand-in that records applied orders; [`import::ImportWriter`] writes orders through
//! Mamut's own import program and reads over SQL Server. [`changes`] holds what a poll for
//! changes gives the watcher.

pub mod changes;
pub mod import;
pub mod mapping;
pub mod recorder;
pub mod settings;
pub mod sqlserver;

use std::future::Future;
use std::pin::Pin;

use shared::domain::Product;
use shared::protocol::{Deliver, SyncOutcome};

use self::changes::{Cursors, KindPoll};

/// The outcome of applying one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Mamut's order or invoice number for the shop order.
    pub mamut_ref: String,
    /// The shop order was already in Mamut; nothing was written.
    pub already_applied: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Try again later: the database is down, busy, deadlocked.
    #[error("{0}")]
    Retryable(String),
    /// Will never work as it is: an unknown article number, a missing customer field.
    #[error("{0}")]
    Permanent(String),
}

pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<Applied, ApplyError>> + Send + 'a>>;

/// What a poll read, one entry per kind that could be read.
pub type ChangesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<KindPoll>, String>> + Send + 'a>>;

/// A future of a Mamut read or write for the initial product sync.
pub type SyncFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

const NO_SYNC: &str = "this Mamut backend cannot sync products; use the sqlserver backend";

/// Writes shop orders into Mamut, each exactly once: an order that is already there (same shop
/// and shop order id) is answered with its existing number and not written again.
pub trait Mamut: Send + Sync {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a>;

    /// Per kind, the safe mark (`MIN_ACTIVE_ROWVERSION()`, read first) and the visible changes
    /// with a rowversion past the kind's position in `from`, at most `batch`, oldest first. A
    /// kind that cannot be read is left out. A backend that cannot watch (the recorder) finds
    /// none.
    fn poll_changes<'a>(&'a self, _from: &'a Cursors, _batch: u32) -> ChangesFuture<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Main products with their variants, in article-number order after `after`, and the
    /// last article number read (the cursor for the next page; `None` when there are no more
    /// rows). Rows whose article number cannot travel are skipped but still move the cursor.
    fn list_products<'a>(
        &'a self,
        _after: Option<&'a str>,
        _limit: u32,
    ) -> SyncFuture<'a, (Vec<Product>, Option<String>)> {
        Box::pin(async { Err(NO_SYNC.to_owned()) })
    }

    /// How many main products there are (for progress).
    fn count_products(&self) -> SyncFuture<'_, u64> {
        Box::pin(async { Err(NO_SYNC.to_owned()) })
    }

    /// Creates or updates a product and its variants, in one transaction.
    fn upsert_product<'a>(&'a self, _product: &'a Product) -> SyncFuture<'a, SyncOutcome> {
        Box::pin(async { Err(NO_SYNC.to_owned()) })
    }
}
