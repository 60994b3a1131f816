//! What a `postgres://` URL's `sslmode` and `sslrootcert` mean: what libpq says they mean, so
//! that a URL pasted from a provider (or one `psql` takes) works the same here.
//!
//! | `sslmode`             | TLS                                  | the server's certificate        |
//! |-----------------------|--------------------------------------|---------------------------------|
//! | `disable`             | never                                | —                               |
//! | `allow`, `prefer` (default) | when the server offers it, else plain | not verified           |
//! | `require`             | always                               | not verified                    |
//! | `verify-ca`           | always                               | signed by a root in `sslrootcert` |
//! | `verify-full`         | always                               | that, and valid for the host name |
//!
//! As in libpq, an `sslrootcert` given with `prefer` or `require` makes them verify the chain
//! like `verify-ca`; `sslrootcert=system` takes the system's roots and makes `verify-full` the
//! default (a weaker mode with it is an error). Two differences from libpq: `allow` tries TLS
//! first (tokio-postgres has no plain-first mode; either way the connection is not verified),
//! and `verify-full` without `sslrootcert` uses the system's roots where libpq looks for
//! `~/.postgresql/root.crt` and fails without it (`verify-ca` without it is refused, as the
//! system's roots would let any public certificate pass).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use crate::store::Result;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "sslmode={value} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM (or DER) file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the system's roots.
    System,
}

/// A parsed `postgres://` URL: tokio-postgres's configuration (without the TLS settings it
/// does not know) and the TLS settings.
#[derive(Clone)]
pub struct PgUrl {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
}

impl PgUrl {
    /// Parses the URL. Errors name the setting at fault, never the password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = Some(SslMode::parse(&percent_decode(value)?)?),
                "sslrootcert" => {
                    let value = percent_decode(value)?;
                    root_cert = Some(match value.as_str() {
                        "" => return Err("sslrootcert is empty".into()),
                        "system" => RootCert::System,
                        _ => RootCert::File(PathBuf::from(value)),
                    });
                }
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                    return Err(format!(
                        "{key} is not supported (client certificates and CRLs are not)"
                    ));
                }
                _ => rest.push(pair),
            }
        }
        let rest = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("the postgres:// URL is not valid: {e}"))?;
        let mode = match (mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull => {
                return Err(format!(
                    "sslrootcert=system needs sslmode=verify-full (it is sslmode={})",
                    m.as_str()
                ));
            }
            // The chain only, against every public CA: any certificate for any name would
            // pass. libpq refuses it for that reason (it wants a root file).
            (Some(SslMode::VerifyCa), None) => {
                return Err(
                    "sslmode=verify-ca needs sslrootcert=/path/to/ca.pem (the CA that signed \
                     the server's certificate): against the system's roots any public \
                     certificate for any name would pass; for a server with a public \
                     certificate use sslmode=verify-full"
                        .into(),
                );
            }
            (m, _) => m.unwrap_or(SslMode::Prefer),
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(Self {
            config,
            mode,
            root_cert,
        })
    }

    /// The TLS settings as the URL gave them (for messages).
    pub fn setting(&self) -> String {
        match &self.root_cert {
            None => format!("sslmode={}", self.mode.as_str()),
            Some(RootCert::System) => format!("sslmode={}, sslrootcert=system", self.mode.as_str()),
            Some(RootCert::File(path)) => format!(
                "sslmode={}, sslrootcert={}",
                self.mode.as_str(),
                path.display()
            ),
        }
    }

    /// The server, without user or password (for messages).
    pub fn server(&self) -> String {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let db = self.config.get_dbname().unwrap_or("");
        format!("{}/{db}", hosts.join(","))
    }

    /// Whether the server's certificate is checked at all (libpq's `prefer`, `allow` and
    /// `require` without `sslrootcert` encrypt without checking who answers).
    pub fn verifies_server(&self) -> bool {
        matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
            || matches!(self.root_cert, Some(RootCert::File(_)))
    }

    /// The TLS connector the settings ask for; reads `sslrootcert`.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let open =
            |what: String| StoreError::Open(format!("PostgreSQL ({}): {what}", self.setting()));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| open(format!("TLS: {e}")))?;
        let roots = || -> Result<Arc<RootCertStore>> {
            match &self.root_cert {
                Some(RootCert::File(path)) => load_roots(path).map_err(open),
                Some(RootCert::System) | None => Ok(system_roots()),
            }
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => {
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots()?, provider)
                    .build()
                    .map_err(|e| open(format!("TLS: {e}")))?
            }
            (SslMode::VerifyCa, _) | (_, Some(RootCert::File(_))) => Arc::new(NoHostCheck {
                roots: Some(roots()?),
                provider,
            }),
            _ => Arc::new(NoHostCheck {
                roots: None,
                provider,
            }),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Says what failed when connecting, with what to do about it; names the server and the
    /// TLS settings, not the password.
    pub fn explain(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let at = format!("PostgreSQL at {} ({})", self.server(), self.setting());
        let roots = match &self.root_cert {
            Some(RootCert::File(path)) => format!("the certificates in {}", path.display()),
            Some(RootCert::System) | None => "the system's roots".into(),
        };
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let line = cause.to_string();
            if !text.contains(&line) {
                text = format!("{text}: {line}");
            }
            source = cause.source();
        }
        match tls_error(error) {
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => format!(
                "{at}: the server's certificate is not valid for the host name in the URL \
                 ({text}); sslmode=verify-full checks the name: connect by a name the \
                 certificate holds, or use sslmode=verify-ca to check only who signed it"
            ),
            Some(rustls::Error::InvalidCertificate(_)) => format!(
                "{at}: the server's certificate is not trusted by {roots} ({text}); give the \
                 certificate of the CA that signed it with sslrootcert=/path/to/ca.pem in the \
                 URL, or use sslmode=require to encrypt without verifying the server (what \
                 psql's default, prefer, does when the server offers TLS)"
            ),
            Some(_) => format!("{at}: TLS failed: {text}"),
            None if text.contains("server does not support TLS") => format!(
                "{at}: the server does not offer TLS, which sslmode={} asks for; turn TLS on \
                 in the server, or use sslmode=prefer (TLS when offered) or sslmode=disable",
                self.mode.as_str()
            ),
            None => format!("{at}: cannot connect: {text}"),
        }
    }
}

/// The rustls error somewhere in `error`'s causes (tokio-postgres-rustls wraps it in an
/// `io::Error`, whose `source` skips it).
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a %-escape in the URL's query is not valid".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's query is not UTF-8".to_owned())
}

fn system_roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    Arc::new(roots)
}

/// The certificates of `sslrootcert`: PEM, or one DER certificate.
fn load_roots(path: &std::path::Path) -> Result<Arc<RootCertStore>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read sslrootcert={}: {e}", path.display()))?;
    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert={} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() && bytes.first() == Some(&0x30) {
        certs.push(CertificateDer::from(bytes));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert={} holds no certificate (PEM or DER expected)",
            path.display()
        ));
    }
    Ok(Arc::new(roots))
}

/// The verifiers libpq's weaker modes mean: `prefer`/`require` without a root certificate
/// (`roots` none: encrypted, the server not verified), and `verify-ca` (or `prefer`/`require`
/// with `sslrootcert`: the chain must lead to one of `roots`). The host name is never checked;
/// the handshake's signatures always are.
#[derive(Debug)]
struct NoHostCheck {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoHostCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
