//! `agent check`: the installer's first command reports what works and what does not.

use tests::mamut_db::MamutDb;
use tests::{AgentOptions, RelayOptions, SqlServerOptions, setup_with};

#[tokio::test]
async fn agent_check_reports_mamut_mapping_and_relay() {
    let mamut = MamutDb::start();
    let options = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), options).await;
    let (ok, report) = world.agent.check().await;
    assert!(ok, "{report}");
    assert!(
        report.contains("every mapped table and column exists"),
        "{report}"
    );
    // Read from the stand-in's sys.databases, which reports it as a bit.
    assert!(
        report.contains(
            "[ ok ] read committed snapshot is on: an open Mamut transaction holds back only its own rows"
        ),
        "{report}"
    );
    assert!(
        report.contains("accepted the token (tenant acme)"),
        "{report}"
    );

    // A mapping that names a column the database does not have.
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        "[columns.orders]\nexternal_no = \"external_nr\"\n",
    )
    .expect("write");
    let sql = SqlServerOptions {
        mapping: Some(mapping),
        ..SqlServerOptions::new(mamut.port())
    };
    world.agent.configure(&AgentOptions {
        sqlserver: Some(sql),
        ..AgentOptions::default()
    });
    let (ok, report) = world.agent.check().await;
    assert!(!ok, "{report}");
    assert!(
        report.contains("column orders.external_nr does not exist"),
        "{report}"
    );

    // A revoked agent: the relay refuses the token.
    world.admin.revoke_agent(&world.agent_id).await;
    let (ok, report) = world.agent.check().await;
    assert!(!ok, "{report}");
    assert!(report.contains("refused the token"), "{report}");
}

/// A relay certificate from a CA the agent does not trust (what a TLS-inspecting proxy shows):
/// `agent check` says so, names the certificate and its issuer, and what to do, not only
/// rustls's "UnknownIssuer".
#[tokio::test]
async fn a_relay_certificate_from_a_ca_the_agent_does_not_trust_says_what_to_do() {
    let world = setup_with(RelayOptions::default(), AgentOptions::default()).await;
    for (ca, rustls_says) in [
        // Another CA: what a TLS-inspecting proxy's certificate looks like to the agent.
        (
            tests::pki::Pki::named("Proxy Inspection CA"),
            "UnknownIssuer",
        ),
        // A CA named like the relay's with another key.
        (tests::pki::Pki::new(), "BadSignature"),
    ] {
        untrusted(&world, &ca, rustls_says);
    }
}

fn untrusted(world: &tests::World, other: &tests::pki::Pki, rustls_says: &str) {
    let text = std::fs::read_to_string(world.agent.config_file()).expect("agent.toml");
    let ca_line = text
        .lines()
        .find(|l| l.starts_with("ca_file = "))
        .expect("the test relay is TLS with a ca_file");
    let config = world.agent.dir().join("other-ca.toml");
    std::fs::write(
        &config,
        text.replace(ca_line, &format!("ca_file = {:?}", other.ca_file())),
    )
    .expect("write");
    let output = std::process::Command::new(tests::process::bin_path("agent"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("agent check runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "{report}");
    for words in [
        &format!("invalid peer certificate: {rustls_says}"),
        "is not from a CA this agent trusts",
        "add its CA certificate (PEM or DER) as relay.ca_file",
        // The certificate the relay presented, by name: a consultant can tell a proxy's.
        "it is for CN=localhost, issued by CN=relay test CA",
    ] {
        assert!(report.contains(words), "{words:?} missing: {report}");
    }
}

/// The running agent says the same as an error that does not pass by itself, not as a
/// passing network fault (a WARN on every retry).
#[tokio::test]
async fn a_running_agent_reports_an_untrusted_relay_certificate_as_an_error() {
    let mut world = setup_with(RelayOptions::default(), AgentOptions::default()).await;
    let other = tests::pki::Pki::named("Proxy Inspection CA");
    let text = std::fs::read_to_string(world.agent.config_file()).expect("agent.toml");
    let ca_line = text
        .lines()
        .find(|l| l.starts_with("ca_file = "))
        .expect("the test relay is TLS with a ca_file")
        .to_owned();
    std::fs::write(
        world.agent.config_file(),
        text.replace(&ca_line, &format!("ca_file = {:?}", other.ca_file())),
    )
    .expect("write");
    let before = world.agent.logs().len();
    world.agent.restart().await;
    tests::eventually(
        "the agent reports the certificate",
        std::time::Duration::from_secs(20),
        || async {
            world.agent.logs()[before..]
                .matches("is not from a CA this agent trusts")
                .count()
                >= 2
        },
    )
    .await;
    let logs = world.agent.logs()[before..].to_owned();
    assert!(
        logs.contains("ERROR") && logs.contains("does not pass by itself"),
        "{logs}"
    );
    assert!(
        !logs.contains("session failed; reconnecting"),
        "said as a passing fault: {logs}"
    );
    world.agent.kill().await;
}
