//! An HTTP CONNECT proxy on loopback that counts the tunnels it opened, optionally requiring
//! authentication: Basic with given credentials, or NTLM (which it never lets through: the
//! agent on Linux has no NTLM, so this tests what the agent says). It records every
//! `Proxy-Authorization` it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy asks of its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAuth {
    None,
    /// `user:password` as it must arrive, decoded.
    Basic(String),
    /// Offers Negotiate and NTLM; accepts nothing.
    Ntlm,
}

pub struct ConnectProxy {
    pub port: u16,
    tunnels: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> Self {
        Self::requiring(ProxyAuth::None).await
    }

    pub async fn requiring(auth: ProxyAuth) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            auth,
            tunnels: tunnels.clone(),
            authorizations: authorizations.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, state.clone()));
            }
        });
        Self {
            port,
            tunnels,
            authorizations,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// The `Proxy-Authorization` of every CONNECT received, in order (`None`: without one).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.authorizations.lock().expect("authorizations").clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    auth: ProxyAuth,
    tunnels: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
}

const ASK_BASIC: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
    Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n";
const ASK_NTLM: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
    Proxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n";

async fn serve(mut client: TcpStream, state: Arc<State>) {
    // Several CONNECTs may come on one connection (after a 407).
    loop {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            match client.read_u8().await {
                Ok(byte) => head.push(byte),
                Err(_) => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut parts = head.split_whitespace();
        let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
            let _ = client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                .await;
            return;
        };
        let authorization = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("proxy-authorization")
                .then(|| value.trim().to_owned())
        });
        state
            .authorizations
            .lock()
            .expect("authorizations")
            .push(authorization.clone());
        let refusal = match &state.auth {
            ProxyAuth::None => None,
            ProxyAuth::Basic(expected) => {
                let wanted = format!("Basic {}", base64_encode(expected.as_bytes()));
                (authorization.as_deref() != Some(wanted.as_str())).then_some(ASK_BASIC)
            }
            ProxyAuth::Ntlm => Some(ASK_NTLM),
        };
        if let Some(answer) = refusal {
            if client.write_all(answer).await.is_err() {
                return;
            }
            continue;
        }
        // Loopback only: this proxy never reaches anything off the machine.
        let port = target.rsplit(':').next().unwrap_or_default();
        let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        state.tunnels.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
}

/// Standard base64 with padding (the tests crate needs no dependency for this).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("alice:p@ss/w0rd", "YWxpY2U6cEBzcy93MHJk"),
        ] {
            assert_eq!(super::base64_encode(plain.as_bytes()), encoded);
        }
    }
}
