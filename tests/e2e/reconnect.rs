//! The agent comes back by itself after the relay restarts.

use std::time::Duration;

use tests::shop::order_body;
use tests::{SHOP, eventually, setup};

#[tokio::test]
async fn the_agent_reconnects_after_a_relay_restart_without_operator_action() {
    let mut world = setup().await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "before", "confirmed"))
        .await;
    eventually(
        "the first order is applied",
        Duration::from_secs(30),
        || async { world.agent.applied().len() == 1 },
    )
    .await;
    world.relay.restart().await;
    eventually("the agent reconnects", Duration::from_secs(30), || async {
        world.agent.sessions() >= 2
    })
    .await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "after", "confirmed"))
        .await;
    eventually(
        "the second order is applied",
        Duration::from_secs(30),
        || async { world.agent.applied().len() == 2 },
    )
    .await;
}
