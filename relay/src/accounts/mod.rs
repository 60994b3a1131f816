//! Who is calling and what they may do: console accounts (operator, tenant admin, tenant
//! viewer), their sessions, and the same rules for the admin API, where the bearer admin token
//! counts as an operator.
//!
//! - `password`: argon2id hashing and checking.
//! - `session`: the session cookie, CSRF tokens, the [`Principal`] extractors.
//! - `limiter`: login attempts per account and per address.
//! - `access`: the guard in front of `/admin/v1` (bearer or session, tenant scope, audit).

pub mod access;
pub mod limiter;
pub mod password;
pub mod session;

use serde::{Deserialize, Serialize};
use shared::TenantId;

use crate::error::ApiError;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every tenant, and the relay itself (tenants, accounts).
    Operator,
    /// One tenant: sees it and changes its rules, replays, tokens.
    TenantAdmin,
    /// One tenant: sees it, changes nothing.
    TenantViewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantViewer => "tenant_viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Role::Operator),
            "tenant_admin" => Some(Role::TenantAdmin),
            "tenant_viewer" => Some(Role::TenantViewer),
            _ => None,
        }
    }
}

/// The console's languages, chosen per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Sv,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::En, Language::Sv];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Sv => "sv",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "en" => Some(Language::En),
            "sv" => Some(Language::Sv),
            _ => None,
        }
    }
}

/// A caller that proved who it is: a console user by session cookie, or the bearer admin
/// token (an operator named [`ADMIN_TOKEN_ACTOR`]).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account's name, as the audit log records it.
    pub actor: String,
    pub role: Role,
    /// The one tenant of a tenant account; `None` for an operator.
    pub tenant: Option<TenantId>,
    pub language: Language,
    /// The session's CSRF token (console sessions only): every state-changing request of a
    /// session must carry it.
    pub csrf: Option<String>,
}

/// The audit log's name for the bearer admin token.
pub const ADMIN_TOKEN_ACTOR: &str = "admin-token";

/// The audit log's name for the `relay user …` commands.
pub const CLI_ACTOR: &str = "cli";

/// The longest username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Whether `name` may be an account's name: 1 to [`MAX_USERNAME_BYTES`] ASCII letters,
/// digits, `.`, `_`, `-` or `@` (an e-mail address fits). The names of the admin token and
/// the CLI in the audit log are taken.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USERNAME_BYTES {
        return Err(format!(
            "username {name:?} is {} bytes long: use 1 to {MAX_USERNAME_BYTES}",
            name.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if !name.chars().all(allowed) {
        return Err(format!(
            "username {name:?}: use only letters a-z, digits, '.', '_', '-' and '@'"
        ));
    }
    if name == ADMIN_TOKEN_ACTOR || name == CLI_ACTOR {
        return Err(format!(
            "username {name:?} is the audit log's name for the admin token or the CLI: choose another"
        ));
    }
    Ok(())
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether it may see `tenant`'s data.
    pub fn may_see(&self, tenant: &TenantId) -> bool {
        match self.role {
            Role::Operator => true,
            Role::TenantAdmin | Role::TenantViewer => self.tenant.as_ref() == Some(tenant),
        }
    }

    /// Whether it may change `tenant`'s data (rules, replays, tokens).
    pub fn may_change(&self, tenant: &TenantId) -> bool {
        match self.role {
            Role::Operator => true,
            Role::TenantAdmin => self.tenant.as_ref() == Some(tenant),
            Role::TenantViewer => false,
        }
    }

    /// The tenants its views are limited to. An account whose role and tenant do not agree
    /// (a tenant role without a tenant, an operator with one: a corrupt row) is refused
    /// rather than shown every tenant.
    pub fn scope(&self) -> Result<Scope<'_>, ApiError> {
        match (self.role, self.tenant.as_ref()) {
            (Role::Operator, None) => Ok(Scope::All),
            (Role::TenantAdmin | Role::TenantViewer, Some(tenant)) => Ok(Scope::Tenant(tenant)),
            _ => Err(ApiError::Forbidden(format!(
                "account {} ({}) is set up wrongly: ask an operator to set it up again",
                self.actor,
                self.role.as_str()
            ))),
        }
    }

    /// Whether its role and tenant agree: an operator has no tenant, a tenant account has
    /// one.
    pub fn is_consistent(&self) -> bool {
        self.scope().is_ok()
    }
}

/// The tenants a caller's views cover; see [`Principal::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every tenant (an operator).
    All,
    /// This tenant only.
    Tenant(&'a TenantId),
}

impl<'a> Scope<'a> {
    /// The one tenant, or `None` for [`Scope::All`].
    pub fn tenant(self) -> Option<&'a TenantId> {
        match self {
            Scope::All => None,
            Scope::Tenant(tenant) => Some(tenant),
        }
    }

    pub fn is_all(self) -> bool {
        self == Scope::All
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            actor: "u".into(),
            role,
            tenant: tenant.map(|t| TenantId::new(t.to_owned()).expect("tenant id")),
            language: Language::En,
            csrf: None,
        }
    }

    #[test]
    fn a_tenant_account_sees_and_changes_only_its_tenant_and_a_viewer_changes_nothing() {
        let acme = TenantId::new("acme".to_owned()).expect("tenant id");
        let other = TenantId::new("other".to_owned()).expect("tenant id");
        let admin = user(Role::TenantAdmin, Some("acme"));
        assert!(admin.may_see(&acme) && admin.may_change(&acme));
        assert!(!admin.may_see(&other) && !admin.may_change(&other));
        let viewer = user(Role::TenantViewer, Some("acme"));
        assert!(viewer.may_see(&acme) && !viewer.may_change(&acme));
        assert!(!viewer.may_see(&other));
        let operator = user(Role::Operator, None);
        assert!(operator.may_see(&other) && operator.may_change(&other));
        assert_eq!(operator.scope().ok(), Some(Scope::All));
        assert_eq!(viewer.scope().ok(), Some(Scope::Tenant(&acme)));
        // A tenant account without its tenant (a corrupt row) sees nothing.
        let orphan = user(Role::TenantAdmin, None);
        assert!(!orphan.may_see(&acme) && !orphan.may_change(&acme));
        assert!(orphan.scope().is_err() && !orphan.is_consistent());
        assert!(user(Role::TenantViewer, None).scope().is_err());
        assert!(user(Role::Operator, Some("acme")).scope().is_err());
    }

    #[test]
    fn usernames_are_short_plain_and_not_the_audit_logs_own_names() {
        assert!(check_username("anna.berg@acme.se").is_ok());
        for bad in [
            "",
            "anna berg",
            "anna\n",
            "ånna",
            ADMIN_TOKEN_ACTOR,
            CLI_ACTOR,
        ] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        assert!(check_username(&"a".repeat(MAX_USERNAME_BYTES)).is_ok());
        assert!(check_username(&"a".repeat(MAX_USERNAME_BYTES + 1)).is_err());
    }

    #[test]
    fn roles_and_languages_read_back_what_they_write() {
        for role in [Role::Operator, Role::TenantAdmin, Role::TenantViewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for language in Language::ALL {
            assert_eq!(Language::parse(language.as_str()), Some(language));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Language::parse("de"), None);
    }
}
