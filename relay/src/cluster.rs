//! Several relay instances on one PostgreSQL database: notices between them, the sweeps that
//! catch what a lost notice would have woken, and the delivery leases that decide which
//! instance's session delivers a tenant's events.
//!
//! With SQLite there is one instance: notices stay local and only the lease renewal runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shared::TenantId;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::AppState;
use crate::store::{Lease, Notice};

/// Most distinct notices sent in one go.
const BATCH: usize = 1024;

impl AppState {
    /// Acts on news here and tells the other relay instances (on PostgreSQL). Telling is best
    /// effort and coalesced (see `tell_others`); the periodic sweeps catch what a lost
    /// notice would have woken.
    pub async fn announce(&self, notice: Notice) {
        self.wake_locally(&notice);
        if self.store.notices().is_some() && self.outbox.try_send(notice).is_err() {
            tracing::debug!("notice outbox full; the sweeps catch up");
        }
    }

    /// Wakes whatever here the news concerns. A session notice is checked against the
    /// tenant's lease by `check_session` instead.
    pub fn wake_locally(&self, notice: &Notice) {
        match notice {
            Notice::Event { tenant } => self.registry.wake(tenant),
            Notice::Dispatch { shop } => self.dispatcher.wake(shop),
            Notice::Fetch => self.enricher.wake(),
            Notice::Session { .. } => {}
            Notice::Revoked { agent } => {
                let ended = self.registry.revoke(agent);
                if ended > 0 {
                    tracing::info!(%agent, sessions = ended, "agent revoked; its sessions here end");
                }
            }
        }
    }
}

/// Starts the coordination tasks on `tasks`: each ends when the relay shuts down, so the
/// caller's drain waits for them.
pub(crate) fn start(state: &Arc<AppState>, outbox: mpsc::Receiver<Notice>, tasks: &TaskTracker) {
    tasks.spawn(tell_others(state.clone(), outbox));
    if let Some(notices) = state.store.notices() {
        tasks.spawn(listen_to_others(state.clone(), notices));
    }
    tasks.spawn(sweeps(state.clone()));
}

/// Sends the notices waiting in the outbox to the other instances, each distinct one once:
/// a burst of webhooks for one tenant costs one `NOTIFY`, not one per webhook. At shutdown
/// the ones already waiting are still sent (within the relay's drain timeout).
async fn tell_others(state: Arc<AppState>, mut outbox: mpsc::Receiver<Notice>) {
    loop {
        let first = tokio::select! {
            () = state.shutdown.cancelled() => {
                if let Ok(first) = outbox.try_recv() {
                    send_notices(&state, first, &mut outbox).await;
                }
                return;
            }
            notice = outbox.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
        };
        send_notices(&state, first, &mut outbox).await;
    }
}

/// Sends `first` and the distinct notices waiting behind it (at most [`BATCH`]).
async fn send_notices(state: &AppState, first: Notice, outbox: &mut mpsc::Receiver<Notice>) {
    let mut waiting = vec![first];
    while waiting.len() < BATCH {
        match outbox.try_recv() {
            Ok(notice) => {
                if !waiting.contains(&notice) {
                    waiting.push(notice);
                }
            }
            Err(_) => break,
        }
    }
    for notice in waiting {
        if let Err(e) = state.store.notify(notice).await {
            tracing::warn!(error = %e, "cannot tell the other relay instances");
        }
    }
}

/// Acts on the other instances' notices, in a task of its own so nothing else delays them.
/// Session notices are checked against the store at most one at a time per tenant (see
/// [`SessionChecks`]); the checks still running when the relay shuts down are aborted.
async fn listen_to_others(state: Arc<AppState>, mut notices: broadcast::Receiver<Notice>) {
    let mut checks = SessionChecks::default();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            done = checks.next_done() => checks.finished(&state, done),
            notice = notices.recv() => match notice {
                Ok(Notice::Session { tenant, holder }) => checks.notice(&state, tenant, &holder),
                Ok(notice) => state.wake_locally(&notice),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "notices were missed; the sweeps catch up");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    checks.running.shutdown().await;
}

/// The [`check_session`] calls in flight: one per tenant, and one more afterwards when
/// notices for that tenant came in meanwhile (the running check may have read the lease
/// before the newer session took it). So they are bounded by the sessions here.
#[derive(Default)]
struct SessionChecks {
    running: JoinSet<()>,
    /// The tenant each running check is about.
    tenants: HashMap<tokio::task::Id, TenantId>,
    /// Tenants with a check in flight; `true` when another notice came in meanwhile.
    again: HashMap<TenantId, bool>,
}

impl SessionChecks {
    fn notice(&mut self, state: &Arc<AppState>, tenant: TenantId, holder: &str) {
        if holder.starts_with(&state.registry.holder_prefix()) {
            // One of this instance's own sessions: the registry has replaced the older one.
            return;
        }
        if state.registry.holder(&tenant).is_none() {
            return;
        }
        match self.again.get_mut(&tenant) {
            Some(again) => *again = true,
            None => self.spawn(state, tenant),
        }
    }

    /// Waits for the next check to finish (pending forever while none runs).
    async fn next_done(&mut self) -> tokio::task::Id {
        match self.running.join_next_with_id().await {
            Some(Ok((id, ()))) => id,
            // A check that panicked: its tenant is let go like a finished one.
            Some(Err(e)) => e.id(),
            None => std::future::pending().await,
        }
    }

    fn finished(&mut self, state: &Arc<AppState>, id: tokio::task::Id) {
        let Some(tenant) = self.tenants.remove(&id) else {
            return;
        };
        if self.again.remove(&tenant) == Some(true) {
            self.spawn(state, tenant);
        }
    }

    fn spawn(&mut self, state: &Arc<AppState>, tenant: TenantId) {
        self.again.insert(tenant.clone(), false);
        let state = state.clone();
        let check = tenant.clone();
        let task = self
            .running
            .spawn(async move { check_session(&state, &check).await });
        self.tenants.insert(task.id(), tenant);
    }
}

/// A session of `tenant` started elsewhere: the one here ends if the tenant's lease is no
/// longer its own (the lease row decides, so a late or repeated notice ends nothing).
async fn check_session(state: &AppState, tenant: &TenantId) {
    let Some(local) = state.registry.holder(tenant) else {
        return;
    };
    match state
        .store
        .lease_holder(Lease::Tenant(tenant.clone()))
        .await
    {
        Ok(Some(current)) if current == local => {}
        Ok(_) => state.registry.lost_lease(tenant, &local),
        Err(e) => tracing::warn!(error = %e, "cannot check a tenant's delivery lease"),
    }
}

/// The periodic work beside the server: the delivery lease renewal, and with other instances
/// the dispatch sweep (a shop whose dispatching instance died is taken over once its lease
/// runs out) and the delivery sweep (a wake-up may be lost between instances).
async fn sweeps(state: Arc<AppState>) {
    let shared = state.store.notices().is_some();
    let lease = Duration::from_secs(state.config.lease_secs);
    let mut sweep = tokio::time::interval((lease / 2).max(Duration::from_millis(500)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(300)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // With other instances, a wake-up may be lost between them: look for waiting events of
    // the tenants connected here now and then even without one.
    let mut deliveries = tokio::time::interval(Duration::from_secs(2));
    deliveries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = sweep.tick(), if shared => sweep_dispatch(&state).await,
            _ = renew.tick() => renew_delivery_leases(&state).await,
            _ = deliveries.tick(), if shared => sweep_deliveries(&state).await,
        }
    }
}

/// Wakes the dispatch of every shop with rows waiting.
async fn sweep_dispatch(state: &AppState) {
    match state.store.shops_with_pending_dispatch().await {
        Ok(shops) => {
            for shop in &shops {
                state.dispatcher.wake(shop);
            }
        }
        Err(e) => tracing::warn!(error = %e, "dispatch sweep failed"),
    }
}

/// Wakes the session of every tenant connected here that has events waiting.
async fn sweep_deliveries(state: &AppState) {
    let connected = state
        .registry
        .sessions()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    match state.store.pending_tenants(connected).await {
        Ok(tenants) => {
            for tenant in &tenants {
                state.registry.wake(tenant);
            }
        }
        Err(e) => tracing::warn!(error = %e, "delivery sweep failed"),
    }
}

/// Renews the delivery leases of every session here in one statement; a session whose lease
/// another session took (a newer connection of its agent, on any instance) ends.
async fn renew_delivery_leases(state: &AppState) {
    let sessions = state.registry.sessions();
    if sessions.is_empty() {
        return;
    }
    let lease_ms = state.config.lease_secs * 1000;
    match state
        .store
        .renew_leases(state.registry.holder_prefix(), lease_ms)
        .await
    {
        Ok(held) => {
            let held: HashSet<(Lease, String)> = held.into_iter().collect();
            for (tenant, holder) in sessions {
                if !held.contains(&(Lease::Tenant(tenant.clone()), holder.clone())) {
                    state.registry.lost_lease(&tenant, &holder);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot renew the delivery leases"),
    }
}
