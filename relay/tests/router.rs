//! The HTTP router's limit on requests served at once: what it refuses and what it never does.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use crate::session::fixture;

async fn status(router: &axum::Router, method: &str, uri: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("a request");
    router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers")
        .status()
}

#[tokio::test]
async fn a_relay_serving_all_it_can_still_answers_its_probes_and_metrics() {
    let f = fixture().await;
    // No request may be served beside those already in flight: as full as it gets.
    let router = relay::router_with_limit(f.app.clone(), 0);
    assert_eq!(
        status(&router, "POST", "/webhooks/demo-se").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a webhook beyond the limit"
    );
    assert_eq!(
        status(&router, "GET", "/admin/v1/tenants").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "an admin request beyond the limit"
    );
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            status(&router, "GET", probe).await,
            StatusCode::OK,
            "{probe}"
        );
    }
    assert_eq!(
        f.app
            .metrics
            .render()
            .lines()
            .find(|line| line.starts_with("relay_refused_total{limit=\"max_requests_in_flight\"}")),
        Some("relay_refused_total{limit=\"max_requests_in_flight\"} 2"),
    );
}
