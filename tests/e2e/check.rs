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
