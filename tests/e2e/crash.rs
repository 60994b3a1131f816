//! Crash tests: SIGKILL the relay mid-burst, SIGKILL the agent mid-apply. Every webhook that got
//! a 2xx is applied exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tests::mamut_db::MamutDb;
use tests::shop::order_body;
use tests::{
    AgentOptions, RelayOptions, RelayProcess, SHOP, Shop, SqlServerOptions, eventually, setup,
    setup_with,
};
use tokio::sync::Mutex;

const ORDERS: usize = 1_000;
const SENDERS: usize = 16;

/// Sends each order (a fresh webhook id per attempt, as a shop retrying after a failed request
/// does); returns the orders that got a 2xx.
async fn burst(shop: Arc<Shop>, orders: Vec<String>, accepted: Arc<AtomicUsize>) -> Vec<String> {
    let queue = Arc::new(Mutex::new(orders));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (queue, shop, accepted) = (queue.clone(), shop.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            loop {
                let Some(order) = queue.lock().await.pop() else {
                    return ok;
                };
                let body = order_body(SHOP, &order, "confirmed");
                let id = shop.next_id();
                let headers = shop.headers(&id, &body);
                let sent = shop.send_with(SHOP, body, &headers).await;
                if sent.is_ok_and(|(status, _)| status.is_success()) {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    ok.push(order);
                }
            }
        }));
    }
    let mut ok = Vec::new();
    for task in tasks {
        ok.extend(task.await.expect("sender task"));
    }
    ok
}

fn counts(rows: &[tests::process::AppliedRow]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        assert_eq!(row.shop_id, SHOP);
        *counts.entry(row.shop_order_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Sends the burst, SIGKILLs the relay mid-way, restarts it, resends what got no 2xx, and
/// checks through `applied` (shop order ids as written, repeats included) that every order was
/// written exactly once.
async fn relay_killed_mid_burst(
    relay: &mut RelayProcess,
    shop: Arc<Shop>,
    applied: impl Fn() -> Vec<String>,
) {
    let all: Vec<String> = (0..ORDERS).map(|n| format!("burst-{n:05}")).collect();
    let accepted = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(burst(shop.clone(), all.clone(), accepted.clone()));
    eventually("300 webhooks accepted", Duration::from_secs(60), || async {
        accepted.load(Ordering::SeqCst) >= 300
    })
    .await;
    relay.kill().await;
    let first_round: BTreeSet<String> = sending.await.expect("burst").into_iter().collect();
    assert!(
        first_round.len() < ORDERS,
        "the kill landed after the burst; nothing was tested"
    );

    // Same port and store: the shop's client simply reaches the new process.
    relay.restart().await;
    let retry: Vec<String> = all
        .iter()
        .filter(|o| !first_round.contains(*o))
        .cloned()
        .collect();
    let second_round: BTreeSet<String> = burst(shop, retry, accepted.clone())
        .await
        .into_iter()
        .collect();
    assert_eq!(
        first_round.len() + second_round.len(),
        ORDERS,
        "every order got a 2xx in the end"
    );

    eventually(
        "every order is applied",
        Duration::from_secs(180),
        || async { applied().len() >= ORDERS },
    )
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for order in applied() {
        *counts.entry(order).or_insert(0) += 1;
    }
    let expected: BTreeSet<String> = all.into_iter().collect();
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "applied set differs"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_relay_mid_burst_loses_and_duplicates_nothing() {
    let mut world = setup().await;
    let agent = &world.agent;
    let applied = || {
        agent
            .applied()
            .into_iter()
            .map(|r| r.shop_order_id)
            .collect()
    };
    relay_killed_mid_burst(&mut world.relay, world.shop.clone(), applied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_relay_mid_burst_writes_each_order_once_in_mamut() {
    let mamut = MamutDb::start();
    let options = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), options).await;
    let applied = || mamut.orders().into_iter().map(|o| o.external_no).collect();
    relay_killed_mid_burst(&mut world.relay, world.shop.clone(), applied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_agent_mid_apply_loses_and_duplicates_nothing() {
    let agent_options = AgentOptions {
        apply_delay_ms: 20,
        credit: 8,
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), agent_options).await;
    let orders = 200;
    for n in 0..orders {
        let (status, _) = world
            .shop
            .send(
                SHOP,
                &order_body(SHOP, &format!("slow-{n:04}"), "confirmed"),
            )
            .await;
        assert!(status.is_success());
    }
    eventually("some orders applied", Duration::from_secs(60), || async {
        world.agent.applied().len() >= 20
    })
    .await;
    world.agent.kill().await;
    let at_kill = world.agent.applied().len();
    assert!(
        at_kill < orders,
        "the kill landed after the last apply; nothing was tested"
    );
    world.agent.restart().await;
    eventually(
        "every order is applied",
        Duration::from_secs(120),
        || async { world.agent.applied().len() >= orders },
    )
    .await;
    let counts = counts(&world.agent.applied());
    assert_eq!(counts.len(), orders);
    assert!(
        counts.values().all(|n| *n == 1),
        "an order was applied twice"
    );
    assert!(world.agent.sessions() >= 2);
}

#[tokio::test]
async fn a_burst_without_failures_is_applied_in_full() {
    // The same burst machinery without a kill, so a failure above is not the harness's.
    let world = setup().await;
    let shop = world.shop.clone();
    let all: Vec<String> = (0..100).map(|n| format!("calm-{n:03}")).collect();
    let ok = burst(shop, all, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(ok.len(), 100);
    eventually("all applied", Duration::from_secs(60), || async {
        world.agent.applied().len() >= 100
    })
    .await;
    assert!(counts(&world.agent.applied()).values().all(|n| *n == 1));
}
