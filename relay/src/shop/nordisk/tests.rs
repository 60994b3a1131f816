//! Tests of the Nordisk client's reading of answers: `Retry-After`, the contract's error
//! table, the API key kept out of reasons, escaped paths.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use super::answer::{classify, retry_after};
use super::*;

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_str(&soon).expect("header value"),
    );
    let wait = retry_after(&headers).expect("a date");
    assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&headers), None);
}

#[test]
fn failures_are_sorted_per_the_contract() {
    let permanent = |s: u16| {
        matches!(
            classify(
                StatusCode::from_u16(s).expect("status"),
                String::new(),
                None
            ),
            CallError::Permanent(_)
        )
    };
    for s in [400, 404, 409, 422] {
        assert!(permanent(s), "{s} is permanent");
    }
    for s in [401, 403, 408, 429, 500, 502, 503] {
        assert!(!permanent(s), "{s} is retried");
    }
}

#[test]
fn the_api_key_never_shows_in_a_reason_even_where_it_is_cut() {
    let key = "sk_live_4f1d8a0c2b7e9f36";
    let client = Client::new(
        reqwest::Client::new(),
        "https://shop.example/v1",
        Secret::new(key),
    );
    let message = format!("{}{key}", "x".repeat(290));
    let error = json!({ "error": { "code": key, "message": message } }).to_string();
    let batch = json!({ "errors": [{ "article_number": "A", "code": "c", "message": message }] });
    let wrong_type = json!({ "errors": key }).to_string();
    let read = |call, status, body: &str| {
        let status = StatusCode::from_u16(status).expect("status");
        client.read_answer(call, "1", status, &HeaderMap::new(), body.as_bytes())
    };
    let reasons = [
        read(Call::FetchOrder, 500, &error)
            .expect_err("refused")
            .to_string(),
        read(Call::Batch, 200, &wrong_type)
            .expect_err("refused")
            .to_string(),
        match read(Call::Batch, 200, &batch.to_string()) {
            Ok(Answer::Batch(outcome)) => outcome.refused[0].1.clone(),
            other => panic!("a batch outcome: {other:?}"),
        },
    ];
    for reason in reasons {
        assert!(!reason.contains("sk_live"), "{reason}");
    }
}

#[test]
fn path_segments_are_escaped() {
    let client = Client::new(
        reqwest::Client::new(),
        "https://shop.example/v1/",
        Secret::new("k"),
    );
    let url = client
        .url(
            &["price-lists", "B2B Gold/x", "prices"],
            &[("after", "A&B")],
        )
        .expect("url");
    assert_eq!(
        url.as_str(),
        "https://shop.example/v1/price-lists/B2B%20Gold%2Fx/prices?after=A%26B"
    );
}
