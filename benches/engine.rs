//! The document engine's costs, measured with realistic typing updates (see `common`).
//!
//! - `apply_update`: applying keystroke updates to a document (raw yrs, and the server's
//!   validate-then-apply checks).
//! - `encode_state`: encoding a document's full state (what every join sends).
//! - `load`: building a document from its newest snapshot plus the update tail, versus replaying
//!   its whole history, versus one update holding the same content (1k, 10k, 100k updates).
//! - `merge_updates`: `yrs::merge_updates_v1` versus apply-and-re-encode (STACK.md §6: the merge
//!   is quadratic).
//! - `engine_join`: a cold join through the real engine (`tandem::docs::Docs`) on a store whose
//!   document was written by the engine (snapshots every 500 updates, a 250-update tail), versus
//!   a fresh document of the same content, versus a log with no snapshot (1k, 10k, 100k), on
//!   SQLite and Postgres.
//! - `engine_update`: the update path's throughput (validate, apply, group commit, durable) on
//!   SQLite and Postgres.
//!
//! `cargo bench --bench engine`; filter with `cargo bench --bench engine -- load/`.

mod common;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{BenchDb, Typist, history_and_state, keystrokes, runtime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tandem::{
    bus::LocalBus,
    docs::{Docs, EngineSettings, Origin},
    store::{AppendBatch, DynStore},
};
use yrs::{Doc, ReadTxn, StateVector, Transact, Update, updates::decoder::Decode};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn label(n: usize) -> String {
    if n >= 1000 { format!("{}k", n / 1000) } else { n.to_string() }
}

fn apply_update(c: &mut Criterion) {
    let updates = keystrokes(10_000);
    let mut group = c.benchmark_group("apply_update");
    group.throughput(Throughput::Elements(updates.len() as u64));
    group.sample_size(20);
    group.bench_function("10k_keystrokes/txn_per_update", |b| {
        b.iter(|| {
            let doc = Doc::new();
            for u in &updates {
                doc.transact_mut().apply_update(Update::decode_v1(u).unwrap()).unwrap();
            }
            black_box(doc)
        })
    });
    group.bench_function("10k_keystrokes/one_txn", |b| {
        b.iter(|| {
            let doc = Doc::new();
            let mut txn = doc.transact_mut();
            for u in &updates {
                txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
            }
            drop(txn);
            black_box(doc)
        })
    });
    // What `docs/doc.rs` `validate_and_apply` does per update: decode, check the update's lower
    // state vector and delete set against the document, apply, check for pending structs, and
    // compare the before/after states.
    group.bench_function("10k_keystrokes/server_checks", |b| {
        b.iter(|| {
            let doc = Doc::new();
            for u in &updates {
                let update = Update::decode_v1(u).unwrap();
                let mut txn = doc.transact_mut();
                let known = txn.state_vector();
                let lower = update.state_vector_lower();
                assert!(lower.iter().all(|(client, clock)| *clock <= known.get(client)));
                let upper = update.state_vector();
                for (client, ranges) in update.delete_set().iter() {
                    let have = known.get(client).max(upper.get(client));
                    assert!(ranges.iter().all(|r| r.end <= have));
                }
                txn.apply_update(update).unwrap();
                assert!(!txn.has_missing_updates());
                black_box(txn.before_state() == txn.after_state() && txn.delete_set().is_empty());
            }
            black_box(doc)
        })
    });
    group.finish();
}

fn doc_with(updates: &[Vec<u8>]) -> Doc {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for u in updates {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    doc
}

fn encode_state(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_state");
    for n in SIZES {
        let (updates, state) = history_and_state(n);
        let doc = doc_with(&updates);
        eprintln!("encode_state/{}: state is {} bytes", label(n), state.len());
        group.throughput(Throughput::Bytes(state.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(n)), &doc, |b, doc| {
            b.iter(|| black_box(doc.transact().encode_state_as_update_v1(&StateVector::default())))
        });
    }
    group.finish();
}

/// Loads like `DocTask::load`: every stored update in one transaction, then the full state is
/// encoded for the joiner.
fn load_and_encode(parts: &[&[u8]]) -> Vec<u8> {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for p in parts {
            txn.apply_update(Update::decode_v1(p).unwrap()).unwrap();
        }
    }
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

/// Tail length used for "snapshot + tail": half the default snapshot interval (500).
const TAIL: usize = 250;

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for n in SIZES {
        let (updates, state) = history_and_state(n);
        let snapshot = {
            let doc = doc_with(&updates[..n - TAIL]);
            let txn = doc.transact();
            txn.encode_state_as_update_v1(&StateVector::default())
        };
        if n >= 100_000 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements(n as u64));
        let all: Vec<&[u8]> = updates.iter().map(|u| u.as_slice()).collect();
        let mut snap_tail: Vec<&[u8]> = vec![snapshot.as_slice()];
        snap_tail.extend(updates[n - TAIL..].iter().map(|u| u.as_slice()));
        let fresh: Vec<&[u8]> = vec![state.as_slice()];
        group.bench_with_input(BenchmarkId::new("replay_full_history", label(n)), &all, |b, parts| {
            b.iter(|| black_box(load_and_encode(parts)))
        });
        group.bench_with_input(BenchmarkId::new("snapshot_plus_tail", label(n)), &snap_tail, |b, parts| {
            b.iter(|| black_box(load_and_encode(parts)))
        });
        group.bench_with_input(BenchmarkId::new("fresh_same_content", label(n)), &fresh, |b, parts| {
            b.iter(|| black_box(load_and_encode(parts)))
        });
    }
    group.finish();
}

fn merge_updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge_updates");
    group.sample_size(10);
    for n in [100usize, 1_000, 5_000] {
        let updates = keystrokes(n);
        let parts: Vec<&[u8]> = updates.iter().map(|u| u.as_slice()).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("merge_updates_v1", n), &parts, |b, parts| {
            b.iter(|| black_box(yrs::merge_updates_v1(parts.iter().copied()).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("apply_and_encode", n), &parts, |b, parts| {
            b.iter(|| black_box(load_and_encode(parts)))
        });
    }
    group.finish();
}

fn origin() -> Origin {
    Origin { user_id: "bench".into(), socket_id: "bench-socket".into(), binary: false }
}

fn bus() -> tandem::bus::DynBus {
    Arc::new(LocalBus::new())
}

/// Sends updates through the engine, up to `window` queued at a time, and waits until durable.
async fn submit_all(docs: &Docs, doc_id: &str, updates: &[Vec<u8>], window: usize) {
    for chunk in updates.chunks(window) {
        let mut pending = Vec::with_capacity(chunk.len());
        for u in chunk {
            pending.push(docs.submit(doc_id, u.clone(), origin()).await.expect("submit"));
        }
        for p in pending {
            p.outcome().await.expect("update accepted");
        }
    }
}

/// Writes the three layouts of one content of `n` keystrokes:
/// - `history-n`: through the engine (snapshots every 500 updates, pruned as in production), then
///   a 250-update tail appended without a snapshot (what a crash between snapshots leaves);
/// - `fresh-n`: the same content as one update;
/// - `replay-n`: the `n` updates with no snapshot at all (snapshots never taken).
async fn write_layouts(db: &BenchDb, n: usize) {
    let (updates, state) = history_and_state(n);
    let store = db.open().await;
    let docs = Docs::new(store.clone(), bus(), EngineSettings::default());
    submit_all(&docs, &format!("history-{n}"), &updates[..n - TAIL], 1000).await;
    submit_all(&docs, &format!("fresh-{n}"), std::slice::from_ref(&state), 1).await;
    // Folds the engine's tail into a last snapshot.
    docs.shutdown().await;
    let append = |id: String, updates: &[Vec<u8>]| AppendBatch {
        doc_id: id,
        authors: vec![None; updates.len()],
        updates: updates.to_vec(),
    };
    for chunk in updates[n - TAIL..].chunks(256) {
        store.append_updates(&[append(format!("history-{n}"), chunk)]).await.expect("append tail");
    }
    for chunk in updates.chunks(256) {
        store.append_updates(&[append(format!("replay-{n}"), chunk)]).await.expect("append history");
    }
}

/// One cold join: a fresh runtime, store pool and engine (warmed up on another document), so
/// the document is loaded from the store; dropping the runtime afterwards stops the engine without the final flush, so the stored
/// layout is the same for every iteration. Only `Docs::join` is timed.
fn cold_join(url: &str, doc_id: &str) -> (Duration, usize) {
    let rt = runtime();
    let out = rt.block_on(async {
        let store: DynStore = tandem::store::open(url).await.expect("open store");
        let docs = Docs::new(store, bus(), EngineSettings::default());
        // Warm the fresh pool and engine with another (empty) document first: the first query
        // of a new Postgres pool costs tens of milliseconds that a running server never pays.
        docs.join("warm-up", "bench-member").await.expect("warm-up join");
        let started = Instant::now();
        let state = docs.join(doc_id, "bench-member").await.expect("join");
        (started.elapsed(), state.len())
    });
    rt.shutdown_background();
    out
}

fn engine_join(c: &mut Criterion) {
    let setup = runtime();
    let mut dbs = vec![BenchDb::sqlite()];
    if let Some(pg) = setup.block_on(BenchDb::postgres()) {
        dbs.push(pg);
    }
    for db in &dbs {
        for n in SIZES {
            let started = Instant::now();
            setup.block_on(write_layouts(db, n));
            eprintln!(
                "engine_join/{}: wrote the {} layouts in {:.1} s",
                db.backend,
                label(n),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut group = c.benchmark_group("engine_join");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for db in &dbs {
        for n in SIZES {
            for kind in ["history", "fresh", "replay"] {
                let doc_id = format!("{kind}-{n}");
                let (_, bytes) = cold_join(&db.url, &doc_id);
                eprintln!("engine_join/{}/{kind}/{}: state {bytes} bytes", db.backend, label(n));
                group.bench_function(BenchmarkId::new(format!("{}/{kind}", db.backend), label(n)), |b| {
                    b.iter_custom(|iters| (0..iters).map(|_| cold_join(&db.url, &doc_id).0).sum())
                });
            }
        }
    }
    group.finish();
    for db in dbs {
        setup.block_on(db.cleanup());
    }
}

/// The update path end to end inside the engine: validate, apply, group commit (durable), reply.
/// `burst`: 50 documents × 8 updates queued at once; `closed_loop`: 50 documents each sending its
/// next update when the previous one is durable (8 rounds), so commits group across documents.
fn engine_update(c: &mut Criterion) {
    const DOCS: usize = 50;
    const PER_DOC: usize = 8;
    let rt = runtime();
    let mut dbs = vec![BenchDb::sqlite()];
    if let Some(pg) = rt.block_on(BenchDb::postgres()) {
        dbs.push(pg);
    }
    let mut group = c.benchmark_group("engine_update");
    group.throughput(Throughput::Elements((DOCS * PER_DOC) as u64));
    group.sample_size(20);
    for db in &dbs {
        let docs = rt.block_on(async {
            let store = db.open().await;
            Docs::new(store, bus(), EngineSettings::default())
        });
        let ids: Vec<String> = (0..DOCS).map(|d| format!("doc-{d}")).collect();
        let mut typists: Vec<Typist> = (0..DOCS).map(|d| Typist::with_client_id(1000 + d as u64)).collect();
        // Load every document once so the measurement is the steady state.
        rt.block_on(async {
            for (d, id) in ids.iter().enumerate() {
                docs.join(id, "bench").await.expect("join");
                docs.apply(id, typists[d].keystroke(), origin()).await.expect("apply");
            }
        });
        for mode in ["burst", "closed_loop"] {
            group.bench_function(BenchmarkId::new(db.backend, mode), |b| {
                b.iter_custom(|iters| {
                    // Generate the updates first: typing is the client's cost, not the server's.
                    let work: Vec<Vec<Vec<Vec<u8>>>> = (0..iters)
                        .map(|_| typists.iter_mut().map(|t| (0..PER_DOC).map(|_| t.keystroke()).collect()).collect())
                        .collect();
                    rt.block_on(async {
                        let started = Instant::now();
                        for round in work {
                            if mode == "burst" {
                                let mut pending = Vec::with_capacity(DOCS * PER_DOC);
                                for (d, updates) in round.into_iter().enumerate() {
                                    for u in updates {
                                        pending.push(docs.submit(&ids[d], u, origin()).await.expect("submit"));
                                    }
                                }
                                for p in pending {
                                    p.outcome().await.expect("accepted");
                                }
                            } else {
                                let senders = round.into_iter().enumerate().map(|(d, updates)| {
                                    let docs = docs.clone();
                                    let id = ids[d].clone();
                                    tokio::spawn(async move {
                                        for u in updates {
                                            docs.apply(&id, u, origin()).await.expect("accepted");
                                        }
                                    })
                                });
                                for s in senders.collect::<Vec<_>>() {
                                    s.await.expect("sender");
                                }
                            }
                        }
                        started.elapsed()
                    })
                })
            });
        }
        rt.block_on(docs.shutdown());
    }
    group.finish();
    for db in dbs {
        rt.block_on(db.cleanup());
    }
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = apply_update, encode_state, load, merge_updates, engine_join, engine_update
}
criterion_main!(benches);
