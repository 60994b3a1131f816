//! The dispatcher: sends the committed, coalesced changes of each shop to its API.
//!
//! One worker per shop. Woken when a push gave its shop work, it lets changes gather for the
//! flush window, then takes every due row: stock, prices and price-list prices go in batches
//! (at most one call per article per flush), products and order statuses one call each, all
//! paced to the shop's rate limit. A retryable failure pauses the whole shop (full-jitter
//! exponential backoff, or the shop's `Retry-After` when it asks for longer); a permanent one
//! dead-letters just that item. Outcomes are recorded against the version that was sent, so a
//! value that changed during the call is sent again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use rand::Rng;
use shared::ShopId;
use shared::domain::{Change, OrderStatusChange, Price, PriceListPrice, StockLevel};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::shop::{BatchOutcome, CallError, ShopClient};
use crate::store::{AnyStore, DispatchFailure, DispatchItem, ShopRecord, StoreError, timestamp};

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
                let worker = Worker {
                    dispatcher: self.clone(),
                    shop: shop.clone(),
                    notify: notify.clone(),
                    next_call: Instant::now(),
                    failures: 0,
                    renewed: None,
                };
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

struct Worker {
    dispatcher: Arc<Dispatcher>,
    shop: ShopId,
    notify: Arc<Notify>,
    /// Pacing: the earliest moment of the next call.
    next_call: Instant,
    /// Retryable failures in a row, for the shop-wide backoff.
    failures: u32,
    /// When this instance last took or renewed the shop's lease, while it holds it.
    renewed: Option<Instant>,
}

/// What a round ended with.
enum Round {
    /// Everything due was tried.
    Finished,
    /// The shop cannot be called (no API configured): wait to be woken.
    Idle,
    /// Another relay instance dispatches this shop now.
    Elsewhere,
    /// The shop asked to slow down or is failing: nothing more until then.
    PauseUntil(Instant),
}

impl Worker {
    async fn run(mut self) {
        self.dispatch().await;
        self.release_lease().await;
    }

    async fn dispatch(&mut self) {
        let shutdown = self.dispatcher.shutdown.clone();
        loop {
            // Let a burst gather so superseded values are coalesced before sending.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.dispatcher.flush) => {}
            }
            let wait = match self.round().await {
                Ok(Round::Elsewhere) => Some(Instant::now() + self.dispatcher.lease / 2),
                Ok(Round::PauseUntil(until)) => Some(until),
                Ok(Round::Idle) => None,
                Ok(Round::Finished) => match self.next_due().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(shop_id = %self.shop, error = %e, "dispatch store error");
                        Some(Instant::now() + Duration::from_secs(1))
                    }
                },
                Err(e) => {
                    tracing::error!(shop_id = %self.shop, error = %e, "dispatch store error");
                    Some(Instant::now() + Duration::from_secs(1))
                }
            };
            match wait {
                // A pause is not cut short by new work: the shop asked for it.
                Some(until) if until > Instant::now() + self.dispatcher.flush => {
                    let paused = self.failures > 0;
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep_until(until) => {}
                        () = self.notify.notified(), if !paused => {}
                    }
                }
                Some(_) => {}
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.notify.notified() => {}
                    }
                }
            }
        }
    }

    /// Takes or renews the shop's lease for this instance; false while another holds it.
    async fn hold_lease(&mut self) -> Result<bool, StoreError> {
        let lease_ms = u64::try_from(self.dispatcher.lease.as_millis()).unwrap_or(u64::MAX);
        let asked = Instant::now();
        let held = self
            .dispatcher
            .store
            .acquire_lease(
                format!("shop:{}", self.shop),
                self.dispatcher.instance.clone(),
                lease_ms,
                false,
            )
            .await?;
        self.renewed = held.then_some(asked);
        Ok(held)
    }

    /// Renews the shop's lease every third of its length until the returned guard is dropped.
    fn keep_lease(&self) -> AbortOnDrop {
        let store = self.dispatcher.store.clone();
        let name = format!("shop:{}", self.shop);
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
    async fn release_lease(&self) {
        if self.renewed.is_some() {
            let _ = self
                .dispatcher
                .store
                .release_lease(
                    format!("shop:{}", self.shop),
                    self.dispatcher.instance.clone(),
                )
                .await;
        }
    }

    /// When the earliest pending row falls due, if there is one.
    async fn next_due(&self) -> Result<Option<Instant>, StoreError> {
        let Some(at) = self
            .dispatcher
            .store
            .next_dispatch_at(self.shop.clone())
            .await?
        else {
            return Ok(None);
        };
        let wait = chrono::DateTime::parse_from_rfc3339(&at)
            .map(|at| (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std())
            .ok()
            .and_then(Result::ok)
            .unwrap_or(Duration::ZERO);
        Ok(Some(Instant::now() + wait))
    }

    async fn round(&mut self) -> Result<Round, StoreError> {
        let dispatcher = self.dispatcher.clone();
        let store = &dispatcher.store;
        let Some(shop) = store.shop(self.shop.clone()).await? else {
            return Ok(Round::Idle);
        };
        let (Some(api), Some(key)) = (&shop.settings.api, &shop.api_key) else {
            return Ok(Round::Idle);
        };
        let client = ShopClient::new(self.dispatcher.http.clone(), api, key.clone());
        let interval = Duration::from_secs(1) / api.requests_per_sec.max(1);
        if !self.hold_lease().await? {
            return Ok(Round::Elsewhere);
        }
        let items = store.due_dispatch(self.shop.clone(), ROUND_LIMIT).await?;
        if items.is_empty() {
            return Ok(Round::Finished);
        }
        tracing::debug!(shop_id = %self.shop, items = items.len(), "dispatching");
        self.dispatcher.rounds.fetch_add(1, Ordering::Relaxed);
        // A shop call may take longer than the lease: keep renewing it while the round runs,
        // so no other instance sends the same rows meanwhile.
        let _keeper = self.keep_lease();
        for call in plan(&shop, items) {
            if let Some(pause) = self.send(&client, interval, call).await? {
                return Ok(Round::PauseUntil(pause));
            }
        }
        Ok(Round::Finished)
    }

    /// Makes one planned call and records its outcome. Returns a pause when the shop needs
    /// one.
    async fn send(
        &mut self,
        client: &ShopClient,
        interval: Duration,
        call: Call,
    ) -> Result<Option<Instant>, StoreError> {
        let dispatcher = self.dispatcher.clone();
        let store = &dispatcher.store;
        if !matches!(call, Call::Refuse(..)) {
            let stale = self
                .renewed
                .is_none_or(|at| at.elapsed() >= self.dispatcher.lease / 3);
            if stale && !self.hold_lease().await? {
                return Ok(Some(Instant::now() + self.dispatcher.lease / 2));
            }
            tokio::time::sleep_until(self.next_call).await;
            self.next_call = Instant::now() + interval;
            self.dispatcher.calls.fetch_add(1, Ordering::Relaxed);
        }
        let (sent, outcome): (Vec<Sent>, Result<BatchOutcome, CallError>) = match call {
            Call::Stock(items) => {
                let values: Vec<StockLevel> = items.iter().map(|(_, s)| s.clone()).collect();
                let outcome = client.put_stock(&values).await;
                (items.into_iter().map(|(sent, _)| sent).collect(), outcome)
            }
            Call::Prices(items) => {
                let values: Vec<Price> = items.iter().map(|(_, p)| p.clone()).collect();
                let outcome = client.put_prices(&values).await;
                (items.into_iter().map(|(sent, _)| sent).collect(), outcome)
            }
            Call::PriceList(group, items) => {
                let values: Vec<PriceListPrice> = items.iter().map(|(_, p)| p.clone()).collect();
                let outcome = client.put_price_list(&group, &values).await;
                (items.into_iter().map(|(sent, _)| sent).collect(), outcome)
            }
            Call::Product(sent, product) => {
                let outcome = client
                    .put_product(&product)
                    .await
                    .map(|_| BatchOutcome::default());
                (vec![sent], outcome)
            }
            Call::Status(sent, change, rule) => {
                let tracking = if rule.tracking {
                    change.tracking_number.as_deref()
                } else {
                    None
                };
                let mut outcome = client
                    .set_order_state(
                        &change.shop_order_id,
                        &rule.shop_status,
                        rule.notify_customer,
                        tracking,
                    )
                    .await;
                if outcome.is_ok() && rule.capture {
                    outcome = client.capture(&change.shop_order_id).await;
                }
                (vec![sent], outcome.map(|()| BatchOutcome::default()))
            }
            Call::Refuse(sent, reason) => {
                self.dead_letter(vec![sent.key()], reason).await?;
                return Ok(None);
            }
        };
        match outcome {
            Ok(outcome) => {
                self.failures = 0;
                for (article, reason) in &outcome.refused {
                    if !sent.iter().any(|s| s.article == *article) {
                        tracing::warn!(shop_id = %self.shop, %article, %reason, "the shop refused an article that was not sent");
                    }
                }
                let (refused, applied): (Vec<Sent>, Vec<Sent>) = sent
                    .into_iter()
                    .partition(|s| outcome.refused.iter().any(|(a, _)| *a == s.article));
                store
                    .dispatch_done(applied.iter().map(Sent::key).collect())
                    .await?;
                for item in refused {
                    let reason = outcome
                        .refused
                        .iter()
                        .find(|(a, _)| *a == item.article)
                        .map(|(_, r)| format!("the shop refused {}: {r}", item.article))
                        .unwrap_or_default();
                    self.dead_letter(vec![item.key()], reason).await?;
                }
                Ok(None)
            }
            Err(CallError::Permanent(reason)) => {
                tracing::warn!(shop_id = %self.shop, %reason, "the shop refused a change");
                self.dead_letter(sent.iter().map(Sent::key).collect(), reason)
                    .await?;
                Ok(None)
            }
            Err(CallError::Retryable {
                reason,
                retry_after,
            }) => {
                let delay = self
                    .dispatcher
                    .backoff
                    .delay(self.failures)
                    .max(retry_after.unwrap_or_default());
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(
                    shop_id = %self.shop,
                    %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "the shop call failed; retrying later"
                );
                let retry_at = chrono::Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                let failure = DispatchFailure {
                    reason,
                    retry_at: Some(timestamp(retry_at)),
                };
                store
                    .dispatch_failed(
                        sent.iter().map(Sent::key).collect(),
                        failure,
                        self.dispatcher.max_attempts,
                    )
                    .await?;
                Ok(Some(Instant::now() + delay))
            }
        }
    }
}

impl Worker {
    /// Records a permanent failure: the rows go to the dead-letter list.
    async fn dead_letter(&self, rows: Vec<(i64, i64)>, reason: String) -> Result<(), StoreError> {
        let failure = DispatchFailure {
            reason,
            retry_at: None,
        };
        self.dispatcher
            .store
            .dispatch_failed(rows, failure, self.dispatcher.max_attempts)
            .await
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A row as sent: its id, the version sent, and its article (for batch refusals).
#[derive(Debug, Clone)]
struct Sent {
    id: i64,
    version: i64,
    article: String,
}

impl Sent {
    fn of(item: &DispatchItem, article: &str) -> Self {
        Self {
            id: item.id,
            version: item.version,
            article: article.to_owned(),
        }
    }

    fn key(&self) -> (i64, i64) {
        (self.id, self.version)
    }
}

/// One call to the shop.
enum Call {
    Stock(Vec<(Sent, StockLevel)>),
    Prices(Vec<(Sent, Price)>),
    PriceList(String, Vec<(Sent, PriceListPrice)>),
    Product(Sent, Box<shared::domain::Product>),
    Status(Sent, OrderStatusChange, crate::shop::StatusRule),
    /// Not sendable under the shop's current rules.
    Refuse(Sent, String),
}

/// Turns a round's rows into calls: status changes first (oldest first), then products, then
/// batches of stock, prices and price-list prices.
fn plan(shop: &ShopRecord, items: Vec<DispatchItem>) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut stock = Vec::new();
    let mut prices = Vec::new();
    let mut lists: BTreeMap<String, Vec<(Sent, PriceListPrice)>> = BTreeMap::new();
    let mut products = Vec::new();
    for item in items {
        let kind = item.change.kind();
        if !shop.settings.flow.sends(kind) {
            let sent = Sent::of(&item, "");
            let reason = format!(
                "the shop's flow {:?} no longer takes {kind} changes",
                shop.settings.flow
            );
            calls.push(Call::Refuse(sent, reason));
            continue;
        }
        match &item.change {
            Change::OrderStatus(change) => {
                let sent = Sent::of(&item, "");
                match shop.settings.status_map.get(&change.mamut_status) {
                    Some(rule) => calls.push(Call::Status(sent, change.clone(), rule.clone())),
                    None => calls.push(Call::Refuse(
                        sent,
                        format!(
                            "Mamut status {:?} is no longer mapped to a shop status",
                            change.mamut_status
                        ),
                    )),
                }
            }
            Change::Product(product) => {
                let sent = Sent::of(&item, product.article_number.as_str());
                products.push(Call::Product(sent, Box::new(product.clone())));
            }
            Change::Stock(level) => {
                stock.push((
                    Sent::of(&item, level.article_number.as_str()),
                    level.clone(),
                ));
            }
            Change::Price(price) => {
                prices.push((
                    Sent::of(&item, price.article_number.as_str()),
                    price.clone(),
                ));
            }
            Change::PriceList(price) => {
                let sent = Sent::of(&item, price.article_number.as_str());
                match shop.settings.price_lists.get(&price.price_list) {
                    Some(group) => lists
                        .entry(group.clone())
                        .or_default()
                        .push((sent, price.clone())),
                    None => calls.push(Call::Refuse(
                        sent,
                        format!(
                            "price list {:?} is no longer mapped to a customer group",
                            price.price_list
                        ),
                    )),
                }
            }
        }
    }
    calls.extend(products);
    let batch = ShopClient::MAX_BATCH;
    calls.extend(batches(stock, batch).into_iter().map(Call::Stock));
    calls.extend(batches(prices, batch).into_iter().map(Call::Prices));
    for (group, items) in lists {
        calls.extend(
            batches(items, batch)
                .into_iter()
                .map(|chunk| Call::PriceList(group.clone(), chunk)),
        );
    }
    calls
}

/// Splits rows into batches of at most `size`, never two rows of one article in a batch (the
/// shop reports refusals by article number, so each must name exactly one row).
fn batches<T>(items: Vec<(Sent, T)>, size: usize) -> Vec<Vec<(Sent, T)>> {
    let mut out: Vec<Vec<(Sent, T)>> = Vec::new();
    for item in items {
        let home = out.iter().position(|batch| {
            batch.len() < size && batch.iter().all(|(sent, _)| sent.article != item.0.article)
        });
        match home {
            Some(index) => out[index].push(item),
            None => out.push(vec![item]),
        }
    }
    out
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

    fn sent(id: i64, article: &str) -> (Sent, ()) {
        let sent = Sent {
            id,
            version: 1,
            article: article.into(),
        };
        (sent, ())
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_one_row_per_article() {
        let items: Vec<(Sent, ())> = (0..250).map(|i| sent(i, &format!("A-{i}"))).collect();
        let sizes: Vec<usize> = batches(items, 100).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert!(batches(Vec::<(Sent, ())>::new(), 100).is_empty());
        // Two warehouses of one article go in different calls.
        let items = vec![sent(1, "A"), sent(2, "B"), sent(3, "A")];
        let split = batches(items, 100);
        assert_eq!(split.len(), 2);
        assert!(split.iter().all(|b| {
            let articles: std::collections::HashSet<&str> =
                b.iter().map(|(s, _)| s.article.as_str()).collect();
            articles.len() == b.len()
        }));
    }
}
