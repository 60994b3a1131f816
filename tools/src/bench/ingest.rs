//! B1: durable webhook ingest on SQLite and PostgreSQL, beside a no-op handler answering the
//! same requests in the same run.

use std::time::Duration;

use super::load::{paced, prepare, saturate};
use super::{Row, Scale, ms, plain_relay};
use crate::harness::SHOP;
use crate::harness::pg::TestDb;

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
