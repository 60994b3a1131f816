//! What `agent run` and the Windows service both run: the Mamut backend the configuration
//! names, then the supervisor (reconnect forever) until a [`CancellationToken`] is cancelled.
//!
//! - [`run`]: the agent until `cancel` is cancelled (the service's Stop control cancels it).
//! - [`run_until_signal`]: the same, cancelled by Ctrl-C or SIGTERM (`agent run`).
//! - [`mamut_backend`]: the [`Mamut`] implementation of the configuration (also `agent sync`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, MamutBackend, Writer};
use crate::mamut::Mamut;
use crate::mamut::import::ImportWriter;
use crate::mamut::mapping::Mapping;
use crate::mamut::recorder::Recorder;
use crate::mamut::sqlserver::SqlServer;

/// Runs the agent until `cancel` is cancelled; in-flight orders finish first (the session
/// drains on cancel). Errors only when it cannot start (e.g. the recorder's file cannot be
/// opened, the mapping is invalid); connection failures are retried by the supervisor.
pub async fn run(
    config: AgentConfig,
    env: &dyn Fn(&str) -> Option<String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mamut = mamut_backend(&config)?;
    tracing::info!(relay = %config.relay.url, "agent started");
    crate::supervisor::run(&config, mamut, env, cancel).await?;
    tracing::info!("agent stopped");
    Ok(())
}

/// [`run`], stopped by Ctrl-C or (on Unix) SIGTERM.
pub async fn run_until_signal(
    config: AgentConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight orders");
        on_signal.cancel();
    });
    let result = run(config, env, cancel).await;
    signals.abort();
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The Mamut backend the configuration names.
pub fn mamut_backend(config: &AgentConfig) -> anyhow::Result<Arc<dyn Mamut>> {
    Ok(match config.mamut.backend {
        MamutBackend::Recorder => {
            tracing::warn!(path = %config.mamut.path.display(), "using the recorder stand-in, not Mamut");
            Arc::new(Recorder::open(
                &config.mamut.path,
                Duration::from_millis(config.mamut.apply_delay_ms),
            )?)
        }
        MamutBackend::Sqlserver => {
            let sql = &config.mamut.sqlserver;
            let mapping = match &sql.mapping {
                Some(path) => Mapping::load(path).map_err(anyhow::Error::msg)?,
                None => Mapping::default(),
            };
            tracing::info!(host = %sql.host, port = sql.port, database = %sql.database, "Mamut on SQL Server");
            let server = SqlServer::new(sql.clone(), mapping, config.watch.currency.clone());
            match config.mamut.writer {
                Writer::Sql => Arc::new(server),
                Writer::Import => {
                    let import = &config.mamut.import;
                    tracing::info!(program = %import.program.display(), client = %import.client, spool = %import.spool_dir.display(), "orders through Mamut's import");
                    Arc::new(ImportWriter::new(server, import.clone()).map_err(anyhow::Error::msg)?)
                }
            }
        }
    })
}
