//! Console accounts, sessions and the audit log on PostgreSQL.

use chrono::{DateTime, Utc};
use shared::TenantId;

use super::{PgStore, col, parsed, stored_id};
use crate::accounts::Language;
use crate::store::accounts::{
    AuditEntry, NewAudit, SessionRecord, UserRecord, parse_language, parse_role,
};
use crate::store::{Result, StoreError};

const USER_COLUMNS: &str = "u.username, u.role, u.tenant_id, u.password_hash, u.language, u.created_at, \
     u.password_changed_at";

/// A tenant id column that may be empty.
fn tenant_opt(r: &tokio_postgres::Row, i: usize) -> Result<Option<TenantId>> {
    match col::<Option<&str>>(r, i)? {
        Some(text) => Ok(Some(stored_id(TenantId::new, "tenant id")(text)?)),
        None => Ok(None),
    }
}

/// A user from [`USER_COLUMNS`] starting at column `at`.
fn user_at(r: &tokio_postgres::Row, at: usize) -> Result<UserRecord> {
    Ok(UserRecord {
        username: col(r, at)?,
        role: parsed(r, at + 1, parse_role)?,
        tenant_id: tenant_opt(r, at + 2)?,
        password_hash: col(r, at + 3)?,
        language: parsed(r, at + 4, parse_language)?,
        created_at: col(r, at + 5)?,
        password_changed_at: col(r, at + 6)?,
    })
}

fn not_found(username: &str) -> StoreError {
    StoreError::NotFound(format!("account {username} not found"))
}

impl PgStore {
    pub async fn create_user(&self, user: UserRecord) -> Result<()> {
        let client = self.client().await?;
        if let Some(tenant) = &user.tenant_id {
            let found = client
                .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()])
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("tenant {tenant} not found")));
            }
        }
        let inserted = client
            .execute(
                "INSERT INTO users (username, role, tenant_id, password_hash, language,
                                    created_at, password_changed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username) DO NOTHING",
                &[
                    &user.username,
                    &user.role.as_str(),
                    &user.tenant_id.as_ref().map(TenantId::as_str),
                    &user.password_hash,
                    &user.language.as_str(),
                    &user.created_at,
                    &user.password_changed_at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "account {} already exists",
                user.username
            )));
        }
        Ok(())
    }

    pub async fn user(&self, username: String) -> Result<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1");
        self.client()
            .await?
            .query_opt(&sql, &[&username])
            .await?
            .map(|r| user_at(&r, 0))
            .transpose()
    }

    pub async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<UserRecord>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u
             WHERE ($1::TEXT IS NULL OR u.tenant_id = $1) ORDER BY u.username"
        );
        let tenant = tenant.as_ref().map(TenantId::as_str);
        self.client()
            .await?
            .query(&sql, &[&tenant])
            .await?
            .iter()
            .map(|r| user_at(r, 0))
            .collect()
    }

    pub async fn remove_user(&self, username: String) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM console_sessions WHERE username = $1",
            &[&username],
        )
        .await?;
        if tx
            .execute("DELETE FROM users WHERE username = $1", &[&username])
            .await?
            == 0
        {
            return Err(not_found(&username));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_password(&self, username: String, hash: String) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE users SET password_hash = $2, password_changed_at = now()
                 WHERE username = $1",
                &[&username, &hash],
            )
            .await?;
        if changed == 0 {
            return Err(not_found(&username));
        }
        tx.execute(
            "DELETE FROM console_sessions WHERE username = $1",
            &[&username],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_language(&self, username: String, language: Language) -> Result<()> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE users SET language = $2 WHERE username = $1",
                &[&username, &language.as_str()],
            )
            .await?;
        if changed == 0 {
            return Err(not_found(&username));
        }
        Ok(())
    }

    pub async fn create_session(&self, session: SessionRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM console_sessions WHERE expires_at < now()", &[])
            .await?;
        let inserted = client
            .execute(
                "INSERT INTO console_sessions (id_hash, username, csrf_token, address,
                                               created_at, last_seen_at, expires_at)
                 SELECT $1, username, $3, $4, $5, $6, $7 FROM users WHERE username = $2",
                &[
                    &session.id_hash,
                    &session.username,
                    &session.csrf_token,
                    &session.address,
                    &session.created_at,
                    &session.last_seen_at,
                    &session.expires_at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(not_found(&session.username));
        }
        Ok(())
    }

    pub async fn session(&self, id_hash: String) -> Result<Option<(SessionRecord, UserRecord)>> {
        let sql = format!(
            "SELECT s.id_hash, s.username, s.csrf_token, s.address, s.created_at,
                    s.last_seen_at, s.expires_at, {USER_COLUMNS}
             FROM console_sessions s JOIN users u ON u.username = s.username
             WHERE s.id_hash = $1"
        );
        let Some(r) = self.client().await?.query_opt(&sql, &[&id_hash]).await? else {
            return Ok(None);
        };
        let session = SessionRecord {
            id_hash: col(&r, 0)?,
            username: col(&r, 1)?,
            csrf_token: col(&r, 2)?,
            address: col(&r, 3)?,
            created_at: col(&r, 4)?,
            last_seen_at: col(&r, 5)?,
            expires_at: col(&r, 6)?,
        };
        Ok(Some((session, user_at(&r, 7)?)))
    }

    pub async fn touch_session(
        &self,
        id_hash: String,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE console_sessions SET last_seen_at = $2, expires_at = $3
                 WHERE id_hash = $1",
                &[&id_hash, &last_seen_at, &expires_at],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: String) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM console_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_sessions(&self, username: String) -> Result<u64> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM console_sessions WHERE username = $1",
                &[&username],
            )
            .await?)
    }

    pub async fn append_audit(&self, entry: NewAudit) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO audit_log (at, actor, tenant_id, action, target, detail)
                 VALUES (now(), $1, $2, $3, $4, $5)",
                &[
                    &entry.actor,
                    &entry.tenant_id.as_ref().map(TenantId::as_str),
                    &entry.action,
                    &entry.target,
                    &entry.detail,
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        let tenant = tenant.as_ref().map(TenantId::as_str);
        self.client()
            .await?
            .query(
                "SELECT id, at, actor, tenant_id, action, target, detail FROM audit_log
                 WHERE ($1::TEXT IS NULL OR tenant_id = $1) ORDER BY id DESC LIMIT $2",
                &[&tenant, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: col(r, 0)?,
                    at: col(r, 1)?,
                    actor: col(r, 2)?,
                    tenant_id: tenant_opt(r, 3)?,
                    action: col(r, 4)?,
                    target: col(r, 5)?,
                    detail: col(r, 6)?,
                })
            })
            .collect()
    }
}
