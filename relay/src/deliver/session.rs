//! A session after the handshake: deliveries within the credit window, acks and nacks,
//! redelivery after an ack timeout, pushes, heartbeats, the agent's silence limit, and
//! revocation; a sync session answers sync requests instead of taking deliveries.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use futures_util::{Sink, Stream};
use shared::domain::OrderWebhook;
use shared::protocol::{Deliver, Heartbeat, Message};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::error::SessionError;
use super::window::CreditWindow;
use crate::AppState;
use crate::auth::AgentIdentity;
use crate::registry::Registration;
use crate::store::QueuedEvent;

/// How often a session checks in the store whether its agent was revoked (through another
/// relay instance or the CLI; a revocation through this instance ends it at once).
const REVOCATION_CHECK: Duration = Duration::from_secs(3);

pub(super) struct Session {
    pub(super) app: Arc<AppState>,
    pub(super) identity: AgentIdentity,
    /// A sync session: serves sync requests, takes no deliveries.
    sync: bool,
    window: CreditWindow,
    /// Cancelled when the agent is revoked through this instance.
    revoked: CancellationToken,
}

impl Session {
    pub(super) fn new(
        app: Arc<AppState>,
        identity: AgentIdentity,
        credit: u32,
        sync: bool,
        revoked: CancellationToken,
    ) -> Self {
        Self {
            app,
            identity,
            sync,
            window: CreditWindow::new(credit),
            revoked,
        }
    }

    /// Whether the store says the agent is revoked (through another instance or the CLI). A
    /// store that cannot answer ends nothing: the next check asks again.
    async fn revoked_in_store(&self) -> bool {
        match self.app.store.agent(self.identity.agent_id.clone()).await {
            Ok(Some(agent)) => agent.revoked_at.is_some(),
            Ok(None) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cannot check whether the agent is revoked");
                false
            }
        }
    }

    /// Serves the session until it ends: `Ok` with the reason when the relay ends it (the
    /// session was replaced, or the relay shuts down), else the error that ended it.
    pub(super) async fn serve<S>(
        &mut self,
        conn: &mut Connection<S>,
        registration: &Registration,
    ) -> Result<&'static str, SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        let heartbeat = Duration::from_secs(u64::from(self.app.config.heartbeat_secs));
        let silence_limit = heartbeat * 3;
        conn.heard_now();
        let mut last_sent = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refill = true;
        let mut last_checked = Instant::now();
        // A revocation between the token check and the watch's registration: seen here.
        if self.revoked.is_cancelled() || self.revoked_in_store().await {
            return Err(SessionError::Revoked);
        }

        loop {
            // Nothing more goes to a revoked agent, even if a wake-up is ready too.
            if self.revoked.is_cancelled() {
                return Err(SessionError::Revoked);
            }
            if refill && self.refill(conn).await? {
                last_sent = Instant::now();
            }
            tokio::select! {
                biased;
                _ = self.revoked.cancelled() => return Err(SessionError::Revoked),
                _ = registration.cancel.cancelled() => {
                    return Ok(if self.app.shutdown.is_cancelled() {
                        "the relay is shutting down"
                    } else {
                        "replaced by a newer session of this tenant"
                    });
                }
                _ = registration.wake.notified() => refill = true,
                msg = conn.recv() => {
                    refill = match msg? {
                        // Pushes come in bursts: store the ones already received together,
                        // one transaction for all.
                        Message::Push(push) => self.burst_of_pushes(conn, push).await?,
                        msg => self.handle(conn, msg).await?,
                    };
                    // Handling may take long (a sync request calls the shop): the agent was
                    // not silent meanwhile, it was waiting for the answer.
                    conn.heard_now();
                }
                _ = tick.tick() => {
                    if conn.last_heard().elapsed() > silence_limit {
                        return Err(SessionError::Silent);
                    }
                    let ack_timeout = Duration::from_secs(self.app.config.ack_timeout_secs);
                    refill = self.window.expire(ack_timeout);
                    if last_checked.elapsed() >= REVOCATION_CHECK {
                        last_checked = Instant::now();
                        if self.revoked_in_store().await {
                            return Err(SessionError::Revoked);
                        }
                    }
                    if last_sent.elapsed() >= heartbeat {
                        let sent_at_ms = chrono::Utc::now().timestamp_millis();
                        conn.send(Message::Heartbeat(Heartbeat { sent_at_ms })).await?;
                        last_sent = Instant::now();
                    }
                }
            }
        }
    }

    /// Handles one message; returns whether the credit window may have room again.
    pub(super) async fn handle<S>(
        &mut self,
        conn: &mut Connection<S>,
        msg: Message,
    ) -> Result<bool, SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        let tenant = self.identity.tenant_id.clone();
        match msg {
            Message::Ack(ack) => {
                self.window.acked(ack.seq);
                let id = seq_to_id(ack.seq)?;
                let fresh = self
                    .app
                    .store
                    .ack(tenant, id, ack.mamut_ref.clone(), ack.already_applied)
                    .await?;
                tracing::info!(seq = ack.seq, mamut_ref = ?ack.mamut_ref, already_applied = ack.already_applied, fresh, "delivery acknowledged");
            }
            Message::Nack(nack) => {
                let id = seq_to_id(nack.seq)?;
                if !self.window.nacked(nack.seq, nack.retryable) {
                    tracing::debug!(seq = nack.seq, "nack for a delivery not in flight");
                    return Ok(false);
                }
                if nack.retryable {
                    tracing::warn!(seq = nack.seq, reason = %nack.reason, "delivery failed, will retry");
                    self.app
                        .store
                        .record_failure(tenant, id, nack.reason)
                        .await?;
                } else {
                    tracing::warn!(seq = nack.seq, reason = %nack.reason, "delivery refused permanently, dead-lettered");
                    self.app.store.dead_letter(tenant, id, nack.reason).await?;
                }
            }
            Message::Push(push) => {
                self.store_pushes(conn, vec![push], true).await?;
                return Ok(false);
            }
            Message::Heartbeat(_) => return Ok(false),
            // A sync session's requests: answered in order, each in full before the next.
            Message::SyncPut(request) if self.sync => {
                let answer = crate::sync::put(&self.app, &tenant, request).await?;
                conn.send(answer).await?;
                return Ok(false);
            }
            Message::SyncFetch(request) if self.sync => {
                let answer = crate::sync::fetch(&self.app, &tenant, request).await?;
                conn.send(answer).await?;
                return Ok(false);
            }
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected message from an agent: {}",
                    other.kind()
                )));
            }
        }
        Ok(true)
    }

    /// Sends as many pending events as the credit window allows. Returns whether it sent any.
    async fn refill<S>(&mut self, conn: &mut Connection<S>) -> Result<bool, SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        let want = self.window.room();
        if want == 0 || self.sync {
            return Ok(false);
        }
        let events = self
            .app
            .store
            .next_deliveries(
                self.identity.tenant_id.clone(),
                self.window.busy_events(),
                self.window.blocked_orders().collect(),
                want,
            )
            .await?;
        let sent = !events.is_empty();
        for event in events {
            let seq = event.id as u64;
            let order = (event.shop_id.to_string(), event.order_id.clone());
            match deliver_message(&event) {
                Ok(message) => {
                    conn.send(message).await?;
                    self.window.sent(seq, order, event.attempt);
                }
                Err(reason) => {
                    tracing::error!(seq, %reason, "stored event cannot be delivered, dead-lettered");
                    self.app
                        .store
                        .dead_letter(self.identity.tenant_id.clone(), event.id, reason)
                        .await?;
                }
            }
        }
        Ok(sent)
    }
}

fn deliver_message(event: &QueuedEvent) -> Result<Message, String> {
    let webhook: OrderWebhook = serde_json::from_str(&event.payload)
        .map_err(|e| format!("stored payload does not parse: {e}"))?;
    let shop_id = event.shop_id.clone();
    let document_type = event.document_type;
    Ok(Message::Deliver(Deliver {
        seq: event.id as u64,
        attempt: u32::try_from(event.attempt).unwrap_or(u32::MAX),
        shop_id,
        document_type,
        order: webhook.order,
    }))
}

fn seq_to_id(seq: u64) -> Result<i64, SessionError> {
    i64::try_from(seq).map_err(|_| SessionError::Protocol(format!("seq {seq} is out of range")))
}
