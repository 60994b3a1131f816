//! One WebSocket connection to the relay, as the protocol sees it: the hello/welcome handshake,
//! then protocol messages in and out. Sessions ([`crate::session`]), `agent check` and
//! `agent sync` all read and write frames through it.
//!
//! The frame size limits are the socket's own (set where it is opened, [`super::connect`]).
//! Generic over the socket so tests drive it through channels.

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shared::protocol::{Envelope, Hello, Message, PROTOCOL_VERSION, SessionRole, Welcome};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

/// Longest wait for the relay's welcome.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection with the relay ends.
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

/// The agent's end of a WebSocket to the relay.
pub struct Connection<S> {
    socket: S,
    /// When the last frame of any kind (pings included) came from the relay.
    last_heard: Instant,
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<WsMessage, WsError>> + Sink<WsMessage> + Unpin,
{
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            last_heard: Instant::now(),
        }
    }

    /// Says hello as `role`, offering `credit` deliveries in flight, and waits (at most 10 s)
    /// for the relay's welcome, which must speak this agent's protocol version.
    pub async fn hello(&mut self, role: SessionRole, credit: u32) -> Result<Welcome, SessionError> {
        self.send(Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            credit,
            role,
        }))
        .await?;
        let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, self.recv()).await {
            Err(_) => {
                return Err(SessionError::Protocol(format!(
                    "no welcome from the relay within {} s",
                    WELCOME_TIMEOUT.as_secs()
                )));
            }
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
        Ok(welcome)
    }

    /// The next protocol message from the relay; pings and pongs are passed over (tungstenite
    /// answers pings itself). A close frame, the end of the stream, a socket error, a binary
    /// frame or text that is not a protocol message end the connection. Cancel-safe: a
    /// message is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Result<Message, SessionError> {
        loop {
            let frame = self.socket.next().await;
            self.last_heard = Instant::now();
            if let Some(message) = decode(frame)? {
                return Ok(message);
            }
        }
    }

    /// Sends one protocol message.
    pub async fn send(&mut self, message: Message) -> Result<(), SessionError> {
        self.socket
            .send(WsMessage::Text(Envelope::new(message).to_json().into()))
            .await
            .map_err(|_| SessionError::Closed(None))
    }

    /// Ends the connection with a close frame; a relay already gone is not an error.
    pub async fn close(&mut self) {
        let _ = self.socket.send(WsMessage::Close(None)).await;
    }

    /// When the relay was last heard from (any frame).
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }
}

/// One frame from the relay: a protocol message, nothing (a ping or pong), or how the
/// connection ends.
pub(crate) fn decode(
    frame: Option<Result<WsMessage, WsError>>,
) -> Result<Option<Message>, SessionError> {
    match frame {
        None => Err(SessionError::Closed(None)),
        Some(Err(e)) => Err(SessionError::Socket(e.to_string())),
        Some(Ok(WsMessage::Close(frame))) => Err(closed(frame)),
        Some(Ok(WsMessage::Text(text))) => Envelope::from_json(text.as_str())
            .map(|envelope| Some(envelope.msg))
            .map_err(|e| SessionError::Protocol(e.to_string())),
        Some(Ok(WsMessage::Binary(_))) => Err(SessionError::Protocol(
            "binary frames are not part of the protocol".into(),
        )),
        Some(Ok(_)) => Ok(None), // ping, pong: tungstenite answers pings itself
    }
}

/// What the relay's close frame says: a revoked token (policy violation, 1008, naming the
/// revocation) is told apart from an ordinary end of the session.
fn closed(frame: Option<CloseFrame>) -> SessionError {
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

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    fn close(code: CloseCode, reason: &'static str) -> Option<Result<WsMessage, WsError>> {
        Some(Ok(WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))))
    }

    #[test]
    fn a_close_naming_a_revocation_is_told_apart_from_an_ordinary_end() {
        match decode(close(CloseCode::Policy, "agent token revoked")) {
            Err(SessionError::Revoked(reason)) => assert_eq!(reason, "agent token revoked"),
            other => panic!("expected a revocation, got {other:?}"),
        }
        let away = decode(close(CloseCode::Away, "shutting down")).map_err(|e| e.to_string());
        assert_eq!(
            away.err().as_deref(),
            Some("the relay closed the connection: shutting down (code 1001)")
        );
        assert!(matches!(decode(None), Err(SessionError::Closed(None))));
    }

    #[test]
    fn pings_are_passed_over_and_binary_frames_end_the_connection() {
        assert!(matches!(
            decode(Some(Ok(WsMessage::Ping(Default::default())))),
            Ok(None)
        ));
        assert!(matches!(
            decode(Some(Ok(WsMessage::Binary(Default::default())))),
            Err(SessionError::Protocol(_))
        ));
        assert!(matches!(
            decode(Some(Ok(WsMessage::text("{not json")))),
            Err(SessionError::Protocol(_))
        ));
    }
}
