//! An agent session driven through channels: credit window, per-order ordering, ack, nack.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use futures_util::{Sink, Stream};
use relay::AppState;
use relay::auth::AgentIdentity;
use relay::config::Config;
use relay::store::{AnyStore, EventState, NewEvent, StoreLocation};
use shared::domain::DocumentType;
use shared::protocol::{Ack, Envelope, Hello, Message, Nack, PROTOCOL_VERSION};
use shared::{AgentId, ShopId, TenantId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The relay's side of a socket whose other end is the test.
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

struct Agent {
    to_relay: mpsc::UnboundedSender<WsMessage>,
    from_relay: mpsc::UnboundedReceiver<WsMessage>,
}

impl Agent {
    fn send(&self, msg: Message) {
        let text = Envelope::new(msg).to_json();
        self.to_relay
            .send(WsMessage::Text(text.into()))
            .expect("session is running");
    }

    async fn recv(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.from_relay.recv())
                .await
                .expect("a frame within 10 s")
                .expect("session still open");
            if let WsMessage::Text(text) = frame {
                let msg = Envelope::from_json(text.as_str()).expect("valid frame").msg;
                if !matches!(msg, Message::Heartbeat(_)) {
                    return msg;
                }
            }
        }
    }

    async fn deliveries(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            match self.recv().await {
                Message::Deliver(d) => seqs.push(d.seq),
                other => panic!("expected a delivery, got {other:?}"),
            }
        }
        seqs
    }

    /// Nothing but heartbeats arrive while the relay is given time to misbehave.
    async fn assert_quiet(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.from_relay.recv()).await
        {
            if let WsMessage::Text(text) = frame {
                let msg = Envelope::from_json(text.as_str()).expect("valid frame").msg;
                assert!(matches!(msg, Message::Heartbeat(_)), "unexpected {msg:?}");
            }
        }
    }
}

pub(crate) struct Fixture {
    pub(crate) app: Arc<AppState>,
    tenant: TenantId,
    agent_id: AgentId,
    _dir: tempfile::TempDir,
}

pub(crate) async fn fixture() -> Fixture {
    fixture_with(Config::default()).await
}

async fn fixture_with(config: Config) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
        .await
        .expect("store opens");
    let tenant = TenantId::new("acme").expect("valid");
    store
        .create_tenant(tenant.clone(), "Acme".into())
        .await
        .expect("tenant");
    // A real agent row: the session checks that its agent is not revoked.
    let agent_id = store
        .create_agent(tenant.clone(), "mamut-1".into())
        .await
        .expect("agent")
        .id;
    store
        .add_shop(relay::store::ShopRecord {
            shop_id: ShopId::new("demo-se").expect("valid"),
            tenant_id: tenant.clone(),
            webhook_secrets: vec![
                shared::signature::WebhookSecret::from_bytes(vec![1; 32]).expect("key"),
            ],
            trigger_statuses: vec!["confirmed".into()],
            document_type: DocumentType::Order,
            settings: Default::default(),
            api_key: None,
        })
        .await
        .expect("shop");
    let shutdown = CancellationToken::new();
    let (state, _) =
        relay::AppState::new(config, store, shutdown.clone()).expect("the relay's state");
    let app = Arc::new(state);
    Fixture {
        app,
        tenant,
        agent_id,
        _dir: dir,
    }
}

async fn add_event(f: &Fixture, webhook_id: &str, order_id: &str) -> i64 {
    let mut body: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/tests/fixtures/order-webhook-full.json"
    ))
    .expect("JSON");
    body["order"]["id"] = order_id.into();
    f.app
        .store
        .ingest(NewEvent {
            tenant_id: f.tenant.clone(),
            shop_id: ShopId::new("demo-se").expect("valid"),
            webhook_id: webhook_id.into(),
            order_id: order_id.into(),
            order_status: "confirmed".into(),
            document_type: DocumentType::Order,
            payload: body.to_string(),
            state: EventState::Pending,
            hold_reason: None,
            received_headers: None,
        })
        .await
        .expect("ingest")
        .event_id
}

fn connect(f: &Fixture) -> Agent {
    let (to_relay, incoming) = mpsc::unbounded_channel();
    let (outgoing, from_relay) = mpsc::unbounded_channel();
    let identity = AgentIdentity {
        agent_id: f.agent_id.clone(),
        tenant_id: f.tenant.clone(),
    };
    tokio::spawn(relay::deliver::run(
        f.app.clone(),
        identity,
        None,
        Duplex { incoming, outgoing },
    ));
    Agent {
        to_relay,
        from_relay,
    }
}

async fn hello(agent: &mut Agent, credit: u32) {
    agent.send(Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
        credit,
        role: Default::default(),
    }));
    match agent.recv().await {
        Message::Welcome(w) => assert_eq!(w.credit, credit),
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn ack(seq: u64) -> Message {
    Message::Ack(Ack {
        seq,
        mamut_ref: Some(format!("O{seq}")),
        already_applied: false,
    })
}

async fn state_of(f: &Fixture, id: i64) -> EventState {
    f.app
        .store
        .event(f.tenant.clone(), id)
        .await
        .expect("store")
        .expect("event exists")
        .0
        .state
}

#[tokio::test]
async fn the_credit_window_bounds_what_is_in_flight() {
    let f = fixture().await;
    let a = add_event(&f, "w1", "o1").await;
    let b = add_event(&f, "w2", "o2").await;
    let c = add_event(&f, "w3", "o3").await;
    let mut agent = connect(&f);
    hello(&mut agent, 2).await;
    assert_eq!(agent.deliveries(2).await, vec![a as u64, b as u64]);
    agent.assert_quiet().await;
    agent.send(ack(a as u64));
    assert_eq!(agent.deliveries(1).await, vec![c as u64]);
    assert_eq!(state_of(&f, a).await, EventState::Delivered);
    assert_eq!(state_of(&f, b).await, EventState::Pending);
}

#[tokio::test]
async fn events_of_one_order_go_one_at_a_time_in_order() {
    let f = fixture().await;
    let first = add_event(&f, "w1", "o1").await;
    let second = add_event(&f, "w2", "o1").await;
    let other = add_event(&f, "w3", "o2").await;
    let mut agent = connect(&f);
    hello(&mut agent, 8).await;
    assert_eq!(agent.deliveries(2).await, vec![first as u64, other as u64]);
    agent.assert_quiet().await;
    agent.send(ack(first as u64));
    assert_eq!(agent.deliveries(1).await, vec![second as u64]);
}

#[tokio::test]
async fn a_new_event_wakes_the_session_at_once() {
    let f = fixture().await;
    let mut agent = connect(&f);
    hello(&mut agent, 4).await;
    // Wait until the session is registered before the event arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f.app.registry.is_connected(&f.tenant) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never registered"
        );
        tokio::task::yield_now().await;
    }
    let id = add_event(&f, "w1", "o1").await;
    f.app.registry.wake(&f.tenant);
    assert_eq!(agent.deliveries(1).await, vec![id as u64]);
}

#[tokio::test]
async fn a_permanent_nack_dead_letters_and_a_replay_delivers_again() {
    let f = fixture().await;
    let id = add_event(&f, "w1", "o1").await;
    let mut agent = connect(&f);
    hello(&mut agent, 4).await;
    assert_eq!(agent.deliveries(1).await, vec![id as u64]);
    agent.send(Message::Nack(Nack {
        seq: id as u64,
        retryable: false,
        reason: "unknown article".into(),
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state_of(&f, id).await != EventState::Dead {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::task::yield_now().await;
    }
    f.app
        .store
        .replay(f.tenant.clone(), id)
        .await
        .expect("replay");
    f.app.registry.wake(&f.tenant);
    assert_eq!(agent.deliveries(1).await, vec![id as u64]);
}

#[tokio::test]
async fn unacknowledged_deliveries_are_sent_again_to_the_next_session() {
    let f = fixture().await;
    let id = add_event(&f, "w1", "o1").await;
    let mut first = connect(&f);
    hello(&mut first, 4).await;
    assert_eq!(first.deliveries(1).await, vec![id as u64]);
    drop(first);
    let mut second = connect(&f);
    hello(&mut second, 4).await;
    match second.recv().await {
        Message::Deliver(d) => {
            assert_eq!(d.seq, id as u64);
            assert_eq!(d.attempt, 2);
        }
        other => panic!("expected a redelivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_delivery_without_an_ack_is_sent_again_after_the_ack_timeout() {
    let f = fixture_with(Config {
        ack_timeout_secs: 1,
        ..Config::default()
    })
    .await;
    let id = add_event(&f, "w1", "o1").await;
    let mut agent = connect(&f);
    hello(&mut agent, 4).await;
    assert_eq!(agent.deliveries(1).await, vec![id as u64]);
    // No ack: the same event comes again, counted as a second attempt.
    match agent.recv().await {
        Message::Deliver(d) => assert_eq!((d.seq, d.attempt), (id as u64, 2)),
        other => panic!("expected a redelivery, got {other:?}"),
    }
    agent.send(ack(id as u64));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state_of(&f, id).await != EventState::Delivered {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::task::yield_now().await;
    }
}
