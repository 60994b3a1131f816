//! `agent check`: what an installer runs first on a customer's server. It verifies the
//! configuration, the Mamut connection and mapping (every mapped table and column exists and
//! fits what the agent writes there; no unmapped NOT NULL column without a default in a table
//! the agent inserts into; numbering that fits IDENTITY columns; an index on each watched
//! table's rowversion), and that the relay accepts the agent's token, and prints one line per
//! finding, each failure with what to do.

use futures_util::SinkExt;
use shared::protocol::SessionRole;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::config::{AgentConfig, MamutBackend};
use crate::mamut::mapping::Mapping;
use crate::mamut::sqlserver::SqlServer;
use crate::transport;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}",
            if self.ok { " ok " } else { "FAIL" },
            self.text
        )
    }
}

fn ok(text: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        text: text.into(),
    }
}

fn fail(text: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        text: text.into(),
    }
}

/// Runs every check; the configuration itself was loaded (and so checked) by the caller.
pub async fn run(config: &AgentConfig, env: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let mut findings = vec![ok("configuration is valid")];
    findings.extend(mamut(config).await);
    findings.push(relay(config, env).await);
    findings
}

async fn mamut(config: &AgentConfig) -> Vec<Finding> {
    match config.mamut.backend {
        MamutBackend::Recorder => vec![ok(format!(
            "Mamut backend is the recorder stand-in ({}): test and development only, not Mamut",
            config.mamut.path.display()
        ))],
        MamutBackend::Sqlserver => {
            let sql = &config.mamut.sqlserver;
            let mapping = match &sql.mapping {
                Some(path) => match Mapping::load(path) {
                    Ok(mapping) => mapping,
                    Err(e) => return vec![fail(format!("mapping: {e}"))],
                },
                None => Mapping::default(),
            };
            let target = match sql.host_and_instance() {
                (host, Some(instance)) => {
                    format!("SQL Server {host}\\{instance} database {}", sql.database)
                }
                (host, None) => format!("SQL Server {host}:{} database {}", sql.port, sql.database),
            };
            let server = SqlServer::new(sql.clone(), mapping, config.watch.currency.clone());
            match server.check_mapping().await {
                Err(e) => vec![fail(format!("cannot connect to {target}: {e}"))],
                Ok(problems) if problems.is_empty() => {
                    vec![
                        ok(format!("connected to {target}")),
                        ok(
                            "every mapped table and column exists and fits, the numbering fits, \
                            every watched table has a rowversion index",
                        ),
                    ]
                }
                Ok(problems) => std::iter::once(ok(format!("connected to {target}")))
                    .chain(problems.into_iter().map(|p| fail(format!("mapping: {p}"))))
                    .collect(),
            }
        }
    }
}

async fn relay(config: &AgentConfig, env: &dyn Fn(&str) -> Option<String>) -> Finding {
    match hello(config, env).await {
        Ok(tenant) => ok(format!(
            "relay {} accepted the token (tenant {tenant})",
            config.relay.url
        )),
        Err(e) => fail(format!("relay {}: {e:#}", config.relay.url)),
    }
}

/// Connects, says hello and waits for the welcome; returns the tenant.
async fn hello(
    config: &AgentConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let mut socket = transport::dial(&config.relay, env).await?;
    let welcome = transport::greet(&mut socket, SessionRole::Agent, 1).await?;
    let _ = socket.send(WsMessage::Close(None)).await;
    Ok(welcome.tenant_id.to_string())
}
