//! The Windows agent, end to end, under wine: the Linux relay (TLS, the test CA) and the Mamut
//! stand-in on loopback, `agent.exe` from `scripts/windows-check.sh` (`AGENT_WINDOWS_EXE`, in
//! a copy of its `WINEPREFIX`). One test in two phases, as starting wine is slow:
//!
//! 1. `agent.exe run`: an order from the shop is written once in Mamut, a stock change in
//!    Mamut reaches the shop as a push; then with `writer = "import"`, an order imported once
//!    by `mamut-import-sim.exe` (`MAMUT_IMPORT_SIM_WINDOWS_EXE`), which agent.exe starts.
//! 2. In one wine session (`wine cmd`; services live only while it does): `agent.exe service
//!    install`, `start`, the service's command line and state as wine's `reg` and `sc` (not
//!    ours) show them, `service status`, an order written by the service and a clean `service
//!    stop` sent while that order is being applied (it is committed in Mamut, its ack held
//!    back by `after_commit_delay_ms`): the drain acknowledges it once, then the service
//!    stops; the service's log file, `service uninstall`.
//!
//! Without `AGENT_WINDOWS_EXE`/`MAMUT_IMPORT_SIM_WINDOWS_EXE`/`WINEPREFIX` the test says
//! "skipped", and fails in CI.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::mamut_db::MamutDb;
use tests::process::ImportOptions;
use tests::wine::{Wine, WineShell};
use tests::{AgentOptions, RelayOptions, SqlServerOptions, TENANT, World, eventually, setup_with};

use crate::mamut_server::{WAIT, delivered, event, send_order, stock_pushes, written};

/// How long wine may take to start a process in a cold session (wineboot, services.exe).
const WINE_START: Duration = Duration::from_secs(90);
/// How long one command line in the wine session may take.
const COMMAND: Duration = Duration::from_secs(60);
/// How long the service holds an order's ack back after the commit (the test hook
/// `after_commit_delay_ms`): the window in which `service stop` must arrive.
const AFTER_COMMIT_MS: u64 = 3_000;
const AFTER_COMMIT: Duration = Duration::from_millis(AFTER_COMMIT_MS);

/// agent.exe and the wine prefix, or `None` after a "skipped" note (a failure in CI).
fn windows_agent(test: &str) -> Option<Wine> {
    match Wine::from_env() {
        Ok(wine) => Some(wine),
        Err(missing) => {
            tests::requirements_met(
                test,
                &missing,
                "run `bash scripts/windows-check.sh` and set AGENT_WINDOWS_EXE, \
                 MAMUT_IMPORT_SIM_WINDOWS_EXE and WINEPREFIX as scripts/test.sh does",
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windows_agent_under_wine_applies_orders_and_pushes_stock_in_the_foreground_and_as_a_service()
 {
    let test = "windows agent under wine";
    let Some(wine) = windows_agent(test) else {
        return;
    };
    let prefix = wine.private_copy();
    let mamut = MamutDb::start();
    let options = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        wine: Some(prefix.wine.clone()),
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), options.clone()).await;

    // Phase 1: `agent.exe run`.
    eventually("agent.exe connects to the relay", WINE_START, || async {
        world.agent.sessions() >= 1
    })
    .await;
    let first = send_order(&world, "wine-run-1").await;
    delivered(&world, first).await;
    assert_eq!(written(&mamut, "wine-run-1"), 1, "{:?}", mamut.orders());
    mamut.execute(
        "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('MUG-01', 'MAIN', 7)",
    );
    eventually("the stock change reaches the shop", WAIT, || async {
        stock_pushes(&world.admin.pushes(TENANT).await, "MUG-01", 7) == 1
    })
    .await;
    world.agent.kill().await;

    // Phase 1b: orders through the import writer: agent.exe starts mamut-import-sim.exe, a
    // Windows program started by a Windows program, with the six documented parameters, a
    // spool path with a space in it, and the spool's lock shared with it as its standard input.
    import_phase(&mut world, &mamut, &prefix.wine, &options).await;

    // Phase 2: the same configuration as a Windows service, in one wine session, except that
    // an order's ack is held back after its commit, so that the stop comes while it is applied.
    world.agent.configure(&AgentOptions {
        sqlserver: Some(SqlServerOptions {
            after_commit_delay_ms: AFTER_COMMIT_MS,
            ..SqlServerOptions::new(mamut.port())
        }),
        ..options
    });
    service_phase(&world, &mamut, &prefix.wine).await;
    assert_eq!(written(&mamut, "wine-run-1"), 1, "{:?}", mamut.orders());
}

/// `agent.exe run` with `writer = "import"`: one order imported once by the Windows stand-in
/// of Mamut's import program, acknowledged with Mamut's number, its file moved to `done\`.
async fn import_phase(world: &mut World, mamut: &MamutDb, wine: &Wine, options: &AgentOptions) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mamut/import/gbaox10.toml");
    let fixture = std::path::absolute(fixture).expect("absolute path");
    let import = ImportOptions {
        program: Some(wine.import_exe.clone()),
        ..ImportOptions::new(mamut.import_env())
    }
    .with_env("MAMUT_IMPORT_SIM_FORMAT", Wine::path(&fixture));
    world.agent.configure(&AgentOptions {
        import: Some(import),
        ..options.clone()
    });
    let sessions = world.agent.sessions();
    world.agent.restart().await;
    eventually(
        "agent.exe with the import writer connects",
        WINE_START,
        || async { world.agent.sessions() > sessions },
    )
    .await;
    let order = send_order(world, "wine-import-1").await;
    let event = delivered(world, order).await;
    let orders: Vec<_> = mamut
        .orders()
        .into_iter()
        .filter(|o| o.external_no == "wine-import-1")
        .collect();
    assert_eq!(orders.len(), 1, "imported once: {orders:?}");
    assert_eq!(
        orders[0].shop_id, None,
        "written by the import, not by the agent's SQL"
    );
    assert_eq!(
        event["mamut_ref"],
        orders[0].order_no.to_string(),
        "{event}"
    );
    let done: Vec<_> = std::fs::read_dir(world.agent.spool_dir().join("done"))
        .expect("the spool's done folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        done.iter()
            .any(|n| n.contains("wine-import-1") && n.ends_with(".xml")),
        "{done:?}\n{}",
        world.agent.logs()
    );
    world.agent.kill().await;
}

/// Install, start, the command line and state, status, an order stopped in the middle of its
/// apply, the log file, uninstall.
async fn service_phase(world: &World, mamut: &MamutDb, wine: &Wine) {
    let dir = world.agent.dir();
    let name = format!("MamutAgentSmoke{:08x}", rand::random::<u32>());
    let exe = wine.exe_path();
    let config = Wine::path(&world.agent.config_file());
    let agent = |args: &str| format!("\"{exe}\" service {args} --name {name}");
    // A service left behind by a failure dies with the test's copy of the prefix.
    let mut shell = WineShell::start(wine, dir, &dir.join("wine-cmd.stderr.log"));

    let installed = shell
        .expect(
            &format!(
                "\"{exe}\" service install --config \"{config}\" --name {name} \
                 --account LocalSystem"
            ),
            0,
            COMMAND,
        )
        .await;
    assert!(
        installed.contains("agent service start"),
        "install does not tell the next step: {installed}"
    );
    shell.expect(&agent("start"), 0, COMMAND).await;

    // What the service manager starts and runs, as tools we did not write see it: wine's
    // sc.exe has no `qc`, so the command line is read from the service's registry key.
    let key = format!("HKLM\\SYSTEM\\CurrentControlSet\\Services\\{name}");
    let image = shell
        .expect(&format!("reg query {key} /v ImagePath"), 0, COMMAND)
        .await;
    // Quotes around paths are there only where a path needs them (a space).
    let command_line = format!("{exe} service run --config {config} --name {name}");
    assert!(
        image
            .replace('"', "")
            .to_lowercase()
            .contains(&command_line.to_lowercase()),
        "the service's ImagePath is not {command_line}:\n{image}"
    );
    // The configuration's directory has a space in its name: the path must be quoted.
    assert!(
        image.contains(&format!("--config \"{config}\"")),
        "the configuration's path is not quoted in the service's ImagePath:\n{image}"
    );
    let query = shell.expect(&format!("sc query {name}"), 0, COMMAND).await;
    assert!(query.contains("RUNNING"), "sc query {name}:\n{query}");
    // How long wine takes to start agent.exe and have it talk to the service manager.
    let launched = Instant::now();
    let status = shell.expect(&agent("status"), 0, COMMAND).await;
    let launch = launched.elapsed();
    assert!(
        status.to_lowercase().contains("running"),
        "service status while running: {status}"
    );

    // A clean stop while an order is applied: committed in Mamut, its ack held back.
    let order = send_order(world, "wine-service-1").await;
    eventually(
        "the service writes the shop's order in Mamut",
        WINE_START,
        || async { written(mamut, "wine-service-1") == 1 },
    )
    .await;
    let committed = Instant::now();
    let before = event(world, order).await;
    assert_ne!(
        before["state"], "delivered",
        "the order was acknowledged before the stop: {before}"
    );
    let window = AFTER_COMMIT.saturating_sub(committed.elapsed());
    assert!(
        window > launch,
        "{window:?} of the ack's delay left, wine took {launch:?} to start agent.exe: \
         the stop would come after the ack"
    );
    println!(
        "service stop sent, {window:?} of the ack's delay left, agent.exe starts in {launch:?}"
    );
    shell.expect(&agent("stop"), 0, COMMAND).await;
    let status = shell.expect(&agent("status"), 3, COMMAND).await;
    assert!(
        status.to_lowercase().contains("stopped"),
        "service status after the stop: {status}"
    );
    // Acknowledged during the drain: delivered, and by the first delivery, not a redelivery.
    let summary = delivered(world, order).await;
    assert_eq!(
        summary["attempts"], 1,
        "the order was delivered more than once: {summary}"
    );
    // The service's session ended with the stop (the first one ended with phase 1's kill).
    eventually("the relay sees the service's session end", WAIT, || async {
        let logs = world.relay.logs();
        logs.matches("agent disconnected").count() + logs.matches("agent session ended").count()
            >= 2
    })
    .await;
    assert_eq!(written(mamut, "wine-service-1"), 1, "{:?}", mamut.orders());
    let orders = mamut.orders();
    let row = orders
        .iter()
        .find(|o| o.external_no == "wine-service-1")
        .unwrap_or_else(|| panic!("no order wine-service-1 in {orders:?}"));
    assert_eq!(summary["mamut_ref"], row.order_no.to_string());
    let log = service_log(dir);
    let at = |line: &str| {
        log.find(line).unwrap_or_else(|| {
            panic!(
                "the service's log in {} does not say {line:?}:\n{log}",
                dir.join("logs").display()
            )
        })
    };
    at("service started");
    at("connected to relay");
    assert!(
        at("order applied") < at("service stopped"),
        "the service stopped before it acknowledged the order:\n{log}"
    );

    shell.expect(&agent("uninstall"), 0, COMMAND).await;
    let gone = shell.run(&format!("sc query {name}"), COMMAND).await;
    assert_ne!(gone.code, 0, "the service is still there: {}", gone.output);
    println!("{}", shell.report());
    shell.exit(COMMAND).await;
}

/// Everything the service wrote to its rolling log files in `<config dir>\logs\`.
fn service_log(dir: &Path) -> String {
    let logs = dir.join("logs");
    let entries = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("the service's log directory {}: {e}", logs.display()));
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("agent.") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no agent.<date>.log in {}",
        logs.display()
    );
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}
