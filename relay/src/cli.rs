//! The `relay` command line: `serve`, and the admin operations for an operator's shell. The
//! admin commands work on the store directly (the relay may be running or not) through the
//! same [`Admin`] the HTTP API uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use shared::domain::DocumentType;

use crate::accounts::{Language, Role};
use crate::admin::{Admin, EventQuery, NewAgent, NewShop, NewTenant, ShopUpdate};
use crate::auth::Tokens;
use crate::config::Config;
use crate::error::ApiError;
use crate::shop::{ApiSettings, Flow, Platform};
use crate::store::AnyStore;

mod users;

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
    /// Console accounts: operators, tenant admins and tenant viewers.
    #[command(subcommand)]
    User(UserCommand),
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
    /// Change a shop's rules from a JSON file (the body of PATCH
    /// /admin/v1/tenants/{tenant}/shops/{shop}); fields left out stay as they are.
    Update {
        tenant: String,
        shop_id: String,
        /// JSON file, e.g. {"flow":"erp","status_map":{"delivered":{"shop_status":"shipped",
        /// "notify_customer":true,"tracking":true,"capture":true}}}.
        file: PathBuf,
    },
    /// List a tenant's shops with their rules (never their secrets).
    List { tenant: String },
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
    /// Which way data flows: `ecom`, `erp` or `combo`.
    #[arg(long, default_value = "erp", value_parser = parse_flow)]
    pub flow: Flow,
    /// Base URL of the shop's API, e.g. https://api.nordisk-ehandel.example/v1.
    #[arg(long, requires = "api_key")]
    pub api_url: Option<String>,
    /// The shop's API key (better from the environment than the command line).
    #[arg(long, env = "RELAY_SHOP_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

fn parse_flow(value: &str) -> Result<Flow, String> {
    serde_json::from_value(Value::String(value.to_owned()))
        .map_err(|_| format!("unknown flow {value:?}: use ecom, erp or combo"))
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

/// `relay user …`. A password is read from standard input (`--password-stdin`, one line) or
/// from `RELAY_USER_PASSWORD`, never from an argument, which any user of the machine could
/// read in the process list.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account.
    Add {
        /// 1 to 64 letters, digits, '.', '_', '-' or '@'.
        username: String,
        /// operator (every tenant), tenant_admin or tenant_viewer (one tenant).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The tenant of a tenant_admin or tenant_viewer.
        #[arg(long)]
        tenant: Option<String>,
        /// The console's language for the account: en or sv.
        #[arg(long, default_value = "en", value_parser = parse_language)]
        language: Language,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (never their password hashes), of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove an account; its sessions end.
    Remove { username: String },
    /// End every console session of an account (it must sign in again).
    SignOut { username: String },
    /// Set an account's password; its sessions end.
    SetPassword {
        username: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| {
        format!("unknown role {value:?}: use operator, tenant_admin or tenant_viewer")
    })
}

fn parse_language(value: &str) -> Result<Language, String> {
    Language::parse(value).ok_or_else(|| format!("unknown language {value:?}: use en or sv"))
}

/// Runs an admin command and returns the JSON to print.
pub async fn run_admin(config: &Config, command: Command) -> Result<Value, CliError> {
    let store = AnyStore::open(&config.store_location()?).await?;
    let tokens = Tokens::new(store.clone(), config.issuer.clone());
    let admin = Admin {
        store: &store,
        tokens: &tokens,
        operator: true,
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
                        flow: add.flow,
                        status_map: Default::default(),
                        price_lists: Default::default(),
                        api: add.api_url.map(|url| ApiSettings {
                            platform: Platform::default(),
                            url,
                            requests_per_sec: 5,
                        }),
                        api_key: add.api_key,
                    },
                )
                .await?
        ),
        Command::Shop(ShopCommand::Update {
            tenant,
            shop_id,
            file,
        }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let update: ShopUpdate = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            json!(admin.update_shop(tenant, shop_id, update).await?)
        }
        Command::Shop(ShopCommand::List { tenant }) => admin.list_shops(tenant).await?,
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
        Command::User(command) => {
            let env = |key: &str| std::env::var(key).ok();
            users::run(&store, command, &env, &mut std::io::stdin().lock()).await?
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
