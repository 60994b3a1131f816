//! Connection attempts: which step a timeout names, what a refused connection or certificate
//! says, how `relay.ca_file` is read.

use super::tls::read_ca_file;
use super::*;

/// A relay address as a development configuration allows it (`ws://` too).
fn relay(url: &str) -> Endpoint {
    Endpoint::parse(url, true).expect("a relay URL")
}

/// A server that accepts connections and never says a word.
async fn silent() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

async fn attempt(endpoint: &Endpoint, tls: bool, plan: Plan) -> String {
    let tls = tls.then(|| tls_config(None).expect("TLS configuration"));
    let e = connect(
        endpoint,
        &Secret::default(),
        tls,
        &plan,
        Duration::from_millis(300),
    )
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
        proxy: Some(proxy::Proxy::parse(&format!("http://127.0.0.1:{port}")).expect("proxy URL")),
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

/// A CA certificate as a corporate PKI hands it out, in the two forms Windows exports.
const CA_PEM: &str = include_str!("../../tests/fixtures/corporate-ca.pem");

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

    if let Err(e) = tls_config(Some(&der)) {
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
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
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
    let endpoint = Endpoint::parse(&format!("wss://127.0.0.1:{port}/agent/v1/connect"), false)
        .expect("a relay URL");
    let direct = Plan::Fixed(Decision {
        proxy: None,
        source: proxy::Source::Config,
    });
    let tls = tls_config(Some(&ca_file)).expect("TLS configuration");
    connect(
        &endpoint,
        &Secret::default(),
        Some(tls),
        &direct,
        Duration::from_secs(20),
    )
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
