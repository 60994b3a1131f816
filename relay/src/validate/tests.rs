//! Tests of order validation: each rule, the total's tolerance, and the held reason's text.

use chrono::Utc;
use shared::ArticleNumber;
use shared::domain::{Customer, CustomerType, OrderLine, Shipping};

use super::*;

fn dec(value: &str) -> Decimal {
    value.parse().expect("a decimal literal")
}

fn line(price: &str, quantity: u32, vat: &str) -> OrderLine {
    OrderLine {
        article_number: ArticleNumber::new("TSHIRT-RED-M").expect("article number"),
        name: "T-shirt".into(),
        quantity,
        unit_price: dec(price),
        vat_rate: dec(vat),
        discount: Decimal::ZERO,
    }
}

fn address() -> Address {
    Address {
        street: "Storgatan 1".into(),
        zip: "111 22".into(),
        city: "Stockholm".into(),
        country: "SE".into(),
    }
}

/// Two T-shirts at 199.00 and shipping at 49.00, VAT included: 447.00.
fn order() -> Order {
    Order {
        id: "1001".into(),
        number: "1001".into(),
        status: "paid".into(),
        created_at: Utc::now(),
        currency: "SEK".into(),
        prices_include_vat: true,
        customer: Customer {
            id: None,
            kind: CustomerType::Private,
            email: Some("anna@example.se".into()),
            first_name: Some("Anna".into()),
            last_name: Some("Svensson".into()),
            company_name: None,
            org_no: None,
            phone: None,
            customer_group: None,
            billing_address: address(),
            delivery_address: None,
        },
        lines: vec![line("199.00", 2, "25")],
        shipping: Some(Shipping {
            method: "postnord".into(),
            name: "PostNord".into(),
            price: dec("49.00"),
            vat_rate: dec("25"),
        }),
        payment: None,
        total: dec("447.00"),
    }
}

fn fields(order: &Order) -> Vec<String> {
    problems(order).into_iter().map(|p| p.field).collect()
}

#[test]
fn a_sound_order_has_no_problems() {
    assert_eq!(problems(&order()), vec![]);
    let mut net = order();
    net.prices_include_vat = false;
    net.lines = vec![line("159.20", 2, "25")];
    net.shipping.as_mut().expect("shipping").price = dec("39.20");
    // 318.40 + 79.60 VAT + 39.20 + 9.80 VAT
    net.total = dec("447.00");
    assert_eq!(problems(&net), vec![]);
}

#[test]
fn a_total_that_does_not_match_the_lines_is_named_with_both_amounts() {
    let mut order = order();
    order.total = dec("1.00");
    let found = problems(&order);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "order.total");
    assert!(found[0].problem.contains("447.00"), "{}", found[0].problem);
    // Rounding to whole kronor is within the tolerance.
    let mut rounded = self::order();
    rounded.total = dec("447.49");
    assert_eq!(problems(&rounded), vec![]);
}

#[test]
fn negative_totals_absurd_vat_long_currencies_and_e_mails_are_refused() {
    let mut order = order();
    order.total = dec("-447.00");
    assert_eq!(fields(&order), ["order.total"]);

    let mut order = self::order();
    order.lines[0].vat_rate = dec("1000");
    assert_eq!(fields(&order), ["order.lines[0].vat_rate"]);

    let mut order = self::order();
    order.currency = "SWEDISHKRONA".into();
    assert_eq!(fields(&order), ["order.currency"]);

    let mut order = self::order();
    order.customer.email = Some(format!("{}@example.se", "a".repeat(10_000)));
    let found = problems(&order);
    assert_eq!(found.len(), 1);
    assert!(found[0].problem.contains("10011 characters"), "{found:?}");
}

#[test]
fn lines_quantities_discounts_and_names_are_checked() {
    let mut order = order();
    order.lines.clear();
    // No lines; the total then does not matter.
    assert_eq!(fields(&order), ["order.lines"]);

    let mut order = self::order();
    order.lines[0].quantity = 0;
    assert_eq!(fields(&order), ["order.lines[0].quantity"]);

    let mut order = self::order();
    order.lines[0].discount = dec("500");
    assert_eq!(fields(&order), ["order.lines[0].discount"]);

    let mut order = self::order();
    order.customer.first_name = None;
    order.customer.last_name = Some(" ".into());
    assert_eq!(fields(&order), ["order.customer"]);

    let mut order = self::order();
    order.customer.billing_address.country = "Sverige".into();
    order.customer.billing_address.city = "Stock\u{0}holm".into();
    assert_eq!(
        fields(&order),
        [
            "order.customer.billing_address.city",
            "order.customer.billing_address.country"
        ]
    );
}

#[test]
fn huge_amounts_are_refused_without_overflowing() {
    let mut order = order();
    order.lines = vec![line("999999999", MAX_QUANTITY, "25"); 3];
    let found = problems(&order);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "order.total");
    let mut order = self::order();
    order.lines[0].unit_price = Decimal::MAX;
    assert_eq!(fields(&order), ["order.lines[0].unit_price"]);
}

#[test]
fn the_documented_example_order_is_sound() {
    let text = include_str!("../../../shared/tests/fixtures/order-webhook-full.json");
    let webhook: shared::domain::OrderWebhook =
        serde_json::from_str(text).expect("the example parses");
    assert_eq!(problems(&webhook.order), vec![]);
}

#[test]
fn a_wrong_total_is_reported_beside_text_problems_but_not_beside_wrong_amounts() {
    let mut order = order();
    order.total = dec("1.00");
    order.currency = "SWEDISHKRONA".into();
    assert_eq!(fields(&order), ["order.currency", "order.total"]);
    order.lines[0].vat_rate = dec("1000");
    assert_eq!(
        fields(&order),
        ["order.currency", "order.lines[0].vat_rate"]
    );
}

#[test]
fn a_credit_line_may_be_negative() {
    let mut order = order();
    order.lines.push(line("-100.00", 1, "25"));
    order.total = dec("347.00");
    assert_eq!(problems(&order), vec![]);
}

#[test]
fn the_description_names_the_first_twenty_problems_and_counts_the_rest() {
    let mut order = order();
    order.lines = vec![line("1.00", 0, "25"); 50];
    let found = problems(&order);
    assert_eq!(found.len(), 50);
    let text = describe(&found);
    assert!(text.contains("order.lines[19].quantity"), "{text}");
    assert!(!text.contains("order.lines[20].quantity"), "{text}");
    assert!(
        text.ends_with("and 30 more (the event's payload view lists them all)"),
        "{text}"
    );
}

#[test]
fn the_description_lists_every_problem() {
    let mut order = order();
    order.currency = "kr".into();
    order.lines[0].vat_rate = dec("-1");
    let text = describe(&problems(&order));
    assert!(text.starts_with("held, the order is invalid: "), "{text}");
    assert!(text.contains("order.currency: \"kr\""), "{text}");
    assert!(text.contains("order.lines[0].vat_rate: -1 %"), "{text}");
}
