//! Thin webhooks: an event that carries only an order id and status is stored at once (state
//! `fetching`), then the order is fetched from the shop's API and the event joins the delivery
//! queue with the full order (or is held when the order is invalid: [`crate::validate`]). A failed fetch is retried with backoff, never dropped; later
//! events of the same order wait behind it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shared::ShopId;
use shared::domain::{OrderWebhook, ThinOrderWebhook};
use tokio::sync::Notify;

use crate::AppState;
use crate::dispatch::Backoff;
use crate::shop::{CallError, ShopClient};
use crate::store::{AnyStore, Due, Enriched, FetchJob, Notice, StoreError};
use crate::validate;

/// Permanent refusals (the shop says the order cannot be had) before a thin webhook is given
/// up and dead-lettered.
const GIVE_UP_AFTER: u32 = 5;

/// Most fetches taken per round.
const ROUND_LIMIT: usize = 100;

/// Wakes the enricher when a thin webhook was stored.
#[derive(Default)]
pub struct Enricher {
    notify: Notify,
}

impl Enricher {
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Fetches orders until shutdown.
    pub async fn run(self: Arc<Self>, app: Arc<AppState>) {
        let store = &app.store;
        let http = &app.http;
        let backoff = Backoff::from_config(&app.config);
        let shutdown = &app.shutdown;
        // Fetch failures in a row per event, for its backoff (restarts begin again at 0).
        let mut failures: HashMap<i64, u32> = HashMap::new();
        loop {
            let wait = match self.round(&app, http, backoff, &mut failures).await {
                Ok(()) => next_wait(store).await,
                Err(e) => {
                    tracing::error!(error = %e, "fetching thin webhooks' orders failed");
                    Some(Duration::from_secs(1))
                }
            };
            let sleep = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.notify.notified() => {}
                () = sleep => {}
            }
        }
    }

    async fn round(
        &self,
        app: &AppState,
        http: &reqwest::Client,
        backoff: Backoff,
        failures: &mut HashMap<i64, u32>,
    ) -> Result<(), StoreError> {
        // A shop that failed once this round is not asked again until its jobs' claims run
        // out, so one slow shop does not hold up the others' orders for long.
        let store = &app.store;
        let mut failing: HashSet<ShopId> = HashSet::new();
        for job in store.due_fetches(ROUND_LIMIT).await? {
            if failing.contains(&job.shop_id) {
                continue;
            }
            let fetched = match fetch(store, http, &job).await {
                Ok(fetched) => fetched,
                Err(e) => Err(Failed::retry(format!("the store failed: {e}"))),
            };
            match fetched {
                Ok((payload, outcome)) => {
                    failures.remove(&job.id);
                    let deliver = outcome == Enriched::Deliver;
                    let held = matches!(outcome, Enriched::Hold(_));
                    if !store.enriched(job.id, payload, outcome).await? {
                        continue;
                    }
                    if held {
                        app.metrics.held();
                        tracing::warn!(
                            event_id = job.id,
                            "the fetched order is invalid; held for an operator"
                        );
                    }
                    if deliver {
                        let tenant = job.tenant_id.clone();
                        app.announce(Notice::Event { tenant }).await;
                    }
                }
                Err(Failed { reason, permanent }) => {
                    failing.insert(job.shop_id.clone());
                    let count = failures.entry(job.id).or_insert(0);
                    let delay = backoff.delay(*count);
                    *count = count.saturating_add(1);
                    if permanent && *count >= GIVE_UP_AFTER {
                        // The shop keeps saying this order cannot be had (e.g. 404): stop
                        // holding its order back; an operator can replay it.
                        failures.remove(&job.id);
                        tracing::warn!(event_id = job.id, %reason, "cannot fetch the order; giving up");
                        let reason = format!("{reason} (given up after {GIVE_UP_AFTER} attempts)");
                        store.fetch_failed(job.id, reason, None).await?;
                        continue;
                    }
                    tracing::warn!(event_id = job.id, %reason, "cannot fetch the order; retrying later");
                    let at = chrono::Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    store.fetch_failed(job.id, reason, Some(at)).await?;
                }
            }
        }
        Ok(())
    }
}

/// Why an order could not be fetched, and whether asking again can help.
struct Failed {
    reason: String,
    /// The shop answered that the request cannot succeed as it is (404, 400, 422...).
    permanent: bool,
}

impl Failed {
    fn retry(reason: String) -> Self {
        Self {
            reason,
            permanent: false,
        }
    }
}

/// Fetches one thin webhook's order: the full webhook, and what becomes of it: delivered,
/// ignored when the order's status (as the shop has it now) is no longer a trigger status, or
/// held when the order is invalid. The inner `Err` is why it could not be fetched.
async fn fetch(
    store: &AnyStore,
    http: &reqwest::Client,
    job: &FetchJob,
) -> Result<Result<(String, Enriched), Failed>, StoreError> {
    let thin: ThinOrderWebhook = match serde_json::from_str(&job.payload) {
        Ok(thin) => thin,
        Err(e) => {
            return Ok(Err(Failed {
                reason: format!("the stored thin webhook cannot be read: {e}"),
                permanent: true,
            }));
        }
    };
    let Some(shop) = store.shop(job.shop_id.clone()).await? else {
        return Ok(Err(Failed {
            reason: "the shop no longer exists".into(),
            permanent: true,
        }));
    };
    let (Some(api), Some(key)) = (&shop.settings.api, &shop.api_key) else {
        return Ok(Err(Failed::retry(
            "the shop has no API configured, so the order cannot be fetched".into(),
        )));
    };
    let client = ShopClient::new(http.clone(), api, key.clone());
    let order = match client.fetch_order(&job.order_id).await {
        Ok(order) => order,
        Err(CallError::Retryable { reason, .. }) => return Ok(Err(Failed::retry(reason))),
        Err(CallError::Permanent(reason)) => {
            return Ok(Err(Failed {
                reason,
                permanent: true,
            }));
        }
    };
    let outcome = if !shop.trigger_statuses.contains(&order.status) {
        Enriched::Ignore
    } else {
        let problems = validate::problems(&order);
        if problems.is_empty() {
            Enriched::Deliver
        } else {
            Enriched::Hold(validate::describe(&problems))
        }
    };
    let webhook = OrderWebhook {
        event: thin.event,
        shop_id: thin.shop_id,
        occurred_at: thin.occurred_at.unwrap_or_else(chrono::Utc::now),
        order,
    };
    Ok(serde_json::to_string(&webhook)
        .map(|payload| (payload, outcome))
        .map_err(|e| Failed::retry(format!("cannot encode the order: {e}"))))
}

async fn next_wait(store: &AnyStore) -> Option<Duration> {
    let at = match store.next_fetch_at().await.ok()?? {
        Due::Now => return Some(Duration::ZERO),
        Due::At(at) => at,
    };
    Some((at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}
