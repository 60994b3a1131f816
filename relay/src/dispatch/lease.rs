//! A shop's dispatch lease: while one relay instance holds it, no other sends the shop's rows.
//! Taken before a round, renewed in the background while a round's calls run, released when
//! the worker stops so another instance may take the shop over at once.

use tokio::time::Instant;

use super::worker::Worker;
use crate::store::{Lease, StoreError};

impl Worker {
    /// Takes or renews the shop's lease for this instance; false while another holds it.
    pub(super) async fn hold_lease(&mut self) -> Result<bool, StoreError> {
        let lease_ms = u64::try_from(self.dispatcher.lease.as_millis()).unwrap_or(u64::MAX);
        let asked = Instant::now();
        let held = self
            .dispatcher
            .store
            .acquire_lease(
                Lease::Shop(self.shop.clone()),
                self.dispatcher.instance.clone(),
                lease_ms,
                false,
            )
            .await?;
        self.renewed = held.then_some(asked);
        Ok(held)
    }

    /// Whether the lease was last taken or renewed long enough ago (a third of its length)
    /// that it must be renewed before the next call.
    pub(super) fn lease_is_stale(&self) -> bool {
        self.renewed
            .is_none_or(|at| at.elapsed() >= self.dispatcher.lease / 3)
    }

    /// Renews the shop's lease every third of its length until the returned guard is dropped.
    pub(super) fn keep_lease(&self) -> AbortOnDrop {
        let store = self.dispatcher.store.clone();
        let name = Lease::Shop(self.shop.clone());
        let holder = self.dispatcher.instance.clone();
        let lease = self.dispatcher.lease;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store
                    .acquire_lease(name.clone(), holder.clone(), lease_ms, false)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = %name, "the shop's dispatch lease went to another instance");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %name, "cannot renew the dispatch lease")
                    }
                }
            }
        }))
    }

    /// Lets another instance take the shop over at once after this one stops.
    pub(super) async fn release_lease(&self) {
        if self.renewed.is_some() {
            let _ = self
                .dispatcher
                .store
                .release_lease(
                    Lease::Shop(self.shop.clone()),
                    self.dispatcher.instance.clone(),
                )
                .await;
        }
    }
}

/// Aborts a background task when dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
