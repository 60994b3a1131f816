//! Opening the connection to the relay: TCP, directly or through an HTTP CONNECT proxy, then
//! TLS (rustls: the system's roots plus an optional CA file), then the WebSocket handshake
//! with the agent's bearer token. tokio-tungstenite has no proxy support, so the tunnel is
//! opened here and TLS and the handshake run over it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use http::Uri;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use shared::protocol::{
    Envelope, Hello, MAX_FRAME_BYTES, Message, PROTOCOL_VERSION, SessionRole, Welcome,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::RelayConfig;

/// Longest the proxy's answer to CONNECT may be.
const MAX_PROXY_RESPONSE: usize = 8 * 1024;

/// Any byte stream the WebSocket can run over (plain TCP, TLS, through a proxy or not).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("relay refused the token (HTTP {0}); ask the operator for a new one")]
    Refused(u16),
    #[error("cannot reach {target}: {source}")]
    Tcp {
        target: String,
        source: std::io::Error,
    },
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Where the relay is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub url: String,
}

impl Endpoint {
    pub fn parse(url: &str, insecure_dev: bool) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") if insecure_dev => false,
            Some("ws") => return Err(
                "plain ws:// is refused; use wss:// (or set insecure_dev for local development)"
                    .into(),
            ),
            _ => return Err(format!("{url:?} must start with wss://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            tls,
            host,
            port,
            url: url.to_owned(),
        })
    }
}

/// An HTTP CONNECT proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

impl Proxy {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("proxy must be an http:// URL")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_owned()), host),
            None => (None, authority),
        };
        let uri: Uri = format!("http://{host_port}")
            .parse()
            .map_err(|_| "proxy URL has no valid host".to_string())?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("proxy URL has no host")?;
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(3128),
            credentials,
        })
    }
}

/// The proxy to use for `host`: the configured one, else `HTTPS_PROXY`/`https_proxy` unless
/// `NO_PROXY`/`no_proxy` exempts the host.
pub fn select_proxy(
    configured: Option<&str>,
    host: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, String> {
    if let Some(url) = configured {
        return Proxy::parse(url).map(Some);
    }
    let from_env = env("HTTPS_PROXY")
        .or_else(|| env("https_proxy"))
        .filter(|v| !v.is_empty());
    let Some(url) = from_env else { return Ok(None) };
    let no_proxy = env("NO_PROXY")
        .or_else(|| env("no_proxy"))
        .unwrap_or_default();
    if exempt(host, &no_proxy) {
        return Ok(None);
    }
    Proxy::parse(&url)
        .map(Some)
        .map_err(|e| format!("HTTPS_PROXY: {e}"))
}

fn exempt(host: &str, no_proxy: &str) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let entry = entry.trim_start_matches('.');
            entry == "*"
                || host.eq_ignore_ascii_case(entry)
                || host
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", entry.to_ascii_lowercase()))
        })
}

/// The TLS client configuration: system roots plus the optional CA file.
pub fn tls_config(config: &RelayConfig) -> Result<Arc<ClientConfig>, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates skipped");
    }
    if let Some(path) = &config.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<_, _>>())
            .map_err(|e| ConnectError::Tls(format!("relay.ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConnectError::Tls(format!(
                "relay.ca_file {}: no certificate found",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ConnectError::Tls(format!("relay.ca_file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to the relay as configured (TLS, proxy from the configuration or `HTTPS_PROXY`),
/// for one-off sessions (`agent check`, `agent sync`).
pub async fn dial(
    config: &RelayConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Socket> {
    let endpoint = Endpoint::parse(&config.url, config.insecure_dev).map_err(anyhow::Error::msg)?;
    let tls = if endpoint.tls {
        Some(tls_config(config)?)
    } else {
        None
    };
    let proxy =
        select_proxy(config.proxy.as_deref(), &endpoint.host, env).map_err(anyhow::Error::msg)?;
    Ok(connect(config, tls, proxy.as_ref(), Duration::from_secs(10)).await?)
}

/// Says hello and waits (bounded) for the relay's welcome.
pub async fn greet(socket: &mut Socket, role: SessionRole, credit: u32) -> anyhow::Result<Welcome> {
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        credit,
        role,
    });
    socket
        .send(WsMessage::Text(Envelope::new(hello).to_json().into()))
        .await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let WsMessage::Text(text) = frame?
                && let Message::Welcome(welcome) = Envelope::from_json(text.as_str())?.msg
            {
                return Ok(welcome);
            }
        }
        anyhow::bail!("the relay closed the connection before its welcome")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no welcome within 10 s"))?
}

/// Connects to the relay and completes the WebSocket handshake, within `timeout`.
pub async fn connect(
    config: &RelayConfig,
    tls: Option<Arc<ClientConfig>>,
    proxy: Option<&Proxy>,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    tokio::time::timeout(timeout, open(config, tls, proxy))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

async fn open(
    config: &RelayConfig,
    tls: Option<Arc<ClientConfig>>,
    proxy: Option<&Proxy>,
) -> Result<Socket, ConnectError> {
    let endpoint =
        Endpoint::parse(&config.url, config.insecure_dev).map_err(ConnectError::Handshake)?;
    let tcp = match proxy {
        Some(proxy) => tunnel(proxy, &endpoint.host, endpoint.port).await?,
        None => {
            let target = format!("{}:{}", endpoint.host, endpoint.port);
            TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|source| ConnectError::Tcp { target, source })?
        }
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if endpoint.tls {
        let tls = tls.ok_or_else(|| ConnectError::Tls("no TLS configuration".into()))?;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let bearer = format!("Bearer {}", config.token.expose())
        .parse()
        .map_err(|_| {
            ConnectError::Handshake("the token contains characters not allowed in a header".into())
        })?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, bearer);
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

/// Opens a CONNECT tunnel through `proxy` to `host:port`.
pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let target = format!("{}:{}", proxy.host, proxy.port);
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ConnectError::Tcp { target, source })?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectError::Proxy(e.to_string()))?;

    // Read the response head byte by byte so nothing after it is consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_RESPONSE {
            return Err(ConnectError::Proxy("response head too large".into()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| ConnectError::Proxy(format!("closed during CONNECT: {e}")))?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default().to_owned();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        Ok(stream)
    } else {
        Err(ConnectError::Proxy(format!(
            "CONNECT refused: {status_line}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::net::TcpListener;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn endpoints_default_their_ports_and_refuse_plain_ws() {
        let e = Endpoint::parse("wss://relay.example.com/agent/v1/connect", false).expect("valid");
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "relay.example.com", 443)
        );
        assert!(Endpoint::parse("ws://relay/agent/v1/connect", false).is_err());
        let e =
            Endpoint::parse("ws://127.0.0.1:8080/agent/v1/connect", true).expect("valid in dev");
        assert_eq!((e.tls, e.port), (false, 8080));
        assert!(Endpoint::parse("https://relay/", false).is_err());
    }

    #[test]
    fn the_proxy_comes_from_config_then_https_proxy_minding_no_proxy() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://user:pw@proxy.corp:8080"),
            ("NO_PROXY", "localhost,.internal"),
        ]);
        let p = select_proxy(None, "relay.example.com", &env)
            .expect("valid")
            .expect("a proxy");
        assert_eq!(
            (p.host.as_str(), p.port, p.credentials.as_deref()),
            ("proxy.corp", 8080, Some("user:pw"))
        );
        assert_eq!(
            select_proxy(None, "relay.internal", &env).expect("valid"),
            None
        );
        assert_eq!(select_proxy(None, "localhost", &env).expect("valid"), None);
        let configured = select_proxy(Some("http://10.0.0.1:3128"), "localhost", &env)
            .expect("valid")
            .expect("a proxy");
        assert_eq!(configured.host, "10.0.0.1");
        assert_eq!(select_proxy(None, "x", &env_of(&[])).expect("valid"), None);
        assert!(select_proxy(None, "x", &env_of(&[("HTTPS_PROXY", "socks5://p:1")])).is_err());
    }

    async fn fake_proxy(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            socket.write_all(answer.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn a_connect_tunnel_is_opened_with_credentials() {
        let (port, request) = fake_proxy("HTTP/1.1 200 Connection Established\r\n\r\n").await;
        let proxy = Proxy {
            host: "127.0.0.1".into(),
            port,
            credentials: Some("u:p".into()),
        };
        tunnel(&proxy, "relay.example.com", 443)
            .await
            .expect("tunnel");
        let request = request.await.expect("proxy ran");
        assert!(
            request.starts_with("CONNECT relay.example.com:443 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("Proxy-Authorization: Basic dTpw\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_refused_connect_names_the_status() {
        let (port, _request) =
            fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let proxy = Proxy {
            host: "127.0.0.1".into(),
            port,
            credentials: None,
        };
        let error = tunnel(&proxy, "relay.example.com", 443)
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("407"), "{error}");
    }
}
