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
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use self::response::{Response, discard_body, read_head};
use super::{Proxy, authority};

mod response;

/// Why a tunnel could not be opened (the transport reports it as a connection error).
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    // The cause is part of the message, not a `source`: a chain printed with `{:#}` would say
    // it twice.
    #[error("cannot reach {target}: {cause}")]
    Tcp {
        target: String,
        cause: std::io::Error,
    },
    /// Says which proxy, what it answered and what to do.
    #[error("{0}")]
    Proxy(String),
}

/// Tokens sent in one Negotiate/NTLM exchange at most (NTLM needs 2, Kerberos 1).
const MAX_LEGS: usize = 4;

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
) -> Result<TcpStream, TunnelError> {
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
) -> Result<(Box<dyn ProxyAuthenticator>, Result<Vec<u8>, String>), TunnelError> {
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

async fn open(proxy: &Proxy) -> Result<TcpStream, TunnelError> {
    TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|cause| TunnelError::Tcp {
            target: format!("proxy {proxy}"),
            cause,
        })
}

async fn send(
    stream: &mut TcpStream,
    proxy: &Proxy,
    target: &str,
    authorization: Option<&str>,
) -> Result<(), TunnelError> {
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

fn fail(proxy: &Proxy, what: String) -> TunnelError {
    TunnelError::Proxy(format!("proxy {proxy} {what}"))
}

fn list(offered: &[String]) -> String {
    if offered.is_empty() {
        "no scheme named".to_owned()
    } else {
        offered.join(", ")
    }
}

fn refused(proxy: &Proxy, target: &str, response: &Response) -> TunnelError {
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
) -> TunnelError {
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
) -> TunnelError {
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

fn basic_rejected(proxy: &Proxy, response: &Response, offered: &[String]) -> TunnelError {
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
