//! TLS to the relay: the client configuration (the system's trust plus `relay.ca_file`) and
//! what a refused certificate's error says to do.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
#[cfg(not(windows))]
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::ConnectError;
use super::presented::{self, Presented};

/// A TLS failure with what to do about it: a certificate from a CA the agent does not trust
/// is almost always a TLS-inspecting proxy, and no retry changes it. `presented` names the
/// refused certificate as the server sent it (whom it is for, who issued it).
pub(super) fn tls_failure(
    e: std::io::Error,
    host: &str,
    presented: Option<Presented>,
) -> ConnectError {
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

/// The TLS client configuration for the relay: the system's trust plus `relay.ca_file`.
///
/// On Windows the relay's certificate is checked first by Windows' own chain engine
/// (`rustls-platform-verifier`): the certificate store as the machine's group policy fills it,
/// with roots Windows fetches on demand (automatic root update, which a root list read once from
/// the store would miss), revocation checked where it can be (unknown revocation does not fail,
/// as in browsers); when that does not trust it, `ca_file`'s certificates are tried (webpki).
/// Elsewhere: the system's root certificates (`rustls-native-certs`) plus `ca_file`. Either way a
/// refused certificate's names are noted for the error (module `presented`).
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ConnectError> {
    let extra = match ca_file {
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
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let failed =
        |what: String| ConnectError::Tls(format!("relay.ca_file {}: {what}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    if bytes.first() == Some(&0x30) {
        // A DER certificate is an ASN.1 SEQUENCE; PEM text never starts with that byte.
        let cert = CertificateDer::from(bytes);
        webpki_parse_check(&cert).map_err(failed)?;
        return Ok(vec![cert.into_owned()]);
    }
    let text = crate::text::decode_text(&bytes).map_err(failed)?;
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
