//! Retention: finished work older than `retention_days` is deleted hourly, in chunks, so the
//! store keeps serving webhooks and acks in between.

use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::store;

/// Runs until the relay shuts down: hourly, the first time an hour after the start (not
/// during a restart's busiest moment). A `retention_days` of 0 keeps everything.
pub(crate) async fn run(state: Arc<AppState>) {
    let hour = Duration::from_secs(3600);
    let mut retention = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = retention.tick() => {
                let days = state.config.retention_days;
                if days > 0 {
                    let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
                    retain(&state, before).await;
                }
            }
        }
    }
}

/// Deletes finished work older than `before`, in chunks, so the store keeps serving webhooks
/// and acks in between.
async fn retain(state: &AppState, before: chrono::DateTime<chrono::Utc>) {
    const CHUNK: u32 = 5_000;
    let mut total = store::Purged::default();
    loop {
        if state.shutdown.is_cancelled() {
            break;
        }
        match state.store.purge(before, CHUNK).await {
            Ok(purged) => {
                total.events += purged.events;
                total.pushes += purged.pushes;
                total.dispatch += purged.dispatch;
                let more = [purged.events, purged.pushes, purged.dispatch]
                    .iter()
                    .any(|n| *n >= u64::from(CHUNK));
                if !more {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention failed");
                break;
            }
        }
    }
    if total != store::Purged::default() {
        tracing::info!(purged = ?total, "finished work past the retention removed");
    }
}
