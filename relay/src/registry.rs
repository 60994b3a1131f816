//! Connected agents, one session per tenant, so a new event wakes the right connection at
//! once instead of waiting for a poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use shared::{AgentId, TenantId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Entry {
    session: u64,
    holder: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

/// What a session holds to be woken and, when a newer session of its tenant arrives, stopped.
pub struct Registration {
    pub session: u64,
    /// Unique over all relay instances: the holder of the tenant's delivery lease.
    pub holder: String,
    pub wake: Arc<Notify>,
    pub cancel: CancellationToken,
}

impl Registration {
    /// A registration outside the registry: stopped only by shutdown, never woken.
    pub fn detached(parent: &CancellationToken) -> Self {
        Self {
            session: u64::MAX,
            holder: uuid::Uuid::new_v4().to_string(),
            wake: Arc::new(Notify::new()),
            cancel: parent.child_token(),
        }
    }
}

pub struct Registry {
    sessions: DashMap<TenantId, Entry>,
    /// Every session here (delivery and sync), by its agent: revoking the agent ends them.
    agents: Arc<DashMap<u64, (AgentId, CancellationToken)>>,
    next: AtomicU64,
    /// This relay instance: the prefix of its sessions' lease holders.
    instance: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            sessions: DashMap::new(),
            agents: Arc::new(DashMap::new()),
            next: AtomicU64::new(0),
            instance: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// A session's watch on its agent's revocation; leaves the registry when dropped.
pub struct RevocationWatch {
    id: u64,
    agents: Arc<DashMap<u64, (AgentId, CancellationToken)>>,
    /// Cancelled when the agent is revoked through this instance.
    pub revoked: CancellationToken,
}

impl Drop for RevocationWatch {
    fn drop(&mut self) {
        self.agents.remove(&self.id);
    }
}

impl Registry {
    /// Watches for `agent`'s revocation for as long as the returned watch lives.
    pub fn watch_revocation(&self, agent: &AgentId) -> RevocationWatch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let revoked = CancellationToken::new();
        self.agents.insert(id, (agent.clone(), revoked.clone()));
        RevocationWatch {
            id,
            agents: self.agents.clone(),
            revoked,
        }
    }

    /// Ends every session of `agent` here (its token was revoked); returns how many.
    pub fn revoke(&self, agent: &AgentId) -> usize {
        let mut ended = 0;
        for entry in self.agents.iter() {
            if &entry.value().0 == agent {
                entry.value().1.cancel();
                ended += 1;
            }
        }
        ended
    }

    /// Registers a new session for `tenant`; a session already there is told to stop (the
    /// newest connection wins, e.g. after the agent reconnected over a half-dead link).
    /// A lease holder name for a new session of this instance.
    pub fn new_holder(&self) -> String {
        format!("{}/{}", self.instance, uuid::Uuid::new_v4())
    }

    /// Registers a new session (`holder`, from [`Registry::new_holder`]) for `tenant`.
    pub fn register(
        &self,
        tenant: &TenantId,
        holder: String,
        parent: &CancellationToken,
    ) -> Registration {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let cancel = parent.child_token();
        let entry = Entry {
            session,
            holder: holder.clone(),
            wake: wake.clone(),
            cancel: cancel.clone(),
        };
        if let Some(old) = self.sessions.insert(tenant.clone(), entry) {
            tracing::warn!(%tenant, "a newer agent session replaces the current one");
            old.cancel.cancel();
        }
        Registration {
            session,
            holder,
            wake,
            cancel,
        }
    }

    /// The prefix every lease holder of this instance's sessions starts with.
    pub fn holder_prefix(&self) -> String {
        format!("{}/", self.instance)
    }

    /// This relay instance's id (also the holder of its shop leases).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The sessions here: tenant and lease holder.
    pub fn sessions(&self) -> Vec<(TenantId, String)> {
        self.sessions
            .iter()
            .map(|e| (e.key().clone(), e.holder.clone()))
            .collect()
    }

    /// The lease holder of the tenant's session here, if one is connected.
    pub fn holder(&self, tenant: &TenantId) -> Option<String> {
        self.sessions.get(tenant).map(|e| e.holder.clone())
    }

    /// Ends the tenant's session here if it is still the one of `holder`: its delivery lease
    /// went to another session.
    pub fn lost_lease(&self, tenant: &TenantId, holder: &str) {
        if let Some(entry) = self.sessions.get(tenant)
            && entry.holder == holder
        {
            tracing::warn!(%tenant, "another session of this tenant holds its delivery lease; ending this one");
            entry.cancel.cancel();
        }
    }

    /// Removes the session, unless a newer one has replaced it already.
    pub fn unregister(&self, tenant: &TenantId, session: u64) {
        self.sessions
            .remove_if(tenant, |_, entry| entry.session == session);
    }

    /// Wakes the tenant's session, if one is connected.
    pub fn wake(&self, tenant: &TenantId) {
        if let Some(entry) = self.sessions.get(tenant) {
            entry.wake.notify_one();
        }
    }

    pub fn is_connected(&self, tenant: &TenantId) -> bool {
        self.sessions.contains_key(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_an_agent_ends_its_sessions_only() {
        let registry = Registry::default();
        let alice = AgentId::new("alice").expect("valid");
        let bob = AgentId::new("bob").expect("valid");
        let first = registry.watch_revocation(&alice);
        let second = registry.watch_revocation(&alice);
        let other = registry.watch_revocation(&bob);
        assert_eq!(registry.revoke(&alice), 2);
        assert!(first.revoked.is_cancelled() && second.revoked.is_cancelled());
        assert!(!other.revoked.is_cancelled());
        drop((first, second));
        assert_eq!(registry.revoke(&alice), 0);
    }

    #[test]
    fn a_newer_session_stops_the_older_one_and_survives_its_unregister() {
        let registry = Registry::default();
        let root = CancellationToken::new();
        let tenant = TenantId::new("acme").expect("valid");
        let first = registry.register(&tenant, registry.new_holder(), &root);
        let second = registry.register(&tenant, registry.new_holder(), &root);
        assert!(first.cancel.is_cancelled());
        assert!(!second.cancel.is_cancelled());
        registry.unregister(&tenant, first.session);
        assert!(registry.is_connected(&tenant));
        registry.unregister(&tenant, second.session);
        assert!(!registry.is_connected(&tenant));
    }
}
