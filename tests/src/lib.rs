//! The end-to-end suite's library: the harness and the stand-ins from the `tools` crate under
//! the names the tests import (`tests::process`, `tests::mamut_sim`...), a CONNECT proxy, and
//! [`setup`], a relay with a tenant, a shop and a connected agent.
//!
//! - [`pki`]: a test CA and the relay's certificate.
//! - [`process`]: starting, killing and restarting relay and agent processes.
//! - [`admin`]: the admin API client.
//! - [`agent_ws`]: a bare agent connection speaking protocol v1, for driving pushes directly.
//! - [`shop`]: signed webhooks as the shop sends them.
//! - [`shop_sim`]: the shop stand-in (test code implementing `docs/shop-api.md`, not the real
//!   platform).
//! - [`mamut_sim`]: the TDS stand-in for Mamut's SQL Server; [`mamut_db`], a Mamut database on it.
//! - [`proxy`]: an HTTP CONNECT proxy on loopback.
//! - [`wait`]: waiting for a condition with a deadline.
//! - [`pg`]: a PostgreSQL database of its own per test.
//! - [`wine`]: agent.exe under wine, and a `cmd` session to drive it.

use std::sync::Arc;

pub mod proxy;

pub use tools::harness::{
    Admin, AgentOptions, AgentProcess, Pki, RelayOptions, RelayProcess, SHOP, Shop,
    SqlServerOptions, TENANT, eventually,
};
pub use tools::harness::{admin, agent_ws, mamut_db, pg, pki, process, shop, wait, wine};
pub use tools::{mamut_sim, shop_sim};

/// A relay with tenant `acme`, its shop `demo-se` (triggers `confirmed` and `paid`, creates
/// orders) and a connected agent.
pub struct World {
    pub pki: Arc<Pki>,
    pub relay: RelayProcess,
    pub admin: Admin,
    pub shop: Arc<Shop>,
    pub agent: AgentProcess,
    pub agent_id: String,
}

pub async fn setup() -> World {
    setup_with(RelayOptions::default(), AgentOptions::default()).await
}

pub async fn setup_with(relay_options: RelayOptions, agent_options: AgentOptions) -> World {
    let pki = Arc::new(Pki::new());
    let relay = RelayProcess::start(pki.clone(), relay_options).await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    let shop = Arc::new(relay.shop());
    admin
        .add_shop(
            TENANT,
            SHOP,
            &shop.secret_text(),
            &["confirmed", "paid"],
            "order",
        )
        .await;
    let (agent_id, token) = admin.create_agent(TENANT).await;
    let agent = AgentProcess::start(&relay, &token, agent_options).await;
    World {
        pki,
        relay,
        admin,
        shop,
        agent,
        agent_id,
    }
}

/// Whether a test's outside requirements (tools, builds) are there: true when `missing` is
/// empty. Otherwise, in CI (the `CI` variable set) the test fails naming what is missing and
/// `fix`, so CI never passes without them; locally it prints "skipped" and returns false.
pub fn requirements_met(test: &str, missing: &str, fix: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: {missing} missing in CI: {fix}");
    }
    println!("{test} skipped: {missing} missing ({fix})");
    false
}
