//! The text of every SQL statement the agent sends to Mamut, built from the mapping and the
//! configuration. The writer, the watcher, the product sync and `agent check` use these
//! functions, and `agent sql` prints them all ([`statements`], in `listing`) for an
//! independent T-SQL parser.

mod listing;

pub use self::listing::{Statement, statements};
use crate::mamut::mapping::Mapping;
use crate::mamut::settings::{Numbering, Series};

/// `SET LOCK_TIMEOUT`, sent once on every new connection.
pub fn set_lock_timeout(ms: u32) -> String {
    format!("SET LOCK_TIMEOUT {ms}")
}

/// `INSERT INTO table (columns) VALUES (@P1, ...)`; with `read_identity` followed by
/// `; SELECT SCOPE_IDENTITY()` in the same call, so the number the database assigned comes back.
pub fn insert(table: &str, columns: &[&str], read_identity: bool) -> String {
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("@P{i}")).collect();
    let mut sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        params.join(", ")
    );
    if read_identity {
        sql.push_str("; SELECT SCOPE_IDENTITY()");
    }
    sql
}

/// The next number as one above the highest (`@P1` is the first number of an empty table).
pub fn max_plus_one(table: &str, column: &str) -> String {
    format!("SELECT ISNULL(MAX({column}), @P1 - 1) + 1 FROM {table} WITH (UPDLOCK, HOLDLOCK)")
}

/// Advances a number series row (`@P1` is the series key) and reads it back in the same call;
/// the row stays locked until the transaction ends. No `OUTPUT` clause: SQL Server refuses one
/// without `INTO` on a table with triggers (error 334), which Mamut's tables may have.
pub fn series_next(series: &Series) -> String {
    format!(
        "UPDATE {t} SET {n} = {n} + 1 WHERE {k} = @P1; SELECT {n} FROM {t} WHERE {k} = @P1",
        t = series.table,
        n = series.next_column,
        k = series.key_column
    )
}

/// The number-fetching statement of a numbering mode, if it has one.
pub fn next_number(numbering: &Numbering, table: &str, column: &str) -> Option<String> {
    match numbering {
        Numbering::MaxPlusOne => Some(max_plus_one(table, column)),
        Numbering::Identity => None,
        Numbering::Series(series) => Some(series_next(series)),
    }
}

/// The order already written for a shop order id (`@P1` shop, `@P2` shop order id), locked.
pub fn find_order(m: &Mapping) -> String {
    let c = &m.columns.orders;
    format!(
        "SELECT {no} FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {shop} = @P1 AND {ext} = @P2",
        no = c.order_no,
        t = m.tables.orders,
        shop = c.shop_id,
        ext = c.external_no
    )
}

/// The orders Mamut's import made for an external order number (`@P1`), oldest first, with
/// the number as stored (the comparison follows the column's collation: the caller compares
/// exactly).
pub fn find_imported(m: &Mapping) -> String {
    let c = &m.columns.orders;
    format!(
        "SELECT {no}, {ext} FROM {t} WHERE {ext} = @P1 ORDER BY {no}",
        no = c.order_no,
        t = m.tables.orders,
        ext = c.external_no
    )
}

/// How many lines an order (`@P1`) has.
pub fn count_lines(m: &Mapping) -> String {
    format!(
        "SELECT COUNT(*) FROM {t} WHERE {no} = @P1",
        t = m.tables.order_lines,
        no = m.columns.order_lines.order_no
    )
}

/// A customer by one matching column (`@P1` the value, typed as the column), locked so that two
/// orders of one new customer do not both create it. The column itself is compared, so an
/// index on it is used.
pub fn find_customer(m: &Mapping, column: &str) -> String {
    format!(
        "SELECT TOP (1) {no} FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {column} = @P1 ORDER BY {no}",
        no = m.columns.customers.customer_no,
        t = m.tables.customers
    )
}

/// The columns of a new customer, in parameter order; the number first unless the database
/// assigns it.
pub fn customer_columns(m: &Mapping, with_number: bool) -> Vec<&str> {
    let c = &m.columns.customers;
    let mut columns = if with_number {
        vec![c.customer_no.as_str()]
    } else {
        Vec::new()
    };
    columns.extend([
        c.name.as_str(),
        &c.email,
        &c.org_no,
        &c.phone,
        &c.street,
        &c.zip,
        &c.city,
        &c.country,
    ]);
    columns
}

/// The columns of a new order, in parameter order; the number first unless the database
/// assigns it.
pub fn order_columns(m: &Mapping, with_number: bool) -> Vec<&str> {
    let c = &m.columns.orders;
    let mut columns = if with_number {
        vec![c.order_no.as_str()]
    } else {
        Vec::new()
    };
    columns.extend([
        c.doc_type.as_str(),
        &c.customer_no,
        &c.external_no,
        &c.shop_id,
        &c.status,
        &c.order_date,
        &c.currency,
        &c.payment_method,
        &c.payment_ref,
        &c.total,
    ]);
    columns
}

/// The columns of an order line, in parameter order.
pub fn line_columns(m: &Mapping) -> Vec<&str> {
    let c = &m.columns.order_lines;
    vec![
        &c.order_no,
        &c.line_no,
        &c.article_no,
        &c.description,
        &c.quantity,
        &c.unit_price,
        &c.discount,
        &c.vat_rate,
    ]
}

/// Whether an article exists (`@P1` the article number).
pub fn article_exists(m: &Mapping) -> String {
    format!(
        "SELECT COUNT(*) FROM {t} WHERE {a} = @P1",
        t = m.tables.products,
        a = m.columns.products.article_no
    )
}

/// The watcher's safe mark, read before each kind's rows: every rowversion below it belongs
/// to a transaction that committed or rolled back.
pub fn min_active_rowversion() -> &'static str {
    "SELECT MIN_ACTIVE_ROWVERSION()"
}

/// Rows of one watched table changed past the cursor (`@P1`, binary(8)), at most `@P2`, oldest
/// first, the rowversion last. No upper bound: rows of transactions still open are not
/// visible yet, and the watcher keeps its saved cursor below the safe mark.
fn changed(table: &str, columns: &[&str], rv: &str) -> String {
    format!(
        "SELECT TOP (@P2) {}, {rv} FROM {table} WHERE {rv} > @P1 ORDER BY {rv}",
        columns.join(", ")
    )
}

pub fn changed_stock(m: &Mapping) -> String {
    let c = &m.columns.stock;
    changed(
        &m.tables.stock,
        &[&c.article_no, &c.warehouse, &c.quantity],
        &c.rv,
    )
}

pub fn changed_prices(m: &Mapping) -> String {
    let c = &m.columns.products;
    changed(&m.tables.products, &[&c.article_no, &c.price], &c.rv)
}

pub fn changed_price_lists(m: &Mapping) -> String {
    let c = &m.columns.price_list_prices;
    changed(
        &m.tables.price_list_prices,
        &[&c.price_list, &c.article_no, &c.currency, &c.price],
        &c.rv,
    )
}

pub fn changed_products(m: &Mapping) -> String {
    let c = &m.columns.products;
    changed(
        &m.tables.products,
        &[&c.article_no, &c.parent_article_no],
        &c.rv,
    )
}

pub fn changed_orders(m: &Mapping) -> String {
    let c = &m.columns.orders;
    changed(
        &m.tables.orders,
        &[
            &c.order_no,
            &c.shop_id,
            &c.external_no,
            &c.status,
            &c.tracking_no,
        ],
        &c.rv,
    )
}

/// A main product's own fields (`@P1` the article number).
pub fn product_main(m: &Mapping) -> String {
    let c = &m.columns.products;
    format!(
        "SELECT {name}, {desc}, {vat}, {active} FROM {t} WHERE {a} = @P1",
        name = c.name,
        desc = c.description,
        vat = c.vat_rate,
        active = c.active,
        a = c.article_no,
        t = m.tables.products
    )
}

/// A main product's variants (`@P1` the main article number).
pub fn product_variants(m: &Mapping) -> String {
    let c = &m.columns.products;
    format!(
        "SELECT {a}, {d1}, {d2} FROM {t} WHERE {parent} = @P1 ORDER BY {a}",
        a = c.article_no,
        d1 = c.dimension1,
        d2 = c.dimension2,
        parent = c.parent_article_no,
        t = m.tables.products
    )
}

/// Main products after an article number (`@P1`), at most `@P2`.
pub fn product_page(m: &Mapping) -> String {
    let c = &m.columns.products;
    format!(
        "SELECT TOP (@P2) {a} FROM {t} WHERE {parent} IS NULL AND {a} > @P1 ORDER BY {a}",
        a = c.article_no,
        parent = c.parent_article_no,
        t = m.tables.products
    )
}

pub fn product_count(m: &Mapping) -> String {
    format!(
        "SELECT COUNT(*) FROM {t} WHERE {parent} IS NULL",
        t = m.tables.products,
        parent = m.columns.products.parent_article_no
    )
}

/// The product columns the sync compares and writes, after the article number.
pub fn product_columns(m: &Mapping) -> Vec<&str> {
    let c = &m.columns.products;
    vec![
        &c.name,
        &c.description,
        &c.vat_rate,
        &c.active,
        &c.parent_article_no,
        &c.dimension1,
        &c.dimension2,
    ]
}

/// A product row as the sync compares it, locked (`@P1` the article number).
pub fn product_for_write(m: &Mapping) -> String {
    format!(
        "SELECT {} FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {a} = @P1",
        product_columns(m).join(", "),
        t = m.tables.products,
        a = m.columns.products.article_no
    )
}

/// A new product (`@P1` article number, `@P2`.. the [`product_columns`]), base price 0.
pub fn product_insert(m: &Mapping) -> String {
    let c = &m.columns.products;
    let columns = product_columns(m);
    let params: Vec<String> = (2..=columns.len() + 1).map(|i| format!("@P{i}")).collect();
    format!(
        "INSERT INTO {t} ({a}, {}, {price}) VALUES (@P1, {}, 0)",
        columns.join(", "),
        params.join(", "),
        t = m.tables.products,
        a = c.article_no,
        price = c.price
    )
}

/// A product's fields updated (`@P1` article number, `@P2`.. the [`product_columns`]).
pub fn product_update(m: &Mapping) -> String {
    let sets: Vec<String> = product_columns(m)
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = @P{}", i + 2))
        .collect();
    format!(
        "UPDATE {t} SET {} WHERE {a} = @P1",
        sets.join(", "),
        t = m.tables.products,
        a = m.columns.products.article_no
    )
}

/// The columns of a table, with SQL Server's catalog answer types (`@P1` the table name).
pub fn catalog_columns() -> &'static str {
    "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE, COLUMN_DEFAULT, COLUMNPROPERTY(OBJECT_ID(TABLE_SCHEMA + '.' + TABLE_NAME), COLUMN_NAME, 'IsIdentity') FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = @P1 ORDER BY ORDINAL_POSITION"
}

/// How many indexes of table `@P1` have column `@P2` as their first key column.
pub fn catalog_index() -> &'static str {
    "SELECT COUNT(*) FROM sys.indexes i JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id WHERE i.object_id = OBJECT_ID(@P1) AND ic.key_ordinal = 1 AND c.name = @P2"
}

/// `agent check`: whether the current database reads with row versions
/// (`READ_COMMITTED_SNAPSHOT ON`); a `bit`. The connected database's row is visible to every
/// login.
pub fn read_committed_snapshot() -> &'static str {
    "SELECT is_read_committed_snapshot_on FROM sys.databases WHERE name = DB_NAME()"
}

/// `agent check`: selects the given columns of a table without reading a row.
pub fn probe(table: &str, columns: &[&str]) -> String {
    format!("SELECT TOP (0) {} FROM {table}", columns.join(", "))
}

#[cfg(test)]
mod tests {
    use super::listing::example_series;
    use super::*;

    #[test]
    fn the_watcher_compares_the_rowversion_itself_and_reads_the_safe_mark_on_its_own() {
        let sql = changed_stock(&Mapping::default());
        assert_eq!(
            sql,
            "SELECT TOP (@P2) article_no, warehouse, quantity, rv FROM stock \
             WHERE rv > @P1 ORDER BY rv"
        );
        assert!(!sql.contains("CAST"));
        assert!(
            !sql.contains("MIN_ACTIVE_ROWVERSION"),
            "an open transaction would hold back every change"
        );
        assert_eq!(min_active_rowversion(), "SELECT MIN_ACTIVE_ROWVERSION()");
    }

    #[test]
    fn identity_inserts_leave_the_number_out_and_read_it_back() {
        let m = Mapping::default();
        let sql = insert(&m.tables.orders, &order_columns(&m, false), true);
        assert!(sql.starts_with("INSERT INTO orders (doc_type, "), "{sql}");
        assert!(sql.ends_with("VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10); SELECT SCOPE_IDENTITY()"), "{sql}");
        assert_eq!(
            series_next(&example_series("order")),
            "UPDATE number_series SET next_no = next_no + 1 WHERE series = @P1; \
             SELECT next_no FROM number_series WHERE series = @P1"
        );
    }
}
