//! One agent session: hello/welcome, then deliveries within the credit window, acks, nacks,
//! redelivery after an ack timeout, pushes, heartbeats.
//!
//! Nothing here is the source of truth: an event leaves the queue only when the store has
//! committed its ack. A session that ends for any reason leaves the unacknowledged events
//! pending, and the next session sends them again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use shared::ShopId;
use shared::domain::{DocumentType, OrderWebhook};
use shared::protocol::{
    Deliver, Envelope, Heartbeat, MAX_FRAME_BYTES, Message, PROTOCOL_VERSION, ProtocolError, Push,
    PushAck, SessionRole, Welcome,
};
use tokio::time::Instant;

use crate::AppState;
use crate::auth::AgentIdentity;
use crate::metrics::Limit;
use crate::registry::Registration;
use crate::store::{Notice, QueuedEvent, StoreError};

/// Longest wait for the agent's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a session checks in the store whether its agent was revoked (through another
/// relay instance or the CLI; a revocation through this instance ends it at once).
const REVOCATION_CHECK: Duration = Duration::from_secs(3);

/// The message types of protocol v1. A well-formed frame of this version with any other type
/// comes from a newer agent and is ignored, not an error.
const KNOWN_TYPES: &[&str] = &[
    "hello",
    "welcome",
    "deliver",
    "ack",
    "nack",
    "push",
    "push_ack",
    "heartbeat",
    "sync_put",
    "sync_put_result",
    "sync_fetch",
    "sync_page",
    "sync_error",
];

/// The close reason a revoked agent's session ends with (the agent looks for "revoked").
pub const REVOKED_REASON: &str = "the agent's token is revoked";

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("the agent went away")]
    Gone,
    #[error("the agent closed the session (code {0:?})")]
    ClientClosed(Option<u16>),
    #[error("the agent was silent for too long")]
    Silent,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid message: {0}")]
    Malformed(String),
    #[error("binary frames are not part of the protocol")]
    Binary,
    #[error("message too large: the limit is {MAX_FRAME_BYTES} bytes ({0})")]
    TooLarge(String),
    #[error("{REVOKED_REASON}")]
    Revoked,
    #[error("the agent read nothing for {0} s: the connection is stalled")]
    Stalled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The close code (RFC 6455, 7.4.1) the relay ends the session with; `None` when the
    /// connection is gone or the agent closed it (its Close is answered instead).
    fn close_code(&self) -> Option<u16> {
        match self {
            SessionError::Gone | SessionError::ClientClosed(_) => None,
            SessionError::Protocol(_) => Some(1002),
            SessionError::Binary => Some(1003),
            SessionError::Malformed(_) => Some(1007),
            SessionError::Revoked => Some(1008),
            SessionError::TooLarge(_) => Some(1009),
            SessionError::Silent | SessionError::Stalled(_) | SessionError::Store(_) => Some(1011),
        }
    }

    /// The limit that ended the session, for `/metrics`.
    fn limit(&self) -> Option<Limit> {
        match self {
            SessionError::TooLarge(_) => Some(Limit::MessageBytes),
            SessionError::Silent => Some(Limit::AgentSilent),
            SessionError::Stalled(_) => Some(Limit::WriteStall),
            _ => None,
        }
    }

    /// What a failed read means: a message over the size limit, or a connection gone.
    fn from_read(error: &axum::Error) -> Self {
        let text = error.to_string();
        // tungstenite's capacity error ("Space limit exceeded: Message too long: n > max"),
        // for a frame or a message over the limit.
        if text.contains("Message too long") {
            SessionError::TooLarge(text)
        } else {
            SessionError::Gone
        }
    }
}

/// A text frame decoded: a protocol message, or one of a type this relay does not know.
enum Decoded {
    Message(Box<Message>),
    Unknown(String),
}

/// Decodes a text frame: invalid JSON or fields are invalid data (1007), another protocol
/// version a protocol error (1002), an unknown type within this version is ignored.
fn decode(text: &str) -> Result<Decoded, SessionError> {
    match Envelope::from_json(text) {
        Ok(envelope) => Ok(Decoded::Message(Box::new(envelope.msg))),
        Err(e @ ProtocolError::UnsupportedVersion(_)) => Err(SessionError::Protocol(e.to_string())),
        Err(ProtocolError::Malformed(reason)) => {
            #[derive(serde::Deserialize)]
            struct Probe {
                msg: ProbeMsg,
            }
            #[derive(serde::Deserialize)]
            struct ProbeMsg {
                #[serde(rename = "type")]
                kind: String,
            }
            match serde_json::from_str::<Probe>(text) {
                Ok(probe) if !KNOWN_TYPES.contains(&probe.msg.kind.as_str()) => {
                    Ok(Decoded::Unknown(probe.msg.kind))
                }
                _ => Err(SessionError::Malformed(reason)),
            }
        }
    }
}

/// What a session makes of a text frame from an agent: `Ok(Some(message))`, `Ok(None)` for a
/// message type of this version that the relay does not know (ignored), or the close code
/// (RFC 6455, 7.4.1) and reason the session ends with. For checking the decoder from outside;
/// sessions use the same decoding.
pub fn decode_frame(text: &str) -> Result<Option<Message>, (u16, String)> {
    match decode(text) {
        Ok(Decoded::Message(msg)) => Ok(Some(*msg)),
        Ok(Decoded::Unknown(_)) => Ok(None),
        Err(e) => Err((e.close_code().unwrap_or(1011), e.to_string())),
    }
}

/// Unknown message types seen in a session, each logged once.
#[derive(Default)]
struct Ignored(HashSet<String>);

impl Ignored {
    fn note(&mut self, kind: String) {
        let kind: String = kind.chars().take(64).collect();
        // Bounded: a misbehaving agent cannot grow this without limit.
        if self.0.len() < 32 && self.0.insert(kind.clone()) {
            tracing::warn!(
                kind = %kind,
                "ignoring a message type this relay does not know (a newer agent?); further ones of this type are ignored silently"
            );
        }
    }
}

/// Most pushes stored in one transaction.
const PUSH_BATCH: usize = 512;

/// What followed a burst of pushes.
enum Next {
    Nothing,
    Message(Box<Message>),
    /// The session ends (after the pushes before it are stored).
    End(SessionError),
}

/// `first` and the pushes right behind it that have arrived already (without waiting), and
/// what came after them.
fn more_pushes<S>(
    socket: &mut S,
    first: Push,
    ignored: &mut Ignored,
) -> Result<(Vec<Push>, Next), SessionError>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    let mut pushes = vec![first];
    while pushes.len() < PUSH_BATCH {
        match socket.next().now_or_never() {
            None => break,
            Some(Some(Ok(WsMessage::Text(text)))) => match decode(text.as_str())? {
                Decoded::Message(msg) => match *msg {
                    Message::Push(push) => pushes.push(push),
                    other => return Ok((pushes, Next::Message(Box::new(other)))),
                },
                Decoded::Unknown(kind) => ignored.note(kind),
            },
            Some(Some(Ok(WsMessage::Binary(_)))) => return Err(SessionError::Binary),
            Some(Some(Ok(WsMessage::Close(frame)))) => {
                let code = frame.map(|f| f.code);
                return Ok((pushes, Next::End(SessionError::ClientClosed(code))));
            }
            Some(Some(Err(e))) => return Ok((pushes, Next::End(SessionError::from_read(&e)))),
            Some(None) => return Ok((pushes, Next::End(SessionError::Gone))),
            Some(Some(Ok(_))) => {} // ping/pong
        }
    }
    Ok((pushes, Next::Nothing))
}

struct InFlight {
    order: (String, String),
    sent_at: Instant,
    attempt: i64,
}

struct Retry {
    order: (String, String),
    at: Instant,
}

/// Runs a session on an upgraded socket until the agent leaves, the session is replaced, or
/// the relay shuts down.
pub async fn run<S>(app: Arc<AppState>, identity: AgentIdentity, mut socket: S)
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    // Revoking the agent through this instance ends the session at once.
    let revocation = app.registry.watch_revocation(&identity.agent_id);
    let (credit, role) = match handshake(&app, &identity, &mut socket).await {
        Ok(hello) => hello,
        Err(e) => {
            if let Some(limit) = e.limit() {
                app.metrics.refused(limit);
            }
            tracing::warn!(error = %e, "agent session refused");
            end(&mut socket, &e).await;
            return;
        }
    };
    // A sync session takes no deliveries, so it neither replaces the agent's session nor is
    // woken for new events.
    let sync = role == SessionRole::Sync;
    let lease = format!("tenant:{}", identity.tenant_id);
    let registration = if sync {
        Registration::detached(&app.shutdown)
    } else {
        // This session takes the tenant's delivery over from any older one, on any instance,
        // before it is registered (so the lease renewal never sees it without its lease).
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
            let _ = close(&mut socket, 1011, "the relay's store is not available").await;
            return;
        }
        let registration =
            app.registry
                .register(&identity.tenant_id, holder.clone(), &app.shutdown);
        // Another instance may have taken the lease between our taking it and registering;
        // then that newer session is the one that delivers.
        if let Ok(current) = app.store.lease_holder(lease.clone()).await
            && current.as_deref() != Some(holder.as_str())
        {
            app.registry
                .unregister(&identity.tenant_id, registration.session);
            let _ = close(
                &mut socket,
                1001,
                "replaced by a newer session of this tenant",
            )
            .await;
            return;
        }
        registration
    };
    tracing::info!(credit, ?role, "agent session started");
    let mut session = Session {
        app: app.clone(),
        identity: identity.clone(),
        credit,
        sync,
        in_flight: HashMap::new(),
        retries: HashMap::new(),
        ignored: Ignored::default(),
        revoked: revocation.revoked.clone(),
        write_limit: write_limit(&app.config),
    };
    let result = session.serve(&mut socket, &registration).await;
    if !sync {
        app.registry
            .unregister(&identity.tenant_id, registration.session);
        if let Err(e) = app
            .store
            .release_lease(lease, registration.holder.clone())
            .await
        {
            tracing::debug!(error = %e, "the delivery lease could not be released; it expires");
        }
    }
    match result {
        Ok(reason) => {
            tracing::info!(reason, "agent session ended");
            let _ = close(&mut socket, 1001, reason).await;
        }
        Err(SessionError::Gone) => tracing::info!("agent disconnected"),
        Err(SessionError::ClientClosed(code)) => {
            tracing::info!(?code, "agent closed the session");
            end(&mut socket, &SessionError::ClientClosed(code)).await;
        }
        Err(SessionError::Revoked) => {
            tracing::warn!(
                "the agent's token was revoked; its session ends and nothing more is delivered to it"
            );
            end(&mut socket, &SessionError::Revoked).await;
        }
        Err(e) => {
            if let Some(limit) = e.limit() {
                app.metrics.refused(limit);
            }
            tracing::warn!(error = %e, "agent session failed");
            end(&mut socket, &e).await;
        }
    }
    drop(revocation);
}

/// Ends the session after `error`: with a close frame naming it, or, when the agent closed
/// the session, by answering its Close (tungstenite queued the echo; closing flushes it).
async fn end<S>(socket: &mut S, error: &SessionError)
where
    S: Sink<WsMessage> + Unpin,
{
    match error.close_code() {
        Some(code) => {
            let _ = close(socket, code, &error.to_string()).await;
        }
        None => {
            if matches!(error, SessionError::ClientClosed(_)) {
                let _ = tokio::time::timeout(CLOSE_WRITE_LIMIT, socket.close()).await;
            }
        }
    }
}

async fn handshake<S>(
    app: &AppState,
    identity: &AgentIdentity,
    socket: &mut S,
) -> Result<(u32, SessionRole), SessionError>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    let first = tokio::time::timeout(HELLO_TIMEOUT, next_message(socket))
        .await
        .map_err(|_| {
            app.metrics.refused(Limit::HelloTimeout);
            SessionError::Protocol("no hello within 10 s".into())
        })??;
    let Message::Hello(hello) = first else {
        return Err(SessionError::Protocol(
            "the first message must be hello".into(),
        ));
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(SessionError::Protocol(format!(
            "protocol version {} is not supported; this relay speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    let credit = hello.credit.clamp(1, app.config.max_credit);
    tracing::info!(agent_version = %hello.agent_version, "agent said hello");
    send(
        socket,
        Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            relay_version: env!("CARGO_PKG_VERSION").into(),
            tenant_id: identity.tenant_id.clone(),
            credit,
            heartbeat_secs: app.config.heartbeat_secs,
        }),
        write_limit(&app.config),
    )
    .await?;
    Ok((credit, hello.role))
}

struct Session {
    app: Arc<AppState>,
    identity: AgentIdentity,
    credit: u32,
    /// A sync session: serves sync requests, takes no deliveries.
    sync: bool,
    in_flight: HashMap<u64, InFlight>,
    retries: HashMap<u64, Retry>,
    ignored: Ignored,
    /// Cancelled when the agent is revoked through this instance.
    revoked: tokio_util::sync::CancellationToken,
    /// How long writing one message may take ([`write_limit`]).
    write_limit: Duration,
}

impl Session {
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

    async fn serve<S>(
        &mut self,
        socket: &mut S,
        registration: &crate::registry::Registration,
    ) -> Result<&'static str, SessionError>
    where
        S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
    {
        let heartbeat = Duration::from_secs(u64::from(self.app.config.heartbeat_secs));
        let silence_limit = heartbeat * 3;
        let mut last_heard = Instant::now();
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
            if refill && self.refill(socket).await? {
                last_sent = Instant::now();
            }
            refill = false;
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
                frame = socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None => return Err(SessionError::Gone),
                        Some(Err(e)) => return Err(SessionError::from_read(&e)),
                        Some(Ok(WsMessage::Text(text))) => {
                            let msg = match decode(text.as_str())? {
                                Decoded::Message(msg) => *msg,
                                Decoded::Unknown(kind) => {
                                    self.ignored.note(kind);
                                    continue;
                                }
                            };
                            refill = match msg {
                                // Pushes come in bursts: store the ones already received
                                // together, one transaction for all.
                                Message::Push(push) => {
                                    let (pushes, next) =
                                        more_pushes(socket, push, &mut self.ignored)?;
                                    // The agent closed right behind them: stored, not
                                    // acknowledged (it sends them again, stored once), and its
                                    // Close still answered.
                                    let closing =
                                        matches!(next, Next::End(SessionError::ClientClosed(_)));
                                    self.store_pushes(socket, pushes, !closing).await?;
                                    match next {
                                        Next::Message(msg) => self.handle(socket, *msg).await?,
                                        Next::Nothing => false,
                                        Next::End(e) => return Err(e),
                                    }
                                }
                                msg => self.handle(socket, msg).await?,
                            };
                            // Handling may take long (a sync request calls the shop): the
                            // agent was not silent meanwhile, it was waiting for the answer.
                            last_heard = Instant::now();
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            return Err(SessionError::ClientClosed(frame.map(|f| f.code)));
                        }
                        Some(Ok(WsMessage::Binary(_))) => return Err(SessionError::Binary),
                        Some(Ok(_)) => {} // ping/pong: answered by the WebSocket layer
                    }
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        return Err(SessionError::Silent);
                    }
                    refill = self.expire_timeouts();
                    if last_checked.elapsed() >= REVOCATION_CHECK {
                        last_checked = Instant::now();
                        if self.revoked_in_store().await {
                            return Err(SessionError::Revoked);
                        }
                    }

                    if last_sent.elapsed() >= heartbeat {
                        let sent_at_ms = chrono::Utc::now().timestamp_millis();
                        send(socket, Message::Heartbeat(Heartbeat { sent_at_ms }), self.write_limit).await?;
                        last_sent = Instant::now();
                    }
                }
            }
        }
    }

    /// Handles one message; returns whether the credit window may have room again.
    async fn handle<S>(&mut self, socket: &mut S, msg: Message) -> Result<bool, SessionError>
    where
        S: Sink<WsMessage> + Unpin,
    {
        let tenant = self.identity.tenant_id.clone();
        match msg {
            Message::Ack(ack) => {
                self.in_flight.remove(&ack.seq);
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
                let Some(flight) = self.in_flight.remove(&nack.seq) else {
                    tracing::debug!(seq = nack.seq, "nack for a delivery not in flight");
                    return Ok(false);
                };
                if nack.retryable {
                    tracing::warn!(seq = nack.seq, reason = %nack.reason, "delivery failed, will retry");
                    self.app
                        .store
                        .record_failure(tenant, id, nack.reason)
                        .await?;
                    let delay = retry_delay(flight.attempt);
                    self.retries.insert(
                        nack.seq,
                        Retry {
                            order: flight.order,
                            at: Instant::now() + delay,
                        },
                    );
                } else {
                    tracing::warn!(seq = nack.seq, reason = %nack.reason, "delivery refused permanently, dead-lettered");
                    self.app.store.dead_letter(tenant, id, nack.reason).await?;
                }
            }
            Message::Push(push) => {
                self.store_pushes(socket, vec![push], true).await?;
                return Ok(false);
            }
            Message::Heartbeat(_) => return Ok(false),
            Message::SyncPut(request) if self.sync => {
                let answer = crate::sync::put(&self.app, &tenant, request).await?;
                send(socket, answer, self.write_limit).await?;
                return Ok(false);
            }
            Message::SyncFetch(request) if self.sync => {
                let answer = crate::sync::fetch(&self.app, &tenant, request).await?;
                send(socket, answer, self.write_limit).await?;
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

    /// Stores pushes (in one transaction), tells the dispatchers, and acknowledges each.
    async fn store_pushes<S>(
        &mut self,
        socket: &mut S,
        pushes: Vec<Push>,
        acknowledge: bool,
    ) -> Result<(), SessionError>
    where
        S: Sink<WsMessage> + Unpin,
    {
        if pushes
            .iter()
            .any(|p| p.push_id.is_empty() || p.push_id.len() > 128)
        {
            return Err(SessionError::Protocol(
                "push_id must be 1 to 128 characters".into(),
            ));
        }
        let ids: Vec<String> = pushes.iter().map(|p| p.push_id.clone()).collect();
        let shops = self
            .app
            .store
            .insert_pushes(
                self.identity.tenant_id.clone(),
                self.identity.agent_id.clone(),
                pushes.into_iter().map(|p| (p.push_id, p.change)).collect(),
            )
            .await?;
        for shop in shops {
            self.app.announce(Notice::Dispatch { shop }).await;
        }
        if acknowledge {
            for push_id in ids {
                send(
                    socket,
                    Message::PushAck(PushAck { push_id }),
                    self.write_limit,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Deliveries without an ack for too long go back to the queue; retries whose time has
    /// come are released. Returns whether anything was released.
    fn expire_timeouts(&mut self) -> bool {
        let before = self.in_flight.len() + self.retries.len();
        let timeout = Duration::from_secs(self.app.config.ack_timeout_secs);
        self.in_flight.retain(|seq, flight| {
            let keep = flight.sent_at.elapsed() < timeout;
            if !keep {
                tracing::warn!(seq, "no ack within the timeout, sending again");
            }
            keep
        });
        let now = Instant::now();
        self.retries.retain(|_, retry| retry.at > now);
        self.in_flight.len() + self.retries.len() < before
    }

    /// Sends as many pending events as the credit window allows. Returns whether it sent any.
    async fn refill<S>(&mut self, socket: &mut S) -> Result<bool, SessionError>
    where
        S: Sink<WsMessage> + Unpin,
    {
        let want = (self.credit as usize).saturating_sub(self.in_flight.len());
        if want == 0 || self.sync {
            return Ok(false);
        }
        let exclude: HashSet<i64> = self
            .in_flight
            .keys()
            .chain(self.retries.keys())
            .filter_map(|s| i64::try_from(*s).ok())
            .collect();
        let blocked = self
            .in_flight
            .values()
            .map(|f| f.order.clone())
            .chain(self.retries.values().map(|r| r.order.clone()))
            .collect();
        let events = self
            .app
            .store
            .next_deliveries(self.identity.tenant_id.clone(), exclude, blocked, want)
            .await?;
        let sent = !events.is_empty();
        for event in events {
            let seq = event.id as u64;
            let order = (event.shop_id.clone(), event.order_id.clone());
            match deliver_message(&event) {
                Ok(message) => {
                    send(socket, message, self.write_limit).await?;
                    self.in_flight.insert(
                        seq,
                        InFlight {
                            order,
                            sent_at: Instant::now(),
                            attempt: event.attempt,
                        },
                    );
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
    let shop_id = ShopId::new(event.shop_id.clone()).map_err(|e| e.to_string())?;
    let document_type: DocumentType = event.document_type.parse()?;
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

/// Backoff after a retryable failure: 1 s after the first attempt, doubling, at most 60 s.
fn retry_delay(attempt: i64) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 6) as u32;
    (Duration::from_secs(1) * 2u32.pow(exponent)).min(Duration::from_secs(60))
}

async fn next_message<S>(socket: &mut S) -> Result<Message, SessionError>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            None => return Err(SessionError::Gone),
            Some(Err(e)) => return Err(SessionError::from_read(&e)),
            Some(Ok(WsMessage::Close(frame))) => {
                return Err(SessionError::ClientClosed(frame.map(|f| f.code)));
            }
            Some(Ok(WsMessage::Text(text))) => {
                return match decode(text.as_str())? {
                    Decoded::Message(msg) => Ok(*msg),
                    Decoded::Unknown(kind) => Err(SessionError::Protocol(format!(
                        "the first message must be hello, not {:?}",
                        kind.chars().take(64).collect::<String>()
                    ))),
                };
            }
            Some(Ok(WsMessage::Binary(_))) => return Err(SessionError::Binary),
            Some(Ok(_)) => {}
        }
    }
}

/// How long writing one message to an agent may take before the connection counts as stalled
/// (an agent that does not read what it is sent): three heartbeats, as for its silence.
fn write_limit(config: &crate::config::Config) -> Duration {
    Duration::from_secs(u64::from(config.heartbeat_secs) * 3)
}

/// How long a close frame may take to write (on a stalled connection it never is).
const CLOSE_WRITE_LIMIT: Duration = Duration::from_secs(5);

async fn send<S>(socket: &mut S, msg: Message, limit: Duration) -> Result<(), SessionError>
where
    S: Sink<WsMessage> + Unpin,
{
    let frame = WsMessage::Text(Envelope::new(msg).to_json().into());
    match tokio::time::timeout(limit, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SessionError::Gone),
        Err(_) => Err(SessionError::Stalled(limit.as_secs())),
    }
}

async fn close<S>(socket: &mut S, code: u16, reason: &str) -> Result<(), SessionError>
where
    S: Sink<WsMessage> + Unpin,
{
    // Close reasons are limited to 123 bytes.
    let reason: String = reason.chars().take(100).collect();
    let frame = WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    match tokio::time::timeout(CLOSE_WRITE_LIMIT, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SessionError::Gone),
        Err(_) => Err(SessionError::Stalled(CLOSE_WRITE_LIMIT.as_secs())),
    }
}
