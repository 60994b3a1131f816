//! B4: many idle agent connections to one relay: memory per connection, the time to connect
//! them all, and the relay's CPU while they only exchange heartbeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Row, Scale, TICKS_PER_SEC, cpu_ticks, plain_relay, settled_rss};
use crate::harness::agent_ws::RawAgent;

/// B4: many idle agent connections to one relay.
pub async fn b4(scale: Scale) -> Vec<Row> {
    let count = scale.pick(100, 10_000);
    let (relay, _) = plain_relay(None).await;
    let pid = relay.pid().unwrap_or_default();
    let admin = relay.admin();
    // One tenant per agent: a tenant keeps one session.
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let tenant = format!("t{i}");
        admin.create_tenant(&tenant).await;
        tokens.push(admin.create_agent(&tenant).await.1);
    }
    let before = settled_rss(pid).await;
    let started = Instant::now();
    let relay = Arc::new(relay);
    let mut connecting = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let relay = relay.clone();
        connecting.push(tokio::spawn(async move {
            // Many loopback addresses, so one address's ports do not run out.
            let source =
                std::net::Ipv4Addr::new(127, 0, 1 + (i / 20_000) as u8, 1 + (i % 250) as u8);
            RawAgent::connect_from(&relay, &token, source).await
        }));
    }
    let mut agents = Vec::with_capacity(count);
    let mut errors = 0;
    for task in connecting {
        match task.await {
            Ok(Ok(agent)) => agents.push(agent),
            _ => errors += 1,
        }
    }
    let connect_time = started.elapsed();
    let after = settled_rss(pid).await;
    let idle = Duration::from_secs(scale.pick(3, 30));
    let cpu_before = cpu_ticks(pid).unwrap_or_default();
    // The measurement window itself: the relay's CPU over `idle` seconds of idle sessions.
    tokio::time::sleep(idle).await;
    let cpu_after = cpu_ticks(pid).unwrap_or_default();
    let cpu = (cpu_after - cpu_before) as f64 / TICKS_PER_SEC / idle.as_secs_f64();
    let per_connection = (after.saturating_sub(before)) as f64 / agents.len().max(1) as f64;
    drop(agents);
    vec![Row {
        id: "B4",
        name: format!("{count} idle agent connections to one relay"),
        figure: format!(
            "{per_connection:.1} KiB per connection; all connected in {:.1} s; heartbeat CPU {:.1}% of a core; {errors} errors",
            connect_time.as_secs_f64(),
            cpu * 100.0
        ),
        baseline: format!("relay before: {:.1} MiB", before as f64 / 1024.0),
        target: "≤ 20 KiB per connection; connected within 30 s; no errors".into(),
        met: per_connection <= 20.0 && connect_time < Duration::from_secs(30) && errors == 0,
    }]
}
