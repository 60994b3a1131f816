//! Watching Mamut for changes: poll each kind (stock, price, price list, product, order
//! status) past its rowversion cursor, push what changed to the relay, and advance the cursor
//! only after the relay acknowledged every push. Cursors survive restarts in a small state file
//! written atomically. A push repeated after a crash carries the same id, and the relay stores
//! it once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::domain::Change;
use shared::protocol::Push;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::mamut::Mamut;

/// How long a batch may wait for the relay's acknowledgements before it is polled again.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// One change found in Mamut, with the cursor value that covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// `stock`, `price`, `price_list`, `product` or `order_status`.
    pub kind: &'static str,
    /// The rowversion of the change; the cursor moves to the largest acknowledged one.
    pub rv: i64,
    /// Distinguishes pushes with one rowversion (e.g. a product and its variant).
    pub key: String,
    pub change: Change,
}

impl ChangeRow {
    pub fn push_id(&self) -> String {
        format!("{}-{}-{}", self.kind, self.rv, self.key)
    }
}

/// The last acknowledged rowversion per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors(pub BTreeMap<String, i64>);

impl Cursors {
    pub fn get(&self, kind: &str) -> i64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// Reads the state file; a missing file means nothing was pushed yet.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the state file atomically: a temporary file, flushed, then renamed over it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Pushes for the session to send, and where to say that the relay acknowledged them all.
pub struct PushBatch {
    pub pushes: Vec<Push>,
    pub acknowledged: oneshot::Sender<()>,
}

#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub interval: Duration,
    pub state_file: PathBuf,
    /// Most rows read per kind and poll.
    pub batch: u32,
}

/// Polls until cancelled.
pub async fn run(
    mamut: Arc<dyn Mamut>,
    settings: WatchSettings,
    batches: mpsc::Sender<PushBatch>,
    cancel: CancellationToken,
) {
    let mut cursors = Cursors::load(&settings.state_file).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "change cursors unreadable; starting over (the relay drops repeats)");
        Cursors::default()
    });
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rows = match mamut.poll_changes(&cursors, settings.batch).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read changes from Mamut");
                continue;
            }
        };
        if rows.is_empty() {
            continue;
        }
        let mut advance: BTreeMap<String, i64> = BTreeMap::new();
        for row in &rows {
            let entry = advance.entry(row.kind.to_owned()).or_insert(row.rv);
            *entry = (*entry).max(row.rv);
        }
        let pushes: Vec<Push> = rows
            .into_iter()
            .map(|row| Push {
                push_id: row.push_id(),
                change: row.change,
            })
            .collect();
        let count = pushes.len();
        let (acknowledged, ack) = oneshot::channel();
        if batches
            .send(PushBatch {
                pushes,
                acknowledged,
            })
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            result = tokio::time::timeout(ACK_WAIT, ack) => match result {
                Ok(Ok(())) => {
                    cursors.0.extend(advance);
                    if let Err(e) = cursors.save(&settings.state_file) {
                        tracing::error!(error = %e, "cannot save change cursors; changes may be pushed again");
                    }
                    tracing::info!(count, "changes pushed and acknowledged");
                }
                _ => tracing::warn!(count, "pushes not acknowledged yet; they will be sent again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_a_save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(
            Cursors::load(&path).expect("missing is empty"),
            Cursors::default()
        );
        let mut cursors = Cursors::default();
        cursors.0.insert("stock".into(), 42);
        cursors.save(&path).expect("saved");
        let loaded = Cursors::load(&path).expect("loads");
        assert_eq!(loaded.get("stock"), 42);
        assert_eq!(loaded.get("price"), 0);
        assert!(!path.with_extension("tmp").exists());
    }
}
