//! `bench`: the product's benchmarks (B1–B7) against the real release binaries. Build in
//! release mode and run from the repository root:
//!
//! ```sh
//! cargo build --release --workspace --bins
//! target/release/bench --record docs/benchmarks.md     # the full run, appended to the record
//! target/release/bench --quick                         # a smoke run with tiny sizes
//! target/release/bench --only b3,b7                   # only some rows
//! ```
//!
//! Traffic stays on loopback; every loop is bounded in count and time.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tools::bench::{self, Row, Scale};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Benchmarks of the relay and agent (B1–B7)")]
struct Args {
    /// Tiny sizes: checks that every benchmark runs, measures nothing worth recording.
    #[arg(long)]
    quick: bool,
    /// Only these benchmarks (b1,b2,b3,b4,b6,b7; B5 comes with B2), e.g. `--only b3,b7`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Append the results, with the machine and commit, to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The no-op baseline server (started by the benchmark itself).
    Noop {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Noop { listen }) = args.command {
        bench::serve_noop(listen).await?;
        return Ok(());
    }
    // Thousands of connections need thousands of descriptors, here and in the relay.
    if let Err(e) = rlimit::increase_nofile_limit(65_536) {
        eprintln!("bench: cannot raise the open file limit: {e}");
    }
    let scale = Scale { quick: args.quick };
    let wanted =
        |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    let mut rows: Vec<Row> = Vec::new();
    if wanted("b1") {
        let (mut noop, url) = start_noop().await?;
        rows.extend(bench::b1(scale, &url).await);
        let _ = noop.kill().await;
    }
    if wanted("b2") || wanted("b5") {
        rows.extend(bench::b2_b5(scale).await);
    }
    if wanted("b3") {
        rows.extend(bench::b3(scale).await);
    }
    if wanted("b4") {
        rows.extend(bench::b4(scale).await);
    }
    if wanted("b6") {
        rows.extend(bench::b6(scale).await);
    }
    if wanted("b7") {
        rows.extend(bench::b7(scale).await);
    }
    let table = table(&rows);
    println!("{table}");
    if let Some(path) = args.record {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(
            file,
            "\n## {} — commit {commit}{}\n\nMachine: {}\n\n{table}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            if args.quick { " (quick run)" } else { "" },
            bench::machine()
        )?;
        println!("recorded in {}", path.display());
    }
    Ok(())
}

async fn start_noop() -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("noop")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("noop listening on ") {
                return Some(url.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| anyhow::anyhow!("the no-op server did not start"))?;
    Ok((child, url))
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | benchmark | result | baseline (same run) | target | met |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.id,
            row.name,
            row.figure,
            row.baseline,
            row.target,
            if row.met { "yes" } else { "no" }
        ));
    }
    out
}
