//! One client connection, as a SQL Server handles it: PRELOGIN (with the TLS handshake when
//! encryption is negotiated), LOGIN7, then requests until the client goes.
//!
//! Three threads per connection: a reader turning socket bytes into events; this connection
//! thread, which owns the TLS state and the socket's writing side, so it can act on an
//! attention while a request runs; and a worker that owns the database session and executes
//! one request at a time. An attention cancels the running request through the session's
//! cancel handle; its output is discarded and a DONE with DONE_ATTN acknowledges the attention
//! (MS-TDS 3.3.5.7). Nothing a client sends can panic or wedge the connection thread: bad
//! input is answered with an error or ends the connection, and a packet left half-sent for
//! [`PARTIAL_TIMEOUT`] ends it too.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::login::{self, Login, Negotiated, ServerEncryption};
use super::{SimConfig, WireConfig, exec, request, tls, tm, wire};

/// How long a client may leave a packet or message half-sent before the connection is closed.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write to a client that does not read may block before the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Events queued before the reader and the worker wait, and requests a client may send
/// without reading their answers (bounds memory for a flooding client).
const QUEUE: usize = 64;

/// Cancels the request the session is running.
type Canceller = exec::CancelHandle;

enum Event {
    Received(Vec<u8>),
    Closed,
    Opened(Result<Canceller, String>),
    Answered(Vec<u8>),
}

/// A request for the worker: the message's packet type and payload.
struct Job {
    kind: u8,
    payload: Vec<u8>,
}

enum Phase {
    Prelogin,
    Login,
    Opening { login: Login, packet_size: usize },
    Ready,
}

/// Closes the socket however `serve` ends (the accept loop keeps a clone of the stream).
struct CloseOnDrop(TcpStream);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Serves one client connection until it closes, fails or the stand-in stops.
pub fn serve(stream: TcpStream, config: SimConfig, wire: Arc<WireConfig>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let socket = CloseOnDrop(stream);
    let Ok(reader) = socket.0.try_clone() else {
        return;
    };
    let (events, inbox) = sync_channel(QUEUE);
    let feed = events.clone();
    if std::thread::Builder::new()
        .name("mamut-sim-read".into())
        .spawn(move || read_socket(reader, feed))
        .is_err()
    {
        return;
    }
    let mut connection = Connection {
        socket,
        config,
        wire,
        events,
        channel: tls::Channel::plain(),
        plain: Vec::new(),
        messages: wire::Messages::default(),
        phase: Phase::Prelogin,
        packet_size: wire::PACKET_SIZE,
        jobs: None,
        cancel: None,
        pending: 0,
        attention: false,
    };
    if let Err(reason) = connection.run(&inbox) {
        tracing::debug!(%reason, "mamut-sim closes a client connection");
    }
    if connection.pending > 0 {
        // The client went away mid-request: stop the work, as SQL Server does.
        connection.cancel();
    }
}

fn read_socket(mut socket: TcpStream, events: SyncSender<Event>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if events.send(Event::Received(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = events.send(Event::Closed);
}

struct Connection {
    socket: CloseOnDrop,
    config: SimConfig,
    wire: Arc<WireConfig>,
    events: SyncSender<Event>,
    channel: tls::Channel,
    /// TDS bytes (decrypted when TLS carries them) not yet a whole packet.
    plain: Vec<u8>,
    messages: wire::Messages,
    phase: Phase,
    packet_size: usize,
    jobs: Option<Sender<Job>>,
    cancel: Option<Canceller>,
    /// Requests handed to the worker and not answered yet.
    pending: usize,
    /// An attention arrived while requests were pending: their answers are discarded.
    attention: bool,
}

impl Connection {
    fn run(&mut self, inbox: &Receiver<Event>) -> Result<(), String> {
        let mut last_received = Instant::now();
        loop {
            let event = match inbox.recv_timeout(PARTIAL_TIMEOUT) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    if self.partial() && last_received.elapsed() >= PARTIAL_TIMEOUT {
                        return Err("the client left a packet half-sent".into());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match event {
                Event::Received(bytes) => {
                    last_received = Instant::now();
                    self.received(&bytes)?;
                }
                Event::Closed => return Ok(()),
                Event::Opened(opened) => self.opened(opened)?,
                Event::Answered(answer) => self.answered(answer)?,
            }
        }
    }

    fn partial(&self) -> bool {
        !self.plain.is_empty() || self.messages.partial() || self.channel.partial()
    }

    fn received(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.unseal(bytes)?;
        while let Some(packet) = wire::take_packet(&mut self.plain).map_err(|e| e.to_string())? {
            let message = self.messages.push(packet).map_err(|e| e.to_string())?;
            if let Some((kind, payload)) = message {
                self.message(kind, payload)?;
            }
            if self.channel.handshaking() && !self.plain.is_empty() {
                // Bytes after the PRELOGIN that started the handshake belong to it.
                let rest = std::mem::take(&mut self.plain);
                self.unseal(&rest)?;
            }
        }
        Ok(())
    }

    /// Passes socket bytes through the encryption layer into `plain`.
    fn unseal(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut send = Vec::new();
        let outcome = self.channel.receive(bytes, &mut self.plain, &mut send);
        self.write(&send)?;
        outcome
    }

    fn message(&mut self, kind: u8, payload: Vec<u8>) -> Result<(), String> {
        match (&self.phase, kind) {
            (Phase::Prelogin, wire::PACKET_PRELOGIN) => self.prelogin(&payload),
            (Phase::Login, wire::PACKET_LOGIN7) => self.login(&payload),
            (Phase::Ready, wire::PACKET_ATTENTION) => self.attention(),
            (
                Phase::Ready,
                wire::PACKET_SQL_BATCH | wire::PACKET_RPC | wire::PACKET_TRANSACTION_MANAGER,
            ) => self.submit(Job { kind, payload }),
            (Phase::Ready, wire::PACKET_PRELOGIN | wire::PACKET_LOGIN7) => {
                Err("a second PRELOGIN or LOGIN7 on a logged-in connection".into())
            }
            (Phase::Ready, other) => {
                let answer = error_response(
                    102,
                    15,
                    &format!("packet type 0x{other:02X} is not supported by the stand-in"),
                );
                self.send(&answer)
            }
            (Phase::Opening { .. }, wire::PACKET_ATTENTION) => Ok(()),
            (_, other) => Err(format!(
                "packet type 0x{other:02X} before the login completed"
            )),
        }
    }

    fn prelogin(&mut self, payload: &[u8]) -> Result<(), String> {
        let client = login::parse_prelogin(payload)?;
        let server = match (&self.wire.tls, self.wire.force_encryption) {
            (None, _) => ServerEncryption::NotSupported,
            (Some(_), false) => ServerEncryption::Available,
            (Some(_), true) => ServerEncryption::Forced,
        };
        let (answer, next) = login::negotiate(client.encryption, server);
        let valid = login::instance_matches(&client.instance, self.wire.instance.as_deref());
        self.send(&login::prelogin_response(answer, valid))?;
        match (next, &self.wire.tls) {
            (Negotiated::Refused, _) => {
                return Err("the client's and the server's encryption settings conflict".into());
            }
            (Negotiated::LoginOnly | Negotiated::Encrypted, Some(config)) => {
                let config = config.clone();
                self.channel
                    .start_handshake(config, next == Negotiated::LoginOnly)?;
            }
            _ => {}
        }
        self.phase = Phase::Login;
        Ok(())
    }

    fn login(&mut self, payload: &[u8]) -> Result<(), String> {
        let login = login::parse_login(payload)?;
        self.channel.login_read();
        let config = &self.config;
        if let Some(refusal) =
            login::refusal(&login, &config.user, &config.password, &config.database)
        {
            self.send(&refusal)?;
            return Err(format!("login refused for {}", login.user));
        }
        let (jobs, queue) = channel();
        let (config, events) = (self.config.clone(), self.events.clone());
        std::thread::Builder::new()
            .name("mamut-sim-session".into())
            // The translator recurses over a statement (bounded in `dialect::parse_batch`).
            .stack_size(8 * 1024 * 1024)
            .spawn(move || work(config, queue, events))
            .map_err(|e| format!("cannot start the session thread: {e}"))?;
        self.jobs = Some(jobs);
        let packet_size = login::granted_packet_size(login.packet_size);
        self.phase = Phase::Opening { login, packet_size };
        Ok(())
    }

    fn opened(&mut self, opened: Result<Canceller, String>) -> Result<(), String> {
        let Phase::Opening { login, packet_size } =
            std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return Err("a session opened outside the login".into());
        };
        match opened {
            Ok(cancel) => {
                self.cancel = Some(cancel);
                // The answer still goes in packets of the old size; the new one applies after.
                self.send(&login::login_accepted(
                    &login,
                    &self.config.database,
                    packet_size,
                ))?;
                self.packet_size = packet_size;
                Ok(())
            }
            Err(e) => {
                let message = format!(
                    "Cannot open database \"{}\" requested by the login. The login failed. ({e})",
                    self.config.database
                );
                self.send(&login::login_error(4060, 11, &message))?;
                Err(message)
            }
        }
    }

    fn submit(&mut self, job: Job) -> Result<(), String> {
        if self.pending >= QUEUE {
            return Err(format!(
                "more than {QUEUE} requests sent without reading their answers"
            ));
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or("a request before the session opened")?;
        jobs.send(job)
            .map_err(|_| "the session thread has stopped".to_string())?;
        self.pending += 1;
        Ok(())
    }

    fn attention(&mut self) -> Result<(), String> {
        if self.pending == 0 {
            // The answer went out already: acknowledge at once.
            return self.send(&attention_ack());
        }
        if !self.attention {
            self.attention = true;
            self.cancel();
        }
        Ok(())
    }

    fn answered(&mut self, answer: Vec<u8>) -> Result<(), String> {
        self.pending = self.pending.saturating_sub(1);
        if !self.attention {
            return self.send(&answer);
        }
        if self.pending == 0 {
            self.attention = false;
            if let Some(cancel) = &self.cancel {
                cancel.clear();
            }
            self.send(&attention_ack())?;
        }
        Ok(())
    }

    fn cancel(&self) {
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
    }

    /// Sends a tabular-result message in packets of the negotiated size.
    fn send(&mut self, payload: &[u8]) -> Result<(), String> {
        let framed = wire::frame(wire::PACKET_TABULAR_RESULT, payload, self.packet_size);
        let mut sealed = Vec::with_capacity(framed.len() + 64);
        self.channel.seal(&framed, &mut sealed)?;
        self.write(&sealed)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let socket = &mut self.socket.0;
        socket
            .write_all(bytes)
            .and_then(|()| socket.flush())
            .map_err(|e| format!("writing to the client failed: {e}"))
    }
}

/// The session thread: opens the database session, then runs requests one at a time.
fn work(config: SimConfig, jobs: Receiver<Job>, events: SyncSender<Event>) {
    let mut session = match super::open_session(&config) {
        Ok(session) => session,
        Err(e) => {
            let _ = events.send(Event::Opened(Err(e)));
            return;
        }
    };
    if events.send(Event::Opened(Ok(canceller(&session)))).is_err() {
        return;
    }
    for job in jobs {
        let answer = execute(&mut session, job);
        if events.send(Event::Answered(answer)).is_err() {
            return;
        }
    }
}

fn canceller(session: &exec::Session) -> Canceller {
    session.cancel_handle()
}

fn execute(session: &mut exec::Session, job: Job) -> Vec<u8> {
    let request = match job.kind {
        wire::PACKET_RPC => request::rpc(&job.payload),
        wire::PACKET_SQL_BATCH => request::sql_batch(&job.payload),
        _ => match tm::parse(&job.payload).map(|tm| tm.sql()) {
            Ok(Ok(sql)) => request::sql_batch(&tm::batch_payload(&sql)),
            Ok(Err((number, class, message))) => return error_response(number, class, &message),
            Err(message) => Err(message),
        },
    };
    match request {
        Ok(request) => session.run(&request),
        Err(message) => error_response(102, 15, &message),
    }
}

fn error_response(number: u32, class: u8, message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_error(&mut out, number, class, message);
    wire::put_done(&mut out, 0xFD, wire::DONE_ERROR, 0);
    out.to_vec()
}

/// DONE with DONE_ATTN: the attention is acknowledged (MS-TDS 2.2.1.7, 3.3.5.7).
fn attention_ack() -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_done(&mut out, 0xFD, wire::DONE_ATTN, 0);
    out.to_vec()
}
