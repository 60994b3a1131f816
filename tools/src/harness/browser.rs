//! The console's browser scenarios: `node tests/browser/<script>` driving Debian's Chromium
//! through playwright-core (installed by `scripts/test-deps.sh`). A scenario gets the relay's
//! address as `BASE_URL`, where to save its screenshots as `SCREENSHOT_DIR`
//! (`target/screenshots`), and its own variables; it exits non-zero when a check fails.
//!
//! Without node, `/usr/bin/chromium` or `tests/browser/node_modules` a run is
//! [`BrowserRun::Skipped`] locally and a failure in CI (`CI` set), so CI never passes without
//! a browser.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The longest one scenario may take, browser start included.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The Chromium the scenarios drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What became of a scenario.
#[derive(Debug)]
pub enum BrowserRun {
    /// It ran and passed; what it printed.
    Ran { output: String },
    /// It could not run here, and why (only outside CI).
    Skipped(String),
}

/// The workspace's root (this crate's parent directory).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The folder the scenarios save their screenshots in.
pub fn screenshot_dir() -> PathBuf {
    workspace().join("target").join("screenshots")
}

/// What the scenarios need that is missing here, if anything.
async fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(node, Ok(status) if status.success()) {
        missing.push("node (Debian nodejs)".to_owned());
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian chromium)"));
    }
    let modules = workspace().join("tests/browser/node_modules/playwright-core");
    if !modules.exists() {
        missing.push(format!(
            "{} (npm ci --prefix tests/browser)",
            modules.display()
        ));
    }
    missing
}

/// Runs `tests/browser/<script>` against `base_url` with `vars` in its environment; panics
/// with the scenario's output when it fails or overruns [`DEADLINE`].
pub async fn run_script(script: &str, base_url: &str, vars: &[(&str, &str)]) -> BrowserRun {
    let missing = missing().await;
    if !missing.is_empty() {
        let why = format!(
            "{} missing: run scripts/test-deps.sh first",
            missing.join(", ")
        );
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "browser scenario {script} in CI: {why}"
        );
        println!("browser scenario {script} skipped: {why}");
        return BrowserRun::Skipped(why);
    }
    let root = workspace();
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/browser").join(script))
        .current_dir(&root)
        .env("BASE_URL", base_url)
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node for {script}: {e}"));
    let output = match tokio::time::timeout(DEADLINE, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("browser scenario {script}: waiting for node failed: {e}"),
        // Dropping the child on the timeout kills it (`kill_on_drop`).
        Err(_) => panic!("browser scenario {script} did not finish within {DEADLINE:?}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "browser scenario {script} failed ({}):\n{text}",
        output.status
    );
    BrowserRun::Ran { output: text }
}
