//! The CONNECT tunnel through a proxy, with its authentication on the same connection:
//! Basic when the URL has credentials; otherwise, when the proxy answers 407 offering
//! `Negotiate` or `NTLM` and an authenticator is available (SSPI on Windows, with the account
//! the agent runs as), the multi-leg exchange
//! `CONNECT` → 407 `Proxy-Authenticate: NTLM` → `Proxy-Authorization: NTLM <token>` → 407
//! `Proxy-Authenticate: NTLM <challenge>` → `Proxy-Authorization: NTLM <token>` → 2xx.
//!
//! NTLM (and Negotiate when it falls back to NTLM) authenticates the connection, not a request:
//! once a token went out, the rest of the exchange must stay on that connection. A 407 body is
//! read and discarded when it has a (bounded) Content-Length; without one, or with
//! `Connection: close`, the connection cannot carry the next leg: before the first token a new
//! connection is opened, after it the exchange fails saying why. The caller's connect timeout
//! bounds it all; the response head and the number of legs are bounded here.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Proxy, authority};
use crate::transport::ConnectError;

/// Longest response head accepted from the proxy.
const MAX_HEAD: usize = 16 * 1024;
/// Longest 407 body read (and discarded) to keep the connection; a longer one closes it.
const MAX_BODY: u64 = 64 * 1024;
/// Tokens sent in one Negotiate/NTLM exchange at most (NTLM needs 2, Kerberos 1).
const MAX_LEGS: usize = 4;
/// Longest status line repeated in an error.
const MAX_STATUS_SHOWN: usize = 200;

/// One connection-based authentication exchange (Negotiate, NTLM).
pub trait ProxyAuthenticator: Send {
    /// The scheme as sent in `Proxy-Authorization` (`Negotiate`, `NTLM`).
    fn scheme(&self) -> &str;
    /// The next token: first without a challenge, then for each challenge the proxy sent.
    fn step(&mut self, challenge: Option<&[u8]>) -> Result<Vec<u8>, String>;
}

/// Makes authenticators for the schemes a proxy offers.
pub trait AuthProvider: Send + Sync {
    /// An authenticator for one of `offered` (as the proxy named them) for the proxy on
    /// `proxy_host`, or `None` when none of them can be done here.
    fn authenticator(
        &self,
        proxy_host: &str,
        offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String>;
}

/// No authenticator (every platform but Windows).
pub struct NoAuth;

impl AuthProvider for NoAuth {
    fn authenticator(
        &self,
        _proxy_host: &str,
        _offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String> {
        Ok(None)
    }
}

/// SSPI (Negotiate, NTLM with the account the agent runs as) on Windows, nothing elsewhere.
pub fn platform_auth() -> &'static dyn AuthProvider {
    #[cfg(windows)]
    {
        &crate::windows::sspi::Sspi
    }
    #[cfg(not(windows))]
    {
        &NoAuth
    }
}

/// Opens a CONNECT tunnel through `proxy` to `host:port`, authenticating as described above.
pub async fn tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    auth: &dyn AuthProvider,
) -> Result<TcpStream, ConnectError> {
    let target = authority(host, port);
    let mut stream = open(proxy).await?;
    let mut authorization = proxy
        .credentials
        .as_ref()
        .map(|c| format!("Basic {}", c.basic()));
    let mut exchange: Option<Box<dyn ProxyAuthenticator>> = None;
    let mut legs = 0usize;
    loop {
        send(&mut stream, proxy, &target, authorization.as_deref()).await?;
        let response = read_head(&mut stream, proxy).await?;
        if (200..300).contains(&response.status) {
            return Ok(stream);
        }
        if response.status != 407 {
            return Err(refused(proxy, &target, &response));
        }
        let reusable = discard_body(&mut stream, proxy, &response).await?;
        let offered = response.offered_schemes();
        if proxy.credentials.is_some() {
            return Err(basic_rejected(proxy, &response, &offered));
        }
        let challenge = match &mut exchange {
            None => {
                let chosen = auth
                    .authenticator(&proxy.host, &offered)
                    .map_err(|e| account_cannot(proxy, &response, &offered, &e))?;
                let Some(chosen) = chosen else {
                    return Err(requires_auth(proxy, &response, &offered));
                };
                if !reusable {
                    // No token went out yet: a new connection may start the exchange.
                    stream = open(proxy).await?;
                }
                exchange.insert(chosen).step(None)
            }
            Some(current) => {
                let scheme = current.scheme().to_owned();
                let Some(challenge) = response.challenge(&scheme) else {
                    return Err(fail(
                        proxy,
                        format!(
                            "refused the {scheme} credentials of the account the agent runs as \
                             ({}): let that account through the proxy, run the agent as a domain \
                             account the proxy accepts, or put credentials in relay.proxy as \
                             http://user:password@host:port",
                            response.status_line
                        ),
                    ));
                };
                if !reusable {
                    return Err(fail(
                        proxy,
                        format!(
                            "closed the connection after its {scheme} challenge ({}); {scheme} \
                             authenticates one connection, so the exchange cannot go on over a \
                             new one: let the proxy keep the connection open (keep-alive) for \
                             407 answers, or put credentials in relay.proxy as \
                             http://user:password@host:port (Basic)",
                            response.status_line
                        ),
                    ));
                }
                legs += 1;
                if legs >= MAX_LEGS {
                    return Err(fail(
                        proxy,
                        format!(
                            "still asks for {scheme} after {MAX_LEGS} tokens ({}); giving up",
                            response.status_line
                        ),
                    ));
                }
                let challenge = base64::engine::general_purpose::STANDARD
                    .decode(challenge)
                    .map_err(|_| {
                        fail(
                            proxy,
                            format!("sent a {scheme} challenge that is not base64"),
                        )
                    })?;
                current.step(Some(&challenge))
            }
        };
        let token = challenge.map_err(|e| account_cannot(proxy, &response, &offered, &e))?;
        let scheme = exchange.as_ref().map(|e| e.scheme()).unwrap_or_default();
        if token.is_empty() {
            return Err(fail(
                proxy,
                format!(
                    "still asks for {scheme} ({}) but the account's {scheme} exchange is complete",
                    response.status_line
                ),
            ));
        }
        authorization = Some(format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        ));
    }
}

async fn open(proxy: &Proxy) -> Result<TcpStream, ConnectError> {
    TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ConnectError::Tcp {
            target: format!("proxy {proxy}"),
            source,
        })
}

async fn send(
    stream: &mut TcpStream,
    proxy: &Proxy,
    target: &str,
    authorization: Option<&str>,
) -> Result<(), ConnectError> {
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Connection: Keep-Alive\r\n\
         User-Agent: mamut-agent/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(value) = authorization {
        request.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(proxy, format!("closed the connection during CONNECT: {e}")))
}

/// A proxy's response head.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Printable, bounded: safe for an error.
    status_line: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Response {
    fn parse(head: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let status_line = lines.next()?.trim();
        let mut parts = status_line.split_whitespace();
        let version = parts.next().filter(|v| v.starts_with("HTTP/"))?;
        let status = parts.next()?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Self {
            status,
            status_line: shown(status_line),
            http10: version == "HTTP/1.0",
            headers,
        })
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The schemes of all `Proxy-Authenticate` headers, in order, without parameters.
    fn offered_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = Vec::new();
        for value in self.values("proxy-authenticate") {
            if let Some(scheme) = value.split_whitespace().next()
                && !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
            {
                schemes.push(scheme.trim_end_matches(',').to_owned());
            }
        }
        schemes
    }

    /// The base64 challenge of `Proxy-Authenticate: <scheme> <challenge>`.
    fn challenge(&self, scheme: &str) -> Option<&str> {
        self.values("proxy-authenticate").find_map(|value| {
            let (name, rest) = value.split_once(char::is_whitespace)?;
            let rest = rest.trim();
            (name.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
        })
    }

    /// Whether the proxy keeps the connection after this response.
    fn keeps_connection(&self) -> bool {
        let tokens = |name| {
            self.values(name)
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let connection: Vec<String> = tokens("connection")
            .into_iter()
            .chain(tokens("proxy-connection"))
            .collect();
        if connection.iter().any(|t| t == "close") {
            return false;
        }
        !self.http10 || connection.iter().any(|t| t == "keep-alive")
    }
}

/// Reads the response head byte by byte, so nothing after it (the tunnel's first bytes) is
/// consumed.
async fn read_head(stream: &mut TcpStream, proxy: &Proxy) -> Result<Response, ConnectError> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(fail(
                proxy,
                format!("answered CONNECT with a response head over {MAX_HEAD} bytes"),
            ));
        }
        let byte = stream.read_u8().await.map_err(|e| {
            fail(
                proxy,
                format!("closed the connection before answering CONNECT: {e}"),
            )
        })?;
        head.push(byte);
    }
    Response::parse(&head).ok_or_else(|| {
        let first =
            String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or(&[])).into_owned();
        fail(
            proxy,
            format!(
                "answered CONNECT with something not HTTP: {}",
                shown(&first)
            ),
        )
    })
}

/// Reads and drops a 407's body; says whether the connection can carry the next request.
async fn discard_body(
    stream: &mut TcpStream,
    proxy: &Proxy,
    response: &Response,
) -> Result<bool, ConnectError> {
    let chunked = response
        .values("transfer-encoding")
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response.values("content-length").next();
    let keeps = response.keeps_connection();
    let Some(length) = length.filter(|_| !chunked) else {
        // Unknown length: the body ends when the proxy closes; this connection is done.
        return Ok(false);
    };
    let length: u64 = length.parse().map_err(|_| {
        fail(
            proxy,
            format!("sent an invalid Content-Length ({})", response.status_line),
        )
    })?;
    if length > MAX_BODY {
        return Ok(false);
    }
    let mut body = vec![0u8; usize::try_from(length).unwrap_or(0)];
    if stream.read_exact(&mut body).await.is_err() {
        return Ok(false);
    }
    Ok(keeps)
}

fn shown(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_STATUS_SHOWN)
        .collect()
}

fn fail(proxy: &Proxy, what: String) -> ConnectError {
    ConnectError::Proxy(format!("proxy {proxy} {what}"))
}

fn list(offered: &[String]) -> String {
    if offered.is_empty() {
        "no scheme named".to_owned()
    } else {
        offered.join(", ")
    }
}

fn refused(proxy: &Proxy, target: &str, response: &Response) -> ConnectError {
    let hint = match response.status {
        403 => ": the proxy's rules forbid it; ask its administrator to allow CONNECT to it",
        502..=504 => {
            ": the proxy cannot reach the relay; check the relay address and the proxy's \
                      own connectivity"
        }
        _ => "",
    };
    fail(
        proxy,
        format!(
            "refused CONNECT to {target} ({}){hint}",
            response.status_line
        ),
    )
}

fn requires_auth(proxy: &Proxy, response: &Response, offered: &[String]) -> ConnectError {
    let offers_windows = offered
        .iter()
        .any(|s| s.eq_ignore_ascii_case("negotiate") || s.eq_ignore_ascii_case("ntlm"));
    let how = if offers_windows && !cfg!(windows) {
        "put credentials in relay.proxy as http://user:password@host:port (Negotiate and NTLM \
         with the account the agent runs as work on Windows only)"
    } else {
        "put credentials in relay.proxy as http://user:password@host:port, or run the agent as a \
         domain account the proxy accepts"
    };
    fail(
        proxy,
        format!(
            "requires authentication (offers {}; {}): {how}",
            list(offered),
            response.status_line
        ),
    )
}

fn account_cannot(
    proxy: &Proxy,
    response: &Response,
    offered: &[String],
    why: &str,
) -> ConnectError {
    fail(
        proxy,
        format!(
            "requires authentication (offers {}; {}) and the account the agent runs as cannot \
             give it ({why}): run the agent as a domain account the proxy accepts, or put \
             credentials in relay.proxy as http://user:password@host:port",
            list(offered),
            response.status_line
        ),
    )
}

fn basic_rejected(proxy: &Proxy, response: &Response, offered: &[String]) -> ConnectError {
    let basic = offered.iter().any(|s| s.eq_ignore_ascii_case("basic"));
    let what = if basic {
        "rejected the user name and password in relay.proxy: check them (special characters \
         percent-encoded, @ as %40)"
            .to_owned()
    } else {
        format!(
            "does not accept Basic (offers {}): remove the user name and password from \
             relay.proxy so that the agent authenticates as the account it runs as (Windows)",
            list(offered)
        )
    };
    fail(proxy, format!("{what} ({})", response.status_line))
}

#[cfg(test)]
mod tests;
