//! The benchmarks (B1–B6 of the benchmark issue, B7 of the Mamut issue), run by the `bench` binary against the real
//! release binaries. Each measures the product and, where one exists, a baseline in the same
//! run, and reports figures for a table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::ArticleNumber;
use shared::domain::{Change, StockLevel};

use crate::agent_ws::RawAgent;
use crate::mamut_db::MamutDb;
use crate::pg::TestDb;
use crate::shop::{Shop, order_body};
use crate::shop_sim::ShopSim;
use crate::wait::until;
use crate::{
    AgentOptions, AgentProcess, Pki, RelayOptions, RelayProcess, SHOP, SqlServerOptions, TENANT,
};

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

/// A signed webhook, ready to send: headers and body.
#[derive(Clone)]
struct Prepared {
    headers: Vec<(String, String)>,
    body: Bytes,
}

fn prepare(shop: &Shop, prefix: &str, count: usize) -> Vec<Prepared> {
    (0..count)
        .map(|i| {
            let body = order_body(SHOP, &format!("{prefix}-{i}"), "confirmed");
            let id = shop.next_id();
            let headers = shop.headers(&id, &body);
            Prepared {
                headers,
                body: Bytes::from(body),
            }
        })
        .collect()
}

/// Results of a load run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub per_sec: f64,
    pub latency: Latency,
    pub errors: usize,
}

/// Sends every request, `concurrency` at a time (closed loop, as fast as the server answers).
async fn saturate(url: &str, requests: Vec<Prepared>, concurrency: usize) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("HTTP client");
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, requests, next, url) = (
            client.clone(),
            requests.clone(),
            next.clone(),
            url.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let sent = Instant::now();
                if send(&client, &url, request).await {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    collect(workers, started).await
}

/// Sends the requests at a fixed rate (open loop); latency counts from each request's
/// scheduled time, so queueing shows.
async fn paced(url: &str, requests: Vec<Prepared>, per_sec: f64) -> Load {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut workers = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / per_sec.max(1.0));
    for (i, request) in requests.into_iter().enumerate() {
        let due = started + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.to_owned());
        workers.push(tokio::spawn(async move {
            let ok = send(&client, &url, &request).await;
            if ok {
                (vec![due.elapsed()], 0)
            } else {
                (Vec::new(), 1)
            }
        }));
    }
    collect(workers, started).await
}

async fn send(client: &reqwest::Client, url: &str, request: &Prepared) -> bool {
    let mut builder = client
        .post(url)
        .header("content-type", "application/json")
        .body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match builder.send().await {
        Ok(response) => {
            let ok = response.status().is_success();
            let _ = response.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

async fn collect(
    workers: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    started: Instant,
) -> Load {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        per_sec: latencies.len() as f64 / elapsed,
        latency: Latency::of(latencies),
        errors,
    }
}

/// B1: durable webhook ingest, beside a no-op handler answering the same requests.
pub async fn b1(scale: Scale, noop_url: &str) -> Vec<Row> {
    let count = scale.pick(400, 20_000);
    let concurrency = scale.pick(16, 256);
    let (relay, shop) = plain_relay(None).await;
    let url = format!("{}/webhooks/{SHOP}", relay.base_url());
    let noop = saturate(
        &format!("{noop_url}/webhooks/{SHOP}"),
        prepare(&shop, "noop", count),
        concurrency,
    )
    .await;
    let sqlite = saturate(&url, prepare(&shop, "b1", count), concurrency).await;
    let half = paced(
        &url,
        prepare(&shop, "b1-half", count / 4),
        sqlite.per_sec / 2.0,
    )
    .await;
    let mut rows = vec![Row {
        id: "B1",
        name: format!("ingest, SQLite ({count} signed webhooks, {concurrency} connections)"),
        figure: format!(
            "{:.0}/s ({:.2}× no-op); p50 {} p99 {}; at half load p99 {}; {} errors",
            sqlite.per_sec,
            sqlite.per_sec / noop.per_sec,
            ms(sqlite.latency.p50),
            ms(sqlite.latency.p99),
            ms(half.latency.p99),
            sqlite.errors + half.errors
        ),
        baseline: format!(
            "no-op axum handler {:.0}/s, p99 {}",
            noop.per_sec,
            ms(noop.latency.p99)
        ),
        target: "≥ 0.5× no-op; p99 < 20 ms at half load".into(),
        met: sqlite.per_sec >= 0.5 * noop.per_sec
            && half.latency.p99 < Duration::from_millis(20)
            && sqlite.errors + half.errors == 0,
    }];
    drop(relay);
    if let Some(db) = TestDb::create().await {
        let (relay, shop) = plain_relay(Some(db.url.clone())).await;
        let url = format!("{}/webhooks/{SHOP}", relay.base_url());
        let pg = saturate(&url, prepare(&shop, "b1pg", count), concurrency).await;
        let half = paced(
            &url,
            prepare(&shop, "b1pg-half", count / 4),
            pg.per_sec / 2.0,
        )
        .await;
        rows.push(Row {
            id: "B1",
            name: format!(
                "ingest, PostgreSQL ({count} signed webhooks, {concurrency} connections)"
            ),
            figure: format!(
                "{:.0}/s ({:.2}× no-op); p50 {} p99 {}; at half load p99 {}; {} errors",
                pg.per_sec,
                pg.per_sec / noop.per_sec,
                ms(pg.latency.p50),
                ms(pg.latency.p99),
                ms(half.latency.p99),
                pg.errors + half.errors
            ),
            baseline: format!("no-op axum handler {:.0}/s", noop.per_sec),
            target: "p99 < 20 ms at half load".into(),
            met: half.latency.p99 < Duration::from_millis(20) && pg.errors + half.errors == 0,
        });
        drop(relay);
        db.drop().await;
    }
    rows
}

fn parse_time(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

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
    crate::eventually(
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
    let binary = std::fs::metadata(crate::process::bin_path("agent"))
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
    crate::eventually(
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

/// What B7 loads into the stand-in: the sizes of the issue, or a tiny quick run.
#[derive(Debug, Clone, Copy)]
struct B7Sizes {
    customers: i64,
    products: i64,
    stock: i64,
    price_lists: i64,
    orders: i64,
}

/// Activity counters of one watched table, from PostgreSQL's statistics views.
#[derive(Debug, Clone, Copy, Default)]
struct TableStats {
    /// Sequential and index scans started on the table.
    scans: i64,
    /// Rows read from the table: `seq_tup_read + idx_tup_fetch`.
    rows: i64,
    /// Index entries read (`idx_tup_read` over the table's indexes).
    index_entries: i64,
    /// Scans of an index whose first key column is the rowversion column.
    rv_index_scans: i64,
    /// Buffers touched, table and indexes (`pg_statio_user_tables`, read + hit).
    buffers: i64,
}

impl TableStats {
    fn since(self, before: Self) -> Self {
        Self {
            scans: self.scans - before.scans,
            rows: self.rows - before.rows,
            index_entries: self.index_entries - before.index_entries,
            rv_index_scans: self.rv_index_scans - before.rv_index_scans,
            buffers: self.buffers - before.buffers,
        }
    }
}

type Stats = std::collections::BTreeMap<String, TableStats>;

fn stats_since(after: &Stats, before: &Stats) -> Stats {
    after
        .iter()
        .map(|(table, a)| {
            let b = before.get(table).copied().unwrap_or_default();
            (table.clone(), a.since(b))
        })
        .collect()
}

/// The statistics of every table of the stand-in's schema, as PostgreSQL has them now. Each
/// backend sends its counters at the end of a transaction (at most once a second) and when it
/// exits; the snapshot of this session is cleared first so the read is current.
async fn table_stats(pg: &tokio_postgres::Client, schema: &str) -> Stats {
    const SQL: &str = "
        SELECT t.relname::text,
               (t.seq_scan + coalesce(t.idx_scan, 0))::int8,
               (t.seq_tup_read + coalesce(t.idx_tup_fetch, 0))::int8,
               coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i WHERE i.relid = t.relid), 0)::int8,
               coalesce((SELECT sum(i.idx_scan) FROM pg_stat_user_indexes i
                           JOIN pg_index x ON x.indexrelid = i.indexrelid
                           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                          WHERE i.relid = t.relid AND a.attname = 'rv'), 0)::int8,
               (coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0)
                + coalesce(s.idx_blks_read, 0) + coalesce(s.idx_blks_hit, 0))::int8
          FROM pg_stat_user_tables t JOIN pg_statio_user_tables s USING (relid)
         WHERE t.schemaname = $1";
    if let Err(e) = pg.batch_execute("SELECT pg_stat_clear_snapshot()").await {
        panic!("cannot clear the statistics snapshot: {e}");
    }
    let rows = pg
        .query(SQL, &[&schema])
        .await
        .unwrap_or_else(|e| panic!("cannot read pg_stat_user_tables for {schema}: {e}"));
    rows.iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                TableStats {
                    scans: r.get(1),
                    rows: r.get(2),
                    index_entries: r.get(3),
                    rv_index_scans: r.get(4),
                    buffers: r.get(5),
                },
            )
        })
        .collect()
}

/// One statement the watcher sends, as `agent sql` prints it, and the table it reads.
#[derive(Debug, Clone)]
struct WatchStatement {
    name: String,
    sql: String,
    table: String,
}

/// The watcher's statements, from the real agent binary (`agent sql`, reference mapping): the
/// ones that read a watched table, one per kind, and the ones that read none (the safe mark,
/// `SELECT MIN_ACTIVE_ROWVERSION()`), which the agent sends on each kind's connection before
/// that kind's statement.
async fn watch_statements() -> (Vec<WatchStatement>, Vec<WatchStatement>) {
    let output = tokio::process::Command::new(crate::process::bin_path("agent"))
        .arg("sql")
        .output()
        .await
        .unwrap_or_else(|e| panic!("`agent sql` does not run: {e}"));
    assert!(
        output.status.success(),
        "`agent sql` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from = regex::Regex::new(r"(?i)\bFROM\s+([A-Za-z0-9_\[\]\.]+)").expect("regex");
    let (kinds, preamble): (Vec<_>, Vec<_>) = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| {
            let name = v["name"].as_str()?.to_owned();
            let sql = v["sql"].as_str()?.to_owned();
            if !name.starts_with("watch.") {
                return None;
            }
            let table = from
                .captures(&sql)
                .and_then(|c| c.get(1))
                .map(|t| t.as_str().trim_matches(['[', ']']).to_lowercase())
                .unwrap_or_default();
            Some(WatchStatement { name, sql, table })
        })
        .partition(|s| !s.table.is_empty());
    (kinds, preamble)
}

/// The same statement in the watcher's earlier form, which compared a cast of the rowversion
/// with a `bigint` cursor (and had no safe mark).
fn cast_form(sql: &str) -> String {
    let re = regex::Regex::new(r"WHERE (\w+) > @P1( AND \w+ < MIN_ACTIVE_ROWVERSION\(\))?")
        .expect("regex");
    re.replace(sql, "WHERE CAST($1 AS BIGINT) > @P1")
        .into_owned()
}

type Tds = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

async fn tds_client(port: u16) -> Tds {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(port);
    config.authentication(tiberius::AuthMethod::sql_server("mamut", "s3cret-pass"));
    config.database("mamut");
    config.encryption(tiberius::EncryptionLevel::NotSupported);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Mamut stand-in on port {port}: {e}"));
    let _ = tcp.set_nodelay(true);
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap_or_else(|e| panic!("cannot log in to the Mamut stand-in on port {port}: {e}"))
}

/// Which form of the watcher's statements a driven poll sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollForm {
    /// `rv > @P1 AND rv < MIN_ACTIVE_ROWVERSION()`, `@P1` binary(8): the agent's statements.
    Rowversion,
    /// `CAST(rv AS BIGINT) > @P1`, `@P1` bigint: the earlier form.
    Cast,
}

/// Sends `polls` polls through TDS as the agent does (each kind on its own connection, the
/// five at once; on each, the statements without a table first, then the kind's with `@P1`
/// the cursor and `@P2` the batch of 500), and returns each poll's time and how many rows of
/// the watched tables came back in all.
async fn drive_polls(
    port: u16,
    (statements, preamble): (&[WatchStatement], &[WatchStatement]),
    form: PollForm,
    cursor: i64,
    polls: usize,
) -> (Vec<Duration>, usize) {
    let mut clients = Vec::new();
    for _ in statements {
        clients.push(tds_client(port).await);
    }
    let sqls: Vec<String> = statements
        .iter()
        .map(|s| match form {
            PollForm::Rowversion => s.sql.clone(),
            PollForm::Cast => cast_form(&s.sql),
        })
        .collect();
    let preamble: Vec<&str> = match form {
        PollForm::Rowversion => preamble.iter().map(|s| s.sql.as_str()).collect(),
        PollForm::Cast => Vec::new(),
    };
    let preamble = &preamble;
    let mut times = Vec::with_capacity(polls);
    let mut returned = 0;
    for _ in 0..polls {
        let started = Instant::now();
        let results = futures_util::future::join_all(clients.iter_mut().zip(&sqls).map(
            |(client, sql)| async move {
                for first in preamble {
                    let answer = match client.query(*first, &[]).await {
                        Ok(stream) => stream.into_results().await,
                        Err(e) => Err(e),
                    };
                    answer.map_err(|e| format!("{first}: {e}"))?;
                }
                let batch = 500i64;
                let bytes = cursor.to_be_bytes();
                let stream = match form {
                    PollForm::Rowversion => client.query(sql, &[&bytes.as_slice(), &batch]).await,
                    PollForm::Cast => client.query(sql, &[&cursor, &batch]).await,
                };
                match stream {
                    Ok(stream) => stream
                        .into_first_result()
                        .await
                        .map(|rows| rows.len())
                        .map_err(|e| format!("{sql}: {e}")),
                    Err(e) => Err(format!("{sql}: {e}")),
                }
            },
        ))
        .await;
        times.push(started.elapsed());
        for (result, statement) in results.into_iter().zip(statements) {
            match result {
                Ok(n) => returned += n,
                Err(e) => panic!(
                    "the watcher statement {} fails on the stand-in: {e}",
                    statement.name
                ),
            }
        }
    }
    for client in clients {
        let _ = client.close().await;
    }
    (times, returned)
}

/// Waits until PostgreSQL's statistics show at least `scans` scans of each table since
/// `before` (every statement of a poll is at least one scan of its table), then returns the
/// counters since `before`. The stand-in's sessions send theirs when their TDS connections
/// close.
async fn stats_after(
    pg: &tokio_postgres::Client,
    schema: &str,
    before: &Stats,
    scans: &std::collections::BTreeMap<String, i64>,
) -> Option<Stats> {
    let complete = until(Duration::from_secs(30), || async {
        let delta = stats_since(&table_stats(pg, schema).await, before);
        scans
            .iter()
            .all(|(t, n)| delta.get(t).is_some_and(|s| s.scans >= *n))
    })
    .await;
    if complete {
        Some(stats_since(&table_stats(pg, schema).await, before))
    } else {
        None
    }
}

/// Rows, index entries and buffers per poll over the watched tables, from counters covering
/// `polls` polls.
fn per_poll(delta: &Stats, tables: &[String], polls: f64) -> (f64, f64, f64) {
    let sum = |f: fn(&TableStats) -> i64| {
        tables
            .iter()
            .filter_map(|t| delta.get(t))
            .map(f)
            .sum::<i64>() as f64
            / polls.max(1.0)
    };
    (
        sum(|s| s.rows),
        sum(|s| s.index_entries),
        sum(|s| s.buffers),
    )
}

/// Loads the B7 data straight into the stand-in's PostgreSQL schema: every row still goes
/// through the table's trigger, which assigns its rowversion and checks it as SQL Server
/// would. Two connections load at once (customers and orders; products, stock, price lists),
/// then the tables are analysed as SQL Server's automatic statistics would be.
async fn load_b7(mamut: &MamutDb, sizes: B7Sizes) -> Duration {
    let started = Instant::now();
    let url = mamut.config().postgres_url.clone();
    let schema = mamut.config().pg_schema.clone();
    let B7Sizes {
        customers,
        products,
        stock,
        price_lists,
        orders,
    } = sizes;
    let first = vec![
        format!(
            "INSERT INTO customers (customer_no, name, email) \
             SELECT 100000 + i, 'Customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, {customers}) i"
        ),
        format!(
            "INSERT INTO orders (order_no, doc_type, customer_no, external_no, shop_id, status, order_date, currency, total) \
             SELECT 100000 + i, 'order', 100000 + 1 + i % {customers}, 'B7-' || i, 'demo-se', 'invoice', \
                    timestamp '2026-01-01' + i * interval '1 second', 'SEK', 100 + i % 900 \
               FROM generate_series(1, {orders}) i"
        ),
    ];
    let second = vec![
        format!(
            "INSERT INTO products (article_no, name, vat_rate, price, active) \
             SELECT 'B7-' || lpad(i::text, 7, '0'), 'Product ' || i, 25, 10 + i % 990, 1 \
               FROM generate_series(1, {products}) i"
        ),
        format!(
            "INSERT INTO stock (article_no, warehouse, quantity) \
             SELECT 'B7-' || lpad((1 + i % {products})::text, 7, '0'), 'W' || (i / {products}), i % 100 \
               FROM generate_series(0, {stock} - 1) i"
        ),
        format!(
            "INSERT INTO price_list_prices (price_list, article_no, currency, price) \
             SELECT 'RETAIL', 'B7-' || lpad(i::text, 7, '0'), 'SEK', 20 + i % 990 \
               FROM generate_series(1, {price_lists}) i"
        ),
    ];
    let run = |statements: Vec<String>| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let pg = pg_connect(&url).await;
            pg.batch_execute(&format!("SET search_path = \"{schema}\""))
                .await
                .unwrap_or_else(|e| panic!("search_path {schema}: {e}"));
            for sql in statements {
                if let Err(e) = pg.batch_execute(&sql).await {
                    panic!("loading the B7 data fails: {e}\n{sql}");
                }
            }
        }
    };
    futures_util::future::join(run(first), run(second)).await;
    run(vec![
        "ANALYZE customers, products, stock, price_list_prices, orders".to_owned(),
    ])
    .await;
    started.elapsed()
}

/// A PostgreSQL connection of the benchmark's own (loading, reading statistics).
async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at {url} (set MAMUT_SIM_POSTGRES_URL): {e}")
        });
    tokio::spawn(connection);
    client
}

/// B7: what an idle poll of the watcher costs the merchant's database, with the sizes of a
/// real company database. The agent's own statements (`agent sql`) are driven through TDS as
/// the agent sends them, timed, and the rows PostgreSQL read for them taken from its
/// statistics; beside them the same statements in their earlier `CAST(rv AS BIGINT)` form,
/// which scan every watched table, in the same run. Then the real agent polls the stand-in
/// idle (its cursors at the newest rowversion) and the rows read per poll are counted again.
pub async fn b7(scale: Scale) -> Vec<Row> {
    let sizes = scale.pick(
        B7Sizes {
            customers: 100,
            products: 1_000,
            stock: 3_000,
            price_lists: 1_000,
            orders: 10_000,
        },
        B7Sizes {
            customers: 10_000,
            products: 100_000,
            stock: 300_000,
            price_lists: 100_000,
            orders: 1_000_000,
        },
    );
    let agent_polls = scale.pick(8, 80);
    let driven_polls = scale.pick(5, 50);
    let cast_polls = scale.pick(2, 5);
    let interval = Duration::from_millis(250);
    let (statements, preamble) = watch_statements().await;
    assert_eq!(
        statements.len(),
        5,
        "`agent sql` should print five watcher statements that read a table: {statements:?}"
    );
    let mut queries_per_poll = std::collections::BTreeMap::<String, i64>::new();
    for s in &statements {
        *queries_per_poll.entry(s.table.clone()).or_default() += 1;
    }
    let tables: Vec<String> = queries_per_poll.keys().cloned().collect();
    let expected = |polls: usize| {
        queries_per_poll
            .iter()
            .map(|(t, q)| (t.clone(), q * polls as i64))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mamut = MamutDb::start();
    let load_time = load_b7(&mamut, sizes).await;
    let schema = mamut.config().pg_schema.to_lowercase();
    let pg = pg_connect(&mamut.config().postgres_url).await;
    let newest: i64 = pg
        .query_one(
            &format!(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM \"{schema}\".tsql_rowversion"
            ),
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("cannot read the stand-in's rowversion sequence: {e}"));

    // The agent's statements driven through TDS, timed; then their earlier form. Each phase
    // waits until the statistics hold every scan it made (its sessions send them when they
    // close), so its counters are exact.
    let before = table_stats(&pg, &schema).await;
    let (times, returned) = drive_polls(
        mamut.port(),
        (&statements, &preamble),
        PollForm::Rowversion,
        newest,
        driven_polls,
    )
    .await;
    let driven = stats_after(&pg, &schema, &before, &expected(driven_polls)).await;
    let idle = Latency::of(times);
    let before = table_stats(&pg, &schema).await;
    let (cast_times, cast_returned) = drive_polls(
        mamut.port(),
        (&statements, &preamble),
        PollForm::Cast,
        newest,
        cast_polls,
    )
    .await;
    let cast = stats_after(&pg, &schema, &before, &expected(cast_polls)).await;
    let full = Latency::of(cast_times);
    // Scans per statement: PostgreSQL's planner also looks at the rowversion index's end when
    // the cursor lies past its statistics, so one statement may be more than one scan.
    let scans_per_statement = |t: &str| {
        driven.as_ref().and_then(|d| d.get(t)).map_or(1.0, |s| {
            s.scans as f64 / (queries_per_poll[t] as f64 * driven_polls as f64)
        })
    };

    // The real agent, idle: its cursors at the newest rowversion, polling every 250 ms.
    let (relay, _shop) = plain_relay(None).await;
    let (_, token) = relay.admin().create_agent(TENANT).await;
    let options = |port| AgentOptions {
        sqlserver: Some(SqlServerOptions::new(port)),
        watch_interval_ms: interval.as_millis() as u64,
        ..AgentOptions::default()
    };
    // First started towards a closed port, so that it reads nothing before its cursors are set.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(9, |a| a.port());
    let mut agent = AgentProcess::start(&relay, &token, options(closed)).await;
    agent.kill().await;
    agent.configure(&options(mamut.port()));
    let cursors: serde_json::Map<String, Value> =
        ["stock", "price", "price_list", "product", "order_status"]
            .iter()
            .map(|kind| ((*kind).to_owned(), json!(newest)))
            .collect();
    if let Err(e) = std::fs::write(agent.state_file(), Value::Object(cursors).to_string()) {
        panic!("cannot write the agent's state file: {e}");
    }
    agent.restart().await;
    let stock_scans_per_poll = scans_per_statement("stock") * queries_per_poll["stock"] as f64;
    let polls_of = |delta: &Stats| {
        delta.get("stock").map_or(0.0, |s| s.scans as f64) / stock_scans_per_poll.max(1.0)
    };
    let started = table_stats(&pg, &schema).await;
    // Past its start: a few polls seen.
    let polling = until(Duration::from_secs(60), || async {
        polls_of(&stats_since(&table_stats(&pg, &schema).await, &started)) >= 4.0
    })
    .await;
    let before = table_stats(&pg, &schema).await;
    let window = Instant::now();
    let counted = polling
        && until(Duration::from_secs(120), || async {
            polls_of(&stats_since(&table_stats(&pg, &schema).await, &before)) >= agent_polls as f64
        })
        .await;
    let window = window.elapsed();
    let agent_delta = stats_since(&table_stats(&pg, &schema).await, &before);
    agent.kill().await;
    drop(agent);
    drop(relay);
    drop(pg);
    drop(mamut);
    // A session sends a table's row and scan counters together, so rows per scan is exact for
    // the scans counted, whichever session's counters are still on their way.
    let agent_rows: f64 = tables
        .iter()
        .map(|t| {
            let s = agent_delta.get(t).copied().unwrap_or_default();
            s.rows as f64 / s.scans.max(1) as f64
                * scans_per_statement(t)
                * queries_per_poll[t] as f64
        })
        .sum();
    let agent_seen = polls_of(&agent_delta);
    let on_rv_index = |d: &Stats| {
        tables.iter().all(|t| {
            d.get(t)
                .is_some_and(|s| s.scans > 0 && s.rv_index_scans == s.scans)
        })
    };
    let agent_on_index = on_rv_index(&agent_delta);
    let (driven_rows, driven_entries, driven_buffers) =
        driven.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |d| {
            per_poll(d, &tables, driven_polls as f64)
        });
    // The stand-in's own record of SQL Server column types, read for every statement; SQL
    // Server keeps its metadata in memory, so this is not part of the poll's cost there.
    let catalog_rows = driven.as_ref().map_or(f64::NAN, |d| {
        per_poll(d, &["tsql_columns".to_owned()], driven_polls as f64).0
    });
    let (cast_rows, _, cast_buffers) = cast.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |d| {
        per_poll(d, &tables, cast_polls as f64)
    });
    let B7Sizes {
        products,
        stock,
        price_lists,
        orders,
        ..
    } = sizes;
    let complete = counted && driven.is_some() && cast.is_some();
    vec![Row {
        id: "B7",
        name: format!(
            "idle watcher poll ({} table reads{}), {products} products, {stock} stock rows, {price_lists} price-list rows, {orders} orders (loaded in {:.0} s)",
            statements.len(),
            preamble
                .iter()
                .map(|p| format!(", each after `{}`", p.sql))
                .collect::<String>(),
            load_time.as_secs_f64()
        ),
        figure: format!(
            "real agent: {agent_rows:.1} rows read per idle poll ({agent_seen:.0} polls in {:.1} s{}); \
             driven: {driven_rows:.1} rows, {driven_entries:.1} index entries, {driven_buffers:.0} buffers per poll, {returned} rows returned \
             (+ {catalog_rows:.0} rows of the stand-in's column-type table); \
             poll p50 {} p99 {}, {:.0}× faster than the cast form{}",
            window.as_secs_f64(),
            if agent_on_index && driven.as_ref().is_some_and(on_rv_index) {
                ", every scan on the rowversion index"
            } else {
                ", NOT every scan on the rowversion index"
            },
            ms(idle.p50),
            ms(idle.p99),
            full.p50.as_secs_f64() / idle.p50.as_secs_f64().max(1e-9),
            if complete {
                ""
            } else {
                "; INCOMPLETE (statistics did not arrive)"
            }
        ),
        baseline: format!(
            "`CAST(rv AS BIGINT) > @P1`: {cast_rows:.0} rows, {cast_buffers:.0} buffers per poll, poll p50 {} ({cast_polls} polls, {cast_returned} rows returned)",
            ms(full.p50)
        ),
        target: "≤ 100 rows per idle poll (index seeks only)".into(),
        met: complete && agent_rows <= 100.0 && driven_rows <= 100.0,
    }]
}
