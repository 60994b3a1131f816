//! The agent: runs on the Mamut server, dials out to the relay (TLS WebSocket, optionally
//! through an HTTP CONNECT proxy), applies the orders it is sent to Mamut exactly once, and
//! acknowledges each only after it is written.
//!
//! - [`config`]: defaults, `agent.toml`, `AGENT_*` environment; relay addresses and the proxy
//!   setting parsed once, at load.
//! - [`check`]: `agent check`, the installer's first command.
//! - [`transport`]: TCP, proxy tunnel, TLS, WebSocket handshake, and the [`transport::Connection`]
//!   that reads and writes the protocol's frames.
//! - [`session`]: one session: deliveries, acks, pushes, heartbeats.
//! - [`supervisor`]: reconnect forever with full-jitter backoff.
//! - [`mamut`]: the Mamut boundary and its implementations.
//! - [`watch`]: polling Mamut for changes and pushing them, with durable cursors.
//! - [`sync`]: the initial product sync, Mamut → shop or shop → Mamut, through the relay.

// Unsafe code is denied; only the Windows API calls in `windows` allow it, each with its SAFETY
// comment.
#![deny(unsafe_code)]

pub mod app;
pub mod check;
pub mod config;
pub mod logging;
pub mod mamut;
pub mod proxy;
pub mod service;
pub mod session;
pub mod supervisor;
pub mod sync;
mod text;
pub mod transport;
pub mod watch;
#[cfg(windows)]
pub mod windows;
