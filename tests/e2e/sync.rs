//! The initial product sync, both directions, through the relay: complete, variants and
//! article numbers kept, resumable after a kill, and a second run changes nothing.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared::ArticleNumber;
use shared::domain::{Product, Variant};
use tests::mamut_db::MamutDb;
use tests::shop_sim::{Failure, ShopSim};
use tests::{
    AgentOptions, RelayOptions, SHOP, SqlServerOptions, TENANT, World, eventually, setup_with,
};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "shop-api-key-0123456789";

fn article(value: &str) -> ArticleNumber {
    ArticleNumber::new(value).expect("valid article")
}

/// A world with Mamut on the stand-in and `demo-se`'s API at `sim`; the long-running agent is
/// stopped so only the sync touches the shop.
async fn world(mamut: &MamutDb, sim: &ShopSim, flow: &str) -> World {
    let agent = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), agent).await;
    world.agent.kill().await;
    world
        .admin
        .update_shop(
            TENANT,
            SHOP,
            json!({
                "flow": flow,
                "api": { "url": sim.url(), "requests_per_sec": 1000 },
                "api_key": KEY
            }),
        )
        .await;
    world
}

/// Runs a sync to completion: (success, stdout, stderr).
async fn sync(world: &World, to: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::time::timeout(WAIT, world.agent.sync_products(to, args).wait_with_output())
        .await
        .expect("the sync finishes")
        .expect("the sync runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts a sync and kills it once its progress file says `done` products are finished.
async fn interrupted_sync(world: &World, to: &str, args: &[&str], done: u64) -> u64 {
    let mut child = world.agent.sync_products(to, args);
    let progress = world.agent.sync_progress_file(to);
    let finished = || {
        std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["summary"]["products"].as_u64())
            .unwrap_or_default()
    };
    eventually("the sync gets going", WAIT, || async { finished() >= done }).await;
    child.kill().await.expect("kill the sync");
    let finished = finished();
    assert!(progress.exists(), "an interrupted sync keeps its progress");
    finished
}

/// The counts in the summary line `N products: created a, updated b, unchanged c, failed d`.
fn counts(stdout: &str) -> [u64; 5] {
    let line = stdout
        .lines()
        .find(|l| l.contains(" products: created "))
        .unwrap_or_else(|| panic!("no summary in {stdout:?}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("unexpected summary {line:?}"))
}

#[tokio::test]
async fn mamut_products_go_to_the_shop_once_resumably_and_idempotently() {
    let mamut = MamutDb::start();
    let mut rows = String::new();
    for i in 0..10 {
        rows.push_str(&format!(
            "INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('P-{i:02}', N'Produkt {i}', 25, 10, 1);\n"
        ));
    }
    rows.push_str(
        "INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('TSHIRT', N'T-shirt', 25, 159.2, 1);
         INSERT INTO products (article_no, name, vat_rate, price, active, parent_article_no, dimension1, dimension2)
             VALUES ('TSHIRT-BLUE-L', N'T-shirt blå, L', 25, 159.2, 1, 'TSHIRT', N'Blå', 'L');
         INSERT INTO products (article_no, name, vat_rate, price, active, parent_article_no, dimension1, dimension2)
             VALUES ('TSHIRT-BLUE-M', N'T-shirt blå, M', 25, 159.2, 1, 'TSHIRT', N'Blå', 'M');",
    );
    mamut.execute(&rows);
    // Three products of the stand-in's own, ten P-nn and TSHIRT: fourteen main products.
    let sim = ShopSim::start(KEY).await;
    // Mamut governs products: they go from Mamut to the shop.
    let world = world(&mamut, &sim, "erp").await;

    // Slow the shop down so the kill lands in the middle.
    sim.fail_next(8, Failure::Slow(Duration::from_millis(300)));
    let before = interrupted_sync(&world, "shop", &["--batch", "3"], 2).await;
    assert!(before < 14, "the sync finished before it was killed");
    // The relay finishes the shop call it was making for the killed run.
    eventually("the shop has answered every call", WAIT, || async {
        sim.calls().iter().all(|c| c.status != 0)
    })
    .await;
    let (ok, stdout, stderr) = sync(&world, "shop", &["--batch", "3"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("continuing an interrupted sync"),
        "{stderr}"
    );
    let [products, created, updated, unchanged, failed] = counts(&stdout);
    assert_eq!(products, 14, "{stdout}");
    assert_eq!((updated, failed), (0, 0), "{stdout}");
    // The product in flight at the kill may have reached the shop and is then unchanged.
    assert_eq!(created + unchanged, 14, "{stdout}");
    assert!(unchanged <= 1, "{stdout}");
    assert!(!world.agent.sync_progress_file("shop").exists());

    let tshirt = sim.product("TSHIRT").expect("TSHIRT in the shop");
    let variants: Vec<&str> = tshirt
        .variants
        .iter()
        .map(|v| v.article_number.as_str())
        .collect();
    assert_eq!(variants, ["TSHIRT-BLUE-L", "TSHIRT-BLUE-M"]);
    assert_eq!(tshirt.variants[0].dimension1.as_deref(), Some("Blå"));
    assert_eq!(sim.products().len(), 14);
    // Resuming did not write anything twice.
    for product in sim.products() {
        let path = format!("/products/{}", product.article_number);
        let puts = sim
            .calls()
            .iter()
            .filter(|c| c.method == "PUT" && c.path == path)
            .count();
        assert_eq!(puts, 1, "{path} written {puts} times");
    }

    // A second run changes nothing.
    let puts_before = sim.calls().iter().filter(|c| c.method == "PUT").count();
    let (ok, stdout, _) = sync(&world, "shop", &[]).await;
    assert!(ok, "{stdout}");
    assert_eq!(counts(&stdout), [14, 0, 0, 14, 0], "{stdout}");
    let puts_after = sim.calls().iter().filter(|c| c.method == "PUT").count();
    assert_eq!(puts_before, puts_after);
}

#[tokio::test]
async fn shop_products_come_to_mamut_once_resumably_and_idempotently() {
    let mamut = MamutDb::start();
    let sim = ShopSim::start(KEY).await;
    for i in 0..5 {
        sim.add_product(Product {
            article_number: article(&format!("NEW-{i}")),
            name: format!("Ny produkt {i}"),
            description: Some("från butiken".into()),
            vat_rate: Decimal::from(25),
            active: true,
            variants: Vec::new(),
        });
    }
    sim.add_product(Product {
        article_number: article("HOODIE"),
        name: "Hoodie".into(),
        description: None,
        vat_rate: Decimal::from(25),
        active: true,
        variants: ["S", "M"]
            .iter()
            .map(|size| Variant {
                article_number: article(&format!("HOODIE-BLK-{size}")),
                dimension1: Some("Svart".into()),
                dimension2: Some((*size).into()),
            })
            .collect(),
    });
    // Mamut has MUG-01 under another name: the shop's product updates it.
    sim.add_product(Product {
        article_number: article("MUG-01"),
        name: "Mugg, stor".into(),
        description: None,
        vat_rate: Decimal::from(25),
        active: true,
        variants: Vec::new(),
    });
    // The shop governs products: they go from the shop to Mamut.
    let world = world(&mamut, &sim, "combo").await;
    let (ok, _, stderr) = sync(&world, "shop", &[]).await;
    assert!(!ok, "products do not go from Mamut to a combo shop");
    assert!(stderr.contains("flow"), "{stderr}");

    sim.fail_next(4, Failure::Slow(Duration::from_millis(300)));
    let before = interrupted_sync(&world, "mamut", &["--batch", "1"], 2).await;
    assert!(before < 7, "the sync finished before it was killed");
    eventually("the shop has answered every call", WAIT, || async {
        sim.calls().iter().all(|c| c.status != 0)
    })
    .await;
    let (ok, stdout, stderr) = sync(&world, "mamut", &["--batch", "1"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("continuing an interrupted sync"),
        "{stderr}"
    );
    let [products, created, updated, unchanged, failed] = counts(&stdout);
    assert_eq!((products, failed), (7, 0), "{stdout}");
    assert_eq!(created + unchanged, 6, "{stdout}");
    assert_eq!(updated, 1, "{stdout}");

    let rows = mamut.products();
    let find = |a: &str| {
        rows.iter()
            .find(|r| r.article_no == a)
            .unwrap_or_else(|| panic!("{a} not in Mamut: {rows:?}"))
    };
    assert_eq!(find("MUG-01").name, "Mugg, stor");
    assert_eq!(find("NEW-3").name, "Ny produkt 3");
    let variant = find("HOODIE-BLK-M");
    assert_eq!(variant.parent.as_deref(), Some("HOODIE"));
    assert_eq!(variant.dimension1.as_deref(), Some("Svart"));
    assert_eq!(variant.dimension2.as_deref(), Some("M"));
    assert_eq!(find("HOODIE").parent, None);
    // Nothing is written twice: one row per article.
    let mut articles: Vec<&str> = rows.iter().map(|r| r.article_no.as_str()).collect();
    articles.dedup();
    assert_eq!(articles.len(), rows.len());

    let (ok, stdout, _) = sync(&world, "mamut", &[]).await;
    assert!(ok, "{stdout}");
    assert_eq!(counts(&stdout), [7, 0, 0, 7, 0], "{stdout}");
    assert_eq!(mamut.products(), rows, "a second run changes nothing");
}
