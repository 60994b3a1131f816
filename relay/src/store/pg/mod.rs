//! The PostgreSQL store, for several relay instances on one database.
//!
//! - [`schema`]: versioned migrations, applied under an advisory lock so instances starting
//!   together do not race.
//! - [`tenants`], [`events`], [`fetch`], [`pushes`], [`dispatch`], [`leases`]: the same
//!   operations as the SQLite store, with the same rules ([`crate::store::queue`]).
//! - [`ingest`]: webhooks committed together in groups, like SQLite's group commit.
//! - Background tasks (the `LISTEN` connection, the ingest groups) end when the last handle
//!   to the store is dropped.
//! - Instances tell each other about new work with `NOTIFY relay` (a JSON [`Notice`]); each
//!   keeps one extra connection that `LISTEN`s and hands notices to [`PgStore::notices`].
//! - Leases (`leases` table) make sure only one instance delivers a tenant's queue or
//!   dispatches a shop's changes at a time; they expire when an instance dies.
//! - Queue claims use `FOR UPDATE SKIP LOCKED`, so instances never wait on each other's rows.
//! - [`tls`]: TLS as the URL's `sslmode` and `sslrootcert` ask, meaning what libpq says
//!   (`prefer` by default, which does not verify the server's certificate).

mod accounts;
mod agent_sessions;
mod alerts;
mod console;
mod dispatch;
mod events;
mod failures;
mod fetch;
mod ingest;
mod leases;
mod pushes;
mod received;
mod schema;
mod tenants;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::StoreError;
use super::types::Notice;
use crate::store::Result;

/// The notification channel all instances listen on.
const CHANNEL: &str = "relay";

/// Connections per instance.
const POOL_SIZE: usize = 16;

/// Runs a transaction again (up to five times) when PostgreSQL aborted it for contention:
/// pushes and the dispatcher update the same dispatch rows in different orders.
pub(crate) async fn retrying<T, F, Fut>(f: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
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

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    notices: broadcast::Sender<Notice>,
    /// Webhooks waiting to be committed together.
    ingests: tokio::sync::mpsc::Sender<ingest::IngestJob>,
    /// Cancels the `LISTEN` task when the last handle goes.
    _stop: Arc<DropGuard>,
}

impl PgStore {
    /// Connects, applies migrations and starts listening for other instances' notices.
    pub async fn connect(url: &str) -> Result<Self> {
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
        let stop = CancellationToken::new();
        tokio::spawn(listen(config, tls, notices.clone(), stop.clone()));
        // Ends when every sender (every handle) is gone, after the groups in flight.
        let (ingests, waiting) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(ingest::ingest_batches(pool.clone(), waiting));
        Ok(Self {
            pool,
            notices,
            ingests,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    pub async fn notify(&self, notice: Notice) -> Result<()> {
        let payload = serde_json::to_string(&notice)
            .map_err(|e| StoreError::Database(format!("cannot encode a notice: {e}")))?;
        self.client()
            .await?
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
        Ok(())
    }
}

/// Keeps a `LISTEN` connection open (reconnecting after a pause when it drops) and passes
/// the notices on. A notice lost while reconnecting is caught by the periodic sweeps.
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    notices: broadcast::Sender<Notice>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let connected = tokio::select! {
            connected = config.connect(tls.clone()) => connected,
            () = stop.cancelled() => break,
        };
        match connected {
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
                    while let Some(payload) =
                        stop.run_until_cancelled(received.recv()).await.flatten()
                    {
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
        if stop
            .run_until_cancelled(tokio::time::sleep(Duration::from_secs(1)))
            .await
            .is_none()
        {
            break;
        }
    }
    tracing::debug!("LISTEN task stopped: the store was dropped");
}

/// Column `i` of a row, as [`tokio_postgres::Row::try_get`] with the store's error: a type
/// that does not match is an error, not a panic.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    r: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T> {
    Ok(r.try_get(i)?)
}

/// Column `i` read as text and parsed by `parse` (a state, an id, a lease name).
pub(crate) fn parsed<T>(
    r: &tokio_postgres::Row,
    i: usize,
    parse: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    parse(r.try_get::<_, &str>(i)?)
}

/// A value whose stored text must parse, as a [`parsed`] argument.
pub(crate) fn stored_id<T, E: std::fmt::Display>(
    new: impl FnOnce(String) -> Result<T, E>,
    what: &'static str,
) -> impl FnOnce(&str) -> Result<T> {
    move |text| new(text.to_owned()).map_err(|e| super::error::corrupt(what, e))
}
