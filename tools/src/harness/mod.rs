//! The harness the benchmarks and the end-to-end tests share: the real `relay` and `agent`
//! binaries as child processes on random ports, with TLS from a throw-away CA, typed clients
//! for the admin API and the shop's webhooks, and a bounded wait for effects.
//!
//! - [`pki`]: a test CA and the relay's certificate.
//! - [`process`]: starting, killing and restarting relay and agent processes.
//! - [`admin`]: the admin API client.
//! - [`browser`]: the console's browser scenarios in headless Chromium.
//! - [`agent_ws`]: a bare agent connection speaking protocol v1, for driving pushes directly.
//! - [`shop`]: signed webhooks as the shop sends them.
//! - [`mamut_db`]: a Mamut database on the TDS stand-in, with SQL read-back.
//! - [`wait`]: waiting for a condition with a deadline.
//! - [`pg`]: a PostgreSQL database of its own per test.
//! - [`wine`]: agent.exe under wine, and a `cmd` session to drive it.

pub mod admin;
pub mod agent_ws;
pub mod browser;
pub mod mamut_db;
pub mod pg;
pub mod pki;
pub mod process;
pub mod shop;
pub mod wait;
pub mod wine;

pub use admin::Admin;
pub use pki::Pki;
pub use process::{AgentOptions, AgentProcess, RelayOptions, RelayProcess, SqlServerOptions};
pub use shop::Shop;
pub use wait::eventually;

/// The tenant the tests and benchmarks set up.
pub const TENANT: &str = "acme";
/// The shop of [`TENANT`] the tests and benchmarks send webhooks as.
pub const SHOP: &str = "demo-se";
