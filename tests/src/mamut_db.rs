//! A Mamut database for end-to-end tests: the TDS stand-in serving the reference schema, with
//! a few products, and SQL read-back of what the agent wrote.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::mamut_sim::{MamutSim, SimConfig, open_db, run_batch};

const SCHEMA: &str = include_str!("../../deploy/mamut/schema.sql");
const PRODUCTS: &str = "
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('TSHIRT-RED-M', N'T-shirt röd, M', 25, 159.20, 1);
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('MUG-01', N'Mugg', 25, 63.20, 1);
INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('FRAKT', N'Frakt', 25, 0, 1);
";

pub struct MamutDb {
    dir: tempfile::TempDir,
    sim: Option<MamutSim>,
    addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_no: i64,
    pub doc_type: String,
    pub customer_no: i64,
    pub external_no: String,
    pub shop_id: String,
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
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mamut.sqlite");
        run_batch(&path, SCHEMA).expect("schema");
        run_batch(&path, PRODUCTS).expect("products");
        let sim = Self::serve(path, "127.0.0.1:0".parse().expect("address"));
        let addr = sim.addr();
        Self {
            dir,
            sim: Some(sim),
            addr,
        }
    }

    fn serve(db_path: PathBuf, listen: SocketAddr) -> MamutSim {
        MamutSim::start(SimConfig {
            listen,
            db_path,
            user: "mamut".into(),
            password: "s3cret-pass".into(),
            database: "mamut".into(),
        })
        .expect("stand-in starts")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mamut.sqlite")
    }

    /// The server goes down: connections drop, new ones are refused.
    pub fn stop(&mut self) {
        if let Some(sim) = self.sim.take() {
            sim.stop();
        }
    }

    /// The server comes back on the same port with the same data.
    pub fn start_again(&mut self) {
        self.sim = Some(Self::serve(self.path(), self.addr));
    }

    /// Runs SQL directly on the data (setting up a test case).
    pub fn execute(&self, sql: &str) {
        run_batch(&self.path(), sql).expect("SQL runs");
    }

    pub fn orders(&self) -> Vec<OrderRow> {
        let conn = open_db(&self.path()).expect("open");
        let mut stmt = conn
            .prepare(
                "SELECT order_no, doc_type, customer_no, external_no, shop_id, status, total, payment_method \
                 FROM orders ORDER BY order_no",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            Ok(OrderRow {
                order_no: r.get(0)?,
                doc_type: r.get(1)?,
                customer_no: r.get(2)?,
                external_no: r.get(3)?,
                shop_id: r.get(4)?,
                status: r.get(5)?,
                total: r.get(6)?,
                payment_method: r.get(7)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    pub fn lines(&self, order_no: i64) -> Vec<LineRow> {
        let conn = open_db(&self.path()).expect("open");
        let mut stmt = conn
            .prepare(
                "SELECT line_no, article_no, description, quantity, unit_price, discount, vat_rate \
                 FROM order_lines WHERE order_no = ?1 ORDER BY line_no",
            )
            .expect("prepare");
        stmt.query_map([order_no], |r| {
            Ok(LineRow {
                line_no: r.get(0)?,
                article_no: r.get(1)?,
                description: r.get(2)?,
                quantity: r.get(3)?,
                unit_price: r.get(4)?,
                discount: r.get(5)?,
                vat_rate: r.get(6)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    /// `(customer_no, name, email)` of every customer.
    pub fn customers(&self) -> Vec<(i64, String, Option<String>)> {
        let conn = open_db(&self.path()).expect("open");
        let mut stmt = conn
            .prepare("SELECT customer_no, name, email FROM customers ORDER BY customer_no")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Every product row: `(article_no, name, parent_article_no, dimension1, dimension2)`,
    /// in article-number order.
    pub fn products(&self) -> Vec<ProductRow> {
        let conn = open_db(&self.path()).expect("open");
        let mut stmt = conn
            .prepare(
                "SELECT article_no, name, parent_article_no, dimension1, dimension2 \
                 FROM products ORDER BY article_no",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            Ok(ProductRow {
                article_no: r.get(0)?,
                name: r.get(1)?,
                parent: r.get(2)?,
                dimension1: r.get(3)?,
                dimension2: r.get(4)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub article_no: String,
    pub name: String,
    pub parent: Option<String>,
    pub dimension1: Option<String>,
    pub dimension2: Option<String>,
}
