//! The claims of an agent's JWT. The relay issues and verifies the token; the agent only
//! carries it. The tenant comes from here, never from anything the agent says.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, TenantId};

/// The audience every agent token is issued for.
pub const AGENT_AUDIENCE: &str = "mamut-agent";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentClaims {
    /// Issuer: the relay's configured issuer name.
    pub iss: String,
    /// Audience: always [`AGENT_AUDIENCE`].
    pub aud: String,
    /// Subject: the agent.
    pub sub: AgentId,
    /// The tenant the agent serves.
    pub tenant: TenantId,
    /// Token id, so a single token can be revoked.
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
}
