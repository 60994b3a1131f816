//! Versioned migrations for PostgreSQL, tracked in `schema_version` and applied under an
//! advisory lock, so instances that start together apply each migration once.

use super::super::StoreError;
use crate::store::Result;

/// Each entry moves the schema one version up; never edit a released entry, append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE shops (
    shop_id          TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    webhook_secrets  TEXT NOT NULL,
    trigger_statuses TEXT NOT NULL,
    document_type    TEXT NOT NULL,
    settings         TEXT NOT NULL DEFAULT '{}',
    api_key          TEXT,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX shops_tenant ON shops (tenant_id);
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    secret      BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    shop_id         TEXT NOT NULL REFERENCES shops(shop_id),
    webhook_id      TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    order_status    TEXT NOT NULL,
    document_type   TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    mamut_ref       TEXT,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (shop_id, webhook_id)
);
CREATE INDEX events_queue ON events (tenant_id, state, id);
CREATE INDEX events_fetching ON events (next_attempt_at) WHERE state = 'fetching';
CREATE INDEX events_finished ON events (updated_at) WHERE state IN ('delivered', 'ignored');
CREATE TABLE event_history (
    id        BIGSERIAL PRIMARY KEY,
    event_id  BIGINT NOT NULL REFERENCES events(id),
    at        TIMESTAMPTZ NOT NULL,
    state     TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX event_history_event ON event_history (event_id);
CREATE TABLE pushes (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    agent_id     TEXT NOT NULL,
    push_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, push_id)
);
CREATE INDEX pushes_received ON pushes (received_at);
CREATE TABLE dispatch (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    shop_id         TEXT NOT NULL REFERENCES shops(shop_id),
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    push_id         TEXT NOT NULL,
    order_ref       TEXT,
    version         BIGINT NOT NULL DEFAULT 1,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX dispatch_open ON dispatch (shop_id, key) WHERE state = 'pending';
CREATE INDEX dispatch_due ON dispatch (shop_id, state, next_attempt_at);
CREATE INDEX dispatch_order ON dispatch (shop_id, order_ref, state, id) WHERE order_ref IS NOT NULL;
CREATE INDEX dispatch_tenant ON dispatch (tenant_id, state, id);
CREATE INDEX dispatch_finished ON dispatch (updated_at) WHERE state IN ('done', 'superseded');
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
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
    created_at          TIMESTAMPTZ NOT NULL,
    password_changed_at TIMESTAMPTZ NOT NULL
);
-- Console sessions by the SHA-256 (hex) of the cookie's value; the value itself is not kept.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    username      TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    address       TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (username);
-- Who changed which rule, replayed what, created which token, when.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    tenant_id  TEXT,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
-- Agent sessions as the console and the alerts see them: open while ended_at is NULL.
CREATE TABLE agent_sessions (
    id            BIGSERIAL PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    instance      TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    address       TEXT,
    connected_at  TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ
);
CREATE INDEX agent_sessions_tenant ON agent_sessions (tenant_id, id);
-- Per tenant: where alerts go and their thresholds (JSON).
CREATE TABLE alert_settings (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    settings    TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
-- One row per alert raised; at most one open (resolved_at NULL) per tenant and condition, so
-- an alert is sent once until its condition clears, by whichever instance opened it.
CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    condition    TEXT NOT NULL,
    detail       TEXT NOT NULL,
    opened_at    TIMESTAMPTZ NOT NULL,
    resolved_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, condition) WHERE resolved_at IS NULL;
-- The daily digest, once per tenant and day.
CREATE TABLE alert_digests (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    day        TEXT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL,
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

/// Any number that no other part of the relay uses as an advisory lock.
const MIGRATION_LOCK: i64 = 0x6d61_6d75_7472_6c79;

pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Open(format!(
            "the database has schema version {current}, newer than this relay knows ({known}); \
             upgrade the relay"
        )));
    }
    for sql in MIGRATIONS.iter().skip(current as usize) {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&known],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
