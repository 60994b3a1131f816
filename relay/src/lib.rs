//! The relay: receives the shops' webhooks, keeps them durably per tenant, and delivers them
//! to each tenant's agent over an outbound-from-the-agent WebSocket.
//!
//! - [`config`]: defaults, TOML file, `RELAY_*` environment.
//! - [`store`]: SQLite (one process, group commit) or PostgreSQL (several instances); tenants,
//!   shops, agents, events, history, pushes, what goes to the shops, leases.
//! - [`ingest`]: `POST /webhooks/{shop_id}`, Standard Webhooks verification.
//! - [`validate`]: what an order must look like before it is delivered (else it is held).
//! - [`queue_limit`]: the per-tenant queue limit.
//! - [`connect`]: `GET /agent/v1/connect`, the authenticated WebSocket upgrade.
//! - [`deliver`]: one agent session: credit window, acks, redelivery, pushes, heartbeats.
//! - [`registry`]: connected agents, so a new event wakes its tenant's session at once.
//! - [`shop`]: each shop's rules and its platform's API client; [`shops`]: their cache.
//! - [`dispatch`]: sends the agents' changes to the shops, coalesced, paced and retried.
//! - [`enrich`]: fetches the order of a thin webhook from the shop before delivery.
//! - [`sync`]: the relay's half of the initial product sync.
//! - [`auth`]: admin token and agent JWTs.
//! - [`admin`]: the admin API; [`cli`]: the same operations from a shell.
//! - [`serve`]: accepting and serving connections: connection cap, header and idle timeouts.
//! - [`tls`]: HTTPS/WSS certificates.
//! - [`metrics`] (every limit's refusals too), [`error`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connect;
pub mod deliver;
pub mod dispatch;
pub mod enrich;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod queue_limit;
pub mod registry;
pub mod serve;
pub mod shop;
pub mod shops;
pub mod store;
pub mod sync;
pub mod tls;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Tokens;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::enrich::Enricher;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{AnyStore, Notice};
use shared::TenantId;

/// What every handler shares.
pub struct AppState {
    pub config: Config,
    pub store: AnyStore,
    pub tokens: Tokens,
    pub registry: Registry,
    pub metrics: Metrics,
    /// The HTTP client for the shops' APIs.
    pub http: reqwest::Client,
    pub dispatcher: Arc<Dispatcher>,
    pub enricher: Arc<Enricher>,
    /// Shops as webhook ingest sees them.
    pub shops: shops::ShopCache,
    /// Each tenant's queue, as far as `max_queued_per_tenant` needs to know.
    pub queue_limit: queue_limit::QueueLimit,
    /// Notices for the other instances, sent by [`tell_others`].
    pub outbox: tokio::sync::mpsc::Sender<Notice>,
    /// Cancelled when the relay shuts down; agent sessions watch it.
    pub shutdown: CancellationToken,
    /// Agent sessions, so shutdown can wait for them.
    pub sessions: TaskTracker,
}

impl AppState {
    /// Acts on news here and tells the other relay instances (on PostgreSQL). Telling is best
    /// effort and coalesced (see [`tell_others`]); the periodic sweeps catch what a lost
    /// notice would have woken.
    pub async fn announce(&self, notice: Notice) {
        self.wake_locally(&notice);
        if self.store.notices().is_some() && self.outbox.try_send(notice).is_err() {
            tracing::debug!("notice outbox full; the sweeps catch up");
        }
    }

    /// Wakes whatever here the news concerns. A session notice is checked against the
    /// tenant's lease by [`check_session`] instead.
    pub fn wake_locally(&self, notice: &Notice) {
        match notice {
            Notice::Event { tenant } => self.registry.wake(tenant),
            Notice::Dispatch { shop } => self.dispatcher.wake(shop),
            Notice::Fetch => self.enricher.wake(),
            Notice::Session { .. } => {}
            Notice::Revoked { agent } => {
                let ended = self.registry.revoke(agent);
                if ended > 0 {
                    tracing::info!(%agent, sessions = ended, "agent revoked; its sessions here end");
                }
            }
        }
    }
}

/// Sends the notices waiting in the outbox to the other instances, each distinct one once:
/// a burst of webhooks for one tenant costs one `NOTIFY`, not one per webhook.
async fn tell_others(state: Arc<AppState>, mut outbox: tokio::sync::mpsc::Receiver<Notice>) {
    while let Some(first) = outbox.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < 1024 {
            match outbox.try_recv() {
                Ok(notice) => {
                    if !waiting.contains(&notice) {
                        waiting.push(notice);
                    }
                }
                Err(_) => break,
            }
        }
        for notice in waiting {
            if let Err(e) = state.store.notify(notice).await {
                tracing::warn!(error = %e, "cannot tell the other relay instances");
            }
        }
    }
}

/// A session of `tenant` started elsewhere: the one here ends if the tenant's lease is no
/// longer its own (the lease row decides, so a late or repeated notice ends nothing).
async fn check_session(state: Arc<AppState>, tenant: TenantId, holder: String) {
    if holder.starts_with(&state.registry.holder_prefix()) {
        // One of this instance's own sessions: the registry has replaced the older one.
        return;
    }
    let Some(local) = state.registry.holder(&tenant) else {
        return;
    };
    match state.store.lease_holder(format!("tenant:{tenant}")).await {
        Ok(Some(current)) if current == local => {}
        Ok(_) => state.registry.lost_lease(&tenant, &local),
        Err(e) => tracing::warn!(error = %e, "cannot check a tenant's delivery lease"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Http(String),
}

/// A relay bound to its address, ready to run.
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    local_addr: SocketAddr,
    outbox: tokio::sync::mpsc::Receiver<Notice>,
}

impl App {
    /// Opens the store and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        let store = AnyStore::open(&config.store_location()?).await?;
        // Make sure a signing key exists before the first agent token is needed.
        store.current_signing_key().await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        if config.admin_token.is_none() {
            tracing::warn!(
                "no admin token configured (RELAY_ADMIN_TOKEN): the admin API refuses every request"
            );
        }
        let tokens = Tokens::new(store.clone(), config.issuer.clone());
        let http = shop::http_client().map_err(StartError::Http)?;
        let registry = Registry::default();
        let dispatcher = Arc::new(Dispatcher::new(
            &config,
            store.clone(),
            http.clone(),
            registry.instance().to_owned(),
            shutdown.clone(),
        ));
        let (outbox, outbox_receiver) = tokio::sync::mpsc::channel(65_536);
        let state = Arc::new(AppState {
            config,
            store,
            tokens,
            registry,
            metrics: Metrics::default(),
            http,
            dispatcher,
            enricher: Arc::new(Enricher::default()),
            shops: shops::ShopCache::default(),
            queue_limit: Default::default(),
            outbox,
            shutdown,
            sessions: TaskTracker::new(),
        });
        Ok(Self {
            state,
            listener,
            local_addr,
            outbox: outbox_receiver,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https` when TLS is configured, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until the shutdown token is cancelled, then drains: stops accepting, closes
    /// agent sessions, and waits for them (bounded).
    pub async fn run(self) -> Result<(), StartError> {
        let state = self.state;
        let shutdown = state.shutdown.clone();
        tracing::info!(instance = %state.dispatcher.instance(), "relay instance");
        state.dispatcher.start().await?;
        let enricher = tokio::spawn(state.enricher.clone().run(state.clone()));
        let background = tokio::spawn(background(state.clone()));
        tokio::spawn(tell_others(state.clone(), self.outbox));
        let router = router(state.clone());
        serve::raise_file_limit(state.config.max_connections);
        let tls = match &state.config.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(&tls.cert, &tls.key).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        serve::serve(self.listener, tls, router, state.clone(), shutdown.clone()).await;
        state.sessions.close();
        let drain = Duration::from_secs(state.config.shutdown_timeout_secs);
        let drained = async {
            state.sessions.wait().await;
            state.dispatcher.stopped().await;
            let _ = enricher.await;
            let _ = background.await;
        };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::warn!(
                "agent sessions and shop calls did not finish within the shutdown timeout"
            );
        }
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// What runs beside the server: notices from the other instances, the dispatch sweep (a shop
/// whose dispatching instance died is taken over once its lease runs out), and retention.
async fn background(state: Arc<AppState>) {
    let notices = state.store.notices();
    let shared = notices.is_some();
    if let Some(notices) = notices {
        tokio::spawn(listen_to_others(state.clone(), notices));
    }
    let lease = Duration::from_secs(state.config.lease_secs);
    let mut sweep = tokio::time::interval((lease / 2).max(Duration::from_millis(500)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Retention runs hourly, the first time an hour after the start (not during a restart's
    // busiest moment).
    let hour = Duration::from_secs(3600);
    let mut retention = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(300)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // With other instances, a wake-up may be lost between them: look for waiting events of
    // the tenants connected here now and then even without one.
    let mut deliveries = tokio::time::interval(Duration::from_secs(2));
    deliveries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = sweep.tick(), if shared => match state.store.shops_with_pending_dispatch().await {
                Ok(shops) => {
                    for shop in &shops {
                        state.dispatcher.wake(shop);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dispatch sweep failed"),
            },
            _ = renew.tick() => renew_delivery_leases(&state).await,
            _ = deliveries.tick(), if shared => match state
                .store
                .pending_tenants(state.registry.sessions().into_iter().map(|(t, _)| t).collect())
                .await
            {
                Ok(tenants) => {
                    for tenant in &tenants {
                        state.registry.wake(tenant);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "delivery sweep failed"),
            },
            _ = retention.tick() => {
                let days = state.config.retention_days;
                if days > 0 {
                    let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
                    retain(&state, before).await;
                }
            }
        }
    }
}

/// Deletes finished work older than `before`, in chunks, so the store keeps serving webhooks
/// and acks in between.
async fn retain(state: &AppState, before: chrono::DateTime<chrono::Utc>) {
    const CHUNK: u32 = 5_000;
    let mut total = store::Purged::default();
    loop {
        if state.shutdown.is_cancelled() {
            break;
        }
        match state.store.purge(before, CHUNK).await {
            Ok(purged) => {
                total.events += purged.events;
                total.pushes += purged.pushes;
                total.dispatch += purged.dispatch;
                let more = [purged.events, purged.pushes, purged.dispatch]
                    .iter()
                    .any(|n| *n >= u64::from(CHUNK));
                if !more {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention failed");
                break;
            }
        }
    }
    if total != store::Purged::default() {
        tracing::info!(purged = ?total, "finished work past the retention removed");
    }
}

/// Acts on the other instances' notices, in a task of its own so nothing else delays them.
async fn listen_to_others(
    state: Arc<AppState>,
    mut notices: tokio::sync::broadcast::Receiver<Notice>,
) {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            notice = notices.recv() => match notice {
                Ok(Notice::Session { tenant, holder }) => {
                    tokio::spawn(check_session(state.clone(), tenant, holder));
                }
                Ok(notice) => state.wake_locally(&notice),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "notices were missed; the sweeps catch up");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Renews the delivery leases of every session here in one statement; a session whose lease
/// another session took (a newer connection of its agent, on any instance) ends.
async fn renew_delivery_leases(state: &AppState) {
    let sessions = state.registry.sessions();
    if sessions.is_empty() {
        return;
    }
    let lease_ms = state.config.lease_secs * 1000;
    match state
        .store
        .renew_leases(state.registry.holder_prefix(), lease_ms)
        .await
    {
        Ok(held) => {
            let held: std::collections::HashSet<(String, String)> = held.into_iter().collect();
            for (tenant, holder) in sessions {
                if !held.contains(&(format!("tenant:{tenant}"), holder.clone())) {
                    state.registry.lost_lease(&tenant, &holder);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot renew the delivery leases"),
    }
}

/// The longest one HTTP request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: Arc<AppState>) -> Router {
    let admin = admin::router(state.config.max_body_bytes).layer(
        axum::middleware::from_fn_with_state(state.clone(), admin::require_admin),
    );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/webhooks/{shop_id}",
            post(ingest::receive).layer(DefaultBodyLimit::max(state.config.max_body_bytes)),
        )
        .route("/agent/v1/connect", get(connect::upgrade))
        .nest("/admin/v1", admin)
        .layer(DefaultBodyLimit::max(256 * 1024))
        // A request (its body read in full, its answer made) has a time limit: a body sent a
        // byte a minute would otherwise hold a connection slot as long as it likes. An agent's
        // upgrade is answered at once; its WebSocket session is not a request.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            count_timeouts,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Counts the requests [`REQUEST_TIMEOUT`] ended.
async fn count_timeouts(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    response: axum::response::Response,
) -> axum::response::Response {
    if response.status() == axum::http::StatusCode::REQUEST_TIMEOUT {
        state.metrics.refused(metrics::Limit::RequestTimeout);
    }
    response
}

/// Ready when the store answers and its last webhook write did not fail (see
/// [`metrics::UNREADY_AFTER_WRITE_FAILURE`]): a store that reads but cannot write (a full
/// disk) would otherwise keep an instance in rotation that answers every webhook with 500.
async fn readyz(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    if state.metrics.store_writes_failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store could not write the last webhook (see the log)\n",
        );
    }
    match state.store.current_signing_key().await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store does not answer (see the log)\n",
        ),
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> String {
    state.metrics.render() + &state.dispatcher.render_metrics()
}
