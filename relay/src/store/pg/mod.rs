//! The PostgreSQL store, for several relay instances on one database.
//!
//! - [`schema`]: versioned migrations, applied under an advisory lock so instances starting
//!   together do not race.
//! - [`tenants`], [`events`], [`dispatch`]: the same operations as the SQLite store.
//! - Instances tell each other about new work with `NOTIFY relay` (a JSON [`Notice`]); each
//!   keeps one extra connection that `LISTEN`s and hands notices to [`PgStore::notices`].
//! - Leases (`leases` table) make sure only one instance delivers a tenant's queue or
//!   dispatches a shop's changes at a time; they expire when an instance dies.
//! - Queue claims use `FOR UPDATE SKIP LOCKED`, so instances never wait on each other's rows.
//! - [`tls`]: TLS as the URL's `sslmode` and `sslrootcert` ask, meaning what libpq says
//!   (`prefer` by default, which does not verify the server's certificate).

mod dispatch;
mod events;
mod schema;
mod tenants;
pub mod tls;

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use shared::ShopId;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::types::{Notice, Purged};
use super::{StoreError, timestamp};

/// The notification channel all instances listen on.
const CHANNEL: &str = "relay";

/// Connections per instance.
const POOL_SIZE: usize = 16;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let contention = e.as_db_error().is_some_and(|db| {
            *db.code() == SqlState::T_R_DEADLOCK_DETECTED
                || *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
        });
        if contention {
            StoreError::Contention(e.to_string())
        } else {
            StoreError::Database(e.to_string())
        }
    }
}

/// Runs a transaction again (up to five times) when PostgreSQL aborted it for contention:
/// pushes and the dispatcher update the same dispatch rows in different orders.
pub(crate) async fn retrying<T, F, Fut>(f: F) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(StoreError::Contention(e)) if attempt < 5 => {
                tracing::debug!(error = %e, attempt, "transaction aborted for contention; again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(format!("no database connection: {e}"))
    }
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    notices: broadcast::Sender<Notice>,
    /// Webhooks waiting to be committed together.
    ingests: tokio::sync::mpsc::Sender<events::IngestJob>,
}

impl PgStore {
    /// Connects, applies migrations and starts listening for other instances' notices.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = tls::PgUrl::parse(url).map_err(StoreError::Open)?;
        if !url.verifies_server() {
            tracing::warn!(
                server = %url.server(),
                setting = %url.setting(),
                "the PostgreSQL server's certificate is not checked (as libpq does with this \
                 sslmode): on a network that is not trusted, add sslrootcert=/path/to/ca.pem \
                 or use sslmode=verify-full"
            );
        }
        let tls = url.connector()?;
        let config = url.config.clone();
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open(e.to_string()))?;
        {
            let mut client = pool.get().await.map_err(|e| match &e {
                deadpool_postgres::PoolError::Backend(e) => StoreError::Open(url.explain(e)),
                _ => StoreError::Open(format!(
                    "PostgreSQL at {} ({}): {e}",
                    url.server(),
                    url.setting()
                )),
            })?;
            schema::migrate(&mut client).await?;
        }
        let (notices, _) = broadcast::channel(1024);
        tokio::spawn(listen(config, tls, notices.clone()));
        let (ingests, waiting) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(events::ingest_batches(pool.clone(), waiting));
        Ok(Self {
            pool,
            notices,
            ingests,
        })
    }

    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    pub async fn notify(&self, notice: Notice) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&notice)
            .map_err(|e| StoreError::Database(format!("cannot encode a notice: {e}")))?;
        self.client()
            .await?
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
        Ok(())
    }

    pub async fn acquire_lease(
        &self,
        name: String,
        holder: String,
        ttl_ms: u64,
        take_over: bool,
    ) -> Result<bool, StoreError> {
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX) as f64 / 1000.0;
        let changed = self
            .client()
            .await?
            .execute(
                "INSERT INTO leases (name, holder, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                                  expires_at = excluded.expires_at
                 WHERE $4 OR leases.holder = excluded.holder OR leases.expires_at < now()",
                &[&name, &holder, &ttl, &take_over],
            )
            .await?;
        Ok(changed == 1)
    }

    pub async fn release_lease(&self, name: String, holder: String) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }

    pub async fn renew_leases(
        &self,
        prefix: String,
        ttl_ms: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX) as f64 / 1000.0;
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE starts_with(holder, $1) RETURNING name, holder",
                &[&prefix, &ttl],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn lease_holder(&self, name: String) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT holder FROM leases WHERE name = $1 AND expires_at >= now()",
                &[&name],
            )
            .await?
            .map(|r| r.get(0)))
    }

    pub async fn pending_tenants(
        &self,
        tenants: Vec<shared::TenantId>,
    ) -> Result<Vec<shared::TenantId>, StoreError> {
        let names: Vec<&str> = tenants.iter().map(shared::TenantId::as_str).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT tenant_id FROM events
                 WHERE tenant_id = ANY($1) AND state = 'pending'",
                &[&names],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| shared::TenantId::new(r.get::<_, String>(0)).ok())
            .collect())
    }

    pub async fn queued_count(&self, tenant: shared::TenantId) -> Result<u64, StoreError> {
        let count: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*) FROM events
                 WHERE tenant_id = $1 AND state IN ('pending', 'fetching', 'held')",
                &[&tenant.as_str()],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub async fn shops_with_pending_dispatch(&self) -> Result<Vec<ShopId>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT shop_id FROM dispatch WHERE state = 'pending' ORDER BY shop_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| ShopId::new(r.get::<_, String>(0)).ok())
            .collect())
    }

    pub async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged, StoreError> {
        let limit = i64::from(limit);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let ids: Vec<i64> = tx
            .query(
                "SELECT id FROM events WHERE state IN ('delivered', 'ignored') AND updated_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&before, &limit],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "DELETE FROM event_history WHERE event_id = ANY($1)",
            &[&ids],
        )
        .await?;
        let events = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
            .await?;
        let pushes = tx
            .execute(
                "DELETE FROM pushes WHERE id IN (
                    SELECT id FROM pushes WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&before, &limit],
            )
            .await?;
        let dispatch = tx
            .execute(
                "DELETE FROM dispatch WHERE id IN (
                    SELECT id FROM dispatch WHERE state IN ('done', 'superseded')
                    AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&before, &limit],
            )
            .await?;
        tx.commit().await?;
        Ok(Purged {
            events,
            pushes,
            dispatch,
        })
    }
}

/// Keeps a `LISTEN` connection open (reconnecting after a pause when it drops) and passes
/// the notices on. A notice lost while reconnecting is caught by the periodic sweeps.
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    notices: broadcast::Sender<Notice>,
) {
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if sender.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the LISTEN connection failed");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!(error = %e, "cannot LISTEN for other instances");
                } else {
                    while let Some(payload) = received.recv().await {
                        match serde_json::from_str::<Notice>(&payload) {
                            Ok(notice) => {
                                // No receiver yet is fine: nothing is waiting for work.
                                let _ = notices.send(notice);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable notice ignored"),
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the LISTEN connection"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A stored timestamp as the API shows it.
pub(crate) fn text(at: DateTime<Utc>) -> String {
    timestamp(at)
}

/// A timestamp the dispatcher or enricher computed (RFC 3339).
pub(crate) fn parse_time(value: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Database(format!("invalid timestamp {value:?}: {e}")))
}
