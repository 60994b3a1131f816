//! Tests of the relay's side of an agent's WebSocket, driven through channels: what `recv`
//! skips and what ends a session, reading without waiting, and the handshake.

use std::pin::Pin;
use std::task::{Context, Poll};

use shared::protocol::{Ack, Heartbeat, Hello};
use tokio::sync::mpsc;

use super::*;

/// A socket whose frames come from and go to channels.
struct Duplex {
    incoming: mpsc::UnboundedReceiver<WsMessage>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
}

impl Stream for Duplex {
    type Item = Result<WsMessage, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<WsMessage> for Duplex {
    type Error = axum::Error;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        self.outgoing.send(item).map_err(axum::Error::new)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection, the agent's sending end, and what the relay wrote.
fn connection() -> (
    Connection<Duplex>,
    mpsc::UnboundedSender<WsMessage>,
    mpsc::UnboundedReceiver<WsMessage>,
) {
    let (agent, incoming) = mpsc::unbounded_channel();
    let (outgoing, written) = mpsc::unbounded_channel();
    let conn = Connection::new(Duplex { incoming, outgoing }, Duration::from_secs(5));
    (conn, agent, written)
}

fn text(msg: Message) -> WsMessage {
    WsMessage::Text(Envelope::new(msg).to_json().into())
}

fn unknown_type() -> WsMessage {
    WsMessage::Text(
        format!(r#"{{"v":{PROTOCOL_VERSION},"msg":{{"type":"from_the_future"}}}}"#).into(),
    )
}

fn ack(seq: u64) -> Message {
    Message::Ack(Ack {
        seq,
        mamut_ref: None,
        already_applied: false,
    })
}

fn hello(protocol_version: u16, credit: u32) -> Message {
    Message::Hello(Hello {
        protocol_version,
        agent_version: "test".into(),
        credit,
        role: SessionRole::default(),
    })
}

#[tokio::test]
async fn recv_skips_pings_and_unknown_types_and_returns_the_next_message() {
    let (mut conn, agent, _written) = connection();
    let frames = [
        WsMessage::Ping(Vec::new().into()),
        unknown_type(),
        text(ack(7)),
    ];
    for frame in frames {
        assert!(agent.send(frame).is_ok());
    }
    assert!(matches!(conn.recv().await, Ok(Message::Ack(a)) if a.seq == 7));
}

#[tokio::test]
async fn the_agents_close_binary_frames_and_a_gone_socket_end_the_session() {
    let (mut conn, agent, _written) = connection();
    let close = WsMessage::Close(Some(CloseFrame {
        code: 1000,
        reason: "bye".into(),
    }));
    assert!(agent.send(close).is_ok());
    assert!(matches!(
        conn.recv().await,
        Err(SessionError::ClientClosed(Some(1000)))
    ));

    assert!(agent.send(WsMessage::Binary(vec![1, 2].into())).is_ok());
    let binary = conn.recv().await;
    assert!(matches!(&binary, Err(e) if e.close_code() == Some(1003)));

    drop(agent);
    assert!(matches!(conn.recv().await, Err(SessionError::Gone)));
}

#[tokio::test]
async fn recv_now_reads_what_has_arrived_without_waiting() {
    let (mut conn, agent, _written) = connection();
    assert!(conn.recv_now().is_none());
    assert!(agent.send(unknown_type()).is_ok());
    assert!(agent.send(text(ack(1))).is_ok());
    assert!(matches!(conn.recv_now(), Some(Ok(Message::Ack(a))) if a.seq == 1));
    assert!(conn.recv_now().is_none());
    assert!(agent.send(WsMessage::Text("not json".into())).is_ok());
    let malformed = conn.recv_now();
    assert!(matches!(&malformed, Some(Err(e)) if e.close_code() == Some(1007)));
}

fn terms() -> Terms {
    Terms {
        tenant_id: TenantId::new("acme").expect("a valid tenant id"),
        max_credit: 8,
        heartbeat_secs: 15,
    }
}

#[tokio::test]
async fn the_handshake_answers_a_hello_with_a_welcome_and_the_granted_credit() {
    let (mut conn, agent, mut written) = connection();
    assert!(agent.send(text(hello(PROTOCOL_VERSION, 100))).is_ok());
    let granted = conn.hello(terms()).await;
    assert!(
        matches!(granted, Ok((8, SessionRole::Agent, _))),
        "{granted:?}"
    );
    let Some(WsMessage::Text(welcome)) = written.recv().await else {
        panic!("the relay answers with a text frame");
    };
    let welcome = Envelope::from_json(welcome.as_str()).map(|e| e.msg);
    assert!(
        matches!(&welcome, Ok(Message::Welcome(w)) if w.credit == 8 && w.heartbeat_secs == 15),
        "{welcome:?}"
    );
}

#[tokio::test]
async fn the_first_message_must_be_a_hello_of_this_protocol_version() {
    for first in [
        unknown_type(),
        text(Message::Heartbeat(Heartbeat { sent_at_ms: 0 })),
        text(hello(PROTOCOL_VERSION + 1, 4)),
    ] {
        let (mut conn, agent, _written) = connection();
        assert!(agent.send(first).is_ok());
        let refused = conn.hello(terms()).await;
        assert!(
            matches!(&refused, Err(e) if e.close_code() == Some(1002)),
            "{refused:?}"
        );
    }
}
