//! `conformance!(test, …)`: runs each store test (an `async fn(&AnyStore)` of the module that
//! names it) against both backends, a fresh SQLite file and a fresh PostgreSQL database
//! (skipped without a server locally, failing in CI: see `tests::pg::TestDb`). The module
//! using it imports `AnyStore` and `StoreLocation`.

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let location = super::StoreLocation::Sqlite(dir.path().join("relay.sqlite"));
                    let store = super::AnyStore::open(&location).await.expect("store opens");
                    super::$test(&store).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = tests::pg::TestDb::create().await else { return };
                    let location = super::StoreLocation::parse(&db.url).expect("a PostgreSQL URL");
                    let store = super::AnyStore::open(&location).await.expect("store opens");
                    super::$test(&store).await;
                    db.drop().await;
                }
            )*
        }
    };
}
