//! The load generator: signed webhooks prepared ahead, then sent closed-loop (as fast as the
//! server answers, a number at a time) or open-loop at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Latency;
use crate::harness::SHOP;
use crate::harness::shop::{Shop, order_body};

/// A signed webhook, ready to send: headers and body.
#[derive(Clone)]
pub(super) struct Prepared {
    headers: Vec<(String, String)>,
    body: Bytes,
}

pub(super) fn prepare(shop: &Shop, prefix: &str, count: usize) -> Vec<Prepared> {
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
pub(super) async fn saturate(url: &str, requests: Vec<Prepared>, concurrency: usize) -> Load {
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
pub(super) async fn paced(url: &str, requests: Vec<Prepared>, per_sec: f64) -> Load {
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
