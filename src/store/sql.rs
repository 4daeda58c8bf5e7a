//! The one SQL implementation of [`Store`], expanded for SQLite and for Postgres.
//!
//! sqlx's generic bounds over `Database` are long and brittle, and every statement here is the
//! same text on both backends (`$n` placeholders work in SQLite too), so a macro stamps out the
//! impl per driver. Per-backend differences live outside the macro: how a pool is opened, how a
//! write transaction begins (SQLite must take its write lock up front) and how a consistent read
//! begins (Postgres must ask for a repeatable-read snapshot).

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    time::Duration,
};

use async_trait::async_trait;
use sqlx::{
    Postgres, QueryBuilder, Row, Sqlite, Transaction,
    migrate::Migrator,
    postgres::{PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    AppendBatch, Backend, ChannelMessage, ChannelRecord, ChatMessage, ChatMessageEdit, DocumentRecord, DocumentStats,
    HistoryStats, NewSnapshot, Prune, Result, Snapshot, SnapshotKind, Store, StoreError, StoredDocument, StoredUpdate,
    UserRecord, VersionInfo, now_ms,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Rows per multi-row INSERT; keeps SQLite well under its bound-variable limit.
const INSERT_CHUNK: usize = 500;

/// The default, zero-setup store: one SQLite file in WAL mode.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: an update acknowledged to anyone survives a
            // power cut, not only a process crash. Group commit keeps the fsync count low.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::InvalidUrl(format!("cannot create {}: {e}", dir.display())))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Self { pool })
    }

    /// SQLite upgrades a deferred read lock to a write lock only if nobody wrote in between,
    /// and fails at once otherwise; taking the write lock first lets `busy_timeout` queue us.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A WAL read transaction already sees one consistent snapshot.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin().await?)
    }
}

/// The production store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |_, _| {
                Box::pin(async move {
                    // A walk over every descriptor of the process: off the async workers.
                    let changed =
                        tokio::task::spawn_blocking(move || super::nodelay::disable_nagle_towards(port)).await;
                    tracing::trace!(?changed, "TCP_NODELAY on the Postgres connections");
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Row locks on `documents` serialise writers of one document; READ COMMITTED is enough.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Loading reads a snapshot and then the updates after it; both must come from one
    /// snapshot of the database, or a compaction between the two reads would hide updates.
    async fn begin_read(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        Ok(tx)
    }
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    // A column we wrote ourselves; a parse failure means a hand-edited row, shown as absent.
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn json_list(text: String) -> Vec<serde_json::Value> {
    // Columns we wrote ourselves; a hand-edited non-array reads as empty.
    serde_json::from_str(&text).unwrap_or_default()
}

fn json_text(list: &[serde_json::Value]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

/// One update row of a group commit: (doc_id, seq, data, author).
type AppendRow<'a> = (&'a str, i64, &'a [u8], Option<&'a str>);

// The statements of a group commit differ per backend: Postgres takes arrays (`unnest`), so its
// SQL text is the same for every commit and stays prepared; SQLite, in process and with a single
// writer, takes multi-row VALUES lists.

impl SqliteStore {
    /// SQLite's write transaction already excludes every other writer.
    async fn lock_documents(_tx: &mut Transaction<'_, Sqlite>, _ids: &BTreeMap<&str, i64>) -> Result<()> {
        Ok(())
    }

    /// Adds `counts` to each document's `last_seq`; returns the new `last_seq` of each that exists.
    async fn bump_seqs(
        tx: &mut Transaction<'_, Sqlite>,
        counts: &BTreeMap<&str, i64>,
        now: i64,
    ) -> Result<HashMap<String, i64>> {
        let mut bump = QueryBuilder::<Sqlite>::new("WITH v (id, n) AS (");
        bump.push_values(counts.iter(), |mut row, (id, n)| {
            row.push_bind(*id).push_bind(*n);
        });
        bump.push(
            ") UPDATE documents SET last_seq = last_seq + (SELECT v.n FROM v WHERE v.id = documents.id), updated_at = ",
        )
        .push_bind(now)
        .push(" WHERE id IN (SELECT id FROM v) RETURNING id, last_seq");
        let rows = bump.build().fetch_all(&mut **tx).await?;
        rows.iter().map(|r| -> Result<(String, i64)> { Ok((r.try_get("id")?, r.try_get("last_seq")?)) }).collect()
    }

    async fn create_documents(tx: &mut Transaction<'_, Sqlite>, ids: &BTreeMap<&str, i64>, now: i64) -> Result<()> {
        let mut create = QueryBuilder::<Sqlite>::new("INSERT INTO documents (id, created_at, updated_at) ");
        create.push_values(ids.keys(), |mut row, id| {
            row.push_bind(*id).push_bind(now).push_bind(now);
        });
        create.push(" ON CONFLICT (id) DO NOTHING");
        create.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn insert_updates(tx: &mut Transaction<'_, Sqlite>, rows: &[AppendRow<'_>], now: i64) -> Result<()> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO document_updates (doc_id, seq, data, author, created_at) ");
            insert.push_values(chunk, |mut row, (doc_id, seq, data, author)| {
                row.push_bind(*doc_id).push_bind(*seq).push_bind(*data).push_bind(*author).push_bind(now);
            });
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

impl PostgresStore {
    /// Locks the rows in one global order, so two instances committing overlapping documents
    /// cannot deadlock.
    async fn lock_documents(tx: &mut Transaction<'_, Postgres>, ids: &BTreeMap<&str, i64>) -> Result<()> {
        let ids: Vec<&str> = ids.keys().copied().collect();
        sqlx::query("SELECT id FROM documents WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
        Ok(())
    }

    async fn bump_seqs(
        tx: &mut Transaction<'_, Postgres>,
        counts: &BTreeMap<&str, i64>,
        now: i64,
    ) -> Result<HashMap<String, i64>> {
        let ids: Vec<&str> = counts.keys().copied().collect();
        let ns: Vec<i64> = counts.values().copied().collect();
        let rows = sqlx::query(
            "UPDATE documents d SET last_seq = d.last_seq + v.n, updated_at = $3 \
             FROM unnest($1::text[], $2::bigint[]) AS v (id, n) WHERE d.id = v.id RETURNING d.id, d.last_seq",
        )
        .bind(ids)
        .bind(ns)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(|r| -> Result<(String, i64)> { Ok((r.try_get("id")?, r.try_get("last_seq")?)) }).collect()
    }

    async fn create_documents(tx: &mut Transaction<'_, Postgres>, ids: &BTreeMap<&str, i64>, now: i64) -> Result<()> {
        let ids: Vec<&str> = ids.keys().copied().collect();
        sqlx::query(
            "INSERT INTO documents (id, created_at, updated_at) SELECT unnest($1::text[]), $2, $2 \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(ids)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_updates(tx: &mut Transaction<'_, Postgres>, rows: &[AppendRow<'_>], now: i64) -> Result<()> {
        let doc_ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let data: Vec<&[u8]> = rows.iter().map(|r| r.2).collect();
        let authors: Vec<Option<&str>> = rows.iter().map(|r| r.3).collect();
        sqlx::query(
            "INSERT INTO document_updates (doc_id, seq, data, author, created_at) \
             SELECT d, s, b, a, $5 FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[]) AS t (d, s, b, a)",
        )
        .bind(doc_ids)
        .bind(seqs)
        .bind(data)
        .bind(authors)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

macro_rules! sql_store {
    // `$lock_suffix` turns a read into a row lock where the database has one (Postgres); SQLite
    // needs none because its write transactions are serialised.
    ($store:ident, $db:ty, $backend:expr, $lock_suffix:expr) => {
        impl $store {
            fn snapshot_row(r: &<$db as sqlx::Database>::Row) -> Result<Snapshot> {
                Ok(Snapshot {
                    version: r.try_get("version")?,
                    seq: r.try_get("seq")?,
                    state: r.try_get("state")?,
                    created_at: r.try_get("created_at")?,
                })
            }

            fn update_row(r: &<$db as sqlx::Database>::Row) -> Result<StoredUpdate> {
                Ok(StoredUpdate { seq: r.try_get("seq")?, data: r.try_get("data")? })
            }

            fn chat_row(r: &<$db as sqlx::Database>::Row) -> Result<ChatMessage> {
                Ok(ChatMessage {
                    chat_id: r.try_get("chat_id")?,
                    message_id: r.try_get("message_id")?,
                    content: r.try_get("content")?,
                    status_history: json_list(r.try_get("status_history")?),
                    embeds: json_list(r.try_get("embeds")?),
                    files: json_list(r.try_get("files")?),
                    sources: json_list(r.try_get("sources")?),
                    updated_at: r.try_get("updated_at")?,
                })
            }

            async fn insert_snapshot(tx: &mut Transaction<'_, $db>, id: &str, snapshot: &NewSnapshot) -> Result<i64> {
                let now = now_ms();
                let version: Option<i64> = sqlx::query_scalar(
                    "UPDATE documents SET last_version = last_version + 1, updated_at = $2 \
                     WHERE id = $1 RETURNING last_version",
                )
                .bind(id)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?;
                let version = version.ok_or_else(|| StoreError::NotFound(format!("document {id}")))?;
                sqlx::query(
                    "INSERT INTO document_snapshots (doc_id, version, seq, state, state_vector, kind, label, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(version)
                .bind(snapshot.seq)
                .bind(snapshot.state.as_slice())
                .bind(snapshot.state_vector.as_slice())
                .bind(snapshot.kind.as_str())
                .bind(snapshot.label.as_deref())
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(version)
            }

            async fn prune_in(
                tx: &mut Transaction<'_, $db>,
                id: &str,
                seq: i64,
                keep_versions: u32,
                kinds: &[SnapshotKind],
            ) -> Result<(u64, u64)> {
                // Never drop an update that no stored version contains.
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(seq) FROM document_snapshots WHERE doc_id = $1")
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?;
                let fold = seq.min(newest.unwrap_or(0));
                let updates = sqlx::query("DELETE FROM document_updates WHERE doc_id = $1 AND seq <= $2")
                    .bind(id)
                    .bind(fold)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                // The version loading starts from is always kept, whatever its kind.
                let loaded_from: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM document_snapshots WHERE doc_id = $1 ORDER BY seq DESC, version DESC LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
                let mut versions_deleted = 0;
                if let Some(loaded_from) = loaded_from {
                    let mut candidates = QueryBuilder::<$db>::new("SELECT version FROM document_snapshots WHERE doc_id = ");
                    candidates.push_bind(id).push(" AND kind IN (");
                    let mut list = candidates.separated(", ");
                    for kind in kinds {
                        list.push_bind(kind.as_str());
                    }
                    candidates.push(") ORDER BY version DESC");
                    let versions: Vec<i64> = candidates.build_query_scalar().fetch_all(&mut **tx).await?;
                    for version in versions.into_iter().skip(keep_versions as usize) {
                        if version == loaded_from {
                            continue;
                        }
                        versions_deleted += sqlx::query("DELETE FROM document_snapshots WHERE doc_id = $1 AND version = $2")
                            .bind(id)
                            .bind(version)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                    }
                }
                Ok((updates, versions_deleted))
            }

            async fn read_document(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: &str,
            ) -> Result<Option<DocumentRecord>> {
                let row = sqlx::query(
                    "SELECT id, owner_id, access_control, content, last_seq, created_at, updated_at \
                     FROM documents WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                row.map(|r| -> Result<DocumentRecord> {
                    Ok(DocumentRecord {
                        id: r.try_get("id")?,
                        owner_id: r.try_get("owner_id")?,
                        access_control: parse_json(r.try_get("access_control")?),
                        content: parse_json(r.try_get("content")?),
                        last_seq: r.try_get("last_seq")?,
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .transpose()
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn upsert_user(&self, user: &UserRecord) -> Result<()> {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO users (id, name, role, last_active_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (id) DO UPDATE SET name = $2, role = $3, updated_at = $5",
                )
                .bind(&user.id)
                .bind(&user.name)
                .bind(&user.role)
                .bind(user.last_active_at)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn user(&self, id: &str) -> Result<Option<UserRecord>> {
                let row = sqlx::query("SELECT id, name, role, last_active_at FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| -> Result<UserRecord> {
                    Ok(UserRecord {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        role: r.try_get("role")?,
                        last_active_at: r.try_get("last_active_at")?,
                    })
                })
                .transpose()
            }

            async fn touch_user(&self, id: &str, at_secs: i64) -> Result<()> {
                sqlx::query("UPDATE users SET last_active_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at_secs)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_channel(&self, channel: &ChannelRecord, member_ids: &[String]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO channels (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&channel.id)
                    .bind(&channel.name)
                    .bind(&channel.owner_id)
                    .bind(channel.created_at)
                    .execute(&mut *tx)
                    .await?;
                for user_id in member_ids {
                    sqlx::query(
                        "INSERT INTO channel_members (channel_id, user_id, joined_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (channel_id, user_id) DO NOTHING",
                    )
                    .bind(&channel.id)
                    .bind(user_id)
                    .bind(channel.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn add_channel_member(&self, channel_id: &str, user_id: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO channel_members (channel_id, user_id, joined_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (channel_id, user_id) DO NOTHING",
                )
                .bind(channel_id)
                .bind(user_id)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn channel(&self, id: &str) -> Result<Option<ChannelRecord>> {
                let row = sqlx::query("SELECT id, name, owner_id, created_at FROM channels WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| -> Result<ChannelRecord> {
                    Ok(ChannelRecord {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        owner_id: r.try_get("owner_id")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn channel_ids_for_user(&self, user_id: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT channel_id FROM channel_members WHERE user_id = $1 ORDER BY channel_id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn channel_member_ids(&self, channel_id: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM channel_members WHERE channel_id = $1 ORDER BY user_id",
                )
                .bind(channel_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn is_channel_member(&self, channel_id: &str, user_id: &str) -> Result<bool> {
                let found: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM channel_members WHERE channel_id = $1 AND user_id = $2",
                )
                .bind(channel_id)
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(found > 0)
            }

            async fn mark_channel_read(&self, channel_id: &str, user_id: &str, at_ms: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE channel_members SET last_read_at = $3 WHERE channel_id = $1 AND user_id = $2",
                )
                .bind(channel_id)
                .bind(user_id)
                .bind(at_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn document(&self, id: &str) -> Result<Option<DocumentRecord>> {
                // One row needs no transaction (on Postgres a repeatable-read one costs three
                // extra round trips on every join).
                let mut conn = self.pool.acquire().await?;
                Self::read_document(&mut conn, id).await
            }

            async fn create_document(&self, id: &str, owner_id: Option<&str>) -> Result<DocumentRecord> {
                let mut tx = self.begin_write().await?;
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO documents (id, owner_id, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(owner_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let doc = Self::read_document(&mut tx, id).await?;
                tx.commit().await?;
                doc.ok_or_else(|| StoreError::NotFound(format!("document {id}")))
            }

            async fn set_access_control(
                &self,
                id: &str,
                access_control: Option<&serde_json::Value>,
            ) -> Result<()> {
                let done = sqlx::query("UPDATE documents SET access_control = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(access_control.map(|v| v.to_string()))
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("document {id}")));
                }
                Ok(())
            }

            async fn save_content(&self, id: &str, content: &serde_json::Value) -> Result<()> {
                let done = sqlx::query("UPDATE documents SET content = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(content.to_string())
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("document {id}")));
                }
                Ok(())
            }

            async fn list_documents(&self) -> Result<Vec<DocumentStats>> {
                let rows = sqlx::query(
                    "SELECT d.id, d.updated_at, \
                       CAST(COALESCE((SELECT SUM(LENGTH(u.data)) FROM document_updates u WHERE u.doc_id = d.id), 0) \
                       + COALESCE((SELECT LENGTH(s.state) FROM document_snapshots s WHERE s.doc_id = d.id \
                                   ORDER BY s.seq DESC, s.version DESC LIMIT 1), 0) AS BIGINT) AS bytes, \
                       (SELECT COUNT(*) FROM document_updates u WHERE u.doc_id = d.id) AS updates \
                     FROM documents d ORDER BY d.id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|r| -> Result<DocumentStats> {
                        Ok(DocumentStats {
                            document_id: r.try_get("id")?,
                            bytes: r.try_get("bytes")?,
                            updates: r.try_get("updates")?,
                            updated_at: r.try_get("updated_at")?,
                        })
                    })
                    .collect()
            }

            async fn append_updates(&self, batches: &[AppendBatch]) -> Result<Vec<i64>> {
                // A fixed number of statements per commit, however many documents it holds:
                // lock the rows, bump every document's seq in one UPDATE, insert every update in
                // one multi-row INSERT. Counts are summed per document first (a document may
                // appear in several batches), in id order.
                let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
                for batch in batches.iter().filter(|b| !b.updates.is_empty()) {
                    *counts.entry(batch.doc_id.as_str()).or_default() += batch.updates.len() as i64;
                }
                let mut firsts = vec![0i64; batches.len()];
                if counts.is_empty() {
                    return Ok(firsts);
                }
                let now = now_ms();
                let mut tx = self.begin_write().await?;
                Self::lock_documents(&mut tx, &counts).await?;
                let mut last = Self::bump_seqs(&mut tx, &counts, now).await?;
                let missing: BTreeMap<&str, i64> =
                    counts.iter().filter(|(id, _)| !last.contains_key(**id)).map(|(id, n)| (*id, *n)).collect();
                if !missing.is_empty() {
                    Self::create_documents(&mut tx, &missing, now).await?;
                    last.extend(Self::bump_seqs(&mut tx, &missing, now).await?);
                }
                // The next free seq of each document, handed out to its batches in order.
                let mut next: HashMap<&str, i64> = counts
                    .iter()
                    .map(|(id, n)| (*id, last.get(*id).copied().unwrap_or(*n) - n + 1))
                    .collect();
                let mut rows: Vec<AppendRow<'_>> = Vec::new();
                for (i, batch) in batches.iter().enumerate() {
                    let Some(seq) = next.get_mut(batch.doc_id.as_str()) else { continue };
                    firsts[i] = *seq;
                    for (k, data) in batch.updates.iter().enumerate() {
                        let author = batch.authors.get(k).and_then(|a| a.as_deref());
                        rows.push((batch.doc_id.as_str(), *seq, data.as_slice(), author));
                        *seq += 1;
                    }
                }
                Self::insert_updates(&mut tx, &rows, now).await?;
                tx.commit().await?;
                Ok(firsts)
            }

            async fn load_document(&self, id: &str) -> Result<StoredDocument> {
                let mut tx = self.begin_read().await?;
                let snapshot = sqlx::query(
                    "SELECT version, seq, state, created_at FROM document_snapshots WHERE doc_id = $1 \
                     ORDER BY seq DESC, version DESC LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Self::snapshot_row(&r))
                .transpose()?;
                let after = snapshot.as_ref().map_or(0, |s| s.seq);
                let updates = sqlx::query(
                    "SELECT seq, data FROM document_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
                )
                .bind(id)
                .bind(after)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(Self::update_row)
                .collect::<Result<Vec<_>>>()?;
                tx.commit().await?;
                Ok(StoredDocument { snapshot, updates })
            }

            async fn updates_after(&self, id: &str, seq: i64) -> Result<Vec<StoredUpdate>> {
                sqlx::query("SELECT seq, data FROM document_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq")
                    .bind(id)
                    .bind(seq)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(Self::update_row)
                    .collect()
            }

            async fn write_snapshot(&self, id: &str, snapshot: &NewSnapshot, prune: Option<Prune<'_>>) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let version = Self::insert_snapshot(&mut tx, id, snapshot).await?;
                if let Some(prune) = prune {
                    Self::prune_in(&mut tx, id, snapshot.seq, prune.keep_versions, prune.kinds).await?;
                }
                tx.commit().await?;
                Ok(version)
            }

            async fn prune_history(
                &self,
                id: &str,
                seq: i64,
                keep_versions: u32,
                kinds: &[SnapshotKind],
            ) -> Result<(u64, u64)> {
                let mut tx = self.begin_write().await?;
                let pruned = Self::prune_in(&mut tx, id, seq, keep_versions, kinds).await?;
                tx.commit().await?;
                Ok(pruned)
            }

            async fn versions(&self, id: &str) -> Result<Vec<VersionInfo>> {
                sqlx::query(
                    "SELECT version, seq, created_at, kind, CAST(LENGTH(state) AS BIGINT) AS bytes, label \
                     FROM document_snapshots WHERE doc_id = $1 ORDER BY version",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| -> Result<VersionInfo> {
                    let kind: String = r.try_get("kind")?;
                    Ok(VersionInfo {
                        version: r.try_get("version")?,
                        seq: r.try_get("seq")?,
                        created_at: r.try_get("created_at")?,
                        // The column has a CHECK constraint, so every stored kind parses.
                        kind: SnapshotKind::parse(&kind).unwrap_or(SnapshotKind::Auto),
                        bytes: r.try_get::<i64, _>("bytes")?,
                        label: r.try_get("label")?,
                    })
                })
                .collect()
            }

            async fn snapshot(&self, id: &str, version: i64) -> Result<Option<Snapshot>> {
                sqlx::query("SELECT version, seq, state, created_at FROM document_snapshots WHERE doc_id = $1 AND version = $2")
                    .bind(id)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| Self::snapshot_row(&r))
                    .transpose()
            }

            async fn pending_update_count(&self, id: &str) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM document_updates WHERE doc_id = $1 AND seq > \
                     COALESCE((SELECT MAX(seq) FROM document_snapshots WHERE doc_id = $1), 0)",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn history_stats(&self, id: &str) -> Result<HistoryStats> {
                let mut tx = self.begin_read().await?;
                let updates = sqlx::query(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT) AS bytes \
                     FROM document_updates WHERE doc_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                let versions = sqlx::query(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(LENGTH(state) + LENGTH(state_vector)), 0) AS BIGINT) AS bytes \
                     FROM document_snapshots WHERE doc_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(HistoryStats {
                    update_rows: updates.try_get("n")?,
                    update_bytes: updates.try_get("bytes")?,
                    version_rows: versions.try_get("n")?,
                    version_bytes: versions.try_get("bytes")?,
                })
            }

            async fn chat_message(&self, chat_id: &str, message_id: &str) -> Result<Option<ChatMessage>> {
                let row = sqlx::query(
                    "SELECT chat_id, message_id, content, status_history, embeds, files, sources, updated_at \
                     FROM chat_messages WHERE chat_id = $1 AND message_id = $2",
                )
                .bind(chat_id)
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| Self::chat_row(&r)).transpose()
            }

            async fn edit_chat_message(
                &self,
                chat_id: &str,
                message_id: &str,
                user_id: Option<&str>,
                edit: ChatMessageEdit<'_>,
            ) -> Result<ChatMessage> {
                let now = now_ms();
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO chat_messages (chat_id, message_id, user_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (chat_id, message_id) DO NOTHING",
                )
                .bind(chat_id)
                .bind(message_id)
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT chat_id, message_id, content, status_history, embeds, files, sources, updated_at \
                     FROM chat_messages WHERE chat_id = $1 AND message_id = $2{}",
                    $lock_suffix
                )))
                .bind(chat_id)
                .bind(message_id)
                .fetch_one(&mut *tx)
                .await?;
                let mut message = Self::chat_row(&row)?;
                if edit(&mut message) {
                    message.updated_at = now;
                    sqlx::query(
                        "UPDATE chat_messages SET content = $3, status_history = $4, embeds = $5, files = $6, \
                         sources = $7, updated_at = $8 WHERE chat_id = $1 AND message_id = $2",
                    )
                    .bind(chat_id)
                    .bind(message_id)
                    .bind(&message.content)
                    .bind(json_text(&message.status_history))
                    .bind(json_text(&message.embeds))
                    .bind(json_text(&message.files))
                    .bind(json_text(&message.sources))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(message)
            }

            async fn add_channel_message(&self, message: &ChannelMessage) -> Result<()> {
                sqlx::query(
                    "INSERT INTO channel_messages (id, channel_id, user_id, content, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&message.id)
                .bind(&message.channel_id)
                .bind(&message.user_id)
                .bind(&message.content)
                .bind(message.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn channel_messages(&self, channel_id: &str, limit: u32) -> Result<Vec<ChannelMessage>> {
                let mut messages = sqlx::query(
                    "SELECT id, channel_id, user_id, content, created_at FROM channel_messages \
                     WHERE channel_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(channel_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| -> Result<ChannelMessage> {
                    Ok(ChannelMessage {
                        id: r.try_get("id")?,
                        channel_id: r.try_get("channel_id")?,
                        user_id: r.try_get("user_id")?,
                        content: r.try_get("content")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
                messages.reverse();
                Ok(messages)
            }
        }
    };
}

sql_store!(SqliteStore, Sqlite, Backend::Sqlite, "");
sql_store!(PostgresStore, Postgres, Backend::Postgres, " FOR UPDATE");
