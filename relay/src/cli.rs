//! The `relay` command line: `serve`, and the admin operations for an operator's shell. The
//! admin commands work on the store directly (the relay may be running or not) through the
//! same [`Admin`] the HTTP API uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use shared::domain::DocumentType;

use crate::admin::{Admin, EventQuery, NewAgent, NewShop, NewTenant};
use crate::auth::Tokens;
use crate::config::Config;
use crate::error::ApiError;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "relay",
    version,
    about = "Relay between web shops and Mamut agents"
)]
pub struct Cli {
    /// TOML configuration file; `RELAY_*` environment variables override it.
    #[arg(long, global = true, env = "RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (webhooks, agent connections, admin API).
    Serve,
    /// Tenants (merchants).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Shops of a tenant.
    #[command(subcommand)]
    Shop(ShopCommand),
    /// Agents of a tenant and their tokens.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// A tenant's events and their state.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Lower-case letters, digits, '-' and '_'.
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShopCommand {
    /// Add a shop to a tenant.
    Add(AddShop),
}

#[derive(Debug, Args)]
pub struct AddShop {
    pub tenant: String,
    pub shop_id: String,
    /// The shop's webhook secret (`whsec_...`); give it twice while the shop rotates it.
    #[arg(long = "secret", required = true)]
    pub secrets: Vec<String>,
    /// A shop order status that sends the order to Mamut; repeat for several.
    #[arg(long = "trigger-status", required = true)]
    pub trigger_statuses: Vec<String>,
    /// Create an `order` or an `invoice` in Mamut.
    #[arg(long, default_value = "order")]
    pub document_type: DocumentType,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent and print its token (shown once).
    Create {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 365)]
        ttl_days: u32,
    },
    /// Revoke an agent: its tokens stop working at once.
    Revoke { agent_id: String },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List a tenant's events, newest first.
    List {
        tenant: String,
        /// pending, delivered, ignored or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Runs an admin command and returns the JSON to print.
pub async fn run_admin(config: &Config, command: Command) -> Result<Value, CliError> {
    let store = Store::open(&config.store_location()?)?;
    let tokens = Tokens::new(store.clone(), config.issuer.clone());
    let admin = Admin {
        store: &store,
        tokens: &tokens,
    };
    let value = match command {
        Command::Serve => return Err(CliError::Usage("serve is not an admin command".into())),
        Command::Tenant(TenantCommand::Create { id, name }) => {
            admin.create_tenant(NewTenant { id, name }).await?
        }
        Command::Shop(ShopCommand::Add(add)) => json!(
            admin
                .add_shop(
                    add.tenant,
                    NewShop {
                        shop_id: add.shop_id,
                        webhook_secrets: add.secrets,
                        trigger_statuses: add.trigger_statuses,
                        document_type: add.document_type,
                    },
                )
                .await?
        ),
        Command::Agent(AgentCommand::Create {
            tenant,
            name,
            ttl_days,
        }) => {
            json!(
                admin
                    .create_agent(
                        tenant,
                        NewAgent {
                            name,
                            ttl_days: Some(ttl_days)
                        }
                    )
                    .await?
            )
        }
        Command::Agent(AgentCommand::Revoke { agent_id }) => {
            admin.revoke_agent(agent_id.clone()).await?;
            json!({ "agent_id": agent_id, "revoked": true })
        }
        Command::Events(EventsCommand::List {
            tenant,
            state,
            limit,
        }) => {
            admin
                .list_events(
                    tenant,
                    EventQuery {
                        state,
                        limit: Some(limit),
                    },
                )
                .await?
        }
    };
    Ok(value)
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}
