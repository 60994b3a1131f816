//! Tenants, shops, agents and signing keys on PostgreSQL.

use chrono::{SubsecRound, Utc};
use deadpool_postgres::GenericClient;
use shared::{AgentId, ShopId, TenantId};
use tokio_postgres::types::ToSql;

use super::{PgStore, col, parsed, stored_id};
use crate::store::error::corrupt;
use crate::store::types::{
    AgentRecord, RawShop, ShopColumns, ShopRecord, SigningKey, TenantRecord,
};
use crate::store::{Result, StoreError};

const SHOP_COLUMNS: &str =
    "shop_id, tenant_id, webhook_secrets, trigger_statuses, document_type, settings, api_key";

fn raw_shop(r: &tokio_postgres::Row) -> Result<RawShop> {
    Ok(RawShop {
        shop_id: col(r, 0)?,
        tenant_id: col(r, 1)?,
        secrets: col(r, 2)?,
        statuses: col(r, 3)?,
        document_type: col(r, 4)?,
        settings: col(r, 5)?,
        api_key: col(r, 6)?,
    })
}

pub(super) async fn read_shops(
    client: &impl GenericClient,
    tenant: Option<&TenantId>,
) -> Result<Vec<ShopRecord>> {
    let sql = format!(
        "SELECT {SHOP_COLUMNS} FROM shops WHERE ($1::TEXT IS NULL OR tenant_id = $1) ORDER BY shop_id"
    );
    let tenant = tenant.map(TenantId::as_str);
    client
        .query(&sql, &[&tenant])
        .await?
        .iter()
        .map(|r| raw_shop(r)?.decode())
        .collect()
}

/// A shop's columns as [`ShopColumns`] binds them.
fn shop_params(c: &ShopColumns) -> [&(dyn ToSql + Sync); 7] {
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

async fn require_tenant(client: &impl GenericClient, tenant: &TenantId) -> Result<()> {
    let found = client
        .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()])
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant {tenant} not found"))),
    }
}

impl PgStore {
    pub async fn create_tenant(&self, id: TenantId, name: String) -> Result<TenantRecord> {
        let at = Utc::now().trunc_subsecs(6);
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&id.as_str(), &name, &at],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("tenant {id} already exists")));
        }
        Ok(TenantRecord {
            id,
            name,
            created_at: at,
        })
    }

    pub async fn tenant_exists(&self, id: TenantId) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&id.as_str()])
            .await?
            .is_some())
    }

    pub async fn add_shop(&self, shop: ShopRecord) -> Result<()> {
        let client = self.client().await?;
        require_tenant(&client, &shop.tenant_id).await?;
        let columns = ShopColumns::of(&shop)?;
        let inserted = client
            .execute(
                "INSERT INTO shops (shop_id, tenant_id, webhook_secrets, trigger_statuses,
                                    document_type, settings, api_key, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT (shop_id) DO NOTHING",
                &shop_params(&columns),
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "shop {} already exists",
                shop.shop_id
            )));
        }
        Ok(())
    }

    pub async fn update_shop(&self, shop: ShopRecord) -> Result<()> {
        let columns = ShopColumns::of(&shop)?;
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE shops SET webhook_secrets = $3, trigger_statuses = $4,
                                  document_type = $5, settings = $6, api_key = $7
                 WHERE shop_id = $1 AND tenant_id = $2",
                &shop_params(&columns),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "shop {} of tenant {} not found",
                shop.shop_id, shop.tenant_id
            )));
        }
        Ok(())
    }

    pub async fn shop(&self, shop_id: ShopId) -> Result<Option<ShopRecord>> {
        let sql = format!("SELECT {SHOP_COLUMNS} FROM shops WHERE shop_id = $1");
        self.client()
            .await?
            .query_opt(&sql, &[&shop_id.as_str()])
            .await?
            .map(|r| raw_shop(&r)?.decode())
            .transpose()
    }

    pub async fn shops(&self, tenant: Option<TenantId>) -> Result<Vec<ShopRecord>> {
        read_shops(&self.client().await?, tenant.as_ref()).await
    }

    pub async fn create_agent(&self, tenant: TenantId, name: String) -> Result<AgentRecord> {
        let client = self.client().await?;
        require_tenant(&client, &tenant).await?;
        let id = AgentId::new(format!("agt-{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| corrupt("agent id", e))?;
        let at = Utc::now().trunc_subsecs(6);
        client
            .execute(
                "INSERT INTO agents (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
                &[&id.as_str(), &tenant.as_str(), &name, &at],
            )
            .await?;
        Ok(AgentRecord {
            id,
            tenant_id: tenant,
            name,
            created_at: at,
            revoked_at: None,
        })
    }

    pub async fn agent(&self, id: AgentId) -> Result<Option<AgentRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT tenant_id, name, created_at, revoked_at FROM agents WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(AgentRecord {
                id,
                tenant_id: parsed(&r, 0, stored_id(TenantId::new, "tenant id"))?,
                name: col(&r, 1)?,
                created_at: col(&r, 2)?,
                revoked_at: col(&r, 3)?,
            })
        })
        .transpose()
    }

    pub async fn revoke_agent(&self, id: AgentId) -> Result<()> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE agents SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("agent {id} not found")));
        }
        Ok(())
    }

    pub async fn current_signing_key(&self) -> Result<SigningKey> {
        /// Serialises key creation between instances that start together.
        const KEY_LOCK: i64 = 0x6d61_6d75_6b65_7973;
        let newest = "SELECT kid, secret FROM signing_keys ORDER BY created_at DESC, kid LIMIT 1";
        let mut client = self.client().await?;
        if let Some(r) = client.query_opt(newest, &[]).await? {
            return Ok(SigningKey {
                kid: col(&r, 0)?,
                secret: col(&r, 1)?,
            });
        }
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_LOCK])
            .await?;
        let key = match tx.query_opt(newest, &[]).await? {
            Some(r) => SigningKey {
                kid: col(&r, 0)?,
                secret: col(&r, 1)?,
            },
            None => {
                let key = SigningKey {
                    kid: format!("k-{}", uuid::Uuid::new_v4().simple()),
                    secret: rand::random::<[u8; 32]>().to_vec(),
                };
                tx.execute(
                    "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, now())",
                    &[&key.kid, &key.secret],
                )
                .await?;
                key
            }
        };
        tx.commit().await?;
        Ok(key)
    }

    pub async fn signing_key(&self, kid: String) -> Result<Option<SigningKey>> {
        self.client()
            .await?
            .query_opt("SELECT secret FROM signing_keys WHERE kid = $1", &[&kid])
            .await?
            .map(|r| {
                Ok(SigningKey {
                    kid,
                    secret: col(&r, 0)?,
                })
            })
            .transpose()
    }
}
