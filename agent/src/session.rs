//! One session with the relay: hello/welcome, then apply deliveries (concurrently, up to the
//! credit window) and answer each with ack or nack only after the apply finished; heartbeats
//! both ways, and a dead-connection timeout. Frames are read and written by
//! [`Connection`].
//!
//! Generic over the socket so tests drive it through channels.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Sink, Stream};
use shared::protocol::{Ack, Deliver, Heartbeat, Message, Nack, SessionRole};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::mamut::{Applied, ApplyError, Mamut};
pub use crate::transport::SessionError;
use crate::transport::connection::{self, Connection};
use crate::watch::PushBatch;

/// Longest wait for in-flight applies when the agent stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub credit: u32,
    pub heartbeat: Duration,
}

/// Runs a session until the relay goes away (an error: the caller reconnects) or `cancel`
/// fires (`Ok`: in-flight applies were finished and acknowledged first).
pub async fn run_session<S>(
    socket: S,
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
    let mut connection = Connection::new(socket);
    let welcome = connection
        .hello(SessionRole::Agent, settings.credit)
        .await?;
    tracing::info!(tenant = %welcome.tenant_id, credit = welcome.credit, "connected to relay");
    let heartbeat = settings.heartbeat;
    let dead_after = heartbeat.max(Duration::from_secs(u64::from(welcome.heartbeat_secs))) * 3;

    let mut applying: JoinSet<(u64, Result<Applied, ApplyError>)> = JoinSet::new();
    // The push batch being sent: ids not yet acknowledged, and whom to tell when none are left.
    let mut awaiting: Option<(HashSet<String>, oneshot::Sender<()>)> = None;
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval((heartbeat / 4).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                drain(&mut connection, &mut applying).await?;
                connection.close().await;
                return Ok(());
            }
            message = connection.recv() => {
                match incoming(message?)? {
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
                    connection.send(Message::Push(push)).await?;
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
                connection.send(answer(seq, result)).await?;
                last_sent = Instant::now();
            }
            _ = tick.tick() => {
                if connection.last_heard().elapsed() > dead_after {
                    return Err(SessionError::Dead(dead_after));
                }
                if last_sent.elapsed() >= heartbeat {
                    connection.send(Message::Heartbeat(Heartbeat { sent_at_ms: chrono::Utc::now().timestamp_millis() })).await?;
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

/// What a message from the relay asks of the session: a delivery to apply, a push
/// acknowledged, nothing to do (a heartbeat), or, for any other message, the end of the session.
fn incoming(message: Message) -> Result<Incoming, SessionError> {
    match message {
        Message::Deliver(delivery) => Ok(Incoming::Deliver(Box::new(delivery))),
        Message::Heartbeat(_) => Ok(Incoming::Nothing),
        Message::PushAck(ack) => Ok(Incoming::PushAck(ack.push_id)),
        other => Err(SessionError::Protocol(format!(
            "unexpected message from the relay: {other:?}"
        ))),
    }
}

/// What a session makes of a text frame from the relay: `Ok` when it goes on (a delivery
/// to apply, a push acknowledged, a heartbeat), the error it ends with otherwise. For
/// checking the decoder from outside; sessions use the same decoding.
pub fn read_text_frame(text: &str) -> Result<(), SessionError> {
    match connection::decode(Some(Ok(WsMessage::text(text))))? {
        Some(message) => incoming(message).map(drop),
        None => Ok(()),
    }
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
    connection: &mut Connection<S>,
    applying: &mut JoinSet<(u64, Result<Applied, ApplyError>)>,
) -> Result<(), SessionError>
where
    S: Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Sink<WsMessage>
        + Unpin,
{
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !applying.is_empty() {
        match tokio::time::timeout_at(deadline, applying.join_next()).await {
            Ok(Some(Ok((seq, result)))) => connection.send(answer(seq, result)).await?,
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
