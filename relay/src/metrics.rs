//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long `/readyz` answers 503 after a webhook could not be stored, unless one is stored
/// meanwhile. Then a load balancer sends webhooks here again, and one more failure makes the
/// instance unready again: a store that cannot write (a full disk, a read-only database) takes
/// the instance out of rotation without keeping it out once it recovers.
pub const UNREADY_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(30);

/// A limit that refuses something, counted in `relay_refused_total{limit="…"}` (each one is
/// in README.md's table of limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A webhook body over `max_body_bytes` (413).
    BodyBytes,
    /// A webhook id over 256 or an order id over 128 characters (400).
    WebhookFields,
    /// A tenant's queue at `max_queued_per_tenant` (503 with `Retry-After`).
    QueuedPerTenant,
    /// A request not answered within 30 s (408).
    RequestTimeout,
    /// A request beyond [`crate::in_flight::MAX_REQUESTS_IN_FLIGHT`] served at once (503).
    RequestsInFlight,
    /// A WebSocket message over 1 MiB (close 1009).
    MessageBytes,
    /// No hello within 10 s of the WebSocket upgrade (close 1002).
    HelloTimeout,
    /// An agent silent (no heartbeat or answer) for three heartbeats (close 1011).
    AgentSilent,
    /// An agent that reads nothing: one message not written in three heartbeats (close 1011).
    WriteStall,
}

impl Limit {
    const ALL: [Limit; 9] = [
        Limit::BodyBytes,
        Limit::WebhookFields,
        Limit::QueuedPerTenant,
        Limit::RequestTimeout,
        Limit::RequestsInFlight,
        Limit::MessageBytes,
        Limit::HelloTimeout,
        Limit::AgentSilent,
        Limit::WriteStall,
    ];

    fn label(self) -> &'static str {
        match self {
            Limit::BodyBytes => "max_body_bytes",
            Limit::WebhookFields => "webhook_fields",
            Limit::QueuedPerTenant => "max_queued_per_tenant",
            Limit::RequestTimeout => "request_timeout",
            Limit::RequestsInFlight => "max_requests_in_flight",
            Limit::MessageBytes => "max_message_bytes",
            Limit::HelloTimeout => "hello_timeout",
            Limit::AgentSilent => "agent_silence",
            Limit::WriteStall => "write_stall",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    refused: [AtomicU64; Limit::ALL.len()],
    webhooks_rejected: AtomicU64,
    webhooks_stored: AtomicU64,
    orders_held: AtomicU64,
    agent_sessions: AtomicU64,
    connections_refused: AtomicU64,
    connections_timed_out: AtomicU64,
    store_write_failures: AtomicU64,
    /// When the last webhook could not be stored, if none has been stored since.
    write_failed_at: Mutex<Option<Instant>>,
    /// Alert notifications sent and failed.
    pub alerts: crate::alerts::AlertMetrics,
}

impl Metrics {
    /// Something refused by `limit`.
    pub fn refused(&self, limit: Limit) {
        if let Some(i) = Limit::ALL.iter().position(|l| *l == limit) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected(&self) {
        self.webhooks_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stored(&self) {
        self.webhooks_stored.fetch_add(1, Ordering::Relaxed);
    }

    /// A webhook could not be stored (the store failed, not the request).
    pub fn store_write_failed(&self) {
        self.store_write_failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut at) = self.write_failed_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// A webhook was stored: the store writes again.
    pub fn store_write_succeeded(&self) {
        if let Ok(mut at) = self.write_failed_at.lock()
            && at.is_some()
        {
            *at = None;
        }
    }

    /// Whether the last webhook write failed less than [`UNREADY_AFTER_WRITE_FAILURE`] ago
    /// and none has succeeded since.
    pub fn store_writes_failing(&self) -> bool {
        self.write_failed_at
            .lock()
            .ok()
            .is_some_and(|at| at.is_some_and(|at| at.elapsed() < UNREADY_AFTER_WRITE_FAILURE))
    }

    /// An order stored but held: it is invalid.
    pub fn held(&self) {
        self.orders_held.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_started(&self) {
        self.agent_sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self) {
        self.agent_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection closed at once because `max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed by the header or idle timeout.
    pub fn connection_timed_out(&self) {
        self.connections_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "relay_webhooks_rejected_total",
            "counter",
            "Webhooks refused (signature, body) and not stored.",
            self.webhooks_rejected.load(Ordering::Relaxed),
        );
        line(
            "relay_webhooks_stored_total",
            "counter",
            "Webhooks committed to the store (new events).",
            self.webhooks_stored.load(Ordering::Relaxed),
        );
        line(
            "relay_orders_held_total",
            "counter",
            "Orders stored but held for an operator because they are invalid.",
            self.orders_held.load(Ordering::Relaxed),
        );
        line(
            "relay_store_write_failures_total",
            "counter",
            "Webhooks answered 5xx because the store could not write them.",
            self.store_write_failures.load(Ordering::Relaxed),
        );
        line(
            "relay_agent_sessions",
            "gauge",
            "Agent sessions connected to this instance.",
            self.agent_sessions.load(Ordering::Relaxed),
        );
        line(
            "relay_connections_refused_total",
            "counter",
            "Connections closed at once because max_connections were open.",
            self.connections_refused.load(Ordering::Relaxed),
        );
        line(
            "relay_connections_timed_out_total",
            "counter",
            "HTTP connections closed by the header or idle timeout.",
            self.connections_timed_out.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP relay_refused_total Requests, connections and messages refused by a limit \
             (README.md, Limits).\n# TYPE relay_refused_total counter"
        );
        for (limit, count) in Limit::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "relay_refused_total{{limit=\"{}\"}} {}",
                limit.label(),
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str(&self.alerts.render());
        out
    }
}
