//! Revoking an agent ends its live session within a second, through the instance that serves
//! it or through another instance on the same store (a `NOTIFY`); the agent logs why
//! (an ERROR naming the revocation and what to do), and nothing more is delivered to it.

use std::sync::Arc;
use std::time::Duration;

use shared::signature::WebhookSecret;
use tests::pg::TestDb;
use tests::shop::{Shop, order_body};
use tests::wait::until;
use tests::{
    AgentOptions, AgentProcess, Pki, RelayOptions, RelayProcess, SHOP, TENANT, eventually, setup,
};

const WAIT: Duration = Duration::from_secs(30);

/// The agent's ERROR line about the revocation, if it has logged one.
fn revocation_logged(agent: &AgentProcess) -> bool {
    agent.logs().lines().any(|line| {
        line.contains("ERROR") && line.contains("revoked") && line.contains("new token")
    })
}

/// Sends an order after the revocation and checks it stays pending, never applied.
async fn later_orders_stay_pending(shop: &Shop, relay: &RelayProcess, agent: &AgentProcess) {
    let (status, _) = shop
        .send(SHOP, &order_body(SHOP, "after-revoke", "confirmed"))
        .await;
    assert!(status.is_success(), "the webhook is accepted: {status}");
    let admin = relay.admin();
    eventually("the later order is stored, pending", WAIT, || async {
        admin
            .events(TENANT, Some("pending"))
            .await
            .iter()
            .any(|e| e["order_id"] == "after-revoke")
    })
    .await;
    let applied = until(Duration::from_secs(3), || async {
        agent
            .applied()
            .iter()
            .any(|row| row.shop_order_id == "after-revoke")
    })
    .await;
    assert!(!applied, "an order reached the revoked agent");
    assert!(
        admin
            .events(TENANT, Some("pending"))
            .await
            .iter()
            .any(|e| e["order_id"] == "after-revoke"),
        "the later order is still pending"
    );
}

#[tokio::test]
async fn revoking_an_agent_ends_its_live_session_within_a_second() {
    let world = setup().await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "before-revoke", "confirmed"))
        .await;
    eventually("the first order is applied", WAIT, || async {
        world.agent.applied().len() == 1
    })
    .await;

    world.admin.revoke_agent(&world.agent_id).await;
    eventually(
        "the agent logs that its token was revoked",
        Duration::from_secs(1),
        || async { revocation_logged(&world.agent) },
    )
    .await;
    assert!(
        world
            .relay
            .logs()
            .contains("the agent's token was revoked; its session ends"),
        "the relay ended the session: {}",
        world.relay.logs()
    );

    later_orders_stay_pending(&world.shop, &world.relay, &world.agent).await;
    assert_eq!(world.agent.applied().len(), 1);
}

#[tokio::test]
async fn a_revocation_through_another_instance_ends_the_session_within_a_second() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let pki = Arc::new(Pki::new());
    let mut relays = Vec::new();
    for _ in 0..2 {
        let options = RelayOptions {
            database_url: Some(db.url.clone()),
            lease_secs: Some(2),
            ..RelayOptions::default()
        };
        relays.push(RelayProcess::start(pki.clone(), options).await);
    }
    let admin = relays[0].admin();
    admin.create_tenant(TENANT).await;
    let secret = WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec()).expect("key");
    admin
        .add_shop(TENANT, SHOP, &secret.expose(), &["confirmed"], "order")
        .await;
    let (agent_id, token) = admin.create_agent(TENANT).await;
    // The agent is on the second instance; the revocation goes through the first.
    let agent = AgentProcess::start(&relays[1], &token, AgentOptions::default()).await;
    let shop = relays[1].shop_with(secret);
    shop.send(SHOP, &order_body(SHOP, "before-revoke", "confirmed"))
        .await;
    eventually("the first order is applied", WAIT, || async {
        agent.applied().len() == 1
    })
    .await;

    admin.revoke_agent(&agent_id).await;
    eventually(
        "the agent logs that its token was revoked",
        Duration::from_secs(1),
        || async { revocation_logged(&agent) },
    )
    .await;

    later_orders_stay_pending(&shop, &relays[1], &agent).await;
    assert_eq!(agent.applied().len(), 1);
    drop(relays);
    drop(db);
}
