//! A test and development stand-in for Mamut that records applied orders in a SQLite file.
//! It is not Mamut. It keeps the same exactly-once discipline the real implementation keeps:
//! one transaction looks the shop order up and writes it only when it is not there yet. The
//! table has deliberately no unique constraint, so a mistake in that logic would show as a
//! duplicate row in the tests.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use shared::domain::DocumentType;
use shared::protocol::Deliver;

use super::{Applied, ApplyError, ApplyFuture, Mamut};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applied_orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    shop_id       TEXT NOT NULL,
    shop_order_id TEXT NOT NULL,
    document_type TEXT NOT NULL,
    mamut_ref     TEXT NOT NULL,
    order_json    TEXT NOT NULL,
    applied_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_orders_key ON applied_orders (shop_id, shop_order_id);
";

pub struct Recorder {
    conn: Arc<Mutex<Connection>>,
    apply_delay: Duration,
}

impl Recorder {
    pub fn open(path: &Path, apply_delay: Duration) -> Result<Self, ApplyError> {
        let conn = open(path)
            .map_err(|e| ApplyError::Retryable(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            apply_delay,
        })
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl Mamut for Recorder {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        let conn = self.conn.clone();
        let delay = self.apply_delay;
        let delivery = delivery.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn
                    .lock()
                    .map_err(|_| ApplyError::Retryable("recorder lock poisoned".into()))?;
                apply(&mut conn, &delivery, delay)
                    .map_err(|e| ApplyError::Retryable(format!("recorder database: {e}")))
            })
            .await
            .map_err(|e| ApplyError::Retryable(format!("apply task failed: {e}")))?
        })
    }
}

fn apply(conn: &mut Connection, delivery: &Deliver, delay: Duration) -> rusqlite::Result<Applied> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT mamut_ref FROM applied_orders WHERE shop_id = ?1 AND shop_order_id = ?2 ORDER BY id LIMIT 1",
            params![delivery.shop_id.as_str(), delivery.order.id],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(mamut_ref) = existing {
        tx.commit()?;
        return Ok(Applied {
            mamut_ref,
            already_applied: true,
        });
    }
    let order_json = serde_json::to_string(&delivery.order).unwrap_or_default();
    tx.execute(
        "INSERT INTO applied_orders (shop_id, shop_order_id, document_type, mamut_ref, order_json, applied_at)
         VALUES (?1, ?2, ?3, '', ?4, ?5)",
        params![
            delivery.shop_id.as_str(),
            delivery.order.id,
            delivery.document_type.as_str(),
            order_json,
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    let id = tx.last_insert_rowid();
    let prefix = match delivery.document_type {
        DocumentType::Order => 'O',
        DocumentType::Invoice => 'F',
    };
    let mamut_ref = format!("{prefix}{id}");
    tx.execute(
        "UPDATE applied_orders SET mamut_ref = ?1 WHERE id = ?2",
        params![mamut_ref, id],
    )?;
    if !delay.is_zero() {
        // Test hook: keep the transaction open so a test can kill the agent mid-apply.
        std::thread::sleep(delay);
    }
    tx.commit()?;
    Ok(Applied {
        mamut_ref,
        already_applied: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(order_id: &str, document_type: DocumentType) -> Deliver {
        let webhook: shared::domain::OrderWebhook = serde_json::from_str(include_str!(
            "../../../shared/tests/fixtures/order-webhook-full.json"
        ))
        .expect("fixture");
        let mut order = webhook.order;
        order.id = order_id.into();
        Deliver {
            seq: 1,
            attempt: 1,
            shop_id: webhook.shop_id,
            document_type,
            order,
        }
    }

    fn rows(path: &Path) -> i64 {
        let conn = Connection::open(path).expect("open");
        conn.query_row("SELECT COUNT(*) FROM applied_orders", [], |r| r.get(0))
            .expect("count")
    }

    #[tokio::test]
    async fn applying_twice_writes_once_and_returns_the_same_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.sqlite");
        let recorder = Recorder::open(&path, Duration::ZERO).expect("open");
        let d = delivery("100234", DocumentType::Order);
        let first = recorder.apply_order(&d).await.expect("applied");
        let second = recorder.apply_order(&d).await.expect("applied");
        assert!(!first.already_applied);
        assert!(first.mamut_ref.starts_with('O'));
        assert_eq!(
            second,
            Applied {
                mamut_ref: first.mamut_ref,
                already_applied: true
            }
        );
        assert_eq!(rows(&path), 1);
    }

    #[tokio::test]
    async fn invoices_get_invoice_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.sqlite");
        let recorder = Recorder::open(&path, Duration::ZERO).expect("open");
        let applied = recorder
            .apply_order(&delivery("1", DocumentType::Invoice))
            .await
            .expect("applied");
        assert!(applied.mamut_ref.starts_with('F'), "{}", applied.mamut_ref);
    }

    #[test]
    fn a_transaction_that_does_not_commit_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.sqlite");
        let mut conn = open(&path).expect("open");
        {
            let tx = conn.transaction().expect("tx");
            tx.execute(
                "INSERT INTO applied_orders (shop_id, shop_order_id, document_type, mamut_ref, order_json, applied_at)
                 VALUES ('s', 'o', 'order', 'O1', '{}', 'now')",
                [],
            )
            .expect("insert");
            // Dropped without commit, as when the process dies mid-apply.
        }
        assert_eq!(rows(&path), 0);
    }
}
