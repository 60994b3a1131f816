//! The initial product sync (R8): `agent sync products --to shop|mamut`, through the relay,
//! keeping article numbers, variants included.
//!
//! - `--to shop`: every Mamut main product (with its variants) is sent to the relay, which
//!   writes it to the shop unless it is there unchanged.
//! - `--to mamut`: the shop's products are fetched page by page through the relay and written
//!   to Mamut, each in one transaction, unless Mamut has them unchanged.
//!
//! Products go in article-number order. After each one the progress (the last article done
//! and the counts so far) is written atomically to a file beside the agent's state file, so
//! an interrupted run continues after the last article it finished; a finished run removes
//! the file, and the next run starts over and finds everything unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use shared::ShopId;
use shared::protocol::{
    Envelope, MAX_FRAME_BYTES, Message, SessionRole, SyncFetch, SyncOutcome, SyncPut,
};

use crate::config::AgentConfig;
use crate::mamut::Mamut;
use crate::transport::{self, Connection, SessionError, Socket};

/// How long one request to the relay may take (the relay calls the shop meanwhile).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Retries of a request the relay answered with a retryable error.
const RETRIES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Mamut → shop.
    Shop,
    /// Shop → Mamut.
    Mamut,
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub direction: Direction,
    /// Only this shop (to the shop: all the tenant's shops with an API when left out; to
    /// Mamut: required when the tenant has several).
    pub shop: Option<ShopId>,
    /// Products per page read from Mamut or the shop.
    pub batch: u32,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

/// What a run did, counted per product and place (each shop, or Mamut).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Article number (with the shop, going to shops) and why.
    pub failed: Vec<(String, String)>,
    /// Products handled.
    pub products: u64,
}

impl Summary {
    fn count(&mut self, outcome: SyncOutcome, what: String, reason: Option<String>) {
        match outcome {
            SyncOutcome::Created => self.created += 1,
            SyncOutcome::Updated => self.updated += 1,
            SyncOutcome::Unchanged => self.unchanged += 1,
            SyncOutcome::Failed => self.failed.push((what, reason.unwrap_or_default())),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} products: created {}, updated {}, unchanged {}, failed {}",
            self.products,
            self.created,
            self.updated,
            self.unchanged,
            self.failed.len()
        )?;
        for (what, reason) in &self.failed {
            write!(f, "\n  failed {what}: {reason}")?;
        }
        Ok(())
    }
}

/// The progress file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    direction: Option<Direction>,
    shop: Option<String>,
    /// The last article finished; the run continues after it.
    after: Option<String>,
    summary: Summary,
}

/// Where a run's progress is kept: beside the agent's state file.
pub fn progress_file(config: &AgentConfig, options: &SyncOptions) -> PathBuf {
    let dir = config
        .watch
        .state_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let target = match options.direction {
        Direction::Shop => "shop",
        Direction::Mamut => "mamut",
    };
    let shop = options
        .shop
        .as_ref()
        .map(|s| format!("-{s}"))
        .unwrap_or_default();
    dir.join(format!("sync-products-to-{target}{shop}.json"))
}

fn load(path: &Path) -> anyhow::Result<Option<Progress>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a sync progress file; remove it to start over",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the progress atomically: a temporary file, synced, then renamed over the old one.
fn save(path: &Path, progress: &Progress) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(progress)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs (or continues) a sync and returns what it did, counting earlier interrupted parts.
pub async fn run(
    config: &AgentConfig,
    mamut: Arc<dyn Mamut>,
    options: &SyncOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Summary> {
    let path = progress_file(config, options);
    let mut progress = load(&path)?.unwrap_or_else(|| Progress {
        direction: Some(options.direction),
        shop: options.shop.as_ref().map(ToString::to_string),
        ..Progress::default()
    });
    if let Some(after) = &progress.after {
        eprintln!(
            "continuing an interrupted sync after article {after} ({} products done)",
            progress.summary.products
        );
    }
    let relay = &config.relay;
    let mut connection = transport::dial(
        &relay.url,
        &relay.token,
        relay.ca_file.as_deref(),
        &relay.proxy,
        env,
    )
    .await?;
    let welcome = connection.hello(SessionRole::Sync, 1).await?;
    tracing::info!(tenant = %welcome.tenant_id, direction = ?options.direction, "initial product sync");
    let mut relay = Relay {
        connection,
        next_id: 0,
    };
    match options.direction {
        Direction::Shop => to_shop(&mut relay, mamut, options, &path, &mut progress).await?,
        Direction::Mamut => to_mamut(&mut relay, mamut, options, &path, &mut progress).await?,
    }
    relay.connection.close().await;
    std::fs::remove_file(&path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(progress.summary)
}

fn bar(options: &SyncOptions, total: Option<u64>, done: u64) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} products {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} products {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_position(done);
    bar
}

async fn to_shop(
    relay: &mut Relay,
    mamut: Arc<dyn Mamut>,
    options: &SyncOptions,
    path: &Path,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let total = mamut.count_products().await.map_err(anyhow::Error::msg)?;
    let bar = bar(options, Some(total), progress.summary.products);
    loop {
        let (page, last) = mamut
            .list_products(progress.after.as_deref(), options.batch)
            .await
            .map_err(anyhow::Error::msg)?;
        let Some(last) = last else {
            break;
        };
        for product in page {
            let article = product.article_number.to_string();
            let request = |request_id| {
                Message::SyncPut(SyncPut {
                    request_id,
                    shop_id: options.shop.clone(),
                    product: product.clone(),
                })
            };
            if Envelope::new(request(0)).to_json().len() > MAX_FRAME_BYTES {
                let reason = format!("larger than a protocol frame ({MAX_FRAME_BYTES} bytes)");
                progress
                    .summary
                    .count(SyncOutcome::Failed, article.clone(), Some(reason));
                progress.summary.products += 1;
                progress.after = Some(article);
                save(path, progress)?;
                bar.inc(1);
                continue;
            }
            let Message::SyncPutResult(result) = relay.request(request).await? else {
                bail!("the relay answered a sync put with something else");
            };
            if let Some(down) = result.results.iter().find(|r| r.retryable) {
                bail!(
                    "shop {} could not take {article} now ({}); {} products are done",
                    down.shop_id,
                    down.reason.as_deref().unwrap_or("no reason given"),
                    progress.summary.products
                );
            }
            for shop in result.results {
                let what = format!("{article} in shop {}", shop.shop_id);
                progress.summary.count(shop.outcome, what, shop.reason);
            }
            progress.summary.products += 1;
            progress.after = Some(article.clone());
            save(path, progress)?;
            bar.set_message(article);
            bar.inc(1);
        }
        // Rows that could not travel still move the cursor, so the run goes on past them.
        if progress.after.as_deref() < Some(last.as_str()) {
            progress.after = Some(last);
            save(path, progress)?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

async fn to_mamut(
    relay: &mut Relay,
    mamut: Arc<dyn Mamut>,
    options: &SyncOptions,
    path: &Path,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let bar = bar(options, None, progress.summary.products);
    loop {
        let after = progress.after.clone();
        let request = |request_id| {
            Message::SyncFetch(SyncFetch {
                request_id,
                shop_id: options.shop.clone(),
                after: after.clone(),
                limit: options.batch,
            })
        };
        let Message::SyncPage(page) = relay.request(request).await? else {
            bail!("the relay answered a sync fetch with something else");
        };
        for product in &page.items {
            let article = product.article_number.to_string();
            match mamut.upsert_product(product).await {
                Ok(outcome) => progress.summary.count(outcome, article.clone(), None),
                Err(reason) => {
                    progress
                        .summary
                        .count(SyncOutcome::Failed, article.clone(), Some(reason))
                }
            }
            progress.summary.products += 1;
            progress.after = Some(article.clone());
            save(path, progress)?;
            bar.set_message(article);
            bar.inc(1);
        }
        if page.next.is_none() || page.items.is_empty() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// The sync session: one request at a time, answered in order.
struct Relay {
    connection: Connection<Socket>,
    next_id: u64,
}

impl Relay {
    /// Sends the request built for a fresh id and returns the answer with that id; retries
    /// (with a pause) when the relay says trying again may work.
    async fn request(&mut self, build: impl Fn(u64) -> Message) -> anyhow::Result<Message> {
        let mut attempt = 0;
        loop {
            self.next_id += 1;
            let id = self.next_id;
            self.connection.send(build(id)).await?;
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.answer(id))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the relay did not answer within {REQUEST_TIMEOUT:?}")
                })??;
            match answer {
                Message::SyncError(e) if e.retryable && attempt < RETRIES => {
                    attempt += 1;
                    tracing::warn!(reason = %e.reason, attempt, "sync request failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1 << attempt.min(5))).await;
                }
                Message::SyncError(e) => bail!("the relay refused the sync: {}", e.reason),
                other => return Ok(other),
            }
        }
    }

    async fn answer(&mut self, id: u64) -> anyhow::Result<Message> {
        loop {
            let msg = match self.connection.recv().await {
                Ok(msg) => msg,
                Err(SessionError::Closed(_)) => bail!("the relay closed the sync session"),
                Err(e) => return Err(e.into()),
            };
            let answered = match &msg {
                Message::SyncPutResult(r) => r.request_id,
                Message::SyncPage(p) => p.request_id,
                Message::SyncError(e) => e.request_id,
                _ => continue, // heartbeats
            };
            if answered == id {
                return Ok(msg);
            }
        }
    }
}
