//! The proxy's answer to CONNECT: its response head (status, headers, the challenges of
//! `Proxy-Authenticate`), and a 407 body read and dropped, bounded, so the connection can carry
//! the next leg of the exchange.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{Proxy, TunnelError, fail};

/// Longest response head accepted from the proxy.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Longest 407 body read (and discarded) to keep the connection; a longer one closes it.
const MAX_BODY: u64 = 64 * 1024;
/// Longest chunk-size line (or trailer line) of a chunked 407 body.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest status line repeated in an error.
const MAX_STATUS_SHOWN: usize = 200;

/// A proxy's response head.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    /// Printable, bounded: safe for an error.
    pub(super) status_line: String,
    pub(super) http10: bool,
    pub(super) headers: Vec<(String, String)>,
}

impl Response {
    pub(super) fn parse(head: &[u8]) -> Option<Self> {
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

    pub(super) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The challenges of all `Proxy-Authenticate` headers, in order: (scheme, what follows it).
    pub(super) fn challenges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values("proxy-authenticate").flat_map(challenges)
    }

    /// The schemes of all `Proxy-Authenticate` challenges, in order, without parameters.
    pub(super) fn offered_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = Vec::new();
        for (scheme, _) in self.challenges() {
            if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                schemes.push(scheme.to_owned());
            }
        }
        schemes
    }

    /// The base64 challenge of `Proxy-Authenticate: <scheme> <challenge>`.
    pub(super) fn challenge(&self, scheme: &str) -> Option<&str> {
        self.challenges()
            .find(|(name, rest)| name.eq_ignore_ascii_case(scheme) && !rest.is_empty())
            .map(|(_, rest)| rest)
    }

    /// Whether the proxy keeps the connection after this response.
    pub(super) fn keeps_connection(&self) -> bool {
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
pub(super) async fn read_head(
    stream: &mut TcpStream,
    proxy: &Proxy,
) -> Result<Response, TunnelError> {
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
pub(super) async fn discard_body(
    stream: &mut TcpStream,
    proxy: &Proxy,
    response: &Response,
) -> Result<bool, TunnelError> {
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
