//! A PostgreSQL database of its own for one test. The server comes from
//! `RELAY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); without
//! one, [`TestDb::create`] says the test is skipped and why, and returns `None` — except in CI
//! (`CI` set), where a missing server fails the test.

/// A database created for one test and dropped by [`TestDb::drop`].
pub struct TestDb {
    admin: tokio_postgres::Client,
    name: String,
    /// A `postgres://` URL of the test's own database.
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Option<TestDb> {
        let base = std::env::var("RELAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let (admin, connection) = match tokio_postgres::connect(&base, tokio_postgres::NoTls).await
        {
            Ok(pair) => pair,
            Err(e) => {
                let why = format!(
                    "PostgreSQL is not reachable at {base} ({e}); \
                     set RELAY_TEST_POSTGRES_URL or start PostgreSQL to run this test"
                );
                assert!(std::env::var_os("CI").is_none(), "in CI: {why}");
                eprintln!("skipped: {why}");
                return None;
            }
        };
        tokio::spawn(connection);
        let name = format!("relay_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        // The local test server's certificate (if it has one) is not a trusted one.
        let url = format!("{}?sslmode=disable", with_database(&base, &name));
        Some(TestDb { admin, name, url })
    }

    /// Drops the database, ending any connection still open to it.
    pub async fn drop(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// `base` with its database replaced by `name` (query parameters are not kept).
fn with_database(base: &str, name: &str) -> String {
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let end = base[host_start..]
        .find(['/', '?'])
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}", &base[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_in_the_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@db", "t2"),
            "postgres://u:p@db/t2"
        );
        assert_eq!(
            with_database("postgres://db:5432?sslmode=disable", "t3"),
            "postgres://db:5432/t3"
        );
    }
}
