//! Accepting and serving connections, with the limits that keep the relay answering under a
//! flood of idle or slow clients:
//!
//! - at most `max_connections` open at once (HTTP and agent WebSockets together); beyond it a
//!   new connection is closed at once, so file descriptors remain for the store and for the
//!   connections being served;
//! - a TLS handshake and a request's headers must complete within `header_timeout_secs` of the
//!   connection opening or of the previous response (slowloris, idle keep-alive);
//! - an HTTP connection on which nothing moves for `idle_timeout_secs` is closed; a connection
//!   upgraded to a WebSocket is exempt (agent sessions have their own heartbeats);
//! - accept errors (out of file descriptors) back off briefly and are logged once per interval.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::AppState;

/// How long the accept loop pauses after an accept error (EMFILE and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Repeated warnings (accept errors, refused connections) are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Raises the soft limit on open files to the hard limit and logs what the relay runs with.
pub fn raise_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(open_files = limit, max_connections, "file descriptor limit");
            // Connections beyond the limit would starve the store of descriptors.
            if (max_connections as u64).saturating_add(64) > limit {
                tracing::warn!(
                    open_files = limit,
                    max_connections,
                    "max_connections is close to or above the file descriptor limit; \
                     raise LimitNOFILE or lower max_connections"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file descriptor limit"),
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting and waits for the open
/// HTTP connections to finish (WebSocket sessions are tracked by the caller).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) {
    let config = &state.config;
    let max_connections = config.max_connections;
    let limits = Limits {
        header: Duration::from_secs(config.header_timeout_secs),
        idle: Duration::from_secs(config.idle_timeout_secs),
    };
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut accept_errors = Throttle::default();
    let mut refusals = Throttle::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            // One connection's trouble (reset before it was accepted): the next one.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                if let Some(suppressed) = accept_errors.due() {
                    tracing::warn!(error = %e, suppressed, "accept failed; backing off");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            state.metrics.connection_refused();
            if let Some(suppressed) = refusals.due() {
                tracing::warn!(
                    max_connections,
                    suppressed,
                    "connection limit reached: closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Guarded::new(stream, permit, limits.idle);
        connections.spawn(serve_connection(
            io,
            tls.clone(),
            router.clone(),
            limits,
            state.clone(),
            shutdown.clone(),
            peer,
        ));
    }
    drop(listener);
    connections.close();
    // Bounded: a client that keeps a request open does not hold the shutdown back.
    let drain = Duration::from_secs(config.shutdown_timeout_secs);
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "HTTP connections still open at shutdown; closing them"
        );
    }
}

#[derive(Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
}

async fn serve_connection(
    io: Guarded<TcpStream>,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) {
    let flags = io.flags.clone();
    match tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.header, acceptor.accept(io));
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                handshake = handshake => handshake,
            };
            match tls {
                Ok(Ok(tls)) => serve_http(tls, flags, router, limits, &state, shutdown, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    state.metrics.connection_timed_out();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
        None => serve_http(io, flags, router, limits, &state, shutdown, peer).await,
    }
}

async fn serve_http<I>(
    io: I,
    flags: Arc<Flags>,
    router: Router,
    limits: Limits,
    state: &AppState,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgraded = flags.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let router = router.clone();
        let upgraded = upgraded.clone();
        // The peer's address, for handlers that record it (`ConnectInfo`).
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        async move {
            let response = router.oneshot(request).await?;
            if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                // A WebSocket from here on: no idle timeout.
                upgraded.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header);
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let mut closing = false;
    let served = loop {
        tokio::select! {
            served = connection.as_mut() => break served,
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    let idle = flags.timed_out.load(Ordering::Relaxed);
    match served {
        Err(e) if e.is_timeout() || idle => {
            state.metrics.connection_timed_out();
            tracing::debug!(error = %e, "connection closed by a timeout");
        }
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
        Ok(()) => {}
    }
}

/// What a connection's task and its [`Guarded`] stream share.
#[derive(Default)]
struct Flags {
    /// Set once the connection became a WebSocket: the idle timeout no longer applies.
    upgraded: AtomicBool,
    /// Set when the idle timeout closed the connection.
    timed_out: AtomicBool,
}

/// A connection's stream: holds its slot under `max_connections` for as long as the stream
/// lives (through a WebSocket upgrade too), and fails reads and writes once nothing has moved
/// for the idle time, until the connection is upgraded.
struct Guarded<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    last_activity: Instant,
    deadline: Pin<Box<Sleep>>,
    flags: Arc<Flags>,
}

impl<S> Guarded<S> {
    fn new(inner: S, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            _permit: permit,
            idle,
            last_activity: now,
            deadline: Box::pin(tokio::time::sleep_until(now + idle)),
            flags: Arc::default(),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Called when the inner stream is not ready: fails once the connection has been idle
    /// too long (the timer is re-armed lazily from the last activity).
    fn check<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.flags.upgraded.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_activity + self.idle;
            if due <= Instant::now() {
                self.flags.timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.touch();
                Poll::Ready(result)
            }
            Poll::Pending => this.check(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.check(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Lets a repeated warning through at most once per [`WARN_INTERVAL`], counting the others.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(number suppressed since the last one)` when a warning is due.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
