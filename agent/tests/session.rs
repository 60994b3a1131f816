//! The agent's session driven through channels, with an in-memory Mamut.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use agent::mamut::{Applied, ApplyError, ApplyFuture, Mamut};
use agent::session::{SessionError, SessionSettings, run_session};
use agent::watch::PushBatch;
use futures_util::{Sink, Stream};
use shared::domain::{Change, StockLevel};
use shared::domain::{DocumentType, OrderWebhook};
use shared::protocol::{
    Deliver, Envelope, Heartbeat, Message, PROTOCOL_VERSION, Push, PushAck, Welcome,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_util::sync::CancellationToken;

struct Duplex {
    incoming: mpsc::UnboundedReceiver<Result<WsMessage, WsError>>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
}

impl Stream for Duplex {
    type Item = Result<WsMessage, WsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx)
    }
}

impl Sink<WsMessage> for Duplex {
    type Error = WsError;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), WsError> {
        self.outgoing
            .send(item)
            .map_err(|_| WsError::ConnectionClosed)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
}

/// Applies every order except those whose id starts with `bad-`.
#[derive(Default)]
struct FakeMamut {
    applied: Mutex<Vec<String>>,
}

impl Mamut for FakeMamut {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        Box::pin(async move {
            if delivery.order.id.starts_with("bad-") {
                return Err(ApplyError::Permanent(format!(
                    "unknown article in {}",
                    delivery.order.id
                )));
            }
            let mut applied = self
                .applied
                .lock()
                .map_err(|_| ApplyError::Retryable("poisoned".into()))?;
            applied.push(delivery.order.id.clone());
            Ok(Applied {
                mamut_ref: format!("O{}", applied.len()),
                already_applied: false,
            })
        })
    }
}

struct Relay {
    to_agent: mpsc::UnboundedSender<Result<WsMessage, WsError>>,
    from_agent: mpsc::UnboundedReceiver<WsMessage>,
}

impl Relay {
    fn send(&self, msg: Message) {
        let _ = self
            .to_agent
            .send(Ok(WsMessage::Text(Envelope::new(msg).to_json().into())));
    }

    async fn recv(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.from_agent.recv())
                .await
                .expect("a frame within 10 s")
                .expect("session open");
            if let WsMessage::Text(text) = frame {
                let msg = Envelope::from_json(text.as_str()).expect("valid frame").msg;
                if !matches!(msg, Message::Heartbeat(_)) {
                    return msg;
                }
            }
        }
    }
}

type Started = (
    Relay,
    tokio::task::JoinHandle<Result<(), SessionError>>,
    CancellationToken,
    mpsc::Sender<PushBatch>,
);

fn start(mamut: Arc<FakeMamut>) -> Started {
    let (to_agent, incoming) = mpsc::unbounded_channel();
    let (outgoing, from_agent) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let settings = SessionSettings {
        credit: 4,
        heartbeat: Duration::from_secs(5),
    };
    let token = cancel.clone();
    let (batches, mut pushes) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        run_session(
            Duplex { incoming, outgoing },
            mamut,
            &settings,
            &mut pushes,
            &token,
        )
        .await
    });
    (
        Relay {
            to_agent,
            from_agent,
        },
        task,
        cancel,
        batches,
    )
}

fn welcome() -> Message {
    Message::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        relay_version: "test".into(),
        tenant_id: "acme".parse().expect("tenant"),
        credit: 4,
        heartbeat_secs: 5,
    })
}

fn deliver(seq: u64, order_id: &str) -> Message {
    let webhook: OrderWebhook = serde_json::from_str(include_str!(
        "../../shared/tests/fixtures/order-webhook-full.json"
    ))
    .expect("fixture");
    let mut order = webhook.order;
    order.id = order_id.into();
    Message::Deliver(Deliver {
        seq,
        attempt: 1,
        shop_id: webhook.shop_id,
        document_type: DocumentType::Order,
        order,
    })
}

#[tokio::test]
async fn hello_comes_first_and_each_delivery_is_answered_after_its_apply() {
    let mamut = Arc::new(FakeMamut::default());
    let (mut relay, _task, _cancel, _batches) = start(mamut.clone());
    match relay.recv().await {
        Message::Hello(hello) => assert_eq!(
            (hello.protocol_version, hello.credit),
            (PROTOCOL_VERSION, 4)
        ),
        other => panic!("expected hello, got {other:?}"),
    }
    relay.send(welcome());
    relay.send(deliver(7, "100234"));
    match relay.recv().await {
        Message::Ack(ack) => assert_eq!((ack.seq, ack.mamut_ref.as_deref()), (7, Some("O1"))),
        other => panic!("expected ack, got {other:?}"),
    }
    assert_eq!(mamut.applied.lock().expect("lock").as_slice(), ["100234"]);
    relay.send(deliver(8, "bad-1"));
    match relay.recv().await {
        Message::Nack(nack) => {
            assert_eq!((nack.seq, nack.retryable), (8, false));
            assert!(nack.reason.contains("unknown article"));
        }
        other => panic!("expected nack, got {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_frame_ends_the_session_without_a_panic() {
    let (mut relay, task, _cancel, _batches) = start(Arc::new(FakeMamut::default()));
    relay.recv().await;
    relay.send(welcome());
    let _ = relay.to_agent.send(Ok(WsMessage::Text(
        "{\"v\":1,\"msg\":{\"type\":\"nonsense\"}}".into(),
    )));
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("no panic");
    assert!(
        matches!(result, Err(SessionError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_relay_is_declared_dead_after_three_heartbeats() {
    let (mut relay, task, _cancel, _batches) = start(Arc::new(FakeMamut::default()));
    relay.recv().await;
    relay.send(welcome());
    // The relay says nothing more; with time paused the timers run at once.
    let result = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("ends")
        .expect("no panic");
    assert!(
        matches!(result, Err(SessionError::Dead(d)) if d == Duration::from_secs(15)),
        "{result:?}"
    );
}

#[tokio::test]
async fn heartbeats_keep_the_session_alive_and_cancel_ends_it_cleanly() {
    let (mut relay, task, cancel, _batches) = start(Arc::new(FakeMamut::default()));
    relay.recv().await;
    relay.send(welcome());
    relay.send(Message::Heartbeat(Heartbeat { sent_at_ms: 1 }));
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_push_batch_is_acknowledged_only_when_the_relay_acked_every_push() {
    let (mut relay, _task, _cancel, batches) = start(Arc::new(FakeMamut::default()));
    relay.recv().await;
    relay.send(welcome());
    let push = |id: &str| Push {
        push_id: id.into(),
        change: Change::Stock(StockLevel {
            article_number: "MUG-01".parse().expect("article"),
            warehouse: None,
            quantity: 5.into(),
        }),
    };
    let (acknowledged, mut ack) = tokio::sync::oneshot::channel();
    batches
        .send(PushBatch {
            pushes: vec![push("stock-1-a"), push("stock-2-a")],
            acknowledged,
        })
        .await
        .expect("sent");
    let mut ids = Vec::new();
    for _ in 0..2 {
        match relay.recv().await {
            Message::Push(p) => ids.push(p.push_id),
            other => panic!("expected a push, got {other:?}"),
        }
    }
    assert_eq!(ids, ["stock-1-a", "stock-2-a"]);
    relay.send(Message::PushAck(PushAck {
        push_id: ids[0].clone(),
    }));
    relay.send(Message::Heartbeat(Heartbeat { sent_at_ms: 1 }));
    // A heartbeat after the first ack proves the session handled it; the batch is not done yet.
    tokio::time::timeout(Duration::from_millis(200), &mut ack)
        .await
        .expect_err("acknowledged too early");
    relay.send(Message::PushAck(PushAck {
        push_id: ids[1].clone(),
    }));
    tokio::time::timeout(Duration::from_secs(10), ack)
        .await
        .expect("acknowledged")
        .expect("sender kept");
}
