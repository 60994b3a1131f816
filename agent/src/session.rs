//! One session with the relay: hello/welcome, then apply deliveries (concurrently, up to the
//! credit window) and answer each with ack or nack only after the apply finished; heartbeats
//! both ways, and a dead-connection timeout.
//!
//! Generic over the socket so tests drive it through channels.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use shared::protocol::{
    Ack, Deliver, Envelope, Heartbeat, Hello, Message, Nack, PROTOCOL_VERSION, SessionRole,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::mamut::{Applied, ApplyError, Mamut};
use crate::watch::PushBatch;

/// Longest wait for the relay's welcome.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for in-flight applies when the agent stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub credit: u32,
    pub heartbeat: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the relay closed the connection{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    /// The relay ended the session because this agent's token was revoked (close code 1008).
    #[error(
        "the relay revoked this agent's token ({0}); the agent cannot connect with it again: ask the relay's operator for a new token (`relay agent create`) and put it in agent.toml"
    )]
    Revoked(String),
    #[error("no frame from the relay for {0:?}: connection presumed dead")]
    Dead(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection error: {0}")]
    Socket(String),
}

/// Runs a session until the relay goes away (an error: the caller reconnects) or `cancel`
/// fires (`Ok`: in-flight applies were finished and acknowledged first).
pub async fn run_session<S>(
    mut socket: S,
    mamut: Arc<dyn Mamut>,
    settings: &SessionSettings,
    pushes: &mut mpsc::Receiver<PushBatch>,
    cancel: &CancellationToken,
) -> Result<(), SessionError>
where
    S: Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Sink<WsMessage>
        + Unpin,
{
    send(
        &mut socket,
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            credit: settings.credit,
            role: SessionRole::Agent,
        }),
    )
    .await?;
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, next_message(&mut socket)).await {
        Err(_) => return Err(SessionError::Protocol("no welcome from the relay".into())),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Message::Welcome(welcome))) => welcome,
        Ok(Ok(other)) => {
            return Err(SessionError::Protocol(format!(
                "expected welcome, got {other:?}"
            )));
        }
    };
    if welcome.protocol_version != PROTOCOL_VERSION {
        return Err(SessionError::Protocol(format!(
            "the relay speaks protocol {}, this agent {PROTOCOL_VERSION}",
            welcome.protocol_version
        )));
    }
    tracing::info!(tenant = %welcome.tenant_id, credit = welcome.credit, "connected to relay");
    let heartbeat = settings.heartbeat;
    let dead_after = heartbeat.max(Duration::from_secs(u64::from(welcome.heartbeat_secs))) * 3;

    let mut applying: JoinSet<(u64, Result<Applied, ApplyError>)> = JoinSet::new();
    // The push batch being sent: ids not yet acknowledged, and whom to tell when none are left.
    let mut awaiting: Option<(HashSet<String>, oneshot::Sender<()>)> = None;
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval((heartbeat / 4).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                drain(&mut socket, &mut applying).await?;
                let _ = socket.send(WsMessage::Close(None)).await;
                return Ok(());
            }
            frame = socket.next() => {
                last_heard = Instant::now();
                match read_frame(frame)? {
                    Incoming::Deliver(delivery) => {
                        let mamut = mamut.clone();
                        applying.spawn(async move {
                            // A panic (a bug) fails this order, not the session and the
                            // other orders in flight with it.
                            let result = AssertUnwindSafe(mamut.apply_order(&delivery))
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|_| {
                                    Err(ApplyError::Permanent(
                                        "the agent failed on this order; this is a bug in the \
                                         agent, please report it with the agent's log"
                                            .to_owned(),
                                    ))
                                });
                            (delivery.seq, result)
                        });
                    }
                    Incoming::PushAck(push_id) => {
                        if let Some((ids, _)) = awaiting.as_mut() {
                            ids.remove(&push_id);
                            if ids.is_empty() && let Some((_, done)) = awaiting.take() {
                                let _ = done.send(());
                            }
                        }
                    }
                    Incoming::Nothing => {}
                }
            }
            Some(batch) = pushes.recv(), if awaiting.is_none() => {
                let ids: HashSet<String> = batch.pushes.iter().map(|p| p.push_id.clone()).collect();
                for push in batch.pushes {
                    send(&mut socket, Message::Push(push)).await?;
                }
                last_sent = Instant::now();
                if ids.is_empty() {
                    let _ = batch.acknowledged.send(());
                } else {
                    awaiting = Some((ids, batch.acknowledged));
                }
            }
            Some(done) = applying.join_next(), if !applying.is_empty() => {
                let (seq, result) = done.map_err(|e| SessionError::Protocol(format!("apply task failed: {e}")))?;
                send(&mut socket, answer(seq, result)).await?;
                last_sent = Instant::now();
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > dead_after {
                    return Err(SessionError::Dead(dead_after));
                }
                if last_sent.elapsed() >= heartbeat {
                    send(&mut socket, Message::Heartbeat(Heartbeat { sent_at_ms: chrono::Utc::now().timestamp_millis() })).await?;
                    last_sent = Instant::now();
                }
            }
        }
    }
}

/// What a frame from the relay asks of the session.
enum Incoming {
    Deliver(Box<Deliver>),
    PushAck(String),
    Nothing,
}

/// Interprets one frame: a delivery to apply, a push acknowledged, nothing to do, or the end of
/// the session.
fn read_frame(
    frame: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Incoming, SessionError> {
    match frame {
        None => Err(SessionError::Closed(None)),
        Some(Err(e)) => Err(SessionError::Socket(e.to_string())),
        Some(Ok(WsMessage::Close(frame))) => Err(closed(frame)),
        Some(Ok(WsMessage::Text(text))) => {
            let envelope = Envelope::from_json(text.as_str())
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
            match envelope.msg {
                Message::Deliver(delivery) => Ok(Incoming::Deliver(Box::new(delivery))),
                Message::Heartbeat(_) => Ok(Incoming::Nothing),
                Message::PushAck(ack) => Ok(Incoming::PushAck(ack.push_id)),
                other => Err(SessionError::Protocol(format!(
                    "unexpected message from the relay: {other:?}"
                ))),
            }
        }
        Some(Ok(WsMessage::Binary(_))) => Err(SessionError::Protocol(
            "binary frames are not part of the protocol".into(),
        )),
        Some(Ok(_)) => Ok(Incoming::Nothing), // ping, pong: tungstenite answers pings itself
    }
}

/// What a session makes of a text frame from the relay: `Ok` when it goes on (a delivery
/// to apply, a push acknowledged, a heartbeat), the error it ends with otherwise. For
/// checking the decoder from outside; sessions use the same decoding.
pub fn read_text_frame(text: &str) -> Result<(), SessionError> {
    read_frame(Some(Ok(WsMessage::text(text)))).map(drop)
}

fn answer(seq: u64, result: Result<Applied, ApplyError>) -> Message {
    match result {
        Ok(applied) => {
            tracing::info!(seq, mamut_ref = %applied.mamut_ref, already_applied = applied.already_applied, "order applied");
            Message::Ack(Ack {
                seq,
                mamut_ref: Some(applied.mamut_ref),
                already_applied: applied.already_applied,
            })
        }
        Err(ApplyError::Retryable(reason)) => {
            tracing::warn!(seq, %reason, "order not applied, the relay will retry");
            Message::Nack(Nack {
                seq,
                retryable: true,
                reason,
            })
        }
        Err(ApplyError::Permanent(reason)) => {
            tracing::error!(seq, %reason, "order refused");
            Message::Nack(Nack {
                seq,
                retryable: false,
                reason,
            })
        }
    }
}

/// Lets in-flight applies finish (bounded) and acknowledges them before the agent stops.
async fn drain<S>(
    socket: &mut S,
    applying: &mut JoinSet<(u64, Result<Applied, ApplyError>)>,
) -> Result<(), SessionError>
where
    S: Sink<WsMessage> + Unpin,
{
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !applying.is_empty() {
        match tokio::time::timeout_at(deadline, applying.join_next()).await {
            Ok(Some(Ok((seq, result)))) => send(socket, answer(seq, result)).await?,
            Ok(Some(Err(e))) => tracing::error!(error = %e, "apply task failed during shutdown"),
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    left = applying.len(),
                    "applies still running at shutdown; the relay will redeliver them"
                );
                break;
            }
        }
    }
    Ok(())
}

/// What the relay's close frame says: a revoked token (policy violation, 1008, naming the
/// revocation) is told apart from an ordinary end of the session.
fn closed(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> SessionError {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    match frame {
        Some(frame) if frame.code == CloseCode::Policy && frame.reason.contains("revoked") => {
            SessionError::Revoked(frame.reason.to_string())
        }
        Some(frame) => SessionError::Closed(Some(format!(
            "{} (code {})",
            frame.reason,
            u16::from(frame.code)
        ))),
        None => SessionError::Closed(None),
    }
}

async fn next_message<S>(socket: &mut S) -> Result<Message, SessionError>
where
    S: Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            None => return Err(SessionError::Closed(None)),
            Some(Err(e)) => return Err(SessionError::Socket(e.to_string())),
            Some(Ok(WsMessage::Close(frame))) => return Err(closed(frame)),
            Some(Ok(WsMessage::Text(text))) => {
                return Envelope::from_json(text.as_str())
                    .map(|e| e.msg)
                    .map_err(|e| SessionError::Protocol(e.to_string()));
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn send<S>(socket: &mut S, msg: Message) -> Result<(), SessionError>
where
    S: Sink<WsMessage> + Unpin,
{
    socket
        .send(WsMessage::Text(Envelope::new(msg).to_json().into()))
        .await
        .map_err(|_| SessionError::Closed(None))
}
