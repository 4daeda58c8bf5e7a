//! Shared by the benches: realistic Yjs updates and fresh databases.
//!
//! Updates come from a client typing into an XmlFragment named `prosemirror` the way
//! y-prosemirror writes it (paragraph elements holding XmlText): one small update per keystroke,
//! every tenth keystroke a backspace, a new paragraph every 60 characters. This is the same
//! typing model as `tandem-loadgen`.

#![allow(dead_code)]

use sqlx::Connection;
use tandem::store::{self, DynStore};
use yrs::{
    Doc, ReadTxn, StateVector, Text, Transact, XmlElementPrelim, XmlFragment, XmlFragmentRef, XmlTextPrelim, XmlTextRef,
};

pub struct Typist {
    pub doc: Doc,
    fragment: XmlFragmentRef,
    text: Option<XmlTextRef>,
    len: u32,
    keys: u64,
    line: u32,
}

const LINE: u32 = 60;

impl Typist {
    pub fn new(client_id: u64) -> Self {
        let doc = Doc::with_client_id(client_id);
        let fragment = doc.get_or_insert_xml_fragment("prosemirror");
        Self { doc, fragment, text: None, len: 0, keys: 0, line: 0 }
    }

    /// One keystroke, returned as the Yjs v1 update it produces.
    pub fn keystroke(&mut self) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        let k = self.keys;
        self.keys += 1;
        match &self.text {
            Some(text) if self.line < LINE => {
                if k % 10 == 9 && self.len > 0 {
                    text.remove_range(&mut txn, self.len - 1, 1);
                    self.len -= 1;
                } else {
                    let ch = (b'a' + (k % 26) as u8) as char;
                    text.insert(&mut txn, self.len, ch.encode_utf8(&mut [0; 4]));
                    self.len += 1;
                    self.line += 1;
                }
            }
            _ => {
                let paragraph = self.fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
                self.text = Some(paragraph.push_back(&mut txn, XmlTextPrelim::new("")));
                self.len = 0;
                self.line = 0;
            }
        }
        txn.encode_update_v1()
    }

    pub fn full_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

/// `n` keystroke updates of one typist.
pub fn keystrokes(n: usize) -> Vec<Vec<u8>> {
    let mut typist = Typist::new(1);
    (0..n).map(|_| typist.keystroke()).collect()
}

/// `n` keystrokes and the document's full state after them.
pub fn history_and_state(n: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut typist = Typist::new(1);
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
