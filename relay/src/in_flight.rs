//! The limit on HTTP requests served at once: beyond it a request is answered 503 with
//! `Retry-After` at once, rather than queued behind the others, and counted.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The most HTTP requests served at once (an agent's WebSocket session counts only while its
/// upgrade is answered). Beyond it a request is refused, counted as
/// `relay_refused_total{limit="max_requests_in_flight"}`.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 1024;

/// The state of [`limit`]: a permit per request being served, and what a refusal does
/// besides answering (count it).
#[derive(Clone)]
pub struct InFlight<F> {
    permits: Arc<Semaphore>,
    refused: F,
}

impl<F: Fn() + Clone + Send + Sync + 'static> InFlight<F> {
    pub fn new(max: usize, refused: F) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            refused,
        }
    }
}

/// Serves a request while a permit is free, else refuses it (use with
/// `axum::middleware::from_fn_with_state`).
pub async fn limit<F: Fn() + Clone + Send + Sync + 'static>(
    State(in_flight): State<InFlight<F>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = in_flight.permits.clone().try_acquire_owned() else {
        (in_flight.refused)();
        return ApiError::Unavailable {
            message: "the relay is serving as many requests as it can; try again".into(),
            retry_after: 1,
        }
        .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_beyond_the_limit_is_refused_at_once_and_counted() {
        let release = Arc::new(tokio::sync::Notify::new());
        let refusals = Arc::new(AtomicU64::new(0));
        let counted = refusals.clone();
        let in_flight = InFlight::new(1, move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let permits = in_flight.permits.clone();
        let held = release.clone();
        let router = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    held.notified().await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(in_flight, limit));
        let request = |path: &str| Request::get(path).body(Body::empty()).expect("a request");

        let first = tokio::spawn(router.clone().oneshot(request("/slow")));
        // Wait (bounded) until the first request holds the only permit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while permits.available_permits() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first request never started"
            );
            tokio::task::yield_now().await;
        }
        let refused = router.clone().oneshot(request("/slow")).await;
        let refused = refused.expect("an answer");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(refusals.load(Ordering::Relaxed), 1);

        release.notify_one();
        let served = first
            .await
            .expect("the first request's task")
            .expect("an answer");
        assert_eq!(served.status(), StatusCode::OK);
        // The permit is back: the next request is served.
        release.notify_one();
        let next = router.oneshot(request("/slow")).await.expect("an answer");
        assert_eq!(next.status(), StatusCode::OK);
        assert_eq!(refusals.load(Ordering::Relaxed), 1);
    }
}
