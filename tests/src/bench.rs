//! The benchmarks (B1–B6 of the benchmark issue), run by the `bench` binary against the real
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
    let pki = Arc::new(Pki::new());
    let relay = RelayProcess::start(
        pki,
        RelayOptions {
            tls: false,
            database_url,
            heartbeat_secs: None,
            quick_timings: false,
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
    let (relay, _) = plain_relay(None).await;
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
/// agent's poll interval.
pub async fn b3(scale: Scale) -> Vec<Row> {
    let changes = scale.pick(5, 40);
    let poll = Duration::from_millis(1000);
    let mamut = MamutDb::start();
    let sim = ShopSim::start("bench-shop-key-0123456789").await;
    let articles: Vec<String> = (0..changes).map(|i| format!("B3-{i:03}")).collect();
    sim.add_articles(articles.clone());
    let (relay, token) = relay_with_shop(&sim).await;
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
    // Spread the changes over the poll cycle.
    let mut every = tokio::time::interval(Duration::from_millis(330));
    for article in &articles {
        every.tick().await;
        mamut.execute(&format!(
            "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('{article}', 'MAIN', 5)"
        ));
        made.push((article.clone(), Instant::now()));
    }
    let arrivals = || {
        let calls = sim.calls();
        made.iter()
            .filter_map(|(article, at)| {
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
    drop(agent);
    vec![Row {
        id: "B3",
        name: format!("stock latency, Mamut change → shop call ({changes} changes)"),
        figure: format!(
            "p50 {} p99 {}; {arrived}/{changes} arrived",
            ms(latency.p50),
            ms(latency.p99)
        ),
        baseline: format!("poll interval {}", ms(poll)),
        target: "p99 < poll interval + 1 s".into(),
        met: arrived == changes && latency.p99 < poll + Duration::from_secs(1),
    }]
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
    let flushes = metric(&relay, "relay_dispatch_rounds_total").await;
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

/// One counter from the relay's `/metrics`.
async fn metric(relay: &RelayProcess, name: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{}/metrics", relay.base_url())).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_default()
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
