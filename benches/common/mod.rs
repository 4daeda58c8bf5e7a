//! Shared by the benches: realistic Yjs updates and fresh databases.
//!
//! Updates come from `tandem::typing::Typist`, the typing model `tandem-loadgen` uses too.

#![allow(dead_code)]

use sqlx::Connection;
use tandem::store::{self, DynStore};

pub use tandem::typing::Typist;

/// `n` keystroke updates of one typist.
pub fn keystrokes(n: usize) -> Vec<Vec<u8>> {
    let mut typist = Typist::with_client_id(1);
    (0..n).map(|_| typist.keystroke()).collect()
}

/// `n` keystrokes and the document's full state after them.
pub fn history_and_state(n: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut typist = Typist::with_client_id(1);
    let updates = (0..n).map(|_| typist.keystroke()).collect();
    (updates, typist.full_state())
}

/// Admin URL of the bench Postgres (the test one): TANDEM_TEST_PG_URL overrides.
pub fn pg_admin_url() -> String {
    std::env::var("TANDEM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database of one backend; the Postgres one is dropped by `cleanup`, the SQLite one
/// lives in a temporary directory removed on drop.
pub struct BenchDb {
    pub url: String,
    pub backend: &'static str,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        Self { url, backend: "sqlite", pg_name: None, _dir: Some(dir) }
    }

    /// None when the Postgres is not reachable (the Postgres benches are then skipped).
    pub async fn postgres() -> Option<Self> {
        let admin = pg_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(error) => {
                eprintln!("skipping Postgres benches: cannot connect to {admin}: {error}");
                return None;
            }
        };
        let name = format!("tandem_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.ok()?;
        let slash = admin.rfind('/')?;
        let url = format!("{}/{name}", &admin[..slash]);
        Some(Self { url, backend: "postgres", pg_name: Some(name), _dir: None })
    }

    pub async fn open(&self) -> DynStore {
        store::open(&self.url).await.expect("open the bench store")
    }

    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    // `RUST_LOG=tandem=trace cargo bench ...` shows the engine's own timings (group commits).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}
