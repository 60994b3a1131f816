//! Console accounts, their sessions, and the audit log.
//!
//! A session is kept by the SHA-256 (hex) of its cookie's value, never the value itself, so a
//! copy of the database does not sign anyone in. Removing an account or changing its password
//! ends its sessions. The audit log is append-only: who (an account, the admin token, `cli`)
//! did what to which target, for which tenant.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use shared::TenantId;

use super::any::each;
use super::{AnyStore, Result, StoreError};
use crate::accounts::{Language, Role};

/// Most audit entries one read returns.
pub const MAX_AUDIT: u32 = 1000;

/// A console account as stored. Its password hash never leaves the relay: there is no
/// `Serialize` (see [`UserView`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    pub role: Role,
    /// The tenant of a tenant account; `None` for an operator.
    pub tenant_id: Option<TenantId>,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub language: Language,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
}

/// An account as it may be shown: everything but the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub username: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    pub language: Language,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            username: u.username.clone(),
            role: u.role,
            tenant_id: u.tenant_id.clone(),
            language: u.language,
            created_at: u.created_at,
            password_changed_at: u.password_changed_at,
        }
    }
}

/// A console session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie's value.
    pub id_hash: String,
    pub username: String,
    /// The token every state-changing request of the session carries.
    pub csrf_token: String,
    /// The client's address at sign-in, when known.
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The end of its absolute lifetime; the idle timeout is counted from `last_seen_at`.
    pub expires_at: DateTime<Utc>,
}

/// An entry to append to the audit log.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// An account's name, [`crate::accounts::ADMIN_TOKEN_ACTOR`], or `cli`.
    pub actor: String,
    /// The tenant concerned, if one is.
    pub tenant_id: Option<TenantId>,
    /// What was done, e.g. `login` or `POST /tenants/{tenant}/events/{id}/replay`.
    pub action: String,
    /// What it was done to, e.g. the concrete path or a username.
    pub target: String,
    /// More, in words; never a secret or a request body.
    pub detail: Option<String>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub tenant_id: Option<TenantId>,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

/// An operator has no tenant; a tenant account has exactly one.
fn check_role_and_tenant(user: &UserRecord) -> Result<()> {
    match (user.role, &user.tenant_id) {
        (Role::Operator, Some(tenant)) => Err(StoreError::Conflict(format!(
            "account {}: an operator sees every tenant and has none (drop tenant {tenant})",
            user.username
        ))),
        (Role::TenantAdmin | Role::TenantViewer, None) => Err(StoreError::Conflict(format!(
            "account {}: a {} needs the tenant it belongs to",
            user.username,
            user.role.as_str()
        ))),
        _ => Ok(()),
    }
}

impl AnyStore {
    /// Creates an account: `Conflict` when the name is taken or the role and tenant do not
    /// fit (an operator has none, a tenant account one), `NotFound` without its tenant.
    pub async fn create_user(&self, mut user: UserRecord) -> Result<()> {
        check_role_and_tenant(&user)?;
        // Both backends keep microseconds: what is written reads back equal.
        user.created_at = user.created_at.trunc_subsecs(6);
        user.password_changed_at = user.password_changed_at.trunc_subsecs(6);
        each!(self, s => s.create_user(user))
    }

    pub async fn user(&self, username: String) -> Result<Option<UserRecord>> {
        each!(self, s => s.user(username))
    }

    /// Every account, or those of one tenant, by name.
    pub async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<UserRecord>> {
        each!(self, s => s.users(tenant))
    }

    /// Removes an account and its sessions; `NotFound` when there is none.
    pub async fn remove_user(&self, username: String) -> Result<()> {
        each!(self, s => s.remove_user(username))
    }

    /// Sets an account's password hash and ends all its sessions; `NotFound` when there is
    /// none.
    pub async fn set_password(&self, username: String, hash: String) -> Result<()> {
        each!(self, s => s.set_password(username, hash))
    }

    /// `NotFound` when there is no such account.
    pub async fn set_language(&self, username: String, language: Language) -> Result<()> {
        each!(self, s => s.set_language(username, language))
    }

    /// Stores a new session (and forgets sessions past their lifetime); `NotFound` without
    /// its account.
    pub async fn create_session(&self, mut session: SessionRecord) -> Result<()> {
        session.created_at = session.created_at.trunc_subsecs(6);
        session.last_seen_at = session.last_seen_at.trunc_subsecs(6);
        session.expires_at = session.expires_at.trunc_subsecs(6);
        each!(self, s => s.create_session(session))
    }

    /// A session with its account, whatever its times say (the caller checks them).
    pub async fn session(&self, id_hash: String) -> Result<Option<(SessionRecord, UserRecord)>> {
        each!(self, s => s.session(id_hash))
    }

    /// Moves a session's idle timeout on; nothing when it is gone.
    pub async fn touch_session(
        &self,
        id_hash: String,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        each!(self, s => s.touch_session(id_hash, last_seen_at, expires_at))
    }

    /// Ends one session; nothing when it is gone.
    pub async fn delete_session(&self, id_hash: String) -> Result<()> {
        each!(self, s => s.delete_session(id_hash))
    }

    /// Ends every session of an account; how many there were.
    pub async fn delete_sessions(&self, username: String) -> Result<u64> {
        each!(self, s => s.delete_sessions(username))
    }

    pub async fn append_audit(&self, entry: NewAudit) -> Result<()> {
        each!(self, s => s.append_audit(entry))
    }

    /// The newest `limit` entries (at most [`MAX_AUDIT`]), newest first; with `Some(tenant)`
    /// only that tenant's.
    pub async fn audit(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, MAX_AUDIT);
        each!(self, s => s.audit(tenant, limit))
    }
}

/// A stored role read back.
pub(super) fn parse_role(text: &str) -> Result<Role> {
    Role::parse(text).ok_or_else(|| super::error::corrupt("role", format!("{text:?}")))
}

/// A stored language read back.
pub(super) fn parse_language(text: &str) -> Result<Language> {
    Language::parse(text).ok_or_else(|| super::error::corrupt("language", format!("{text:?}")))
}
