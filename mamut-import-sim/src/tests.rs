//! Tests of the import stand-in: the file checks (each refusal), the layout of several
//! orders, and, on a real PostgreSQL schema served by mamut-sim, the import itself (numbers,
//! free text, customer matching in its documented order, one transaction, the test hooks).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::db::{Address, Target, import, split_address};
use super::file::{self, Refused};
use super::format::{DEFAULT_PATH, Format};
use super::{Outcome, Settings, run};
use tests::mamut_db::MamutDb;
use tests::mamut_sim::types::PgValue;

fn format() -> Format {
    Format::load(Path::new(DEFAULT_PATH)).expect("the documented table loads")
}

fn head(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = [
        ("ORDERID", "1"),
        ("CONTID", "0"),
        ("CONTNAME", "Anna Andersson"),
        ("ADRINVO", "Storgatan 1:123 45 Stockholm:SE"),
        ("REF", "1001"),
        ("DATA15", "1"),
        ("EXTERNALID", "shop-se-1001"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    values
}

fn line(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = [
        ("PRODID", "MUG-01"),
        ("DESCRIPTION", "Mugg"),
        ("QUANTITY", "2.00"),
        ("PRICE", "63.200"),
        ("DISCOUNT", "0.00"),
        ("VATCODE", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    values
}

fn escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The fields of `table` in its order, every tag present (empty where `values` has none).
fn fields(out: &mut String, table: &[super::format::Field], values: &BTreeMap<String, String>) {
    for f in table {
        let v = values.get(&f.tag).map(String::as_str).unwrap_or_default();
        out.push_str(&format!("<{0}>{1}</{0}>", f.tag, escape(v)));
    }
}

type Order = (BTreeMap<String, String>, Vec<BTreeMap<String, String>>);

/// A file with one `<ORDERLIST>` per order, as the agent writes it.
fn xml(orders: &[Order]) -> String {
    let f = format();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<GBAOX10>\n");
    for (h, lines) in orders {
        out.push_str("<ORDERLIST>\n<ORDER>");
        fields(&mut out, &f.order_fields, h);
        out.push_str("</ORDER>\n<ORDERLINES>\n");
        for l in lines {
            out.push_str("<ORDERLINE>");
            fields(&mut out, &f.line_fields, l);
            out.push_str("</ORDERLINE>\n");
        }
        out.push_str("</ORDERLINES>\n</ORDERLIST>\n");
    }
    out.push_str("</GBAOX10>\n");
    out
}

fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("the test text is ISO-8859-1"))
        .collect()
}

fn one() -> String {
    xml(&[(head(&[]), vec![line(&[])])])
}

fn read(text: &str) -> Result<Vec<file::Order>, Refused> {
    file::read(&latin1_bytes(text), &format())
}

#[track_caller]
fn refused(text: &str, wanted: &[&str]) {
    match read(text) {
        Ok(orders) => panic!("accepted, expected a refusal with {wanted:?}: {orders:?}\n{text}"),
        Err(Refused(why)) => {
            for w in wanted {
                assert!(why.contains(w), "{why:?} does not say {w:?}");
            }
        }
    }
}

// ------------------------------------------------------------------ the file

#[test]
fn a_file_as_the_agent_writes_it_is_read() {
    let text = xml(&[
        (
            head(&[]),
            vec![
                line(&[]),
                line(&[("PRODID", "X"), ("DESCRIPTION", "Fri text")]),
            ],
        ),
        (
            head(&[
                ("ORDERID", "2"),
                ("EXTERNALID", ""),
                ("CONTNAME", "Bo & Co <AB>"),
            ]),
            vec![line(&[
                ("QUANTITY", "-1"),
                ("PRICE", "10"),
                ("DISCOUNT", "12.5"),
            ])],
        ),
    ]);
    let orders = read(&text).expect("accepted");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].external(), "shop-se-1001");
    assert_eq!(orders[0].lines.len(), 2);
    assert_eq!(orders[0].lines[1].product_no, "X");
    assert_eq!(orders[1].customer_name, "Bo & Co <AB>");
    // EXTERNALID empty: ORDERID is the external number.
    assert_eq!(orders[1].external(), "2");
    assert_eq!(
        orders[1].lines[0].quantity,
        Some("-1".parse().expect("dec"))
    );
    assert_eq!(
        orders[1].lines[0].discount,
        Some("12.5".parse().expect("dec"))
    );
}

#[test]
fn bytes_are_iso_8859_1_characters() {
    let text = xml(&[(head(&[("CONTNAME", "Åsa Öberg")]), vec![line(&[])])]);
    let bytes = latin1_bytes(&text);
    assert!(bytes.contains(&0xC5), "Å is one byte");
    let orders = file::read(&bytes, &format()).expect("accepted");
    assert_eq!(orders[0].customer_name, "Åsa Öberg");
    // The same text in UTF-8 is read byte by byte: other characters, and too long.
    let name = "Å".repeat(30);
    let utf8 = xml(&[(head(&[("CONTNAME", &name)]), vec![line(&[])])]);
    assert!(file::read(utf8.as_bytes(), &format()).is_err());
    assert!(read(&utf8).is_ok());
}

#[test]
fn the_declaration_must_name_iso_8859_1() {
    let good = one();
    refused(
        &good.replace("encoding=\"iso-8859-1\"", "encoding=\"utf-8\""),
        &["encoding=\"utf-8\"", "ISO-8859-1"],
    );
    refused(
        &good.replace(" encoding=\"iso-8859-1\"", ""),
        &["names no encoding"],
    );
    refused(
        &good.replace("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n", ""),
        &["no XML declaration"],
    );
    // Upper case and single quotes are the same declaration.
    assert!(read(&good.replace("\"iso-8859-1\"", "'ISO-8859-1'")).is_ok());
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(latin1_bytes(&good));
    let why = file::read(&bom, &format()).expect_err("a BOM is refused");
    assert!(why.0.contains("byte-order mark"), "{why}");
}

#[test]
fn not_well_formed_xml_is_refused() {
    refused(&one().replace("</ORDER>", "</ORDR>"), &["not well-formed"]);
    refused(
        &one().replace("<GBAOX10>", "<!DOCTYPE GBAOX10 []><GBAOX10>"),
        &["not well-formed"],
    );
}

#[test]
fn the_root_must_be_gbaox10() {
    let text = one().replace("GBAOX10>", "GBAOX11>");
    refused(&text, &["root is <GBAOX11>"]);
}

#[test]
fn tags_must_be_upper_case() {
    refused(
        &one()
            .replace("<CONTNAME>", "<ContName>")
            .replace("</CONTNAME>", "</ContName>"),
        &["ORDER 1:", "<ContName> is not in upper case"],
    );
    refused(
        &one()
            .replace("<ORDERLINE>", "<orderline>")
            .replace("</ORDERLINE>", "</orderline>"),
        &["<orderline> is not in upper case"],
    );
    refused(
        &one().replace("GBAOX10>", "gbaox10>"),
        &["<gbaox10> is not in upper case"],
    );
}

#[test]
fn unknown_tags_are_refused() {
    refused(
        &one().replace("<REF>", "<SHOPID>x</SHOPID><REF>"),
        &["ORDER 1:", "unknown tag <SHOPID> in <ORDER>"],
    );
    refused(
        &one().replace("<VATCODE>", "<VATRATE>25</VATRATE><VATCODE>"),
        &[
            "ORDER 1, ORDERLINE 1:",
            "unknown tag <VATRATE> in <ORDERLINE>",
        ],
    );
    refused(
        &one().replace("<ORDERLIST>", "<ORDERLIST><CUSTOMER></CUSTOMER>"),
        &["unknown tag <CUSTOMER> in <ORDERLIST>"],
    );
    refused(
        &one()
            .replace("<ORDERLIST>", "<ORDERS>")
            .replace("</ORDERLIST>", "</ORDERS>"),
        &["unknown tag <ORDERS> in <GBAOX10>"],
    );
}

#[test]
fn every_tag_of_the_table_must_be_there() {
    refused(
        &one().replace("<SUMORDER></SUMORDER>", ""),
        &["ORDER 1:", "<SUMORDER> is missing from <ORDER>"],
    );
    refused(
        &one().replace("<DELIVERYDATE></DELIVERYDATE>", ""),
        &[
            "ORDER 1, ORDERLINE 1:",
            "<DELIVERYDATE> is missing from <ORDERLINE>",
        ],
    );
    refused(
        &one().replace("<REF>1001</REF>", "<REF>1001</REF><REF>1</REF>"),
        &["<REF> is given twice"],
    );
}

#[test]
fn required_fields_must_have_values() {
    refused(
        &xml(&[(head(&[("ORDERID", "")]), vec![line(&[])])]),
        &["<ORDERID> is required and empty"],
    );
    refused(
        &xml(&[(head(&[]), vec![line(&[("VATCODE", "")])])]),
        &["ORDERLINE 1", "<VATCODE> is required and empty"],
    );
    // One of customer number and name; 0 is no number.
    refused(
        &xml(&[(head(&[("CONTID", "0"), ("CONTNAME", " ")]), vec![line(&[])])]),
        &["<CONTID> or <CONTNAME> must be completed", "0 is none"],
    );
    refused(
        &xml(&[(head(&[("CONTID", ""), ("CONTNAME", "")]), vec![line(&[])])]),
        &["<CONTID> or <CONTNAME> must be completed"],
    );
    assert!(
        read(&xml(&[(
            head(&[("CONTID", "17"), ("CONTNAME", "")]),
            vec![line(&[])]
        )]))
        .is_ok()
    );
    // One of product number and description.
    refused(
        &xml(&[(
            head(&[]),
            vec![line(&[]), line(&[("PRODID", ""), ("DESCRIPTION", "")])],
        )]),
        &[
            "ORDER 1, ORDERLINE 2:",
            "<PRODID> or <DESCRIPTION> must be completed",
        ],
    );
    assert!(read(&xml(&[(head(&[]), vec![line(&[("PRODID", "")])])])).is_ok());
}

#[test]
fn the_department_cannot_be_blank() {
    refused(
        &xml(&[(head(&[("DATA15", "")]), vec![line(&[])])]),
        &["<DATA15> cannot be blank"],
    );
    refused(
        &xml(&[(head(&[("DATA15", "  ")]), vec![line(&[])])]),
        &["<DATA15> cannot be blank"],
    );
}

#[test]
fn values_longer_than_documented_are_refused() {
    // Characters, not bytes (in ISO-8859-1 they are the same).
    let fifty = "ö".repeat(50);
    assert!(read(&xml(&[(head(&[("CONTNAME", &fifty)]), vec![line(&[])])])).is_ok());
    let fifty_one = "ö".repeat(51);
    refused(
        &xml(&[(head(&[("CONTNAME", &fifty_one)]), vec![line(&[])])]),
        &["<CONTNAME> has 51 characters, more than its maximum of 50"],
    );
    refused(
        &xml(&[(head(&[("ORDERID", "1234567890")]), vec![line(&[])])]),
        &["<ORDERID> has 10 characters"],
    );
    refused(
        &xml(&[(head(&[]), vec![line(&[("DISCOUNT", "100.000")])])]),
        &["<DISCOUNT> has 7 characters, more than its maximum of 6"],
    );
}

#[test]
fn numbers_need_a_full_stop_and_at_most_the_documented_decimals() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("QUANTITY", "1,5")],
            "<QUANTITY> \"1,5\" is not a number with at most 2 decimals",
        ),
        (&[("QUANTITY", "1.505")], "3 decimals"),
        (
            &[("PRICE", "12.3456")],
            "<PRICE> \"12.3456\" is not a number with at most 3 decimals",
        ),
        (&[("QUANTITY", "two")], "<QUANTITY> \"two\""),
        (&[("QUANTITY", " 2")], "<QUANTITY> \" 2\""),
        (
            &[("VATCODE", "3.0")],
            "<VATCODE> \"3.0\" is not an integer (no decimals)",
        ),
    ];
    for (overrides, wanted) in cases {
        refused(
            &xml(&[(head(&[]), vec![line(overrides)])]),
            &["ORDERLINE 1", wanted],
        );
    }
    refused(
        &xml(&[(head(&[("CONTID", "12.0")]), vec![line(&[])])]),
        &["<CONTID> \"12.0\" is not an integer"],
    );
    refused(
        &xml(&[(head(&[("DATA4", "1e3")]), vec![line(&[])])]),
        &["<DATA4> \"1e3\" is not an integer"],
    );
    assert!(
        read(&xml(&[(
            head(&[]),
            vec![line(&[("QUANTITY", "1.5"), ("PRICE", "-0.125")])]
        )]))
        .is_ok()
    );
}

#[test]
fn dates_are_yyyymmdd() {
    assert!(
        read(&xml(&[(
            head(&[]),
            vec![line(&[("DELIVERYDATE", "20240229")])]
        )]))
        .is_ok()
    );
    for bad in ["20230229", "2024-2-1", "2024021", "20241301", "2024021a"] {
        refused(
            &xml(&[(head(&[]), vec![line(&[("DELIVERYDATE", bad)])])]),
            &["<DELIVERYDATE>", "is not a date YYYYMMDD"],
        );
    }
}

#[test]
fn export_only_fields_must_be_empty() {
    refused(
        &xml(&[(head(&[("SUMORDERTOTAL", "126.40")]), vec![line(&[])])]),
        &["<SUMORDERTOTAL> is export only"],
    );
    // FREIGHT is "not used": present, its value ignored.
    assert!(read(&xml(&[(head(&[("FREIGHT", "49")]), vec![line(&[])])])).is_ok());
}

#[test]
fn the_position_names_the_order_the_line_and_the_file_line() {
    let text = xml(&[
        (head(&[]), vec![line(&[])]),
        (
            head(&[("ORDERID", "2")]),
            vec![line(&[]), line(&[]), line(&[("QUANTITY", "x")])],
        ),
    ]);
    let why = read(&text).expect_err("refused").0;
    assert!(
        why.starts_with("ORDER 2, ORDERLINE 3: <QUANTITY> \"x\""),
        "{why}"
    );
    let row = text
        .lines()
        .position(|l| l.contains("<QUANTITY>x</QUANTITY>"))
        .expect("the bad line")
        + 1;
    assert!(why.ends_with(&format!("(file line {row})")), "{why}");
}

#[test]
fn the_layout_of_orders_and_lines() {
    let two_lists = xml(&[
        (head(&[]), vec![line(&[])]),
        (head(&[("ORDERID", "2")]), vec![line(&[])]),
    ]);
    // Repeated ORDER/ORDERLINES pairs in one ORDERLIST are read the same.
    let one_list = two_lists.replacen("</ORDERLIST>\n<ORDERLIST>\n", "", 1);
    assert_eq!(one_list.matches("<ORDERLIST>").count(), 1);
    assert_eq!(
        read(&one_list).expect("pairs"),
        read(&two_lists).expect("lists")
    );
    refused(
        &one().replace("<ORDERLINES>", "</ORDERLIST><ORDERLIST><ORDERLINES>"),
        &["ORDER 1:", "<ORDER> without <ORDERLINES>"],
    );
    refused(
        &one().replace("</ORDERLINES>", "</ORDERLINES><ORDERLINES></ORDERLINES>"),
        &["<ORDERLINES> without an <ORDER> before it"],
    );
    let no_lines = xml(&[(head(&[]), vec![])]);
    refused(&no_lines, &["<ORDERLINES> holds no <ORDERLINE>"]);
    refused(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><GBAOX10><ORDERLIST></ORDERLIST></GBAOX10>",
        &["the file has no <ORDER>"],
    );
}

#[test]
fn attributes_text_and_elements_in_fields_are_refused() {
    refused(
        &one().replace("<ORDER>", "<ORDER id=\"1\">"),
        &["has an attribute \"id\""],
    );
    refused(
        &one().replace("<ORDER>", "<ORDER>stray"),
        &["text \"stray\" directly inside <ORDER>"],
    );
    refused(
        &one().replace("<REF>1001</REF>", "<REF><B>1001</B></REF>"),
        &["<REF> holds an element <B>"],
    );
    refused(
        &one().replace("<GBAOX10>", "<GBAOX10 xmlns=\"urn:x\">"),
        &["namespace"],
    );
}

#[test]
fn orders_with_the_same_number_and_customer_are_one() {
    let text = xml(&[
        (head(&[]), vec![line(&[])]),
        (
            head(&[("EXTERNALID", "other")]),
            vec![line(&[("PRODID", "FRAKT")])],
        ),
        (head(&[("CONTNAME", "Someone Else")]), vec![line(&[])]),
    ]);
    let orders = read(&text).expect("accepted");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].external(), "shop-se-1001");
    assert_eq!(orders[0].lines.len(), 2);
    assert_eq!(orders[0].lines[1].product_no, "FRAKT");
    assert_eq!(orders[1].customer_name, "Someone Else");
}

#[test]
fn a_file_over_the_size_limit_is_refused_unread() {
    let big = vec![b' '; file::MAX_FILE_BYTES + 1];
    let why = file::read(&big, &format()).expect_err("refused");
    assert!(why.0.contains("at most"), "{why}");
}

#[test]
fn no_input_panics() {
    // Truncations and byte changes of a valid file: refused or read, never a panic.
    let good = latin1_bytes(&one());
    let f = format();
    for cut in (0..good.len()).step_by(7) {
        let _ = file::read(&good[..cut], &f);
    }
    for at in (0..good.len()).step_by(5) {
        for b in [0u8, b'<', b'&', 0xFF, b'"'] {
            let mut bytes = good.clone();
            bytes[at] = b;
            let _ = file::read(&bytes, &f);
        }
    }
}

#[test]
fn addresses_split_on_the_colon() {
    assert_eq!(
        split_address("Storgatan 1:123 45 Stockholm:SE", ':', "Anna"),
        Address {
            street: Some("Storgatan 1".into()),
            zip: Some("123 45".into()),
            city: Some("Stockholm".into()),
            country: Some("SE".into()),
        }
    );
    assert_eq!(
        split_address(
            "Anna Andersson:c/o Berg:Box 12:SW1A 1AA London",
            ':',
            "anna andersson"
        ),
        Address {
            street: Some("c/o Berg, Box 12".into()),
            zip: Some("SW1A 1AA".into()),
            city: Some("London".into()),
            country: None,
        }
    );
    assert_eq!(
        split_address("Storgatan 1", ':', ""),
        Address {
            street: Some("Storgatan 1".into()),
            ..Address::default()
        }
    );
    assert_eq!(split_address("::", ':', ""), Address::default());
}

// ------------------------------------------------------------------ the command line

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_vars(|name| vars.get(name).cloned())
}

#[track_caller]
fn fails(outcome: Outcome, code: i32, wanted: &str) {
    assert_eq!(outcome.code, code, "{outcome:?}");
    assert!(outcome.stdout.is_empty(), "{outcome:?}");
    assert_eq!(outcome.stderr.len(), 1, "{outcome:?}");
    assert!(
        outcome.stderr[0].contains(wanted),
        "{outcome:?} does not say {wanted:?}"
    );
}

#[test]
fn the_command_line_has_six_arguments() {
    let env = || settings(&[("MAMUT_IMPORT_SIM_PG_SCHEMA", "s")]);
    fails(
        run(&args(&["IO", "001", "f.xml", "1", "1"]), env()),
        2,
        "5 given",
    );
    fails(
        run(&args(&["IO", "001", "f.xml", "1", "1", ".F.", "x"]), env()),
        2,
        "7 given",
    );
    fails(
        run(&args(&["IC", "001", "f.xml", "1", "1", ".F."]), env()),
        2,
        "only IO",
    );
    fails(
        run(&args(&["IO", "001", "f.xml", "1", "1", ".T."]), env()),
        2,
        "not .F.",
    );
    fails(
        run(&args(&["IO", "001", "f.xml", "3", "1", ".F."]), env()),
        2,
        "CompareKey",
    );
    fails(
        run(&args(&["IO", "001", "f.xml", "1", "", ".F."]), env()),
        2,
        "UserID",
    );
    fails(
        run(&args(&["IO", "002", "f.xml", "1", "1", ".F."]), env()),
        2,
        "client 002 not found",
    );
    fails(
        run(
            &args(&["IO", "002", "f.xml", "1", "1", ".F."]),
            settings(&[
                ("MAMUT_IMPORT_SIM_CLIENTS", "001, 002"),
                ("MAMUT_IMPORT_SIM_PG_SCHEMA", "s"),
            ]),
        ),
        2,
        "cannot read f.xml",
    );
    fails(
        run(
            &args(&["IO", "001", "f.xml", "1", "1", ".F."]),
            settings(&[]),
        ),
        2,
        "MAMUT_IMPORT_SIM_PG_SCHEMA is not set",
    );
    fails(
        run(
            &args(&["IO", "001", "f.xml", "1", "1", ".F."]),
            settings(&[("MAMUT_IMPORT_SIM_DELAY_MS", "soon")]),
        ),
        2,
        "MAMUT_IMPORT_SIM_DELAY_MS",
    );
}

#[test]
fn a_refused_file_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("order.xml");
    std::fs::write(
        &path,
        latin1_bytes(&xml(&[(head(&[("DATA15", "")]), vec![line(&[])])])),
    )
    .expect("write");
    let file = path.to_string_lossy().into_owned();
    let outcome = run(
        &args(&["IO", "001", &file, "1", "1", ".F."]),
        // No database is reached: the file is refused first.
        settings(&[
            ("MAMUT_IMPORT_SIM_PG_SCHEMA", "none"),
            (
                "MAMUT_IMPORT_SIM_POSTGRES_URL",
                "postgres://nobody@127.0.0.1:1/none",
            ),
        ]),
    );
    fails(
        outcome.clone(),
        1,
        &format!("GBAOX10 {file}: ORDER 1: <DATA15> cannot be blank"),
    );
}

// ------------------------------------------------------------------ the import

/// A mamut-sim database, or `None` (skipped locally, a failure in CI) without PostgreSQL.
fn database(test: &str) -> Option<MamutDb> {
    tests::mamut_sim::exec::off_runtime(|| database_now(test))
}

fn database_now(test: &str) -> Option<MamutDb> {
    let url = tests::mamut_sim::default_postgres_url();
    let missing = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(_) => String::new(),
        Err(e) => format!("PostgreSQL at {url} ({e})"),
    };
    tests::requirements_met(
        test,
        &missing,
        "start PostgreSQL or set MAMUT_SIM_POSTGRES_URL",
    )
    .then(MamutDb::start)
}

fn target(db: &MamutDb) -> Target {
    Target {
        postgres_url: db.config().postgres_url.clone(),
        schema: db.config().pg_schema.clone(),
        currency: "SEK".into(),
        lock_timeout: Duration::from_secs(10),
        started: None,
        delay: Duration::ZERO,
    }
}

fn orders_of(text: &str) -> Vec<file::Order> {
    read(text).expect("the test file is valid")
}

/// Rows of a query on the stand-in's schema, every column as text (NULL as `None`).
fn rows(db: &MamutDb, sql: &str) -> Vec<Vec<Option<String>>> {
    tests::mamut_sim::exec::off_runtime(|| rows_now(db, sql))
}

fn rows_now(db: &MamutDb, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut client =
        postgres::Client::connect(&db.config().postgres_url, postgres::NoTls).expect("PostgreSQL");
    client
        .batch_execute(&format!(
            "SET search_path = \"{}\", pg_catalog",
            db.config().pg_schema
        ))
        .expect("search_path");
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn orders_are_imported_with_new_numbers_free_text_and_totals() {
    let Some(db) = database("orders_are_imported_with_new_numbers_free_text_and_totals") else {
        return;
    };
    db.execute("UPDATE products SET active = 0 WHERE article_no = 'FRAKT'");
    let text = xml(&[
        (
            head(&[]),
            vec![
                // 2 × 63.20 = 126.40, the product's 25 % VAT, its casing of the number.
                line(&[("PRODID", "mug-01"), ("DESCRIPTION", "")]),
                // Unknown product: free text, 1 × 10 × 0.9 = 9.
                line(&[
                    ("PRODID", "GIFT-WRAP"),
                    ("DESCRIPTION", "Presentinslagning"),
                    ("QUANTITY", "1"),
                    ("PRICE", "10.000"),
                    ("DISCOUNT", "10.00"),
                ]),
                // Inactive product: free text too; blank price = 0.
                line(&[("PRODID", "FRAKT"), ("DESCRIPTION", "Frakt"), ("PRICE", "")]),
                // VAT code 1: no VAT; blank quantity = 1, blank price = the product's.
                line(&[
                    ("PRODID", "TSHIRT-RED-M"),
                    ("DESCRIPTION", ""),
                    ("QUANTITY", ""),
                    ("PRICE", ""),
                    ("VATCODE", "1"),
                ]),
            ],
        ),
        (
            head(&[("ORDERID", "2"), ("EXTERNALID", "")]),
            vec![line(&[])],
        ),
    ]);
    let imported = import(&target(&db), &orders_of(&text)).expect("imported");
    let numbers: Vec<_> = imported
        .iter()
        .map(|i| (i.order_no, i.external_no.as_str(), i.customer_no))
        .collect();
    // The first order created customer 10000; the second matched it by name.
    assert_eq!(
        numbers,
        [(10000, "shop-se-1001", 10000), (10001, "2", 10000)]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT order_no::text, doc_type, customer_no::text, external_no, shop_id, status, currency, total::text, \
             (rv IS NOT NULL)::text, (order_date > localtimestamp - interval '1 day')::text FROM orders ORDER BY order_no"
        ),
        [
            [
                s("10000"),
                s("order"),
                s("10000"),
                s("shop-se-1001"),
                None,
                s("unprocessed"),
                s("SEK"),
                s("294.6000"),
                s("true"),
                s("true")
            ],
            [
                s("10001"),
                s("order"),
                s("10000"),
                s("2"),
                None,
                s("unprocessed"),
                s("SEK"),
                s("126.4000"),
                s("true"),
                s("true")
            ],
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT line_no::text, article_no, description, quantity::text, unit_price::text, discount::text, vat_rate::text \
             FROM order_lines WHERE order_no = 10000 ORDER BY line_no"
        ),
        [
            [
                s("1"),
                s("MUG-01"),
                s("Mugg"),
                s("2.0000"),
                s("63.2000"),
                s("0.0000"),
                s("25.00")
            ],
            [
                s("2"),
                None,
                s("Presentinslagning"),
                s("1.0000"),
                s("10.0000"),
                s("10.0000"),
                s("0.00")
            ],
            [
                s("3"),
                None,
                s("Frakt"),
                s("2.0000"),
                s("0.0000"),
                s("0.0000"),
                s("0.00")
            ],
            [
                s("4"),
                s("TSHIRT-RED-M"),
                s("T-shirt röd, M"),
                s("1.0000"),
                s("159.2000"),
                s("0.0000"),
                s("0.00")
            ],
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT customer_no::text, name, street, zip, city, country, ext_id, (rv IS NOT NULL)::text FROM customers"
        ),
        [[
            s("10000"),
            s("Anna Andersson"),
            s("Storgatan 1"),
            s("123 45"),
            s("Stockholm"),
            s("SE"),
            None,
            s("true")
        ]]
    );
    // The agent's watcher reads over TDS: the committed rows are below MIN_ACTIVE_ROWVERSION.
    let mut session = db.session();
    let seen = session
        .batch("SELECT order_no FROM orders WHERE rv > 0x0000000000000000 AND rv < MIN_ACTIVE_ROWVERSION() ORDER BY order_no")
        .expect("watcher query");
    assert_eq!(seen, [[PgValue::Int(10000)], [PgValue::Int(10001)]]);
    // Numbers go on from the highest.
    let again = import(&target(&db), &orders_of(&one())).expect("imported again");
    assert_eq!(again[0].order_no, 10002);
}

#[test]
fn customers_are_matched_in_the_documented_order() {
    let Some(db) = database("customers_are_matched_in_the_documented_order") else {
        return;
    };
    db.execute(
        "INSERT INTO customers (customer_no, name, ext_id) VALUES (500, N'Anna', NULL);
         INSERT INTO customers (customer_no, name, ext_id) VALUES (501, N'Bertil', N'777');
         INSERT INTO customers (customer_no, name, ext_id) VALUES (502, N'Anna', NULL);",
    );
    let case = |id: &str, contid: &str, name: &str| {
        (
            head(&[
                ("ORDERID", id),
                ("CONTID", contid),
                ("CONTNAME", name),
                ("EXTERNALID", ""),
                ("ADRINVO", "Ny väg 2:211 11 Malmö"),
            ]),
            vec![line(&[])],
        )
    };
    let text = xml(&[
        // 1. number + name.
        case("1", "502", "Anna"),
        // 1. number with a blank name.
        case("2", "501", ""),
        // 2. name (case-insensitive, trailing spaces ignored, the lowest number), even when the
        //    number is someone else's.
        case("3", "501", "anna "),
        case("4", "999", "Anna"),
        // 2. name with number 0.
        case("5", "0", "Bertil"),
        // 3. ExtID.
        case("6", "777", "Nobody Known"),
        // New: ExtID = the number, name, address.
        case("7", "888", "Cecilia"),
        // ...found again in the same file by its ExtID.
        case("8", "888", "Someone"),
        // New without a number: no ExtID; a blank name takes the address's first line.
        case("9", "0", "Dag"),
        case("10", "555", ""),
    ]);
    let imported = import(&target(&db), &orders_of(&text)).expect("imported");
    let customers: Vec<_> = imported
        .iter()
        .map(|i| (i.external_no.as_str(), i.customer_no))
        .collect();
    assert_eq!(
        customers,
        [
            ("1", 502),
            ("2", 501),
            ("3", 500),
            ("4", 500),
            ("5", 501),
            ("6", 501),
            ("7", 503),
            ("8", 503),
            ("9", 504),
            ("10", 505),
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT customer_no::text, name, street, zip, city, country, ext_id FROM customers WHERE customer_no > 502 ORDER BY customer_no"
        ),
        [
            [
                s("503"),
                s("Cecilia"),
                s("Ny väg 2"),
                s("211 11"),
                s("Malmö"),
                None,
                s("888")
            ],
            [
                s("504"),
                s("Dag"),
                s("Ny väg 2"),
                s("211 11"),
                s("Malmö"),
                None,
                None
            ],
            [
                s("505"),
                s("Ny väg 2"),
                s("Ny väg 2"),
                s("211 11"),
                s("Malmö"),
                None,
                s("555")
            ],
        ]
    );
    // Matched customers are not changed.
    assert_eq!(
        rows(
            &db,
            "SELECT customer_no::text, name, ext_id FROM customers WHERE customer_no <= 502 ORDER BY customer_no"
        ),
        [
            [s("500"), s("Anna"), None],
            [s("501"), s("Bertil"), s("777")],
            [s("502"), s("Anna"), None],
        ]
    );
}

#[test]
fn the_program_imports_a_file_and_a_failure_writes_nothing() {
    let Some(db) = database("the_program_imports_a_file_and_a_failure_writes_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("order.xml");
    let file = path.to_string_lossy().into_owned();
    let env = |extra: &[(&str, &str)]| {
        let mut vars = vec![
            (
                "MAMUT_IMPORT_SIM_POSTGRES_URL",
                db.config().postgres_url.as_str(),
            ),
            ("MAMUT_IMPORT_SIM_PG_SCHEMA", db.config().pg_schema.as_str()),
            ("MAMUT_IMPORT_SIM_CURRENCY", "NOK"),
        ];
        vars.extend_from_slice(extra);
        settings(&vars)
    };
    let argv = args(&["IO", "001", &file, "1", "1", ".F."]);
    // A bad second order: the first is not written either.
    let text = xml(&[
        (head(&[]), vec![line(&[])]),
        (
            head(&[("ORDERID", "2")]),
            vec![line(&[("DISCOUNT", "5,00")])],
        ),
    ]);
    std::fs::write(&path, latin1_bytes(&text)).expect("write");
    fails(
        run(&argv, env(&[])),
        1,
        "ORDER 2, ORDERLINE 1: <DISCOUNT> \"5,00\"",
    );
    assert!(rows(&db, "SELECT order_no::text FROM orders").is_empty());
    // A database failure (the table lock held by a Mamut user): nothing written, exit 2.
    std::fs::write(&path, latin1_bytes(&one())).expect("write");
    let mut user = db.session();
    user.batch("BEGIN TRAN; SELECT order_no FROM orders WITH (UPDLOCK, HOLDLOCK)")
        .expect("a Mamut user locks orders");
    fails(
        run(&argv, env(&[("MAMUT_IMPORT_SIM_LOCK_TIMEOUT_MS", "200")])),
        2,
        "cannot lock orders and customers",
    );
    user.batch("ROLLBACK").expect("rollback");
    assert!(rows(&db, "SELECT customer_no::text FROM customers").is_empty());
    let outcome = run(&argv, env(&[]));
    assert_eq!(
        outcome,
        Outcome {
            code: 0,
            stdout: vec!["imported order 10000 (external shop-se-1001) for customer 10000".into()],
            stderr: vec![],
        }
    );
    assert_eq!(rows(&db, "SELECT currency FROM orders"), [[s("NOK")]]);
    fails(
        run(
            &argv,
            settings(&[
                (
                    "MAMUT_IMPORT_SIM_POSTGRES_URL",
                    db.config().postgres_url.as_str(),
                ),
                ("MAMUT_IMPORT_SIM_PG_SCHEMA", "no_such_schema"),
            ]),
        ),
        2,
        "no Mamut tables",
    );
}

#[tokio::test]
async fn the_hooks_hold_the_transaction_where_the_watcher_cannot_see_it() {
    let Some(db) = database("the_hooks_hold_the_transaction_where_the_watcher_cannot_see_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let mut t = target(&db);
    t.started = Some(started.clone());
    t.delay = Duration::from_secs(2);
    let orders = orders_of(&one());
    let importing = tokio::task::spawn_blocking(move || import(&t, &orders));
    tests::eventually("the started file", Duration::from_secs(10), || {
        let exists = started.exists();
        async move { exists }
    })
    .await;
    let mut session = db.session();
    // Written but not committed: the head is there, below no MIN_ACTIVE_ROWVERSION yet.
    // The first rowversion of a transaction takes an advisory lock keyed by the schema.
    let key = tests::mamut_sim::catalog::schema_key(&db.config().pg_schema);
    let held = format!(
        "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND classid = {key}::oid AND objsubid = 2 AND granted"
    );
    tests::eventually("the order head written", Duration::from_secs(10), || {
        let n = rows(&db, &held);
        async move { n != [[s("0")]] }
    })
    .await;
    let seen = session
        .batch("SELECT order_no FROM orders WHERE rv < MIN_ACTIVE_ROWVERSION()")
        .expect("watcher query");
    assert!(seen.is_empty(), "{seen:?}");
    let imported = importing.await.expect("task").expect("imported");
    assert_eq!(imported[0].order_no, 10000);
    let seen = session
        .batch("SELECT order_no FROM orders WHERE rv < MIN_ACTIVE_ROWVERSION()")
        .expect("watcher query");
    assert_eq!(seen, [[PgValue::Int(10000)]]);
}
