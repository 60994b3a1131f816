//! Versioned migrations, tracked in SQLite's `user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;
use crate::store::Result;

/// Each entry moves the schema one version up; never edit a released entry, append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE shops (
    shop_id          TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    webhook_secrets  TEXT NOT NULL,  -- JSON array of whsec_ secrets, newest first
    trigger_statuses TEXT NOT NULL,  -- JSON array of shop order statuses
    document_type    TEXT NOT NULL,  -- 'order' | 'invoice'
    created_at       TEXT NOT NULL
);
CREATE INDEX shops_tenant ON shops (tenant_id);
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    secret      BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    shop_id       TEXT NOT NULL REFERENCES shops(shop_id),
    webhook_id    TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    order_status  TEXT NOT NULL,
    document_type TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,   -- 'pending' | 'delivered' | 'ignored' | 'dead'
    attempts      INTEGER NOT NULL DEFAULT 0,
    mamut_ref     TEXT,
    last_error    TEXT,
    received_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (shop_id, webhook_id)
);
CREATE INDEX events_queue ON events (tenant_id, state, id);
CREATE TABLE event_history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  INTEGER NOT NULL REFERENCES events(id),
    at        TEXT NOT NULL,
    state     TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX event_history_event ON event_history (event_id);
CREATE TABLE pushes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    agent_id     TEXT NOT NULL,
    push_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    UNIQUE (tenant_id, push_id)
);
"#,
    r#"
-- Shop rules (flow, status map, price lists, API location) as JSON; the API key apart.
ALTER TABLE shops ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE shops ADD COLUMN api_key TEXT;
-- Thin webhooks wait in state 'fetching' until the order is fetched from the shop.
ALTER TABLE events ADD COLUMN next_attempt_at TEXT;
CREATE INDEX events_fetching ON events (state, next_attempt_at) WHERE state = 'fetching';
-- What goes to each shop: one row per shop and coalescing key while pending, so a newer
-- value replaces an older one that was not sent yet ('version' counts the replacements).
CREATE TABLE dispatch (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    shop_id         TEXT NOT NULL REFERENCES shops(shop_id),
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    push_id         TEXT NOT NULL,
    order_ref       TEXT,            -- the shop order of an order status change
    version         INTEGER NOT NULL DEFAULT 1,
    state           TEXT NOT NULL,   -- 'pending' | 'done' | 'dead' | 'superseded'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX dispatch_open ON dispatch (shop_id, key) WHERE state = 'pending';
CREATE INDEX dispatch_due ON dispatch (shop_id, state, next_attempt_at);
CREATE INDEX dispatch_order ON dispatch (shop_id, order_ref, state, id) WHERE order_ref IS NOT NULL;
CREATE INDEX dispatch_tenant ON dispatch (tenant_id, state, id);
"#,
    r#"
-- Who does a piece of work (a tenant's delivery, a shop's dispatch) until when.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
-- Retention deletes finished rows by age.
CREATE INDEX events_finished ON events (updated_at) WHERE state IN ('delivered', 'ignored');
CREATE INDEX dispatch_finished ON dispatch (updated_at) WHERE state IN ('done', 'superseded');
CREATE INDEX pushes_received ON pushes (received_at);
"#,
    r#"
-- Delivery checks for an earlier event of the same order still fetching its order.
CREATE INDEX events_order ON events (shop_id, order_id, state, id);
"#,
    r#"
-- An operator's edit of a held or dead event keeps the body as it was received.
ALTER TABLE events ADD COLUMN original_payload TEXT;
"#,
    r#"
-- The admin console. Accounts: an operator sees every tenant, a tenant admin or viewer one.
-- Passwords as argon2id PHC strings.
CREATE TABLE users (
    username            TEXT PRIMARY KEY,
    role                TEXT NOT NULL,   -- 'operator' | 'tenant_admin' | 'tenant_viewer'
    tenant_id           TEXT REFERENCES tenants(id),
    password_hash       TEXT NOT NULL,
    language            TEXT NOT NULL,   -- 'en' | 'sv'
    created_at          TEXT NOT NULL,
    password_changed_at TEXT NOT NULL
);
-- Console sessions by the SHA-256 (hex) of the cookie's value; the value itself is not kept.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    username      TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    address       TEXT,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (username);
-- Who changed which rule, replayed what, created which token, when.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    tenant_id  TEXT,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
-- Agent sessions as the console and the alerts see them: open while ended_at is NULL.
CREATE TABLE agent_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id      TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    instance      TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    address       TEXT,
    connected_at  TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    ended_at      TEXT
);
CREATE INDEX agent_sessions_tenant ON agent_sessions (tenant_id, id);
-- Per tenant: where alerts go and their thresholds (JSON).
CREATE TABLE alert_settings (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    settings    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- One row per alert raised; at most one open (resolved_at NULL) per tenant and condition, so
-- an alert is sent once until its condition clears, by whichever instance opened it.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    condition    TEXT NOT NULL,
    detail       TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    resolved_at  TEXT
);
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, condition) WHERE resolved_at IS NULL;
-- The daily digest, once per tenant and day.
CREATE TABLE alert_digests (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    day        TEXT NOT NULL,
    sent_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
-- The webhook as received, for the order's timeline: selected headers (JSON) and the
-- signature's verdict.
ALTER TABLE events ADD COLUMN received_headers TEXT;
"#,
    r#"
-- The console's order search and charts: by shop order id or Mamut number across shops, and a
-- tenant's events by the time they were received.
CREATE INDEX events_order_id ON events (order_id);
CREATE INDEX events_mamut_ref ON events (mamut_ref) WHERE mamut_ref IS NOT NULL;
CREATE INDEX events_received ON events (tenant_id, received_at);
-- A thin webhook's body as the shop sent it, kept when the order fetched replaces it.
ALTER TABLE events ADD COLUMN received_payload TEXT;
"#,
];

/// The schema version this relay's migrations lead to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the database lacks. Several processes may open a fresh database at
/// once (`relay serve` and a `relay` command started together): each migration runs in a
/// `BEGIN IMMEDIATE` transaction, which takes the write lock before `user_version` is read
/// (the others wait for it by the busy timeout), so a migration another opener applied
/// meanwhile is seen and not applied twice.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    // Up to date (every open but the first): no write lock taken, so a read-only command
    // does not wait for a busy writer.
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if current < 0 {
            return Err(StoreError::Open(format!(
                "the database has schema version {current}, which no relay writes; it is not a \
                 relay database"
            )));
        }
        if current > SCHEMA_VERSION {
            return Err(StoreError::Open(format!(
                "the database has schema version {current}, newer than this relay knows \
                 ({SCHEMA_VERSION}); upgrade the relay"
            )));
        }
        let Some(sql) = usize::try_from(current)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
        else {
            // Up to date: the transaction changed nothing and is rolled back when dropped.
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}
