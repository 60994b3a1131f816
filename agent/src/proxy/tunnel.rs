//! The CONNECT tunnel through a proxy, with its authentication on the same connection:
//! Basic when the URL has credentials; otherwise, when the proxy answers 407 offering
//! `Negotiate` or `NTLM` and an authenticator is available (SSPI on Windows, with the account
//! the agent runs as), the multi-leg exchange
//! `CONNECT` → 407 `Proxy-Authenticate: NTLM` → `Proxy-Authorization: NTLM <token>` → 407
//! `Proxy-Authenticate: NTLM <challenge>` → `Proxy-Authorization: NTLM <token>` → 2xx.
//!
//! NTLM (and Negotiate when it falls back to NTLM) authenticates the connection, not a request:
//! once a token went out, the rest of the exchange must stay on that connection. A 407 body is
//! read and discarded when it has a Content-Length or is chunked (both bounded); without either,
//! or with `Connection: close`, the connection cannot carry the next leg: before the first token
//! a new connection is opened, after it the exchange fails saying why. The caller's connect
//! timeout bounds it all; the response head, the body and the number of legs are bounded here.
//! The authenticator's steps run on the blocking pool (SSPI may wait for a domain controller).

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Proxy, authority};
use crate::transport::ConnectError;

/// Longest response head accepted from the proxy.
const MAX_HEAD: usize = 16 * 1024;
/// Longest 407 body read (and discarded) to keep the connection; a longer one closes it.
const MAX_BODY: u64 = 64 * 1024;
/// Longest chunk-size line (or trailer line) of a chunked 407 body.
const MAX_CHUNK_LINE: usize = 1024;
/// Tokens sent in one Negotiate/NTLM exchange at most (NTLM needs 2, Kerberos 1).
const MAX_LEGS: usize = 4;
/// Longest status line repeated in an error.
const MAX_STATUS_SHOWN: usize = 200;

/// One connection-based authentication exchange (Negotiate, NTLM).
pub trait ProxyAuthenticator: Send {
    /// The scheme as sent in `Proxy-Authorization` (`Negotiate`, `NTLM`).
    fn scheme(&self) -> &str;
    /// The next token: first without a challenge, then for each challenge the proxy sent. May
    /// block (a Kerberos ticket from the KDC): the tunnel calls it from `spawn_blocking`.
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

    /// Why this provider answers no Negotiate/NTLM challenge for this proxy, with what to do
    /// instead; `None` when it does what it can.
    fn refusal(&self) -> Option<&str> {
        None
    }
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

/// For a proxy WPAD auto-detection found: no Negotiate/NTLM with the machine's credentials, as a
/// spoofed WPAD answer (DHCP or DNS on the local network) could point the agent at a proxy that
/// relays the exchange to log on elsewhere as this machine.
pub struct NoLogonForWpad;

impl AuthProvider for NoLogonForWpad {
    fn authenticator(
        &self,
        _proxy_host: &str,
        _offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String> {
        Ok(None)
    }

    fn refusal(&self) -> Option<&str> {
        Some(
            "the agent does not answer Negotiate/NTLM with the account it runs as for a proxy \
             found by WPAD auto-detection (relay.proxy = \"auto\"), since a spoofed WPAD answer \
             could relay that logon; name the proxy in relay.proxy as http://host:port, give its \
             PAC file as relay.proxy = \"pac:<url>\", or set it in the WinHTTP settings (netsh \
             winhttp set proxy)",
        )
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
        let challenge = match &exchange {
            None => {
                let chosen = auth
                    .authenticator(&proxy.host, &offered)
                    .map_err(|e| account_cannot(proxy, &response, &offered, &e))?;
                let Some(chosen) = chosen else {
                    return Err(requires_auth(proxy, &response, &offered, auth.refusal()));
                };
                if !reusable {
                    // No token went out yet: a new connection may start the exchange.
                    stream = open(proxy).await?;
                }
                exchange = Some(chosen);
                None
            }
            Some(current) => {
                let scheme = current.scheme();
                let Some(challenge) = response.challenge(scheme) else {
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
                Some(challenge)
            }
        };
        let current = exchange.take().expect("an exchange was chosen above");
        let (current, token) = step(proxy, current, challenge).await?;
        let token = token.map_err(|e| account_cannot(proxy, &response, &offered, &e))?;
        let scheme = exchange.insert(current).scheme();
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

/// One step of the exchange, off the async threads: SSPI may wait for a domain controller.
async fn step(
    proxy: &Proxy,
    mut current: Box<dyn ProxyAuthenticator>,
    challenge: Option<Vec<u8>>,
) -> Result<(Box<dyn ProxyAuthenticator>, Result<Vec<u8>, String>), ConnectError> {
    tokio::task::spawn_blocking(move || {
        let token = current.step(challenge.as_deref());
        (current, token)
    })
    .await
    .map_err(|e| {
        fail(
            proxy,
            format!("asked for authentication and the exchange failed: {e}"),
        )
    })
}

async fn open(proxy: &Proxy) -> Result<TcpStream, ConnectError> {
    TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|cause| ConnectError::Tcp {
            target: format!("proxy {proxy}"),
            cause,
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

    /// The challenges of all `Proxy-Authenticate` headers, in order: (scheme, what follows it).
    fn challenges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values("proxy-authenticate").flat_map(challenges)
    }

    /// The schemes of all `Proxy-Authenticate` challenges, in order, without parameters.
    fn offered_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = Vec::new();
        for (scheme, _) in self.challenges() {
            if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                schemes.push(scheme.to_owned());
            }
        }
        schemes
    }

    /// The base64 challenge of `Proxy-Authenticate: <scheme> <challenge>`.
    fn challenge(&self, scheme: &str) -> Option<&str> {
        self.challenges()
            .find(|(name, rest)| name.eq_ignore_ascii_case(scheme) && !rest.is_empty())
            .map(|(_, rest)| rest)
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

/// The challenges in one `Proxy-Authenticate` value (RFC 9110 11.6.1): comma-separated elements
/// (commas inside quotes do not count); an element whose first token is followed by `=` is a
/// parameter of the challenge before it, any other starts a challenge with that token as scheme.
fn challenges(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                elements.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push(&value[start..]);
    elements.into_iter().filter_map(|element| {
        let element = element.trim();
        let end = element
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(element.len());
        let (name, rest) = element.split_at(end);
        let parameter = rest.trim_start().starts_with('=');
        (!name.is_empty() && !parameter).then(|| (name, rest.trim()))
    })
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
    if chunked {
        return Ok(discard_chunked(stream).await && keeps);
    }
    let Some(length) = length else {
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

/// Reads and drops a chunked body, at most [`MAX_BODY`] bytes of chunks; whether it was read
/// to its end (and the connection can go on).
async fn discard_chunked(stream: &mut TcpStream) -> bool {
    let mut total = 0u64;
    loop {
        let Some(line) = read_line(stream).await else {
            return false;
        };
        let size = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = u64::from_str_radix(size, 16) else {
            return false;
        };
        if size == 0 {
            break;
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return false;
        }
        let mut chunk = vec![0u8; usize::try_from(size).unwrap_or(0) + 2];
        if stream.read_exact(&mut chunk).await.is_err() || !chunk.ends_with(b"\r\n") {
            return false;
        }
    }
    // Trailers, up to the empty line; as many as the body's bound allows.
    let mut trailers = 0u64;
    loop {
        match read_line(stream).await {
            Some(line) if line.is_empty() => return true,
            Some(line) => {
                trailers += line.len() as u64;
                if trailers > MAX_BODY {
                    return false;
                }
            }
            None => return false,
        }
    }
}

/// One CRLF-terminated line of at most [`MAX_CHUNK_LINE`] bytes, without the CRLF.
async fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        if line.len() > MAX_CHUNK_LINE {
            return None;
        }
        line.push(stream.read_u8().await.ok()?);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).ok()
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

fn requires_auth(
    proxy: &Proxy,
    response: &Response,
    offered: &[String],
    refusal: Option<&str>,
) -> ConnectError {
    let offers_windows = offered
        .iter()
        .any(|s| s.eq_ignore_ascii_case("negotiate") || s.eq_ignore_ascii_case("ntlm"));
    let how = if let Some(why) = refusal.filter(|_| offers_windows) {
        why
    } else if offers_windows && !cfg!(windows) {
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
