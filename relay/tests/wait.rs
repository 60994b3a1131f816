//! Waiting for an effect: poll a condition until it holds or a deadline passes (the same
//! rule as the tools harness's `wait`, which this crate's tests cannot depend on).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `condition` returns true; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        until(timeout, condition).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Waits until `condition` returns true or `timeout` passes; returns whether it held.
pub async fn until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
