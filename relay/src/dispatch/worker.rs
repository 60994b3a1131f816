//! One shop's worker: lets a burst of changes gather for the flush window, takes the due
//! rows, sends the planned calls paced to the shop's rate limit, and records each outcome
//! against the version that was sent. A retryable failure pauses the whole shop; a permanent
//! one dead-letters just its rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shared::ShopId;
use shared::domain::{Price, PriceListPrice, StockLevel};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::plan::{Call, Sent, plan};
use super::{Dispatcher, ROUND_LIMIT};
use crate::shop::{BatchOutcome, CallError, ShopClient};
use crate::store::{DispatchFailure, StoreError};

pub(super) struct Worker {
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) shop: ShopId,
    notify: Arc<Notify>,
    /// Pacing: the earliest moment of the next call.
    next_call: Instant,
    /// Retryable failures in a row, for the shop-wide backoff.
    failures: u32,
    /// When this instance last took or renewed the shop's lease, while it holds it.
    pub(super) renewed: Option<Instant>,
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

/// A call's rows and what the shop answered.
type Answer = (Vec<Sent>, Result<BatchOutcome, CallError>);

impl Worker {
    pub(super) fn new(dispatcher: Arc<Dispatcher>, shop: ShopId, notify: Arc<Notify>) -> Self {
        Self {
            dispatcher,
            shop,
            notify,
            next_call: Instant::now(),
            failures: 0,
            renewed: None,
        }
    }

    pub(super) async fn run(mut self) {
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
        let wait = (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
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
        for call in plan(&shop.settings, items) {
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
        if let Call::Refuse(sent, reason) = call {
            self.dead_letter(vec![sent.key()], reason).await?;
            return Ok(None);
        }
        if let Some(pause) = self.pace(interval).await? {
            return Ok(Some(pause));
        }
        let (sent, outcome) = call_shop(client, call).await;
        match outcome {
            Ok(outcome) => {
                self.applied(sent, outcome).await?;
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
            }) => self.retry_later(sent, reason, retry_after).await.map(Some),
        }
    }

    /// Before a call: renews a stale lease (a pause while another instance holds it) and
    /// waits for the shop's rate limit.
    async fn pace(&mut self, interval: Duration) -> Result<Option<Instant>, StoreError> {
        if self.lease_is_stale() && !self.hold_lease().await? {
            return Ok(Some(Instant::now() + self.dispatcher.lease / 2));
        }
        tokio::time::sleep_until(self.next_call).await;
        self.next_call = Instant::now() + interval;
        self.dispatcher.calls.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// Records a call the shop took: the rows it applied are done, the articles it refused
    /// dead-lettered with its reason.
    async fn applied(&mut self, sent: Vec<Sent>, outcome: BatchOutcome) -> Result<(), StoreError> {
        self.failures = 0;
        for (article, reason) in &outcome.refused {
            if !sent.iter().any(|s| s.article == *article) {
                tracing::warn!(shop_id = %self.shop, %article, %reason, "the shop refused an article that was not sent");
            }
        }
        let (refused, applied): (Vec<Sent>, Vec<Sent>) = sent
            .into_iter()
            .partition(|s| outcome.refused.iter().any(|(a, _)| *a == s.article));
        self.dispatcher
            .store
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
        Ok(())
    }

    /// Records a retryable failure: the rows wait for the backoff (or the shop's
    /// `Retry-After` when it asks for longer), and so does the whole shop. Returns the end of
    /// the pause.
    async fn retry_later(
        &mut self,
        sent: Vec<Sent>,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Result<Instant, StoreError> {
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
            retry_at: Some(retry_at),
        };
        self.dispatcher
            .store
            .dispatch_failed(
                sent.iter().map(Sent::key).collect(),
                failure,
                self.dispatcher.max_attempts,
            )
            .await?;
        Ok(Instant::now() + delay)
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

/// Makes the shop call a planned call stands for (anything but a refusal) and returns its rows
/// with the shop's answer.
async fn call_shop(client: &ShopClient, call: Call) -> Answer {
    match call {
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
        Call::Refuse(sent, reason) => (vec![sent], Err(CallError::Permanent(reason))),
    }
}
