//! B3: stock changes made in the Mamut stand-in, timed until the shop stand-in is called with
//! them, split at the relay's record of each push.

use std::time::{Duration, Instant};

use super::{Latency, Row, Scale, ms, parse_time, relay_with_shop_timings};
use crate::harness::mamut_db::MamutDb;
use crate::harness::wait::until;
use crate::harness::{AgentOptions, AgentProcess, SqlServerOptions, TENANT};
use crate::shop_sim::ShopSim;

/// B3: a stock change in the Mamut stand-in until the shop stand-in receives it, beside the
/// agent's poll interval (the default, 250 ms). The figure splits the time at the relay: the
/// push's arrival there (the agent's poll and push) and the rest (dispatch flush, shop call).
/// A second row runs the same with the relay's dispatch flush at 100 ms instead of its default
/// 200 ms, to show that part of the time.
pub async fn b3(scale: Scale) -> Vec<Row> {
    vec![b3_with(scale, false).await, b3_with(scale, true).await]
}

async fn b3_with(scale: Scale, short_flush: bool) -> Row {
    let changes = scale.pick(5, 100);
    let poll = Duration::from_millis(250);
    let target = Duration::from_millis(500);
    let mamut = MamutDb::start();
    let sim = ShopSim::start("bench-shop-key-0123456789").await;
    let articles: Vec<String> = (0..changes).map(|i| format!("B3-{i:03}")).collect();
    sim.add_articles(articles.clone());
    let (relay, token) = relay_with_shop_timings(&sim, short_flush).await;
    let agent = AgentProcess::start(
        &relay,
        &token,
        AgentOptions {
            sqlserver: Some(SqlServerOptions::new(mamut.port())),
            watch_interval_ms: poll.as_millis() as u64,
            ..AgentOptions::default()
        },
    )
    .await;
    crate::harness::eventually(
        "the agent is connected",
        Duration::from_secs(30),
        || async { agent.sessions() >= 1 },
    )
    .await;
    let mut made = Vec::new();
    // Spread the changes over the poll cycle: 130 ms apart, not a divisor of 250 ms.
    let mut every = tokio::time::interval(Duration::from_millis(130));
    for article in &articles {
        every.tick().await;
        mamut.execute(&format!(
            "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('{article}', 'MAIN', 5)"
        ));
        made.push((article.clone(), Instant::now(), chrono::Utc::now()));
    }
    let arrivals = || {
        let calls = sim.calls();
        made.iter()
            .filter_map(|(article, at, _)| {
                calls
                    .iter()
                    .find(|c| c.status == 200 && c.articles.contains(article))
                    .map(|c| c.received.saturating_duration_since(*at))
            })
            .collect::<Vec<Duration>>()
    };
    until(Duration::from_secs(60), || async {
        arrivals().len() == made.len()
    })
    .await;
    let latencies = arrivals();
    let arrived = latencies.len();
    let latency = Latency::of(latencies);
    // When each change reached the relay, from the relay's own record of the push, and the
    // rest of its way (dispatch flush, shop call) as the difference.
    let pushes = relay.admin().pushes(TENANT).await;
    let calls = sim.calls();
    let (to_relay, from_relay): (Vec<Duration>, Vec<Duration>) = made
        .iter()
        .filter_map(|(article, at, wall)| {
            let received = pushes
                .iter()
                .filter(|p| p["change"].to_string().contains(&format!("\"{article}\"")))
                .filter_map(|p| parse_time(&p["received_at"]))
                .min()?;
            let to_relay = (received - *wall).to_std().ok()?;
            let total = calls
                .iter()
                .find(|c| c.status == 200 && c.articles.contains(article))?
                .received
                .saturating_duration_since(*at);
            Some((to_relay, total.saturating_sub(to_relay)))
        })
        .unzip();
    let (to_relay, from_relay) = (Latency::of(to_relay), Latency::of(from_relay));
    drop(agent);
    Row {
        id: "B3",
        name: format!(
            "stock latency, Mamut change → shop call ({changes} changes{})",
            if short_flush {
                "; profile: relay dispatch flush 100 ms instead of the default 200 ms"
            } else {
                ""
            }
        ),
        figure: format!(
            "p50 {} p99 {}; {arrived}/{changes} arrived; change → push stored by the relay p50 {} p99 {}, then → shop call p50 {} p99 {}",
            ms(latency.p50),
            ms(latency.p99),
            ms(to_relay.p50),
            ms(to_relay.p99),
            ms(from_relay.p50),
            ms(from_relay.p99)
        ),
        baseline: format!("poll interval {}", ms(poll)),
        target: format!("p99 < {}", ms(target)),
        met: arrived == changes && latency.p99 < target,
    }
}
