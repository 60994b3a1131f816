//! Tenants, shops, agents and the keys agent tokens are signed with.

use chrono::{SubsecRound, Utc};
use rusqlite::types::ToSql;
use rusqlite::{OptionalExtension, params, params_from_iter};
use shared::{AgentId, ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time, time_opt};
use crate::store::error::corrupt;
use crate::store::types::{
    AgentRecord, RawShop, ShopColumns, ShopRecord, SigningKey, TenantRecord,
};
use crate::store::{Result, StoreError, now, timestamp};

impl SqliteStore {
    pub async fn create_tenant(&self, id: TenantId, name: String) -> Result<TenantRecord> {
        self.db
            .call(move |conn| {
                let created_at = Utc::now().trunc_subsecs(6);
                let inserted = conn.execute(
                    "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                    params![id.as_str(), name, timestamp(created_at)],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("tenant {id} already exists")));
                }
                Ok(TenantRecord {
                    id,
                    name,
                    created_at,
                })
            })
            .await
    }

    pub async fn tenant_exists(&self, id: TenantId) -> Result<bool> {
        self.db
            .call(move |conn| {
                let found: Option<i64> = conn
                    .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id.as_str()], |r| {
                        r.get(0)
                    })
                    .optional()?;
                Ok(found.is_some())
            })
            .await
    }

    pub async fn add_shop(&self, shop: ShopRecord) -> Result<()> {
        self.db
            .call(move |conn| {
                require_tenant(conn, &shop.tenant_id)?;
                let columns = ShopColumns::of(&shop)?;
                let inserted = conn.execute(
                    "INSERT INTO shops (shop_id, tenant_id, webhook_secrets, trigger_statuses,
                                        document_type, settings, api_key, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (shop_id) DO NOTHING",
                    params_from_iter(shop_params(&columns).into_iter().chain([&now() as _])),
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "shop {} already exists",
                        shop.shop_id
                    )));
                }
                Ok(())
            })
            .await
    }

    /// Replaces everything about a shop but its id and tenant.
    pub async fn update_shop(&self, shop: ShopRecord) -> Result<()> {
        self.db
            .call(move |conn| {
                let columns = ShopColumns::of(&shop)?;
                let changed = conn.execute(
                    "UPDATE shops SET webhook_secrets = ?3, trigger_statuses = ?4,
                                      document_type = ?5, settings = ?6, api_key = ?7
                     WHERE shop_id = ?1 AND tenant_id = ?2",
                    shop_params(&columns).as_slice(),
                )?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!(
                        "shop {} of tenant {} not found",
                        shop.shop_id, shop.tenant_id
                    )));
                }
                Ok(())
            })
            .await
    }

    pub async fn shop(&self, shop_id: ShopId) -> Result<Option<ShopRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!("SELECT {SHOP_COLUMNS} FROM shops WHERE shop_id = ?1");
                conn.query_row(&sql, [shop_id.as_str()], raw_shop)
                    .optional()?
                    .map(RawShop::decode)
                    .transpose()
            })
            .await
    }

    /// Every shop, of one tenant or of all.
    pub async fn shops(&self, tenant: Option<TenantId>) -> Result<Vec<ShopRecord>> {
        self.db
            .call(move |conn| read_shops(conn, tenant.as_ref()))
            .await
    }

    pub async fn create_agent(&self, tenant: TenantId, name: String) -> Result<AgentRecord> {
        self.db
            .call(move |conn| {
                require_tenant(conn, &tenant)?;
                let id = AgentId::new(format!("agt-{}", uuid::Uuid::new_v4().simple()))
                    .map_err(|e| corrupt("agent id", e))?;
                let created_at = Utc::now().trunc_subsecs(6);
                conn.execute(
                    "INSERT INTO agents (id, tenant_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id.as_str(), tenant.as_str(), name, timestamp(created_at)],
                )?;
                Ok(AgentRecord {
                    id,
                    tenant_id: tenant,
                    name,
                    created_at,
                    revoked_at: None,
                })
            })
            .await
    }

    pub async fn agent(&self, id: AgentId) -> Result<Option<AgentRecord>> {
        self.db
            .call(move |conn| {
                let row = conn
                    .query_row(
                        "SELECT tenant_id, name, created_at, revoked_at FROM agents WHERE id = ?1",
                        [id.as_str()],
                        |r| {
                            Ok(AgentRecord {
                                id: id.clone(),
                                tenant_id: parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
                                name: r.get(1)?,
                                created_at: time(r, 2)?,
                                revoked_at: time_opt(r, 3)?,
                            })
                        },
                    )
                    .optional()?;
                Ok(row)
            })
            .await
    }

    pub async fn revoke_agent(&self, id: AgentId) -> Result<()> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id.as_str(), now()],
                )?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!("agent {id} not found")));
                }
                Ok(())
            })
            .await
    }

    /// The newest signing key, created (32 random bytes) if there is none yet.
    pub async fn current_signing_key(&self) -> Result<SigningKey> {
        self.db
            .call(move |conn| {
                let existing = conn
                    .query_row(
                        "SELECT kid, secret FROM signing_keys ORDER BY created_at DESC, kid LIMIT 1",
                        [],
                        |r| Ok(SigningKey { kid: r.get(0)?, secret: r.get(1)? }),
                    )
                    .optional()?;
                if let Some(key) = existing {
                    return Ok(key);
                }
                let key = SigningKey {
                    kid: format!("k-{}", uuid::Uuid::new_v4().simple()),
                    secret: rand::random::<[u8; 32]>().to_vec(),
                };
                conn.execute(
                    "INSERT INTO signing_keys (kid, secret, created_at) VALUES (?1, ?2, ?3)",
                    params![key.kid, key.secret, now()],
                )?;
                Ok(key)
            })
            .await
    }

    pub async fn signing_key(&self, kid: String) -> Result<Option<SigningKey>> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT secret FROM signing_keys WHERE kid = ?1",
                        [&kid],
                        |r| r.get::<_, Vec<u8>>(0),
                    )
                    .optional()?
                    .map(|secret| SigningKey { kid, secret }))
            })
            .await
    }
}

/// A shop's columns as [`ShopColumns`] binds them.
fn shop_params(c: &ShopColumns) -> [&dyn ToSql; 7] {
    let ShopColumns {
        shop_id,
        tenant_id,
        document_type,
        secrets,
        statuses,
        settings,
        api_key,
    } = c;
    [
        shop_id,
        tenant_id,
        secrets,
        statuses,
        document_type,
        settings,
        api_key,
    ]
}

const SHOP_COLUMNS: &str =
    "shop_id, tenant_id, webhook_secrets, trigger_statuses, document_type, settings, api_key";

fn raw_shop(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawShop> {
    Ok(RawShop {
        shop_id: r.get(0)?,
        tenant_id: r.get(1)?,
        secrets: r.get(2)?,
        statuses: r.get(3)?,
        document_type: r.get(4)?,
        settings: r.get(5)?,
        api_key: r.get(6)?,
    })
}

pub(super) fn read_shops(
    conn: &rusqlite::Connection,
    tenant: Option<&TenantId>,
) -> Result<Vec<ShopRecord>> {
    let sql = format!(
        "SELECT {SHOP_COLUMNS} FROM shops WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY shop_id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([tenant.map(TenantId::as_str)], raw_shop)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(RawShop::decode).collect()
}

fn require_tenant(conn: &rusqlite::Connection, tenant: &TenantId) -> Result<()> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM tenants WHERE id = ?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant {tenant} not found"))),
    }
}
