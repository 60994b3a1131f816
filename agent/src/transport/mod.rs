//! Opening the connection to the relay: TCP, directly or through an HTTP CONNECT proxy (chosen
//! and opened by [`crate::proxy`], at each attempt), then TLS (rustls: the system's roots plus an
//! optional CA file), then the WebSocket handshake with the agent's bearer token.
//! tokio-tungstenite has no proxy support, so the tunnel is opened first and TLS and the
//! handshake run over it.
//!
//! - [`endpoint`]: a relay address, parsed once at configuration load.
//! - [`tls`]: the TLS client configuration and what a refused certificate says.
//! - [`connection`]: the protocol over an open WebSocket (hello, recv, send).
//!
//! Takes typed values ([`Endpoint`], [`proxy::Setting`], the token), never the configuration:
//! `config` depends on this module, not the other way round.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use shared::protocol::MAX_FRAME_BYTES;
use shared::settings::Secret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proxy::{self, Decision, Plan, Setting};

pub mod connection;
pub mod endpoint;
mod presented;
pub mod tls;

pub use connection::{Connection, SessionError};
pub use endpoint::Endpoint;
pub use tls::tls_config;

/// Any byte stream the WebSocket can run over (plain TCP, TLS, through a proxy or not).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("relay refused the token (HTTP {0}); ask the operator for a new one")]
    Refused(u16),
    // The cause is part of the message, not a `source`: a chain printed with `{:#}` would say
    // it twice ("Connection refused (os error 111): Connection refused (os error 111)").
    #[error("cannot reach {target}: {cause}")]
    Tcp {
        target: String,
        cause: std::io::Error,
    },
    /// Says which proxy, what it answered and what to do.
    #[error("{0}")]
    Proxy(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The relay's certificate is refused: no retry mends it.
    #[error("TLS: {0}")]
    Certificate(String),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    /// Which step hung, and what usually makes it hang.
    #[error("timed out after {after:?} during {during}")]
    Timeout { after: Duration, during: String },
}

impl From<proxy::TunnelError> for ConnectError {
    fn from(e: proxy::TunnelError) -> Self {
        match e {
            proxy::TunnelError::Tcp { target, cause } => ConnectError::Tcp { target, cause },
            proxy::TunnelError::Proxy(what) => ConnectError::Proxy(what),
        }
    }
}

/// The step of a connection attempt, for a timeout's message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Tcp(String),
    Proxy(String),
    Tls(String),
    WebSocket(String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Tcp(target) => write!(
                f,
                "the TCP connection to {target} (a firewall that drops outbound traffic \
                 silently, or a network where the relay is reached only through a proxy: \
                 relay.proxy)"
            ),
            Step::Proxy(proxy) => write!(
                f,
                "the proxy's CONNECT ({proxy} took the connection but did not answer the \
                 tunnel request)"
            ),
            Step::Tls(host) => write!(
                f,
                "the TLS handshake with {host} (something on the path, such as a firewall or \
                 a TLS-inspecting proxy, does not complete it)"
            ),
            Step::WebSocket(url) => write!(
                f,
                "the WebSocket handshake with {url} (the relay, or a reverse proxy in front of \
                 it, did not answer the upgrade)"
            ),
        }
    }
}

/// How to reach `endpoint` through a proxy or not: `relay.proxy`, the environment, the system
/// (see [`crate::proxy`]).
pub fn proxy_plan(
    setting: &Setting,
    endpoint: &Endpoint,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, String> {
    setting.plan(&endpoint.proxy_target(), env)
}

/// The proxy decision for one-off sessions (`agent check`, `agent sync`).
pub async fn decide_proxy(
    setting: &Setting,
    endpoint: &Endpoint,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Decision> {
    let plan = proxy_plan(setting, endpoint, env).map_err(anyhow::Error::msg)?;
    plan.resolve().await.map_err(anyhow::Error::msg)
}

/// Connects to the relay as configured, for one-off sessions (`agent check`, `agent sync`).
pub async fn dial(
    endpoint: &Endpoint,
    token: &Secret,
    ca_file: Option<&Path>,
    setting: &Setting,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Connection<Socket>> {
    let decision = decide_proxy(setting, endpoint, env).await?;
    dial_via(endpoint, token, ca_file, &decision).await
}

/// Connects to the relay through the proxy `decision` names (or directly).
pub async fn dial_via(
    endpoint: &Endpoint,
    token: &Secret,
    ca_file: Option<&Path>,
    decision: &Decision,
) -> anyhow::Result<Connection<Socket>> {
    let tls = if endpoint.tls {
        Some(tls_config(ca_file)?)
    } else {
        None
    };
    let plan = Plan::Fixed(decision.clone());
    let socket = connect(endpoint, token, tls, &plan, Duration::from_secs(10)).await?;
    Ok(Connection::new(socket))
}

/// Who may answer the proxy's Negotiate/NTLM challenge: the account the agent runs as, except
/// for a proxy WPAD auto-detection found (a spoofed WPAD answer could relay that logon).
fn auth_for(decision: &Decision) -> &'static dyn proxy::AuthProvider {
    if decision.source == proxy::Source::Wpad {
        &proxy::NoLogonForWpad
    } else {
        proxy::platform_auth()
    }
}

/// Connects to the relay and completes the WebSocket handshake, within `timeout`. The proxy
/// decision comes first and outside it: reading the system's settings (a WPAD or PAC lookup)
/// has its own bound (see [`Plan::resolve`]).
pub async fn connect(
    endpoint: &Endpoint,
    token: &Secret,
    tls: Option<Arc<ClientConfig>>,
    plan: &Plan,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    let decision = plan.resolve().await.map_err(ConnectError::Proxy)?;
    if matches!(plan, Plan::System { .. }) {
        tracing::debug!(relay = %endpoint, proxy = %decision, "proxy for this attempt");
    }
    let mut step = Step::Tcp(endpoint.url.clone());
    let opened =
        tokio::time::timeout(timeout, open(endpoint, token, tls, &decision, &mut step)).await;
    opened.map_err(|_| ConnectError::Timeout {
        after: timeout,
        during: step.to_string(),
    })?
}

async fn open(
    endpoint: &Endpoint,
    token: &Secret,
    tls: Option<Arc<ClientConfig>>,
    decision: &Decision,
    step: &mut Step,
) -> Result<Socket, ConnectError> {
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let tcp = match &decision.proxy {
        Some(proxy) => {
            *step = Step::Proxy(format!("proxy {proxy} to {target}"));
            proxy::tunnel(proxy, &endpoint.host, endpoint.port, auth_for(decision)).await?
        }
        None => {
            *step = Step::Tcp(target.clone());
            TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|cause| ConnectError::Tcp { target, cause })?
        }
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if endpoint.tls {
        let tls = tls.ok_or_else(|| ConnectError::Tls("no TLS configuration".into()))?;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        *step = Step::Tls(endpoint.host.clone());
        let (handshake, presented) =
            presented::noting(tokio_rustls::TlsConnector::from(tls).connect(name, tcp)).await;
        let stream = handshake.map_err(|e| tls::tls_failure(e, &endpoint.host, presented))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let bearer = format!("Bearer {}", token.expose()).parse().map_err(|_| {
        ConnectError::Handshake("the token contains characters not allowed in a header".into())
    })?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, bearer);
    *step = Step::WebSocket(endpoint.url.clone());
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES * 2)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            if status == 401 || status == 403 {
                Err(ConnectError::Refused(status))
            } else {
                Err(ConnectError::Handshake(format!(
                    "relay answered HTTP {status}"
                )))
            }
        }
        Err(e) => Err(ConnectError::Handshake(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
