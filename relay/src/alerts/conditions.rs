//! The alert conditions and when each holds, as pure functions of a tenant's
//! [`AlertFacts`], its [`AlertSettings`] and the time, so they are tested without a store.
//!
//! - `dead_letters`: events wait in the dead-letter list (open until none remain).
//! - `agent_offline`: no agent of the tenant online for `agent_offline_minutes`; an agent is
//!   online while its session is not ended and was seen in the last two minutes. A tenant
//!   that never had an agent connected is not alerted.
//! - `queue_age`: the oldest event waiting for delivery is older than `queue_age_minutes`.
//! - `shop_refusing:<shop>`: one of the shop's changes failed `shop_refusing_failures` times
//!   in a row, or one went to the dead-letter list in the last hour.

use chrono::{DateTime, Duration, Utc};
use shared::ShopId;

use super::settings::AlertSettings;
use crate::store::{AgentPresence, AlertFacts};

/// A session not seen for this long counts as gone even if it was never ended.
pub const ONLINE_WITHIN: Duration = Duration::minutes(2);

/// How far back a shop's dead changes count as "keeps refusing".
pub const REFUSING_WINDOW: Duration = Duration::hours(1);

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    DeadLetters,
    AgentOffline,
    QueueAge,
    ShopRefusing(ShopId),
    /// Sent on request from the admin API; never stored.
    Test,
}

impl Condition {
    /// The name stored in `alerts.condition` and sent in webhooks.
    pub fn key(&self) -> String {
        match self {
            Condition::DeadLetters => "dead_letters".into(),
            Condition::AgentOffline => "agent_offline".into(),
            Condition::QueueAge => "queue_age".into(),
            Condition::ShopRefusing(shop) => format!("shop_refusing:{shop}"),
            Condition::Test => "test".into(),
        }
    }

    /// The condition stored as `key`, if this relay knows it.
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "dead_letters" => Some(Condition::DeadLetters),
            "agent_offline" => Some(Condition::AgentOffline),
            "queue_age" => Some(Condition::QueueAge),
            "test" => Some(Condition::Test),
            _ => key
                .strip_prefix("shop_refusing:")
                .and_then(|shop| ShopId::new(shop).ok())
                .map(Condition::ShopRefusing),
        }
    }
}

/// A condition that holds now, with what was seen (the message's arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub condition: Condition,
    pub seen: Seen,
}

/// What was seen when a condition held.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    DeadLetters { count: u64 },
    AgentOffline { since: DateTime<Utc>, minutes: i64 },
    QueueAge { since: DateTime<Utc>, minutes: i64 },
    ShopRefusing { failures: u32, dead: u64 },
}

/// The conditions of a tenant that hold at `now`.
pub fn firing(facts: &AlertFacts, settings: &AlertSettings, now: DateTime<Utc>) -> Vec<Firing> {
    let mut out = Vec::new();
    if settings.dead_letters && facts.dead_letters > 0 {
        out.push(Firing {
            condition: Condition::DeadLetters,
            seen: Seen::DeadLetters {
                count: facts.dead_letters,
            },
        });
    }
    if let Some(since) = offline_since(&facts.agents, now)
        && now - since >= minutes(settings.agent_offline_minutes)
    {
        out.push(Firing {
            condition: Condition::AgentOffline,
            seen: Seen::AgentOffline {
                since,
                minutes: (now - since).num_minutes(),
            },
        });
    }
    if let Some(since) = facts.oldest_pending
        && now - since >= minutes(settings.queue_age_minutes)
    {
        out.push(Firing {
            condition: Condition::QueueAge,
            seen: Seen::QueueAge {
                since,
                minutes: (now - since).num_minutes(),
            },
        });
    }
    for shop in &facts.refusing_shops {
        if shop.failures_in_a_row >= settings.shop_refusing_failures || shop.dead_recently > 0 {
            out.push(Firing {
                condition: Condition::ShopRefusing(shop.shop_id.clone()),
                seen: Seen::ShopRefusing {
                    failures: shop.failures_in_a_row,
                    dead: shop.dead_recently,
                },
            });
        }
    }
    out
}

/// Since when no agent of the tenant is online, if none is (and one ever connected).
pub fn offline_since(agents: &AgentPresence, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !agents.ever_connected {
        return None;
    }
    if agents
        .open_last_seen
        .is_some_and(|seen| now - seen < ONLINE_WITHIN)
    {
        return None;
    }
    agents.open_last_seen.max(agents.last_ended)
}

fn minutes(value: f64) -> Duration {
    Duration::milliseconds((value * 60_000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ShopRefusal;

    fn at(minutes_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::minutes(minutes_ago)
    }

    #[test]
    fn conditions_hold_past_their_thresholds_only() {
        let now = Utc::now();
        let settings = AlertSettings::default();
        let quiet = AlertFacts::default();
        assert!(firing(&quiet, &settings, now).is_empty());

        let facts = AlertFacts {
            dead_letters: 2,
            oldest_pending: Some(at(31, now)),
            agents: AgentPresence {
                ever_connected: true,
                open_last_seen: None,
                last_ended: Some(at(11, now)),
            },
            refusing_shops: vec![ShopRefusal {
                shop_id: ShopId::new("erp-se").expect("valid"),
                failures_in_a_row: 5,
                dead_recently: 0,
            }],
        };
        let keys: Vec<String> = firing(&facts, &settings, now)
            .iter()
            .map(|f| f.condition.key())
            .collect();
        assert_eq!(
            keys,
            [
                "dead_letters",
                "agent_offline",
                "queue_age",
                "shop_refusing:erp-se"
            ]
        );

        let off = AlertSettings {
            dead_letters: false,
            agent_offline_minutes: 12.0,
            queue_age_minutes: 32.0,
            shop_refusing_failures: 6,
            ..Default::default()
        };
        assert!(firing(&facts, &off, now).is_empty());
    }

    #[test]
    fn an_agent_is_online_while_its_open_session_was_seen_lately() {
        let now = Utc::now();
        let never = AgentPresence::default();
        assert_eq!(
            offline_since(&never, now),
            None,
            "never connected: no alert"
        );
        let online = AgentPresence {
            ever_connected: true,
            open_last_seen: Some(at(1, now)),
            last_ended: Some(at(30, now)),
        };
        assert_eq!(offline_since(&online, now), None);
        let stale = AgentPresence {
            open_last_seen: Some(at(5, now)),
            ..online.clone()
        };
        assert_eq!(offline_since(&stale, now), Some(at(5, now)));
        let gone = AgentPresence {
            open_last_seen: None,
            ..online
        };
        assert_eq!(offline_since(&gone, now), Some(at(30, now)));
    }

    #[test]
    fn condition_keys_read_back() {
        for condition in [
            Condition::DeadLetters,
            Condition::AgentOffline,
            Condition::QueueAge,
            Condition::ShopRefusing(ShopId::new("erp-se").expect("valid")),
        ] {
            assert_eq!(Condition::parse(&condition.key()), Some(condition));
        }
        assert_eq!(Condition::parse("colour"), None);
    }
}
