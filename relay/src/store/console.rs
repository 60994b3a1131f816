//! What the console's read views ask of the store: a tenant's queue at a glance, its shops'
//! last successful calls, the last day's orders and delivery times, the order search and one
//! order's timeline. Every read is bounded (a time window, a row limit) and takes the tenant
//! into its SQL, so a tenant's view never reads another tenant's rows.

use chrono::{DateTime, Duration, Utc};
use shared::{ShopId, TenantId};

use super::any::each;
use super::types::{DispatchSummary, EventSummary, HistoryEntry, TenantRecord};
use super::{AnyStore, EventState, Result};

/// Most tenants the overview lists.
pub const MAX_TENANTS: u32 = 500;

/// Most rows one order search returns.
pub const MAX_SEARCH_RESULTS: u32 = 500;

/// Days an order search covers when it is given no "from".
pub const DEFAULT_SEARCH_DAYS: i64 = 31;

/// Most days one order search covers.
pub const MAX_SEARCH_DAYS: i64 = 366;

/// Most delivered events one latency sample holds.
pub const MAX_LATENCY_SAMPLE: u32 = 5000;

/// Most events, history entries and dispatch rows one order's timeline reads, each.
pub const MAX_TIMELINE_ROWS: u32 = 500;

/// A tenant's queue as the overview shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting for delivery.
    pub pending: u64,
    /// Thin webhooks waiting for their order to be fetched.
    pub fetching: u64,
    /// Dead-lettered events.
    pub dead: u64,
    /// Invalid orders held for an operator.
    pub held: u64,
    /// Changes to the shops that are dead-lettered.
    pub dispatch_dead: u64,
    /// When the oldest event still waiting for delivery was received.
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// One shop's last successful calls, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopActivity {
    pub shop_id: ShopId,
    /// When the newest change this relay sent to the shop was applied.
    pub last_dispatch_at: Option<DateTime<Utc>>,
    /// When the newest of its webhooks was delivered to Mamut.
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// How many orders arrived in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// Distinct shop orders whose webhooks arrived in it.
    pub orders: u64,
}

/// A delivered event's times, for the webhook → Mamut latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTime {
    pub received_at: DateTime<Utc>,
    pub delivered_at: DateTime<Utc>,
}

/// What the order search looks for; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    /// The caller's scope: `None` searches every tenant (an operator).
    pub tenant: Option<TenantId>,
    pub shop_order_id: Option<String>,
    pub mamut_ref: Option<String>,
    /// The customer's e-mail (`order.customer.email` in the payload), any case.
    pub email: Option<String>,
    pub state: Option<EventState>,
    pub shop: Option<ShopId>,
    /// Received at or after.
    pub from: Option<DateTime<Utc>>,
    /// Received before.
    pub to: Option<DateTime<Utc>>,
    /// At most this many (capped at [`MAX_SEARCH_RESULTS`]).
    pub limit: u32,
}

/// One event the search found, with its tenant.
#[derive(Debug, Clone)]
pub struct OrderHit {
    pub tenant_id: TenantId,
    pub event: EventSummary,
}

/// An event's body and what was received with it.
#[derive(Debug, Clone)]
pub struct EventBody {
    /// The body now (an operator's edit, if there was one).
    pub payload: String,
    /// The body as received, when it was edited since.
    pub original: Option<String>,
}

/// One entry of an order's history, with the event it belongs to.
#[derive(Debug, Clone)]
pub struct OrderHistoryEntry {
    pub event_id: i64,
    pub entry: HistoryEntry,
}

/// Everything stored about one shop order, for its timeline: the event asked for, every
/// event of the same shop order with their history, and what was sent back to the shop.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub event: EventSummary,
    pub body: EventBody,
    /// Every event of the shop order (this one too), oldest first.
    pub events: Vec<EventSummary>,
    /// Their history, in time order.
    pub history: Vec<OrderHistoryEntry>,
    /// The order's status changes sent back to the shop, oldest first.
    pub dispatch: Vec<DispatchSummary>,
    /// Whether older events, history entries or dispatch rows were left out: each list
    /// keeps its newest [`MAX_TIMELINE_ROWS`].
    pub truncated: bool,
}

/// The window `[from, to)` a search covers (see [`AnyStore::search_orders`]).
fn search_window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = to.unwrap_or(now);
    let back = |days| to.checked_sub_signed(Duration::days(days)).unwrap_or(to);
    let earliest = back(MAX_SEARCH_DAYS);
    let from = from
        .unwrap_or_else(|| back(DEFAULT_SEARCH_DAYS))
        .max(earliest);
    (from, to)
}

/// An order's events, history and dispatch rows as read newest first (at most `limit` + 1
/// each), kept to the newest `limit` of each and put oldest first; and whether any was cut.
pub(crate) fn newest_first_kept(
    mut events: Vec<EventSummary>,
    mut history: Vec<OrderHistoryEntry>,
    mut dispatch: Vec<DispatchSummary>,
    limit: u32,
) -> (
    Vec<EventSummary>,
    Vec<OrderHistoryEntry>,
    Vec<DispatchSummary>,
    bool,
) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let truncated = events.len() > limit || history.len() > limit || dispatch.len() > limit;
    keep_newest(&mut events, limit);
    keep_newest(&mut history, limit);
    keep_newest(&mut dispatch, limit);
    (events, history, dispatch, truncated)
}

/// A list read newest first, kept to its first `limit` and turned oldest first.
fn keep_newest<T>(list: &mut Vec<T>, limit: usize) {
    list.truncate(limit);
    list.reverse();
}

/// Whether an order's stored body names `email` as its customer's (any case); a body that
/// is not JSON names nobody.
pub(crate) fn customer_email_is(payload: &str, email: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|body| {
            body.pointer("/order/customer/email")
                .and_then(|v| v.as_str())
                .map(|found| found.trim().eq_ignore_ascii_case(email.trim()))
        })
        .unwrap_or(false)
}

impl AnyStore {
    /// The tenants, by id, at most `limit` (capped at [`MAX_TENANTS`]).
    pub async fn tenants(&self, limit: u32) -> Result<Vec<TenantRecord>> {
        let limit = limit.clamp(1, MAX_TENANTS);
        each!(self, s => s.tenants(None, limit))
    }

    /// One tenant by id, whatever its place in [`Self::tenants`]' order; `None` when there is
    /// no such tenant.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>> {
        Ok(each!(self, s => s.tenants(Some(id), 1))?.into_iter().next())
    }

    /// A tenant's queue: counts by state and the age of its oldest pending event.
    pub async fn queue_stats(&self, tenant: TenantId) -> Result<QueueStats> {
        each!(self, s => s.queue_stats(tenant))
    }

    /// Each shop of a tenant that has had a successful call, by shop id.
    pub async fn shop_activity(&self, tenant: TenantId) -> Result<Vec<ShopActivity>> {
        each!(self, s => s.shop_activity(tenant))
    }

    /// Orders received per hour since `since`, oldest hour first; hours without any are
    /// left out.
    pub async fn orders_per_hour(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourCount>> {
        each!(self, s => s.orders_per_hour(tenant, since))
    }

    /// The newest events delivered since `since`, newest delivery first, at most `limit`
    /// (capped at [`MAX_LATENCY_SAMPLE`]). Read through the finished events' `updated_at`
    /// index (the state test repeats the index's condition so both databases use it). A
    /// tenant delivering more than the sample in the window gets its latest hours measured
    /// and its earliest ones left without a sample: the chart shows no line there rather
    /// than a wrong one.
    pub async fn delivery_times(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryTime>> {
        let limit = limit.min(MAX_LATENCY_SAMPLE);
        each!(self, s => s.delivery_times(tenant, since, limit))
    }

    /// Events matching `query`, newest first, at most its limit, received within a window
    /// of at most [`MAX_SEARCH_DAYS`]: "to" defaults to now, "from" to
    /// [`DEFAULT_SEARCH_DAYS`] before "to", and a longer window is cut to its newest
    /// [`MAX_SEARCH_DAYS`]. The e-mail is matched exactly (any case) against the
    /// customer's field of the body.
    pub async fn search_orders(&self, mut query: OrderQuery) -> Result<Vec<OrderHit>> {
        query.limit = query.limit.clamp(1, MAX_SEARCH_RESULTS);
        let (from, to) = search_window(query.from, query.to, Utc::now());
        (query.from, query.to) = (Some(from), Some(to));
        each!(self, s => s.search_orders(query))
    }

    /// A tenant's event with everything stored about its shop order, the newest `limit`
    /// (capped at [`MAX_TIMELINE_ROWS`]) of its events, history and dispatch rows each;
    /// `None` when the tenant has no event of that id.
    pub async fn order_record(
        &self,
        tenant: TenantId,
        event_id: i64,
        limit: u32,
    ) -> Result<Option<OrderRecord>> {
        let limit = limit.clamp(1, MAX_TIMELINE_ROWS);
        each!(self, s => s.order_record(tenant, event_id, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_window_defaults_to_31_days_and_is_cut_to_366() {
        let now = Utc::now();
        assert_eq!(
            search_window(None, None, now),
            (now - Duration::days(31), now)
        );
        let to = now - Duration::days(10);
        let long_ago = now - Duration::days(1000);
        assert_eq!(
            search_window(Some(long_ago), Some(to), now),
            (to - Duration::days(366), to)
        );
        let from = now - Duration::days(2);
        assert_eq!(search_window(Some(from), None, now), (from, now));
    }

    #[test]
    fn the_customer_email_is_read_from_the_order_and_any_case_matches() {
        let body = r#"{"order":{"customer":{"email":"Anna.Svensson@Example.se"}}}"#;
        assert!(customer_email_is(body, "anna.svensson@example.se"));
        assert!(!customer_email_is(body, "anna@example.se"));
        let elsewhere = r#"{"order":{"note":"anna.svensson@example.se"}}"#;
        assert!(!customer_email_is(elsewhere, "anna.svensson@example.se"));
        assert!(!customer_email_is(
            "not json anna.svensson@example.se",
            "anna.svensson@example.se"
        ));
    }
}
