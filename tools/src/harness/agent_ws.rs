//! A bare agent connection to a plain-HTTP relay, speaking protocol v1 directly: hello, then
//! pushes, counting the relay's push acks. Lets tests drive the relay's push side at volumes
//! the Mamut watcher would coalesce away.

use futures_util::{SinkExt, StreamExt};
use shared::domain::Change;
use shared::protocol::{Envelope, Hello, Message, PROTOCOL_VERSION, Push};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::RelayProcess;

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

pub struct RawAgent {
    socket: Socket,
}

impl RawAgent {
    /// Connects with `token` and completes hello/welcome. The relay must run without TLS.
    pub async fn connect(relay: &RelayProcess, token: &str) -> Self {
        Self::connect_from(relay, token, std::net::Ipv4Addr::LOCALHOST)
            .await
            .unwrap_or_else(|e| panic!("agent connection: {e}"))
    }

    /// Like [`RawAgent::connect`], from the loopback address `source` (many addresses give
    /// many connections more source ports than one has).
    pub async fn connect_from(
        relay: &RelayProcess,
        token: &str,
        source: std::net::Ipv4Addr,
    ) -> Result<Self, String> {
        Self::connect_with_credit(relay, token, source, 1).await
    }

    /// Like [`RawAgent::connect_from`], asking for a credit window of `credit` deliveries.
    pub async fn connect_with_credit(
        relay: &RelayProcess,
        token: &str,
        source: std::net::Ipv4Addr,
        credit: u32,
    ) -> Result<Self, String> {
        let mut request = relay
            .ws_url()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let bearer = format!("Bearer {token}").parse().map_err(|_| "token")?;
        request.headers_mut().insert("authorization", bearer);
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind((source, 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
        let stream = socket
            .connect(([127, 0, 0, 1], relay.port).into())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| format!("WebSocket upgrade: {e}"))?;
        let mut agent = Self { socket };
        agent
            .send(Message::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_version: "test".into(),
                credit,
                role: Default::default(),
            }))
            .await;
        match agent.next().await {
            Message::Welcome(_) => Ok(agent),
            other => Err(format!("expected welcome, got {other:?}")),
        }
    }

    async fn send(&mut self, msg: Message) {
        let text = Envelope::new(msg).to_json();
        self.socket
            .send(WsMessage::text(text))
            .await
            .expect("frame sent");
    }

    /// The next protocol message, skipping heartbeats and control frames.
    async fn next(&mut self) -> Message {
        loop {
            let frame = self
                .socket
                .next()
                .await
                .expect("the relay keeps the connection")
                .expect("a frame");
            if let WsMessage::Text(text) = frame {
                let envelope = Envelope::from_json(&text).expect("a protocol frame");
                if !matches!(envelope.msg, Message::Heartbeat(_)) {
                    return envelope.msg;
                }
            }
        }
    }

    /// Pushes every change (ids `prefix-0`, `prefix-1`, ...) in windows of `window`, and
    /// returns once the relay acked them all.
    pub async fn push_all(&mut self, prefix: &str, changes: Vec<Change>, window: usize) {
        let total = changes.len();
        let mut acked = 0usize;
        let mut sent = 0usize;
        let mut changes = changes.into_iter();
        while acked < total {
            while sent - acked < window {
                let Some(change) = changes.next() else { break };
                self.send(Message::Push(Push {
                    push_id: format!("{prefix}-{sent}"),
                    change,
                }))
                .await;
                sent += 1;
            }
            match self.next().await {
                Message::PushAck(_) => acked += 1,
                other => panic!("expected push_ack, got {other:?}"),
            }
        }
    }

    /// Sends a frame as it is (malformed, binary, oversized: whatever a test needs).
    pub async fn send_frame(&mut self, frame: WsMessage) -> Result<(), String> {
        self.socket.send(frame).await.map_err(|e| e.to_string())
    }

    /// Starts the closing handshake with `code` and `reason`.
    pub async fn close_with(&mut self, code: u16, reason: &str) -> Result<(), String> {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.socket
            .close(Some(CloseFrame {
                code: code.into(),
                reason: reason.to_owned().into(),
            }))
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits for the relay's close frame and returns its code and reason; `Err` when the
    /// connection ended without one (what a client reports as 1006).
    pub async fn close_frame(&mut self) -> Result<(u16, String), String> {
        loop {
            match self.socket.next().await {
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return Ok((u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(WsMessage::Close(None))) => {
                    return Err("a close frame without a code".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("no close frame (1006): {e}")),
                None => return Err("no close frame (1006): the connection ended".into()),
            }
        }
    }

    /// Waits for the relay to close the session; returns the close frame's reason.
    pub async fn closed(&mut self) -> String {
        loop {
            match self.socket.next().await {
                Some(Ok(WsMessage::Close(frame))) => {
                    return frame.map(|f| f.reason.to_string()).unwrap_or_default();
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("connection failed: {e}"),
                None => return String::new(),
            }
        }
    }
}
