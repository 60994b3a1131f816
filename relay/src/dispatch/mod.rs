//! The dispatcher: sends the committed, coalesced changes of each shop to its API.
//!
//! One worker per shop. Woken when a push gave its shop work, it lets changes gather for the
//! flush window, then takes every due row: stock, prices and price-list prices go in batches
//! (at most one call per article per flush), products and order statuses one call each, all
//! paced to the shop's rate limit. A retryable failure pauses the whole shop (full-jitter
//! exponential backoff, or the shop's `Retry-After` when it asks for longer); a permanent one
//! dead-letters just that item. Outcomes are recorded against the version that was sent, so a
//! value that changed during the call is sent again.
//!
//! - `worker`: one shop's loop: gather, take the due rows, send, record the outcomes.
//! - `plan`: the pure part: which calls a round's rows make.
//! - `lease`: the shop lease that keeps two relay instances from sending the same rows.

mod lease;
mod plan;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use rand::Rng;
use shared::ShopId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::store::{AnyStore, StoreError};
use worker::Worker;

/// Most rows one round takes from the store.
const ROUND_LIMIT: usize = 2_000;

/// Starts and wakes the per-shop workers. Cheap to share.
pub struct Dispatcher {
    store: AnyStore,
    http: reqwest::Client,
    flush: Duration,
    max_attempts: u32,
    backoff: Backoff,
    workers: DashMap<ShopId, Arc<Notify>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// This instance, as the holder of shop leases.
    instance: String,
    /// How long a shop lease lasts without renewal.
    lease: Duration,
    /// Flushes that had something to send, over all shops.
    rounds: AtomicU64,
    /// Calls made to shops.
    calls: AtomicU64,
}

/// Full-jitter exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn from_config(config: &Config) -> Self {
        Self {
            base: Duration::from_millis(config.retry_base_ms),
            cap: Duration::from_millis(config.retry_cap_ms),
        }
    }

    /// A random delay in `[0, min(cap, base * 2^failures)]`, at least a millisecond.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << failures.min(20))
            .min(self.cap);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(1..=millis))
    }
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        store: AnyStore,
        http: reqwest::Client,
        instance: String,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            http,
            flush: Duration::from_millis(config.dispatch_flush_ms),
            max_attempts: config.dispatch_max_attempts,
            backoff: Backoff::from_config(config),
            workers: DashMap::new(),
            shutdown,
            tasks: TaskTracker::new(),
            instance,
            lease: Duration::from_secs(config.lease_secs),
            rounds: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// This relay instance's id, the holder name of its leases.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The dispatcher's counters in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP relay_dispatch_rounds_total Flushes that sent changes to a shop.\n\
             # TYPE relay_dispatch_rounds_total counter\n\
             relay_dispatch_rounds_total {}\n\
             # HELP relay_dispatch_calls_total Calls made to shop APIs.\n\
             # TYPE relay_dispatch_calls_total counter\n\
             relay_dispatch_calls_total {}\n",
            self.rounds.load(Ordering::Relaxed),
            self.calls.load(Ordering::Relaxed)
        )
    }

    /// Starts a worker for every shop that has work left from before a restart.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        for shop in self.store.shops(None).await? {
            if shop.settings.api.is_some() {
                self.wake(&shop.shop_id);
            }
        }
        Ok(())
    }

    /// Tells `shop`'s worker there is work, starting the worker if it is not running.
    pub fn wake(self: &Arc<Self>, shop: &ShopId) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let notify = match self.workers.entry(shop.clone()) {
            dashmap::Entry::Occupied(entry) => entry.get().clone(),
            dashmap::Entry::Vacant(entry) => {
                let notify = Arc::new(Notify::new());
                entry.insert(notify.clone());
                let worker = Worker::new(self.clone(), shop.clone(), notify.clone());
                self.tasks.spawn(worker.run());
                notify
            }
        };
        notify.notify_one();
    }

    /// Waits for the workers after shutdown was signalled (bounded by the caller).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for failures in 0..30 {
            let ceiling = Duration::from_millis(100 * (1u64 << failures.min(20))).min(backoff.cap);
            for _ in 0..50 {
                let delay = backoff.delay(failures);
                assert!(delay >= Duration::from_millis(1) && delay <= ceiling);
            }
        }
    }
}
