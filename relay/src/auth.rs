//! Who may call what: the admin bearer token, and agent JWTs (HS256 pinned, `exp`, `iss`,
//! `aud` checked, key id for rotation, revocable per agent).

use axum::http::HeaderMap;
use chrono::Utc;
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use shared::claims::{AGENT_AUDIENCE, AgentClaims};
use shared::{AgentId, TenantId};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::ApiError;
use crate::store::{AnyStore, SigningKey, StoreError};

/// The bearer token of an `Authorization` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Checks the admin token in constant time.
pub fn check_admin(headers: &HeaderMap, expected: Option<&Secret>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::Unauthorized(
            "the admin API is disabled: no admin token is configured".into(),
        ));
    };
    let given = bearer(headers).unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong admin token".into(),
        ))
    }
}

/// A verified agent: the tenant comes from here.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub agent_id: AgentId,
    pub tenant_id: TenantId,
}

/// Issues and verifies agent tokens with keys kept in the store.
pub struct Tokens {
    store: AnyStore,
    issuer: String,
    keys: DashMap<String, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid agent token")]
    Invalid,
    #[error("the agent's token is revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Tokens {
    pub fn new(store: AnyStore, issuer: String) -> Self {
        Self {
            store,
            issuer,
            keys: DashMap::new(),
        }
    }

    /// Issues a token for `agent` of `tenant`, valid `ttl_days`.
    pub async fn issue(
        &self,
        agent: &AgentId,
        tenant: &TenantId,
        ttl_days: u32,
    ) -> Result<(String, i64), TokenError> {
        let key = self.store.current_signing_key().await?;
        let now = Utc::now().timestamp();
        let exp = now + i64::from(ttl_days) * 86_400;
        let claims = AgentClaims {
            iss: self.issuer.clone(),
            aud: AGENT_AUDIENCE.into(),
            sub: agent.clone(),
            tenant: tenant.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iat: now,
            exp,
        };
        let header = Header {
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret))
            .map_err(|e| {
                TokenError::Store(StoreError::Database(format!("cannot sign a token: {e}")))
            })?;
        Ok((token, exp))
    }

    /// Verifies a token and that its agent exists, belongs to the token's tenant and is not
    /// revoked.
    pub async fn verify(&self, token: &str) -> Result<AgentIdentity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let secret = self.key(&kid).await?.ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AGENT_AUDIENCE]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The relay issues and checks its own tokens: no clock skew to forgive. A token that
        // has expired is refused at once, one that is not valid yet (`nbf`) too.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<AgentClaims>(
            token,
            &DecodingKey::from_secret(&secret),
            &validation,
        )
        .map_err(|_| TokenError::Invalid)?
        .claims;
        let agent = self
            .store
            .agent(claims.sub.clone())
            .await?
            .ok_or(TokenError::Invalid)?;
        if agent.tenant_id != claims.tenant {
            return Err(TokenError::Invalid);
        }
        if agent.revoked_at.is_some() {
            return Err(TokenError::Revoked);
        }
        Ok(AgentIdentity {
            agent_id: claims.sub,
            tenant_id: claims.tenant,
        })
    }

    async fn key(&self, kid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(secret) = self.keys.get(kid) {
            return Ok(Some(secret.clone()));
        }
        let found: Option<SigningKey> = self.store.signing_key(kid.to_owned()).await?;
        Ok(found.map(|key| {
            self.keys.insert(key.kid, key.secret.clone());
            key.secret
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLocation;

    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        aud: &'a str,
        sub: &'a str,
        tenant: &'a str,
        jti: &'a str,
        iat: i64,
        exp: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        nbf: Option<i64>,
    }

    #[tokio::test]
    async fn a_token_expired_seconds_ago_or_not_yet_valid_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
            .await
            .expect("store opens");
        let tenant = TenantId::new("acme").expect("tenant id");
        store
            .create_tenant(tenant.clone(), "Acme".into())
            .await
            .expect("tenant");
        let agent = store
            .create_agent(tenant.clone(), "mamut-1".into())
            .await
            .expect("agent");
        let tokens = Tokens::new(store.clone(), "relay".into());
        let key = store.current_signing_key().await.expect("signing key");
        let now = Utc::now().timestamp();
        let sign = |exp: i64, nbf: Option<i64>| {
            let claims = Claims {
                iss: "relay",
                aud: AGENT_AUDIENCE,
                sub: agent.id.as_str(),
                tenant: "acme",
                jti: "t",
                iat: now - 3600,
                exp,
                nbf,
            };
            let header = Header {
                kid: Some(key.kid.clone()),
                ..Header::new(Algorithm::HS256)
            };
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret))
                .expect("signed")
        };
        assert!(tokens.verify(&sign(now + 600, None)).await.is_ok(), "valid");
        assert!(
            matches!(
                tokens.verify(&sign(now - 30, None)).await,
                Err(TokenError::Invalid)
            ),
            "expired 30 s ago"
        );
        assert!(
            matches!(
                tokens.verify(&sign(now + 600, Some(now + 60))).await,
                Err(TokenError::Invalid)
            ),
            "not valid for another minute"
        );
        assert!(tokens.verify(&sign(now + 600, Some(now - 1))).await.is_ok());
    }
}
