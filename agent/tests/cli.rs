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

#[test]
fn agent_sql_prints_every_statement_as_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(&mapping, "[tables]\norders = \"ordrer\"\n").expect("write");
    let output = agent()
        .args(["sql", "--mapping"])
        .arg(&mapping)
        .output()
        .expect("agent runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let statements: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let sql_of = |name: &str| {
        statements
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["sql"].as_str())
            .unwrap_or_else(|| panic!("{name} missing in {stdout}"))
            .to_owned()
    };
    assert!(sql_of("watch.order_status").contains("FROM ordrer WHERE rv > @P1"));
    assert!(sql_of("order.insert_identity").ends_with("; SELECT SCOPE_IDENTITY()"));
    assert!(sql_of("order.number.series").starts_with("UPDATE number_series SET"));
    assert!(statements.len() > 40, "{}", statements.len());
}
