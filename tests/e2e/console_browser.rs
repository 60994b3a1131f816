//! The console in a real headless Chromium (`tests/browser/*.mjs` through
//! [`tools::harness::browser`]): a relay with two tenants, accounts made with `relay user
//! add`, orders sent as signed webhooks and delivered by a real agent. An operator finds an
//! order by its shop order id and reads its timeline; a tenant viewer sees only its tenant.
//! Each view's screenshot is saved under `target/screenshots/`.
//!
//! Without Chromium, node or `tests/browser/node_modules` the tests say "skipped" (in CI they
//! fail): `scripts/test-deps.sh` installs them.

use std::process::Stdio;
use std::time::Duration;

use tests::process::bin_path;
use tests::shop::order_body;
use tests::{SHOP, TENANT, World, eventually, setup};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tools::harness::browser::{BrowserRun, run_script};

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";
const OTHER_TENANT: &str = "globex";
const OTHER_SHOP: &str = "globex-se";

/// A relay with tenant `acme` (its order [`ORDER`] delivered to Mamut) and `globex` (its
/// order [`OTHER_ORDER`] waiting, no agent); accounts `op` (operator) and `viewer` (acme's
/// tenant viewer).
struct Console {
    world: World,
    mamut_ref: String,
    other_event: i64,
}

const ORDER: &str = "100777";
const OTHER_ORDER: &str = "G-500";

async fn console() -> Console {
    let world = setup().await;
    world.admin.create_tenant(OTHER_TENANT).await;
    world
        .admin
        .add_shop(
            OTHER_TENANT,
            OTHER_SHOP,
            &world.shop.secret_text(),
            &["confirmed"],
            "order",
        )
        .await;
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, ORDER, "confirmed"))
        .await;
    assert_eq!(status, 200, "{reply}");
    let event_id = reply["event_id"].as_i64().expect("event id");
    let (status, reply) = world
        .shop
        .send(
            OTHER_SHOP,
            &order_body(OTHER_SHOP, OTHER_ORDER, "confirmed"),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let other_event = reply["event_id"].as_i64().expect("event id");
    eventually("acme's order is delivered", WAIT, || async {
        world.admin.event(TENANT, event_id).await["event"]["state"] == "delivered"
    })
    .await;
    let event = world.admin.event(TENANT, event_id).await;
    let mamut_ref = event["event"]["mamut_ref"]
        .as_str()
        .expect("a Mamut number")
        .to_owned();
    add_user(&world, "op", &["--role", "operator"]).await;
    add_user(
        &world,
        "viewer",
        &["--role", "tenant_viewer", "--tenant", TENANT],
    )
    .await;
    Console {
        world,
        mamut_ref,
        other_event,
    }
}

/// `relay user add <name> <args> --password-stdin` on the relay's database.
async fn add_user(world: &World, name: &str, args: &[&str]) {
    let mut child = Command::new(bin_path("relay"))
        .args(["user", "add", name])
        .args(args)
        .arg("--password-stdin")
        .env("RELAY_DATABASE_URL", world.relay.database_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("relay user add starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .expect("the password is written");
    drop(stdin);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("relay user add finishes")
        .expect("relay user add runs");
    assert!(
        output.status.success(),
        "relay user add {name} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ran(run: BrowserRun) {
    match run {
        BrowserRun::Ran { output } => assert!(output.contains("scenario passed"), "{output}"),
        BrowserRun::Skipped(_) => {}
    }
}

#[tokio::test]
async fn an_operator_finds_an_order_by_its_shop_id_and_reads_its_timeline() {
    let console = console().await;
    let base = console.world.relay.base_url();
    let tenants = format!("{TENANT},{OTHER_TENANT}");
    ran(run_script(
        "operator.mjs",
        &base,
        &[
            ("USERNAME", "op"),
            ("PASSWORD", PASSWORD),
            ("ORDER_ID", ORDER),
            ("MAMUT_REF", &console.mamut_ref),
            ("TENANTS", &tenants),
        ],
    )
    .await);
}

#[tokio::test]
async fn a_tenant_viewer_sees_only_their_tenant() {
    let console = console().await;
    let base = console.world.relay.base_url();
    let timeline = format!("/console/orders/{OTHER_TENANT}/{}", console.other_event);
    ran(run_script(
        "viewer.mjs",
        &base,
        &[
            ("USERNAME", "viewer"),
            ("PASSWORD", PASSWORD),
            ("TENANT", TENANT),
            ("OTHER_TENANT", OTHER_TENANT),
            ("OTHER_ORDER_ID", OTHER_ORDER),
            ("OTHER_TIMELINE", &timeline),
        ],
    )
    .await);
}
