//! `agent check`: what an installer runs first on a customer's server. It verifies the
//! configuration, the Mamut connection and mapping (every mapped table and column exists), and
//! that the relay accepts the agent's token, and prints one line per finding.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shared::protocol::{Envelope, Hello, Message, PROTOCOL_VERSION};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::config::{AgentConfig, MamutBackend};
use crate::mamut::mapping::Mapping;
use crate::mamut::sqlserver::SqlServer;
use crate::transport::{self, Endpoint};

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
            let target = format!(
                "SQL Server {}:{} database {}",
                sql.host, sql.port, sql.database
            );
            let server = SqlServer::new(sql.clone(), mapping, config.watch.currency.clone());
            match server.check_mapping().await {
                Err(e) => vec![fail(format!("cannot connect to {target}: {e}"))],
                Ok(problems) if problems.is_empty() => {
                    vec![
                        ok(format!("connected to {target}")),
                        ok("every mapped table and column exists"),
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
    let endpoint = Endpoint::parse(&config.relay.url, config.relay.insecure_dev)
        .map_err(anyhow::Error::msg)?;
    let tls = if endpoint.tls {
        Some(transport::tls_config(&config.relay)?)
    } else {
        None
    };
    let proxy = transport::select_proxy(config.relay.proxy.as_deref(), &endpoint.host, env)
        .map_err(anyhow::Error::msg)?;
    let mut socket =
        transport::connect(&config.relay, tls, proxy.as_ref(), Duration::from_secs(10)).await?;
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        credit: 1,
    });
    socket
        .send(WsMessage::Text(Envelope::new(hello).to_json().into()))
        .await?;
    let welcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let WsMessage::Text(text) = frame?
                && let Message::Welcome(w) = Envelope::from_json(text.as_str())?.msg
            {
                return Ok(w.tenant_id.to_string());
            }
        }
        anyhow::bail!("the relay closed the connection before its welcome")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no welcome within 10 s"))??;
    let _ = socket.send(WsMessage::Close(None)).await;
    Ok(welcome)
}
