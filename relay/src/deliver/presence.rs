//! The agent's session as the store records it (`agent_sessions`, for the console and the
//! alerts): opened once the hello is accepted, its `last_seen_at` renewed every
//! [`TOUCH_EVERY`] while the connection lives (a connection lives only while the agent is
//! heard: it ends after three silent heartbeats), closed when the session ends, however it
//! ends (close, error, revocation, replacement, shutdown, or the session's future dropped).
//!
//! Recording runs in a task of its own, so a slow or failing store never delays or ends the
//! agent's session: a failure is logged and the session goes on unrecorded. A relay that
//! crashed leaves its sessions open; readers take one unseen for two minutes as ended
//! ([`crate::store::AgentSessionRecord::is_live`]).
//!
//! The address recorded is the connection's peer: behind a reverse proxy, the proxy's.

use std::net::SocketAddr;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::AppState;
use crate::auth::AgentIdentity;
use crate::store::agent_sessions::TOUCH_EVERY;

/// Longest agent version recorded, in characters.
const MAX_VERSION_CHARS: usize = 64;

/// Ends the record when dropped.
pub(super) struct Presence {
    _ended: DropGuard,
}

impl Presence {
    /// Starts recording the session of `identity`.
    pub(super) fn record(
        app: &AppState,
        identity: &AgentIdentity,
        agent_version: &str,
        address: Option<SocketAddr>,
    ) -> Self {
        let ended = CancellationToken::new();
        let store = app.store.clone();
        let agent = identity.agent_id.clone();
        let tenant = identity.tenant_id.clone();
        let instance = app.registry.instance().to_owned();
        let version: String = agent_version.chars().take(MAX_VERSION_CHARS).collect();
        let address = address.map(|a| a.ip().to_string());
        let token = ended.clone();
        app.sessions.spawn(
            async move {
                let id = match store
                    .open_agent_session(agent, tenant, instance, version, address)
                    .await
                {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot record the agent's session; it goes on unrecorded");
                        return;
                    }
                };
                let mut ticks = tokio::time::interval(TOUCH_EVERY);
                // A stalled store is not hammered with the touches it missed.
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = ticks.tick() => {
                            if let Err(e) = store.touch_agent_session(id).await {
                                tracing::warn!(error = %e, session = id, "cannot record that the agent's session is alive");
                            }
                        }
                    }
                }
                if let Err(e) = store.close_agent_session(id).await {
                    tracing::warn!(error = %e, session = id, "cannot record that the agent's session ended");
                }
            }
            .in_current_span(),
        );
        Self {
            _ended: ended.drop_guard(),
        }
    }
}
