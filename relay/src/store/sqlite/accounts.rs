//! Console accounts, sessions and the audit log on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use shared::TenantId;

use super::{SqliteStore, parsed, stored_id, time};
use crate::accounts::Language;
use crate::store::accounts::{
    AuditEntry, NewAudit, SessionRecord, UserRecord, parse_language, parse_role,
};
use crate::store::{Result, StoreError, now, timestamp};

const USER_COLUMNS: &str = "u.username, u.role, u.tenant_id, u.password_hash, u.language, u.created_at, \
     u.password_changed_at";

/// A user from [`USER_COLUMNS`] starting at column `at`.
fn user_at(r: &Row<'_>, at: usize) -> rusqlite::Result<UserRecord> {
    let tenant: Option<String> = r.get(at + 2)?;
    let tenant_id = match tenant {
        Some(_) => Some(parsed(r, at + 2, stored_id(TenantId::new, "tenant id"))?),
        None => None,
    };
    Ok(UserRecord {
        username: r.get(at)?,
        role: parsed(r, at + 1, parse_role)?,
        tenant_id,
        password_hash: r.get(at + 3)?,
        language: parsed(r, at + 4, parse_language)?,
        created_at: time(r, at + 5)?,
        password_changed_at: time(r, at + 6)?,
    })
}

fn not_found(username: &str) -> StoreError {
    StoreError::NotFound(format!("account {username} not found"))
}

impl SqliteStore {
    pub async fn create_user(&self, user: UserRecord) -> Result<()> {
        self.db
            .call(move |conn| {
                if let Some(tenant) = &user.tenant_id {
                    let found: Option<i64> = conn
                        .query_row(
                            "SELECT 1 FROM tenants WHERE id = ?1",
                            [tenant.as_str()],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if found.is_none() {
                        return Err(StoreError::NotFound(format!("tenant {tenant} not found")));
                    }
                }
                let inserted = conn.execute(
                    "INSERT INTO users (username, role, tenant_id, password_hash, language,
                                        created_at, password_changed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (username) DO NOTHING",
                    params![
                        user.username,
                        user.role.as_str(),
                        user.tenant_id.as_ref().map(TenantId::as_str),
                        user.password_hash,
                        user.language.as_str(),
                        timestamp(user.created_at),
                        timestamp(user.password_changed_at),
                    ],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "account {} already exists",
                        user.username
                    )));
                }
                Ok(())
            })
            .await
    }

    pub async fn user(&self, username: String) -> Result<Option<UserRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?1");
                Ok(conn
                    .query_row(&sql, [&username], |r| user_at(r, 0))
                    .optional()?)
            })
            .await
    }

    pub async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<UserRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users u
                     WHERE (?1 IS NULL OR u.tenant_id = ?1) ORDER BY u.username"
                );
                let tenant = tenant.as_ref().map(TenantId::as_str);
                let mut statement = conn.prepare(&sql)?;
                let users = statement
                    .query_map([tenant], |r| user_at(r, 0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(users)
            })
            .await
    }

    pub async fn remove_user(&self, username: String) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM console_sessions WHERE username = ?1",
                    [&username],
                )?;
                if conn.execute("DELETE FROM users WHERE username = ?1", [&username])? == 0 {
                    return Err(not_found(&username));
                }
                Ok(())
            })
            .await
    }

    pub async fn set_password(&self, username: String, hash: String) -> Result<()> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE users SET password_hash = ?2, password_changed_at = ?3
                     WHERE username = ?1",
                    params![username, hash, now()],
                )?;
                if changed == 0 {
                    return Err(not_found(&username));
                }
                conn.execute(
                    "DELETE FROM console_sessions WHERE username = ?1",
                    [&username],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn set_language(&self, username: String, language: Language) -> Result<()> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE users SET language = ?2 WHERE username = ?1",
                    params![username, language.as_str()],
                )?;
                if changed == 0 {
                    return Err(not_found(&username));
                }
                Ok(())
            })
            .await
    }

    pub async fn create_session(&self, session: SessionRecord) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM console_sessions WHERE expires_at < ?1",
                    [now()],
                )?;
                let user: Option<i64> = conn
                    .query_row(
                        "SELECT 1 FROM users WHERE username = ?1",
                        [&session.username],
                        |r| r.get(0),
                    )
                    .optional()?;
                if user.is_none() {
                    return Err(not_found(&session.username));
                }
                conn.execute(
                    "INSERT INTO console_sessions (id_hash, username, csrf_token, address,
                                                   created_at, last_seen_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        session.id_hash,
                        session.username,
                        session.csrf_token,
                        session.address,
                        timestamp(session.created_at),
                        timestamp(session.last_seen_at),
                        timestamp(session.expires_at),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn session(&self, id_hash: String) -> Result<Option<(SessionRecord, UserRecord)>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT s.id_hash, s.username, s.csrf_token, s.address, s.created_at,
                            s.last_seen_at, s.expires_at, {USER_COLUMNS}
                     FROM console_sessions s JOIN users u ON u.username = s.username
                     WHERE s.id_hash = ?1"
                );
                Ok(conn
                    .query_row(&sql, [&id_hash], |r| {
                        let session = SessionRecord {
                            id_hash: r.get(0)?,
                            username: r.get(1)?,
                            csrf_token: r.get(2)?,
                            address: r.get(3)?,
                            created_at: time(r, 4)?,
                            last_seen_at: time(r, 5)?,
                            expires_at: time(r, 6)?,
                        };
                        Ok((session, user_at(r, 7)?))
                    })
                    .optional()?)
            })
            .await
    }

    pub async fn touch_session(
        &self,
        id_hash: String,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE console_sessions SET last_seen_at = ?2, expires_at = ?3
                     WHERE id_hash = ?1",
                    params![id_hash, timestamp(last_seen_at), timestamp(expires_at)],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn delete_session(&self, id_hash: String) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM console_sessions WHERE id_hash = ?1",
                    [&id_hash],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn delete_sessions(&self, username: String) -> Result<u64> {
        self.db
            .call(move |conn| {
                let n = conn.execute(
                    "DELETE FROM console_sessions WHERE username = ?1",
                    [&username],
                )?;
                Ok(n as u64)
            })
            .await
    }

    pub async fn append_audit(&self, entry: NewAudit) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO audit_log (at, actor, tenant_id, action, target, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        now(),
                        entry.actor,
                        entry.tenant_id.as_ref().map(TenantId::as_str),
                        entry.action,
                        entry.target,
                        entry.detail,
                    ],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT id, at, actor, tenant_id, action, target, detail FROM audit_log
                     WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY id DESC LIMIT ?2",
                )?;
                let tenant = tenant.as_ref().map(TenantId::as_str);
                let entries = statement
                    .query_map(params![tenant, limit], |r| {
                        let tenant: Option<String> = r.get(3)?;
                        Ok(AuditEntry {
                            id: r.get(0)?,
                            at: time(r, 1)?,
                            actor: r.get(2)?,
                            tenant_id: match tenant {
                                Some(_) => {
                                    Some(parsed(r, 3, stored_id(TenantId::new, "tenant id"))?)
                                }
                                None => None,
                            },
                            action: r.get(4)?,
                            target: r.get(5)?,
                            detail: r.get(6)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(entries)
            })
            .await
    }
}
