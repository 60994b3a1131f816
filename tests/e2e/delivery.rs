//! A signed webhook becomes exactly one applied order.

use std::time::Duration;

use serde_json::Value;
use tests::shop::order_body;
use tests::{SHOP, TENANT, eventually, setup};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_signed_webhook_becomes_exactly_one_applied_order() {
    let world = setup().await;
    let body = order_body(SHOP, "100234", "confirmed");
    let (status, reply) = world.shop.send(SHOP, &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "accepted");
    let event_id = reply["event_id"].as_i64().expect("event id");

    eventually("the order is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    eventually("the event is delivered", WAIT, || async {
        world.admin.event(TENANT, event_id).await["event"]["state"] == "delivered"
    })
    .await;
    let applied = world.agent.applied();
    assert_eq!(applied.len(), 1);
    let row = &applied[0];
    assert_eq!(
        (
            row.shop_id.as_str(),
            row.shop_order_id.as_str(),
            row.document_type.as_str()
        ),
        (SHOP, "100234", "order")
    );
    let sent: Value = serde_json::from_slice(&body).expect("JSON");
    let written: Value = serde_json::from_str(&row.order_json).expect("JSON");
    assert_eq!(written, sent["order"], "the order reached Mamut unchanged");

    let event = world.admin.event(TENANT, event_id).await;
    assert_eq!(event["event"]["mamut_ref"], row.mamut_ref.as_str());
    let states: Vec<&str> = event["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(states, ["pending", "delivered"]);
}

#[tokio::test]
async fn a_shop_set_to_invoices_creates_invoices() {
    let world = setup().await;
    world
        .admin
        .add_shop(
            TENANT,
            "demo-no",
            &world.shop.secret_text(),
            &["confirmed"],
            "invoice",
        )
        .await;
    let (status, _) = world
        .shop
        .send("demo-no", &order_body("demo-no", "n-1", "confirmed"))
        .await;
    assert_eq!(status, 200);
    eventually("the invoice is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    assert_eq!(world.agent.applied()[0].document_type, "invoice");
}

#[tokio::test]
async fn duplicate_webhook_id_is_stored_once_and_applied_once() {
    let world = setup().await;
    let body = order_body(SHOP, "dup-1", "confirmed");
    let headers = world.shop.headers("msg_duplicate", &body);
    let (first, a) = world
        .shop
        .send_with(SHOP, body.clone(), &headers)
        .await
        .expect("sent");
    let (second, b) = world
        .shop
        .send_with(SHOP, body, &headers)
        .await
        .expect("sent");
    assert_eq!((first.as_u16(), second.as_u16()), (200, 200));
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("accepted"), Some("duplicate"))
    );
    assert_eq!(a["event_id"], b["event_id"]);
    assert_eq!(world.admin.events(TENANT, None).await.len(), 1);
    eventually("the order is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    // A control order sent after it is applied too; then still only one row for dup-1.
    world
        .shop
        .send(SHOP, &order_body(SHOP, "control", "confirmed"))
        .await;
    eventually("the control order is applied", WAIT, || async {
        world.agent.applied().len() == 2
    })
    .await;
    assert_eq!(
        world
            .agent
            .applied()
            .iter()
            .filter(|r| r.shop_order_id == "dup-1")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_status_outside_the_trigger_set_is_recorded_but_never_applied() {
    let world = setup().await;
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "held-1", "pending_payment"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "ignored");
    let ignored = world.admin.events(TENANT, Some("ignored")).await;
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0]["order_id"], "held-1");

    world
        .shop
        .send(SHOP, &order_body(SHOP, "control", "confirmed"))
        .await;
    eventually("the control order is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    let applied = world.agent.applied();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].shop_order_id, "control");
}

#[tokio::test]
async fn several_events_of_one_order_write_it_once() {
    let world = setup().await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "multi-1", "confirmed"))
        .await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "multi-1", "paid"))
        .await;
    eventually("both events are delivered", WAIT, || async {
        world.admin.events(TENANT, Some("delivered")).await.len() == 2
    })
    .await;
    assert_eq!(world.agent.applied().len(), 1);
    let events = world.admin.events(TENANT, None).await;
    assert_eq!(
        events[0]["mamut_ref"], events[1]["mamut_ref"],
        "both events name the same Mamut order"
    );
}
