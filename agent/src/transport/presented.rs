//! What the relay's certificate says about itself, for the message when it is refused: whom it
//! is for and who issued it, as the server presented it. "Issued by CN=Corp Proxy CA, O=Acme"
//! tells a consultant that a TLS-inspecting proxy answers, and which CA `relay.ca_file` needs.
//!
//! rustls does not keep the peer's certificates of a handshake that failed, so the verifier is
//! wrapped ([`Noting`]): it delegates every decision to the real verifier (webpki, or Windows'
//! chain engine) and, when that refuses the certificate, notes its names for the connection
//! being opened ([`noting`], a task-local slot; outside it nothing is noted). Nothing about the
//! decision changes, nor the alert the server receives.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_cert::der::Decode;

tokio::task_local! {
    /// The refused certificate's names, for the connection [`noting`] runs.
    static REFUSED: RefCell<Option<Presented>>;
}

/// Runs `connect` (a TLS handshake), and says what the certificate its verifier refused, if
/// any, was: a [`Noting`] verifier records it.
pub async fn noting<F: Future>(connect: F) -> (F::Output, Option<Presented>) {
    let mut scoped = std::pin::pin!(REFUSED.scope(RefCell::new(None), connect));
    let output = scoped.as_mut().await;
    let presented = scoped.as_mut().take_value().and_then(RefCell::into_inner);
    (output, presented)
}

/// Longest name quoted: a certificate's names come from the server, and a log line is no place
/// for kilobytes of them.
const MAX_NAME_CHARS: usize = 200;

/// The names of a certificate chain as the server sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented {
    /// The relay's (end-entity) certificate's subject, RFC 4514 style ("CN=relay, O=Acme").
    pub subject: Option<String>,
    /// Who issued it.
    pub issuer: Option<String>,
    /// Who issued the last certificate the server sent along (the CA a chain leads up to),
    /// when that is not the end-entity's issuer itself.
    pub top_issuer: Option<String>,
}

impl Presented {
    /// Reads the names; what does not parse stays `None`.
    pub fn of(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Self {
        let (subject, issuer) = match names(end_entity) {
            Some((subject, issuer)) => (subject, issuer),
            None => (None, None),
        };
        let top_issuer = intermediates
            .last()
            .and_then(names)
            .and_then(|(_, top)| top)
            .filter(|top| Some(top) != issuer.as_ref());
        Self {
            subject,
            issuer,
            top_issuer,
        }
    }

    /// The CA the chain leads up to as far as the server sent it: the one to trust when the
    /// chain is a TLS-inspecting proxy's.
    pub fn root(&self) -> Option<&str> {
        self.top_issuer.as_deref().or(self.issuer.as_deref())
    }
}

impl fmt::Display for Presented {
    /// "it is for CN=localhost, issued by CN=Corp Proxy CA, O=Acme".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.subject, &self.issuer) {
            (None, None) => return f.write_str("its names could not be read"),
            (Some(subject), Some(issuer)) => write!(f, "it is for {subject}, issued by {issuer}")?,
            (Some(subject), None) => write!(f, "it is for {subject} (its issuer is unreadable)")?,
            (None, Some(issuer)) => write!(f, "it is issued by {issuer}")?,
        }
        if let Some(top) = &self.top_issuer {
            write!(f, "; the chain sent with it leads up to {top}")?;
        }
        Ok(())
    }
}

/// A certificate's subject and issuer.
fn names(cert: &CertificateDer<'_>) -> Option<(Option<String>, Option<String>)> {
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let tbs = &cert.tbs_certificate;
    Some((name(&tbs.subject), name(&tbs.issuer)))
}

/// A distinguished name as RFC 4514 writes it (most specific first), with ", " between the
/// parts; `None` when empty.
fn name(name: &x509_cert::name::Name) -> Option<String> {
    use std::fmt::Write;
    let mut text = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        // RFC 4514 escaping (control characters included) is x509-cert's; writing into a
        // String returns its error rather than panicking as `to_string` would.
        write!(text, "{rdn}").ok()?;
    }
    if text.chars().count() > MAX_NAME_CHARS {
        text = text.chars().take(MAX_NAME_CHARS).collect::<String>() + "…";
    }
    (!text.is_empty()).then_some(text)
}

/// Verifies as `inner` does and notes the names of a certificate it refuses (see [`noting`]).
/// Without `inner` (no root certificate at all) every certificate is refused as from an
/// unknown issuer, as webpki would with an empty root store.
#[derive(Debug)]
pub struct Noting {
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Noting {
    pub fn new(inner: Option<Arc<dyn ServerCertVerifier>>, provider: Arc<CryptoProvider>) -> Self {
        Self { inner, provider }
    }
}

impl ServerCertVerifier for Noting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if let Err(rustls::Error::InvalidCertificate(_)) = &verdict {
            // Outside `noting` there is no slot, and nothing to note.
            let _ = REFUSED.try_with(|slot| {
                *slot.borrow_mut() = Some(Presented::of(end_entity, intermediates));
            });
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(inner) => inner.verify_tls12_signature(message, cert, dss),
            None => rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(inner) => inner.verify_tls13_signature(message, cert, dss),
            None => rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.inner {
            Some(inner) => inner.supported_verify_schemes(),
            None => self
                .provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.requires_raw_public_keys())
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner
            .as_ref()
            .and_then(|inner| inner.root_hint_subjects())
    }
}
