//! The agent's top-level loop: connect, run a session, and when it ends for any reason wait a
//! full-jitter exponential backoff and connect again — forever, until cancelled. A session that
//! lived long enough resets the backoff. What was unacknowledged is simply redelivered by the
//! relay on the next session.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Secret};
use crate::mamut::Mamut;
use crate::proxy::Plan;
use crate::session::{SessionError, SessionSettings, run_session};
use crate::transport::{self, ConnectError, Endpoint};
use crate::watch::{WatchSettings, Watcher};

/// TCP, proxy, TLS and WebSocket handshake together must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The upper bound of the wait before reconnect attempt `failures` (1-based).
pub fn backoff_ceiling(failures: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
    initial.saturating_mul(factor).min(max)
}

/// Full jitter: uniformly random between zero and the ceiling.
pub fn full_jitter(ceiling: Duration) -> Duration {
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

/// Runs until `cancel` fires. Fails only on configuration that can never work (an unreadable
/// CA file, a malformed proxy setting).
pub async fn run(
    config: &AgentConfig,
    mamut: Arc<dyn Mamut>,
    env: &dyn Fn(&str) -> Option<String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // One relay address, or several instances to go through in turn when one fails.
    let mut relays: Vec<(&Endpoint, Plan)> = Vec::new();
    for endpoint in config.relay.endpoints() {
        let proxy = transport::proxy_plan(&config.relay.proxy, endpoint, env)
            .map_err(anyhow::Error::msg)?;
        match &proxy {
            Plan::Fixed(decision) => {
                tracing::info!(relay = %endpoint, proxy = %decision, "proxy for the relay connection")
            }
            // Read again at each connect attempt.
            Plan::System { mode, .. } => tracing::info!(
                relay = %endpoint,
                ?mode,
                "proxy from the system's settings, read at each connect attempt"
            ),
        }
        relays.push((endpoint, proxy));
    }
    let tls = if relays.iter().any(|(endpoint, _)| endpoint.tls) {
        Some(
            transport::tls_config(config.relay.ca_file.as_deref())
                .context("failed to set up TLS")?,
        )
    } else {
        None
    };
    let mut current = 0usize;
    let settings = SessionSettings {
        credit: config.relay.credit,
        heartbeat: Duration::from_secs(u64::from(config.relay.heartbeat_secs)),
    };
    let initial = Duration::from_millis(config.backoff.initial_ms);
    let max = Duration::from_millis(config.backoff.max_ms);
    let stable = Duration::from_secs(config.backoff.stable_after_secs);
    // Changes found in Mamut wait here for a session to push them.
    let (batches, mut pushes) = tokio::sync::mpsc::channel(1);
    // Stopped by the same token and awaited below, so it never outlives the agent.
    let watcher = if config.watch.enabled {
        let settings = WatchSettings {
            interval: Duration::from_millis(config.watch.interval_ms),
            state_file: config.watch.state_file.clone(),
            batch: config.watch.batch,
        };
        Some(Watcher::spawn(
            mamut.clone(),
            settings,
            batches,
            cancel.clone(),
        ))
    } else {
        None
    };
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            socket = connect(&relays[current % relays.len()], &config.relay.token, &tls) => socket,
        };
        // Failures that no retry mends (a revoked or refused token, a certificate the agent
        // does not trust) are errors, said once per attempt; the rest pass by themselves.
        let (result, lasting) = match outcome {
            Ok(socket) => {
                match run_session(socket, mamut.clone(), &settings, &mut pushes, &cancel).await {
                    Err(e @ SessionError::Revoked(_)) => {
                        tracing::error!(error = %e, "the relay revoked this agent's token");
                        (Err(e.into()), true)
                    }
                    result => (result.map_err(anyhow::Error::from), false),
                }
            }
            Err(e @ ConnectError::Refused(_)) => {
                tracing::error!(error = %e, "the relay refused this agent's token");
                (Err(e.into()), true)
            }
            Err(e @ ConnectError::Certificate(_)) => {
                tracing::error!(error = %e, "the relay's certificate is refused; this does not pass by itself");
                (Err(e.into()), true)
            }
            Err(e) => (Err(e.into()), false),
        };
        if cancel.is_cancelled() {
            break;
        }
        if started.elapsed() >= stable {
            failures = 0;
        } else if relays.len() > 1 {
            // This relay failed us quickly: try the next one.
            current = current.wrapping_add(1);
            tracing::info!(relay = %relays[current % relays.len()].0, "trying the next relay address");
        }
        failures = failures.saturating_add(1);
        let delay = full_jitter(backoff_ceiling(failures, initial, max));
        match result {
            Ok(()) => tracing::info!(?delay, "session ended; reconnecting"),
            Err(_) if lasting => tracing::info!(?delay, "trying again"),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                ?delay,
                "session failed; reconnecting"
            ),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if let Some(watcher) = watcher {
        watcher.stopped().await;
    }
    Ok(())
}

async fn connect(
    (endpoint, proxy): &(&Endpoint, Plan),
    token: &Secret,
    client_tls: &Option<Arc<rustls::ClientConfig>>,
) -> Result<transport::Socket, ConnectError> {
    let client_tls = if endpoint.tls {
        client_tls.clone()
    } else {
        None
    };
    transport::connect(endpoint, token, client_tls, proxy, CONNECT_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let initial = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        assert_eq!(backoff_ceiling(1, initial, max), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(2, initial, max), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(4, initial, max), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(7, initial, max), Duration::from_secs(30));
        assert_eq!(
            backoff_ceiling(u32::MAX, initial, max),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        let ceiling = Duration::from_millis(250);
        for _ in 0..1000 {
            assert!(full_jitter(ceiling) <= ceiling);
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
