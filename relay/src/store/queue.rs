//! The queue's rules, the same for both databases: which pending events a delivery takes,
//! what each outcome does to an event and writes in its history, what an operator may replay
//! or edit, how a push fans out to shops, when a dead dispatch row may go again, and that a
//! stored row that does not read back is dead-lettered (or skipped) alone instead of stopping
//! the work around it. Pure functions over values read in the backend's transaction; each
//! backend keeps only its SQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use shared::domain::Change;
use shared::{ShopId, TenantId};

use super::Result;
use super::error::{StoreError, corrupt};
use super::state::{DispatchState, EventState, HistoryState};
use super::types::{
    DispatchItem, Enriched, FetchJob, QueuedEvent, ShopRecord, coalescing_key, document_type, takes,
};

/// Pending events read per query while picking deliveries.
pub(crate) const PAGE: i64 = 500;

/// Most pending events one picking looks at (the rest wait for the next).
const MAX_SCAN: usize = 20_000;

/// A pending event as stored, its ids and document type still text: [`DeliveryPicker`] reads
/// it, so that one that does not read back is dead-lettered alone.
pub(crate) struct StoredEvent {
    pub id: i64,
    pub shop_id: String,
    pub order_id: String,
    pub document_type: String,
    pub payload: String,
    pub attempts: i64,
}

impl StoredEvent {
    /// The event for delivery, counting this one as an attempt.
    fn read(self) -> Result<QueuedEvent> {
        Ok(QueuedEvent {
            id: self.id,
            shop_id: ShopId::new(self.shop_id).map_err(|e| corrupt("shop id", e))?,
            order_id: self.order_id,
            document_type: document_type(&self.document_type)?,
            payload: self.payload,
            attempt: self.attempts + 1,
        })
    }
}

/// A thin webhook as stored, its ids still text: read by [`fetch_jobs`].
pub(crate) struct StoredFetch {
    pub id: i64,
    pub tenant_id: String,
    pub shop_id: String,
    pub order_id: String,
    pub payload: String,
}

impl StoredFetch {
    fn read(self) -> Result<FetchJob> {
        Ok(FetchJob {
            id: self.id,
            tenant_id: TenantId::new(self.tenant_id).map_err(|e| corrupt("tenant id", e))?,
            shop_id: ShopId::new(self.shop_id).map_err(|e| corrupt("shop id", e))?,
            order_id: self.order_id,
            payload: self.payload,
        })
    }
}

/// A stored event that does not read back (a bug or a hand-edited database) and is
/// dead-lettered, alone, so that it holds up no other work: `change` to apply to event `id`.
/// An operator sees why in its history, and may replay it once the row is repaired.
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub id: i64,
    pub change: Transition,
}

impl Unreadable {
    fn new(id: i64, from: EventState, error: &StoreError) -> Self {
        let reason = format!("the {error}");
        tracing::error!(event_id = id, %reason, "a stored event cannot be read; dead-lettered");
        Self {
            id,
            change: Transition {
                from,
                ..dead_lettered(reason)
            },
        }
    }
}

/// Reads claimed thin webhooks: the jobs, and those that do not read back.
pub(crate) fn fetch_jobs(rows: Vec<StoredFetch>) -> (Vec<FetchJob>, Vec<Unreadable>) {
    let mut jobs = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        let id = row.id;
        match row.read() {
            Ok(job) => jobs.push(job),
            Err(e) => unreadable.push(Unreadable::new(id, EventState::Fetching, &e)),
        }
    }
    (jobs, unreadable)
}

/// The shops with pending dispatch rows, from their stored ids; an id that does not read back
/// is left out (its rows wait, and the error says so), so that the other shops still go.
pub(crate) fn readable_shops(ids: Vec<String>) -> Vec<ShopId> {
    ids.into_iter()
        .filter_map(|id| match ShopId::new(id.clone()) {
            Ok(shop) => Some(shop),
            Err(e) => {
                tracing::error!(
                    shop_id = %id,
                    error = %e,
                    "pending dispatch rows have an invalid stored shop id; they are skipped"
                );
                None
            }
        })
        .collect()
}

/// Picks events for delivery from pages of a tenant's pending events, oldest first: at most
/// one per shop order, none of an order in `blocked` (an earlier event of it is in flight or
/// still fetching), none in `exclude` (in flight already), at most `want`. An event whose turn
/// comes but that does not read back is dead-lettered instead ([`Unreadable`]).
pub(crate) struct DeliveryPicker {
    exclude: HashSet<i64>,
    blocked: HashSet<(String, String)>,
    want: usize,
    picked: Vec<QueuedEvent>,
    unreadable: Vec<Unreadable>,
    after: i64,
    scanned: usize,
    done: bool,
}

impl DeliveryPicker {
    pub fn new(exclude: HashSet<i64>, blocked: HashSet<(String, String)>, want: usize) -> Self {
        Self {
            exclude,
            blocked,
            want,
            picked: Vec::new(),
            unreadable: Vec::new(),
            after: 0,
            scanned: 0,
            done: false,
        }
    }

    /// The id after which the next page of [`PAGE`] events starts, or `None` when picking is
    /// over.
    pub fn next_page(&self) -> Option<i64> {
        let over = self.done || self.picked.len() >= self.want || self.scanned >= MAX_SCAN;
        (!over).then_some(self.after)
    }

    /// Takes what it may from a page (events after [`Self::next_page`], by id).
    pub fn offer(&mut self, page: Vec<StoredEvent>) {
        let full_page = page.len() as i64 == PAGE;
        for row in page {
            self.scanned += 1;
            self.after = row.id;
            let order = (row.shop_id.clone(), row.order_id.clone());
            // The first event of an order holds back the later ones, even when it is excluded.
            if !self.blocked.insert(order) || self.exclude.contains(&row.id) {
                continue;
            }
            let id = row.id;
            let event = match row.read() {
                Ok(event) => event,
                Err(e) => {
                    self.unreadable
                        .push(Unreadable::new(id, EventState::Pending, &e));
                    continue;
                }
            };
            self.picked.push(event);
            if self.picked.len() == self.want {
                self.done = true;
                return;
            }
        }
        self.done |= !full_page;
    }

    /// The events picked, oldest first, each counting this delivery as an attempt; and those
    /// to dead-letter.
    pub fn picked(self) -> (Vec<QueuedEvent>, Vec<Unreadable>) {
        (self.picked, self.unreadable)
    }
}

/// One change of an event's state, recorded in its history when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    /// Only an event in this state changes.
    pub from: EventState,
    pub to: EventState,
    pub history: HistoryState,
    pub detail: String,
    /// The event's `last_error` afterwards.
    pub last_error: Option<String>,
    /// `Some`: the event's `mamut_ref` is set to this.
    pub mamut_ref: Option<Option<String>>,
}

/// The agent applied the event in Mamut.
pub(crate) fn acked(mamut_ref: Option<String>, already_applied: bool) -> Transition {
    let detail = match (&mamut_ref, already_applied) {
        (Some(r), false) => format!("applied in Mamut as {r}"),
        (Some(r), true) => format!("already in Mamut as {r}"),
        (None, _) => "applied in Mamut".to_owned(),
    };
    Transition {
        from: EventState::Pending,
        to: EventState::Delivered,
        history: HistoryState::Delivered,
        detail,
        last_error: None,
        mamut_ref: Some(mamut_ref),
    }
}

/// A delivery failed and is tried again: the event stays pending.
pub(crate) fn retried(reason: String) -> Transition {
    Transition {
        from: EventState::Pending,
        to: EventState::Pending,
        history: HistoryState::Retry,
        last_error: Some(reason.clone()),
        detail: reason,
        mamut_ref: None,
    }
}

/// A delivery failed for good: the event is dead until an operator replays it.
pub(crate) fn dead_lettered(reason: String) -> Transition {
    Transition {
        from: EventState::Pending,
        to: EventState::Dead,
        history: HistoryState::Dead,
        last_error: Some(reason.clone()),
        detail: reason,
        mamut_ref: None,
    }
}

/// A thin webhook's order was fetched (the backend also stores the full webhook).
pub(crate) fn enrichment(outcome: &Enriched) -> Transition {
    let (to, detail, last_error) = match outcome {
        Enriched::Deliver => (
            EventState::Pending,
            "order fetched from the shop".into(),
            None,
        ),
        Enriched::Ignore => (
            EventState::Ignored,
            "order fetched from the shop; its status by now is not a trigger status".into(),
            None,
        ),
        Enriched::Hold(reason) => (
            EventState::Held,
            format!("order fetched from the shop; {reason}"),
            Some(reason.clone()),
        ),
    };
    Transition {
        from: EventState::Fetching,
        to,
        history: to.into(),
        detail,
        last_error,
        mamut_ref: None,
    }
}

/// Fetching an order failed: tried again at `retry_at`, or given up (dead).
pub(crate) fn fetch_failure(retry_at: Option<DateTime<Utc>>) -> (EventState, HistoryState) {
    match retry_at {
        Some(_) => (EventState::Fetching, HistoryState::Retry),
        None => (EventState::Dead, HistoryState::Dead),
    }
}

/// Whether an operator may replay or edit (`what`) event `id` in `state` (`None`: the tenant
/// has no such event): only dead and held events wait for an operator.
pub(crate) fn operator_may(id: i64, state: Option<EventState>, what: &str) -> Result<()> {
    match state {
        None => Err(StoreError::NotFound(format!("event {id} not found"))),
        Some(EventState::Dead | EventState::Held) => Ok(()),
        Some(other) => Err(StoreError::Conflict(format!(
            "event {id} is {other}; only dead or held events can be {what}"
        ))),
    }
}

/// Where a replayed event goes, given its state and body (`None`: the tenant has no such
/// event): refused unless an operator may replay it; else a full webhook (an `order` object
/// in it) to the delivery queue, a thin one back to fetching its order.
pub(crate) fn replay(id: i64, found: Option<(EventState, String)>) -> Result<EventState> {
    let Some((state, payload)) = found else {
        return Err(StoreError::NotFound(format!("event {id} not found")));
    };
    operator_may(id, Some(state), "replayed")?;
    Ok(replay_target(&payload))
}

fn replay_target(payload: &str) -> EventState {
    let full = serde_json::from_str::<serde_json::Value>(payload)
        .is_ok_and(|body| body.get("order").is_some_and(serde_json::Value::is_object));
    if full {
        EventState::Pending
    } else {
        EventState::Fetching
    }
}

/// Where a push goes: its coalescing key, the order it is about, and the shops that take it.
pub(crate) struct FanOut<'a> {
    pub key: String,
    pub order_ref: Option<&'a str>,
    pub shops: Vec<&'a ShopId>,
}

pub(crate) fn fan_out<'a>(
    shops: &'a [ShopRecord],
    change: &'a Change,
    push_id: &str,
) -> Result<FanOut<'a>> {
    Ok(FanOut {
        key: coalescing_key(change, push_id)?,
        order_ref: super::types::order_ref(change),
        shops: shops
            .iter()
            .filter(|shop| takes(shop, change))
            .map(|shop| &shop.shop_id)
            .collect(),
    })
}

/// Adds `shops` to those woken by a batch of pushes, each once, in the order first woken.
pub(crate) fn wake(woken: &mut Vec<ShopId>, shops: impl IntoIterator<Item = ShopId>) {
    for shop in shops {
        if !woken.contains(&shop) {
            woken.push(shop);
        }
    }
}

/// A pending dispatch row read back, or why it cannot be sent (it is dead-lettered then:
/// stored by this relay, so this is not expected, and it stays visible).
pub(crate) fn dispatch_item(
    id: i64,
    payload: &str,
    version: i64,
    attempts: i64,
) -> Result<DispatchItem, String> {
    match serde_json::from_str::<Change>(payload) {
        Ok(change) => Ok(DispatchItem {
            id,
            change,
            version,
            attempts,
        }),
        Err(e) => Err(format!("the stored change cannot be read: {e}")),
    }
}

/// Whether dispatch item `id`, found in a state with its `row` (`None`: the tenant has no
/// such item), may be replayed; the row if it may.
pub(crate) fn may_replay_dispatch<T>(id: i64, found: Option<(DispatchState, T)>) -> Result<T> {
    match found {
        None => Err(StoreError::NotFound(format!(
            "dispatch item {id} not found"
        ))),
        Some((DispatchState::Dead, row)) => Ok(row),
        Some((other, _)) => Err(StoreError::Conflict(format!(
            "dispatch item {id} is {other}; only dead items can be replayed"
        ))),
    }
}

/// Why a dead dispatch item cannot be replayed: something newer for the same item (or the
/// same order) was sent or waits, and the older value would undo it.
pub(crate) fn newer_exists(newer: i64) -> StoreError {
    StoreError::Conflict(format!(
        "a newer change for the same item or order (dispatch item {newer}) was sent or is \
         waiting; replaying this older one would undo it"
    ))
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
