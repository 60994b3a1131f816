//! The relay ends an agent session with the close code RFC 6455 (7.4.1) has for the reason,
//! read here by a WebSocket client: invalid data 1007, a binary frame 1003, another protocol
//! version or a message out of place 1002, an oversized message 1009 (and a log line naming
//! the limit). Unknown message types within the protocol version are ignored and logged once;
//! the agent's own Close is answered with a Close. An agent that reads nothing is cut off
//! after three heartbeats (1011) instead of holding its session forever.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use shared::ArticleNumber;
use shared::domain::{Change, StockLevel};
use shared::protocol::MAX_FRAME_BYTES;
use shared::signature::WebhookSecret;
use tests::agent_ws::RawAgent;
use tests::{Pki, RelayOptions, RelayProcess, SHOP, TENANT, eventually};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(10);

/// A plain-HTTP relay with the tenant and its shop, and a session of a bare agent on it.
async fn session() -> (RelayProcess, RawAgent) {
    let relay = RelayProcess::start(
        Arc::new(Pki::new()),
        RelayOptions {
            tls: false,
            ..RelayOptions::default()
        },
    )
    .await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    admin
        .add_shop(
            TENANT,
            SHOP,
            &WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec())
                .expect("key")
                .expose(),
            &["confirmed"],
            "order",
        )
        .await;
    let (_, token) = admin.create_agent(TENANT).await;
    let agent = RawAgent::connect(&relay, &token).await;
    (relay, agent)
}

async fn closed_with(agent: &mut RawAgent) -> (u16, String) {
    tokio::time::timeout(WAIT, agent.close_frame())
        .await
        .expect("the relay closes the session in time")
        .unwrap_or_else(|e| panic!("expected a close frame: {e}"))
}

#[tokio::test]
async fn malformed_text_after_hello_is_closed_with_1007() {
    let (_relay, mut agent) = session().await;
    agent
        .send_frame(WsMessage::text("{this is not json"))
        .await
        .expect("sent");
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1007, "reason: {reason}");

    // A known type with fields that do not fit is invalid data too.
    let (_relay, mut agent) = session().await;
    agent
        .send_frame(WsMessage::text(r#"{"v":1,"msg":{"type":"ack","seq":"x"}}"#))
        .await
        .expect("sent");
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1007, "reason: {reason}");
}

#[tokio::test]
async fn a_binary_frame_is_closed_with_1003() {
    let (_relay, mut agent) = session().await;
    agent
        .send_frame(WsMessage::binary(vec![1u8, 2, 3]))
        .await
        .expect("sent");
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1003, "reason: {reason}");
}

#[tokio::test]
async fn another_version_or_a_message_out_of_place_is_closed_with_1002() {
    let (_relay, mut agent) = session().await;
    agent
        .send_frame(WsMessage::text(
            r#"{"v":99,"msg":{"type":"heartbeat","sent_at_ms":1}}"#,
        ))
        .await
        .expect("sent");
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1002, "reason: {reason}");

    // A relay-to-agent message sent by the agent.
    let (_relay, mut agent) = session().await;
    agent
        .send_frame(WsMessage::text(
            r#"{"v":1,"msg":{"type":"push_ack","push_id":"p"}}"#,
        ))
        .await
        .expect("sent");
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1002, "reason: {reason}");
}

#[tokio::test]
async fn unknown_message_types_are_ignored_and_logged_once() {
    let (relay, mut agent) = session().await;
    for n in 0..3 {
        agent
            .send_frame(WsMessage::text(format!(
                r#"{{"v":1,"msg":{{"type":"from_the_future","n":{n}}}}}"#
            )))
            .await
            .expect("sent");
    }
    // The session goes on: a push after them is stored and acknowledged.
    let stock = Change::Stock(StockLevel {
        article_number: ArticleNumber::new("MUG-01").expect("valid"),
        warehouse: None,
        quantity: Decimal::from(7),
    });
    tokio::time::timeout(WAIT, agent.push_all("after-unknown", vec![stock], 1))
        .await
        .expect("the push is acknowledged");
    let logs = relay.logs();
    assert_eq!(
        logs.matches("ignoring a message type").count(),
        1,
        "logged once: {logs}"
    );
    assert!(logs.contains("from_the_future"), "names the type: {logs}");
    assert!(!logs.contains("agent session failed"), "{logs}");
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009_and_the_limit_is_logged() {
    let (relay, mut agent) = session().await;
    let oversized = "x".repeat(MAX_FRAME_BYTES + 1);
    // The relay may stop reading before the whole frame is sent; its close frame is what
    // counts.
    let _ = agent.send_frame(WsMessage::text(oversized)).await;
    let (code, reason) = closed_with(&mut agent).await;
    assert_eq!(code, 1009, "reason: {reason}");
    let limit = format!("the limit is {MAX_FRAME_BYTES} bytes");
    eventually("the relay logs the limit", WAIT, || async {
        relay.logs().contains(&limit)
    })
    .await;
    assert_eq!(
        relay
            .metric("relay_refused_total{limit=\"max_message_bytes\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn the_agents_close_is_answered_with_a_close() {
    let (_relay, mut agent) = session().await;
    agent.close_with(1000, "bye").await.expect("close sent");
    let (code, _) = closed_with(&mut agent).await;
    assert_eq!(code, 1000);

    let (_relay, mut agent) = session().await;
    agent.close_with(4001, "custom").await.expect("close sent");
    let (code, _) = closed_with(&mut agent).await;
    assert_eq!(code, 4001, "the relay echoes the agent's code");
}

/// An agent that stops reading while the relay has megabytes to send it: the relay's writes
/// stall once the TCP buffers are full; it ends the session after three heartbeats of that
/// (6 s here) rather than holding it, and its lease, for as long as the connection stays open.
#[tokio::test]
async fn an_agent_that_reads_nothing_is_cut_off_after_three_heartbeats() {
    let relay = RelayProcess::start(
        Arc::new(Pki::new()),
        RelayOptions {
            tls: false,
            ..RelayOptions::default()
        },
    )
    .await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    let secret = WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec()).expect("key");
    admin
        .add_shop(TENANT, SHOP, &secret.expose(), &["confirmed"], "order")
        .await;
    let (_, token) = admin.create_agent(TENANT).await;
    let mut agent =
        RawAgent::connect_with_credit(&relay, &token, std::net::Ipv4Addr::LOCALHOST, 64)
            .await
            .expect("agent connects");
    // Orders of 1,000 lines (about 500 KB each): 40 of them are far more than loopback's
    // socket buffers hold.
    let shop = relay.shop_with(secret);
    for i in 0..40 {
        let mut body: serde_json::Value = serde_json::from_slice(&tests::shop::order_body(
            SHOP,
            &format!("big-{i}"),
            "confirmed",
        ))
        .expect("JSON");
        let line = serde_json::json!({
            "article_number": "BIG-1", "name": "x".repeat(400), "quantity": 1,
            "unit_price": "1.00", "vat_rate": "25", "discount": "0.00"
        });
        body["order"]["lines"] = vec![line; 1000].into();
        body["order"]["total"] = "1049.00".into();
        let (status, reply) = shop
            .send(SHOP, &serde_json::to_vec(&body).expect("JSON"))
            .await;
        assert_eq!(
            (status.as_u16(), reply["status"].as_str()),
            (200, Some("accepted")),
            "{reply}"
        );
        // The agent still speaks (it is not silent), it only does not read.
        agent.send_frame(heartbeat()).await.expect("heartbeat sent");
    }
    eventually(
        "the relay ends the stalled session",
        Duration::from_secs(30),
        || async { relay.logs().contains("the connection is stalled") },
    )
    .await;
    assert_eq!(
        relay
            .metric("relay_refused_total{limit=\"write_stall\"}")
            .await,
        1
    );
    drop(agent);
}

/// A heartbeat frame as an agent sends it.
fn heartbeat() -> WsMessage {
    let sent_at_ms = chrono::Utc::now().timestamp_millis();
    WsMessage::text(
        shared::protocol::Envelope::new(shared::protocol::Message::Heartbeat(
            shared::protocol::Heartbeat { sent_at_ms },
        ))
        .to_json(),
    )
}
