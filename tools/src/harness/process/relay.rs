//! The relay as a child process: its options, start on a random port with TLS from the test CA,
//! kill and restart on the same port and database, its admin API and `/metrics`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{bin_path, metric_in};
use crate::harness::admin::Admin;
use crate::harness::pki::Pki;
use crate::harness::shop::Shop;

#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub tls: bool,
    pub max_body_bytes: Option<usize>,
    pub ack_timeout_secs: Option<u64>,
    pub heartbeat_secs: Option<u32>,
    /// A `postgres://` store shared with other instances; a SQLite file of its own if absent.
    pub database_url: Option<String>,
    pub lease_secs: Option<u64>,
    /// Short flush and retry times so tests finish fast; off for benchmarks, which measure
    /// the product's defaults.
    pub quick_timings: bool,
    /// More `RELAY_*` settings, set last.
    pub env: Vec<(String, String)>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            tls: true,
            max_body_bytes: None,
            ack_timeout_secs: None,
            heartbeat_secs: Some(2),
            database_url: None,
            lease_secs: None,
            quick_timings: true,
            env: Vec::new(),
        }
    }
}

pub struct RelayProcess {
    pub pki: Arc<Pki>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub admin_token: String,
    options: RelayOptions,
    starts: u32,
}

impl RelayProcess {
    pub async fn start(pki: Arc<Pki>, options: RelayOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin_token = format!("admin-{}", rand::random::<u64>());
        let mut relay = Self {
            pki,
            dir,
            child: None,
            port: 0,
            admin_token,
            options,
            starts: 0,
        };
        relay.spawn().await;
        relay
    }

    pub fn database_url(&self) -> String {
        match &self.options.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.db_path().display()),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("relay.sqlite")
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("relay-{}.log", self.starts));
        let mut command = Command::new(bin_path("relay"));
        command
            .arg("serve")
            .env("RELAY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("RELAY_DATABASE_URL", self.database_url())
            .env("RELAY_ADMIN_TOKEN", &self.admin_token)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true);
        if self.options.tls {
            command
                .env("RELAY_TLS_CERT", self.pki.cert_file())
                .env("RELAY_TLS_KEY", self.pki.key_file());
        }
        if let Some(bytes) = self.options.max_body_bytes {
            command.env("RELAY_MAX_BODY_BYTES", bytes.to_string());
        }
        if let Some(secs) = self.options.ack_timeout_secs {
            command.env("RELAY_ACK_TIMEOUT_SECS", secs.to_string());
        }
        if let Some(secs) = self.options.heartbeat_secs {
            command.env("RELAY_HEARTBEAT_SECS", secs.to_string());
        }
        if self.options.quick_timings {
            // Quick flushes and retries so tests of the shop side finish fast.
            command
                .env("RELAY_DISPATCH_FLUSH_MS", "100")
                .env("RELAY_RETRY_BASE_MS", "50")
                .env("RELAY_RETRY_CAP_MS", "500");
        }
        if let Some(secs) = self.options.lease_secs {
            command.env("RELAY_LEASE_SECS", secs.to_string());
        }
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("relay starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("relay listening on ") {
                    return Some(url.to_owned());
                }
            }
            None
        })
        .await;
        let url = match listening {
            Ok(Some(url)) => url,
            _ => panic!(
                "relay did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        self.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the listening line");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill relay");
        }
    }

    /// Starts again on the same port and database.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}", self.port)
    }

    /// The relay's `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.pki
            .client()
            .get(format!("{}/metrics", self.base_url()))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics body")
    }

    /// One sample of `/metrics`: `name` with its labels, as in
    /// `relay_refused_total{limit="write_stall"}`; 0 when the page does not have it.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_in(&self.metrics().await, name)
    }

    pub fn ws_url(&self) -> String {
        let scheme = if self.options.tls { "wss" } else { "ws" };
        format!("{scheme}://localhost:{}/agent/v1/connect", self.port)
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.pki.client(), self.base_url(), self.admin_token.clone())
    }

    pub fn shop(&self) -> Shop {
        Shop::new(self.pki.client(), self.base_url())
    }

    /// The shop's webhooks to this relay, signed with `secret` (the one the relay knows).
    pub fn shop_with(&self, secret: shared::signature::WebhookSecret) -> Shop {
        Shop::with_secret(self.pki.client(), self.base_url(), secret)
    }

    /// The running relay's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The relay's instance id (as the holder of leases), from its log.
    pub fn instance(&self) -> Option<String> {
        let logs = self.logs();
        let line = logs.lines().rev().find(|l| l.contains("relay instance"))?;
        let start = line.find("instance=")? + "instance=".len();
        Some(
            line[start..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .collect(),
        )
    }

    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("relay-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("==== relay logs ====\n{}", self.logs());
        }
    }
}
