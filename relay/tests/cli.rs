//! The `relay` binary's command line: configuration errors and the admin commands.

use std::process::Command;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay"))
}

#[test]
fn a_bad_setting_exits_with_64_and_names_the_key() {
    let output = relay()
        .args(["serve"])
        .env("RELAY_LISTEN", "not-an-address")
        .output()
        .expect("relay runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RELAY_LISTEN"), "stderr: {stderr}");
}

#[test]
fn an_operator_can_set_up_a_tenant_from_the_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("relay.sqlite").display());
    let run = |args: &[&str]| {
        let output = relay()
            .args(args)
            .env("RELAY_DATABASE_URL", &url)
            .output()
            .expect("relay runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    let (ok, stdout, _) = run(&["tenant", "create", "acme", "--name", "Acme AB"]);
    assert!(ok);
    let tenant: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(tenant["id"], "acme");

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (ok, stdout, _) = run(&[
        "shop",
        "add",
        "acme",
        "demo-se",
        "--secret",
        secret,
        "--trigger-status",
        "confirmed",
    ]);
    assert!(ok);
    assert!(
        !stdout.contains(secret),
        "the secret must not be printed back"
    );

    let (ok, stdout, _) = run(&["agent", "create", "acme"]);
    assert!(ok);
    let agent: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        agent["token"].as_str().map(|t| t.split('.').count()),
        Some(3)
    );

    let (ok, _, stderr) = run(&["tenant", "create", "acme"]);
    assert!(!ok);
    assert!(stderr.contains("already exists"), "stderr: {stderr}");

    let (ok, _, stderr) = run(&[
        "shop",
        "add",
        "nobody",
        "x-se",
        "--secret",
        secret,
        "--trigger-status",
        "paid",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("tenant nobody not found"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_shops_rules_are_set_from_a_file_and_its_api_key_is_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("relay.sqlite").display());
    let key = "shop-key-never-shown-0123";
    let run = |args: &[&str]| {
        let output = relay()
            .args(args)
            .env("RELAY_DATABASE_URL", &url)
            .env("RELAY_SHOP_API_KEY", key)
            .output()
            .expect("relay runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !stdout.contains(key) && !stderr.contains(key),
            "the key leaked"
        );
        (output.status.success(), stdout, stderr)
    };
    assert!(run(&["tenant", "create", "acme"]).0);
    let (ok, stdout, stderr) = run(&[
        "shop",
        "add",
        "acme",
        "demo-se",
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--trigger-status",
        "confirmed",
        "--flow",
        "combo",
        "--api-url",
        "https://shop.example/v1",
    ]);
    assert!(ok, "{stderr}");
    let shop: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(shop["flow"], "combo");
    assert_eq!(shop["api_key_set"], true);

    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"{"status_map":{"delivered":{"shop_status":"shipped","capture":true}},
            "price_lists":{"RESELLER":"b2b"}}"#,
    )
    .expect("write rules");
    let rules = rules.display().to_string();
    let (ok, _, stderr) = run(&["shop", "update", "acme", "demo-se", &rules]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = run(&["shop", "list", "acme"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let shop = &list["shops"][0];
    assert_eq!(shop["flow"], "combo", "fields left out stay as they were");
    assert_eq!(shop["status_map"]["delivered"]["shop_status"], "shipped");
    assert_eq!(shop["price_lists"]["RESELLER"], "b2b");

    // A bad rule is refused with the field's name, and nothing changes.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"api":{"url":"ftp://shop.example"}}"#).expect("write");
    let (ok, _, stderr) = run(&[
        "shop",
        "update",
        "acme",
        "demo-se",
        &bad.display().to_string(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("api.url"), "{stderr}");
}

#[test]
fn an_answer_piped_into_a_reader_that_has_gone_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("relay.sqlite").display());
    // A pipe whose reading end is closed before the relay writes (`relay ... | head` after
    // head has read its lines): the write fails with EPIPE every time.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = relay()
        .args(["tenant", "create", "acme", "--name", "Acme AB"])
        .env("RELAY_DATABASE_URL", &url)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("relay runs")
        .wait_with_output()
        .expect("relay ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}
