//! An agent's WebSocket, as the relay reads and writes it: [`Connection`] owns the socket and
//! turns frames into protocol messages and back, with the protocol's limits (a message over
//! [`shared::protocol::MAX_FRAME_BYTES`] ends the session with 1009, binary frames with 1003,
//! invalid JSON with 1007, another protocol version with 1002), the write limit that detects a
//! stalled agent, and the hello/welcome handshake.
//!
//! Generic over the socket (`Stream` + `Sink` of WebSocket messages) so tests drive a session
//! with channels.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use shared::TenantId;
use shared::protocol::{Envelope, Message, PROTOCOL_VERSION, ProtocolError, SessionRole, Welcome};
use tokio::time::Instant;

use super::error::SessionError;

/// Longest wait for the agent's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a close frame may take to write (on a stalled connection it never is).
const CLOSE_WRITE_LIMIT: Duration = Duration::from_secs(5);

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

/// What the relay tells an agent in its welcome.
pub(super) struct Terms {
    pub(super) tenant_id: TenantId,
    /// The most deliveries in flight the relay allows, whatever the agent asks for.
    pub(super) max_credit: u32,
    pub(super) heartbeat_secs: u32,
}

/// An agent's socket: reads decoded protocol messages, writes them within the write limit.
pub(super) struct Connection<S> {
    socket: S,
    /// How long writing one message may take before the connection counts as stalled.
    write_limit: Duration,
    /// When a frame of any kind last arrived, for the agent's silence limit.
    last_heard: Instant,
    ignored: Ignored,
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<WsMessage, axum::Error>> + Sink<WsMessage> + Unpin,
{
    pub(super) fn new(socket: S, write_limit: Duration) -> Self {
        Self {
            socket,
            write_limit,
            last_heard: Instant::now(),
            ignored: Ignored::default(),
        }
    }

    /// The handshake: waits (bounded) for the agent's hello, checks its protocol version, and
    /// answers with the welcome. Returns the credit window granted, the session's role and the
    /// agent's version.
    pub(super) async fn hello(
        &mut self,
        terms: Terms,
    ) -> Result<(u32, SessionRole, String), SessionError> {
        let first = tokio::time::timeout(HELLO_TIMEOUT, self.first_message())
            .await
            .map_err(|_| SessionError::NoHello)??;
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
        let credit = hello.credit.clamp(1, terms.max_credit);
        tracing::info!(agent_version = %hello.agent_version, "agent said hello");
        self.send(Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            relay_version: env!("CARGO_PKG_VERSION").into(),
            tenant_id: terms.tenant_id,
            credit,
            heartbeat_secs: terms.heartbeat_secs,
        }))
        .await?;
        Ok((credit, hello.role, hello.agent_version))
    }

    /// The first message: unlike later, a type this relay does not know is an error here.
    async fn first_message(&mut self) -> Result<Message, SessionError> {
        loop {
            let frame = self.socket.next().await;
            if let Some(decoded) = self.read(frame)? {
                return match decoded {
                    Decoded::Message(msg) => Ok(*msg),
                    Decoded::Unknown(kind) => Err(SessionError::Protocol(format!(
                        "the first message must be hello, not {:?}",
                        kind.chars().take(64).collect::<String>()
                    ))),
                };
            }
        }
    }

    /// The next protocol message. Ping and pong (answered by the WebSocket layer) and message
    /// types this relay does not know (logged once each) are skipped. The agent's Close, a
    /// connection gone, and a frame against the protocol are errors. Cancel safe: a frame
    /// is either consumed whole or left on the socket.
    pub(super) async fn recv(&mut self) -> Result<Message, SessionError> {
        loop {
            let frame = self.socket.next().await;
            if let Some(msg) = self.known(frame)? {
                return Ok(msg);
            }
        }
    }

    /// The next protocol message if one has arrived already, without waiting.
    pub(super) fn recv_now(&mut self) -> Option<Result<Message, SessionError>> {
        loop {
            let frame = self.socket.next().now_or_never()?;
            match self.known(frame) {
                Ok(Some(msg)) => return Some(Ok(msg)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// When a frame last arrived, or the agent's last message was handled.
    pub(super) fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Counts the agent as heard from now: handling its message may take long (a sync
    /// request calls the shop), and meanwhile it was waiting for the answer, not silent.
    pub(super) fn heard_now(&mut self) {
        self.last_heard = Instant::now();
    }

    /// A frame as a known message, `None` for frames that carry none (ping, pong, an unknown
    /// type).
    fn known(
        &mut self,
        frame: Option<Result<WsMessage, axum::Error>>,
    ) -> Result<Option<Message>, SessionError> {
        match self.read(frame)? {
            Some(Decoded::Message(msg)) => Ok(Some(*msg)),
            Some(Decoded::Unknown(kind)) => {
                self.ignored.note(kind);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// A frame read from the socket, decoded; `None` for ping and pong.
    fn read(
        &mut self,
        frame: Option<Result<WsMessage, axum::Error>>,
    ) -> Result<Option<Decoded>, SessionError> {
        self.last_heard = Instant::now();
        match frame {
            None => Err(SessionError::Gone),
            Some(Err(e)) => Err(SessionError::from_read(&e)),
            Some(Ok(WsMessage::Text(text))) => decode(text.as_str()).map(Some),
            Some(Ok(WsMessage::Close(frame))) => {
                Err(SessionError::ClientClosed(frame.map(|f| f.code)))
            }
            Some(Ok(WsMessage::Binary(_))) => Err(SessionError::Binary),
            Some(Ok(_)) => Ok(None),
        }
    }

    /// Writes one message; a write that takes longer than the write limit means the agent
    /// reads nothing (the connection is stalled).
    pub(super) async fn send(&mut self, msg: Message) -> Result<(), SessionError> {
        let frame = WsMessage::Text(Envelope::new(msg).to_json().into());
        match tokio::time::timeout(self.write_limit, self.socket.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionError::Gone),
            Err(_) => Err(SessionError::Stalled(self.write_limit.as_secs())),
        }
    }

    /// Sends a close frame with `code` and `reason` (cut to fit a close frame).
    pub(super) async fn close(&mut self, code: u16, reason: &str) -> Result<(), SessionError> {
        // Close reasons are limited to 123 bytes.
        let reason: String = reason.chars().take(100).collect();
        let frame = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        match tokio::time::timeout(CLOSE_WRITE_LIMIT, self.socket.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionError::Gone),
            Err(_) => Err(SessionError::Stalled(CLOSE_WRITE_LIMIT.as_secs())),
        }
    }

    /// Ends the session after `error`: with a close frame naming it, or, when the agent closed
    /// the session, by answering its Close (tungstenite queued the echo; closing flushes it).
    pub(super) async fn end(&mut self, error: &SessionError) {
        match error.close_code() {
            Some(code) => {
                let _ = self.close(code, &error.to_string()).await;
            }
            None => {
                if matches!(error, SessionError::ClientClosed(_)) {
                    let _ = tokio::time::timeout(CLOSE_WRITE_LIMIT, self.socket.close()).await;
                }
            }
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

#[cfg(test)]
mod tests;
