//! Requests the relay must refuse: each gets its status code and stores nothing.

use std::time::Duration;

use tests::shop::order_body;
use tests::{RelayOptions, SHOP, TENANT, eventually, setup, setup_with};

#[tokio::test]
async fn rejected_webhooks_store_nothing_and_deliver_nothing() {
    let options = RelayOptions {
        max_body_bytes: Some(16 * 1024),
        ..RelayOptions::default()
    };
    let world = setup_with(options, Default::default()).await;
    let shop = &world.shop;
    let good = order_body(SHOP, "rejected-1", "confirmed");
    let now = chrono::Utc::now().timestamp();
    let signed = |id: &str, ts: i64, body: &[u8]| {
        vec![
            ("webhook-id".to_string(), id.to_string()),
            ("webhook-timestamp".to_string(), ts.to_string()),
            (
                "webhook-signature".to_string(),
                shop.secret.sign(id, ts, body),
            ),
        ]
    };
    let without = |name: &str| -> Vec<(String, String)> {
        signed("msg_x", now, &good)
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    };
    let mut bad_signature = signed("msg_bad", now, &good);
    bad_signature[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let other_key = shared::signature::WebhookSecret::from_bytes(vec![9; 32]).expect("key");
    let mut wrong_key = signed("msg_wrong_key", now, &good);
    wrong_key[2].1 = other_key.sign("msg_wrong_key", now, &good);
    let mismatch = order_body("other-shop", "rejected-2", "confirmed");
    let missing_fields = br#"{"event":"order.status_changed","shop_id":"demo-se"}"#.to_vec();
    let huge = {
        let mut value: serde_json::Value = serde_json::from_slice(&good).expect("JSON");
        value["order"]["customer"]["first_name"] = "x".repeat(20 * 1024).into();
        serde_json::to_vec(&value).expect("JSON")
    };

    type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(String, String)>, u16);
    let cases: Vec<Case> = vec![
        ("bad signature", SHOP, good.clone(), bad_signature, 401),
        (
            "signed with another secret",
            SHOP,
            good.clone(),
            wrong_key,
            401,
        ),
        (
            "missing webhook-id",
            SHOP,
            good.clone(),
            without("webhook-id"),
            401,
        ),
        (
            "missing webhook-timestamp",
            SHOP,
            good.clone(),
            without("webhook-timestamp"),
            401,
        ),
        (
            "missing webhook-signature",
            SHOP,
            good.clone(),
            without("webhook-signature"),
            401,
        ),
        (
            "timestamp 10 minutes old",
            SHOP,
            good.clone(),
            signed("msg_old", now - 600, &good),
            401,
        ),
        (
            "timestamp 10 minutes ahead",
            SHOP,
            good.clone(),
            signed("msg_new", now + 600, &good),
            401,
        ),
        (
            "unknown shop",
            "no-such-shop",
            good.clone(),
            signed("msg_unknown", now, &good),
            404,
        ),
        (
            "not JSON",
            SHOP,
            b"not json".to_vec(),
            signed("msg_nojson", now, b"not json"),
            400,
        ),
        (
            "missing fields",
            SHOP,
            missing_fields.clone(),
            signed("msg_fields", now, &missing_fields),
            400,
        ),
        (
            "body for another shop",
            SHOP,
            mismatch.clone(),
            signed("msg_mismatch", now, &mismatch),
            400,
        ),
        (
            "body over the limit",
            SHOP,
            huge.clone(),
            signed("msg_huge", now, &huge),
            413,
        ),
    ];
    for (name, shop_id, body, headers, want) in cases {
        let (status, reply) = shop
            .send_with(shop_id, body, &headers)
            .await
            .expect("relay answers");
        assert_eq!(status.as_u16(), want, "{name}: {reply}");
        assert!(
            reply["error"].is_string(),
            "{name}: error body expected, got {reply}"
        );
    }
    assert!(
        world.admin.events(TENANT, None).await.is_empty(),
        "a rejected request stored an event"
    );

    shop.send(SHOP, &order_body(SHOP, "control", "confirmed"))
        .await;
    eventually(
        "the control order is applied",
        Duration::from_secs(30),
        || async { !world.agent.applied().is_empty() },
    )
    .await;
    let applied = world.agent.applied();
    assert_eq!(applied.len(), 1, "only the control order may arrive");
    assert_eq!(applied[0].shop_order_id, "control");
}

/// An admin request with a secret in the wrong place: the 400 names the field and the problem,
/// never the value (it may be a webhook secret or an API key).
#[tokio::test]
async fn an_admin_error_never_echoes_the_value_it_refused() {
    let world = tests::setup().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, reply) = world
        .admin
        .call(
            reqwest::Method::POST,
            &format!("/tenants/{}/shops", tests::TENANT),
            Some(serde_json::json!({
                "shop_id": "leaky-se",
                "webhook_secrets": secret,
                "trigger_statuses": ["confirmed"],
            })),
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{reply}");
    let text = reply.to_string();
    assert!(!text.contains("MfKQ9r8G"), "the secret came back: {text}");
    assert!(
        text.contains("webhook_secrets") && text.contains("invalid type: string"),
        "the error no longer says what is wrong: {text}"
    );
}

/// A store that can no longer write (a full disk, here a trigger that fails every insert as
/// SQLite fails on a full disk) answers webhooks with 500, and `/readyz` says so, so a load
/// balancer takes the instance out of rotation; once a webhook is stored again it is ready.
#[tokio::test]
async fn readyz_says_not_ready_while_webhooks_cannot_be_stored() {
    let world = setup().await;
    let client = world.pki.client();
    let readyz = || async {
        let response = client
            .get(format!("{}/readyz", world.relay.base_url()))
            .send()
            .await
            .expect("/readyz answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    };
    assert_eq!(readyz().await.0, 200);

    let db = rusqlite::Connection::open(world.relay.db_path()).expect("the relay's database");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch(
        "CREATE TRIGGER disk_full BEFORE INSERT ON events
         BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
    )
    .expect("trigger");
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "full-1", "confirmed"))
        .await;
    assert_eq!(status.as_u16(), 500, "{reply}");
    let (status, text) = readyz().await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("could not write"), "{text}");

    db.execute_batch("DROP TRIGGER disk_full")
        .expect("drop trigger");
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "full-1", "confirmed"))
        .await;
    assert_eq!(status.as_u16(), 200, "{reply}");
    assert_eq!(readyz().await.0, 200);
}
