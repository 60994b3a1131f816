//! The queue's rules, the same for both databases: which pending events a delivery takes,
//! what each outcome does to an event and writes in its history, what an operator may replay
//! or edit, how a push fans out to shops and when a dead dispatch row may go again. Pure
//! functions over values read in the backend's transaction; each backend keeps only its SQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use shared::ShopId;
use shared::domain::Change;

use super::Result;
use super::error::StoreError;
use super::state::{DispatchState, EventState, HistoryState};
use super::types::{DispatchItem, Enriched, QueuedEvent, ShopRecord, coalescing_key, takes};

/// Pending events read per query while picking deliveries.
pub(crate) const PAGE: i64 = 500;

/// Most pending events one picking looks at (the rest wait for the next).
const MAX_SCAN: usize = 20_000;

/// Picks events for delivery from pages of a tenant's pending events, oldest first: at most
/// one per shop order, none of an order in `blocked` (an earlier event of it is in flight or
/// still fetching), none in `exclude` (in flight already), at most `want`.
pub(crate) struct DeliveryPicker {
    exclude: HashSet<i64>,
    blocked: HashSet<(String, String)>,
    want: usize,
    picked: Vec<QueuedEvent>,
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
    pub fn offer(&mut self, page: Vec<QueuedEvent>) {
        let full_page = page.len() as i64 == PAGE;
        for event in page {
            self.scanned += 1;
            self.after = event.id;
            let order = (event.shop_id.to_string(), event.order_id.clone());
            // The first event of an order holds back the later ones, even when it is excluded.
            if !self.blocked.insert(order) || self.exclude.contains(&event.id) {
                continue;
            }
            self.picked.push(event);
            if self.picked.len() == self.want {
                self.done = true;
                return;
            }
        }
        self.done |= !full_page;
    }

    /// The events picked, oldest first, each counting this delivery as an attempt.
    pub fn picked(self) -> Vec<QueuedEvent> {
        self.picked
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
