//! The typed values that cross the store's boundary and their stored text: event, history
//! and dispatch states, lease names, due times and timestamps. Each has one spelling in the
//! database (`as_str`/`Display`) and one parse, which reports stored text it does not know as
//! [`StoreError::Corrupt`] rather than guessing.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use shared::{ShopId, TenantId};

use super::Result;
use super::error::{StoreError, corrupt};

/// Declares a state enum with its stored spelling (also its JSON form).
macro_rules! stored_enum {
    (
        $(#[$meta:meta])* $name:ident, $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The text stored for it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The state spelled `value`, if there is one.
            pub fn parse(value: &str) -> Option<Self> {
                match value {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// A stored value read back; text this relay never writes is an error.
            pub(crate) fn stored(value: &str) -> Result<Self> {
                Self::parse(value).ok_or_else(|| corrupt($what, format!("{value:?}")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum! {
    /// Where an event is in its life.
    EventState, "event state" {
        /// A thin webhook: the order is being fetched from the shop before delivery.
        Fetching = "fetching",
        /// Waiting for (or in) delivery to the tenant's agent.
        Pending = "pending",
        /// Applied in Mamut and acknowledged by the agent.
        Delivered = "delivered",
        /// Received, but its order status is not one of the shop's trigger statuses.
        Ignored = "ignored",
        /// Refused permanently by the agent; waits for an operator's replay.
        Dead = "dead",
        /// The order is invalid (see [`crate::validate`]): not delivered; waits for an
        /// operator's edit and replay.
        Held = "held",
    }
}

stored_enum! {
    /// What an entry of an event's history records: the state it moved to, or a step that
    /// kept its state.
    HistoryState, "history state" {
        Fetching = "fetching",
        Pending = "pending",
        Delivered = "delivered",
        Ignored = "ignored",
        Dead = "dead",
        Held = "held",
        /// A failure that will be tried again.
        Retry = "retry",
        /// An operator replaced the body.
        Edited = "edited",
    }
}

impl From<EventState> for HistoryState {
    fn from(state: EventState) -> Self {
        match state {
            EventState::Fetching => HistoryState::Fetching,
            EventState::Pending => HistoryState::Pending,
            EventState::Delivered => HistoryState::Delivered,
            EventState::Ignored => HistoryState::Ignored,
            EventState::Dead => HistoryState::Dead,
            EventState::Held => HistoryState::Held,
        }
    }
}

stored_enum! {
    /// Where a change on its way to a shop is.
    DispatchState, "dispatch state" {
        /// Waiting to be sent (or being sent).
        Pending = "pending",
        /// The shop applied it.
        Done = "done",
        /// Refused permanently, or out of attempts; waits for an operator's replay.
        Dead = "dead",
        /// A dead row that a newer value of the same item, applied since, made moot.
        Superseded = "superseded",
    }
}

/// Work that one holder does at a time, stored as `tenant:<id>` or `shop:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lease {
    /// Delivering a tenant's queue to its agent.
    Tenant(TenantId),
    /// Dispatching a shop's changes.
    Shop(ShopId),
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lease::Tenant(tenant) => write!(f, "tenant:{tenant}"),
            Lease::Shop(shop) => write!(f, "shop:{shop}"),
        }
    }
}

impl std::str::FromStr for Lease {
    type Err = StoreError;

    fn from_str(name: &str) -> Result<Self> {
        let invalid = |e: &dyn fmt::Display| corrupt("lease name", format!("{name:?}: {e}"));
        match name.split_once(':') {
            Some(("tenant", id)) => TenantId::new(id)
                .map(Lease::Tenant)
                .map_err(|e| invalid(&e)),
            Some(("shop", id)) => ShopId::new(id).map(Lease::Shop).map_err(|e| invalid(&e)),
            _ => Err(invalid(&"neither tenant:… nor shop:…")),
        }
    }
}

/// When waiting work is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At once: nothing has put it off.
    Now,
    /// At this time (which may have passed already).
    At(DateTime<Utc>),
}

/// Timestamps are stored (on SQLite) and shown as RFC 3339 text in UTC with microseconds.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn now() -> String {
    timestamp(Utc::now())
}

/// A stored timestamp read back.
pub(crate) fn parse_time(value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt("timestamp", format!("{value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_what_they_store_and_refuse_other_text() {
        for state in [EventState::Fetching, EventState::Held, EventState::Dead] {
            assert_eq!(EventState::stored(state.as_str()).ok(), Some(state));
        }
        assert_eq!(
            DispatchState::stored("superseded").ok(),
            Some(DispatchState::Superseded)
        );
        assert!(matches!(
            EventState::stored("pendng"),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(HistoryState::from(EventState::Held), HistoryState::Held);
    }

    #[test]
    fn leases_are_named_as_they_were_stored() {
        let tenant = Lease::Tenant(TenantId::new("acme").expect("valid"));
        assert_eq!(tenant.to_string(), "tenant:acme");
        let shop: Lease = "shop:erp-se".parse().expect("a shop lease");
        assert_eq!(shop, Lease::Shop(ShopId::new("erp-se").expect("valid")));
        assert_eq!("tenant:acme".parse::<Lease>().ok(), Some(tenant));
        assert!("acme".parse::<Lease>().is_err());
        assert!("order:1".parse::<Lease>().is_err());
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let at = parse_time("2026-01-02T03:04:05.123456Z").expect("valid");
        assert_eq!(timestamp(at), "2026-01-02T03:04:05.123456Z");
        assert!(parse_time("yesterday").is_err());
    }
}
