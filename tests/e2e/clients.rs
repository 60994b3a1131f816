//! The Mamut stand-in checked by clients we did not write: FreeTDS `tsql`, python-tds and
//! pymssql run the checks in `tests/clients/` against a live stand-in, and every SQL statement
//! the agent can send (`agent sql`, from the real mapping) is parsed by sqlglot's T-SQL grammar
//! together with the reference schema.
//!
//! The clients come from `scripts/test-deps.sh` (`tsql` on PATH, the Python packages in
//! `target/pyenv`). Where they are missing the tests say "skipped" locally and fail in CI (the
//! `CI` variable set), so CI never passes without them.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tests::mamut_db::MamutDb;
use tests::process::bin_path;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one client's whole run may take (each of its checks bounds itself further).
const DEADLINE: Duration = Duration::from_secs(180);

/// The login `MamutDb` configures on its stand-in.
const USER: &str = "mamut";
const PASSWORD: &str = "s3cret-pass";
const DATABASE: &str = "mamut";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn clients_dir() -> PathBuf {
    workspace().join("tests").join("clients")
}

/// The interpreter `scripts/test-deps.sh` installs the Python clients for.
fn python() -> PathBuf {
    workspace().join("target/pyenv/bin/python")
}

/// What of `scripts/test-deps.sh`'s installs is missing, if anything.
async fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    let python = python();
    let imports = Command::new(&python)
        .args(["-c", "import pytds, pymssql, sqlglot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(imports, Ok(status) if status.success()) {
        missing.push(format!(
            "{} with python-tds, pymssql and sqlglot",
            python.display()
        ));
    }
    let tsql = Command::new("tsql")
        .arg("-C")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(tsql, Ok(status) if status.success()) {
        missing.push("tsql (Debian freetds-bin)".into());
    }
    missing
}

/// True when the clients are installed. Otherwise: in CI a failure, locally a note and false.
async fn clients_installed(test: &str) -> bool {
    let missing = missing_tools().await.join(", ");
    tests::requirements_met(test, &missing, "run scripts/test-deps.sh first")
}

/// Runs `command` to completion within the deadline, feeding it `input`, and returns what it
/// printed. Killed when the deadline passes.
async fn run(what: &str, mut command: Command, input: &[u8]) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .await
            .unwrap_or_else(|e| panic!("{what}: writing its input failed: {e}"));
    }
    match tokio::time::timeout(DEADLINE, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("{what}: waiting for it failed: {e}"),
        Err(_) => panic!("{what} did not finish within {DEADLINE:?} (killed)"),
    }
}

/// Prints a client's output and fails unless it exited 0.
fn report(what: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- {what} ---\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- {what} (stderr) ---\n{stderr}");
    }
    let summary = stdout.lines().last().unwrap_or("(no output)");
    assert!(
        output.status.success(),
        "{what} exited with {}: the stand-in disagrees with a client we did not write; \
         the FAIL lines in its output above say where. {summary}",
        output.status
    );
}

/// Runs one check script of `tests/clients/` against a fresh stand-in.
async fn check_with(script: &str) {
    if !clients_installed(script).await {
        return;
    }
    let db = MamutDb::start();
    let mut command = Command::new(python());
    command
        .arg(clients_dir().join(script))
        .args(["--host", "127.0.0.1", "--port", &db.port().to_string()])
        .args([
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--database",
            DATABASE,
        ]);
    let output = run(script, command, b"").await;
    report(script, &output);
}

#[tokio::test(flavor = "multi_thread")]
async fn freetds_tsql_agrees_with_the_stand_in() {
    check_with("check_tsql.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_tds_agrees_with_the_stand_in() {
    check_with("check_pytds.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pymssql_agrees_with_the_stand_in() {
    check_with("check_pymssql.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_statement_the_agent_can_send_parses_as_t_sql() {
    if !clients_installed("tsql_parse.py").await {
        return;
    }
    let root = workspace();
    let mut agent = Command::new(bin_path("agent"));
    agent
        .arg("sql")
        .arg("--mapping")
        .arg(root.join("deploy").join("mamut").join("mapping.toml"));
    let statements = run("agent sql", agent, b"").await;
    assert!(
        statements.status.success(),
        "agent sql exited with {}: {}",
        statements.status,
        String::from_utf8_lossy(&statements.stderr)
    );
    let mut parse = Command::new(python());
    parse
        .arg(clients_dir().join("tsql_parse.py"))
        .arg("--schema")
        .arg(root.join("deploy").join("mamut").join("schema.sql"));
    let output = run("tsql_parse.py", parse, &statements.stdout).await;
    report("agent sql | tsql_parse.py", &output);
}
