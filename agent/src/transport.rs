//! Opening the connection to the relay: TCP, directly or through an HTTP CONNECT proxy (chosen
//! and opened by [`crate::proxy`], at each attempt), then TLS (rustls: the system's roots plus an
//! optional CA file), then the WebSocket handshake with the agent's bearer token.
//! tokio-tungstenite has no proxy support, so the tunnel is opened first and TLS and the
//! handshake run over it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Uri;
use rustls::ClientConfig;
#[cfg(not(windows))]
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use shared::protocol::{
    Envelope, Hello, MAX_FRAME_BYTES, Message, PROTOCOL_VERSION, SessionRole, Welcome,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::RelayConfig;
use crate::proxy::{self, Decision, Plan};

mod presented;

use presented::Presented;

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

/// A TLS failure with what to do about it: a certificate from a CA the agent does not trust
/// is almost always a TLS-inspecting proxy, and no retry changes it. `presented` names the
/// refused certificate as the server sent it (whom it is for, who issued it).
fn tls_failure(e: std::io::Error, host: &str, presented: Option<Presented>) -> ConnectError {
    use rustls::{CertificateError, Error as TlsError};
    let Some(TlsError::InvalidCertificate(kind)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
    else {
        return ConnectError::Tls(e.to_string());
    };
    let presented = presented.unwrap_or_default();
    let what = match kind {
        // BadSignature: a trusted CA's name, another key (a proxy's CA named like a real one).
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "invalid peer certificate: {kind:?}: the certificate {host} presented is not \
             from a CA this agent trusts: {presented}. When a proxy inspects TLS on this \
             network, add its CA certificate (PEM or DER) as relay.ca_file{}{}; else the \
             relay's certificate chain is incomplete (ask its operator)",
            if cfg!(windows) {
                " or to the Windows certificate store"
            } else {
                ""
            },
            match presented.root() {
                Some(root) => format!(" (the certificate of {root})"),
                None => String::new(),
            }
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "invalid peer certificate: the certificate is not for {host} ({presented}): \
                 check relay.url (or a proxy answers with a certificate of its own: then add \
                 its CA certificate as relay.ca_file)"
            )
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "{e} ({presented}): check this computer's date and time; when they are right, \
             the certificate's owner must renew it (the relay's operator, or for a \
             TLS-inspecting proxy's certificate its administrators)"
        ),
        _ => format!(
            "{e} ({presented}): when a proxy inspects TLS on this network, add its CA \
             certificate (PEM or DER) as relay.ca_file; else ask the relay's operator"
        ),
    };
    ConnectError::Certificate(what)
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

/// The TLS client configuration for the relay: the system's trust plus `relay.ca_file`.
///
/// On Windows the relay's certificate is checked first by Windows' own chain engine
/// (`rustls-platform-verifier`): the certificate store as the machine's group policy fills it,
/// with roots Windows fetches on demand (automatic root update, which a root list read once from
/// the store would miss), revocation checked where it can be (unknown revocation does not fail,
/// as in browsers); when that does not trust it, `ca_file`'s certificates are tried (webpki).
/// Elsewhere: the system's root certificates (`rustls-native-certs`) plus `ca_file`. Either way a
/// refused certificate's names are noted for the error (module `presented`).
pub fn tls_config(config: &RelayConfig) -> Result<Arc<ClientConfig>, ConnectError> {
    let extra = match &config.ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    #[cfg(windows)]
    let verifier: Option<Arc<dyn ServerCertVerifier>> = Some(Arc::new(
        windows_trust::SystemThenCaFile::new(extra, provider.clone())?,
    ));
    #[cfg(not(windows))]
    let verifier: Option<Arc<dyn ServerCertVerifier>> = {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system root certificate could not be loaded");
        }
        let (_, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "system root certificates skipped");
        }
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| ConnectError::Tls(format!("relay.ca_file: {e}")))?;
        }
        if roots.is_empty() {
            // No root at all (a system without a CA bundle, no ca_file): every certificate
            // is refused as from an unknown issuer, as webpki's verifier would (which refuses
            // to be built without roots).
            tracing::debug!("no root certificate: neither the system's nor relay.ca_file");
            None
        } else {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| ConnectError::Tls(format!("root certificates: {e}")))?;
            Some(verifier)
        }
    };
    // The verifier's decisions are its own; the wrapper notes a refused certificate's names
    // for the error (see [`presented`]).
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(presented::Noting::new(verifier, provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Windows: the system's verdict first, then `relay.ca_file`.
///
/// Not `rustls_platform_verifier::Verifier::new_with_extra_roots`: that builds a chain engine
/// with an exclusive root store, which wine's crypt32 refuses (E_INVALIDARG), so the agent's
/// tests under wine could not run it; trying the ca_file with webpki after the system's refusal
/// gives the same trust on Windows and runs under wine.
#[cfg(windows)]
mod windows_trust {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    use super::ConnectError;

    #[derive(Debug)]
    pub struct SystemThenCaFile {
        system: rustls_platform_verifier::Verifier,
        ca_file: Option<Arc<WebPkiServerVerifier>>,
        provider: Arc<CryptoProvider>,
    }

    impl SystemThenCaFile {
        pub fn new(
            extra: Vec<CertificateDer<'static>>,
            provider: Arc<CryptoProvider>,
        ) -> Result<Self, ConnectError> {
            let system =
                rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
                    ConnectError::Tls(format!(
                        "cannot set up Windows' certificate verification: {e}"
                    ))
                })?;
            let ca_file = if extra.is_empty() {
                None
            } else {
                let mut roots = rustls::RootCertStore::empty();
                for cert in extra {
                    roots
                        .add(cert)
                        .map_err(|e| ConnectError::Tls(format!("relay.ca_file: {e}")))?;
                }
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| ConnectError::Tls(format!("relay.ca_file: {e}")))?,
                )
            };
            Ok(Self {
                system,
                ca_file,
                provider,
            })
        }
    }

    impl ServerCertVerifier for SystemThenCaFile {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let system = self.system.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
            match (system, &self.ca_file) {
                (Ok(verified), _) => Ok(verified),
                (Err(refused), Some(ca_file)) => ca_file
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    // Neither trusts it. When the chain leads to a ca_file certificate, the
                    // ca_file's reason (the name, the dates); else the system's, which names
                    // what Windows saw.
                    .map_err(|by_ca_file| match by_ca_file {
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::UnknownIssuer,
                        ) => refused,
                        other => other,
                    }),
                (Err(refused), None) => Err(refused),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

/// The certificates of `relay.ca_file`: PEM (one or more `BEGIN CERTIFICATE` blocks; UTF-8 with
/// or without a byte order mark, or UTF-16 as PowerShell 5.1's `>` writes it), or one DER
/// certificate, as Windows' certificate export writes by default (".CER, DER encoded").
fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let failed =
        |what: String| ConnectError::Tls(format!("relay.ca_file {}: {what}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    if bytes.first() == Some(&0x30) {
        // A DER certificate is an ASN.1 SEQUENCE; PEM text never starts with that byte.
        let cert = CertificateDer::from(bytes);
        webpki_parse_check(&cert).map_err(failed)?;
        return Ok(vec![cert.into_owned()]);
    }
    let text = crate::config::decode_text(&bytes).map_err(failed)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| failed(format!("{e} (expected PEM or DER certificates)")))?;
    if certs.is_empty() {
        return Err(failed(
            "no certificate found: expected PEM (-----BEGIN CERTIFICATE-----) or a DER certificate"
                .to_owned(),
        ));
    }
    Ok(certs)
}

/// Whether `cert` parses as a certificate a root store accepts.
fn webpki_parse_check(cert: &CertificateDer<'_>) -> Result<(), String> {
    let mut probe = rustls::RootCertStore::empty();
    probe
        .add(cert.clone())
        .map_err(|e| format!("not a certificate ({e}); expected PEM or DER"))
}

/// How to reach `endpoint` through a proxy or not: `relay.proxy`, the environment, the system
/// (see [`crate::proxy`]).
pub fn proxy_plan(
    config: &RelayConfig,
    endpoint: &Endpoint,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, String> {
    let target = proxy::Target {
        host: endpoint.host.clone(),
        port: endpoint.port,
        tls: endpoint.tls,
    };
    proxy::plan(config.proxy.as_deref(), &target, env)
}

/// The proxy decision for one-off sessions (`agent check`, `agent sync`).
pub async fn decide_proxy(
    config: &RelayConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Decision> {
    let endpoint = Endpoint::parse(&config.url, config.insecure_dev).map_err(anyhow::Error::msg)?;
    let plan = proxy_plan(config, &endpoint, env).map_err(anyhow::Error::msg)?;
    plan.resolve().await.map_err(anyhow::Error::msg)
}

/// Connects to the relay as configured, for one-off sessions (`agent check`, `agent sync`).
pub async fn dial(
    config: &RelayConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Socket> {
    let decision = decide_proxy(config, env).await?;
    dial_via(config, &decision).await
}

/// Connects to the relay through the proxy `decision` names (or directly).
pub async fn dial_via(config: &RelayConfig, decision: &Decision) -> anyhow::Result<Socket> {
    let endpoint = Endpoint::parse(&config.url, config.insecure_dev).map_err(anyhow::Error::msg)?;
    let tls = if endpoint.tls {
        Some(tls_config(config)?)
    } else {
        None
    };
    let plan = Plan::Fixed(decision.clone());
    Ok(connect(config, tls, &plan, Duration::from_secs(10)).await?)
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

/// Connects to the relay and completes the WebSocket handshake, within `timeout`. The proxy
/// decision comes first and outside it: reading the system's settings (a WPAD or PAC lookup)
/// has its own bound (see [`Plan::resolve`]).
pub async fn connect(
    config: &RelayConfig,
    tls: Option<Arc<ClientConfig>>,
    plan: &Plan,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    let decision = plan.resolve().await.map_err(ConnectError::Proxy)?;
    if matches!(plan, Plan::System { .. }) {
        tracing::debug!(relay = %config.url, proxy = %decision, "proxy for this attempt");
    }
    let mut step = Step::Tcp(config.url.clone());
    let opened = tokio::time::timeout(timeout, open(config, tls, &decision, &mut step)).await;
    opened.map_err(|_| ConnectError::Timeout {
        after: timeout,
        during: step.to_string(),
    })?
}

async fn open(
    config: &RelayConfig,
    tls: Option<Arc<ClientConfig>>,
    decision: &Decision,
    step: &mut Step,
) -> Result<Socket, ConnectError> {
    let endpoint =
        Endpoint::parse(&config.url, config.insecure_dev).map_err(ConnectError::Handshake)?;
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
        let stream = handshake.map_err(|e| tls_failure(e, &endpoint.host, presented))?;
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
mod tests {
    use super::*;

    fn relay(url: &str) -> RelayConfig {
        RelayConfig {
            url: url.to_owned(),
            insecure_dev: true,
            ..RelayConfig::default()
        }
    }

    /// A server that accepts connections and never says a word.
    async fn silent() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        (listener, port)
    }

    async fn attempt(config: &RelayConfig, tls: bool, plan: Plan) -> String {
        let tls = tls.then(|| tls_config(config).expect("TLS configuration"));
        let e = connect(config, tls, &plan, Duration::from_millis(300))
            .await
            .err()
            .expect("no connection");
        format!("{:#}", anyhow::Error::from(e))
    }

    #[tokio::test]
    async fn a_timeout_says_which_step_hung() {
        let (_held, port) = silent().await;
        let direct = Plan::Fixed(Decision {
            proxy: None,
            source: proxy::Source::Config,
        });
        let tls = attempt(
            &relay(&format!("wss://127.0.0.1:{port}/a")),
            true,
            direct.clone(),
        )
        .await;
        assert!(
            tls.contains("timed out after 300ms during the TLS handshake with 127.0.0.1"),
            "{tls}"
        );
        let ws = attempt(&relay(&format!("ws://127.0.0.1:{port}/a")), false, direct).await;
        assert!(
            ws.contains(&format!(
                "during the WebSocket handshake with ws://127.0.0.1:{port}/a"
            )),
            "{ws}"
        );
        let proxy = Plan::Fixed(Decision {
            proxy: Some(
                proxy::Proxy::parse(&format!("http://127.0.0.1:{port}")).expect("proxy URL"),
            ),
            source: proxy::Source::Config,
        });
        let tunnel = attempt(&relay("wss://relay.example:443/a"), true, proxy).await;
        assert!(
            tunnel.contains(&format!(
                "during the proxy's CONNECT (proxy 127.0.0.1:{port} to relay.example:443"
            )),
            "{tunnel}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause_once() {
        let (listener, port) = silent().await;
        drop(listener);
        let direct = Plan::Fixed(Decision {
            proxy: None,
            source: proxy::Source::Config,
        });
        let e = attempt(&relay(&format!("ws://127.0.0.1:{port}/a")), false, direct).await;
        assert!(
            e.starts_with(&format!("cannot reach 127.0.0.1:{port}: ")),
            "{e}"
        );
        let cause = e.rsplit(": ").next().unwrap_or_default();
        assert_eq!(e.matches(cause).count(), 1, "the cause is said twice: {e}");
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

    /// A CA certificate as a corporate PKI hands it out, in the two forms Windows exports.
    const CA_PEM: &str = include_str!("../tests/fixtures/corporate-ca.pem");

    #[test]
    fn a_ca_file_is_read_as_pem_or_as_der_and_anything_else_says_what_is_expected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, CA_PEM).expect("write");
        let from_pem = read_ca_file(&pem).expect("PEM is read");
        assert_eq!(from_pem.len(), 1);

        let der = dir.path().join("ca.cer");
        std::fs::write(&der, from_pem[0].as_ref()).expect("write");
        let from_der = read_ca_file(&der).expect("DER is read");
        assert_eq!(from_der, from_pem, "the same certificate either way");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "ask IT for the proxy's CA").expect("write");
        let e = read_ca_file(&text).expect_err("no certificate").to_string();
        assert!(
            e.contains("relay.ca_file") && e.contains("notes.txt"),
            "{e}"
        );
        assert!(e.contains("expected PEM") && e.contains("DER"), "{e}");

        let broken = dir.path().join("broken.cer");
        std::fs::write(&broken, [0x30, 0x03, 0x01, 0x02, 0x03]).expect("write");
        let e = read_ca_file(&broken)
            .expect_err("not a certificate")
            .to_string();
        assert!(e.contains("not a certificate") && e.contains("DER"), "{e}");

        let config = RelayConfig {
            ca_file: Some(der),
            ..RelayConfig::default()
        };
        if let Err(e) = tls_config(&config) {
            panic!("a DER ca_file sets up TLS: {e}");
        }
    }

    #[test]
    fn a_pem_ca_file_saved_with_a_bom_or_as_utf16_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = {
            let path = dir.path().join("plain.pem");
            std::fs::write(&path, CA_PEM).expect("write");
            read_ca_file(&path).expect("PEM is read")
        };
        let utf16 = |unit: fn(u16) -> [u8; 2], bom: [u8; 2]| -> Vec<u8> {
            bom.into_iter()
                .chain(CA_PEM.encode_utf16().flat_map(unit))
                .collect()
        };
        for (name, bytes) in [
            (
                "bom.pem",
                [b"\xEF\xBB\xBF".as_slice(), CA_PEM.as_bytes()].concat(),
            ),
            ("utf16le.pem", utf16(u16::to_le_bytes, [0xFF, 0xFE])),
            ("utf16be.pem", utf16(u16::to_be_bytes, [0xFE, 0xFF])),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            let certs = read_ca_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(certs, plain, "{name}");
        }
    }

    /// A test CA: its certificate, and what signs with it.
    struct TestCa {
        cert: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl TestCa {
        fn new(common_name: &str, organization: &str) -> Self {
            let key = rcgen::KeyPair::generate().expect("CA key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            // In the order CAs write it, the most general part first: RFC 4514 reverses it.
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let cert = params.self_signed(&key).expect("CA certificate");
            let issuer = rcgen::Issuer::new(params, key);
            Self { cert, issuer }
        }

        /// Writes the CA certificate (DER) as a `relay.ca_file`.
        fn ca_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
            let path = dir.join(format!("ca-{}.cer", rand::random::<u32>()));
            std::fs::write(&path, self.cert.der().as_ref()).expect("write CA");
            path
        }

        /// A TLS server on 127.0.0.1 with a certificate from this CA for `names` (valid now,
        /// or `expired`), sent with the CA's certificate as a chain; it takes handshakes until
        /// the test ends. Its port.
        async fn serve(&self, names: &[&str], expired: bool) -> u16 {
            let key = rcgen::KeyPair::generate().expect("server key");
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, names[0]);
            if expired {
                params.not_before = rcgen::date_time_ymd(2001, 1, 1);
                params.not_after = rcgen::date_time_ymd(2002, 1, 1);
            }
            let cert = params.signed_by(&key, &self.issuer).expect("certificate");
            let chain = vec![cert.der().clone(), self.cert.der().clone()];
            let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let server = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocols")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server configuration");
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    // The agent refuses the certificate: the handshake fails, as it should.
                    let _ = acceptor.accept(tcp).await;
                }
            });
            port
        }
    }

    /// Connects as an agent trusting `ca_file` (besides the system's roots) would; the error.
    async fn refused(port: u16, ca_file: std::path::PathBuf) -> ConnectError {
        let config = RelayConfig {
            url: format!("wss://127.0.0.1:{port}/agent/v1/connect"),
            ca_file: Some(ca_file),
            ..RelayConfig::default()
        };
        let direct = Plan::Fixed(Decision {
            proxy: None,
            source: proxy::Source::Config,
        });
        let tls = tls_config(&config).expect("TLS configuration");
        connect(&config, Some(tls), &direct, Duration::from_secs(20))
            .await
            .err()
            .expect("the certificate is refused")
    }

    /// A refused relay certificate is named as the server presented it: whom it is for, who
    /// issued it (e.g. a TLS-inspecting proxy's CA, the one relay.ca_file needs).
    #[tokio::test]
    async fn a_refused_relay_certificate_names_its_subject_and_issuer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let trusted = TestCa::new("Relay Test CA", "Relay Operator");
        let proxy = TestCa::new("Corp Proxy CA", "Acme");

        let port = proxy.serve(&["127.0.0.1"], false).await;
        let e = refused(port, trusted.ca_file(dir.path())).await;
        let text = e.to_string();
        assert!(matches!(e, ConnectError::Certificate(_)), "{e:?}");
        for words in [
            "invalid peer certificate: UnknownIssuer",
            "is not from a CA this agent trusts",
            "it is for CN=127.0.0.1, issued by CN=Corp Proxy CA, O=Acme",
            "add its CA certificate (PEM or DER) as relay.ca_file",
            "(the certificate of CN=Corp Proxy CA, O=Acme)",
        ] {
            assert!(text.contains(words), "{words:?} missing: {text}");
        }

        // Trusted, but for another host: which one, and from whom.
        let port = trusted.serve(&["relay.example"], false).await;
        let text = refused(port, trusted.ca_file(dir.path())).await.to_string();
        for words in [
            "the certificate is not for 127.0.0.1",
            "it is for CN=relay.example, issued by CN=Relay Test CA, O=Relay Operator",
            "check relay.url",
        ] {
            assert!(text.contains(words), "{words:?} missing: {text}");
        }

        // Expired: whose, and what to check.
        let port = trusted.serve(&["127.0.0.1"], true).await;
        let text = refused(port, trusted.ca_file(dir.path())).await.to_string();
        for words in [
            "expired",
            "it is for CN=127.0.0.1, issued by CN=Relay Test CA, O=Relay Operator",
            "check this computer's date and time",
        ] {
            assert!(text.contains(words), "{words:?} missing: {text}");
        }
    }

    #[test]
    fn only_a_proxy_found_by_wpad_is_refused_the_windows_logon() {
        let decision = |source| Decision {
            proxy: None,
            source,
        };
        assert!(auth_for(&decision(proxy::Source::Wpad)).refusal().is_some());
        for source in [
            proxy::Source::Config,
            proxy::Source::Env("HTTPS_PROXY"),
            proxy::Source::WinHttp,
            proxy::Source::Pac("http://pac/proxy.pac".into()),
        ] {
            assert!(auth_for(&decision(source)).refusal().is_none());
        }
    }
}
