//! The tenant's delivery lease: a delivery session takes it over from any older session of
//! its tenant, on any relay instance, so only the newest session delivers. The other
//! instances hear of it through a session notice (see [`crate::cluster`]).

use axum::extract::ws::Message as WsMessage;
use futures_util::{Sink, Stream};

use super::connection::Connection;
use crate::AppState;
use crate::auth::AgentIdentity;
use crate::registry::Registration;
use crate::store::{Lease, Notice};

/// Takes the tenant's delivery lease for a new session and registers the session; `None`
/// (with the agent told why) when the store fails or a newer session took the lease at once.
pub(super) async fn take<S>(
    app: &AppState,
    identity: &AgentIdentity,
    conn: &mut Connection<S>,
) -> Option<Registration>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    let lease = Lease::Tenant(identity.tenant_id.clone());
    // Taken before the session is registered, so the lease renewal never sees it without
    // its lease.
    let holder = app.registry.new_holder();
    let taken = app
        .store
        .acquire_lease(
            lease.clone(),
            holder.clone(),
            app.config.lease_secs * 1000,
            true,
        )
        .await;
    let told = app
        .store
        .notify(Notice::Session {
            tenant: identity.tenant_id.clone(),
            holder: holder.clone(),
        })
        .await;
    if let Err(e) = taken.and(told) {
        tracing::warn!(error = %e, "agent session refused: the store failed");
        let _ = conn.close(1011, "the relay's store is not available").await;
        return None;
    }
    let registration = app
        .registry
        .register(&identity.tenant_id, holder.clone(), &app.shutdown);
    // Another instance may have taken the lease between our taking it and registering;
    // then that newer session is the one that delivers.
    if let Ok(current) = app.store.lease_holder(lease).await
        && current.as_deref() != Some(holder.as_str())
    {
        app.registry
            .unregister(&identity.tenant_id, registration.session);
        let _ = conn
            .close(1001, "replaced by a newer session of this tenant")
            .await;
        return None;
    }
    Some(registration)
}

/// Unregisters an ended session and gives its lease back, so the next session need not wait
/// for it to expire.
pub(super) async fn release(app: &AppState, identity: &AgentIdentity, registration: &Registration) {
    app.registry
        .unregister(&identity.tenant_id, registration.session);
    if let Err(e) = app
        .store
        .release_lease(
            Lease::Tenant(identity.tenant_id.clone()),
            registration.holder.clone(),
        )
        .await
    {
        tracing::debug!(error = %e, "the delivery lease could not be released; it expires");
    }
}
