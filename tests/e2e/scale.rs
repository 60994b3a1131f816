//! Several relay instances on one PostgreSQL: webhooks sent to any instance reach the agent
//! connected to another, exactly once; killing the instance the agent is on loses nothing;
//! the lease of a shop's dispatch moves to a survivor. Skipped (with a message) without a
//! PostgreSQL server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared::ArticleNumber;
use shared::domain::{Change, StockLevel};
use shared::signature::WebhookSecret;
use tests::agent_ws::RawAgent;
use tests::pg::TestDb;
use tests::shop::order_body;
use tests::shop_sim::{Failure, ShopSim};
use tests::{
    AgentOptions, AgentProcess, Pki, RelayOptions, RelayProcess, SHOP, TENANT, eventually,
};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "shop-api-key-0123456789";

struct Cluster {
    relays: Vec<RelayProcess>,
    secret: WebhookSecret,
    db: TestDb,
}

/// `n` relay instances on one fresh PostgreSQL database, with tenant `acme` and shop `demo-se`.
async fn cluster(n: usize, tls: bool) -> Option<Cluster> {
    cluster_with(
        n,
        RelayOptions {
            tls,
            ..RelayOptions::default()
        },
    )
    .await
}

/// `n` instances on one fresh PostgreSQL database, each started with `base` (its store and a
/// short lease set here).
async fn cluster_with(n: usize, base: RelayOptions) -> Option<Cluster> {
    let db = TestDb::create().await?;
    let pki = Arc::new(Pki::new());
    let mut relays = Vec::new();
    for _ in 0..n {
        let options = RelayOptions {
            database_url: Some(db.url.clone()),
            lease_secs: Some(2),
            ..base.clone()
        };
        relays.push(RelayProcess::start(pki.clone(), options).await);
    }
    let admin = relays[0].admin();
    admin.create_tenant(TENANT).await;
    let secret = WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec()).expect("key");
    admin
        .add_shop(TENANT, SHOP, &secret.expose(), &["confirmed"], "order")
        .await;
    Some(Cluster { relays, secret, db })
}

impl Cluster {
    /// An agent on the first instance that moves on to the others when it fails.
    async fn agent(&self) -> AgentProcess {
        let (_, token) = self.relays[0].admin().create_agent(TENANT).await;
        let options = AgentOptions {
            fallback_urls: self.relays[1..].iter().map(RelayProcess::ws_url).collect(),
            ..AgentOptions::default()
        };
        AgentProcess::start(&self.relays[0], &token, options).await
    }
}

/// Orders applied by the recorder, with how often each was written.
fn applied_counts(agent: &AgentProcess) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in agent.applied() {
        *counts.entry(row.shop_order_id).or_default() += 1;
    }
    counts
}

/// Webhooks sent round-robin to `n` instances, the agent on the first: each applied once.
async fn round_robin(n: usize) {
    let Some(cluster) = cluster(n, true).await else {
        return;
    };
    let agent = cluster.agent().await;
    let shops: Vec<_> = cluster
        .relays
        .iter()
        .map(|r| r.shop_with(cluster.secret.clone()))
        .collect();
    let mut sent = BTreeSet::new();
    for i in 0..300 {
        let order = format!("rr-{i}");
        let (status, reply) = shops[i % n]
            .send(SHOP, &order_body(SHOP, &order, "confirmed"))
            .await;
        assert!(status.is_success(), "{status} {reply}");
        sent.insert(order);
    }
    eventually("every order is applied", WAIT, || async {
        applied_counts(&agent).len() == sent.len()
    })
    .await;
    let counts = applied_counts(&agent);
    assert!(
        counts.values().all(|n| *n == 1),
        "an order was written twice"
    );
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), sent);
    // Every instance sees every event's state (the acks follow the applies closely).
    let last = cluster.relays[n - 1].admin();
    eventually(
        "every event is delivered, seen from the last instance",
        WAIT,
        || async { last.events(TENANT, Some("delivered")).await.len() == 300 },
    )
    .await;
    cluster.db.drop().await;
}

#[tokio::test]
async fn webhooks_sent_round_robin_to_two_instances_are_applied_once() {
    round_robin(2).await;
}

#[tokio::test]
async fn webhooks_sent_round_robin_to_three_instances_are_applied_once() {
    round_robin(3).await;
}

#[tokio::test]
async fn killing_the_instance_the_agent_is_on_loses_nothing() {
    let Some(mut cluster) = cluster(3, true).await else {
        return;
    };
    let agent = cluster.agent().await;
    eventually("the agent is connected", WAIT, || async {
        agent.sessions() >= 1
    })
    .await;
    let shops: Vec<_> = cluster
        .relays
        .iter()
        .map(|r| Arc::new(r.shop_with(cluster.secret.clone())))
        .collect();
    let accepted = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for worker in 0..4 {
        let (shops, accepted, count) = (shops.clone(), accepted.clone(), count.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..250 {
                let order = format!("k-{worker}-{i}");
                let body = order_body(SHOP, &order, "confirmed");
                let shop = &shops[(worker + i) % shops.len()];
                let id = shop.next_id();
                let headers = shop.headers(&id, &body);
                if let Ok((status, _)) = shop.send_with(SHOP, body, &headers).await
                    && status.is_success()
                {
                    accepted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(order);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    eventually("the burst is under way", WAIT, || async {
        count.load(Ordering::Relaxed) >= 250
    })
    .await;
    cluster.relays[0].kill().await;
    for sender in senders {
        sender.await.expect("sender finished");
    }
    let accepted = accepted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        accepted.len() >= 700,
        "only {} webhooks got a 2xx",
        accepted.len()
    );
    eventually("every accepted order is applied", WAIT, || async {
        let applied = applied_counts(&agent);
        accepted.iter().all(|o| applied.contains_key(o))
    })
    .await;
    let counts = applied_counts(&agent);
    assert!(
        counts.values().all(|n| *n == 1),
        "an order was written twice"
    );
    assert!(agent.sessions() >= 2, "the agent reconnected to a survivor");
    cluster.db.drop().await;
}

/// The holder of a lease, read from the shared database.
async fn lease_holder(url: &str, name: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    client
        .query_opt(
            "SELECT holder FROM leases WHERE name = $1 AND expires_at > now()",
            &[&name],
        )
        .await
        .ok()?
        .map(|r| r.get(0))
}

#[tokio::test]
async fn the_dispatch_of_a_killed_instance_moves_to_a_survivor() {
    let Some(mut cluster) = cluster(2, false).await else {
        return;
    };
    let sim = ShopSim::start(KEY).await;
    sim.add_articles(["MUG-01"]);
    let admin = cluster.relays[0].admin();
    admin
        .update_shop(
            TENANT,
            SHOP,
            json!({ "api": { "url": sim.url(), "requests_per_sec": 1000 }, "api_key": KEY }),
        )
        .await;
    let (_, token) = admin.create_agent(TENANT).await;
    // The shop is down: whichever instance dispatches keeps the change and retries.
    sim.fail_next(100_000, Failure::Status(503));
    let mut agent = RawAgent::connect(&cluster.relays[1], &token).await;
    let stock = Change::Stock(StockLevel {
        article_number: ArticleNumber::new("MUG-01").expect("valid"),
        warehouse: None,
        quantity: Decimal::from(7),
    });
    agent.push_all("lease", vec![stock], 1).await;
    let lease = format!("shop:{SHOP}");
    eventually("an instance holds the shop's dispatch", WAIT, || async {
        lease_holder(&cluster.db.url, &lease).await.is_some() && !sim.calls().is_empty()
    })
    .await;
    let holder = lease_holder(&cluster.db.url, &lease)
        .await
        .expect("a holder");
    let index = cluster
        .relays
        .iter()
        .position(|r| r.instance().as_deref() == Some(holder.as_str()))
        .expect("the holder is one of the instances");
    cluster.relays[index].kill().await;
    sim.clear_failures();
    let survivor = cluster.relays[1 - index]
        .instance()
        .expect("the survivor's id");
    eventually("the survivor sends the change", WAIT, || async {
        sim.stock("MUG-01", None) == Some(Decimal::from(7))
    })
    .await;
    assert_eq!(
        lease_holder(&cluster.db.url, &lease).await.as_deref(),
        Some(survivor.as_str())
    );
    cluster.db.drop().await;
}

#[tokio::test]
async fn an_agent_connected_to_two_instances_keeps_only_its_newest_session() {
    // The raw agents send no heartbeats: a relay heartbeat longer than the wait keeps a loaded
    // machine from closing the first session for silence before the newer one replaces it.
    let options = RelayOptions {
        tls: false,
        heartbeat_secs: Some(60),
        ..RelayOptions::default()
    };
    let Some(cluster) = cluster_with(2, options).await else {
        return;
    };
    let (_, token) = cluster.relays[0].admin().create_agent(TENANT).await;
    let mut first = RawAgent::connect(&cluster.relays[0], &token).await;
    let _second = RawAgent::connect(&cluster.relays[1], &token).await;
    let reason = tokio::time::timeout(WAIT, first.closed())
        .await
        .expect("the older session is closed");
    assert!(
        reason.contains("replaced by a newer session"),
        "close reason: {reason:?}"
    );
    cluster.db.drop().await;
}
