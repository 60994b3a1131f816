//! `mamut-sim`: the TDS stand-in for Mamut's SQL Server, for tests and demos. Not SQL Server:
//! it translates a T-SQL subset to PostgreSQL.
//!
//! `mamut-sim --listen 127.0.0.1:1433 --postgres-url postgres://postgres@127.0.0.1/test
//!  --pg-schema mamut --schema deploy/mamut/schema.sql`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tools::mamut_sim::{MamutSim, SimConfig, WireConfig, run_batch, tls};

#[derive(Debug, Parser)]
#[command(
    name = "mamut-sim",
    about = "TDS stand-in for Mamut's SQL Server on PostgreSQL (test code, not SQL Server)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1433")]
    listen: SocketAddr,
    /// PostgreSQL that holds the data.
    #[arg(
        long,
        env = "MAMUT_SIM_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// The PostgreSQL schema of this stand-in's tables (created if missing).
    #[arg(long, default_value = "mamut")]
    pg_schema: String,
    #[arg(long, default_value = "mamut")]
    user: String,
    #[arg(long, env = "MAMUT_SIM_PASSWORD", default_value = "mamut")]
    password: String,
    #[arg(long, default_value = "mamut")]
    database: String,
    /// A T-SQL script (the supported subset) to run before serving, e.g. the reference schema.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// PEM certificate chain (server certificate first) for TLS, as SQL Server offers it.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// SQL Server's "force encryption": every connection encrypted whole (needs `--tls-cert`).
    #[arg(long, requires = "tls_cert")]
    force_encryption: bool,
    /// Serve as this named instance (`HOST\INSTANCE`), e.g. MAMUT.
    #[arg(long)]
    instance: Option<String>,
    /// Answer SQL Browser on this UDP address (1434 on a real server); needs `--instance`.
    #[arg(long, requires = "instance")]
    browser: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = SimConfig {
        listen: args.listen,
        postgres_url: args.postgres_url,
        pg_schema: args.pg_schema,
        user: args.user,
        password: args.password,
        database: args.database,
    };
    if let Some(schema) = &args.schema {
        let sql = std::fs::read_to_string(schema)
            .map_err(|e| anyhow::anyhow!("{}: {e}", schema.display()))?;
        run_batch(&config, &sql).map_err(|e| anyhow::anyhow!("{}: {e}", schema.display()))?;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::server_config_from_files(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let wire = WireConfig {
        tls,
        force_encryption: args.force_encryption,
        instance: args.instance,
        browser: args.browser,
        server_name: String::new(),
    };
    let sim = MamutSim::start_with(config, wire)?;
    println!("mamut-sim listening on {}", sim.addr());
    tokio::signal::ctrl_c().await?;
    sim.stop();
    Ok(())
}
