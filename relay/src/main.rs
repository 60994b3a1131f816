//! `relay`: see `relay --help`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use relay::cli::{Cli, Command, run_admin};
use relay::config::Config;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration error (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |key: &str| std::env::var(key).ok();
    let config = match Config::load(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("relay: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Serve => {
            init_logging(config.log_json, "info");
            match serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("relay failed: {e:#}");
                    eprintln!("relay: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            init_logging(false, "warn");
            match run_admin(&config, command).await {
                Ok(value) => match writeln!(std::io::stdout().lock(), "{value:#}") {
                    Ok(()) => ExitCode::SUCCESS,
                    // The reader has gone (`relay events list | head`): nothing more to say.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("relay: cannot write the answer to standard output: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("relay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let app = relay::App::build(config, shutdown.clone()).await?;
    println!("relay listening on {}://{}", app.scheme(), app.local_addr());
    tracing::info!(addr = %app.local_addr(), "relay listening");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.run().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
