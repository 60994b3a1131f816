//! The import writer (`[mamut] writer = "import"`): orders go into Mamut through Mamut's own
//! import program (Mamut Import/Export, format GBAOX10), so Mamut numbers them from its own
//! series, matches or creates the customer and applies its own rules. Reads — the lookup of an
//! order already there, the watcher, the product sync, `agent check` — stay on SQL Server
//! ([`SqlServer`]).
//!
//! Each order, exactly once, whatever point the agent is stopped at:
//!
//! 1. the spool's lock is taken: an import an earlier agent process started and that still
//!    runs holds it (the lock is the program's standard input), so its end is waited for;
//! 2. the shop order's external order number is looked up in Mamut: found → acknowledged with
//!    Mamut's number, never imported again;
//! 3. the GBAOX10 file is written to the spool (write, flush, rename);
//! 4. the program runs, one at a time, within `timeout_secs`, its output in the spool;
//! 5. the external order number is looked up again: found → the file moves to `done/` and the
//!    order is acknowledged with Mamut's number. Not found: the file is kept in `failed/` with
//!    the program's reason and the order is refused (a dead letter at the relay; replayed after
//!    a fix, it is imported once). A program that exited 0 without the order appearing leaves
//!    a marker, so that the order is not imported again until someone has looked.
//!
//! [`gbaox10`] makes the file, [`spool`] keeps the files, [`run`] runs the program;
//! [`config`] is `[mamut.import]`, [`external`] the external order number's template.

pub mod config;
pub mod external;
pub mod gbaox10;
pub mod run;
pub mod spool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::domain::{DocumentType, Product};
use shared::protocol::{Deliver, SyncOutcome};
use tokio::sync::Mutex;

use self::config::ImportConfig;
use self::external::ExternalNo;
use self::run::Ended;
use self::spool::{ImportLock, Spool};
use super::sqlserver::{Imported, SqlServer};
use super::{Applied, ApplyError, ApplyFuture, ChangesFuture, Mamut, SyncFuture};
use crate::mamut::changes::Cursors;

/// How often a lock held by another process is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(200);

pub struct ImportWriter {
    inner: Arc<Inner>,
}

struct Inner {
    sql: SqlServer,
    config: ImportConfig,
    external: ExternalNo,
    spool: Spool,
    /// One import at a time in this process (the lock file orders processes).
    turn: Mutex<()>,
}

impl ImportWriter {
    pub fn new(sql: SqlServer, config: ImportConfig) -> Result<Self, String> {
        let external = config.external()?;
        let spool = Spool::open(&config.spool_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: sql.with_imported(external.clone()),
                config,
                external,
                spool,
                turn: Mutex::new(()),
            }),
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// Applies one delivery in a task of its own: when the relay connection drops, the apply
    /// that waits here is abandoned, but the import it started runs to its end and its outcome
    /// is recorded (the order found, the file kept with its reason, the marker), so the
    /// order's next delivery finds what happened.
    async fn apply(&self, delivery: &Deliver) -> Result<Applied, ApplyError> {
        let inner = self.inner.clone();
        let delivery = delivery.clone();
        tokio::spawn(async move { inner.apply(&delivery).await })
            .await
            .unwrap_or_else(|e| {
                Err(ApplyError::Permanent(format!(
                    "the agent failed on this order ({e}); this is a bug in the agent, please \
                     report it with the agent's log"
                )))
            })
    }
}

impl Inner {
    /// Waits for the spool's lock: held by a run of the program, maybe one an earlier agent
    /// process started.
    async fn lock(&self) -> Result<ImportLock, ApplyError> {
        let path = self.spool.lock_file();
        let deadline = Instant::now() + Duration::from_secs(self.config.timeout_secs + 30);
        let mut warned = false;
        loop {
            match ImportLock::try_take(&path) {
                Ok(Some(lock)) => return Ok(lock),
                Ok(None) if Instant::now() < deadline => {
                    if !warned {
                        tracing::warn!(lock = %path.display(), "an import started earlier (by this agent before it restarted, or by another agent on this spool) is still running; waiting for it to end before looking the order up");
                        warned = true;
                    }
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Ok(None) => {
                    return Err(ApplyError::Retryable(format!(
                        "an import started earlier still holds {} after {} s: a run of the \
                         import program has not ended (is it waiting for input on the server's \
                         desktop?); the order is tried again later",
                        path.display(),
                        self.config.timeout_secs + 30
                    )));
                }
                Err(e) => {
                    return Err(ApplyError::Retryable(format!(
                        "cannot open the spool's lock {}: {e}; check that the agent's account \
                         may write in mamut.import.spool_dir",
                        path.display()
                    )));
                }
            }
        }
    }

    async fn apply(&self, delivery: &Deliver) -> Result<Applied, ApplyError> {
        let order = &delivery.order;
        if delivery.document_type == DocumentType::Invoice {
            return Err(ApplyError::Permanent(format!(
                "shop {} asks for an invoice, and Mamut's order import (GBAOX10) creates orders: \
                 set the shop's document type to order, or use writer = \"sql\"",
                delivery.shop_id
            )));
        }
        let external = self
            .external
            .render(&delivery.shop_id, &order.id)
            .map_err(ApplyError::Permanent)?;
        let doc = gbaox10::document(order, &external, &self.config)
            .map_err(|r| ApplyError::Permanent(r.0))?;
        let name = Spool::name(&delivery.shop_id, &order.id);

        let _turn = self.turn.lock().await;
        let lock = self.lock().await?;
        if let Some(found) = self.sql.find_imported(&external).await? {
            return self.found(found, &external, doc.lines, &name, true);
        }
        let marker = self.spool.imported_marker(&name);
        if marker.exists() {
            let why = std::fs::read_to_string(&marker).unwrap_or_default();
            return Err(ApplyError::Permanent(format!(
                "{} (Mamut has no order with external order number {external} now either); \
                 the order is not imported again by itself. Check Mamut (the order, the \
                 import's log; does this Mamut version keep the external order number in the \
                 mapped column orders.external_no?), then delete {} and replay the order",
                why.trim(),
                marker.display()
            )));
        }
        let file = self
            .spool
            .write(&name, &doc.bytes)
            .map_err(ApplyError::Retryable)?;
        for note in &doc.notes {
            tracing::warn!(shop = %delivery.shop_id, order = %order.id, "{note}");
        }
        let log = self.spool.log(&name);
        let started = Instant::now();
        let ended = run::run(&self.config, &file, &log, &lock)
            .await
            .map_err(ApplyError::Retryable)?;
        let found = match self.sql.find_imported(&external).await {
            Ok(found) => found,
            Err(e) => {
                // Unknown whether the run imported it: the next delivery looks it up again,
                // but a run that said it imported the order is not repeated.
                if ended == Ended::Exited(Some(0)) {
                    self.spool
                        .mark_imported(
                            &name,
                            &format!(
                                "the import program exited 0 for external order number \
                                 {external}, and Mamut could not be asked afterwards"
                            ),
                        )
                        .map_err(ApplyError::Permanent)?;
                }
                return Err(e);
            }
        };
        tracing::info!(shop = %delivery.shop_id, order = %order.id, external, ended = ?ended, found = found.is_some(), ms = started.elapsed().as_millis() as u64, "import program ran");
        let applied = match (found, &ended) {
            (Some(found), _) => {
                if ended != Ended::Exited(Some(0)) {
                    tracing::warn!(external, ended = ?ended, "the import program did not end cleanly, yet Mamut has the order; acknowledged with Mamut's number");
                }
                self.found(found, &external, doc.lines, &name, false)?
            }
            (None, Ended::TimedOut) => {
                return Err(ApplyError::Retryable(format!(
                    "the import program did not finish within {} s (mamut.import.timeout_secs) \
                     and was stopped; Mamut has no order {external}. The order is tried again; \
                     if this repeats, run the program by hand on {} to see what it waits for",
                    self.config.timeout_secs,
                    file.display()
                )));
            }
            (None, Ended::Exited(Some(0))) => {
                let reason = format!(
                    "the import program exited 0, yet Mamut has no order with external order \
                     number {external}"
                );
                // The marker first: whatever fails after it, the order is not imported again.
                let marker = self
                    .spool
                    .mark_imported(&name, &reason)
                    .map_err(ApplyError::Permanent)?;
                let kept = self
                    .spool
                    .refused(&name, &reason)
                    .map_err(ApplyError::Permanent)?;
                return Err(ApplyError::Permanent(format!(
                    "{reason}: check Mamut's import log; the file is kept as {}. Delete {} and \
                     replay the order to import it again",
                    kept.display(),
                    marker.display()
                )));
            }
            (None, Ended::Exited(None)) => {
                return Err(ApplyError::Retryable(format!(
                    "the import program was ended by a signal before it finished; Mamut has no \
                     order {external}; the order is tried again"
                )));
            }
            (None, Ended::Exited(code)) => {
                let why = run::reason(&log, self.config.log_file.as_ref())
                    .unwrap_or_else(|| "it wrote no reason".to_owned());
                let code = code.map_or("a signal".to_owned(), |c| format!("exit code {c}"));
                let reason = format!("Mamut's import refused the order ({code}): {why}");
                let kept = self
                    .spool
                    .refused(&name, &reason)
                    .map_err(ApplyError::Retryable)?;
                return Err(ApplyError::Permanent(format!(
                    "{reason}; the file is kept as {}; fix the order or the setting, then replay it",
                    kept.display()
                )));
            }
        };
        drop(lock);
        if self.config.after_import_delay_ms > 0 {
            // Test hook: imported, not yet acknowledged.
            tokio::time::sleep(Duration::from_millis(self.config.after_import_delay_ms)).await;
        }
        Ok(applied)
    }

    /// The order Mamut has: acknowledged, unless the import stopped part way.
    fn found(
        &self,
        found: Imported,
        external: &str,
        expected_lines: usize,
        name: &str,
        already: bool,
    ) -> Result<Applied, ApplyError> {
        if found.orders > 1 {
            tracing::warn!(
                external,
                orders = found.orders,
                order_no = found.order_no,
                "Mamut has several orders with this external order number (imported twice outside the agent?); acknowledged with the oldest"
            );
        }
        if usize::try_from(found.lines).unwrap_or(0) < expected_lines {
            return Err(ApplyError::Permanent(format!(
                "Mamut's order {} (external order number {external}) has {} of the {} lines the \
                 agent imported: the import stopped part way. Complete or delete the order in \
                 Mamut, then replay it (an order Mamut has is not imported again)",
                found.order_no, found.lines, expected_lines
            )));
        }
        if let Err(e) = self.spool.done(name) {
            tracing::warn!("{e}");
        }
        Ok(Applied {
            mamut_ref: found.order_no.to_string(),
            already_applied: already,
        })
    }
}

impl Mamut for ImportWriter {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        Box::pin(self.apply(delivery))
    }

    fn poll_changes<'a>(&'a self, cursors: &'a Cursors, batch: u32) -> ChangesFuture<'a> {
        self.inner.sql.poll_changes(cursors, batch)
    }

    fn list_products<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> SyncFuture<'a, (Vec<Product>, Option<String>)> {
        self.inner.sql.list_products(after, limit)
    }

    fn count_products(&self) -> SyncFuture<'_, u64> {
        self.inner.sql.count_products()
    }

    fn upsert_product<'a>(&'a self, product: &'a Product) -> SyncFuture<'a, SyncOutcome> {
        self.inner.sql.upsert_product(product)
    }
}
