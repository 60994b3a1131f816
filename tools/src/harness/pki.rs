//! A throw-away certificate authority and a server certificate for `localhost`/`127.0.0.1`.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        Self::named("relay test CA")
    }

    /// A CA with this common name (a CA of another name than the relay's is "unknown" to an
    /// agent that trusts the relay's; one of the same name has the wrong key).
    pub fn named(ca_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        let ca_pem = ca_cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");
        std::fs::write(dir.path().join("relay.pem"), cert.pem() + &ca_pem).expect("write chain");
        std::fs::write(dir.path().join("relay.key"), key.serialize_pem()).expect("write key");
        Self { dir, ca_pem }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("relay.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("relay.key")
    }

    /// An HTTP client that trusts the test CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA parses");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client builds")
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
