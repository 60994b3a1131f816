//! The relay: receives the shops' webhooks, keeps them durably per tenant, and delivers them
//! to each tenant's agent over an outbound-from-the-agent WebSocket.
//!
//! - [`config`]: defaults, TOML file, `RELAY_*` environment.
//! - [`store`]: SQLite (one process) or PostgreSQL (several instances); tenants,
//!   shops, agents, events, history, pushes, what goes to the shops, leases.
//! - [`ingest`]: `POST /webhooks/{shop_id}`, Standard Webhooks verification.
//! - [`validate`]: what an order must look like before it is delivered (else it is held).
//! - [`queue_limit`]: the per-tenant queue limit.
//! - [`connect`]: `GET /agent/v1/connect`, the authenticated WebSocket upgrade.
//! - [`deliver`]: one agent session: credit window, acks, redelivery, pushes, heartbeats.
//! - [`registry`]: connected agents, so a new event wakes its tenant's session at once.
//! - [`cluster`]: several instances on one PostgreSQL database: notices, sweeps, delivery
//!   leases.
//! - [`retention`]: finished work past `retention_days` deleted hourly.
//! - [`shop`]: each shop's rules and its platform's API client; [`shops`]: their cache.
//! - [`dispatch`]: sends the agents' changes to the shops, coalesced, paced and retried.
//! - [`enrich`]: fetches the order of a thin webhook from the shop before delivery.
//! - [`sync`]: the relay's half of the initial product sync.
//! - [`auth`]: admin token and agent JWTs; [`accounts`]: console accounts, roles, sessions,
//!   and who may call which admin route.
//! - [`console`]: the admin console's pages under `/console`; [`alerts`]: e-mail and webhook
//!   alerts per tenant.
//! - [`admin`]: the admin API; [`cli`]: the same operations from a shell.
//! - [`serve`]: accepting and serving connections: connection cap, header and idle timeouts.
//! - [`in_flight`]: the limit on requests served at once.
//! - [`tls`]: HTTPS/WSS certificates; [`hosts`]: which hosts a tenant account may make the
//!   relay call.
//! - [`metrics`] (every limit's refusals too), [`error`].
//!
//! Here: [`App`] (build, then run until shutdown and drain) and the [`router`] with its
//! request timeout and its limit on requests in flight ([`in_flight`]).

#![forbid(unsafe_code)]

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connect;
pub mod console;
pub mod deliver;
pub mod dispatch;
pub mod enrich;
pub mod error;
pub mod hosts;
pub mod in_flight;
pub mod ingest;
pub mod metrics;
pub mod queue_limit;
pub mod registry;
pub mod retention;
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
    /// Notices for the other instances, sent by [`cluster`]'s outbox task.
    pub outbox: tokio::sync::mpsc::Sender<Notice>,
    /// Cancelled when the relay shuts down; agent sessions watch it.
    pub shutdown: CancellationToken,
    /// Agent sessions, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Failed console sign-ins per account and address.
    pub logins: accounts::limiter::LoginLimiter,
}

impl AppState {
    /// What the handlers share, around an open store, and the receiving end of its outbox
    /// (which [`cluster`] sends on to the other instances; an in-process test may drop it).
    pub fn new(
        config: Config,
        store: AnyStore,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::sync::mpsc::Receiver<Notice>), StartError> {
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
        let state = AppState {
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
            logins: Default::default(),
        };
        Ok((state, outbox_receiver))
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
        let (state, outbox_receiver) = AppState::new(config, store, shutdown)?;
        let state = Arc::new(state);
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
        // What runs beside the server; each task ends when the relay shuts down.
        let background = TaskTracker::new();
        background.spawn(state.enricher.clone().run(state.clone()));
        background.spawn(retention::run(state.clone()));
        background.spawn(alerts::run(state.clone()));
        cluster::start(&state, self.outbox, &background);
        background.close();
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
            background.wait().await;
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

/// The longest one HTTP request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: Arc<AppState>) -> Router {
    router_with_limit(state, in_flight::MAX_REQUESTS_IN_FLIGHT)
}

/// [`router`] with `max_in_flight` requests served at once instead of
/// [`in_flight::MAX_REQUESTS_IN_FLIGHT`].
pub fn router_with_limit(state: Arc<AppState>, max_in_flight: usize) -> Router {
    let admin = admin::router(state.config.max_body_bytes).layer(
        axum::middleware::from_fn_with_state(state.clone(), accounts::access::guard),
    );
    Router::new()
        .route(
            "/webhooks/{shop_id}",
            post(ingest::receive).layer(DefaultBodyLimit::max(state.config.max_body_bytes)),
        )
        .route("/agent/v1/connect", get(connect::upgrade))
        .nest("/admin/v1", admin)
        .nest("/console", console::router())
        // A nested router's "/" answers "/console" only; the console's home is "/console/".
        .route(
            "/console/",
            get(console::overview).layer(axum::middleware::map_response(console::security_headers)),
        )
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/console/") }),
        )
        // Beyond the requests in flight a relay can serve well, a request is refused at once
        // rather than queued behind the others. The probes and /metrics below are not held to
        // it: a busy relay is alive, and its metrics are wanted most when it is busy.
        .route_layer(axum::middleware::from_fn_with_state(
            in_flight::InFlight::new(max_in_flight, {
                let state = state.clone();
                move || state.metrics.refused(metrics::Limit::RequestsInFlight)
            }),
            in_flight::limit,
        ))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
