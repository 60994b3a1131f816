//! Agent sessions: one row per connection of an agent to a relay instance, opened when the
//! relay accepts the agent's hello, touched while it lives (at most every
//! [`TOUCH_EVERY`]), closed when it ends. The console lists them and the alerts read them to
//! tell whether a tenant's agent is connected.
//!
//! A relay instance that crashed cannot close its sessions: their `ended_at` stays empty. A
//! reader therefore takes a session whose `last_seen_at` is older than [`STALE_AFTER`] as
//! ended ([`AgentSessionRecord::is_live`]). Ended sessions are kept; nothing deletes them yet.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::{AgentId, TenantId};

use super::any::each;
use super::{AgentRecord, AnyStore, Result};

/// How often a live session's `last_seen_at` is written, at most.
pub const TOUCH_EVERY: Duration = Duration::from_secs(30);

/// A session not seen for this long is offline, whatever its `ended_at` says (its relay
/// instance may have crashed before closing it).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Most sessions one read returns.
pub const MAX_SESSIONS: u32 = 1000;

/// Most agents one read returns of a tenant (and newest sessions, one per agent).
pub const MAX_AGENTS: u32 = 1000;

/// One connection of an agent, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSessionRecord {
    pub id: i64,
    pub agent_id: AgentId,
    pub tenant_id: TenantId,
    /// The relay instance that held the connection.
    pub instance: String,
    /// The version the agent announced in its hello.
    pub agent_version: String,
    /// The agent's peer address as the relay saw it, when known.
    pub address: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl AgentSessionRecord {
    /// Whether the agent is connected by this session at `now`: not ended, and seen within
    /// [`STALE_AFTER`].
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        let stale = chrono::Duration::from_std(STALE_AFTER).unwrap_or(chrono::Duration::MAX);
        self.ended_at.is_none() && now.signed_duration_since(self.last_seen_at) <= stale
    }
}

impl AnyStore {
    /// Records that `agent` connected; returns the session's id for
    /// [`Self::touch_agent_session`] and [`Self::close_agent_session`].
    pub async fn open_agent_session(
        &self,
        agent: AgentId,
        tenant: TenantId,
        instance: String,
        agent_version: String,
        address: Option<String>,
    ) -> Result<i64> {
        each!(self, s => s.open_agent_session(agent, tenant, instance, agent_version, address))
    }

    /// The session is still alive (sets `last_seen_at` to now); a no-op once ended.
    pub async fn touch_agent_session(&self, id: i64) -> Result<()> {
        each!(self, s => s.touch_agent_session(id))
    }

    /// The session ended (sets `ended_at` and `last_seen_at` to now, once).
    pub async fn close_agent_session(&self, id: i64) -> Result<()> {
        each!(self, s => s.close_agent_session(id))
    }

    /// A tenant's sessions, newest first, at most `limit` (capped at [`MAX_SESSIONS`]).
    pub async fn agent_sessions(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<AgentSessionRecord>> {
        let limit = limit.min(MAX_SESSIONS);
        each!(self, s => s.agent_sessions(tenant, limit))
    }

    /// The newest session of each of a tenant's agents (one per agent, however often the
    /// others reconnected), newest first, at most [`MAX_AGENTS`].
    pub async fn latest_agent_sessions(&self, tenant: TenantId) -> Result<Vec<AgentSessionRecord>> {
        each!(self, s => s.latest_agent_sessions(tenant, MAX_AGENTS))
    }

    /// A tenant's agents, the live ones first (so none is cut off behind revoked ones, and
    /// counting the live ones is exact), each oldest first, at most [`MAX_AGENTS`].
    pub async fn agents(&self, tenant: TenantId) -> Result<Vec<AgentRecord>> {
        each!(self, s => s.agents(tenant, MAX_AGENTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last_seen_secs_ago: i64, ended: bool) -> AgentSessionRecord {
        let now = Utc::now();
        AgentSessionRecord {
            id: 1,
            agent_id: AgentId::new("agt-1").expect("valid id"),
            tenant_id: TenantId::new("t1").expect("valid id"),
            instance: "relay-1".into(),
            agent_version: "1.0.0".into(),
            address: None,
            connected_at: now,
            last_seen_at: now - chrono::Duration::seconds(last_seen_secs_ago),
            ended_at: ended.then_some(now),
        }
    }

    #[test]
    fn a_session_is_live_until_it_ends_or_goes_unseen_for_two_minutes() {
        let now = Utc::now();
        assert!(session(10, false).is_live(now));
        assert!(!session(10, true).is_live(now));
        assert!(!session(121, false).is_live(now));
    }
}
