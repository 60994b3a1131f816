//! Mamut over SQL Server with tiberius: each order is written in one transaction that first
//! looks for the shop's order id (Mamut's external number), so a redelivered order is answered
//! with its existing number and never written twice.
//!
//! - this file: [`SqlServer`], its two pools (orders and sync, the watcher) and the
//!   [`Mamut`] implementation;
//! - `connect`: opening a tiberius connection with the session settings;
//! - `orders`, `customers`, `numbering`: writing an order, finding or creating its customer,
//!   and choosing new numbers;
//! - `changes`: reading changes past the watcher's cursors; `products`: the product sync;
//! - `check`: `agent check`'s test of the mapping against the database;
//! - [`sql`]: the text of every statement (one source, printed by `agent sql`);
//! - [`pool`]: a small connection pool that never reuses a connection whose transaction state
//!   is in doubt;
//! - [`value`]: integers and rowversions read whatever width SQL Server answers with;
//! - [`errors`]: SQL Server error numbers → retryable or permanent, with a merchant's reason;
//! - [`catalog`]: column sizes, NOT NULL and IDENTITY, checked before writing.
//!
//! The SQL keeps to the subset written down in `deploy/mamut/README.md`, which SQL Server and
//! the test stand-in both run.

use std::sync::Arc;
use std::time::Duration;

use shared::domain::Product;
use shared::protocol::{Deliver, SyncOutcome};
use tiberius::{Client, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::Compat;

use self::catalog::{Catalog, Field};
use self::errors::{At, classify, classify_at};
use self::pool::{Pool, PoolError, Pooled, in_transaction};
use super::mapping::Mapping;
use super::{ApplyError, ApplyFuture, ChangesFuture, Mamut, SyncFuture};
use crate::mamut::changes::Cursors;
use crate::mamut::import::external::ExternalNo;
use crate::mamut::settings::SqlServerConfig;

pub(crate) type Conn = Client<Compat<TcpStream>>;

pub mod catalog;
mod changes;
mod check;
mod connect;
mod customers;
pub mod errors;
mod imported;
mod numbering;
mod orders;
pub mod pool;
mod products;
pub mod sql;
pub mod value;

pub use connect::TdsConnector;
pub use imported::Imported;

type Tds<'a> = Pooled<'a, TdsConnector>;

/// The catalog as last read, and the pool's discard count then: a connection closed since
/// (an error, a reconnect) means it is read again, so a column widened in Mamut is seen.
struct CachedCatalog {
    catalog: Option<Arc<Catalog>>,
    discarded: u64,
}

pub struct SqlServer {
    config: SqlServerConfig,
    mapping: Mapping,
    /// Currency of Mamut's base prices, for price pushes.
    price_currency: String,
    pool: Pool<TdsConnector>,
    /// The watcher's own connections, one per kind of change, that do not wait for locks
    /// (`watch_lock_timeout_ms`): a change locked by an open transaction is read on a later
    /// poll, and orders never take the watcher's connections.
    watch_pool: Pool<TdsConnector>,
    catalog: tokio::sync::Mutex<Option<CachedCatalog>>,
    /// With Mamut's import writing the orders: how an external order number names its shop
    /// and shop order id (the import does not fill `orders.shop_id`).
    imported: Option<ExternalNo>,
}

/// Merchant names of the fields the writer checks.
fn field<'a>(reference: &'a str, table: &'a str, column: &'a str, label: &'a str) -> Field<'a> {
    Field {
        reference,
        table,
        column,
        label,
    }
}

impl SqlServer {
    pub fn new(config: SqlServerConfig, mapping: Mapping, price_currency: String) -> Self {
        let size = usize::try_from(config.pool_size).unwrap_or(1);
        Self {
            pool: Pool::new(
                TdsConnector {
                    config: config.clone(),
                    lock_timeout_ms: config.lock_timeout_ms,
                },
                size,
            ),
            watch_pool: Pool::new(
                TdsConnector {
                    config: config.clone(),
                    lock_timeout_ms: config.watch_lock_timeout_ms,
                },
                changes::KINDS.len(),
            ),
            config,
            mapping,
            price_currency,
            catalog: tokio::sync::Mutex::new(None),
            imported: None,
        }
    }

    /// Orders are written by Mamut's import with external order numbers made by `external`:
    /// an order status change with no shop is read back through it.
    pub fn with_imported(mut self, external: ExternalNo) -> Self {
        self.imported = Some(external);
        self
    }

    fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.config.statement_timeout_ms)
    }

    /// What a pool failure means: Mamut unreachable, or it did not answer in time.
    fn pool_failure(&self, what: &str, e: PoolError) -> String {
        match e {
            PoolError::Unreachable(e) => e,
            PoolError::TimedOut(after) => {
                let reason = format!(
                    "Mamut did not answer within {} s — a Mamut user may hold a lock on {what}; \
                     the connection was closed and the work is retried",
                    after.as_secs_f64()
                );
                tracing::warn!("{reason}");
                reason
            }
        }
    }

    /// Runs `work` on one of the watcher's connections within the statement timeout.
    async fn with_watch_conn<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&mut Tds<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        self.watch_pool
            .run(self.statement_timeout(), work, |e| {
                self.pool_failure(what, e)
            })
            .await
    }

    /// Runs `work` on a pooled connection within the statement timeout.
    async fn with_conn<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&mut Tds<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        self.pool
            .run(self.statement_timeout(), work, |e| {
                self.pool_failure(what, e)
            })
            .await
    }
}

/// A number Mamut answered with that the agent cannot read: the mapping points at a column of
/// another type, which no retry changes.
fn unreadable(e: String) -> ApplyError {
    ApplyError::Permanent(format!(
        "Mamut answered with a value the agent cannot read as a number ({e}); check the mapping \
         with agent check"
    ))
}

fn to_i32(value: i64) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| {
        ApplyError::Permanent(format!("number {value} does not fit Mamut's int column"))
    })
}

/// The integer in the first column of the first row, whatever its SQL Server width.
async fn first_int(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn ToSql],
    at: At<'_>,
) -> Result<Option<i64>, ApplyError> {
    let row = conn
        .query(sql, params)
        .await
        .map_err(|e| classify_at(e, at))?
        .into_row()
        .await
        .map_err(|e| classify_at(e, at))?;
    row.map(|r| value::int(&r, 0).map_err(unreadable))
        .transpose()
        .map(Option::flatten)
}

impl Mamut for SqlServer {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        let t = &self.mapping.tables;
        Box::pin(async move {
            let applied = self
                .pool
                .run(
                    self.statement_timeout(),
                    async |conn| self.apply(conn, delivery).await,
                    |e| {
                        ApplyError::Retryable(self.pool_failure(
                            &format!("{}, {} or {}", t.orders, t.customers, t.order_lines),
                            e,
                        ))
                    },
                )
                .await?;
            if !applied.already_applied && self.config.after_commit_delay_ms > 0 {
                // Test hook: the order is committed, the ack not yet sent.
                tokio::time::sleep(Duration::from_millis(self.config.after_commit_delay_ms)).await;
            }
            Ok(applied)
        })
    }

    fn poll_changes<'a>(&'a self, cursors: &'a Cursors, batch: u32) -> ChangesFuture<'a> {
        Box::pin(self.changes(cursors, batch))
    }

    fn list_products<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> SyncFuture<'a, (Vec<Product>, Option<String>)> {
        Box::pin(
            self.with_conn(&self.mapping.tables.products, async move |conn| {
                self.product_page(conn, after, limit).await
            }),
        )
    }

    fn count_products(&self) -> SyncFuture<'_, u64> {
        Box::pin(self.with_conn(&self.mapping.tables.products, async |conn| {
            self.product_count(conn).await
        }))
    }

    fn upsert_product<'a>(&'a self, product: &'a Product) -> SyncFuture<'a, SyncOutcome> {
        Box::pin(
            self.with_conn(&self.mapping.tables.products, async move |conn| {
                self.write_product(conn, product).await
            }),
        )
    }
}
