//! A Mamut database for end-to-end tests: the TDS stand-in serving the reference schema on a
//! PostgreSQL schema of its own, with a few products, SQL read-back of what the agent wrote,
//! and extra T-SQL sessions for tests that hold locks as a Mamut user would.

use std::net::SocketAddr;

use crate::mamut_sim::exec::{Session, drop_schema, off_runtime};
use crate::mamut_sim::types::PgValue;
use crate::mamut_sim::{MamutSim, SimConfig, WireConfig, default_postgres_url, run_batch};

const SCHEMA: &str = include_str!("../../../deploy/mamut/schema.sql");
const PRODUCTS: &str = "
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('TSHIRT-RED-M', N'T-shirt röd, M', 25, 159.20, 1);
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('MUG-01', N'Mugg', 25, 63.20, 1);
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('FRAKT', N'Frakt', 25, 0, 1);
";

pub struct MamutDb {
    config: SimConfig,
    /// TLS, instance name and SQL Browser, kept for [`MamutDb::start_again`].
    wire: WireConfig,
    sim: Option<MamutSim>,
    addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_no: i64,
    pub doc_type: String,
    pub customer_no: i64,
    pub external_no: String,
    /// NULL for orders Mamut's import made (it knows no shops).
    pub shop_id: Option<String>,
    pub status: String,
    pub total: String,
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRow {
    pub line_no: i64,
    pub article_no: Option<String>,
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    pub discount: String,
    pub vat_rate: String,
}

impl MamutDb {
    /// A fresh stand-in on its own PostgreSQL schema (dropped with the value), with the
    /// reference schema and three products.
    pub fn start() -> Self {
        Self::start_with(WireConfig::default())
    }

    /// [`MamutDb::start`] with TLS, a named instance or SQL Browser as `wire` says.
    pub fn start_with(wire: WireConfig) -> Self {
        let schema = format!("mamut_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let config = SimConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            postgres_url: default_postgres_url(),
            pg_schema: schema,
            user: "mamut".into(),
            password: "s3cret-pass".into(),
            database: "mamut".into(),
        };
        run_batch(&config, SCHEMA).expect("the reference schema runs on the stand-in");
        run_batch(&config, PRODUCTS).expect("products");
        let sim = MamutSim::start_with(config.clone(), wire.clone()).expect("stand-in starts");
        let addr = sim.addr();
        Self {
            config: SimConfig {
                listen: addr,
                ..config
            },
            wire,
            sim: Some(sim),
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where SQL Browser answers, when the stand-in serves a named instance with one.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.sim.as_ref().and_then(MamutSim::browser_addr)
    }

    /// The stand-in's configuration (PostgreSQL URL and schema, credentials).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The server goes down: connections drop, new ones are refused.
    pub fn stop(&mut self) {
        if let Some(sim) = self.sim.take() {
            sim.stop();
        }
    }

    /// The server comes back on the same port with the same data.
    pub fn start_again(&mut self) {
        self.sim = Some(
            MamutSim::start_with(self.config.clone(), self.wire.clone())
                .expect("stand-in starts again"),
        );
    }

    /// Runs T-SQL directly on the data (setting up a test case), through the stand-in's engine.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = run_batch(&self.config, sql) {
            panic!("T-SQL for the test fails on the stand-in: {e}\n{sql}");
        }
    }

    /// A second T-SQL session of its own (a Mamut user): an open `BEGIN TRAN` stays open, with
    /// its locks, until it commits, rolls back or the session is dropped.
    pub fn session(&self) -> MamutSession {
        MamutSession(Session::connect(&self.config).expect("a stand-in session opens"))
    }

    /// Runs a read-back query on the stand-in's schema.
    fn read(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Vec<postgres::Row> {
        off_runtime(|| {
            let mut client = postgres::Client::connect(&self.config.postgres_url, postgres::NoTls)
                .expect("PostgreSQL for reading back");
            client
                .batch_execute(&format!("SET search_path = \"{}\"", self.config.pg_schema))
                .expect("search_path");
            client
                .query(sql, params)
                .unwrap_or_else(|e| panic!("read-back {sql}: {e}"))
        })
    }

    pub fn orders(&self) -> Vec<OrderRow> {
        self.read(
                "SELECT order_no::int8, doc_type, customer_no::int8, external_no, shop_id, status, total::text, payment_method \
                 FROM orders ORDER BY order_no",
                &[],
            )
            .iter()
            .map(|r| OrderRow {
                order_no: r.get(0),
                doc_type: r.get(1),
                customer_no: r.get(2),
                external_no: r.get(3),
                shop_id: r.get(4),
                status: r.get(5),
                total: r.get(6),
                payment_method: r.get(7),
            })
            .collect()
    }

    pub fn lines(&self, order_no: i64) -> Vec<LineRow> {
        self.read(
                "SELECT line_no::int8, article_no, description, quantity::text, unit_price::text, discount::text, vat_rate::text \
                 FROM order_lines WHERE order_no = $1::int8 ORDER BY line_no",
                &[&order_no],
            )
            .iter()
            .map(|r| LineRow {
                line_no: r.get(0),
                article_no: r.get(1),
                description: r.get(2),
                quantity: r.get(3),
                unit_price: r.get(4),
                discount: r.get(5),
                vat_rate: r.get(6),
            })
            .collect()
    }

    /// `(customer_no, name, email)` of every customer.
    pub fn customers(&self) -> Vec<(i64, String, Option<String>)> {
        self.read(
            "SELECT customer_no::int8, name, email FROM customers ORDER BY customer_no",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    }

    /// Every customer with its address and ExtID, in number order.
    pub fn customer_rows(&self) -> Vec<CustomerRow> {
        self.read(
            "SELECT customer_no::int8, name, email, street, zip, city, country, ext_id \
             FROM customers ORDER BY customer_no",
            &[],
        )
        .iter()
        .map(|r| CustomerRow {
            customer_no: r.get(0),
            name: r.get(1),
            email: r.get(2),
            street: r.get(3),
            zip: r.get(4),
            city: r.get(5),
            country: r.get(6),
            ext_id: r.get(7),
        })
        .collect()
    }

    /// How many orders have this external order number.
    pub fn count_external(&self, external_no: &str) -> i64 {
        self.read(
            "SELECT COUNT(*)::int8 FROM orders WHERE external_no = $1::text",
            &[&external_no],
        )[0]
        .get(0)
    }

    /// The environment that points the import stand-in (`mamut-import-sim`) at this database:
    /// the same PostgreSQL server and schema.
    pub fn import_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "MAMUT_IMPORT_SIM_POSTGRES_URL".to_owned(),
                self.config.postgres_url.clone(),
            ),
            (
                "MAMUT_IMPORT_SIM_PG_SCHEMA".to_owned(),
                self.config.pg_schema.clone(),
            ),
        ]
    }

    /// Every product row: `(article_no, name, parent_article_no, dimension1, dimension2)`,
    /// in article-number order.
    pub fn products(&self) -> Vec<ProductRow> {
        self.read(
            "SELECT article_no, name, parent_article_no, dimension1, dimension2 \
                 FROM products ORDER BY article_no",
            &[],
        )
        .iter()
        .map(|r| ProductRow {
            article_no: r.get(0),
            name: r.get(1),
            parent: r.get(2),
            dimension1: r.get(3),
            dimension2: r.get(4),
        })
        .collect()
    }
}

impl Drop for MamutDb {
    fn drop(&mut self) {
        self.stop();
        let _ = drop_schema(&self.config.postgres_url, &self.config.pg_schema);
    }
}

/// A raw T-SQL session on the stand-in's engine, for tests that hold locks or transactions.
pub struct MamutSession(Session);

impl MamutSession {
    /// Runs a batch; the last result set's rows, or the first error as SQL Server reports it.
    pub fn batch(&mut self, sql: &str) -> Result<Vec<Vec<PgValue>>, String> {
        self.0.script(sql)
    }

    /// `@@TRANCOUNT` of this session.
    pub fn trancount(&self) -> u32 {
        self.0.trancount()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_no: i64,
    pub name: String,
    pub email: Option<String>,
    pub street: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    /// The customer's id in the external register, as Mamut's import keeps it.
    pub ext_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub article_no: String,
    pub name: String,
    pub parent: Option<String>,
    pub dimension1: Option<String>,
    pub dimension2: Option<String>,
}
