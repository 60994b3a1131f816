//! The agent as a child process, natively or as agent.exe under wine: its options (the relay
//! connection, the Mamut side on SQL Server or through the import program), its configuration
//! file and state, kill and restart, and what the recorder stand-in applied.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{RelayProcess, bin_path};
use crate::harness::wine::Wine;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub proxy: Option<String>,
    /// Further relay instances the agent may connect to (their WebSocket URLs).
    pub fallback_urls: Vec<String>,
    /// How often the agent polls Mamut for changes.
    pub watch_interval_ms: u64,
    pub apply_delay_ms: u64,
    pub credit: u32,
    /// Use the SQL Server backend against a TDS stand-in instead of the recorder.
    pub sqlserver: Option<SqlServerOptions>,
    /// Run agent.exe under wine instead of the Linux binary; paths in agent.toml are then
    /// written as wine sees them (`Z:\...`).
    pub wine: Option<Wine>,
    /// Orders through Mamut's import program (`[mamut] writer = "import"`); needs `sqlserver`.
    pub import: Option<ImportOptions>,
}

/// The agent's `[mamut.import]` settings for a test, and the environment the import program
/// (the stand-in `mamut-import-sim` unless `program` says otherwise) gets through the agent.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The import program; the `mamut-import-sim` binary of this workspace when absent.
    pub program: Option<PathBuf>,
    /// The spool folder; `spool` in the agent's directory when absent.
    pub spool_dir: Option<PathBuf>,
    pub client: String,
    pub external_no: String,
    /// `shop_id`, needed when `external_no` has no `{shop_id}`.
    pub shop_id: Option<String>,
    pub shipping_article: Option<String>,
    pub timeout_secs: u64,
    pub after_import_delay_ms: u64,
    /// Environment variables of the agent process, which its import program inherits
    /// (`MAMUT_IMPORT_SIM_*`).
    pub env: Vec<(String, String)>,
    /// Further `[mamut.import]` lines, as TOML; may end with sub-tables such as
    /// `[mamut.import.on_too_long_fields]`.
    pub extra: String,
}

impl ImportOptions {
    /// The stand-in importing into the PostgreSQL schema (and server) `env` names, for the
    /// test shop [`crate::harness::SHOP`] with the shop's order id as the external order number.
    pub fn new(env: Vec<(String, String)>) -> Self {
        Self {
            program: None,
            spool_dir: None,
            client: "001".to_owned(),
            external_no: "{order_id}".to_owned(),
            shop_id: Some(crate::harness::SHOP.to_owned()),
            shipping_article: Some("FRAKT".to_owned()),
            timeout_secs: 60,
            after_import_delay_ms: 0,
            env,
            extra: String::new(),
        }
    }

    /// Sets (or replaces) one environment variable of the agent and its import program.
    pub fn with_env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.into()));
        self
    }
}

/// The agent's `[mamut.sqlserver]` settings for a test.
#[derive(Debug, Clone)]
pub struct SqlServerOptions {
    /// `host` of `[mamut.sqlserver]`; `HOST\\INSTANCE` names a named instance.
    pub host: String,
    pub port: u16,
    pub unknown_article: &'static str,
    pub after_commit_delay_ms: u64,
    /// A mapping file; the reference names when absent.
    pub mapping: Option<PathBuf>,
    /// `encryption` of `[mamut.sqlserver]`: "not_supported" unless a test sets up TLS.
    pub encryption: &'static str,
    /// Further `[mamut.sqlserver]` lines, as TOML (TLS, numbering, timeouts...).
    pub extra: String,
}

impl SqlServerOptions {
    pub fn new(port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
            unknown_article: "reject",
            after_commit_delay_ms: 0,
            mapping: None,
            encryption: "not_supported",
            extra: String::new(),
        }
    }
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            proxy: None,
            fallback_urls: Vec::new(),
            watch_interval_ms: 200,
            apply_delay_ms: 0,
            credit: 16,
            sqlserver: None,
            wine: None,
            import: None,
        }
    }
}

/// One row of the recorder stand-in's `applied_orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    pub shop_id: String,
    pub shop_order_id: String,
    pub document_type: String,
    pub mamut_ref: String,
    pub order_json: String,
}

pub struct AgentProcess {
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    /// The relay's URL, the agent's token, and the TLS line of its config.
    relay_section: (String, String, String),
    /// agent.exe under wine, when the options asked for it.
    wine: Option<Wine>,
    /// Environment variables of the agent process (and the import program it runs).
    env: Vec<(String, String)>,
}

impl AgentProcess {
    pub async fn start(relay: &RelayProcess, token: &str, options: AgentOptions) -> Self {
        let wine = options.wine.clone();
        // Under wine, a space in the directory's name, as in `C:\Program Files`: the service's
        // command line must quote the configuration's path.
        let prefix = if wine.is_some() { "agent dir " } else { ".tmp" };
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let tls = if relay.ws_url().starts_with("wss") {
            format!(
                "ca_file = {:?}\n",
                agent_path(wine.as_ref(), &relay.pki.ca_file())
            )
        } else {
            "insecure_dev = true\n".to_owned()
        };
        let mut agent = Self {
            dir,
            child: None,
            starts: 0,
            relay_section: (relay.ws_url(), token.to_owned(), tls),
            wine,
            env: Vec::new(),
        };
        agent.configure(&options);
        agent.spawn();
        agent
    }

    /// Writes `agent.toml` for `options`; takes effect at the next (re)start.
    pub fn configure(&mut self, options: &AgentOptions) {
        let (url, token, tls) = &self.relay_section;
        let path = |p: &Path| agent_path(self.wine.as_ref(), p);
        let proxy = options
            .proxy
            .as_ref()
            .map(|p| format!("proxy = {p:?}\n"))
            .unwrap_or_default();
        let writer = if options.import.is_some() {
            "writer = \"import\"\n"
        } else {
            ""
        };
        let import = options
            .import
            .as_ref()
            .map(|i| self.import_section(i))
            .unwrap_or_default();
        self.env = options
            .import
            .as_ref()
            .map(|i| i.env.clone())
            .unwrap_or_default();
        let mamut = match &options.sqlserver {
            None => format!(
                "backend = \"recorder\"\npath = {:?}\napply_delay_ms = {}\n",
                path(&self.dir.path().join("mamut-recorder.sqlite")),
                options.apply_delay_ms
            ),
            Some(sql) => format!(
                "backend = \"sqlserver\"\n{writer}\n[mamut.sqlserver]\nhost = {:?}\nport = {}\ndatabase = \"mamut\"\n\
                 user = \"mamut\"\npassword = \"s3cret-pass\"\nencryption = {:?}\n\
                 unknown_article = {:?}\nshipping_article = \"FRAKT\"\nafter_commit_delay_ms = {}\n{}{}",
                sql.host,
                sql.port,
                sql.encryption,
                sql.unknown_article,
                sql.after_commit_delay_ms,
                sql.mapping
                    .as_ref()
                    .map(|m| format!("mapping = {:?}\n", path(m)))
                    .unwrap_or_default(),
                sql.extra,
            ),
        };
        let config = format!(
            "[relay]\nurl = {url:?}\nfallback_urls = {:?}\ntoken = {token:?}\n{tls}{proxy}credit = {}\nheartbeat_secs = 2\n\n\
             [backoff]\ninitial_ms = 100\nmax_ms = 1000\nstable_after_secs = 10\n\n\
             [watch]\ninterval_ms = {}\nstate_file = {:?}\n\n[mamut]\n{mamut}{import}",
            options.fallback_urls,
            options.credit,
            options.watch_interval_ms,
            path(&self.state_file()),
        );
        std::fs::write(self.config_file(), config).expect("write agent.toml");
    }

    /// `[mamut.import]` for `import`, starting on a line of its own.
    fn import_section(&self, import: &ImportOptions) -> String {
        let path = |p: &Path| agent_path(self.wine.as_ref(), p);
        let program = import
            .program
            .clone()
            .unwrap_or_else(|| bin_path("mamut-import-sim"));
        let spool = import.spool_dir.clone().unwrap_or_else(|| self.spool_dir());
        let optional = |key: &str, value: &Option<String>| {
            value
                .as_ref()
                .map(|v| format!("{key} = {v:?}\n"))
                .unwrap_or_default()
        };
        format!(
            "\n[mamut.import]\nprogram = {:?}\nspool_dir = {:?}\nclient = {:?}\nexternal_no = {:?}\n\
             {}{}timeout_secs = {}\nafter_import_delay_ms = {}\n{}",
            path(&program),
            path(&spool),
            import.client,
            import.external_no,
            optional("shop_id", &import.shop_id),
            optional("shipping_article", &import.shipping_article),
            import.timeout_secs,
            import.after_import_delay_ms,
            import.extra,
        )
    }

    /// The import writer's spool folder when [`ImportOptions::spool_dir`] is not set.
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// The agent's configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// The directory of the agent's configuration, state and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{}.log", self.starts)))
            .expect("log");
        let mut command = match &self.wine {
            None => Command::new(bin_path("agent")),
            Some(wine) => wine.command(&wine.exe),
        };
        let config = agent_path(self.wine.as_ref(), &self.config_file());
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts");
        self.child = Some(child);
    }

    /// SIGKILL, and wait until the process is gone; under wine every process of the prefix
    /// is ended too (`wineserver -k`), as killing `wine` may leave the Windows process behind.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill agent");
            if let Some(wine) = &self.wine {
                wine.kill_all();
            }
        }
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn();
    }

    /// Runs `agent check` on this agent's configuration: (success, report).
    pub async fn check(&self) -> (bool, String) {
        let output = Command::new(bin_path("agent"))
            .arg("check")
            .arg("--config")
            .arg(self.config_file())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .await
            .expect("agent check runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Starts `agent sync products --to <to>` on this agent's configuration, with `args`
    /// added; its output is collected by [`tokio::process::Child::wait_with_output`].
    pub fn sync_products(&self, to: &str, args: &[&str]) -> Child {
        Command::new(bin_path("agent"))
            .args(["sync", "products", "--to", to, "--config"])
            .arg(self.config_file())
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("agent sync starts")
    }

    /// The progress file of an initial sync towards `to` (`shop` or `mamut`).
    pub fn sync_progress_file(&self, to: &str) -> PathBuf {
        self.dir.path().join(format!("sync-products-to-{to}.json"))
    }

    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The agent's change cursors file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("agent-state.json")
    }

    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("agent-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    /// How many sessions the agent has established so far.
    pub fn sessions(&self) -> usize {
        self.logs().matches("connected to relay").count()
    }

    /// What the recorder stand-in holds, in the order written.
    pub fn applied(&self) -> Vec<AppliedRow> {
        let path = self.dir.path().join("mamut-recorder.sqlite");
        if !path.exists() {
            return Vec::new();
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open recorder");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        let mut stmt = match conn.prepare(
            "SELECT shop_id, shop_order_id, document_type, mamut_ref, order_json FROM applied_orders ORDER BY id",
        ) {
            Ok(stmt) => stmt,
            Err(_) => return Vec::new(), // the table is created on the agent's first start
        };
        stmt.query_map([], |r| {
            Ok(AppliedRow {
                shop_id: r.get(0)?,
                shop_order_id: r.get(1)?,
                document_type: r.get(2)?,
                mamut_ref: r.get(3)?,
                order_json: r.get(4)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let (Some(wine), Some(_)) = (&self.wine, &self.child) {
            wine.kill_all();
        }
        if std::thread::panicking() {
            eprintln!("==== agent logs ====\n{}", self.logs());
        }
    }
}

/// `path` as the agent sees it: unchanged, or under wine on drive Z:.
fn agent_path(wine: Option<&Wine>, path: &Path) -> String {
    match wine {
        None => path.display().to_string(),
        Some(_) => Wine::path(path),
    }
}
