//! Tests of the relay configuration: defaults, file, environment, and errors that name the
//! setting without showing a secret.

use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

#[test]
fn defaults_need_no_configuration() {
    let config = Config::load(None, &env_of(&[])).expect("defaults are valid");
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(config.max_body_bytes, 1024 * 1024);
    assert!(config.admin_token.is_none());
}

#[test]
fn the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n",
    )
    .expect("write");
    let env = env_of(&[
        ("RELAY_LISTEN", "127.0.0.1:9100"),
        ("RELAY_ADMIN_TOKEN", "0123456789abcdef"),
    ]);
    let config = Config::load(Some(&path), &env).expect("valid");
    assert_eq!(config.listen.port(), 9100);
    assert_eq!(config.max_body_bytes, 4096);
    assert_eq!(format!("{:?}", config.admin_token), "Some(Secret(***))");
}

#[test]
fn errors_name_the_key() {
    let bad = Config::load(None, &env_of(&[("RELAY_LISTEN", "nowhere")])).expect_err("invalid");
    assert_eq!(bad.key, "RELAY_LISTEN");
    let bad =
        Config::load(None, &env_of(&[("RELAY_DATABASE_URL", "mysql://x")])).expect_err("invalid");
    assert_eq!(bad.key, "RELAY_DATABASE_URL");
}

/// An invalid value is named as the user set it: the environment variable when it came
/// from the environment (with the file's key it stands for), the file's key (and the
/// file) when from the file; and the message says what is allowed.
#[test]
fn an_invalid_value_is_named_where_it_was_set_with_what_is_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");

    std::fs::write(&path, "max_connections = 4096\n").expect("write");
    let bad = Config::load(Some(&path), &env_of(&[("RELAY_MAX_CONNECTIONS", "0")]))
        .expect_err("0 connections");
    assert_eq!(bad.key, "RELAY_MAX_CONNECTIONS", "{bad}");
    for words in ["between 1 and 1000000, not 0", "max_connections"] {
        assert!(bad.message.contains(words), "{words:?} missing: {bad}");
    }

    std::fs::write(&path, "max_connections = 0\n").expect("write");
    let bad = Config::load(Some(&path), &env_of(&[])).expect_err("0 connections");
    assert_eq!(bad.key, "max_connections", "{bad}");
    assert!(!bad.to_string().contains("RELAY_"), "{bad}");
    for words in [
        "between 1 and 1000000, not 0",
        &format!("in {}", path.display()),
    ] {
        assert!(bad.message.contains(words), "{words:?} missing: {bad}");
    }

    // A bound that is another setting is named as that one was set.
    std::fs::write(&path, "retry_cap_ms = 500\n").expect("write");
    let bad = Config::load(Some(&path), &env_of(&[("RELAY_RETRY_BASE_MS", "1000")]))
        .expect_err("base above cap");
    assert_eq!(bad.key, "RELAY_RETRY_BASE_MS", "{bad}");
    assert!(
        bad.message.contains("at most retry_cap_ms (500), not 1000"),
        "{bad}"
    );
    let bad = Config::load(
        None,
        &env_of(&[
            ("RELAY_RETRY_BASE_MS", "1000"),
            ("RELAY_RETRY_CAP_MS", "500"),
        ]),
    )
    .expect_err("base above cap");
    assert!(
        bad.message.contains("at most RELAY_RETRY_CAP_MS (500)"),
        "{bad}"
    );
}

/// Errors about the database URL and the admin token name the setting, never the value.
#[test]
fn a_misspelt_key_is_named_with_its_line_but_its_value_is_not_shown() {
    let text =
        "listen = \"127.0.0.1:9000\"\ndatabse_url = \"postgres://relay:hunter2-secret@db/relay\"\n";
    let error = Config::from_toml(text, "relay.toml", &|_| None).expect_err("unknown key");
    let message = error.to_string();
    assert!(message.contains("line 2, column 1"), "{message}");
    assert!(message.contains("unknown field `databse_url`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let text = "max_connections = \"hunter2-secret\"\n";
    let error = Config::from_toml(text, "relay.toml", &|_| None).expect_err("not a number");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn errors_about_secrets_do_not_show_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    let url = "postgres://relay:hunter2-secret@db.internal/relay?sslmode=sometimes";
    std::fs::write(
        &path,
        format!("database_url = {url:?}\nadmin_token = \"short-token\"\n"),
    )
    .expect("write");
    for (env, key) in [
        (vec![], "database_url"),
        (vec![("RELAY_DATABASE_URL", url)], "RELAY_DATABASE_URL"),
        (
            vec![("RELAY_DATABASE_URL", "sqlite://relay.sqlite")],
            "admin_token",
        ),
        (
            vec![
                ("RELAY_DATABASE_URL", "sqlite://relay.sqlite"),
                ("RELAY_ADMIN_TOKEN", "short-token"),
            ],
            "RELAY_ADMIN_TOKEN",
        ),
    ] {
        let bad = Config::load(Some(&path), &env_of(&env)).expect_err("invalid");
        assert_eq!(bad.key, key, "{bad}");
        let text = bad.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("short-token"),
            "a secret in {text}"
        );
    }
}

#[test]
fn unknown_keys_in_the_file_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").expect("write");
    let bad = Config::load(Some(&path), &env_of(&[])).expect_err("unknown key");
    assert!(bad.message.contains("listne"), "{bad}");
}

#[test]
fn the_example_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay.example.toml");
    let config = Config::load(Some(&path), &env_of(&[])).expect("the example loads");
    assert_eq!(config.listen, Config::default().listen);
}

#[test]
fn the_smtp_server_comes_from_the_file_or_the_environment_with_starttls_required_by_default() {
    let config = Config::load(None, &env_of(&[])).expect("defaults");
    assert!(config.smtp.is_none(), "no SMTP server unless configured");
    assert_eq!(config.alerts_interval_secs, 60);
    assert_eq!(config.alerts_digest_hour, 6);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Relay <alerts@example.com>\"\n\
         username = \"relay\"\npassword = \"hunter2hunter2\"\n",
    )
    .expect("write");
    let config = Config::load(Some(&path), &env_of(&[("RELAY_SMTP_PORT", "2525")])).expect("valid");
    let smtp = config.smtp.expect("an SMTP server");
    assert_eq!(smtp.host, "smtp.example.com");
    assert_eq!(smtp.port, 2525, "the environment overrides the file");
    assert_eq!(smtp.starttls, StartTls::Required);
    assert!(
        !format!("{smtp:?}").contains("hunter2"),
        "the password is masked"
    );

    let config = Config::load(
        None,
        &env_of(&[
            ("RELAY_SMTP_HOST", "127.0.0.1"),
            ("RELAY_SMTP_FROM", "alerts@example.com"),
            ("RELAY_SMTP_STARTTLS", "none"),
            ("RELAY_ALERTS_INTERVAL_SECS", "1"),
            ("RELAY_ALERTS_DIGEST_HOUR", "0"),
        ]),
    )
    .expect("valid");
    let smtp = config.smtp.expect("an SMTP server from the environment");
    assert_eq!((smtp.port, smtp.starttls), (587, StartTls::None));
    assert_eq!(config.alerts_interval_secs, 1);
}

#[test]
fn a_bad_smtp_setting_is_named_and_the_password_never_shown() {
    let base = [
        ("RELAY_SMTP_HOST", "smtp.example.com"),
        ("RELAY_SMTP_FROM", "alerts@example.com"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        Config::load(None, &env_of(&pairs)).expect_err("invalid")
    };
    let bad = with(&[("RELAY_SMTP_STARTTLS", "always")]);
    assert_eq!(bad.key, "RELAY_SMTP_STARTTLS", "{bad}");
    assert!(
        bad.message.contains("required, opportunistic or none"),
        "{bad}"
    );
    let bad = with(&[("RELAY_SMTP_FROM", "not an address")]);
    assert_eq!(bad.key, "RELAY_SMTP_FROM", "{bad}");
    let bad = with(&[("RELAY_SMTP_PASSWORD", "hunter2hunter2")]);
    assert_eq!(bad.key, "smtp.username", "{bad}");
    let bad = with(&[
        ("RELAY_SMTP_USERNAME", "relay"),
        ("RELAY_SMTP_PASSWORD", "hunter2hunter2"),
        ("RELAY_SMTP_STARTTLS", "none"),
    ]);
    assert_eq!(bad.key, "RELAY_SMTP_STARTTLS", "{bad}");
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
    let bad = with(&[("RELAY_SMTP_TIMEOUT_SECS", "0")]);
    assert_eq!(bad.key, "RELAY_SMTP_TIMEOUT_SECS", "{bad}");
    let bad = Config::load(None, &env_of(&[("RELAY_SMTP_FROM", "alerts@example.com")]))
        .expect_err("no host");
    assert_eq!(bad.key, "smtp.host", "{bad}");
    let bad = Config::load(None, &env_of(&[("RELAY_ALERTS_DIGEST_HOUR", "24")]))
        .expect_err("no such hour");
    assert_eq!(bad.key, "RELAY_ALERTS_DIGEST_HOUR", "{bad}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"nobody\"\n",
    )
    .expect("write");
    let bad = Config::load(Some(&path), &env_of(&[])).expect_err("a bad from");
    assert_eq!(bad.key, "smtp.from", "{bad}");
    assert!(bad.message.contains("in "), "names the file: {bad}");
    std::fs::write(&path, "[smtp]\nhots = \"smtp.example.com\"\n").expect("write");
    let bad = Config::load(Some(&path), &env_of(&[])).expect_err("unknown key");
    assert!(bad.message.contains("hots"), "{bad}");
}
