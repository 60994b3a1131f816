//! What the relay and the agent must agree on, and nothing else.
//!
//! No I/O lives here: no sockets, no runtime, no database.
//!
//! - [`ids`]: validated identifiers (tenant, shop, agent, article number).
//! - [`domain`]: the shop order as the relay receives it and the agent writes it to Mamut,
//!   and the changes the agent pushes back (stock, price, price list, product, order status).
//! - [`protocol`]: protocol v1 between agent and relay, a versioned envelope around
//!   [`protocol::Message`].
//! - [`claims`]: the JWT claims of an agent token.
//! - [`signature`]: Standard Webhooks signing and verification.
//! - [`settings`]: a secret type and configuration errors both binaries use.

#![forbid(unsafe_code)]

pub mod claims;
pub mod domain;
pub mod ids;
pub mod protocol;
pub mod settings;
pub mod signature;

pub use ids::{AgentId, ArticleNumber, IdError, ShopId, TenantId};
