//! `agent sql`: every statement the agent can send with a mapping and configuration, by name,
//! so an independent T-SQL parser can check them all.

use super::*;
use crate::mamut::settings::SqlServerConfig;
use crate::mamut::sqlserver::pool::{BEGIN, COMMIT, ROLLBACK};

/// A named statement for `agent sql`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub name: String,
    pub sql: String,
}

fn statement(name: impl Into<String>, sql: impl Into<String>) -> Statement {
    Statement {
        name: name.into(),
        sql: sql.into(),
    }
}

/// A number series for listing the `series` statements when none is configured.
pub(super) fn example_series(document: &str) -> Series {
    Series {
        table: "number_series".into(),
        key_column: "series".into(),
        key: document.into(),
        next_column: "next_no".into(),
        holds: Default::default(),
    }
}

/// Every statement the agent can send with this mapping and configuration: each numbering
/// mode for customers and orders (the configured series, or an example one), the writer, the
/// watcher, the product sync, the catalog and `agent check` queries.
pub fn statements(m: &Mapping, config: &SqlServerConfig) -> Vec<Statement> {
    let mut out = vec![
        statement(
            "session.lock_timeout",
            set_lock_timeout(config.lock_timeout_ms),
        ),
        statement("transaction.begin", BEGIN),
        statement("transaction.commit", COMMIT),
        statement("transaction.rollback", ROLLBACK),
        statement("order.find", find_order(m)),
        statement("import.find", find_imported(m)),
        statement("import.count_lines", count_lines(m)),
        statement("order.article_exists", article_exists(m)),
        statement(
            "order.insert_line",
            insert(&m.tables.order_lines, &line_columns(m), false),
        ),
    ];
    let c = &m.columns.customers;
    for column in [&c.customer_no, &c.email, &c.org_no] {
        out.push(statement(
            format!("customer.find_by_{column}"),
            find_customer(m, column),
        ));
    }
    for (document, table, column, configured) in [
        (
            "customer",
            &m.tables.customers,
            &c.customer_no,
            &config.customer_numbering,
        ),
        (
            "order",
            &m.tables.orders,
            &m.columns.orders.order_no,
            &config.order_numbering,
        ),
    ] {
        let series = match configured {
            Numbering::Series(series) => series.clone(),
            _ => example_series(document),
        };
        out.push(statement(
            format!("{document}.number.max_plus_one"),
            max_plus_one(table, column),
        ));
        out.push(statement(
            format!("{document}.number.series"),
            series_next(&series),
        ));
        let columns = |with_number| match document {
            "customer" => customer_columns(m, with_number),
            _ => order_columns(m, with_number),
        };
        out.push(statement(
            format!("{document}.insert"),
            insert(table, &columns(true), false),
        ));
        out.push(statement(
            format!("{document}.insert_identity"),
            insert(table, &columns(false), true),
        ));
    }
    out.extend([
        statement("watch.safe_mark", min_active_rowversion()),
        statement("watch.stock", changed_stock(m)),
        statement("watch.price", changed_prices(m)),
        statement("watch.price_list", changed_price_lists(m)),
        statement("watch.product", changed_products(m)),
        statement("watch.order_status", changed_orders(m)),
        statement("product.main", product_main(m)),
        statement("product.variants", product_variants(m)),
        statement("sync.product_page", product_page(m)),
        statement("sync.product_count", product_count(m)),
        statement("sync.product_for_write", product_for_write(m)),
        statement("sync.product_insert", product_insert(m)),
        statement("sync.product_update", product_update(m)),
        statement("catalog.columns", catalog_columns()),
        statement("catalog.index", catalog_index()),
        statement("check.read_committed_snapshot", read_committed_snapshot()),
    ]);
    for (table, columns) in m.tables_and_columns() {
        out.push(statement(
            format!("check.probe.{table}"),
            probe(table, &columns),
        ));
        for column in columns {
            out.push(statement(
                format!("check.probe.{table}.{column}"),
                probe(table, &[column]),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_listed_once_by_name() {
        let all = statements(&Mapping::default(), &SqlServerConfig::default());
        let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate names");
        for wanted in [
            "order.number.max_plus_one",
            "order.number.series",
            "order.insert_identity",
            "customer.insert",
            "watch.order_status",
            "catalog.columns",
            "catalog.index",
            "check.read_committed_snapshot",
            "sync.product_update",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing");
        }
        assert_eq!(
            product_update(&Mapping::default()),
            "UPDATE products SET name = @P2, description = @P3, vat_rate = @P4, active = @P5, \
             parent_article_no = @P6, dimension1 = @P7, dimension2 = @P8 WHERE article_no = @P1"
        );
    }
}
