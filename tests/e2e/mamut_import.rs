//! Orders through Mamut's own import (`[mamut] writer = "import"`): the real relay and agent,
//! the TDS stand-in over PostgreSQL for Mamut's database, and the import stand-in
//! (`mamut-import-sim`) as the import program. Every GBAOX10 file the agent produced is checked
//! with `scripts/check-gbaox10.py`, a validator of its own against the documented field table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mamut_orders::dec;
use tests::mamut_db::MamutDb;
use tests::process::ImportOptions;
use tests::shop::order_body;
use tests::{
    AgentOptions, RelayOptions, SHOP, SqlServerOptions, TENANT, World, eventually, setup_with,
};

const WAIT: Duration = Duration::from_secs(30);

/// The import stand-in on `mamut`'s schema, for the test shop.
fn import(mamut: &MamutDb) -> ImportOptions {
    ImportOptions::new(mamut.import_env()).with_env("MAMUT_IMPORT_SIM_CLIENTS", "001")
}

fn options(mamut: &MamutDb, import: ImportOptions) -> AgentOptions {
    AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        import: Some(import),
        ..AgentOptions::default()
    }
}

async fn world_with(mamut: &MamutDb, import: ImportOptions) -> World {
    setup_with(RelayOptions::default(), options(mamut, import)).await
}

/// The example order as `order_id`, its customer with a numeric id (Mamut's CONTID).
fn body(order_id: &str) -> Value {
    let mut body: Value =
        serde_json::from_slice(&order_body(SHOP, order_id, "confirmed")).expect("example JSON");
    body["order"]["customer"]["id"] = "5512".into();
    body
}

async fn send(world: &World, body: &Value) -> i64 {
    let (status, reply) = world.shop.send(SHOP, body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    reply["event_id"].as_i64().expect("event id")
}

async fn state(world: &World, id: i64) -> Value {
    world.admin.event(TENANT, id).await
}

async fn delivered(world: &World, id: i64) -> Value {
    eventually("the event is delivered", WAIT, || async {
        state(world, id).await["event"]["state"] == "delivered"
    })
    .await;
    state(world, id).await
}

/// The dead letter's reason.
async fn dead(world: &World, id: i64) -> String {
    eventually("the event is dead-lettered", WAIT, || async {
        state(world, id).await["event"]["state"] == "dead"
    })
    .await;
    state(world, id).await["event"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Delivered once: acknowledged with the number of the one Mamut order that has `external`.
async fn delivered_once(world: &World, mamut: &MamutDb, id: i64, external: &str) -> Value {
    let event = delivered(world, id).await;
    assert_eq!(
        mamut.count_external(external),
        1,
        "order {external} is not in Mamut exactly once: {:?}",
        mamut.orders()
    );
    let order = mamut
        .orders()
        .into_iter()
        .find(|o| o.external_no == external)
        .expect("the order");
    assert_eq!(
        event["event"]["mamut_ref"],
        order.order_no.to_string(),
        "acknowledged with another number than Mamut's"
    );
    assert_eq!(order.shop_id, None, "Mamut's import knows no shops");
    event
}

/// The files directly in `dir` ending with `ext` whose name starts with `prefix`.
fn files(dir: &Path, prefix: &str, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(ext))
        })
        .collect();
    found.sort();
    found
}

/// The pending GBAOX10 file of a shop order in the spool (`<spool>/<shop>-<order>-<hash>.xml`).
fn pending(world: &World, order_id: &str) -> Vec<PathBuf> {
    files(
        &world.agent.spool_dir(),
        &format!("{SHOP}-{order_id}-"),
        ".xml",
    )
}

fn done(world: &World) -> Vec<PathBuf> {
    files(&world.agent.spool_dir().join("done"), "", ".xml")
}

fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-gbaox10.py")
}

/// Runs the validator on `paths`: (exit code, output). None when Python 3.11 (tomllib) is not
/// there: the caller skips (and fails in CI) by [`tests::requirements_met`].
fn run_validator(paths: &[PathBuf]) -> Option<(i32, String)> {
    let output = std::process::Command::new("python3")
        .arg(validator())
        .args(paths)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if text.contains("needs Python 3.11") {
        return None;
    }
    Some((output.status.code().unwrap_or(-1), text))
}

fn python_present() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import tomllib, xml.parsers.expat"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every file in `paths` validates against the documented field table.
fn validate(test: &str, paths: &[PathBuf]) -> bool {
    assert!(!paths.is_empty(), "{test}: no GBAOX10 file to validate");
    let missing = if python_present() {
        ""
    } else {
        "python3 (3.11 or later, with tomllib)"
    };
    if !tests::requirements_met(
        test,
        missing,
        "install Python 3.11 or later (Debian python3)",
    ) {
        return false;
    }
    let (code, output) = run_validator(paths).expect("the validator runs");
    assert_eq!(code, 0, "{test}: produced files do not validate:\n{output}");
    true
}

#[tokio::test]
async fn a_webhook_becomes_one_mamut_order_through_the_import_and_the_customer_is_found_by_ext_id()
{
    let started = Instant::now();
    let mamut = MamutDb::start();
    let world = world_with(&mamut, import(&mamut)).await;

    let mut first = body("200001");
    first["order"]["lines"]
        .as_array_mut()
        .expect("lines")
        .push(json!({
            "article_number": "PRESENT-99", "name": "Presentask", "quantity": 1,
            "unit_price": "100.00", "vat_rate": "25", "discount": "0.00"
        }));
    // The example's 516.00 and the added line: a total the relay's validation accepts.
    first["order"]["total"] = "616.00".into();
    let id = send(&world, &first).await;
    delivered_once(&world, &mamut, id, "200001").await;

    let orders = mamut.orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let order = &orders[0];
    assert_eq!(
        (order.doc_type.as_str(), order.status.as_str()),
        ("order", "unprocessed")
    );
    let lines = mamut.lines(order.order_no);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.article_no.as_deref(),
                l.description.as_str(),
                dec(&l.quantity),
                dec(&l.unit_price),
                dec(&l.discount),
            )
        })
        .collect();
    // Net prices (the shop's include 25 % VAT); the discount of 10.00 on 79.00 as a percentage.
    assert_eq!(
        summary,
        vec![
            (
                Some("TSHIRT-RED-M"),
                "T-shirt röd, M",
                dec("2"),
                dec("159.2"),
                dec("0")
            ),
            (Some("MUG-01"), "Mugg", dec("1"), dec("63.2"), dec("12.66")),
            (None, "Presentask", dec("1"), dec("80"), dec("0")),
            (
                Some("FRAKT"),
                "PostNord Ombud",
                dec("1"),
                dec("39.2"),
                dec("0")
            ),
        ],
        "the unknown article PRESENT-99 is a free-text line"
    );
    let customers = mamut.customer_rows();
    assert_eq!(customers.len(), 1, "{customers:?}");
    let customer = &customers[0];
    assert_eq!(order.customer_no, customer.customer_no);
    assert_eq!(
        (
            customer.name.as_str(),
            customer.ext_id.as_deref(),
            customer.street.as_deref(),
            customer.zip.as_deref(),
            customer.city.as_deref(),
            customer.country.as_deref()
        ),
        (
            "Anna Svensson",
            Some("5512"),
            Some("Storgatan 1"),
            Some("411 01"),
            Some("Göteborg"),
            Some("SE")
        )
    );

    // The same shop customer under another name: neither number + name nor name match, ExtID
    // does.
    let mut second = body("200002");
    second["order"]["customer"]["last_name"] = "Karlsson".into();
    let id = send(&world, &second).await;
    delivered_once(&world, &mamut, id, "200002").await;
    let customers = mamut.customer_rows();
    assert_eq!(
        customers.len(),
        1,
        "a second customer was made: {customers:?}"
    );
    let orders = mamut.orders();
    assert_eq!(orders.len(), 2);
    assert!(
        orders.iter().all(|o| o.customer_no == customer.customer_no),
        "both orders on customer {}: {orders:?}",
        customer.customer_no
    );

    let files = done(&world);
    assert_eq!(files.len(), 2, "one imported file per order: {files:?}");
    if validate("mamut_import::a_webhook_becomes_one", &files) {
        // The validator is not a rubber stamp: a lower-case tag, a UTF-8 file, a comma.
        let original = std::fs::read(&files[0]).expect("done file");
        let text: String = original.iter().map(|&b| char::from(b)).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let broken = [
            ("lower", text.replace("CONTNAME>", "contname>")),
            ("utf8", text.clone()),
            ("comma", text.replace("<PRICE>159.200<", "<PRICE>159,200<")),
            (
                "declaration",
                text.replace("iso-8859-1", "utf-8").replace('ö', "o"),
            ),
            ("missing", text.replace("<DATA15>1</DATA15>", "")),
        ];
        for (name, content) in broken {
            let path = dir.path().join(format!("{name}.xml"));
            let bytes: Vec<u8> = if name == "utf8" {
                content.into_bytes()
            } else {
                content.chars().map(|c| c as u32 as u8).collect()
            };
            std::fs::write(&path, bytes).expect("write");
            let (code, output) = run_validator(&[path]).expect("the validator runs");
            assert_eq!(code, 1, "{name} passed the validator:\n{output}");
        }
    }
    println!("elapsed {:?}", started.elapsed());
}

/// Where the agent is SIGKILLed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Right after the shop's webhook was accepted.
    BeforeTheFile,
    /// Once the order's file is in the spool (the import held open, so it is there a while).
    AfterTheFile,
    /// While the import program's transaction is open (its started marker is there).
    DuringTheImport,
    /// Once Mamut has the order, before the agent acknowledged it.
    BeforeTheAck,
}

/// Sends `order_id`, SIGKILLs the agent at `point`, restarts it (same configuration) and checks
/// that the order ends in Mamut once, acknowledged with Mamut's number.
async fn killed_at(world: &mut World, mamut: &MamutDb, point: Point, order_id: &str) {
    let started_marker = world.agent.dir().join("import-started");
    let _ = std::fs::remove_file(&started_marker);
    let id = send(world, &body(order_id)).await;
    match point {
        Point::BeforeTheFile => {}
        Point::AfterTheFile => {
            eventually("the order's file is in the spool", WAIT, || async {
                !pending(world, order_id).is_empty()
            })
            .await;
        }
        Point::DuringTheImport => {
            eventually("the import program has begun", WAIT, || async {
                started_marker.exists()
            })
            .await;
            assert_eq!(
                mamut.count_external(order_id),
                0,
                "committed before the kill"
            );
        }
        Point::BeforeTheAck => {
            eventually("Mamut has the order", WAIT, || async {
                mamut.count_external(order_id) == 1
            })
            .await;
        }
    }
    let was_started = started_marker.exists();
    world.agent.kill().await;
    if point != Point::BeforeTheFile {
        assert_ne!(
            state(world, id).await["event"]["state"],
            "delivered",
            "{point:?}: acknowledged before the kill"
        );
    }
    world.agent.restart().await;
    let event = delivered_once(world, mamut, id, order_id).await;
    let history = event["history"].to_string();
    if matches!(point, Point::DuringTheImport | Point::BeforeTheAck) {
        assert!(
            history.contains("already in Mamut"),
            "{point:?}: the restarted agent imported again instead of finding the order: {history}"
        );
    }
    println!("{point:?} {order_id}: import started at the kill: {was_started}");
}

#[tokio::test]
async fn an_agent_killed_before_or_after_writing_the_file_imports_each_order_once() {
    let started = Instant::now();
    let mamut = MamutDb::start();
    let mut world = world_with(&mamut, import(&mamut)).await;
    for n in 0..3 {
        killed_at(
            &mut world,
            &mamut,
            Point::BeforeTheFile,
            &format!("2100{n}"),
        )
        .await;
    }

    // The import held open 1 s once it has begun: the file is seen before it is done.
    let marker = world.agent.dir().join("import-started");
    let slow = import(&mamut)
        .with_env("MAMUT_IMPORT_SIM_DELAY_MS", "1000")
        .with_env("MAMUT_IMPORT_SIM_STARTED", marker.display().to_string());
    world.agent.configure(&options(&mamut, slow.clone()));
    world.agent.restart().await;
    for n in 0..3 {
        killed_at(&mut world, &mamut, Point::AfterTheFile, &format!("2200{n}")).await;
    }

    // The file written and the program never run: it cannot be started. The agent retries;
    // killed with the file in the spool, restarted with the program there, it imports once.
    world.agent.configure(&options(
        &mamut,
        ImportOptions {
            program: Some(world.agent.dir().join("no-such-program")),
            ..slow.clone()
        },
    ));
    world.agent.restart().await;
    let id = send(&world, &body("23000")).await;
    eventually("the program cannot be started", WAIT, || async {
        state(&world, id).await["event"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot start the import program"))
    })
    .await;
    assert_eq!(
        pending(&world, "23000").len(),
        1,
        "the file is in the spool"
    );
    world.agent.kill().await;
    world.agent.configure(&options(&mamut, slow));
    world.agent.restart().await;
    delivered_once(&world, &mamut, id, "23000").await;
    assert!(
        pending(&world, "23000").is_empty(),
        "the file moved to done"
    );

    assert_eq!(mamut.orders().len(), 7, "{:?}", mamut.orders());
    validate(
        "mamut_import::killed_before_or_after_the_file",
        &done(&world),
    );
    println!("elapsed {:?}", started.elapsed());
}

#[tokio::test]
async fn an_agent_killed_during_the_import_or_before_the_ack_imports_each_order_once() {
    let started = Instant::now();
    let mamut = MamutDb::start();
    let marker = |world: &World| world.agent.dir().join("import-started");

    // The import program's transaction held open 2.5 s: the agent is killed in it; the
    // orphaned program commits; the restarted agent waits for the spool's lock, finds the
    // order and acknowledges it.
    let mut world = world_with(&mamut, import(&mamut)).await;
    let during = import(&mamut)
        .with_env("MAMUT_IMPORT_SIM_DELAY_MS", "2500")
        .with_env(
            "MAMUT_IMPORT_SIM_STARTED",
            marker(&world).display().to_string(),
        );
    world.agent.configure(&options(&mamut, during));
    world.agent.restart().await;
    for n in 0..3 {
        killed_at(
            &mut world,
            &mamut,
            Point::DuringTheImport,
            &format!("2400{n}"),
        )
        .await;
    }
    let waited = world.agent.logs().matches("is still running").count();
    assert!(
        waited >= 3,
        "the restarted agent did not wait for the running import ({waited} times)"
    );

    // Imported, then 3 s before the acknowledgement.
    world.agent.configure(&options(
        &mamut,
        ImportOptions {
            after_import_delay_ms: 3000,
            ..import(&mamut)
        },
    ));
    world.agent.restart().await;
    for n in 0..3 {
        killed_at(&mut world, &mamut, Point::BeforeTheAck, &format!("2500{n}")).await;
    }
    assert_eq!(mamut.orders().len(), 6, "{:?}", mamut.orders());
    validate(
        "mamut_import::killed_during_or_after_the_import",
        &done(&world),
    );
    println!("elapsed {:?}", started.elapsed());
}

#[tokio::test]
async fn a_refused_order_is_a_dead_letter_with_the_reason_and_a_replay_after_the_fix_imports_it_once()
 {
    let started = Instant::now();
    let mamut = MamutDb::start();
    // A client the import program does not have: every run is refused by the program.
    let wrong = ImportOptions {
        client: "002".to_owned(),
        ..import(&mamut)
    };
    let mut world = world_with(&mamut, wrong).await;

    // Refused by the agent before any file: the customer name is longer than the format's 50.
    let company = format!("Aktiebolaget {}", "Långnamn ".repeat(6));
    let company = company.trim_end().to_owned();
    assert_eq!(company.chars().count(), 66);
    let mut long = body("300001");
    long["order"]["customer"]["type"] = "company".into();
    long["order"]["customer"]["company_name"] = company.clone().into();
    // A customer of its own: with the other order's customer id it would be matched to that
    // customer (by ExtID) whichever order is imported first.
    long["order"]["customer"]["id"] = "7001".into();
    let long_id = send(&world, &long).await;
    let reason = dead(&world, long_id).await;
    assert!(
        reason.contains("66 characters") && reason.contains("ORDER.CONTNAME"),
        "the reason does not name the field and its length: {reason}"
    );
    assert!(pending(&world, "300001").is_empty(), "a file was written");
    assert!(
        files(&world.agent.spool_dir().join("failed"), "", "").is_empty(),
        "the program ran on a refused order"
    );

    // Refused by the program: exit code and its line on standard error in the reason.
    let id = send(&world, &body("300002")).await;
    let reason = dead(&world, id).await;
    assert!(
        reason.contains("client 002 not found") && reason.contains("exit code"),
        "the reason lacks the program's words or its exit code: {reason}"
    );
    let failed = world.agent.spool_dir().join("failed");
    let kept_xml = files(&failed, &format!("{SHOP}-300002-"), ".xml");
    let kept_log = files(&failed, &format!("{SHOP}-300002-"), ".log");
    assert_eq!(
        (kept_xml.len(), kept_log.len()),
        (1, 1),
        "{:?}",
        files(&failed, "", "")
    );
    let log = std::fs::read_to_string(&kept_log[0]).expect("kept log");
    assert!(log.contains("client 002 not found"), "{log}");
    assert!(mamut.orders().is_empty(), "{:?}", mamut.orders());
    assert!(mamut.customers().is_empty());

    // The fix: the right client, long customer names cut; the operator replays both.
    world.agent.configure(&options(
        &mamut,
        ImportOptions {
            extra: "[mamut.import.on_too_long_fields]\n\"ORDER.CONTNAME\" = \"truncate\"\n"
                .to_owned(),
            ..import(&mamut)
        },
    ));
    world.agent.restart().await;
    world.admin.replay_event(TENANT, id).await;
    world.admin.replay_event(TENANT, long_id).await;
    delivered_once(&world, &mamut, id, "300002").await;
    delivered_once(&world, &mamut, long_id, "300001").await;
    assert_eq!(mamut.orders().len(), 2, "{:?}", mamut.orders());
    let names: Vec<String> = mamut.customer_rows().into_iter().map(|c| c.name).collect();
    let cut: String = company.chars().take(50).collect();
    assert!(names.contains(&cut), "the name is cut to 50: {names:?}");
    assert!(
        world
            .agent
            .logs()
            .contains("was cut from 66 to 50 characters"),
        "the cut is not reported"
    );

    let mut all = done(&world);
    all.extend(kept_xml);
    validate("mamut_import::a_refused_order", &all);
    println!("elapsed {:?}", started.elapsed());
}

#[tokio::test]
async fn swedish_characters_survive_iso_8859_1_and_others_are_replaced_and_reported() {
    let started = Instant::now();
    let mamut = MamutDb::start();
    // The shop in the external order number this time.
    let world = world_with(
        &mamut,
        ImportOptions {
            external_no: "{shop_id}:{order_id}".to_owned(),
            shop_id: None,
            ..import(&mamut)
        },
    )
    .await;
    let mut order = body("400001");
    let customer = &mut order["order"]["customer"];
    customer["first_name"] = "Åsa".into();
    customer["last_name"] = "Öberg".into();
    customer["billing_address"]["street"] = "Södra Vägen 3".into();
    let lines = order["order"]["lines"].as_array_mut().expect("lines");
    lines.push(json!({
        "article_number": "GLOGG-1", "name": "Glöggmugg 😀", "quantity": 1,
        "unit_price": "50.00", "vat_rate": "25", "discount": "0.00"
    }));
    lines.push(json!({
        "article_number": "GIFT-100", "name": "Presentkort 100 €", "quantity": 1,
        "unit_price": "100.00", "vat_rate": "25", "discount": "0.00"
    }));
    order["order"]["total"] = "666.00".into();
    let id = send(&world, &order).await;
    let external = format!("{SHOP}:400001");
    delivered_once(&world, &mamut, id, &external).await;

    let customers = mamut.customer_rows();
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(
        (
            customers[0].name.as_str(),
            customers[0].street.as_deref(),
            customers[0].city.as_deref()
        ),
        ("Åsa Öberg", Some("Södra Vägen 3"), Some("Göteborg"))
    );
    let order_no = mamut.orders()[0].order_no;
    let descriptions: Vec<String> = mamut
        .lines(order_no)
        .into_iter()
        .map(|l| l.description)
        .collect();
    assert_eq!(
        descriptions,
        [
            "T-shirt röd, M",
            "Mugg",
            "Glöggmugg ?",
            "Presentkort 100 EUR",
            "PostNord Ombud"
        ]
    );
    let logs = world.agent.logs();
    assert!(
        logs.contains("not in ISO-8859-1") && logs.contains("U+1F600") && logs.contains("U+20AC"),
        "the replaced characters are not reported"
    );

    let files = done(&world);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).expect("done file");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"<CONTNAME>\xC5sa \xD6berg</CONTNAME>"),
        "the name is not ISO-8859-1 in the file"
    );
    assert!(has(b"<EXTERNALID>demo-se:400001</EXTERNALID>"));
    validate("mamut_import::swedish_characters", &files);
    println!("elapsed {:?}", started.elapsed());
}

/// A Mamut that keeps the file's order number (ORDERID) as the external order number, the
/// documentation's other reading: the agent cannot find the order it had imported. The relay
/// connection drops while the program runs; the import runs to its end all the same, and the
/// order is refused with a marker, never imported a second time — not on redelivery, not on a
/// replay — until someone has looked.
#[tokio::test]
async fn an_order_mamut_keeps_under_another_number_is_refused_once_never_imported_twice() {
    let mamut = MamutDb::start();
    let mut world = world_with(&mamut, import(&mamut)).await;
    world.agent.kill().await;
    let started_marker = world.agent.dir().join("import-started");
    world.agent.configure(&options(
        &mamut,
        import(&mamut)
            .with_env("MAMUT_IMPORT_SIM_EXTERNAL", "ORDERID")
            .with_env("MAMUT_IMPORT_SIM_DELAY_MS", "1500")
            .with_env(
                "MAMUT_IMPORT_SIM_STARTED",
                started_marker.display().to_string(),
            ),
    ));
    world.agent.restart().await;

    // "web-600" is no number: ORDERID is 1, which this Mamut keeps as the external number.
    let id = send(&world, &body("web-600")).await;
    eventually("the import program has begun", WAIT, || async {
        started_marker.exists()
    })
    .await;
    // The relay goes away while the program runs: the session ends, its apply is abandoned.
    world.relay.kill().await;
    eventually("Mamut has the imported order", WAIT, || async {
        mamut.count_external("1") == 1
    })
    .await;
    eventually("the agent marked the order as imported", WAIT, || async {
        !files(
            &world.agent.spool_dir(),
            &format!("{SHOP}-web-600-"),
            ".imported",
        )
        .is_empty()
    })
    .await;
    world.relay.restart().await;

    let reason = dead(&world, id).await;
    assert!(
        reason.contains("exited 0, yet Mamut has no order with external order number web-600"),
        "{reason}"
    );
    assert!(
        reason.contains(".imported"),
        "the reason names the marker: {reason}"
    );
    // A replay does not run the program again while the marker is there.
    let refusals = |event: &Value| {
        event["history"]
            .to_string()
            .matches("not imported again")
            .count()
    };
    let before = refusals(&state(&world, id).await);
    world.admin.replay_event(TENANT, id).await;
    eventually("the replay is refused again", WAIT, || async {
        let event = state(&world, id).await;
        event["event"]["state"] == "dead" && refusals(&event) > before
    })
    .await;
    assert_eq!(
        mamut.orders().len(),
        1,
        "imported twice: {:?}",
        mamut.orders()
    );
    let reason = dead(&world, id).await;
    assert!(reason.contains("not imported again by itself"), "{reason}");
}

/// `agent check` with the import writer: the program, the client number's database, why no
/// dry run, the spool's permissions and the lookup; a missing program fails the check.
#[tokio::test]
async fn agent_check_reports_the_import_program_the_spool_and_the_lookup() {
    let mamut = MamutDb::start();
    let mut world = world_with(&mamut, import(&mamut)).await;
    let (ok, report) = world.agent.check().await;
    assert!(ok, "{report}");
    for line in [
        "[ ok ] import program ",
        "[note] the import runs as ",
        "IO 001 <file> 1 1 .F. and writes into company database 001",
        "[note] a test import cannot be dry-run",
        "[ ok ] spool folder ",
        "is writable by the agent's account",
        "[ ok ] the lookup of imported orders by their external order number runs",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }

    let missing = world.agent.dir().join("no such program.exe");
    world.agent.configure(&options(
        &mamut,
        ImportOptions {
            program: Some(missing.clone()),
            ..import(&mamut)
        },
    ));
    let (ok, report) = world.agent.check().await;
    assert!(!ok, "a missing program passes the check:\n{report}");
    assert!(
        report.contains(&format!(
            "[FAIL] mamut.import.program {}",
            missing.display()
        )) && report.contains("Mamut ImportExport.exe"),
        "{report}"
    );
    world.agent.kill().await;
}
