//! The `agent` binary's command line.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent"))
}

#[test]
fn a_bad_configuration_exits_with_64_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[relay]\nurl = \"ws://relay.example.com/agent/v1/connect\"\ntoken = \"t\"\n",
    )
    .expect("write");
    let output = agent()
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("AGENT_RELAY_INSECURE_DEV")
        .output()
        .expect("agent runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("relay.url"), "stderr: {stderr}");
    assert!(stderr.contains("ws://"), "stderr: {stderr}");
}

#[test]
fn the_token_never_reaches_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    let token = "secret-token-value-1234567890";
    std::fs::write(
        &path,
        format!(
            "[relay]\nurl = \"wss://r.example/agent/v1/connect\"\ntoken = \"{token}\"\ncredit = 0\n"
        ),
    )
    .expect("write");
    let output = agent()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("agent runs");
    assert_eq!(output.status.code(), Some(64));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(all.contains("relay.credit"), "{all}");
    assert!(!all.contains(token), "the token leaked: {all}");
}
