//! A stand-in for Mamut's Microsoft SQL Server, for tests: a TDS 7.x server that the real
//! `tiberius` client connects to (encryption off), executing a written-down T-SQL subset on
//! SQLite. **It is not SQL Server** and makes no claim to behave like it beyond that subset.
//!
//! Supported: prelogin (no encryption), LOGIN7 with a SQL login checked against the configured
//! credentials, SQL batches, RPC `sp_executesql` with typed parameters (int, bigint, bit,
//! float, decimal/numeric, nvarchar/varchar incl. MAX, datetime2, date, varbinary incl. MAX),
//! result sets (int, bigint, bit, float, decimal, nvarchar(max), datetime2, varbinary(max),
//! rowversion as binary(8)), row counts, errors as ERROR tokens with SQL Server's numbers,
//! `BEGIN TRAN`/`COMMIT`/`ROLLBACK` with transaction ENVCHANGEs, attention.
//!
//! - [`wire`]: packets and tokens; [`login`]: prelogin and LOGIN7; [`request`]: batches and
//!   RPC parameters; [`dialect`]: the T-SQL subset; [`types`]: type mapping; [`exec`]:
//!   execution on SQLite.

pub mod dialect;
pub mod exec;
pub mod login;
pub mod request;
pub mod types;
pub mod wire;

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tds_protocol::PacketType;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// The SQLite file holding the data.
    pub db_path: PathBuf,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// A running stand-in. Dropping it stops it.
pub struct MamutSim {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl MamutSim {
    /// Binds and starts serving in background threads.
    pub fn start(config: SimConfig) -> std::io::Result<Self> {
        open_db(&config.db_path).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (flag, tracked) = (stopped.clone(), connections.clone());
        std::thread::Builder::new()
            .name("mamut-sim-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let (Ok(clone), Ok(mut list)) = (stream.try_clone(), tracked.lock()) {
                        list.push(clone);
                    }
                    let config = config.clone();
                    let _ = std::thread::Builder::new()
                        .name("mamut-sim-conn".into())
                        .spawn(move || serve(stream, &config));
                }
            })?;
        Ok(Self {
            addr,
            stopped,
            connections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops every connection (as a server that goes down).
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Ok(mut list) = self.connections.lock() {
            for stream in list.drain(..) {
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

/// Opens the stand-in's SQLite database as every connection does.
pub fn open_db(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs a batch of the T-SQL subset directly (no network), e.g. to create the schema.
pub fn run_batch(path: &Path, sql: &str) -> Result<(), String> {
    let conn = open_db(path).map_err(|e| e.to_string())?;
    exec::Session::new(conn).execute(sql)
}

/// Closes the connection however `serve` ends (the accept loop keeps a clone of the stream).
struct CloseOnDrop(TcpStream);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

fn serve(stream: TcpStream, config: &SimConfig) {
    let _ = stream.set_nodelay(true);
    let mut guard = CloseOnDrop(stream);
    let stream = &mut guard.0;
    let mut session: Option<exec::Session> = None;
    while let Ok(Some((kind, payload))) = wire::read_message(stream) {
        let response = match kind {
            PacketType::PreLogin => match login::prelogin_response(&payload) {
                Ok(response) => response,
                Err(_) => return,
            },
            PacketType::Tds7Login => match login::parse_login(&payload) {
                Ok(l) if l.user == config.user && l.password == config.password => {
                    match open_db(&config.db_path) {
                        Ok(conn) => {
                            session = Some(exec::Session::new(conn));
                            login::login_accepted(&l, &config.database)
                        }
                        Err(_) => login::login_refused(&l.user),
                    }
                }
                Ok(l) => {
                    let _ = wire::write_message(stream, &login::login_refused(&l.user));
                    return;
                }
                Err(_) => return,
            },
            PacketType::SqlBatch | PacketType::Rpc => {
                let Some(session) = session.as_mut() else {
                    return;
                };
                let request = if kind == PacketType::Rpc {
                    request::rpc(&payload)
                } else {
                    request::sql_batch(&payload)
                };
                match request {
                    Ok(request) => session.run(&request),
                    Err(message) => error_response(&message),
                }
            }
            PacketType::Attention => {
                let mut out = BytesMut::new();
                wire::put_done(&mut out, 0xFD, wire::DONE_ATTN, 0);
                out.to_vec()
            }
            _ => error_response("request type not supported by the stand-in"),
        };
        if wire::write_message(stream, &response).is_err() {
            return;
        }
    }
}

fn error_response(message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_error(&mut out, 102, 15, message);
    wire::put_done(&mut out, 0xFD, wire::DONE_ERROR, 0);
    out.to_vec()
}
