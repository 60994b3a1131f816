//! `shop-sim`: the shop stand-in (the contract in `docs/shop-api.md`), for tests and demos. Test
//! code, not the real shop platform.
//!
//! `shop-sim --listen 127.0.0.1:8081 --api-key KEY --articles TSHIRT-RED-M,TSHIRT-RED-L`

use std::net::SocketAddr;

use clap::Parser;
use tests::shop_sim::ShopSim;

#[derive(Debug, Parser)]
#[command(
    name = "shop-sim",
    about = "Stand-in for the shop's API, docs/shop-api.md (test code, not the real platform)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The API key clients must send as `Authorization: Bearer <key>`.
    #[arg(long, env = "SHOP_SIM_API_KEY")]
    api_key: String,
    /// Article numbers the shop knows (stock and prices for others are refused).
    #[arg(long, value_delimiter = ',')]
    articles: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = ShopSim::start_on(args.listen, &args.api_key)
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
