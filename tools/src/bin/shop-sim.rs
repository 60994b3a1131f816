//! `shop-sim`: the shop stand-in (the contract in `docs/shop-api.md`), for tests and demos. Test
//! code, not the real shop platform.
//!
//! `shop-sim --listen 127.0.0.1:8081 --api-key KEY --articles TSHIRT-RED-M,TSHIRT-RED-L`
//! serves the API; `shop-sim send-webhook --relay URL --shop ID --secret whsec_… FILE` sends
//! FILE to the relay as the shop's signed webhook (Standard Webhooks) and prints the answer.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use shared::signature::WebhookSecret;
use tools::harness::shop::Shop;
use tools::shop_sim::ShopSim;

#[derive(Debug, Parser)]
#[command(
    name = "shop-sim",
    about = "Stand-in for the shop's API, docs/shop-api.md (test code, not the real platform)"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The API key clients must send as `Authorization: Bearer <key>` (required to serve).
    #[arg(long, env = "SHOP_SIM_API_KEY")]
    api_key: Option<String>,
    /// Article numbers the shop knows (stock and prices for others are refused).
    #[arg(long, value_delimiter = ',')]
    articles: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a file to the relay as the shop's signed order webhook.
    SendWebhook {
        /// The relay's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        relay: String,
        #[arg(long)]
        shop: String,
        /// The shop's webhook secret (`whsec_…`), as configured at the relay.
        #[arg(long, env = "SHOP_SIM_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The webhook body (JSON).
        file: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::SendWebhook {
        relay,
        shop,
        secret,
        file,
    }) = args.command
    {
        let secret = WebhookSecret::parse(&secret).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
        let body = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let signer = Shop::with_secret(
            reqwest::Client::new(),
            relay.trim_end_matches('/').to_owned(),
            secret,
        );
        let id = signer.next_id();
        let headers = signer.headers(&id, &body);
        let (status, answer) = signer.send_with(&shop, body, &headers).await?;
        println!("{status} {answer}");
        anyhow::ensure!(status.is_success(), "the relay refused the webhook");
        return Ok(());
    }
    let Some(api_key) = args.api_key else {
        anyhow::bail!("--api-key (or SHOP_SIM_API_KEY) is required to serve");
    };
    let sim = ShopSim::start_on(args.listen, &api_key)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.listen))?;
    sim.add_articles(args.articles.into_iter().filter(|a| !a.trim().is_empty()));
    println!("shop-sim listening on {}", sim.url());
    // Show what the shop receives, for demos: each answered call and each stock level set.
    let mut shown_calls = 0;
    let mut shown_stock = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result?;
                break;
            }
            _ = tick.tick() => {}
        }
        let calls = sim.calls();
        let answered = calls.iter().take_while(|c| c.status != 0).count();
        for call in &calls[shown_calls..answered] {
            println!(
                "{} {} {:?} -> {}",
                call.method, call.path, call.articles, call.status
            );
        }
        shown_calls = shown_calls.max(answered);
        let stock = sim.applied_stock();
        for (article, warehouse, quantity) in &stock[shown_stock.min(stock.len())..] {
            println!(
                "  stock of {article} ({}) is now {quantity}",
                warehouse.as_deref().unwrap_or("default")
            );
        }
        shown_stock = stock.len();
    }
    sim.stop().await;
    Ok(())
}
