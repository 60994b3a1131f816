//! B6: stock pushes from a bare agent connection to the shop stand-in: how many the relay
//! accepts a second, and how the dispatcher coalesces them into shop calls.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use shared::ArticleNumber;
use shared::domain::{Change, StockLevel};

use super::{Row, Scale, relay_with_shop};
use crate::harness::agent_ws::RawAgent;
use crate::harness::wait::until;
use crate::shop_sim::ShopSim;

/// B6: pushes from an agent to the shop stand-in, with coalescing.
pub async fn b6(scale: Scale) -> Vec<Row> {
    let updates = scale.pick(2_000, 100_000);
    let distinct = scale.pick(100, 1_000);
    let sim = ShopSim::start("bench-shop-key-0123456789").await;
    let articles: Vec<String> = (0..distinct).map(|i| format!("B6-{i:04}")).collect();
    sim.add_articles(articles.clone());
    let (relay, token) = relay_with_shop(&sim).await;
    let mut agent = RawAgent::connect(&relay, &token).await;
    let rounds = updates / distinct;
    let changes: Vec<Change> = (0..rounds)
        .flat_map(|round| {
            articles.iter().map(move |a| {
                Change::Stock(StockLevel {
                    article_number: ArticleNumber::new(a.as_str()).expect("valid article"),
                    warehouse: None,
                    quantity: Decimal::from(round),
                })
            })
        })
        .collect();
    let last = Decimal::from(rounds - 1);
    let started = Instant::now();
    agent.push_all("b6", changes, 1024).await;
    let accepted = updates as f64 / started.elapsed().as_secs_f64();
    let complete = until(Duration::from_secs(120), || async {
        articles.iter().all(|a| sim.stock(a, None) == Some(last))
    })
    .await;
    let calls = sim.calls();
    let items: usize = calls.iter().map(|c| c.articles.len()).sum();
    let flushes = relay.metric("relay_dispatch_rounds_total").await;
    let mut per_article = std::collections::BTreeMap::<&str, u64>::new();
    for call in &calls {
        for article in &call.articles {
            *per_article.entry(article).or_default() += 1;
        }
    }
    let most = per_article.values().copied().max().unwrap_or_default();
    vec![Row {
        id: "B6",
        name: format!("dispatch, {updates} stock updates over {distinct} articles"),
        figure: format!(
            "{accepted:.0} pushes/s accepted; {} shop calls carrying {items} items in {flushes} flushes; most sends of one article {most}; final values {}",
            calls.len(),
            if complete { "all right" } else { "INCOMPLETE" }
        ),
        baseline: format!("{updates} updates"),
        target: "≤ 1 call per article per flush; ≥ 10k pushes/s".into(),
        met: complete && most <= flushes && accepted >= 10_000.0,
    }]
}
