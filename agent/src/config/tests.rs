//! Loading `agent.toml` and the environment: what is accepted, what each error names, what
//! stays hidden.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

#[test]
fn the_environment_overrides_the_file_and_the_token_stays_hidden() {
    let (_dir, path) = write(&format!(
        "[relay]\nurl = \"wss://relay.example.com/agent/v1/connect\"\ntoken = \"file\"\n\
         {RECORDER}"
    ));
    let config = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_TOKEN", "from-env")]))
        .expect("valid");
    assert_eq!(config.relay.token.expose(), "from-env");
    assert!(!format!("{config:?}").contains("from-env"));
    assert_eq!(config.relay.credit, 16);
}

#[test]
fn a_proxy_url_is_checked_and_its_password_stays_hidden() {
    let (_dir, path) = write(&format!(
        "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
         proxy = \"http://alice:p%40ss@proxy:3128\"\n{RECORDER}"
    ));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("p%40ss") && !shown.contains("alice"),
        "{shown}"
    );
    assert!(shown.contains("http://<hidden>@proxy:3128"), "{shown}");

    let bad = AgentConfig::load(
        Some(&path),
        &env_of(&[("AGENT_RELAY_PROXY", "http://alice:100%@proxy:3128")]),
    )
    .expect_err("invalid percent sequence");
    assert_eq!(bad.key, "relay.proxy");
    assert!(bad.message.contains("invalid percent sequence"), "{bad}");
    assert!(!bad.to_string().contains("100%"), "{bad}");

    for direct in ["none", "direct"] {
        let loaded = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_PROXY", direct)]));
        assert!(loaded.is_ok(), "{direct}");
    }
    let auto = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_PROXY", "auto")]));
    assert_eq!(auto.is_ok(), cfg!(windows), "WPAD is asked of Windows only");
}

#[test]
fn plain_ws_needs_the_insecure_dev_flag() {
    let (_dir, path) = write(&format!(
        "[relay]\nurl = \"ws://127.0.0.1:8080/agent/v1/connect\"\ntoken = \"t\"\n{RECORDER}"
    ));
    let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("ws refused");
    assert_eq!(bad.key, "relay.url");
    let ok = AgentConfig::load(
        Some(&path),
        &env_of(&[("AGENT_RELAY_INSECURE_DEV", "true")]),
    );
    assert!(ok.is_ok());
}

#[test]
fn unknown_keys_and_missing_tokens_are_named() {
    let (_dir, path) = write("[relay]\nurl = \"wss://r/agent/v1/connect\"\ntokn = \"t\"\n");
    let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("unknown key");
    assert!(bad.message.contains("tokn"), "{bad}");
    let (_dir, path) = write("[relay]\nurl = \"wss://r/agent/v1/connect\"\n");
    let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("no token");
    assert_eq!(bad.key, "relay.token");
}

#[test]
fn the_example_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("the example loads");
    assert_eq!(config.mamut.backend, MamutBackend::Sqlserver);
    assert_eq!(config.mamut.sqlserver.customer_match.len(), 2);
    assert_eq!(config.watch.interval_ms, 250);
    let sql = &config.mamut.sqlserver;
    assert_eq!(sql.too_long("order_lines.description"), TooLong::Truncate);
    assert_eq!(sql.too_long("customers.name"), TooLong::Refuse);
    assert_eq!(sql.order_numbering, Numbering::MaxPlusOne);
}

#[test]
fn the_example_import_section_is_valid_once_chosen_and_needs_the_sqlserver_backend() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let text = std::fs::read_to_string(path).expect("example");
    assert!(text.contains("writer = \"sql\"\n"));
    let (_dir, path) = write(&text.replace("writer = \"sql\"\n", "writer = \"import\"\n"));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("the example loads");
    assert_eq!(config.mamut.writer, Writer::Import);
    let import = &config.mamut.import;
    assert_eq!(
        (
            import.client.as_str(),
            import.department,
            import.timeout_secs
        ),
        ("001", 1, 300)
    );
    assert_eq!(import.too_long("ORDERLINE.DESCRIPTION"), TooLong::Truncate);
    assert_eq!(import.too_long("ORDER.CONTNAME"), TooLong::Refuse);
    let external = import.external().expect("template");
    let shop = shared::ShopId::new("demo-se").expect("shop");
    assert_eq!(external.render(&shop, "100234").as_deref(), Ok("100234"));

    let (_dir, path) = write(
        "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
         [mamut]\nbackend = \"recorder\"\nwriter = \"import\"\n",
    );
    let e = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("recorder");
    assert_eq!(e.key, "mamut.writer", "{e}");
    let (_dir, path) = write(&format!(
        "{SQLSERVER}[mamut.import]\nclient = \"1\"\nprogram = \"x.exe\"\nshop_id = \"s\"\n"
    ));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("sql writer: unchecked");
    assert_eq!(config.mamut.writer, Writer::Sql);
    let import = SQLSERVER.replace(
        "backend = \"sqlserver\"\n",
        "backend = \"sqlserver\"\nwriter = \"import\"\n",
    );
    let (_dir, path) = write(&format!(
        "{import}[mamut.import]\nclient = \"1\"\nprogram = \"x.exe\"\nshop_id = \"s\"\n"
    ));
    let e = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("client");
    assert_eq!(e.key, "mamut.import.client", "{e}");
}

/// The recorder stand-in, named: a configuration without a backend is for SQL Server.
const RECORDER: &str = "[mamut]\nbackend = \"recorder\"\n";

#[test]
fn without_a_backend_the_agent_writes_to_sql_server_and_the_recorder_is_asked_for_by_name() {
    let relay = "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n";
    let (_dir, path) = write(relay);
    let e = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("no SQL login");
    assert_eq!(e.key, "mamut.sqlserver.user", "{e}");
    let (_dir, path) = write(&format!("{relay}{RECORDER}"));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("recorder");
    assert_eq!(config.mamut.backend, MamutBackend::Recorder);
}

const SQLSERVER: &str = "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
                         [mamut]\nbackend = \"sqlserver\"\n[mamut.sqlserver]\nuser = \"u\"\n";

#[test]
fn numbering_series_and_named_instances_are_read() {
    let (_dir, path) = write(&format!(
        "{SQLSERVER}host = \"srv\\\\MAMUT\"\nbrowser_port = 1500\n\
         order_numbering = {{ mode = \"series\", table = \"nummer\", key_column = \"serie\", key = \"ordre\", next_column = \"neste\" }}\n\
         customer_numbering = {{ mode = \"identity\" }}\n"
    ));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid");
    let sql = &config.mamut.sqlserver;
    assert_eq!(sql.host_and_instance(), ("srv", Some("MAMUT")));
    assert_eq!(sql.browser_port, Some(1500));
    assert_eq!(sql.customer_numbering, Numbering::Identity);
    let Numbering::Series(series) = &sql.order_numbering else {
        panic!("series expected: {:?}", sql.order_numbering);
    };
    assert_eq!(
        (series.table.as_str(), series.key.as_str()),
        ("nummer", "ordre")
    );
}

#[test]
fn the_keys_rows_are_found_by_are_never_truncated() {
    let (_dir, path) = write(&format!("{SQLSERVER}on_too_long = \"truncate\"\n"));
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("loads");
    let sql = &config.mamut.sqlserver;
    for key in KEY_FIELDS {
        assert_eq!(sql.too_long(key), TooLong::Refuse, "{key}");
    }
    assert_eq!(sql.too_long("customers.name"), TooLong::Truncate);
}

#[test]
fn bad_sqlserver_settings_are_named() {
    for (extra, key) in [
        (
            "trust_server_certificate = true\nca_file = \"ca.pem\"\n",
            "mamut.sqlserver.ca_file",
        ),
        ("pool_size = 0\n", "mamut.sqlserver.pool_size"),
        (
            "[mamut.sqlserver.on_too_long_fields]\n\"orders.nope\" = \"truncate\"\n",
            "mamut.sqlserver.on_too_long_fields",
        ),
        (
            "order_numbering = { mode = \"series\", table = \"x;y\", key_column = \"k\", key = \"o\", next_column = \"n\" }\n",
            "mamut.sqlserver.order_numbering",
        ),
        (
            "[mamut.sqlserver.on_too_long_fields]\n\"orders.external_no\" = \"truncate\"\n",
            "mamut.sqlserver.on_too_long_fields",
        ),
    ] {
        let (_dir, path) = write(&format!("{SQLSERVER}{extra}"));
        let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err(extra);
        assert_eq!(bad.key, key, "{bad}");
    }
}

#[cfg(not(windows))]
#[test]
fn windows_authentication_is_refused_off_windows() {
    let (_dir, path) = write(&format!("{SQLSERVER}authentication = \"windows\"\n"));
    let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("not on Windows");
    assert_eq!(bad.key, "mamut.sqlserver.authentication");
    assert!(
        bad.message.contains("only when the agent runs on Windows"),
        "{bad}"
    );
}

/// The Windows build (scripts/windows-check.sh, run under wine) accepts integrated
/// authentication, without a SQL login.
#[cfg(windows)]
#[test]
fn windows_authentication_is_accepted_on_windows() {
    let config = "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
                  [mamut]\nbackend = \"sqlserver\"\n[mamut.sqlserver]\nauthentication = \"windows\"\n";
    let (_dir, path) = write(config);
    let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid on Windows");
    assert_eq!(
        config.mamut.sqlserver.authentication,
        Authentication::Windows
    );
}
