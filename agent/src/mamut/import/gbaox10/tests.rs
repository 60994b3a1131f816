//! The writer against the documented field table: its constants, and every file it produces.
//!
//! One file although long: every test reads the files the writer produces back with the same
//! XML reader and checks them against the same documented field table.

use quick_xml::Reader;
use quick_xml::events::Event;
use rust_decimal::Decimal;
use shared::domain::Order;

use super::documented::{Row, Table, table};
use super::*;

fn order() -> Order {
    let webhook: shared::domain::OrderWebhook = serde_json::from_str(include_str!(
        "../../../../../shared/tests/fixtures/order-webhook-full.json"
    ))
    .expect("fixture");
    webhook.order
}

fn config() -> ImportConfig {
    ImportConfig {
        program: "ImportExport.exe".into(),
        shop_id: Some("demo-se".to_owned()),
        ..ImportConfig::default()
    }
}

/// The elements of a produced file: (path, text) in document order, decoded as ISO-8859-1.
fn elements(bytes: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let declaration = text.lines().next().unwrap_or_default().to_owned();
    let mut reader = Reader::from_str(&text);
    let mut path: Vec<String> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(e.name().as_ref().to_owned());
                out.push((path.join("/"), String::new()));
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                // Entities arrive as their own events (below).
                let value = t.into_inner();
                if let Some(last) = out.last_mut()
                    && last.0 == path.join("/")
                {
                    last.1.push_str(&value);
                } else if !value.trim().is_empty() {
                    return Err(format!("text {value:?} outside a field"));
                }
            }
            Event::GeneralRef(r) => {
                let name = r.as_ref().to_owned();
                let ch = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(format!("unknown entity {other}")),
                };
                if let Some(last) = out.last_mut() {
                    last.1.push_str(ch);
                }
            }
            Event::Empty(e) => {
                return Err(format!(
                    "<{}/>: every field is written with a start and an end tag",
                    e.name().as_ref()
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((declaration, out))
}

/// Checks one value against its documented row.
fn check_value(row: &Row, value: &str, at: &str) -> Result<(), String> {
    let tag = row.tag.as_deref().unwrap_or("?");
    if let Some(max) = row.max_len
        && value.chars().count() > max
    {
        return Err(format!("{at} {tag}: {value:?} is longer than {max}"));
    }
    if row.usage.as_deref() != Some("import") && !value.is_empty() {
        return Err(format!(
            "{at} {tag}: {value:?} in a field that is not imported"
        ));
    }
    if row.required == "yes" && value.is_empty() {
        return Err(format!("{at} {tag}: required and empty"));
    }
    if value.is_empty() {
        return Ok(());
    }
    match row.kind.as_deref() {
        Some("numeric") => {
            let decimals = row.decimals.unwrap_or(0) as usize;
            let (int, frac) = value.split_once('.').unwrap_or((value, ""));
            let ok = !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && frac.len() <= decimals
                && (decimals > 0 || !value.contains('.'));
            if !ok {
                return Err(format!(
                    "{at} {tag}: {value:?} is not a number with at most {decimals} decimals"
                ));
            }
        }
        Some("date")
            if chrono::NaiveDate::parse_from_str(value, "%Y%m%d").is_err() || value.len() != 8 =>
        {
            return Err(format!("{at} {tag}: {value:?} is not YYYYMMDD"));
        }
        _ => {}
    }
    Ok(())
}

/// Validates a produced file against the documented table: declaration, nesting, every tag of
/// every element present, in order and upper case, every value within its row.
fn validate(bytes: &[u8], table: &Table) -> Result<(), String> {
    let (declaration, elements) = elements(bytes)?;
    if declaration != table.format.declaration {
        return Err(format!("declaration {declaration:?}"));
    }
    let order_path = &table.format.order_path;
    let line_path = &table.format.line_path;
    let documented =
        |rows: &[Row]| -> Vec<String> { rows.iter().filter_map(|r| r.tag.clone()).collect() };
    let (order_tags, line_tags) = (documented(&table.order), documented(&table.line));
    let mut i = 0;
    let mut orders = 0;
    while i < elements.len() {
        let (path, _) = &elements[i];
        if path.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(format!("{path}: tags are upper case"));
        }
        let (rows, tags) = if path == order_path {
            orders += 1;
            (&table.order, &order_tags)
        } else if path == line_path {
            (&table.line, &line_tags)
        } else {
            let container = [
                table.format.root.clone(),
                format!("{}/ORDERLIST", table.format.root),
                line_path
                    .rsplit_once('/')
                    .map(|(p, _)| p.to_owned())
                    .unwrap_or_default(),
            ];
            if !container.contains(path) {
                return Err(format!("unexpected element {path}"));
            }
            i += 1;
            continue;
        };
        let fields: Vec<&(String, String)> = elements[i + 1..]
            .iter()
            .take_while(|(p, _)| p.starts_with(&format!("{path}/")))
            .collect();
        let names: Vec<String> = fields
            .iter()
            .map(|(p, _)| p[path.len() + 1..].to_owned())
            .collect();
        if &names != tags {
            return Err(format!("{path} has {names:?}, documented {tags:?}"));
        }
        for ((_, value), row) in fields.iter().zip(rows.iter().filter(|r| r.tag.is_some())) {
            check_value(row, value, path)?;
        }
        i += 1 + fields.len();
    }
    if orders == 0 {
        return Err("no order".to_owned());
    }
    Ok(())
}

fn value<'a>(elements: &'a [(String, String)], path: &str, nth: usize) -> &'a str {
    elements
        .iter()
        .filter(|(p, _)| p == path)
        .nth(nth)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {path} #{nth}"))
}

const ORDER: &str = "GBAOX10/ORDERLIST/ORDER";
const LINE: &str = "GBAOX10/ORDERLIST/ORDERLINES/ORDERLINE";

#[test]
fn the_writers_fields_are_the_documented_ones_in_the_documented_order() {
    let table = table();
    assert_eq!(table.format.decimal_separator, ".");
    assert_eq!(table.format.address_line_break, ":");
    assert_eq!(
        table.format.declaration,
        format!("<?xml version=\"1.0\" encoding=\"{DECLARATION_ENCODING}\"?>")
    );
    for (ours, rows) in [(ORDER_FIELDS, &table.order), (LINE_FIELDS, &table.line)] {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.tag.is_some()).collect();
        assert_eq!(ours.len(), rows.len(), "one field per documented tag");
        for (spec, row) in ours.iter().zip(rows) {
            assert_eq!(Some(spec.tag), row.tag.as_deref());
            assert_eq!(spec.max_len, row.max_len, "{}", spec.tag);
            let kind = match row.usage.as_deref() {
                Some("import") => match (row.kind.as_deref(), row.decimals) {
                    (Some("text"), _) => Kind::Text,
                    (Some("numeric"), d) => Kind::Numeric(d.unwrap_or(0)),
                    (Some("date"), _) => Kind::Date,
                    other => panic!("{}: type {other:?}", spec.tag),
                },
                _ => Kind::Empty,
            };
            assert_eq!(spec.kind, kind, "{}", spec.tag);
        }
    }
    for tag in TEXT_TAGS {
        let (element, tag) = tag.split_once('.').expect("ELEMENT.TAG");
        let fields = if element == "ORDER" {
            ORDER_FIELDS
        } else {
            LINE_FIELDS
        };
        let spec = fields.iter().find(|s| s.tag == tag).expect("a field");
        assert_eq!(spec.kind, Kind::Text, "{tag}");
    }
}

#[test]
fn a_swedish_order_becomes_a_documented_gbaox10_file_in_iso_8859_1() {
    let doc = document(&order(), "100234", &config()).expect("written");
    validate(&doc.bytes, &table()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        doc.notes.is_empty(),
        "12.66 % of 79.00 is 10.00: {:?}",
        doc.notes
    );
    assert_eq!(doc.lines, 3, "two lines and shipping");
    // "Göteborg" and "röd": one byte each, as ISO-8859-1 has them.
    let raw = &doc.bytes;
    assert!(raw.windows(8).any(|w| w == b"G\xF6teborg"), "ö is 0xF6");
    assert!(raw.windows(4).any(|w| w == b"r\xF6d,"));
    assert!(std::str::from_utf8(raw).is_err(), "not UTF-8");

    let (_, e) = elements(raw).expect("parses");
    assert_eq!(value(&e, &format!("{ORDER}/ORDERID"), 0), "100234");
    assert_eq!(
        value(&e, &format!("{ORDER}/CONTID"), 0),
        "0",
        "C-5512 is no number"
    );
    assert_eq!(value(&e, &format!("{ORDER}/CONTNAME"), 0), "Anna Svensson");
    assert_eq!(
        value(&e, &format!("{ORDER}/ADRINVO"), 0),
        "Storgatan 1:411 01 Göteborg:SE"
    );
    assert_eq!(value(&e, &format!("{ORDER}/DATA15"), 0), "1");
    assert_eq!(value(&e, &format!("{ORDER}/TEXT"), 0), "klarna kl-8f3a2c");
    assert_eq!(value(&e, &format!("{ORDER}/EXTERNALID"), 0), "100234");
    // Prices include VAT in the shop: 199.00 / 1.25 = 159.2 without.
    assert_eq!(value(&e, &format!("{LINE}/PRODID"), 0), "TSHIRT-RED-M");
    assert_eq!(value(&e, &format!("{LINE}/QUANTITY"), 0), "2.00");
    assert_eq!(value(&e, &format!("{LINE}/PRICE"), 0), "159.200");
    assert_eq!(value(&e, &format!("{LINE}/VATCODE"), 0), "0");
    // 10.00 off 79.00: 12.66 %.
    assert_eq!(value(&e, &format!("{LINE}/DISCOUNT"), 1), "12.66");
    // Shipping without a shipping article: a free-text line.
    assert_eq!(value(&e, &format!("{LINE}/PRODID"), 2), "");
    assert_eq!(
        value(&e, &format!("{LINE}/DESCRIPTION"), 2),
        "PostNord Ombud"
    );
    assert_eq!(value(&e, &format!("{LINE}/PRICE"), 2), "39.200");
}

#[test]
fn mapped_codes_and_settings_reach_their_tags() {
    let mut config = config();
    config.payment_terms.insert("klarna".to_owned(), 3);
    config.delivery_types.insert("postnord-ombud".to_owned(), 7);
    config.vat_codes.insert("25".to_owned(), 31);
    config.department = 4;
    config.project = Some(120);
    config.employee = Some(2);
    config.warehouse = Some(1);
    config.shipping_article = Some("FRAKT".to_owned());
    let mut order = order();
    order.customer.id = Some("5512".to_owned());
    order.customer.company_name = Some("Svensson & Dotter AB".to_owned());
    let doc = document(&order, "100234", &config).expect("written");
    validate(&doc.bytes, &table()).unwrap_or_else(|e| panic!("{e}"));
    let (_, e) = elements(&doc.bytes).expect("parses");
    for (tag, expect) in [
        ("CONTID", "5512"),
        ("CONTNAME", "Svensson & Dotter AB"),
        ("YOURREF", "Anna Svensson"),
        ("DATA4", "3"),
        ("DATA2", "7"),
        ("DATA15", "4"),
        ("DATA14", "120"),
        ("EMPID", "2"),
    ] {
        assert_eq!(value(&e, &format!("{ORDER}/{tag}"), 0), expect, "{tag}");
    }
    assert_eq!(value(&e, &format!("{LINE}/VATCODE"), 0), "31");
    assert_eq!(value(&e, &format!("{LINE}/STOREID"), 0), "1");
    assert_eq!(value(&e, &format!("{LINE}/PRODID"), 2), "FRAKT");
    let text = String::from_utf8_lossy(&doc.bytes);
    assert!(text.contains("Svensson &amp; Dotter AB"), "escaped: {text}");
}

#[test]
fn characters_outside_iso_8859_1_are_replaced_and_reported() {
    let mut order = order();
    order.lines[0].name = "Mugg \u{201C}Fika\u{201D} \u{2013} 5 \u{20AC} \u{1F600}".to_owned();
    order.customer.billing_address.street = "Gata: 1\nLägenhet 2".to_owned();
    let doc = document(&order, "100234", &config()).expect("written");
    validate(&doc.bytes, &table()).unwrap_or_else(|e| panic!("{e}"));
    let (_, e) = elements(&doc.bytes).expect("parses");
    assert_eq!(
        value(&e, &format!("{LINE}/DESCRIPTION"), 0),
        "Mugg \"Fika\" - 5 EUR ?"
    );
    assert_eq!(
        value(&e, &format!("{ORDER}/ADRINVO"), 0),
        "Gata  1:Lägenhet 2:411 01 Göteborg:SE",
        "a colon in a value is no line break; a line break is"
    );
    assert_eq!(doc.notes.len(), 1, "{:?}", doc.notes);
    let note = &doc.notes[0];
    assert!(
        note.contains("line 1")
            && note.contains("ORDERLINE.DESCRIPTION")
            && note.contains("U+1F600"),
        "{note}"
    );
}

#[test]
fn a_text_longer_than_documented_is_refused_or_cut_as_configured_and_keys_never_cut() {
    let mut order = order();
    order.customer.first_name = Some("A".repeat(60));
    let e = document(&order, "100234", &config()).unwrap_err();
    assert!(
        e.0.contains("customer name is 69 characters, Mamut's import allows 50 (ORDER.CONTNAME)"),
        "{e}"
    );

    let mut cut = config();
    cut.on_too_long_fields
        .insert("ORDER.CONTNAME".to_owned(), TooLong::Truncate);
    cut.on_too_long_fields
        .insert("ORDER.YOURREF".to_owned(), TooLong::Truncate);
    let doc = document(&order, "100234", &cut).expect("cut");
    validate(&doc.bytes, &table()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        doc.notes[0].contains("cut from 69 to 50"),
        "{:?}",
        doc.notes
    );

    let mut all = config();
    all.on_too_long = TooLong::Truncate;
    let mut long_article = self::order();
    long_article.lines[0].article_number =
        shared::ArticleNumber::new("X".repeat(51)).expect("article number");
    let e = document(&long_article, "100234", &all).unwrap_err();
    assert!(
        e.0.contains("product number is 51") && e.0.contains("never cut"),
        "{e}"
    );
    let e = document(&self::order(), &"9".repeat(31), &all).unwrap_err();
    assert!(e.0.contains("external order number is 31"), "{e}");
}

#[test]
fn orders_the_format_cannot_carry_are_refused_with_the_reason() {
    let mut eur = order();
    eur.currency = "EUR".to_owned();
    let e = document(&eur, "1", &config()).unwrap_err();
    assert!(
        e.0.contains("in EUR") && e.0.contains("mamut.import.currency"),
        "{e}"
    );

    let mut huge = order();
    huge.lines[0].quantity = u32::MAX;
    huge.lines[0].unit_price = Decimal::new(1_000_000_000, 0);
    let e = document(&huge, "1", &config()).unwrap_err();
    assert!(
        e.0.contains("quantity is 13 characters, Mamut's import allows 12"),
        "{e}"
    );

    let mut credit = order();
    credit.lines[0].unit_price = Decimal::new(-5, 0);
    let e = document(&credit, "1", &config()).unwrap_err();
    assert!(e.0.contains("line 1: price is negative"), "{e}");

    let mut empty = order();
    empty.lines.clear();
    empty.shipping = None;
    assert!(
        document(&empty, "1", &config())
            .unwrap_err()
            .0
            .contains("no lines")
    );
}

#[test]
fn a_shop_order_id_that_is_no_short_number_leaves_orderid_at_one() {
    let mut order = order();
    order.id = "gid://shopify/Order/5512".to_owned();
    let doc = document(&order, "shop:5512", &config()).expect("written");
    let (_, e) = elements(&doc.bytes).expect("parses");
    assert_eq!(value(&e, &format!("{ORDER}/ORDERID"), 0), "1");
    order.id = "1234567890".to_owned();
    let doc = document(&order, "1234567890", &config()).expect("written");
    let (_, e) = elements(&doc.bytes).expect("parses");
    assert_eq!(value(&e, &format!("{ORDER}/ORDERID"), 0), "1", "10 digits");
}

#[test]
fn tags_can_be_renamed_and_added_for_an_installation_that_names_them_otherwise() {
    let mut config = config();
    config
        .tags
        .insert("ORDER.EXTERNALID".to_owned(), "EXTORDERNO".to_owned());
    config
        .tags
        .insert("ORDERLINE.QUANTITY".to_owned(), "QTY".to_owned());
    config.extra_order_tags = vec!["DATA99".to_owned()];
    config.extra_line_tags = vec!["UNIT".to_owned()];
    config.validate().expect("valid");
    let doc = document(&order(), "100234", &config).expect("written");
    let (_, e) = elements(&doc.bytes).expect("parses");
    assert_eq!(value(&e, &format!("{ORDER}/EXTORDERNO"), 0), "100234");
    assert_eq!(value(&e, &format!("{ORDER}/DATA99"), 0), "");
    assert_eq!(value(&e, &format!("{LINE}/QTY"), 1), "1.00");
    assert_eq!(value(&e, &format!("{LINE}/UNIT"), 2), "");
    assert!(!e.iter().any(|(p, _)| p.ends_with("/EXTERNALID")));

    let all: Vec<String> = ORDER_FIELDS
        .iter()
        .map(|s| format!("ORDER.{}", s.tag))
        .chain(LINE_FIELDS.iter().map(|s| format!("ORDERLINE.{}", s.tag)))
        .collect();
    assert_eq!(all, ALL_TAGS, "ALL_TAGS lists every field");

    for (key, tag, expect) in [
        ("ORDER.NOPE", "X", "not a field"),
        ("ORDER.REF", "lower", "not a tag name"),
    ] {
        let mut bad = self::config();
        bad.tags.insert(key.to_owned(), tag.to_owned());
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(expect) && e.contains("mamut.import.tags"), "{e}");
    }
    let mut bad = self::config();
    bad.extra_line_tags = vec!["<X>".to_owned()];
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("extra_line_tags")
    );
}

#[test]
fn a_discount_the_percentage_cannot_carry_to_the_cent_is_reported() {
    let mut order = order();
    order.lines[0].quantity = 1;
    order.lines[0].unit_price = Decimal::new(123456, 2);
    order.lines[0].discount = Decimal::new(1, 2);
    let doc = document(&order, "100234", &config()).expect("written");
    assert_eq!(
        doc.notes,
        [
            "line 1: the discount of 0.01 is sent as 0.00 % (the format's 2 decimals), which \
          Mamut computes as 0.00"
        ]
    );
}

#[test]
fn keys_that_would_not_arrive_as_they_are_and_impossible_vat_rates_are_refused() {
    let mut order = order();
    order.lines[0].article_number =
        shared::ArticleNumber::new("MUG\u{2013}01").expect("article number");
    let e = document(&order, "100234", &config()).unwrap_err();
    assert!(
        e.0.contains("product number") && e.0.contains("U+2013"),
        "{e}"
    );
    let e = document(&self::order(), "web\u{1F600}1", &config()).unwrap_err();
    assert!(e.0.contains("external order number"), "{e}");

    let mut vat = self::order();
    vat.lines[1].vat_rate = Decimal::new(-100, 0);
    let e = document(&vat, "1", &config()).unwrap_err();
    assert!(e.0.contains("line 2: the VAT rate -100 %"), "{e}");

    let mut tabs = self::order();
    tabs.lines[0].name = "T-shirt\tröd".to_owned();
    let doc = document(&tabs, "1", &config()).expect("written");
    assert!(
        doc.notes.is_empty(),
        "a tab is a space, not a replaced character: {:?}",
        doc.notes
    );
}
