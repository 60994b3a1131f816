//! TLS as TDS 7.x carries it (MS-TDS 2.2.6.5, 3.3.5.2): after the PRELOGIN exchange the TLS
//! handshake records travel as the payload of PRELOGIN (0x12) packets; once it completes, TLS
//! records carry the TDS packets directly on the socket — for the whole connection, or, when
//! both sides said `ENCRYPT_OFF`, for the LOGIN7 packet only, in plain text after it.
//!
//! Built on rustls's low-level [`ServerConnection`] (`read_tls` / `process_new_packets` /
//! `write_tls`), so the connection's own thread decides where each byte goes.
//! TLS 1.2 only, as SQL Server negotiates inside a TDS 7.x prelogin (TLS 1.3 needs TDS 8.0).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::wire;

/// A server TLS configuration from a PEM certificate chain (server certificate first) and its
/// PEM private key.
pub fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate chain is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the private key is not a valid PEM key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| format!("TLS 1.2 is not available: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    // No session tickets: nothing may follow the handshake that the client would read as data.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// [`server_config`] from files.
pub fn server_config_from_files(
    chain: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    server_config(&read(chain)?, &read(key)?)
        .map_err(|e| format!("{} / {}: {e}", chain.display(), key.display()))
}

enum State {
    Plain,
    /// Handshake records inside PRELOGIN packets; `pending` holds a packet not yet whole.
    Handshake {
        tls: Box<ServerConnection>,
        pending: Vec<u8>,
        login_only: bool,
    },
    Tls {
        tls: Box<ServerConnection>,
        login_only: bool,
    },
}

/// The connection's encryption layer between the socket and the TDS packets.
pub struct Channel {
    state: State,
}

impl Default for Channel {
    fn default() -> Self {
        Self::plain()
    }
}

impl Channel {
    pub fn plain() -> Self {
        Self {
            state: State::Plain,
        }
    }

    /// Expects the client's TLS handshake next, in PRELOGIN packets.
    pub fn start_handshake(
        &mut self,
        config: Arc<rustls::ServerConfig>,
        login_only: bool,
    ) -> Result<(), String> {
        let tls = ServerConnection::new(config).map_err(|e| format!("TLS setup failed: {e}"))?;
        self.state = State::Handshake {
            tls: Box::new(tls),
            pending: Vec::new(),
            login_only,
        };
        Ok(())
    }

    /// Whether a partly received handshake packet is waiting for the rest.
    pub fn partial(&self) -> bool {
        matches!(&self.state, State::Handshake { pending, .. } if !pending.is_empty())
    }

    pub fn handshaking(&self) -> bool {
        matches!(self.state, State::Handshake { .. })
    }

    /// Takes bytes from the socket: decrypted TDS bytes go to `plain`, bytes for the socket
    /// (handshake answers, alerts) to `send`. An error ends the connection (after `send`).
    pub fn receive(
        &mut self,
        bytes: &[u8],
        plain: &mut Vec<u8>,
        send: &mut Vec<u8>,
    ) -> Result<(), String> {
        match std::mem::replace(&mut self.state, State::Plain) {
            State::Plain => {
                plain.extend_from_slice(bytes);
                Ok(())
            }
            State::Handshake {
                mut tls,
                mut pending,
                login_only,
            } => {
                pending.extend_from_slice(bytes);
                loop {
                    let Some(packet) =
                        wire::take_packet(&mut pending).map_err(|e| e.to_string())?
                    else {
                        self.state = State::Handshake {
                            tls,
                            pending,
                            login_only,
                        };
                        return Ok(());
                    };
                    if packet.kind != wire::PACKET_PRELOGIN {
                        return Err(format!(
                            "packet type 0x{:02X} during the TLS handshake; the client must \
                             send the handshake in PRELOGIN packets",
                            packet.kind
                        ));
                    }
                    let outcome = feed(&mut tls, &mut &packet.payload[..], plain);
                    let mut answer = Vec::new();
                    drain(&mut tls, &mut answer)?;
                    if !answer.is_empty() {
                        send.extend(wire::frame(
                            wire::PACKET_PRELOGIN,
                            &answer,
                            wire::PACKET_SIZE,
                        ));
                    }
                    outcome?;
                    if !tls.is_handshaking() {
                        self.state = State::Tls { tls, login_only };
                        return self.receive(&pending, plain, send);
                    }
                }
            }
            State::Tls {
                mut tls,
                login_only,
            } => {
                let outcome = feed(&mut tls, &mut &bytes[..], plain);
                let drained = drain(&mut tls, send);
                self.state = State::Tls { tls, login_only };
                outcome.and(drained)
            }
        }
    }

    /// Seals TDS bytes for the socket: encrypted when TLS carries the connection.
    pub fn seal(&mut self, plain: &[u8], send: &mut Vec<u8>) -> Result<(), String> {
        match &mut self.state {
            State::Plain => {
                send.extend_from_slice(plain);
                Ok(())
            }
            State::Handshake { .. } => {
                Err("a TDS message cannot be sent during the TLS handshake".into())
            }
            State::Tls { tls, .. } => {
                // rustls buffers a bounded amount: seal in parts, moving each out.
                let mut rest = plain;
                while !rest.is_empty() {
                    let taken = tls
                        .writer()
                        .write(rest)
                        .map_err(|e| format!("TLS write failed: {e}"))?;
                    if taken == 0 && !tls.wants_write() {
                        return Err("TLS accepts no more data".into());
                    }
                    rest = &rest[taken..];
                    drain(tls, send)?;
                }
                Ok(())
            }
        }
    }

    /// The LOGIN7 has been read: with login-only encryption, plain text from here on.
    pub fn login_read(&mut self) {
        if let State::Tls {
            login_only: true, ..
        } = self.state
        {
            self.state = State::Plain;
        }
    }
}

/// Feeds TLS records to rustls and moves what they decrypt to `plain`.
fn feed(
    tls: &mut ServerConnection,
    records: &mut &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), String> {
    while !records.is_empty() {
        match tls.read_tls(records) {
            Ok(0) => return Err("the client closed TLS".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("TLS read failed: {e}")),
        }
        let state = tls
            .process_new_packets()
            .map_err(|e| format!("TLS failed: {e}"))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("TLS read failed: {e}")),
            }
        }
        if state.peer_has_closed() {
            return Err("the client closed TLS".into());
        }
    }
    Ok(())
}

/// Moves every TLS record rustls wants to send to `out`.
fn drain(tls: &mut ServerConnection, out: &mut Vec<u8>) -> Result<(), String> {
    while tls.wants_write() {
        tls.write_tls(out)
            .map_err(|e| format!("TLS write failed: {e}"))?;
    }
    Ok(())
}
