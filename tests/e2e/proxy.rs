//! The agent reaches the relay through an HTTP CONNECT proxy: without authentication, with
//! percent-encoded Basic credentials from `relay.proxy`, and what `agent check` says about a
//! proxy that wants NTLM (which only the agent on Windows can do, with SSPI).

use std::time::Duration;

use tests::proxy::{ConnectProxy, ProxyAuth};
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

#[tokio::test]
async fn percent_encoded_proxy_credentials_arrive_decoded_and_stay_out_of_the_logs() {
    let world = setup().await;
    let proxy = ConnectProxy::requiring(ProxyAuth::Basic("alice:p@ss/w0rd".into())).await;
    let (_, token) = world.admin.create_agent(TENANT).await;
    let agent = AgentProcess::start(
        &world.relay,
        &token,
        AgentOptions {
            proxy: Some(format!(
                "http://alice:p%40ss%2Fw0rd@127.0.0.1:{}",
                proxy.port
            )),
            ..Default::default()
        },
    )
    .await;
    eventually(
        "the agent connects through the proxy with Basic credentials",
        Duration::from_secs(30),
        || async { agent.sessions() >= 1 },
    )
    .await;
    assert!(proxy.tunnels() >= 1);
    // base64("alice:p@ss/w0rd"), sent with the first CONNECT: no 407 round trip.
    let expected = Some("Basic YWxpY2U6cEBzcy93MHJk".to_owned());
    let sent = proxy.authorizations();
    assert!(
        !sent.is_empty() && sent.iter().all(|a| *a == expected),
        "{sent:?}"
    );
    let (ok, report) = agent.check().await;
    assert!(
        report.contains(&format!(
            "[ ok ] relay connection uses proxy 127.0.0.1:{} (from relay.proxy, Basic \
             credentials from the URL)",
            proxy.port
        )),
        "{report}"
    );
    assert!(ok, "{report}");
    let logs = agent.logs();
    for secret in ["p@ss", "p%40ss", "w0rd", "YWxpY2U6cEBzcy93MHJk"] {
        assert!(
            !logs.contains(secret),
            "{secret} in the agent's log:\n{logs}"
        );
        assert!(
            !report.contains(secret),
            "{secret} in agent check:\n{report}"
        );
    }
}

#[tokio::test]
async fn agent_check_names_the_proxy_and_what_to_do_when_it_wants_ntlm() {
    let world = setup().await;
    let proxy = ConnectProxy::requiring(ProxyAuth::Ntlm).await;
    let (_, token) = world.admin.create_agent(TENANT).await;
    let agent = AgentProcess::start(
        &world.relay,
        &token,
        AgentOptions {
            proxy: Some(proxy.url()),
            ..Default::default()
        },
    )
    .await;
    let (ok, report) = agent.check().await;
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!(
            "[ ok ] relay connection uses proxy 127.0.0.1:{} (from relay.proxy)",
            proxy.port
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "proxy 127.0.0.1:{} requires authentication (offers Negotiate, NTLM; HTTP/1.1 407 \
             Proxy Authentication Required)",
            proxy.port
        )),
        "{report}"
    );
    assert!(
        report.contains("put credentials in relay.proxy as http://user:password@host:port"),
        "{report}"
    );
    assert_eq!(proxy.tunnels(), 0);
    assert!(!proxy.authorizations().is_empty());
}
