//! The benchmarks (B1–B6 of the benchmark issue, B7 of the Mamut issue), run by the `bench`
//! binary against the real release binaries. Each measures the product and, where one exists,
//! a baseline in the same run, and reports figures for a table.
//!
//! - `ingest`: B1, durable webhook ingest beside a no-op handler ([`serve_noop`]).
//! - `orders`: B2, an order's way into the Mamut stand-in, and B5, the agent's footprint.
//! - `stock`: B3, a stock change in Mamut until the shop's API is called.
//! - `idle_agents`: B4, many idle agent connections to one relay.
//! - `pushes`: B6, pushes from an agent to the shop, coalesced.
//! - `watch_poll`: B7, what an idle poll of the watcher costs the merchant's database, with
//!   `tds_polls` (the watcher's statements driven through TDS) and `pg_stats` (what
//!   PostgreSQL read for them).
//! - `load`: the load generator: signed webhooks sent closed-loop or at a fixed rate.
//!
//! This file holds what they share: the scale, the result row, latency percentiles, process
//! memory and CPU, and the relays they start.

mod idle_agents;
mod ingest;
mod load;
mod orders;
mod pg_stats;
mod pushes;
mod stock;
mod tds_polls;
mod watch_poll;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

pub use self::idle_agents::b4;
pub use self::ingest::b1;
pub use self::load::Load;
pub use self::orders::b2_b5;
pub use self::pushes::b6;
pub use self::stock::b3;
pub use self::watch_poll::b7;
use crate::harness::shop::Shop;
use crate::harness::wait::until;
use crate::harness::{Pki, RelayOptions, RelayProcess, SHOP, TENANT};
use crate::shop_sim::ShopSim;

/// How big a run is: `quick` is the smoke run CI does, `full` the real measurement.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: &'static str,
    pub name: String,
    pub figure: String,
    pub baseline: String,
    pub target: String,
    pub met: bool,
}

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let at = |p: f64| {
            let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
            samples[index.min(samples.len() - 1)]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Resident memory of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time a process has used (user + system), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A process's resident memory once it has stopped changing (the same for half a second,
/// within 10 s).
async fn settled_rss(pid: u32) -> u64 {
    let mut last = 0;
    let mut steady = 0;
    until(Duration::from_secs(10), || {
        let now = rss_kib(pid).unwrap_or_default();
        if now == last {
            steady += 1;
        } else {
            (last, steady) = (now, 0);
        }
        std::future::ready(steady >= 10)
    })
    .await;
    last
}

/// Clock ticks per second for [`cpu_ticks`] (Linux's USER_HZ, 100 on every common build).
pub const TICKS_PER_SEC: f64 = 100.0;

/// A relay without TLS (the load generator measures the relay, not TLS) with the product's
/// default timings, tenant `acme` and shop `demo-se`.
async fn plain_relay(database_url: Option<String>) -> (RelayProcess, Arc<Shop>) {
    relay_with_timings(database_url, false).await
}

/// [`plain_relay`], or with the test suite's short timings (dispatch flush 100 ms instead of
/// the default 200 ms, short retries) when `quick_timings`.
async fn relay_with_timings(
    database_url: Option<String>,
    quick_timings: bool,
) -> (RelayProcess, Arc<Shop>) {
    let pki = Arc::new(Pki::new());
    let relay = RelayProcess::start(
        pki,
        RelayOptions {
            tls: false,
            database_url,
            heartbeat_secs: None,
            quick_timings,
            ..RelayOptions::default()
        },
    )
    .await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    let shop = Arc::new(relay.shop());
    admin
        .add_shop(TENANT, SHOP, &shop.secret_text(), &["confirmed"], "order")
        .await;
    (relay, shop)
}

fn parse_time(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// A relay whose shop `demo-se` calls `sim`, and an agent token.
async fn relay_with_shop(sim: &ShopSim) -> (RelayProcess, String) {
    relay_with_shop_timings(sim, false).await
}

async fn relay_with_shop_timings(sim: &ShopSim, quick_timings: bool) -> (RelayProcess, String) {
    let (relay, _) = relay_with_timings(None, quick_timings).await;
    let admin = relay.admin();
    admin
        .update_shop(
            TENANT,
            SHOP,
            json!({
                "flow": "erp",
                "api": { "url": sim.url(), "requests_per_sec": 50 },
                "api_key": "bench-shop-key-0123456789"
            }),
        )
        .await;
    let (_, token) = admin.create_agent(TENANT).await;
    (relay, token)
}

/// A no-op HTTP server: reads the request, answers as the relay would, stores nothing.
pub async fn serve_noop(listen: std::net::SocketAddr) -> std::io::Result<()> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/webhooks/{shop}",
        post(|_body: Bytes| async { axum::Json(json!({"status": "accepted", "event_id": 0})) }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("noop listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// The machine, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    format!("{cpu}, {cores} cores{memory}")
}
