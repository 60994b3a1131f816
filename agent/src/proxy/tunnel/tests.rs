//! The CONNECT handshake against a scripted proxy: what the proxy received is recorded and
//! asserted on, connection by connection.
//!
//! One file although long: every test drives the same scripted proxy ([`FakeProxy`]) through
//! one exchange (Basic, Negotiate/NTLM legs, bodies kept or closed, refusals), and each reads
//! best beside the others it differs from by one answer.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::response::MAX_HEAD;
use super::*;

/// What the fake proxy does with one request.
enum Reply {
    /// Write this and keep the connection.
    Keep(String),
    /// Write this and close.
    Close(String),
    /// `200`, then echo whatever comes.
    Tunnel,
}

/// One request as the proxy saw it: (connection number, request head).
type Log = Arc<Mutex<Vec<(usize, String)>>>;

struct FakeProxy {
    port: u16,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProxy {
    /// `script(connection, head)` answers each request.
    async fn start(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log: Log = Arc::default();
        let script = Arc::new(script);
        let recorded = log.clone();
        let task = tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, connection, script.clone(), recorded.clone()));
                connection += 1;
            }
        });
        Self { port, log, task }
    }

    fn proxy(&self) -> Proxy {
        Proxy {
            host: "127.0.0.1".into(),
            port: self.port,
            credentials: None,
        }
    }

    fn requests(&self) -> Vec<(usize, String)> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut socket: TcpStream,
    connection: usize,
    script: Arc<impl Fn(usize, &str) -> Reply + Send + Sync>,
    log: Log,
) {
    loop {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read_u8().await {
                Ok(byte) => head.push(byte),
                Err(_) => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        log.lock().expect("log").push((connection, head.clone()));
        match script(connection, &head) {
            Reply::Keep(answer) => {
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Close(answer) => {
                let _ = socket.write_all(answer.as_bytes()).await;
                return;
            }
            Reply::Tunnel => {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await;
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                return;
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn authorization(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
}

/// A stand-in for SSPI's NTLM: "T1" first, then "T2|" + the challenge.
struct FakeNtlm {
    scheme: &'static str,
}

impl ProxyAuthenticator for FakeNtlm {
    fn scheme(&self) -> &str {
        self.scheme
    }

    fn step(&mut self, challenge: Option<&[u8]>) -> Result<Vec<u8>, String> {
        Ok(match challenge {
            None => b"T1".to_vec(),
            Some(c) => [b"T2|".as_slice(), c].concat(),
        })
    }
}

/// Offers [`FakeNtlm`] for `scheme` when the proxy offers it; records what was offered.
struct FakeProvider {
    scheme: &'static str,
    offered: Mutex<Vec<Vec<String>>>,
}

impl FakeProvider {
    fn new(scheme: &'static str) -> Self {
        Self {
            scheme,
            offered: Mutex::default(),
        }
    }
}

impl AuthProvider for FakeProvider {
    fn authenticator(
        &self,
        proxy_host: &str,
        offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String> {
        assert_eq!(proxy_host, "127.0.0.1");
        self.offered.lock().expect("offered").push(offered.to_vec());
        Ok(offered
            .iter()
            .any(|s| s.eq_ignore_ascii_case(self.scheme))
            .then(|| {
                Box::new(FakeNtlm {
                    scheme: self.scheme,
                }) as Box<dyn ProxyAuthenticator>
            }))
    }
}

const ASK: &str = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
                   Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 5\r\n\r\nnope!";

/// NTLM as a proxy does it: the challenge names the connection it was issued on, and only the
/// answer to it on that same connection opens the tunnel.
fn ntlm_proxy(close_after_challenge: bool) -> impl Fn(usize, &str) -> Reply + Send + Sync {
    move |connection, head| match authorization(head) {
        None => Reply::Keep(ASK.into()),
        Some(value) if value == format!("NTLM {}", b64(b"T1")) => {
            let answer = format!(
                "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM {}\r\n\
                 Content-Length: 0\r\n{}\r\n",
                b64(format!("C1-{connection}").as_bytes()),
                if close_after_challenge {
                    "Connection: close\r\n"
                } else {
                    ""
                }
            );
            if close_after_challenge {
                Reply::Close(answer)
            } else {
                Reply::Keep(answer)
            }
        }
        Some(value)
            if value == format!("NTLM {}", b64(format!("T2|C1-{connection}").as_bytes())) =>
        {
            Reply::Tunnel
        }
        Some(_) => Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
        ),
    }
}

async fn echoes(mut stream: TcpStream) {
    stream.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping", "the tunnel carries bytes both ways");
}

#[tokio::test]
async fn the_ntlm_exchange_runs_on_one_connection_and_opens_the_tunnel() {
    let fake = FakeProxy::start(ntlm_proxy(false)).await;
    let provider = FakeProvider::new("NTLM");
    let stream = tunnel(&fake.proxy(), "relay.example.com", 443, &provider)
        .await
        .expect("tunnel");
    echoes(stream).await;

    let requests = fake.requests();
    let connections: Vec<usize> = requests.iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [0, 0, 0], "{requests:#?}");
    let auth: Vec<Option<&str>> = requests.iter().map(|(_, h)| authorization(h)).collect();
    let t1 = format!("NTLM {}", b64(b"T1"));
    let t2 = format!("NTLM {}", b64(b"T2|C1-0"));
    assert_eq!(auth, [None, Some(t1.as_str()), Some(t2.as_str())]);
    for (_, head) in &requests {
        assert!(
            head.starts_with(
                "CONNECT relay.example.com:443 HTTP/1.1\r\nHost: relay.example.com:443\r\n"
            ),
            "{head}"
        );
    }
    assert_eq!(
        *provider.offered.lock().expect("offered"),
        [vec!["NTLM".to_owned(), "Basic".to_owned()]]
    );
}

#[tokio::test]
async fn a_407_that_closes_before_the_first_token_is_followed_on_a_new_connection() {
    let ntlm = ntlm_proxy(false);
    let fake = FakeProxy::start(move |connection, head| {
        if connection == 0 {
            // No length, no keep-alive: the body would end with the connection.
            Reply::Close(
                "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
                 Connection: close\r\n\r\ngo away"
                    .into(),
            )
        } else {
            ntlm(connection, head)
        }
    })
    .await;
    let stream = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect("tunnel");
    echoes(stream).await;
    let connections: Vec<usize> = fake.requests().iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [0, 1, 1]);
}

#[tokio::test]
async fn a_proxy_that_closes_after_its_challenge_fails_saying_ntlm_needs_one_connection() {
    let fake = FakeProxy::start(ntlm_proxy(true)).await;
    let error = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect_err("cannot finish on another connection");
    let text = error.to_string();
    assert!(
        text.contains(&format!("proxy 127.0.0.1:{}", fake.port)),
        "{text}"
    );
    assert!(
        text.contains("closed the connection after its NTLM challenge"),
        "{text}"
    );
    assert!(text.contains("NTLM authenticates one connection"), "{text}");
    assert_eq!(fake.requests().len(), 2, "no third attempt elsewhere");
}

#[tokio::test]
async fn without_an_authenticator_the_error_names_the_offers_and_what_to_do() {
    let fake = FakeProxy::start(ntlm_proxy(false)).await;
    let error = tunnel(&fake.proxy(), "relay.example.com", 443, &NoAuth)
        .await
        .expect_err("no way to authenticate");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "proxy 127.0.0.1:{} requires authentication (offers NTLM, Basic; HTTP/1.1 407 Proxy \
             Authentication Required)",
            fake.port
        )),
        "{text}"
    );
    assert!(
        text.contains("put credentials in relay.proxy as http://user:password@host:port"),
        "{text}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_negotiate_offer_is_answered_with_negotiate() {
    let fake = FakeProxy::start(|_, head| match authorization(head) {
        None => Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n\
             Proxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n"
                .into(),
        ),
        // Kerberos: one token is enough.
        Some(value) if value == format!("Negotiate {}", b64(b"T1")) => Reply::Tunnel,
        Some(_) => Reply::Close("HTTP/1.1 403 Forbidden\r\n\r\n".into()),
    })
    .await;
    let stream = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("Negotiate"),
    )
    .await
    .expect("tunnel");
    echoes(stream).await;
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_refused_account_says_so() {
    let fake = FakeProxy::start(|_, head| match authorization(head) {
        None => Reply::Keep(ASK.into()),
        // Whatever the token: the account is not let through.
        Some(_) => Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
        ),
    })
    .await;
    let error = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("refused the NTLM credentials of the account the agent runs as"),
        "{text}"
    );
}

#[tokio::test]
async fn the_exchange_gives_up_after_a_bounded_number_of_legs() {
    let fake = FakeProxy::start(|_, _| {
        Reply::Keep(format!(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM {}\r\n\
             Content-Length: 0\r\n\r\n",
            b64(b"again")
        ))
    })
    .await;
    let error = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect_err("endless");
    assert!(error.to_string().contains("after 4 tokens"), "{error}");
    assert_eq!(fake.requests().len(), 1 + MAX_LEGS);
}

#[tokio::test]
async fn basic_credentials_are_percent_decoded_and_never_repeated_in_errors() {
    let fake = FakeProxy::start(|_, _| Reply::Keep(ASK.into())).await;
    let proxy = Proxy::parse(&format!(
        "http://alice:p%40ss%2Fw0rd@127.0.0.1:{}",
        fake.port
    ))
    .expect("valid");
    let error = tunnel(&proxy, "relay.example.com", 443, &FakeProvider::new("NTLM"))
        .await
        .expect_err("rejected");
    let sent = b64(b"alice:p@ss/w0rd");
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        1,
        "no NTLM attempt when the URL has credentials"
    );
    assert_eq!(
        authorization(&requests[0].1),
        Some(format!("Basic {sent}").as_str())
    );
    let text = format!("{error} {error:?} {proxy:?}");
    assert!(
        text.contains("rejected the user name and password in relay.proxy"),
        "{text}"
    );
    for secret in ["p@ss", "p%40ss", "w0rd", sent.as_str()] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn basic_credentials_to_a_proxy_that_offers_only_ntlm_say_to_remove_them() {
    let fake = FakeProxy::start(|_, _| {
        Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
        )
    })
    .await;
    let mut proxy = fake.proxy();
    proxy.credentials = Some(super::super::Credentials::new("u", "p"));
    let error = tunnel(&proxy, "relay.example.com", 443, &NoAuth)
        .await
        .expect_err("rejected");
    assert!(
        error
            .to_string()
            .contains("does not accept Basic (offers NTLM): remove the user name and password"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refused_connect_names_the_proxy_the_target_and_the_status() {
    let fake = FakeProxy::start(|_, _| Reply::Close("HTTP/1.1 403 Forbidden\r\n\r\n".into())).await;
    let error = tunnel(&fake.proxy(), "relay.example.com", 443, &NoAuth)
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "proxy 127.0.0.1:{} refused CONNECT to relay.example.com:443 (HTTP/1.1 403 Forbidden)",
            fake.port
        )),
        "{text}"
    );
}

#[tokio::test]
async fn an_endless_response_head_is_refused() {
    let fake = FakeProxy::start(|_, _| {
        Reply::Close(format!(
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        ))
    })
    .await;
    let error = tunnel(&fake.proxy(), "relay.example.com", 443, &NoAuth)
        .await
        .expect_err("too large");
    assert!(error.to_string().contains("response head over"), "{error}");
}

#[tokio::test]
async fn an_ipv6_relay_is_bracketed_in_connect() {
    let fake = FakeProxy::start(|_, _| Reply::Tunnel).await;
    let stream = tunnel(&fake.proxy(), "fd00::1", 443, &NoAuth)
        .await
        .expect("tunnel");
    echoes(stream).await;
    assert!(
        fake.requests()[0]
            .1
            .starts_with("CONNECT [fd00::1]:443 HTTP/1.1\r\n")
    );
}

/// An authenticator that cannot even start (SSPI without credentials).
struct NoCredentials;

impl AuthProvider for NoCredentials {
    fn authenticator(
        &self,
        _proxy_host: &str,
        _offered: &[String],
    ) -> Result<Option<Box<dyn ProxyAuthenticator>>, String> {
        Err("SEC_E_NO_CREDENTIALS".into())
    }
}

#[tokio::test]
async fn an_account_without_credentials_gets_the_reason_and_what_to_do() {
    let fake = FakeProxy::start(ntlm_proxy(false)).await;
    let error = tunnel(&fake.proxy(), "relay.example.com", 443, &NoCredentials)
        .await
        .expect_err("no credentials");
    let text = error.to_string();
    assert!(
        text.contains(
            "requires authentication (offers NTLM, Basic; HTTP/1.1 407 Proxy Authentication \
             Required) and the account the agent runs as cannot give it (SEC_E_NO_CREDENTIALS)"
        ),
        "{text}"
    );
    assert!(
        text.contains("put credentials in relay.proxy as http://user:password@host:port"),
        "{text}"
    );
}

/// [`ntlm_proxy`] with its 407 bodies sent chunked (with an extension and a trailer).
fn chunked(answer: String) -> String {
    let head = answer
        .split("\r\n\r\n")
        .next()
        .expect("a head")
        .lines()
        .filter(|l| !l.starts_with("Content-Length"))
        .collect::<Vec<_>>()
        .join("\r\n");
    format!(
        "{head}\r\nTransfer-Encoding: chunked\r\n\r\n5;note=x\r\nnope!\r\n3\r\n :(\r\n0\r\n\
         X-Trailer: 1\r\n\r\n"
    )
}

#[tokio::test]
async fn a_chunked_407_body_is_discarded_and_the_connection_kept() {
    let ntlm = ntlm_proxy(false);
    let fake = FakeProxy::start(move |connection, head| match ntlm(connection, head) {
        Reply::Keep(answer) => Reply::Keep(chunked(answer)),
        other => other,
    })
    .await;
    let stream = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect("tunnel");
    echoes(stream).await;
    let connections: Vec<usize> = fake.requests().iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [0, 0, 0]);
}

#[tokio::test]
async fn a_chunked_407_body_over_the_bound_is_not_read_to_its_end() {
    let fake = FakeProxy::start(|_, head| match authorization(head) {
        None => Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n\
             Transfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n"
                .into(),
        ),
        Some(_) => Reply::Tunnel,
    })
    .await;
    let stream = tunnel(
        &fake.proxy(),
        "relay.example.com",
        443,
        &FakeProvider::new("NTLM"),
    )
    .await
    .expect("tunnel");
    echoes(stream).await;
    let connections: Vec<usize> = fake.requests().iter().map(|(c, _)| *c).collect();
    assert_eq!(
        connections,
        [0, 1],
        "the first token goes on a new connection"
    );
}

#[test]
fn several_challenges_in_one_header_are_all_offered() {
    let response = Response::parse(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Negotiate, NTLM\r\n\
          Proxy-Authenticate: NTLM, Basic realm=\"a, b\", charset=\"UTF-8\", Digest realm=x, \
          nonce=\"1\"\r\n\r\n",
    )
    .expect("parses");
    assert_eq!(
        response.offered_schemes(),
        ["Negotiate", "NTLM", "Basic", "Digest"]
    );
    let response = Response::parse(
        b"HTTP/1.1 407 No\r\nProxy-Authenticate: Basic realm=\"x\", NTLM TlRMTVNTUAACAA==\r\n\r\n",
    )
    .expect("parses");
    assert_eq!(response.offered_schemes(), ["Basic", "NTLM"]);
    assert_eq!(response.challenge("NTLM"), Some("TlRMTVNTUAACAA=="));
    assert_eq!(response.challenge("Negotiate"), None);
}

#[tokio::test]
async fn a_proxy_found_by_wpad_gets_no_windows_logon_and_the_error_says_why() {
    let fake = FakeProxy::start(|_, _| {
        Reply::Keep(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate, NTLM\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
        )
    })
    .await;
    let error = tunnel(&fake.proxy(), "relay.example.com", 443, &NoLogonForWpad)
        .await
        .expect_err("no logon for a WPAD proxy");
    let text = error.to_string();
    assert!(text.contains("offers Negotiate, NTLM"), "{text}");
    assert!(text.contains("WPAD auto-detection"), "{text}");
    assert!(text.contains("pac:<url>"), "{text}");
    assert_eq!(fake.requests().len(), 1, "no token went out");
}
