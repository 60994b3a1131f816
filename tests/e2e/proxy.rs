//! The agent reaches the relay through an HTTP CONNECT proxy.

use std::time::Duration;

use tests::proxy::ConnectProxy;
use tests::shop::order_body;
use tests::{AgentOptions, AgentProcess, SHOP, TENANT, eventually, setup};

#[tokio::test]
async fn the_agent_connects_through_an_http_connect_proxy() {
    let world = setup().await;
    let proxy = ConnectProxy::start().await;
    let (_, token) = world.admin.create_agent(TENANT).await;
    // A second agent of the tenant replaces the first session: orders go through the proxy.
    let agent = AgentProcess::start(
        &world.relay,
        &token,
        AgentOptions {
            proxy: Some(proxy.url()),
            ..Default::default()
        },
    )
    .await;
    eventually(
        "the proxied agent connects",
        Duration::from_secs(30),
        || async { agent.sessions() >= 1 },
    )
    .await;
    assert!(proxy.tunnels() >= 1);
    drop(world.agent);
    world
        .shop
        .send(SHOP, &order_body(SHOP, "via-proxy", "confirmed"))
        .await;
    eventually(
        "the order is applied through the proxy",
        Duration::from_secs(30),
        || async { agent.applied().len() == 1 },
    )
    .await;
}
