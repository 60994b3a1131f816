//! A stand-in for Mamut's Microsoft SQL Server, for tests: a TDS 7.x server that the real
//! `tiberius` client connects to (with or without TLS), executing a written-down T-SQL subset
//! on PostgreSQL (translated by [`dialect`]). **It is not SQL Server**: where it follows SQL
//! Server, `deploy/mamut/README.md` says so with the test that shows it, and clients we did not
//! write (FreeTDS, python-tds, pymssql; `tests/clients`) check it.
//!
//! Supported: prelogin with TLS inside it as TDS 7.x does it (none, login-only or the whole
//! connection, per the client's and the server's setting), named instances with SQL Browser,
//! LOGIN7 with a SQL login checked against the configured
//! credentials, SQL batches, RPC `sp_executesql` with typed parameters (int, bigint, bit,
//! float, decimal/numeric, nvarchar/varchar incl. MAX, datetime2, date, varbinary incl. MAX),
//! result sets (int, bigint, bit, float, decimal, nvarchar(max), datetime2, varbinary(max),
//! rowversion as binary(8)), row counts, errors as ERROR tokens with SQL Server's numbers,
//! `BEGIN TRAN`/`COMMIT`/`ROLLBACK` with transaction ENVCHANGEs, transaction-manager requests,
//! attention (cancel) while a request runs, the packet size the client negotiates.
//!
//! - `connection`: one client connection (threads, attention); [`wire`]: packets and tokens;
//!   [`login`]: prelogin and LOGIN7; [`tls`]: TLS inside PRELOGIN; [`tm`]: transaction-manager
//!   requests; [`browser`]: SQL Browser (UDP); [`request`]: batches and
//!   RPC parameters; [`dialect`]: the T-SQL subset; [`types`]: type mapping; [`exec`]:
//!   execution on PostgreSQL; [`catalog`]: recorded column types, helpers, catalog views;
//!   [`lexer`]: T-SQL tokens.

pub mod browser;
pub mod catalog;
mod connection;
pub mod dialect;
pub mod exec;
pub mod lexer;
pub mod login;
pub mod request;
pub mod tls;
pub mod tm;
pub mod types;
pub mod wire;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// PostgreSQL, the stand-in's engine (`MAMUT_SIM_POSTGRES_URL`; see [`default_postgres_url`]).
    pub postgres_url: String,
    /// The PostgreSQL schema holding this stand-in's tables (one per stand-in).
    pub pg_schema: String,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// How the stand-in meets clients on the wire, beyond the database: encryption, the instance
/// name and SQL Browser. The default is a default instance without a certificate.
#[derive(Debug, Clone, Default)]
pub struct WireConfig {
    /// The server's certificate and key ([`tls::server_config`]); `None`: the server has no
    /// certificate and answers ENCRYPT_NOT_SUP, so clients that require encryption are refused.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// SQL Server's "force encryption": every connection is encrypted whole (needs `tls`).
    pub force_encryption: bool,
    /// The instance name served (`HOST\INSTANCE`); `None`: the default instance.
    pub instance: Option<String>,
    /// Where SQL Browser answers (UDP; 1434 on a real server), with the instance name.
    pub browser: Option<SocketAddr>,
    /// The machine name SQL Browser reports (`ServerName`); empty: `localhost`.
    pub server_name: String,
}

/// The open client connections by id, so that `stop` can close them.
type Connections = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running stand-in. Dropping it stops it.
pub struct MamutSim {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    connections: Connections,
    browser: Option<browser::Browser>,
}

impl MamutSim {
    /// Binds and starts serving in background threads: a default instance, no encryption.
    pub fn start(config: SimConfig) -> std::io::Result<Self> {
        Self::start_with(config, WireConfig::default())
    }

    /// Binds and starts serving with the given encryption, instance name and SQL Browser.
    pub fn start_with(config: SimConfig, wire: WireConfig) -> std::io::Result<Self> {
        exec::prepare_schema(&config).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let browser = match (&wire.instance, wire.browser) {
            (Some(name), Some(at)) => Some(browser::Browser::start(
                at,
                vec![browser::Instance {
                    server: match wire.server_name.as_str() {
                        "" => "localhost".to_string(),
                        other => other.to_string(),
                    },
                    name: name.clone(),
                    tcp_port: addr.port(),
                }],
            )?),
            _ => None,
        };
        let wire = Arc::new(wire);
        let stopped = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::new(Mutex::new(HashMap::new()));
        let (flag, tracked) = (stopped.clone(), connections.clone());
        std::thread::Builder::new()
            .name("mamut-sim-accept".into())
            .spawn(move || {
                let mut next_id = 0u64;
                for stream in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let stream = match stream {
                        Ok(stream) => stream,
                        Err(_) => {
                            // Out of file descriptors, say: wait instead of spinning.
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    next_id += 1;
                    let id = next_id;
                    if let (Ok(clone), Ok(mut list)) = (stream.try_clone(), tracked.lock()) {
                        list.insert(id, clone);
                    }
                    let (config, wire, tracked) = (config.clone(), wire.clone(), tracked.clone());
                    let _ = std::thread::Builder::new()
                        .name("mamut-sim-conn".into())
                        .spawn(move || {
                            connection::serve(stream, config, wire);
                            // The connection is over: `stop` need not close it any more.
                            if let Ok(mut list) = tracked.lock() {
                                list.remove(&id);
                            }
                        });
                }
            })?;
        Ok(Self {
            addr,
            stopped,
            connections,
            browser,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where SQL Browser answers, when it runs.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.browser.as_ref().map(browser::Browser::addr)
    }

    /// Stops accepting and drops every connection (as a server that goes down).
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(browser) = &self.browser {
            browser.stop();
        }
        if let Ok(mut list) = self.connections.lock() {
            for (_, stream) in list.drain() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for MamutSim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `MAMUT_SIM_POSTGRES_URL`, else PostgreSQL on this machine (trust auth, database `test`).
pub fn default_postgres_url() -> String {
    std::env::var("MAMUT_SIM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs a batch of the T-SQL subset directly (no network), e.g. to create the schema; the
/// stand-in's schema is created first if missing.
pub fn run_batch(config: &SimConfig, sql: &str) -> Result<(), String> {
    exec::prepare_schema(config)?;
    exec::Session::connect(config)?.execute(sql)
}

/// Opens the database session of one logged-in connection.
pub(crate) fn open_session(config: &SimConfig) -> Result<exec::Session, String> {
    exec::Session::connect(config)
}
