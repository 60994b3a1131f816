//! Invalid orders: stored and held with their problems, never written to Mamut, visible in the
//! admin API, and delivered once an operator has corrected and replayed them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tests::shop::order_body;
use tests::{SHOP, TENANT, eventually, setup};

const WAIT: Duration = Duration::from_secs(30);

/// The example order with problems an outside probe sent: a total of 1.00 for lines worth 516,
/// a twelve-letter currency and a 10 KB e-mail address (a VAT rate of 1000 %, a negative total
/// and the other rules are in `relay/src/validate.rs`'s tests).
fn invalid_body(order_id: &str) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&order_body(SHOP, order_id, "confirmed")).expect("JSON");
    let order = &mut body["order"];
    order["total"] = "1.00".into();
    order["currency"] = "SWEDISHKRONA".into();
    order["customer"]["email"] = format!("{}@example.se", "a".repeat(10_000)).into();
    serde_json::to_vec(&body).expect("JSON")
}

fn fields(problems: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problems
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["field"].as_str().map(str::to_owned))
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn an_invalid_order_is_held_until_corrected_and_replayed() {
    let world = setup().await;
    let admin = &world.admin;
    let (status, reply) = world.shop.send(SHOP, &invalid_body("bad-1")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "held", "{reply}");
    let id = reply["event_id"].as_i64().expect("event id");

    // A sound order sent after it reaches Mamut; the held one does not.
    let (status, _) = world
        .shop
        .send(SHOP, &order_body(SHOP, "good-1", "confirmed"))
        .await;
    assert_eq!(status, 200);
    eventually("the sound order is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    let written: Vec<String> = world
        .agent
        .applied()
        .iter()
        .map(|row| row.shop_order_id.clone())
        .collect();
    assert_eq!(written, ["good-1"], "the invalid order was not written");

    let held = admin.events(TENANT, Some("held")).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let reason = held[0]["last_error"].as_str().expect("reason");
    for field in ["order.total", "order.currency", "order.customer.email"] {
        assert!(reason.contains(field), "{field} missing from {reason}");
    }
    assert!(reason.len() < 2_000, "the reason quotes no 10 KB value");

    // A replay of the order as it is refused, with its problems.
    let replay = format!("/tenants/{TENANT}/events/{id}/replay");
    let (status, refused) = admin.call(Method::POST, &replay, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        fields(&refused["problems"]),
        ["order.currency", "order.customer.email", "order.total"]
    );
    assert_eq!(admin.event(TENANT, id).await["event"]["state"], "held");

    // The operator reads the body, corrects it and replays it.
    let payload_path = format!("/tenants/{TENANT}/events/{id}/payload");
    let (status, stored) = admin.call(Method::GET, &payload_path, None).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert!(stored["original"].is_null());
    let mut corrected = stored["payload"].clone();
    let mut wrong_order = corrected.clone();
    wrong_order["order"]["id"] = "other-order".into();
    let (status, reply) = admin
        .call(Method::PUT, &payload_path, Some(wrong_order))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    // A status that is not a trigger would deliver an order the shop's rules do not transfer.
    let mut not_a_trigger = corrected.clone();
    not_a_trigger["order"]["status"] = "cancelled".into();
    let (status, reply) = admin
        .call(Method::PUT, &payload_path, Some(not_a_trigger))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("trigger"),
        "{reply}"
    );
    let order = &mut corrected["order"];
    order["currency"] = "SEK".into();
    order["customer"]["email"] = "anna.svensson@example.se".into();
    order["total"] = "516.00".into();
    let (status, edited) = admin
        .call(Method::PUT, &payload_path, Some(corrected))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["problems"], serde_json::json!([]));
    let (status, replayed) = admin.call(Method::POST, &replay, None).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");

    eventually("the corrected order is applied", WAIT, || async {
        world.agent.applied().len() == 2
    })
    .await;
    eventually("the event is delivered", WAIT, || async {
        admin.event(TENANT, id).await["event"]["state"] == "delivered"
    })
    .await;
    let applied = world.agent.applied();
    let row = applied
        .iter()
        .find(|row| row.shop_order_id == "bad-1")
        .expect("the corrected order is written");
    let written: Value = serde_json::from_str(&row.order_json).expect("JSON");
    assert_eq!(
        (written["total"].as_str(), written["currency"].as_str()),
        (Some("516.00"), Some("SEK"))
    );

    let event = admin.event(TENANT, id).await;
    let states: Vec<&str> = event["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(states, ["held", "edited", "pending", "delivered"]);
    let (_, stored) = admin.call(Method::GET, &payload_path, None).await;
    let received: Value = serde_json::from_slice(&invalid_body("bad-1")).expect("JSON");
    assert_eq!(stored["original"], received, "the body received is kept");
}

#[tokio::test]
async fn a_held_order_can_be_forced_through_by_an_operator() {
    let world = setup().await;
    let mut body: Value =
        serde_json::from_slice(&order_body(SHOP, "rounded-1", "confirmed")).expect("JSON");
    body["order"]["total"] = "520.00".into();
    let (status, reply) = world
        .shop
        .send(SHOP, &serde_json::to_vec(&body).expect("JSON"))
        .await;
    assert_eq!(
        (status.as_u16(), reply["status"].as_str()),
        (200, Some("held"))
    );
    let id = reply["event_id"].as_i64().expect("event id");
    let path = format!("/tenants/{TENANT}/events/{id}/replay?force=true");
    let (status, replayed) = world.admin.call(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["forced"], true);
    eventually("the order is applied as sent", WAIT, || async {
        world.agent.applied().len() == 1
    })
    .await;
}
