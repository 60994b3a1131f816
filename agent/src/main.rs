//! `agent`: see `agent --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::AgentConfig;
use agent::logging;
use agent::mamut::mapping::Mapping;
use clap::{Parser, Subcommand};

/// Exit code for a configuration error (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Mamut agent: dials out to the relay and applies orders to Mamut"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the relay and apply orders until stopped (Ctrl-C, SIGTERM).
    Run {
        /// The agent's TOML configuration; `AGENT_*` environment variables override it.
        #[arg(long, env = "AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
        /// Log to a daily file `agent.<date>.log` in this directory (the date in UTC, the last
        /// 14 kept) instead of stderr.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// Check the configuration, the Mamut connection and mapping, and the relay connection.
    Check {
        #[arg(long, env = "AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print every SQL statement the agent can send to Mamut, one JSON object per line
    /// (`{"name": ..., "sql": ...}`), for review or a T-SQL parser.
    Sql {
        /// The agent's configuration (for the numbering and lock timeout); defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The mapping; the one the configuration names, else the reference names.
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
    /// One-off synchronisation at the start of a project.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// The agent as a Windows service: install, uninstall, start, stop, status.
    #[command(subcommand)]
    Service(agent::service::ServiceCommand),
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Copy the whole assortment, variants included, keeping article numbers. Safe to run
    /// again (unchanged products are not written); an interrupted run continues where it
    /// stopped.
    Products {
        #[arg(long, env = "AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// Where the products go: `shop` (from Mamut) or `mamut` (from the shop).
        #[arg(long, value_enum)]
        to: agent::sync::Direction,
        /// Only this shop (needed with --to mamut when the tenant has several shops).
        #[arg(long)]
        shop: Option<String>,
        /// Products per page read from Mamut or the shop.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        batch: u32,
    },
}

fn main() -> ExitCode {
    // TLS to SQL Server (tiberius) uses the process-wide rustls provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let command = Cli::parse().command;
    // The service control manager's dispatcher runs the service on its own thread and
    // runtime; everything else runs on this one.
    if let Command::Service(command) = command {
        return service(command);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run_command(command)),
        Err(e) => {
            eprintln!("agent: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(command: Command) -> ExitCode {
    let env = |key: &str| std::env::var(key).ok();
    let (config, log_json, log_dir) = match command {
        Command::Run {
            config,
            log_json,
            log_dir,
        } => (config, log_json, log_dir),
        Command::Check { config } => return check(config, &env).await,
        Command::Sql { config, mapping } => return print_sql(config, mapping),
        Command::Sync(SyncCommand::Products {
            config,
            to,
            shop,
            batch,
        }) => return sync_products(config, to, shop, batch, &env).await,
        Command::Service(command) => return service(command),
    };
    let output = match log_dir {
        Some(dir) => logging::Output::Dir(dir),
        None => logging::Output::Stderr,
    };
    let _log = match logging::init(
        &logging::Options {
            output,
            json: log_json,
        },
        None,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("agent: --log-dir: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = match AgentConfig::load(config.as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            eprintln!("agent: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match agent::app::run_until_signal(config, &env).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("agent failed: {e:#}");
            eprintln!("agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check(path: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let config = match AgentConfig::load(path.as_deref(), env) {
        Ok(config) => config,
        Err(e) => {
            println!("[FAIL] configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let findings = agent::check::run(&config, env).await;
    for finding in &findings {
        println!("{finding}");
    }
    if findings.iter().all(|f| f.ok) {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("some checks failed");
        ExitCode::FAILURE
    }
}

/// `agent sql`: the statements [`agent::mamut::sqlserver::sql::statements`] builds.
fn print_sql(config: Option<PathBuf>, mapping: Option<PathBuf>) -> ExitCode {
    let sqlserver = match &config {
        Some(path) => {
            let read = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    toml::from_str::<agent::config::AgentFile>(&text).map_err(|e| e.to_string())
                });
            match read {
                Ok(config) => config.mamut.sqlserver,
                Err(e) => {
                    eprintln!("agent: configuration {}: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        None => agent::config::SqlServerConfig::default(),
    };
    let mapping = match mapping.or(sqlserver.mapping.clone()) {
        Some(path) => match Mapping::load(&path) {
            Ok(mapping) => mapping,
            Err(e) => {
                eprintln!("agent: mapping: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Mapping::default(),
    };
    for statement in agent::mamut::sqlserver::sql::statements(&mapping, &sqlserver) {
        match serde_json::to_string(&statement) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("agent: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

async fn sync_products(
    path: Option<PathBuf>,
    direction: agent::sync::Direction,
    shop: Option<String>,
    batch: u32,
    env: &dyn Fn(&str) -> Option<String>,
) -> ExitCode {
    init_stderr_logging();
    let config = match AgentConfig::load(path.as_deref(), env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("agent: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let shop = match shop.map(shared::ShopId::new).transpose() {
        Ok(shop) => shop,
        Err(e) => {
            eprintln!("agent: --shop: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let options = agent::sync::SyncOptions {
        direction,
        shop,
        batch,
        progress: std::io::stderr().is_terminal(),
    };
    let result = async {
        let mamut = agent::app::mamut_backend(&config)?;
        agent::sync::run(&config, mamut, &options, env).await
    }
    .await;
    match result {
        Ok(summary) => {
            println!("{summary}");
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("agent: sync stopped: {e:#}");
            eprintln!("run the same command again to continue where it stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_stderr_logging() {
    let options = logging::Options {
        output: logging::Output::Stderr,
        json: false,
    };
    // Stderr logging needs no guard; it fails only when set twice, which this process does not.
    let _ = logging::init(&options, None);
}

/// Runs an `agent service` command: on Windows through the service control manager
/// (`agent::windows::service`, which uses the portable parts in `agent::service`), elsewhere
/// it prints [`agent::service::NOT_WINDOWS`] and exits 64.
fn service(command: agent::service::ServiceCommand) -> ExitCode {
    #[cfg(windows)]
    {
        agent::windows::service::main(command)
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        eprintln!("{}", agent::service::NOT_WINDOWS);
        ExitCode::from(agent::service::EXIT_USAGE)
    }
}
