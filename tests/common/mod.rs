//! Shared helpers for the Rust integration tests: fresh databases on every backend.

#![allow(dead_code)]

use sqlx::{Connection, PgConnection};
use tandem::store::{self, DynStore};

/// Admin URL of the test Postgres; each test gets its own database created from it.
pub fn pg_admin_url() -> String {
    std::env::var("TANDEM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A store on a fresh, empty database, dropped (Postgres) or deleted (SQLite) with the guard.
pub struct TestDb {
    pub store: DynStore,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("tandem.db").display());
        let store = store::open(&url).await.expect("open sqlite");
        Self { store, url, pg_name: None, _dir: Some(dir) }
    }

    pub async fn postgres() -> Self {
        let admin = pg_admin_url();
        let name = format!("tandem_rs_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the test Postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let url = match admin.rfind('/') {
            Some(slash) => format!("{}/{name}", &admin[..slash]),
            None => panic!("TANDEM_TEST_PG_URL must name a database"),
        };
        let store = store::open(&url).await.expect("open postgres");
        Self { store, url, pg_name: Some(name), _dir: None }
    }

    pub async fn open(backend: &str) -> Self {
        match backend {
            "sqlite" => Self::sqlite().await,
            "postgres" => Self::postgres().await,
            other => panic!("unknown backend {other}"),
        }
    }

    /// Drops the Postgres database. Tests call it at the end; a failed test leaves its
    /// database behind for inspection.
    pub async fn cleanup(self) {
        let Self { store, pg_name, .. } = self;
        drop(store);
        if let Some(name) = pg_name
            && let Ok(mut conn) = PgConnection::connect(&pg_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Expands test bodies once per backend: `backend_tests! { test_name => body_fn; }` where
/// `body_fn(store: DynStore)` is an async fn of the including file.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = common::TestDb::open("sqlite").await;
                    super::$body(db.store.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = common::TestDb::open("postgres").await;
                    super::$body(db.store.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}
