//! The credit window: the deliveries an agent has not acknowledged yet (at most its credit),
//! and the ones waiting to be retried after a retryable nack. An order with a delivery in
//! either is blocked: its next event waits, so one order's events arrive in order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// A shop and one of its orders.
pub(super) type OrderKey = (String, String);

struct InFlight {
    order: OrderKey,
    sent_at: Instant,
    attempt: i64,
}

struct Retry {
    order: OrderKey,
    at: Instant,
}

pub(super) struct CreditWindow {
    credit: u32,
    in_flight: HashMap<u64, InFlight>,
    retries: HashMap<u64, Retry>,
}

impl CreditWindow {
    pub(super) fn new(credit: u32) -> Self {
        Self {
            credit,
            in_flight: HashMap::new(),
            retries: HashMap::new(),
        }
    }

    /// How many more deliveries may be sent now.
    pub(super) fn room(&self) -> usize {
        (self.credit as usize).saturating_sub(self.in_flight.len())
    }

    /// The events in flight or waiting for a retry: not to be sent again now.
    pub(super) fn busy_events(&self) -> HashSet<i64> {
        self.in_flight
            .keys()
            .chain(self.retries.keys())
            .filter_map(|s| i64::try_from(*s).ok())
            .collect()
    }

    /// The orders with an event in flight or waiting for a retry.
    pub(super) fn blocked_orders(&self) -> impl Iterator<Item = OrderKey> + '_ {
        self.in_flight
            .values()
            .map(|f| f.order.clone())
            .chain(self.retries.values().map(|r| r.order.clone()))
    }

    /// Notes a delivery sent.
    pub(super) fn sent(&mut self, seq: u64, order: OrderKey, attempt: i64) {
        self.in_flight.insert(
            seq,
            InFlight {
                order,
                sent_at: Instant::now(),
                attempt,
            },
        );
    }

    /// The agent acknowledged `seq`.
    pub(super) fn acked(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
    }

    /// The agent refused `seq`; `retryable` keeps its order blocked until the retry is due
    /// ([`retry_delay`] after its attempt). False when `seq` was not in flight.
    pub(super) fn nacked(&mut self, seq: u64, retryable: bool) -> bool {
        let Some(flight) = self.in_flight.remove(&seq) else {
            return false;
        };
        if retryable {
            self.retries.insert(
                seq,
                Retry {
                    order: flight.order,
                    at: Instant::now() + retry_delay(flight.attempt),
                },
            );
        }
        true
    }

    /// Deliveries without an ack within `ack_timeout` go back to the queue; retries whose
    /// time has come are released. Returns whether anything was released.
    pub(super) fn expire(&mut self, ack_timeout: Duration) -> bool {
        let before = self.in_flight.len() + self.retries.len();
        self.in_flight.retain(|seq, flight| {
            let keep = flight.sent_at.elapsed() < ack_timeout;
            if !keep {
                tracing::warn!(seq, "no ack within the timeout, sending again");
            }
            keep
        });
        let now = Instant::now();
        self.retries.retain(|_, retry| retry.at > now);
        self.in_flight.len() + self.retries.len() < before
    }
}

/// Backoff after a retryable failure: 1 s after the first attempt, doubling, at most 60 s.
fn retry_delay(attempt: i64) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 6) as u32;
    (Duration::from_secs(1) * 2u32.pow(exponent)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str) -> OrderKey {
        ("shop".into(), id.into())
    }

    #[test]
    fn retries_back_off_from_one_second_doubling_up_to_a_minute() {
        let delays: Vec<u64> = (0..9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(i64::MAX), Duration::from_secs(60));
    }

    #[test]
    fn the_window_holds_the_credit_and_blocks_orders_until_acked_or_retried() {
        let mut window = CreditWindow::new(2);
        assert_eq!(window.room(), 2);
        window.sent(1, order("A"), 1);
        window.sent(2, order("B"), 1);
        assert_eq!(window.room(), 0);
        assert_eq!(window.busy_events(), HashSet::from([1, 2]));

        window.acked(1);
        assert_eq!(window.room(), 1);
        assert!(window.nacked(2, true));
        assert!(
            !window.nacked(2, true),
            "a nack for a delivery not in flight"
        );
        // The retried order stays blocked, but takes no credit.
        assert_eq!(window.room(), 2);
        assert_eq!(
            window.blocked_orders().collect::<Vec<_>>(),
            vec![order("B")]
        );
        assert_eq!(window.busy_events(), HashSet::from([2]));
    }

    #[test]
    fn unacknowledged_deliveries_are_released_and_retries_wait_for_their_time() {
        let mut window = CreditWindow::new(4);
        window.sent(1, order("A"), 1);
        window.sent(2, order("B"), 2);
        assert!(window.nacked(2, true));
        assert!(!window.expire(Duration::from_secs(30)));
        // Past the ack timeout the delivery goes back to the queue; the retry (due after 2 s)
        // still blocks its order.
        assert!(window.expire(Duration::ZERO));
        assert_eq!(window.busy_events(), HashSet::from([2]));
        assert_eq!(window.room(), 4);
        assert_eq!(
            window.blocked_orders().collect::<Vec<_>>(),
            vec![order("B")]
        );
    }
}
