//! `mamut-sim`: the TDS stand-in for Mamut's SQL Server, for tests and demos. Not SQL Server.
//!
//! `mamut-sim --listen 127.0.0.1:1433 --db mamut.sqlite --schema deploy/mamut/schema.sql`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tests::mamut_sim::{MamutSim, SimConfig, run_batch};

#[derive(Debug, Parser)]
#[command(
    name = "mamut-sim",
    about = "TDS stand-in for Mamut's SQL Server (test code, not SQL Server)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1433")]
    listen: SocketAddr,
    /// SQLite file that holds the data.
    #[arg(long, default_value = "mamut.sqlite")]
    db: PathBuf,
    #[arg(long, default_value = "mamut")]
    user: String,
    #[arg(long, env = "MAMUT_SIM_PASSWORD", default_value = "mamut")]
    password: String,
    #[arg(long, default_value = "mamut")]
    database: String,
    /// A T-SQL script (the supported subset) to run before serving, e.g. the reference schema.
    #[arg(long)]
    schema: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(schema) = &args.schema {
        let sql = std::fs::read_to_string(schema)
            .map_err(|e| anyhow::anyhow!("{}: {e}", schema.display()))?;
        run_batch(&args.db, &sql).map_err(|e| anyhow::anyhow!("{}: {e}", schema.display()))?;
    }
    let sim = MamutSim::start(SimConfig {
        listen: args.listen,
        db_path: args.db,
        user: args.user,
        password: args.password,
        database: args.database,
    })?;
    println!("mamut-sim listening on {}", sim.addr());
    tokio::signal::ctrl_c().await?;
    sim.stop();
    Ok(())
}
