//! B2 and B5: orders at a steady rate through the relay and the agent into the Mamut stand-in,
//! each timed from the relay's 2xx to the agent's ack; and the agent's memory and binary size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::load::{paced, prepare};
use super::{Latency, Row, Scale, ms, parse_time, plain_relay, rss_kib, settled_rss};
use crate::harness::mamut_db::MamutDb;
use crate::harness::wait::until;
use crate::harness::{AgentOptions, AgentProcess, SHOP, SqlServerOptions, TENANT};

/// B2 and B5: order latency through the agent into the Mamut stand-in at a steady rate, and
/// the agent's footprint idle and under that load.
pub async fn b2_b5(scale: Scale) -> Vec<Row> {
    let rate = scale.pick(50.0, 200.0);
    let seconds = scale.pick(2.0, 60.0);
    let count = (rate * seconds) as usize;
    let mamut = MamutDb::start();
    let (relay, shop) = plain_relay(None).await;
    let (_, token) = relay.admin().create_agent(TENANT).await;
    let agent = AgentProcess::start(
        &relay,
        &token,
        AgentOptions {
            sqlserver: Some(SqlServerOptions {
                unknown_article: "free_text",
                ..SqlServerOptions::new(mamut.port())
            }),
            watch_interval_ms: 1000,
            ..AgentOptions::default()
        },
    )
    .await;
    let pid = agent.pid().unwrap_or_default();
    crate::harness::eventually(
        "the agent is connected",
        Duration::from_secs(30),
        || async { agent.sessions() >= 1 },
    )
    .await;
    // Idle: connected, its first poll of Mamut done (cursors saved), nothing to do.
    until(Duration::from_secs(30), || async {
        agent.state_file().exists()
    })
    .await;
    let idle_kib = settled_rss(pid).await;
    let peak = Arc::new(AtomicUsize::new(idle_kib as usize));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib as usize, Ordering::Relaxed);
                }
            }
        })
    };
    let url = format!("{}/webhooks/{SHOP}", relay.base_url());
    let load = paced(&url, prepare(&shop, "b2", count), rate).await;
    let admin = relay.admin();
    until(Duration::from_secs(120), || async {
        admin.events(TENANT, Some("delivered")).await.len() >= count
    })
    .await;
    let events = admin.events(TENANT, Some("delivered")).await;
    sampler.abort();
    let latencies: Vec<Duration> = events
        .iter()
        .filter_map(|e| {
            let received = parse_time(&e["received_at"])?;
            let acked = parse_time(&e["updated_at"])?;
            (acked - received).to_std().ok()
        })
        .collect();
    let latency = Latency::of(latencies);
    let orders = mamut.orders();
    let distinct: std::collections::BTreeSet<&str> =
        orders.iter().map(|o| o.external_no.as_str()).collect();
    let lost = count.saturating_sub(distinct.len());
    let duplicates = orders.len() - distinct.len();
    let peak_kib = peak.load(Ordering::Relaxed) as u64;
    let binary = std::fs::metadata(crate::harness::process::bin_path("agent"))
        .map(|m| m.len())
        .unwrap_or_default();
    vec![
        Row {
            id: "B2",
            name: format!(
                "order latency, 2xx → ack after the Mamut commit ({rate:.0}/s for {seconds:.0} s)"
            ),
            figure: format!(
                "p50 {} p99 {} max {}; {} lost, {} duplicates, {} send errors",
                ms(latency.p50),
                ms(latency.p99),
                ms(latency.max),
                lost,
                duplicates,
                load.errors
            ),
            baseline: "—".into(),
            target: "p99 < 250 ms; none lost, none twice".into(),
            met: latency.p99 < Duration::from_millis(250)
                && lost == 0
                && duplicates == 0
                && load.errors == 0,
        },
        Row {
            id: "B5",
            name: "agent footprint".into(),
            figure: format!(
                "idle {:.1} MiB; under B2's load {:.1} MiB; binary {:.1} MiB",
                idle_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0,
                binary as f64 / (1024.0 * 1024.0)
            ),
            baseline: "—".into(),
            target: "idle ≤ 10 MiB; load ≤ 30 MiB; binary ≤ 15 MiB".into(),
            met: idle_kib <= 10 * 1024 && peak_kib <= 30 * 1024 && binary <= 15 * 1024 * 1024,
        },
    ]
}
