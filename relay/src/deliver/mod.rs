//! One agent session: hello/welcome, then deliveries within the credit window, acks, nacks,
//! redelivery after an ack timeout, pushes, heartbeats.
//!
//! Nothing here is the source of truth: an event leaves the queue only when the store has
//! committed its ack. A session that ends for any reason leaves the unacknowledged events
//! pending, and the next session sends them again.
//!
//! - `connection`: the agent's WebSocket: frames in and out, limits, the handshake.
//! - `lease`: the tenant's delivery lease, so only the newest session delivers.
//! - `session`: the session's loop and the messages it handles, sync requests included.
//! - `window`: the credit window and the retries waiting in it.
//! - `pushes`: the agent's pushes, stored in bursts.
//! - `error`: why a session ends, and its close code.

mod connection;
mod error;
mod lease;
mod presence;
mod pushes;
mod session;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use futures_util::{Sink, Stream};
use shared::protocol::SessionRole;

pub use self::connection::decode_frame;
use self::connection::{Connection, Terms};
use self::error::SessionError;
use self::session::Session;
use crate::AppState;
use crate::auth::AgentIdentity;
use crate::registry::Registration;

/// The close reason a revoked agent's session ends with (the agent looks for "revoked").
pub const REVOKED_REASON: &str = "the agent's token is revoked";

/// Runs a session on an upgraded socket until the agent leaves, the session is replaced, or
/// the relay shuts down. `address` is the agent's, as recorded with its session.
pub async fn run<S>(
    app: Arc<AppState>,
    identity: AgentIdentity,
    address: Option<SocketAddr>,
    socket: S,
) where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    // Revoking the agent through this instance ends the session at once.
    let revocation = app.registry.watch_revocation(&identity.agent_id);
    let mut conn = Connection::new(socket, write_limit(&app.config));
    let terms = Terms {
        tenant_id: identity.tenant_id.clone(),
        max_credit: app.config.max_credit,
        heartbeat_secs: app.config.heartbeat_secs,
    };
    let (credit, role, agent_version) = match conn.hello(terms).await {
        Ok(hello) => hello,
        Err(e) => {
            if let Some(limit) = e.limit() {
                app.metrics.refused(limit);
            }
            tracing::warn!(error = %e, "agent session refused");
            conn.end(&e).await;
            return;
        }
    };
    // A sync session takes no deliveries, so it neither replaces the agent's session nor is
    // woken for new events.
    let sync = role == SessionRole::Sync;
    // Only delivery sessions count as the agent being connected.
    let _presence =
        (!sync).then(|| presence::Presence::record(&app, &identity, &agent_version, address));
    let registration = if sync {
        Registration::detached(&app.shutdown)
    } else {
        match lease::take(&app, &identity, &mut conn).await {
            Some(registration) => registration,
            None => return,
        }
    };
    tracing::info!(credit, ?role, "agent session started");
    let mut session = Session::new(
        app.clone(),
        identity.clone(),
        credit,
        sync,
        revocation.revoked.clone(),
    );
    let result = session.serve(&mut conn, &registration).await;
    if !sync {
        lease::release(&app, &identity, &registration).await;
    }
    finish(&app, &mut conn, result).await;
    drop(revocation);
}

/// Logs how the session ended, counts the limit that ended it, and closes the connection
/// accordingly.
async fn finish<S>(
    app: &AppState,
    conn: &mut Connection<S>,
    result: Result<&'static str, SessionError>,
) where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    match result {
        Ok(reason) => {
            tracing::info!(reason, "agent session ended");
            let _ = conn.close(1001, reason).await;
        }
        Err(SessionError::Gone) => tracing::info!("agent disconnected"),
        Err(SessionError::ClientClosed(code)) => {
            tracing::info!(?code, "agent closed the session");
            conn.end(&SessionError::ClientClosed(code)).await;
        }
        Err(SessionError::Revoked) => {
            tracing::warn!(
                "the agent's token was revoked; its session ends and nothing more is delivered to it"
            );
            conn.end(&SessionError::Revoked).await;
        }
        Err(e) => {
            if let Some(limit) = e.limit() {
                app.metrics.refused(limit);
            }
            tracing::warn!(error = %e, "agent session failed");
            conn.end(&e).await;
        }
    }
}

/// How long writing one message to an agent may take before the connection counts as stalled
/// (an agent that does not read what it is sent): three heartbeats, as for its silence.
fn write_limit(config: &crate::config::Config) -> Duration {
    Duration::from_secs(u64::from(config.heartbeat_secs) * 3)
}
